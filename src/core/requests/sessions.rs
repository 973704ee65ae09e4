//! Handlers of the session requests (`session_create`, `session_join`, `session_leave`,
//! `session_patch`, `presence`) and of the session-scoped relay (PROTOCOL section 5).
//!
//! Contract:
//! - Replies are `session_info` with `replyTo` and the envelope's `sessionId` set to the
//!   session. `created` and `joined` carry `owner`, `access`, `members` (join order),
//!   `metadata` and, when the session has one, `name`; `left` carries only `sessionId` and
//!   `status`; `patched` carries `owner`, `access` and the whole merged `metadata`.
//! - Access (PROTOCOL section 12): every request acts as its sender's `userId` and `admin`
//!   scope ([`Viewer`]); the table decides who sees, joins and manages a session.
//!   `session_create` and `session_patch` read `access` (`open` or `private`) and
//!   `allowUsers` (an array of identifiers, `INVALID_MESSAGE` naming the field otherwise);
//!   ids counting more than the metadata limit are refused at the table's metadata step. A
//!   member removed by a change of access gets `session_info` `removed` (no `replyTo`) and
//!   goes through `after_leave` like any other end of a membership.
//! - The session is named by the payload's `sessionId` (`sessionKey` for `session_patch` and
//!   `presence`), falling back to the envelope's `sessionId`.
//! - Every actual change (create, a new member, a member leaving, a patch) adds one to
//!   `stateVersion`; a no-op (joining again, leaving a session one is not in) does not.
//! - Fan-outs (`presence`, relays, a patch's `session_info` to the others) are staged once
//!   per session and go to every member but the sender, in join order. Presence sent by the
//!   gateway (`joined`, `left`) has no `source`; presence and relays sent by a client carry
//!   `source` = its `clientId`.
//! - Bounds (PROTOCOL section 11): a session `name` and a presence `status` are at most
//!   `max_name_bytes` (`INVALID_MESSAGE` naming the field). Every membership is counted under
//!   the member's usage key as [`Resource::Memberships`]: taken when the table adds it, after
//!   the table's own checks (past `max_memberships_per_user`: `LIMIT_EXCEEDED`, `Too many
//!   session memberships for user USER`), and given back wherever a membership ends (a
//!   leave, a disconnect, a removal by a change of access: all go through `after_leave`), so
//!   the count is exact.
//! - No reply or delivery is larger than `max_message_size` (PROTOCOL section 11): a create
//!   or join whose `session_info` would be is undone (the membership, and a session it
//!   created) and refused with [`SessionError::ReplyTooLarge`]; a patch whose metadata would
//!   not fit in its `patched` reply is refused with it before anything changes; a relay whose
//!   delivery would be is `LIMIT_EXCEEDED`, sent to no one.
//! - Refusals are the table's [`SessionError`]s, as
//!   its [`Refusal`](crate::core::errors::Refusal) words them; `presence` naming a session and
//!   a relay need the session to exist (`SESSION_NOT_FOUND`) and the sender in it
//!   (`NOT_A_MEMBER`).

use serde_json::Value;

use crate::app::{Actions, ConnId};
use crate::core::auth::ANONYMOUS;
use crate::core::clients::Client;
use crate::core::events::Event;
use crate::core::outbound::{self, Reject, TooLarge};
use crate::core::sessions::{
    Access, AllowList, Change, JoinOutcome, LeaveOutcome, NewSession, Session, SessionError,
    Viewer, EMPTY_METADATA,
};
use crate::core::state::{CoreState, Req};
use crate::core::users::{Resource, UserLimit};
use crate::core::wire::compact::{compact, Budget, CompactError};
use crate::core::wire::fields::Raw;
use crate::core::wire::payloads::{
    self, AllowUsersIn, MemberOut, PresenceIn, PresenceOut, SessionCreateIn, SessionInfoOut,
    SessionPatchIn, SessionRefIn, MAX_ALLOW_BYTES,
};
use crate::core::wire::{self, strict, Head, MsgId, MAX_ID_BYTES};
use crate::core::wire::{
    check_name, opt_ident, opt_object, opt_str, Envelope, Field, FieldError, Loose,
};

