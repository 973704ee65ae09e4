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
//!   ([`SessionError::MetadataTooLarge`]). A refused operation changes nothing.
//! - Metadata is a JSON object whose serialized size stays within `max_metadata_bytes`; a
//!   patch that would exceed it is refused and leaves the metadata unchanged.
//! - Membership checks and per-client lists cost O(sessions of that client); member removal
//!   costs O(members of that session).

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::app::ConnId;
use crate::core::errors::{ErrorCode, Refusal};

/// Largest session metadata, in bytes of JSON (PROTOCOL section 4).
pub(crate) const MAX_METADATA_BYTES: usize = 64 * 1024;

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

/// One member of a session; serializes as `{"clientId","userId"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Member {
    /// The member's connection.
    #[serde(skip)]
    pub conn: ConnId,
    /// Its `clientId`.
    #[serde(rename = "clientId")]
    pub client_id: String,
    /// Its `userId`.
    #[serde(rename = "userId")]
    pub user_id: String,
}

/// A session: id, optional name, metadata and members in join order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Session {
    id: String,
    name: Option<String>,
    metadata: Map<String, Value>,
    members: Vec<Member>,
}

impl Session {
    /// Its id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Its name, if one was given at creation.
    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Its metadata.
    pub(crate) fn metadata(&self) -> &Map<String, Value> {
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
}

impl Refusal for SessionError {
    fn code(&self) -> ErrorCode {
        match self {
            SessionError::NotFound => ErrorCode::SessionNotFound,
            SessionError::Full => ErrorCode::SessionFull,
            SessionError::NotAMember => ErrorCode::NotAMember,
            SessionError::ClientLimit
            | SessionError::TableFull
            | SessionError::MetadataTooLarge => ErrorCode::LimitExceeded,
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LeaveOutcome {
    /// The caller was not a member; nothing changed.
    NotMember,
    /// The caller left.
    Left {
        /// The member record that was removed.
        member: Member,
        /// Whether the session was removed because it became empty.
        removed: bool,
    },
}

/// Sessions by id, with the reverse index connection → session ids.
#[derive(Debug)]
pub(crate) struct SessionTable {
    limits: SessionLimits,
    sessions: HashMap<String, Session>,
    by_client: HashMap<ConnId, Vec<String>>,
}

impl SessionTable {
    /// An empty table enforcing `limits`.
    pub(crate) fn new(limits: SessionLimits) -> Self {
        SessionTable {
            limits,
            sessions: HashMap::new(),
            by_client: HashMap::new(),
        }
    }

    /// Create session `id` with `member` as its first member; if `id` exists, join it
    /// instead (`name` and `metadata` are then ignored).
    pub(crate) fn create(
        &mut self,
        id: &str,
        name: Option<String>,
        metadata: Option<Map<String, Value>>,
        member: Member,
    ) -> Result<(JoinOutcome, &Session), SessionError> {
        if self.sessions.contains_key(id) {
            return self.join(id, member);
        }
        if self.sessions_of(member.conn).len() >= self.limits.max_sessions_per_client {
            return Err(SessionError::ClientLimit);
        }
        if self.sessions.len() >= self.limits.max_sessions {
            return Err(SessionError::TableFull);
        }
        let metadata = metadata.unwrap_or_default();
        if json_len(&metadata) > self.limits.max_metadata_bytes {
            return Err(SessionError::MetadataTooLarge);
        }
        self.by_client
            .entry(member.conn)
            .or_default()
            .push(id.to_owned());
        let session = Session {
            id: id.to_owned(),
            name,
            metadata,
            members: vec![member],
        };
        let session = self.sessions.entry(id.to_owned()).or_insert(session);
        Ok((JoinOutcome::Created, session))
    }

    /// Add `member` to the existing session `id`.
    pub(crate) fn join(
        &mut self,
        id: &str,
        member: Member,
    ) -> Result<(JoinOutcome, &Session), SessionError> {
        let conn = member.conn;
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
        session.members.push(member);
        self.by_client.entry(conn).or_default().push(id.to_owned());
        Ok((JoinOutcome::Joined, session))
    }

    /// Remove `conn` from session `id`; the session goes when it becomes empty.
    pub(crate) fn leave(&mut self, id: &str, conn: ConnId) -> Result<LeaveOutcome, SessionError> {
        let session = self.sessions.get_mut(id).ok_or(SessionError::NotFound)?;
        let Some(at) = session.members.iter().position(|m| m.conn == conn) else {
            return Ok(LeaveOutcome::NotMember);
        };
        let member = session.members.remove(at);
        let removed = session.members.is_empty();
        if removed {
            self.sessions.remove(id);
        }
        if let Some(list) = self.by_client.get_mut(&conn) {
            list.retain(|s| s != id);
            if list.is_empty() {
                self.by_client.remove(&conn);
            }
        }
        Ok(LeaveOutcome::Left { member, removed })
    }

    /// Shallow-merge `patch` into the metadata of session `id` (a `null` value removes the
    /// key). Only members may patch; a result over the size limit is refused.
    pub(crate) fn patch(
        &mut self,
        id: &str,
        conn: ConnId,
        patch: Map<String, Value>,
    ) -> Result<&Session, SessionError> {
        let member = self.is_member(id, conn);
        let session = self.sessions.get_mut(id).ok_or(SessionError::NotFound)?;
        if !member {
            return Err(SessionError::NotAMember);
        }
        let mut merged = session.metadata.clone();
        for (key, value) in patch {
            if value.is_null() {
                merged.remove(&key);
            } else {
                merged.insert(key, value);
            }
        }
        if json_len(&merged) > self.limits.max_metadata_bytes {
            return Err(SessionError::MetadataTooLarge);
        }
        session.metadata = merged;
        Ok(session)
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
        self.sessions_of(conn).iter().any(|s| s == id)
    }

    /// The ids of the sessions `conn` is in, in the order it entered them.
    pub(crate) fn sessions_of(&self, conn: ConnId) -> &[String] {
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

/// The length of `map` serialized as JSON.
pub(crate) fn json_len(map: &Map<String, Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, map) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::conn;
    use serde_json::json;

    fn member(index: u32) -> Member {
        Member {
            conn: conn(index),
            client_id: format!("c{index}"),
            user_id: format!("u{index}"),
        }
    }

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

    #[test]
    fn create_join_and_members_in_order() {
        let mut t = SessionTable::new(limits());
        let (outcome, s) = t
            .create(
                "r",
                Some("Room".into()),
                Some(obj(json!({"a":1}))),
                member(1),
            )
            .unwrap();
        assert_eq!(outcome, JoinOutcome::Created);
        assert_eq!(s.name(), Some("Room"));
        let (outcome, _) = t.join("r", member(2)).unwrap();
        assert_eq!(outcome, JoinOutcome::Joined);
        let (outcome, s) = t.create("r", None, None, member(3)).unwrap();
        assert_eq!(outcome, JoinOutcome::Joined);
        assert_eq!(s.metadata(), &obj(json!({"a":1})));
        let ids: Vec<_> = s.members().iter().map(|m| m.client_id.as_str()).collect();
        assert_eq!(ids, ["c1", "c2", "c3"]);
        assert_eq!(
            serde_json::to_value(&s.members()[0]).unwrap(),
            json!({"clientId":"c1","userId":"u1"})
        );
        let (outcome, s) = t.join("r", member(2)).unwrap();
        assert_eq!(outcome, JoinOutcome::AlreadyMember);
        assert_eq!(s.members().len(), 3);
        assert_eq!(t.join("r", member(4)).unwrap_err(), SessionError::Full);
        assert_eq!(
            t.join("nope", member(4)).unwrap_err(),
            SessionError::NotFound
        );
        assert!(t.is_member("r", conn(1)));
        assert_eq!(t.sessions_of(conn(2)), ["r".to_owned()]);
    }

    #[test]
    fn limits_refuse_without_changing_anything() {
        let mut t = SessionTable::new(limits());
        t.create("a", None, None, member(1)).unwrap();
        t.create("b", None, None, member(1)).unwrap();
        assert_eq!(
            t.create("c", None, None, member(1)).unwrap_err(),
            SessionError::ClientLimit
        );
        t.create("c", None, None, member(2)).unwrap();
        assert_eq!(
            t.join("c", member(1)).unwrap_err(),
            SessionError::ClientLimit
        );
        assert_eq!(
            t.create("d", None, None, member(3)).unwrap_err(),
            SessionError::TableFull
        );
        let big = obj(json!({"k":"x".repeat(64)}));
        let mut t2 = SessionTable::new(limits());
        assert_eq!(
            t2.create("m", None, Some(big), member(1)).unwrap_err(),
            SessionError::MetadataTooLarge
        );
        assert!(t2.is_empty());
        assert!(t2.sessions_of(conn(1)).is_empty());
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn leave_removes_the_last_member_and_the_session() {
        let mut t = SessionTable::new(limits());
        t.create("r", None, Some(obj(json!({"a":1}))), member(1))
            .unwrap();
        t.join("r", member(2)).unwrap();
        assert_eq!(t.leave("r", conn(3)).unwrap(), LeaveOutcome::NotMember);
        match t.leave("r", conn(1)).unwrap() {
            LeaveOutcome::Left { member, removed } => {
                assert_eq!(member.client_id, "c1");
                assert!(!removed);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            t.leave("r", conn(2)).unwrap(),
            LeaveOutcome::Left { removed: true, .. }
        ));
        assert!(t.get("r").is_none());
        assert_eq!(t.leave("r", conn(2)).unwrap_err(), SessionError::NotFound);
        assert!(t.sessions_of(conn(2)).is_empty());
        t.create("r", None, None, member(2)).unwrap();
        assert!(t.get("r").unwrap().metadata().is_empty());
    }

    #[test]
    fn patch_merges_removes_nulls_and_respects_the_limit() {
        let mut t = SessionTable::new(limits());
        t.create("r", None, Some(obj(json!({"a":1,"b":2}))), member(1))
            .unwrap();
        let s = t
            .patch("r", conn(1), obj(json!({"b":null,"c":"x"})))
            .unwrap();
        assert_eq!(s.metadata(), &obj(json!({"a":1,"c":"x"})));
        assert_eq!(
            t.patch("r", conn(1), obj(json!({"d":"y".repeat(40)})))
                .unwrap_err(),
            SessionError::MetadataTooLarge
        );
        assert_eq!(t.get("r").unwrap().metadata(), &obj(json!({"a":1,"c":"x"})));
        assert_eq!(
            t.patch("r", conn(2), obj(json!({}))).unwrap_err(),
            SessionError::NotAMember
        );
        assert_eq!(
            t.patch("x", conn(1), obj(json!({}))).unwrap_err(),
            SessionError::NotFound
        );
    }

    #[test]
    fn of_member_names_the_refusal() {
        let mut t = SessionTable::new(limits());
        t.create("r", None, None, member(1)).unwrap();
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
        assert_eq!(json_len(&obj(json!({"a":1}))), 7);
    }
}
