//! Sessions across nodes (PROTOCOL sections 5 and 13): create, join, leave, relays and
//! presence, with members on any node, in one order for everyone: Redis's.
//!
//! Contract:
//! - Membership changes are made by the `JOIN` and `LEAVE` scripts, which publish the
//!   change on the session's channel; relays and presence are published on it directly.
//!   Every node with a member in a session keeps a [`Mirror`] of its members, changed only by
//!   the channel's events, so that every node sees the same members at the same point of the
//!   channel: a relay is delivered when its sender is a member at its point, to the members
//!   on this node at that point (never to the sender, and never to one who has left).
//! - Deliveries come only from the channel, even to members on the sending node.
//! - A join subscribes to the session's channel first, waits for Redis to confirm it, then
//!   runs the script; the joiner's reply (`session_info` with the members as of its join)
//!   goes out once both the script's reply and its own join event have arrived, and what the
//!   channel carries after that event reaches it after the reply. A mirror that is new on
//!   this node starts at the joiner's event: what came before it on the channel is history
//!   the script's reply already holds. A reply that would pass `max_message_size` is
//!   `LIMIT_EXCEEDED` instead, and the membership the script took is given back with a
//!   leave (the others see the join and then the leave).
//! - Every membership change has a number (in its event). A mirror whose channel was
//!   subscribed again (the broker's link was lost, and what the channel carried meanwhile
//!   with it), or whose numbers show a gap, reads its members again (`MEMBERS`, with the
//!   number of the last change): the mirror takes them when they are newer than what it
//!   holds, each difference reaching the members here as presence, and skips the events the
//!   read already holds. A join still waiting for its event when the broker goes down fails
//!   with `UNAVAILABLE`, its membership removed when the broker is back.
//! - `max_clients_per_session`, `max_sessions` and `max_memberships_per_user` are checked in
//!   the script, so they hold cluster-wide under concurrent joins; `max_sessions_per_client`
//!   is checked here (a connection's memberships are all on its node).
//! - Channel events are one JSON line (`{"e":"join"|"leave"|"relay",...}`), followed for a
//!   relay by a newline and the message as its receivers get it, written once by the sender's
//!   node.

use std::time::Instant;

use serde::Deserialize;

use super::mirror::{Joining, Member, Mirror, PendingJoin, PendingLeave, Repair, Snapshot};
use super::node::{Cluster, Op, PendingPublish};
use super::reply::{self, json_str, unavailable};
use crate::app::{Actions, ConnId};
use crate::cluster::resp::Reply;
use crate::cluster::scripts::{self, Refused};
use crate::core::auth::ANONYMOUS;
use crate::core::errors::ErrorCode;
use crate::core::events::Event;
use crate::core::outbound::{self, Reject, TooLarge};
use crate::core::requests::sessions::{opt_access, opt_allow, read_metadata, read_presence};
use crate::core::sessions::{Access, AllowList, SessionError};
use crate::core::state::{CoreState, Req, CLOSE_POLICY, REASON_SLOW_CONSUMER};
use crate::core::users::{Resource, UserLimit};
use crate::core::wire::fields::Raw;
use crate::core::wire::payloads::{
    self, MemberOut, PresenceIn, PresenceOut, SessionCreateIn, SessionInfoOut, SessionRefIn,
};
use crate::core::wire::{self, check_name, opt_ident, opt_str, Envelope, FieldError, Head};

/// A channel event's first line.
#[derive(Deserialize)]
struct EventHead {
    e: String,
    c: String,
    #[serde(default)]
    u: Option<String>,
    /// The number of a membership change (joins and leaves).
    #[serde(default)]
    q: Option<u64>,
    /// A patch's access (`open` or `private`).
    #[serde(default)]
    a: Option<String>,
}

fn session_key(cl: &Cluster, session_id: &str) -> Vec<u8> {
    cl.session_channel(session_id)
}

fn suffixed(base: &[u8], suffix: &[u8]) -> Vec<u8> {
    let mut key = base.to_vec();
    key.extend_from_slice(suffix);
    key
}

/// The session id of a request's payload field or envelope.
fn named_session<'b>(
    field: &'b Option<wire::Loose<'_>>,
    env: &'b Envelope<'_>,
) -> Result<&'b str, FieldError> {
    match opt_ident(field, "sessionId")? {
        Some(id) => Ok(id),
        None => match &env.session_id {
            wire::Field::Absent => Err(FieldError::new("sessionId", "sessionId is required")),
            other => other.ident("sessionId"),
        },
    }
}

/// Memberships and joins of `conn` on this node.
fn memberships_of(cl: &Cluster, conn: ConnId) -> usize {
    cl.sessions
        .values()
        .filter(|m| {
            m.local_member(conn).is_some()
                || m.joining.values().any(|j| j.pending.conn == conn)
                || m.waiting_subscribe.iter().any(|p| p.conn == conn)
        })
        .count()
}

