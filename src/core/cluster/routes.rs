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
//! - Each request counts toward `max_pending_routes_per_user` of its requester's user,
//!   cluster-wide (`users.rs`): inside the route script that publishes it, or, for a target
//!   on this node, by one `USAGE` call before it is delivered, the requester held meanwhile
//!   (on this node's own count while the broker is not serving); past the bound,
//!   `LIMIT_EXCEEDED` and nothing is delivered.
//! - A `route_response` is delivered only for a recorded delivery, once (else
//!   `TARGET_NOT_FOUND`, as on one node), through the requester's node when it is elsewhere.
//! - Node channel events: `{"e":"route","c":TARGET,"r":REQUESTER,"n":NODE,"i":ID}` and a
//!   newline before the request as the target gets it.
//! - A target is resolved as on one node: `capability:NAME` (the `ROUTE_AGENT` script picks the
//!   next online agent with it, round-robin over the whole cluster), then an agent id (online
//!   or busy, on any node), then a `clientId`. A route through another user's agent is
//!   answered from the agent's id (section 12), decided by the target's node, which knows the
//!   owner's user.

use std::time::Instant;

use serde::Deserialize;

use super::mirror::{ClientRoute, PendingRoute};
use super::node::{Cluster, Op};
use super::reply::unavailable;
use super::usage::{Count, PendingLocalRoute};
use super::users;
use crate::app::Actions;
use crate::cluster::resp::Reply;
use crate::cluster::scripts;
use crate::core::auth::ANONYMOUS;
use crate::core::errors::ErrorCode;
use crate::core::events::Event;
use crate::core::outbound::{self, short, Reject};
use crate::core::routes::RouteError;
use crate::core::state::{CoreState, Req};
use crate::core::users::{Resource, UserLimit};
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

/// A route event in two parts: `{"e":"route","c":TARGET` (or, for the route script to
/// complete with an agent's owner, `{"e":"route","c":"`), and the fields after it with the
/// request's message after a newline.
fn route_event(target: Option<&str>, rest: &RouteFrom<'_>, message: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut start = b"{\"e\":\"route\",\"c\":".to_vec();
    match target {
        Some(target) => wire::write_str(&mut start, target),
        // The script writes the agent owner's clientId (a UUID) and `","a":` with the id.
        None => start.push(b'"'),
    }
    let mut tail = Vec::new();
    tail.extend_from_slice(b",\"r\":");
    wire::write_str(&mut tail, rest.requester);
    tail.extend_from_slice(b",\"n\":");
    wire::write_str(&mut tail, rest.node);
    tail.extend_from_slice(b",\"i\":");
    wire::write_str(&mut tail, rest.id);
    tail.extend_from_slice(b",\"u\":");
    wire::write_str(&mut tail, rest.user);
    tail.extend_from_slice(if rest.admin {
        b",\"adm\":true}\n"
    } else {
        b",\"adm\":false}\n"
    });
    tail.extend_from_slice(message);
    (start, tail)
}

/// Who a route request comes from.
struct RouteFrom<'a> {
    requester: &'a str,
    node: &'a str,
    id: &'a str,
    user: &'a str,
    admin: bool,
}

/// The agent id a response to a route through agent `agent_id` is shown from, when the
/// requester (`user`, `admin`) may not see the owner's (`owner_user`) `clientId`.
fn shown_as(
    agent_id: Option<&str>,
    user: &str,
    admin: bool,
    owner_user: Option<&str>,
) -> Option<String> {
    agent_id
        .filter(|_| !admin && owner_user != Some(user))
        .map(str::to_owned)
}

