//! Where each authenticated client is, cluster-wide, and messages to a client on another
//! node (the host's `send_to_client`, PROTOCOL section 13).
//!
//! Contract:
//! - An authenticated client is recorded in the client map (`P:c:{cid}` -> its node and
//!   user) when it authenticates and forgotten when it closes; when the broker was down at
//!   either moment, the record is made good when it is up again (every local client is
//!   written again, and Redis drops nothing it should keep: a closed client's record is
//!   removed by its node, or with the node's other records when the node is swept).
//! - A message to a client not on this node is published, through the `SEND_TO` script, on
//!   the channel of the client's node, which delivers it to the client if it is still there.
//!   Node channel events are one JSON line (`{"e":"send","c":CID}`), a newline, and the
//!   message as the client gets it. A `send` that answers a route request (`"i":ID`), and a
//!   `done` (`{"e":"done","c":CID,"i":ID}`: the request's target left), end that request's
//!   count toward its user's pending routes (`users.rs`).

use std::time::Instant;

use serde::Deserialize;

use super::node::{Cluster, Op, MAX_FORGOTTEN};
use crate::app::{Actions, ConnId};
use crate::cluster::scripts;
use crate::core::auth::ANONYMOUS;
use crate::core::events::Event;
use crate::core::state::CoreState;
use crate::core::wire;

/// Record (with `node`) or forget (empty `node`) `client_id` in the client map.
fn write(
    cl: &mut Cluster,
    client_id: &str,
    node: &str,
    user_id: &str,
    now: Instant,
    out: &mut Actions<Event>,
) -> bool {
    let keys = [
        cl.key(&[b"c", client_id.as_bytes()]),
        cl.key(&[b"n", cl.node.as_bytes(), b"c"]),
        cl.key(&[b"clients"]),
    ];
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let args: [&[u8]; 3] = [client_id.as_bytes(), node.as_bytes(), user_id.as_bytes()];
    let tag = cl.tag(Op::Ignore);
    let sent = cl
        .broker
        .eval(tag, scripts::CLIENT_INDEX, &keys, &args, now, out);
    if !sent {
        cl.untag(tag);
    }
    sent
}

/// `conn` authenticated: record where it is.
pub(crate) fn authenticated(
    state: &mut CoreState,
    conn: ConnId,
    now: Instant,
    out: &mut Actions<Event>,
) {
    let Some(mut cl) = state.cluster.take() else {
        return;
    };
    record(state, &mut cl, conn, now, out);
    state.cluster = Some(cl);
}

/// `conn` authenticated: record where it is (the cluster taken out of `state`).
pub(crate) fn record(
    state: &mut CoreState,
    cl: &mut Cluster,
    conn: ConnId,
    now: Instant,
    out: &mut Actions<Event>,
) {
    if let Some(client) = state.clients.get(conn) {
        let node = cl.node.clone();
        let user = client.user_id.as_deref().unwrap_or(ANONYMOUS);
        if !write(cl, &client.client_id, &node, user, now, out) {
            cl.clients_unwritten = true;
        }
        // A device it declared before it authenticated is listed from now on.
        if client.device.is_some() {
            super::devices::record(state, cl, conn, None, now, out);
        }
    }
}

/// `client_id` closed: forget it.
pub(crate) fn closed(cl: &mut Cluster, client_id: &str, now: Instant, out: &mut Actions<Event>) {
    if !write(cl, client_id, "", "", now, out) && cl.forgotten.len() < MAX_FORGOTTEN {
        cl.forgotten.push(client_id.to_owned());
    }
}

/// The broker is up, or Redis lost its data: write every local client again, and forget
/// those that closed while it was down.
pub(crate) fn write_back(
    state: &CoreState,
    cl: &mut Cluster,
    now: Instant,
    out: &mut Actions<Event>,
) {
    for client_id in std::mem::take(&mut cl.forgotten) {
        closed(cl, &client_id, now, out);
    }
    cl.clients_unwritten = false;
    let node = cl.node.clone();
    for client in state.clients.iter().filter(|c| c.is_authenticated()) {
        let user = client.user_id.as_deref().unwrap_or(ANONYMOUS);
        if !write(cl, &client.client_id, &node, user, now, out) {
            cl.clients_unwritten = true;
            return;
        }
    }
}

/// Send `message` (written as the client gets it) to `client_id` on another node; false
/// when the broker is not serving.
pub(crate) fn send_remote(
    cl: &mut Cluster,
    client_id: &str,
    message: &[u8],
    now: Instant,
    out: &mut Actions<Event>,
) -> bool {
    if !cl.is_serving() {
        return false;
    }
    let mut event = b"{\"e\":\"send\",\"c\":".to_vec();
    wire::write_str(&mut event, client_id);
    event.extend_from_slice(b"}\n");
    event.extend_from_slice(message);
    let key = cl.key(&[b"c", client_id.as_bytes()]);
    let prefix = cl.setup.prefix.clone();
    let tag = cl.tag(Op::Ignore);
    let sent = cl.broker.eval(
        tag,
        scripts::SEND_TO_INDEX,
        &[&key],
        &[prefix.as_bytes(), &event],
        now,
        out,
    );
    if !sent {
        cl.untag(tag);
    }
    sent
}

/// A node channel event's first line.
#[derive(Deserialize)]
struct NodeEvent {
    e: String,
    c: String,
    /// For a route's answer: the request's id (it is answered, so no longer outstanding).
    #[serde(default)]
    i: Option<String>,
}

/// A message on this node's channel: deliver it to its client, if that is still here.
pub(crate) fn on_node_message(
    state: &mut CoreState,
    cl: &mut Cluster,
    payload: &[u8],
    now: Instant,
    out: &mut Actions<Event>,
) {
    let Some(at) = payload.iter().position(|&b| b == b'\n') else {
        return;
    };
    let Ok(head) = serde_json::from_slice::<NodeEvent>(&payload[..at]) else {
        log::warn!("cluster: a message on this node's channel could not be read");
        return;
    };
    if head.e != "send" && head.e != "done" {
        return;
    }
    let Some(conn) = state.clients.conn_of(&head.c) else {
        return;
    };
    if let Some(id) = head.i {
        // A route's answer, or the end of a route whose target left: it no longer counts.
        super::users::route_done(cl, conn, &id, now, out);
    }
    if head.e == "done" {
        return;
    }
    if let Ok(text) = std::str::from_utf8(&payload[at + 1..]) {
        out.send_text(conn, text);
    }
}
