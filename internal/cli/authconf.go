package cli

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/chatfleet/chatfleet/subjects"
	"github.com/chatfleet/chatfleet/tools"
	"github.com/chatfleet/chatfleet/worker"
)

// fleetAuth is the NATS authorization `chatfleet auth` generates for one
// fleet (one prefix): a fleet account holding every stream, consumer and
// bucket, with the workers and the operators as its users, and one
// account per tenant that imports exactly its own slice of the fleet.
//
// Accounts, not users of one account: a NATS server never checks the
// reply subject of a publish against the publisher's permissions, and
// JetStream sends its answers (a publish's ack, a direct get's message)
// there. In one account a tenant could have those answers stored by any
// stream or bucket of the fleet — under another tenant's cancel key,
// say. A reply subject given in a tenant's account stays there: the
// fleet answers through the import.
type fleetAuth struct {
	names     subjects.Names
	workers   identity
	operators identity
	gateway   identity
	tools     identity // the fleet's tool servers
	prepare   identity // the tenants' preparation services
	tenants   []identity
	listen    string
	storeDir  string
	tls       *tlsFiles // nil: no TLS block
}

// identity is one NATS user of the generated configuration.
type identity struct {
	file     string // base name of its settings file: workers, operators, tenant-<name>
	role     string // what it is, for people: "the workers", "tenant acme"
	tenant   string // the tenant, for a tenant's identity
	user     string // user name of a password identity
	password string // its password: a secret, written only to the settings file
	hash     string // the password's bcrypt hash, which the configuration holds
	nkey     string // public nkey of an nkey identity
	seedFile string // where its seed is, when chatfleet auth holds it
	kept     bool   // its secret came from an earlier run
}

// tlsFiles are the server's TLS files; with a CA, clients must present
// a certificate it signed.
type tlsFiles struct{ cert, key, ca string }

// fleetAccount is the fleet account's name, e.g. CHAT_FLEET.
func (a *fleetAuth) fleetAccount() string { return a.res() + "_FLEET" }

// tenantAccount is a tenant's account name, e.g. CHAT_TENANT_acme.
func (a *fleetAuth) tenantAccount(tenant string) string { return a.res() + "_TENANT_" + tenant }

// res is the prefix as a resource-name part, upper case: CHAT, ACME_CHAT.
func (a *fleetAuth) res() string { return strings.TrimSuffix(a.names.JobsStream(), "_JOBS") }

// apiPrefix is the subject prefix a tenant's account imports the fleet's
// JetStream API under: JS.<prefix>.API. Not $JS.API: every account
// without JetStream of its own has the server answer $JS.API requests
// with "JetStream not enabled for account", which would race the fleet's
// answer.
func (a *fleetAuth) apiPrefix() string { return "JS." + a.names.Prefix() + ".API" }

// permissions is one user's permissions block.
type permissions struct {
	pubAllow, pubDeny, subAllow []string
	responses                   bool // allow_responses: answer requests it received
}