/// The session a request names: the payload field, else the envelope's `sessionId`.
pub(crate) fn session_ref<'b>(
    payload_field: &'b Option<Loose<'_>>,
    name: &'static str,
    envelope: &'b Field<'_>,
) -> Result<&'b str, FieldError> {
    match opt_ident(payload_field, name)? {
        Some(id) => Ok(id),
        None => match envelope {
            Field::Absent => Err(FieldError::new(name, format!("{name} is required"))),
            _ => envelope.ident("sessionId"),
        },
    }
}

/// The user `client` acts as in the session table: its `userId` and whether it is `admin`.
fn viewer(client: &Client) -> Viewer<'_> {
    Viewer {
        user: client.user_id.as_deref().unwrap_or(ANONYMOUS),
        admin: client.scopes.is_admin(),
    }
}

/// `access`: absent or `null` is `None`; else `open` or `private`.
pub(crate) fn opt_access(value: &Option<Loose<'_>>) -> Result<Option<Access>, FieldError> {
    match opt_str(value, "access")? {
        None => Ok(None),
        Some(name) => Access::named(name)
            .map(Some)
            .ok_or_else(|| FieldError::new("access", "access must be open or private")),
    }
}

/// `allowUsers`: absent or `null` is `None`; an array of identifiers is its [`AllowList`], or
/// [`SessionError::MetadataTooLarge`] when its ids count more than the metadata limit (the
/// table refuses that at its metadata step); anything else is a field error.
pub(crate) fn opt_allow(
    value: Option<Raw<'_>>,
) -> Result<Option<Result<AllowList, SessionError>>, FieldError> {
    match value.map(AllowUsersIn::read) {
        None | Some(AllowUsersIn::Null) => Ok(None),
        Some(AllowUsersIn::Wrong(reason)) => Err(FieldError::new("allowUsers", reason)),
        Some(AllowUsersIn::Ids { bytes, .. }) if bytes > MAX_ALLOW_BYTES => {
            Ok(Some(Err(SessionError::MetadataTooLarge)))
        }
        Some(AllowUsersIn::Ids { ids, .. }) => {
            Ok(Some(Ok(AllowList::new(ids.iter().map(|id| &**id)))))
        }
    }
}

/// A member as listed: the `clientId` and `userId` of its connection.
fn member_out(client: &Client) -> MemberOut<'_> {
    MemberOut {
        client_id: &client.client_id,
        user_id: client.user_id.as_deref().unwrap_or(ANONYMOUS),
    }
}

/// The joining, leaving or disconnecting client, copied out of the client table so that the
/// other tables can change while it is used.
struct Who {
    conn: ConnId,
    client_id: String,
    user_id: String,
    /// Its usage key (`Client::usage_key`), which its memberships are counted under.
    key: String,
    /// Whether it has the `admin` scope.
    admin: bool,
}

impl Who {
    fn of(client: &Client) -> Who {
        Who {
            conn: client.conn,
            client_id: client.client_id.clone(),
            user_id: member_out(client).user_id.to_owned(),
            key: client.usage_key().to_owned(),
            admin: client.scopes.is_admin(),
        }
    }

    /// The user it acts as in the session table.
    fn viewer(&self) -> Viewer<'_> {
        Viewer {
            user: &self.user_id,
            admin: self.admin,
        }
    }

    /// The refusal of a create or join: the table's, or the per-user bound naming the user.
    fn refused(&self, error: SessionError, session_id: &str) -> Reject {
        match error {
            SessionError::UserLimit => {
                Reject::refused(&UserLimit(Resource::Memberships), &self.user_id)
            }
            error => Reject::refused(&error, session_id),
        }
    }
}

/// Reply to `req` with the `session_info` for `session_id` with `status`, its members (join
/// order) and metadata; nothing is sent when that reply would be larger than
/// `max_message_size`.
fn reply_info(
    state: &mut CoreState,
    out: &mut Actions<Event>,
    req: &Req<'_>,
    session_id: &str,
    status: &'static str,
) -> Result<(), TooLarge> {
    let Some(session) = state.sessions.get(session_id) else {
        return Ok(());
    };
    let members: Vec<MemberOut<'_>> = session
        .members()
        .iter()
        .filter_map(|m| state.clients.get(m.conn))
        .map(member_out)
        .collect();
    let payload = SessionInfoOut {
        session_id,
        status,
        name: session.name(),
        owner: Some(session.owner()),
        access: Some(session.access().name()),
        members: Some(&members),
        metadata: Some(session.metadata()),
    };
    let head = Head::new("session_info", req.ts)
        .reply_to(req.id)
        .session(session_id);
    let max = state.config.max_message_size;
    outbound::send_within(out, &mut state.metrics, req.conn, &head, max, |buf| {
        payload.write(buf)
    })
    .map(drop)
}

