# Sourced by the benchmark scripts (connections.sh, peers.sh): start a server on CPU 0 and
# wait for its `listening on ws://...` line, stop it, and clean up on exit. The caller sets
# WORK (a temporary folder, removed on success unless KEEP is set) before sourcing, and may
# set STOP_WAIT (tenths of a second between SIGTERM and SIGKILL, 50).

SERVER_PID=
URL=

# start_server NAME COMMAND...: run COMMAND on CPU 0 with stderr in $WORK/NAME.log; set
# SERVER_PID and URL once it logs `listening on` (polled every millisecond, for 10 s at most).
start_server() {
    local name=$1
    shift
    taskset -c 0 "$@" 2>"$WORK/$name.log" &
    SERVER_PID=$!
    URL=
    for _ in $(seq 10000); do
        URL=$(sed -n 's|.*listening on \(ws://[^ ]*\).*|\1|p' "$WORK/$name.log" | head -1)
        [[ -n $URL ]] && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.001
    done
    if [[ -z $URL ]]; then
        echo "$name did not start; its log:" >&2
        cat "$WORK/$name.log" >&2
        exit 1
    fi
}

# stop_server: SIGTERM, then SIGKILL if it is still there after STOP_WAIT tenths of a second.
stop_server() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq "${STOP_WAIT:-50}"); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=
}

cleanup() {
    local status=$?
    stop_server
    if [[ $status -eq 0 && -z ${KEEP:-} ]]; then rm -rf "$WORK"; else echo "== logs kept in $WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
