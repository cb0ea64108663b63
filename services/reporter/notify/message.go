package notify

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"strings"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/services/reporter/report"
)

// Footer is the Slack footer of run r: the seed's "KIS_CORE_V3 Deployment
// System" with the plan's systems (scope.systems_affected, as the QC
// summary's header names them) in place of KIS_CORE_V3; "Deployment
// System" when the plan names none.
func Footer(r Run) string {
	var names []string
	for _, s := range r.Report.Change.Systems {
		if s = strings.TrimSpace(s); s != "" {
			names = append(names, s)
		}
	}
	if len(names) == 0 {
		return "Deployment System"
	}
	return strings.Join(names, ", ") + " Deployment System"
}

// Run is what the notifications of one run are made of: its report.ready
// and the parts of the report the messages show.
type Run struct {
	ID        string
	Status    string
	QCSummary string
	// ReportJSON is report.ready's report_json, byte for byte.
	ReportJSON []byte
	// Report is ReportJSON decoded (zero when it does not decode).
	Report report.Report
	// Time is the report's deployment.endTime, else report.ready's time:
	// Slack's ts and the e-mail's Date, the same on every redelivery.
	Time time.Time
	// Started: the message says the deploy started (deploy.started at
	// Time), not the report; ChangeID and Title name the change.
	Started         bool
	ChangeID, Title string
}

// StartedRun is the "deployment started" notification of a run: the
// seed's slack_notify "🚀 Deployment started: $DEPLOYMENT_ID".
func StartedRun(runID, changeID, title string, at time.Time) Run {
	return Run{ID: runID, Status: "DEPLOYING", Started: true, ChangeID: changeID, Title: title, Time: at.UTC()}
}

// StartedText is the one line a started notification says.
func StartedText(r Run) string {
	s := "🚀 Deployment started: " + r.ID
	if r.ChangeID != "" || r.Title != "" {
		s += " (" + strings.TrimSpace(r.ChangeID+" "+r.Title) + ")"
	}
	return s
}

// StartedJSON is the webhook body of a started notification.
func StartedJSON(r Run) []byte {
	b, err := json.Marshal(map[string]string{
		"event": "deploy.started", "runId": r.ID, "changeId": r.ChangeID, "title": r.Title,
		"time": r.Time.Format(time.RFC3339Nano), "text": StartedText(r),
	})
	if err != nil {
		panic(fmt.Sprintf("notify: marshal started payload: %v", err)) // plain strings: cannot fail
	}
	return b
}

// NewRun reads a report.ready of run runID published at evTime. A report
// JSON that does not decode still notifies (the webhook gets the bytes as
// published); the error says what is missing from the other messages.
func NewRun(runID, status, reportJSON, qcSummary string, evTime time.Time) (Run, error) {
	r := Run{ID: runID, Status: status, QCSummary: qcSummary, ReportJSON: []byte(reportJSON), Time: evTime.UTC()}
	if err := json.Unmarshal(r.ReportJSON, &r.Report); err != nil {
		return r, fmt.Errorf("report JSON of run %s: %w", runID, err)
	}
	if end := r.Report.Deployment.EndTime; end != nil {
		if t, err := time.Parse(time.RFC3339Nano, *end); err == nil {
			r.Time = t.UTC()
		}
	}
	return r, nil
}

// Succeeded reports whether the run ended SUCCESS (plan `when: success`).
func (r Run) Succeeded() bool { return r.Status == string(runstate.Success) }

// Important is the seed's condition for the e-mail report ("중요한 배포만",
// important deployments only): the run did not succeed — FAILED,
// ROLLED_BACK, ROLLBACK_FAILED, REJECTED, EXPIRED, INVALID; a CANCELLED
// run is an operator's decision, not a failure — or its report has issues.
func (r Run) Important() bool {
	return (!r.Succeeded() && r.Status != string(runstate.Cancelled)) || len(r.Report.Issues) > 0
}

// ShouldSend reports whether destination d is notified for run r: its
// `when` (always, failure, success) and, for e-mail, Important as well.
func ShouldSend(d plan.Notify, r Run) bool {
	if !d.ShouldSend(r.Succeeded()) {
		return false
	}
	if d.Email != nil {
		return r.Important()
	}
	return true
}

// SlackColor is the attachment colour by status (the seed calls
// getSlackColor without showing it; its bash slack_notify uses "good" and
// "danger"): SUCCESS good, FAILED and ROLLBACK_FAILED danger, any other
// status — ROLLED_BACK, REJECTED, EXPIRED, CANCELLED, INVALID — warning.
func SlackColor(status string) string {
	switch runstate.Status(status) {
	case runstate.Success:
		return "good"
	case runstate.Failed, runstate.RollbackFailed:
		return "danger"
	}
	return "warning"
}

// Emoji is the seed's status emoji of the Slack title.
func Emoji(status string) string {
	switch runstate.Status(status) {
	case runstate.Success:
		return "✅"
	case runstate.Failed:
		return "❌"
	case runstate.RolledBack:
		return "🔄"
	}
	return "⚠️"
}

