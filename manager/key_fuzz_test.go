package manager

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/chatfleet/chatfleet/protocol"
)

// decNum is the JSON number (-1)^neg · digits · 10^exp, to be spelled in
// any of the ways JSON allows.
type decNum struct {
	neg    bool
	digits string // decimal digits without leading zeros ("0" for zero)
	exp    int
}

func newDecNum(mant int64, exp int) decNum {
	// -0 is a number too: a zero with an odd exponent is spelled so.
	neg := mant < 0 || (mant == 0 && exp%2 != 0)
	u := uint64(mant)
	if mant < 0 {
		u = -u
	}
	return decNum{neg: neg, digits: strconv.FormatUint(u, 10), exp: exp}
}

// spell writes n one way out of many: 7e-1, 0.7, 0.70, 70E-2, 7.0e-1,
// 0.7e+0, 7e-01…
func (n decNum) spell(r *rand.Rand) string {
	d, e := n.digits, n.exp
	if d != "0" {
		z := r.IntN(3) // trailing zeros move the exponent, not the value
		d, e = d+strings.Repeat("0", z), e-z
	}
	var s string
	switch r.IntN(3) {
	case 0: // integer mantissa and an exponent
		s = d + expPart(r, e)
	case 1: // one digit before the point, and an exponent
		s = d[:1]
		if len(d) > 1 {
			s += "." + d[1:]
		}
		s += expPart(r, e+len(d)-1)
	default: // no exponent
		switch p := len(d) + e; {
		case e >= 0:
			s = d
			if d != "0" {
				s += strings.Repeat("0", e)
			}
			if r.IntN(2) == 0 {
				s += ".0"
			}
		case p > 0:
			s = d[:p] + "." + d[p:]
		default:
			s = "0." + strings.Repeat("0", -p) + d
		}
	}
	if n.neg {
		s = "-" + s
	}
	return s
}

func expPart(r *rand.Rand, e int) string {
	s := []string{"e", "E"}[r.IntN(2)]
	switch {
	case e < 0:
		s += "-"
		e = -e
	case r.IntN(2) == 0:
		s += "+"
	}
	return s + strings.Repeat("0", r.IntN(2)) + strconv.Itoa(e)
}

// A JSON document to spell: object members are shuffled, whitespace is
// sprinkled, strings are escaped or not, numbers spelled at random.
type (
	jObj    []jMember
	jMember struct {
		key string
		val any // jObj, []any, string, decNum, jStop, jLit
	}
	jStop string // the stop parameter: a string, or an array of one
	jLit  string // true, false, null
)

type speller struct {
	r   *rand.Rand
	buf bytes.Buffer
}

func (s *speller) ws() {
	s.buf.WriteString([]string{"", "", " ", "\n", "\t", "\r\n  "}[s.r.IntN(6)])
}

func (s *speller) value(v any) {
	s.ws()
	switch v := v.(type) {
	case jObj:
		members := append(jObj(nil), v...)
		s.r.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
		s.buf.WriteByte('{')
		for i, m := range members {
			if i > 0 {
				s.buf.WriteByte(',')
			}
			s.value(m.key)
			s.buf.WriteByte(':')
			s.value(m.val)
		}
		s.ws()
		s.buf.WriteByte('}')
	case []any:
		s.buf.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				s.buf.WriteByte(',')
			}
			s.value(e)
		}
		s.ws()
		s.buf.WriteByte(']')
	case string:
		s.str(v)
	case decNum:
		s.buf.WriteString(v.spell(s.r))
	case jStop:
		if s.r.IntN(2) == 0 {
			s.value([]any{string(v)})
		} else {
			s.str(string(v))
		}
	case jLit:
		s.buf.WriteString(string(v))
	default:
		panic(fmt.Sprintf("speller: %T", v))
	}
	s.ws()
}

// str writes a valid UTF-8 string, each character as itself, escaped
// the way encoding/json escapes it, or as \uXXXX (a surrogate pair above
// the BMP).
func (s *speller) str(v string) {
	s.buf.WriteByte('"')
	for _, c := range v {
		switch mode := s.r.IntN(3); {
		case mode == 0 && c >= 0x20 && c != '"' && c != '\\':
			s.buf.WriteRune(c)
		case mode == 1:
			b, _ := json.Marshal(string(c))
			s.buf.Write(b[1 : len(b)-1])
		default:
			if c > 0xFFFF {
				hi, lo := utf16.EncodeRune(c)
				fmt.Fprintf(&s.buf, `\u%04x\u%04X`, hi, lo)
			} else {
				fmt.Fprintf(&s.buf, `\u%04x`, c)
			}
		}
	}
	s.buf.WriteByte('"')
}

// keyJob is what FuzzKeyCanonical varies: every field determines the
// answer.
type keyJob struct {
	tenant, model, system, prompt, stop, note string
	temp                                      int // thousandths, 0…2000
	topK, maximum                             decNum
}