/// `session_create` and `session_join` in a cluster.
pub(crate) fn join(
    state: &mut CoreState,
    cl: &mut Cluster,
    req: &Req<'_>,
    env: &Envelope<'_>,
    create: bool,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let (session_id, name, meta, access, allow) = if create {
        let p: SessionCreateIn<'_, Raw<'_>> = payloads::parse(env)?;
        let metadata = read_metadata(p.metadata)?;
        let session_id = match opt_ident(&p.session_id, "sessionId")? {
            Some(id) => id.to_owned(),
            None => format!("session-{}", uuid::Uuid::new_v4()),
        };
        let name = opt_str(&p.name, "name")?
            .map(|n| check_name(n, "name", state.config.max_name_bytes))
            .transpose()?
            .unwrap_or("")
            .to_owned();
        let access = opt_access(&p.access)?.unwrap_or_default();
        let allow = match opt_allow(p.allow_users)? {
            None => AllowList::default(),
            Some(Ok(allow)) => allow,
            Some(Err(e)) => return Err(Reject::refused(&e, &session_id)),
        };
        let meta = match wire::opt_object(metadata, "metadata")? {
            Some(value) => serde_json::to_string(&value).unwrap_or_default(),
            None => String::new(),
        };
        if meta.len() + allow.bytes() > state.sessions.max_metadata_bytes() {
            return Err(Reject::refused(
                &SessionError::MetadataTooLarge,
                &session_id,
            ));
        }
        (session_id, name, meta, access, allow)
    } else {
        let p: SessionRefIn<'_> = payloads::parse(env)?;
        let session_id = named_session(&p.session_id, env)?.to_owned();
        (
            session_id,
            String::new(),
            String::new(),
            Access::default(),
            AllowList::default(),
        )
    };
    let Some(client) = state.clients.get(req.conn) else {
        return Ok(());
    };
    if let Some(mirror) = cl.sessions.get(&session_id) {
        if mirror.local_member(req.conn).is_some_and(|m| m.live) {
            // Joining again: the session as this node sees it.
            let members: Vec<(String, String)> = mirror
                .members
                .iter()
                .map(|m| (m.client_id.clone(), m.user_id.clone()))
                .collect();
            let snapshot = Snapshot {
                status: "joined",
                name: String::new(),
                owner: String::new(),
                access: "open".into(),
                meta: String::new(),
                seq: mirror.seq,
                members,
            };
            return reply_joined(state, req.conn, req.id, &session_id, &snapshot, req.ts, out)
                .map_err(|_| Reject::refused(&SessionError::ReplyTooLarge, &session_id));
        }
    }
    if memberships_of(cl, req.conn) >= state.config.max_sessions_per_client {
        return Err(Reject::refused(&SessionError::ClientLimit, &session_id));
    }
    if !cl.is_serving() {
        return Err(unavailable());
    }
    let pending = PendingJoin {
        conn: req.conn,
        req_id: req.id.to_owned(),
        session_id: session_id.clone(),
        client_id: client.client_id.clone(),
        user_id: client
            .user_id
            .clone()
            .unwrap_or_else(|| ANONYMOUS.to_owned()),
        usage_key: client.usage_key().to_owned(),
        create,
        name,
        meta,
        ts: req.ts,
        admin: client.scopes.is_admin(),
        access: access.name(),
        allow: allow
            .iter()
            .map(|id| String::from_utf8(json_str(id)).unwrap_or_default())
            .collect(),
    };
    cl.hold(req.conn);
    let channel = session_key(cl, &session_id);
    let mirror = cl.sessions.entry(session_id).or_default();
    if mirror.subscribed {
        send_join(state, cl, pending, req.now, out);
    } else {
        mirror.waiting_subscribe.push(pending);
        cl.broker.subscribe(&channel, out);
    }
    Ok(())
}

/// Redis confirmed a session channel: send the joins that waited for it.
pub(crate) fn on_subscribed(
    state: &mut CoreState,
    cl: &mut Cluster,
    channel: &[u8],
    now: Instant,
    out: &mut Actions<Event>,
) {
    let Some(session_id) = session_of_channel(cl, channel) else {
        return;
    };
    let Some(mirror) = cl.sessions.get_mut(&session_id) else {
        return;
    };
    mirror.subscribed = true;
    let waiting = std::mem::take(&mut mirror.waiting_subscribe);
    for pending in waiting {
        send_join(state, cl, pending, now, out);
    }
}

fn session_of_channel(cl: &Cluster, channel: &[u8]) -> Option<String> {
    let prefix = suffixed(&cl.key(&[b"s"]), b":{");
    let rest = channel
        .strip_prefix(prefix.as_slice())?
        .strip_suffix(b"}")?;
    String::from_utf8(rest.to_vec()).ok()
}

/// The bounds a join is checked against in the script: `max_clients_per_session`,
/// `max_sessions`, `max_memberships_per_user`.
type JoinBounds = [String; 3];

/// Run the `JOIN` script for `pending` under `tag`, within `bounds`, the session owned by
/// `owner` (as JSON; empty: the joiner) when it creates it; false when the broker refused it.
fn eval_join(
    cl: &mut Cluster,
    tag: u64,
    pending: &PendingJoin,
    bounds: &JoinBounds,
    owner: &[u8],
    now: Instant,
    out: &mut Actions<Event>,
) -> bool {
    let skey = session_key(cl, &pending.session_id);
    let keys = [
        skey.clone(),
        suffixed(&skey, b":m"),
        suffixed(&skey, b":u"),
        cl.key(&[b"sessions"]),
        cl.key(&[b"u", pending.usage_key.as_bytes()]),
        cl.key(&[b"n", cl.node.as_bytes(), b"m"]),
    ];
    let uid = json_str(&pending.user_id);
    let mut event = b"{\"e\":\"join\",\"c\":".to_vec();
    event.extend_from_slice(&json_str(&pending.client_id));
    event.extend_from_slice(b",\"u\":");
    event.extend_from_slice(&uid);
    event.extend_from_slice(b",\"q\":");
    let sidj = json_str(&pending.session_id);
    let mode: &[u8] = if pending.create { b"create" } else { b"join" };
    let admin: &[u8] = if pending.admin { b"1" } else { b"0" };
    let node = cl.node.clone();
    let mut args: Vec<&[u8]> = vec![
        mode,
        pending.session_id.as_bytes(),
        pending.client_id.as_bytes(),
        &uid,
        node.as_bytes(),
        bounds[0].as_bytes(),
        bounds[1].as_bytes(),
        bounds[2].as_bytes(),
        pending.name.as_bytes(),
        pending.meta.as_bytes(),
        pending.access.as_bytes(),
        &skey,
        &event,
        pending.usage_key.as_bytes(),
        &sidj,
        admin,
        owner,
    ];
    args.extend(pending.allow.iter().map(|id| id.as_bytes()));
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    cl.broker
        .eval(tag, scripts::JOIN_INDEX, &keys, &args, now, out)
}

