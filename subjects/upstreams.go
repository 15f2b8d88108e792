package subjects

import "strconv"

// UpstreamsBucket names the key-value bucket of upstreams' fleet-wide
// limits, their minute windows and their backoff, e.g. "chat_upstreams".
func (n Names) UpstreamsBucket() string { return n.res + "_upstreams" }

// UpstreamKey is the upstreams bucket's key of an upstream's limits: its
// name, one token.
func (n Names) UpstreamKey(upstream string) string { return upstream }

// UpstreamWindowKey is the upstreams bucket's key of the requests and
// tokens the fleet used at an upstream this minute.
func (n Names) UpstreamWindowKey(upstream string) string { return upstream + ".window" }

// UpstreamBackoffKey is the upstreams bucket's key of the fleet's backoff
// from an upstream that answered 429.
func (n Names) UpstreamBackoffKey(upstream string) string { return upstream + ".backoff" }

// UpstreamShareKey is the in-flight bucket's key of share i of an
// upstream's fleet-wide stream cap: _shares.upstream.<upstream>.<i>. Four
// tokens, like a tenant's share, and a namespace of its own.
func (n Names) UpstreamShareKey(upstream string, i int) string {
	return "_shares.upstream." + upstream + "." + strconv.Itoa(i)
}

// UpstreamShares matches every share of an upstream's stream cap.
func (n Names) UpstreamShares(upstream string) string { return "_shares.upstream." + upstream + ".*" }
