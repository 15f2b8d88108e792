package protocol

import (
	"crypto/rand"
	"encoding/base64"
	"strings"
)

// NewID returns an unguessable, URL-safe request ID: 128 random bits in
// 22 characters of base64url.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// MsgID is the Nats-Msg-Id header of a job: <tenant>.<id>. The jobs
// stream remembers message IDs for its duplicate window across every
// tenant, so a bare request ID of one tenant would make the stream drop
// another tenant's job with the same ID as a duplicate.
func MsgID(tenant, id string) string { return tenant + "." + id }

// IDFromMsgID returns the request ID in a job's Nats-Msg-Id header:
// <tenant>.<id>, or a bare <id> as producers before MsgID sent.
func IDFromMsgID(msgID string) string {
	if i := strings.LastIndexByte(msgID, '.'); i >= 0 {
		return msgID[i+1:]
	}
	return msgID
}
