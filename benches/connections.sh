#!/usr/bin/env bash
# Idle connections at scale: the release gateway binary in one process, the load generator
# (the `loadgen` crate, mode idle) in another, so that each stays under the 20 000 open-file
# limit (19 000 connections in one process would need 38 000 descriptors).
#
#   bash benches/connections.sh
#
# Reports the release binary's size, its time to ready (spawn → `listening on` line; polled
# every millisecond from bash, so ±2 ms), connection setup rate (connect + upgrade + welcome +
# auth, at most CONCURRENCY in flight), the server's RSS per idle authenticated connection
# (VmRSS growth / connections, after setup and after the hold), and the server's CPU over the
# idle hold (% of one core, from /proc/PID/stat). The hold (HOLD, 65 s) spans the auth
# timers (10 s) and one heartbeat round (Ping every 30 s, answered by the client).
#
# Pinning: gateway `taskset -c 0`, load generator `taskset -c 1`.
# The client connects from SOURCES loopback addresses (127.0.0.1 to 127.0.0.4) in turn: from
# one address, past ~14 000 connections the kernel's search for a free ephemeral port in the
# client's connect() would set the setup rate, not the gateway.
#
# Environment: CONNS (19000), HOLD (65), REPS (1), CONCURRENCY (128), SOURCES (4),
# CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-19000}
HOLD=${HOLD:-65}
REPS=${REPS:-1}
CONCURRENCY=${CONCURRENCY:-128}
SOURCES=${SOURCES:-4}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
WORK=$(mktemp -d)
STOP_WAIT=100
# shellcheck source=benches/servers.sh
source benches/servers.sh

if (( $(ulimit -n) < CONNS + 100 )); then
    echo "the open-file limit ($(ulimit -n)) is too low for $CONNS connections per process" >&2
    exit 1
fi

echo "== cargo build --release --workspace --bin gateway --bin loadgen"
cargo build --release --workspace --bin gateway --bin loadgen
LOADGEN=$TARGET_DIR/release/loadgen
GATEWAY=$TARGET_DIR/release/gateway
echo "== machine: $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), open files $(ulimit -n), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== release binary: $GATEWAY, $(stat -c %s "$GATEWAY") bytes"

for rep in $(seq "$REPS"); do
    start=$(date +%s%N)
    start_server gateway "$GATEWAY" --set port=0 --set max_connections=20000 --set max_connections_per_user=20000 \
        --set auth_tokens=dev:dev-token-change-me --set log_level=warn
    ready_ms=$((($(date +%s%N) - start) / 1000000))
    echo "== run $rep: gateway $URL (pid $SERVER_PID), ready in ~$ready_ms ms"
    sleep 0.2
    taskset -c 1 "$LOADGEN" --url "$URL" --mode idle --conns "$CONNS" --concurrency "$CONCURRENCY" --sources "$SOURCES" \
        --duration "$HOLD" --server-pid "$SERVER_PID" --json --label "gateway-$CONNS" | tee "$WORK/idle.out"
    echo "   server threads: $(ls /proc/$SERVER_PID/task | wc -l); log lines: $(wc -l <"$WORK/gateway.log")"
    grep -v "listening on" "$WORK/gateway.log" | sort | uniq -c | sort -rn | head -5 | sed 's/^/   log: /' || true
    t0=$(date +%s%N)
    stop_server
    echo "   SIGTERM → exit took $((($(date +%s%N) - t0) / 1000000)) ms"
done
echo "== load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
