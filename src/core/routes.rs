//! Pending route requests: which `route_request` the gateway delivered to which responder
//! on behalf of which requester, so that exactly one `route_response` per request goes back
//! (PROTOCOL section 6).
//!
//! Contract:
//! - An entry is the triple (responder, requester, request id). [`RouteTable::take`] removes
//!   it and reports whether it was there, so a response is delivered at most once.
//! - Bounds: at most `per_requester` entries per requester — a new request past that drops
//!   the requester's oldest entry (its late response is then refused) — at most
//!   `per_responder` entries per responder and at most `total` entries over all connections —
//!   past either a new request is refused ([`RouteError::Full`]) and nothing changes. The same
//!   triple twice while pending is refused ([`RouteError::Duplicate`]).
//! - [`RouteTable::drop_conn`] forgets every entry in which a connection is requester or
//!   responder; call it when the connection closes.
//! - Every removal is reported to the caller, with the entry's requester, so that what a
//!   requester's user holds can be counted exactly outside the table: `take` says whether it
//!   removed, `insert` returns the requester of the entry it evicted, `drop_conn` calls back
//!   with each requester and how many of its entries went.
//! - Costs: insert, take and a look-up hash the key once (keyed: ids are the clients') and
//!   probe one flat index (`hash_index.rs`, which never rehashes in place); the lists of a
//!   connection are found by its slab index, not hashed. Dropping a connection is O(its entries), at most `per_requester +
//!   per_responder`, each a slab removal, an unlink from the other side's list and a removal
//!   from the index under the hash the entry keeps (nothing hashed again, nothing allocated),
//!   never a walk of other connections' entries. The slab and the index get room for
//!   `total` entries at the first insert, so that no later insert copies them as they grow.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use slab::Slab;

use crate::app::ConnId;
use crate::core::errors::{ErrorCode, Refusal};
use crate::core::hash_index::HashIndex;

/// Default bound on pending requests per requester.
pub(crate) const DEFAULT_PER_REQUESTER: usize = 1024;
/// Default bound on pending requests per responder.
pub(crate) const DEFAULT_PER_RESPONDER: usize = 1024;
/// Default bound on pending requests in total.
pub(crate) const DEFAULT_TOTAL: usize = 65_536;

/// Why a request could not be recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteError {
    /// The same requester already has a pending request with this id to this responder.
    Duplicate,
    /// The table holds its total bound of entries, or the responder its own.
    Full,
    /// No such request was delivered to the responder, or it was answered already.
    NotPending,
}

impl Refusal for RouteError {
    fn code(&self) -> ErrorCode {
        match self {
            RouteError::Duplicate => ErrorCode::InvalidMessage,
            RouteError::Full => ErrorCode::LimitExceeded,
            RouteError::NotPending => ErrorCode::TargetNotFound,
        }
    }

    /// A message naming the request: its `id` (for `NotPending`, "ID from REQUESTER").
    fn message(&self, id: &str) -> String {
        match self {
            RouteError::NotPending => format!("No pending route_request {id}"),
            RouteError::Duplicate => {
                format!("A route_request with id {id} is already pending for this target")
            }
            RouteError::Full => "Too many pending route requests".to_owned(),
        }
    }

    /// A duplicate is the request's `id` at fault.
    fn field(&self) -> Option<&'static str> {
        match self {
            RouteError::Duplicate => Some("id"),
            RouteError::Full | RouteError::NotPending => None,
        }
    }
}

/// No slot: the end of a list.
const NIL: usize = usize::MAX;

/// A slot's neighbours in one of the two lists it is on.
#[derive(Clone, Copy, Debug)]
struct Link {
    prev: usize,
    next: usize,
}

impl Link {
    const NONE: Link = Link {
        prev: NIL,
        next: NIL,
    };
}

/// The entries of one connection on one side, oldest first, linked through their slots.
#[derive(Clone, Copy, Debug)]
struct List {
    head: usize,
    tail: usize,
    len: usize,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
    };
}

/// The two lists of the connection whose slab index is this one's place in
/// [`RouteTable::conns`].
#[derive(Clone, Copy, Debug)]
struct ConnLists {
    /// The connection the lists belong to while either is non-empty.
    conn: ConnId,
    requester: List,
    responder: List,
}

