package llm

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/chatfleet/chatfleet/llm/llmtest"
)

// FuzzDialectReaderPieces: a body read in pieces of any size reads the
// same, and ends with the same error, as the body read at once — the
// reader keeps a line cut between reads, a CR and its LF included, and
// reuses its buffer without losing bytes.
func FuzzDialectReaderPieces(f *testing.F) {
	for _, d := range llmtest.Dialects() {
		f.Add(d.Body, uint16(7))
	}
	f.Add([]byte("data: {\"choices\":[]}\r\r\ndata: [DONE]"), uint16(1))
	f.Add([]byte("\ufeffdata: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: [DONE]\n"), uint16(0)) // a BOM cut between reads
	f.Add(append(bytes.Repeat([]byte(": keep-alive\n"), 1000), "data: [DONE]\n"...), uint16(4095))
	f.Add([]byte("data: {\"x\":\""+string(bytes.Repeat([]byte("x"), 3*minRead))+"\"}\n\ndata: [DONE]\n"), uint16(1000))
	f.Fuzz(func(t *testing.T, body []byte, piece uint16) {
		whole, wholeErr := readDialect(bytes.NewReader(body))
		pieces, piecesErr := readDialect(&pieceReader{b: body, n: int(piece%8192) + 1})
		if !bytes.Equal(whole, pieces) || !errors.Is(piecesErr, wholeErr) && piecesErr.Error() != wholeErr.Error() {
			t.Fatalf("in pieces of %d:\n%q (%v)\nat once:\n%q (%v)", int(piece%8192)+1, pieces, piecesErr, whole, wholeErr)
		}
	})
}

// readDialect reads src through a dialectReader to its end.
func readDialect(src io.Reader) ([]byte, error) {
	r := newDialectReader(src, &StreamInfo{})
	out, err := io.ReadAll(r)
	if err == nil {
		err = io.EOF
	}
	return out, err
}

// pieceReader returns b at most n bytes a Read.
type pieceReader struct {
	b []byte
	n int
}

func (p *pieceReader) Read(buf []byte) (int, error) {
	if len(p.b) == 0 {
		return 0, io.EOF
	}
	n := copy(buf, p.b[:min(p.n, len(p.b))])
	p.b = p.b[n:]
	return n, nil
}
