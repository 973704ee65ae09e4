//! `route_request` to a `clientId` and its `route_response`, with the two clients on any
//! nodes (PROTOCOL sections 6, 12 and 13).
//!
//! Contract:
//! - The requester's node decides what it can: the `admin` scope, or a session it shares with
//!   the target (from its mirrors); the `ROUTE` script adds the same-`userId` rule from the
//!   client map and publishes the request on the target's node channel, or answers 0 (then
//!   `TARGET_NOT_FOUND`, the same message as for an unknown client). A target on the
//!   requester's own node is served the same way, without Redis.
//! - The target's node records the delivery (`pending.rs`: bounded per target and in all,
//!   `LIMIT_EXCEEDED` beyond; the same
//!   `id` from the same requester pending twice: `INVALID_MESSAGE` naming `id`), delivers
//!   the request, and answers a request whose target has gone with `TARGET_NOT_FOUND`
//!   through the requester's node channel.
//! - A `route_response` is delivered only for a recorded delivery, once (else
//!   `TARGET_NOT_FOUND`, as on one node), through the requester's node when it is elsewhere.
//! - Node channel events: `{"e":"route","c":TARGET,"r":REQUESTER,"n":NODE,"i":ID}` and a
//!   newline before the request as the target gets it.
//! - Agents and capabilities are not routed in a cluster (`UNAVAILABLE`).

use std::time::Instant;

use serde::Deserialize;

use super::node::{Cluster, Op};
use crate::app::{Actions, ConnId};
use crate::cluster::resp::Reply;
use crate::cluster::scripts;
use crate::core::auth::ANONYMOUS;
use crate::core::errors::ErrorCode;
use crate::core::events::Event;
use crate::core::outbound::{self, short, Reject};
use crate::core::routes::RouteError;
use crate::core::state::{CoreState, Req};
use crate::core::wire::payloads::ErrorOut;
use crate::core::wire::{self, Envelope, Field, FieldError, Head, MsgId};

fn not_found(target: &str) -> Reject {
    Reject::new(
        ErrorCode::TargetNotFound,
        format!("Target {} not found", short(target)),
    )
}

fn required_str<'b>(field: &'b Field<'_>, name: &'static str) -> Result<&'b str, FieldError> {
    match field {
        Field::Str(text) if !text.is_empty() => Ok(text),
        Field::Str(_) => Err(FieldError::new(name, format!("{name} must not be empty"))),
        Field::Absent => Err(FieldError::new(name, format!("{name} is required"))),
        Field::Wrong => Err(FieldError::new(name, format!("{name} must be a string"))),
    }
}

/// Whether `a` and `b` are both members of a session this node mirrors.
fn share_a_session(cl: &Cluster, a: &str, b: &str) -> bool {
    cl.sessions
        .values()
        .any(|m| m.member(a).is_some() && m.member(b).is_some())
}

/// `route_request` in a cluster.
pub(crate) fn request(
    state: &mut CoreState,
    cl: &mut Cluster,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let target = required_str(&env.target, "target")?;
    if target.starts_with(crate::core::requests::routes::CAPABILITY_PREFIX) {
        return Err(Reject::new(
            ErrorCode::Unavailable,
            "Routes to agents are not served in cluster mode",
        ));
    }
    let Some(sender) = state.clients.get(req.conn) else {
        return Ok(());
    };
    let requester = sender.client_id.clone();
    let user = sender
        .user_id
        .clone()
        .unwrap_or_else(|| ANONYMOUS.to_owned());
    let allowed = sender.scopes.is_admin() || share_a_session(cl, &requester, target);
    let head = Head {
        id: MsgId::Given(req.id),
        ..Head::new("route_request", req.ts).source(&requester)
    };
    let mut message = Vec::new();
    wire::write_envelope(&mut message, &head, wire::raw(env.payload));
    if let Some(conn) = state.clients.conn_of(target) {
        let Some(client) = state.clients.get(conn) else {
            return Err(not_found(target));
        };
        let reachable = !client.closing
            && client.is_authenticated()
            && (allowed || client.user_id.as_deref() == Some(user.as_str()));
        if !reachable {
            return Err(not_found(target));
        }
        let node = cl.node.clone();
        cl.routes
            .insert((conn, requester, req.id.to_owned()), node)
            .map_err(|e| Reject::refused(&e, req.id))?;
        out.send_text(conn, std::str::from_utf8(&message).unwrap_or(""));
        return Ok(());
    }
    if !cl.is_serving() {
        return Err(Reject::new(
            ErrorCode::Unavailable,
            "The cluster is unavailable: its broker did not answer",
        ));
    }
    let mut event = b"{\"e\":\"route\",\"c\":".to_vec();
    wire::write_str(&mut event, target);
    event.extend_from_slice(b",\"r\":");
    wire::write_str(&mut event, &requester);
    event.extend_from_slice(b",\"n\":");
    wire::write_str(&mut event, &cl.node);
    event.extend_from_slice(b",\"i\":");
    wire::write_str(&mut event, req.id);
    event.extend_from_slice(b"}\n");
    event.extend_from_slice(&message);
    let key = cl.key(&[b"c", target.as_bytes()]);
    let prefix = cl.setup.prefix.clone();
    let flag: &[u8] = if allowed { b"1" } else { b"0" };
    let tag = cl.tag(Op::Route {
        conn: req.conn,
        req_id: req.id.to_owned(),
        target: target.to_owned(),
        ts: req.ts,
    });
    if !cl.broker.eval(
        tag,
        scripts::ROUTE_INDEX,
        &[&key],
        &[prefix.as_bytes(), user.as_bytes(), flag, &event],
        req.now,
        out,
    ) {
        cl.untag(tag);
        return Err(Reject::new(
            ErrorCode::Unavailable,
            "The cluster is unavailable: its broker did not answer",
        ));
    }
    Ok(())
}