/// `route_request` in a cluster: a capability (round-robin over the cluster), an agent, or
/// a client, in that order, as on one node.
pub(crate) fn request(
    state: &mut CoreState,
    cl: &mut Cluster,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let target = required_str(&env.target, "target")?;
    let Some(sender) = state.clients.get(req.conn) else {
        return Ok(());
    };
    let requester = sender.client_id.clone();
    let usage_key = sender.usage_key().to_owned();
    let bound = state.config.max_pending_routes_per_user;
    let user = sender
        .user_id
        .clone()
        .unwrap_or_else(|| ANONYMOUS.to_owned());
    let admin = sender.scopes.is_admin();
    let allowed = admin || share_a_session(cl, &requester, target);
    let head = Head {
        id: MsgId::Given(req.id),
        ..Head::new("route_request", req.ts).source(&requester)
    };
    outbound::check_delivery(&head, env.payload.len(), state.config.max_message_size)?;
    let mut message = Vec::new();
    wire::write_envelope(&mut message, &head, wire::raw(env.payload));
    let capability = target.strip_prefix(crate::core::requests::routes::CAPABILITY_PREFIX);
    // An agent of this node, or a client of this node: delivered here.
    let local_agent = cl.agent_conns.get(target).copied();
    let local = match (capability, local_agent) {
        (Some(_), _) => None,
        (None, Some(conn)) => Some((conn, true)),
        (None, None) => state.clients.conn_of(target).map(|conn| (conn, false)),
    };
    if let Some((conn, agent)) = local {
        let Some(client) = state.clients.get(conn) else {
            return Err(not_found(target));
        };
        let reachable = !client.closing
            && client.is_authenticated()
            && (agent || allowed || client.user_id.as_deref() == Some(user.as_str()));
        if !reachable {
            return Err(not_found(target));
        }
        let shown = shown_as(
            agent.then_some(target),
            &user,
            admin,
            client.user_id.as_deref(),
        );
        let key = (conn, requester.clone(), req.id.to_owned());
        cl.routes
            .check(&key)
            .map_err(|e| Reject::refused(&e, req.id))?;
        let pending = PendingLocalRoute {
            conn: req.conn,
            req_id: req.id.to_owned(),
            ts: req.ts,
            requester,
            usage_key,
            target: target.to_owned(),
            target_conn: conn,
            shown,
            message,
            generation: cl.usage.generation,
        };
        // Counted toward the requester's user in Redis first, when it serves; the
        // requester's later messages wait meanwhile (what it may make this node keep is
        // bounded as for any held request).
        let pending = if cl.is_serving() {
            match users::take_route(cl, bound, pending, req.now, out) {
                Ok(()) => {
                    cl.hold(req.conn);
                    return Ok(());
                }
                Err(pending) => *pending,
            }
        } else {
            pending
        };
        return deliver_local(state, cl, pending, false, req.now, out);
    }
    if !cl.is_serving() {
        return Err(unavailable());
    }
    let node = cl.node.clone();
    let from = RouteFrom {
        requester: &requester,
        node: &node,
        id: req.id,
        user: &user,
        admin,
    };
    let (agent_start, agent_tail) = route_event(None, &from, &message);
    let prefix = cl.setup.prefix.clone();
    let (mode, keys, then_client): (&[u8], Vec<Vec<u8>>, _) = match capability {
        Some(name) => (
            b"capability",
            vec![
                cl.key(&[b"cap", name.as_bytes()]),
                cl.key(&[b"rr", name.as_bytes()]),
            ],
            None,
        ),
        None => {
            let (mut event, tail) = route_event(Some(target), &from, &message);
            event.extend_from_slice(&tail);
            let client = ClientRoute {
                key: cl.key(&[b"c", target.as_bytes()]),
                user: user.clone(),
                allowed,
                event,
            };
            let mut key = cl.key(&[b"a"]);
            key.extend_from_slice(b":{");
            key.extend_from_slice(target.as_bytes());
            key.push(b'}');
            (&b"agent"[..], vec![key], Some(client))
        }
    };
    let (count_keys, count_args) = users::route_keys(cl, &usage_key, bound);
    let mut keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    keys.extend(count_keys.iter().map(Vec::as_slice));
    let mut args: Vec<&[u8]> = vec![mode, prefix.as_bytes(), &agent_start, &agent_tail];
    args.extend(count_args.iter().map(Vec::as_slice));
    let tag = cl.tag(Op::Route(PendingRoute {
        conn: req.conn,
        req_id: req.id.to_owned(),
        target: target.to_owned(),
        ts: req.ts,
        usage_key: usage_key.clone(),
        then_client,
        generation: cl.usage.generation,
    }));
    if !cl
        .broker
        .eval(tag, scripts::ROUTE_AGENT_INDEX, &keys, &args, req.now, out)
    {
        cl.untag(tag);
        return Err(unavailable());
    }
    users::route_asked(cl, req.conn, req.id);
    cl.usage.asked(&usage_key, Count::Routes);
    Ok(())
}