// workerPermissions: everything a worker does in the fleet account,
// calling the fleet's tools and preparation services included (on
// <prefix>.tool.> and <prefix>.prepare.>, their streamed output on
// <prefix>.toolout.>, and asking the tool servers what they serve). The
// fleet account holds nothing but this fleet, so $KV.> is its buckets,
// today's and those added later.
func (a *fleetAuth) workerPermissions() permissions {
	p, n := a.names.Prefix(), a.names
	return permissions{
		pubAllow: []string{p + ".>", "$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "$KV.>", "$SRV.INFO." + tools.ServiceName},
		pubDeny:  []string{"$JS.EVENT.>"},
		subAllow: []string{p + ".>", "_INBOX.>", "$SRV.>",
			"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + n.JobsStream() + ".*"},
		responses: true,
	}
}

// operatorPermissions: the whole JetStream API and every bucket of the
// fleet account (init, status, dlq, cancelling any tenant's requests,
// tenants and the cache), submitting for any tenant, asking workers for
// their status; not writing reply or generation events, stored or live
// (readers trust a live event on a reply subject as the worker's), nor
// the workers' control subjects.
func (a *fleetAuth) operatorPermissions() permissions {
	p := a.names.Prefix()
	return permissions{
		pubAllow: []string{p + ".>", "$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "$KV.>", "$SRV.>"},
		pubDeny:  []string{"$JS.EVENT.>", p + ".write.>", p + ".reply.>", p + ".gen.>", p + ".ctl.>"},
		subAllow: []string{p + ".>", "_INBOX.>"},
	}
}

// gatewayPermissions: the gateway is a producer for every tenant its API
// keys map to (keys can be added while it runs, so any tenant):
// submitting, reading replies live and stored, cancelling, announcing a
// resumed stream to the other replicas, reading the API keys bucket, and
// asking the workers' service what it serves. Nothing else of the
// JetStream API, no other bucket, no reply or generation events.
func (a *fleetAuth) gatewayPermissions() permissions {
	p, n := a.names.Prefix(), a.names
	replies, keys := n.RepliesStream(), "KV_"+n.APIKeysBucket()
	return permissions{
		pubAllow: []string{
			p + ".jobs.*", p + ".pjobs.*.*", p + ".gateway.>",
			"$JS.API.DIRECT.GET." + replies + ".>",
			"$JS.API.CONSUMER.CREATE." + replies + ".>",
			"$JS.API.CONSUMER.MSG.NEXT." + replies + ".*",
			"$JS.API.CONSUMER.DELETE." + replies + ".*",
			"$KV." + n.CancelBucket() + ".>",
			"$JS.API.STREAM.INFO." + keys,
			"$JS.API.CONSUMER.CREATE." + keys + ".>",
			"$JS.API.CONSUMER.DELETE." + keys + ".*",
			"$JS.FC." + keys + ".>",
			"$SRV.PING." + worker.ServiceName, "$SRV.INFO." + worker.ServiceName,
		},
		subAllow: []string{p + ".reply.>", p + ".gateway.>", "_INBOX.>"},
	}
}

// toolPermissions: a tool server takes the calls of the fleet's tools
// in the tool servers' queue group (never a plain subscription, which
// would see every call), answers them (allow_responses), streams their
// output on <prefix>.toolout.>, and serves micro's PING, INFO and STATS
// of its service. Nothing else: no JetStream, no job, no reply.
func (a *fleetAuth) toolPermissions() permissions {
	p := a.names.Prefix()
	return permissions{
		pubAllow:  []string{p + ".toolout.>"},
		subAllow:  append([]string{p + ".tool.> " + tools.ServiceName}, microSubjects(tools.ServiceName)...),
		responses: true,
	}
}

// preparePermissions: a preparation service takes the tenants'
// preparation requests in its queue group, answers them, and serves
// micro's PING, INFO and STATS of its service. It publishes nothing but
// its answers.
func (a *fleetAuth) preparePermissions() permissions {
	return permissions{
		pubDeny:   []string{">"},
		subAllow:  append([]string{a.names.AllPrepares() + " " + tools.PrepareServiceName}, microSubjects(tools.PrepareServiceName)...),
		responses: true,
	}
}

// microSubjects are the subjects a NATS micro service named service
// subscribes to answer discovery: $SRV.<verb>, $SRV.<verb>.<service> and
// $SRV.<verb>.<service>.<id> for PING, INFO and STATS.
func microSubjects(service string) []string {
	return []string{"$SRV.PING", "$SRV.INFO", "$SRV.STATS", "$SRV.*." + service, "$SRV.*." + service + ".*"}
}

// tenantImport is one subject the fleet exports to a tenant and the
// tenant imports: a service (a request the fleet answers) or a stream.
type tenantImport struct {
	subject string // in the fleet account
	local   string // in the tenant's account ("" = the same)
	stream  bool
}

// tenantImports is everything one tenant's account reaches in the fleet:
// its jobs subjects, normal and by priority (with the JetStream ack), its live replies, the direct
// get of its own stored reply events, consumers of the replies stream
// filtered to its own events (the server refuses a create whose filter
// differs from the subject's), pulling from them and deleting them (an
// ordered consumer deletes the one it replaces), and its own cancel
// keys. Pulling and deleting are by consumer name, shared by every
// tenant (see sharedSubjects).
func (a *fleetAuth) tenantImports(tenant string) []tenantImport {
	n := a.names
	api := a.apiPrefix() + "."
	replies := n.RepliesStream()
	own := n.Prefix() + ".write." + tenant + ".>"
	ims := []tenantImport{
		{subject: n.Jobs(tenant)},
		{subject: n.PriorityJobs(tenant, "*")},
		{subject: n.Prefix() + ".reply." + tenant + ".>", stream: true},
		{subject: "$JS.API.DIRECT.GET." + replies + "." + own, local: api + "DIRECT.GET." + replies + "." + own},
		{subject: "$JS.API.CONSUMER.CREATE." + replies + ".*." + own, local: api + "CONSUMER.CREATE." + replies + ".*." + own},
	}
	for _, s := range a.sharedSubjects() {
		ims = append(ims, tenantImport{subject: s, local: api + strings.TrimPrefix(s, "$JS.API.")})
	}
	return append(ims, tenantImport{subject: "$KV." + n.CancelBucket() + "." + tenant + ".>"})
}

// sharedSubjects are the fleet's JetStream API subjects every tenant
// imports: pulling from and deleting a consumer of the replies stream by
// its name. A tenant can name only consumers it created: names are random
// and listing them is not exported.
func (a *fleetAuth) sharedSubjects() []string {
	r := a.names.RepliesStream()
	return []string{"$JS.API.CONSUMER.MSG.NEXT." + r + ".*", "$JS.API.CONSUMER.DELETE." + r + ".*"}
}

// tenantPermissions: a tenant's user may use its imports and nothing
// else, and subscribe to its replies and its account's inboxes.
func (a *fleetAuth) tenantPermissions(tenant string) permissions {
	var pub []string
	for _, im := range a.tenantImports(tenant) {
		if !im.stream {
			pub = append(pub, im.localSubject())
		}
	}
	return permissions{pubAllow: pub, subAllow: []string{a.names.Prefix() + ".reply." + tenant + ".>", "_INBOX.>"}}
}

func (im tenantImport) localSubject() string {
	if im.local != "" {
		return im.local
	}
	return im.subject
}

// write writes the nats-server configuration.
func (a *fleetAuth) write(w io.Writer) error {
	c := &confWriter{w: w}
	c.line("# nats-server configuration generated by `chatfleet auth` for the chatfleet prefix %s.", a.names.Prefix())
	c.line("# Run chatfleet auth again to add or remove a tenant (it keeps the secrets it wrote),")
	c.line("# then reload the server: nats-server --signal reload. No secret is written here:")
	c.line("# passwords appear as bcrypt hashes, nkeys as public keys.")
	c.line("listen: %s", quote(a.listen))
	c.open("jetstream {")
	c.line("store_dir: %s", quote(a.storeDir))
	c.close("}")
	if t := a.tls; t != nil {
		c.open("tls {")
		c.line("cert_file: %s", quote(t.cert))
		c.line("key_file: %s", quote(t.key))
		if t.ca != "" {
			c.line("ca_file: %s", quote(t.ca))
			c.line("# every client must present a certificate the CA signed")
			c.line("verify: true")
		}
		c.close("}")
	}
	c.open("accounts {")
	a.writeFleet(c)
	for _, t := range a.tenants {
		a.writeTenant(c, t)
	}
	c.close("}")
	return c.err
}

func (a *fleetAuth) writeFleet(c *confWriter) {
	c.line("# The fleet: every stream, consumer and bucket, the workers and the operators.")
	c.open("%s {", quote(a.fleetAccount()))
	c.line("jetstream: enabled")
	c.open("users: [")
	writeUser(c, a.workers, a.workerPermissions())
	writeUser(c, a.operators, a.operatorPermissions())
	writeUser(c, a.gateway, a.gatewayPermissions())
	writeUser(c, a.tools, a.toolPermissions())
	writeUser(c, a.prepare, a.preparePermissions())
	c.close("]")
	c.open("exports: [")
	var tenantAccounts []string
	for _, t := range a.tenants {
		tenantAccounts = append(tenantAccounts, quote(a.tenantAccount(t.tenant)))
		c.line("# tenant %s", t.tenant)
		for _, im := range a.tenantImports(t.tenant) {
			if slices.Contains(a.sharedSubjects(), im.subject) {
				continue
			}
			kind := "service"
			if im.stream {
				kind = "stream"
			}
			c.line("{ %s: %s, accounts: [%s] }", kind, quote(im.subject), quote(a.tenantAccount(t.tenant)))
		}
	}
	if len(tenantAccounts) > 0 {
		pull, del := a.sharedSubjects()[0], a.sharedSubjects()[1]
		c.line("# every tenant, by consumer name: pulling (its messages come back as a stream of answers) and deleting")
		c.line("{ service: %s, response_type: stream, accounts: [%s] }", quote(pull), strings.Join(tenantAccounts, ", "))
		c.line("{ service: %s, accounts: [%s] }", quote(del), strings.Join(tenantAccounts, ", "))
	}
	c.close("]")
	c.close("}")
}

func (a *fleetAuth) writeTenant(c *confWriter, t identity) {
	c.line("# Tenant %s: its own jobs, replies and cancels, nothing else. No JetStream of its own.", t.tenant)
	c.open("%s {", quote(a.tenantAccount(t.tenant)))
	c.open("users: [")
	writeUser(c, t, a.tenantPermissions(t.tenant))
	c.close("]")
	c.open("imports: [")
	for _, im := range a.tenantImports(t.tenant) {
		kind := "service"
		if im.stream {
			kind = "stream"
		}
		to := ""
		if im.local != "" {
			to = ", to: " + quote(im.local)
		}
		c.line("{ %s: { account: %s, subject: %s }%s }", kind, quote(a.fleetAccount()), quote(im.subject), to)
	}
	c.close("]")
	c.close("}")
}

func writeUser(c *confWriter, id identity, p permissions) {
	c.line("# %s", id.role)
	if id.nkey != "" {
		c.open("{ nkey: %s, permissions: {", quote(id.nkey))
	} else {
		c.open("{ user: %s, password: %s, permissions: {", quote(id.user), quote(id.hash))
	}
	// No allow list allows everything: a user that may publish nothing
	// but its answers has a deny list alone.
	var pub []string
	if len(p.pubAllow) > 0 {
		pub = append(pub, "allow: "+list(p.pubAllow))
	}
	if len(p.pubDeny) > 0 {
		pub = append(pub, "deny: "+list(p.pubDeny))
	}
	c.line("publish: { %s }", strings.Join(pub, ", "))
	c.line("subscribe: { allow: %s }", list(p.subAllow))
	if p.responses {
		c.line("allow_responses: true")
	}
	c.close("} }")
}

// confWriter writes an indented configuration, keeping the first error.
type confWriter struct {
	w      io.Writer
	indent int
	err    error
}

func (c *confWriter) line(format string, args ...any) {
	if c.err == nil {
		_, c.err = fmt.Fprintf(c.w, "%s%s\n", strings.Repeat("  ", c.indent), fmt.Sprintf(format, args...))
	}
}

func (c *confWriter) open(format string, args ...any) {
	c.line(format, args...)
	c.indent++
}

func (c *confWriter) close(s string) {
	c.indent--
	c.line("%s", s)
}

// quote makes s a configuration string: nats-server's parser reads
// JSON-style double-quoted strings.
func quote(s string) string { return strconv.Quote(s) }

func list(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
