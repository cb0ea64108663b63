# runbook — one Makefile for the whole workspace (go.work).
SHELL := /bin/bash
GO    ?= go
BIN   := bin
# Every package of every workspace module.
SERVICES := preflight deployer monitor tester reporter
# The version every binary reports (--version, runbook_build_info).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS := -ldflags "-X github.com/kis-core/runbook/eventbus/buildinfo.Version=$(VERSION) -X github.com/kis-core/runbook/eventbus/buildinfo.Commit=$(COMMIT)"
PKGS  := ./proto/... ./eventbus/... ./domain/... $(foreach s,$(SERVICES),./services/$(s)/...) ./cmd/runbook/... ./examples/...

# Demo settings: the embedded NATS must not take 4222 (the machine's own NATS holds it).
DEMO_NATS   ?= 127.0.0.1:14222
DEMO_HTTP   ?= 127.0.0.1:19464
DEMO_DIR    := .demo

.PHONY: all build docs test test-short test-load chaos kill-test proto proto-check lint fmt demo run bench bench-verdict bench-projection bench-load fuzz compose-check clean

all: build

build: ## build runbook, the five service binaries and the demo target into bin/
	@mkdir -p $(BIN)
	$(GO) build $(LDFLAGS) -o $(BIN)/runbook ./cmd/runbook
	@for s in $(SERVICES); do $(GO) build $(LDFLAGS) -o $(BIN)/$$s ./services/$$s/cmd/$$s || exit 1; done
	$(GO) build $(LDFLAGS) -o $(BIN)/estimator ./examples/estimator/cmd/estimator

docs: ## regenerate docs/plan-reference.md and docs/plan.schema.json from the plan's types (domain/plan/types.go, fielddoc.go)
	$(GO) run ./domain/plan/planschema/gen

test: ## every test, with the race detector; then, alone, the one that restarts the machine's PostgreSQL and the cluster chaos test; then test-load
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	RUNBOOK_PG_RESTART=1 $(GO) test -race -count=1 -timeout 5m -run TestReporterKilledAndPostgresRestarted ./cmd/runbook/internal/allinone/
	RUNBOOK_CHAOS_RUNS=6 $(GO) test -race -count=1 -timeout 10m -run TestClusterChaos ./cmd/runbook/internal/allinone/
	$(MAKE) test-load

test-load: ## the open-model check (2,000 req/s for 10 s, a 1 s stall in p99): too heavy for -race on 2 cores, so run here without it
	$(GO) test -count=1 -timeout 5m -run 'TestOpenModelRateAndStall' -v ./services/tester/httprun/

chaos: ## the five services × 2 replicas on a 3-node NATS cluster, 30 runs while processes and nodes are killed (make test runs 6)
	RUNBOOK_CHAOS_RUNS=30 $(GO) test -race -count=1 -timeout 30m -run TestClusterChaos -v ./cmd/runbook/internal/allinone/

kill-test: ## the deployer process killed with SIGKILL 20 times during runs (make test does 5)
	RUNBOOK_KILLS=20 $(GO) test -race -count=1 -timeout 10m -run TestDeployerKill9 -v ./cmd/runbook/internal/allinone/

test-short:
	$(GO) test -count=1 -short $(PKGS)

proto: ## regenerate proto/ Go code with the generators pinned in tools/go.mod
	cd proto && GOWORK=off $(GO) tool -modfile=../tools/go.mod buf generate

proto-check: proto ## fail when the committed generated code drifts from events.proto
	@git diff --exit-code -- proto/ || { echo "proto/: generated code is stale: run 'make proto' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- proto/)" || { git status --porcelain -- proto/; echo "proto/: untracked generated files: run 'make proto' and commit"; exit 1; }

lint: ## gofmt, go vet and buf lint
	@out=$$(gofmt -l $$(git ls-files '*.go')); test -z "$$out" || { echo "gofmt would change:"; echo "$$out"; exit 1; }
	$(GO) vet $(PKGS)
	cd proto && GOWORK=off $(GO) tool -modfile=../tools/go.mod buf lint

fmt:
	gofmt -w $$(git ls-files '*.go')

compose-check: ## check deploy/ (docker-compose config, promtool, amtool, systemd-analyze; no engine needed) and that every variable it sets is read
	docker-compose -f deploy/compose/compose.yaml config -q
	docker-compose -f deploy/compose/compose.yaml -f deploy/compose/compose.cluster.yaml config -q
	promtool check config deploy/compose/prometheus.yml
	promtool check rules deploy/prometheus/rules.yml
	promtool test rules deploy/prometheus/rules_test.yml
	amtool check-config deploy/compose/alertmanager.yml
	$(GO) test -count=1 -run 'TestComposeEnvIsRead|TestUnreadEnvNamesTheVariable|TestClusterShape|TestRulesAndDashboardUseRegisteredMetrics|TestDashboardQueriesAreValidPromQL|TestDockerfileBuildsWithTheClassicBuilder|TestSystemdUnits' ./cmd/runbook/internal/deploycheck/

run: build ## runbook serve on the embedded default (NATS on $(DEMO_NATS))
	$(BIN)/runbook serve --nats-listen $(DEMO_NATS) --http-listen $(DEMO_HTTP) --data-dir .runbook/data

demo: build ## the estimator demo target, runbook serve, and both example plans, live
	@bash scripts/demo.sh

bench: bench-projection bench-load ## benchmarks; figures go into BENCHMARKS.md
	$(GO) test -run '^$$' -bench RawJetStream -benchtime 10000x -count 1 ./cmd/runbook/internal/allinone/
	$(GO) test -run '^$$' -bench 'Pipeline|FirstStepLatency|StepOverhead|RollbackLatency|MonitorBreachToRollback' -benchtime 1x -count 1 -timeout 20m ./cmd/runbook/internal/allinone/
	$(GO) test -run '^$$' -bench MonitorScale -benchtime 1x -count 1 -timeout 20m ./cmd/runbook/internal/allinone/
	$(MAKE) bench-verdict

bench-verdict: ## breach to decision (for: 1 of 1, 2 of 3; scraped every 1 s) and false rollbacks over 20 good runs (RUNBOOK_BENCH_RUNS)
	$(GO) test -run '^$$' -bench 'BreachToDecision|FalseRollbacks' -benchtime 1x -count 1 -timeout 20m ./cmd/runbook/internal/allinone/

bench-load: ## the load engine's max req/s and CPU time per request beside wrk and hey, same local target (RUNBOOK_BENCH_SECONDS, RUNBOOK_BENCH_CONNS)
	$(GO) test -run '^$$' -bench LoadEngineVsWrkHey -benchtime 1x -count 1 -timeout 5m ./services/tester/httprun/

bench-projection: ## reporter projection: raw stream read vs PostgreSQL / memory projection and replay --rebuild of 1M events (RUNBOOK_BENCH_EVENTS)
	$(GO) test -run '^$$' -bench Projection -benchtime 1x -count 1 -timeout 30m ./services/reporter/pgstore/

fuzz: ## fuzz the plan loader (plan.Parse) for 2 minutes; crashers go to domain/plan/testdata/fuzz/
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 2m ./domain/plan/

clean:
	rm -rf $(BIN) $(DEMO_DIR)
