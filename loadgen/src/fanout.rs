//! Fan-out: one sender floods a session, many members receive; server CPU per delivery, and
//! every member must receive every message, in order, from the sender.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::engine::Engine;
use crate::framing::{next_random, seed};
use crate::json::{json_field, json_str, json_u64, lossy, push_u64};
use crate::probe::Probe;
use crate::results::{delta, fmt_opt, opt, round3};
use crate::url::Target;
use crate::{REPLY_TIMEOUT, SETUP_TIMEOUT};

/// Figures of one fan-out run.
#[derive(Clone, Debug)]
pub struct FanoutResult {
    /// Receiving members (the sender not included).
    pub members: usize,
    /// Broadcast payload size, bytes.
    pub size: usize,
    /// Messages allowed ahead of the slowest member.
    pub pipeline: usize,
    /// Time to open the connections and join them to the session, s.
    pub setup_s: f64,
    /// Length of the measured window, s.
    pub seconds: f64,
    /// Broadcasts sent in the window.
    pub messages: u64,
    /// Deliveries (message × member) in the window.
    pub deliveries: u64,
    /// Server CPU in the window, s: the sum over every server process given.
    pub server_cpu_s: Option<f64>,
    /// Each server process's CPU in the window, s, in the order they were given.
    pub server_cpu_each: Vec<Option<f64>>,
    /// This client thread's CPU in the window, s.
    pub client_cpu_s: Option<f64>,
    /// Broadcasts sent in all.
    pub sent_total: u64,
    /// Deliveries expected and not received by the end (must be 0).
    pub lost: u64,
    /// Deliveries out of order or duplicated (must be 0).
    pub disorder: u64,
    /// Deliveries whose `source` was not the sender (must be 0).
    pub bad_source: u64,
    /// Error replies seen.
    pub errors: u64,
}

impl FanoutResult {
    /// Deliveries per second.
    pub fn rate(&self) -> f64 {
        self.deliveries as f64 / self.seconds
    }

    /// Server CPU µs per delivery.
    pub fn cpu_us_per_delivery(&self) -> Option<f64> {
        Some(self.server_cpu_s? * 1e6 / self.deliveries.max(1) as f64)
    }

    /// Server CPU as a % of one core.
    pub fn server_cpu_pct(&self) -> Option<f64> {
        Some(self.server_cpu_s? * 100.0 / self.seconds)
    }

    /// Whether every member received every message, in order, from the sender.
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.disorder == 0 && self.bad_source == 0 && self.errors == 0
    }

    /// The figures as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "members": self.members,
            "size": self.size,
            "pipeline": self.pipeline,
            "setup_s": round3(self.setup_s),
            "seconds": round3(self.seconds),
            "messages": self.messages,
            "deliveries": self.deliveries,
            "deliveries_per_s": round3(self.rate()),
            "server_cpu_us_per_delivery": opt(self.cpu_us_per_delivery()),
            "server_cpu_pct": opt(self.server_cpu_pct()),
            "client_cpu_pct": opt(self.client_cpu_s.map(|c| c * 100.0 / self.seconds)),
            "sent_total": self.sent_total,
            "lost": self.lost,
            "disorder": self.disorder,
            "bad_source": self.bad_source,
            "errors": self.errors,
        })
    }

    /// One human-readable line.
    pub fn line(&self) -> String {
        format!(
            "1 sender → {} members, {} B, ≤{} ahead: {:.0} msgs/s, {:.0} deliveries/s; server CPU {} µs/delivery ({}% of a core); client {}% of a core; sent {}, lost {}, disorder {}, bad source {}, errors {} (setup {:.1} s)",
            self.members,
            self.size,
            self.pipeline,
            self.messages as f64 / self.seconds,
            self.rate(),
            fmt_opt(self.cpu_us_per_delivery(), 3),
            fmt_opt(self.server_cpu_pct(), 0),
            fmt_opt(self.client_cpu_s.map(|c| c * 100.0 / self.seconds), 0),
            self.sent_total,
            self.lost,
            self.disorder,
            self.bad_source,
            self.errors,
            self.setup_s
        )
    }
}

/// (when, sent, delivered, each server's CPU s, client CPU s) at one edge of the measured
/// window.
type Snapshot = (Instant, u64, u64, Vec<Option<f64>>, Option<f64>);

fn cpu_each(servers: &[Probe]) -> Vec<Option<f64>> {
    servers.iter().map(Probe::cpu_seconds).collect()
}

/// How many members have received exactly `base + i` messages, to find the slowest in O(1).
struct SlowestTracker {
    base: u64,
    counts: std::collections::VecDeque<usize>,
}

