package config

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/chatfleet/chatfleet/subjects"
	"github.com/chatfleet/chatfleet/topology"
)

// ExplainTopology returns err unchanged unless it is (or wraps) a
// *topology.MismatchError; then it adds which variable sets each setting
// that differs, the value that joins the fleet as it is, and how to
// change the fleet's setting instead, in place of the mismatch's generic
// advice. errors.Is and errors.As still see err.
func (e Env) ExplainTopology(err error) error {
	var mm *topology.MismatchError
	if !errors.As(err, &mm) {
		return err
	}
	names, nerr := subjects.New(e.Prefix)
	if nerr != nil {
		return err
	}
	var keep, outside []string
	for _, f := range mm.Fields {
		v, ok := topologyVar(names, mm.Kind, mm.Name, f.Field)
		if !ok {
			outside = append(outside, "no variable sets "+f.Field)
			continue
		}
		if k, ok := v.keep(v.name, f.Have); ok {
			keep = append(keep, k)
		} else {
			outside = append(outside, fmt.Sprintf("no value of %s gives %s %s", v.name, f.Field, f.Have))
		}
	}
	var hint []string
	if len(keep) > 0 {
		hint = append(hint, "to run with the existing "+mm.Kind+" as it is, set "+strings.Join(keep, ", "))
	}
	if len(outside) > 0 {
		hint = append(hint, strings.Join(outside, ", ")+": the "+mm.Kind+" was changed outside chatfleet")
	}
	hint = append(hint, fmt.Sprintf("to change the fleet's setting, edit the %s %s with the nats CLI, or delete it "+
		"(its contents are lost) and start again", mm.Kind, mm.Name))
	msg := strings.Replace(err.Error(), mm.Error(), mm.Summary(), 1)
	return &rewordedError{msg: msg + "; " + strings.Join(hint, "; "), err: err}
}

// minStreamJobBytes is the least max_msg_size of the jobs stream: it takes
// twice the workers' CHATFLEET_MAX_JOB_BYTES, at least this.
const minStreamJobBytes = 8 << 20

// topologySetting is the variable behind a resource's setting.
type topologySetting struct {
	name string
	// keep returns what to set the variable name to for the resource's
	// value have, or false when no value gives it.
	keep func(name, have string) (string, bool)
}

// same: the variable takes the resource's value as it is.
func same(name, have string) (string, bool) { return name + "=" + have, true }

// jobBytes: the jobs stream's max_msg_size is max(8 MiB, 2×MaxJobBytes).
func jobBytes(name, have string) (string, bool) {
	n, err := strconv.ParseInt(have, 10, 64)
	switch {
	case err != nil:
		return "", false
	case n == minStreamJobBytes:
		return fmt.Sprintf("%s ≤ %d", name, n/2), true
	case n > minStreamJobBytes && n%2 == 0 && n/2 <= math.MaxInt32:
		return fmt.Sprintf("%s=%d", name, n/2), true
	}
	return "", false
}

// topologyVar returns the variable that sets field of the resource kind
// name, as Env.Topology and topology.Ensure derive it.
func topologyVar(n subjects.Names, kind, name, field string) (topologySetting, bool) {
	if field == "replicas" {
		return replicas, true
	}
	if kind == "consumer" && strings.HasPrefix(name, n.QueueConsumerPrefix()) {
		name = queueConsumers // one tenant's queue stands for all
	}
	v, ok := topologySettings(n)[kind+" "+name][field]
	return v, ok
}

// queueConsumers is the key of every queue consumer's settings.
const queueConsumers = "queues"

// replicas sets the replicas of every stream and bucket.
var replicas = topologySetting{"CHATFLEET_REPLICAS", same}

// topologySettings maps each resource ("stream CHAT_JOBS") to its settings
// a variable sets, but replicas.
func topologySettings(n subjects.Names) map[string]map[string]topologySetting {
	return map[string]map[string]topologySetting{
		"stream " + n.JobsStream(): {
			"max_msgs":         {"CHATFLEET_QUEUE_LIMIT", same},
			"duplicate_window": {"CHATFLEET_DUPLICATE_WINDOW", same},
			"metadata." + topology.MetadataQueueTimeout: {"CHATFLEET_QUEUE_TIMEOUT", same},
			"max_msg_size": {"CHATFLEET_MAX_JOB_BYTES", jobBytes},
			"metadata." + topology.MetadataMaxQueuedPerTenant: {"CHATFLEET_MAX_QUEUED_PER_TENANT", same},
			"max_msgs_per_subject":                            {"CHATFLEET_MAX_QUEUED_PER_TENANT", same},
		},
		"stream " + n.RepliesStream(): {
			"max_age":   {"CHATFLEET_REPLY_MAX_AGE", same},
			"max_bytes": {"CHATFLEET_REPLY_MAX_BYTES", same},
		},
		"stream " + n.DeadLetterStream(): {
			"max_age": {"CHATFLEET_DLQ_MAX_AGE", same},
		},
		"consumer " + queueConsumers: {
			"ack_wait":        {"CHATFLEET_ACK_WAIT", same},
			"max_deliver":     {"CHATFLEET_MAX_DELIVER", same},
			"max_ack_pending": {"CHATFLEET_MAX_ACK_PENDING", same},
		},
		"bucket " + n.InflightBucket(): {
			"ttl": {"CHATFLEET_LEASE_TTL", same},
		},
		"bucket " + n.CacheBucket(): {
			"ttl":            {"CHATFLEET_CACHE_TTL", same},
			"max_value_size": {"CHATFLEET_CACHE_MAX_BYTES", same},
		},
		"bucket " + n.CancelBucket(): {
			"ttl": {"CHATFLEET_CANCEL_TTL", same},
		},
	}
}

// TopologyVariables returns every variable that sets the topology: the
// settings every process of a fleet must agree on, or be refused.
func TopologyVariables() []string {
	vars := []string{replicas.name}
	for _, settings := range topologySettings(subjects.Default()) {
		for _, v := range settings {
			vars = append(vars, v.name)
		}
	}
	slices.Sort(vars)
	return slices.Compact(vars)
}
