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

func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"chat.reply.acme.r1", "chat.reply.acme", "chat.reply.a.b.c", "chat.reply.a. ", "chat.reply.>"} {
		f.Add(s)
	}
	n := Default()
	f.Fuzz(func(t *testing.T, s string) {
		tenant, id, err := n.ParseReply(s)
		if err != nil {
			return
		}
		if got := n.Reply(tenant, id); got != s {
			t.Fatalf("ParseReply(%q) = %q %q, rebuilds as %q", s, tenant, id, got)
		}
	})
}

func FuzzParseReplyWrite(f *testing.F) {
	for _, s := range []string{"chat.write.acme.r1", "chat.write.acme", "chat.write.a.b.c"} {
		f.Add(s)
	}
	n := Default()
	f.Fuzz(func(t *testing.T, s string) {
		tenant, id, err := n.ParseReplyWrite(s)
		if err != nil {
			return
		}
		if got := n.ReplyWrite(tenant, id); got != s {
			t.Fatalf("ParseReplyWrite(%q) = %q %q, rebuilds as %q", s, tenant, id, got)
		}
	})
}

func FuzzParseGen(f *testing.F) {
	for _, s := range []string{"chat.gen.acme.g1", "chat.gen.acme", "chat.gen..", "chat.gen.a.b.c"} {
		f.Add(s)
	}
	n := Default()
	f.Fuzz(func(t *testing.T, s string) {
		tenant, gen, err := n.ParseGen(s)
		if err != nil {
			return
		}
		if got := n.Gen(tenant, gen); got != s {
			t.Fatalf("ParseGen(%q) = %q %q, rebuilds as %q", s, tenant, gen, got)
		}
	})
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
	for _, s := range []string{"acme.r1", "acme", ".", "a.b.c"} {
		f.Add(s)
	}
	n := Default()
	f.Fuzz(func(t *testing.T, s string) {
		tenant, id, err := n.ParseRequestKey(s)
		if err != nil {
			return
		}
		if got := n.RequestKey(tenant, id); got != s {
			t.Fatalf("ParseRequestKey(%q) = %q %q, rebuilds as %q", s, tenant, id, got)
		}
	})
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
