package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/chatfleet/chatfleet/internal/topology"
	"github.com/chatfleet/chatfleet/subjects"
)

// ExplainTopology returns err unchanged unless it is (or wraps) a
// *topology.MismatchError; then it adds which variable sets each setting
// that differs, the value that joins the fleet as it is, and how to
// change the fleet's setting instead.
func (e Env) ExplainTopology(err error) error {
	var mm *topology.MismatchError
	if !errors.As(err, &mm) {
		return err
	}
	names, nerr := subjects.New(e.Prefix)
	if nerr != nil {
		return err
	}
	var keep, unset []string
	for _, f := range mm.Fields {
		v, ok := topologyVar(names, mm.Kind, mm.Name, f.Field)
		switch {
		case !ok:
			unset = append(unset, f.Field)
		case v.value == nil:
			keep = append(keep, fmt.Sprintf("%s to match %s %s", v.name, f.Field, f.Have))
		default:
			keep = append(keep, v.name+"="+v.value(f.Have))
		}
	}
	var hint []string
	if len(keep) > 0 {
		hint = append(hint, "to run with the existing "+mm.Kind+" as it is, set "+strings.Join(keep, ", "))
	}
	if len(unset) > 0 {
		hint = append(hint, "no variable sets "+strings.Join(unset, ", ")+": the "+mm.Kind+" was changed outside chatfleet")
	}
	hint = append(hint, fmt.Sprintf("to change the fleet's setting, edit the %s %s with the nats CLI, or delete it "+
		"(its contents are lost) and start again", mm.Kind, mm.Name))
	return fmt.Errorf("%w; %s", err, strings.Join(hint, "; "))
}

// topologySetting is the variable behind a resource's setting; value,
// when not nil, turns the resource's value into the variable's.
type topologySetting struct {
	name  string
	value func(have string) string
}

func same(have string) string { return have }

// topologyVar returns the variable that sets field of the resource kind
// name, as Env.Topology and topology.Ensure derive it.
func topologyVar(n subjects.Names, kind, name, field string) (topologySetting, bool) {
	if field == "replicas" {
		return topologySetting{"CHATFLEET_REPLICAS", same}, true
	}
	byResource := map[string]map[string]topologySetting{
		"stream " + n.JobsStream(): {
			"max_msgs":         {"CHATFLEET_QUEUE_LIMIT", same},
			"duplicate_window": {"CHATFLEET_DUPLICATE_WINDOW", same},
			"metadata." + topology.MetadataQueueTimeout: {"CHATFLEET_QUEUE_TIMEOUT", same},
			// The stream takes twice the workers' limit, at least 8 MiB.
			"max_msg_size": {"CHATFLEET_MAX_JOB_BYTES", nil},
		},
		"stream " + n.RepliesStream(): {
			"max_age":   {"CHATFLEET_REPLY_MAX_AGE", same},
			"max_bytes": {"CHATFLEET_REPLY_MAX_BYTES", same},
		},
		"stream " + n.DeadLetterStream(): {
			"max_age": {"CHATFLEET_DLQ_MAX_AGE", same},
		},
		"consumer " + n.WorkersConsumer(): {
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
	v, ok := byResource[kind+" "+name][field]
	return v, ok
}