fn send_join(
    state: &mut CoreState,
    cl: &mut Cluster,
    pending: PendingJoin,
    now: Instant,
    out: &mut Actions<Event>,
) {
    let bounds = [
        state.config.max_clients_per_session.to_string(),
        state.config.max_sessions.to_string(),
        state.config.max_memberships_per_user.to_string(),
    ];
    let conn = pending.conn;
    let (session_id, client_id) = (pending.session_id.clone(), pending.client_id.clone());
    let tag = cl.tag(Op::Join(PendingJoin {
        conn,
        req_id: String::new(),
        session_id: session_id.clone(),
        client_id: client_id.clone(),
        user_id: String::new(),
        usage_key: pending.usage_key.clone(),
        create: pending.create,
        name: String::new(),
        meta: String::new(),
        ts: pending.ts,
        admin: pending.admin,
        access: pending.access,
        allow: Vec::new(),
    }));
    if !eval_join(cl, tag, &pending, &bounds, b"", now, out) {
        cl.untag(tag);
        reply::fail(
            state,
            cl,
            conn,
            &pending.req_id,
            pending.ts,
            unavailable(),
            out,
        );
        drop_if_unused(cl, &session_id, out);
        return;
    }
    if let Some(mirror) = cl.sessions.get_mut(&session_id) {
        mirror.joining.insert(
            client_id,
            Joining {
                pending,
                snapshot: None,
                event_seen: false,
            },
        );
    }
}

/// The join script answered (or never will: `None`).
pub(crate) fn join_answered(
    state: &mut CoreState,
    cl: &mut Cluster,
    op: PendingJoin,
    reply: Option<Reply>,
    now: Instant,
    out: &mut Actions<Event>,
) {
    let Some(mirror) = cl.sessions.get_mut(&op.session_id) else {
        return;
    };
    let Some(joining) = mirror.joining.get_mut(&op.client_id) else {
        return;
    };
    let refusal = match &reply {
        None => Some(unavailable()),
        Some(reply) => match parse_snapshot(reply) {
            Ok(snapshot) => {
                joining.snapshot = Some(snapshot);
                None
            }
            Err(reject) => Some(reject(&op.session_id, &joining.pending.user_id)),
        },
    };
    if let Some(reject) = refusal {
        let joining = mirror
            .joining
            .remove(&op.client_id)
            .expect("Bug: just found");
        if reply.is_none() {
            // The script may have run: remove the membership when the broker is back.
            cl.repair_later(Repair {
                session_id: op.session_id.clone(),
                client_id: op.client_id.clone(),
                usage_key: op.usage_key.clone(),
            });
        }
        let p = joining.pending;
        reply::fail(state, cl, p.conn, &p.req_id, p.ts, reject, out);
        drop_if_unused(cl, &op.session_id, out);
        return;
    }
    let already = joining
        .snapshot
        .as_ref()
        .is_some_and(|s| s.status == "already");
    if already {
        joining.event_seen = true;
    }
    // A new mirror starts here when this join's event came first (or there is none).
    if !mirror.known && (already || mirror.anchor.as_deref() == Some(op.client_id.as_str())) {
        adopt(cl, &op.session_id, &op.client_id, now, out, state);
        return;
    }
    try_complete(state, cl, &op.session_id, &op.client_id, now, out);
}

type Refuser = Box<dyn Fn(&str, &str) -> Reject>;

fn parse_snapshot(reply: &Reply) -> Result<Snapshot, Refuser> {
    let Some(fields) = reply.as_array() else {
        return Err(Box::new(|_: &str, _: &str| {
            Reject::new(ErrorCode::InternalError, "The cluster's join script failed")
        }));
    };
    let text = |i: usize| reply::text(fields, i);
    if text(0) == "err" {
        let word = fields.get(1).and_then(Reply::as_bytes).unwrap_or(b"");
        let refused = Refused::from_word(word);
        return Err(Box::new(move |sid: &str, user: &str| {
            refusal(refused, sid, user)
        }));
    }
    let status = match text(0).as_str() {
        "created" => "created",
        "already" => "already",
        _ => "joined",
    };
    let from_json = |s: String| serde_json::from_str::<String>(&s).unwrap_or(s);
    let mut members = Vec::new();
    let mut i = 6;
    while i + 1 < fields.len() {
        members.push((text(i), from_json(text(i + 1))));
        i += 2;
    }
    Ok(Snapshot {
        status,
        name: text(1),
        owner: from_json(text(2)),
        access: text(3),
        meta: text(4),
        seq: text(5).parse().unwrap_or(0),
        members,
    })
}

fn refusal(refused: Option<Refused>, session_id: &str, user: &str) -> Reject {
    let error = match refused {
        Some(Refused::NotFound) => SessionError::NotFound,
        Some(Refused::Full) => SessionError::Full,
        Some(Refused::MaxSessions) => SessionError::TableFull,
        Some(Refused::UserLimit) => {
            return Reject::refused(&UserLimit(Resource::Memberships), user)
        }
        Some(Refused::NotMember) => SessionError::NotAMember,
        Some(Refused::Taken) => SessionError::Taken,
        Some(Refused::NotOwner) => SessionError::NotOwner,
        Some(Refused::Exists | Refused::MaxAgents | Refused::Forbidden) | None => {
            return Reject::new(
                ErrorCode::InternalError,
                "The cluster's session script failed",
            )
        }
    };
    Reject::refused(&error, session_id)
}

