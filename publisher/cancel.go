package publisher

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/subjects"
)

// Cancel asks the fleet to cancel a request, wherever it is: still queued
// (it ends with cancelled when a worker pulls it, without an upstream
// call) or running on any worker (it ends with cancelled there). Its own
// producer sees a cancelled event; requests sharing its generation are not
// affected. Cancel returns once the request is recorded; it returns
// ErrAlreadyFinished when the request has already ended.
func (p *Publisher) Cancel(ctx context.Context, tenant, id string) error {
	if tenant == "" {
		tenant = protocol.DefaultTenant
	}
	if err := subjects.ValidName("tenant", tenant); err != nil {
		return err
	}
	if err := subjects.ValidName("id", id); err != nil {
		return err
	}
	finished, err := p.finished(ctx, tenant, id)
	if err != nil {
		return err
	}
	if finished {
		return ErrAlreadyFinished
	}
	// A plain JetStream publish on the key's subject is what a KV put
	// sends; unlike a put through a bucket handle it needs no bucket
	// lookup (STREAM.INFO), so a producer allowed only to publish its own
	// tenant's cancel keys may send it.
	_, err = p.js.Publish(ctx, p.names.CancelSubject(tenant, id), []byte(time.Now().UTC().Format(time.RFC3339Nano)))
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("publisher: cancel bucket %s (%s): %w", p.names.CancelBucket(), topologyHint, jetstream.ErrBucketNotFound)
	}
	return err
}

// finished reports whether the request's last stored event is terminal.
func (p *Publisher) finished(ctx context.Context, tenant, id string) (bool, error) {
	ev, found, err := p.LastEvent(ctx, tenant, id)
	if !found {
		return false, err
	}
	return err == nil && ev.Type.Terminal(), nil
}