impl ConnLists {
    /// `conn`'s lists, both empty.
    fn new(conn: ConnId) -> Self {
        ConnLists {
            conn,
            requester: List::EMPTY,
            responder: List::EMPTY,
        }
    }

    /// Its `side` list.
    fn get(&self, side: Side) -> List {
        match side {
            Side::Requester => self.requester,
            Side::Responder => self.responder,
        }
    }

    fn is_empty(&self) -> bool {
        self.requester.len == 0 && self.responder.len == 0
    }

    fn side(&mut self, side: Side) -> &mut List {
        match side {
            Side::Requester => &mut self.requester,
            Side::Responder => &mut self.responder,
        }
    }
}

/// One pending request.
#[derive(Debug)]
struct Entry {
    requester: ConnId,
    responder: ConnId,
    id: Box<str>,
    /// The entry's key hashed, as the index holds it.
    hash: u64,
    /// The id the response is shown as coming from when it is not the responder's
    /// `clientId` (see [`RouteTable::insert_as`]).
    shown: Option<Arc<str>>,
    /// Its place among the requester's entries.
    by_requester: Link,
    /// Its place among the responder's entries.
    by_responder: Link,
}

/// Which of an entry's two lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Requester,
    Responder,
}

impl Side {
    fn link(self, entry: &mut Entry) -> &mut Link {
        match self {
            Side::Requester => &mut entry.by_requester,
            Side::Responder => &mut entry.by_responder,
        }
    }
}

/// The pending route requests.
#[derive(Debug)]
pub(crate) struct RouteTable {
    per_requester: usize,
    per_responder: usize,
    total: usize,
    entries: Slab<Entry>,
    /// The slots by the keyed hash of (responder, requester, request id).
    index: HashIndex,
    /// The keyed hash of the entries' keys (request ids are chosen by clients).
    hasher: RandomState,
    /// Each connection's entries as requester and as responder, oldest first, by the
    /// connection's slab index.
    conns: Vec<ConnLists>,
}

impl RouteTable {
    /// An empty table with these bounds (each at least 1).
    pub(crate) fn new(per_requester: usize, per_responder: usize, total: usize) -> Self {
        RouteTable {
            per_requester: per_requester.max(1),
            per_responder: per_responder.max(1),
            total: total.max(1),
            entries: Slab::new(),
            index: HashIndex::new(),
            hasher: RandomState::new(),
            conns: Vec::new(),
        }
    }

    /// Record that request `id` from `requester` was delivered to `responder`; returns the
    /// requester of the entry evicted to make room (always `requester` itself), if any.
    #[cfg(test)]
    pub(crate) fn insert(
        &mut self,
        requester: ConnId,
        responder: ConnId,
        id: &str,
    ) -> Result<Option<ConnId>, RouteError> {
        self.insert_as(requester, responder, id, None)
    }

    /// [`Self::insert`], keeping `shown_as` (an agent id, at most 128 bytes) for the
    /// response's `source` when the requester may not see the responder's `clientId`.
    pub(crate) fn insert_as(
        &mut self,
        requester: ConnId,
        responder: ConnId,
        id: &str,
        shown_as: Option<&str>,
    ) -> Result<Option<ConnId>, RouteError> {
        let hash = self.hash(responder, requester, id);
        if self.find(hash, responder, requester, id).is_some() {
            return Err(RouteError::Duplicate);
        }
        let own = self.list(requester, Side::Requester);
        let oldest = (own.len >= self.per_requester).then_some(own.head);
        let oldest = oldest.filter(|&slot| slot != NIL);
        // Evicting the requester's oldest makes room at its responder too when that is this
        // one; nothing changes unless the new entry then fits.
        let frees_responder = oldest.is_some_and(|slot| self.entries[slot].responder == responder);
        let theirs = self.list(responder, Side::Responder).len;
        if theirs - usize::from(frees_responder) >= self.per_responder {
            return Err(RouteError::Full);
        }
        if oldest.is_none() && self.entries.len() >= self.total {
            return Err(RouteError::Full);
        }
        let evicted = oldest.map(|slot| {
            self.remove_slot(slot);
            requester
        });
        if self.entries.capacity() == 0 {
            // Room for the whole bound at the first entry: a slab or an index that grew on
            // the way would copy itself in the insert that passed a power of two (ms at tens
            // of thousands), and a gateway that routes nothing holds none of it.
            self.entries.reserve(self.total);
            self.index.reserve(self.total);
        }
        let slot = self.entries.insert(Entry {
            requester,
            responder,
            id: id.into(),
            hash,
            shown: shown_as.map(Arc::from),
            by_requester: Link::NONE,
            by_responder: Link::NONE,
        });
        self.push_back(requester, slot, Side::Requester);
        self.push_back(responder, slot, Side::Responder);
        self.index.insert(hash, slot);
        Ok(evicted)
    }

