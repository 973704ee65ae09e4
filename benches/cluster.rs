//! `cargo bench --bench cluster`: the cluster's figures (PROTOCOL section 13), each printed
//! next to a baseline measured in the same run. Nothing is asserted: the figures are for
//! people, and the machine may be shared.
//!
//! The bench starts a `redis-server` of its own on a free port (no persistence; without
//! `redis-server` it prints a note and stops) and the release `gateway` binary in child
//! processes: `CLUSTER_BENCH_NODES` nodes (4) joined through that Redis, and one standalone
//! gateway. The clients are the load generator's engine (`loadgen/`) on this thread, except
//! for the idle phase (below). In this order:
//! 1. relay latency: one sender and one receiver in one session, sequential `broadcast`
//!    messages, each timed from the sender's write to the receiver's read of the whole
//!    message (both clients on this thread, one clock): across two nodes (A → Redis → B),
//!    within one node in cluster mode (A → Redis → A) and in the standalone gateway. The
//!    baseline is the raw Redis hop: two plain TCP connections from this thread speaking RESP,
//!    `SUBSCRIBE` on one, `PUBLISH` on the other, one message at a time, the payload as long
//!    as what a node publishes for one of these relays (read off the session's channel
//!    first), timed from the write of the `PUBLISH` to the read of the whole push. The runs
//!    alternate (hop, cross-node, same node, standalone), and the differences to the hop are
//!    the medians of the per-run differences. A second baseline, the relay floor, is the
//!    same path with two child processes that only move bytes in place of the nodes (this
//!    thread → A → Redis → B → this thread; A subscribed too, as the sender's node is): what
//!    any two processes between the clients and Redis cost on this machine;
//! 2. fan-out across nodes: one sender and `CLUSTER_BENCH_MEMBERS` members (100) spread over
//!    the nodes, the sender flooding `broadcast` messages at most a window ahead of the
//!    slowest member (`CLUSTER_BENCH_FAN_WINDOWS`); deliveries per second, and server CPU
//!    per delivery counting every node and `redis-server` (utime + stime from
//!    `/proc/PID/stat` before and after the window), with Redis's share. Every member must
//!    receive every message, in order, from the sender;
//! 3. idle connections: fresh nodes, `CLUSTER_BENCH_CONNS` connections (upgraded, welcomed,
//!    authenticated) spread evenly over them, each node on a port of its own, held for
//!    `CLUSTER_BENCH_IDLE_SECS`. A process may hold `RLIMIT_NOFILE` descriptors (its soft
//!    limit raised to the hard one), so the clients are child processes of this bench (the
//!    same executable, started with `CLUSTER_BENCH_IDLE_CHILD` set), as many as that limit
//!    needs, each connecting to one node from four loopback addresses. Gateway RSS per
//!    connection is the growth of the nodes' `VmRSS` over the connections; Redis memory per
//!    connection is the growth of `INFO memory` `used_memory`.
//!
//! Pinning (turn off with `CLUSTER_BENCH_PIN=0`): for latency, this thread, Redis and every
//! gateway share CPU 0, so that every hop is the same kind of context switch for the baseline
//! and the gateways alike; for the fan-out the servers (nodes and Redis) are on CPU 0 and this
//! thread on CPU 1; the idle phase is not pinned. Processes are pinned with `taskset -p`.
//!
//! Environment: `CLUSTER_BENCH_REPS` (3 runs per figure, medians), `CLUSTER_BENCH_COUNT`
//! (1000 recorded messages per latency run, after a tenth as many unrecorded),
//! `CLUSTER_BENCH_NODES` (4), `CLUSTER_BENCH_MEMBERS` (100), `CLUSTER_BENCH_SECS` (2, each
//! fan-out window), `CLUSTER_BENCH_FAN_WINDOWS` (`64,256`), `CLUSTER_BENCH_CONNS` (4000 idle
//! connections in all), `CLUSTER_BENCH_IDLE_SECS` (2), `CLUSTER_BENCH_PIN` (1),
//! `CLUSTER_BENCH_PHASES` (`latency,fanout,idle`: which to run). The full-size
//! run is in `benches/README.md`. Without `--bench` (as `cargo test --benches` runs it) it does
//! one tiny smoke run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use loadgen::{median, FanoutResult, LatencyResult, Probe, Target};
use serde_json::json;

const TOKEN: &str = loadgen::DEFAULT_TOKEN;
/// The environment variable that makes this executable an idle client (phase 3).
const CHILD_ENV: &str = "CLUSTER_BENCH_IDLE_CHILD";
/// The environment variable that makes this executable a forwarder of the relay floor.
const FORWARD_ENV: &str = "CLUSTER_BENCH_FORWARD_CHILD";
/// Loopback source addresses each idle client connects from.
const IDLE_SOURCES: u8 = 4;
/// Payload bytes of a relayed or fanned-out `broadcast`.
const MSG_SIZE: usize = 64;
/// Goals of issue-level figures: cross-node p50 within this of the hop's p50, µs.
const GOAL_P50_EXTRA_US: f64 = 30.0;
/// ... and p99 within this of the hop's p99, µs.
const GOAL_P99_EXTRA_US: f64 = 100.0;
/// Gateway RSS per idle connection, bytes.
const GOAL_RSS_PER_CONN: f64 = 1536.0;
/// Descriptors a gateway or an idle client keeps besides its connections.
const FD_MARGIN: usize = 300;

/// What to run, from the environment.
struct Settings {
    reps: usize,
    pin: bool,
    count: usize,
    nodes: usize,
    members: usize,
    secs: f64,
    warmup_secs: f64,
    fan_windows: Vec<usize>,
    conns: usize,
    idle_secs: f64,
    /// Which of `latency`, `fanout`, `idle` to run.
    phases: Vec<String>,
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env(smoke: bool) -> Settings {
        if smoke {
            return Settings {
                reps: 1,
                pin: false,
                count: 100,
                nodes: 2,
                members: 6,
                secs: 0.3,
                warmup_secs: 0.1,
                fan_windows: vec![8],
                conns: 40,
                idle_secs: 0.2,
                phases: PHASES.iter().map(|p| p.to_string()).collect(),
            };
        }
        Settings {
            reps: env_num("CLUSTER_BENCH_REPS", 3usize).max(1),
            pin: std::env::var("CLUSTER_BENCH_PIN").map_or(true, |v| v != "0"),
            count: env_num("CLUSTER_BENCH_COUNT", 1000usize).max(100),
            nodes: env_num("CLUSTER_BENCH_NODES", 4usize).max(2),
            members: env_num("CLUSTER_BENCH_MEMBERS", 100usize).max(1),
            secs: env_num("CLUSTER_BENCH_SECS", 2.0f64).max(0.1),
            warmup_secs: 0.5,
            fan_windows: std::env::var("CLUSTER_BENCH_FAN_WINDOWS")
                .ok()
                .map(|v| {
                    v.split(',')
                        .filter_map(|w| w.trim().parse().ok())
                        .collect::<Vec<usize>>()
                })
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| vec![64, 256]),
            conns: env_num("CLUSTER_BENCH_CONNS", 4000usize).max(1),
            idle_secs: env_num("CLUSTER_BENCH_IDLE_SECS", 2.0f64).max(0.0),
            phases: std::env::var("CLUSTER_BENCH_PHASES")
                .unwrap_or_else(|_| PHASES.join(","))
                .split(',')
                .map(|p| p.trim().to_string())
                .collect(),
        }
    }

    fn runs(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }
}

