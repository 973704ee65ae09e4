//! The open connections the core knows: each one's `clientId`, authentication state, rate
//! limit bucket and `connect` details, found by [`ConnId`] or by `clientId`.
//!
//! Contract:
//! - A [`Client`] exists from `on_open` to `on_close` of its connection. Lookups by a
//!   [`ConnId`] whose generation differs from the stored one find nothing.
//! - Slots are indexed by the connection's slab index (the reactor's slab keeps them dense),
//!   so a lookup by `ConnId` is an array access; a lookup by `clientId` is a hash lookup.
//! - [`Clients::authenticated`] is kept in step with every state change made through
//!   [`Clients::authenticate`].

use std::collections::HashMap;
use std::time::Instant;

use crate::app::ConnId;
use crate::core::auth::ANONYMOUS;
use crate::core::ratelimit::TokenBucket;

/// What a `connect` message told about the device (PROTOCOL section 5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Device {
    /// `deviceId`
    pub device_id: String,
    /// `deviceName`, if given.
    pub device_name: Option<String>,
    /// `role`: `control`, `node` or `webchat`.
    pub role: &'static str,
    /// When `connect` was handled, ms since the Unix epoch.
    pub connected_at: u64,
}

/// One open connection.
#[derive(Debug)]
pub(crate) struct Client {
    /// The connection.
    pub conn: ConnId,
    /// Its `clientId` (UUID v4).
    pub client_id: String,
    /// Its `userId` once authenticated.
    pub user_id: Option<String>,
    /// Failed `auth` messages so far.
    pub auth_failures: u32,
    /// The connection's auth deadline, while one is armed.
    pub auth_deadline: Option<Instant>,
    /// Rate limit bucket, when rate limiting is on.
    pub bucket: Option<TokenBucket>,
    /// Set by `connect`.
    pub device: Option<Device>,
    /// A close was requested; further messages from it are ignored.
    pub closing: bool,
}

impl Client {
    /// Whether the connection has authenticated.
    pub(crate) fn is_authenticated(&self) -> bool {
        self.user_id.is_some()
    }

    /// The key its usage is counted under in the per-user bounds (see `users.rs`): its
    /// `userId`, or its own `clientId` when it is `anonymous` or not authenticated.
    pub(crate) fn usage_key(&self) -> &str {
        match self.user_id.as_deref() {
            Some(user) if user != ANONYMOUS => user,
            _ => &self.client_id,
        }
    }
}

/// The table of open connections.
#[derive(Debug, Default)]
pub(crate) struct Clients {
    slots: Vec<Option<Client>>,
    by_client_id: HashMap<String, ConnId>,
    len: usize,
    authenticated: usize,
}

impl Clients {
    /// An empty table.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Add `client`, replacing whatever occupied its slot; returns the replaced client.
    pub(crate) fn insert(&mut self, client: Client) -> Option<Client> {
        let index = client.conn.index as usize;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        let old = self.slots[index].take();
        if let Some(old) = &old {
            self.forget(old);
        }
        self.len += 1;
        if client.is_authenticated() {
            self.authenticated += 1;
        }
        self.by_client_id
            .insert(client.client_id.clone(), client.conn);
        self.slots[index] = Some(client);
        old
    }

    /// Remove the client of `conn`.
    pub(crate) fn remove(&mut self, conn: ConnId) -> Option<Client> {
        let slot = self.slots.get_mut(conn.index as usize)?;
        if slot.as_ref().is_some_and(|c| c.conn == conn) {
            let client = slot.take()?;
            self.forget(&client);
            Some(client)
        } else {
            None
        }
    }

    fn forget(&mut self, client: &Client) {
        self.len -= 1;
        if client.is_authenticated() {
            self.authenticated -= 1;
        }
        if self.by_client_id.get(&client.client_id) == Some(&client.conn) {
            self.by_client_id.remove(&client.client_id);
        }
    }

    /// The client of `conn`.
    pub(crate) fn get(&self, conn: ConnId) -> Option<&Client> {
        self.slots
            .get(conn.index as usize)?
            .as_ref()
            .filter(|c| c.conn == conn)
    }

    /// The client of `conn`, mutably. Use [`Clients::authenticate`] to change `user_id`.
    pub(crate) fn get_mut(&mut self, conn: ConnId) -> Option<&mut Client> {
        self.slots
            .get_mut(conn.index as usize)?
            .as_mut()
            .filter(|c| c.conn == conn)
    }

    /// The client in slab slot `index`, whatever its generation.
    pub(crate) fn get_by_index(&self, index: u32) -> Option<&Client> {
        self.slots.get(index as usize)?.as_ref()
    }

    /// The connection whose `clientId` is `client_id`.
    pub(crate) fn conn_of(&self, client_id: &str) -> Option<ConnId> {
        self.by_client_id.get(client_id).copied()
    }

    /// Mark `conn` authenticated as `user_id` (no-op when unknown or already authenticated).
    pub(crate) fn authenticate(&mut self, conn: ConnId, user_id: String) -> bool {
        match self.get_mut(conn) {
            Some(client) if client.user_id.is_none() => {
                client.user_id = Some(user_id);
                client.auth_deadline = None;
                self.authenticated += 1;
                true
            }
            _ => false,
        }
    }

    /// Every client, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Client> {
        self.slots.iter().flatten()
    }

    /// How many connections are open.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether no connection is open.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many connections have authenticated.
    pub(crate) fn authenticated(&self) -> usize {
        self.authenticated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(index: u32, generation: u32, id: &str) -> Client {
        Client {
            conn: ConnId { index, generation },
            client_id: id.to_owned(),
            user_id: None,
            auth_failures: 0,
            auth_deadline: None,
            bucket: None,
            device: None,
            closing: false,
        }
    }

    #[test]
    fn lookups_respect_the_generation() {
        let mut t = Clients::new();
        t.insert(client(3, 1, "a"));
        assert!(t
            .get(ConnId {
                index: 3,
                generation: 1
            })
            .is_some());
        assert!(t
            .get(ConnId {
                index: 3,
                generation: 2
            })
            .is_none());
        assert!(t
            .get(ConnId {
                index: 9,
                generation: 1
            })
            .is_none());
        assert!(t
            .remove(ConnId {
                index: 3,
                generation: 2
            })
            .is_none());
        assert_eq!(
            t.conn_of("a"),
            Some(ConnId {
                index: 3,
                generation: 1
            })
        );
        assert_eq!(t.len(), 1);
        assert!(t
            .remove(ConnId {
                index: 3,
                generation: 1
            })
            .is_some());
        assert!(t.is_empty());
        assert_eq!(t.conn_of("a"), None);
    }

    #[test]
    fn counts_authenticated_clients() {
        let mut t = Clients::new();
        let a = crate::testkit::conn(0);
        t.insert(client(0, 0, "a"));
        t.insert(client(1, 0, "b"));
        assert!(t.authenticate(a, "u".into()));
        assert!(!t.authenticate(a, "v".into()));
        assert_eq!(t.get(a).unwrap().user_id.as_deref(), Some("u"));
        assert_eq!(t.authenticated(), 1);
        // A reused slot replaces its old client.
        let old = t.insert(client(0, 1, "c")).unwrap();
        assert_eq!(old.client_id, "a");
        assert_eq!(t.authenticated(), 0);
        assert_eq!(t.len(), 2);
        assert_eq!(t.iter().count(), 2);
    }
}
