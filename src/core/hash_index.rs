//! An index from 64-bit keyed hashes to slots of a slab, for the tables whose entries keep
//! their own key (pending routes, sessions).
//!
//! Contract:
//! - Open addressing with linear probing. A removal shifts the run of buckets after it back
//!   into the hole, so no bucket is ever left marked deleted and the index never rehashes in
//!   place: no insert or removal walks more than the run it lands in. (A `HashMap` under
//!   churn fills with deleted marks and rehashes its whole table within one insert.)
//! - At most half the buckets are used; past that an insert doubles them, moving each pair
//!   by the hash it keeps (no key is hashed again), which costs that insert milliseconds at
//!   tens of thousands of pairs (4.4 ms at 64 000 measured, most of it the new buckets' first
//!   touch); a table with a fixed bound makes its room at the first insert instead
//!   ([`HashIndex::reserve`]). The hashes are keyed (a client cannot aim them), so a run is a
//!   few buckets long.
//! - The caller inserts each (hash, slot) pair once and compares the entries:
//!   [`HashIndex::find`] offers it each slot indexed under the hash asked for.
//! - Memory: 16 bytes a bucket, none before the first insert; 2 to 4 buckets a pair as it
//!   grows, or what was reserved. The buckets are zeroed by the allocator, so pages no pair
//!   has reached are not resident, but keyed hashes scatter the pairs: a few hundred pairs
//!   make most pages of a reserved index resident.

/// Slots of a slab indexed by their entries' hashes (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct HashIndex {
    /// `[hash, slot + 1]`; `[_, 0]` is an empty bucket. Empty until the first insert.
    buckets: Vec<[u64; 2]>,
    len: usize,
}

/// The buckets of an index's first insert.
const FIRST_BUCKETS: usize = 64;

impl HashIndex {
    /// An empty index, holding no memory until the first insert.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// How many pairs it holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Its buckets (0 before the first insert).
    #[cfg(test)]
    pub(crate) fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Index `slot` under `hash`.
    pub(crate) fn insert(&mut self, hash: u64, slot: usize) {
        if 2 * (self.len + 1) > self.buckets.len() {
            self.grow((2 * self.buckets.len()).max(FIRST_BUCKETS));
        }
        self.place([hash, slot as u64 + 1]);
        self.len += 1;
    }

    /// Make room for `pairs` pairs in all, so that no insert up to them grows the index (a
    /// table with a fixed bound, at its first insert: a growth moves every pair, some
    /// milliseconds at tens of thousands).
    pub(crate) fn reserve(&mut self, pairs: usize) {
        let buckets = (2 * pairs).next_power_of_two().max(FIRST_BUCKETS);
        if buckets > self.buckets.len() {
            self.grow(buckets);
        }
    }

    /// Move every pair into `buckets` new buckets.
    fn grow(&mut self, buckets: usize) {
        let old = std::mem::replace(&mut self.buckets, vec![[0; 2]; buckets]);
        for [h, s] in old {
            if s != 0 {
                self.place([h, s]);
            }
        }
    }

    /// Put `pair` in the first empty bucket of its run (there is one: at most half are used).
    fn place(&mut self, pair: [u64; 2]) {
        let mask = self.buckets.len() - 1;
        let mut at = pair[0] as usize & mask;
        while self.buckets[at][1] != 0 {
            at = (at + 1) & mask;
        }
        self.buckets[at] = pair;
    }

    /// The first slot indexed under `hash` for which `is_it` holds.
    pub(crate) fn find(&self, hash: u64, mut is_it: impl FnMut(usize) -> bool) -> Option<usize> {
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
    pub(crate) fn remove(&mut self, hash: u64, slot: usize) -> bool {
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
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
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
    fn it_holds_nothing_before_the_first_insert_and_grows_by_doubling() {
        let mut index = HashIndex::new();
        assert_eq!(index.buckets(), 0);
        assert_eq!(index.find(7, |_| true), None);
        assert!(!index.remove(7, 0));
        let mut model = HashSet::new();
        for slot in 0..=32 {
            index.insert(7 + slot as u64 * 64, slot);
            model.insert((7 + slot as u64 * 64, slot));
            assert_eq!(index.buckets(), if slot < 32 { 64 } else { 128 });
            assert_matches(&index, &model);
        }
        // Room made for 200 pairs in all: the inserts up to them do not grow it.
        index.reserve(200);
        assert_eq!(index.buckets(), 512);
        for slot in 33..200 {
            index.insert(slot as u64 * 3, slot);
            model.insert((slot as u64 * 3, slot));
        }
        assert_eq!(index.buckets(), 512);
        assert_matches(&index, &model);
    }

    #[test]
    fn removals_keep_every_run_reachable() {
        // Hashes from a few values, so that runs are long, collide and wrap around the end.
        for seed in 1..40 {
            let mut rng = Rng::new(seed);
            let bound = 16;
            let mut index = HashIndex::new();
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
            assert_eq!(index.buckets(), FIRST_BUCKETS, "never grown");
        }
    }
}