/// Reply to a join whose script reply and own event both came; from then on the joiner
/// gets the session's messages.
fn try_complete(
    state: &mut CoreState,
    cl: &mut Cluster,
    session_id: &str,
    client_id: &str,
    now: Instant,
    out: &mut Actions<Event>,
) {
    let Some(mirror) = cl.sessions.get_mut(session_id) else {
        return;
    };
    let ready = mirror
        .joining
        .get(client_id)
        .is_some_and(|j| j.snapshot.is_some() && j.event_seen && mirror.known);
    if !ready {
        return;
    }
    let joining = mirror.joining.remove(client_id).expect("Bug: just found");
    let snapshot = joining.snapshot.expect("Bug: checked");
    let p = joining.pending;
    let already = snapshot.status == "already";
    if reply_joined(state, p.conn, &p.req_id, session_id, &snapshot, p.ts, out).is_err() {
        let reject = Reject::refused(&SessionError::ReplyTooLarge, session_id);
        if !already {
            // The membership is in Redis already: it is given back as a leave, which the
            // others see as `presence` `left` after their `joined`.
            if let Some(member) = mirror.members.iter_mut().find(|m| m.client_id == client_id) {
                member.conn = None;
                member.live = false;
            }
            reply::fail(state, cl, p.conn, &p.req_id, p.ts, reject, out);
            undo_membership(cl, session_id, client_id, &p.usage_key, now, out);
            drop_if_unused(cl, session_id, out);
            return;
        }
        // A member already: it stays one, as on a standalone gateway.
        outbound::send_error(
            out,
            &mut state.metrics,
            p.conn,
            Some(&p.req_id),
            p.ts,
            &reject,
        );
    }
    let mut waiting = Vec::new();
    if let Some(member) = mirror.members.iter_mut().find(|m| m.client_id == client_id) {
        member.conn = Some(p.conn);
        member.live = true;
        waiting = std::mem::take(&mut member.waiting);
        member.waiting_bytes = 0;
    }
    for bytes in waiting {
        out.send_text(p.conn, std::str::from_utf8(&bytes).unwrap_or(""));
    }
    cl.release(p.conn);
    if !already {
        state.state_version += 1;
        out.emit(if snapshot.status == "created" {
            Event::SessionCreated {
                session_id: session_id.to_owned(),
                client_id: p.client_id,
            }
        } else {
            Event::SessionJoined {
                session_id: session_id.to_owned(),
                client_id: p.client_id,
            }
        });
    }
}

/// A new mirror starts from the script's reply of the joiner whose event came first.
fn adopt(
    cl: &mut Cluster,
    session_id: &str,
    client_id: &str,
    now: Instant,
    out: &mut Actions<Event>,
    state: &mut CoreState,
) {
    let Some(mirror) = cl.sessions.get_mut(session_id) else {
        return;
    };
    let Some(snapshot) = mirror
        .joining
        .get(client_id)
        .and_then(|j| j.snapshot.as_ref())
    else {
        return;
    };
    mirror.members = snapshot
        .members
        .iter()
        .map(|(cid, uid)| Member {
            client_id: cid.clone(),
            user_id: uid.clone(),
            conn: None,
            live: false,
            waiting: Vec::new(),
            waiting_bytes: 0,
        })
        .collect();
    mirror.known = true;
    mirror.name = snapshot.name.clone();
    mirror.owner = snapshot.owner.clone();
    mirror.meta = snapshot.meta.clone();
    mirror.anchor = None;
    mirror.seq = snapshot.seq;
    mirror.access = snapshot.access.clone();
    let backlog = std::mem::take(&mut mirror.backlog);
    try_complete(state, cl, session_id, client_id, now, out);
    for event in backlog {
        apply(state, cl, session_id, &event, now, out);
    }
}

/// Reply `created` or `joined` with the members of `snapshot`; nothing is sent when that
/// reply would be larger than `max_message_size`.
fn reply_joined(
    state: &mut CoreState,
    conn: ConnId,
    req_id: &str,
    session_id: &str,
    snapshot: &Snapshot,
    ts: u64,
    out: &mut Actions<Event>,
) -> Result<(), TooLarge> {
    let members: Vec<MemberOut<'_>> = snapshot
        .members
        .iter()
        .map(|(cid, uid)| MemberOut {
            client_id: cid,
            user_id: uid,
        })
        .collect();
    let payload = SessionInfoOut {
        session_id,
        status: if snapshot.status == "created" {
            "created"
        } else {
            "joined"
        },
        name: (!snapshot.name.is_empty()).then_some(snapshot.name.as_str()),
        owner: (!snapshot.owner.is_empty()).then_some(snapshot.owner.as_str()),
        access: Some(if snapshot.access == "private" {
            "private"
        } else {
            "open"
        }),
        members: Some(&members),
        metadata: Some(if snapshot.meta.is_empty() {
            "{}"
        } else {
            snapshot.meta.as_str()
        }),
    };
    let head = Head::new("session_info", ts)
        .reply_to(req_id)
        .session(session_id);
    let max = state.config.max_message_size;
    outbound::send_within(out, &mut state.metrics, conn, &head, max, |buf| {
        payload.write(buf)
    })
    .map(|_| ())
}

/// A message on a subscribed channel.
pub(crate) fn on_message(
    state: &mut CoreState,
    cl: &mut Cluster,
    channel: &[u8],
    payload: &[u8],
    now: Instant,
    out: &mut Actions<Event>,
) {
    if let Some(session_id) = session_of_channel(cl, channel) {
        apply(state, cl, &session_id, payload, now, out);
    }
}

