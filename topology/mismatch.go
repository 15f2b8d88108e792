package topology

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrMismatch is matched (errors.Is) by every *MismatchError.
var ErrMismatch = errors.New("topology: existing resource has a different configuration")

// MismatchError names an existing resource whose configuration differs from
// what this process is configured for. Only settings chatfleet sets are
// compared: a default the server filled in is not a difference.
type MismatchError struct {
	Kind  string   // "stream", "consumer" or "bucket"
	Name  string   // its name
	Diffs []string // "max_msgs is 5000, want 10000", …
	// Fields are the same differences, in the same order, by setting.
	Fields []FieldDiff
}

// FieldDiff is one setting of a resource that differs.
type FieldDiff struct {
	Field string // the setting as JetStream names it: "max_age", "ttl", …
	Have  string // the existing resource's value
	Want  string // this process's value
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s; chatfleet does not change it: align this process's configuration, or edit or remove the %s "+
		"(e.g. with the nats CLI)", e.Summary(), e.Kind)
}

// Summary is Error without its advice, for a caller that gives its own:
// the resource and each difference.
func (e *MismatchError) Summary() string {
	return fmt.Sprintf("topology: %s %s exists with a different configuration: %s", e.Kind, e.Name, strings.Join(e.Diffs, "; "))
}

// Is reports whether target is ErrMismatch.
func (e *MismatchError) Is(target error) bool { return target == ErrMismatch }

type differ struct {
	diffs  []string
	fields []FieldDiff
}

func (d *differ) check(field string, have, want any) {
	if h, w := fmt.Sprint(have), fmt.Sprint(want); h != w {
		d.diffs = append(d.diffs, fmt.Sprintf("%s is %s, want %s", field, h, w))
		d.fields = append(d.fields, FieldDiff{Field: field, Have: h, Want: w})
	}
}

// mismatch returns the error for the differences found, nil for none.
func (d *differ) mismatch(kind, name string) error {
	if len(d.diffs) == 0 {
		return nil
	}
	return &MismatchError{Kind: kind, Name: name, Diffs: d.diffs, Fields: d.fields}
}

func streamDiffs(have, want jetstream.StreamConfig) error {
	var d differ
	hs, ws := slices.Clone(have.Subjects), slices.Clone(want.Subjects)
	slices.Sort(hs)
	slices.Sort(ws)
	d.check("subjects", hs, ws)
	d.check("retention", have.Retention, want.Retention)
	d.check("storage", have.Storage, want.Storage)
	d.check("replicas", have.Replicas, want.Replicas)
	d.check("discard", have.Discard, want.Discard)
	d.check("max_msgs", unlimited(have.MaxMsgs), unlimited(want.MaxMsgs))
	d.check("max_bytes", unlimited(have.MaxBytes), unlimited(want.MaxBytes))
	d.check("max_age", have.MaxAge, want.MaxAge)
	d.check("max_msg_size", unlimited(int64(have.MaxMsgSize)), unlimited(int64(want.MaxMsgSize)))
	if want.Duplicates != 0 { // unset: the server's default, not chatfleet's choice
		d.check("duplicate_window", have.Duplicates, want.Duplicates)
	}
	d.check("republish", republish(have.RePublish), republish(want.RePublish))
	return d.mismatch("stream", want.Name)
}

func republish(r *jetstream.RePublish) string {
	if r == nil {
		return "none"
	}
	return r.Source + " → " + r.Destination
}

func consumerDiffs(have, want jetstream.ConsumerConfig) error {
	var d differ
	d.check("filter_subject", have.FilterSubject, want.FilterSubject)
	d.check("ack_policy", have.AckPolicy, want.AckPolicy)
	d.check("ack_wait", have.AckWait, want.AckWait)
	d.check("max_deliver", have.MaxDeliver, want.MaxDeliver)
	d.check("max_ack_pending", have.MaxAckPending, want.MaxAckPending)
	return d.mismatch("consumer", want.Durable)
}

func bucketDiffs(have jetstream.KeyValueStatus, want jetstream.KeyValueConfig) error {
	var d differ
	d.check("ttl", have.TTL(), want.TTL)
	cfg := have.Config()
	d.check("storage", cfg.Storage, want.Storage)
	d.check("replicas", cfg.Replicas, want.Replicas)
	d.check("max_value_size", cfg.MaxValueSize, normalizedMaxValueSize(want.MaxValueSize))
	return d.mismatch("bucket", want.Bucket)
}

// unlimited spells "no limit" one way: a config leaves it 0, the server
// reports -1.
func unlimited(v int64) int64 {
	if v <= 0 {
		return -1
	}
	return v
}

// normalizedMaxValueSize is what the server reports for an unset size.
func normalizedMaxValueSize(v int32) int32 {
	if v == 0 {
		return -1
	}
	return v
}
