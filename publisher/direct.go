package publisher

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// lastStored returns the data of the last message the replies stream
// stores on subject; found is false when it stores none. It asks with a
// direct get whose subject names the stored subject
// (<api>.DIRECT.GET.<stream>.<subject>): the server answers that form
// with the last message for that subject only, so a producer allowed to
// read nothing but its own replies may send it, and it needs no stream
// lookup (STREAM.INFO) first. The replies stream allows direct gets.
func (p *Publisher) lastStored(ctx context.Context, subject string) (data []byte, found bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	stream := p.names.RepliesStream()
	msg, err := p.nc.RequestWithContext(ctx, p.opts.apiPrefix+"DIRECT.GET."+stream+"."+subject, nil)
	if errors.Is(err, nats.ErrNoResponders) {
		// No stream listens: it does not exist (yet).
		return nil, false, fmt.Errorf("publisher: replies stream %s (%s): %w", stream, topologyHint, jetstream.ErrStreamNotFound)
	}
	if err != nil {
		return nil, false, fmt.Errorf("publisher: read the replies stream %s: %w", stream, err)
	}
	switch status := msg.Header.Get("Status"); status {
	case "":
		return msg.Data, true, nil
	case "404":
		return nil, false, nil
	default:
		return nil, false, fmt.Errorf("publisher: read the replies stream %s: status %s %s", stream, status, msg.Header.Get("Description"))
	}
}
