//! The session table: sessions by id, their members in join order, and the reverse index
//! from a connection to the sessions it is in (PROTOCOL section 5).
//!
//! Contract:
//! - Pure data, no I/O, no clock. No input makes it panic.
//! - A session exists while it has at least one member; when its last member leaves it is
//!   removed, its metadata with it.
//! - Limits (checked in this order): joining an existing session as a new member checks
//!   `max_clients_per_session` ([`SessionError::Full`]) then `max_sessions_per_client`
//!   ([`SessionError::ClientLimit`]); creating a new session checks `max_sessions_per_client`,
//!   `max_sessions` ([`SessionError::TableFull`]) and the metadata size
//!   ([`SessionError::MetadataTooLarge`]). Last, for a new membership only, the caller's
//!   `admit` is asked (the per-user `max_memberships_per_user`, counted by the caller):
//!   `false` is [`SessionError::UserLimit`]. A refused operation changes nothing, and `admit`
//!   is called only when the operation then succeeds.
//! - Metadata is a JSON object stored as its compact JSON text (never as a parsed tree),
//!   whose length stays within `max_metadata_bytes`; replies copy that text verbatim. A patch
//!   merges the patch's members into the stored text (`wire/merge.rs`, without a tree of the
//!   stored values), so its cost is bounded by the limit; one that would exceed it is refused
//!   and leaves the metadata unchanged.
//! - Memory (64-bit): a session costs its id, name and metadata bytes once each (the id is
//!   shared by the table's key, the record and every member's reverse-index entry) plus a
//!   fixed overhead of at most about 320 bytes (the 72-byte record and its 16-byte key in a
//!   table slot at most half empty, four allocations, the members' first four slots); a
//!   member costs a fixed 48 bytes at most (its [`ConnId`] in the session, the shared id in
//!   the reverse index, both vectors at most half empty), plus about 150 bytes once per
//!   connection that is in any session (its reverse-index entry and vector). A member's
//!   `clientId` and `userId` are not copied: they are its connection's.
//! - Membership checks and per-client lists cost O(sessions of that client); member removal
//!   costs O(members of that session).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::app::ConnId;
use crate::core::errors::{ErrorCode, Refusal};
use crate::core::wire::merge;

/// Largest session metadata, in bytes of JSON (PROTOCOL section 4).
pub(crate) const MAX_METADATA_BYTES: usize = 64 * 1024;

/// The metadata of a session created without any: the empty object.
const EMPTY_METADATA: &str = "{}";

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