/// A route script answered: published (an agent's id, or 1 for a client), or not: then the
/// route to a client of that id, when an agent was looked for first, else
/// `TARGET_NOT_FOUND` (`UNAVAILABLE` when no answer came).
pub(crate) fn routed(
    state: &mut CoreState,
    cl: &mut Cluster,
    mut p: PendingRoute,
    reply: Option<Reply>,
    now: Instant,
    out: &mut Actions<Event>,
) {
    let taken = match &reply {
        Some(Reply::Bulk(Some(_))) => Some(true),
        Some(Reply::Array(Some(items))) => {
            Some(items.first().and_then(Reply::as_bytes) != Some(b"err"))
        }
        Some(Reply::Integer(0)) => Some(false),
        _ => None,
    };
    users::take_answered(
        cl,
        Count::Routes,
        &p.usage_key,
        p.generation,
        taken,
        now,
        out,
    );
    let reject = match reply {
        Some(Reply::Integer(0)) => match p.then_client.take() {
            Some(client) => {
                let prefix = cl.setup.prefix.clone();
                let flag: &[u8] = if client.allowed { b"1" } else { b"0" };
                let bound = state.config.max_pending_routes_per_user;
                let (count_keys, count_args) = users::route_keys(cl, &p.usage_key, bound);
                let mut args: Vec<&[u8]> = vec![
                    prefix.as_bytes(),
                    client.user.as_bytes(),
                    flag,
                    &client.event,
                ];
                args.extend(count_args.iter().map(Vec::as_slice));
                let keys: [&[u8]; 3] = [&client.key, &count_keys[0], &count_keys[1]];
                let (conn, req_id, ts) = (p.conn, p.req_id.clone(), p.ts);
                let usage_key = p.usage_key.clone();
                p.generation = cl.usage.generation;
                let tag = cl.tag(Op::Route(p));
                if cl
                    .broker
                    .eval(tag, scripts::ROUTE_INDEX, &keys, &args, now, out)
                {
                    cl.usage.asked(&usage_key, Count::Routes);
                    return;
                }
                cl.untag(tag);
                users::route_refused(cl, conn, &req_id);
                let reject = unavailable();
                return outbound::send_error(
                    out,
                    &mut state.metrics,
                    conn,
                    Some(&req_id),
                    ts,
                    &reject,
                );
            }
            None => not_found(&p.target),
        },
        Some(Reply::Bulk(Some(node))) => return sent_to(state, cl, &p, &node, now, out),
        Some(Reply::Array(Some(items)))
            if items.first().and_then(Reply::as_bytes) == Some(b"err") =>
        {
            Reject::refused(&UserLimit(Resource::PendingRoutes), &p.usage_key)
        }
        Some(Reply::Array(Some(items))) => {
            match items.get(1).and_then(Reply::as_bytes) {
                Some(node) => sent_to(state, cl, &p, node, now, out),
                None => users::route_refused(cl, p.conn, &p.req_id),
            }
            return;
        }
        Some(_) => not_found(&p.target),
        None => unavailable(),
    };
    users::route_refused(cl, p.conn, &p.req_id);
    outbound::send_error(
        out,
        &mut state.metrics,
        p.conn,
        Some(&p.req_id),
        p.ts,
        &reject,
    );
}

/// A route request of `p` is on its way to `node`, counted: remember it until it is
/// answered, or the node is declared dead.
fn sent_to(
    state: &CoreState,
    cl: &mut Cluster,
    p: &PendingRoute,
    node: &[u8],
    now: Instant,
    out: &mut Actions<Event>,
) {
    let node = String::from_utf8_lossy(node).into_owned();
    let alive = state.clients.get(p.conn).is_some();
    users::route_sent(
        cl,
        p.conn,
        &p.req_id,
        node,
        &p.usage_key,
        true,
        alive,
        now,
        out,
    );
}

/// Redis answered the count of a route request to a target on this node: delivered, or
/// `LIMIT_EXCEEDED`; with no answer this node decides alone.
pub(crate) fn local_counted(
    state: &mut CoreState,
    cl: &mut Cluster,
    p: PendingLocalRoute,
    reply: Option<Reply>,
    now: Instant,
    out: &mut Actions<Event>,
) {
    let (conn, req_id, ts) = (p.conn, p.req_id.clone(), p.ts);
    cl.release(conn);
    let taken = match &reply {
        Some(Reply::Integer(1)) => Some(true),
        Some(Reply::Integer(0)) => Some(false),
        _ => None,
    };
    users::take_answered(
        cl,
        Count::Routes,
        &p.usage_key,
        p.generation,
        taken,
        now,
        out,
    );
    let result = match reply {
        Some(Reply::Integer(1)) => deliver_local(state, cl, p, true, now, out),
        Some(Reply::Integer(0)) => Err(Reject::refused(
            &UserLimit(Resource::PendingRoutes),
            &p.usage_key,
        )),
        _ => deliver_local(state, cl, p, false, now, out),
    };
    if let Err(reject) = result {
        outbound::send_error(out, &mut state.metrics, conn, Some(&req_id), ts, &reject);
    }
}

