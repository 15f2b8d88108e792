package llm

import "bytes"

// slimChunk appends to dst the chunk b with only the fields Recv reads:
//
//	{"choices":[{"index":…,"delta":{"content":…,"tool_calls":…,"refusal":…,"reasoning_content":…},"finish_reason":…}],"usage":…}
//
// go-openai decodes every line into its full response type with
// encoding/json, and a chunk as OpenAI sends it is mostly fields no one
// reads (id, object, created, model, system_fingerprint, logprobs,
// Azure's content_filter_results, …). Of the fields Recv reads, those
// that decode to nothing are dropped too: a null, an index of 0, "" where
// go-openai has a string. The values that stay are copied as they were
// sent, so go-openai still checks them. A delta's "reasoning" becomes "reasoning_content" as
// rewriteChunk does it. OpenAI's content chunk, about 300 bytes as sent,
// becomes {"choices":[{"delta":{"content":" fox"}}]}.
//
// A top-level "error": null is dropped too: go-openai takes a line that
// starts with {"error": for an error and would fail the stream.
//
// ok is false, with dst as it was, for a chunk that needs rewriteChunk
// (a string "error" anywhere else: it may carry an error; Groq's x_groq), one
// this scanner does not follow (not an object, a key with an escape or a
// non-ASCII byte, a key that go-openai would take for a kept field in
// another case, a repeated kept key, nesting deeper than maxSlimDepth) or
// that is not JSON in its structure. Fields dropped are not checked
// beyond their structure.
func slimChunk(dst, b []byte) (out []byte, ok bool) {
	s := chunkScanner{b: b}
	mark := len(dst)
	dst = append(dst, '{')
	var seen [2]bool
	ok = s.members(func(key []byte) bool {
		i, ok := field(key, "choices", "usage")
		switch {
		case string(key) == "error" && s.literal("null"):
			s.errors-- // no error (chunkError's reading); dropped, go-openai would take it for one
			return true
		case !ok || string(key) == "x_groq" || i >= 0 && seen[i]:
			return false
		case i < 0:
			return s.skip()
		}
		seen[i] = true
		if s.literal("null") {
			return true
		}
		dst = appendKey(dst, mark+1, key)
		if i == 0 {
			dst, ok = s.slimArray(dst, s.slimChoice)
			return ok
		}
		return s.copyValue(&dst)
	})
	s.ws()
	if !ok || s.errors > 0 || s.i != len(b) {
		return dst[:mark], false
	}
	return append(dst, '}'), true
}

// slimChoice appends a choice with its index, delta and finish_reason.
func (s *chunkScanner) slimChoice(dst []byte) ([]byte, bool) {
	var seen [3]bool
	dst = append(dst, '{')
	first := len(dst)
	ok := s.members(func(key []byte) bool {
		i, ok := field(key, "index", "delta", "finish_reason")
		switch {
		case !ok || i >= 0 && seen[i]:
			return false
		case i < 0:
			return s.skip()
		}
		seen[i] = true
		if s.literal("null") || i == 0 && s.literal("0") || i == 2 && s.literal(`""`) {
			return true
		}
		dst = appendKey(dst, first, key)
		if i == 1 {
			dst, ok = s.slimDelta(dst)
			return ok
		}
		return s.copyValue(&dst)
	})
	return append(dst, '}'), ok
}

// The fields of a delta slimDelta keeps, in deltaFields' order.
const (
	deltaContent = iota
	deltaToolCalls
	deltaRefusal
	deltaReasoningContent
	deltaReasoning
)

var deltaFields = []string{"content", "tool_calls", "refusal", "reasoning_content", "reasoning"}

// slimDelta appends a delta's content, tool_calls, refusal and
// reasoning_content, those that decode to something; a non-empty "reasoning"
// string becomes reasoning_content unless that is a non-empty string
// already (renameReasoning's rule).
func (s *chunkScanner) slimDelta(dst []byte) ([]byte, bool) {
	if !s.at('{') {
		return dst, s.copyValue(&dst)
	}
	var vals [5][]byte
	ok := s.members(func(key []byte) bool {
		i, ok := field(key, deltaFields...)
		switch {
		case !ok || i >= 0 && vals[i] != nil:
			return false
		case i < 0:
			return s.skip()
		}
		s.ws()
		start := s.i
		ok = s.skip()
		vals[i] = s.b[start:s.i]
		return ok
	})
	if !ok {
		return dst, false
	}
	if nonEmptyString(vals[deltaReasoning]) && !nonEmptyString(vals[deltaReasoningContent]) {
		vals[deltaReasoningContent] = vals[deltaReasoning]
	}
	dst = append(dst, '{')
	first := len(dst)
	for i, v := range vals[:deltaReasoning] {
		if v != nil && string(v) != "null" && (i == deltaToolCalls || string(v) != `""`) {
			dst = appendKey(dst, first, []byte(deltaFields[i]))
			dst = append(dst, v...)
		}
	}
	return append(dst, '}'), true
}

// appendKey appends "key": to an object whose first member would start
// at first, after a comma unless it is the first.
func appendKey(dst []byte, first int, key []byte) []byte {
	if len(dst) > first {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, key...)
	return append(dst, '"', ':')
}

// nonEmptyString reports a JSON string value other than "".
func nonEmptyString(v []byte) bool { return len(v) > 2 && v[0] == '"' }