    /// Remove the entry for request `id` from `requester` to `responder`; whether it existed.
    pub(crate) fn take(&mut self, responder: ConnId, requester: ConnId, id: &str) -> bool {
        self.take_shown(responder, requester, id).is_some()
    }

    /// The `shown_as` of the entry for request `id` from `requester` to `responder`, when
    /// it exists; nothing is removed.
    pub(crate) fn shown(
        &self,
        responder: ConnId,
        requester: ConnId,
        id: &str,
    ) -> Option<Option<&str>> {
        let hash = self.hash(responder, requester, id);
        let slot = self.find(hash, responder, requester, id)?;
        Some(self.entries[slot].shown.as_deref())
    }

    /// [`Self::take`], returning the entry's `shown_as` when it existed.
    pub(crate) fn take_shown(
        &mut self,
        responder: ConnId,
        requester: ConnId,
        id: &str,
    ) -> Option<Option<Arc<str>>> {
        let hash = self.hash(responder, requester, id);
        let slot = self.find(hash, responder, requester, id)?;
        Some(self.remove_slot(slot).shown)
    }

    /// Forget every entry in which `conn` is the requester or the responder, calling
    /// `dropped(requester, n)` for the entries of each requester that went (one call may
    /// stand for several entries of the same requester, and a requester may be named in
    /// more than one call); returns how many were dropped.
    pub(crate) fn drop_conn(
        &mut self,
        conn: ConnId,
        mut dropped: impl FnMut(ConnId, usize),
    ) -> usize {
        let Some(lists) = self.lists_mut(conn) else {
            return 0;
        };
        let own = std::mem::replace(&mut lists.requester, List::EMPTY);
        let mut slot = own.head;
        while slot != NIL {
            let entry = self.forget_slot(slot);
            slot = entry.by_requester.next;
            // A route of `conn` to itself leaves its responder list here too.
            self.unlink(&entry, Side::Responder);
        }
        if own.len > 0 {
            dropped(conn, own.len);
        }
        let theirs = match self.lists_mut(conn) {
            Some(lists) => std::mem::replace(&mut lists.responder, List::EMPTY),
            None => List::EMPTY,
        };
        // Consecutive entries of one requester are reported together.
        let mut run: Option<(ConnId, usize)> = None;
        let mut slot = theirs.head;
        while slot != NIL {
            let entry = self.forget_slot(slot);
            slot = entry.by_responder.next;
            self.unlink(&entry, Side::Requester);
            match &mut run {
                Some((requester, n)) if *requester == entry.requester => *n += 1,
                _ => {
                    if let Some((requester, n)) = run {
                        dropped(requester, n);
                    }
                    run = Some((entry.requester, 1));
                }
            }
        }
        if let Some((requester, n)) = run {
            dropped(requester, n);
        }
        own.len + theirs.len
    }

    /// How many requests are pending.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no request is pending.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The keyed hash of an entry's key.
    fn hash(&self, responder: ConnId, requester: ConnId, id: &str) -> u64 {
        self.hasher.hash_one((responder, requester, id))
    }

    /// The slot of the entry with this key (`hash` is its [`Self::hash`]).
    fn find(&self, hash: u64, responder: ConnId, requester: ConnId, id: &str) -> Option<usize> {
        self.index.find(hash, |slot| {
            let entry = &self.entries[slot];
            (entry.responder, entry.requester, &*entry.id) == (responder, requester, id)
        })
    }

