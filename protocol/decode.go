package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
)

// DecodeJob decodes and validates one job. defaultModel fills an empty
// model. The error is always an *Error with CodeInvalidRequest.
func DecodeJob(b []byte, defaultModel string, lim Limits) (*Job, error) {
	lim = lim.withDefaults()
	if len(b) > lim.MaxJobBytes {
		return nil, Invalid("", "job is %d bytes; the limit is %d", len(b), lim.MaxJobBytes)
	}
	if !json.Valid(b) {
		if jsonDepth(b) > maxJSONDepth {
			return nil, Invalid("", "JSON nested too deeply: more than %d levels of arrays and objects", maxJSONDepth)
		}
		return nil, Invalid("", "not valid JSON")
	}
	if t := bytes.TrimSpace(b); t[0] != '{' {
		return nil, Invalid("", "a job must be a JSON object")
	}
	var j Job
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, DecodeError(err)
	}
	j.Normalize(defaultModel)
	if err := j.Validate(lim); err != nil {
		return nil, err
	}
	return &j, nil
}

// maxJSONDepth is encoding/json's nesting limit: deeper documents are not
// valid JSON to it.
const maxJSONDepth = 10000

// jsonDepth returns the deepest nesting of arrays and objects in b, which
// need not be valid JSON; brackets inside strings do not count.
func jsonDepth(b []byte) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range b {
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case inString && c == '"':
			inString = false
		case inString:
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

// DecodeError is the invalid_request error for a job body that does not
// decode: a field of the wrong JSON type is named, with the type it wants.
func DecodeError(err error) *Error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return Invalid(typeErr.Field, "wrong type: got JSON %s, want %s", typeErr.Value, jsonKind(typeErr.Type))
	}
	return Invalid("", "cannot decode job: %v", err)
}

// jsonKind names the JSON shape a Go type decodes from.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	default:
		return t.String()
	}
}
