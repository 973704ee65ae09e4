//! Throughput: many connections, each with pings in flight; server CPU per ping.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::engine::Engine;
use crate::json::{json_str, push_u64};
use crate::probe::Probe;
use crate::results::{delta, fmt_opt, opt, round3};
use crate::url::Target;
use crate::REPLY_TIMEOUT;

/// Figures of one throughput run.
#[derive(Clone, Debug)]
pub struct ThroughputResult {
    /// Connections.
    pub conns: usize,
    /// Pings in flight per connection.
    pub pipeline: usize,
    /// Length of the measured window, s.
    pub seconds: f64,
    /// Pongs received in the window.
    pub pongs: u64,
    /// Server CPU used in the window, s.
    pub server_cpu_s: Option<f64>,
    /// This client thread's CPU in the window, s.
    pub client_cpu_s: Option<f64>,
    /// Error replies seen.
    pub errors: u64,
}

impl ThroughputResult {
    /// Pongs per second.
    pub fn rate(&self) -> f64 {
        self.pongs as f64 / self.seconds
    }

    /// Server CPU µs per ping → pong.
    pub fn cpu_us_per_msg(&self) -> Option<f64> {
        Some(self.server_cpu_s? * 1e6 / self.pongs.max(1) as f64)
    }

    /// Server CPU as a % of one core.
    pub fn server_cpu_pct(&self) -> Option<f64> {
        Some(self.server_cpu_s? * 100.0 / self.seconds)
    }

    /// The figures as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "conns": self.conns,
            "pipeline": self.pipeline,
            "seconds": round3(self.seconds),
            "pongs": self.pongs,
            "pongs_per_s": round3(self.rate()),
            "server_cpu_us_per_msg": opt(self.cpu_us_per_msg()),
            "server_cpu_pct": opt(self.server_cpu_pct()),
            "client_cpu_pct": opt(self.client_cpu_s.map(|c| c * 100.0 / self.seconds)),
            "errors": self.errors,
        })
    }

    /// One human-readable line.
    pub fn line(&self) -> String {
        format!(
            "{} conns × {} in flight: {:.0} pongs/s; server CPU {} µs/msg ({}% of a core); client {}% of a core; {} errors",
            self.conns,
            self.pipeline,
            self.rate(),
            fmt_opt(self.cpu_us_per_msg(), 2),
            fmt_opt(self.server_cpu_pct(), 0),
            fmt_opt(self.client_cpu_s.map(|c| c * 100.0 / self.seconds), 0),
            self.errors
        )
    }
}

/// `conns` connections, each keeping `pipeline` pings in flight; measured for `duration`
/// after `warmup`.
pub fn run_throughput(
    target: &Target,
    conns: usize,
    pipeline: usize,
    warmup: Duration,
    duration: Duration,
    server: Probe,
) -> Result<ThroughputResult, String> {
    let me = Probe::this_thread();
    let mut e = Engine::new(target)?;
    let ids = e.open_ready(conns, 64)?;
    let mut seq = 0u64;
    let mut msg = Vec::with_capacity(64);
    let mut send_ping = |e: &mut Engine, c: usize, seq: &mut u64| {
        msg.clear();
        msg.extend_from_slice(b"{\"type\":\"ping\",\"id\":\"t");
        push_u64(&mut msg, *seq);
        msg.extend_from_slice(b"\"}");
        *seq += 1;
        e.send_text(c, &msg);
    };
    for &c in &ids {
        for _ in 0..pipeline.max(1) {
            send_ping(&mut e, c, &mut seq);
        }
    }
    let start = Instant::now();
    let measure_at = start + warmup;
    let end = measure_at + duration;
    let mut pongs = 0u64;
    let mut errors = 0u64;
    let mut first: Option<(Instant, u64, Option<f64>, Option<f64>)> = None;
    let mut last_progress = Instant::now();
    loop {
        e.poll_once(Some(Duration::from_millis(20)))?;
        e.check_lost()?;
        let inbox = e.take_inbox();
        let before = pongs;
        for (c, m) in inbox.iter() {
            match json_str(m, b"type") {
                Some(b"pong") => {
                    pongs += 1;
                    send_ping(&mut e, c, &mut seq);
                }
                Some(b"error") => errors += 1,
                _ => {}
            }
        }
        e.give_inbox(inbox);
        let now = Instant::now();
        if pongs > before {
            last_progress = now;
        } else if now - last_progress > REPLY_TIMEOUT {
            return Err(format!("no pong for {REPLY_TIMEOUT:?}"));
        }
        if first.is_none() && now >= measure_at {
            first = Some((now, pongs, server.cpu_seconds(), me.cpu_seconds()));
        }
        if now >= end {
            let (t0, p0, s0, c0) = first.unwrap_or((start, 0, None, None));
            return Ok(ThroughputResult {
                conns,
                pipeline,
                seconds: (now - t0).as_secs_f64(),
                pongs: pongs - p0,
                server_cpu_s: delta(s0, server.cpu_seconds()),
                client_cpu_s: delta(c0, me.cpu_seconds()),
                errors,
            });
        }
    }
}
