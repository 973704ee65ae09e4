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
//! - The device index holds exactly the authenticated connections that have a [`Device`],
//!   keyed by [`Device::seq`], the order in which their last `connect` was handled; it is
//!   kept in step by [`Clients::set_device`], [`Clients::authenticate`] and removal. Listing
//!   a page from it costs O(log n + page), whatever the number of connections.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use crate::app::ConnId;
use crate::core::auth::{Via, ANONYMOUS};
use crate::core::ratelimit::TokenBucket;
use crate::core::scopes::Scopes;

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
    /// Its place in `connect` order, set by [`Clients::set_device`].
    pub seq: u64,
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
    /// What it may do (PROTOCOL section 12); none until it authenticates.
    pub scopes: Scopes,
    /// How it authenticated; [`Via::Open`] until then.
    pub via: Via,
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
    /// Authenticated connections with a device, by [`Device::seq`].
    devices: BTreeMap<u64, ConnId>,
    next_seq: u64,
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
            if let Some(device) = &client.device {
                self.devices.insert(device.seq, client.conn);
            }
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
        self.unindex(client);
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
                let seq = client.device.as_ref().map(|d| d.seq);
                self.authenticated += 1;
                if let Some(seq) = seq {
                    self.devices.insert(seq, conn);
                }
                true
            }
            _ => false,
        }
    }

    /// Record `device` (its `seq` is assigned here) as what `conn` last told in `connect`;
    /// it goes to the end of the `connect` order. False when `conn` is unknown.
    pub(crate) fn set_device(&mut self, conn: ConnId, mut device: Device) -> bool {
        let seq = self.next_seq;
        let Some(client) = self.slots.get_mut(conn.index as usize) else {
            return false;
        };
        let Some(client) = client.as_mut().filter(|c| c.conn == conn) else {
            return false;
        };
        if let Some(old) = &client.device {
            self.devices.remove(&old.seq);
        }
        device.seq = seq;
        self.next_seq += 1;
        if client.is_authenticated() {
            self.devices.insert(seq, conn);
        }
        client.device = Some(device);
        true
    }

    fn unindex(&mut self, client: &Client) {
        if let Some(device) = &client.device {
            if self.devices.get(&device.seq) == Some(&client.conn) {
                self.devices.remove(&device.seq);
            }
        }
    }

    /// The devices of authenticated connections in `connect` order, starting with the first
    /// whose `seq` is at least `from`, each with its client.
    pub(crate) fn devices_from(&self, from: u64) -> impl Iterator<Item = (&Client, &Device)> {
        self.devices
            .range(from..)
            .filter_map(|(_, &conn)| self.get(conn))
            .filter_map(|client| Some((client, client.device.as_ref()?)))
    }

    /// Every client, in slot order.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Client> {
        self.slots.iter().flatten()
    }

    /// Every client, mutably, in slot order (a reload's pass over the connections). Its
    /// `user_id` and `device` are not to be changed through it: the counts and the device
    /// index would no longer be in step.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Client> {
        self.slots.iter_mut().flatten()
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
            scopes: Scopes::NONE,
            via: Via::Open,
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

    fn device(id: &str) -> Device {
        Device {
            device_id: id.to_owned(),
            device_name: None,
            role: "node",
            connected_at: 0,
            seq: 0,
        }
    }

    fn listed(t: &Clients, from: u64) -> Vec<(String, u64)> {
        t.devices_from(from)
            .map(|(_, d)| (d.device_id.clone(), d.seq))
            .collect()
    }

    #[test]
    fn the_device_index_lists_authenticated_devices_in_connect_order() {
        use crate::testkit::conn;
        let mut t = Clients::new();
        for i in 0..4 {
            t.insert(client(i, 0, &format!("c{i}")));
        }
        assert!(t.authenticate(conn(0), "u".into()));
        assert!(t.authenticate(conn(2), "u".into()));
        // Unauthenticated: stored, not listed until it authenticates.
        assert!(t.set_device(conn(1), device("one")));
        assert!(t.set_device(conn(2), device("two")));
        assert!(t.set_device(conn(0), device("zero")));
        assert!(!t.set_device(conn(9), device("nobody")));
        assert_eq!(listed(&t, 0), [("two".into(), 1), ("zero".into(), 2)]);
        assert!(t.authenticate(conn(1), "v".into()));
        assert_eq!(listed(&t, 0).len(), 3);
        assert_eq!(listed(&t, 1), [("two".into(), 1), ("zero".into(), 2)]);
        // A second connect moves the device to the end.
        assert!(t.set_device(conn(2), device("two-again")));
        assert_eq!(
            listed(&t, 0),
            [
                ("one".into(), 0),
                ("zero".into(), 2),
                ("two-again".into(), 3)
            ]
        );
        // Removal and slot reuse take the device out of the index.
        t.remove(conn(0));
        let old = t.insert(client(1, 1, "c1-new"));
        assert!(old.is_some());
        assert_eq!(listed(&t, 0), [("two-again".into(), 3)]);
        assert_eq!(t.devices.len(), 1);
    }
}