/// One event of a session's channel, at its point.
fn apply(
    state: &mut CoreState,
    cl: &mut Cluster,
    session_id: &str,
    event: &[u8],
    now: Instant,
    out: &mut Actions<Event>,
) {
    let (line, body) = match event.iter().position(|&b| b == b'\n') {
        Some(at) => (&event[..at], &event[at + 1..]),
        None => (event, &[][..]),
    };
    let Ok(head) = serde_json::from_slice::<EventHead>(line) else {
        log::warn!("cluster: an event of session {session_id} could not be read");
        return;
    };
    let Some(mirror) = cl.sessions.get_mut(session_id) else {
        return;
    };
    if !mirror.known {
        if mirror.anchor.is_some() {
            let max = state.config.max_outbound_buffer;
            if mirror.backlog_bytes == usize::MAX {
                return; // its joins were closed: nothing waits for these events
            }
            if mirror.backlog_bytes + event.len() > max {
                // What the joins here would get before their replies passes what one
                // connection may have queued: they are slow consumers.
                mirror.backlog.clear();
                mirror.backlog_bytes = usize::MAX;
                let conns: Vec<ConnId> = mirror.joining.values().map(|j| j.pending.conn).collect();
                for conn in conns {
                    state.close(out, conn, CLOSE_POLICY, REASON_SLOW_CONSUMER);
                }
                return;
            }
            mirror.backlog_bytes += event.len();
            mirror.backlog.push(event.to_vec());
        } else if head.e == "join" && mirror.joining.contains_key(&head.c) {
            if let Some(j) = mirror.joining.get_mut(&head.c) {
                j.event_seen = true;
            }
            mirror.anchor = Some(head.c.clone());
            if mirror
                .joining
                .get(&head.c)
                .is_some_and(|j| j.snapshot.is_some())
            {
                adopt(cl, session_id, &head.c, now, out, state);
            }
        }
        return;
    }
    let ts = state.wall_ms(now);
    if let Some(q) = head.q {
        if q <= mirror.seq {
            // Already in the mirror (a refresh took it in); an own join still counts as seen.
            if let Some(j) = mirror.joining.get_mut(&head.c) {
                j.event_seen = true;
                try_complete(state, cl, session_id, &head.c, now, out);
            }
            return;
        }
        if q > mirror.seq + 1 && mirror.seq > 0 {
            // Changes were missed (the subscriber was reconnected): read the members again.
            refresh(cl, session_id, now, out);
        }
        if let Some(mirror) = cl.sessions.get_mut(session_id) {
            mirror.seq = q;
        }
    }
    let Some(mirror) = cl.sessions.get_mut(session_id) else {
        return;
    };
    match head.e.as_str() {
        "join" => {
            if mirror.member(&head.c).is_some() {
                return; // written back after Redis lost its data: nothing new
            }
            let user_id = head.u.unwrap_or_default();
            let local = mirror.joining.get(&head.c).map(|j| j.pending.conn);
            deliver_presence(
                state, mirror, &head.c, &user_id, "joined", session_id, ts, out,
            );
            mirror.members.push(Member {
                client_id: head.c.clone(),
                user_id,
                conn: local,
                live: false,
                waiting: Vec::new(),
                waiting_bytes: 0,
            });
            if let Some(j) = mirror.joining.get_mut(&head.c) {
                j.event_seen = true;
                try_complete(state, cl, session_id, &head.c, now, out);
            }
        }
        "leave" => {
            let Some(at) = mirror.members.iter().position(|m| m.client_id == head.c) else {
                return;
            };
            let member = mirror.members.remove(at);
            deliver_presence(
                state,
                mirror,
                &member.client_id,
                &member.user_id,
                "left",
                session_id,
                ts,
                out,
            );
            drop_if_unused(cl, session_id, out);
        }
        "relay" => {
            if mirror.member(&head.c).is_none() {
                return; // not a member at this point of the channel
            }
            deliver(state, mirror, &head.c, body, out);
        }
        // From a host program: to every member (no member has the empty clientId).
        "host" => deliver(state, mirror, "", body, out),
        // The notice of a `session_patch`: to every member but the patcher (its reply
        // comes from the script).
        "patch" => {
            if let Some(access) = head.a {
                mirror.access = access;
            }
            deliver(state, mirror, &head.c, body, out)
        }
        // Removed by a change of access: it is told, the others see it leave.
        "removed" => {
            let Some(at) = mirror.members.iter().position(|m| m.client_id == head.c) else {
                return;
            };
            let member = mirror.members.remove(at);
            if let Some(conn) = member.conn.filter(|_| member.live) {
                let notice = SessionInfoOut {
                    session_id,
                    status: "removed",
                    name: None,
                    owner: None,
                    access: None,
                    members: None,
                    metadata: None,
                };
                let head_out = Head::new("session_info", ts).session(session_id);
                outbound::send(out, &mut state.metrics, conn, &head_out, |buf| {
                    notice.write(buf)
                });
                state.state_version += 1;
                out.emit(Event::SessionLeft {
                    session_id: session_id.to_owned(),
                    client_id: member.client_id.clone(),
                });
            }
            deliver_presence(
                state,
                mirror,
                &member.client_id,
                &member.user_id,
                "left",
                session_id,
                ts,
                out,
            );
            drop_if_unused(cl, session_id, out);
        }
        _ => {}
    }
}

/// Read the members of `session_id` again (`MEMBERS`): after a reconnect of the subscriber,
/// or when the channel shows a gap in the membership changes.
pub(crate) fn refresh(cl: &mut Cluster, session_id: &str, now: Instant, out: &mut Actions<Event>) {
    let Some(mirror) = cl.sessions.get_mut(session_id) else {
        return;
    };
    if !mirror.known || mirror.refreshing {
        return;
    }
    mirror.refreshing = true;
    let skey = session_key(cl, session_id);
    let keys = [skey.clone(), suffixed(&skey, b":m"), suffixed(&skey, b":u")];
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let tag = cl.tag(Op::Refresh(session_id.to_owned()));
    if !cl
        .broker
        .eval(tag, scripts::MEMBERS_INDEX, &keys, &[], now, out)
    {
        cl.untag(tag);
        if let Some(mirror) = cl.sessions.get_mut(session_id) {
            mirror.refreshing = false;
        }
    }
}

/// The members of a session as Redis has them now: taken when newer than the mirror.
pub(crate) fn refreshed(
    state: &mut CoreState,
    cl: &mut Cluster,
    session_id: &str,
    reply: Option<Reply>,
    now: Instant,
    out: &mut Actions<Event>,
) {
    let Some(mirror) = cl.sessions.get_mut(session_id) else {
        return;
    };
    mirror.refreshing = false;
    let Some(fields) = reply.as_ref().and_then(Reply::as_array) else {
        return;
    };
    let text = |i: usize| reply::text(fields, i);
    if fields.is_empty() {
        // The session is not in Redis: it lost its data, and the members here are written
        // back by this node (or it was emptied, and the members here have left already).
        return;
    }
    let seq: u64 = text(0).parse().unwrap_or(0);
    if seq <= mirror.seq {
        return; // the channel has brought the mirror this far already
    }
    let mut members = Vec::new();
    let mut joined = Vec::new();
    let mut i = 1;
    while i + 1 < fields.len() {
        let (cid, uid) = (text(i), text(i + 1));
        let uid = serde_json::from_str::<String>(&uid).unwrap_or(uid);
        match mirror.members.iter().position(|m| m.client_id == cid) {
            Some(at) => members.push(mirror.members.swap_remove(at)),
            None => {
                joined.push((cid.clone(), uid.clone()));
                members.push(Member {
                    client_id: cid,
                    user_id: uid,
                    conn: None,
                    live: false,
                    waiting: Vec::new(),
                    waiting_bytes: 0,
                });
            }
        }
        i += 2;
    }
    // The members on this node stay (Redis may be without them only until this node writes
    // them back); the others left had left while the changes were missed: the members here
    // learn it now, then of those who joined meanwhile.
    let (mut local, left): (Vec<Member>, Vec<Member>) = std::mem::take(&mut mirror.members)
        .into_iter()
        .partition(|m| m.conn.is_some());
    members.append(&mut local);
    mirror.members = members;
    mirror.seq = seq;
    let ts = state.wall_ms(now);
    for gone in &left {
        deliver_presence(
            state,
            mirror,
            &gone.client_id,
            &gone.user_id,
            "left",
            session_id,
            ts,
            out,
        );
    }
    for (cid, uid) in &joined {
        deliver_presence(state, mirror, cid, uid, "joined", session_id, ts, out);
    }
    drop_if_unused(cl, session_id, out);
}