impl SlowestTracker {
    fn new(members: usize) -> Self {
        let mut counts = std::collections::VecDeque::new();
        counts.push_back(members);
        SlowestTracker { base: 0, counts }
    }

    /// A member went from `from` received messages to `from + 1`.
    fn advance(&mut self, from: u64) {
        let i = (from - self.base) as usize;
        self.counts[i] -= 1;
        if self.counts.len() <= i + 1 {
            self.counts.push_back(0);
        }
        self.counts[i + 1] += 1;
        while self.counts.front() == Some(&0) {
            self.counts.pop_front();
            self.base += 1;
        }
    }

    /// Messages received by the slowest member.
    fn min(&self) -> u64 {
        self.base
    }
}

/// `members` members and one sender join one session; the sender floods `broadcast` messages
/// of about `size` payload bytes, at most `pipeline` ahead of the slowest member (refilling the
/// window in bursts once half of it is free), measured for `duration` after `warmup`; then
/// every member must have received every message in order.
pub fn run_fanout(
    target: &Target,
    members: usize,
    size: usize,
    pipeline: usize,
    warmup: Duration,
    duration: Duration,
    server: Probe,
) -> Result<FanoutResult, String> {
    run_fanout_across(
        std::slice::from_ref(target),
        members,
        size,
        pipeline,
        warmup,
        duration,
        &[server],
    )
}

