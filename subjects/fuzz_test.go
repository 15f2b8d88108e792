package subjects

import "testing"

// Each parser must never panic, and whatever it accepts must round-trip
// through the matching builder.

func FuzzParseJobs(f *testing.F) {
	for _, s := range []string{"chat.jobs.acme", "chat.jobs.", "chat.jobs.a.b", "chat.jobs.*", "x"} {
		f.Add(s)
	}
	n := Default()
	f.Fuzz(func(t *testing.T, s string) {
		tenant, err := n.ParseJobs(s)
		if err != nil {
			return
		}
		if got := n.Jobs(tenant); got != s {
			t.Fatalf("ParseJobs(%q) = %q, rebuilds as %q", s, tenant, got)
		}
	})
}

// FuzzParseQueue: a subject ParseQueue accepts is the queue subject of
// the tenant and priority it returns, and nothing else.
func FuzzParseQueue(f *testing.F) {
	for _, s := range []string{"chat.jobs.acme", "chat.pjobs.acme.high", "chat.pjobs.acme.normal", "chat.pjobs.a.low.x", "chat.pjobs.*.*", "x"} {
		f.Add(s)
	}
	n := Default()
	f.Fuzz(func(t *testing.T, s string) {
		tenant, priority, err := n.ParseQueue(s)
		if err != nil {
			return
		}
		want := n.Jobs(tenant)
		if priority != "normal" {
			want = n.PriorityJobs(tenant, priority)
		}
		if want != s || (priority != "high" && priority != "normal" && priority != "low") {
			t.Fatalf("ParseQueue(%q) = %q, %q; rebuilds as %q", s, tenant, priority, want)
		}
		if job, ok := n.ParseQueued(n.Prefix() + ".queued." + s); !ok || job != s {
			t.Fatalf("ParseQueued of %q's announcement = %q, %v", s, job, ok)
		}
	})
}

func FuzzParseReply(f *testing.F) {
	n := Default()
	fuzzPair(f, "ParseReply", n.ParseReply, n.Reply, "chat.reply.acme.r1", "chat.reply.acme", "chat.reply.a.b.c", "chat.reply.a. ", "chat.reply.>")
}

func FuzzParseReplyWrite(f *testing.F) {
	n := Default()
	fuzzPair(f, "ParseReplyWrite", n.ParseReplyWrite, n.ReplyWrite, "chat.write.acme.r1", "chat.write.acme", "chat.write.a.b.c")
}

func FuzzParseGen(f *testing.F) {
	n := Default()
	fuzzPair(f, "ParseGen", n.ParseGen, n.Gen, "chat.gen.acme.g1", "chat.gen.acme", "chat.gen..", "chat.gen.a.b.c")
}

func FuzzParseControl(f *testing.F) {
	for _, s := range []string{"chat.ctl.w1", "chat.ctl.", "chat.ctl.a.b"} {
		f.Add(s)
	}
	n := Default()
	f.Fuzz(func(t *testing.T, s string) {
		w, err := n.ParseControl(s)
		if err != nil {
			return
		}
		if got := n.Control(w); got != s {
			t.Fatalf("ParseControl(%q) = %q, rebuilds as %q", s, w, got)
		}
	})
}

func FuzzParseRequestKey(f *testing.F) {
	n := Default()
	fuzzPair(f, "ParseRequestKey", n.ParseRequestKey, n.RequestKey, "acme.r1", "acme", ".", "a.b.c")
}

func FuzzNew(f *testing.F) {
	for _, s := range []string{"chat", "a.b", "", ".", "a..b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := New(s)
		if err != nil {
			return
		}
		// Any accepted prefix yields parseable subjects.
		if _, _, err := n.ParseReply(n.Reply("t", "i")); err != nil {
			t.Fatalf("prefix %q: reply does not parse: %v", s, err)
		}
	})
}

// fuzzPair checks a parser of two names against its builder.
func fuzzPair(f *testing.F, name string, parse func(string) (string, string, error), build func(a, b string) string, seeds ...string) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, b, err := parse(s)
		if err != nil {
			return
		}
		if got := build(a, b); got != s {
			t.Fatalf("%s(%q) = %q %q, rebuilds as %q", name, s, a, b, got)
		}
	})
}
