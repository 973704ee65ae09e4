//! `admin_kick` and `admin_clients` across the nodes of a cluster (PROTOCOL sections 12 and
//! 13): a request this node asks of other nodes over their node channels, and the answers.
//!
//! Contract:
//! - `admin_kick` of a client of this node is served as on one gateway, by its handler, and
//!   so are the refusals of its fields. Of a client elsewhere, the `ADMIN_KICK` script asks
//!   the node the client map names, or, for a client not in it (an unauthenticated one),
//!   every other live node; each node asked closes the client if it has it (1008 `Kicked` or
//!   `Kicked: REASON`, as on one gateway) and answers on the asker's node channel. The admin
//!   gets `kicked` as soon as a node answers that it closed the client; `TARGET_NOT_FOUND`
//!   when no node was asked or every node asked answered that it has no such client;
//!   `UNAVAILABLE` when the broker is down or fails, or a node asked has not answered within
//!   `broker_timeout_ms`.
//! - `admin_clients` walks the live nodes in the byte order of their ids; a page comes from
//!   one node, from its own table as a standalone gateway pages it, within the room the
//!   asker's reply leaves under `max_message_size`. The cursor names the node and its slot
//!   (`n`, hex digits, `.`, node) or the node the walk goes on after (`x.`, node); any other
//!   is `INVALID_MESSAGE` naming `cursor`, as on one gateway. A node that is gone when the
//!   walk comes to it is passed over (its clients are gone for everyone); one asked that does
//!   not answer within `broker_timeout_ms` makes the page `UNAVAILABLE` (the same cursor can
//!   be given again). A walk lists every client open all along exactly once.
//! - The admin's connection is held while a request is asked ([`Cluster::hold`]); every
//!   request asked gets one answer, and at most one request per connection is asked at once.
//! - Node channel events: `{"e":"admin_kick","n":ASKER,"i":ID,"c":CID,"why":REASON|null}` and
//!   `{"e":"admin_clients","n":ASKER,"i":ID,"l":LIMIT,"b":BYTES,"f":SLOT}`, answered by
//!   `{"e":"admin_answer","i":ID,"ok":BOOL,"f":NEXT_SLOT?}` (for a page, a newline and its
//!   records as a JSON array after it) on the asker's channel.

use std::collections::HashMap;
use std::time::Instant;

use serde::Deserialize;

use super::asks::{Ask, Asked};
use super::node::{Cluster, Op};
use super::reply::{self, unavailable};
use crate::app::{Actions, ConnId};
use crate::cluster::resp::Reply;
use crate::cluster::scripts;
use crate::core::errors::ErrorCode;
use crate::core::escaped::Escaped;
use crate::core::events::Event;
use crate::core::outbound::{self, short, Reject};
use crate::core::requests::{admin, devices};
use crate::core::state::{kick_reason, CoreState, Req, CLOSE_POLICY};
use crate::core::wire::payloads::{
    self, AdminClientsIn, AdminKickIn, AdminResultOut, ClientListOut,
};
use crate::core::wire::{self, opt_str, req_str, Envelope, FieldError, Head};

/// The longest node id a cursor names: `node_id` (64 bytes) and the suffix a fenced node
/// takes (`-` and a `u32`), with room to spare.
const MAX_NODE_BYTES: usize = 80;

/// Where a walk of `admin_clients` goes on.
#[derive(Debug, PartialEq, Eq)]
enum Place {
    /// At slot `1` of node `0`.
    At(String, u32),
    /// At the first live node after this one.
    After(String),
}

fn cursor(place: &Place) -> String {
    match place {
        Place::At(node, slot) => format!("n{slot:x}.{node}"),
        Place::After(node) => format!("x.{node}"),
    }
}

fn is_node_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_NODE_BYTES
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The place a cursor names, or `None` when it is not one [`cursor`] writes.
fn parse_cursor(text: &str) -> Option<Place> {
    let (start, node) = text.split_once('.')?;
    if !is_node_id(node) {
        return None;
    }
    if start == "x" {
        return Some(Place::After(node.to_owned()));
    }
    let hex = start.strip_prefix('n')?;
    if hex.is_empty() || hex.len() > 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let slot = u32::from_str_radix(hex, 16).ok()?;
    Some(Place::At(node.to_owned(), slot))
}

