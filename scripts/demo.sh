#!/usr/bin/env bash
# make demo: the estimator demo target, `runbook serve` on the embedded
# default, then both example plans with live progress and their QC summaries.
set -uo pipefail
cd "$(dirname "$0")/.."

NATS_ADDR=${DEMO_NATS:-127.0.0.1:14222}
HTTP_ADDR=${DEMO_HTTP:-127.0.0.1:19464}
TARGET=127.0.0.1:18080
export RUNBOOK_NATS_URL="nats://$NATS_ADDR"
# The demo estimator's test account; the example plans' smoke login reads it
# from the tester's environment (${env:SMOKE_PASSWORD}).
export SMOKE_PASSWORD=${SMOKE_PASSWORD:-test123}
BIN=bin

rm -rf .demo && mkdir -p .demo
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT

wait_for() { # what, command...
  local what=$1; shift
  for _ in $(seq 1 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "demo: $what did not come up; see .demo/*.log" >&2; exit 1
}

echo "== starting the estimator demo target on $TARGET (release v2.4.0)"
$BIN/estimator --listen "$TARGET" --state-dir .demo/estimator >.demo/estimator.log 2>&1 &
pids+=($!)
wait_for "estimator" curl -fsS "http://$TARGET/api/v1/health"

echo "== starting runbook serve (embedded NATS on $NATS_ADDR, data in .demo/data)"
$BIN/runbook serve --nats-listen "$NATS_ADDR" --http-listen "$HTTP_ADDR" --data-dir .demo/data >.demo/serve.log 2>&1 &
pids+=($!)
wait_for "runbook serve" curl -fsS "http://$HTTP_ADDR/healthz"
# serve made the identities on first start; the demo's operator is a
# requester made here (once), its seed the CLI's --creds.
if [ ! -f .demo/data/identities/demo-operator.nk ]; then
  $BIN/runbook identity create demo-operator --role requester --identity-dir .demo/data/identities >/dev/null
fi
export RUNBOOK_CREDS=.demo/data/identities/demo-operator.nk
wait_for "the demo operator's identity" $BIN/runbook runs

echo
echo "== 1/2 good release: examples/plans/good.yaml"
$BIN/runbook validate examples/plans/good.yaml | tail -n 1
$BIN/runbook submit --watch examples/plans/good.yaml
good=$?

echo
echo "== 2/2 bad release: examples/plans/bad-release.yaml (expected: caught and rolled back)"
$BIN/runbook submit --watch examples/plans/bad-release.yaml
bad=$?

echo
echo "== the target after the rollback answers with:"
curl -fsS "http://$TARGET/api/v1/health"; echo
echo
$BIN/runbook runs
echo
if [[ $good -eq 0 && $bad -eq 3 ]]; then
  echo "demo OK: the good release ended SUCCESS, the bad one was rolled back."
else
  echo "demo: unexpected outcome (good exit $good, bad exit $bad); logs in .demo/" >&2
  exit 1
fi