/// Deliver the route request of `p` to its target on this node, counted toward its user
/// (`in_redis`: Redis counted it already; else this node decides on its own share).
fn deliver_local(
    state: &mut CoreState,
    cl: &mut Cluster,
    p: PendingLocalRoute,
    in_redis: bool,
    now: Instant,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let give_back = |cl: &mut Cluster, out: &mut Actions<Event>| {
        if in_redis {
            users::give_back(cl, Count::Routes, &p.usage_key, now, out);
        }
    };
    if state.clients.get(p.conn).is_none() {
        give_back(cl, out);
        return Ok(());
    }
    let bound = state.config.max_pending_routes_per_user;
    if !in_redis && !users::route_room(cl, &p.usage_key, bound) {
        return Err(Reject::refused(
            &UserLimit(Resource::PendingRoutes),
            &p.usage_key,
        ));
    }
    if !state.clients.get(p.target_conn).is_some_and(|c| !c.closing) {
        give_back(cl, out);
        return Err(not_found(&p.target));
    }
    let key = (p.target_conn, p.requester.clone(), p.req_id.clone());
    let node = cl.node.clone();
    if let Err(e) = cl.routes.insert(key, (node.clone(), p.shown.clone())) {
        give_back(cl, out);
        return Err(Reject::refused(&e, &p.req_id));
    }
    users::route_sent(
        cl,
        p.conn,
        &p.req_id,
        node,
        &p.usage_key,
        in_redis,
        true,
        now,
        out,
    );
    out.send_text(p.target_conn, std::str::from_utf8(&p.message).unwrap_or(""));
    Ok(())
}

/// A control event: a dead node's routes are answered `TARGET_NOT_FOUND`, and what it had
/// asked of this node's clients is forgotten.
pub(crate) fn on_control(
    state: &mut CoreState,
    cl: &mut Cluster,
    payload: &[u8],
    now: Instant,
    out: &mut Actions<Event>,
) {
    #[derive(Deserialize)]
    struct Control {
        e: String,
        n: String,
    }
    let Ok(event) = serde_json::from_slice::<Control>(payload) else {
        return;
    };
    if event.e != "node_dead" {
        return;
    }
    log::info!(
        "cluster: node {} is gone",
        crate::core::escaped::Escaped(&event.n)
    );
    let ts = state.wall_ms(now);
    for (conn, id) in users::node_gone(cl, &event.n, now, out) {
        let reject = Reject::new(
            ErrorCode::TargetNotFound,
            format!(
                "Target of route_request {} not found: its node is gone",
                short(&id)
            ),
        );
        outbound::send_error(out, &mut state.metrics, conn, Some(&id), ts, &reject);
    }
    cl.routes.drop_requester_node(&event.n);
}

/// A route event's first line.
#[derive(Deserialize)]
struct RouteEvent {
    c: String,
    r: String,
    n: String,
    i: String,
    /// The agent the request was routed through, if it was.
    #[serde(default)]
    a: Option<String>,
    /// The requester's user and whether it is `admin`.
    #[serde(default)]
    u: String,
    #[serde(default)]
    adm: bool,
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
            let owner = state.clients.get(conn).and_then(|c| c.user_id.as_deref());
            let shown = shown_as(head.a.as_deref(), &head.u, head.adm, owner);
            cl.routes
                .insert(
                    (conn, head.r.clone(), head.i.clone()),
                    (head.n.clone(), shown),
                )
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
                send_to_node(cl, &head.n, &head.r, Some(&head.i), &message, now, out);
            }
        }
    }
}

/// Publish `message` for `client_id` on the channel of `node`.
fn send_to_node(
    cl: &mut Cluster,
    node: &str,
    client_id: &str,
    answers: Option<&str>,
    message: &[u8],
    now: Instant,
    out: &mut Actions<Event>,
) -> bool {
    let mut event = b"{\"e\":\"send\",\"c\":".to_vec();
    wire::write_str(&mut event, client_id);
    if let Some(id) = answers {
        event.extend_from_slice(b",\"i\":");
        wire::write_str(&mut event, id);
    }
    event.extend_from_slice(b"}\n");
    event.extend_from_slice(message);
    super::reply::publish_on_node(cl, node, &event, now, out)
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
    let Some((_, shown)) = cl.routes.get(&key).cloned() else {
        let request = format!("{} from {}", short(reply_to), short(target));
        return Err(Reject::refused(&RouteError::NotPending, &request));
    };
    let Some(client) = state.clients.get(req.conn) else {
        return Ok(());
    };
    let head = Head::new("route_response", req.ts)
        .reply_to(reply_to)
        .source(shown.as_deref().unwrap_or(&client.client_id));
    outbound::check_delivery(&head, env.payload.len(), state.config.max_message_size)?;
    let Some((node, _)) = cl.routes.take(&key) else {
        return Ok(());
    };
    let mut message = Vec::new();
    wire::write_envelope(&mut message, &head, wire::raw(env.payload));
    if node == cl.node {
        if let Some(conn) = state.clients.conn_of(target) {
            users::route_done(cl, conn, reply_to, req.now, out);
            out.send_text(conn, std::str::from_utf8(&message).unwrap_or(""));
        }
        return Ok(());
    }
    if !send_to_node(cl, &node, target, Some(reply_to), &message, req.now, out) {
        return Err(unavailable());
    }
    Ok(())
}
