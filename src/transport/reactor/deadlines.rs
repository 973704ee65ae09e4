//! Deadlines: the loop's one timer wheel and what its entries stand for; what happens when
//! each fires (turn step 5) is `expire.rs`.
//!
//! The wheel holds the handshake deadline, the heartbeat (ping and idle timeout), the message
//! timeout, the close linger and the app's own timers. Entries are never cancelled: each carries its
//! connection's id and is ignored when the id has gone stale (see `slots.rs`).
//!
//! Heartbeats without churn: one entry per open connection; inbound bytes only update
//! `last_rx`; when the entry fires, the heartbeat (`expire.rs`) closes an idle connection, or
//! queues a Ping when one is due, and arms the next entry. Deadlines are coalesced
//! ([`coalesced`]) so that thousands of connections share a few wakeups, and the first Pings
//! of connections opened together are spread ([`first_ping_lead`]).
//!
//! Message timeouts the same way: a connection has at most one entry, armed when a message
//! that did not arrive whole in one read begins and the connection has none; when it fires,
//! the connection's current message (`message_since`) is closed if late, else the entry is
//! armed again for it. A message that arrives whole in one read never touches the wheel.

use std::time::{Duration, Instant};

use crate::app::ConnId;
use crate::transport::connection::Connection;
use crate::transport::timer::TimerWheel;

use super::config::TransportConfig;

/// Timer wheel granularity.
pub(super) const TICK: Duration = Duration::from_millis(5);
/// Timers are coalesced: a deadline is rounded up by at most 1/16 of its distance from now,
/// and never by more than this, so that thousands of connections opened over a few seconds
/// share a few wakeups instead of one each.
const COALESCE_MAX: Duration = Duration::from_millis(100);
/// How long a refused or finished socket is kept to drain when `close_timeout` is off.
const DEFAULT_LINGER: Duration = Duration::from_secs(1);

/// What a timer wheel entry stands for.
#[derive(Clone, Copy, Debug)]
pub(super) enum Timer {
    /// The upgrade must be done by now.
    Handshake(ConnId),
    /// Heartbeat: decide between idle close, ping, or re-arming.
    Heartbeat(ConnId),
    /// The message in progress may be late: close, or re-arm for a later one.
    Message(ConnId),
    /// Closing or finishing: drop the socket now.
    Linger(ConnId),
    /// The app's own timer.
    App(u64),
}

/// The timer wheel and the instant its coalesced deadlines are counted from.
pub(super) struct Deadlines {
    wheel: TimerWheel<Timer>,
    /// The instant coalesced deadlines are counted from.
    epoch: Instant,
    /// Entries taken off the wheel this turn (kept for its allocation).
    expired: Vec<Timer>,
}

impl Deadlines {
    /// An empty wheel whose time zero is `now`.
    pub(super) fn new(now: Instant) -> Deadlines {
        Deadlines {
            wheel: TimerWheel::new(TICK, now),
            epoch: now,
            expired: Vec::new(),
        }
    }

    /// Put `timer` on the wheel at `at`, coalesced with its neighbours.
    pub(super) fn schedule(&mut self, now: Instant, at: Instant, timer: Timer) {
        self.wheel.insert(coalesced(self.epoch, now, at), timer);
    }

    /// Take every entry that is due at `now` off the wheel; hand the list back with
    /// [`Deadlines::give_back`] when done, so its allocation is kept.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<Timer> {
        let mut due = std::mem::take(&mut self.expired);
        self.wheel.expire(now, &mut due);
        due
    }

    /// Return the (drained) list [`Deadlines::take_due`] gave out.
    pub(super) fn give_back(&mut self, due: Vec<Timer>) {
        self.expired = due;
    }

    /// When the next entry may be due (see [`TimerWheel::next_expiry`]).
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.wheel.next_expiry()
    }

    /// Entries on the wheel.
    pub(super) fn len(&self) -> usize {
        self.wheel.len()
    }

    /// Give the handshake of the new connection `id` until its deadline.
    pub(super) fn arm_handshake(&mut self, config: &TransportConfig, id: ConnId, now: Instant) {
        if let Some(timeout) = config.handshake_timeout {
            self.schedule(now, now + timeout, Timer::Handshake(id));
        }
    }

    /// Arm `conn`'s heartbeat entry (none when the heartbeat and the idle timeout are off).
    pub(super) fn arm_heartbeat(
        &mut self,
        config: &TransportConfig,
        conn: &Connection,
        now: Instant,
    ) {
        if let Some(at) = next_heartbeat(config, conn) {
            self.schedule(now, at, Timer::Heartbeat(conn.id));
        }
    }

    /// Put `id`'s message-timeout entry on the wheel, `after` from now.
    pub(super) fn arm_message(&mut self, id: ConnId, now: Instant, after: Duration) {
        self.schedule(now, now + after, Timer::Message(id));
    }

    /// `now` in milliseconds since the wheel's time zero, modulo 2^32: how a connection
    /// records when its message in progress began, in 4 bytes. Differences of two stamps
    /// ([`since_stamp`]) are right for spans below 49 days.
    pub(super) fn stamp(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_millis() as u32
    }

    /// Drop `id` at the end of its linger time, unless it is gone by then.
    pub(super) fn arm_linger(&mut self, config: &TransportConfig, id: ConnId, now: Instant) {
        let linger = config.close_timeout.unwrap_or(DEFAULT_LINGER);
        self.schedule(now, now + linger, Timer::Linger(id));
    }
}

