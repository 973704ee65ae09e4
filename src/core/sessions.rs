//! The session table: sessions by id, their members in join order, and the reverse index
//! from a connection to the sessions it is in (PROTOCOL section 5), with each session's
//! owner and access (PROTOCOL section 12).
//!
//! Contract:
//! - Pure data, no I/O, no clock. No input makes it panic.
//! - Access: a session's `owner` is the `userId` that created it. A [`Viewer`] may join it
//!   when it is open, when the viewer is its owner or `admin`, or when its `allowUsers`
//!   ([`AllowList`]) names the viewer's user. A private session that a viewer may not join
//!   and is not in does not exist for that viewer: every operation answers
//!   [`SessionError::NotFound`], except `create`, which answers [`SessionError::Taken`] (the id
//!   is in use), and `leave`, which answers [`LeaveOutcome::NotMember`] as for any session
//!   one is not in. A member always sees the sessions it is in.
//! - Only the owner or `admin` may change `access` and `allowUsers`
//!   ([`SessionError::NotOwner`]); a change removes, in the same step, the members it no
//!   longer admits, at a cost of O(members of that session).
//! - A session exists while it has at least one member; when its last member leaves it is
//!   removed, its metadata with it.
//! - Limits (checked in this order): joining an existing session as a new member checks
//!   `max_clients_per_session` ([`SessionError::Full`]) then `max_sessions_per_client`
//!   ([`SessionError::ClientLimit`]); creating a new session checks `max_sessions_per_client`,
//!   `max_sessions` ([`SessionError::TableFull`]) and the metadata size
//!   ([`SessionError::MetadataTooLarge`]: the metadata text plus the allow list's
//!   [`AllowList::bytes`]). Last, for a new membership only, the caller's
//!   `admit` is asked (the per-user `max_memberships_per_user`, counted by the caller):
//!   `false` is [`SessionError::UserLimit`]. A refused operation changes nothing, and `admit`
//!   is called only when the operation then succeeds.
//! - Metadata is a JSON object stored as its compact JSON text (never as a parsed tree),
//!   whose length stays within `max_metadata_bytes`; replies copy that text verbatim. A patch
//!   merges the patch's members into the stored text (`wire/merge.rs`, without a tree of the
//!   stored values), so its cost is bounded by the limit; one that would exceed it is refused
//!   and leaves the metadata unchanged.
//! - The metadata text and the allow list share `max_metadata_bytes`: the text's length plus
//!   [`AllowList::bytes`] stays within it, after a create and after every patch.
//! - Memory (64-bit): a session costs its id, name, metadata and owner bytes once each (the
//!   id is shared by the table's key, the record and every member's reverse-index entry), its
//!   allow list's ids once each plus 4 bytes per id, its metadata's index (none under 1 KiB
//!   of metadata, at most 8 bytes per 256 bytes of it and 8 more: `merge::Metadata`), plus a
//!   fixed overhead of at most about 530 bytes (the 144-byte record in a slab slot at most
//!   half empty, its 16-byte pair in an index at most three quarters empty, eight
//!   allocations, the members' first four slots); a
//!   member costs a fixed 48 bytes at most (its [`ConnId`] in the session, the shared id in
//!   the reverse index, both vectors at most half empty), plus about 150 bytes once per
//!   connection that is in any session (its reverse-index entry and vector). A member's
//!   `clientId` and `userId` are not copied: they are its connection's.
//! - Membership checks and per-client lists cost O(sessions of that client); whether two
//!   connections share a session costs O((sa + sb) · log min(sa, sb)) for connections in sa
//!   and sb sessions; member removal costs O(members of that session); an allow-list lookup
//!   O(log ids).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use serde_json::{Map, Value};
use slab::Slab;

use crate::app::ConnId;
use crate::core::errors::{ErrorCode, Refusal};
use crate::core::hash_index::HashIndex;
use crate::core::wire::merge::Metadata;

/// Largest session metadata, in bytes of JSON (PROTOCOL section 4).
pub(crate) const MAX_METADATA_BYTES: usize = 64 * 1024;

/// The metadata of a session created without any: the empty object.
pub(crate) const EMPTY_METADATA: &str = "{}";

/// The limits a [`SessionTable`] enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SessionLimits {
    /// Members of one session at most.
    pub max_clients_per_session: usize,
    /// Sessions one connection may be in at most.
    pub max_sessions_per_client: usize,
    /// Sessions in the table at most.
    pub max_sessions: usize,
    /// Largest metadata, in bytes of JSON.
    pub max_metadata_bytes: usize,
}

/// One member of a session: its connection. Its `clientId` and `userId` are the
/// connection's, looked up when the members are listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    /// The member's connection.
    pub conn: ConnId,
}

/// Who may join a session (PROTOCOL section 12).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone with the `sessions` scope.
    #[default]
    Open,
    /// Its owner, the users of its allow list, and `admin`.
    Private,
}

impl Access {
    /// The wire name: `open` or `private`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Access::Open => "open",
            Access::Private => "private",
        }
    }

    /// The access named `name`.
    pub(crate) fn named(name: &str) -> Option<Access> {
        match name {
            "open" => Some(Access::Open),
            "private" => Some(Access::Private),
            _ => None,
        }
    }
}

/// The user an operation is done for: its `userId` and whether it has the `admin` scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Viewer<'a> {
    /// The `userId` (`anonymous` for a connection that names no user).
    pub user: &'a str,
    /// Whether it has the `admin` scope.
    pub admin: bool,
}

/// A session's `allowUsers`: a set of user ids kept sorted, deduplicated, in one text with
/// the end of each id, so that it costs its ids' bytes plus 4 bytes per id and a lookup is
/// a binary search.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AllowList {
    /// The ids, sorted, one after the other.
    text: Box<str>,
    /// Where each id of `text` ends.
    ends: Box<[u32]>,
}