/// `bytes` to every member on this node but `sender`: sent to the live ones, kept for those
/// whose join reply has not gone out yet.
fn deliver(
    state: &mut CoreState,
    mirror: &mut Mirror,
    sender: &str,
    bytes: &[u8],
    out: &mut Actions<Event>,
) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let mut staged = None;
    let mut sent = 0u64;
    for member in mirror.members.iter_mut() {
        let Some(conn) = member.conn else { continue };
        if member.client_id == sender {
            continue;
        }
        if member.live {
            let msg = staged.get_or_insert_with(|| out.stage_bytes(text.as_bytes(), false));
            let msg = msg.clone();
            out.send(conn, &msg);
            sent += 1;
        } else if member.waiting_bytes != usize::MAX {
            if member.waiting_bytes + bytes.len() > state.config.max_outbound_buffer {
                // As for a connection whose queue passes the bound.
                member.waiting.clear();
                member.waiting_bytes = usize::MAX;
                state.close(out, conn, CLOSE_POLICY, REASON_SLOW_CONSUMER);
            } else {
                member.waiting_bytes += bytes.len();
                member.waiting.push(bytes.to_vec());
            }
        }
    }
    let _ = sent;
}

#[allow(clippy::too_many_arguments)]
fn deliver_presence(
    state: &mut CoreState,
    mirror: &mut Mirror,
    client_id: &str,
    user_id: &str,
    status: &str,
    session_id: &str,
    ts: u64,
    out: &mut Actions<Event>,
) {
    let payload = PresenceOut {
        client_id,
        user_id,
        status,
        session_id,
        timestamp: ts,
    };
    let head = Head::new("presence", ts).session(session_id);
    let mut bytes = Vec::new();
    if !wire::write_envelope(&mut bytes, &head, wire::ser(&payload)) {
        return;
    }
    deliver(state, mirror, client_id, &bytes, out);
}

/// Unsubscribe and forget a mirror nobody on this node needs.
fn drop_if_unused(cl: &mut Cluster, session_id: &str, out: &mut Actions<Event>) {
    if cl.sessions.get(session_id).is_some_and(|m| !m.in_use()) {
        cl.sessions.remove(session_id);
        let channel = session_key(cl, session_id);
        cl.broker.unsubscribe(&channel, out);
    }
}

/// `session_leave` in a cluster.
pub(crate) fn leave(
    state: &mut CoreState,
    cl: &mut Cluster,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let p: SessionRefIn<'_> = payloads::parse(env)?;
    let session_id = named_session(&p.session_id, env)?.to_owned();
    let Some(client) = state.clients.get(req.conn) else {
        return Ok(());
    };
    if !cl.is_serving() {
        return Err(unavailable());
    }
    // From now on it gets nothing more of the session.
    if let Some(member) = cl
        .sessions
        .get_mut(&session_id)
        .and_then(|m| m.members.iter_mut().find(|m| m.conn == Some(req.conn)))
    {
        member.conn = None;
        member.live = false;
    }
    let pending = PendingLeave {
        conn: req.conn,
        req_id: req.id.to_owned(),
        session_id: session_id.clone(),
        client_id: client.client_id.clone(),
        ts: req.ts,
    };
    let usage_key = client.usage_key().to_owned();
    let conn = req.conn;
    cl.hold(conn);
    let tag = cl.tag(Op::Leave(pending));
    if !send_leave(
        cl,
        tag,
        &session_id,
        &state_client_id(state, conn),
        &usage_key,
        req.now,
        out,
    ) {
        cl.untag(tag);
        cl.release(conn);
        return Err(unavailable());
    }
    Ok(())
}

fn state_client_id(state: &CoreState, conn: ConnId) -> String {
    state
        .clients
        .get(conn)
        .map(|c| c.client_id.clone())
        .unwrap_or_default()
}

fn send_leave(
    cl: &mut Cluster,
    tag: u64,
    session_id: &str,
    client_id: &str,
    usage_key: &str,
    now: Instant,
    out: &mut Actions<Event>,
) -> bool {
    let skey = session_key(cl, session_id);
    let keys = [
        skey.clone(),
        suffixed(&skey, b":m"),
        suffixed(&skey, b":u"),
        cl.key(&[b"sessions"]),
        cl.key(&[b"u", usage_key.as_bytes()]),
        cl.key(&[b"n", cl.node.as_bytes(), b"m"]),
    ];
    let mut event = b"{\"e\":\"leave\",\"c\":".to_vec();
    event.extend_from_slice(&json_str(client_id));
    event.extend_from_slice(b",\"q\":");
    let args: [&[u8]; 4] = [session_id.as_bytes(), client_id.as_bytes(), &skey, &event];
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    cl.broker
        .eval(tag, scripts::LEAVE_INDEX, &keys, &args, now, out)
}

