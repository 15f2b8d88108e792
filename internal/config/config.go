// Package config reads chatfleet's configuration from CHATFLEET_*
// environment variables (envconfig) and turns it into the library configs.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Env is every configuration variable. `chatfleet env` prints this table.
type Env struct {
	NATSURL      string `envconfig:"CHATFLEET_NATS_URL" default:"nats://127.0.0.1:4222" desc:"NATS server URL(s), comma-separated"`
	NATSCreds    string `envconfig:"CHATFLEET_NATS_CREDS" desc:"NATS credentials file (JWT and nkey seed)"`
	NATSNKey     string `envconfig:"CHATFLEET_NATS_NKEY" desc:"NATS nkey seed file"`
	NATSUser     string `envconfig:"CHATFLEET_NATS_USER" desc:"NATS user name"`
	NATSPassword string `envconfig:"CHATFLEET_NATS_PASSWORD" desc:"NATS password (never printed)"`
	NATSToken    string `envconfig:"CHATFLEET_NATS_TOKEN" desc:"NATS token (never printed)"`
	NATSTLSCA    string `envconfig:"CHATFLEET_NATS_TLS_CA" desc:"CA file to verify the NATS server"`
	NATSTLSCert  string `envconfig:"CHATFLEET_NATS_TLS_CERT" desc:"client certificate file for NATS (with CHATFLEET_NATS_TLS_KEY)"`
	NATSTLSKey   string `envconfig:"CHATFLEET_NATS_TLS_KEY" desc:"client key file for NATS (with CHATFLEET_NATS_TLS_CERT)"`
	NATSAPI      string `envconfig:"CHATFLEET_NATS_JS_API_PREFIX" desc:"JetStream API prefix for ask and cancel: a tenant's account reaches the fleet's JetStream under the one chatfleet auth writes into its settings (empty: $JS.API)"`

	Prefix   string `envconfig:"CHATFLEET_PREFIX" default:"chat" desc:"subject prefix; streams and buckets are named after it"`
	WorkerID string `envconfig:"CHATFLEET_WORKER_ID" desc:"worker ID (default: hostname-pid)"`
	HTTPAddr string `envconfig:"CHATFLEET_HTTP_ADDR" default:":9090" desc:"address of /healthz, /readyz and /metrics; empty disables"`

	LLMBaseURL       string        `envconfig:"CHATFLEET_LLM_BASE_URL" desc:"OpenAI-compatible base URL incl. /v1 (falls back to OPENAI_BASE_URL, then https://api.openai.com/v1; a worker with neither a base URL nor an API key refuses to start)"`
	LLMAPIKey        string        `envconfig:"CHATFLEET_LLM_API_KEY" desc:"upstream API key (falls back to OPENAI_API_KEY; never printed or logged)"`
	Model            string        `envconfig:"CHATFLEET_MODEL" default:"gpt-4o-mini" desc:"model for jobs that name none"`
	Models           []string      `envconfig:"CHATFLEET_ALLOWED_MODELS" desc:"comma-separated allow-list of models; empty allows any; when set, it must hold CHATFLEET_MODEL"`
	LLMIdle          time.Duration `envconfig:"CHATFLEET_LLM_IDLE_TIMEOUT" default:"60s" desc:"cut an upstream stream silent this long; every byte counts, keep-alive comments included (the processing timeout bounds those)"`
	LLMRetries       int           `envconfig:"CHATFLEET_LLM_MAX_RETRIES" default:"3" desc:"retries of 429/5xx/connection errors before the first token"`
	LLMBreaker       int           `envconfig:"CHATFLEET_LLM_BREAKER_FAILURES" default:"5" desc:"consecutive upstream failures that open the circuit breaker"`
	LLMCool          time.Duration `envconfig:"CHATFLEET_LLM_BREAKER_COOLDOWN" default:"10s" desc:"how long the open breaker fails fast before one trial call"`
	LLMStreamOptions bool          `envconfig:"CHATFLEET_LLM_STREAM_OPTIONS" default:"true" desc:"send stream_options.include_usage (usage in the stream); false for upstreams that refuse the field (done events then usually carry no usage)"`

	MaxConcurrentRequests   int           `envconfig:"CHATFLEET_MAX_CONCURRENT_REQUESTS" default:"64" desc:"jobs a worker leads or routes at once"`
	MaxConcurrentLLMStreams int           `envconfig:"CHATFLEET_MAX_CONCURRENT_LLM_STREAMS" default:"16" desc:"upstream streams a worker runs at once"`
	UpstreamsFile           string        `envconfig:"CHATFLEET_UPSTREAMS" desc:"JSON file of more upstreams by model (name, base_url, api_key_env or api_key_file, models, weight, max_streams, requests_per_minute, tokens_per_minute); models it does not list go to CHATFLEET_LLM_BASE_URL's upstream"`
	FleetMaxLLMStreams      int           `envconfig:"CHATFLEET_FLEET_MAX_LLM_STREAMS" default:"0" desc:"upstream streams the whole fleet runs at once (fleet-wide, whatever the replicas); the upstreams bucket's limit (chatfleet upstream limits set) wins once set; 0: no cap"`
	FleetRequestsPerMinute  int64         `envconfig:"CHATFLEET_FLEET_REQUESTS_PER_MINUTE" default:"0" desc:"upstream calls the whole fleet starts in one UTC minute; the upstreams bucket's limit wins once set; 0: none"`
	FleetTokensPerMinute    int64         `envconfig:"CHATFLEET_FLEET_TOKENS_PER_MINUTE" default:"0" desc:"upstream tokens the whole fleet's generations use in one UTC minute; the upstreams bucket's limit wins once set; 0: none"`
	MaxWaitingLeaders       *int          `envconfig:"CHATFLEET_MAX_WAITING_LEADERS" desc:"leaders that may wait for an upstream slot without holding a request slot, so cache hits and followers are still pulled (default: MAX_CONCURRENT_LLM_STREAMS; 0 turns the fast lane off)"`
	MaxConcurrentFollowers  int           `envconfig:"CHATFLEET_MAX_CONCURRENT_FOLLOWERS" default:"1024" desc:"jobs a worker serves as follower or from the cache at once"`
	MaxParkedJobs           int           `envconfig:"CHATFLEET_MAX_PARKED_JOBS" default:"1024" desc:"jobs a worker holds without a request slot while they wait for their tenant (paused, or at its in-flight or token limit), so it goes on pulling other tenants' jobs; 0 turns parking off"`
	Dedupe                  bool          `envconfig:"CHATFLEET_DEDUPE" default:"true" desc:"share one generation among identical concurrent jobs (jobs may override)"`
	Cache                   bool          `envconfig:"CHATFLEET_CACHE" default:"true" desc:"serve and store finished answers (jobs may override)"`
	ChunkWindow             time.Duration `envconfig:"CHATFLEET_CHUNK_WINDOW" default:"5ms" desc:"merge deltas arriving within this window into one chunk event; 0 disables"`
	StoreBatchDelay         time.Duration `envconfig:"CHATFLEET_STORE_BATCH_DELAY" default:"50ms" desc:"a live reply's events shown within this delay are stored together, as one message; 0 stores each as soon as the one before is"`
	MaxAnswerBytes          int           `envconfig:"CHATFLEET_MAX_ANSWER_BYTES" default:"8388608" desc:"longest answer (text, tool-call arguments, refusal and reasoning together); a longer one ends with answer_too_large and its upstream request is cancelled"`
	ProgressInterval        time.Duration `envconfig:"CHATFLEET_PROGRESS_INTERVAL" default:"5s" desc:"a request waiting for its first output repeats its stage (a progress event) after this long without an event"`
	ProcessingTimeout       time.Duration `envconfig:"CHATFLEET_PROCESSING_TIMEOUT" default:"10m" desc:"longest a job may run"`
	QueueTimeout            time.Duration `envconfig:"CHATFLEET_QUEUE_TIMEOUT" default:"5m" desc:"a job still queued after this long ends with queue_timeout; one value for the fleet, stored with the jobs stream when it is created; 0 disables"`
	MidStreamRetries        int           `envconfig:"CHATFLEET_LLM_MIDSTREAM_RETRIES" default:"1" desc:"restarts (behind a reset event) of an upstream stream that breaks after partial output; 0 ends with the error"`
	JanitorInterval         time.Duration `envconfig:"CHATFLEET_JANITOR_INTERVAL" default:"1s" desc:"how often the janitor sweeps for overdue and stale requests"`
	MaxJobBytes             int32         `envconfig:"CHATFLEET_MAX_JOB_BYTES" default:"1048576" desc:"largest job accepted"`
	MaxMessages             int           `envconfig:"CHATFLEET_MAX_MESSAGES" default:"256" desc:"most messages in one job"`
	ShutdownGrace           time.Duration `envconfig:"CHATFLEET_SHUTDOWN_GRACE" default:"30s" desc:"on SIGTERM, how long in-flight jobs may finish before they are handed back"`
	ToolTimeout             time.Duration `envconfig:"CHATFLEET_TOOL_TIMEOUT" default:"30s" desc:"longest a fleet tool call may take; past it the model reads that the tool timed out"`
	ToolMaxRounds           int           `envconfig:"CHATFLEET_TOOL_MAX_ROUNDS" default:"8" desc:"model turns that call fleet tools in one generation; past it the job ends with tool_rounds_exceeded"`
	ToolMaxOutputBytes      int           `envconfig:"CHATFLEET_TOOL_MAX_OUTPUT_BYTES" default:"32768" desc:"most output of one fleet tool call the model reads and listeners see; more is cut"`
	Prepare                 string        `envconfig:"CHATFLEET_PREPARE" default:"off" desc:"call the tenant's preparation service (<prefix>.prepare.<tenant>) once per generation before it starts: off, required (a failure fails the job with prepare_failed) or optional (a failure sends the job's own messages)"`
	PrepareTimeout          time.Duration `envconfig:"CHATFLEET_PREPARE_TIMEOUT" default:"10s" desc:"longest a leader waits for the preparation service"`

	QueueLimit      int64         `envconfig:"CHATFLEET_QUEUE_LIMIT" default:"10000" desc:"most jobs waiting; beyond it submits fail with queue_full"`
	QueuePerTenant  int64         `envconfig:"CHATFLEET_MAX_QUEUED_PER_TENANT" default:"0" desc:"most jobs one tenant may have in the jobs stream (waiting or running); beyond it its submits fail with quota_exceeded; one value for the fleet, stored with the jobs stream; 0: no cap"`
	DuplicateWindow time.Duration `envconfig:"CHATFLEET_DUPLICATE_WINDOW" default:"2m" desc:"a resubmitted request ID within this window is stored once"`
	ReplyMaxAge     time.Duration `envconfig:"CHATFLEET_REPLY_MAX_AGE" default:"15m" desc:"how long reply events stay readable"`
	ReplyMaxBytes   int64         `envconfig:"CHATFLEET_REPLY_MAX_BYTES" default:"1073741824" desc:"size cap of the replies stream"`
	AckWait         time.Duration `envconfig:"CHATFLEET_ACK_WAIT" default:"30s" desc:"a job silent this long is redelivered (running jobs report progress)"`
	MaxDeliver      int           `envconfig:"CHATFLEET_MAX_DELIVER" default:"5" desc:"deliveries of one job before it is given up"`
	MaxAckPending   int           `envconfig:"CHATFLEET_MAX_ACK_PENDING" default:"20000" desc:"jobs of one queue (a tenant × priority) in flight across the fleet"`
	Replicas        int           `envconfig:"CHATFLEET_REPLICAS" default:"1" desc:"replicas of every stream and bucket (1, 3 or 5)"`
	LeaseTTL        time.Duration `envconfig:"CHATFLEET_LEASE_TTL" default:"10s" desc:"leader lease; a dead leader is replaced within about this long"`
	CacheTTL        time.Duration `envconfig:"CHATFLEET_CACHE_TTL" default:"24h" desc:"how long finished answers are served from the cache"`
	CacheMaxBytes   int32         `envconfig:"CHATFLEET_CACHE_MAX_BYTES" default:"1048576" desc:"largest cached answer (content, tool calls, refusal and reasoning together); a larger one is streamed but not cached"`
	CancelTTL       time.Duration `envconfig:"CHATFLEET_CANCEL_TTL" default:"1h" desc:"how long a cancel request is remembered"`
	DLQMaxAge       time.Duration `envconfig:"CHATFLEET_DLQ_MAX_AGE" default:"168h" desc:"how long dead-lettered jobs are kept"`

	LogFormat  string `envconfig:"CHATFLEET_LOG_FORMAT" default:"text" desc:"text or json"`
	LogLevel   string `envconfig:"CHATFLEET_LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogPrompts bool   `envconfig:"CHATFLEET_LOG_PROMPTS" default:"false" desc:"DEBUGGING ONLY: log each job's prompt (user data in the logs; announced at start-up)"`

	DevListen  string `envconfig:"CHATFLEET_DEV_LISTEN" default:"127.0.0.1:4222" desc:"dev mode: address of the embedded NATS server"`
	DevDataDir string `envconfig:"CHATFLEET_DEV_DATA_DIR" default:"./data" desc:"dev mode: JetStream data directory"`
	DevWorkers int    `envconfig:"CHATFLEET_DEV_WORKERS" default:"1" desc:"dev mode: in-process workers (0 runs only NATS and creates the topology)"`

	DevModelListen string        `envconfig:"CHATFLEET_DEV_MODEL_LISTEN" default:"127.0.0.1:9092" desc:"dev mode: address of the simulated model (its base URL is http://ADDRESS/v1)"`
	DevTokens      int           `envconfig:"CHATFLEET_DEV_TOKENS" default:"100" desc:"dev mode: tokens in each simulated answer (a job's max_tokens cuts it short)"`
	DevTokenDelay  time.Duration `envconfig:"CHATFLEET_DEV_TOKEN_DELAY" default:"50ms" desc:"dev mode: the simulated model's pause between tokens"`

	GatewayAddr         string   `envconfig:"CHATFLEET_GATEWAY_ADDR" default:"127.0.0.1:8080" desc:"address of the OpenAI-compatible gateway (chatfleet gateway; dev starts one too; empty: none in dev)"`
	GatewayKeys         string   `envconfig:"CHATFLEET_GATEWAY_KEYS" desc:"the gateway's API keys: kv for the fleet's API keys bucket (chatfleet gateway key --kv TENANT adds one, live), or a file of \"TENANT SHA256-HEX\" lines (chatfleet gateway key TENANT prints one); none: one tenant, loopback only"`
	GatewayTenant       string   `envconfig:"CHATFLEET_GATEWAY_TENANT" default:"default" desc:"the gateway's one tenant when it has no keys"`
	GatewayCORSOrigins  []string `envconfig:"CHATFLEET_GATEWAY_CORS_ORIGINS" desc:"comma-separated origins browsers may call the gateway from (* for any); empty: none"`
	GatewayResumeSecret string   `envconfig:"CHATFLEET_GATEWAY_RESUME_SECRET" desc:"secret that signs resume tokens, the same on every gateway replica (never printed); empty: random per process"`
}

// Load reads the environment.
func Load() (Env, error) {
	var e Env
	// The tags hold the full names and the prefix is empty: envconfig
	// would otherwise also read the unprefixed names (PREFIX, MODEL, …)
	// that shells commonly export for other purposes.
	if err := envconfig.Process("", &e); err != nil {
		return e, fmt.Errorf("config: %w", err)
	}
	if e.LLMBaseURL == "" {
		e.LLMBaseURL = os.Getenv("OPENAI_BASE_URL")
	}
	if e.LLMAPIKey == "" {
		e.LLMAPIKey = os.Getenv("OPENAI_API_KEY")
	}
	return e, nil
}

// UpstreamConfigured reports whether an upstream is configured: a base URL
// or an API key (meaning OpenAI).
func (e Env) UpstreamConfigured() bool { return e.LLMBaseURL != "" || e.LLMAPIKey != "" }

// ErrNoUpstream is CheckUpstream's error.
var ErrNoUpstream = errors.New("config: no upstream configured: set CHATFLEET_LLM_BASE_URL to an OpenAI-compatible API " +
	"(e.g. http://localhost:11434/v1 for Ollama), or CHATFLEET_LLM_API_KEY (or OPENAI_API_KEY) to use OpenAI; " +
	"`chatfleet dev` prints the command for a worker on its simulated model")

// CheckUpstream returns ErrNoUpstream when neither a base URL nor an API
// key is set: a worker would send every job to api.openai.com without a
// key, and every one would fail.
func (e Env) CheckUpstream() error {
	if !e.UpstreamConfigured() {
		return ErrNoUpstream
	}
	return nil
}

// CheckModel returns an error when CHATFLEET_ALLOWED_MODELS is set and
// does not hold CHATFLEET_MODEL: a worker would refuse (and dead-letter)
// every job that names no model.
func (e Env) CheckModel() error {
	if len(e.Models) == 0 || slices.Contains(e.Models, e.Model) {
		return nil
	}
	list := strings.Join(e.Models, ",")
	spaces := ""
	if strings.Contains(list, " ") {
		spaces = " (names are compared exactly, spaces included)"
	}
	return fmt.Errorf("config: CHATFLEET_MODEL=%s is not in CHATFLEET_ALLOWED_MODELS=%s%s: every job that names no model "+
		"would be refused; add it to the list, or set CHATFLEET_MODEL to one of them", e.Model, list, spaces)
}

// NonDefault returns NAME=value for each variable named in names whose
// value in e differs from its default, in the order `chatfleet env` lists
// them: what another process needs to be configured as e is.
func (e Env) NonDefault(names ...string) []string {
	var out []string
	typ, val := reflect.TypeFor[Env](), reflect.ValueOf(e)
	for i := range typ.NumField() {
		f := typ.Field(i)
		name := f.Tag.Get("envconfig")
		if !slices.Contains(names, name) {
			continue
		}
		if v := formatValue(val.Field(i)); v != canonicalDefault(f) {
			out = append(out, name+"="+v)
		}
	}
	return out
}

// formatValue spells a variable's value as the variable takes it.
func formatValue(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case []string:
		return strings.Join(x, ",")
	case *int:
		if x == nil {
			return ""
		}
		return fmt.Sprint(*x)
	}
	return fmt.Sprint(v.Interface())
}

// canonicalDefault spells f's default as formatValue spells its value.
func canonicalDefault(f reflect.StructField) string {
	def := f.Tag.Get("default")
	if f.Type == reflect.TypeFor[time.Duration]() {
		if d, err := time.ParseDuration(def); err == nil {
			return d.String()
		}
	}
	return def
}

// Default returns the default of the variable named name ("" for none or
// an unknown name).
func Default(name string) string {
	typ := reflect.TypeFor[Env]()
	for i := range typ.NumField() {
		if f := typ.Field(i); f.Tag.Get("envconfig") == name {
			return f.Tag.Get("default")
		}
	}
	return ""
}

// Usage writes every variable with its default and meaning.
func Usage(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	format := "VARIABLE\tDEFAULT\tMEANING\n{{range .}}{{usage_key .}}\t{{usage_default .}}\t{{usage_description .}}\n{{end}}"
	if err := envconfig.Usagef("", &Env{}, tw, format); err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "\nOPENAI_API_KEY and OPENAI_BASE_URL are used when the CHATFLEET_ ones are unset.")
	return err
}

// Logger returns the configured logger, writing to w.
func (e Env) Logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(e.LogLevel)); err != nil {
		return nil, fmt.Errorf("config: CHATFLEET_LOG_LEVEL: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(e.LogFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("config: CHATFLEET_LOG_FORMAT must be text or json, got %q", e.LogFormat)
	}
}