impl AllowList {
    /// The set of `ids` (repeats are kept once). Ids are at most `MAX_ID_BYTES` long and
    /// there are at most `max_metadata_bytes` / 4 of them, so the offsets fit.
    pub(crate) fn new<'a>(ids: impl IntoIterator<Item = &'a str>) -> AllowList {
        // Sorted by their first 8 bytes as a number first (padded with zeros, which keeps
        // the order of the strings), the whole id only on a tie: several times faster than
        // comparing strings for the short ids a long list is made of.
        let mut ids: Vec<(u64, &str)> = ids.into_iter().map(|id| (prefix(id), id)).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut text = String::with_capacity(ids.iter().map(|(_, id)| id.len()).sum());
        let mut ends = Vec::with_capacity(ids.len());
        for (_, id) in ids {
            text.push_str(id);
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        }
        AllowList {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }

    /// The `i`th id in sorted order.
    fn at(&self, i: usize) -> &str {
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1] as usize,
        };
        self.text
            .get(start..self.ends[i] as usize)
            .unwrap_or_default()
    }

    /// Whether `user` is in the set.
    pub(crate) fn contains(&self, user: &str) -> bool {
        let (mut lo, mut hi) = (0, self.ends.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.at(mid).cmp(user) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }

    /// The ids, in sorted order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.ends.len()).map(|i| self.at(i))
    }

    /// How many ids it holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// What it counts toward the metadata limit: each id's bytes plus 3 (its quotes and a
    /// comma, as in a JSON array).
    pub(crate) fn bytes(&self) -> usize {
        self.text.len() + 3 * self.ends.len()
    }
}

/// What `create` needs beside the id to make a new session.
#[derive(Debug)]
pub(crate) struct NewSession<'a> {
    /// `name`
    pub name: Option<&'a str>,
    /// `metadata`; an `Err` when the caller found it too large before reading it whole.
    pub metadata: Result<Option<Map<String, Value>>, SessionError>,
    /// `access`
    pub access: Access,
    /// `allowUsers`; an `Err` when the caller found it too large before reading it whole.
    pub allow: Result<AllowList, SessionError>,
}

/// A `session_patch`: a metadata patch and new access settings, each optional.
#[derive(Debug, Default)]
pub(crate) struct Change<'a> {
    /// The text of an object that passed `strict::check`, to merge into the metadata.
    pub patch: Option<&'a str>,
    /// A new `access`.
    pub access: Option<Access>,
    /// A new `allowUsers`; an `Err` when the caller found it too large before reading it.
    pub allow: Option<Result<AllowList, SessionError>>,
}

/// What a successful patch did.
#[derive(Debug)]
pub(crate) struct Patched {
    /// The members it removed (no longer admitted), in join order.
    pub removed: Vec<ConnId>,
    /// The session as it was left, when removing its members emptied it (it is then no
    /// longer in the table).
    pub emptied: Option<Session>,
}

/// A session: id, optional name, metadata, owner, access and members in join order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Session {
    id: Arc<str>,
    name: Option<Box<str>>,
    /// Compact JSON text of an object, with its index.
    metadata: Metadata,
    members: Vec<Member>,
    /// The `userId` that created it.
    owner: Box<str>,
    access: Access,
    /// Kept while the session is open too; it takes effect when it turns private.
    allow: AllowList,
}

impl Session {
    /// Its id.
    #[cfg(test)]
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Its name, if one was given at creation.
    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Its metadata, as the compact JSON text of an object.
    pub(crate) fn metadata(&self) -> &str {
        self.metadata.text()
    }

    /// Its members in join order.
    pub(crate) fn members(&self) -> &[Member] {
        &self.members
    }

    /// The `userId` that created it.
    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }

    /// Who may join it.
    pub(crate) fn access(&self) -> Access {
        self.access
    }

    /// Its `allowUsers`.
    #[cfg(test)]
    pub(crate) fn allow(&self) -> &AllowList {
        &self.allow
    }

    /// Whether `viewer` may join it.
    pub(crate) fn admits(&self, viewer: Viewer<'_>) -> bool {
        admits(self.access, &self.owner, &self.allow, viewer)
    }

    /// Whether `viewer` may change its access: its owner or `admin`.
    pub(crate) fn may_manage(&self, viewer: Viewer<'_>) -> bool {
        viewer.admin || *self.owner == *viewer.user
    }
}

/// Why a session operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionError {
    /// No session has that id.
    NotFound,
    /// The session has `max_clients_per_session` members.
    Full,
    /// The connection is not a member.
    NotAMember,
    /// The connection is in `max_sessions_per_client` sessions.
    ClientLimit,
    /// The table holds `max_sessions` sessions.
    TableFull,
    /// The metadata would exceed `max_metadata_bytes`.
    MetadataTooLarge,
    /// The caller's `admit` refused a new membership (`max_memberships_per_user`).
    UserLimit,
    /// `create` of the id of a private session the caller may not join.
    Taken,
    /// A change of access by someone who is neither the owner nor `admin`.
    NotOwner,
    /// The `session_info` reply would be larger than `max_message_size`.
    ReplyTooLarge,
}

impl Refusal for SessionError {
    fn code(&self) -> ErrorCode {
        match self {
            SessionError::NotFound => ErrorCode::SessionNotFound,
            SessionError::Full => ErrorCode::SessionFull,
            SessionError::NotAMember => ErrorCode::NotAMember,
            SessionError::ClientLimit
            | SessionError::TableFull
            | SessionError::MetadataTooLarge
            | SessionError::UserLimit
            | SessionError::ReplyTooLarge => ErrorCode::LimitExceeded,
            SessionError::Taken | SessionError::NotOwner => ErrorCode::Forbidden,
        }
    }

    /// A message naming the session `session_id`.
    fn message(&self, session_id: &str) -> String {
        match self {
            SessionError::NotFound => format!("Session {session_id} not found"),
            SessionError::Full => format!("Session {session_id} is full"),
            SessionError::NotAMember => format!("Not a member of session {session_id}"),
            SessionError::ClientLimit => "Too many sessions for this client".to_owned(),
            SessionError::TableFull => "Too many sessions".to_owned(),
            SessionError::MetadataTooLarge => format!(
                "Metadata and allowUsers of session {session_id} would exceed {MAX_METADATA_BYTES} bytes"
            ),
            SessionError::UserLimit => "Too many session memberships for this user".to_owned(),
            SessionError::Taken => format!("Session id {session_id} is taken"),
            SessionError::NotOwner => {
                format!("Only the owner of session {session_id} may change its access")
            }
            SessionError::ReplyTooLarge => format!(
                "The session_info of session {session_id} would exceed max_message_size"
            ),
        }
    }
}

/// What a successful create or join did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JoinOutcome {
    /// A new session was created with the caller as its only member.
    Created,
    /// The caller joined an existing session.
    Joined,
    /// The caller was already a member; nothing changed.
    AlreadyMember,
}

/// What a successful leave did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaveOutcome {
    /// The caller was not a member; nothing changed.
    NotMember,
    /// The caller left.
    Left {
        /// Whether the session was removed because it became empty.
        removed: bool,
    },
}

