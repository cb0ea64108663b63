#!/usr/bin/env bash
# The identities of the compose deployment and the NATS authorization that
# puts them in force (README.md, "Identities"). Idempotent: an identity whose
# seed exists is kept; auth.conf is written again every time. Run it once
# before the first `up`, and again after `runbook identity create` or
# `revoke` (then reload nats).
#
#   deploy/compose/init-identities.sh
#
# Makes, in deploy/compose/identities/ (git-ignored: it holds the secrets):
#   keyring.json                   public keys and roles, read by every service
#   admin.nk                       the admin's seed: provision uses it; keep it safe
#   preflight.nk ... reporter.nk   each service's seed, owned by the containers' uid
# and deploy/compose/auth.conf (git-ignored), which nats.conf includes.
#
# Environment:
#   RUNBOOK_BIN            the runbook binary (default bin/runbook when built,
#                          else `go run ./cmd/runbook`)
#   RUNBOOK_IDENTITY_DIR   default deploy/compose/identities
#   RUNBOOK_CONTAINER_UID  uid:gid the service containers run as (default
#                          65532:65532, deploy/Dockerfile; with rootless Docker
#                          or userns-remap, the host uid that maps to it)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ids=${RUNBOOK_IDENTITY_DIR:-$here/identities}
owner=${RUNBOOK_CONTAINER_UID:-65532:65532}
services=(preflight deployer monitor tester reporter)

# The runbook command: RUNBOOK_BIN, else bin/runbook if it is recent enough
# (has `identity nats-config`), else `go run ./cmd/runbook`.
rb=()
if [ -n "${RUNBOOK_BIN:-}" ]; then
  rb=("$RUNBOOK_BIN")
elif [ -x "$root/bin/runbook" ] && "$root/bin/runbook" identity --help 2>/dev/null | grep nats-config >/dev/null; then
  rb=("$root/bin/runbook")
elif command -v go >/dev/null 2>&1; then
  rb=(go run ./cmd/runbook)
else
  echo "init-identities: no runbook: run \`make build\`, or set RUNBOOK_BIN to a runbook binary" >&2
  exit 1
fi
runbook() { (cd "$root" && "${rb[@]}" "$@"); }

if ! runbook identity --help 2>/dev/null | grep nats-config >/dev/null; then
  echo "init-identities: ${rb[*]} has no \`identity nats-config\` (too old?): run \`make build\`, or set RUNBOOK_BIN" >&2
  exit 1
fi

# in_keyring NAME: whether the keyring (revoked entries included) has NAME.
in_keyring() {
  runbook identity list --identity-dir "$ids" | awk -v n="$1" 'NR > 1 && $1 == n { found = 1 } END { exit !found }'
}

for name in admin "${services[@]}"; do
  seed="$ids/$name.nk"
  if [ -e "$seed" ]; then
    echo "init-identities: $name: kept ($seed)"
    continue
  fi
  if in_keyring "$name"; then
    echo "init-identities: $name is in $ids/keyring.json but its seed $seed is missing:" >&2
    echo "  restore the seed, or rotate it (README.md, \"Rotation and revocation\")" >&2
    exit 1
  fi
  # The role of admin and of each service is its name. The output shows the
  # identity's HTTP token once (admin's opens the read API and dashboard).
  runbook identity create "$name" --role "$name" --identity-dir "$ids"
done

runbook identity nats-config --identity-dir "$ids" --out "$here/auth.conf"

# The services run as $owner and runbook refuses a seed anyone else may read
# (mode 0600), so each service's seed must be the containers' user's.
# admin.nk stays its operator's: the provision container reads it as root.
wrong=()
for name in "${services[@]}"; do
  seed="$ids/$name.nk"
  if [ "$(stat -c %u:%g "$seed")" != "$owner" ]; then
    if [ "$(id -u)" = 0 ]; then
      chown "$owner" "$seed"
    else
      wrong+=("$seed")
    fi
  fi
done
if [ ${#wrong[@]} -gt 0 ]; then
  echo "init-identities: the service containers run as $owner and read their seed (mode 0600); give them theirs:" >&2
  echo "  sudo chown $owner ${wrong[*]}" >&2
  exit 2
fi

cat <<EOF
init-identities: ready. Start (or, with nats running, reload it and restart the services):
  docker-compose -f deploy/compose/compose.yaml up -d --build
  docker-compose -f deploy/compose/compose.yaml kill -s HUP nats
  docker-compose -f deploy/compose/compose.yaml restart preflight deployer monitor tester reporter
EOF