/// The leave script answered.
pub(crate) fn leave_answered(
    state: &mut CoreState,
    cl: &mut Cluster,
    p: PendingLeave,
    reply: Option<Reply>,
    _now: Instant,
    out: &mut Actions<Event>,
) {
    let refused = match &reply {
        None => Some(unavailable()),
        Some(Reply::Array(Some(items))) => {
            let word = items.get(1).and_then(Reply::as_bytes).unwrap_or(b"");
            match Refused::from_word(word) {
                // Leaving a session one is not in changes nothing.
                Some(Refused::NotMember) => None,
                other => Some(refusal(other, &p.session_id, "")),
            }
        }
        Some(_) => None,
    };
    if let Some(reject) = refused {
        reply::fail(state, cl, p.conn, &p.req_id, p.ts, reject, out);
        return;
    }
    let head = Head::new("session_info", p.ts)
        .reply_to(&p.req_id)
        .session(&p.session_id);
    let payload = SessionInfoOut {
        session_id: &p.session_id,
        status: "left",
        name: None,
        owner: None,
        access: None,
        members: None,
        metadata: None,
    };
    outbound::send(out, &mut state.metrics, p.conn, &head, |buf| {
        payload.write(buf)
    });
    if matches!(reply, Some(Reply::Simple(_)) | Some(Reply::Bulk(_))) {
        state.state_version += 1;
        out.emit(Event::SessionLeft {
            session_id: p.session_id.clone(),
            client_id: p.client_id,
        });
    }
    cl.release(p.conn);
    drop_if_unused(cl, &p.session_id, out);
}

/// A message of the host program to every member of `session_id`, on every node; how many
/// members this node knows of.
pub(crate) fn host_broadcast(
    cl: &mut Cluster,
    session_id: &str,
    message: &[u8],
    now: Instant,
    out: &mut Actions<Event>,
) -> usize {
    let mut event = b"{\"e\":\"host\",\"c\":\"\"}\n".to_vec();
    event.extend_from_slice(message);
    let channel = session_key(cl, session_id);
    let tag = cl.tag(Op::Ignore);
    if !cl
        .broker
        .call(tag, &[b"PUBLISH", &channel, &event], now, out)
    {
        cl.untag(tag);
        return 0;
    }
    cl.sessions.get(session_id).map_or(0, |m| m.members.len())
}

/// A relayed type in a cluster: published on the session's channel.
pub(crate) fn relay(
    state: &mut CoreState,
    cl: &mut Cluster,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let session_id = env.session_id.ident("sessionId")?;
    let Some(client) = state.clients.get(req.conn) else {
        return Ok(());
    };
    check_member(cl, session_id, req.conn)?;
    let head = Head::new(&env.msg_type, req.ts)
        .session(session_id)
        .source(&client.client_id);
    outbound::check_delivery(&head, env.payload.len(), state.config.max_message_size)?;
    let mut event = b"{\"e\":\"relay\",\"c\":".to_vec();
    event.extend_from_slice(&json_str(&client.client_id));
    event.extend_from_slice(b"}\n");
    wire::write_envelope(&mut event, &head, wire::raw(env.payload));
    publish(cl, req, session_id, &event, out)
}

fn check_member(cl: &Cluster, session_id: &str, conn: ConnId) -> Result<(), Reject> {
    match cl.sessions.get(session_id) {
        Some(m) if m.local_member(conn).is_some_and(|m| m.live) => Ok(()),
        Some(_) => Err(Reject::new(
            ErrorCode::NotAMember,
            format!("Not a member of session {session_id}"),
        )),
        None => Err(Reject::new(
            ErrorCode::NotAMember,
            format!("Not a member of session {session_id}"),
        )),
    }
}

/// Publish `req`'s message on the channel of `session_id`; refused at once when the broker
/// is down, and later (see [`publish_failed`]) when its link breaks before Redis answered.
fn publish(
    cl: &mut Cluster,
    req: &Req<'_>,
    session_id: &str,
    event: &[u8],
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let channel = session_key(cl, session_id);
    let tag = cl.tag(Op::Publish(PendingPublish {
        conn: req.conn,
        req_id: req.id.to_owned(),
        ts: req.ts,
    }));
    if cl
        .broker
        .call(tag, &[b"PUBLISH", &channel, event], req.now, out)
    {
        Ok(())
    } else {
        cl.untag(tag);
        Err(unavailable())
    }
}

/// A published message got no answer (the broker's link broke first, or Redis stalled past
/// `broker_timeout_ms`): its sender learns it may not have been delivered.
pub(crate) fn publish_failed(state: &mut CoreState, p: PendingPublish, out: &mut Actions<Event>) {
    if state.clients.get(p.conn).is_some() {
        outbound::send_error(
            out,
            &mut state.metrics,
            p.conn,
            Some(&p.req_id),
            p.ts,
            &unavailable(),
        );
    }
}

/// `presence` in a cluster: published on the channel of the named session, or of each
/// session the sender is in.
pub(crate) fn presence(
    state: &mut CoreState,
    cl: &mut Cluster,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let p: PresenceIn<'_> = payloads::parse(env)?;
    let (status, key) = read_presence(state, &p, env)?;
    let key = key.map(str::to_owned);
    let Some(client) = state.clients.get(req.conn) else {
        return Ok(());
    };
    let targets: Vec<String> = match key {
        Some(key) => {
            check_member(cl, &key, req.conn)?;
            vec![key]
        }
        None => cl
            .sessions
            .iter()
            .filter(|(_, m)| m.local_member(req.conn).is_some_and(|m| m.live))
            .map(|(id, _)| id.clone())
            .collect(),
    };
    let user_id = client.user_id.as_deref().unwrap_or(ANONYMOUS);
    for session_id in targets {
        let payload = PresenceOut {
            client_id: &client.client_id,
            user_id,
            status,
            session_id: &session_id,
            timestamp: req.ts,
        };
        let head = Head::new("presence", req.ts)
            .session(&session_id)
            .source(&client.client_id);
        let mut event = b"{\"e\":\"relay\",\"c\":".to_vec();
        event.extend_from_slice(&json_str(&client.client_id));
        event.extend_from_slice(b"}\n");
        wire::write_envelope(&mut event, &head, wire::ser(&payload));
        publish(cl, req, &session_id, &event, out)?;
    }
    Ok(())
}