/// The smallest `max_message_size` in which every `session_create` without metadata is
/// answered (PROTOCOL section 11): its `session_info` `created` with every identifier (the
/// request's `id`, `sessionId`, the owner, the member's `clientId` and `userId`) at
/// [`MAX_ID_BYTES`] and a `name` of `max_name_bytes`, none of them needing an escape.
pub(crate) fn smallest_max_message_size(max_name_bytes: usize) -> usize {
    let id = "i".repeat(MAX_ID_BYTES);
    let member = [MemberOut {
        client_id: &id,
        user_id: &id,
    }];
    let payload = SessionInfoOut {
        session_id: &id,
        status: "created",
        name: Some(""),
        owner: Some(&id),
        access: Some(Access::Private.name()),
        members: Some(&member),
        metadata: Some(EMPTY_METADATA),
    };
    let mut buf = Vec::new();
    payload.write(&mut buf);
    let head = Head {
        msg_type: "session_info",
        id: MsgId::Generated(u64::MAX),
        timestamp: u64::MAX,
        reply_to: Some(&id),
        session_id: Some(&id),
        source: None,
    };
    wire::envelope_len(&head, buf.len()).saturating_add(max_name_bytes)
}

/// The other members of `session`.
fn others(session: &Session, me: ConnId) -> impl Iterator<Item = ConnId> + '_ {
    session
        .members()
        .iter()
        .map(|m| m.conn)
        .filter(move |c| *c != me)
}

/// Send `presence` with `status` about `who` to the other members of `session_id`.
fn announce(
    state: &mut CoreState,
    out: &mut Actions<Event>,
    session_id: &str,
    who: &Who,
    status: &str,
    ts: u64,
) {
    let Some(session) = state.sessions.get(session_id) else {
        return;
    };
    let payload = PresenceOut {
        client_id: &who.client_id,
        user_id: &who.user_id,
        status,
        session_id,
        timestamp: ts,
    };
    let head = Head::new("presence", ts).session(session_id);
    outbound::fan_out(
        out,
        &mut state.metrics,
        others(session, who.conn),
        &head,
        wire::ser(&payload),
    );
}

/// Reply to a create or join and tell the others. A reply that would be larger than
/// `max_message_size` undoes the membership just taken (and the session just created) and
/// refuses the request with [`SessionError::ReplyTooLarge`].
fn after_join(
    state: &mut CoreState,
    req: &Req<'_>,
    out: &mut Actions<Event>,
    session_id: &str,
    outcome: JoinOutcome,
    who: Who,
) -> Result<(), Reject> {
    let status = match outcome {
        JoinOutcome::Created => "created",
        JoinOutcome::Joined | JoinOutcome::AlreadyMember => "joined",
    };
    if reply_info(state, out, req, session_id, status).is_err() {
        if outcome != JoinOutcome::AlreadyMember {
            let _ = state.sessions.leave(session_id, who.conn);
            state.users.release(&who.key, Resource::Memberships);
        }
        return Err(Reject::refused(&SessionError::ReplyTooLarge, session_id));
    }
    let event = match outcome {
        JoinOutcome::AlreadyMember => return Ok(()),
        JoinOutcome::Created => Event::SessionCreated {
            session_id: session_id.to_owned(),
            client_id: who.client_id,
        },
        JoinOutcome::Joined => {
            announce(state, out, session_id, &who, "joined", req.ts);
            Event::SessionJoined {
                session_id: session_id.to_owned(),
                client_id: who.client_id,
            }
        }
    };
    state.state_version += 1;
    out.emit(event);
    Ok(())
}