/// Sessions by id, with the reverse index connection → session ids.
#[derive(Debug)]
pub(crate) struct SessionTable {
    limits: SessionLimits,
    /// The sessions, found by id through `index` (a table of 100 000 sessions that grew or
    /// rehashed itself in place would stall the loop for milliseconds in one create).
    sessions: Slab<Session>,
    /// The slots of `sessions` by the keyed hash of their ids (ids are the clients').
    index: HashIndex,
    hasher: RandomState,
    by_client: HashMap<ConnId, Vec<Arc<str>>>,
}

impl SessionTable {
    /// Enforce `limits` from now on (a reload): they apply to the next create and join;
    /// sessions and memberships already above them are kept.
    pub(crate) fn set_limits(&mut self, limits: SessionLimits) {
        self.limits = limits;
    }

    /// An empty table enforcing `limits`.
    pub(crate) fn new(limits: SessionLimits) -> Self {
        SessionTable {
            limits,
            sessions: Slab::new(),
            index: HashIndex::new(),
            hasher: RandomState::new(),
            by_client: HashMap::new(),
        }
    }

    /// The slot of session `id`.
    fn slot(&self, id: &str) -> Option<usize> {
        let hash = self.hasher.hash_one(id);
        self.index.find(hash, |slot| &*self.sessions[slot].id == id)
    }

    /// Take session `id` out of the table.
    fn remove(&mut self, id: &str) -> Option<Session> {
        let slot = self.slot(id)?;
        self.index.remove(self.hasher.hash_one(id), slot);
        Some(self.sessions.remove(slot))
    }

    /// Create session `id` with `conn` as its first member and `viewer`'s user as its
    /// owner; if `id` exists, join it instead (`new` is then ignored), or, when it is a
    /// private session `viewer` may not join, refuse with [`SessionError::Taken`]. `admit`
    /// is asked last, only for a new membership.
    pub(crate) fn create(
        &mut self,
        id: &str,
        new: NewSession<'_>,
        conn: ConnId,
        viewer: Viewer<'_>,
        admit: impl FnOnce() -> bool,
    ) -> Result<(JoinOutcome, &Session), SessionError> {
        if let Some(session) = self.get(id) {
            if !self.sees(session, conn, viewer) {
                return Err(SessionError::Taken);
            }
            return self.join(id, conn, viewer, admit);
        }
        if self.sessions_of(conn).len() >= self.limits.max_sessions_per_client {
            return Err(SessionError::ClientLimit);
        }
        if self.sessions.len() >= self.limits.max_sessions {
            return Err(SessionError::TableFull);
        }
        let allow = new.allow?;
        let room = self
            .limits
            .max_metadata_bytes
            .checked_sub(allow.bytes())
            .ok_or(SessionError::MetadataTooLarge)?;
        let metadata = match new.metadata? {
            Some(map) => compact_within(&map, room)?,
            None if EMPTY_METADATA.len() <= room => EMPTY_METADATA.into(),
            None => return Err(SessionError::MetadataTooLarge),
        };
        if !admit() {
            return Err(SessionError::UserLimit);
        }
        let id: Arc<str> = id.into();
        self.by_client
            .entry(conn)
            .or_default()
            .push(Arc::clone(&id));
        let session = Session {
            id: Arc::clone(&id),
            name: new.name.map(Box::from),
            metadata: Metadata::new(metadata),
            members: vec![Member { conn }],
            owner: viewer.user.into(),
            access: new.access,
            allow,
        };
        let hash = self.hasher.hash_one(&*id);
        let slot = self.sessions.insert(session);
        self.index.insert(hash, slot);
        Ok((JoinOutcome::Created, &self.sessions[slot]))
    }

    /// Add `conn` to the existing session `id`, which `viewer` must be allowed to join
    /// ([`SessionError::NotFound`] otherwise). `admit` is asked last, only for a new
    /// membership.
    pub(crate) fn join(
        &mut self,
        id: &str,
        conn: ConnId,
        viewer: Viewer<'_>,
        admit: impl FnOnce() -> bool,
    ) -> Result<(JoinOutcome, &Session), SessionError> {
        let already = self.is_member(id, conn);
        let in_sessions = self.sessions_of(conn).len();
        let slot = self.slot(id).ok_or(SessionError::NotFound)?;
        let session = &mut self.sessions[slot];
        if already {
            return Ok((JoinOutcome::AlreadyMember, session));
        }
        if !session.admits(viewer) {
            return Err(SessionError::NotFound);
        }
        if session.members.len() >= self.limits.max_clients_per_session {
            return Err(SessionError::Full);
        }
        if in_sessions >= self.limits.max_sessions_per_client {
            return Err(SessionError::ClientLimit);
        }
        if !admit() {
            return Err(SessionError::UserLimit);
        }
        session.members.push(Member { conn });
        self.by_client
            .entry(conn)
            .or_default()
            .push(Arc::clone(&session.id));
        Ok((JoinOutcome::Joined, session))
    }

    /// Remove `conn` from session `id`; the session goes when it becomes empty.
    pub(crate) fn leave(&mut self, id: &str, conn: ConnId) -> Result<LeaveOutcome, SessionError> {
        let slot = self.slot(id).ok_or(SessionError::NotFound)?;
        let session = &mut self.sessions[slot];
        let Some(at) = session.members.iter().position(|m| m.conn == conn) else {
            return Ok(LeaveOutcome::NotMember);
        };
        session.members.remove(at);
        let removed = session.members.is_empty();
        if removed {
            self.remove(id);
        }
        self.unlist(id, conn);
        Ok(LeaveOutcome::Left { removed })
    }

    /// Take session `id` off `conn`'s reverse-index entry.
    fn unlist(&mut self, id: &str, conn: ConnId) {
        if let Some(list) = self.by_client.get_mut(&conn) {
            list.retain(|s| &**s != id);
            if list.is_empty() {
                self.by_client.remove(&conn);
            }
        }
    }

