//! Loop-time attacks: one message repeated on one connection, each repetition beside a
//! `ping` on the same connection, with the bystander watching; bounded by a count, a time
//! budget and an RSS cap. The count is extended until the gateway's CPU over the repetitions
//! reaches `HOSTILE_CPU_TICKS` (within half the time budget), for its CPU per message.

use std::time::{Duration, Instant};

use crate::bystander::{Bystander, Window};
use crate::child::Gateway;
use crate::client::{Client, Outcome};
use crate::cpu::{Clock, Cpu};
use crate::report::{median, Notes};
use crate::{Bench, RECOVERY};

/// A loop-time attack's result.
pub struct LoopRun {
    pub msg_us: Vec<f64>,
    pub ping_us: Vec<f64>,
    pub notes: Notes,
    pub over: Option<String>,
    pub window: Window,
    /// The gateway's CPU over the repetitions (each one the message and its `ping`).
    pub cpu: Cpu,
    /// The gateway did not answer the bystander within [`RECOVERY`] afterwards.
    pub stuck: bool,
}

impl LoopRun {
    pub fn loop_ms(&self) -> f64 {
        if self.msg_us.is_empty() {
            return f64::NAN;
        }
        (median(&self.msg_us) - median(&self.ping_us)) / 1e3
    }
}

/// How many times to repeat an attack message.
#[derive(Clone, Copy)]
pub enum Reps {
    /// Exactly this many (messages whose cost is their size: the count bounds the run).
    Exactly(usize),
    /// At least this many, and on for `HOSTILE_ATTACK_SECS` (at most [`EXTEND`] times as
    /// many), so that the bystander sends enough pings for its p99.
    AtLeast(usize),
}

/// How far [`Reps::AtLeast`] may extend a count.
pub const EXTEND: usize = 50;

/// Repeat an attack message: before each, a `ping` on the same connection; `send` sends the
/// message and waits for what ends it (its reply, or the pong of the ping behind it). `open`
/// gives a connection, again whenever the gateway closed the last one.
pub fn loop_attack(
    bench: &Bench,
    gw: &mut Gateway,
    by: &Bystander,
    reps: Reps,
    mut open: impl FnMut() -> Result<Client, String>,
    mut send: impl FnMut(&mut Client, usize, Instant) -> Outcome,
) -> LoopRun {
    let start = Instant::now();
    let deadline = start + bench.s.budget;
    let mut run = LoopRun {
        msg_us: Vec::new(),
        ping_us: Vec::new(),
        notes: Notes::default(),
        over: None,
        window: by.window(start),
        cpu: Cpu::default(),
        stuck: false,
    };
    let (min, max) = match reps {
        Reps::Exactly(n) => (n, n),
        Reps::AtLeast(n) => (n, n * EXTEND),
    };
    let min_end = start + bench.s.attack;
    let cpu_end = start + bench.s.budget / 2;
    let clock = Clock::start(gw);
    let mut conn: Option<Client> = None;
    let mut opened = 0;
    'reps: for rep in 0.. {
        let now = Instant::now();
        let counted = rep >= min && (rep >= max || now >= min_end);
        if counted && (clock.ticks() >= bench.s.cpu_ticks || now >= cpu_end) {
            break;
        }
        let ping = loop {
            if conn.is_none() {
                opened += 1;
                if opened > rep + 3 {
                    run.over = Some("gave up reconnecting".into());
                    break 'reps;
                }
                match open() {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        run.over = Some(format!("cannot connect: {e}"));
                        break 'reps;
                    }
                }
            }
            let c = conn.as_mut().expect("connected");
            match c.ping(deadline) {
                Ok(rtt) => break rtt,
                Err(Outcome::Timeout) => {
                    run.over = Some("over budget".into());
                    break 'reps;
                }
                Err(Outcome::Closed(why) | Outcome::Failed(why)) => {
                    // Closed after the last reply: say so, and open another.
                    run.notes.add(format!("then {why}"));
                    conn = None;
                }
                Err(_) => conn = None,
            }
        };
        let c = conn.as_mut().expect("connected");
        let t0 = Instant::now();
        let outcome = send(c, rep, deadline);
        run.cpu.reps += 1;
        run.notes.outcome(&outcome);
        match outcome {
            Outcome::Reply { at, .. } => {
                run.msg_us.push((at - t0).as_secs_f64() * 1e6);
                run.ping_us.push(ping.as_secs_f64() * 1e6);
            }
            Outcome::Timeout => {
                run.over = Some("over budget".into());
                break;
            }
            Outcome::Closed(_) | Outcome::Failed(_) => conn = None,
        }
        if let Some(why) = bench.over_rss(gw) {
            run.over = Some(why);
            break;
        }
    }
    if let Some(c) = &conn {
        for code in &c.stray_errors {
            run.notes.add(format!("error {code}"));
        }
    }
    run.cpu.ticks = clock.ticks();
    run.window = by.window(start);
    run.stuck = !by.wait_responsive(Instant::now(), RECOVERY);
    run
}

/// The bystander's quiet window: `secs` of pings with no attack.
pub fn quiet_window(by: &Bystander, quiet: Duration) -> Window {
    let start = Instant::now();
    std::thread::sleep(quiet);
    by.window(start)
}
