package notify

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/kis-core/runbook/domain/plan"
)

// Channels of a destination.
const (
	ChannelSlack   = "slack"
	ChannelWebhook = "webhook"
	ChannelEmail   = "email"
)

var envName = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)

// Key names a destination for exactly-once bookkeeping:
// "slack:<webhook env>", "webhook:<url without credentials>",
// "email:<smtp env>:<to,...>". A run gets one notification.sent or
// notification.failed per key, ever. The key holds no secret: it is part of
// the recorded events and of their ids.
func Key(d plan.Notify) string {
	switch {
	case d.Slack != nil:
		return ChannelSlack + ":" + d.Slack.WebhookEnv
	case d.Webhook != nil:
		return ChannelWebhook + ":" + RedactURL(d.Webhook.URL)
	case d.Email != nil:
		return ChannelEmail + ":" + d.Email.SMTPEnv + ":" + strings.Join(d.Email.To, ",")
	}
	return ""
}

// RedactURL is raw without user info, query and fragment, which may carry
// tokens. When anything was removed, a short hash of the whole URL is
// appended so that two URLs differing only there stay two destinations.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		sum := sha256.Sum256([]byte(raw))
		return "invalid-url#" + hex.EncodeToString(sum[:4])
	}
	if u.User == nil && u.RawQuery == "" && u.Fragment == "" && !u.ForceQuery {
		return raw
	}
	c := *u
	c.User, c.RawQuery, c.Fragment, c.RawFragment, c.ForceQuery = nil, "", "", "", false
	sum := sha256.Sum256([]byte(raw))
	return c.String() + "#" + hex.EncodeToString(sum[:4])
}

// merge lists the plan's destinations, then the server's, each key once
// (the plan's wins: it may narrow when it is sent).
func merge(fromPlan, fromServer []plan.Notify) []plan.Notify {
	seen := map[string]bool{}
	var out []plan.Notify
	for _, list := range [][]plan.Notify{fromPlan, fromServer} {
		for _, d := range list {
			k := Key(d)
			if k == "" || seen[k] {
				continue
			}
			seen[k] = true
			out = append(out, d)
		}
	}
	return out
}

// ServerDestinations builds the server-configured destinations from the
// --notify-* flags: a Slack webhook held in env var slackEnv, a generic
// webhook URL, and e-mail to emailTo through the SMTP URL held in env var
// smtpEnv. Empty values configure nothing. They are sent for every run, on
// top of the plan's report.notify (the same key is sent once).
func ServerDestinations(slackEnv, webhookURL, smtpEnv string, emailTo []string) ([]plan.Notify, error) {
	var out []plan.Notify
	if slackEnv != "" {
		if !envName.MatchString(slackEnv) {
			shown := fmt.Sprintf("%q", slackEnv)
			if strings.Contains(slackEnv, "://") {
				shown = "(a URL, not repeated here)" // the webhook URL is the secret
			}
			return nil, fmt.Errorf("--notify-slack-env %s is not an environment variable name ([A-Z_][A-Z0-9_]*): name the variable that holds the webhook URL, never the URL", shown)
		}
		out = append(out, plan.Notify{Slack: &plan.SlackNotify{WebhookEnv: slackEnv}})
	}
	if webhookURL != "" {
		u, err := url.Parse(webhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
			return nil, fmt.Errorf("--notify-webhook %q is not an http:// or https:// URL with a host", RedactURL(webhookURL))
		}
		out = append(out, plan.Notify{Webhook: &plan.WebhookNotify{URL: webhookURL}})
	}
	var to []string
	for _, a := range emailTo {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if at := strings.LastIndexByte(a, '@'); at <= 0 || at == len(a)-1 {
			return nil, fmt.Errorf("--notify-email-to: %q is not an e-mail address (name@example.com)", a)
		}
		to = append(to, a)
	}
	switch {
	case len(to) > 0 && smtpEnv == "":
		return nil, fmt.Errorf("--notify-email-to needs --notify-smtp-env: the environment variable holding smtp://user:pass@host:port?from=...")
	case len(to) == 0 && smtpEnv != "":
		return nil, fmt.Errorf("--notify-smtp-env %s needs --notify-email-to: the recipients", smtpEnv)
	case smtpEnv != "":
		if !envName.MatchString(smtpEnv) {
			shown := fmt.Sprintf("%q", smtpEnv)
			if strings.Contains(smtpEnv, "://") {
				shown = "(a URL, not repeated here)" // it may hold the SMTP password
			}
			return nil, fmt.Errorf("--notify-smtp-env %s is not an environment variable name ([A-Z_][A-Z0-9_]*): name the variable that holds smtp://user:pass@host:port?from=...", shown)
		}
		out = append(out, plan.Notify{Email: &plan.EmailNotify{SMTPEnv: smtpEnv, To: to}})
	}
	return out, nil
}
