//! Idle connections: the setup rate, server memory per authenticated connection, and server
//! CPU while they hold idle, answering the server's Pings.
//!
//! Memory is the growth of the server's `VmRSS` over the setup, divided by the connections,
//! and beside it the growth of `RssAnon` alone. The difference is the pages of the server's
//! binary that the first connections run for the first time (handshake, auth), faulted in a
//! window of pages at a time: about half a MiB however many connect, varying by a window from
//! one run to the next, so at a few thousand connections it moves the figure by tens of bytes.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::engine::Engine;
use crate::probe::Probe;
use crate::results::{delta, fmt_opt, opt, round3};
use crate::url::Target;

/// Figures of one idle run.
#[derive(Clone, Debug)]
pub struct IdleResult {
    /// Connections opened and authenticated.
    pub conns: usize,
    /// Time to open and authenticate them all, s.
    pub setup_s: f64,
    /// Server CPU during the setup, s.
    pub setup_server_cpu_s: Option<f64>,
    /// This client thread's CPU during the setup, s.
    pub setup_client_cpu_s: Option<f64>,
    /// Server RSS before opening, KiB.
    pub rss_before_kib: Option<u64>,
    /// Server RSS once all are authenticated, KiB.
    pub rss_after_kib: Option<u64>,
    /// Server RSS at the end of the idle hold, KiB.
    pub rss_end_kib: Option<u64>,
    /// Server anonymous RSS (`RssAnon`) before opening, KiB.
    pub rss_anon_before_kib: Option<u64>,
    /// Server anonymous RSS once all are authenticated, KiB.
    pub rss_anon_after_kib: Option<u64>,
    /// Length of the idle hold, s.
    pub hold_s: f64,
    /// Server CPU during the hold, s.
    pub idle_cpu_s: Option<f64>,
    /// Server Ping frames answered during the hold.
    pub pings: u64,
    /// Connections lost during the hold (must be 0).
    pub lost: usize,
}

impl IdleResult {
    /// Connections set up per second.
    pub fn setup_rate(&self) -> f64 {
        self.conns as f64 / self.setup_s
    }

    /// RSS growth per connection, bytes, once authenticated.
    pub fn rss_per_conn(&self) -> Option<f64> {
        Some(
            (self.rss_after_kib? as f64 - self.rss_before_kib? as f64) * 1024.0 / self.conns as f64,
        )
    }

    /// Anonymous RSS growth per connection, bytes, once authenticated: the part of
    /// [`rss_per_conn`](Self::rss_per_conn) that is not the pages of files.
    pub fn rss_anon_per_conn(&self) -> Option<f64> {
        Some(
            (self.rss_anon_after_kib? as f64 - self.rss_anon_before_kib? as f64) * 1024.0
                / self.conns as f64,
        )
    }

    /// RSS growth per connection, bytes, at the end of the hold.
    pub fn rss_per_conn_end(&self) -> Option<f64> {
        Some((self.rss_end_kib? as f64 - self.rss_before_kib? as f64) * 1024.0 / self.conns as f64)
    }

    /// Server CPU during the hold, % of one core.
    pub fn idle_cpu_pct(&self) -> Option<f64> {
        Some(self.idle_cpu_s? * 100.0 / self.hold_s)
    }

    /// The figures as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "conns": self.conns,
            "setup_s": round3(self.setup_s),
            "setup_conns_per_s": round3(self.setup_rate()),
            "setup_server_cpu_us_per_conn": opt(self.setup_server_cpu_s.map(|c| c * 1e6 / self.conns as f64)),
            "setup_client_cpu_us_per_conn": opt(self.setup_client_cpu_s.map(|c| c * 1e6 / self.conns as f64)),
            "rss_before_kib": self.rss_before_kib,
            "rss_after_kib": self.rss_after_kib,
            "rss_end_kib": self.rss_end_kib,
            "rss_per_conn_bytes": opt(self.rss_per_conn()),
            "rss_per_conn_end_bytes": opt(self.rss_per_conn_end()),
            "rss_anon_before_kib": self.rss_anon_before_kib,
            "rss_anon_after_kib": self.rss_anon_after_kib,
            "rss_anon_per_conn_bytes": opt(self.rss_anon_per_conn()),
            "hold_s": round3(self.hold_s),
            "idle_cpu_pct": opt(self.idle_cpu_pct()),
            "pings_answered": self.pings,
            "lost": self.lost,
        })
    }

    /// Human-readable lines.
    pub fn line(&self) -> String {
        format!(
            "{} conns opened+authenticated in {:.2} s ({:.0} conns/s; CPU per conn: server {} µs, client {} µs); server RSS {} → {} KiB ({} B/conn, {} B of it anonymous), {} KiB after the hold ({} B/conn); idle {:.0} s: server CPU {}% of a core, {} pings answered, {} lost",
            self.conns,
            self.setup_s,
            self.setup_rate(),
            fmt_opt(self.setup_server_cpu_s.map(|c| c * 1e6 / self.conns as f64), 0),
            fmt_opt(self.setup_client_cpu_s.map(|c| c * 1e6 / self.conns as f64), 0),
            self.rss_before_kib.map_or("n/a".into(), |v| v.to_string()),
            self.rss_after_kib.map_or("n/a".into(), |v| v.to_string()),
            fmt_opt(self.rss_per_conn(), 0),
            fmt_opt(self.rss_anon_per_conn(), 0),
            self.rss_end_kib.map_or("n/a".into(), |v| v.to_string()),
            fmt_opt(self.rss_per_conn_end(), 0),
            self.hold_s,
            fmt_opt(self.idle_cpu_pct(), 3),
            self.pings,
            self.lost
        )
    }
}

/// Open `conns` connections (at most `concurrency` opening at once), authenticate each, then
/// hold them idle for `hold`, answering the server's Pings.
pub fn run_idle(
    target: &Target,
    conns: usize,
    concurrency: usize,
    hold: Duration,
    server: Probe,
) -> Result<IdleResult, String> {
    let me = Probe::this_thread();
    let mut e = Engine::new(target)?;
    let rss_before_kib = server.rss_kib();
    let rss_anon_before_kib = server.rss_anon_kib();
    let (scpu0, ccpu0) = (server.cpu_seconds(), me.cpu_seconds());
    let t0 = Instant::now();
    e.open_ready(conns, concurrency)?;
    let setup_s = t0.elapsed().as_secs_f64();
    let setup_server_cpu_s = delta(scpu0, server.cpu_seconds());
    let setup_client_cpu_s = delta(ccpu0, me.cpu_seconds());
    let rss_after_kib = server.rss_kib();
    let rss_anon_after_kib = server.rss_anon_kib();
    let pings0 = e.pings_answered;
    let cpu0 = server.cpu_seconds();
    let h0 = Instant::now();
    let end = h0 + hold;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        e.poll_once(Some(end - now))?;
        e.inbox.clear();
    }
    let cpu1 = server.cpu_seconds();
    let hold_s = h0.elapsed().as_secs_f64();
    Ok(IdleResult {
        conns,
        setup_s,
        setup_server_cpu_s,
        setup_client_cpu_s,
        rss_before_kib,
        rss_after_kib,
        rss_end_kib: server.rss_kib(),
        rss_anon_before_kib,
        rss_anon_after_kib,
        hold_s,
        idle_cpu_s: delta(cpu0, cpu1),
        pings: e.pings_answered - pings0,
        lost: e.n_lost,
    })
}
