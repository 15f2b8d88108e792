package subjects

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxNameLen is the longest tenant, request ID, worker ID or generation ID.
const MaxNameLen = 128

// ErrInvalid is matched (errors.Is) by every *NameError.
var ErrInvalid = errors.New("subjects: invalid name")

// NameError says which name was invalid and why.
type NameError struct {
	Field  string // "tenant", "id", "prefix", "subject", …
	Value  string
	Reason string
}

func (e *NameError) Error() string {
	return fmt.Sprintf("subjects: invalid %s %q: %s", e.Field, e.Value, e.Reason)
}

// Is reports whether target is ErrInvalid.
func (e *NameError) Is(target error) bool { return target == ErrInvalid }

// ValidToken checks the NATS rules for one subject token: not empty, and no
// '.', '*', '>' or whitespace.
func ValidToken(field, s string) error {
	if s == "" {
		return &NameError{Field: field, Value: s, Reason: "empty"}
	}
	for _, r := range s {
		switch {
		case r == '.' || r == '*' || r == '>':
			return &NameError{Field: field, Value: s, Reason: fmt.Sprintf("contains %q", r)}
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return &NameError{Field: field, Value: s, Reason: "contains whitespace or a control character"}
		}
	}
	return nil
}

// ValidName checks a tenant, request ID, worker ID or generation ID: a valid
// token of 1 to MaxNameLen characters from [A-Za-z0-9_-]. The narrower set
// keeps names usable as key-value keys, stream-safe and URL-safe.
func ValidName(field, s string) error {
	if err := ValidToken(field, s); err != nil {
		return err
	}
	for _, r := range s {
		// By character, not byte: 'é', never '\xc3'.
		if r >= utf8.RuneSelf || !nameByte(byte(r)) {
			return &NameError{Field: field, Value: s, Reason: fmt.Sprintf("contains %q; allowed: A-Z a-z 0-9 _ -", r)}
		}
	}
	// Only ASCII is left: bytes are characters.
	if len(s) > MaxNameLen {
		return &NameError{Field: field, Value: s[:16] + "…", Reason: fmt.Sprintf("longer than %d characters", MaxNameLen)}
	}
	return nil
}

// SanitizeName maps any string onto a valid name by replacing every byte
// outside [A-Za-z0-9_-] with '-' and truncating; "" becomes "unnamed".
// Used for worker IDs derived from host names.
func SanitizeName(s string) string {
	if len(s) > MaxNameLen {
		s = s[:MaxNameLen]
	}
	if s == "" {
		return "unnamed"
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if nameByte(s[i]) {
			b.WriteByte(s[i])
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}