/// [`run_fanout`] with the members spread over `targets` (the nodes of a cluster, say): the
/// sender on the first, member `i` on target `i % targets.len()`. Server CPU is the sum over
/// `servers` (every process that does the work), each also reported on its own.
pub fn run_fanout_across(
    targets: &[Target],
    members: usize,
    size: usize,
    pipeline: usize,
    warmup: Duration,
    duration: Duration,
    servers: &[Probe],
) -> Result<FanoutResult, String> {
    let me = Probe::this_thread();
    let setup_start = Instant::now();
    let first = targets.first().ok_or("no target")?;
    let mut e = Engine::new(first)?;
    for target in &targets[1..] {
        e.add_target(target)?;
    }
    let sender = e.open_ready(1, 1)?[0];
    let first_member = sender + 1;
    let mut ids = vec![sender];
    for t in 0..targets.len() {
        // Members t, t + n, t + 2n, ... go to target t.
        let here = (t..members).step_by(targets.len()).count();
        ids.extend(e.open_ready_to(t, here, 64)?);
    }
    // The connections were opened target by target: `slot` maps a connection's index
    // (minus the first member's) to its member number.
    let mut slot = vec![0usize; members];
    let mut next = 1;
    for t in 0..targets.len() {
        for m in (t..members).step_by(targets.len()) {
            slot[ids[next] - first_member] = m;
            next += 1;
        }
    }
    let session = format!(
        "fanout-{}-{}",
        std::process::id(),
        next_random(&mut seed()) % 1_000_000_000
    );
    // The sender creates the session; the members join, at most 64 joins in flight.
    let create = format!(
        "{{\"type\":\"session_create\",\"id\":\"create\",\"payload\":{{\"sessionId\":\"{session}\"}}}}"
    );
    let join = format!(
        "{{\"type\":\"session_join\",\"id\":\"join\",\"sessionId\":\"{session}\",\"payload\":{{\"sessionId\":\"{session}\"}}}}"
    );
    e.send_text(sender, create.as_bytes());
    let mut joined = 0usize; // the sender counts once its create is answered
    let mut next_join = 0usize;
    let mut created = false;
    let deadline = Instant::now() + SETUP_TIMEOUT;
    while joined < members + 1 {
        // Once created, `joined - 1` members are in and `next_join` have asked.
        while created && next_join < members && next_join - (joined - 1) < 64 {
            e.send_text(ids[1 + next_join], join.as_bytes());
            next_join += 1;
        }
        e.poll_once(Some(Duration::from_millis(50)))?;
        e.check_lost()?;
        let inbox = e.take_inbox();
        for (_, m) in inbox.iter() {
            match (json_str(m, b"type"), json_str(m, b"replyTo")) {
                (Some(b"session_info"), Some(b"create")) => {
                    created = true;
                    joined += 1;
                }
                (Some(b"session_info"), Some(b"join")) => joined += 1,
                (Some(b"error"), _) => {
                    return Err(format!(
                        "joining the session failed ({joined} in so far; is max_clients_per_session ≥ {}?): {}",
                        members + 1,
                        lossy(m)
                    ));
                }
                _ => {}
            }
        }
        e.give_inbox(inbox);
        if Instant::now() > deadline {
            return Err(format!("timed out joining: {joined} of {} in", members + 1));
        }
    }
    let setup_s = setup_start.elapsed().as_secs_f64();
    let sender_id = e.conns[sender].client_id.clone().into_bytes();

    // The message: {"type":"broadcast","id":"b","sessionId":S,"payload":{"seq":N,"pad":"xx"}}
    let pad = "x".repeat(size.saturating_sub(26));
    let prefix = format!(
        "{{\"type\":\"broadcast\",\"id\":\"b\",\"sessionId\":\"{session}\",\"payload\":{{\"seq\":"
    );
    let suffix = format!(",\"pad\":\"{pad}\"}}}}");
    let mut msg = Vec::with_capacity(prefix.len() + suffix.len() + 20);

    let mut expected = vec![0u64; members];
    let mut tracker = SlowestTracker::new(members);
    let mut sent = 0u64;
    let mut delivered = 0u64;
    let mut disorder = 0u64;
    let mut bad_source = 0u64;
    let mut errors = 0u64;
    let start = Instant::now();
    let measure_at = start + warmup;
    let end = measure_at + duration;
    let mut first: Option<Snapshot> = None;
    let mut last: Option<Snapshot> = None;
    let mut last_progress = Instant::now();
    loop {
        let now = Instant::now();
        let flooding = now < end;
        // Refill the window in bursts, once half of it is free: the gateway then reads many
        // messages per turn and writes each member a batch of them per syscall.
        let window = pipeline.max(1) as u64;
        if flooding {
            if sent <= tracker.min() + window / 2 {
                while sent < tracker.min() + window {
                    msg.clear();
                    msg.extend_from_slice(prefix.as_bytes());
                    push_u64(&mut msg, sent);
                    msg.extend_from_slice(suffix.as_bytes());
                    e.send_text(sender, &msg);
                    sent += 1;
                }
            }
        } else if last.is_none() {
            last = Some((now, sent, delivered, cpu_each(servers), me.cpu_seconds()));
        }
        if !flooding && tracker.min() >= sent {
            break;
        }
        e.poll_once(Some(Duration::from_millis(20)))?;
        e.check_lost()?;
        let inbox = e.take_inbox();
        let before = delivered;
        for (c, m) in inbox.iter() {
            let kind = json_str(m, b"type");
            if kind == Some(b"error") {
                errors += 1;
                continue;
            }
            if c == sender || kind != Some(b"broadcast") {
                continue; // presence and the like
            }
            let member = slot[c - first_member];
            let Some(seq) = json_field(m, b"payload").and_then(|p| json_u64(p, b"seq")) else {
                disorder += 1;
                continue;
            };
            if json_str(m, b"source") != Some(&sender_id[..]) {
                bad_source += 1;
            }
            if seq != expected[member] {
                disorder += 1;
                if seq < expected[member] {
                    continue; // a duplicate: not a new delivery
                }
            }
            while expected[member] <= seq {
                tracker.advance(expected[member]);
                expected[member] += 1;
            }
            delivered += 1;
        }
        e.give_inbox(inbox);
        let now = Instant::now();
        if delivered > before {
            last_progress = now;
        } else if now - last_progress > REPLY_TIMEOUT {
            break; // nothing arrives any more: count what is missing as lost
        }
        if first.is_none() && now >= measure_at {
            first = Some((now, sent, delivered, cpu_each(servers), me.cpu_seconds()));
        }
    }
    let none = || vec![None; servers.len()];
    let (t0, s0, d0, sc0, cc0) = first.unwrap_or_else(|| (start, 0, 0, none(), None));
    let (t1, s1, d1, sc1, cc1) =
        last.unwrap_or_else(|| (Instant::now(), sent, delivered, none(), None));
    let received: u64 = expected.iter().sum();
    let server_cpu_each: Vec<Option<f64>> =
        sc0.iter().zip(&sc1).map(|(a, b)| delta(*a, *b)).collect();
    let server_cpu_s = server_cpu_each
        .iter()
        .try_fold(0.0, |sum, cpu| cpu.map(|c| sum + c));
    Ok(FanoutResult {
        members,
        size,
        pipeline,
        setup_s,
        seconds: (t1 - t0).as_secs_f64(),
        messages: s1 - s0,
        deliveries: d1 - d0,
        server_cpu_s,
        server_cpu_each,
        client_cpu_s: delta(cc0, cc1),
        sent_total: sent,
        lost: (sent * members as u64).saturating_sub(received),
        disorder,
        bad_source,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_follows_the_slowest() {
        let mut t = SlowestTracker::new(2);
        t.advance(0);
        assert_eq!(t.min(), 0);
        t.advance(0);
        assert_eq!(t.min(), 1);
        t.advance(1);
        t.advance(2);
        assert_eq!(t.min(), 1);
    }
}
