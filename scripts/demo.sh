#!/usr/bin/env bash
# `make demo`: the national launch on one machine. Starts a Temporal dev server (Web UI on
# :8233), the reference systems with the canonical dataset, a worker and the operations dashboard
# (:8090, also the Web UI's codec server for compressed payloads), runs the narrated demo, then stops everything — unless KEEP=1, which leaves the servers
# up for the Web UI and the dashboard.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

TEMPORAL_PORT="${TEMPORAL_PORT:-7233}"
UI_PORT="${UI_PORT:-8233}"
SYSTEMS_PORT="${SYSTEMS_PORT:-50051}"
METRICS_PORT="${METRICS_PORT:-9464}"
DASHBOARD_PORT="${DASHBOARD_PORT:-8090}"
KEEP="${KEEP:-0}"

bash scripts/bootstrap.sh
echo "demo: building release binaries (first time: several minutes)"
cargo build --release --quiet -p promo-systems -p promo-worker -p promo-demo -p promo-starter
mkdir -p .run

pids=()
cleanup() {
    if [[ "$KEEP" == "1" ]]; then
        echo "demo: KEEP=1 — servers left running (pids ${pids[*]}); stop them with: kill ${pids[*]}"
    else
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
        wait 2>/dev/null || true
    fi
}
trap cleanup EXIT

wait_for() { # what, seconds, command...
    local what=$1 limit=$2; shift 2
    for _ in $(seq 1 $((limit * 10))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "demo: $what did not come up within ${limit}s; see .run/*.log" >&2
    exit 1
}

sa_args=()
for sa in PromotionId=Keyword PromotionStage=Keyword PromotionRegions=KeywordList PromotionRisk=Keyword \
          PendingApprovals=KeywordList OpenExceptions=Int LaunchAt=Datetime PromotionRevision=Int; do
    sa_args+=(--search-attribute "$sa")
done
.venv/bin/temporal server start-dev --ip 127.0.0.1 --port "$TEMPORAL_PORT" --ui-port "$UI_PORT" \
    --ui-codec-endpoint "http://127.0.0.1:$DASHBOARD_PORT/codec" \
    --log-level error "${sa_args[@]}" >.run/temporal.log 2>&1 &
pids+=($!)
wait_for "Temporal dev server" 60 .venv/bin/temporal operator cluster health --address "127.0.0.1:$TEMPORAL_PORT"
echo "demo: Temporal dev server on 127.0.0.1:$TEMPORAL_PORT, Web UI http://localhost:$UI_PORT"

target/release/retail-systems --db .run/systems.db --reset --anchor now \
    --listen "127.0.0.1:$SYSTEMS_PORT" >.run/systems.log 2>&1 &
pids+=($!)
wait_for "reference systems" 120 grep -q "listening on" .run/systems.log
echo "demo: $(grep -o 'dataset.*' .run/systems.log | head -1)"

export TEMPORAL_ADDRESS="127.0.0.1:$TEMPORAL_PORT"
# Every approver gets a key pair; the worker's policy knows their public keys, the driver signs
# each decision with the secret ones.
rm -rf .run/keys
target/release/promo-demo --prepare-keys .run/demo-policy.toml --policy-in config/demo-policy.toml --keys .run/keys
target/release/promo-worker --systems "http://127.0.0.1:$SYSTEMS_PORT" --policy .run/demo-policy.toml \
    --metrics "127.0.0.1:$METRICS_PORT" >.run/worker.log 2>&1 &
pids+=($!)
echo "demo: worker polling (logs .run/worker.log, metrics http://127.0.0.1:$METRICS_PORT/metrics)"

target/release/promo dashboard --listen "127.0.0.1:$DASHBOARD_PORT" --web-ui "http://localhost:$UI_PORT" \
    --systems "http://127.0.0.1:$SYSTEMS_PORT" --policy .run/demo-policy.toml >.run/dashboard.log 2>&1 &
pids+=($!)
wait_for "dashboard" 30 grep -q "dashboard: http" .run/dashboard.log

target/release/promo-demo --systems "http://127.0.0.1:$SYSTEMS_PORT" --ui "http://localhost:$UI_PORT" "$@"

ask() {
    echo
    echo "\$ promo ask \"$1\""
    target/release/promo ask --systems "http://127.0.0.1:$SYSTEMS_PORT" --policy .run/demo-policy.toml "$1" \
        | sed 's/^/  /'
}
echo
echo "== Process intelligence =="
ask "how long does each stage take?"
ask "how long do approvals take?"
echo
echo "demo: operations dashboard http://127.0.0.1:$DASHBOARD_PORT/ (promotions by stage, approvals and"
echo "      their SLA, the exception queue by revenue at risk, cycle times, KPIs; links to the Web UI)"
echo "demo: business gauges on http://127.0.0.1:$METRICS_PORT/metrics (promo_*); Grafana: deploy/grafana/promotions.json"
if [[ "$KEEP" != "1" ]]; then
    echo "demo: run with KEEP=1 to keep the dashboard and the Web UI up"
fi