/// Whether `raw` is an object whose compact text is longer than `limit`, found without
/// reading it into a tree (and without compacting it unless its text is that long).
fn oversized(raw: Raw<'_>, limit: usize) -> bool {
    let text = raw.get().as_bytes();
    if text.len() <= limit || !text.starts_with(b"{") {
        return false;
    }
    let mut out = Vec::new();
    let mut budget = Budget {
        out: &mut out,
        max: limit,
    };
    matches!(compact(text, &mut budget), Err(CompactError::TooLarge))
}

/// `session_create`'s `metadata` read as a value, after the checks of a relayed payload
/// (PROTOCOL section 11) when it is an object: a key twice in one object, nesting too deep, a
/// lone surrogate or a number out of range is `INVALID_MESSAGE` naming `metadata`.
pub(crate) fn read_metadata(raw: Option<Raw<'_>>) -> Result<Option<Value>, FieldError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let text = raw.get();
    if text.starts_with('{') {
        strict::check_field(text.as_bytes(), "metadata")?;
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| FieldError::new("metadata", format!("metadata: {e}")))
}

/// `session_create` → `session_info` `created` (or `joined` for an existing id).
/// Metadata whose compact text is over the limit is refused as too large at the table's
/// metadata step without being read into a tree; any other is read as before.
pub(crate) fn create(
    state: &mut CoreState,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let limit = state.sessions.max_metadata_bytes();
    let raw: SessionCreateIn<'_, Raw<'_>> = payloads::parse(env)?;
    // Only a payload longer than the limit can hold metadata over it; `None` for metadata
    // too large to read.
    let too_large = env.payload.len() > limit && raw.metadata.is_some_and(|m| oversized(m, limit));
    let metadata = match too_large {
        true => None,
        false => Some(read_metadata(raw.metadata)?),
    };
    let (session_id, name, access, allow) = (raw.session_id, raw.name, raw.access, raw.allow_users);
    let session_id = match opt_ident(&session_id, "sessionId")? {
        Some(id) => id.to_owned(),
        None => format!("session-{}", uuid::Uuid::new_v4()),
    };
    let name = opt_str(&name, "name")?
        .map(|name| check_name(name, "name", state.config.max_name_bytes))
        .transpose()?;
    let metadata = match metadata {
        Some(value) => Ok(opt_object(value, "metadata")?),
        None => Err(SessionError::MetadataTooLarge),
    };
    let new = NewSession {
        name,
        metadata,
        access: opt_access(&access)?.unwrap_or_default(),
        allow: opt_allow(allow)?.unwrap_or_else(|| Ok(AllowList::default())),
    };
    let Some(who) = state.clients.get(req.conn).map(Who::of) else {
        return Ok(());
    };
    let users = &mut state.users;
    let admit = || users.try_add(&who.key, Resource::Memberships).is_ok();
    let outcome = state
        .sessions
        .create(&session_id, new, req.conn, who.viewer(), admit)
        .map_err(|e| who.refused(e, &session_id))?
        .0;
    after_join(state, req, out, &session_id, outcome, who)
}

/// `session_join` → `session_info` `joined`.
pub(crate) fn join(
    state: &mut CoreState,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let p: SessionRefIn<'_> = payloads::parse(env)?;
    let session_id = session_ref(&p.session_id, "sessionId", &env.session_id)?;
    let Some(who) = state.clients.get(req.conn).map(Who::of) else {
        return Ok(());
    };
    let users = &mut state.users;
    let admit = || users.try_add(&who.key, Resource::Memberships).is_ok();
    let outcome = state
        .sessions
        .join(session_id, req.conn, who.viewer(), admit)
        .map_err(|e| who.refused(e, session_id))?
        .0;
    after_join(state, req, out, session_id, outcome, who)
}

/// `session_leave` → `session_info` `left`.
pub(crate) fn leave(
    state: &mut CoreState,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let p: SessionRefIn<'_> = payloads::parse(env)?;
    let session_id = session_ref(&p.session_id, "sessionId", &env.session_id)?;
    let Some(who) = state.clients.get(req.conn).map(Who::of) else {
        return Ok(());
    };
    let outcome = state
        .sessions
        .leave(session_id, req.conn)
        .map_err(|e| Reject::refused(&e, session_id))?;
    let head = Head::new("session_info", req.ts)
        .reply_to(req.id)
        .session(session_id);
    let payload = SessionInfoOut {
        session_id,
        status: "left",
        name: None,
        owner: None,
        access: None,
        members: None,
        metadata: None,
    };
    outbound::send(out, &mut state.metrics, req.conn, &head, |buf| {
        payload.write(buf)
    });
    if let LeaveOutcome::Left { removed } = outcome {
        after_leave(state, out, session_id, &who, removed, req.ts);
    }
    Ok(())
}

