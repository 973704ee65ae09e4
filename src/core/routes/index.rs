//! The route table's index: from an entry's 64-bit keyed hash to its slot in the table's
//! slab.
//!
//! Contract:
//! - Open addressing with linear probing. A removal shifts the run of buckets after it back
//!   into the hole, so no bucket is ever left marked deleted and the index never rehashes:
//!   no insert or removal walks more than the run it lands in.
//! - Sized once, at the first insert, for `bound` pairs: twice that many buckets rounded up
//!   to a power of two, so at most half of them are used. The hashes are keyed (a client
//!   cannot aim them), so a run is a few buckets long.
//! - The caller inserts each (hash, slot) pair once and at most `bound` of them, and compares
//!   the entries: [`HashIndex::find`] offers it each slot indexed under the hash asked for.
//! - Memory: 16 bytes a bucket, zeroed by the allocator, so pages no pair has reached are
//!   not resident.

/// Slots of a slab indexed by their entries' hashes (see the module docs).
#[derive(Debug)]
pub(super) struct HashIndex {
    /// `[hash, slot + 1]`; `[_, 0]` is an empty bucket. Empty until the first insert.
    buckets: Vec<[u64; 2]>,
    bound: usize,
    len: usize,
}

impl HashIndex {
    /// An index for at most `bound` pairs, holding no memory until the first insert.
    pub(super) fn new(bound: usize) -> Self {
        HashIndex {
            buckets: Vec::new(),
            bound: bound.max(1),
            len: 0,
        }
    }

    /// How many pairs it holds.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Its buckets (0 before the first insert).
    #[cfg(test)]
    pub(super) fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Index `slot` under `hash`.
    pub(super) fn insert(&mut self, hash: u64, slot: usize) {
        if self.buckets.is_empty() {
            self.buckets = vec![[0; 2]; (2 * self.bound).next_power_of_two()];
        }
        debug_assert!(self.len < self.bound, "Bug: the index is past its bound");
        let mask = self.buckets.len() - 1;
        let mut at = hash as usize & mask;
        while self.buckets[at][1] != 0 {
            at = (at + 1) & mask;
        }
        self.buckets[at] = [hash, slot as u64 + 1];
        self.len += 1;
    }

    /// The first slot indexed under `hash` for which `is_it` holds.
    pub(super) fn find(&self, hash: u64, mut is_it: impl FnMut(usize) -> bool) -> Option<usize> {
        let mask = self.buckets.len().checked_sub(1)?;
        let mut at = hash as usize & mask;
        loop {
            let [h, slot] = self.buckets[at];
            if slot == 0 {
                return None;
            }
            if h == hash && is_it(slot as usize - 1) {
                return Some(slot as usize - 1);
            }
            at = (at + 1) & mask;
        }
    }

    /// Take out the pair (`hash`, `slot`); whether it was there.
    pub(super) fn remove(&mut self, hash: u64, slot: usize) -> bool {
        let Some(mask) = self.buckets.len().checked_sub(1) else {
            return false;
        };
        let mut hole = hash as usize & mask;
        loop {
            match self.buckets[hole] {
                [_, 0] => return false,
                [h, s] if h == hash && s == slot as u64 + 1 => break,
                _ => hole = (hole + 1) & mask,
            }
        }
        self.len -= 1;
        // Move back each pair after the hole, up to the next empty bucket, whose home (where
        // its probe starts) is not between the hole and it: its probe would stop at the hole.
        let mut at = hole;
        loop {
            at = (at + 1) & mask;
            let [h, s] = self.buckets[at];
            if s == 0 {
                break;
            }
            let home = h as usize & mask;
            let reaches = if hole <= at {
                hole < home && home <= at
            } else {
                hole < home || home <= at
            };
            if !reaches {
                self.buckets[hole] = [h, s];
                hole = at;
            }
        }
        self.buckets[hole] = [0; 2];
        true
    }

    /// Every (hash, slot) pair it holds.
    #[cfg(test)]
    pub(super) fn pairs(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
        self.buckets
            .iter()
            .filter(|b| b[1] != 0)
            .map(|&[h, s]| (h, s as usize - 1))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::testkit::Rng;

    /// Every pair is found from its hash, none other is, and the count is right.
    fn assert_matches(index: &HashIndex, model: &HashSet<(u64, usize)>) {
        assert_eq!(index.len(), model.len());
        assert_eq!(index.pairs().collect::<HashSet<_>>(), *model);
        for &(hash, slot) in model {
            assert_eq!(index.find(hash, |s| s == slot), Some(slot));
        }
    }

    #[test]
    fn nothing_is_held_before_the_first_insert() {
        let mut index = HashIndex::new(100);
        assert_eq!(index.buckets(), 0);
        assert_eq!(index.find(7, |_| true), None);
        assert!(!index.remove(7, 0));
        index.insert(7, 3);
        assert_eq!(index.buckets(), 256);
        assert_eq!(index.find(7, |_| true), Some(3));
    }

    #[test]
    fn removals_keep_every_run_reachable() {
        // Hashes from a few values, so that runs are long, collide and wrap around the end.
        for seed in 1..40 {
            let mut rng = Rng::new(seed);
            let bound = 16;
            let mut index = HashIndex::new(bound);
            let mut model: HashSet<(u64, usize)> = HashSet::new();
            let mut next_slot = 0;
            for _ in 0..400 {
                let remove = model.len() == bound || (!model.is_empty() && rng.chance(50));
                if remove {
                    let pick = rng.below(model.len());
                    let pair = *model.iter().nth(pick).expect("a pair");
                    model.remove(&pair);
                    assert!(index.remove(pair.0, pair.1));
                    assert!(!index.remove(pair.0, pair.1), "removed once");
                } else {
                    let hash = match rng.below(3) {
                        0 => 31,
                        1 => rng.below_u64(4) + 29,
                        _ => rng.next(),
                    };
                    index.insert(hash, next_slot);
                    model.insert((hash, next_slot));
                    next_slot += 1;
                }
                assert_matches(&index, &model);
            }
            assert_eq!(index.buckets(), 32, "never grown");
        }
    }
}
