//! The route requests this node delivered to its clients on behalf of requesters anywhere in
//! the cluster, waiting for their answer (`routes.rs` uses it).
//!
//! Contract: at most [`MAX_PENDING_PER_TARGET`] per target connection and [`MAX_PENDING`] in
//! all; each answered once; a target's entries go with its connection, at a cost of what that
//! connection held (they are kept by target), never a walk of the node's whole table.

use std::collections::HashMap;

use crate::app::ConnId;
use crate::core::routes::RouteError;

/// Pending deliveries of one target connection at most.
pub(crate) const MAX_PENDING_PER_TARGET: usize = 1024;
/// Pending deliveries of this node at most.
pub(crate) const MAX_PENDING: usize = 65_536;

/// Where a delivery's answer goes: the requester's node, and the agent id the answer is
/// shown from when the requester may not see the responder's `clientId`.
pub(crate) type Routed = (String, Option<String>);

/// The route requests this node delivered to its clients and that wait for their answer:
/// (target connection, requester `clientId`, request `id`) -> the requester's node, held by
/// target connection so that a target's close costs only what it held.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Target connection -> requester `clientId` -> request `id` -> where the answer goes.
    targets: HashMap<ConnId, Target>,
    len: usize,
}

/// What waits for one target connection's answers.
#[derive(Debug, Default)]
struct Target {
    by_requester: HashMap<String, HashMap<String, Routed>>,
    len: usize,
}

impl Pending {
    /// Record a delivery; refused as on one node ([`RouteError`]).
    pub(crate) fn insert(
        &mut self,
        key: (ConnId, String, String),
        node: Routed,
    ) -> Result<(), RouteError> {
        self.check(&key)?;
        let (conn, requester, id) = key;
        let target = self.targets.entry(conn).or_default();
        target
            .by_requester
            .entry(requester)
            .or_default()
            .insert(id, node);
        target.len += 1;
        self.len += 1;
        Ok(())
    }

    /// The requester's node of a delivery, which stays recorded.
    pub(crate) fn get(&self, key: &(ConnId, String, String)) -> Option<&Routed> {
        self.targets
            .get(&key.0)?
            .by_requester
            .get(&key.1)?
            .get(&key.2)
    }

    /// Whether a delivery of `key` would be refused now ([`Pending::insert`]'s checks).
    pub(crate) fn check(&self, key: &(ConnId, String, String)) -> Result<(), RouteError> {
        if self.get(key).is_some() {
            return Err(RouteError::Duplicate);
        }
        let count = self.targets.get(&key.0).map_or(0, |target| target.len);
        if count >= MAX_PENDING_PER_TARGET || self.len >= MAX_PENDING {
            return Err(RouteError::Full);
        }
        Ok(())
    }

    /// The requester's node of a delivery, which is forgotten.
    pub(crate) fn take(&mut self, key: &(ConnId, String, String)) -> Option<Routed> {
        let target = self.targets.get_mut(&key.0)?;
        let ids = target.by_requester.get_mut(&key.1)?;
        let node = ids.remove(&key.2)?;
        if ids.is_empty() {
            target.by_requester.remove(&key.1);
        }
        target.len -= 1;
        if target.len == 0 {
            self.targets.remove(&key.0);
        }
        self.len -= 1;
        Some(node)
    }

    /// Forget what was delivered to `conn` (it closed); what was dropped. Costs what `conn`
    /// held, not what the node holds.
    pub(crate) fn drop_target(&mut self, conn: ConnId) -> Vec<((ConnId, String, String), Routed)> {
        let Some(target) = self.targets.remove(&conn) else {
            return Vec::new();
        };
        self.len -= target.len;
        let mut dropped = Vec::with_capacity(target.len);
        for (requester, ids) in target.by_requester {
            for (id, routed) in ids {
                dropped.push(((conn, requester.clone(), id), routed));
            }
        }
        dropped
    }

    /// Forget what requesters on `node` asked (the node is gone: nobody waits for it).
    pub(crate) fn drop_requester_node(&mut self, node: &str) {
        let mut gone = 0;
        for target in self.targets.values_mut() {
            for ids in target.by_requester.values_mut() {
                let before = ids.len();
                ids.retain(|_, (n, _)| n != node);
                target.len -= before - ids.len();
                gone += before - ids.len();
            }
            target.by_requester.retain(|_, ids| !ids.is_empty());
        }
        self.targets.retain(|_, target| target.len > 0);
        self.len -= gone;
    }

    /// Deliveries waiting for an answer.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::conn;

    fn key(target: u32, requester: &str, id: &str) -> (ConnId, String, String) {
        (conn(target), requester.to_owned(), id.to_owned())
    }

    fn routed(node: &str) -> Routed {
        (node.to_owned(), None)
    }

    #[test]
    fn a_target_is_bounded_and_its_close_drops_only_its_own() {
        let mut p = Pending::default();
        for i in 0..MAX_PENDING_PER_TARGET {
            p.insert(key(1, "c-a", &format!("r{i}")), routed("n1"))
                .unwrap();
        }
        assert_eq!(
            p.insert(key(1, "c-b", "x"), routed("n1")),
            Err(RouteError::Full)
        );
        assert_eq!(
            p.insert(key(1, "c-a", "r0"), routed("n1")),
            Err(RouteError::Duplicate)
        );
        p.insert(key(2, "c-a", "r0"), routed("n2")).unwrap();
        assert_eq!(p.len(), MAX_PENDING_PER_TARGET + 1);
        assert_eq!(p.take(&key(1, "c-a", "r5")), Some(routed("n1")));
        assert_eq!(p.take(&key(1, "c-a", "r5")), None);
        p.insert(key(1, "c-b", "x"), routed("n1")).unwrap();
        let dropped = p.drop_target(conn(1));
        assert_eq!(dropped.len(), MAX_PENDING_PER_TARGET);
        assert!(dropped.iter().all(|((c, _, _), _)| *c == conn(1)));
        assert_eq!(p.len(), 1);
        assert_eq!(p.get(&key(2, "c-a", "r0")), Some(&routed("n2")));
        assert!(p.drop_target(conn(1)).is_empty());
    }

    #[test]
    fn a_dead_requester_node_takes_only_its_own() {
        let mut p = Pending::default();
        p.insert(key(1, "c-a", "r1"), routed("n1")).unwrap();
        p.insert(key(1, "c-b", "r1"), routed("n2")).unwrap();
        p.insert(key(2, "c-a", "r2"), routed("n1")).unwrap();
        p.drop_requester_node("n1");
        assert_eq!(p.len(), 1);
        assert_eq!(p.get(&key(1, "c-b", "r1")), Some(&routed("n2")));
        assert_eq!(p.take(&key(1, "c-b", "r1")), Some(routed("n2")));
        assert!(p.targets.is_empty());
    }
}
