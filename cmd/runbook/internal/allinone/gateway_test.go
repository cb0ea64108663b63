package allinone_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kis-core/runbook/domain/vocab"
	"github.com/kis-core/runbook/eventbus/natstest"
	"github.com/kis-core/runbook/examples/estimator"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter/pgstore/pgtest"
)

// gateway is a real nginx (Debian's nginx-light) in front of the target,
// driven as the seed's deployment-script.sh drives production's: the active
// server block is conf.d/active.conf; blocking traffic copies
// maintenance.conf (503 for everything) onto it and reloads, restoring
// traffic copies production.conf back and reloads. (The seed's
// `nginx -s reload -c /etc/nginx/maintenance.conf` does not switch configs:
// -s sends a signal to the running master, which re-reads the file it was
// started with, so the active file is what changes.)
type gateway struct {
	dir, url, reload string
}

func startGateway(t *testing.T, backend string) *gateway {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		missing(t, "nginx (Debian nginx-light, installed by .ci/run)")
	}
	dir := t.TempDir()
	// nginx's workers run as nobody when the master is root: they must
	// reach the temp paths under the test's directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	backend = strings.TrimPrefix(backend, "http://")
	files := map[string]string{
		"nginx.conf": fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log notice;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp/body;
  proxy_temp_path %[1]s/tmp/proxy;
  include %[1]s/conf.d/active.conf;
}
`, dir),
		"conf.d/production.conf": fmt.Sprintf(`server {
  listen %s;
  location / {
    proxy_pass http://%s;
    proxy_set_header Host $host;
  }
}
`, addr, backend),
		"conf.d/maintenance.conf": fmt.Sprintf(`server {
  listen %s;
  location / {
    default_type application/json;
    return 503 '{"status":"maintenance"}';
  }
}
`, addr),
	}
	files["conf.d/active.conf"] = files["conf.d/production.conf"]
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nginx.conf")
	cmd := exec.Command(bin, "-p", dir, "-c", conf, "-g", "daemon off;")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx stderr:\n%s\nnginx error.log:\n%s", stderr.String(), b)
		}
	})
	g := &gateway{dir: dir, url: "http://" + addr,
		reload: fmt.Sprintf("%s -p %s -c %s -s reload", bin, dir, conf)}
	natstest.Eventually(t, 10*time.Second, "nginx answers on "+addr, func() bool {
		_, code := g.get("/api/v1/health")
		return code == http.StatusOK
	})
	return g
}

func (g *gateway) get(path string) (string, int) {
	resp, err := http.Get(g.url + path)
	if err != nil {
		return err.Error(), 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode
}

// gatewayPlan is the seed's deployment-script.sh as a plan: block traffic
// (maintenance page), migration, release switch, health checked on the
// release itself (by content: the release it reports), traffic restored in
// finally; the rollback blocks traffic, applies the down-migration, puts
// the old release back, restores traffic and waits until the gateway serves
// the old release. No per-metric grace: the maintenance page the plan
// serves is during the deploy, which the monitor records but never judges.
func gatewayPlan(g *gateway, tg *target, hook, id, version, old, column string) []byte {
	switchTo := func(v string) string {
		return fmt.Sprintf(`{argv: [cp, %q, %q]}`, estimator.ReleasePath(tg.stateDir, v), filepath.Join(tg.stateDir, estimator.CurrentFile))
	}
	block := fmt.Sprintf(`{shell: "cp conf.d/maintenance.conf conf.d/active.conf && %s", dir: %q}`, g.reload, g.dir)
	restore := fmt.Sprintf(`{shell: "cp conf.d/production.conf conf.d/active.conf && %s", dir: %q}`, g.reload, g.dir)
	return []byte(fmt.Sprintf(`change_request: {id: %[1]s, title: "estimator %[2]s behind the gateway", type: enhancement, priority: medium}
requester: {name: ops, role: SRE, contact: ops@example.com}
scope:
  systems_affected: ["KIS_CORE_V3"]
report:
  notify:
    - webhook: {url: "%[11]s"}
      on: [started, final]      # the seed's slack_notify "🚀 Deployment started", and the result
rollback_plan:
  verify: [api_up]              # the template's "테스트 실행" after the rollback
  rollback_steps:
    - {name: "block traffic", timeout: 20s, command: %[4]s}
    - name: "down-migration"
      sql: {dsn_env: GATEWAY_DB_URL, statements: ["ALTER TABLE estimate_meta DROP COLUMN IF EXISTS %[3]s"]}
    - {name: "restore release %[10]s from the run's backup", restore: {file: %[14]q, to: %[13]q}}
    - {name: "restore traffic", timeout: 20s, command: %[5]s}
    - name: "old release serves"
      wait:
        until: {url: "%[8]s/api/v1/health", successes: 3, interval: 200ms, timeout: 15s, expect: {status: 200, json: {release: %[10]s}}}
