//! What the unit tests share: one seeded generator for the randomized and byte-soup tests, and
//! a [`ConnId`] constructor.
//!
//! Contract: [`Rng`] is xorshift64* (Vigna); a seed gives the same sequence on every run and
//! platform, so a failing soup replays exactly. It is not for anything but tests.

use crate::app::ConnId;

/// xorshift64*: small, seeded, reproducible.
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator started at `seed`, which must not be 0 (the state would stay 0).
    pub(crate) fn new(seed: u64) -> Rng {
        assert_ne!(seed, 0, "Bug: xorshift64* never leaves the state 0");
        Rng(seed)
    }

    /// The next 64 bits of the sequence.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0), from one step of the sequence.
    pub(crate) fn below_u64(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// [`Rng::below_u64`] for sizes and indices.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        // Both casts are lossless: usize has at most 64 bits, and the result is below `n`.
        self.below_u64(n as u64) as usize
    }

    /// One of `items`, which must not be empty.
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// True `percent` times in a hundred.
    pub(crate) fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// True once in `n` times.
    pub(crate) fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// The connection in slot `index`, generation 0.
pub(crate) fn conn(index: u32) -> ConnId {
    ConnId {
        index,
        generation: 0,
    }
}
