package manager

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/chatfleet/chatfleet/protocol"
)

// Key returns the dedupe key of a normalized job: the SHA-256 of the
// canonical JSON of everything that determines the answer — tenant, model,
// messages and every parameter, extra fields included — and nothing that
// does not (id, v, dedupe, cache, timeout_ms, stream, stream_options).
// Canonical means object keys sorted, no insignificant whitespace, and
// numbers in one spelling (0.70 and 0.7 are the same temperature), so field
// order and formatting never matter and any real difference does.
func Key(job *protocol.Job) (string, error) {
	j := *job
	j.ID, j.V, j.Dedupe, j.Cache, j.TimeoutMS = "", 0, nil, nil, 0
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

// canonicalNumber spells integers as integers (exactly, however large) and
// other numbers in Go's shortest float64 form.
func canonicalNumber(n json.Number) string {
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return strconv.FormatInt(i, 10)
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		return string(n)
	}
	if f == float64(int64(f)) && f >= -1<<53 && f <= 1<<53 {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