/// A membership of `who` ended: give it back, tell the others, count the change and emit the
/// event. Every path that ends a membership comes here.
fn after_leave(
    state: &mut CoreState,
    out: &mut Actions<Event>,
    session_id: &str,
    who: &Who,
    removed: bool,
    ts: u64,
) {
    state.users.release(&who.key, Resource::Memberships);
    state.state_version += 1;
    if !removed {
        announce(state, out, session_id, who, "left", ts);
    }
    out.emit(Event::SessionLeft {
        session_id: session_id.to_owned(),
        client_id: who.client_id.clone(),
    });
}

/// Leave every session `client` is in (its connection closed; it is no longer in the client
/// table).
pub(crate) fn leave_all(state: &mut CoreState, client: &Client, ts: u64, out: &mut Actions<Event>) {
    let who = Who::of(client);
    let ids = state.sessions.sessions_of(who.conn).to_vec();
    for session_id in ids {
        if let Ok(LeaveOutcome::Left { removed }) = state.sessions.leave(&session_id, who.conn) {
            after_leave(state, out, &session_id, &who, removed, ts);
        }
    }
}

/// The bytes of metadata that the `session_info` `patched` reply to `req` can carry within
/// `max_message_size` (counted with the longer access name and the longest generated id).
pub(crate) fn patched_room(
    max_message_size: usize,
    owner: &str,
    session_id: &str,
    req_id: &str,
    ts: u64,
) -> usize {
    let payload = SessionInfoOut {
        session_id,
        status: "patched",
        name: None,
        owner: Some(owner),
        access: Some(Access::Private.name()),
        members: None,
        metadata: Some(""),
    };
    let mut buf = Vec::new();
    payload.write(&mut buf);
    let head = Head {
        msg_type: "session_info",
        id: MsgId::Generated(u64::MAX),
        timestamp: ts,
        reply_to: Some(req_id),
        session_id: Some(session_id),
        source: None,
    };
    let beside = wire::envelope_len(&head, buf.len());
    max_message_size.saturating_sub(beside)
}

/// `session_patch` → `session_info` `patched`, the same to the other members. A change of
/// `access` or `allowUsers` first removes the members it no longer admits: each gets
/// `session_info` `removed`, and the others presence `left`, as for a leave.
pub(crate) fn patch(
    state: &mut CoreState,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let p: SessionPatchIn<'_> = payloads::parse(env)?;
    let session_id = session_ref(&p.session_key, "sessionKey", &env.session_id)?;
    let patch = match p.patch.map(|raw| raw.get()) {
        None => None,
        Some(text) if text.starts_with('{') => Some(text),
        Some(_) => return Err(FieldError::new("patch", "patch must be an object").into()),
    };
    let access = opt_access(&p.access)?;
    let allow = opt_allow(p.allow_users)?;
    if patch.is_none() && access.is_none() && allow.is_none() {
        return Err(FieldError::new("patch", "patch is required").into());
    }
    let Some(client) = state.clients.get(req.conn) else {
        return Ok(());
    };
    let clients = &state.clients;
    let change = Change {
        patch,
        access,
        allow,
    };
    let owner = state.sessions.get(session_id).map_or("", |s| s.owner());
    let room = patched_room(
        state.config.max_message_size,
        owner,
        session_id,
        req.id,
        req.ts,
    );
    let patched = state
        .sessions
        .patch_within(
            session_id,
            req.conn,
            viewer(client),
            change,
            |conn| clients.get(conn).map(viewer),
            room,
        )
        .map_err(|e| Reject::refused(&e, session_id))?;
    state.state_version += 1;
    let emptied = patched.emptied.is_some();
    for conn in patched.removed {
        let Some(who) = state.clients.get(conn).map(Who::of) else {
            continue;
        };
        let notice = SessionInfoOut {
            session_id,
            status: "removed",
            name: None,
            owner: None,
            access: None,
            members: None,
            metadata: None,
        };
        let head = Head::new("session_info", req.ts).session(session_id);
        outbound::send(out, &mut state.metrics, conn, &head, |buf| {
            notice.write(buf)
        });
        after_leave(state, out, session_id, &who, emptied, req.ts);
    }
    let Some(session) = state.sessions.get(session_id).or(patched.emptied.as_ref()) else {
        return Ok(());
    };
    let payload = SessionInfoOut {
        session_id,
        status: "patched",
        name: None,
        owner: Some(session.owner()),
        access: Some(session.access().name()),
        members: None,
        metadata: Some(session.metadata()),
    };
    let head = Head::new("session_info", req.ts).session(session_id);
    outbound::send(
        out,
        &mut state.metrics,
        req.conn,
        &head.reply_to(req.id),
        |buf| payload.write(buf),
    );
    let head = Head::new("session_info", req.ts).session(session_id);
    outbound::fan_out(
        out,
        &mut state.metrics,
        others(session, req.conn),
        &head,
        |buf| payload.write(buf),
    );
    Ok(())
}

