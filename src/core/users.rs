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
//! - Each key that holds something has a serial ([`Users::serial`]), given when its entry
//!   is made and kept while it holds something: the turn-share group of its connections
//!   (the transport's `Actions::share_turn`). Serials are not reused before 2^32 - 2 more
//!   entries were made.
//! - Costs: O(1) per call (one hash lookup).

use std::collections::HashMap;

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

/// What one key holds, and its serial.
#[derive(Debug)]
struct Usage {
    serial: u32,
    counts: [usize; Resource::COUNT],
}

/// Usage by accounting key.
#[derive(Debug)]
pub(crate) struct Users {
    limits: UserLimits,
    usage: HashMap<String, Usage>,
    /// The serial of the last entry made.
    last_serial: u32,
}

impl Users {
    /// An empty table with these bounds.
    pub(crate) fn new(limits: UserLimits) -> Self {
        Users {
            limits,
            usage: HashMap::new(),
            last_serial: 0,
        }
    }

    /// Enforce `limits` from now on (a reload): they apply to the next unit taken; usage
    /// already above them is kept.
    pub(crate) fn set_limits(&mut self, limits: UserLimits) {
        self.limits = limits;
    }

    /// Take one unit of `resource` for `key`, unless that reaches past its bound.
    pub(crate) fn try_add(&mut self, key: &str, resource: Resource) -> Result<(), UserLimit> {
        let limit = self.limits.of(resource);
        let used = match self.usage.get_mut(key) {
            Some(used) => used,
            None => {
                // 0 and u32::MAX are never serials (the transport keeps them for itself).
                self.last_serial = match self.last_serial.wrapping_add(1) {
                    0 | u32::MAX => 1,
                    next => next,
                };
                let usage = Usage {
                    serial: self.last_serial,
                    counts: [0; Resource::COUNT],
                };
                self.usage.entry(key.to_owned()).or_insert(usage)
            }
        };
        let count = &mut used.counts[resource.index()];
        if *count >= limit {
            if used.counts.iter().all(|&n| n == 0) {
                self.usage.remove(key);
            }
            return Err(UserLimit(resource));
        }
        *count += 1;
        Ok(())
    }

    /// The serial of `key`'s entry (see the module docs), while it holds something.
    pub(crate) fn serial(&self, key: &str) -> Option<u32> {
        self.usage.get(key).map(|used| used.serial)
    }

    /// Give back one unit of `resource` taken for `key` (nothing when it holds none).
    pub(crate) fn release(&mut self, key: &str, resource: Resource) {
        self.release_n(key, resource, 1);
    }

    /// Give back `n` units of `resource` taken for `key` (at most what it holds), in one
    /// lookup.
    pub(crate) fn release_n(&mut self, key: &str, resource: Resource, n: usize) {
        if let Some(used) = self.usage.get_mut(key) {
            let count = &mut used.counts[resource.index()];
            *count = count.saturating_sub(n);
            if used.counts.iter().all(|&n| n == 0) {
                self.usage.remove(key);
            }
        }
    }

    /// Units of `resource` that `key` holds.
    #[cfg(test)]
    pub(crate) fn count(&self, key: &str, resource: Resource) -> usize {
        self.usage
            .get(key)
            .map_or(0, |used| used.counts[resource.index()])
    }

    /// Keys that hold something.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.usage.len()
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
        assert_eq!(users.try_add("alice", Resource::Connections), Ok(()));
        assert_eq!(users.try_add("alice", Resource::Connections), Ok(()));
        assert_eq!(
            users.try_add("alice", Resource::Connections),
            Err(UserLimit(Resource::Connections))
        );
        assert_eq!(users.try_add("alice", Resource::Agents), Ok(()));
        assert_eq!(users.try_add("bob", Resource::Connections), Ok(()));
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
    fn refusals_name_the_user() {
        let e = UserLimit(Resource::Agents);
        assert_eq!(e.code(), ErrorCode::LimitExceeded);
        assert_eq!(e.message("alice"), "Too many agents for user alice");
    }
}
