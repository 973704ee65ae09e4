//! `cargo bench --bench gateway`: the gateway's performance figures, each printed next to a
//! baseline measured in the same run (or a published figure, labelled as such). Nothing is
//! asserted: the figures are for people, and the machine may be shared.
//!
//! In one process, in this order:
//! 1. the loopback TCP floor: 64-byte ping-pong against an echo thread on 127.0.0.1:0;
//! 2. a gateway (`Gateway::bind`, auth on, port 0, `max_clients_per_session` raised, heartbeat
//!    default) on a thread of its own; its CPU is read from `/proc/self/task/TID/stat`;
//!    - latency: JSON `ping` → `pong` round trips on one connection (p50, p99, p99.9), as a
//!      ratio to the TCP floor; measured against the release binary in a child process too,
//!      the runs alternating (floor, thread, binary) so that a drift of the machine moves all;
//!    - throughput: many connections with pings in flight; server CPU per ping;
//!    - fan-out: one sender, many members of one session; server CPU per delivery, and every
//!      member must receive every message in order. The sender keeps at most a window of
//!      messages ahead of the slowest member; the gateway writes each member what arrived in
//!      one turn with one syscall, so the window sets how many messages share a syscall, and
//!      each window (`GATEWAY_BENCH_FAN_WINDOWS`) is reported on its own;
//! 3. the release `gateway` binary in a child process: time to ready and binary size; then
//!    idle connections against it (a separate process, so that its RSS is the server's alone
//!    and not the client's too): setup rate, RSS per authenticated connection (and its
//!    anonymous part, without the binary's code pages the setup faults in: about half a MiB,
//!    which at 2 000 connections is 250-330 B of each one's figure and moves by a fault's
//!    window of pages from run to run), idle CPU over a hold that spans one heartbeat round.
//!
//! The client is the load generator's engine (the `loadgen` crate, `loadgen/`, whose binary
//! is the `loadgen` command). Each figure is the median of `GATEWAY_BENCH_REPS` runs (5; the
//! idle phase, which holds for 35 s, runs `GATEWAY_BENCH_IDLE_REPS` times, 1).
//!
//! Pinning (turn off with `GATEWAY_BENCH_PIN=0`, then the process's own mask applies, e.g.
//! `taskset -c 0 cargo bench --bench gateway`): for latency the client thread and the server
//! thread (echo or gateway) share CPU 0; for the other phases the server is on CPU 0 and the
//! client on CPU 1. Threads are pinned with `taskset -p -c CPU TID`.
//!
//! Environment: `GATEWAY_BENCH_REPS` (5), `GATEWAY_BENCH_COUNT` (20000 round trips),
//! `GATEWAY_BENCH_SECS` (2, each throughput / fan-out window), `GATEWAY_BENCH_MEMBERS` (1000),
//! `GATEWAY_BENCH_CONNS` (2000 idle connections; up to ~19000 fit under a 20000 descriptor
//! limit, the server being another process), `GATEWAY_BENCH_IDLE_SECS` (35: the hold spans one
//! heartbeat round), `GATEWAY_BENCH_IDLE_REPS` (1), `GATEWAY_BENCH_FAN_WINDOWS` (`64,256`),
//! `GATEWAY_BENCH_PIN`.
//! Without `--bench` (as `cargo test --benches` runs it) it does one tiny smoke run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gateway::AuthToken;
use gateway::{Config, Gateway, GatewayHandle};
use loadgen::{median, IdleResult, LatencyResult, Probe, Target};
use serde_json::json;

const TOKEN: &str = loadgen::DEFAULT_TOKEN;

/// Counts the heap allocations (and reallocations) made on the gateway's own thread, so the
/// bench can report how many the steady-state ping path makes.
struct CountingAlloc;

static GATEWAY_ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static ON_GATEWAY_THREAD: Cell<bool> = const { Cell::new(false) };
}

