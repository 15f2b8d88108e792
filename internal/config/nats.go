package config

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Connect connects to NATS with the configured authentication and keeps
// reconnecting forever, also while a server refuses the credentials
// (nats.go would otherwise close the connection for good after the second
// refusal, leaving a waiting worker waiting on nothing). With
// waitForServer it also waits for a server that is not up yet, or that
// refuses it (workers): the connection is returned before it is
// established (nats.ConnectHandler among extra says when); without, it
// fails at once (the CLI's clients). extra options are applied last.
func (e Env) Connect(name string, waitForServer bool, extra ...nats.Option) (*nats.Conn, error) {
	if (e.NATSTLSCert == "") != (e.NATSTLSKey == "") {
		return nil, errors.New("config: CHATFLEET_NATS_TLS_CERT and CHATFLEET_NATS_TLS_KEY go together: set both (a client certificate and its key), or neither")
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(waitForServer),
		nats.IgnoreAuthErrorAbort(),
	}
	if e.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(e.NATSCreds))
	}
	if e.NATSNKey != "" {
		opt, err := nats.NkeyOptionFromSeed(e.NATSNKey)
		if err != nil {
			return nil, e.Redact(fmt.Errorf("config: CHATFLEET_NATS_NKEY: %w", err))
		}
		opts = append(opts, opt)
	}
	if e.NATSUser != "" {
		opts = append(opts, nats.UserInfo(e.NATSUser, e.NATSPassword))
	}
	if e.NATSToken != "" {
		opts = append(opts, nats.Token(e.NATSToken))
	}
	if e.NATSTLSCA != "" {
		opts = append(opts, nats.RootCAs(e.NATSTLSCA))
	}
	if e.NATSTLSCert != "" {
		opts = append(opts, nats.ClientCert(e.NATSTLSCert, e.NATSTLSKey))
	}
	nc, err := nats.Connect(e.NATSURL, append(opts, extra...)...)
	if err != nil {
		return nil, e.Redact(fmt.Errorf("config: connect to NATS at %s: %w", RedactURL(e.NATSURL), err))
	}
	return nc, nil
}
