//! The route requests this node delivered to its clients on behalf of requesters anywhere in
//! the cluster, waiting for their answer (`routes.rs` uses it).
//!
//! Contract: at most [`MAX_PENDING_PER_TARGET`] per target connection and [`MAX_PENDING`] in
//! all; each answered once; a target's entries go with its connection.

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
/// (target connection, requester `clientId`, request `id`) -> the requester's node.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    entries: HashMap<(ConnId, String, String), Routed>,
    per_target: HashMap<ConnId, usize>,
}

impl Pending {
    /// Record a delivery; refused as on one node ([`RouteError`]).
    pub(crate) fn insert(
        &mut self,
        key: (ConnId, String, String),
        node: Routed,
    ) -> Result<(), RouteError> {
        if self.entries.contains_key(&key) {
            return Err(RouteError::Duplicate);
        }
        let count = self.per_target.entry(key.0).or_default();
        if *count >= MAX_PENDING_PER_TARGET || self.entries.len() >= MAX_PENDING {
            return Err(RouteError::Full);
        }
        *count += 1;
        self.entries.insert(key, node);
        Ok(())
    }

    /// The requester's node of a delivery, which stays recorded.
    pub(crate) fn get(&self, key: &(ConnId, String, String)) -> Option<&Routed> {
        self.entries.get(key)
    }

    /// Whether a delivery of `key` would be refused now ([`Pending::insert`]'s checks).
    pub(crate) fn check(&self, key: &(ConnId, String, String)) -> Result<(), RouteError> {
        if self.entries.contains_key(key) {
            return Err(RouteError::Duplicate);
        }
        let count = self.per_target.get(&key.0).copied().unwrap_or(0);
        if count >= MAX_PENDING_PER_TARGET || self.entries.len() >= MAX_PENDING {
            return Err(RouteError::Full);
        }
        Ok(())
    }

    /// The requester's node of a delivery, which is forgotten.
    pub(crate) fn take(&mut self, key: &(ConnId, String, String)) -> Option<Routed> {
        let node = self.entries.remove(key)?;
        if let Some(count) = self.per_target.get_mut(&key.0) {
            *count -= 1;
            if *count == 0 {
                self.per_target.remove(&key.0);
            }
        }
        Some(node)
    }

    /// Forget what was delivered to `conn` (it closed); what was dropped.
    pub(crate) fn drop_target(&mut self, conn: ConnId) -> Vec<((ConnId, String, String), Routed)> {
        let mut dropped = Vec::new();
        if self.per_target.remove(&conn).is_some() {
            let keys: Vec<(ConnId, String, String)> = self
                .entries
                .keys()
                .filter(|(target, _, _)| *target == conn)
                .cloned()
                .collect();
            for key in keys {
                if let Some(routed) = self.entries.remove(&key) {
                    dropped.push((key, routed));
                }
            }
        }
        dropped
    }

    /// Forget what requesters on `node` asked (the node is gone: nobody waits for it).
    pub(crate) fn drop_requester_node(&mut self, node: &str) {
        let gone: Vec<(ConnId, String, String)> = self
            .entries
            .iter()
            .filter(|(_, (n, _))| n == node)
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            self.take(&key);
        }
    }

    /// Deliveries waiting for an answer.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}