fn count_allocation() {
    if ON_GATEWAY_THREAD.try_with(Cell::get).unwrap_or(false) {
        GATEWAY_ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Loopback source addresses the idle phase connects from.
const IDLE_SOURCES: u8 = 4;

/// What to run, from the environment.
struct Settings {
    reps: usize,
    pin: bool,
    count: usize,
    secs: f64,
    warmup_secs: f64,
    tp_conns: usize,
    tp_pipeline: usize,
    members: usize,
    fan_size: usize,
    fan_windows: Vec<usize>,
    idle_conns: usize,
    idle_secs: f64,
    idle_reps: usize,
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
                count: 300,
                secs: 0.3,
                warmup_secs: 0.1,
                tp_conns: 4,
                tp_pipeline: 4,
                members: 20,
                fan_size: 64,
                fan_windows: vec![8],
                idle_conns: 50,
                idle_secs: 0.3,
                idle_reps: 1,
            };
        }
        Settings {
            reps: env_num("GATEWAY_BENCH_REPS", 5usize).max(1),
            pin: std::env::var("GATEWAY_BENCH_PIN").map_or(true, |v| v != "0"),
            count: env_num("GATEWAY_BENCH_COUNT", 20_000usize).max(100),
            secs: env_num("GATEWAY_BENCH_SECS", 2.0f64).max(0.1),
            warmup_secs: 0.5,
            tp_conns: 32,
            tp_pipeline: 16,
            members: env_num("GATEWAY_BENCH_MEMBERS", 1000usize).max(1),
            fan_size: 64,
            fan_windows: std::env::var("GATEWAY_BENCH_FAN_WINDOWS")
                .ok()
                .map(|v| {
                    v.split(',')
                        .filter_map(|w| w.trim().parse().ok())
                        .collect::<Vec<usize>>()
                })
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| vec![64, 256]),
            idle_conns: env_num("GATEWAY_BENCH_CONNS", 2000usize).max(1),
            idle_secs: env_num("GATEWAY_BENCH_IDLE_SECS", 35.0f64).max(0.1),
            idle_reps: env_num("GATEWAY_BENCH_IDLE_REPS", 1usize).max(1),
        }
    }
}

/// Pins threads, or says once that it cannot.
struct Pinner {
    on: bool,
    client: Option<u32>,
    warned: bool,
}

impl Pinner {
    fn pin(&mut self, tid: Option<u32>, cpu: usize) {
        if !self.on {
            return;
        }
        let Some(tid) = tid else { return };
        let ok = loadgen::pin(tid, cpu);
        if !ok && !self.warned {
            self.warned = true;
            println!("   (note: could not pin with taskset -p; figures are unpinned)");
        }
    }

    /// Server on `server_cpu`, this (client) thread on `client_cpu`.
    fn place(&mut self, server: Option<u32>, server_cpu: usize, client_cpu: usize) {
        self.pin(server, server_cpu);
        let me = self.client;
        self.pin(me, client_cpu);
    }
}

fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024)
}

/// An in-process gateway on its own thread.
struct InProcess {
    url: String,
    tid: Option<u32>,
    handle: GatewayHandle,
    thread: std::thread::JoinHandle<()>,
    bind_time: Duration,
}

fn start_gateway(max_members: usize) -> InProcess {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("gateway".into())
        .spawn(move || {
            let config = Config {
                port: 0,
                auth_tokens: vec![AuthToken {
                    user: "dev".into(),
                    secret: TOKEN.into(),
                }],
                max_connections: 20_000,
                // One token stands for every client of the load generator.
                max_connections_per_user: 20_000,
                max_clients_per_session: max_members + 1,
                ..Config::default()
            };
            let t0 = Instant::now();
            let mut gw = Gateway::bind(config).expect("bind the gateway");
            let bind_time = t0.elapsed();
            let tid = loadgen::current_tid();
            tx.send((gw.url(), gw.handle(), tid, bind_time))
                .expect("send the gateway's address");
            ON_GATEWAY_THREAD.with(|on| on.set(true));
            gw.run().expect("the gateway's loop");
        })
        .expect("spawn the gateway thread");
    let (url, handle, tid, bind_time) = rx.recv().expect("the gateway thread started");
    InProcess {
        url,
        tid,
        handle,
        thread,
        bind_time,
    }
}

/// The release binary in a child process.
struct ChildGateway {
    child: Child,
    url: String,
    ready: Duration,
}

