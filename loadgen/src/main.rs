//! `loadgen`: a load generator for any `ws://` server speaking the gateway's JSON protocol (the
//! gateway, or a peer doing the same work): one thread, one mio poll, many nonblocking
//! connections, its own client-side framing (the library of this crate). See
//! `benches/README.md` for how the benchmarks use it.
//!
//! ```text
//! cargo run --release -p loadgen -- --url ws://127.0.0.1:18789/ws --mode latency
//! loadgen --url URL [--token T] --mode latency    [--count N] [--warmup N]
//! loadgen --url URL --mode throughput [--conns N] [--pipeline N] [--duration S] [--server-pid P]
//! loadgen --url URL --mode fanout     [--conns MEMBERS] [--size B] [--pipeline N] [--duration S] [--server-pid P]
//! loadgen --url URL --mode idle       [--conns N] [--concurrency N] [--duration S] [--server-pid P]
//!                                     [--sources N]
//! loadgen --mode floor [--size B] [--count N]      (raw TCP ping-pong against a built-in echo thread)
//! common: [--reps N] [--json] [--label TEXT] [--warmup-secs S]
//! ```
//!
//! Server CPU (with `--server-pid`) is utime + stime from `/proc/PID/stat`, with the tick rate
//! from `getconf CLK_TCK` (100 if that fails); server memory is `VmRSS` from
//! `/proc/PID/status`. With `--json` the last line is one JSON object with every figure.
//!
//! Pinning is left to the caller: `taskset -c 0` around server and client for latency (same
//! core), server on one core and client on the other for the throughput modes.

use std::process::ExitCode;
use std::time::Duration;

use loadgen::{Probe, Target};
use serde_json::{json, Map, Value};

const USAGE: &str =
    "usage: loadgen --url ws://HOST:PORT/PATH --mode latency|throughput|fanout|idle|floor
  [--token T] [--conns N] [--duration S] [--count N] [--warmup N] [--warmup-secs S]
  [--pipeline N] [--size B] [--concurrency N] [--sources N] [--server-pid PID] [--reps N] [--json]
  [--label TEXT]
--sources N: connect from 127.0.0.1 .. 127.0.0.N in turn (a loopback target, Linux), so that
  past ~14 000 connections the client's search for a free port does not set the pace";

#[derive(Debug)]
struct Args {
    url: Option<String>,
    token: String,
    mode: String,
    conns: Option<usize>,
    duration: Option<f64>,
    count: usize,
    warmup: Option<usize>,
    warmup_secs: f64,
    pipeline: Option<usize>,
    size: usize,
    concurrency: usize,
    sources: u8,
    server_pid: Option<u32>,
    reps: usize,
    json: bool,
    label: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        url: None,
        token: loadgen::DEFAULT_TOKEN.to_string(),
        mode: String::new(),
        conns: None,
        duration: None,
        count: 20_000,
        warmup: None,
        warmup_secs: 1.0,
        pipeline: None,
        size: 64,
        concurrency: 128,
        sources: 1,
        server_pid: None,
        reps: 1,
        json: false,
        label: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--json" {
            a.json = true;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_string());
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = |v: &str| -> Result<usize, String> {
            v.parse().map_err(|_| format!("{flag}: not a number: {v}"))
        };
        let secs = |v: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| format!("{flag}: not a number of seconds: {v}"))
        };
        match flag.as_str() {
            "--url" => a.url = Some(value),
            "--token" => a.token = value,
            "--mode" => a.mode = value,
            "--conns" => a.conns = Some(num(&value)?),
            "--duration" => a.duration = Some(secs(&value)?),
            "--count" => a.count = num(&value)?,
            "--warmup" => a.warmup = Some(num(&value)?),
            "--warmup-secs" => a.warmup_secs = secs(&value)?,
            "--pipeline" => a.pipeline = Some(num(&value)?),
            "--size" => a.size = num(&value)?,
            "--concurrency" => a.concurrency = num(&value)?,
            "--sources" => {
                a.sources = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=254).contains(n))
                    .ok_or_else(|| format!("--sources {value}: a number from 1 to 254"))?
            }
            "--server-pid" => {
                a.server_pid = Some(
                    value
                        .parse()
                        .map_err(|_| format!("--server-pid: not a pid: {value}"))?,
                )
            }
            "--reps" => a.reps = num(&value)?.max(1),
            "--label" => a.label = Some(value),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if a.mode.is_empty() {
        return Err(format!("--mode is required\n{USAGE}"));
    }
    if a.mode != "floor" && a.url.is_none() {
        return Err(format!("--url is required\n{USAGE}"));
    }
    Ok(a)
}

