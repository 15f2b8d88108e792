package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
)

// A live reply (HeaderLive) is stored in batches: one stored message holds
// the last event of the batch, with the events before it, in order, in
// its "before" field. A reader that knows only single events (an older
// worker resuming the reply, an older follower's check for the end) reads
// the message as its last event, which is what it looks for there; a
// reader that reads every event expands it with DecodeStored.

// HeaderBatch is carried by a stored message that holds several events:
// the seq of its first one. Its Nats-Msg-Id names its last (after the
// last colon).
const HeaderBatch = "Chatfleet-Batch"

// StoredBatch joins the JSON of consecutive events into one stored
// message: the last one, with the others in its "before" field. One event
// is stored as it is.
func StoredBatch(events [][]byte) ([]byte, error) {
	if len(events) == 0 {
		return nil, errors.New("an empty batch")
	}
	last := events[len(events)-1]
	if len(events) == 1 {
		return last, nil
	}
	if len(last) < 3 || last[0] != '{' || last[len(last)-1] != '}' {
		return nil, errors.New("the last event of a batch is not a JSON object with fields")
	}
	before := events[:len(events)-1]
	size := len(last) + len(`,"before":[]`)
	for _, e := range before {
		size += len(e) + 1
	}
	b := make([]byte, 0, size)
	b = append(b, last[:len(last)-1]...)
	return append(appendBefore(b, before), '}'), nil
}

// appendBefore appends a batch's "before" field, as StoredBatch writes
// it: a comma first, then the events in order.
func appendBefore[E ~[]byte](b []byte, before []E) []byte {
	b = append(b, `,"before":[`...)
	for i, e := range before {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e...)
	}
	return append(b, ']')
}

// storedMessage is a stored message: an event and the events before it.
type storedMessage struct {
	Event
	Before []json.RawMessage `json:"before,omitempty"`
}

// DecodeStored decodes a stored message into its events, in order, and
// the JSON of each, as the worker published it live. (Only the last one of
// a batch not written by StoredBatch is encoded again.)
func DecodeStored(b []byte) ([]Event, [][]byte, error) {
	var m storedMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, nil, err
	}
	if len(m.Before) == 0 {
		return []Event{m.Event}, [][]byte{b}, nil
	}
	events, raws := make([]Event, 0, len(m.Before)+1), make([][]byte, 0, len(m.Before)+1)
	for _, raw := range m.Before {
		ev, err := DecodeEvent(raw)
		if err != nil {
			return nil, nil, err
		}
		events, raws = append(events, ev), append(raws, raw)
	}
	last, err := lastOfBatch(b, m)
	if err != nil {
		return nil, nil, err
	}
	return append(events, m.Event), append(raws, last), nil
}

// lastOfBatch is the JSON of a batch's last event: b without the "before"
// field StoredBatch appended, byte for byte, or else m's event encoded
// again.
func lastOfBatch(b []byte, m storedMessage) ([]byte, error) {
	suffix := append(appendBefore(nil, m.Before), '}')
	if n := len(b) - len(suffix); n > 0 && bytes.Equal(b[n:], suffix) {
		return append(b[:n:n], '}'), nil
	}
	return m.Event.Marshal()
}
