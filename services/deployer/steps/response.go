package steps

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/kis-core/runbook/domain/expect"
)

// maxJudgedBody is how much of a response body health checks, wait.until
// and http steps read to judge it (JSON paths, body_contains): 1 MiB, far
// more than a health answer; a longer body is cut there (then its JSON does
// not parse and a json assertion fails, saying so).
const maxJudgedBody = 1 << 20

// observe sends req and reads its response as domain/expect judges it: the
// status, headers, at most maxJudgedBody of the body, and the time from
// sending to the last byte read.
//
// Every request goes on a new connection (closed after it): after a
// gateway's reload (nginx -s reload) the old workers keep serving the
// connections they hold, so an attempt on a kept-alive connection can pass
// against the configuration being replaced while new clients already get
// another — a rollback's wait passed in 4 ms on the old worker while new
// connections still got the maintenance page. A new connection reaches
// what a new client reaches.
func (x *Executor) observe(req *http.Request) (expect.Observation, error) {
	req.Close = true
	t0 := time.Now()
	resp, err := x.client().Do(req)
	if err != nil {
		return expect.Observation{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJudgedBody))
	if err != nil {
		return expect.Observation{}, fmt.Errorf("reading the response (HTTP %d): %w", resp.StatusCode, err)
	}
	return expect.Observation{Status: resp.StatusCode, Duration: time.Since(t0), Body: body, Header: resp.Header}, nil
}
