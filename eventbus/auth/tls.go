package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
)

// TLSFiles are the PEM files of a TLS setup: a server's certificate and
// key, and the CA its clients verify it with.
type TLSFiles struct {
	Cert, Key string
	// CA verifies the server; empty: the system roots (or, for serve's own
	// connections to itself, Cert).
	CA string
}

// Enabled reports whether a server certificate is given.
func (f TLSFiles) Enabled() bool { return f.Cert != "" || f.Key != "" }

// ServerConfig is the tls.Config of a listener (the embedded NATS server,
// the HTTP server).
func (f TLSFiles) ServerConfig() (*tls.Config, error) {
	if f.Cert == "" || f.Key == "" {
		return nil, errors.New("TLS needs both a certificate (--tls-cert) and its key (--tls-key)")
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s / key %s: %w", f.Cert, f.Key, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// ClientOptions make a NATS client verify the server with CA (the
// system roots when empty) and require TLS.
func ClientOptions(ca string) ([]nats.Option, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pool, err := loadPool(ca)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	return []nats.Option{nats.Secure(cfg)}, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("TLS CA %s: no PEM certificate in it", path)
	}
	return pool, nil
}
