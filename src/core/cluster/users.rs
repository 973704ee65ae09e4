//! The per-user bounds that the cluster counts in Redis, node by node:
//! `max_connections_per_user` and `max_pending_routes_per_user` (PROTOCOL sections 11 and
//! 13). Each node keeps its own field in a user's HASH (`P:uc:{usage-key}`,
//! `P:ur:{usage-key}`, the `USAGE` script), so that the bound holds on the sum under
//! concurrent requests on different nodes.
//!
//! Contract:
//! - A take is checked and counted by one script call (for a route, inside the script that
//!   publishes it); what is given back (a close, an answer, a drop) is sent without waiting,
//!   pipelined on the command connection.
//! - While the broker is not serving, this node decides alone, on its own share ([`Usage`]),
//!   and writes its share again, whole, when the broker is back (on every reconnection, after
//!   Redis lost its data, and whenever a change could not be sent); the sweep of a dead node
//!   removes its fields.
//! - A route request counts from the moment it is published (or, to a target on this node,
//!   counted) until the requester's node learns it ended: answered or refused (the answer
//!   names its id), its target's connection closed (the target's node says so on the
//!   requester's node channel: `{"e":"done","c":REQUESTER,"i":ID}` and a newline), the
//!   requester's connection closed, or the target's node died.
//!
//! [`Usage`]: super::usage::Usage

use std::time::Instant;

use super::node::{node_channel, Cluster, Op, MAX_OUTSTANDING};
use super::pending::Routed;
use super::usage::{Count, PendingAuth, PendingLocalRoute};
use crate::app::{Actions, ConnId};
use crate::cluster::scripts;
use crate::core::clients::Clients;
use crate::core::events::Event;
use crate::core::wire;

/// Usage keys written back by one `set` call at most.
const WRITE_BATCH: usize = 100;

/// The HASH of `count` for `key`.
fn hash(cl: &Cluster, count: Count, key: &str) -> Vec<u8> {
    cl.key(&[count.tag(), key.as_bytes()])
}

/// The SET of the usage keys this node counts under.
fn node_keys(cl: &Cluster) -> Vec<u8> {
    cl.key(&[b"n", cl.node.as_bytes(), b"u"])
}

/// The keys and arguments a route script is given to count the request toward its
/// requester's bound: (`P:ur:{usage-key}`, `P:n:{node}:u`) and (node, usage key, bound).
pub(crate) fn route_keys(cl: &Cluster, key: &str, bound: usize) -> ([Vec<u8>; 2], [Vec<u8>; 3]) {
    (
        [hash(cl, Count::Routes, key), node_keys(cl)],
        [
            cl.node.as_bytes().to_vec(),
            key.as_bytes().to_vec(),
            bound.to_string().into_bytes(),
        ],
    )
}

/// Send a `take` of `count` for `key` against `bound`, waiting as `op`; `Err(op)` when it
/// could not be sent.
fn take(
    cl: &mut Cluster,
    count: Count,
    key: &str,
    bound: usize,
    op: Op,
    now: Instant,
    out: &mut Actions<Event>,
) -> Result<(), Box<Op>> {
    let keys = [hash(cl, count, key), node_keys(cl)];
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let bound = bound.to_string();
    let (node, prefix) = (cl.node.clone(), cl.setup.prefix.clone());
    let args: [&[u8]; 5] = [
        b"take",
        node.as_bytes(),
        prefix.as_bytes(),
        key.as_bytes(),
        bound.as_bytes(),
    ];
    let tag = cl.tag(op);
    if cl
        .broker
        .eval(tag, scripts::USAGE_INDEX, &keys, &args, now, out)
    {
        cl.usage.asked(key, count);
        return Ok(());
    }
    match cl.untag(tag) {
        Some(op) => Err(Box::new(op)),
        None => Ok(()),
    }
}

/// Ask Redis to count the connection of `pending` (its user is not `anonymous`) against
/// `bound`; the connection waits for the answer. `Err` gives it back when the request could
/// not be sent (then this node decides alone).
pub(crate) fn take_connection(
    cl: &mut Cluster,
    bound: usize,
    pending: PendingAuth,
    now: Instant,
    out: &mut Actions<Event>,
) -> Result<(), Box<PendingAuth>> {
    let conn = pending.conn;
    let key = pending.grant.user.clone();
    match take(
        cl,
        Count::Connections,
        &key,
        bound,
        Op::Auth(pending),
        now,
        out,
    ) {
        Ok(()) => {
            cl.hold(conn);
            Ok(())
        }
        Err(op) => match *op {
            Op::Auth(pending) => Err(Box::new(pending)),
            _ => Ok(()),
        },
    }
}

/// Ask Redis to count the route request of `pending` to a target on this node against
/// `bound`; `Err` gives it back when the request could not be sent.
pub(crate) fn take_route(
    cl: &mut Cluster,
    bound: usize,
    pending: PendingLocalRoute,
    now: Instant,
    out: &mut Actions<Event>,
) -> Result<(), Box<PendingLocalRoute>> {
    let key = pending.usage_key.clone();
    match take(
        cl,
        Count::Routes,
        &key,
        bound,
        Op::RouteTake(pending),
        now,
        out,
    ) {
        Ok(()) => Ok(()),
        Err(op) => match *op {
            Op::RouteTake(pending) => Err(Box::new(pending)),
            _ => Ok(()),
        },
    }
}

