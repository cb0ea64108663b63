package deploycheck_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kis-core/runbook/cmd/runbook/internal/deploycheck"
	"github.com/kis-core/runbook/eventbus/svcmain"
)

// repoRoot finds the repository root (where go.work is).
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.work not found")
		}
		dir = parent
	}
}

func composeFiles(t *testing.T, names ...string) map[string]*deploycheck.Service {
	t.Helper()
	root := repoRoot(t)
	var paths []string
	for _, n := range names {
		paths = append(paths, filepath.Join(root, "deploy", "compose", n))
	}
	files, err := deploycheck.ReadFiles(paths...)
	if err != nil {
		t.Fatal(err)
	}
	for i := range files {
		files[i].Name = filepath.Join("deploy", "compose", names[i])
	}
	svcs, err := deploycheck.Merge(files...)
	if err != nil {
		t.Fatal(err)
	}
	return svcs
}

// Every variable compose.yaml, alone or with compose.cluster.yaml, sets
// for a runbook container is read by the binary in it; the reporter gets
// PostgreSQL in the variable it reads.
func TestComposeEnvIsRead(t *testing.T) {
	for _, set := range [][]string{{"compose.yaml"}, {"compose.yaml", "compose.cluster.yaml"}} {
		t.Run(strings.Join(set, "+"), func(t *testing.T) {
			svcs := composeFiles(t, set...)
			// The containers are recognised as the binaries they run, or the
			// check would skip them as third-party.
			for name, want := range map[string]string{"provision": svcmain.Runbook, "preflight": svcmain.Preflight,
				"deployer": svcmain.Deployer, "monitor": svcmain.Monitor, "tester": svcmain.Tester,
				"reporter": svcmain.Reporter, "estimator": "estimator"} {
				if s := svcs[name]; s == nil || s.Binary != want {
					t.Errorf("service %s: binary %v, want %s", name, s, want)
				}
			}
			unread, err := deploycheck.UnreadEnv(svcs)
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range unread {
				t.Error(u)
			}
			if _, ok := svcs["reporter"].Env[svcmain.EnvDatabaseURL]; !ok {
				t.Errorf("the reporter gets no %s: its read model stays in memory", svcmain.EnvDatabaseURL)
			}
			for _, s := range svcmain.Services {
				if _, ok := svcs[s].Env[svcmain.EnvNATSURL]; !ok {
					t.Errorf("service %s: no %s", s, svcmain.EnvNATSURL)
				}
			}
		})
	}
}

// The check names the variable, the file and the service of each variable
// no binary reads — the RUNBOOK_POSTGRES_URL compose once passed — in both
// environment syntaxes, and accepts what a binary or an example plan reads.
func TestUnreadEnvNamesTheVariable(t *testing.T) {
	base := `
services:
  reporter:
    build: {context: ../.., dockerfile: deploy/Dockerfile, args: {SERVICE: reporter}}
    command: ["--notify-slack-env", "SLACK_HOOK"]
    environment:
      RUNBOOK_NATS_URL: nats://nats:4222
      RUNBOOK_POSTGRES_URL: postgres://x
      SLACK_HOOK: https://hooks.example/x
  tester:
    image: runbook/tester:dev
    environment: [RUNBOOK_NATS_URL=nats://nats:4222, SMOKE_PASSWORD=x, RUNBOOK_REPORTS_DIR=/r]
  postgres:
    image: postgres:15
    environment: {POSTGRES_USER: runbook}
`
	override := `
services:
  deployer:
    image: runbook/deployer:dev
    env_file: deployer.env
  reporter:
    environment:
      RUNBOOK_DATABASE_URL: postgres://y
`
	svcs, err := deploycheck.Merge(deploycheck.File{Name: "base.yaml", Data: []byte(base)}, deploycheck.File{Name: "override.yaml", Data: []byte(override)})
	if err != nil {
		t.Fatal(err)
	}
	unread, err := deploycheck.UnreadEnv(svcs)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"service deployer (binary deployer): env_file deployer.env",
		"base.yaml: service reporter sets RUNBOOK_POSTGRES_URL, which the reporter binary does not read",
		"base.yaml: service tester sets RUNBOOK_REPORTS_DIR, which the tester binary does not read",
	}
	if len(unread) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(unread), len(want), strings.Join(unread, "\n"))
	}
	for i, w := range want {
		if !strings.HasPrefix(unread[i], w) {
			t.Errorf("problem %d:\n %s\nwant it to begin\n %s", i, unread[i], w)
		}
	}
}

