package checks

import (
	"context"
	"strings"
	"testing"

	"github.com/kis-core/runbook/domain/plan"
)

// A value the plan names anywhere (here report.notify's smtp_env), printed
// by a failing command check, is not in the check's result once the run's
// SecretValues are passed; without them it would be.
func TestCheckResultsHideEverySecretOfThePlan(t *testing.T) {
	t.Parallel()
	const smtp = "smtp://ops:mail-Pw77-secret@mail.example.com:587"
	p := &plan.Plan{
		Preflight: plan.Preflight{Checks: []plan.Check{{Name: "talks", Command: &plan.Command{
			Argv: []string{"sh", "-c", `echo "relay is $RELAY"; exit 2`}, Env: map[string]string{"RELAY": smtp},
		}}}},
		Report: plan.Report{Notify: []plan.Notify{{Email: &plan.EmailNotify{SMTPEnv: "SMTP_URL", To: []string{"ops@example.com"}}}}},
	}
	r := &Runner{Env: func(n string) (string, bool) { return smtp, n == "SMTP_URL" }}
	if res := r.RunAll(context.Background(), p.Preflight.Checks); !strings.Contains(res[0].Message, smtp) {
		t.Fatalf("premise: without the plan's secrets the message shows the value: %q", res[0].Message)
	}
	secrets := r.SecretValues(p)
	if len(secrets) != 1 || secrets[0] != smtp {
		t.Fatalf("SecretValues %q", secrets)
	}
	res := r.RunAll(context.Background(), p.Preflight.Checks, secrets...)
	if res[0].Status != bad || strings.Contains(res[0].Message, "mail-Pw77") || !strings.Contains(res[0].Message, "relay is [REDACTED]") {
		t.Fatalf("result %+v: want the value redacted", res[0])
	}
	if got := ScrubText("backup failed: "+smtp, secrets); got != "backup failed: [REDACTED]" {
		t.Fatalf("ScrubText %q", got)
	}
}
