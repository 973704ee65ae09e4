//! A hashed timer wheel over time passed in by the caller, without I/O or clock reads.
//!
//! Contract:
//! - Deadlines are rounded up to the wheel's tick. [`TimerWheel::expire`] yields an entry once
//!   `now` reaches its rounded deadline: never early, at most one tick late. An entry whose
//!   deadline is at or before the latest `now` already given to `expire` is a past entry: it
//!   comes out on the next `expire`, whatever `now` that call passes.
//! - One `expire` call yields past entries first, then the others by rounded deadline; entries
//!   of one tick in the order they were inserted, except that entries inserted more than the
//!   wheel's span ahead join their tick's list when the span reaches them.
//! - There is no cancellation: values carry whatever (a generation) lets their owner ignore a
//!   stale one when it fires.
//! - [`TimerWheel::next_expiry`] reads a bitmap of non-empty slots: cheap enough for every turn
//!   of the loop. Deadlines of any distance work: those beyond the span wait in an overflow list
//!   that is scanned at most once per span of time passed.

use std::fmt;
use std::time::{Duration, Instant};

/// Slots in the wheel, one tick each: the span within which entries sit in slots.
const SLOTS: usize = 4096;
/// Words of the bitmap of non-empty slots.
const WORDS: usize = SLOTS / 64;
/// The latest tick; deadlines beyond are treated as this tick, which keeps tick arithmetic
/// far from overflow.
const MAX_TICK: u64 = u64::MAX >> 1;
/// A drained slot keeping more capacity than this gives it back.
const SLOT_CAPACITY_KEPT: usize = 64;

/// A hashed timer wheel holding values of type `T` until their deadlines.
pub(super) struct TimerWheel<T> {
    /// Time zero.
    start: Instant,
    /// The tick in nanoseconds (at least 1).
    tick_ns: u64,
    /// The latest `now` given to `expire` (`start` before the first call).
    now: Instant,
    /// The first tick not processed yet; every entry in `slots` and `overflow` has a tick at or
    /// after it. Slot `t % SLOTS` holds the entries of tick `t`, for `cur <= t < cur + SLOTS`.
    cur: u64,
    /// The entries of each tick of the span.
    slots: Box<[Vec<T>]>,
    /// One bit per slot, set when the slot is non-empty.
    occupied: [u64; WORDS],
    /// Entries in `slots`.
    in_slots: usize,
    /// Entries scheduled beyond the span when inserted, with their tick, in insertion order.
    overflow: Vec<(u64, T)>,
    /// The smallest tick in `overflow` (`u64::MAX` when empty).
    overflow_min: u64,
    /// Past entries, for the next `expire`.
    past: Vec<T>,
}