// field returns the index of key among names, -1 for none; ok is false
// for a key slimChunk leaves to rewriteChunk: one with an escape or a
// non-ASCII byte, or one encoding/json (which matches keys ignoring case)
// would take for a name it does not equal.
func field(key []byte, names ...string) (i int, ok bool) {
	for i, n := range names {
		if string(key) == n {
			return i, true
		}
	}
	for _, c := range key {
		if c == '\\' || c >= 0x80 {
			return -1, false
		}
	}
	for _, n := range names {
		if len(key) == len(n) && bytes.EqualFold(key, []byte(n)) {
			return -1, false
		}
	}
	return -1, true
}

// maxSlimDepth bounds the nesting slimChunk follows; encoding/json's own
// bound is 10,000.
const maxSlimDepth = 10000

// chunkScanner reads one JSON chunk for slimChunk.
type chunkScanner struct {
	b      []byte
	i      int
	depth  int
	errors int // strings "error" read, but for a top-level "error": null
}

func (s *chunkScanner) ws() {
	b, i := s.b, s.i
	for i < len(b) && b[i] <= ' ' {
		i++
	}
	s.i = i
}

// at reports whether the next value starts with c.
func (s *chunkScanner) at(c byte) bool {
	s.ws()
	return s.i < len(s.b) && s.b[s.i] == c
}

func (s *chunkScanner) eat(c byte) bool {
	if s.at(c) {
		s.i++
		return true
	}
	return false
}

// str reads a string and returns it as sent, escapes included. The
// first bytes are looked at one by one (most strings of a chunk are
// shorter than a call to bytes.IndexByte costs), the rest of a long one
// (a large content delta) with bytes.IndexByte.
func (s *chunkScanner) str() ([]byte, bool) {
	if !s.at('"') {
		return nil, false
	}
	b, start := s.b, s.i+1
	end := -1
	for j := start; j < len(b); j++ {
		if j-start >= 32 { // (an escape may step over 32)
			end = strEnd(b, j)
			break
		}
		if c := b[j]; c == '\\' {
			j++ // the escaped byte
		} else if c == '"' {
			end = j
			break
		}
	}
	if end < 0 {
		return nil, false
	}
	s.i = end + 1
	raw := b[start:end]
	if len(raw) == 5 && string(raw) == "error" {
		s.errors++
	}
	return raw, true
}

// strEnd returns the index of the quote that ends the string b[j] is in
// (not in an escape), or -1.
func strEnd(b []byte, j int) int {
	for {
		q := bytes.IndexByte(b[j:], '"')
		if q < 0 {
			return -1
		}
		q += j
		e := bytes.IndexByte(b[j:q], '\\')
		if e < 0 {
			return q
		}
		j += e + 2 // past the escape
		if j > len(b) {
			return -1
		}
	}
}

// members reads an object, calling member with each key once the scanner
// is at its value; member must read the value.
func (s *chunkScanner) members(member func(key []byte) bool) bool {
	if !s.eat('{') || !s.enter() {
		return false
	}
	ok := s.eat('}')
	for !ok {
		key, kok := s.str()
		if !kok || !s.eat(':') || !member(key) {
			break
		}
		if ok = s.eat('}'); !ok && !s.eat(',') {
			break
		}
	}
	s.depth--
	return ok
}

// elements reads an array, calling element at each element; element must
// read it.
func (s *chunkScanner) elements(element func() bool) bool {
	if !s.eat('[') || !s.enter() {
		return false
	}
	ok := s.eat(']')
	for !ok {
		if !element() {
			break
		}
		if ok = s.eat(']'); !ok && !s.eat(',') {
			break
		}
	}
	s.depth--
	return ok
}

// enter counts one more level of nesting, false past maxSlimDepth; the
// caller takes it back with s.depth--.
func (s *chunkScanner) enter() bool {
	s.depth++
	return s.depth <= maxSlimDepth
}

// slimArray appends an array with slim applied to each object in it;
// other values are copied, as is a value that is not an array.
func (s *chunkScanner) slimArray(dst []byte, slim func([]byte) ([]byte, bool)) ([]byte, bool) {
	if !s.at('[') {
		return dst, s.copyValue(&dst)
	}
	dst = append(dst, '[')
	n := 0
	ok := s.elements(func() bool {
		if n++; n > 1 {
			dst = append(dst, ',')
		}
		if !s.at('{') {
			return s.copyValue(&dst)
		}
		var ok bool
		dst, ok = slim(dst)
		return ok
	})
	return append(dst, ']'), ok
}

// literal reads the next value if it is the literal lit.
func (s *chunkScanner) literal(lit string) bool {
	s.ws()
	end := s.i + len(lit)
	if end > len(s.b) || string(s.b[s.i:end]) != lit || end < len(s.b) && isLiteralByte(s.b[end]) {
		return false
	}
	s.i = end
	return true
}

// copyValue reads a value and appends it to *dst as it was sent.
func (s *chunkScanner) copyValue(dst *[]byte) bool {
	s.ws()
	start := s.i
	ok := s.skip()
	*dst = append(*dst, s.b[start:s.i]...)
	return ok
}

// skip reads a value. Literals are read as a run of the bytes numbers,
// true, false and null are made of, unchecked.
func (s *chunkScanner) skip() bool {
	s.ws()
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		_, ok := s.str()
		return ok
	case '{':
		return s.members(func([]byte) bool { return s.skip() })
	case '[':
		return s.elements(s.skip)
	}
	start := s.i
	for s.i < len(s.b) && isLiteralByte(s.b[s.i]) {
		s.i++
	}
	return s.i > start
}

func isLiteralByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'E'
}
