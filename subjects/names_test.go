package subjects

import (
	"errors"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prefix  string
		wantErr bool
		stream  string
		bucket  string
	}{
		{prefix: "chat", stream: "CHAT_JOBS", bucket: "chat_inflight"},
		{prefix: "acme.chat", stream: "ACME_CHAT_JOBS", bucket: "acme_chat_inflight"},
		{prefix: "a-b_c", stream: "A-B_C_JOBS", bucket: "a-b_c_inflight"},
		{prefix: "", wantErr: true},
		{prefix: "chat.", wantErr: true},
		{prefix: ".chat", wantErr: true},
		{prefix: "ch*t", wantErr: true},
		{prefix: "chat.>", wantErr: true},
		{prefix: "ch at", wantErr: true},
		{prefix: "ch/at", wantErr: true},
	}
	for _, tt := range tests {
		n, err := New(tt.prefix)
		if tt.wantErr {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("New(%q) error = %v, want ErrInvalid", tt.prefix, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("New(%q): %v", tt.prefix, err)
		}
		if got := n.JobsStream(); got != tt.stream {
			t.Errorf("New(%q).JobsStream() = %q, want %q", tt.prefix, got, tt.stream)
		}
		if got := n.InflightBucket(); got != tt.bucket {
			t.Errorf("New(%q).InflightBucket() = %q, want %q", tt.prefix, got, tt.bucket)
		}
	}
}

