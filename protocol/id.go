package protocol

import (
	"crypto/rand"
	"encoding/base64"
)

// NewID returns an unguessable, URL-safe request ID: 128 random bits in
// 22 characters of base64url.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	return base64.RawURLEncoding.EncodeToString(b[:])
}
