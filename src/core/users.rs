//! Per-user usage: what all the connections of one user hold, against the per-user bounds
//! of PROTOCOL section 11 (`max_connections_per_user`, `max_memberships_per_user`,
//! `max_pending_routes_per_user`, `max_agents_per_user`).
//!
//! Contract:
//! - Pure data, no I/O, no clock. Usage is counted under an accounting key: the `userId`,
//!   except for `anonymous` (auth mode `none`, or password mode without a `clientId`), whose
//!   connections are each their own key (the caller passes the `clientId`), so that
//!   connections that name no user do not share one user's bounds.
//! - [`Users::try_add`] takes one unit of a resource, or refuses with [`UserLimit`] and
//!   changes nothing; [`Users::release`] gives one back. A key whose usage is all zero is
//!   forgotten, so the table holds one entry per key that holds something.
//! - Each key that holds something has a serial ([`UserSlot::serial`]), given when its entry
//!   is made and kept while it holds something: the turn-share group of its connections
//!   (the transport's `Actions::share_turn`). Serials are not reused before 2^32 - 2 more
//!   entries were made.
//! - [`Users::try_add`] says where the key's usage is kept ([`UserSlot`]), through which
//!   [`Users::release_n_at`] gives back without hashing the key.
//! - Costs: O(1) per call: one hash lookup, none through a [`UserSlot`] (but for the one that
//!   forgets an entry that holds nothing any more).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use slab::Slab;

use crate::core::errors::{ErrorCode, Refusal};

/// What a user holds, each with its own bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resource {
    /// Authenticated connections.
    Connections,
    /// Session memberships over all its connections.
    Memberships,
    /// Delivered, unanswered `route_request`s it sent.
    PendingRoutes,
    /// Agents registered under it, online or offline.
    Agents,
}

impl Resource {
    const COUNT: usize = 4;

    fn index(self) -> usize {
        self as usize
    }
}

/// The per-user bounds, from the configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UserLimits {
    pub connections: usize,
    pub memberships: usize,
    pub pending_routes: usize,
    pub agents: usize,
}

impl UserLimits {
    fn of(&self, resource: Resource) -> usize {
        match resource {
            Resource::Connections => self.connections,
            Resource::Memberships => self.memberships,
            Resource::PendingRoutes => self.pending_routes,
            Resource::Agents => self.agents,
        }
    }
}

/// A per-user bound was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UserLimit(pub Resource);

impl Refusal for UserLimit {
    fn code(&self) -> ErrorCode {
        ErrorCode::LimitExceeded
    }

    /// A message naming the user `user_id`.
    fn message(&self, user_id: &str) -> String {
        let what = match self.0 {
            Resource::Connections => "connections",
            Resource::Memberships => "session memberships",
            Resource::PendingRoutes => "pending route requests",
            Resource::Agents => "agents",
        };
        format!("Too many {what} for user {user_id}")
    }
}

/// Where a key's usage is kept, given by [`Users::try_add`] and valid while the key holds
/// something: [`Users::release_n_at`] through it looks nothing up by the key's text (the
/// worst connection close gives back the routes of up to 1024 users). Its serial tells an
/// entry made later in the same place, through which nothing is given back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UserSlot {
    slot: u32,
    /// Never 0, so that an `Option<UserSlot>` takes no more room than a `UserSlot`.
    serial: NonZeroU32,
}

impl UserSlot {
    /// The serial of the key's entry (see the module docs).
    pub(crate) fn serial(self) -> u32 {
        self.serial.get()
    }

    /// A slot that points at no entry of a table that has not made `serial` entries.
    #[cfg(test)]
    pub(crate) fn unused(serial: NonZeroU32) -> Self {
        UserSlot { slot: 0, serial }
    }
}

/// What one key holds, and its serial.
#[derive(Debug)]
struct Usage {
    key: Arc<str>,
    serial: u32,
    counts: [usize; Resource::COUNT],
}

/// Usage by accounting key.
#[derive(Debug)]
pub(crate) struct Users {
    limits: UserLimits,
    /// The entries, where their [`UserSlot`]s point.
    usage: Slab<Usage>,
    /// Each key's place in `usage` (the key's text shared with its entry).
    by_key: HashMap<Arc<str>, usize>,
    /// The serial of the last entry made.
    last_serial: u32,
}