impl<T> TimerWheel<T> {
    /// `tick` is the granularity (the reactor passes its `TICK`); `start` is time zero.
    ///
    /// A zero `tick` is taken as one nanosecond.
    pub(super) fn new(tick: Duration, start: Instant) -> Self {
        TimerWheel {
            start,
            tick_ns: u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX).max(1),
            now: start,
            cur: 0,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; WORDS],
            in_slots: 0,
            overflow: Vec::new(),
            overflow_min: u64::MAX,
            past: Vec::new(),
        }
    }

    /// Schedule `value` at `at` (a past `at` fires on the next expire).
    pub(super) fn insert(&mut self, at: Instant, value: T) {
        if at <= self.now {
            self.past.push(value);
            return;
        }
        let tick = self.ceil_tick(at).max(self.cur);
        if tick < self.cur + SLOTS as u64 {
            self.push_slot(tick, value);
        } else {
            self.overflow_min = self.overflow_min.min(tick);
            self.overflow.push((tick, value));
        }
    }

    /// When the next expire could yield something: never later than the earliest deadline
    /// rounded up to a tick (may be earlier, a spurious wake is fine). None when empty, or when
    /// every deadline lies beyond what `Instant` can represent.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        if !self.past.is_empty() {
            return Some(self.now);
        }
        let tick = self
            .next_occupied()
            .unwrap_or(u64::MAX)
            .min(self.overflow_min);
        if tick == u64::MAX {
            return None;
        }
        let nanos = u128::from(tick) * u128::from(self.tick_ns);
        let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
        let subsec = (nanos % 1_000_000_000) as u32;
        self.start.checked_add(Duration::new(secs, subsec))
    }

    /// Move every entry with deadline <= now into `out` (never early; at most one tick late).
    pub(super) fn expire(&mut self, now: Instant, out: &mut Vec<T>) {
        out.append(&mut self.past);
        self.now = self.now.max(now);
        let end = self.floor_tick(now);
        if end < self.cur {
            return;
        }
        loop {
            let next = self.next_occupied();
            if self.overflow_min <= end && next.map_or(true, |tick| self.overflow_min <= tick) {
                self.cur = self.overflow_min;
                self.refill();
                continue;
            }
            match next {
                Some(tick) if tick <= end => {
                    self.drain_slot(tick, out);
                    self.cur = tick + 1;
                }
                _ => break,
            }
        }
        self.cur = end + 1;
    }

    /// The number of entries held.
    pub(super) fn len(&self) -> usize {
        self.past.len() + self.in_slots + self.overflow.len()
    }

    /// True when no entry is held.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tick at or after `at`.
    fn ceil_tick(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.start).as_nanos();
        let tick = nanos.div_ceil(u128::from(self.tick_ns));
        u64::try_from(tick).unwrap_or(u64::MAX).min(MAX_TICK)
    }

    /// The tick at or before `now`.
    fn floor_tick(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.start).as_nanos();
        let tick = nanos / u128::from(self.tick_ns);
        u64::try_from(tick).unwrap_or(u64::MAX).min(MAX_TICK)
    }

    fn push_slot(&mut self, tick: u64, value: T) {
        let index = (tick % SLOTS as u64) as usize;
        self.slots[index].push(value);
        self.occupied[index / 64] |= 1 << (index % 64);
        self.in_slots += 1;
    }

    fn drain_slot(&mut self, tick: u64, out: &mut Vec<T>) {
        let index = (tick % SLOTS as u64) as usize;
        let slot = &mut self.slots[index];
        self.in_slots -= slot.len();
        out.append(slot);
        if slot.capacity() > SLOT_CAPACITY_KEPT {
            *slot = Vec::new();
        }
        self.occupied[index / 64] &= !(1 << (index % 64));
    }

    /// The tick of the first non-empty slot: its distance from `cur` is that of its bit from
    /// `cur`'s bit, going round the bitmap.
    fn next_occupied(&self) -> Option<u64> {
        if self.in_slots == 0 {
            return None;
        }
        let from = (self.cur % SLOTS as u64) as usize;
        let (word, bit) = (from / 64, from % 64);
        let first = self.occupied[word] & (!0u64 << bit);
        if first != 0 {
            return Some(self.cur + u64::from(first.trailing_zeros()) - bit as u64);
        }
        // The bits below `bit` in `word` come last, when the scan has gone all the way round.
        (1..=WORDS).find_map(|step| {
            let index = (word + step) % WORDS;
            let bits = self.occupied[index];
            (bits != 0).then(|| {
                let slot = index * 64 + bits.trailing_zeros() as usize;
                self.cur + ((slot + SLOTS - from) % SLOTS) as u64
            })
        })
    }

    /// Moves the overflow entries that fall within the span from `cur` into their slots.
    fn refill(&mut self) {
        let limit = self.cur + SLOTS as u64;
        let mut kept = Vec::new();
        let mut kept_min = u64::MAX;
        for (tick, value) in std::mem::take(&mut self.overflow) {
            if tick < limit {
                self.push_slot(tick, value);
            } else {
                kept_min = kept_min.min(tick);
                kept.push((tick, value));
            }
        }
        self.overflow = kept;
        self.overflow_min = kept_min;
    }
}

impl<T> fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("tick_ns", &self.tick_ns)
            .field("cur", &self.cur)
            .field("past", &self.past.len())
            .field("in_slots", &self.in_slots)
            .field("overflow", &self.overflow.len())
            .finish()
    }
}

#[cfg(test)]
mod tests;