/// `conn` closed: its memberships end (in Redis now, or when the broker is back).
pub(crate) fn conn_gone(
    cl: &mut Cluster,
    conn: ConnId,
    client_id: &str,
    usage_key: &str,
    now: Instant,
    out: &mut Actions<Event>,
) {
    cl.drop_held(conn);
    let mut ended = Vec::new();
    for (session_id, mirror) in cl.sessions.iter_mut() {
        mirror.waiting_subscribe.retain(|p| p.conn != conn);
        let joined_here = mirror.joining.remove(client_id).is_some();
        let member = mirror.members.iter_mut().find(|m| m.conn == Some(conn));
        if let Some(member) = member {
            member.conn = None;
            member.live = false;
            ended.push(session_id.clone());
        } else if joined_here {
            ended.push(session_id.clone());
        }
    }
    for session_id in ended {
        undo_membership(cl, &session_id, client_id, usage_key, now, out);
        drop_if_unused(cl, &session_id, out);
    }
}

/// Remove `client_id`'s membership of `session_id` from Redis, with no reply to wait for:
/// now, or once the broker is up again.
fn undo_membership(
    cl: &mut Cluster,
    session_id: &str,
    client_id: &str,
    usage_key: &str,
    now: Instant,
    out: &mut Actions<Event>,
) {
    let tag = cl.tag(Op::Ignore);
    if !send_leave(cl, tag, session_id, client_id, usage_key, now, out) {
        cl.untag(tag);
        cl.repair_later(Repair {
            session_id: session_id.to_owned(),
            client_id: client_id.to_owned(),
            usage_key: usage_key.to_owned(),
        });
    }
}

/// The broker is up again: remove memberships that may have outlived their connection.
pub(crate) fn broker_up(
    _state: &mut CoreState,
    cl: &mut Cluster,
    now: Instant,
    out: &mut Actions<Event>,
) {
    // Changes published while the subscriber was away were missed.
    let known: Vec<String> = cl
        .sessions
        .iter()
        .filter(|(_, m)| m.known)
        .map(|(id, _)| id.clone())
        .collect();
    for session_id in known {
        if let Some(mirror) = cl.sessions.get_mut(&session_id) {
            // Numbering starts again if Redis lost its data: the read below sets it.
            mirror.seq = 0;
            mirror.refreshing = false;
        }
        refresh(cl, &session_id, now, out);
    }
    for repair in std::mem::take(&mut cl.repairs) {
        let tag = cl.tag(Op::Ignore);
        if !send_leave(
            cl,
            tag,
            &repair.session_id,
            &repair.client_id,
            &repair.usage_key,
            now,
            out,
        ) {
            cl.untag(tag);
            cl.repair_later(repair);
        }
    }
}

/// The broker is down: subscriptions are gone with it (they come back, confirmed again,
/// when it is up), so joins wait for them again.
pub(crate) fn broker_down(
    state: &mut CoreState,
    cl: &mut Cluster,
    _now: Instant,
    out: &mut Actions<Event>,
) {
    let mut failed = Vec::new();
    let mut touched = Vec::new();
    let mut repairs = Vec::new();
    for (session_id, mirror) in cl.sessions.iter_mut() {
        mirror.subscribed = false;
        failed.append(&mut mirror.waiting_subscribe);
        // Joins whose script answered but whose event (or the mirror's first) has not come:
        // it may never come now. Their membership is removed when the broker is back.
        for (_, joining) in mirror.joining.drain() {
            repairs.push(Repair {
                session_id: session_id.clone(),
                client_id: joining.pending.client_id.clone(),
                usage_key: joining.pending.usage_key.clone(),
            });
            failed.push(joining.pending);
        }
        if !mirror.known {
            mirror.anchor = None;
            mirror.backlog.clear();
            mirror.backlog_bytes = 0;
        }
        touched.push(session_id.clone());
    }
    for repair in repairs {
        cl.repair_later(repair);
    }
    for p in failed {
        reply::fail(state, cl, p.conn, &p.req_id, p.ts, unavailable(), out);
    }
    for session_id in touched {
        drop_if_unused(cl, &session_id, out);
    }
}

/// Redis lost its data: write back the memberships of this node's connections.
pub(crate) fn write_back(
    state: &mut CoreState,
    cl: &mut Cluster,
    now: Instant,
    out: &mut Actions<Event>,
) {
    let mut joins = Vec::new();
    for mirror in cl.sessions.values_mut() {
        mirror.seq = 0; // the numbering of membership changes starts again
    }
    for (session_id, mirror) in &cl.sessions {
        let owner = json_str(&mirror.owner);
        for member in &mirror.members {
            let Some(conn) = member.conn.filter(|_| member.live) else {
                continue;
            };
            let Some(client) = state.clients.get(conn) else {
                continue;
            };
            let pending = PendingJoin {
                conn,
                req_id: String::new(),
                session_id: session_id.clone(),
                client_id: member.client_id.clone(),
                user_id: member.user_id.clone(),
                usage_key: client.usage_key().to_owned(),
                create: true,
                name: mirror.name.clone(),
                meta: mirror.meta.clone(),
                ts: state.wall_ms(now),
                admin: client.scopes.is_admin(),
                // A private session comes back private, admitting its owner and admins (its
                // allowUsers were lost with the data).
                access: if mirror.access == "private" {
                    "private"
                } else {
                    "open"
                },
                allow: Vec::new(),
            };
            joins.push((pending, owner.clone()));
        }
    }
    for (pending, owner) in joins {
        rejoin(cl, pending, &owner, now, out);
    }
}

/// The join script for a membership this node already serves (after Redis lost its data),
/// creating the session again, when it is the first back, with its name, metadata and owner
/// (as JSON).
fn rejoin(
    cl: &mut Cluster,
    pending: PendingJoin,
    owner: &[u8],
    now: Instant,
    out: &mut Actions<Event>,
) {
    // Written back whatever the bounds say now: these memberships were admitted already.
    let unbounded = u32::MAX.to_string();
    let bounds = [unbounded.clone(), unbounded.clone(), unbounded];
    let tag = cl.tag(Op::Ignore);
    if !eval_join(cl, tag, &pending, &bounds, owner, now, out) {
        cl.untag(tag);
    }
}