preflight:
  checks:
    - name: gateway
      http: {url: "%[8]s/api/v1/health", expect_status: 200}
deploy:
  steps:
    - {name: "1. block traffic", timeout: 20s, command: %[4]s}
    - {name: "1. drain (the seed's sleep 10)", wait: {duration: 3s}}
    - name: "3. backup (the seed's preflight-backup.sh, after traffic is blocked)"
      backup:
        dir: %[12]q
        steps:
          - name: database
            command: {shell: 'pg_dump "$GATEWAY_DB_URL" | gzip > "$BACKUP_DIR/database.sql.gz"'}
          - files: [%[13]q]
    - name: "5. migration"
      sql: {dsn_env: GATEWAY_DB_URL, statements: ["ALTER TABLE estimate_meta ADD COLUMN %[3]s numeric"]}
    - {name: "4. deploy %[2]s", timeout: 20s, command: %[7]s}
  health:
    - {url: "%[9]s/api/v1/health", initial_delay: 1s, interval: 200ms, attempts: 20, expect: {status: 200, json: {release: %[2]s}}}
  finally:
    - {name: "8. restore traffic", timeout: 20s, command: %[5]s}
    # nginx's old workers answer for a moment after a reload: wait until
    # the gateway serves the new release (by content, not only status, on
    # a new connection each check, 3 checks in a row).
    - name: "traffic restored"
      wait:
        until: {url: "%[8]s/api/v1/health", successes: 3, interval: 200ms, timeout: 15s, expect: {status: 200, json: {release: %[2]s}}}
monitor:
  window: 5s
  interval: 1s
  sources:
    - http_probe: {url: "%[8]s/api/v1/estimates", requests: 5}
  thresholds: {api_response_time_p95: 2100, error_rate: 0.01}
  auto_rollback: {metrics: [api_response_time_p95, error_rate]}
test:
  suites:
    - name: critical_paths
      steps:
        - name: "health through the gateway"
          request: {method: GET, url: "%[8]s/api/v1/health"}
          expect: {status: 200, json: {release: %[2]s}}
        - name: "estimates"
          request: {method: GET, url: "%[8]s/api/v1/estimates"}
          expect: {status: 200}
    - name: api_up
      steps:
        - name: "estimates answer"
          request: {method: GET, url: "%[8]s/api/v1/estimates"}
          expect: {status: 200}