// SlackPayload is the seed's sendSlackNotification payload.
type SlackPayload struct {
	Attachments []SlackAttachment `json:"attachments"`
}

// SlackAttachment is its one attachment; fields in the seed's order.
type SlackAttachment struct {
	Color  string       `json:"color"`
	Title  string       `json:"title"`
	Text   string       `json:"text"`
	Fields []SlackField `json:"fields"`
	Footer string       `json:"footer"`
	TS     int64        `json:"ts"`
}

// SlackField is one short field of the attachment.
type SlackField struct {
	Title string `json:"title"`
	Value string `json:"value"`
	Short bool   `json:"short"`
}

// Slack builds the Slack message of run r: the seed's shape, with the
// report's duration and operator and ts the report's end time.
func Slack(r Run) SlackPayload {
	if r.Started {
		return SlackPayload{Attachments: []SlackAttachment{{
			Color: "good", Title: StartedText(r), Footer: Footer(r), TS: r.Time.Unix(),
		}}}
	}
	return SlackPayload{Attachments: []SlackAttachment{{
		Color: SlackColor(r.Status),
		Title: fmt.Sprintf("%s Deployment %s: %s", Emoji(r.Status), r.Status, r.ID),
		Text:  "```\n" + r.QCSummary + "\n```",
		Fields: []SlackField{
			{Title: "Duration", Value: or(r.Report.Deployment.Duration, "Unknown"), Short: true},
			{Title: "Operator", Value: or(r.Report.Deployment.Operator, "system"), Short: true},
		},
		Footer: Footer(r),
		TS:     r.Time.Unix(),
	}}}
}

// SlackJSON is Slack(r) as the bytes posted.
func SlackJSON(r Run) []byte {
	b, err := json.Marshal(Slack(r))
	if err != nil {
		panic(fmt.Sprintf("notify: marshal slack payload: %v", err)) // plain strings and numbers: cannot fail
	}
	return b
}

// Subject is the e-mail subject of run r.
func Subject(r Run) string {
	s := fmt.Sprintf("%s Deployment %s: %s", Emoji(r.Status), r.Status, r.ID)
	if c := r.Report.Change; c.ID != "" {
		s += " (" + c.ID
		if c.Title != "" {
			s += " " + c.Title
		}
		s += ")"
	}
	return s
}

// MessageID is the e-mail's deterministic Message-ID for run r and
// destination key: a resend after a crash carries the same one, so mail
// systems and readers can tell it is the same message.
func MessageID(r Run, key string) string {
	sum := sha256.Sum256([]byte(r.ID + "\x00" + key))
	return "<" + r.ID + "." + hex.EncodeToString(sum[:8]) + "@runbook>"
}

// Email builds the RFC 5322 message of run r: the QC summary as text, the
// report JSON attached as <run>-report.json. It is deterministic (Date is
// r.Time, the MIME boundary derives from the run), so a resend is the same
// bytes.
func Email(r Run, from string, to []string, key string) []byte {
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hdr("From", from)
	hdr("To", strings.Join(to, ", "))
	hdr("Subject", mime.QEncoding.Encode("utf-8", Subject(r)))
	hdr("Date", r.Time.Format(time.RFC1123Z))
	hdr("Message-ID", MessageID(r, key))
	hdr("MIME-Version", "1.0")
	hdr("X-Runbook-Run-Id", r.ID)
	hdr("X-Runbook-Status", r.Status)

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	sum := sha256.Sum256([]byte("boundary\x00" + r.ID + "\x00" + key))
	_ = mw.SetBoundary("runbook-" + hex.EncodeToString(sum[:12])) // valid by construction
	hdr("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
	b.WriteString("\r\n")

	text := "Deployment " + r.Status + ": " + r.ID + "\n\n" + r.QCSummary + "\n"
	if len(r.Report.Issues) > 0 {
		text += "\nIssues:\n"
		for _, is := range r.Report.Issues {
			text += "- [" + is.Severity + "] " + is.Message + "\n"
		}
	}
	text += "\nThe full report is attached (" + r.ID + "-report.json).\n"
	tp, _ := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {"text/plain; charset=utf-8"},
		"Content-Transfer-Encoding": {"quoted-printable"},
	})
	qp := quotedprintable.NewWriter(tp)
	_, _ = qp.Write([]byte(strings.ReplaceAll(text, "\n", "\r\n")))
	_ = qp.Close()

	ap, _ := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {"application/json; charset=utf-8"},
		"Content-Transfer-Encoding": {"base64"},
		"Content-Disposition":       {`attachment; filename="` + r.ID + `-report.json"`},
	})
	enc := base64.StdEncoding.EncodeToString(r.ReportJSON)
	for len(enc) > 76 {
		_, _ = ap.Write([]byte(enc[:76] + "\r\n"))
		enc = enc[76:]
	}
	_, _ = ap.Write([]byte(enc + "\r\n"))
	_ = mw.Close()
	b.Write(body.Bytes())
	return b.Bytes()
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