impl Users {
    /// An empty table with these bounds.
    pub(crate) fn new(limits: UserLimits) -> Self {
        Users {
            limits,
            usage: Slab::new(),
            by_key: HashMap::new(),
            last_serial: 0,
        }
    }

    /// Enforce `limits` from now on (a reload): they apply to the next unit taken; usage
    /// already above them is kept.
    pub(crate) fn set_limits(&mut self, limits: UserLimits) {
        self.limits = limits;
    }

    /// Take one unit of `resource` for `key`, unless that reaches past its bound; where its
    /// usage is kept.
    pub(crate) fn try_add(&mut self, key: &str, resource: Resource) -> Result<UserSlot, UserLimit> {
        let limit = self.limits.of(resource);
        let slot = match self.by_key.get(key) {
            Some(&slot) => slot,
            None => {
                // 0 and u32::MAX are never serials (the transport keeps them for itself).
                self.last_serial = match self.last_serial.wrapping_add(1) {
                    0 | u32::MAX => 1,
                    next => next,
                };
                let key: Arc<str> = Arc::from(key);
                let slot = self.usage.insert(Usage {
                    key: key.clone(),
                    serial: self.last_serial,
                    counts: [0; Resource::COUNT],
                });
                self.by_key.insert(key, slot);
                slot
            }
        };
        let used = &mut self.usage[slot];
        let count = &mut used.counts[resource.index()];
        if *count >= limit {
            self.forget_if_empty(slot);
            return Err(UserLimit(resource));
        }
        *count += 1;
        Ok(UserSlot {
            slot: u32::try_from(slot).unwrap_or(u32::MAX),
            serial: NonZeroU32::new(used.serial).unwrap_or(NonZeroU32::MAX),
        })
    }

    /// The serial of `key`'s entry (see the module docs), while it holds something.
    #[cfg(test)]
    pub(crate) fn serial(&self, key: &str) -> Option<u32> {
        let slot = *self.by_key.get(key)?;
        Some(self.usage[slot].serial)
    }

    /// Give back one unit of `resource` taken for `key` (nothing when it holds none).
    pub(crate) fn release(&mut self, key: &str, resource: Resource) {
        self.release_n(key, resource, 1);
    }

    /// Give back `n` units of `resource` taken for `key` (at most what it holds), in one
    /// lookup.
    pub(crate) fn release_n(&mut self, key: &str, resource: Resource, n: usize) {
        if let Some(&slot) = self.by_key.get(key) {
            self.release_slot(slot, resource, n);
        }
    }

    /// [`Self::release_n`] for the key whose usage `user` points at; nothing when the entry
    /// it pointed at is gone.
    pub(crate) fn release_n_at(&mut self, user: UserSlot, resource: Resource, n: usize) {
        let slot = user.slot as usize;
        if self
            .usage
            .get(slot)
            .is_some_and(|u| u.serial == user.serial.get())
        {
            self.release_slot(slot, resource, n);
        }
    }

    fn release_slot(&mut self, slot: usize, resource: Resource, n: usize) {
        let count = &mut self.usage[slot].counts[resource.index()];
        *count = count.saturating_sub(n);
        self.forget_if_empty(slot);
    }

    /// Forget the entry at `slot` if it holds nothing.
    fn forget_if_empty(&mut self, slot: usize) {
        if self.usage[slot].counts.iter().all(|&n| n == 0) {
            let used = self.usage.remove(slot);
            self.by_key.remove(&*used.key);
        }
    }

    /// Units of `resource` that `key` holds.
    #[cfg(test)]
    pub(crate) fn count(&self, key: &str, resource: Resource) -> usize {
        self.by_key
            .get(key)
            .map_or(0, |&slot| self.usage[slot].counts[resource.index()])
    }

    /// Keys that hold something.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        debug_assert_eq!(self.usage.len(), self.by_key.len());
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Users {
        Users::new(UserLimits {
            connections: 2,
            memberships: 1,
            pending_routes: 1,
            agents: 1,
        })
    }