/// Change this node's field of `count` for `key` by `n` in Redis, without waiting; when it
/// cannot be sent, this node's share is written again later.
fn send_add(
    cl: &mut Cluster,
    count: Count,
    key: &str,
    n: i64,
    now: Instant,
    out: &mut Actions<Event>,
) {
    if !cl.is_serving() {
        cl.usage.unwritten = true;
        return;
    }
    let keys = [
        hash(cl, count, key),
        node_keys(cl),
        hash(cl, count.other(), key),
    ];
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let n = n.to_string();
    let (node, prefix) = (cl.node.clone(), cl.setup.prefix.clone());
    let args: [&[u8]; 5] = [
        b"add",
        node.as_bytes(),
        prefix.as_bytes(),
        key.as_bytes(),
        n.as_bytes(),
    ];
    let tag = cl.tag(Op::Ignore);
    if !cl
        .broker
        .eval(tag, scripts::USAGE_INDEX, &keys, &args, now, out)
    {
        cl.untag(tag);
        cl.usage.unwritten = true;
    }
}

/// A take of `count` for `key`, sent at `generation`, was answered: `Some(true)` counted,
/// `Some(false)` refused, `None` without an answer that says (no reply, an error). A refused
/// take that a write-back wrote as counted is given back; with no answer this node's share
/// is written again.
pub(crate) fn take_answered(
    cl: &mut Cluster,
    count: Count,
    key: &str,
    generation: u64,
    taken: Option<bool>,
    now: Instant,
    out: &mut Actions<Event>,
) {
    cl.usage.answered(key, count);
    match taken {
        Some(false) if generation != cl.usage.generation => {
            send_add(cl, count, key, -1, now, out);
        }
        None => cl.usage.unwritten = true,
        _ => {}
    }
}

/// One more of `count` for `key` in this node's share; `in_redis` when Redis counted it
/// already (a take), else it is added there too.
pub(crate) fn counted(
    cl: &mut Cluster,
    count: Count,
    key: &str,
    in_redis: bool,
    now: Instant,
    out: &mut Actions<Event>,
) {
    cl.usage.add(key, count);
    if !in_redis {
        send_add(cl, count, key, 1, now, out);
    }
}

/// `n` of `count` for `key` given back, here and in Redis.
pub(crate) fn released(
    cl: &mut Cluster,
    count: Count,
    key: &str,
    n: u64,
    now: Instant,
    out: &mut Actions<Event>,
) {
    let taken = cl.usage.sub(key, count, n);
    if taken > 0 {
        send_add(cl, count, key, -(taken as i64), now, out);
    }
}

/// One of `count` that Redis counted for `key` and this node never held (its connection
/// went meanwhile): given back there.
pub(crate) fn give_back(
    cl: &mut Cluster,
    count: Count,
    key: &str,
    now: Instant,
    out: &mut Actions<Event>,
) {
    send_add(cl, count, key, -1, now, out);
}

/// What this node holds, as a standalone gateway would decide it: whether `key` may hold one
/// more route request under `bound` (the broker is not serving).
pub(crate) fn route_room(cl: &Cluster, key: &str, bound: usize) -> bool {
    cl.usage.get(key, Count::Routes) < bound as u64
}

/// Write this node's share again, whole: its fields removed, then set (the broker is back and
/// the heartbeat that followed found this node alive, Redis lost its data, or a change could
/// not be sent).
pub(crate) fn write_back(cl: &mut Cluster, now: Instant, out: &mut Actions<Event>) {
    cl.usage.unwritten = false;
    let set = node_keys(cl);
    let node = cl.node.clone();
    let prefix = cl.setup.prefix.clone();
    let head: [&[u8]; 3] = [b"clear", node.as_bytes(), prefix.as_bytes()];
    cl.usage.generation = cl.usage.generation.wrapping_add(1);
    let counts: Vec<(String, String, String)> = cl
        .usage
        .to_write()
        .into_iter()
        .map(|(k, c, r)| (k, c.to_string(), r.to_string()))
        .collect();
    let mut calls: Vec<Vec<&[u8]>> = vec![head.to_vec()];
    for batch in counts.chunks(WRITE_BATCH) {
        let mut args: Vec<&[u8]> = vec![b"set", node.as_bytes(), prefix.as_bytes()];
        for (k, c, r) in batch {
            args.extend_from_slice(&[k.as_bytes(), c.as_bytes(), r.as_bytes()]);
        }
        calls.push(args);
    }
    for args in calls {
        let tag = cl.tag(Op::Ignore);
        if !cl
            .broker
            .eval(tag, scripts::USAGE_INDEX, &[&set], &args, now, out)
        {
            cl.untag(tag);
            cl.usage.unwritten = true;
            return;
        }
    }
}

