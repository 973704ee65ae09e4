//! The core's side of the cluster (PROTOCOL section 13): the broker's reports routed to
//! what waits for them. `node.rs` is this node (its name, requests, held connections and
//! heartbeat), `mirror.rs` the sessions it has members in, `sessions.rs` the session
//! requests and channel events, `admin.rs` the admin messages asked of other nodes.
//!
//! Contract:
//! - Exists only when `cluster_redis` is set; a standalone core has no `Cluster` and takes
//!   none of these paths.
//! - Every request at the broker gets one answer: the broker's reply, or `UNAVAILABLE`
//!   (broker down, queue full, or no reply within `broker_timeout_ms`).
//! - A node that finds it was declared dead while it was alive closes its clients with 1012
//!   `Service restart` and joins again under a new name; one that finds Redis lost its data
//!   writes back the memberships of its clients.

pub(crate) mod admin;
pub(crate) mod agents;
pub(crate) mod asks;
pub(crate) mod clients;
pub(crate) mod devices;
pub(crate) mod mirror;
pub(crate) mod node;
pub(crate) mod patch;
pub(crate) mod pending;
pub(crate) mod reply;
pub(crate) mod routes;
pub(crate) mod sessions;
pub(crate) mod usage;
pub(crate) mod users;

use std::time::Instant;

use crate::app::{Actions, ConnId, LinkId};
use crate::cluster::broker::{BrokerEvent, TICK};
use crate::cluster::resp::Reply;
use crate::core::events::Event;
use crate::core::requests::connection;
use crate::core::state::CoreState;
use crate::core::timers;
use node::{Beat, Cluster, ClusterSetup, Op};

/// Close code of a node that finds it was declared dead.
const CLOSE_SERVICE_RESTART: u16 = 1012;

/// Start the cluster: the first tick connects.
pub(crate) fn start(
    state: &mut CoreState,
    setup: ClusterSetup,
    now: Instant,
    out: &mut Actions<Event>,
) {
    log::info!(
        "cluster: node {} joins through redis at {} (prefix {})",
        setup.node_id,
        setup.addr,
        setup.prefix
    );
    state.cluster = Some(Box::new(Cluster::new(setup, now)));
    out.set_timer(now, timers::CLUSTER_TICK);
}

/// The cluster's timer: drive the broker, heartbeat when due, arm the next tick.
pub(crate) fn tick(state: &mut CoreState, now: Instant, out: &mut Actions<Event>) {
    let Some(mut cl) = state.cluster.take() else {
        return;
    };
    let mut events = std::mem::take(&mut cl.events);
    cl.broker.on_tick(now, out, &mut events);
    handle_events(state, &mut cl, &mut events, now, out);
    admin::expire(state, &mut cl, now, out);
    if cl.broker.is_up() && !cl.heartbeat_in_flight && now >= cl.heartbeat_due {
        node::heartbeat(&mut cl, now, out);
        agents::expire(&mut cl, state.config.agent_ttl_ms, now, out);
    }
    if cl.usage.unwritten && cl.is_serving() && !cl.heartbeat_in_flight {
        users::write_back(&mut cl, now, out);
    }
    cl.events = events;
    state.cluster = Some(cl);
    out.set_timer(now + TICK, timers::CLUSTER_TICK);
}

/// A broker link's report.
pub(crate) fn on_link(
    state: &mut CoreState,
    link: LinkId,
    report: LinkReport<'_>,
    now: Instant,
    out: &mut Actions<Event>,
) {
    let Some(mut cl) = state.cluster.take() else {
        return;
    };
    let mut events = std::mem::take(&mut cl.events);
    match report {
        LinkReport::Open => cl.broker.on_link_open(link, now, out),
        LinkReport::Data(data) => cl.broker.on_link_data(link, data, now, out, &mut events),
        LinkReport::Closed(error) => cl.broker.on_link_closed(link, error, now, out, &mut events),
    }
    handle_events(state, &mut cl, &mut events, now, out);
    cl.events = events;
    state.cluster = Some(cl);
}

