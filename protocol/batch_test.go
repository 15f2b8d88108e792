package protocol

import (
	"strconv"
	"testing"
)

func TestStoredBatchRoundTrip(t *testing.T) {
	var evs []Event
	var raw [][]byte
	for seq := uint64(3); seq <= 7; seq++ {
		ev := Event{V: Version, ID: "r1", Seq: seq, Type: EventChunk, Content: "t" + strconv.FormatUint(seq, 10) + `"},{`}
		if seq == 7 {
			ev = Event{V: Version, ID: "r1", Seq: seq, Type: EventDone, FinishReason: "stop", Usage: &Usage{TotalTokens: 5}}
		}
		b, err := ev.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		evs, raw = append(evs, ev), append(raw, b)
	}
	b, err := StoredBatch(raw)
	if err != nil {
		t.Fatal(err)
	}
	got, raws, err := DecodeStored(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(evs) {
		t.Fatalf("%d events, want %d: %s", len(got), len(evs), b)
	}
	for i := range got {
		gb, _ := got[i].Marshal()
		if string(gb) != string(raw[i]) || string(raws[i]) != string(raw[i]) {
			t.Errorf("event %d: %s (raw %s), want %s", i, gb, raws[i], raw[i])
		}
	}
	// A reader that knows single events only sees the last one.
	last, err := DecodeEvent(b)
	if err != nil || last.Seq != 7 || last.Type != EventDone || last.Usage.TotalTokens != 5 {
		t.Errorf("as one event: %+v, %v", last, err)
	}
}

func TestStoredBatchOfOne(t *testing.T) {
	one := []byte(`{"v":1,"id":"a","seq":1,"type":"meta"}`)
	b, err := StoredBatch([][]byte{one})
	if err != nil || string(b) != string(one) {
		t.Fatalf("%s, %v", b, err)
	}
	if _, err := StoredBatch(nil); err == nil {
		t.Error("an empty batch was accepted")
	}
	if _, err := StoredBatch([][]byte{one, []byte("[]")}); err == nil {
		t.Error("a batch ending in a non-object was accepted")
	}
	if b, err := StoredBatch([][]byte{one, []byte("{}")}); err == nil {
		t.Errorf("a batch ending in {} was accepted, as %s", b)
	}
}

// TestStoredBatchKeepsTheLastEventsBytes: the last event of a batch reads
// back byte for byte, with fields this version does not know (a newer
// worker's), as the event itself came live.
func TestStoredBatchKeepsTheLastEventsBytes(t *testing.T) {
	first := []byte(`{"v":1,"id":"a","seq":2,"type":"chunk","content":"x"}`)
	last := []byte(`{"v":1,"id":"a","seq":3,"type":"done","finish_reason":"stop","new_field":7}`)
	b, err := StoredBatch([][]byte{first, last})
	if err != nil {
		t.Fatal(err)
	}
	evs, raws, err := DecodeStored(b)
	if err != nil || len(evs) != 2 || string(raws[0]) != string(first) || string(raws[1]) != string(last) {
		t.Fatalf("raws %q, %v; want the events' own bytes", raws, err)
	}
}

// FuzzDecodeStored: a stored message is input from a stranger (any NATS
// client may write one where a reader looks); decoding never panics, and
// what decodes gives one JSON per event.
func FuzzDecodeStored(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"a","seq":3,"type":"chunk","content":"c","before":[{"v":1,"id":"a","seq":2,"type":"meta"}]}`))
	f.Add([]byte(`{"before":[1,2,3]}`))
	f.Add([]byte(`{"before":[{"before":[{}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, raws, err := DecodeStored(b)
		if err == nil && len(evs) != len(raws) {
			t.Fatalf("%d events, %d raws", len(evs), len(raws))
		}
	})
}