/// The phases, in the order they run.
const PHASES: [&str; 3] = ["latency", "fanout", "idle"];

fn fmt(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "n/a".into()
    }
}

/// Whether `value` is within `goal`, in words.
fn met(value: f64, goal: f64) -> &'static str {
    if !value.is_finite() {
        "n/a"
    } else if value <= goal {
        "met"
    } else {
        "NOT met"
    }
}

// ---------------------------------------------------------------------------------------
// Redis: the server, and the few RESP exchanges the bench needs.

/// Append the RESP array of bulk strings `args`.
fn resp_command(buf: &mut Vec<u8>, args: &[&[u8]]) {
    buf.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        buf.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        buf.extend_from_slice(arg);
        buf.extend_from_slice(b"\r\n");
    }
}

/// One complete RESP value at the start of `buf`: its length, and its bulk strings in order
/// (the value itself for a bulk string, the elements for an array of bulk strings; simple
/// strings, errors and integers as their text). `None` while incomplete.
fn resp_parse(buf: &[u8]) -> Option<(usize, Vec<Vec<u8>>)> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((&buf[at..end], end + 2))
    }
    fn one(buf: &[u8], at: usize, out: &mut Vec<Vec<u8>>) -> Option<usize> {
        let kind = *buf.get(at)?;
        let (text, next) = line(buf, at + 1)?;
        match kind {
            b'+' | b'-' | b':' => {
                out.push(text.to_vec());
                Some(next)
            }
            b'$' => {
                let len: i64 = std::str::from_utf8(text).ok()?.parse().ok()?;
                if len < 0 {
                    out.push(Vec::new());
                    return Some(next);
                }
                let end = next + len as usize;
                if buf.len() < end + 2 {
                    return None;
                }
                out.push(buf[next..end].to_vec());
                Some(end + 2)
            }
            b'*' => {
                let n: i64 = std::str::from_utf8(text).ok()?.parse().ok()?;
                let mut at = next;
                for _ in 0..n.max(0) {
                    at = one(buf, at, out)?;
                }
                Some(at)
            }
            _ => None,
        }
    }
    let mut out = Vec::new();
    let len = one(buf, 0, &mut out)?;
    Some((len, out))
}

/// Read one RESP value from a blocking stream (with a read timeout set).
fn resp_read(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Vec<Vec<u8>>, String> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some((len, value)) = resp_parse(buf) {
            buf.drain(..len);
            return Ok(value);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err("redis closed the connection".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read from redis: {e}")),
        }
    }
}