    #[test]
    fn each_resource_has_its_own_bound() {
        let mut users = table();
        assert!(users.try_add("alice", Resource::Connections).is_ok());
        assert!(users.try_add("alice", Resource::Connections).is_ok());
        assert_eq!(
            users.try_add("alice", Resource::Connections),
            Err(UserLimit(Resource::Connections))
        );
        assert!(users.try_add("alice", Resource::Agents).is_ok());
        assert!(users.try_add("bob", Resource::Connections).is_ok());
        assert_eq!(users.count("alice", Resource::Connections), 2);
        assert_eq!(users.count("alice", Resource::Agents), 1);
        assert_eq!(users.count("carol", Resource::Agents), 0);
    }

    #[test]
    fn a_key_that_holds_nothing_is_forgotten() {
        let mut users = table();
        users.try_add("alice", Resource::Memberships).unwrap();
        users.try_add("alice", Resource::PendingRoutes).unwrap();
        assert!(users.try_add("alice", Resource::Memberships).is_err());
        assert_eq!(users.len(), 1);
        users.release("alice", Resource::Memberships);
        assert_eq!(users.len(), 1);
        users.release("alice", Resource::PendingRoutes);
        assert_eq!(users.len(), 0);
        users.release("alice", Resource::PendingRoutes);
        assert_eq!(users.count("alice", Resource::PendingRoutes), 0);
        // A refusal for a key that held nothing leaves no entry behind.
        let mut none = Users::new(UserLimits {
            connections: 0,
            memberships: 0,
            pending_routes: 0,
            agents: 0,
        });
        assert!(none.try_add("x", Resource::Agents).is_err());
        assert_eq!(none.len(), 0);
    }

    #[test]
    fn each_key_has_its_own_serial_while_it_holds_something() {
        let mut users = table();
        users.try_add("alice", Resource::Connections).unwrap();
        users.try_add("bob", Resource::Connections).unwrap();
        let alice = users.serial("alice").expect("alice holds a connection");
        let bob = users.serial("bob").expect("bob holds a connection");
        assert_ne!(alice, bob);
        assert!(alice != 0 && alice != u32::MAX);
        users.try_add("alice", Resource::Agents).unwrap();
        assert_eq!(
            users.serial("alice"),
            Some(alice),
            "kept while it holds something"
        );
        users.release("alice", Resource::Connections);
        users.release("alice", Resource::Agents);
        assert_eq!(users.serial("alice"), None);
        users.try_add("alice", Resource::Connections).unwrap();
        assert_ne!(
            users.serial("alice"),
            Some(alice),
            "a new entry, a new serial"
        );
        // The counter skips the values the transport keeps for itself.
        users.last_serial = u32::MAX - 1;
        users.try_add("carol", Resource::Connections).unwrap();
        assert_eq!(users.serial("carol"), Some(1));
    }

    #[test]
    fn a_slot_gives_back_to_its_own_entry_only() {
        let mut users = table();
        let alice = users.try_add("alice", Resource::Connections).unwrap();
        assert_eq!(users.try_add("alice", Resource::PendingRoutes), Ok(alice));
        users.release_n_at(alice, Resource::PendingRoutes, 5);
        assert_eq!(users.count("alice", Resource::PendingRoutes), 0);
        assert_eq!(users.count("alice", Resource::Connections), 1);
        users.release_n_at(alice, Resource::Connections, 1);
        assert_eq!(users.len(), 0, "forgotten once it holds nothing");
        // A new entry in the same place is not given back through the old slot.
        let bob = users.try_add("bob", Resource::Connections).unwrap();
        assert_eq!(bob.slot, alice.slot);
        users.release_n_at(alice, Resource::Connections, 1);
        assert_eq!(users.count("bob", Resource::Connections), 1);
        users.release_n_at(bob, Resource::Connections, 1);
        assert_eq!(users.len(), 0);
    }

    #[test]
    fn refusals_name_the_user() {
        let e = UserLimit(Resource::Agents);
        assert_eq!(e.code(), ErrorCode::LimitExceeded);
        assert_eq!(e.message("alice"), "Too many agents for user alice");
    }
}