func TestBuilders(t *testing.T) {
	t.Parallel()
	n, err := New("acme.chat")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ got, want string }{
		{n.Jobs("t1"), "acme.chat.jobs.t1"},
		{n.AllJobs(), "acme.chat.jobs.>"},
		{n.Reply("t1", "r-1"), "acme.chat.reply.t1.r-1"},
		{n.AllReplies(), "acme.chat.reply.>"},
		{n.ReplyWrite("t1", "r-1"), "acme.chat.write.t1.r-1"},
		{n.AllReplyWrites(), "acme.chat.write.>"},
		{n.Gen("t1", "g1"), "acme.chat.gen.t1.g1"},
		{n.AllGens(), "acme.chat.gen.>"},
		{n.Control("w1"), "acme.chat.ctl.w1"},
		{n.DeadLetter("t1"), "acme.chat.dlq.t1"},
		{n.AllDeadLetters(), "acme.chat.dlq.>"},
		{n.RepliesStream(), "ACME_CHAT_REPLIES"},
		{n.DeadLetterStream(), "ACME_CHAT_DLQ"},
		{n.WorkersConsumer(), "acme_chat_workers"},
		{n.PriorityJobs("t1", "high"), "acme.chat.pjobs.t1.high"},
		{n.AllPriorityJobs(), "acme.chat.pjobs.*.*"},
		{n.QueuedJobs(), "acme.chat.queued.>"},
		{n.QueueConsumer("t1", "low"), "acme_chat_q_t1_low"},
		{n.QueueConsumerPrefix(), "acme_chat_q_"},
		{n.CacheBucket(), "acme_chat_cache"},
		{n.CancelBucket(), "acme_chat_cancels"},
		{n.APIKeysBucket(), "acme_chat_api_keys"},
		{n.RequestKey("t1", "r1"), "t1.r1"},
		{n.CancelSubject("t1", "r1"), "$KV.acme_chat_cancels.t1.r1"},
		{n.DedupeKey("t1", "ab12"), "t1.ab12"},
		{n.TenantsBucket(), "acme_chat_tenants"},
		{n.TenantKey("t1"), "t1"},
		{n.AllTenantKeys(), "*"},
		{n.TenantTokensKey("t1"), "t1.tokens"},
		{n.TenantShareKey("t1", 2), "_shares.tenant.t1.2"},
		{n.TenantShares("t1"), "_shares.tenant.t1.*"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestValidName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		reason string // "" means valid
	}{
		{"default", ""},
		{"A-z_09", ""},
		{strings.Repeat("a", MaxNameLen), ""},
		{"", "empty"},
		{"a.b", "contains '.'"},
		{"a*", "contains '*'"},
		{"a>", "contains '>'"},
		{"a b", "whitespace"},
		{"a\tb", "whitespace"},
		{"a\nb", "whitespace"},
		{"é", "contains 'é'; allowed"},
		{"caf\xe9", "contains '\uFFFD'"}, // not UTF-8: the replacement character, not a stray byte
		{"日本", "contains '日'"},
		{"a/b", "allowed"},
		{"a:b", "allowed"},
		{strings.Repeat("a", MaxNameLen+1), "longer than"},
	}
	for _, tt := range tests {
		err := ValidName("tenant", tt.in)
		if tt.reason == "" {
			if err != nil {
				t.Errorf("ValidName(%q) = %v, want nil", tt.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.reason) || !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidName(%q) = %v, want error containing %q", tt.in, err, tt.reason)
		}
	}
}

func TestSanitizeName(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"host.example.com-42", "host-example-com-42"},
		{"", "unnamed"},
		{"ok_name", "ok_name"},
		{"a b*c>d", "a-b-c-d"},
	}
	for _, tt := range tests {
		got := SanitizeName(tt.in)
		if got != tt.want {
			t.Errorf("SanitizeName(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if err := ValidName("worker", got); err != nil {
			t.Errorf("SanitizeName(%q) = %q is not valid: %v", tt.in, got, err)
		}
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	n := Default()
	t.Run("jobs", func(t *testing.T) {
		tenant, err := n.ParseJobs("chat.jobs.acme")
		if err != nil || tenant != "acme" {
			t.Errorf("ParseJobs = %q, %v", tenant, err)
		}
		for _, bad := range []string{"chat.jobs", "chat.jobs.", "chat.jobs.a.b", "chat.reply.a", "other.jobs.a", "chat.jobs.a b", "chat.jobs.*"} {
			if _, err := n.ParseJobs(bad); !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseJobs(%q) error = %v, want ErrInvalid", bad, err)
			}
		}
	})
	t.Run("reply", func(t *testing.T) {
		tenant, id, err := n.ParseReply("chat.reply.acme.r1")
		if err != nil || tenant != "acme" || id != "r1" {
			t.Errorf("ParseReply = %q %q %v", tenant, id, err)
		}
		for _, bad := range []string{"chat.reply.acme", "chat.reply.acme.r1.x", "chat.reply..r1", "chat.reply.acme.>", "chat.jobs.acme.r1"} {
			if _, _, err := n.ParseReply(bad); !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseReply(%q) error = %v, want ErrInvalid", bad, err)
			}
		}
	})
	t.Run("reply write", func(t *testing.T) {
		tenant, id, err := n.ParseReplyWrite("chat.write.acme.r1")
		if err != nil || tenant != "acme" || id != "r1" {
			t.Errorf("ParseReplyWrite = %q %q %v", tenant, id, err)
		}
		if _, _, err := n.ParseReplyWrite("chat.reply.acme.r1"); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseReplyWrite of a reply subject: %v", err)
		}
	})
	t.Run("gen", func(t *testing.T) {
		tenant, gen, err := n.ParseGen("chat.gen.acme.g1")
		if err != nil || tenant != "acme" || gen != "g1" {
			t.Errorf("ParseGen = %q %q %v", tenant, gen, err)
		}
		if _, _, err := n.ParseGen("chat.gen.acme"); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseGen short: %v", err)
		}
	})
	t.Run("control", func(t *testing.T) {
		w, err := n.ParseControl("chat.ctl.w-1")
		if err != nil || w != "w-1" {
			t.Errorf("ParseControl = %q %v", w, err)
		}
		if _, err := n.ParseControl("chat.ctl.w.1"); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseControl two tokens: %v", err)
		}
	})
	t.Run("request key", func(t *testing.T) {
		tenant, id, err := n.ParseRequestKey("acme.r1")
		if err != nil || tenant != "acme" || id != "r1" {
			t.Errorf("ParseRequestKey = %q %q %v", tenant, id, err)
		}
		for _, bad := range []string{"acme", "acme.", ".r1", "acme.r1.x"} {
			if _, _, err := n.ParseRequestKey(bad); !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseRequestKey(%q) error = %v", bad, err)
			}
		}
	})
}

func TestParseToolOutput(t *testing.T) {
	n := Default()
	if call, err := n.ParseToolOutput(n.ToolOutput("abc123")); err != nil || call != "abc123" {
		t.Errorf("own subject: %q %v", call, err)
	}
	for _, s := range []string{n.Jobs("t"), n.ToolOutput("a.b"), n.ToolOutput("*"), n.ToolOutput(">"), n.ToolOutput(""), "other.toolout.x"} {
		if _, err := n.ParseToolOutput(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}
