package config

import (
	"bufio"
	"errors"
	"os"
	"strings"
)

// ReadSettings returns the variables a settings file sets: one NAME=value
// a line, # comments, as `chatfleet auth` writes them for each identity
// and a shell sources them. A file that does not exist sets none.
func ReadSettings(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			vars[k] = v
		}
	}
	return vars, sc.Err()
}

// WithSettings returns e with the NATS identity and prefix variables
// vars sets: what a process that sourced a settings file would see.
func (e Env) WithSettings(vars map[string]string) Env {
	for name, field := range map[string]*string{
		"CHATFLEET_NATS_URL": &e.NATSURL, "CHATFLEET_PREFIX": &e.Prefix,
		"CHATFLEET_NATS_USER": &e.NATSUser, "CHATFLEET_NATS_PASSWORD": &e.NATSPassword,
		"CHATFLEET_NATS_TOKEN": &e.NATSToken, "CHATFLEET_NATS_NKEY": &e.NATSNKey, "CHATFLEET_NATS_CREDS": &e.NATSCreds,
		"CHATFLEET_NATS_JS_API_PREFIX": &e.NATSAPI,
	} {
		if v, ok := vars[name]; ok {
			*field = v
		}
	}
	return e
}
