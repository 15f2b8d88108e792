package manager

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"

	"github.com/chatfleet/chatfleet/protocol"
)

// Key returns the dedupe key of a normalized job: the SHA-256 of the
// canonical JSON of everything that determines the answer — tenant, model,
// messages and every parameter, extra fields included — and nothing that
// does not (id, v, dedupe, cache, timeout_ms, queue_timeout_ms, priority,
// stream, stream_options).
// Canonical means object keys sorted, no insignificant whitespace, and
// numbers in one spelling (0.70 and 0.7 are the same temperature), so field
// order and formatting never matter and any real difference does.
func Key(job *protocol.Job) (string, error) {
	j := *job
	j.ID, j.V, j.Dedupe, j.Cache, j.TimeoutMS, j.QueueTimeoutMS, j.Priority = "", 0, nil, nil, 0, 0, ""
	if len(j.Extra) > 0 {
		extra := make(map[string]json.RawMessage, len(j.Extra))
		for k, v := range j.Extra {
			if k != "stream" && k != "stream_options" {
				extra[k] = v
			}
		}
		j.Extra = extra
	}
	raw, err := json.Marshal(j)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := canonicalize(&buf, raw); err != nil {
		return "", err
	}
	sum := sha256.Sum256(buf.Bytes())
	return hex.EncodeToString(sum[:]), nil
}

// canonicalize writes the canonical form of one JSON value.
func canonicalize(buf *bytes.Buffer, raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return err
	}
	return writeCanonical(buf, v)
}

func writeCanonical(buf *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			buf.Write(kb)
			buf.WriteByte(':')
			if err := writeCanonical(buf, v[k]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	case []any:
		buf.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeCanonical(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case json.Number:
		buf.WriteString(canonicalNumber(v))
	case string, bool, nil:
		b, _ := json.Marshal(v)
		buf.Write(b)
	default:
		return fmt.Errorf("manager: unexpected JSON value %T", v)
	}
	return nil
}

// canonicalNumber spells a JSON number exactly and in one way: integers as
// written (JSON allows no leading zeros), other numbers as an exact
// rational (0.7, 0.70 and 7e-1 all become "7/10"). A number with an
// absurd exponent is kept as written: different, never merged, and never
// expanded into a huge value.
func canonicalNumber(n json.Number) string {
	s := string(n)
	if isInteger(s) {
		if s == "-0" {
			return "0"
		}
		return s
	}
	if exp := exponent(s); exp > 400 || exp < -400 {
		return s
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return s
	}
	return r.RatString()
}

func isInteger(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// exponent returns the value after e/E, or 0; a huge or unreadable one
// returns a huge value.
func exponent(s string) int64 {
	i := strings.IndexAny(s, "eE")
	if i < 0 {
		return 0
	}
	e, err := strconv.ParseInt(s[i+1:], 10, 64)
	if err != nil {
		return 1 << 62
	}
	return e
}
