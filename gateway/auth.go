package gateway

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chatfleet/chatfleet/subjects"
)

// KeyStore maps API keys to tenants. It holds only the keys' SHA-256
// hashes, never a key. A store read from a bucket changes while it serves.
type KeyStore struct {
	mu      sync.RWMutex
	tenants map[[sha256.Size]byte]string
}

func newKeyStore() *KeyStore { return &KeyStore{tenants: map[[sha256.Size]byte]string{}} }

// LoadKeys reads a key file: one "TENANT SHA256-HEX" line per key (blank
// lines and lines starting with # are skipped). `chatfleet gateway key
// TENANT` makes a key and prints its line.
func LoadKeys(path string) (*KeyStore, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gateway: keys: %w", err)
	}
	defer f.Close()
	return ReadKeys(f)
}

// ReadKeys reads key lines (see LoadKeys) from r.
func ReadKeys(r io.Reader) (*KeyStore, error) {
	ks := newKeyStore()
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		tenant, hash, _ := strings.Cut(line, " ")
		if err := ks.set(strings.TrimPrefix(strings.TrimSpace(hash), "sha256:"), tenant); err != nil {
			return nil, fmt.Errorf("gateway: keys: line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("gateway: keys: %w", err)
	}
	return ks, nil
}

// NewKey makes a random API key for tenant and returns it with the line
// a key file holds for it. The key is shown once; only its hash is kept.
func NewKey(tenant string) (key, line string, err error) {
	if err := subjects.ValidName("tenant", tenant); err != nil {
		return "", "", err
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	key = "cf-" + base64.RawURLEncoding.EncodeToString(b)
	return key, tenant + " " + KeyHash(key), nil
}

// KeyHash is how a key is kept: its SHA-256 in hex.
func KeyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// set maps the key whose hash (hex) is hash to tenant.
func (ks *KeyStore) set(hash, tenant string) error {
	raw, err := hex.DecodeString(hash)
	if err != nil || len(raw) != sha256.Size {
		return errors.New(`want "TENANT SHA256-HEX"`)
	}
	if err := subjects.ValidName("tenant", tenant); err != nil {
		return err
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.tenants[[sha256.Size]byte(raw)] = tenant
	return nil
}

// remove forgets the key whose hash (hex) is hash.
func (ks *KeyStore) remove(hash string) {
	raw, err := hex.DecodeString(hash)
	if err != nil || len(raw) != sha256.Size {
		return
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	delete(ks.tenants, [sha256.Size]byte(raw))
}

// Tenant returns the tenant key belongs to.
func (ks *KeyStore) Tenant(key string) (string, bool) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	t, ok := ks.tenants[sha256.Sum256([]byte(key))]
	return t, ok
}

// resumeToken signs (tenant, request, usage, expiry): it lets a browser's
// EventSource, which cannot send an Authorization header, resume one
// request's stream until it expires.
type resumeToken struct {
	Tenant, ID   string
	IncludeUsage bool
	Expires      time.Time
}

func (t resumeToken) payload() string {
	return strings.Join([]string{t.Tenant, t.ID, strconv.FormatBool(t.IncludeUsage), strconv.FormatInt(t.Expires.Unix(), 10)}, "|")
}

func (t resumeToken) sign(secret []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(t.payload()))
	return base64.RawURLEncoding.EncodeToString([]byte(t.payload())) + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// parseResumeToken checks s's signature and expiry.
func parseResumeToken(s string, secret []byte, now time.Time) (resumeToken, bool) {
	p, sig, ok := strings.Cut(s, ".")
	if !ok {
		return resumeToken{}, false
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(p)
	mac, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil {
		return resumeToken{}, false
	}
	h := hmac.New(sha256.New, secret)
	h.Write(payload)
	if !hmac.Equal(mac, h.Sum(nil)) {
		return resumeToken{}, false
	}
	f := strings.Split(string(payload), "|")
	if len(f) != 4 {
		return resumeToken{}, false
	}
	exp, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil || now.Unix() > exp {
		return resumeToken{}, false
	}
	return resumeToken{Tenant: f[0], ID: f[1], IncludeUsage: f[2] == "true", Expires: time.Unix(exp, 0)}, true
}