    /// Apply `change` to session `id` for `conn` acting as `viewer`. Checked in this
    /// order: the session must exist for `viewer` ([`SessionError::NotFound`]); a new
    /// `access` or allow list needs its owner or `admin` ([`SessionError::NotOwner`]); a
    /// metadata patch needs a member ([`SessionError::NotAMember`]); the merged metadata
    /// (shallow merge of `patch`, a `null` value removing the key: `wire/merge.rs`) and the
    /// allow list must fit the limit together ([`SessionError::MetadataTooLarge`]). A refused
    /// change changes nothing. Then every member that the session no longer admits, as
    /// `member` describes it (`None`: kept), is removed; the session goes with its last one.
    #[cfg(test)]
    pub(crate) fn patch<'v>(
        &mut self,
        id: &str,
        conn: ConnId,
        viewer: Viewer<'_>,
        change: Change<'_>,
        member: impl Fn(ConnId) -> Option<Viewer<'v>>,
    ) -> Result<Patched, SessionError> {
        self.patch_within(id, conn, viewer, change, member, usize::MAX)
    }

    /// [`SessionTable::patch`], where the metadata after the change must also be at most
    /// `reply_room` bytes (what the reply that carries it leaves for it), else
    /// [`SessionError::ReplyTooLarge`], checked after the metadata limit.
    pub(crate) fn patch_within<'v>(
        &mut self,
        id: &str,
        conn: ConnId,
        viewer: Viewer<'_>,
        change: Change<'_>,
        member: impl Fn(ConnId) -> Option<Viewer<'v>>,
        reply_room: usize,
    ) -> Result<Patched, SessionError> {
        let is_member = self.is_member(id, conn);
        let limit = self.limits.max_metadata_bytes;
        let session = self.get(id).ok_or(SessionError::NotFound)?;
        if !is_member && !session.admits(viewer) {
            return Err(SessionError::NotFound);
        }
        let manages = change.access.is_some() || change.allow.is_some();
        if manages && !session.may_manage(viewer) {
            return Err(SessionError::NotOwner);
        }
        if change.patch.is_some() && !is_member {
            return Err(SessionError::NotAMember);
        }
        let allow = change.allow.transpose()?;
        let allow_bytes = allow.as_ref().unwrap_or(&session.allow).bytes();
        let room = limit
            .checked_sub(allow_bytes)
            .ok_or(SessionError::MetadataTooLarge)?;
        // The stored text is what `compact_within` or `merge` wrote: a map's compact text.
        let metadata = match change.patch {
            Some(patch) => Some(
                session
                    .metadata
                    .merged(patch.as_bytes(), room)
                    .ok_or(SessionError::MetadataTooLarge)?,
            ),
            None if session.metadata().len() <= room => None,
            None => return Err(SessionError::MetadataTooLarge),
        };
        let after = metadata.as_ref().unwrap_or(&session.metadata);
        if after.text().len() > reply_room {
            return Err(SessionError::ReplyTooLarge);
        }
        let Some(session) = self.slot(id).map(|slot| &mut self.sessions[slot]) else {
            return Err(SessionError::NotFound);
        };
        if let Some(metadata) = metadata {
            session.metadata = metadata;
        }
        if let Some(access) = change.access {
            session.access = access;
        }
        if let Some(allow) = allow {
            session.allow = allow;
        }
        if !manages {
            return Ok(Patched {
                removed: Vec::new(),
                emptied: None,
            });
        }
        let mut removed = Vec::new();
        session.members.retain(|m| {
            let keep = match member(m.conn) {
                Some(v) => admits(session.access, &session.owner, &session.allow, v),
                None => true,
            };
            if !keep {
                removed.push(m.conn);
            }
            keep
        });
        let emptied = match session.members.is_empty() {
            true => self.remove(id),
            false => None,
        };
        for conn in &removed {
            self.unlist(id, *conn);
        }
        Ok(Patched { removed, emptied })
    }

    /// Largest metadata, in bytes of compact JSON.
    pub(crate) fn max_metadata_bytes(&self) -> usize {
        self.limits.max_metadata_bytes
    }

    /// The session `id`.
    pub(crate) fn get(&self, id: &str) -> Option<&Session> {
        Some(&self.sessions[self.slot(id)?])
    }

    /// The session `id`, for one of its members: [`SessionError::NotFound`] when it does not
    /// exist for `viewer`, [`SessionError::NotAMember`] when `conn` is not in it.
    pub(crate) fn of_member(
        &self,
        id: &str,
        conn: ConnId,
        viewer: Viewer<'_>,
    ) -> Result<&Session, SessionError> {
        let session = self.get(id).ok_or(SessionError::NotFound)?;
        if !self.is_member(id, conn) {
            return Err(match session.admits(viewer) {
                true => SessionError::NotAMember,
                false => SessionError::NotFound,
            });
        }
        Ok(session)
    }

    /// Whether `session` exists for `conn` acting as `viewer`: it is in it or may join it.
    fn sees(&self, session: &Session, conn: ConnId, viewer: Viewer<'_>) -> bool {
        session.admits(viewer) || self.is_member(&session.id, conn)
    }

    /// Whether `conn` is a member of session `id`.
    pub(crate) fn is_member(&self, id: &str, conn: ConnId) -> bool {
        self.sessions_of(conn).iter().any(|s| &**s == id)
    }

    /// Whether `a` and `b` are members of one same session. The ids of the sessions of the
    /// one in fewer are sorted (a transient list of references) and each session id of the
    /// other is looked up in them: O((sa + sb) · log min(sa, sb)) comparisons of ids for
    /// connections in sa and sb sessions, never sa · sb.
    pub(crate) fn share_a_session(&self, a: ConnId, b: ConnId) -> bool {
        let (of_a, of_b) = (self.sessions_of(a), self.sessions_of(b));
        let (few, many) = match of_a.len() <= of_b.len() {
            true => (of_a, of_b),
            false => (of_b, of_a),
        };
        if few.is_empty() {
            return false;
        }
        let mut sorted: Vec<&str> = few.iter().map(|id| &**id).collect();
        sorted.sort_unstable();
        many.iter().any(|id| sorted.binary_search(&&**id).is_ok())
    }

    /// The ids of the sessions `conn` is in, in the order it entered them.
    pub(crate) fn sessions_of(&self, conn: ConnId) -> &[Arc<str>] {
        self.by_client.get(&conn).map_or(&[], Vec::as_slice)
    }

    /// How many sessions exist.
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session exists.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// The first 8 bytes of `id` as a big-endian number, padded with zeros.
fn prefix(id: &str) -> u64 {
    let mut bytes = [0u8; 8];
    let n = id.len().min(8);
    bytes[..n].copy_from_slice(&id.as_bytes()[..n]);
    u64::from_be_bytes(bytes)
}

