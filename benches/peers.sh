#!/usr/bin/env bash
# The gateway against peers doing the same JSON work, with the same load generator, in one run:
# a Node `ws` server (benches/peers/node_gateway.js) and a Python `websockets` server
# (benches/peers/python_gateway.py), plus the loopback TCP floor. Prints a table of medians and
# ratios.
#
#   bash benches/peers.sh
#
# Installs ws (npm) and websockets (pip, in a venv) into a temporary folder (PEERS_DIR=dir to
# keep and reuse one). Pinning: every server runs under `taskset -c 0`; the latency client
# shares CPU 0 with it, the throughput, fan-out and idle clients run on CPU 1.
#
# Environment: REPS (3 runs per figure, medians), COUNT (20000 round trips), SECS (3 s per
# throughput / fan-out window), MEMBERS (1000: fan-out size for the gateway and Node),
# SMALL_MEMBERS (200: the fan-out size every server runs, Python included, which is too slow
# for 1000), FAN_WINDOWS ("64 256": messages the fan-out sender keeps ahead of the slowest
# member, each run on its own), IDLE_CONNS (2000), PEERS_DIR, CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
COUNT=${COUNT:-20000}
SECS=${SECS:-3}
MEMBERS=${MEMBERS:-1000}
SMALL_MEMBERS=${SMALL_MEMBERS:-200}
FAN_WINDOWS=${FAN_WINDOWS:-64 256}
IDLE_CONNS=${IDLE_CONNS:-2000}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
WORK=$(mktemp -d)
PEERS=${PEERS_DIR:-$WORK/peers}
RESULTS=$WORK/results.jsonl
# shellcheck source=benches/servers.sh
source benches/servers.sh

need=$((IDLE_CONNS > MEMBERS ? IDLE_CONNS : MEMBERS))
if (( $(ulimit -n) < need + 100 )); then
    echo "the open-file limit ($(ulimit -n)) is too low for $need connections" >&2
    exit 1
fi

echo "== cargo build --release --workspace --bin gateway --bin loadgen"
cargo build --release --workspace --bin gateway --bin loadgen
LOADGEN=$TARGET_DIR/release/loadgen
GATEWAY=$TARGET_DIR/release/gateway

echo "== peers into $PEERS: ws (npm), websockets (pip, venv)"
mkdir -p "$PEERS/node"
[[ -d $PEERS/node/node_modules/ws ]] ||
    npm install --prefix "$PEERS/node" --no-audit --no-fund --silent ws@8
[[ -x $PEERS/venv/bin/python ]] || python3 -m venv "$PEERS/venv"
"$PEERS/venv/bin/pip" install --quiet --disable-pip-version-check 'websockets>=13,<16'
echo "   node $(node --version), ws $(node -p "require('$PEERS/node/node_modules/ws/package.json').version"), python $("$PEERS/venv/bin/python" -c 'import sys, websockets; print(sys.version.split()[0] + ", websockets " + websockets.__version__)')"

# start NAME COMMAND...: start_server (benches/servers.sh), then say where it listens.
start() {
    start_server "$@"
    echo "== $1: $URL (pid $SERVER_PID)"
}

# loadgen CPU LABEL ARGS...: one loadgen run; its JSON line goes to the results.
loadgen() {
    local cpu=$1 label=$2
    shift 2
    local out
    out=$(taskset -c "$cpu" "$LOADGEN" --json --label "$label" "$@") || {
        echo "$out"
        echo "loadgen failed: $label $*" >&2
        exit 1
    }
    grep -v '^{' <<<"$out" | sed 's/^/   /' || true
    tail -n 1 <<<"$out" >>"$RESULTS"
}

# measure NAME FANOUT_SIZES...: every mode against the server started last.
measure() {
    local name=$1
    shift
    # First, on the fresh server: idle connections (RSS per connection from a clean baseline).
    loadgen 1 "$name" --url "$URL" --mode idle --conns "$IDLE_CONNS" --duration 5 --server-pid "$SERVER_PID"
    # Warm-up, not recorded (lets a JIT compile the hot paths).
    taskset -c 1 "$LOADGEN" --url "$URL" --mode throughput --duration 2 --warmup-secs 0 >/dev/null
    loadgen 0 "$name" --url "$URL" --mode latency --count "$COUNT" --reps "$REPS"
    loadgen 1 "$name" --url "$URL" --mode throughput --duration "$SECS" --reps "$REPS" --server-pid "$SERVER_PID"
    for members in "$@"; do
        for window in $FAN_WINDOWS; do
            loadgen 1 "$name" --url "$URL" --mode fanout --conns "$members" --pipeline "$window" \
                --duration "$SECS" --reps "$REPS" --server-pid "$SERVER_PID"
        done
    done
}

