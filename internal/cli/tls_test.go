package cli_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/cli"
	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the CA certificate, PEM
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	ca := &testCA{dir: t.TempDir()}
	ca.key = newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "chatfleet test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ca.key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	if ca.cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	ca.file = writePEM(t, ca.dir, "ca.pem", "CERTIFICATE", der)
	return ca
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// issue writes a certificate the CA signed for name, server (for
// 127.0.0.1) or client, and its key; it returns both files.
func (ca *testCA) issue(t *testing.T, name string, server bool) (certFile, keyFile string) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, ca.dir, name+".pem", "CERTIFICATE", der), writePEM(t, ca.dir, name+"-key.pem", "PRIVATE KEY", keyDER)
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// useIdentity points the CLI at the identity of a settings file written
// by chatfleet auth, connecting over TLS with the CA and, when certFile is
// set, a client certificate.
func useIdentity(t *testing.T, settingsFile, url, caFile, certFile, keyFile string) {
	t.Helper()
	_, vars := readSettings(t, settingsFile)
	for _, name := range []string{"CHATFLEET_PREFIX", "CHATFLEET_NATS_USER", "CHATFLEET_NATS_PASSWORD", "CHATFLEET_NATS_NKEY", "CHATFLEET_NATS_JS_API_PREFIX"} {
		t.Setenv(name, vars[name])
	}
	t.Setenv("CHATFLEET_NATS_URL", url)
	t.Setenv("CHATFLEET_NATS_TLS_CA", caFile)
	t.Setenv("CHATFLEET_NATS_TLS_CERT", certFile)
	t.Setenv("CHATFLEET_NATS_TLS_KEY", keyFile)
}

// TestTLSWithClientCertificates: on a server chatfleet auth configured
// to require TLS client certificates signed by a custom CA, `chatfleet
// worker` (the workers' identity) and `chatfleet ask` (a tenant's) and
// `chatfleet status` (the operators') work with their certificates; a
// client without one, or that does not trust the CA, is refused.
func TestTLSWithClientCertificates(t *testing.T) {
	ca := newTestCA(t)
	srvCert, srvKey := ca.issue(t, "server", true)
	dir := t.TempDir()
	secrets, conf := filepath.Join(dir, "secrets"), filepath.Join(dir, "nats.conf")
	t.Setenv("CHATFLEET_PREFIX", "chat")
	ctx := fleettest.Context(t, 60*time.Second)
	res := run(ctx, "", "auth", "--secrets", secrets, "--out", conf, "--tls-cert", srvCert, "--tls-key", srvKey, "--tls-ca", ca.file, "acme")
	if res.code != cli.ExitOK {
		t.Fatalf("auth: %v", res)
	}
	s := natstest.RunServerFromConfig(t, conf)
	upstream := llmtest.New()
	t.Cleanup(upstream.Close)

	workerCert, workerKey := ca.issue(t, "worker", false)
	workerEnv(t, s.ClientURL(), upstream.URL())
	t.Setenv("CHATFLEET_WORKER_ID", "tls-worker")
	useIdentity(t, filepath.Join(secrets, "workers.env"), s.ClientURL(), ca.file, workerCert, workerKey)
	workerCtx, stop := context.WithCancel(context.Background())
	defer stop()
	w := start(workerCtx, "worker")
	defer func() { stop(); w.wait(t, 30*time.Second) }()
	w.waitErr(t, ctx, "worker started")

	tenantCert, tenantKey := ca.issue(t, "acme", false)
	useIdentity(t, filepath.Join(secrets, "tenant-acme.env"), s.ClientURL(), ca.file, tenantCert, tenantKey)
	res = run(ctx, "", "ask", "--tenant", "acme", "--id", "tls-1", "--json", "hello over TLS")
	if res.code != cli.ExitOK || !strings.Contains(res.out, `"worker":"tls-worker"`) || !strings.Contains(res.out, `"type":"done"`) {
		t.Fatalf("ask over TLS: %v\nworker log:\n%s", res, w.err.String())
	}
	// cancel reads the request's last event with the tenant's rights.
	if res = run(ctx, "", "cancel", "--tenant", "acme", "tls-1"); res.code != cli.ExitFailed || !strings.Contains(res.err, "has already finished") {
		t.Errorf("cancel of a finished request over TLS: %v", res)
	}

	opsCert, opsKey := ca.issue(t, "operators", false)
	useIdentity(t, filepath.Join(secrets, "operators.env"), s.ClientURL(), ca.file, opsCert, opsKey)
	res = run(ctx, "", "status", "--json", "--wait", "2s")
	if res.code != cli.ExitOK || !strings.Contains(res.out, `"worker":"tls-worker"`) {
		t.Fatalf("status over TLS: %v", res)
	}

	// Without a client certificate, and without trusting the CA.
	useIdentity(t, filepath.Join(secrets, "tenant-acme.env"), s.ClientURL(), ca.file, "", "")
	if res = run(ctx, "", "ask", "--tenant", "acme", "no certificate"); res.code != cli.ExitFailed {
		t.Errorf("ask without a client certificate: %v; want refused", res)
	}
	t.Logf("without a client certificate: %s", res.err)
	useIdentity(t, filepath.Join(secrets, "tenant-acme.env"), s.ClientURL(), "", tenantCert, tenantKey)
	if res = run(ctx, "", "ask", "--tenant", "acme", "unknown CA"); res.code != cli.ExitFailed || !strings.Contains(res.err, "certificate") {
		t.Errorf("ask not trusting the CA: %v; want refused, naming the certificate", res)
	}
	t.Logf("not trusting the CA: %s", res.err)
	if strings.Contains(w.err.String(), "level=ERROR") {
		t.Errorf("the worker logged errors:\n%s", w.err.String())
	}
}
