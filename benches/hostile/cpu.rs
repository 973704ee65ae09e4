//! The gateway's own CPU time per message: utime + stime of the child from `/proc/PID/stat`
//! (clock ticks of `getconf CLK_TCK`), read before and after many repetitions. The gateway's
//! loop is one thread, so this is the loop time of a message without the client's and the
//! loopback's share.
//!
//! Contract: a figure is counted over at least `HOSTILE_CPU_TICKS` ticks (50; at the usual
//! `CLK_TCK` of 100 a tick is 10 ms, so the counters' rounding is at most 2 %) unless its time
//! cap ran out first (then the report says how many it got); a message's figure is the CPU per repetition
//! (the message and the `ping` before it) minus the CPU per `ping` of the same gateway,
//! measured the same way ([`ping_cost`]). The bystander's pings (one per 10 ms) run through
//! both and are not subtracted.

use std::time::{Duration, Instant};

use crate::child::Gateway;
use crate::client::Client;

/// How long [`ping_cost`] may ping for its ticks.
const PING_CAP: Duration = Duration::from_secs(6);

/// CPU ticks of the gateway since a start: the reading that counts a figure.
#[derive(Clone, Copy)]
pub struct Clock {
    pid: u32,
    start: u64,
}

/// utime + stime of process `pid`, in clock ticks (0 once it is gone).
fn ticks(pid: u32) -> u64 {
    let seconds = loadgen::Probe::Process(pid).cpu_seconds().unwrap_or(0.0);
    (seconds * loadgen::clock_ticks()).round() as u64
}

impl Clock {
    pub fn start(gw: &Gateway) -> Clock {
        let pid = gw.pid();
        Clock {
            pid,
            start: ticks(pid),
        }
    }

    /// Ticks used since [`Clock::start`].
    pub fn ticks(&self) -> u64 {
        ticks(self.pid).saturating_sub(self.start)
    }
}

/// CPU time over a count of repetitions.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    pub ticks: u64,
    pub reps: usize,
}

impl Cpu {
    /// Milliseconds per repetition (NaN without any).
    pub fn ms_per_rep(&self) -> f64 {
        if self.reps == 0 {
            return f64::NAN;
        }
        self.ticks as f64 * 1e3 / loadgen::clock_ticks() / self.reps as f64
    }
}

/// The CPU of one `ping` round trip, on a connection of its own opened with `open`: pings
/// one after the other, 100 at a time, until `min_ticks` ticks (or [`PING_CAP`]).
pub fn ping_cost(
    gw: &Gateway,
    min_ticks: u64,
    open: impl FnOnce() -> Result<Client, String>,
) -> Cpu {
    let Ok(mut c) = open() else {
        return Cpu::default();
    };
    let end = Instant::now() + PING_CAP;
    let clock = Clock::start(gw);
    let mut reps = 0;
    while reps == 0 || (clock.ticks() < min_ticks && Instant::now() < end) {
        for _ in 0..100 {
            if c.ping(end + Duration::from_secs(1)).is_err() {
                return Cpu::default();
            }
            reps += 1;
        }
    }
    Cpu {
        ticks: clock.ticks(),
        reps,
    }
}
