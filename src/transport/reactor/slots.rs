//! The slots connections live in: a slab plus the generation of each slot.
//!
//! A [`ConnId`] is a slot index plus the generation of that slot when its connection was
//! accepted, and a connection's mio token encodes the same two numbers ([`token_of`],
//! [`id_of`]).
//!
//! The stale-id rule. The slab reuses freed slots last-in-first-out, so an id can outlive its
//! connection and name a slot that a newer connection holds: a poll event already in flight,
//! a timer on the wheel, an action or a handle command queued before the close. Removing a
//! connection bumps the generation of its slot, and every lookup by id or token compares
//! generations, so a stale id finds nothing and never touches the newer connection. That is
//! why timers and commands need no cancellation: they carry the id, and one that no longer
//! matches is dropped when it comes up.
//!
//! Slot indices from [`RESERVED_INDEX`] up are never given to a connection: tokens whose low
//! half lies there name the loop's own sources (the listener, the waker, the signals, the
//! outbound links of `link.rs`), so no connection's token, stale or not, is ever one of them.
//!
//! Lookups by key (the bare slot index) serve the loop's own lists (ready, dirty, reap). A
//! slot is emptied only when the loop reaps, so within a turn a key names one connection
//! throughout; a key left in the ready queue past a reap finds nothing, or the newer
//! connection, which queued itself as ready when it was accepted.

use mio::Token;
use slab::Slab;

use crate::app::ConnId;

/// Values in slots, each with the generation of its slot (see the module docs).
#[derive(Debug)]
pub(super) struct Slots<T> {
    values: Slab<T>,
    /// Generation of each slot that was ever used, bumped when its value is removed.
    generations: Vec<u32>,
}

/// The first slot index kept for the loop's own tokens (see the module docs).
pub(super) const RESERVED_INDEX: u32 = 0xffff_0000;

/// The token registered for the connection `id`: generation in the high half, index in the
/// low half.
pub(super) fn token_of(id: ConnId) -> Token {
    Token(((id.generation as usize) << 32) | id.index as usize)
}

/// The id a token was registered for (it may be stale).
pub(super) fn id_of(token: Token) -> ConnId {
    ConnId {
        index: (token.0 & 0xffff_ffff) as u32,
        generation: (token.0 >> 32) as u32,
    }
}

/// The slot (key) an id names.
pub(super) fn key_of(id: ConnId) -> usize {
    id.index as usize
}

impl<T> Slots<T> {
    /// No slot used yet.
    pub(super) fn new() -> Slots<T> {
        Slots {
            values: Slab::new(),
            generations: Vec::new(),
        }
    }

    /// Whether `id` names a live value (its generation is the slot's).
    pub(super) fn contains(&self, id: ConnId) -> bool {
        self.get(id).is_some()
    }

    /// The value `id` names; `None` when the id is stale.
    pub(super) fn get(&self, id: ConnId) -> Option<&T> {
        let key = key_of(id);
        if self.generations.get(key) != Some(&id.generation) {
            return None;
        }
        self.values.get(key)
    }

    /// The value `id` names, mutably; `None` when the id is stale.
    pub(super) fn get_mut(&mut self, id: ConnId) -> Option<&mut T> {
        let key = key_of(id);
        if self.generations.get(key) != Some(&id.generation) {
            return None;
        }
        self.values.get_mut(key)
    }

    /// The value `token` was registered for; `None` when the token is stale.
    pub(super) fn by_token_mut(&mut self, token: Token) -> Option<&mut T> {
        self.get_mut(id_of(token))
    }

    /// The value in slot `key`, whatever its generation (see the module docs).
    pub(super) fn at(&self, key: usize) -> Option<&T> {
        self.values.get(key)
    }

    /// The value in slot `key`, mutably, whatever its generation (see the module docs).
    pub(super) fn at_mut(&mut self, key: usize) -> Option<&mut T> {
        self.values.get_mut(key)
    }

