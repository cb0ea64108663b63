package plan

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Values from the environment are referenced by name: a *_env field, or
// ${env:NAME} in a test request. This file is the one home of two rules
// about them:
//
//   - SecretEnv lists every such name a plan uses: their values are never
//     written to an event or a log. The deployer (step output, health
//     results), preflight (check results) and the tester (test results)
//     redact them all, whichever step or check read them.
//   - A test request sends an environment value only to a host the plan
//     declares in test.secret_hosts (SecretHostAllowed): runbook validate
//     refuses any other, the tester refuses it again at run time and never
//     follows a redirect that would carry it to an undeclared host.

// SecretEnv lists, sorted and once each, the environment variables whose
// values plan p uses: every *_env field (preflight checks' headers_env,
// dsn_env, address_env, password_env and url_env; deploy, finally and
// rollback steps' headers_env and dsn_env; health checks' headers_env;
// prometheus_query's auth_env; test requests' headers_env; notify's
// webhook_env and smtp_env) and every ${env:NAME} of a test request.
func (p *Plan) SecretEnv() []string {
	if p == nil {
		return nil
	}
	var out []string
	add := func(names ...string) {
		for _, n := range names {
			if n != "" && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	addMap := func(m map[string]string) {
		for _, k := range sortedKeys(m) {
			add(m[k])
		}
	}
	for _, c := range p.Preflight.Checks {
		if c.HTTP != nil {
			addMap(c.HTTP.HeadersEnv)
		}
		if c.Postgres != nil {
			add(c.Postgres.DSNEnv)
		}
		if c.Redis != nil {
			add(c.Redis.AddressEnv, c.Redis.PasswordEnv)
		}
		if c.NATS != nil {
			add(c.NATS.URLEnv)
		}
	}
	for _, list := range [][]Step{p.Deploy.Steps, p.Deploy.Finally, p.RollbackPlan.RollbackSteps} {
		for _, s := range list {
			if s.HTTP != nil {
				addMap(s.HTTP.HeadersEnv)
			}
			if s.SQL != nil {
				add(s.SQL.DSNEnv)
			}
		}
	}
	for _, h := range p.Deploy.Health {
		addMap(h.HeadersEnv)
	}
	for _, s := range p.Monitor.Sources {
		if s.PrometheusQuery != nil {
			add(s.PrometheusQuery.AuthEnv)
		}
	}
	for _, st := range p.Test.SmokeSteps() {
		add(RequestEnv(st.Request)...)
	}
	if l := p.Test.Load; l != nil {
		for _, r := range l.Requests {
			add(RequestEnv(r)...)
		}
	}
	for _, n := range p.Report.Notify {
		if n.Slack != nil {
			add(n.Slack.WebhookEnv)
		}
		if n.Email != nil {
			add(n.Email.SMTPEnv)
		}
	}
	slices.Sort(out)
	return out
}

// EnvUse is one value from the environment a test request sends: Field is
// where (relative to the request: url, headers.X, body, json.password,
// headers_env.Authorization), Name the variable.
type EnvUse struct {
	Field string
	Name  string
}

// String is how messages name the use: "${env:NAME} in json.password" or
// "headers_env.Authorization (NAME)".
func (u EnvUse) String() string {
	if strings.HasPrefix(u.Field, "headers_env") {
		return fmt.Sprintf("%s (%s)", u.Field, u.Name)
	}
	return fmt.Sprintf("${%s%s} in %s", EnvRefPrefix, u.Name, u.Field)
}

// RequestEnvUses lists the values from the environment request r sends:
// every ${env:NAME} of its url, header values, body and json strings, and
// its headers_env, in that order. Texts with a malformed reference are
// skipped (validation reports them).
func RequestEnvUses(r Request) []EnvUse {
	var out []EnvUse
	RequestTemplates(r, func(path, text string) {
		refs, err := TemplateRefs(text)
		if err != nil {
			return
		}
		for _, ref := range refs {
			if name, ok := strings.CutPrefix(ref, EnvRefPrefix); ok {
				out = append(out, EnvUse{Field: path, Name: name})
			}
		}
	})
	for _, k := range sortedKeys(r.HeadersEnv) {
		out = append(out, EnvUse{Field: joinKey("headers_env", k), Name: r.HeadersEnv[k]})
	}
	return out
}

// RequestEnv lists, once each and in order, the environment variables whose
// values request r sends (RequestEnvUses).
func RequestEnv(r Request) []string {
	var out []string
	for _, u := range RequestEnvUses(r) {
		if !slices.Contains(out, u.Name) {
			out = append(out, u.Name)
		}
	}
	return out
}

// SecretHostAllowed reports whether hosts (test.secret_hosts) let a request
// to u carry values from the environment: an entry "host" allows that host
// on any port, "host:port" that port only (a URL without a port has its
// scheme's: 80 for http, 443 for https). Host names compare without case
// and a trailing dot; a subdomain is another host. No entry, no host.
func SecretHostAllowed(hosts []string, u *url.URL) bool {
	if u == nil {
		return false
	}
	host := normHost(u.Hostname())
	if host == "" {
		return false
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	for _, e := range hosts {
		h, p, err := ParseSecretHost(e)
		if err == nil && h == host && (p == "" || p == port) {
			return true
		}
	}
	return false
}

// ParseSecretHost reads one test.secret_hosts entry: "host" or
// "host:port" (an IPv6 address in brackets when it has a port,
// "[::1]:8443"). The host comes back in lower case without a trailing dot;
// port is "" when the entry has none.
func ParseSecretHost(entry string) (host, port string, err error) {
	e := strings.TrimSpace(entry)
	bad := func(why string) (string, string, error) {
		return "", "", fmt.Errorf("%q is not a host, %s: write the host (api.example.com) or host:port (api.example.com:8443), as in the request's url", entry, why)
	}
	switch {
	case e == "":
		return bad("it is empty")
	case strings.Contains(e, "://"):
		return bad("it has a scheme")
	case strings.ContainsAny(e, "/?#"):
		return bad("it has a path")
	case strings.Contains(e, "@"):
		return bad("it has a user")
	case strings.ContainsAny(e, " \t*"):
		return bad("it has a space or a wildcard (list each host)")
	}
	host = e
	if strings.HasPrefix(e, "[") || strings.Count(e, ":") == 1 {
		if h, p, serr := net.SplitHostPort(e); serr == nil {
			n, perr := strconv.Atoi(p)
			if perr != nil || n < 1 || n > 65535 {
				return bad(fmt.Sprintf("its port %q is not a number from 1 to 65535", p))
			}
			host, port = h, strconv.Itoa(n)
		} else if !strings.HasPrefix(e, "[") || !strings.HasSuffix(e, "]") {
			return bad("its port is missing")
		}
	}
	host = normHost(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	if host == "" {
		return bad("it names no host")
	}
	return host, port, nil
}

func normHost(h string) string { return strings.TrimSuffix(strings.ToLower(h), ".") }

// secretHostPlaceholder stands in for a reference when a url is checked:
// a host made of one is a host the plan does not name.
const secretHostPlaceholder = "runbook-ref-placeholder"

// secretHosts checks test.secret_hosts' entries.
func (c *checker) secretHosts(t Test) {
	for i, e := range t.SecretHosts {
		if _, _, err := ParseSecretHost(e); err != nil {
			c.errorf(joinIndex("test.secret_hosts", i), "%s", err.Error())
		}
	}
}

// requestSecretHost refuses a test request (at path) that sends values from
// the environment to a host test.secret_hosts does not list, or to a host
// it does not name itself (taken from a reference).
func (c *checker) requestSecretHost(path string, r Request, t Test) {
	uses := RequestEnvUses(r)
	if len(uses) == 0 {
		return
	}
	what := make([]string, len(uses))
	for i, u := range uses {
		what[i] = u.String()
	}
	sends := strings.Join(what, ", ")
	up := joinKey(path, "url")
	raw, err := ExpandTemplate(r.URL, func(string) (string, bool) { return secretHostPlaceholder, true })
	if err != nil {
		return // reported with the url's templates
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return // reported as a bad url
	}
	if strings.Contains(u.Host, secretHostPlaceholder) {
		c.errorf(up, "this request sends a value from the environment (%s) to a host taken from ${…}: write the host in the url itself, so that it can be checked against test.secret_hosts", sends)
		return
	}
	if SecretHostAllowed(t.SecretHosts, u) {
		return
	}
	how := fmt.Sprintf("declare it under test: secret_hosts: [%q]", u.Host)
	if len(t.SecretHosts) > 0 {
		how = fmt.Sprintf("add %q to test.secret_hosts (now %s)", u.Host, strings.Join(t.SecretHosts, ", "))
	}
	c.errorf(up, "this request sends a value from the environment (%s) to %s, a host the plan does not declare for its tests' secrets: if %s may receive it, %s; otherwise send no ${env:…} or headers_env to it", sends, u.Host, u.Host, how)
}
