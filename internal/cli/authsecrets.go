package cli

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/bcrypt"

	"github.com/chatfleet/chatfleet/internal/config"
)

// An identity's secret lives in its settings file in the secrets
// directory, <dir>/<file>.env (mode 0600, the directory 0700), and for an
// nkey identity in its seed file, <dir>/<file>.nk. chatfleet auth writes
// secrets nowhere else — not in the configuration, not on the terminal,
// not in an error — and reuses the ones it finds there, so running it
// again (to add a tenant) changes no existing identity's credentials.

const (
	envPassword = "CHATFLEET_NATS_PASSWORD"
	envUser     = "CHATFLEET_NATS_USER"
	envNKey     = "CHATFLEET_NATS_NKEY"
)

// settingsPath is where id's settings file is.
func settingsPath(dir string, id *identity) string { return filepath.Join(dir, id.file+".env") }

// provide gives id its secret: the one its settings file in dir holds,
// else a new password or (newNKey) a new nkey, unless its public nkey was
// given (id.nkey set: its owner holds the seed).
func provide(dir string, id *identity, newNKey bool) error {
	if id.nkey != "" {
		return nil
	}
	kept, err := config.ReadSettings(settingsPath(dir, id))
	if err != nil {
		return err
	}
	switch {
	case kept[envPassword] != "":
		id.password, id.kept = kept[envPassword], true
	case kept[envNKey] != "":
		id.seedFile, id.kept = kept[envNKey], true
		if id.nkey, err = publicKeyOf(id.seedFile); err != nil {
			return fmt.Errorf("%s: %w", settingsPath(dir, id), err)
		}
		return nil
	case newNKey:
		return newSeed(dir, id)
	default:
		b := make([]byte, 32)
		_, _ = rand.Read(b) // never fails (crypto/rand)
		id.password = base64.RawURLEncoding.EncodeToString(b)
	}
	// The lowest cost: bcrypt's cost slows the guessing of passwords
	// people chose, and 256 random bits cannot be guessed at any cost;
	// the server checks the hash on every connect.
	hash, err := bcrypt.GenerateFromPassword([]byte(id.password), bcrypt.MinCost)
	if err != nil {
		return fmt.Errorf("hash the password of %s: %w", id.role, err)
	}
	id.hash = string(hash)
	return nil
}

// newSeed creates an nkey user key for id and writes its seed.
func newSeed(dir string, id *identity) error {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return err
	}
	seed, err := kp.Seed()
	if err != nil {
		return err
	}
	if id.nkey, err = kp.PublicKey(); err != nil {
		return err
	}
	abs, err := filepath.Abs(filepath.Join(dir, id.file+".nk"))
	if err != nil {
		return err
	}
	id.seedFile = abs
	return writePrivate(abs, append(seed, '\n'))
}

// publicKeyOf reads an nkey seed file and returns its public key.
func publicKeyOf(seedFile string) (string, error) {
	b, err := os.ReadFile(seedFile)
	if err != nil {
		return "", fmt.Errorf("read the nkey seed: %w", err)
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(b))
	if err != nil {
		return "", fmt.Errorf("the nkey seed file %s holds no valid seed", seedFile)
	}
	return kp.PublicKey()
}

// settings is the text of id's settings file: every variable its
// processes need to connect as id, secret included.
func (a *fleetAuth) settings(id *identity, url string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# chatfleet auth: the NATS identity of %s. A secret: readable by its owner only, never committed.\n", id.role)
	fmt.Fprintf(&b, "# Account %s.\n", a.accountOf(id))
	fmt.Fprintf(&b, "CHATFLEET_PREFIX=%s\n", a.names.Prefix())
	if url != "" {
		fmt.Fprintf(&b, "CHATFLEET_NATS_URL=%s\n", url)
	}
	switch {
	case id.password != "":
		fmt.Fprintf(&b, "%s=%s\n%s=%s\n", envUser, id.user, envPassword, id.password)
	case id.seedFile != "":
		fmt.Fprintf(&b, "%s=%s\n", envNKey, id.seedFile)
	default:
		fmt.Fprintf(&b, "# %s=the seed file of %s (its owner holds it)\n", envNKey, id.nkey)
	}
	if id.tenant != "" {
		fmt.Fprintf(&b, "CHATFLEET_NATS_JS_API_PREFIX=%s\n", a.apiPrefix())
		fmt.Fprintf(&b, "# chatfleet ask --tenant %s …; publisher.WithAPIPrefix(%q) in Go\n", id.tenant, a.apiPrefix())
	}
	if a.tls != nil && a.tls.ca != "" {
		b.WriteString("# the server requires a client certificate: set CHATFLEET_NATS_TLS_CERT and CHATFLEET_NATS_TLS_KEY\n")
	}
	if a.tls != nil {
		b.WriteString("# and CHATFLEET_NATS_TLS_CA unless the system trusts the server's certificate\n")
	}
	return b.Bytes()
}

func (a *fleetAuth) accountOf(id *identity) string {
	if id.tenant != "" {
		return a.tenantAccount(id.tenant)
	}
	return a.fleetAccount()
}

// writePrivate writes a file only its owner may read, replacing it.
func writePrivate(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing left to remove
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