fn not_found(client_id: &str) -> Reject {
    Reject::new(
        ErrorCode::TargetNotFound,
        format!("Client {} not found", short(client_id)),
    )
}

/// Ask `event` of other nodes through script `script`; the connection is held until the
/// answer.
#[allow(clippy::too_many_arguments)]
fn ask(
    cl: &mut Cluster,
    req: &Req<'_>,
    id: u64,
    what: Asked,
    script: usize,
    keys: &[Vec<u8>],
    args: &[&[u8]],
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let tag = cl.tag(Op::Admin(id));
    if !cl.broker.eval(tag, script, &keys, args, req.now, out) {
        cl.untag(tag);
        return Err(unavailable());
    }
    let ask = Ask {
        conn: req.conn,
        req_id: req.id.to_owned(),
        ts: req.ts,
        deadline: req.now + cl.setup.timeout,
        what,
    };
    cl.admin.waiting.insert(id, ask);
    cl.hold(req.conn);
    Ok(())
}

/// The start of a request event: `{"e":"KIND","n":THIS_NODE,"i":ID`.
fn event_start(kind: &str, node: &str, id: u64) -> Vec<u8> {
    let mut event = b"{\"e\":".to_vec();
    wire::write_str(&mut event, kind);
    event.extend_from_slice(b",\"n\":");
    wire::write_str(&mut event, node);
    event.extend_from_slice(b",\"i\":");
    wire::write_u64(&mut event, id);
    event
}

/// `admin_kick` in a cluster.
pub(crate) fn kick(
    state: &mut CoreState,
    cl: &mut Cluster,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let p: AdminKickIn<'_> = payloads::parse(env)?;
    let client_id = req_str(&p.client_id, "clientId")?;
    let reason = opt_str(&p.reason, "reason")?;
    // Client ids are unique in the cluster: one of this node's is nowhere else.
    if state.clients.conn_of(client_id).is_some() {
        return admin::kick(state, req, env, out);
    }
    if !cl.is_serving() {
        return Err(unavailable());
    }
    cl.admin.next += 1;
    let id = cl.admin.next;
    let mut event = event_start("admin_kick", &cl.node, id);
    event.extend_from_slice(b",\"c\":");
    wire::write_str(&mut event, client_id);
    event.extend_from_slice(b",\"why\":");
    match reason {
        Some(reason) => wire::write_str(&mut event, reason),
        None => event.extend_from_slice(b"null"),
    }
    event.push(b'}');
    let keys = [cl.key(&[b"c", client_id.as_bytes()]), cl.key(&[b"nodes"])];
    let (prefix, node) = (cl.setup.prefix.clone(), cl.node.clone());
    let dead = cl.setup.dead.as_millis().to_string();
    let args: [&[u8]; 4] = [prefix.as_bytes(), node.as_bytes(), dead.as_bytes(), &event];
    let what = Asked::Kick {
        client_id: client_id.to_owned(),
        asked: None,
        said_no: 0,
    };
    ask(
        cl,
        req,
        id,
        what,
        scripts::ADMIN_KICK_INDEX,
        &keys,
        &args,
        out,
    )
}