fn redis_connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect to redis at {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .and_then(|()| stream.set_nodelay(true))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// One command to the Redis at `addr` on a connection of its own; the reply's strings.
fn redis_command(addr: SocketAddr, args: &[&[u8]]) -> Result<Vec<Vec<u8>>, String> {
    let mut stream = redis_connect(addr)?;
    let mut buf = Vec::new();
    resp_command(&mut buf, args);
    stream.write_all(&buf).map_err(|e| e.to_string())?;
    buf.clear();
    resp_read(&mut stream, &mut buf)
}

/// A `redis-server` of the bench's own, killed when dropped.
struct Redis {
    child: Child,
    addr: SocketAddr,
}

impl Redis {
    /// A running server on a free port; `None` when `redis-server` is not installed.
    fn start() -> Option<Result<Redis, String>> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            return None;
        }
        Some(Redis::spawn())
    }

    fn spawn() -> Result<Redis, String> {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("a free port: {e}"))?
                .port();
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("spawn redis-server: {e}"))?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken: another one
                }
                if redis_command(addr, &[b"PING"]).is_ok() {
                    return Ok(Redis { child, addr });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        Err("redis-server did not start".into())
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn command(&self, args: &[&[u8]]) -> Result<Vec<Vec<u8>>, String> {
        redis_command(self.addr, args)
    }

    /// `used_memory` from `INFO memory`, bytes.
    fn used_memory(&self) -> Option<u64> {
        let reply = self.command(&[b"INFO", b"memory"]).ok()?;
        let text = String::from_utf8_lossy(reply.first()?).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connection subscribed to `channel` (the confirmation read).
fn redis_subscriber(addr: SocketAddr, channel: &str) -> Result<TcpStream, String> {
    let mut sub = redis_connect(addr)?;
    let mut buf = Vec::new();
    resp_command(&mut buf, &[b"SUBSCRIBE", channel.as_bytes()]);
    sub.write_all(&buf).map_err(|e| e.to_string())?;
    buf.clear();
    resp_read(&mut sub, &mut buf)?;
    Ok(sub)
}

/// The raw hop: `SUBSCRIBE` on one connection, `PUBLISH` of `size` bytes on another, one
/// message at a time, each timed from the write of the `PUBLISH` to the read of the whole
/// push, with the WebSocket clients' I/O pattern (nonblocking write, read, poll). With
/// `second`, another connection subscribed before the timed one gets every message too (read
/// off the clock), as a session channel has the sender's node for a subscriber as well.
fn run_hop(
    addr: SocketAddr,
    size: usize,
    warmup: usize,
    count: usize,
    second: bool,
) -> Result<LatencyResult, String> {
    use mio::{Events, Interest, Poll, Token};
    let channel = format!("bench-hop-{}", std::process::id());
    let mut first = if second {
        let early = redis_subscriber(addr, &channel)?;
        early.set_nonblocking(true).map_err(|e| e.to_string())?;
        Some(early)
    } else {
        None
    };
    let sub = redis_subscriber(addr, &channel)?;
    let publisher = redis_connect(addr)?;
    for s in [&sub, &publisher] {
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
    }
    let mut sub = mio::net::TcpStream::from_std(sub);
    let mut publisher = mio::net::TcpStream::from_std(publisher);
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut events = Events::with_capacity(16);
    poll.registry()
        .register(&mut sub, Token(0), Interest::READABLE)
        .and_then(|()| {
            poll.registry()
                .register(&mut publisher, Token(1), Interest::READABLE)
        })
        .map_err(|e| e.to_string())?;
    let payload = vec![b'x'; size.max(1)];
    let mut command = Vec::new();
    resp_command(
        &mut command,
        &[b"PUBLISH", channel.as_bytes(), payload.as_slice()],
    );
    let mut push = Vec::new();
    resp_command(
        &mut push,
        &[b"message", channel.as_bytes(), payload.as_slice()],
    );
    let expected = push.len();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut samples = Vec::with_capacity(count);
    for i in 0..warmup + count {
        let t0 = Instant::now();
        let mut written = 0;
        let mut got = 0;
        while got < expected {
            if written < command.len() {
                match publisher.write(&command[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(format!("write to redis: {e}")),
                }
            }
            match sub.read(&mut chunk) {
                Ok(0) => return Err("redis closed the subscriber".into()),
                Ok(n) => {
                    got += n;
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("read from redis: {e}")),
            }
            poll.poll(&mut events, Some(Duration::from_secs(5)))
                .map_err(|e| e.to_string())?;
            if events.is_empty() {
                return Err("redis did not deliver within 5 s".into());
            }
        }
        if got != expected {
            return Err(format!("expected a push of {expected} bytes, got {got}"));
        }
        if i >= warmup {
            samples.push(t0.elapsed().as_nanos() as u64);
        }
        // The PUBLISH replies, and the other subscriber's copy, off the clock.
        loop {
            match publisher.read(&mut chunk) {
                Ok(0) => return Err("redis closed the publisher".into()),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        while let Some(Ok(n)) = first.as_mut().map(|s| s.read(&mut chunk)) {
            if n == 0 {
                return Err("redis closed the other subscriber".into());
            }
        }
    }
    Ok(LatencyResult::new(samples))
}

/// The length of what a node publishes for one relayed `broadcast` of [`MSG_SIZE`] bytes
/// (sent from `from` to `to`), read off the session channels with `PSUBSCRIBE`.
fn relay_event_size(redis: &Redis, from: &Target, to: &Target) -> Result<usize, String> {
    let mut sub = redis_connect(redis.addr)?;
    let mut buf = Vec::new();
    resp_command(&mut buf, &[b"PSUBSCRIBE", b"gw:s:*"]);
    sub.write_all(&buf).map_err(|e| e.to_string())?;
    buf.clear();
    resp_read(&mut sub, &mut buf)?;
    loadgen::run_relay_latency(from, to, MSG_SIZE, 0, 1)?;
    sub.set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    while let Ok(push) = resp_read(&mut sub, &mut buf) {
        // pmessage, pattern, channel, payload
        if let Some(payload) = push.get(3) {
            if payload.starts_with(b"{\"e\":\"relay\"") {
                return Ok(payload.len());
            }
        }
    }
    Err("no relay event seen on the session channels".into())
}

// ---------------------------------------------------------------------------------------
// Gateways: the release binary in child processes.

struct Node {
    child: Child,
    url: String,
}

impl Node {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn target(&self) -> Target {
        Target::new(&self.url, TOKEN).expect("a node's URL")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the release binary with the built-in defaults and `sets` (`key=value`); returns
/// once it logs its address.
fn spawn_gateway(sets: &[String]) -> Result<Node, String> {
    let bin = env!("CARGO_BIN_EXE_gateway");
    let mut cmd = Command::new(bin);
    cmd.args(["--config", "/dev/null"]);
    let base = [
        "port=0".to_string(),
        format!("auth_tokens=dev:{TOKEN}"),
        "log_level=warn".to_string(),
        // One token stands for every client of the load generator.
        "max_connections_per_user=1000000".to_string(),
    ];
    for set in base.iter().chain(sets) {
        cmd.args(["--set", set]);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {bin}: {e}"))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(at) = line.find("listening on ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(line[at + "listening on ".len()..].trim().to_string());
                }
            } else if !line.contains("WARN") {
                eprintln!("   gateway: {line}");
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(url) => Ok(Node { child, url }),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("{bin} did not log its address within 10 s"))
        }
    }
}

/// `GET /health` of the gateway at `url`: the body.
fn health(url: &str) -> Result<String, String> {
    let addr = loadgen::WsUrl::parse(url)?.addr;
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    Ok(text)
}

/// A node of the cluster at `redis`, serving cluster requests (`/health` says the broker is
/// `ok`, which it does once its first heartbeat is answered).
fn spawn_node(redis: &Redis, name: &str, extra: &[String]) -> Result<Node, String> {
    let mut sets = vec![
        format!("cluster_redis={}", redis.url()),
        format!("node_id={name}"),
    ];
    sets.extend_from_slice(extra);
    let node = spawn_gateway(&sets)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if health(&node.url).is_ok_and(|h| h.contains("\"broker\":\"ok\"")) {
            return Ok(node);
        }
        if Instant::now() > deadline {
            return Err(format!("node {name} did not serve within 10 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn_nodes(redis: &Redis, n: usize, extra: &[String]) -> Result<Vec<Node>, String> {
    (0..n)
        .map(|i| spawn_node(redis, &format!("n{}", i + 1), extra))
        .collect()
}

/// Pin process `pid` to `cpu`; says once when it cannot.
fn pin(pid: u32, cpu: usize, warned: &mut bool) {
    if !loadgen::pin(pid, cpu) && !*warned {
        *warned = true;
        println!("   (note: could not pin with taskset -p; figures are unpinned)");
    }
}

/// Let thread `tid` run on every CPU again (children inherit the spawning thread's mask).
fn unpin(tid: u32) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _ = Command::new("taskset")
        .args(["-p", "-c", &format!("0-{}", cpus - 1), &tid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

// ---------------------------------------------------------------------------------------
// The relay floor: two processes that only move bytes.

/// The forwarder's side (`in ADDR CHANNEL SIZE` or `out ADDR CHANNEL SIZE`): listen on a
/// free port and say `port N`, take one client, then move bytes with nothing else done, as
/// a node would with no parsing, no checks and no framing: `in` publishes every `SIZE`
/// bytes its client sends on `CHANNEL` (and, as a sender's node does, is subscribed to that
/// channel too, reading and dropping its own copies and the replies); `out` is subscribed
/// and writes each message's bytes to its client. Clients are served one after another.
fn forward_child(spec: &str) -> i32 {
    use mio::{Interest, Poll, Token};
    let words: Vec<&str> = spec.split_whitespace().collect();
    let [role, addr, channel, size] = words[..] else {
        println!("error bad spec {spec:?}");
        return 2;
    };
    let (Ok(addr), Ok(size)) = (addr.parse::<SocketAddr>(), size.parse::<usize>()) else {
        println!("error bad spec {spec:?}");
        return 2;
    };
    let run = || -> Result<(), String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let sub = redis_subscriber(addr, channel)?;
        let cmd = if role == "in" {
            Some(redis_connect(addr)?)
        } else {
            None
        };
        println!("port {port}");
        let _ = std::io::stdout().flush();
        let mut streams = vec![sub];
        streams.extend(cmd);
        let mut streams: Vec<mio::net::TcpStream> = streams
            .into_iter()
            .map(|s| {
                s.set_nonblocking(true).expect("nonblocking");
                mio::net::TcpStream::from_std(s)
            })
            .collect();
        let mut poll = Poll::new().map_err(|e| e.to_string())?;
        for (i, s) in streams.iter_mut().enumerate() {
            poll.registry()
                .register(s, Token(i + 1), Interest::READABLE)
                .map_err(|e| e.to_string())?;
        }
        // Token 0 is the client of the moment: one run after another, each on its own.
        loop {
            let (client, _) = listener.accept().map_err(|e| e.to_string())?;
            client.set_nodelay(true).map_err(|e| e.to_string())?;
            client.set_nonblocking(true).map_err(|e| e.to_string())?;
            let mut client = mio::net::TcpStream::from_std(client);
            poll.registry()
                .register(&mut client, Token(0), Interest::READABLE)
                .map_err(|e| e.to_string())?;
            streams.insert(0, client);
            forward_serve(role, channel, size, &mut poll, &mut streams)?;
            let mut gone = streams.remove(0);
            let _ = poll.registry().deregister(&mut gone);
        }
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            println!("error {e}");
            1
        }
    }
}

/// One client of a forwarder (see [`forward_child`]), until it closes: stream 0 is the
/// client, 1 the subscriber, 2 (for `in`) the command connection.
fn forward_serve(
    role: &str,
    channel: &str,
    size: usize,
    poll: &mut mio::Poll,
    streams: &mut [mio::net::TcpStream],
) -> Result<(), String> {
    use mio::Events;
    let mut push_head = Vec::new();
    resp_command(
        &mut push_head,
        &[b"message", channel.as_bytes(), &vec![b'x'; size]],
    );
    let push_len = push_head.len();
    let mut events = Events::with_capacity(16);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut pending = Vec::new();
    let mut out = Vec::new();
    loop {
        poll.poll(&mut events, None).map_err(|e| e.to_string())?;
        for event in &events {
            let i = event.token().0;
            loop {
                match streams[i].read(&mut chunk) {
                    Ok(0) if i == 0 => return Ok(()),
                    Ok(0) => return Err("redis closed".into()),
                    Ok(n) if role == "in" && i == 0 => pending.extend_from_slice(&chunk[..n]),
                    Ok(n) if role == "out" && i == 1 => pending.extend_from_slice(&chunk[..n]),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
            out.clear();
            let (unit, target) = if role == "in" {
                (size, 2)
            } else {
                (push_len, 0)
            };
            while pending.len() >= unit {
                let message: Vec<u8> = pending.drain(..unit).collect();
                if role == "in" {
                    resp_command(&mut out, &[b"PUBLISH", channel.as_bytes(), &message]);
                } else {
                    out.extend_from_slice(&message[unit - size..]);
                }
            }
            let mut written = 0;
            while written < out.len() {
                match streams[target].write(&out[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
    }
}

/// A forwarder child and the port it listens on.
struct Forwarder {
    child: Child,
    port: u16,
}

impl Forwarder {
    fn spawn(
        role: &str,
        redis: SocketAddr,
        channel: &str,
        size: usize,
    ) -> Result<Forwarder, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .env(FORWARD_ENV, format!("{role} {redis} {channel} {size}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn a forwarder: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let port = line
            .strip_prefix("port ")
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| format!("forwarder said {line:?}"))?;
        Ok(Forwarder { child, port })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The relay floor: `size` bytes at a time from this thread to forwarder `a`, through Redis,
/// to forwarder `b` and back to this thread, timed like [`run_hop`].
fn run_floor(
    a: &Forwarder,
    b: &Forwarder,
    size: usize,
    warmup: usize,
    count: usize,
) -> Result<LatencyResult, String> {
    use mio::{Events, Interest, Poll, Token};
    let connect = |port: u16| -> Result<mio::net::TcpStream, String> {
        let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(mio::net::TcpStream::from_std(s))
    };
    let mut to_a = connect(a.port)?;
    let mut from_b = connect(b.port)?;
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    poll.registry()
        .register(&mut from_b, Token(0), Interest::READABLE)
        .map_err(|e| e.to_string())?;
    // Let both forwarders take their clients before the first message.
    std::thread::sleep(Duration::from_millis(100));
    let payload = vec![b'x'; size];
    let mut chunk = vec![0u8; 64 * 1024];
    let mut events = Events::with_capacity(4);
    let mut samples = Vec::with_capacity(count);
    for i in 0..warmup + count {
        let t0 = Instant::now();
        let mut written = 0;
        let mut got = 0;
        while got < size {
            if written < size {
                match to_a.write(&payload[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(format!("write to the forwarder: {e}")),
                }
            }
            match from_b.read(&mut chunk) {
                Ok(0) => return Err("the forwarder closed".into()),
                Ok(n) => {
                    got += n;
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("read from the forwarder: {e}")),
            }
            poll.poll(&mut events, Some(Duration::from_secs(5)))
                .map_err(|e| e.to_string())?;
            if events.is_empty() {
                return Err("the floor did not deliver within 5 s".into());
            }
        }
        if i >= warmup {
            samples.push(t0.elapsed().as_nanos() as u64);
        }
    }
    Ok(LatencyResult::new(samples))
}

// ---------------------------------------------------------------------------------------
// Idle clients in child processes.

/// The child's side: open `conns` connections to `url`, say `ready CONNS SECONDS` on
/// stdout, answer the server's Pings until stdin closes, then say `done LOST PINGS`.
fn idle_child(spec: &str) -> i32 {
    let mut words = spec.split_whitespace();
    let (Some(url), Some(conns)) = (words.next(), words.next().and_then(|n| n.parse().ok())) else {
        println!("error bad spec {spec:?}");
        return 2;
    };
    let limit = loadgen::raise_fd_limit();
    let target = match Target::new(url, TOKEN) {
        Ok(t) => t.with_sources(IDLE_SOURCES),
        Err(e) => {
            println!("error {e}");
            return 2;
        }
    };
    let mut e = match loadgen::Engine::new(&target) {
        Ok(e) => e,
        Err(e) => {
            println!("error {e}");
            return 2;
        }
    };
    let t0 = Instant::now();
    if let Err(err) = e.open_ready(conns, 128) {
        println!("error {err} (open-file limit {limit})");
        return 1;
    }
    println!("ready {conns} {:.3}", t0.elapsed().as_secs_f64());
    let _ = std::io::stdout().flush();
    // stdin closing ends the hold: a thread watches it.
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = tx.send(());
    });
    loop {
        if let Err(err) = e.poll_once(Some(Duration::from_millis(100))) {
            println!("error {err}");
            return 1;
        }
        let inbox = e.take_inbox();
        e.give_inbox(inbox);
        if !matches!(rx.try_recv(), Err(mpsc::TryRecvError::Empty)) {
            break;
        }
    }
    println!("done {} {}", e.n_lost, e.pings_answered);
    0
}

struct IdleClient {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::io::Lines<BufReader<ChildStdout>>,
}

fn spawn_idle_client(url: &str, conns: usize) -> Result<IdleClient, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .env(CHILD_ENV, format!("{url} {conns}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawn an idle client: {e}"))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("piped stdout");
    Ok(IdleClient {
        child,
        stdin,
        lines: BufReader::new(stdout).lines(),
    })
}

impl IdleClient {
    /// The child's next line.
    fn line(&mut self) -> String {
        self.lines
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| "error the idle client ended".into())
    }
}

impl Drop for IdleClient {
    fn drop(&mut self) {
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Figures of the idle phase.
#[derive(Default)]
struct IdleFigures {
    asked: usize,
    reached: usize,
    why_short: Option<String>,
    setup_s: f64,
    rss_before_kib: Vec<u64>,
    rss_after_kib: Vec<u64>,
    rss_end_kib: Vec<u64>,
    per_node: Vec<usize>,
    redis_before: Option<u64>,
    redis_after: Option<u64>,
    redis_rss: (Option<u64>, Option<u64>),
    lost: usize,
    pings: u64,
}

impl IdleFigures {
    fn rss_per_conn(&self, end: bool) -> f64 {
        let after = if end {
            &self.rss_end_kib
        } else {
            &self.rss_after_kib
        };
        let growth: f64 = after
            .iter()
            .zip(&self.rss_before_kib)
            .map(|(a, b)| *a as f64 - *b as f64)
            .sum();
        growth * 1024.0 / self.reached.max(1) as f64
    }

    fn redis_per_conn(&self) -> f64 {
        match (self.redis_before, self.redis_after) {
            (Some(b), Some(a)) => (a as f64 - b as f64) / self.reached.max(1) as f64,
            _ => f64::NAN,
        }
    }
}

fn run_idle_phase(redis: &Redis, s: &Settings) -> Result<IdleFigures, String> {
    let limit = loadgen::raise_fd_limit();
    let fit = limit.saturating_sub(FD_MARGIN).max(1);
    // Each node holds its share; a node cannot hold more than its own descriptor limit
    // (the same hard limit: the gateway raises its soft limit to it).
    let per_node_asked = s.conns.div_ceil(s.nodes);
    let per_node = per_node_asked.min(fit);
    let why_short = (per_node < per_node_asked).then(|| {
        format!(
            "{} connections asked; a node holds at most {fit} under the open-file limit of {limit}",
            s.conns
        )
    });
    let extra = [
        format!("max_connections={}", per_node + 64),
        "max_pending_handshakes=128".to_string(),
    ];
    let nodes = spawn_nodes(redis, s.nodes, &extra)?;
    std::thread::sleep(Duration::from_millis(200));
    let redis_before = redis.used_memory();
    let redis_rss0 = loadgen::rss_kib(redis.pid());
    let rss_before_kib: Vec<u64> = nodes
        .iter()
        .map(|n| loadgen::rss_kib(n.pid()).unwrap_or(0))
        .collect();
    // Each node's share, split over as many clients as the clients' own limit needs.
    let mut shares = Vec::new();
    let mut remaining = s.conns.min(per_node * s.nodes);
    for node in 0..s.nodes {
        let mine = remaining.div_ceil(s.nodes - node).min(per_node);
        remaining -= mine;
        let clients = mine.div_ceil(fit).max(1);
        for c in 0..clients {
            let n = mine / clients + usize::from(c < mine % clients);
            if n > 0 {
                shares.push((node, n));
            }
        }
    }
    let t0 = Instant::now();
    let mut clients = Vec::new();
    for &(node, n) in &shares {
        clients.push(spawn_idle_client(&nodes[node].url, n)?);
    }
    let mut reached = 0;
    let mut counts = vec![0usize; s.nodes];
    let mut first_error = None;
    for (client, &(node, n)) in clients.iter_mut().zip(&shares) {
        let line = client.line();
        if line.starts_with("ready ") {
            reached += n;
            counts[node] += n;
        } else if first_error.is_none() {
            first_error = Some(line);
        }
    }
    let setup_s = t0.elapsed().as_secs_f64();
    if let Some(err) = first_error {
        return Err(format!("an idle client failed: {err}"));
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss_after_kib: Vec<u64> = nodes
        .iter()
        .map(|n| loadgen::rss_kib(n.pid()).unwrap_or(0))
        .collect();
    let redis_after = redis.used_memory();
    let redis_rss1 = loadgen::rss_kib(redis.pid());
    std::thread::sleep(Duration::from_secs_f64(s.idle_secs));
    let rss_end_kib: Vec<u64> = nodes
        .iter()
        .map(|n| loadgen::rss_kib(n.pid()).unwrap_or(0))
        .collect();
    let mut lost = 0;
    let mut pings = 0;
    for client in &mut clients {
        client.stdin.take();
        let line = client.line();
        let mut w = line.split_whitespace().skip(1);
        if line.starts_with("done ") {
            lost += w.next().and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
            pings += w.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        } else {
            println!("   idle client: {line}");
        }
    }
    drop(clients);
    drop(nodes);
    Ok(IdleFigures {
        asked: s.conns,
        reached,
        why_short,
        setup_s,
        rss_before_kib,
        rss_after_kib,
        rss_end_kib,
        per_node: counts,
        redis_before,
        redis_after,
        redis_rss: (redis_rss0, redis_rss1),
        lost,
        pings,
    })
}

/// (ns on a CPU, ns runnable and waiting for one) of process `pid`'s main thread, from
/// `/proc/PID/schedstat`.
fn schedstat(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
    let mut w = text.split_whitespace();
    Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
}

/// Run `f`; print each server's time on a CPU and waiting for one per message.
fn timed<T>(
    servers: &[(&str, u32)],
    messages: usize,
    f: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    let before: Vec<_> = servers.iter().map(|(_, pid)| schedstat(*pid)).collect();
    let result = f()?;
    let mut parts = Vec::new();
    for ((name, pid), b) in servers.iter().zip(before) {
        if let (Some((r0, w0)), Some((r1, w1))) = (b, schedstat(*pid)) {
            let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / 1e3 / messages.max(1) as f64;
            parts.push(format!(
                "{name} {:.1} on CPU, {:.1} waiting",
                per(r0, r1),
                per(w0, w1)
            ));
        }
    }
    if !parts.is_empty() {
        println!("         {}", parts.join("; "));
    }
    Ok(result)
}

// ---------------------------------------------------------------------------------------

fn print_idle(idle: &IdleFigures) {
    if let Some(why) = &idle.why_short {
        println!("   note: {why}");
    }
    println!(
        "   {} of {} connections authenticated in {:.2} s ({:.0}/s), per node {:?}; {} lost, {} server Pings answered during the hold",
        idle.reached,
        idle.asked,
        idle.setup_s,
        idle.reached as f64 / idle.setup_s,
        idle.per_node,
        idle.lost,
        idle.pings
    );
    println!(
        "   gateway VmRSS, KiB per node: before {:?}, after {:?}, after the hold {:?}",
        idle.rss_before_kib, idle.rss_after_kib, idle.rss_end_kib
    );
    println!(
        "   redis used_memory {} → {} B; redis VmRSS {} → {} KiB",
        idle.redis_before.map_or("n/a".into(), |v| v.to_string()),
        idle.redis_after.map_or("n/a".into(), |v| v.to_string()),
        idle.redis_rss.0.map_or("n/a".into(), |v| v.to_string()),
        idle.redis_rss.1.map_or("n/a".into(), |v| v.to_string()),
    );
}

fn med(runs: &[LatencyResult], q: f64) -> f64 {
    median(&runs.iter().map(|r| r.quantile_us(q)).collect::<Vec<_>>())
}

/// The median over runs of (run's `q` quantile − the hop run's).
fn med_diff(runs: &[LatencyResult], hop: &[LatencyResult], q: f64) -> f64 {
    median(
        &runs
            .iter()
            .zip(hop)
            .map(|(r, h)| r.quantile_us(q) - h.quantile_us(q))
            .collect::<Vec<_>>(),
    )
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        std::process::exit(idle_child(&spec));
    }
    if let Ok(spec) = std::env::var(FORWARD_ENV) {
        std::process::exit(forward_child(&spec));
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let s = Settings::from_env(smoke);
    let load_start = loadgen::loadavg();
    println!(
        "cluster bench{}: {} CPUs ({}), clock ticks {}/s, load average at start {}",
        if smoke {
            " (smoke run: pass --bench, or use cargo bench, for figures)"
        } else {
            ""
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadgen::cpu_model(),
        loadgen::clock_ticks(),
        load_start
    );
    let redis = match Redis::start() {
        None => {
            println!("note: redis-server is not installed: the cluster bench is skipped (apt-get install redis-server)");
            return;
        }
        Some(Err(e)) => panic!("{e}"),
        Some(Ok(redis)) => redis,
    };
    let redis_version = redis
        .command(&[b"INFO", b"server"])
        .ok()
        .and_then(|r| {
            let text = String::from_utf8_lossy(r.first()?).into_owned();
            text.lines().find_map(|l| {
                l.strip_prefix("redis_version:")
                    .map(|v| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| "?".into());
    println!(
        "   redis-server {redis_version} at {} (pid {}); {} gateway nodes and one standalone gateway, the release binary in child processes; {} runs per figure, medians; pinning {}",
        redis.addr,
        redis.pid(),
        s.nodes,
        s.reps,
        if s.pin {
            "on (latency: all on CPU 0; fan-out: servers CPU 0, clients CPU 1)"
        } else {
            "off"
        }
    );
    let me = loadgen::current_tid();
    let mut warned = false;

    // 1 and 2 share the nodes.
    let fan_extra = [format!("max_clients_per_session={}", s.members + 2)];
    let nodes = spawn_nodes(&redis, s.nodes, &fan_extra).expect("start the nodes");
    let standalone = spawn_gateway(&fan_extra).expect("start the standalone gateway");
    let targets: Vec<Target> = nodes.iter().map(Node::target).collect();
    let alone = standalone.target();
    if s.pin {
        for pid in nodes
            .iter()
            .map(Node::pid)
            .chain([standalone.pid(), redis.pid()])
            .chain(me)
        {
            pin(pid, 0, &mut warned);
        }
    }

    // 1. Latency.
    let reps = if s.runs("latency") { s.reps } else { 0 };
    let event_size = if reps > 0 {
        relay_event_size(&redis, &targets[0], &targets[1]).expect("the size of a relay event")
    } else {
        0
    };
    if reps > 0 {
        println!(
            "== relay latency, {} recorded messages per run (after {} unrecorded), one at a time; the runs alternate",
            s.count,
            s.count / 10
        );
        println!(
            "   hop: PUBLISH → subscriber of {event_size} B (what a node publishes for a {MSG_SIZE} B broadcast); cross-node: n1 → Redis → n2; same node: n1 → Redis → n1; standalone: one gateway, no Redis"
        );
        println!(
            "   pids: n1 {}, n2 {}, redis {}, standalone {}; after each run, each server's time on a CPU and waiting for one, per message (/proc/PID/schedstat), µs",
            nodes[0].pid(),
            nodes[1].pid(),
            redis.pid(),
            standalone.pid()
        );
    }
    let (mut hop, mut hop2, mut cross, mut local, mut solo) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut floor = Vec::new();
    let forwarders = if reps > 0 {
        let channel = format!("bench-floor-{}", std::process::id());
        let a = Forwarder::spawn("in", redis.addr, &channel, event_size).expect("forwarder a");
        let b = Forwarder::spawn("out", redis.addr, &channel, event_size).expect("forwarder b");
        if s.pin {
            pin(a.child.id(), 0, &mut warned);
            pin(b.child.id(), 0, &mut warned);
        }
        Some((a, b))
    } else {
        None
    };
    let (warm, count) = (s.count / 10, s.count);
    let n1n2redis = [
        ("n1", nodes[0].pid()),
        ("n2", nodes[1].pid()),
        ("redis", redis.pid()),
    ];
    let n1redis = [("n1", nodes[0].pid()), ("redis", redis.pid())];
    for i in 0..reps {
        let h = timed(&[("redis", redis.pid())], warm + count, || {
            run_hop(redis.addr, event_size, warm, count, false)
        })
        .expect("hop run");
        println!("   run {} hop:        {}", i + 1, h.line());
        let h2 = timed(&[("redis", redis.pid())], warm + count, || {
            run_hop(redis.addr, event_size, warm, count, true)
        })
        .expect("hop run, two subscribers");
        println!("   run {} hop, 2 subs: {}", i + 1, h2.line());
        let (a, b) = forwarders.as_ref().expect("forwarders when reps > 0");
        let f = run_floor(a, b, event_size, warm, count).expect("floor run");
        println!("   run {} floor:      {}", i + 1, f.line());
        floor.push(f);
        let c = timed(&n1n2redis, warm + count, || {
            loadgen::run_relay_latency(&targets[0], &targets[1], MSG_SIZE, warm, count)
        })
        .expect("cross-node relay run");
        println!("   run {} cross-node: {}", i + 1, c.line());
        let l = timed(&n1redis, warm + count, || {
            loadgen::run_relay_latency(&targets[0], &targets[0], MSG_SIZE, warm, count)
        })
        .expect("same-node relay run");
        println!("   run {} same node:  {}", i + 1, l.line());
        let a = timed(&[("gateway", standalone.pid())], warm + count, || {
            loadgen::run_relay_latency(&alone, &alone, MSG_SIZE, warm, count)
        })
        .expect("standalone relay run");
        println!("   run {} standalone: {}", i + 1, a.line());
        hop.push(h);
        hop2.push(h2);
        cross.push(c);
        local.push(l);
        solo.push(a);
    }
    // 2. Fan-out across the nodes, beside the same fan-out in the standalone gateway.
    let mut probes: Vec<Probe> = nodes.iter().map(|n| Probe::Process(n.pid())).collect();
    probes.push(Probe::Process(redis.pid()));
    if s.pin {
        for pid in nodes
            .iter()
            .map(Node::pid)
            .chain([redis.pid(), standalone.pid()])
        {
            pin(pid, 0, &mut warned);
        }
        if let Some(me) = me {
            pin(me, 1, &mut warned);
        }
    }
    let solo_probe = Probe::Process(standalone.pid());
    let mut fans: Vec<Vec<FanoutResult>> = Vec::new();
    let mut solo_fans: Vec<Vec<FanoutResult>> = Vec::new();
    let windows = if s.runs("fanout") {
        s.fan_windows.clone()
    } else {
        Vec::new()
    };
    for &window in &windows {
        println!(
            "== fan-out: 1 sender (on n1) → {} members spread over {} nodes, {MSG_SIZE} B payloads, ≤{window} ahead of the slowest, {:.1} s measured; CPU: {} nodes + redis-server; alternating with the same in the standalone gateway",
            s.members, s.nodes, s.secs, s.nodes
        );
        let mut fan = Vec::new();
        let mut solo_fan = Vec::new();
        for i in 0..s.reps {
            let r = loadgen::run_fanout_across(
                &targets,
                s.members,
                MSG_SIZE,
                window,
                Duration::from_secs_f64(s.warmup_secs),
                Duration::from_secs_f64(s.secs),
                &probes,
            )
            .expect("fan-out run");
            let redis_cpu = r.server_cpu_each.last().copied().flatten();
            println!(
                "   run {}: {}; redis-server {} µs/delivery ({}% of the server CPU)",
                i + 1,
                r.line(),
                fmt(
                    redis_cpu.map_or(f64::NAN, |c| c * 1e6 / r.deliveries.max(1) as f64),
                    3
                ),
                fmt(
                    redis_cpu
                        .zip(r.server_cpu_s)
                        .map_or(f64::NAN, |(c, all)| c * 100.0 / all),
                    0
                )
            );
            if !r.ok() {
                println!(
                    "   !! run {}: messages lost, out of order or refused",
                    i + 1
                );
            }
            fan.push(r);
            for p in &probes {
                p.wait_quiet(Duration::from_secs(5));
            }
            let r = loadgen::run_fanout(
                &alone,
                s.members,
                MSG_SIZE,
                window,
                Duration::from_secs_f64(s.warmup_secs),
                Duration::from_secs_f64(s.secs),
                solo_probe,
            )
            .expect("standalone fan-out run");
            println!("   run {} standalone: {}", i + 1, r.line());
            if !r.ok() {
                println!(
                    "   !! run {} standalone: messages lost, out of order or refused",
                    i + 1
                );
            }
            solo_fan.push(r);
            solo_probe.wait_quiet(Duration::from_secs(5));
        }
        fans.push(fan);
        solo_fans.push(solo_fan);
    }
    drop(nodes);
    drop(standalone);

    // 3. Idle connections on fresh nodes.
    let idle = if s.runs("idle") {
        if s.pin {
            // The nodes and the clients are children of this thread: none pinned.
            if let Some(me) = me {
                unpin(me);
            }
        }
        println!(
            "== idle: {} connections over {} fresh nodes (each on a port of its own), from child processes of this bench, held {:.0} s; not pinned",
            s.conns, s.nodes, s.idle_secs
        );
        let idle = run_idle_phase(&redis, &s).expect("idle phase");
        print_idle(&idle);
        idle
    } else {
        IdleFigures::default()
    };
    // Summary.
    let (h50, h99) = (med(&hop, 0.5), med(&hop, 0.99));
    let (c50, c99) = (med(&cross, 0.5), med(&cross, 0.99));
    let (d50, d99) = (med_diff(&cross, &hop, 0.5), med_diff(&cross, &hop, 0.99));
    let cpu_of = |runs: &[FanoutResult]| {
        median(
            &runs
                .iter()
                .map(|r| r.cpu_us_per_delivery().unwrap_or(f64::NAN))
                .collect::<Vec<_>>(),
        )
    };
    let rate_of =
        |runs: &[FanoutResult]| median(&runs.iter().map(FanoutResult::rate).collect::<Vec<_>>());
    // (window, CPU µs per delivery, deliveries/s, Redis's share %, and the same CPU and rate
    // of the standalone gateway).
    type FanFigures = (usize, f64, f64, f64, f64, f64);
    let fan_figures: Vec<FanFigures> = windows
        .iter()
        .zip(fans.iter().zip(&solo_fans))
        .map(|(&window, (fan, solo))| {
            let cpu = cpu_of(fan);
            let rate = rate_of(fan);
            let share = median(
                &fan.iter()
                    .map(|r| {
                        r.server_cpu_each
                            .last()
                            .copied()
                            .flatten()
                            .zip(r.server_cpu_s)
                            .map_or(f64::NAN, |(c, all)| c * 100.0 / all)
                    })
                    .collect::<Vec<_>>(),
            );
            (window, cpu, rate, share, cpu_of(solo), rate_of(solo))
        })
        .collect();
    let fan_lost: u64 = fans
        .iter()
        .chain(&solo_fans)
        .flatten()
        .map(|r| r.lost + r.disorder + r.bad_source + r.errors)
        .sum();
    let rss_conn = idle.rss_per_conn(false);
    let rss_conn_end = idle.rss_per_conn(true);
    let load_end = loadgen::loadavg();
    println!();
    println!(
        "== summary: medians of {} runs (load average {load_start} at start, {load_end} at the end)",
        s.reps
    );
    let row = |name: &str, value: String, base: String, goal: String| {
        println!("{name:<50} {value:>12}  {base:<36} {goal}");
    };
    row("figure", "value".into(), "baseline".into(), "goal".into());
    for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
        row(
            &format!("redis PUBLISH → subscriber {name}, µs"),
            fmt(med(&hop, q), 1),
            String::new(),
            String::new(),
        );
    }
    row(
        "cross-node relay p50, µs",
        fmt(c50, 1),
        format!("hop {} → +{} µs", fmt(h50, 1), fmt(d50, 1)),
        format!(
            "≤ hop + {GOAL_P50_EXTRA_US}: {}",
            met(d50, GOAL_P50_EXTRA_US)
        ),
    );
    row(
        "cross-node relay p99, µs",
        fmt(c99, 1),
        format!("hop {} → +{} µs", fmt(h99, 1), fmt(d99, 1)),
        format!(
            "≤ hop + {GOAL_P99_EXTRA_US}: {}",
            met(d99, GOAL_P99_EXTRA_US)
        ),
    );
    row(
        "cross-node relay p99.9, µs",
        fmt(med(&cross, 0.999), 1),
        format!("hop {}", fmt(med(&hop, 0.999), 1)),
        String::new(),
    );
    row(
        "  hop with a second subscriber p50 / p99, µs",
        format!("{} / {}", fmt(med(&hop2, 0.5), 1), fmt(med(&hop2, 0.99), 1)),
        format!(
            "hop + {} / + {}",
            fmt(med_diff(&hop2, &hop, 0.5), 1),
            fmt(med_diff(&hop2, &hop, 0.99), 1)
        ),
        "(the session channel has two)".into(),
    );
    row(
        "  relay floor p50 / p99, µs",
        format!(
            "{} / {}",
            fmt(med(&floor, 0.5), 1),
            fmt(med(&floor, 0.99), 1)
        ),
        format!(
            "hop + {} / + {}",
            fmt(med_diff(&floor, &hop, 0.5), 1),
            fmt(med_diff(&floor, &hop, 0.99), 1)
        ),
        "(two processes that only move bytes)".into(),
    );
    // A cross-node relay passes two more processes than the hop; the standalone relay is
    // what one gateway between two clients costs. The rest is the cluster's own.
    let extra50 = median(
        &cross
            .iter()
            .zip(&hop)
            .zip(&solo)
            .map(|((c, h), a)| c.quantile_us(0.5) - h.quantile_us(0.5) - a.quantile_us(0.5))
            .collect::<Vec<_>>(),
    );
    row(
        "  cross-node p50 − hop p50 − standalone relay p50",
        fmt(extra50, 1),
        "what the cluster adds beyond a gateway".into(),
        String::new(),
    );
    for (name, runs) in [
        ("same-node relay (cluster)", &local),
        ("relay, standalone gateway", &solo),
    ] {
        row(
            &format!("{name} p50 / p99, µs"),
            format!("{} / {}", fmt(med(runs, 0.5), 1), fmt(med(runs, 0.99), 1)),
            format!(
                "hop + {} / + {}",
                fmt(med_diff(runs, &hop, 0.5), 1),
                fmt(med_diff(runs, &hop, 0.99), 1)
            ),
            String::new(),
        );
    }
    for &(window, cpu, rate, share, solo_cpu, solo_rate) in &fan_figures {
        row(
            &format!(
                "fan-out 1 → {} over {} nodes, ≤{window}: deliveries/s",
                s.members, s.nodes
            ),
            fmt(rate, 0),
            format!("standalone {}", fmt(solo_rate, 0)),
            String::new(),
        );
        row(
            "  server CPU per delivery (nodes + redis), µs",
            fmt(cpu, 3),
            format!(
                "standalone {} ({}×); redis's share {}%",
                fmt(solo_cpu, 3),
                fmt(cpu / solo_cpu, 2),
                fmt(share, 0)
            ),
            String::new(),
        );
    }
    row(
        "  fan-out deliveries lost, out of order or refused",
        fan_lost.to_string(),
        String::new(),
        "0".into(),
    );
    row(
        &format!("idle auth'd connections over {} nodes", s.nodes),
        idle.reached.to_string(),
        format!("asked {}", idle.asked),
        "76 000".into(),
    );
    row(
        "  gateway RSS per connection, B",
        fmt(rss_conn, 0),
        format!("after the hold {}", fmt(rss_conn_end, 0)),
        format!(
            "≤ {GOAL_RSS_PER_CONN}: {}",
            met(rss_conn.max(rss_conn_end), GOAL_RSS_PER_CONN)
        ),
    );
    row(
        "  redis used_memory per connection, B",
        fmt(idle.redis_per_conn(), 1),
        String::new(),
        String::new(),
    );
    let summary = json!({
        "reps": s.reps,
        "nodes": s.nodes,
        "load_start": load_start,
        "load_end": load_end,
        "relay_event_bytes": event_size,
        "hop_p50_us": loadgen::round3(h50),
        "hop_p99_us": loadgen::round3(h99),
        "cross_p50_us": loadgen::round3(c50),
        "cross_p99_us": loadgen::round3(c99),
        "cross_minus_hop_p50_us": loadgen::round3(d50),
        "cross_minus_hop_p99_us": loadgen::round3(d99),
        "hop_two_subscribers_p50_us": loadgen::round3(med(&hop2, 0.5)),
        "hop_two_subscribers_p99_us": loadgen::round3(med(&hop2, 0.99)),
        "floor_p50_us": loadgen::round3(med(&floor, 0.5)),
        "floor_p99_us": loadgen::round3(med(&floor, 0.99)),
        "cross_minus_hop_minus_standalone_p50_us": loadgen::round3(extra50),
        "same_node_p50_us": loadgen::round3(med(&local, 0.5)),
        "same_node_p99_us": loadgen::round3(med(&local, 0.99)),
        "standalone_p50_us": loadgen::round3(med(&solo, 0.5)),
        "standalone_p99_us": loadgen::round3(med(&solo, 0.99)),
        "fanout_members": s.members,
        "fanout": fan_figures
            .iter()
            .map(|&(window, cpu, rate, share, solo_cpu, solo_rate)| json!({
                "window": window,
                "deliveries_per_s": loadgen::round3(rate),
                "cpu_us_per_delivery": loadgen::round3(cpu),
                "redis_share_pct": loadgen::round3(share),
                "standalone_deliveries_per_s": loadgen::round3(solo_rate),
                "standalone_cpu_us_per_delivery": loadgen::round3(solo_cpu),
            }))
            .collect::<Vec<_>>(),
        "fanout_lost": fan_lost,
        "idle_asked": idle.asked,
        "idle_conns": idle.reached,
        "idle_per_node": idle.per_node,
        "rss_per_conn_bytes": loadgen::round3(rss_conn),
        "rss_per_conn_end_bytes": loadgen::round3(rss_conn_end),
        "redis_bytes_per_conn": loadgen::round3(idle.redis_per_conn()),
        "idle_lost": idle.lost,
    });
    println!("json: {summary}");
}