fn spawn_gateway_binary() -> Result<ChildGateway, String> {
    let bin = env!("CARGO_BIN_EXE_gateway");
    let t0 = Instant::now();
    let mut child = Command::new(bin)
        .args([
            "--set",
            "port=0",
            "--set",
            "max_connections=20000",
            // One token stands for every client of the load generator.
            "--set",
            "max_connections_per_user=20000",
            "--set",
            &format!("auth_tokens=dev:{TOKEN}"),
            "--set",
            "log_level=warn",
        ])
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
                    let url = line[at + "listening on ".len()..].trim().to_string();
                    let _ = tx.send((url, Instant::now()));
                }
            } else if !line.contains("WARN") {
                eprintln!("   gateway: {line}");
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok((url, at)) => Ok(ChildGateway {
            child,
            url,
            ready: at - t0,
        }),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("{bin} did not log its address within 10 s"))
        }
    }
}

impl Drop for ChildGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn med(runs: &[LatencyResult], q: f64) -> f64 {
    median(&runs.iter().map(|r| r.quantile_us(q)).collect::<Vec<_>>())
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "n/a".into()
    }
}

fn ratio_of(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.2}×")
    } else {
        "n/a".into()
    }
}

fn fmt(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "n/a".into()
    }
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let s = Settings::from_env(smoke);
    let mut pinner = Pinner {
        on: s.pin,
        client: loadgen::current_tid(),
        warned: false,
    };
    let load_start = loadgen::loadavg();
    println!(
        "gateway bench{}: {} CPUs ({}), clock ticks {}/s, load average at start {}",
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
    println!(
        "   {} runs per figure, medians; pinning {}",
        s.reps,
        if s.pin {
            "on (latency: client and server on CPU 0; the rest: server CPU 0, client CPU 1)"
        } else {
            "off"
        }
    );

    // 1. The TCP floor and 2. the in-process gateway, both started first so that their
    // latency runs can alternate: a drift of the machine then moves both alike.
    let (echo_addr, echo_tid) = loadgen::spawn_echo().expect("echo thread");
    let gw = start_gateway(s.members);
    let gw_probe = match gw.tid {
        Some(tid) => Probe::Thread {
            pid: std::process::id(),
            tid,
        },
        None => Probe::None,
    };
    let target = Target::new(&gw.url, TOKEN).expect("the gateway's URL");
    println!(
        "== gateway in process at {} (Gateway::bind took {:.2} ms)",
        gw.url,
        gw.bind_time.as_secs_f64() * 1e3
    );
    println!(
        "== latency, client and server on the same core, {} round trips per run, the two alternating:",
        s.count
    );
    println!("   TCP floor: 64-byte ping-pong against an echo thread; gateway: JSON ping → pong");
    println!("   and the same against the release binary in a child process (what users run)");
    let child = spawn_gateway_binary().expect("start the gateway binary");
    let child_target = Target::new(&child.url, TOKEN).expect("the binary's URL");
    pinner.place(echo_tid, 0, 0);
    pinner.place(gw.tid, 0, 0);
    pinner.place(Some(child.child.id()), 0, 0);
    let mut floor = Vec::new();
    let mut lat = Vec::new();
    let mut lat_bin = Vec::new();
    for i in 0..s.reps {
        let f = loadgen::run_floor(echo_addr, 64, s.count / 10, s.count).expect("TCP floor");
        println!("   run {} TCP floor:        {}", i + 1, f.line());
        let l = loadgen::run_latency(&target, s.count / 10, s.count).expect("latency run");
        println!("   run {} ping→pong thread: {}", i + 1, l.line());
        let b = loadgen::run_latency(&child_target, s.count / 10, s.count).expect("latency run");
        println!("   run {} ping→pong binary: {}", i + 1, b.line());
        floor.push(f);
        lat.push(l);
        lat_bin.push(b);
        gw_probe.wait_quiet(Duration::from_secs(5));
    }
    drop(child);

    // Allocations on the gateway thread per ping in steady state: the difference between a
    // run of 2N round trips and a run of N cancels the connection's own setup and teardown.
    let allocs_for = |count: usize| {
        let before = GATEWAY_ALLOCS.load(Ordering::Relaxed);
        loadgen::run_latency(&target, 0, count).expect("latency run");
        GATEWAY_ALLOCS.load(Ordering::Relaxed) - before
    };
    let n = s.count.max(1000);
    let (one, two) = (allocs_for(n), allocs_for(2 * n));
    println!(
        "== allocations on the gateway thread: {one} for a connection with {n} pings, {two} with {}: {:.3} per ping → pong",
        2 * n,
        two.saturating_sub(one) as f64 / n as f64
    );

    // The median of the per-run ratios to the floor run just before.
    let ratio_to_floor = |runs: &[LatencyResult], q: f64| {
        median(
            &floor
                .iter()
                .zip(runs)
                .map(|(f, l)| l.quantile_us(q) / f.quantile_us(q))
                .collect::<Vec<_>>(),
        )
    };
    let lat_ratio = |q: f64| ratio_to_floor(&lat, q);
    let bin_ratio = |q: f64| ratio_to_floor(&lat_bin, q);

    println!(
        "== throughput: {} connections × {} pings in flight, {:.1} s windows; server on CPU 0, client on CPU 1",
        s.tp_conns, s.tp_pipeline, s.secs
    );
    pinner.place(gw.tid, 0, 1);
    let mut tp = Vec::new();
    for i in 0..s.reps {
        let r = loadgen::run_throughput(
            &target,
            s.tp_conns,
            s.tp_pipeline,
            Duration::from_secs_f64(s.warmup_secs),
            Duration::from_secs_f64(s.secs),
            gw_probe,
        )
        .expect("throughput run");
        println!("   run {}: {}", i + 1, r.line());
        tp.push(r);
        gw_probe.wait_quiet(Duration::from_secs(5));
    }

    // One list of runs per window.
    let mut fans: Vec<Vec<loadgen::FanoutResult>> = Vec::new();
    for &window in &s.fan_windows {
        println!(
            "== fan-out: 1 sender → {} members, {} B payloads, ≤{window} ahead of the slowest, {:.1} s measured",
            s.members, s.fan_size, s.secs
        );
        let mut fan = Vec::new();
        for i in 0..s.reps {
            let r = loadgen::run_fanout(
                &target,
                s.members,
                s.fan_size,
                window,
                Duration::from_secs_f64(s.warmup_secs),
                Duration::from_secs_f64(s.secs),
                gw_probe,
            )
            .expect("fan-out run");
            println!("   run {}: {}", i + 1, r.line());
            if !r.ok() {
                println!(
                    "   !! run {}: messages lost, out of order or refused",
                    i + 1
                );
            }
            fan.push(r);
            gw_probe.wait_quiet(Duration::from_secs(10));
        }
        fans.push(fan);
    }
    let _ = gw.handle.shutdown();
    let _ = gw.thread.join();

    // 3. Idle connections against the binary.
    let limit = open_files_limit();
    let idle_conns = s.idle_conns.min(limit.saturating_sub(200));
    if idle_conns < s.idle_conns {
        println!(
            "   (note: {} idle connections asked, {idle_conns} fit under this process's descriptor limit of {limit})",
            s.idle_conns
        );
    }
    let bin = env!("CARGO_BIN_EXE_gateway");
    let bin_size = std::fs::metadata(bin).map_or(0, |m| m.len());
    println!("== time to ready: {bin} ({bin_size} bytes) spawned until it logs `listening on`");
    let mut ready_ms = Vec::new();
    for _ in 0..s.reps {
        let child = spawn_gateway_binary().expect("start the gateway binary");
        ready_ms.push(child.ready.as_secs_f64() * 1e3);
    }
    println!(
        "   {}",
        ready_ms
            .iter()
            .map(|ms| format!("{ms:.1} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "== idle: {idle_conns} connections to the release binary in a child process from {IDLE_SOURCES} loopback addresses, held {:.0} s (a heartbeat round is 30 s); server CPU 0, client CPU 1",
        s.idle_secs
    );
    let mut idle: Vec<IdleResult> = Vec::new();
    for i in 0..s.idle_reps {
        let child = spawn_gateway_binary().expect("start the gateway binary");
        let pid = child.child.id();
        pinner.place(Some(pid), 0, 1);
        // Four source addresses: past ~14 000 connections from one address the client's
        // search for a free port, not the gateway, would set the setup rate.
        let target = Target::new(&child.url, TOKEN)
            .expect("the binary's URL")
            .with_sources(IDLE_SOURCES);
        std::thread::sleep(Duration::from_millis(100));
        let r = loadgen::run_idle(
            &target,
            idle_conns,
            128,
            Duration::from_secs_f64(s.idle_secs),
            Probe::Process(pid),
        )
        .expect("idle run");
        println!("   run {}: {}", i + 1, r.line());
        idle.push(r);
        drop(child);
    }

    // Summary.
    let f50 = med(&floor, 0.5);
    let f99 = med(&floor, 0.99);
    let f999 = med(&floor, 0.999);
    let l50 = med(&lat, 0.5);
    let l99 = med(&lat, 0.99);
    let l999 = med(&lat, 0.999);
    let cpu_ping = median(
        &tp.iter()
            .map(|r| r.cpu_us_per_msg().unwrap_or(f64::NAN))
            .collect::<Vec<_>>(),
    );
    let tp_rate = median(&tp.iter().map(|r| r.rate()).collect::<Vec<_>>());
    // Per window: (window, CPU µs per delivery, deliveries/s), medians.
    let fan_figures: Vec<(usize, f64, f64)> = s
        .fan_windows
        .iter()
        .zip(&fans)
        .map(|(&window, fan)| {
            let cpu = median(
                &fan.iter()
                    .map(|r| r.cpu_us_per_delivery().unwrap_or(f64::NAN))
                    .collect::<Vec<_>>(),
            );
            let rate = median(&fan.iter().map(|r| r.rate()).collect::<Vec<_>>());
            (window, cpu, rate)
        })
        .collect();
    let fan_lost: u64 = fans
        .iter()
        .flatten()
        .map(|r| r.lost + r.disorder + r.bad_source)
        .sum();
    let rss_conn = median(
        &idle
            .iter()
            .map(|r| r.rss_per_conn().unwrap_or(f64::NAN))
            .collect::<Vec<_>>(),
    );
    let rss_anon_conn = median(
        &idle
            .iter()
            .map(|r| r.rss_anon_per_conn().unwrap_or(f64::NAN))
            .collect::<Vec<_>>(),
    );
    let rss_conn_end = median(
        &idle
            .iter()
            .map(|r| r.rss_per_conn_end().unwrap_or(f64::NAN))
            .collect::<Vec<_>>(),
    );
    let idle_cpu = median(
        &idle
            .iter()
            .map(|r| r.idle_cpu_pct().unwrap_or(f64::NAN))
            .collect::<Vec<_>>(),
    );
    let setup_rate = median(&idle.iter().map(|r| r.setup_rate()).collect::<Vec<_>>());
    let ready = median(&ready_ms);
    let load_end = loadgen::loadavg();

    println!();
    println!(
        "== summary: medians of {} runs (load average {load_start} at start, {load_end} at the end)",
        s.reps
    );
    println!("   latency ratios are the medians of the per-run ratios (floor and gateway runs alternate)");
    println!(
        "{:<44} {:>10}  {:<34} {:>8}  target",
        "figure", "gateway", "baseline", "ratio"
    );
    let row = |name: &str, value: String, base: String, r: String, target: &str| {
        println!("{name:<44} {value:>10}  {base:<34} {r:>8}  {target}");
    };
    for (server, runs) in [
        ("in-process thread", &lat),
        ("binary, own process", &lat_bin),
    ] {
        for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
            row(
                &format!("ping→pong {name}, µs ({server})"),
                fmt(med(runs, q), 1),
                format!("TCP floor 64 B {}", fmt(med(&floor, q), 1)),
                ratio_of(ratio_to_floor(runs, q)),
                "≤ 1.3×",
            );
        }
    }
    row(
        "server CPU per ping at saturation, µs",
        fmt(cpu_ping, 2),
        format!("uWS bare echo {} (published)", loadgen::REF_UWS_ECHO_US),
        ratio(cpu_ping, loadgen::REF_UWS_ECHO_US),
        "",
    );
    row(
        "",
        String::new(),
        format!("Node ws, same JSON {} (published)", loadgen::REF_NODE_WS_US),
        ratio(cpu_ping, loadgen::REF_NODE_WS_US),
        "",
    );
    row(
        "  pongs/s at that load (server ~100% of CPU 0)",
        fmt(tp_rate, 0),
        String::new(),
        String::new(),
        "",
    );
    for &(window, cpu, rate) in &fan_figures {
        row(
            &format!(
                "fan-out CPU per delivery, µs ({}, ≤{window} ahead)",
                s.members
            ),
            fmt(cpu, 3),
            "target 0.15".into(),
            ratio(cpu, 0.15),
            "≤ 0.15 µs",
        );
        row(
            "  deliveries/s",
            fmt(rate, 0),
            String::new(),
            String::new(),
            "",
        );
    }
    row(
        "  fan-out deliveries lost or out of order",
        fan_lost.to_string(),
        String::new(),
        String::new(),
        "0",
    );
    row(
        &format!("RSS per idle auth'd conn, B ({idle_conns})"),
        fmt(rss_conn, 0),
        format!("after the hold {}", fmt(rss_conn_end, 0)),
        ratio(rss_conn, 1024.0),
        "≤ 1 KiB",
    );
    row(
        "  of it anonymous (not file pages), B",
        fmt(rss_anon_conn, 0),
        "the rest: code the setup ran".to_string(),
        String::new(),
        "",
    );
    row(
        &format!("idle CPU, % of a core ({idle_conns}, {:.0} s)", s.idle_secs),
        fmt(idle_cpu, 3),
        String::new(),
        ratio(idle_cpu, 0.5),
        "< 0.5 %",
    );
    row(
        "connection setup (connect+upgrade+auth), /s",
        fmt(setup_rate, 0),
        String::new(),
        String::new(),
        "",
    );
    row(
        "time to ready (spawn → listening), ms",
        fmt(ready, 1),
        String::new(),
        String::new(),
        "",
    );
    row(
        "release binary size, bytes",
        bin_size.to_string(),
        String::new(),
        String::new(),
        "",
    );
    let busy = load_start
        .split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .is_some_and(|l| l > 0.5);
    if busy {
        println!("   note: the load average shows other work on the machine: figures are noisy; compare medians and ratios");
    }
    let summary = json!({
        "reps": s.reps,
        "load_start": load_start,
        "load_end": load_end,
        "floor_p50_us": loadgen::round3(f50),
        "floor_p99_us": loadgen::round3(f99),
        "floor_p999_us": loadgen::round3(f999),
        "ping_p50_us": loadgen::round3(l50),
        "ping_p99_us": loadgen::round3(l99),
        "ping_p999_us": loadgen::round3(l999),
        "ping_p50_ratio": loadgen::round3(lat_ratio(0.5)),
        "ping_p99_ratio": loadgen::round3(lat_ratio(0.99)),
        "ping_p999_ratio": loadgen::round3(lat_ratio(0.999)),
        "binary_ping_p50_us": loadgen::round3(med(&lat_bin, 0.5)),
        "binary_ping_p99_us": loadgen::round3(med(&lat_bin, 0.99)),
        "binary_ping_p999_us": loadgen::round3(med(&lat_bin, 0.999)),
        "binary_ping_p50_ratio": loadgen::round3(bin_ratio(0.5)),
        "binary_ping_p99_ratio": loadgen::round3(bin_ratio(0.99)),
        "binary_ping_p999_ratio": loadgen::round3(bin_ratio(0.999)),
        "server_cpu_us_per_ping": loadgen::round3(cpu_ping),
        "pongs_per_s": loadgen::round3(tp_rate),
        "fanout_members": s.members,
        "fanout": fan_figures
            .iter()
            .map(|&(window, cpu, rate)| json!({
                "window": window,
                "cpu_us_per_delivery": loadgen::round3(cpu),
                "deliveries_per_s": loadgen::round3(rate),
            }))
            .collect::<Vec<_>>(),
        "fanout_lost": fan_lost,
        "idle_conns": idle_conns,
        "rss_per_conn_bytes": loadgen::round3(rss_conn),
        "rss_per_conn_end_bytes": loadgen::round3(rss_conn_end),
        "rss_anon_per_conn_bytes": loadgen::round3(rss_anon_conn),
        "idle_cpu_pct": loadgen::round3(idle_cpu),
        "setup_conns_per_s": loadgen::round3(setup_rate),
        "time_to_ready_ms": loadgen::round3(ready),
        "binary_bytes": bin_size,
    });
    println!("json: {summary}");
}
