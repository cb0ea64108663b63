package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// permanentError is a delivery error that retrying cannot fix (a 4xx, a
// missing env var, a bad SMTP URL, a 5xx SMTP reply).
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return &permanentError{err: err} }

// retryAfterError is a retryable error with the receiver's Retry-After.
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// Retryable reports whether a delivery error is worth another attempt:
// network errors, HTTP 5xx and 429, SMTP 4xx replies — not HTTP 4xx, SMTP
// 5xx or configuration errors.
func Retryable(err error) bool {
	var p *permanentError
	return err != nil && !errors.As(err, &p)
}

// Delay is the wait before attempt n+1 after n failed attempts (n ≥ 1):
// base doubled n-1 times, capped at maxDelay; a longer Retry-After from
// the receiver is honoured up to maxDelay.
func Delay(n int, base, maxDelay time.Duration, err error) time.Duration {
	d := base
	for i := 1; i < n && d < maxDelay; i++ {
		d *= 2
	}
	var ra *retryAfterError
	if errors.As(err, &ra) && ra.after > d {
		d = ra.after
	}
	return min(d, maxDelay)
}

// postJSON posts body to rawURL once. target names the URL in errors (a
// Slack webhook URL is itself the secret: its env var is named instead).
// key is the Idempotency-Key header: the same on every attempt and resend
// for one run and destination.
func postJSON(ctx context.Context, c *http.Client, rawURL, target string, body []byte, key string, extra http.Header) error {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return permanent(fmt.Errorf("%s is not an http:// or https:// URL with a host", target))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return permanent(fmt.Errorf("request to %s: invalid request", target))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "runbook-notifier")
	req.Header.Set("Idempotency-Key", key)
	for k, v := range extra {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		// *url.Error repeats the URL, which may hold a token: keep the cause only.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("POST %s: %w", target, err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("POST %s: HTTP %d: %s", target, resp.StatusCode, strings.TrimSpace(string(snippet)))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s > 0 {
			return &retryAfterError{err: err, after: time.Duration(s) * time.Second}
		}
		return err
	default:
		return permanent(err)
	}
}

// SMTPConfig is the SMTP URL an env var holds:
// smtp://user:pass@host:port?from=runbook@example.com (STARTTLS when the
// server offers it; smtps:// for TLS from the start). Port defaults to 25
// (smtp) or 465 (smtps); from defaults to runbook@localhost.
type SMTPConfig struct {
	TLS      bool
	Host     string
	Port     string
	User     string
	Password string
	From     string
}

// Addr is host:port.
func (c SMTPConfig) Addr() string { return net.JoinHostPort(c.Host, c.Port) }

// ParseSMTPURL parses an SMTP URL. Errors never repeat the password.
func ParseSMTPURL(raw string) (SMTPConfig, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return SMTPConfig{}, errors.New("not a URL: write smtp://user:pass@host:port?from=runbook@example.com")
	}
	var c SMTPConfig
	switch u.Scheme {
	case "smtp":
		c.Port = "25"
	case "smtps":
		c.TLS, c.Port = true, "465"
	default:
		return SMTPConfig{}, fmt.Errorf("scheme %q: write smtp://user:pass@host:port?from=... (or smtps://)", u.Scheme)
	}
	if c.Host = u.Hostname(); c.Host == "" {
		return SMTPConfig{}, errors.New("no host: write smtp://user:pass@host:port?from=...")
	}
	if p := u.Port(); p != "" {
		c.Port = p
	}
	if u.User != nil {
		c.User = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	c.From = or(u.Query().Get("from"), "runbook@localhost")
	return c, nil
}

// sendMail delivers msg to rcpts through c once, within timeout.
func sendMail(ctx context.Context, c SMTPConfig, rcpts []string, msg []byte, timeout time.Duration) error {
	d := net.Dialer{Timeout: timeout}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var conn net.Conn
	var err error
	if c.TLS {
		td := tls.Dialer{NetDialer: &d, Config: &tls.Config{ServerName: c.Host, MinVersion: tls.VersionTLS12}}
		conn, err = td.DialContext(dctx, "tcp", c.Addr())
	} else {
		conn, err = d.DialContext(dctx, "tcp", c.Addr())
	}
	if err != nil {
		return fmt.Errorf("connect to SMTP %s: %w", c.Addr(), err)
	}
	defer conn.Close()
	deadline := time.Now().Add(timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()

	cl, err := smtp.NewClient(conn, c.Host)
	if err != nil {
		return smtpErr(c, "greeting", err)
	}
	defer cl.Close()
	if !c.TLS {
		if ok, _ := cl.Extension("STARTTLS"); ok {
			if err := cl.StartTLS(&tls.Config{ServerName: c.Host, MinVersion: tls.VersionTLS12}); err != nil {
				return smtpErr(c, "STARTTLS", err)
			}
		}
	}
	if c.User != "" {
		if ok, _ := cl.Extension("AUTH"); !ok {
			return permanent(fmt.Errorf("SMTP %s: the URL has a user but the server offers no AUTH", c.Addr()))
		}
		// PlainAuth refuses to send the password unencrypted except to localhost.
		if err := cl.Auth(smtp.PlainAuth("", c.User, c.Password, c.Host)); err != nil {
			var te *textproto.Error
			var ne net.Error
			if !errors.As(err, &te) && !errors.As(err, &ne) && !errors.Is(err, io.EOF) {
				// e.g. "unencrypted connection": no retry will encrypt it.
				return permanent(fmt.Errorf("SMTP %s AUTH: %w (use smtps:// or a server offering STARTTLS)", c.Addr(), err))
			}
			return smtpErr(c, "AUTH", err)
		}
	}
	if err := cl.Mail(c.From); err != nil {
		return smtpErr(c, "MAIL FROM", err)
	}
	for _, r := range rcpts {
		if err := cl.Rcpt(r); err != nil {
			return smtpErr(c, "RCPT TO "+r, err)
		}
	}
	w, err := cl.Data()
	if err != nil {
		return smtpErr(c, "DATA", err)
	}
	if _, err := w.Write(msg); err != nil {
		return smtpErr(c, "DATA", err)
	}
	if err := w.Close(); err != nil {
		return smtpErr(c, "end of DATA", err)
	}
	_ = cl.Quit() // delivered once DATA is accepted
	return nil
}

// smtpErr wraps an SMTP failure: a 5xx reply is permanent, a 4xx reply or a
// network error is worth retrying.
func smtpErr(c SMTPConfig, step string, err error) error {
	err = fmt.Errorf("SMTP %s %s: %w", c.Addr(), step, err)
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 {
		return permanent(err)
	}
	return err
}