/// A session: id, optional name, metadata and members in join order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Session {
    id: Arc<str>,
    name: Option<Box<str>>,
    /// Compact JSON text of an object.
    metadata: Box<str>,
    members: Vec<Member>,
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
        &self.metadata
    }

    /// Its members in join order.
    pub(crate) fn members(&self) -> &[Member] {
        &self.members
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
            | SessionError::UserLimit => ErrorCode::LimitExceeded,
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
            SessionError::MetadataTooLarge => {
                format!("Metadata of session {session_id} would exceed {MAX_METADATA_BYTES} bytes")
            }
            SessionError::UserLimit => "Too many session memberships for this user".to_owned(),
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
    sessions: HashMap<Arc<str>, Session>,
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
            sessions: HashMap::new(),
            by_client: HashMap::new(),
        }
    }

    /// Create session `id` with `conn` as its first member; if `id` exists, join it
    /// instead (`name` and `metadata` are then ignored). `metadata` is an `Err` when the
    /// caller found it too large before reading it whole: refused at the metadata step.
    /// `admit` is asked last, only for a new membership.
    pub(crate) fn create(
        &mut self,
        id: &str,
        name: Option<&str>,
        metadata: Result<Option<Map<String, Value>>, SessionError>,
        conn: ConnId,
        admit: impl FnOnce() -> bool,
    ) -> Result<(JoinOutcome, &Session), SessionError> {
        if self.sessions.contains_key(id) {
            return self.join(id, conn, admit);
        }
        if self.sessions_of(conn).len() >= self.limits.max_sessions_per_client {
            return Err(SessionError::ClientLimit);
        }
        if self.sessions.len() >= self.limits.max_sessions {
            return Err(SessionError::TableFull);
        }
        let metadata = match metadata? {
            Some(map) => self.compact(&map)?,
            None => EMPTY_METADATA.into(),
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
            name: name.map(Box::from),
            metadata,
            members: vec![Member { conn }],
        };
        let session = self.sessions.entry(id).or_insert(session);
        Ok((JoinOutcome::Created, session))
    }

    /// Add `conn` to the existing session `id`. `admit` is asked last, only for a new
    /// membership.
    pub(crate) fn join(
        &mut self,
        id: &str,
        conn: ConnId,
        admit: impl FnOnce() -> bool,
    ) -> Result<(JoinOutcome, &Session), SessionError> {
        let already = self.is_member(id, conn);
        let in_sessions = self.sessions_of(conn).len();
        let session = self.sessions.get_mut(id).ok_or(SessionError::NotFound)?;
        if already {
            return Ok((JoinOutcome::AlreadyMember, session));
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
        let session = self.sessions.get_mut(id).ok_or(SessionError::NotFound)?;
        let Some(at) = session.members.iter().position(|m| m.conn == conn) else {
            return Ok(LeaveOutcome::NotMember);
        };
        session.members.remove(at);
        let removed = session.members.is_empty();
        if removed {
            self.sessions.remove(id);
        }
        if let Some(list) = self.by_client.get_mut(&conn) {
            list.retain(|s| &**s != id);
            if list.is_empty() {
                self.by_client.remove(&conn);
            }
        }
        Ok(LeaveOutcome::Left { removed })
    }

    /// Shallow-merge `patch` (the text of an object that passed `strict::check`) into the
    /// metadata of session `id` (a `null` value removes the key; `wire/merge.rs`). Only
    /// members may patch; a result over the size limit is refused.
    pub(crate) fn patch(
        &mut self,
        id: &str,
        conn: ConnId,
        patch: &str,
    ) -> Result<&Session, SessionError> {
        let member = self.is_member(id, conn);
        let limit = self.limits.max_metadata_bytes;
        let session = self.sessions.get_mut(id).ok_or(SessionError::NotFound)?;
        if !member {
            return Err(SessionError::NotAMember);
        }
        // The stored text is what `compact_within` or `merge` wrote: a map's compact text.
        session.metadata = merge::merge(&session.metadata, patch.as_bytes(), limit)
            .ok_or(SessionError::MetadataTooLarge)?;
        Ok(session)
    }

    /// Largest metadata, in bytes of compact JSON.
    pub(crate) fn max_metadata_bytes(&self) -> usize {
        self.limits.max_metadata_bytes
    }

    /// `map` as compact JSON text within the metadata limit.
    fn compact(&self, map: &Map<String, Value>) -> Result<Box<str>, SessionError> {
        compact_within(map, self.limits.max_metadata_bytes)
    }

    /// The session `id`.
    pub(crate) fn get(&self, id: &str) -> Option<&Session> {
        self.sessions.get(id)
    }

    /// The session `id`, for one of its members: [`SessionError::NotFound`] when it does not
    /// exist, [`SessionError::NotAMember`] when `conn` is not in it.
    pub(crate) fn of_member(&self, id: &str, conn: ConnId) -> Result<&Session, SessionError> {
        let session = self.sessions.get(id).ok_or(SessionError::NotFound)?;
        if !self.is_member(id, conn) {
            return Err(SessionError::NotAMember);
        }
        Ok(session)
    }

    /// Whether `conn` is a member of session `id`.
    pub(crate) fn is_member(&self, id: &str, conn: ConnId) -> bool {
        self.sessions_of(conn).iter().any(|s| &**s == id)
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

    fn members(s: &Session) -> Vec<ConnId> {
        s.members().iter().map(|m| m.conn).collect()
    }

    #[test]
    fn create_join_and_members_in_order() {
        let mut t = SessionTable::new(limits());
        let (outcome, s) = t
            .create(
                "r",
                Some("Room"),
                Ok(Some(obj(json!({"a":1})))),
                conn(1),
                yes,
            )
            .unwrap();
        assert_eq!(outcome, JoinOutcome::Created);
        assert_eq!(s.name(), Some("Room"));
        let (outcome, _) = t.join("r", conn(2), yes).unwrap();
        assert_eq!(outcome, JoinOutcome::Joined);
        let (outcome, s) = t.create("r", None, Ok(None), conn(3), yes).unwrap();
        assert_eq!(outcome, JoinOutcome::Joined);
        assert_eq!(s.metadata(), r#"{"a":1}"#);
        assert_eq!(members(s), [conn(1), conn(2), conn(3)]);
        let (outcome, s) = t.join("r", conn(2), yes).unwrap();
        assert_eq!(outcome, JoinOutcome::AlreadyMember);
        assert_eq!(s.members().len(), 3);
        assert_eq!(t.join("r", conn(4), yes).unwrap_err(), SessionError::Full);
        assert_eq!(
            t.join("nope", conn(4), yes).unwrap_err(),
            SessionError::NotFound
        );
        assert!(t.is_member("r", conn(1)));
        assert_eq!(t.sessions_of(conn(2)), [Arc::<str>::from("r")]);
    }

    #[test]
    fn limits_refuse_without_changing_anything() {
        let mut t = SessionTable::new(limits());
        t.create("a", None, Ok(None), conn(1), yes).unwrap();
        t.create("b", None, Ok(None), conn(1), yes).unwrap();
        assert_eq!(
            t.create("c", None, Ok(None), conn(1), yes).unwrap_err(),
            SessionError::ClientLimit
        );
        t.create("c", None, Ok(None), conn(2), yes).unwrap();
        assert_eq!(
            t.join("c", conn(1), yes).unwrap_err(),
            SessionError::ClientLimit
        );
        assert_eq!(
            t.create("d", None, Ok(None), conn(3), yes).unwrap_err(),
            SessionError::TableFull
        );
        let big = obj(json!({"k":"x".repeat(64)}));
        let mut t2 = SessionTable::new(limits());
        assert_eq!(
            t2.create("m", None, Ok(Some(big)), conn(1), yes)
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
        t.create("r", None, Ok(None), conn(1), || {
            asked += 1;
            true
        })
        .unwrap();
        assert_eq!(asked, 1);
        // Joining again is no new membership; a refusal of the table comes first.
        let never = || -> bool { panic!("admit asked") };
        t.join("r", conn(1), never).unwrap();
        t.create("r", None, Ok(None), conn(1), never).unwrap();
        assert_eq!(
            t.join("x", conn(2), never).unwrap_err(),
            SessionError::NotFound
        );
        let big = obj(json!({"k":"x".repeat(64)}));
        assert_eq!(
            t.create("m", None, Ok(Some(big)), conn(2), never)
                .unwrap_err(),
            SessionError::MetadataTooLarge
        );
        // A refusal by admit changes nothing.
        assert_eq!(
            t.join("r", conn(2), || false).unwrap_err(),
            SessionError::UserLimit
        );
        assert_eq!(
            t.create("n", None, Ok(None), conn(2), || false)
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
        t.create("r", None, Ok(Some(obj(json!({"a":1})))), conn(1), yes)
            .unwrap();
        t.join("r", conn(2), yes).unwrap();
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
        t.create("r", None, Ok(None), conn(2), yes).unwrap();
        assert_eq!(t.get("r").unwrap().metadata(), "{}");
    }

    #[test]
    fn patch_merges_removes_nulls_and_respects_the_limit() {
        let mut t = SessionTable::new(limits());
        t.create("r", None, Ok(Some(obj(json!({"a":1,"b":2})))), conn(1), yes)
            .unwrap();
        let s = t
            .patch("r", conn(1), &json!({"b":null,"c":"x"}).to_string())
            .unwrap();
        assert_eq!(s.metadata(), r#"{"a":1,"c":"x"}"#);
        assert_eq!(
            t.patch("r", conn(1), &json!({"d":"y".repeat(40)}).to_string())
                .unwrap_err(),
            SessionError::MetadataTooLarge
        );
        assert_eq!(t.get("r").unwrap().metadata(), r#"{"a":1,"c":"x"}"#);
        assert_eq!(
            t.patch("r", conn(2), &json!({}).to_string()).unwrap_err(),
            SessionError::NotAMember
        );
        assert_eq!(
            t.patch("x", conn(1), &json!({}).to_string()).unwrap_err(),
            SessionError::NotFound
        );
    }

    #[test]
    fn metadata_is_kept_as_compact_text_of_at_most_the_limit() {
        let mut t = SessionTable::new(limits());
        // Exactly at the limit is accepted, one byte over is not.
        let at = obj(json!({"k":"x".repeat(32)}));
        assert_eq!(serde_json::to_string(&at).unwrap().len(), 40);
        let (_, s) = t.create("r", None, Ok(Some(at)), conn(1), yes).unwrap();
        assert_eq!(s.metadata().len(), 40);
        assert_eq!(
            t.patch("r", conn(1), &json!({"k":"x".repeat(33)}).to_string())
                .unwrap_err(),
            SessionError::MetadataTooLarge
        );
        let s = t
            .patch(
                "r",
                conn(1),
                &json!({"k":null,"n":[1, {"a":true}]}).to_string(),
            )
            .unwrap();
        assert_eq!(s.metadata(), r#"{"n":[1,{"a":true}]}"#);
    }

    #[test]
    fn records_have_the_stated_fixed_size() {
        use std::mem::size_of;
        // The fixed overheads the header states rest on these sizes (64-bit).
        assert!(size_of::<Session>() <= 72);
        assert!(size_of::<Member>() <= 8);
        assert!(size_of::<Arc<str>>() <= 16);
    }

    #[test]
    fn of_member_names_the_refusal() {
        let mut t = SessionTable::new(limits());
        t.create("r", None, Ok(None), conn(1), yes).unwrap();
        assert_eq!(t.of_member("r", conn(1)).map(Session::id), Ok("r"));
        assert_eq!(
            t.of_member("r", conn(2)).unwrap_err(),
            SessionError::NotAMember
        );
        assert_eq!(
            t.of_member("x", conn(1)).unwrap_err(),
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