`, id, version, column, block, restore, switchTo(old), switchTo(version), g.url, tg.url, old, hook,
		filepath.Join(g.dir, "backups"), filepath.Join(tg.stateDir, estimator.CurrentFile), estimator.CurrentFile))
}

func TestSeedProcedureBehindNginx(t *testing.T) {
	tg := startTarget(t)
	// The releases: a good one, and one whose estimates endpoint fails.
	for _, r := range []estimator.Release{
		{Version: "v2.5.0", LatencyMS: 2},
		{Version: "v2.5.1-bad", LatencyMS: 2, ErrorRate: 1, FailPaths: []string{"/api/v1/estimates"}},
	} {
		if err := estimator.WriteRelease(tg.stateDir, r); err != nil {
			t.Fatal(err)
		}
	}
	g := startGateway(t, tg.url)
	dbURL := pgtest.URL(t)
	t.Setenv("GATEWAY_DB_URL", dbURL)
	ctx := context.Background()
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, "CREATE TABLE estimate_meta (id int)"); err != nil {
		t.Fatal(err)
	}
	hasColumn := func(c string) bool {
		var n int
		if err := db.QueryRow(ctx, "SELECT count(*) FROM information_schema.columns WHERE table_name='estimate_meta' AND column_name=$1", c).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	// The notification receiver: "deployment started" and the result, per run.
	var hookMu sync.Mutex
	told := map[string][]string{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hookMu.Lock()
		defer hookMu.Unlock()
		what := r.Header.Get("X-Runbook-Event")
		if what == "" {
			what = "report " + r.Header.Get("X-Runbook-Status")
		}
		told[r.Header.Get("X-Runbook-Run-Id")] = append(told[r.Header.Get("X-Runbook-Run-Id")], what)
	}))
	defer hook.Close()
	p := startPipeline(t, nil)

	good := p.submit(t, gatewayPlan(g, tg, hook.URL, "CR-GW-GOOD", "v2.5.0", estimator.GoodVersion, "discount"))
	rr := p.report(t, good, 90*time.Second)
	evs := p.history(t, good)
	if rr.Status != "SUCCESS" {
		t.Fatalf("good release ended %s:\n%s\nevents: %v", rr.Status, rr.QcSummary, types(evs))
	}
	for _, want := range []string{"KIS_CORE_V3", "Performance: PASS", "Overall: PASS"} {
		if !strings.Contains(rr.QcSummary, want) {
			t.Errorf("good release's QC summary lacks %q:\n%s", want, rr.QcSummary)
		}
	}
	if strings.Contains(rr.QcSummary, "WARNINGS") || strings.Contains(rr.QcSummary, "Unknown") {
		t.Errorf("good release's QC summary is not clean:\n%s", rr.QcSummary)
	}
	var errRate float64
	for _, l := range strings.Split(rr.QcSummary, "\n") {
		if v, ok := strings.CutPrefix(l, "Error Rate: "); ok {
			if _, err := fmt.Sscanf(v, "%g%%", &errRate); err != nil {
				t.Errorf("QC error rate %q: %v", v, err)
			}
		}
	}
	if errRate >= 1 {
		t.Errorf("good release's QC error rate %g%% is not under the 1%% threshold:\n%s", errRate, rr.QcSummary)
	}
	// The maintenance page the plan served was sampled during the deploy
	// (recorded, not judged): 503s that never counted against the release.
	mc := evs[index(evs, "monitor.completed")].GetMonitorCompleted()
	if mc.GetDuringDeploySamples() == 0 || mc.GetWindowOpened() == nil || mc.GetViolations() != 0 {
		t.Errorf("good release's window: %d samples during the deploy, opened %v, %d violations", mc.GetDuringDeploySamples(), mc.GetWindowOpened(), mc.GetViolations())
	}
	samples, err := p.bus.RunSamples(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	maintenance := 0
	for _, s := range samples {
		if s.GetDuringDeploy() && s.GetMetric() == "error_rate" && s.GetValue() == 1 {
			maintenance++
		}
	}
	if maintenance == 0 {
		t.Errorf("no during-deploy sample saw the maintenance page (error rate 100%%): the test no longer exercises it")
	}
	if body, _ := g.get("/api/v1/health"); !strings.Contains(body, "v2.5.0") {
		t.Errorf("after the good release the gateway serves %s", body)
	}
	if !hasColumn("discount") {
		t.Error("the good release's migration is not applied")
	}

	bad := p.submit(t, gatewayPlan(g, tg, hook.URL, "CR-GW-BAD", "v2.5.1-bad", "v2.5.0", "surcharge"))
	rr = p.report(t, bad, 90*time.Second)
	evs = p.history(t, bad)
	if rr.Status != "ROLLED_BACK" {
		logSteps(t, evs)
		t.Fatalf("bad release ended %s:\n%s\nevents: %v", rr.Status, rr.QcSummary, types(evs))
	}
	if body, code := g.get("/api/v1/health"); code != http.StatusOK || !strings.Contains(body, `"release":"v2.5.0"`) {
		t.Errorf("after the rollback the gateway answers %d %s, want the old release v2.5.0", code, body)
		logSteps(t, evs)
	}
	if hasColumn("surcharge") {
		t.Error("the down-migration was not applied: column surcharge is still there")
	}
	if !hasColumn("discount") {
		t.Error("the rollback undid the earlier good release's migration")
	}
	// Each run backed up after blocking traffic: the database dump and the
	// release file, in the run's backup directory.
	for _, run := range []string{good, bad} {
		var bd *runbookv1.BackupDone
		for _, e := range p.history(t, run) {
			if e.GetBackupDone() != nil {
				bd = e.GetBackupDone()
			}
		}
		if bd == nil || !slices.Contains(bd.GetFiles(), "database.sql.gz") || !slices.Contains(bd.GetFiles(), estimator.CurrentFile) {
			t.Errorf("run %s: backup %v, want database.sql.gz and %s", run, bd, estimator.CurrentFile)
			continue
		}
		if st, err := os.Stat(filepath.Join(bd.GetDir(), "database.sql.gz")); err != nil || st.Size() < 100 {
			t.Errorf("run %s: the database dump %v %v", run, st, err)
		}
	}
	// The rollback was verified (the template's "테스트 실행"), not assumed.
	if index(evs, "rollback.verified") < index(evs, "rollback.done") || index(evs, "rollback.done") < 0 {
		t.Errorf("no rollback.verified after rollback.done: %v", types(evs))
	}
	// Each run told the receiver when its deploy started, then its result.
	for run, status := range map[string]string{good: "SUCCESS", bad: "ROLLED_BACK"} {
		natstest.Eventually(t, 20*time.Second, "the notifications of "+run, func() bool {
			hookMu.Lock()
			defer hookMu.Unlock()
			return strings.Join(told[run], ",") == "deploy.started,report "+status
		})
	}
}

// logSteps logs a run's steps as the operator sees them, with their times.
func logSteps(t *testing.T, evs []*runbookv1.Event) {
	t.Helper()
	for _, e := range evs {
		if ph, text := vocab.Describe(e); ph == vocab.PhaseRollback || ph == vocab.PhaseAct || ph == vocab.PhaseTest {
			t.Logf("%s %s %s", e.GetTime().AsTime().Format("15:04:05.000"), ph, text)
		}
	}
}