/// What a link reported.
pub(crate) enum LinkReport<'a> {
    /// Connected.
    Open,
    /// Bytes arrived.
    Data(&'a [u8]),
    /// Ended, with why.
    Closed(&'a str),
}

fn handle_events(
    state: &mut CoreState,
    cl: &mut Cluster,
    events: &mut Vec<BrokerEvent>,
    now: Instant,
    out: &mut Actions<Event>,
) {
    for event in events.drain(..) {
        match event {
            BrokerEvent::Up => {
                log::info!("cluster: broker up ({})", cl.setup.addr);
                cl.heartbeat_in_flight = false;
                cl.sweep_in_flight = false;
                // The heartbeat first: it tells whether Redis still holds this node's data.
                node::heartbeat(cl, now, out);
                sessions::broker_up(state, cl, now, out);
                agents::broker_up(cl, state.wall_ms(now), now, out);
                if cl.clients_unwritten || !cl.forgotten.is_empty() {
                    clients::write_back(state, cl, now, out);
                }
                // What this node counted while the broker was away: written once the
                // heartbeat found it alive (not fenced).
                cl.usage.unwritten = true;
            }
            BrokerEvent::Down(why) => {
                log::warn!("cluster: broker down: {why}");
                sessions::broker_down(state, cl, now, out);
                admin::broker_down(state, cl, out);
            }
            BrokerEvent::Reply { tag, reply } => {
                if let Some(op) = cl.ops.remove(&tag) {
                    answered(state, cl, op, Some(reply), now, out);
                }
            }
            BrokerEvent::Failed { tag } => {
                if let Some(op) = cl.ops.remove(&tag) {
                    answered(state, cl, op, None, now, out);
                }
            }
            BrokerEvent::Message { channel, payload } => {
                if channel == node::control_channel(&cl.setup.prefix) {
                    routes::on_control(state, cl, &payload, now, out);
                } else if channel == node::node_channel(&cl.setup.prefix, &cl.node) {
                    if payload.starts_with(b"{\"e\":\"route\"") {
                        routes::on_route(state, cl, &payload, now, out);
                    } else if payload.starts_with(b"{\"e\":\"admin_") {
                        admin::on_node_message(state, cl, &payload, now, out);
                    } else {
                        clients::on_node_message(state, cl, &payload, now, out);
                    }
                } else {
                    sessions::on_message(state, cl, &channel, &payload, now, out);
                }
            }
            BrokerEvent::Subscribed { channel } => {
                sessions::on_subscribed(state, cl, &channel, now, out);
            }
        }
    }
}

/// The answer to `op`: the reply, or `None` when none will come.
fn answered(
    state: &mut CoreState,
    cl: &mut Cluster,
    op: Op,
    reply: Option<Reply>,
    now: Instant,
    out: &mut Actions<Event>,
) {
    match op {
        Op::Heartbeat => {
            cl.heartbeat_in_flight = false;
            if let Some(reply) = reply {
                match node::heartbeat_reply(cl, &reply, now, out) {
                    Beat::Ok => {}
                    Beat::Lost => {
                        log::warn!(
                            "cluster: redis lost its data; writing back what this node holds"
                        );
                        sessions::write_back(state, cl, now, out);
                        clients::write_back(state, cl, now, out);
                        users::write_back(cl, now, out);
                    }
                    Beat::Fenced => fenced(state, cl, now, out),
                }
            }
        }
        Op::Sweep(dead) => {
            cl.sweep_in_flight = false;
            // More to sweep: the next batch at once, so that a large node is gone in time.
            if matches!(reply, Some(Reply::Integer(left)) if left > 0) {
                node::sweep(cl, dead, now, out);
            }
        }
        Op::Ignore => {
            if let Some(Reply::Error(text)) = &reply {
                log::warn!(
                    "cluster: redis refused a command: {}",
                    String::from_utf8_lossy(text)
                );
            }
        }
        Op::Publish(pending) => match &reply {
            None => sessions::publish_failed(state, pending, out),
            Some(Reply::Error(text)) => {
                log::warn!(
                    "cluster: redis refused a publish: {}",
                    String::from_utf8_lossy(text)
                );
                sessions::publish_failed(state, pending, out);
            }
            Some(_) => {}
        },
        Op::Join(pending) => sessions::join_answered(state, cl, pending, reply, now, out),
        Op::Leave(pending) => sessions::leave_answered(state, cl, pending, reply, now, out),
        Op::Devices(pending) => devices::answer(state, cl, pending, reply, out),
        Op::Auth(pending) => connection::auth_counted(state, cl, pending, reply, now, out),
        Op::RouteTake(pending) => routes::local_counted(state, cl, pending, reply, now, out),
        Op::Route(pending) => routes::routed(state, cl, pending, reply, now, out),
        Op::Agent(pending) => agents::answered(state, cl, pending, reply, out),
        Op::PatchRead(pending) => patch::read_answered(state, cl, pending, reply, now, out),
        Op::PatchWrite(pending) => patch::write_answered(state, cl, pending, reply, now, out),
        Op::Query(pending) => agents::page(state, cl, pending, reply, out),
        Op::Admin(id) => admin::answered(state, cl, id, reply, out),
        Op::Refresh(session_id) => sessions::refreshed(state, cl, &session_id, reply, now, out),
    }
}

/// This node was declared dead while it was alive: close its clients with 1012 and join
/// again under a new name.
fn fenced(state: &mut CoreState, cl: &mut Cluster, now: Instant, out: &mut Actions<Event>) {
    let old = node::rename(cl, now, out);
    log::warn!(
        "cluster: node {old} was declared dead while alive; closing its clients and joining again as {}",
        cl.node
    );
    let conns: Vec<ConnId> = state.clients.iter().map(|c| c.conn).collect();
    for conn in conns {
        state.close(out, conn, CLOSE_SERVICE_RESTART, "Service restart");
    }
}