/// A `presence`'s `status` (non-empty, within `max_name_bytes`, not one of the gateway's
/// own) and the session it names, if it names one: `sessionKey`, else the envelope's
/// `sessionId`.
pub(crate) fn read_presence<'p>(
    state: &CoreState,
    p: &'p PresenceIn<'_>,
    env: &'p Envelope<'_>,
) -> Result<(&'p str, Option<&'p str>), Reject> {
    let status = opt_str(&p.status, "status")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| FieldError::new("status", "status is required"))?;
    let status = check_name(status, "status", state.config.max_name_bytes)?;
    if status == "joined" || status == "left" {
        return Err(FieldError::new(
            "status",
            format!("status {status} is reserved for the gateway"),
        )
        .into());
    }
    let key = match opt_ident(&p.session_key, "sessionKey")? {
        Some(key) => Some(key),
        None => env.session_id.opt_ident("sessionId")?,
    };
    Ok((status, key))
}

/// `presence`: fanned out to the other members of one session or of every session the
/// sender is in.
pub(crate) fn presence(
    state: &mut CoreState,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let p: PresenceIn<'_> = payloads::parse(env)?;
    let (status, key) = read_presence(state, &p, env)?;
    let Some(client) = state.clients.get(req.conn) else {
        return Ok(());
    };
    let user_id = client.user_id.as_deref().unwrap_or(ANONYMOUS);
    let targets: Vec<&str> = match key {
        Some(key) => {
            state
                .sessions
                .of_member(key, req.conn, viewer(client))
                .map_err(|e| Reject::refused(&e, key))?;
            vec![key]
        }
        None => state
            .sessions
            .sessions_of(req.conn)
            .iter()
            .map(|id| &**id)
            .collect(),
    };
    for session_id in targets {
        let Some(session) = state.sessions.get(session_id) else {
            continue;
        };
        let payload = PresenceOut {
            client_id: &client.client_id,
            user_id,
            status,
            session_id,
            timestamp: req.ts,
        };
        let head = Head::new("presence", req.ts)
            .session(session_id)
            .source(&client.client_id);
        outbound::fan_out(
            out,
            &mut state.metrics,
            others(session, req.conn),
            &head,
            wire::ser(&payload),
        );
    }
    Ok(())
}

/// A relayed type: to the other members of the envelope's session, same `type`,
/// `payload` and `sessionId`, a new `id`, `source` set. One whose delivery would be larger
/// than `max_message_size` is `LIMIT_EXCEEDED`, delivered to no one.
pub(crate) fn relay(
    state: &mut CoreState,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let session_id = env.session_id.ident("sessionId")?;
    let Some(client) = state.clients.get(req.conn) else {
        return Ok(());
    };
    let session = state
        .sessions
        .of_member(session_id, req.conn, viewer(client))
        .map_err(|e| Reject::refused(&e, session_id))?;
    let head = Head::new(&env.msg_type, req.ts)
        .session(session_id)
        .source(&client.client_id);
    outbound::check_delivery(&head, env.payload.len(), state.config.max_message_size)?;
    outbound::fan_out(
        out,
        &mut state.metrics,
        others(session, req.conn),
        &head,
        wire::raw(env.payload),
    );
    Ok(())
}