/// A route request of `conn` (usage key `key`) is on its way to `node` (this node's name
/// for a local target), counted in Redis already when `in_redis`: remember it until it
/// ends. Given back at once when its requester is gone (`alive` false) or it cannot be
/// remembered (a second request of the same id, or [`MAX_OUTSTANDING`] of them).
#[allow(clippy::too_many_arguments)]
pub(crate) fn route_sent(
    cl: &mut Cluster,
    conn: ConnId,
    req_id: &str,
    node: String,
    key: &str,
    in_redis: bool,
    alive: bool,
    now: Instant,
    out: &mut Actions<Event>,
) {
    let id = (conn, req_id.to_owned());
    cl.routes_asked.remove(&id);
    // Its answer may come on the subscriber connection before the script's reply.
    let ended = cl.routes_ended_early.remove(&id);
    if ended
        || !alive
        || cl.outstanding.len() >= MAX_OUTSTANDING
        || cl.outstanding.contains_key(&id)
    {
        if in_redis {
            give_back(cl, Count::Routes, key, now, out);
        }
        return;
    }
    cl.outstanding.insert(id, (node, key.to_owned()));
    counted(cl, Count::Routes, key, in_redis, now, out);
}

/// A route request of `conn` is at the broker: its end may come before the script's reply
/// ([`route_sent`] or [`route_refused`] then).
pub(crate) fn route_asked(cl: &mut Cluster, conn: ConnId, req_id: &str) {
    cl.routes_asked.insert((conn, req_id.to_owned()));
}

/// The script of a route request of `conn` refused it, or gave no answer.
pub(crate) fn route_refused(cl: &mut Cluster, conn: ConnId, req_id: &str) {
    let id = (conn, req_id.to_owned());
    cl.routes_asked.remove(&id);
    cl.routes_ended_early.remove(&id);
}

/// The route request `req_id` of `conn` ended: given back; its target's node, if it was
/// outstanding (one whose script has not answered yet is remembered as ended).
pub(crate) fn route_done(
    cl: &mut Cluster,
    conn: ConnId,
    req_id: &str,
    now: Instant,
    out: &mut Actions<Event>,
) -> Option<String> {
    let id = (conn, req_id.to_owned());
    let Some((node, key)) = cl.outstanding.remove(&id) else {
        if cl.routes_asked.contains(&id) {
            cl.routes_ended_early.insert(id);
        }
        return None;
    };
    released(cl, Count::Routes, &key, 1, now, out);
    Some(node)
}

/// `conn` closed: what it counted is given back (`key`: its usage key; `user`: whether it
/// was authenticated as a user other than `anonymous`).
pub(crate) fn conn_gone(
    cl: &mut Cluster,
    conn: ConnId,
    key: &str,
    user: bool,
    now: Instant,
    out: &mut Actions<Event>,
) {
    let before = cl.outstanding.len();
    cl.outstanding
        .retain(|(requester, _), _| *requester != conn);
    cl.routes_asked.retain(|(requester, _)| *requester != conn);
    cl.routes_ended_early
        .retain(|(requester, _)| *requester != conn);
    let routes = (before - cl.outstanding.len()) as u64;
    if routes > 0 {
        released(cl, Count::Routes, key, routes, now, out);
    }
    if user {
        released(cl, Count::Connections, key, 1, now, out);
    }
}

/// `node` is gone: the route requests sent there end; which they were.
pub(crate) fn node_gone(
    cl: &mut Cluster,
    node: &str,
    now: Instant,
    out: &mut Actions<Event>,
) -> Vec<(ConnId, String)> {
    let lost: Vec<(ConnId, String)> = cl
        .outstanding
        .iter()
        .filter(|(_, (n, _))| n == node)
        .map(|(key, _)| key.clone())
        .collect();
    for (conn, id) in &lost {
        route_done(cl, *conn, id, now, out);
    }
    lost
}

/// Deliveries to a target of this node that closed, unanswered: each requester's node is
/// told (this node ends its own requesters' at once).
pub(crate) fn deliveries_dropped(
    clients: &Clients,
    cl: &mut Cluster,
    dropped: Vec<((ConnId, String, String), Routed)>,
    now: Instant,
    out: &mut Actions<Event>,
) {
    for ((_, requester, id), (node, _)) in dropped {
        if node == cl.node {
            if let Some(conn) = clients.conn_of(&requester) {
                route_done(cl, conn, &id, now, out);
            }
            continue;
        }
        let mut event = b"{\"e\":\"done\",\"c\":".to_vec();
        wire::write_str(&mut event, &requester);
        event.extend_from_slice(b",\"i\":");
        wire::write_str(&mut event, &id);
        event.extend_from_slice(b"}\n");
        let channel = node_channel(&cl.setup.prefix, &node);
        let tag = cl.tag(Op::Ignore);
        if !cl
            .broker
            .call(tag, &[b"PUBLISH", &channel, &event], now, out)
        {
            cl.untag(tag);
        }
    }
}