/// `admin_clients` in a cluster.
pub(crate) fn clients(
    state: &mut CoreState,
    cl: &mut Cluster,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let p: AdminClientsIn<'_> = payloads::parse(env)?;
    let limit = wire::opt_limit(&p.limit, state.config.max_list_items)?;
    let (from, after, slot) = match opt_str(&p.cursor, "cursor")? {
        None => (String::new(), false, 0),
        Some(text) => match parse_cursor(text) {
            Some(Place::At(node, slot)) => (node, false, slot),
            Some(Place::After(node)) => (node, true, 0),
            None => {
                let error = FieldError::new("cursor", "cursor is not one this gateway gave");
                return Err(error.into());
            }
        },
    };
    if !cl.is_serving() {
        return Err(unavailable());
    }
    let head = Head::new("client_list", req.ts).reply_to(req.id);
    let longest = ClientListOut {
        clients: Vec::new(),
        next: Some(cursor(&Place::At("x".repeat(MAX_NODE_BYTES), u32::MAX))),
    };
    let budget = devices::room(state.config.max_message_size, &head, &longest);
    cl.admin.next += 1;
    let id = cl.admin.next;
    let mut event = event_start("admin_clients", &cl.node, id);
    event.extend_from_slice(b",\"l\":");
    wire::write_u64(&mut event, limit as u64);
    event.extend_from_slice(b",\"b\":");
    wire::write_u64(&mut event, budget as u64);
    event.extend_from_slice(b",\"f\":");
    let keys = [cl.key(&[b"nodes"])];
    let (prefix, node) = (cl.setup.prefix.clone(), cl.node.clone());
    let dead = cl.setup.dead.as_millis().to_string();
    let slot = slot.to_string();
    let args: [&[u8]; 7] = [
        prefix.as_bytes(),
        node.as_bytes(),
        dead.as_bytes(),
        from.as_bytes(),
        if after { b"1" } else { b"0" },
        slot.as_bytes(),
        &event,
    ];
    let what = Asked::Page {
        limit,
        budget,
        node: None,
        page: None,
    };
    ask(
        cl,
        req,
        id,
        what,
        scripts::ADMIN_PAGE_INDEX,
        &keys,
        &args,
        out,
    )
}

/// This node's page from `slot`: its records as a JSON array, and the slot the next page
/// starts at. A client's sessions are those its node mirrors it a member of, in id order;
/// finding them costs one pass over the node's mirrors.
fn local_page(
    state: &CoreState,
    cl: &Cluster,
    slot: u32,
    limit: usize,
    budget: usize,
) -> (Vec<u8>, Option<u32>) {
    let mut of: HashMap<ConnId, Vec<&str>> = HashMap::new();
    for (session_id, mirror) in &cl.sessions {
        for conn in mirror.members.iter().filter_map(|m| m.conn) {
            of.entry(conn).or_default().push(session_id);
        }
    }
    for ids in of.values_mut() {
        ids.sort_unstable();
    }
    let open = state.clients.clients_from(slot);
    let (records, next) = admin::page(open, limit.max(1), budget, |client| {
        of.get(&client.conn).cloned().unwrap_or_default()
    });
    let mut json = Vec::new();
    if serde_json::to_writer(&mut json, &records).is_err() {
        json = b"[]".to_vec();
    }
    (json, next)
}

/// A script of an ask answered (`None`: no answer will come).
pub(crate) fn answered(
    state: &mut CoreState,
    cl: &mut Cluster,
    id: u64,
    reply: Option<Reply>,
    out: &mut Actions<Event>,
) {
    let Some(ask) = cl.admin.waiting.get_mut(&id) else {
        // Answered already (a node's answer came first).
        return;
    };
    match (&mut ask.what, reply) {
        (_, None) => finish(state, cl, id, Err(unavailable()), out),
        (
            Asked::Kick {
                client_id,
                asked,
                said_no,
            },
            Some(Reply::Integer(n)),
        ) => {
            *asked = Some(n);
            if *said_no >= n {
                let reject = not_found(client_id);
                finish(state, cl, id, Err(reject), out);
            }
        }
        (Asked::Page { .. }, Some(Reply::Array(Some(fields)))) if fields.is_empty() => {
            // No node left: the walk ends.
            let page = Some((b"[]".to_vec(), None));
            set_page(state, cl, id, Some((String::new(), false)), page, out);
        }
        (Asked::Page { limit, budget, .. }, Some(Reply::Array(Some(fields)))) => {
            let node = reply::text(&fields, 0);
            let more = reply::text(&fields, 2) == "1";
            let (limit, budget) = (*limit, *budget);
            let page = (node == cl.node).then(|| {
                let slot = reply::text(&fields, 1).parse().unwrap_or(0);
                local_page(state, cl, slot, limit, budget)
            });
            set_page(state, cl, id, Some((node, more)), page, out);
        }
        (_, Some(other)) => {
            log::warn!("cluster: an admin script failed: {other:?}");
            let reject = Reject::new(
                ErrorCode::InternalError,
                "The cluster's admin script failed",
            );
            finish(state, cl, id, Err(reject), out);
        }
    }
}