// compose.cluster.yaml: three NATS nodes routed to each other, each with
// its own store and the shared configuration (auth included), the streams
// provisioned R3, two replicas of every service on all three nodes.
func TestClusterShape(t *testing.T) {
	svcs := composeFiles(t, "compose.yaml", "compose.cluster.yaml")
	nodes := []string{"nats", "nats-2", "nats-3"}
	var routes []string
	for _, n := range nodes {
		routes = append(routes, "nats://"+n+":6222")
	}
	slices.Sort(routes)
	stores := map[string]string{}
	names := map[string]bool{}
	for _, n := range nodes {
		s := svcs[n]
		if s == nil {
			t.Fatalf("no service %s", n)
		}
		cmd := s.Command
		arg := func(flag string) string {
			if i := slices.Index(cmd, flag); i >= 0 && i+1 < len(cmd) {
				return cmd[i+1]
			}
			return ""
		}
		if arg("-c") != "/etc/nats/runbook.conf" || !slices.Contains(cmd, "-js") || arg("--cluster_name") != "runbook" {
			t.Errorf("%s: %v: want -c /etc/nats/runbook.conf -js --cluster_name runbook", n, cmd)
		}
		got := strings.Split(arg("--routes"), ",")
		slices.Sort(got)
		if !slices.Equal(got, routes) {
			t.Errorf("%s: routes %v, want %v", n, got, routes)
		}
		names[arg("-n")] = true
		for _, v := range s.Volumes {
			src, target, _ := strings.Cut(v, ":")
			if target == "/data" {
				if other, ok := stores[src]; ok {
					t.Errorf("%s and %s share the store volume %s", n, other, src)
				}
				stores[src] = n
			}
		}
		if !slices.Contains(s.Volumes, "./auth.conf:/etc/nats/auth.conf") || !slices.Contains(s.Volumes, "./nats.conf:/etc/nats/runbook.conf") {
			t.Errorf("%s: volumes %v: want nats.conf and auth.conf mounted", n, s.Volumes)
		}
	}
	if len(names) != 3 || len(stores) != 3 {
		t.Errorf("server names %v, stores %v: want three of each", names, stores)
	}
	if cmd := strings.Join(svcs["provision"].Command, " "); !strings.Contains(cmd, "--replicas 3") {
		t.Errorf("provision %q: want --replicas 3", cmd)
	}
	for _, s := range svcmain.Services {
		if r := svcs[s].Replicas; r != 2 {
			t.Errorf("service %s: %d replicas, want 2", s, r)
		}
	}
}

// deploy/Dockerfile builds with the classic builder (no BuildKit-only
// syntax), copies every go.work module's go.mod and go.sum before its
// cached `go mod download`, and the build context's exclusions are in the
// root .dockerignore, which both builders read (a Dockerfile-specific
// ignore file is BuildKit's only): the identities' seeds never reach the
// builder.
func TestDockerfileBuildsWithTheClassicBuilder(t *testing.T) {
	root := repoRoot(t)
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mods := deploycheck.WorkspaceModules(read("go.work"))
	if !slices.Contains(mods, "cmd/runbook") || !slices.Contains(mods, "services/deployer") {
		t.Fatalf("go.work modules: %v", mods)
	}
	for _, p := range deploycheck.ClassicBuilderProblems(read(deploycheck.Dockerfile), mods) {
		t.Errorf("%s: %s", deploycheck.Dockerfile, p)
	}
	ignore := strings.Fields(string(read(".dockerignore")))
	for _, secret := range []string{"deploy/compose/identities", "deploy/compose/auth.conf", ".git"} {
		if !slices.Contains(ignore, secret) {
			t.Errorf(".dockerignore does not exclude %s", secret)
		}
	}
	if _, err := os.Stat(filepath.Join(root, deploycheck.Dockerfile+".dockerignore")); err == nil {
		t.Errorf("%s.dockerignore exists: BuildKit would read it instead of .dockerignore, the classic builder would not; keep the exclusions in .dockerignore only", deploycheck.Dockerfile)
	}
	// The check itself finds what it is for.
	bad := []byte("# syntax=docker/dockerfile:1\nFROM golang\nCOPY go.work ./\nRUN go mod download\nRUN --mount=type=cache,target=/x go build\n")
	if got := deploycheck.ClassicBuilderProblems(bad, []string{"domain"}); len(got) != 4 {
		t.Errorf("problems of a BuildKit Dockerfile: %q; want the directive, the mount and domain's go.mod and go.sum", got)
	}
}