/// The `ROUTE` script answered: 1 is on its way; anything else is `TARGET_NOT_FOUND` (or
/// `UNAVAILABLE` when no answer came).
pub(crate) fn routed(
    state: &mut CoreState,
    conn: ConnId,
    req_id: &str,
    target: &str,
    ts: u64,
    reply: Option<Reply>,
    out: &mut Actions<Event>,
) {
    let reject = match reply {
        Some(Reply::Integer(1)) => return,
        Some(_) => not_found(target),
        None => Reject::new(
            ErrorCode::Unavailable,
            "The cluster is unavailable: its broker did not answer",
        ),
    };
    outbound::send_error(out, &mut state.metrics, conn, Some(req_id), ts, &reject);
}

/// A route event's first line.
#[derive(Deserialize)]
struct RouteEvent {
    c: String,
    r: String,
    n: String,
    i: String,
}

/// A `route_request` for a client of this node, from another node.
pub(crate) fn on_route(
    state: &mut CoreState,
    cl: &mut Cluster,
    payload: &[u8],
    now: Instant,
    out: &mut Actions<Event>,
) {
    let Some(at) = payload.iter().position(|&b| b == b'\n') else {
        return;
    };
    let Ok(head) = serde_json::from_slice::<RouteEvent>(&payload[..at]) else {
        return;
    };
    let ts = state.wall_ms(now);
    let delivered = state
        .clients
        .conn_of(&head.c)
        .filter(|&conn| state.clients.get(conn).is_some_and(|c| !c.closing))
        .ok_or_else(|| not_found(&head.c))
        .and_then(|conn| {
            cl.routes
                .insert((conn, head.r.clone(), head.i.clone()), head.n.clone())
                .map(|()| conn)
                .map_err(|e| Reject::refused(&e, &head.i))
        });
    match delivered {
        Ok(conn) => {
            if let Ok(text) = std::str::from_utf8(&payload[at + 1..]) {
                out.send_text(conn, text);
            }
        }
        Err(reject) => {
            let head_out = Head {
                reply_to: Some(&head.i),
                ..Head::new("error", ts)
            };
            let error = ErrorOut::new(reject.code, &reject.message, reject.field, None);
            let mut message = Vec::new();
            if wire::write_envelope(&mut message, &head_out, wire::ser(&error)) {
                send_to_node(cl, &head.n, &head.r, &message, now, out);
            }
        }
    }
}

/// Publish `message` for `client_id` on the channel of `node`.
fn send_to_node(
    cl: &mut Cluster,
    node: &str,
    client_id: &str,
    message: &[u8],
    now: Instant,
    out: &mut Actions<Event>,
) -> bool {
    let mut event = b"{\"e\":\"send\",\"c\":".to_vec();
    wire::write_str(&mut event, client_id);
    event.extend_from_slice(b"}\n");
    event.extend_from_slice(message);
    let channel = super::node::node_channel(&cl.setup.prefix, node);
    let tag = cl.tag(Op::Ignore);
    let sent = cl
        .broker
        .call(tag, &[b"PUBLISH", &channel, &event], now, out);
    if !sent {
        cl.untag(tag);
    }
    sent
}

/// `route_response` in a cluster.
pub(crate) fn response(
    state: &mut CoreState,
    cl: &mut Cluster,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let target = required_str(&env.target, "target")?;
    let reply_to = required_str(&env.reply_to, "replyTo")?;
    let key = (req.conn, target.to_owned(), reply_to.to_owned());
    let Some(node) = cl.routes.take(&key) else {
        let request = format!("{} from {}", short(reply_to), short(target));
        return Err(Reject::refused(&RouteError::NotPending, &request));
    };
    let Some(client) = state.clients.get(req.conn) else {
        return Ok(());
    };
    let head = Head::new("route_response", req.ts)
        .reply_to(reply_to)
        .source(&client.client_id);
    let mut message = Vec::new();
    wire::write_envelope(&mut message, &head, wire::raw(env.payload));
    if node == cl.node {
        if let Some(conn) = state.clients.conn_of(target) {
            out.send_text(conn, std::str::from_utf8(&message).unwrap_or(""));
        }
        return Ok(());
    }
    if !send_to_node(cl, &node, target, &message, req.now, out) {
        return Err(Reject::new(
            ErrorCode::Unavailable,
            "The cluster is unavailable: its broker did not answer",
        ));
    }
    Ok(())
}
