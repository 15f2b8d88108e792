package config

import (
	"net/url"
	"strings"
)

// redacted replaces a secret wherever chatfleet prints a URL or an error.
const redacted = "xxxxx"

// RedactURL returns urls (one URL, or several separated by commas) with
// their credentials replaced: a password becomes xxxxx (the user name
// stays), a user name without a password — a NATS token — becomes xxxxx,
// and so does every query value (some upstreams take an API key there).
// Text that does not parse as a URL with a host keeps only its scheme and
// what follows the last "@".
func RedactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		parts[i] = redactOne(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

func redactOne(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		scheme, rest, ok := strings.Cut(s, "://")
		if !ok {
			scheme, rest = "", s
		}
		at := strings.LastIndex(rest, "@")
		switch {
		case at < 0:
			return s
		case ok:
			return scheme + "://" + redacted + rest[at:]
		default:
			return redacted + rest[at:]
		}
	}
	if u.User != nil {
		if _, hasPassword := u.User.Password(); hasPassword {
			u.User = url.UserPassword(u.User.Username(), redacted)
		} else {
			u.User = url.User(redacted)
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{redacted}
		}
		u.RawQuery = q.Encode()
	}
	// url.URL.String escapes the placeholder's characters; it has none.
	return u.String()
}

// urlSecrets returns the credentials written into urls: passwords, tokens
// in the user position, query values.
func urlSecrets(urls string) []string {
	var out []string
	for _, s := range strings.Split(urls, ",") {
		s = strings.TrimSpace(s)
		_, rest, ok := strings.Cut(s, "://")
		if !ok {
			rest = s
		}
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			user, password, hasPassword := strings.Cut(rest[:at], ":")
			if hasPassword {
				out = append(out, password)
				if p, err := url.PathUnescape(password); err == nil {
					out = append(out, p)
				}
			} else {
				out = append(out, user)
			}
		}
		if u, err := url.Parse(s); err == nil {
			for _, vs := range u.Query() {
				out = append(out, vs...)
			}
		}
	}
	return out
}

// scrub replaces every secret in s with xxxxx. Secrets shorter than 3
// characters are left alone: they would blank out ordinary text.
func scrub(s string, secrets ...string) string {
	for _, sec := range secrets {
		if len(sec) >= 3 {
			s = strings.ReplaceAll(s, sec, redacted)
		}
	}
	return s
}

// rewordedError is an error whose text was rewritten (secrets removed,
// advice replaced); errors.Is and errors.As still see the original.
type rewordedError struct {
	msg string
	err error
}

func (e *rewordedError) Error() string { return e.msg }
func (e *rewordedError) Unwrap() error { return e.err }

// Redact returns err with every secret of the configuration removed from
// its text: the credentials in CHATFLEET_NATS_URL, CHATFLEET_NATS_PASSWORD,
// CHATFLEET_NATS_TOKEN and the upstream API key. nil stays nil.
func (e Env) Redact(err error) error {
	if err == nil {
		return nil
	}
	secrets := append(urlSecrets(e.NATSURL), urlSecrets(e.LLMBaseURL)...)
	secrets = append(secrets, e.NATSPassword, e.NATSToken, e.LLMAPIKey, e.GatewayResumeSecret)
	msg := scrub(err.Error(), secrets...)
	if msg == err.Error() {
		return err
	}
	return &rewordedError{msg: msg, err: err}
}
