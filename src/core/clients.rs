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
//! - The slot index holds the slab index of every client, in order: the pages of
//!   `admin_clients` ([`Clients::clients_from`]) cost O(log n + page), however many slots
//!   stand empty.
//! - The device indexes hold exactly the authenticated connections that have a [`Device`],
//!   in the order in which their last `connect` was handled ([`Device::seq`]): one keyed by
//!   `seq`, for every user's devices, and one keyed by (`userId`, `seq`), for one user's
//!   (every `anonymous` connection under the one user `anonymous`). They are kept in step by
//!   [`Clients::set_device`], [`Clients::authenticate`] and removal. Listing a page from
//!   either costs O(log n + page), whatever the number of connections, and one user's
//!   listing never walks another user's devices.
//! - Memory per connection, beside its [`Client`]: one entry in the slot index (4 bytes, plus
//!   the B-tree's slack) and, with a device, one in each device index (16 and 32 bytes, plus
//!   slack, plus a copy of its `userId`).

use std::collections::{btree_map, BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use crate::app::ConnId;
use crate::core::auth::{Via, ANONYMOUS};
use crate::core::ratelimit::TokenBucket;
use crate::core::scopes::Scopes;
use crate::core::users::UserSlot;

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
    /// Its auth deadline until its user is counted, then where its user's usage is kept.
    pub standing: Standing,
    /// Rate limit bucket, when rate limiting is on.
    pub bucket: Option<TokenBucket>,
    /// Set by `connect`; boxed, so that a connection that never sends one (most idle ones)
    /// holds 8 bytes for it rather than the 80 of a [`Device`].
    pub device: Option<Box<Device>>,
    /// What it may do (PROTOCOL section 12); none until it authenticates.
    pub scopes: Scopes,
    /// How it authenticated; [`Via::Open`] until then.
    pub via: Via,
    /// A close was requested; further messages from it are ignored.
    pub closing: bool,
    /// When the connection opened, ms since the Unix epoch.
    pub connected_at: u64,
}

/// A connection's auth deadline, or where its user's usage is kept (the per-user bounds,
/// `users.rs`): one field, as a connection has the one until it authenticates and the other
/// from then on (from its start in `auth_mode = none`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Not counted yet: its auth deadline, while one is armed.
    Waiting(Option<Instant>),
    /// Counted under its user's key.
    Counted(UserSlot),
}

impl Client {
    /// Its auth deadline, while one is armed.
    pub(crate) fn auth_deadline(&self) -> Option<Instant> {
        match self.standing {
            Standing::Waiting(deadline) => deadline,
            Standing::Counted(_) => None,
        }
    }

    /// Where its user's usage is kept, once counted.
    pub(crate) fn user(&self) -> Option<UserSlot> {
        match self.standing {
            Standing::Counted(user) => Some(user),
            Standing::Waiting(_) => None,
        }
    }

    /// Whether the connection has authenticated.
    pub(crate) fn is_authenticated(&self) -> bool {
        self.user_id.is_some()
    }