/// The time from `stamp` ([`Deadlines::stamp`]) to `now_stamp`.
pub(super) fn since_stamp(stamp: u32, now_stamp: u32) -> Duration {
    Duration::from_millis(u64::from(now_stamp.wrapping_sub(stamp)))
}

/// The message timeout as the wheel counts it: stamps wrap after 49 days, so at most 24.
pub(super) fn message_timeout(config: &TransportConfig) -> Option<Duration> {
    const MAX: Duration = Duration::from_millis(u32::MAX as u64 / 2);
    config.message_timeout.map(|d| d.min(MAX))
}

/// When `conn`'s heartbeat entry must fire: the earlier of its next Ping and its idle timeout;
/// `None` when both are off.
pub(super) fn next_heartbeat(config: &TransportConfig, conn: &Connection) -> Option<Instant> {
    let ping = config.heartbeat_interval.map(|d| conn.last_ping + d);
    let idle = config.client_timeout.map(|d| conn.last_rx + d);
    ping.into_iter().chain(idle).min()
}

/// `at` rounded up to a multiple (counted from `epoch`) of a grain of at most 1/16 of
/// `at - now` and at most [`COALESCE_MAX`]; unchanged when that grain is below one tick.
fn coalesced(epoch: Instant, now: Instant, at: Instant) -> Instant {
    let grain = (at.saturating_duration_since(now) / 16).min(COALESCE_MAX);
    if grain < TICK {
        return at;
    }
    let grain = grain.as_nanos();
    let offset = at.saturating_duration_since(epoch).as_nanos();
    let rounded = offset.div_ceil(grain) * grain;
    u64::try_from(rounded)
        .ok()
        .and_then(|nanos| epoch.checked_add(Duration::from_nanos(nanos)))
        .unwrap_or(at)
}

/// How much earlier than a whole heartbeat interval the `n`th connection gets its first Ping:
/// between none and half the interval, spread evenly over consecutive connections (the
/// fractional parts of `n` times the golden ratio). Connections opened together, as after a
/// restart, then ping spread over half an interval instead of all in the same turns, which
/// would hold up everyone else's traffic while thousands of Pings are written.
pub(super) fn first_ping_lead(n: u64, interval: Duration) -> Duration {
    // 2^64 / golden ratio; the top 53 bits of the product are frac(n / golden ratio).
    let fraction = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
    interval.mul_f64(fraction / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_pings_of_connections_opened_together_spread_over_half_an_interval() {
        let interval = Duration::from_secs(30);
        let half = interval / 2;
        // 1 000 consecutive connections: every lead is within half the interval, and each
        // tenth of that half gets about a tenth of them.
        let mut buckets = [0usize; 10];
        for n in 5_000..6_000 {
            let lead = first_ping_lead(n, interval);
            assert!(lead < half, "{lead:?}");
            buckets[(lead.as_secs_f64() / half.as_secs_f64() * 10.0) as usize] += 1;
        }
        for (i, count) in buckets.iter().enumerate() {
            assert!((90..=110).contains(count), "bucket {i}: {count} of 1000");
        }
        assert_eq!(first_ping_lead(0, interval), Duration::ZERO);
    }

    #[test]
    fn deadlines_are_coalesced_within_a_sixteenth_and_100_ms() {
        let epoch = Instant::now();
        let ms = Duration::from_millis;
        // Far deadlines land on 100 ms boundaries, never early, at most 100 ms late.
        for start in [0u64, 3, 997, 12_345] {
            let now = epoch + ms(start);
            for (i, d) in [5_000u64, 10_000, 30_000].into_iter().enumerate() {
                let at = now + ms(d) + ms(i as u64 * 7);
                let c = coalesced(epoch, now, at);
                assert!(c >= at && c - at < ms(100), "{start} {d}: {:?}", c - at);
                assert_eq!((c - epoch).as_nanos() % ms(100).as_nanos(), 0);
            }
        }
        // Two connections opened 40 ms apart share the wakeup of their 5 s deadline.
        let a = coalesced(epoch, epoch + ms(1010), epoch + ms(6010));
        let b = coalesced(epoch, epoch + ms(1050), epoch + ms(6050));
        assert_eq!(a, b);
        // Short deadlines keep their precision: within a sixteenth.
        let now = epoch + ms(20);
        let at = now + ms(400);
        let c = coalesced(epoch, now, at);
        assert!(c >= at && c - at <= ms(25));
        let at = now + ms(50);
        assert_eq!(coalesced(epoch, now, at), at, "below one tick of grain");
    }
}