echo "== machine: $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), load average $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== TCP floor: 64-byte ping-pong against loadgen's echo thread, same core"
loadgen 0 tcp-floor --mode floor --size 64 --count "$COUNT" --reps "$REPS"

start gateway "$GATEWAY" --set port=0 --set max_connections=20000 --set max_connections_per_user=20000 \
    --set max_clients_per_session=5000 --set auth_tokens=dev:dev-token-change-me --set log_level=warn
measure gateway "$MEMBERS" "$SMALL_MEMBERS"
stop_server

start node-ws env NODE_PATH="$PEERS/node/node_modules" node benches/peers/node_gateway.js
measure node-ws "$MEMBERS" "$SMALL_MEMBERS"
stop_server

start python-websockets "$PEERS/venv/bin/python" benches/peers/python_gateway.py
measure python-websockets "$SMALL_MEMBERS"
stop_server

echo "== load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$RESULTS" "$REPS" <<'EOF'
import json, sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
reps = sys.argv[2]
def get(label, mode, key, members=None, window=None):
    for r in rows:
        m = r["median"]
        if (r["label"] == label and r["mode"] == mode
                and (members is None or m.get("members") == members)
                and (window is None or m.get("pipeline") == window)):
            return m.get(key)
    return None
def f(x, d=1):
    return "n/a" if x is None else f"{x:.{d}f}"
def ratio(a, b):
    return "n/a" if a is None or b in (None, 0) else f"{a / b:.2f}×"

servers = ["gateway", "node-ws", "python-websockets"]
floor = get("tcp-floor", "floor", "p50_us")
print(f"\nmedians of {reps} runs; ratios: latency to the TCP floor, everything else to the gateway")
print(f"TCP floor 64 B: p50 {f(floor)} µs, p99 {f(get('tcp-floor', 'floor', 'p99_us'))}, p99.9 {f(get('tcp-floor', 'floor', 'p999_us'))}\n")
head = f"{'server':<18} {'p50 µs':>8} {'÷floor':>7} {'p99':>8} {'p99.9':>8} {'pongs/s':>9} {'CPU µs/ping':>12} {'÷gw':>7}"
print(head)
gw_ping = get("gateway", "throughput", "server_cpu_us_per_msg")
for s in servers:
    p50 = get(s, "latency", "p50_us")
    cpu = get(s, "throughput", "server_cpu_us_per_msg")
    print(f"{s:<18} {f(p50):>8} {ratio(p50, floor):>7} {f(get(s, 'latency', 'p99_us')):>8} {f(get(s, 'latency', 'p999_us')):>8} "
          f"{f(get(s, 'throughput', 'pongs_per_s'), 0):>9} {f(cpu, 2):>12} {ratio(cpu, gw_ping):>7}")
print()
print(f"{'fan-out':<18} {'members':>8} {'ahead':>6} {'deliv/s':>10} {'CPU µs/deliv':>13} {'÷gw':>7} {'lost':>5}")
for s in servers:
    for r in rows:
        if r["label"] == s and r["mode"] == "fanout":
            m = r["median"]
            gw = get("gateway", "fanout", "server_cpu_us_per_delivery", m.get("members"), m.get("pipeline"))
            lost = sum(run["lost"] + run["disorder"] + run["bad_source"] for run in r["runs"])
            print(f"{s:<18} {int(m['members']):>8} {int(m['pipeline']):>6} {f(m.get('deliveries_per_s'), 0):>10} "
                  f"{f(m.get('server_cpu_us_per_delivery'), 3):>13} {ratio(m.get('server_cpu_us_per_delivery'), gw):>7} {lost:>5}")
print()
print(f"{'idle':<18} {'conns':>8} {'setup/s':>10} {'RSS B/conn':>11} {'÷gw':>7}")
gw_rss = get("gateway", "idle", "rss_per_conn_bytes")
for s in servers:
    rss = get(s, "idle", "rss_per_conn_bytes")
    print(f"{s:<18} {f(get(s, 'idle', 'conns'), 0):>8} {f(get(s, 'idle', 'setup_conns_per_s'), 0):>10} {f(rss, 0):>11} {ratio(rss, gw_rss):>7}")
EOF