    /// Whether this connection sees the `clientId`s of `other`'s user (PROTOCOL section 12):
    /// it has the same `userId`, or the `admin` scope.
    pub(crate) fn sees_client_ids_of(&self, other: &Client) -> bool {
        self.scopes.is_admin() || (self.user_id.is_some() && self.user_id == other.user_id)
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

/// Whose devices a listing holds ([`Clients::devices_from`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owners<'a> {
    /// Every user's.
    Every,
    /// Those of the connections authenticated as this `userId`.
    User(&'a str),
    /// None at all.
    Nobody,
}

/// The table of open connections.
#[derive(Debug, Default)]
pub(crate) struct Clients {
    slots: Vec<Option<Client>>,
    by_client_id: HashMap<String, ConnId>,
    len: usize,
    authenticated: usize,
    /// The slab index of every client.
    occupied: BTreeSet<u32>,
    /// Authenticated connections with a device, by [`Device::seq`].
    devices: BTreeMap<u64, ConnId>,
    /// The same, by `userId` and then [`Device::seq`].
    user_devices: BTreeMap<(Box<str>, u64), ConnId>,
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
        self.occupied.insert(client.conn.index);
        if let (Some(user), Some(device)) = (&client.user_id, &client.device) {
            index_device(
                &mut self.devices,
                &mut self.user_devices,
                user,
                device.seq,
                client.conn,
            );
        }
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

    /// Mark `conn` authenticated as `user_id`, its user's usage kept at `user` (no-op when
    /// unknown or already authenticated).
    pub(crate) fn authenticate(&mut self, conn: ConnId, user_id: String, user: UserSlot) -> bool {
        let slot = self.slots.get_mut(conn.index as usize);
        match slot
            .and_then(|slot| slot.as_mut())
            .filter(|c| c.conn == conn)
        {
            Some(client) if client.user_id.is_none() => {
                client.standing = Standing::Counted(user);
                if let Some(device) = &client.device {
                    let (all, per_user) = (&mut self.devices, &mut self.user_devices);
                    index_device(all, per_user, &user_id, device.seq, conn);
                }
                client.user_id = Some(user_id);
                self.authenticated += 1;
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
        let (all, per_user) = (&mut self.devices, &mut self.user_devices);
        if let (Some(user), Some(old)) = (&client.user_id, &client.device) {
            unindex_device(all, per_user, user, old.seq, conn);
        }
        device.seq = seq;
        self.next_seq += 1;
        if let Some(user) = &client.user_id {
            index_device(all, per_user, user, seq, conn);
        }
        client.device = Some(Box::new(device));
        true
    }

    fn unindex(&mut self, client: &Client) {
        // Called only for the client that leaves its slot.
        self.occupied.remove(&client.conn.index);
        if let (Some(user), Some(device)) = (&client.user_id, &client.device) {
            let (all, per_user) = (&mut self.devices, &mut self.user_devices);
            unindex_device(all, per_user, user, device.seq, client.conn);
        }
    }

    /// The devices of `owners`, of authenticated connections only, in `connect` order,
    /// starting with the first whose `seq` is at least `from`, each with its client.
    pub(crate) fn devices_from<'a>(
        &'a self,
        owners: Owners<'a>,
        from: u64,
    ) -> impl Iterator<Item = (&'a Client, &'a Device)> + 'a {
        let conns = match owners {
            Owners::Every => DeviceConns::Every(self.devices.range(from..)),
            Owners::User(user) => {
                DeviceConns::User(user, self.user_devices.range((Box::from(user), from)..))
            }
            Owners::Nobody => DeviceConns::Nobody,
        };
        conns
            .filter_map(|conn| self.get(conn))
            .filter_map(|client| Some((client, client.device.as_deref()?)))
    }

    /// Every client in slab index order, starting with the first whose index is at least
    /// `from`.
    pub(crate) fn clients_from(&self, from: u32) -> impl Iterator<Item = &Client> {
        self.occupied
            .range(from..)
            .filter_map(|&index| self.get_by_index(index))
    }

    /// Every client, in slot order.
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

/// The connections of one device listing, in `connect` order.
enum DeviceConns<'a> {
    /// Every user's.
    Every(btree_map::Range<'a, u64, ConnId>),
    /// From a place among this user's on; ends at the first entry of another user.
    User(&'a str, btree_map::Range<'a, (Box<str>, u64), ConnId>),
    /// None.
    Nobody,
}

impl Iterator for DeviceConns<'_> {
    type Item = ConnId;

    fn next(&mut self) -> Option<ConnId> {
        let conn = match self {
            DeviceConns::Every(range) => range.next().map(|(_, &conn)| conn),
            DeviceConns::User(user, range) => range
                .next()
                .filter(|((owner, _), _)| **owner == **user)
                .map(|(_, &conn)| conn),
            DeviceConns::Nobody => None,
        };
        if conn.is_none() {
            *self = DeviceConns::Nobody;
        }
        conn
    }
}

/// Put the device `seq` of `conn`, authenticated as `user`, in both device indexes.
fn index_device(
    all: &mut BTreeMap<u64, ConnId>,
    per_user: &mut BTreeMap<(Box<str>, u64), ConnId>,
    user: &str,
    seq: u64,
    conn: ConnId,
) {
    all.insert(seq, conn);
    per_user.insert((Box::from(user), seq), conn);
}

/// Take the device `seq` of `conn`, authenticated as `user`, out of both device indexes,
/// each only where it is `conn`'s.
fn unindex_device(
    all: &mut BTreeMap<u64, ConnId>,
    per_user: &mut BTreeMap<(Box<str>, u64), ConnId>,
    user: &str,
    seq: u64,
    conn: ConnId,
) {
    if all.get(&seq) == Some(&conn) {
        all.remove(&seq);
    }
    let key = (Box::from(user), seq);
    if per_user.get(&key) == Some(&conn) {
        per_user.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    /// What every connection costs in the table: a [`Client`] in its slot, whatever it sent.
    #[test]
    fn a_client_record_is_small() {
        use std::mem::size_of;
        println!(
            "Client {} (Device {}, rate limit bucket {})",
            size_of::<Option<Client>>(),
            size_of::<Device>(),
            size_of::<Option<TokenBucket>>()
        );
        assert!(size_of::<Option<Client>>() <= 160);
        assert!(size_of::<Option<TokenBucket>>() <= 40);
    }

    fn client(index: u32, generation: u32, id: &str) -> Client {
        Client {
            conn: ConnId { index, generation },
            client_id: id.to_owned(),
            user_id: None,
            auth_failures: 0,
            standing: Standing::Waiting(None),
            bucket: None,
            device: None,
            scopes: Scopes::NONE,
            via: Via::Open,
            closing: false,
            connected_at: 0,
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
        assert!(t.authenticate(a, "u".into(), UserSlot::unused(NonZeroU32::MIN)));
        assert!(!t.authenticate(a, "v".into(), UserSlot::unused(NonZeroU32::MIN)));
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
        t.devices_from(Owners::Every, from)
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
        assert!(t.authenticate(conn(0), "u".into(), UserSlot::unused(NonZeroU32::MIN)));
        assert!(t.authenticate(conn(2), "u".into(), UserSlot::unused(NonZeroU32::MIN)));
        // Unauthenticated: stored, not listed until it authenticates.
        assert!(t.set_device(conn(1), device("one")));
        assert!(t.set_device(conn(2), device("two")));
        assert!(t.set_device(conn(0), device("zero")));
        assert!(!t.set_device(conn(9), device("nobody")));
        assert_eq!(listed(&t, 0), [("two".into(), 1), ("zero".into(), 2)]);
        assert!(t.authenticate(conn(1), "v".into(), UserSlot::unused(NonZeroU32::MIN)));
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

    fn listed_of(t: &Clients, user: &str, from: u64) -> Vec<String> {
        t.devices_from(Owners::User(user), from)
            .map(|(_, d)| d.device_id.clone())
            .collect()
    }

    #[test]
    fn the_per_user_index_holds_only_that_users_devices() {
        use crate::testkit::conn;
        let mut t = Clients::new();
        for i in 0..5 {
            t.insert(client(i, 0, &format!("c{i}")));
        }
        for (i, user) in [(0, "u"), (1, "uv"), (2, "u"), (3, "uv")] {
            assert!(t.authenticate(conn(i), user.into(), UserSlot::unused(NonZeroU32::MIN)));
        }
        for i in 0..5 {
            assert!(t.set_device(conn(i), device(&format!("d{i}"))));
        }
        assert_eq!(listed_of(&t, "u", 0), ["d0", "d2"]);
        assert_eq!(listed_of(&t, "uv", 0), ["d1", "d3"]);
        assert_eq!(listed_of(&t, "u", 1), ["d2"]);
        assert!(listed_of(&t, "w", 0).is_empty());
        assert!(t.devices_from(Owners::Nobody, 0).next().is_none());
        assert_eq!(listed(&t, 0).len(), 4);
        // Authenticating later adds the device to its user's index.
        assert!(t.authenticate(conn(4), "w".into(), UserSlot::unused(NonZeroU32::MIN)));
        assert_eq!(listed_of(&t, "w", 0), ["d4"]);
        // A second connect moves it to the end of its user's order too.
        assert!(t.set_device(conn(0), device("d0-again")));
        assert_eq!(listed_of(&t, "u", 0), ["d2", "d0-again"]);
        // Removal and slot reuse take it out; a user's index goes with its last device.
        t.remove(conn(2));
        assert_eq!(listed_of(&t, "u", 0), ["d0-again"]);
        t.insert(client(4, 1, "c4-new"));
        assert!(listed_of(&t, "w", 0).is_empty());
        assert!(!t.user_devices.keys().any(|(user, _)| &**user == "w"));
        assert_eq!(t.devices.len(), 3);
        assert_eq!(t.user_devices.len(), 3);
    }

    #[test]
    fn the_slot_index_lists_every_client_once_in_slot_order() {
        use crate::testkit::conn;
        let mut t = Clients::new();
        for i in [3, 0, 7] {
            t.insert(client(i, 0, &format!("c{i}")));
        }
        let ids = |t: &Clients, from| -> Vec<String> {
            t.clients_from(from).map(|c| c.client_id.clone()).collect()
        };
        assert_eq!(ids(&t, 0), ["c0", "c3", "c7"]);
        assert_eq!(ids(&t, 1), ["c3", "c7"]);
        assert_eq!(ids(&t, 8), Vec::<String>::new());
        t.remove(conn(0));
        // A reused slot holds its new client only.
        t.insert(client(3, 1, "c3-new"));
        assert_eq!(ids(&t, 0), ["c3-new", "c7"]);
        t.remove(ConnId {
            index: 3,
            generation: 0,
        });
        assert_eq!(ids(&t, 0), ["c3-new", "c7"]);
        assert_eq!(t.occupied.len(), t.len());
    }
}
