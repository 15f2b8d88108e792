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
// what this process is configured for.
type MismatchError struct {
	Kind  string   // "stream", "consumer" or "bucket"
	Name  string   // its name
	Diffs []string // "max_msgs is 5000, want 10000", …
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("topology: %s %s exists with a different configuration: %s; chatfleet does not change it: "+
		"align this process's configuration, or edit or remove the %s (e.g. with the nats CLI)",
		e.Kind, e.Name, strings.Join(e.Diffs, "; "), e.Kind)
}

// Is reports whether target is ErrMismatch.
func (e *MismatchError) Is(target error) bool { return target == ErrMismatch }

type differ struct{ diffs []string }

func (d *differ) check(field string, have, want any) {
	if fmt.Sprint(have) != fmt.Sprint(want) {
		d.diffs = append(d.diffs, fmt.Sprintf("%s is %v, want %v", field, have, want))
	}
}

func streamDiffs(have, want jetstream.StreamConfig) []string {
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
	d.check("duplicate_window", have.Duplicates, want.Duplicates)
	d.check("republish", republish(have.RePublish), republish(want.RePublish))
	return d.diffs
}

func republish(r *jetstream.RePublish) string {
	if r == nil {
		return "none"
	}
	return r.Source + " → " + r.Destination
}

func consumerDiffs(have, want jetstream.ConsumerConfig) []string {
	var d differ
	d.check("filter_subject", have.FilterSubject, want.FilterSubject)
	d.check("ack_policy", have.AckPolicy, want.AckPolicy)
	d.check("ack_wait", have.AckWait, want.AckWait)
	d.check("max_deliver", have.MaxDeliver, want.MaxDeliver)
	d.check("max_ack_pending", have.MaxAckPending, want.MaxAckPending)
	return d.diffs
}

func bucketDiffs(have jetstream.KeyValueStatus, want jetstream.KeyValueConfig) []string {
	var d differ
	d.check("ttl", have.TTL(), want.TTL)
	cfg := have.Config()
	d.check("storage", cfg.Storage, want.Storage)
	d.check("replicas", cfg.Replicas, want.Replicas)
	d.check("max_value_size", cfg.MaxValueSize, normalizedMaxValueSize(want.MaxValueSize))
	return d.diffs
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
