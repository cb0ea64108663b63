package eventbus

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// MinServerVersion is the oldest NATS server runbook works with: consumers
// with several filter subjects arrived in 2.10.
const MinServerVersion = "2.10.0"

// Connect dials a NATS server or cluster and refuses one older than
// MinServerVersion with a one-line error naming both versions.
func Connect(url, name string, opts ...nats.Option) (*nats.Conn, error) {
	base := []nats.Option{
		nats.Name(name),
		nats.Timeout(5 * time.Second),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
	}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if errors.Is(err, nats.ErrAuthorization) {
		return nil, fmt.Errorf("NATS at %s refused the connection: %w", url, err)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot reach NATS at %s: %w", url, err)
	}
	if err := CheckServerVersion(nc.ConnectedServerVersion()); err != nil {
		nc.Close()
		return nil, fmt.Errorf("NATS at %s: %w", url, err)
	}
	return nc, nil
}

// CheckServerVersion returns an error when version is older than MinServerVersion.
func CheckServerVersion(version string) error {
	if versionLess(version, MinServerVersion) {
		return fmt.Errorf("server version %s is too old: runbook needs NATS %s or newer (consumers with several filter subjects)", version, MinServerVersion)
	}
	return nil
}

func versionLess(a, b string) bool {
	pa, pb := versionParts(a), versionParts(b)
	for i := 0; i < 3; i++ {
		if pa[i] != pb[i] {
			return pa[i] < pb[i]
		}
	}
	return false
}

func versionParts(v string) [3]int {
	var out [3]int
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(v, "-+"); i >= 0 {
		v = v[:i]
	}
	for i, p := range strings.SplitN(v, ".", 3) {
		n, _ := strconv.Atoi(p)
		out[i] = n
	}
	return out
}