    /// The lists of `conn`, if it has an entry.
    fn lists_mut(&mut self, conn: ConnId) -> Option<&mut ConnLists> {
        self.conns
            .get_mut(conn.index as usize)
            .filter(|lists| lists.conn == conn && !lists.is_empty())
    }

    /// The `side` list of `conn` (empty when it has none).
    fn list(&self, conn: ConnId, side: Side) -> List {
        match self.conns.get(conn.index as usize) {
            Some(lists) if lists.conn == conn => lists.get(side),
            _ => List::EMPTY,
        }
    }

    /// Take the entry in `slot` out of the slab and the index, leaving its lists as they
    /// are.
    fn forget_slot(&mut self, slot: usize) -> Entry {
        let entry = self
            .entries
            .try_remove(slot)
            .expect("Bug: a listed slot is empty");
        self.index.remove(entry.hash, slot);
        entry
    }

    /// Take the entry in `slot` out of the slab, both lists and the index.
    fn remove_slot(&mut self, slot: usize) -> Entry {
        let entry = self.forget_slot(slot);
        self.unlink(&entry, Side::Requester);
        self.unlink(&entry, Side::Responder);
        entry
    }

    /// Append `slot` (already in the slab) to the `side` list of `conn`.
    fn push_back(&mut self, conn: ConnId, slot: usize, side: Side) {
        let at = conn.index as usize;
        if self.conns.len() <= at {
            self.conns.resize(at + 1, ConnLists::new(conn));
        }
        let lists = &mut self.conns[at];
        if lists.conn != conn {
            // A slot's lists are emptied when its connection goes (`drop_conn`); whatever a
            // previous generation left is not this connection's.
            debug_assert!(lists.is_empty(), "Bug: lists left by {:?}", lists.conn);
            *lists = ConnLists::new(conn);
        }
        let list = lists.side(side);
        let tail = list.tail;
        if tail == NIL {
            list.head = slot;
        }
        list.tail = slot;
        list.len += 1;
        *side.link(&mut self.entries[slot]) = Link {
            prev: tail,
            next: NIL,
        };
        if tail != NIL {
            side.link(&mut self.entries[tail]).next = slot;
        }
    }

