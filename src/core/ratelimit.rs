//! The per-connection token bucket of PROTOCOL section 4 (`rate_limit_per_sec`,
//! `rate_limit_burst`).
//!
//! Contract: a bucket starts full; it refills continuously at `per_sec` tokens per second up
//! to its capacity, `max(burst, 1)` (a bucket that could never hold a token would refuse
//! everything); [`TokenBucket::try_take`] takes one token if there is one. Arithmetic is exact
//! integer arithmetic in billionths of a token, so no drift accumulates; time going backwards
//! refills nothing.

use std::time::Instant;

/// A token, in billionths: `max(burst, 1)` tokens fit a `u64` (at most 2^32 × 10^9 < 2^63).
const UNIT: u64 = 1_000_000_000;

/// One connection's bucket.
#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    per_sec: u32,
    capacity: u64,
    level: u64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilled at `per_sec` tokens per second holding at most `burst` tokens.
    pub(crate) fn new(per_sec: u32, burst: u32, now: Instant) -> Self {
        let capacity = u64::from(burst.max(1)) * UNIT;
        TokenBucket {
            per_sec,
            capacity,
            level: capacity,
            last: now,
        }
    }

    /// Refill at `per_sec` up to `max(burst, 1)` from now on (a reload): the time since the
    /// last refill is counted at the new rate, and a level above the new capacity is cut to it.
    pub(crate) fn set_rate(&mut self, per_sec: u32, burst: u32) {
        self.per_sec = per_sec;
        self.capacity = u64::from(burst.max(1)) * UNIT;
        self.level = self.level.min(self.capacity);
    }

    /// Take one token; `false` when the bucket is empty.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        if now > self.last {
            let elapsed = now.duration_since(self.last).as_nanos();
            let refill = elapsed.saturating_mul(u128::from(self.per_sec));
            let room = self.capacity - self.level;
            // What does not fit is dropped: `refill` is cut to the room left before narrowing.
            self.level += u64::try_from(refill.min(u128::from(room))).unwrap_or(room);
            self.last = now;
        }
        if self.level >= UNIT {
            self.level -= UNIT;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3, t0);
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0));
        assert!(!b.try_take(t0 + Duration::from_millis(99)));
        assert!(b.try_take(t0 + Duration::from_millis(100)));
        assert!(!b.try_take(t0 + Duration::from_millis(150)));
        // A long pause refills to the capacity, no further.
        let later = t0 + Duration::from_secs(3600);
        assert!(b.try_take(later));
        assert!(b.try_take(later));
        assert!(b.try_take(later));
        assert!(!b.try_take(later));
        // Time going backwards refills nothing.
        assert!(!b.try_take(t0));
    }

    #[test]
    fn zero_burst_still_holds_one_token() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1, 0, t0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0));
        assert!(b.try_take(t0 + Duration::from_secs(1)));
    }
}