/// Run one repetition of the mode; returns (human line, JSON figures, whether it passed).
fn run_once(a: &Args, probe: Probe) -> Result<(String, Value, bool), String> {
    let target = || {
        Target::new(a.url.as_deref().unwrap_or_default(), &a.token)
            .map(|t| t.with_sources(a.sources))
    };
    let warmup_secs = Duration::from_secs_f64(a.warmup_secs);
    match a.mode.as_str() {
        "floor" => {
            let (addr, _) = loadgen::spawn_echo().map_err(|e| format!("echo: {e}"))?;
            let r = loadgen::run_floor(addr, a.size, a.warmup.unwrap_or(a.count / 10), a.count)?;
            let mut v = r.to_json();
            v["size"] = json!(a.size);
            Ok((format!("TCP floor {} B: {}", a.size, r.line()), v, true))
        }
        "latency" => {
            let r = loadgen::run_latency(&target()?, a.warmup.unwrap_or(a.count / 10), a.count)?;
            Ok((format!("ping→pong: {}", r.line()), r.to_json(), true))
        }
        "throughput" => {
            let r = loadgen::run_throughput(
                &target()?,
                a.conns.unwrap_or(32),
                a.pipeline.unwrap_or(16),
                warmup_secs,
                Duration::from_secs_f64(a.duration.unwrap_or(5.0)),
                probe,
            )?;
            Ok((
                format!("throughput: {}", r.line()),
                r.to_json(),
                r.errors == 0,
            ))
        }
        "fanout" => {
            let r = loadgen::run_fanout(
                &target()?,
                a.conns.unwrap_or(1000),
                a.size,
                a.pipeline.unwrap_or(64),
                warmup_secs,
                Duration::from_secs_f64(a.duration.unwrap_or(5.0)),
                probe,
            )?;
            let ok = r.ok();
            Ok((format!("fanout: {}", r.line()), r.to_json(), ok))
        }
        "idle" => {
            let r = loadgen::run_idle(
                &target()?,
                a.conns.unwrap_or(1000),
                a.concurrency,
                Duration::from_secs_f64(a.duration.unwrap_or(10.0)),
                probe,
            )?;
            let ok = r.lost == 0;
            Ok((format!("idle: {}", r.line()), r.to_json(), ok))
        }
        other => Err(format!("unknown mode {other}\n{USAGE}")),
    }
}

/// The median of every numeric field across the runs.
fn medians(runs: &[Value]) -> Value {
    let mut out = Map::new();
    if let Some(Value::Object(first)) = runs.first() {
        for key in first.keys() {
            let values: Vec<f64> = runs.iter().filter_map(|r| r[key].as_f64()).collect();
            if values.len() == runs.len() {
                out.insert(
                    key.clone(),
                    json!(loadgen::round3(loadgen::median(&values))),
                );
            }
        }
    }
    Value::Object(out)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let probe = args.server_pid.map_or(Probe::None, Probe::Process);
    let mut runs = Vec::new();
    let mut all_ok = true;
    for rep in 0..args.reps {
        if rep > 0 {
            probe.wait_quiet(Duration::from_secs(10));
        }
        match run_once(&args, probe) {
            Ok((line, figures, ok)) => {
                println!("{line}");
                all_ok &= ok;
                runs.push(figures);
            }
            Err(e) => {
                eprintln!("loadgen: {} failed: {e}", args.mode);
                return ExitCode::FAILURE;
            }
        }
    }
    let median = medians(&runs);
    if args.reps > 1 {
        println!("median of {} runs: {median}", args.reps);
    }
    if args.json {
        let summary = json!({
            "mode": args.mode,
            "label": args.label,
            "url": args.url,
            "reps": args.reps,
            "ok": all_ok,
            "clk_tck": loadgen::clock_ticks(),
            "median": median,
            "runs": runs,
        });
        println!("{summary}");
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("loadgen: the run found lost, disordered or refused messages");
        ExitCode::FAILURE
    }
}