    /// Take `entry` (already out of the slab) off its `side` list.
    fn unlink(&mut self, entry: &Entry, side: Side) {
        let (conn, link) = match side {
            Side::Requester => (entry.requester, entry.by_requester),
            Side::Responder => (entry.responder, entry.by_responder),
        };
        let Some(lists) = self.lists_mut(conn) else {
            return;
        };
        let list = lists.side(side);
        if link.prev == NIL {
            list.head = link.next;
        }
        if link.next == NIL {
            list.tail = link.prev;
        }
        list.len -= 1;
        if link.prev != NIL {
            side.link(&mut self.entries[link.prev]).next = link.next;
        }
        if link.next != NIL {
            side.link(&mut self.entries[link.next]).prev = link.prev;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::conn;

    #[test]
    fn the_first_insert_makes_room_for_the_whole_bound() {
        let mut t = RouteTable::new(4, 64, 256);
        assert_eq!(
            t.entries.capacity(),
            0,
            "nothing held before the first route"
        );
        t.insert(conn(0), conn(1), "r").unwrap();
        let (index, entries) = (t.index.buckets(), t.entries.capacity());
        assert!(index >= 512 && entries >= 256);
        t.drop_conn(conn(0), |_, _| {});
        // Filled to the bound, emptied and filled again: nothing grows.
        for round in 0..3 {
            for requester in 0..64 {
                for k in 0..4 {
                    let id = format!("{round}-{k}");
                    t.insert(conn(100 + requester), conn(1 + k), &id).unwrap();
                }
            }
            assert_eq!(t.len(), 256);
            for requester in 0..64 {
                t.drop_conn(conn(100 + requester), |_, _| {});
            }
            assert_eq!((t.index.buckets(), t.entries.capacity()), (index, entries));
        }
    }

    #[test]
    fn a_response_is_taken_once() {
        let mut t = RouteTable::new(10, 10, 100);
        t.insert(conn(1), conn(2), "r1").unwrap();
        assert!(!t.take(conn(1), conn(2), "r1"), "wrong direction");
        assert!(!t.take(conn(2), conn(3), "r1"), "wrong requester");
        assert!(t.take(conn(2), conn(1), "r1"));
        assert!(!t.take(conn(2), conn(1), "r1"));
        assert!(t.is_empty());
    }

    #[test]
    fn same_id_from_two_requesters_are_separate() {
        let mut t = RouteTable::new(10, 10, 100);
        t.insert(conn(1), conn(3), "x").unwrap();
        t.insert(conn(2), conn(3), "x").unwrap();
        assert_eq!(t.insert(conn(1), conn(3), "x"), Err(RouteError::Duplicate));
        assert!(t.take(conn(3), conn(2), "x"));
        assert!(t.take(conn(3), conn(1), "x"));
    }

    #[test]
    fn a_duplicate_is_the_id_at_fault() {
        let dup = RouteError::Duplicate;
        assert_eq!(dup.code(), ErrorCode::InvalidMessage);
        assert_eq!(dup.field(), Some("id"));
        assert!(dup.message("r7").contains("r7"));
        assert_eq!(RouteError::Full.code(), ErrorCode::LimitExceeded);
        assert_eq!(RouteError::Full.field(), None);
    }

    #[test]
    fn per_requester_bound_evicts_the_oldest_and_total_refuses() {
        let mut t = RouteTable::new(2, 10, 3);
        assert_eq!(t.insert(conn(1), conn(9), "a"), Ok(None));
        assert_eq!(t.insert(conn(1), conn(9), "b"), Ok(None));
        assert_eq!(
            t.insert(conn(1), conn(9), "c"),
            Ok(Some(conn(1))),
            "a evicted"
        );
        assert_eq!(t.len(), 2);
        assert!(!t.take(conn(9), conn(1), "a"));
        t.insert(conn(2), conn(9), "d").unwrap();
        assert_eq!(t.insert(conn(3), conn(9), "e"), Err(RouteError::Full));
        // A requester at its own bound still gets in by evicting its oldest.
        assert_eq!(t.insert(conn(1), conn(9), "f"), Ok(Some(conn(1))));
        assert!(!t.take(conn(9), conn(1), "b"));
        assert!(t.take(conn(9), conn(1), "c"));
        assert!(t.take(conn(9), conn(1), "f"));
        assert!(t.take(conn(9), conn(2), "d"));
        assert!(t.is_empty());
    }

    #[test]
    fn dropping_a_connection_forgets_both_sides() {
        let mut t = RouteTable::new(10, 10, 100);
        t.insert(conn(1), conn(2), "a").unwrap();
        t.insert(conn(2), conn(1), "b").unwrap();
        t.insert(conn(3), conn(2), "c").unwrap();
        t.insert(conn(3), conn(4), "d").unwrap();
        let mut requesters = Vec::new();
        assert_eq!(t.drop_conn(conn(2), |r, n| requesters.push((r, n))), 3);
        requesters.sort();
        assert_eq!(requesters, [(conn(1), 1), (conn(2), 1), (conn(3), 1)]);
        assert_eq!(t.len(), 1);
        assert!(t.take(conn(4), conn(3), "d"));
        assert_eq!(t.drop_conn(conn(2), |_, _| panic!("nothing left")), 0);
        assert!(t.is_empty());
        t.assert_clean();
    }

    #[test]
    fn per_responder_bound_refuses_and_changes_nothing() {
        let mut t = RouteTable::new(2, 3, 100);
        t.insert(conn(1), conn(8), "e").unwrap();
        t.insert(conn(1), conn(9), "a").unwrap();
        t.insert(conn(2), conn(9), "b").unwrap();
        t.insert(conn(3), conn(9), "c").unwrap();
        assert_eq!(t.insert(conn(4), conn(9), "d"), Err(RouteError::Full));
        // Requester 1 at its own bound with its oldest elsewhere: nothing is evicted.
        assert_eq!(t.insert(conn(1), conn(9), "f"), Err(RouteError::Full));
        assert!(t.shown(conn(9), conn(1), "a").is_some(), "a still pending");
        assert_eq!(t.len(), 4);
        // Once one is answered the responder takes the next.
        assert!(t.take(conn(9), conn(2), "b"));
        assert_eq!(t.insert(conn(4), conn(9), "d"), Ok(None));
        // Other responders are not bounded by this one.
        assert_eq!(t.insert(conn(5), conn(7), "g"), Ok(None));
    }

    #[test]
    fn an_eviction_toward_the_same_full_responder_makes_room() {
        let mut t = RouteTable::new(2, 2, 100);
        t.insert(conn(1), conn(9), "a").unwrap();
        t.insert(conn(1), conn(9), "b").unwrap();
        assert_eq!(t.insert(conn(1), conn(9), "c"), Ok(Some(conn(1))));
        assert!(!t.take(conn(9), conn(1), "a"));
        assert!(t.take(conn(9), conn(1), "b"));
        assert!(t.take(conn(9), conn(1), "c"));
        t.assert_clean();
    }

    #[test]
    fn dropping_a_responder_reports_each_requester_once_per_run() {
        let mut t = RouteTable::new(10, 10, 100);
        for id in ["a", "b", "c"] {
            t.insert(conn(1), conn(9), id).unwrap();
        }
        t.insert(conn(2), conn(9), "d").unwrap();
        t.insert(conn(1), conn(9), "e").unwrap();
        t.insert(conn(1), conn(8), "f").unwrap();
        let mut calls = Vec::new();
        assert_eq!(t.drop_conn(conn(9), |r, n| calls.push((r, n))), 5);
        assert_eq!(calls, [(conn(1), 3), (conn(2), 1), (conn(1), 1)]);
        // What requester 1 holds elsewhere is untouched, and its list still works.
        assert!(t.take(conn(8), conn(1), "f"));
        assert!(t.is_empty());
        t.assert_clean();
    }

    #[test]
    fn a_connection_routing_to_itself_is_dropped_once() {
        let mut t = RouteTable::new(10, 10, 100);
        t.insert(conn(1), conn(1), "a").unwrap();
        t.insert(conn(2), conn(1), "b").unwrap();
        t.insert(conn(1), conn(2), "c").unwrap();
        let mut total = 0;
        assert_eq!(t.drop_conn(conn(1), |_, n| total += n), 3);
        assert_eq!(total, 3);
        t.assert_clean();
    }

    #[test]
    fn lists_stay_consistent_under_mixed_operations() {
        // A small deterministic mix of inserts, answers, evictions and drops, checked
        // against a plain model of what is pending. A dropped connection's slab index comes
        // back with the next generation, as the reactor's slots do, and a stale id (the old
        // generation) must find nothing of the new connection's.
        for seed in [7, 11, 2024] {
            mixed_operations(seed);
        }
    }

    fn mixed_operations(seed: u64) {
        let mut t = RouteTable::new(4, 5, 12);
        let mut model: Vec<(ConnId, ConnId, String)> = Vec::new();
        let mut generations = [0u32; 6];
        let at = |generations: &[u32; 6], i: u64| ConnId {
            index: i as u32 + 1,
            generation: generations[i as usize],
        };
        let mut x: u64 = seed;
        for step in 0..4000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let (a, b) = ((x >> 33) % 6, (x >> 40) % 6);
            let (requester, responder) = (at(&generations, a), at(&generations, b));
            let id = format!("r{}", (x >> 50) % 8);
            match (x >> 20) % 12 {
                0 => {
                    let mut n = 0;
                    t.drop_conn(requester, |_, k| n += k);
                    let before = model.len();
                    model.retain(|(q, p, _)| *q != requester && *p != requester);
                    assert_eq!(n, before - model.len(), "step {step}");
                    generations[a as usize] += 1;
                }
                1 => {
                    // The previous generation of a slot: nothing of it is left.
                    let stale = ConnId {
                        generation: requester.generation.wrapping_sub(1),
                        ..requester
                    };
                    if requester.generation > 0 {
                        assert!(!t.take(responder, stale, &id), "step {step}");
                        assert!(t.shown(stale, responder, &id).is_none(), "step {step}");
                        assert_eq!(t.drop_conn(stale, |_, _| panic!("stale")), 0);
                    }
                }
                2..=4 => {
                    let had = model
                        .iter()
                        .position(|(q, p, i)| (*q, *p, i) == (requester, responder, &id));
                    assert_eq!(t.take(responder, requester, &id), had.is_some());
                    if let Some(at) = had {
                        model.remove(at);
                    }
                }
                _ => {
                    let duplicate = model.contains(&(requester, responder, id.clone()));
                    let own = model.iter().filter(|(q, _, _)| *q == requester).count();
                    let oldest = model.iter().position(|(q, _, _)| *q == requester);
                    let oldest = oldest.filter(|_| own >= 4);
                    let frees = oldest.is_some_and(|at| model[at].1 == responder);
                    let theirs = model.iter().filter(|(_, p, _)| *p == responder).count();
                    let full =
                        theirs - usize::from(frees) >= 5 || (oldest.is_none() && model.len() >= 12);
                    let got = t.insert(requester, responder, &id);
                    if duplicate {
                        assert_eq!(got, Err(RouteError::Duplicate), "step {step}");
                    } else if full {
                        assert_eq!(got, Err(RouteError::Full), "step {step}");
                    } else {
                        assert_eq!(got, Ok(oldest.map(|_| requester)), "step {step}");
                        if let Some(at) = oldest {
                            model.remove(at);
                        }
                        model.push((requester, responder, id));
                    }
                }
            }
            assert_eq!(t.len(), model.len(), "step {step}");
            assert!(model.iter().filter(|(q, _, _)| *q == requester).count() <= 4);
            assert!(model.iter().filter(|(_, p, _)| *p == responder).count() <= 5);
            t.assert_consistent();
        }
        for (q, p, id) in model.drain(..) {
            assert!(t.take(p, q, &id));
        }
        t.assert_clean();
    }

    #[test]
    fn a_reused_slot_starts_with_nothing() {
        let mut t = RouteTable::new(10, 10, 100);
        let old = ConnId {
            index: 3,
            generation: 1,
        };
        let new = ConnId {
            index: 3,
            generation: 2,
        };
        t.insert(old, conn(1), "a").unwrap();
        t.insert(conn(1), old, "b").unwrap();
        assert_eq!(t.drop_conn(new, |_, _| panic!("not its routes")), 0);
        assert!(!t.take(conn(1), new, "a"));
        assert_eq!(t.drop_conn(old, |_, _| {}), 2);
        t.insert(new, conn(1), "a").unwrap();
        assert!(
            !t.take(conn(1), old, "a"),
            "the old generation's key is not the new one's"
        );
        assert!(t.take(conn(1), new, "a"));
        t.assert_clean();
    }

    impl RouteTable {
        /// Nothing is left in the slab, the index or any connection's lists.
        fn assert_clean(&self) {
            assert!(self.entries.is_empty());
            assert_eq!(self.index.len(), 0);
            assert!(self.conns.iter().all(ConnLists::is_empty));
            self.assert_consistent();
        }

        /// Every entry is indexed under its own key and hash and sits once on each of its
        /// two lists, which are linked both ways and as long as they say.
        fn assert_consistent(&self) {
            assert_eq!(self.index.len(), self.entries.len());
            for (hash, slot) in self.index.pairs() {
                let entry = &self.entries[slot];
                assert_eq!(hash, entry.hash);
                assert_eq!(
                    entry.hash,
                    self.hash(entry.responder, entry.requester, &entry.id)
                );
            }
            let mut seen = 0;
            for lists in &self.conns {
                for side in [Side::Requester, Side::Responder] {
                    let list = lists.get(side);
                    let (mut slot, mut prev, mut n) = (list.head, NIL, 0);
                    while slot != NIL {
                        let entry = &self.entries[slot];
                        let (owner, link) = match side {
                            Side::Requester => (entry.requester, entry.by_requester),
                            Side::Responder => (entry.responder, entry.by_responder),
                        };
                        assert_eq!(owner, lists.conn, "an entry on another's list");
                        assert_eq!(link.prev, prev);
                        (prev, slot, n) = (slot, link.next, n + 1);
                    }
                    assert_eq!(list.tail, prev);
                    assert_eq!(list.len, n);
                    seen += n;
                }
            }
            assert_eq!(seen, 2 * self.entries.len(), "every entry on two lists");
        }
    }
}