/// Whether a session of `access`, `owner` and `allow` admits `viewer`: it is open, or the
/// viewer is its owner, `admin`, or on its allow list.
fn admits(access: Access, owner: &str, allow: &AllowList, viewer: Viewer<'_>) -> bool {
    access == Access::Open || viewer.admin || owner == viewer.user || allow.contains(viewer.user)
}

/// `map` as compact JSON text, refused when longer than `limit` bytes.
fn compact_within(map: &Map<String, Value>, limit: usize) -> Result<Box<str>, SessionError> {
    match serde_json::to_string(map) {
        Ok(text) if text.len() <= limit => Ok(text.into_boxed_str()),
        _ => Err(SessionError::MetadataTooLarge),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::conn;
    use serde_json::json;

    fn limits() -> SessionLimits {
        SessionLimits {
            max_clients_per_session: 3,
            max_sessions_per_client: 2,
            max_sessions: 3,
            max_metadata_bytes: 40,
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    fn yes() -> bool {
        true
    }

    const ALICE: Viewer<'static> = Viewer {
        user: "alice",
        admin: false,
    };

    /// An open session with this name and metadata and no allow list.
    fn new<'a>(
        name: Option<&'a str>,
        metadata: Result<Option<Map<String, Value>>, SessionError>,
    ) -> NewSession<'a> {
        NewSession {
            name,
            metadata,
            access: Access::Open,
            allow: Ok(AllowList::default()),
        }
    }

    /// A metadata patch only.
    fn meta(patch: &str) -> Change<'_> {
        Change {
            patch: Some(patch),
            ..Change::default()
        }
    }

    /// No member is described: all are kept.
    fn none(_: ConnId) -> Option<Viewer<'static>> {
        None
    }

    fn members(s: &Session) -> Vec<ConnId> {
        s.members().iter().map(|m| m.conn).collect()
    }

    #[test]
    fn two_connections_share_a_session_while_both_are_in_it() {
        let mut t = SessionTable::new(SessionLimits {
            max_clients_per_session: 8,
            max_sessions_per_client: 64,
            max_sessions: 256,
            max_metadata_bytes: 40,
        });
        // conn 1 is in 40 sessions, conn 2 in 3 others, conn 3 in none.
        for i in 0..40 {
            let id = format!("a{i:02}");
            t.create(&id, new(None, Ok(None)), conn(1), ALICE, yes)
                .unwrap();
        }
        for id in ["b0", "b1", "b2"] {
            t.create(id, new(None, Ok(None)), conn(2), ALICE, yes)
                .unwrap();
        }
        let shares = |t: &SessionTable, a, b| {
            let (x, y) = (
                t.share_a_session(conn(a), conn(b)),
                t.share_a_session(conn(b), conn(a)),
            );
            assert_eq!(x, y, "symmetric");
            x
        };
        assert!(!shares(&t, 1, 2));
        assert!(!shares(&t, 1, 3));
        assert!(!shares(&t, 3, 4), "two connections in no session");
        // The last of conn 1's sessions, then the first: found whichever list is shorter.
        t.join("a39", conn(2), ALICE, yes).unwrap();
        assert!(shares(&t, 1, 2));
        t.leave("a39", conn(2)).unwrap();
        assert!(!shares(&t, 1, 2), "leaving ends it");
        t.join("b1", conn(1), ALICE, yes).unwrap();
        assert!(shares(&t, 1, 2));
        assert!(!shares(&t, 1, 3));
        // A session removed with its last member is shared by nobody; its id taken again
        // by another connection does not make the old members share it.
        t.leave("b1", conn(1)).unwrap();
        t.leave("b1", conn(2)).unwrap();
        assert!(t.get("b1").is_none());
        t.create("b1", new(None, Ok(None)), conn(3), ALICE, yes)
            .unwrap();
        assert!(!shares(&t, 1, 2));
        assert!(!shares(&t, 1, 3));
        t.join("b1", conn(2), ALICE, yes).unwrap();
        assert!(shares(&t, 2, 3));
        assert!(!shares(&t, 1, 2));
    }

    #[test]
    fn create_join_and_members_in_order() {
        let mut t = SessionTable::new(limits());
        let (outcome, s) = t
            .create(
                "r",
                new(Some("Room"), Ok(Some(obj(json!({"a":1}))))),
                conn(1),
                ALICE,
                yes,
            )
            .unwrap();
        assert_eq!(outcome, JoinOutcome::Created);
        assert_eq!(s.name(), Some("Room"));
        let (outcome, _) = t.join("r", conn(2), ALICE, yes).unwrap();
        assert_eq!(outcome, JoinOutcome::Joined);
        let (outcome, s) = t
            .create("r", new(None, Ok(None)), conn(3), ALICE, yes)
            .unwrap();
        assert_eq!(outcome, JoinOutcome::Joined);
        assert_eq!(s.metadata(), r#"{"a":1}"#);
        assert_eq!(members(s), [conn(1), conn(2), conn(3)]);
        let (outcome, s) = t.join("r", conn(2), ALICE, yes).unwrap();
        assert_eq!(outcome, JoinOutcome::AlreadyMember);
        assert_eq!(s.members().len(), 3);
        assert_eq!(
            t.join("r", conn(4), ALICE, yes).unwrap_err(),
            SessionError::Full
        );
        assert_eq!(
            t.join("nope", conn(4), ALICE, yes).unwrap_err(),
            SessionError::NotFound
        );
        assert!(t.is_member("r", conn(1)));
        assert_eq!(t.sessions_of(conn(2)), [Arc::<str>::from("r")]);
    }

    #[test]
    fn limits_refuse_without_changing_anything() {
        let mut t = SessionTable::new(limits());
        t.create("a", new(None, Ok(None)), conn(1), ALICE, yes)
            .unwrap();
        t.create("b", new(None, Ok(None)), conn(1), ALICE, yes)
            .unwrap();
        assert_eq!(
            t.create("c", new(None, Ok(None)), conn(1), ALICE, yes)
                .unwrap_err(),
            SessionError::ClientLimit
        );
        t.create("c", new(None, Ok(None)), conn(2), ALICE, yes)
            .unwrap();
        assert_eq!(
            t.join("c", conn(1), ALICE, yes).unwrap_err(),
            SessionError::ClientLimit
        );
        assert_eq!(
            t.create("d", new(None, Ok(None)), conn(3), ALICE, yes)
                .unwrap_err(),
            SessionError::TableFull
        );
        let big = obj(json!({"k":"x".repeat(64)}));
        let mut t2 = SessionTable::new(limits());
        assert_eq!(
            t2.create("m", new(None, Ok(Some(big))), conn(1), ALICE, yes)
                .unwrap_err(),
            SessionError::MetadataTooLarge
        );
        assert!(t2.is_empty());
        assert!(t2.sessions_of(conn(1)).is_empty());
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn admit_is_asked_last_and_only_for_a_new_membership() {
        let mut t = SessionTable::new(limits());
        let mut asked = 0;
        t.create("r", new(None, Ok(None)), conn(1), ALICE, || {
            asked += 1;
            true
        })
        .unwrap();
        assert_eq!(asked, 1);
        // Joining again is no new membership; a refusal of the table comes first.
        let never = || -> bool { panic!("admit asked") };
        t.join("r", conn(1), ALICE, never).unwrap();
        t.create("r", new(None, Ok(None)), conn(1), ALICE, never)
            .unwrap();
        assert_eq!(
            t.join("x", conn(2), ALICE, never).unwrap_err(),
            SessionError::NotFound
        );
        let big = obj(json!({"k":"x".repeat(64)}));
        assert_eq!(
            t.create("m", new(None, Ok(Some(big))), conn(2), ALICE, never)
                .unwrap_err(),
            SessionError::MetadataTooLarge
        );
        // A refusal by admit changes nothing.
        assert_eq!(
            t.join("r", conn(2), ALICE, || false).unwrap_err(),
            SessionError::UserLimit
        );
        assert_eq!(
            t.create("n", new(None, Ok(None)), conn(2), ALICE, || false)
                .unwrap_err(),
            SessionError::UserLimit
        );
        assert_eq!(members(t.get("r").unwrap()), [conn(1)]);
        assert!(t.get("n").is_none());
        assert!(t.sessions_of(conn(2)).is_empty());
        assert_eq!(SessionError::UserLimit.code(), ErrorCode::LimitExceeded);
    }

    #[test]
    fn leave_removes_the_last_member_and_the_session() {
        let mut t = SessionTable::new(limits());
        t.create(
            "r",
            new(None, Ok(Some(obj(json!({"a":1}))))),
            conn(1),
            ALICE,
            yes,
        )
        .unwrap();
        t.join("r", conn(2), ALICE, yes).unwrap();
        assert_eq!(t.leave("r", conn(3)).unwrap(), LeaveOutcome::NotMember);
        assert_eq!(
            t.leave("r", conn(1)).unwrap(),
            LeaveOutcome::Left { removed: false }
        );
        assert_eq!(
            t.leave("r", conn(2)).unwrap(),
            LeaveOutcome::Left { removed: true }
        );
        assert!(t.get("r").is_none());
        assert_eq!(t.leave("r", conn(2)).unwrap_err(), SessionError::NotFound);
        assert!(t.sessions_of(conn(2)).is_empty());
        t.create("r", new(None, Ok(None)), conn(2), ALICE, yes)
            .unwrap();
        assert_eq!(t.get("r").unwrap().metadata(), "{}");
    }

    #[test]
    fn patch_merges_removes_nulls_and_respects_the_limit() {
        let mut t = SessionTable::new(limits());
        t.create(
            "r",
            new(None, Ok(Some(obj(json!({"a":1,"b":2}))))),
            conn(1),
            ALICE,
            yes,
        )
        .unwrap();
        t.patch(
            "r",
            conn(1),
            ALICE,
            meta(&json!({"b":null,"c":"x"}).to_string()),
            none,
        )
        .unwrap();
        assert_eq!(t.get("r").unwrap().metadata(), r#"{"a":1,"c":"x"}"#);
        assert_eq!(
            t.patch(
                "r",
                conn(1),
                ALICE,
                meta(&json!({"d":"y".repeat(40)}).to_string()),
                none
            )
            .unwrap_err(),
            SessionError::MetadataTooLarge
        );
        assert_eq!(t.get("r").unwrap().metadata(), r#"{"a":1,"c":"x"}"#);
        assert_eq!(
            t.patch("r", conn(2), ALICE, meta(&json!({}).to_string()), none)
                .unwrap_err(),
            SessionError::NotAMember
        );
        assert_eq!(
            t.patch("x", conn(1), ALICE, meta(&json!({}).to_string()), none)
                .unwrap_err(),
            SessionError::NotFound
        );
    }

    #[test]
    fn metadata_is_kept_as_compact_text_of_at_most_the_limit() {
        let mut t = SessionTable::new(limits());
        // Exactly at the limit is accepted, one byte over is not.
        let at = obj(json!({"k":"x".repeat(32)}));
        assert_eq!(serde_json::to_string(&at).unwrap().len(), 40);
        let (_, s) = t
            .create("r", new(None, Ok(Some(at))), conn(1), ALICE, yes)
            .unwrap();
        assert_eq!(s.metadata().len(), 40);
        assert_eq!(
            t.patch(
                "r",
                conn(1),
                ALICE,
                meta(&json!({"k":"x".repeat(33)}).to_string()),
                none
            )
            .unwrap_err(),
            SessionError::MetadataTooLarge
        );
        t.patch(
            "r",
            conn(1),
            ALICE,
            meta(&json!({"k":null,"n":[1, {"a":true}]}).to_string()),
            none,
        )
        .unwrap();
        assert_eq!(t.get("r").unwrap().metadata(), r#"{"n":[1,{"a":true}]}"#);
    }

    fn user(name: &'static str) -> Viewer<'static> {
        Viewer {
            user: name,
            admin: false,
        }
    }

    const ADMIN: Viewer<'static> = Viewer {
        user: "ops",
        admin: true,
    };

    /// A private session with this allow list.
    fn private<'a>(allow: &[&str]) -> NewSession<'a> {
        NewSession {
            access: Access::Private,
            allow: Ok(AllowList::new(allow.iter().copied())),
            ..new(None, Ok(None))
        }
    }

    /// A change of the allow list only.
    fn allow<'a>(ids: &[&str]) -> Change<'a> {
        Change {
            allow: Some(Ok(AllowList::new(ids.iter().copied()))),
            ..Change::default()
        }
    }

    /// Members 1 to 4 are alice, bob, carol and ops (admin).
    fn users(conn: ConnId) -> Option<Viewer<'static>> {
        [
            None,
            Some(ALICE),
            Some(user("bob")),
            Some(user("carol")),
            Some(ADMIN),
        ]
        .get(conn.index as usize)
        .copied()
        .flatten()
    }

    #[test]
    fn allow_list_is_a_sorted_set_in_one_text() {
        let list = AllowList::new(["carol", "bob", "é", "bob", "al"]);
        assert_eq!(list.len(), 4);
        assert_eq!(
            list.bytes(),
            "al".len() + "bob".len() + "carol".len() + "é".len() + 12
        );
        let ids: Vec<&str> = (0..list.len()).map(|i| list.at(i)).collect();
        assert_eq!(ids, ["al", "bob", "carol", "é"]);
        for id in ids {
            assert!(list.contains(id), "{id}");
        }
        for other in ["", "a", "alx", "bo", "bobb", "dave", "e"] {
            assert!(!list.contains(other), "{other}");
        }
        // Ids that tie on their first 8 bytes, or that hold zero bytes, keep string order.
        let tricky = [
            "abcdefghi",
            "abcdefgh",
            "a\0b",
            "abcdefgh\0",
            "a",
            "a\0",
            "abcdefgha",
            "\u{ff}",
            "b",
        ];
        let list = AllowList::new(tricky);
        let mut sorted = tricky.to_vec();
        sorted.sort();
        let ids: Vec<&str> = (0..list.len()).map(|i| list.at(i)).collect();
        assert_eq!(ids, sorted);
        assert!(tricky.iter().all(|id| list.contains(id)));
        assert!(!list.contains("abcdefg") && !list.contains("a\0\0"));
        let empty = AllowList::default();
        assert!(!empty.contains("") && !empty.contains("a"));
        assert_eq!(empty.bytes(), 0);
    }

    #[test]
    fn a_private_session_exists_only_for_whom_it_admits() {
        let mut t = SessionTable::new(limits());
        let (outcome, s) = t
            .create("p", private(&["bob"]), conn(1), ALICE, yes)
            .unwrap();
        assert_eq!(outcome, JoinOutcome::Created);
        assert_eq!((s.owner(), s.access()), ("alice", Access::Private));
        assert!(s.allow().contains("bob"));
        // carol: not found, the id taken, leaving is a no-op; nothing is asked or changed.
        let never = || -> bool { panic!("admit asked") };
        let carol = user("carol");
        assert_eq!(
            t.join("p", conn(3), carol, never).unwrap_err(),
            SessionError::NotFound
        );
        assert_eq!(
            t.create("p", new(None, Ok(None)), conn(3), carol, never)
                .unwrap_err(),
            SessionError::Taken
        );
        assert_eq!(
            t.of_member("p", conn(3), carol).unwrap_err(),
            SessionError::NotFound
        );
        assert_eq!(
            t.patch("p", conn(3), carol, meta("{}"), none).unwrap_err(),
            SessionError::NotFound
        );
        assert_eq!(t.leave("p", conn(3)).unwrap(), LeaveOutcome::NotMember);
        assert_eq!(SessionError::Taken.code(), ErrorCode::Forbidden);
        // bob, allowed but not in it: it exists, he is not a member.
        let bob = user("bob");
        assert_eq!(
            t.of_member("p", conn(2), bob).unwrap_err(),
            SessionError::NotAMember
        );
        let (outcome, _) = t
            .create("p", new(None, Ok(None)), conn(2), bob, yes)
            .unwrap();
        assert_eq!(outcome, JoinOutcome::Joined);
        // admin joins any session; the owner on another connection too.
        t.join("p", conn(4), ADMIN, yes).unwrap();
        assert_eq!(members(t.get("p").unwrap()), [conn(1), conn(2), conn(4)]);
        let mut t2 = SessionTable::new(limits());
        t2.create("q", private(&[]), conn(1), ALICE, yes).unwrap();
        t2.join("q", conn(5), ALICE, yes).unwrap();
        assert_eq!(
            t2.join("q", conn(2), bob, yes).unwrap_err(),
            SessionError::NotFound
        );
        // An open session keeps its list and admits everyone.
        t2.create("o", new(None, Ok(None)), conn(1), ALICE, yes)
            .unwrap();
        assert_eq!(t2.get("o").unwrap().access(), Access::Open);
        t2.join("o", conn(3), carol, yes).unwrap();
    }

    #[test]
    fn only_the_owner_or_admin_changes_access() {
        let mut t = SessionTable::new(limits());
        t.create(
            "r",
            new(None, Ok(Some(obj(json!({"a":1}))))),
            conn(1),
            ALICE,
            yes,
        )
        .unwrap();
        t.join("r", conn(2), user("bob"), yes).unwrap();
        let bob_private = Change {
            patch: Some(r#"{"b":2}"#),
            access: Some(Access::Private),
            ..Change::default()
        };
        assert_eq!(
            t.patch("r", conn(2), user("bob"), bob_private, users)
                .unwrap_err(),
            SessionError::NotOwner
        );
        assert_eq!(
            t.patch("r", conn(2), user("bob"), allow(&["bob"]), users)
                .unwrap_err(),
            SessionError::NotOwner
        );
        assert_eq!(SessionError::NotOwner.code(), ErrorCode::Forbidden);
        // Refused: nothing changed, the metadata patch included.
        let s = t.get("r").unwrap();
        assert_eq!((s.access(), s.metadata()), (Access::Open, r#"{"a":1}"#));
        assert_eq!(s.allow().len(), 0);
        // The owner need not be a member to manage it, but to patch the metadata.
        t.leave("r", conn(1)).unwrap();
        t.patch("r", conn(5), ALICE, allow(&["bob"]), users)
            .unwrap();
        assert_eq!(
            t.patch("r", conn(5), ALICE, meta("{}"), users).unwrap_err(),
            SessionError::NotAMember
        );
        // The session is still open: the list is kept, and anyone may join.
        t.join("r", conn(3), user("carol"), yes).unwrap();
        assert_eq!(members(t.get("r").unwrap()), [conn(2), conn(3)]);
    }

    #[test]
    fn a_change_removes_the_members_no_longer_admitted() {
        let mut t = SessionTable::new(SessionLimits {
            max_clients_per_session: 4,
            ..limits()
        });
        t.create("r", new(None, Ok(None)), conn(1), ALICE, yes)
            .unwrap();
        t.create("x", new(None, Ok(None)), conn(3), user("carol"), yes)
            .unwrap();
        for (c, v) in [(2, user("bob")), (3, user("carol")), (4, ADMIN)] {
            t.join("r", conn(c), v, yes).unwrap();
        }
        // Turning private with only bob allowed removes carol; the admin stays.
        let change = Change {
            access: Some(Access::Private),
            allow: Some(Ok(AllowList::new(["bob"]))),
            ..Change::default()
        };
        let done = t.patch("r", conn(1), ALICE, change, users).unwrap();
        assert_eq!(done.removed, [conn(3)]);
        assert!(done.emptied.is_none());
        assert_eq!(members(t.get("r").unwrap()), [conn(1), conn(2), conn(4)]);
        assert_eq!(t.sessions_of(conn(3)), [Arc::<str>::from("x")]);
        assert_eq!(
            t.join("r", conn(3), user("carol"), yes).unwrap_err(),
            SessionError::NotFound
        );
        // Dropping bob from the list removes him; the same list again removes nobody.
        let done = t.patch("r", conn(4), ADMIN, allow(&[]), users).unwrap();
        assert_eq!(done.removed, [conn(2)]);
        assert!(t.sessions_of(conn(2)).is_empty());
        let done = t.patch("r", conn(1), ALICE, allow(&[]), users).unwrap();
        assert!(done.removed.is_empty());
        // Open again: carol may come back; the list was kept.
        let open = Change {
            access: Some(Access::Open),
            ..Change::default()
        };
        t.patch("r", conn(1), ALICE, open, users).unwrap();
        t.join("r", conn(3), user("carol"), yes).unwrap();
        // A metadata patch alone removes nobody, and a member never described is kept.
        let private = Change {
            access: Some(Access::Private),
            ..Change::default()
        };
        let done = t.patch("r", conn(1), ALICE, private, |c| match c == conn(3) {
            true => None,
            false => users(c),
        });
        assert!(done.unwrap().removed.is_empty());
    }

    #[test]
    fn removing_the_last_members_removes_the_session() {
        let mut t = SessionTable::new(limits());
        t.create(
            "r",
            new(None, Ok(Some(obj(json!({"k":"v"}))))),
            conn(2),
            user("bob"),
            yes,
        )
        .unwrap();
        t.join("r", conn(3), user("carol"), yes).unwrap();
        let private = Change {
            access: Some(Access::Private),
            ..Change::default()
        };
        // Bob owns it; an admin who is not in it turns it private with nobody else allowed...
        t.patch("r", conn(4), ADMIN, allow(&[]), users).unwrap();
        let done = t.patch("r", conn(4), ADMIN, private, users).unwrap();
        assert_eq!(done.removed, [conn(3)]);
        // ... then bob leaves and carol's is the only way back: removed with him, it goes.
        t.patch("r", conn(2), user("bob"), allow(&["carol"]), users)
            .unwrap();
        t.join("r", conn(3), user("carol"), yes).unwrap();
        t.leave("r", conn(2)).unwrap();
        let done = t.patch("r", conn(4), ADMIN, allow(&[]), users).unwrap();
        assert_eq!(done.removed, [conn(3)]);
        let gone = done.emptied.expect("emptied");
        assert_eq!((gone.owner(), gone.metadata()), ("bob", r#"{"k":"v"}"#));
        assert!(gone.members().is_empty());
        assert!(t.get("r").is_none());
        assert!(t.sessions_of(conn(3)).is_empty());
    }

    #[test]
    fn the_allow_list_counts_toward_the_metadata_limit() {
        // 40 bytes: "bob" costs 6, `{"k":"x..."}` 8 plus its value.
        let mut t = SessionTable::new(limits());
        let fits = NewSession {
            metadata: Ok(Some(obj(json!({"k":"x".repeat(26)})))),
            ..private(&["bob", "bob"])
        };
        t.create("r", fits, conn(1), ALICE, yes).unwrap();
        let over = NewSession {
            metadata: Ok(Some(obj(json!({"k":"x".repeat(27)})))),
            ..private(&["bob"])
        };
        assert_eq!(
            t.create("s", over, conn(2), user("bob"), yes).unwrap_err(),
            SessionError::MetadataTooLarge
        );
        let too_long = NewSession {
            allow: Err(SessionError::MetadataTooLarge),
            ..new(None, Ok(None))
        };
        assert_eq!(
            t.create("s", too_long, conn(2), user("bob"), yes)
                .unwrap_err(),
            SessionError::MetadataTooLarge
        );
        // A longer list, or more metadata, does not fit beside the other; nothing changes.
        assert_eq!(
            t.patch("r", conn(1), ALICE, allow(&["bob", "c"]), users)
                .unwrap_err(),
            SessionError::MetadataTooLarge
        );
        assert_eq!(
            t.patch("r", conn(1), ALICE, meta(r#"{"z":1}"#), users)
                .unwrap_err(),
            SessionError::MetadataTooLarge
        );
        let both = Change {
            patch: Some(r#"{"k":null}"#),
            allow: Some(Ok(AllowList::new(["bob", "carol"]))),
            ..Change::default()
        };
        let s = t.get("r").unwrap();
        assert_eq!((s.metadata().len(), s.allow().bytes()), (34, 6));
        // Removing the metadata makes room for the longer list in the same patch.
        t.patch("r", conn(1), ALICE, both, users).unwrap();
        let s = t.get("r").unwrap();
        assert_eq!((s.metadata(), s.allow().bytes()), ("{}", 14));
    }

    #[test]
    fn records_have_the_stated_fixed_size() {
        use std::mem::size_of;
        // The fixed overheads the header states rest on these sizes (64-bit).
        assert!(size_of::<Session>() <= 144);
        assert!(size_of::<AllowList>() <= 32);
        assert!(size_of::<Member>() <= 8);
        assert!(size_of::<Arc<str>>() <= 16);
    }

    #[test]
    fn of_member_names_the_refusal() {
        let mut t = SessionTable::new(limits());
        t.create("r", new(None, Ok(None)), conn(1), ALICE, yes)
            .unwrap();
        assert_eq!(t.of_member("r", conn(1), ALICE).map(Session::id), Ok("r"));
        assert_eq!(
            t.of_member("r", conn(2), ALICE).unwrap_err(),
            SessionError::NotAMember
        );
        assert_eq!(
            t.of_member("x", conn(1), ALICE).unwrap_err(),
            SessionError::NotFound
        );
    }

    #[test]
    fn error_codes() {
        assert_eq!(SessionError::Full.code(), ErrorCode::SessionFull);
        assert_eq!(SessionError::TableFull.code(), ErrorCode::LimitExceeded);
        assert_eq!(
            SessionError::NotFound.message("room-9"),
            "Session room-9 not found"
        );
    }
}
