package allinone_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/cmd/runbook/internal/cli"
	"github.com/kis-core/runbook/eventbus/auth"
)

// throwawayCA writes a CA and a server certificate for 127.0.0.1 and
// localhost signed by it into dir: ca.pem, server.pem, server-key.pem.
func throwawayCA(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "runbook test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "runbook"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server-key.pem", "EC PRIVATE KEY", keyDER)
}

// With a certificate, serve's NATS requires TLS and its HTTP listener
// serves HTTPS: clients that verify with the CA work (a run ends SUCCESS,
// the CLI lists it, /healthz answers over HTTPS); a client without the CA
// and a plain-HTTP request are refused.
func TestTLS(t *testing.T) {
	ca, cert, key := throwawayCA(t, t.TempDir())
	p := startPipeline(t, func(o *allinone.Options) {
		o.TLS = auth.TLSFiles{Cert: cert, Key: key, CA: ca}
		o.HTTPListen = "127.0.0.1:0"
	})
	url := p.srv.NATSURL()
	run := p.submit(t, []byte(trivialPlan))
	if rr := p.report(t, run, 60*time.Second); rr.Status != "SUCCESS" {
		t.Fatalf("over TLS the run ended %s", rr.Status)
	}

	// A client that does not trust the CA cannot connect.
	if nc, err := nats.Connect(url, nats.Timeout(2*time.Second)); err == nil {
		nc.Close()
		t.Fatal("connected without the CA")
	} else if !strings.Contains(err.Error(), "certificate") && !strings.Contains(err.Error(), "tls") {
		t.Fatalf("without the CA: %v", err)
	}

	cliRun := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := cli.Execute(context.Background(), append(args, "--nats-url", url, "--creds", p.srv.Creds("admin")), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	if code, out := cliRun("runs", "--tls-ca", ca); code != 0 || !strings.Contains(out, run) {
		t.Fatalf("runs with --tls-ca: exit %d\n%s", code, out)
	}
	if code, out := cliRun("runs"); code == 0 || !strings.Contains(out, "certificate") {
		t.Fatalf("runs without --tls-ca: exit %d\n%s", code, out)
	}

	pool := x509.NewCertPool()
	pemCA, _ := os.ReadFile(ca)
	pool.AppendCertsFromPEM(pemCA)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get("https://" + p.srv.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatalf("https /healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("https /healthz: %s", resp.Status)
	}
	if resp, err := http.Get("http://" + p.srv.HTTPAddr() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP answered 200")
		}
	}
}
