package notify_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/services/reporter/notify"
	"github.com/kis-core/runbook/services/reporter/report"
)

const qc = "KIS_CORE_V3 Deployment Report - 2025-09-22T14:35:00.000Z\n" +
	"============================================\nDeployment ID: RUN-1\nStatus: ROLLED_BACK (Duration: 5m 0s)"

// reportJSON is a report as the reporter publishes it (the fields the
// messages read; the rest is carried as bytes).
func reportJSON(t testing.TB, runID, status, operator string, issues int) string {
	t.Helper()
	end := "2025-09-22T14:35:00.000Z"
	r := report.Report{
		Deployment: report.Deployment{ID: runID, StartTime: "2025-09-22T14:30:00.000Z", EndTime: &end, Duration: "5m 0s", Status: status, Operator: operator},
		Change:     report.Change{ID: "CR-2025-001", Title: "Order API v2", Systems: []string{"KIS_CORE_V3"}},
	}
	for range issues {
		r.Issues = append(r.Issues, report.Issue{Severity: report.SeverityCritical, Type: "THRESHOLD", Message: "error_rate above threshold", Time: end})
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustRun(t testing.TB, runID, status, operator string, issues int) notify.Run {
	t.Helper()
	r, err := notify.NewRun(runID, status, reportJSON(t, runID, status, operator, issues), qc, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSlackPayloadHasTheSeedsShape(t *testing.T) {
	end := time.Date(2025, 9, 22, 14, 35, 0, 0, time.UTC).Unix()
	for _, tc := range []struct {
		status, operator         string
		color, title, wantOpName string
	}{
		{"SUCCESS", "kim", "good", "✅ Deployment SUCCESS: RUN-1", "kim"},
		{"FAILED", "kim", "danger", "❌ Deployment FAILED: RUN-1", "kim"},
		{"ROLLED_BACK", "", "warning", "🔄 Deployment ROLLED_BACK: RUN-1", "system"},
		{"ROLLBACK_FAILED", "kim", "danger", "⚠️ Deployment ROLLBACK_FAILED: RUN-1", "kim"},
		{"REJECTED", "kim", "warning", "⚠️ Deployment REJECTED: RUN-1", "kim"},
		{"INVALID", "kim", "warning", "⚠️ Deployment INVALID: RUN-1", "kim"},
	} {
		t.Run(tc.status, func(t *testing.T) {
			var got map[string]any
			if err := json.Unmarshal(notify.SlackJSON(mustRun(t, "RUN-1", tc.status, tc.operator, 0)), &got); err != nil {
				t.Fatal(err)
			}
			assertSlack(t, got, tc.color, tc.title, qc, "5m 0s", tc.wantOpName, end)
		})
	}
}

// assertSlack checks a decoded Slack payload field by field against the
// seed's sendSlackNotification.
func assertSlack(t *testing.T, got map[string]any, color, title, summary, duration, operator string, ts int64) {
	t.Helper()
	if len(got) != 1 {
		t.Errorf("payload keys = %v, want only attachments", got)
	}
	atts, _ := got["attachments"].([]any)
	if len(atts) != 1 {
		t.Fatalf("attachments = %v, want one", got["attachments"])
	}
	a, _ := atts[0].(map[string]any)
	want := map[string]any{
		"color":  color,
		"title":  title,
		"text":   "```\n" + summary + "\n```",
		"footer": "KIS_CORE_V3 Deployment System",
		"ts":     float64(ts),
	}
	for k, v := range want {
		if a[k] != v {
			t.Errorf("attachments[0].%s = %#v, want %#v", k, a[k], v)
		}
	}
	fields, _ := a["fields"].([]any)
	wantFields := []map[string]any{
		{"title": "Duration", "value": duration, "short": true},
		{"title": "Operator", "value": operator, "short": true},
	}
	if len(fields) != len(wantFields) {
		t.Fatalf("fields = %v, want %v", fields, wantFields)
	}
	for i, wf := range wantFields {
		f, _ := fields[i].(map[string]any)
		for k, v := range wf {
			if f[k] != v {
				t.Errorf("fields[%d].%s = %#v, want %#v", i, k, f[k], v)
			}
		}
	}
	if len(a) != 6 {
		t.Errorf("attachment has keys %v, want color title text fields footer ts", a)
	}
}

func TestSlackTSIsTheReportsEndTimeElseTheEventTime(t *testing.T) {
	ev := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	r, err := notify.NewRun("R", "SUCCESS", reportJSON(t, "R", "SUCCESS", "kim", 0), qc, ev)
	if err != nil || notify.Slack(r).Attachments[0].TS != time.Date(2025, 9, 22, 14, 35, 0, 0, time.UTC).Unix() {
		t.Fatalf("ts = %d, err %v: want the report's endTime", notify.Slack(r).Attachments[0].TS, err)
	}
	r, err = notify.NewRun("R", "SUCCESS", "not json", qc, ev)
	if err == nil {
		t.Fatal("a report that does not decode must say so")
	}
	a := notify.Slack(r).Attachments[0]
	if a.TS != ev.Unix() || a.Fields[0].Value != "Unknown" || a.Fields[1].Value != "system" {
		t.Fatalf("undecodable report: %+v, want ts of the event, Unknown duration, operator system", a)
	}
}

func TestShouldSend(t *testing.T) {
	slack := func(when string) plan.Notify {
		return plan.Notify{Slack: &plan.SlackNotify{WebhookEnv: "S", When: when}}
	}
	email := func(when string) plan.Notify {
		return plan.Notify{Email: &plan.EmailNotify{SMTPEnv: "M", To: []string{"a@b.c"}, When: when}}
	}
	for _, tc := range []struct {
		name   string
		d      plan.Notify
		status string
		issues int
		want   bool
	}{
		{"slack always on success", slack(""), "SUCCESS", 0, true},
		{"slack always on rollback", slack("always"), "ROLLED_BACK", 0, true},
		{"slack failure-only skips success", slack("failure"), "SUCCESS", 0, false},
		{"slack failure-only on failed", slack("failure"), "FAILED", 0, true},
		{"slack success-only skips rollback", slack("success"), "ROLLED_BACK", 0, false},
		{"email skips a clean success", email(""), "SUCCESS", 0, false},
		{"email on a success with issues (seed)", email(""), "SUCCESS", 1, true},
		{"email on failed (seed)", email(""), "FAILED", 0, true},
		{"email on rolled back", email(""), "ROLLED_BACK", 0, true},
		{"email on rollback failed", email(""), "ROLLBACK_FAILED", 0, true},
		{"email on invalid", email(""), "INVALID", 0, true},
		{"email skips a clean cancel", email(""), "CANCELLED", 0, false},
		{"email failure-only skips success with issues", email("failure"), "SUCCESS", 2, false},
		{"email success-only on success with issues", email("success"), "SUCCESS", 1, true},
		{"email success-only skips failed", email("success"), "FAILED", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := notify.ShouldSend(tc.d, mustRun(t, "R", tc.status, "kim", tc.issues)); got != tc.want {
				t.Fatalf("ShouldSend = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEmailMessage(t *testing.T) {
	r := mustRun(t, "RUN-7", "ROLLED_BACK", "kim", 1)
	raw := notify.Email(r, "runbook@example.com", []string{"ops@example.com", "lead@example.com"}, "email:SMTP_URL:ops@example.com,lead@example.com")
	if again := notify.Email(r, "runbook@example.com", []string{"ops@example.com", "lead@example.com"}, "email:SMTP_URL:ops@example.com,lead@example.com"); string(again) != string(raw) {
		t.Fatal("the e-mail must be the same bytes every time (resends after a crash)")
	}
	msg := parseMail(t, raw)
	if msg.subject != "🔄 Deployment ROLLED_BACK: RUN-7 (CR-2025-001 Order API v2)" {
		t.Errorf("subject = %q", msg.subject)
	}
	if msg.header.Get("From") != "runbook@example.com" || msg.header.Get("To") != "ops@example.com, lead@example.com" {
		t.Errorf("from/to = %q / %q", msg.header.Get("From"), msg.header.Get("To"))
	}
	if d, err := msg.header.Date(); err != nil || !d.Equal(time.Date(2025, 9, 22, 14, 35, 0, 0, time.UTC)) {
		t.Errorf("date = %v (%v), want the report's end time", d, err)
	}
	if !strings.Contains(msg.text, qc) || !strings.Contains(msg.text, "[CRITICAL] error_rate above threshold") {
		t.Errorf("text part lacks the QC summary or the issues:\n%s", msg.text)
	}
	if msg.attachment != string(r.ReportJSON) || msg.filename != "RUN-7-report.json" {
		t.Errorf("attachment %q = %q, want the report JSON", msg.filename, msg.attachment)
	}
	if id := msg.header.Get("Message-ID"); id != notify.MessageID(r, "email:SMTP_URL:ops@example.com,lead@example.com") || !strings.HasPrefix(id, "<RUN-7.") {
		t.Errorf("Message-ID = %q", id)
	}
}

type parsedMail struct {
	header                    mail.Header
	subject, text, attachment string
	filename                  string
}

// parseMail reads an RFC 5322 message as a mail client would.
func parseMail(t testing.TB, raw []byte) parsedMail {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("read message: %v", err)
	}
	out := parsedMail{header: m.Header}
	if out.subject, err = new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject")); err != nil {
		t.Fatalf("subject: %v", err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("content type %q: %v", m.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart() // decodes quoted-printable
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("part: %v", err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("read part: %v", err)
		}
		switch {
		case strings.HasPrefix(p.Header.Get("Content-Type"), "text/plain"):
			out.text = strings.ReplaceAll(string(b), "\r\n", "\n")
		case p.FileName() != "":
			out.filename = p.FileName()
			dec, err := decodeBase64(string(b))
			if err != nil {
				t.Fatalf("attachment: %v", err)
			}
			out.attachment = dec
		}
	}
	return out
}

func decodeBase64(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(s))
	return string(b), err
}

// The footer names the plan's systems as the QC summary's header does.
func TestSlackFooterNamesThePlansSystems(t *testing.T) {
	t.Parallel()
	r := mustRun(t, "R-F", "SUCCESS", "kim", 0)
	if got := notify.Slack(r).Attachments[0].Footer; got != "KIS_CORE_V3 Deployment System" {
		t.Errorf("footer %q", got)
	}
	r.Report.Change.Systems = []string{"Estimator Service", "ERP AI"}
	if got := notify.Slack(r).Attachments[0].Footer; got != "Estimator Service, ERP AI Deployment System" {
		t.Errorf("footer %q", got)
	}
	r.Report.Change.Systems = nil
	if got := notify.Footer(r); got != "Deployment System" {
		t.Errorf("footer without systems %q", got)
	}
}
