//! Pending route requests: which `route_request` the gateway delivered to which responder
//! on behalf of which requester, so that exactly one `route_response` per request goes back
//! (PROTOCOL section 6).
//!
//! Contract:
//! - An entry is the triple (responder, requester, request id). [`RouteTable::take`] removes
//!   it and reports whether it was there, so a response is delivered at most once.
//! - Bounds: at most `per_requester` entries per requester — a new request past that drops
//!   the requester's oldest entry (its late response is then refused) — and at most `total`
//!   entries over all connections — past that a new request is refused
//!   ([`RouteError::Full`]). The same triple twice while pending is refused
//!   ([`RouteError::Duplicate`]).
//! - [`RouteTable::drop_conn`] forgets every entry in which a connection is requester or
//!   responder; call it when the connection closes.
//! - Every removal is reported to the caller, with the entry's requester, so that what a
//!   requester's user holds can be counted exactly outside the table: `take` says whether it
//!   removed, `insert` returns the requester of the entry it evicted, `drop_conn` calls back
//!   once per entry dropped.
//! - Costs: insert, take and eviction are O(log n); dropping a connection is
//!   O(its entries · log n).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::app::ConnId;
use crate::core::errors::{ErrorCode, Refusal};

/// Default bound on pending requests per requester.
pub(crate) const DEFAULT_PER_REQUESTER: usize = 1024;
/// Default bound on pending requests in total.
pub(crate) const DEFAULT_TOTAL: usize = 65_536;

/// Why a request could not be recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteError {
    /// The same requester already has a pending request with this id to this responder.
    Duplicate,
    /// The table holds its total bound of entries.
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

/// A pending request's sequence number and the agent id its response is shown from, if
/// not the responder's `clientId`.
type Pending = (u64, Option<Arc<str>>);

/// The pending route requests.
#[derive(Debug)]
pub(crate) struct RouteTable {
    per_requester: usize,
    total: usize,
    /// (responder, requester) → request id → sequence number, and the id the response is
    /// shown as coming from when it is not the responder's `clientId` (see [`Self::insert_as`]).
    entries: HashMap<(ConnId, ConnId), HashMap<Arc<str>, Pending>>,
    /// (requester, sequence) → (responder, request id), oldest first per requester.
    by_requester: BTreeMap<(ConnId, u64), (ConnId, Arc<str>)>,
    /// (responder, sequence) → requester.
    by_responder: BTreeMap<(ConnId, u64), ConnId>,
    counts: HashMap<ConnId, usize>,
    next_seq: u64,
}