func (k keyJob) doc(id string) jObj {
	return jObj{
		{"id", id},
		{"tenant", k.tenant},
		{"model", k.model},
		{"temperature", decNum{digits: strconv.Itoa(k.temp), exp: -3}},
		{"messages", []any{
			jObj{{"role", k.system}, {"content", "be brief"}},
			jObj{{"role", "user"}, {"content", k.prompt}},
		}},
		{"stop", jStop(k.stop)},
		{"tools", []any{jObj{{"type", "function"}, {"function", jObj{
			{"name", "f"},
			{"parameters", jObj{{"type", "object"}, {"properties", jObj{{"x", jObj{{"type", "number"}, {"maximum", k.maximum}}}}}}},
		}}}}},
		{"top_k", k.topK}, // an extra field
		{"x_meta", jObj{{"note", k.note}, {"list", []any{k.topK, jLit("true"), jLit("null")}}}}, // nested extra
	}
}

func (k keyJob) spell(seed uint64, stream uint64, id string) []byte {
	s := speller{r: rand.New(rand.NewPCG(seed, stream))}
	s.value(k.doc(id))
	return s.buf.Bytes()
}

// plus1 returns n with its digits one greater: another value.
func plus1(n decNum) decNum {
	u, _ := strconv.ParseUint(n.digits, 10, 64)
	n.digits = strconv.FormatUint(u+1, 10)
	return n
}

// FuzzKeyCanonical: two spellings of one job — members in another order,
// other whitespace, strings escaped otherwise, numbers spelled otherwise
// (0.7, 0.70, 7e-1), a stop string or an array of it, another request ID —
// have the same dedupe key; changing any one field's value changes it.
func FuzzKeyCanonical(f *testing.F) {
	f.Add("hi", "note", uint16(700), int64(7), int8(-1), uint32(10), uint64(1), uint8(0))
	f.Add("", "", uint16(0), int64(0), int8(-3), uint32(0), uint64(2), uint8(1))
	f.Add("héllo 😀 \"quoted\" \\ \n\t<&>", "ünï", uint16(2000), int64(-123456789), int8(12), uint32(4000000000), uint64(3), uint8(2))
	f.Add("x", "y", uint16(1), int64(9223372036854775807), int8(-20), uint32(1), uint64(4), uint8(9))
	f.Add("x", "y", uint16(1999), int64(-9223372036854775808), int8(20), uint32(5), uint64(5), uint8(4))
	f.Add("-0", "0", uint16(1000), int64(0), int8(3), uint32(0), uint64(6), uint8(9))
	f.Fuzz(func(t *testing.T, prompt, note string, temp uint16, mant int64, exp int8, maximum uint32, seed uint64, which uint8) {
		if len(prompt)+len(note) > 32<<10 {
			t.Skip("spelled out, the job could exceed the job size limit")
		}
		k := keyJob{
			tenant: "t1", model: "m", system: protocol.RoleSystem, stop: "END",
			prompt: strings.ToValidUTF8(prompt, "\uFFFD"), note: strings.ToValidUTF8(note, "\uFFFD"),
			temp:    int(temp % 2001),
			topK:    newDecNum(mant, int(exp)%21),
			maximum: newDecNum(int64(maximum), -2),
		}
		key := func(doc []byte) string {
			t.Helper()
			j, err := protocol.DecodeJob(doc, "default-model", protocol.Limits{})
			if err != nil {
				t.Fatalf("job rejected: %v\n%s", err, doc)
			}
			h, err := Key(j)
			if err != nil {
				t.Fatalf("Key: %v\n%s", err, doc)
			}
			return h
		}

		a, b := k.spell(seed, 1, "a"), k.spell(seed, 2, "b")
		if key(a) != key(b) {
			t.Fatalf("one job, two keys:\n%s\n%s", a, b)
		}

		changed := k
		switch which % 10 {
		case 0:
			changed.prompt += "!"
		case 1:
			changed.temp = (k.temp + 1) % 2001
		case 2:
			changed.topK = plus1(k.topK)
		case 3:
			changed.maximum = plus1(k.maximum)
		case 4:
			changed.note += "x"
		case 5:
			changed.stop = "END2"
		case 6:
			changed.tenant = "t2"
		case 7:
			changed.model = "m2"
		case 8:
			changed.system = protocol.RoleDeveloper
		case 9:
			changed.topK.neg = !k.topK.neg
			if k.topK.digits == "0" {
				changed.topK = plus1(k.topK) // -0 is 0
			}
		}
		c := changed.spell(seed, 3, "a")
		if key(a) == key(c) {
			t.Fatalf("change %d kept the key:\n%s\n%s", which%10, a, c)
		}
	})
}