    /// The slot the next value will take, with its id; `None` when its index does not fit an
    /// id or is reserved ([`RESERVED_INDEX`]). Nothing changes until [`Vacant::insert`].
    pub(super) fn vacant(&mut self) -> Option<Vacant<'_, T>> {
        let entry = self.values.vacant_entry();
        let key = entry.key();
        if key >= self.generations.len() {
            self.generations.resize(key + 1, 0);
        }
        let id = ConnId {
            index: u32::try_from(key).ok().filter(|&i| i < RESERVED_INDEX)?,
            generation: self.generations[key],
        };
        Some(Vacant { entry, id })
    }

    /// Take the value out of slot `key` and bump the slot's generation, so that every id
    /// naming it is stale from now on.
    pub(super) fn remove(&mut self, key: usize) -> Option<T> {
        let value = self.values.try_remove(key)?;
        if let Some(generation) = self.generations.get_mut(key) {
            *generation = generation.wrapping_add(1);
        }
        Some(value)
    }

    /// Every live value with its key.
    pub(super) fn iter(&self) -> slab::Iter<'_, T> {
        self.values.iter()
    }

    /// The keys of every live value.
    pub(super) fn keys(&self) -> Vec<usize> {
        self.values.iter().map(|(key, _)| key).collect()
    }

    /// How many values are live.
    pub(super) fn len(&self) -> usize {
        self.values.len()
    }
}

/// A free slot and the id its value will have.
pub(super) struct Vacant<'a, T> {
    entry: slab::VacantEntry<'a, T>,
    id: ConnId,
}

impl<'a, T> Vacant<'a, T> {
    /// The id the value inserted here will have.
    pub(super) fn id(&self) -> ConnId {
        self.id
    }

    /// Put `value` in the slot.
    pub(super) fn insert(self, value: T) -> &'a mut T {
        self.entry.insert(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(slots: &mut Slots<&'static str>, value: &'static str) -> ConnId {
        let vacant = slots.vacant().expect("an index that fits");
        let id = vacant.id();
        vacant.insert(value);
        id
    }

    #[test]
    fn a_reused_slot_gets_a_new_generation_and_the_old_id_finds_nothing() {
        let mut slots = Slots::new();
        let old = insert(&mut slots, "old");
        assert_eq!(slots.get(old), Some(&"old"));
        assert_eq!(slots.remove(key_of(old)), Some("old"));
        assert_eq!(slots.get(old), None);
        let new = insert(&mut slots, "new");
        assert_eq!(new.index, old.index, "slots are reused");
        assert_eq!(new.generation, old.generation + 1);
        assert_eq!(slots.get(old), None);
        assert!(!slots.contains(old));
        assert_eq!(slots.get_mut(old), None);
        assert_eq!(slots.get(new), Some(&"new"));
        // By key, the slot holds the newer value whichever id named it.
        assert_eq!(slots.at(key_of(old)), Some(&"new"));
    }

    #[test]
    fn tokens_carry_index_and_generation() {
        let mut slots = Slots::new();
        let a = insert(&mut slots, "a");
        let b = insert(&mut slots, "b");
        assert_ne!(token_of(a), token_of(b));
        assert_eq!(id_of(token_of(b)), b);
        slots.remove(key_of(a));
        let c = insert(&mut slots, "c");
        assert_eq!(id_of(token_of(c)), c);
        assert_eq!(slots.by_token_mut(token_of(a)), None, "stale token");
        assert_eq!(slots.by_token_mut(token_of(c)).copied(), Some("c"));
        let far = ConnId {
            index: 7,
            generation: u32::MAX,
        };
        assert_eq!(id_of(token_of(far)), far);
    }

    #[test]
    fn removal_bumps_only_its_own_slot_and_a_missing_key_changes_nothing() {
        let mut slots = Slots::new();
        let a = insert(&mut slots, "a");
        let b = insert(&mut slots, "b");
        assert_eq!(slots.remove(key_of(b)), Some("b"));
        assert_eq!(slots.remove(key_of(b)), None, "already empty");
        assert_eq!(slots.remove(99), None, "never used");
        assert_eq!(slots.get(a), Some(&"a"));
        assert_eq!(slots.len(), 1);
        assert_eq!(slots.keys(), vec![key_of(a)]);
        let again = insert(&mut slots, "b2");
        assert_eq!((again.index, again.generation), (b.index, b.generation + 1));
    }

    #[test]
    fn an_unknown_id_finds_nothing() {
        let slots: Slots<&str> = Slots::new();
        let id = ConnId {
            index: 0,
            generation: 0,
        };
        assert_eq!(slots.get(id), None);
        assert_eq!(slots.at(0), None);
    }
}