/// Record what came of a page (the script's reply, or the node's answer); reply when both
/// are there.
fn set_page(
    state: &mut CoreState,
    cl: &mut Cluster,
    id: u64,
    from: Option<(String, bool)>,
    records: Option<(Vec<u8>, Option<u32>)>,
    out: &mut Actions<Event>,
) {
    let Some(Ask {
        what: Asked::Page { node, page, .. },
        ..
    }) = cl.admin.waiting.get_mut(&id)
    else {
        return;
    };
    if from.is_some() {
        *node = from;
    }
    if records.is_some() {
        *page = records;
    }
    if node.is_none() || page.is_none() {
        return;
    }
    let Some(Ask { what, .. }) = cl.admin.waiting.get(&id) else {
        return;
    };
    let Asked::Page {
        node: Some((node, more)),
        page: Some((records, slot)),
        ..
    } = what
    else {
        return;
    };
    let next = match (slot, more) {
        (Some(slot), _) => Some(Place::At(node.clone(), *slot)),
        (None, true) => Some(Place::After(node.clone())),
        (None, false) => None,
    };
    let mut payload = b"{\"clients\":".to_vec();
    payload.extend_from_slice(records);
    if let Some(next) = next {
        payload.extend_from_slice(b",\"next\":");
        wire::write_str(&mut payload, &cursor(&next));
    }
    payload.push(b'}');
    finish(state, cl, id, Ok(Done::Page(payload)), out);
}

/// How an ask ended well.
enum Done {
    Kicked,
    /// The `client_list` payload.
    Page(Vec<u8>),
}

/// Reply to an ask and forget it; its connection goes on.
fn finish(
    state: &mut CoreState,
    cl: &mut Cluster,
    id: u64,
    result: Result<Done, Reject>,
    out: &mut Actions<Event>,
) {
    let Some(ask) = cl.admin.waiting.remove(&id) else {
        return;
    };
    if state.clients.get(ask.conn).is_none() {
        // The admin has gone meanwhile.
        return;
    }
    match result {
        Err(reject) => {
            return reply::fail(state, cl, ask.conn, &ask.req_id, ask.ts, reject, out);
        }
        Ok(Done::Kicked) => {
            let head = Head::new("admin_result", ask.ts).reply_to(&ask.req_id);
            let payload = AdminResultOut { status: "kicked" };
            outbound::send_ser(out, &mut state.metrics, ask.conn, &head, &payload);
        }
        Ok(Done::Page(payload)) => {
            let head = Head::new("client_list", ask.ts).reply_to(&ask.req_id);
            outbound::send(
                out,
                &mut state.metrics,
                ask.conn,
                &head,
                wire::raw(&payload),
            );
        }
    }
    cl.release(ask.conn);
}

/// Asks past `broker_timeout_ms` are `UNAVAILABLE`.
pub(crate) fn expire(
    state: &mut CoreState,
    cl: &mut Cluster,
    now: Instant,
    out: &mut Actions<Event>,
) {
    if cl.admin.waiting.is_empty() {
        return;
    }
    let late: Vec<u64> = cl
        .admin
        .waiting
        .iter()
        .filter(|(_, ask)| ask.deadline <= now)
        .map(|(&id, _)| id)
        .collect();
    for id in late {
        finish(state, cl, id, Err(unavailable()), out);
    }
}

/// The broker is down: no answer will come to any ask.
pub(crate) fn broker_down(state: &mut CoreState, cl: &mut Cluster, out: &mut Actions<Event>) {
    let all: Vec<u64> = cl.admin.waiting.keys().copied().collect();
    for id in all {
        finish(state, cl, id, Err(unavailable()), out);
    }
}

/// An admin event on this node's channel (its first line).
#[derive(Deserialize)]
struct AdminEvent {
    e: String,
    i: u64,
    /// The asker's node.
    #[serde(default)]
    n: String,
    /// `admin_kick`: the client and the reason.
    #[serde(default)]
    c: String,
    #[serde(default)]
    why: Option<String>,
    /// `admin_clients`: limit, room in bytes, slot; an answer: the next slot.
    #[serde(default)]
    l: usize,
    #[serde(default)]
    b: usize,
    #[serde(default)]
    f: Option<u32>,
    /// An answer: whether the client was found (a page: always).
    #[serde(default)]
    ok: bool,
}