impl RouteTable {
    /// An empty table with these bounds (each at least 1).
    pub(crate) fn new(per_requester: usize, total: usize) -> Self {
        RouteTable {
            per_requester: per_requester.max(1),
            total: total.max(1),
            entries: HashMap::new(),
            by_requester: BTreeMap::new(),
            by_responder: BTreeMap::new(),
            counts: HashMap::new(),
            next_seq: 0,
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
        if self
            .entries
            .get(&(responder, requester))
            .is_some_and(|ids| ids.contains_key(id))
        {
            return Err(RouteError::Duplicate);
        }
        let mut evicted = None;
        if self.counts.get(&requester).copied().unwrap_or(0) >= self.per_requester {
            let oldest = self
                .by_requester
                .range((requester, 0)..=(requester, u64::MAX))
                .next()
                .map(|(&(_, seq), (responder, id))| (seq, *responder, id.clone()));
            if let Some((seq, old_responder, old_id)) = oldest {
                self.remove(old_responder, requester, &old_id, seq);
                evicted = Some(requester);
            }
        } else if self.by_requester.len() >= self.total {
            return Err(RouteError::Full);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let id: Arc<str> = Arc::from(id);
        self.entries
            .entry((responder, requester))
            .or_default()
            .insert(id.clone(), (seq, shown_as.map(Arc::from)));
        self.by_requester.insert((requester, seq), (responder, id));
        self.by_responder.insert((responder, seq), requester);
        *self.counts.entry(requester).or_default() += 1;
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
        let (_, shown) = self.entries.get(&(responder, requester))?.get(id)?;
        Some(shown.as_deref())
    }

    /// [`Self::take`], returning the entry's `shown_as` when it existed.
    pub(crate) fn take_shown(
        &mut self,
        responder: ConnId,
        requester: ConnId,
        id: &str,
    ) -> Option<Option<Arc<str>>> {
        let (seq, shown) = self
            .entries
            .get(&(responder, requester))
            .and_then(|ids| ids.get(id))
            .cloned()?;
        self.remove(responder, requester, id, seq);
        Some(shown)
    }

    /// Forget every entry in which `conn` is the requester or the responder, calling
    /// `dropped` with the requester of each; returns how many were dropped.
    pub(crate) fn drop_conn(&mut self, conn: ConnId, mut dropped: impl FnMut(ConnId)) -> usize {
        let as_requester: Vec<(u64, ConnId, Arc<str>)> = self
            .by_requester
            .range((conn, 0)..=(conn, u64::MAX))
            .map(|(&(_, seq), (responder, id))| (seq, *responder, id.clone()))
            .collect();
        let as_responder: Vec<(u64, ConnId)> = self
            .by_responder
            .range((conn, 0)..=(conn, u64::MAX))
            .map(|(&(_, seq), requester)| (seq, *requester))
            .collect();
        let mut count = 0;
        for (seq, responder, id) in as_requester {
            self.remove(responder, conn, &id, seq);
            dropped(conn);
            count += 1;
        }
        for (seq, requester) in as_responder {
            let id = self
                .by_requester
                .get(&(requester, seq))
                .map(|(_, id)| id.clone());
            if let Some(id) = id {
                self.remove(conn, requester, &id, seq);
                dropped(requester);
                count += 1;
            }
        }
        count
    }

    /// How many requests are pending.
    pub(crate) fn len(&self) -> usize {
        self.by_requester.len()
    }

    /// Whether no request is pending.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.by_requester.is_empty()
    }

    fn remove(&mut self, responder: ConnId, requester: ConnId, id: &str, seq: u64) {
        if let Some(ids) = self.entries.get_mut(&(responder, requester)) {
            ids.remove(id);
            if ids.is_empty() {
                self.entries.remove(&(responder, requester));
            }
        }
        self.by_requester.remove(&(requester, seq));
        self.by_responder.remove(&(responder, seq));
        if let Some(count) = self.counts.get_mut(&requester) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.counts.remove(&requester);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::conn;

    #[test]
    fn a_response_is_taken_once() {
        let mut t = RouteTable::new(10, 100);
        t.insert(conn(1), conn(2), "r1").unwrap();
        assert!(!t.take(conn(1), conn(2), "r1"), "wrong direction");
        assert!(!t.take(conn(2), conn(3), "r1"), "wrong requester");
        assert!(t.take(conn(2), conn(1), "r1"));
        assert!(!t.take(conn(2), conn(1), "r1"));
        assert!(t.is_empty());
    }

    #[test]
    fn same_id_from_two_requesters_are_separate() {
        let mut t = RouteTable::new(10, 100);
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
        let mut t = RouteTable::new(2, 3);
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
        let mut t = RouteTable::new(10, 100);
        t.insert(conn(1), conn(2), "a").unwrap();
        t.insert(conn(2), conn(1), "b").unwrap();
        t.insert(conn(3), conn(2), "c").unwrap();
        t.insert(conn(3), conn(4), "d").unwrap();
        let mut requesters = Vec::new();
        assert_eq!(t.drop_conn(conn(2), |r| requesters.push(r)), 3);
        requesters.sort();
        assert_eq!(requesters, [conn(1), conn(2), conn(3)]);
        assert_eq!(t.len(), 1);
        assert!(t.take(conn(4), conn(3), "d"));
        assert_eq!(t.drop_conn(conn(2), |_| panic!("nothing left")), 0);
        assert!(t.entries.is_empty() && t.by_responder.is_empty() && t.counts.is_empty());
    }
}