/// An admin event on this node's channel: a request of another node, or an answer to one
/// of this node's.
pub(crate) fn on_node_message(
    state: &mut CoreState,
    cl: &mut Cluster,
    payload: &[u8],
    now: Instant,
    out: &mut Actions<Event>,
) {
    let at = payload
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(payload.len());
    let Ok(head) = serde_json::from_slice::<AdminEvent>(&payload[..at]) else {
        log::warn!("cluster: an admin event on this node's channel could not be read");
        return;
    };
    let body = payload.get(at + 1..).unwrap_or(b"");
    match head.e.as_str() {
        "admin_kick" => {
            let found = state
                .clients
                .conn_of(&head.c)
                .filter(|&conn| state.clients.get(conn).is_some_and(|c| !c.closing));
            if let Some(conn) = found {
                log::debug!(
                    "admin on node {} kicks client {}",
                    Escaped(&head.n),
                    Escaped(&head.c)
                );
                state.close(out, conn, CLOSE_POLICY, kick_reason(head.why.as_deref()));
            }
            answer(cl, &head, found.is_some(), None, &[], now, out);
        }
        "admin_clients" => {
            let (records, next) = local_page(state, cl, head.f.unwrap_or(0), head.l, head.b);
            answer(cl, &head, true, next, &records, now, out);
        }
        "admin_answer" => match cl.admin.waiting.get_mut(&head.i).map(|a| &mut a.what) {
            Some(Asked::Kick {
                client_id,
                asked,
                said_no,
            }) => {
                if head.ok {
                    finish(state, cl, head.i, Ok(Done::Kicked), out);
                } else {
                    *said_no += 1;
                    if asked.is_some_and(|n| *said_no >= n) {
                        let reject = not_found(client_id);
                        finish(state, cl, head.i, Err(reject), out);
                    }
                }
            }
            Some(Asked::Page { .. }) => {
                let valid = serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(body).is_ok();
                if !valid {
                    let reject =
                        Reject::new(ErrorCode::InternalError, "A node's page could not be read");
                    return finish(state, cl, head.i, Err(reject), out);
                }
                set_page(state, cl, head.i, None, Some((body.to_vec(), head.f)), out);
            }
            None => {}
        },
        _ => {}
    }
}

/// Answer request `head` on its asker's channel.
fn answer(
    cl: &mut Cluster,
    head: &AdminEvent,
    ok: bool,
    next: Option<u32>,
    records: &[u8],
    now: Instant,
    out: &mut Actions<Event>,
) {
    let mut event = b"{\"e\":\"admin_answer\",\"i\":".to_vec();
    wire::write_u64(&mut event, head.i);
    event.extend_from_slice(if ok {
        b",\"ok\":true"
    } else {
        b",\"ok\":false"
    });
    if let Some(next) = next {
        event.extend_from_slice(b",\"f\":");
        wire::write_u64(&mut event, u64::from(next));
    }
    event.push(b'}');
    if !records.is_empty() {
        event.push(b'\n');
        event.extend_from_slice(records);
    }
    if is_node_id(&head.n) {
        reply::publish_on_node(cl, &head.n, &event, now, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_nothing_else_parses() {
        let longest = "x".repeat(MAX_NODE_BYTES);
        for place in [
            Place::At("n1".into(), 0),
            Place::At("node-7_a".into(), 0xabc),
            Place::At(longest.clone(), u32::MAX),
            Place::After("n2".into()),
            Place::After(longest.clone()),
        ] {
            assert_eq!(parse_cursor(&cursor(&place)), Some(place));
        }
        let too_long = format!("n1.{longest}x");
        for bad in [
            "",
            "c1",
            "n1",
            "n.n1",
            "n1.",
            "x.",
            "x1.n1",
            "ng.n1",
            "n123456789.n1",
            "n1.a b",
            "n1.a.b",
            "N1.n1",
            too_long.as_str(),
        ] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }
}
