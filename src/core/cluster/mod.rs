//! The core's side of the cluster (PROTOCOL section 13): this node's place in it (heartbeat,
//! epoch, fencing, the sweep of dead nodes), the broker's events routed to what waits for
//! them, and the connections whose requests wait for the broker.
//!
//! Contract:
//! - Exists only when `cluster_redis` is set; a standalone core has no `Cluster` and takes
//!   none of these paths.
//! - A connection with a request at the broker is *held*: its later messages wait, in order,
//!   (at most [`MAX_HELD`] of them and `max_message_size` bytes; beyond, `LIMIT_EXCEEDED`),
//!   and are handled when the reply came, so one connection's requests take effect in the
//!   order it sent them while other connections go on.
//! - Every request at the broker gets one answer: the broker's reply, or `UNAVAILABLE`
//!   (broker down, queue full, or no reply within `broker_timeout_ms`).
//! - The heartbeat runs every `node_heartbeat_ms` through the one script that also finds
//!   dead nodes (swept in batches by any live node), notices a lost epoch (Redis restarted
//!   empty: this node writes back what it owns) and a fenced node (declared dead while it was
//!   alive: its clients are closed with 1012 `Service restart` and it joins again under a new
//!   name).

pub(crate) mod sessions;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use core::net::SocketAddr;

use crate::app::{Actions, ConnId, LinkId};
use crate::cluster::broker::{Broker, BrokerEvent, BrokerSettings, TICK};
use crate::cluster::resp::Reply;
use crate::cluster::scripts;
use crate::core::events::Event;
use crate::core::state::CoreState;
use crate::core::timers;

/// Messages held for one connection at most while it waits for the broker.
pub(crate) const MAX_HELD: usize = 64;
/// Close code of a node that finds it was declared dead.
const CLOSE_SERVICE_RESTART: u16 = 1012;
/// Memberships removed by one sweep call at most.
const SWEEP_BATCH: usize = 200;

/// What a node needs to join the cluster, read from the configuration at start (the Redis
/// host already resolved).
#[derive(Clone, Debug)]
pub(crate) struct ClusterSetup {
    /// The Redis server.
    pub addr: SocketAddr,
    /// Its password, when it has one.
    pub password: Option<String>,
    /// Its database.
    pub db: u32,
    /// The prefix of every key and channel.
    pub prefix: String,
    /// This node's name.
    pub node_id: String,
    /// `broker_timeout_ms`.
    pub timeout: Duration,
    /// `node_heartbeat_ms`.
    pub heartbeat: Duration,
    /// `node_dead_ms`.
    pub dead: Duration,
}

/// What a request at the broker waits for.
#[derive(Debug)]
pub(crate) enum Op {
    /// The heartbeat script.
    Heartbeat,
    /// A sweep of a dead node.
    Sweep,
    /// A reply nobody waits for (a publish, a leave on disconnect, a repair).
    Ignore,
    /// A join or create of a connection.
    Join(sessions::PendingJoin),
    /// A leave of a connection.
    Leave(sessions::PendingLeave),
}

/// Messages of a held connection, waiting for its request at the broker.
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// A request of it is at the broker.
    pub waiting: bool,
    /// The messages and whether each is binary.
    pub queue: VecDeque<(Vec<u8>, bool)>,
    /// Their bytes.
    pub bytes: usize,
}

/// The cluster state of this node.
pub(crate) struct Cluster {
    pub broker: Broker,
    pub setup: ClusterSetup,
    /// The name in use (the configured one, with `-N` after each fencing).
    pub node: String,
    fenced_times: u32,
    /// The epoch of the Redis data this node wrote; empty before the first heartbeat.
    epoch: String,
    registered: bool,
    /// Live nodes as of the last heartbeat.
    pub nodes_alive: u64,
    next_tag: u64,
    pub ops: HashMap<u64, Op>,
    /// Sessions with a member on this node, or a join on its way.
    pub sessions: HashMap<String, sessions::Mirror>,
    /// Connections waiting for the broker, with what they sent meanwhile.
    pub held: HashMap<ConnId, Held>,
    /// Held connections whose reply came, with messages to handle.
    pub released: Vec<ConnId>,
    heartbeat_due: Instant,
    heartbeat_in_flight: bool,
    sweep_in_flight: bool,
    /// Memberships whose end may not have reached Redis (the broker was down when the
    /// connection left, or a join's reply was lost): removed again when the broker is up.
    pub repairs: Vec<sessions::Repair>,
    events: Vec<BrokerEvent>,
}

impl Cluster {
    /// A node that connects at its first tick.
    pub(crate) fn new(setup: ClusterSetup, now: Instant) -> Cluster {
        let node = setup.node_id.clone();
        let settings = BrokerSettings {
            addr: setup.addr,
            password: setup.password.clone(),
            db: setup.db,
            timeout: setup.timeout,
            max_queue: 65_536,
            probe_every: setup.heartbeat,
            probe_channel: node_channel(&setup.prefix, &node),
            scripts: scripts::ALL.to_vec(),
        };
        Cluster {
            broker: Broker::new(settings, now),
            setup,
            node,
            fenced_times: 0,
            epoch: String::new(),
            registered: false,
            nodes_alive: 0,
            next_tag: 1,
            ops: HashMap::new(),
            sessions: HashMap::new(),
            held: HashMap::new(),
            released: Vec::new(),
            heartbeat_due: now,
            heartbeat_in_flight: false,
            sweep_in_flight: false,
            repairs: Vec::new(),
            events: Vec::new(),
        }
    }

    /// A new tag for a request at the broker, waiting as `op`.
    pub(crate) fn tag(&mut self, op: Op) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.ops.insert(tag, op);
        tag
    }

    /// Forget `tag` (the broker refused the request, so no answer will come).
    pub(crate) fn untag(&mut self, tag: u64) -> Option<Op> {
        self.ops.remove(&tag)
    }

    /// A key or channel under the prefix.
    pub(crate) fn key(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut key = self.setup.prefix.as_bytes().to_vec();
        for part in parts {
            key.push(b':');
            key.extend_from_slice(part);
        }
        key
    }

    /// Whether messages of `conn` must wait: it waits for the broker, or what it sent while
    /// it waited is not all handled yet.
    pub(crate) fn is_held(&self, conn: ConnId) -> bool {
        self.held.contains_key(&conn)
    }

    /// `conn` waits for the broker until [`Cluster::release`].
    pub(crate) fn hold(&mut self, conn: ConnId) {
        self.held.entry(conn).or_default().waiting = true;
    }

    /// Keep a message of a held connection for later; false when its queue is full.
    pub(crate) fn keep(
        &mut self,
        conn: ConnId,
        data: &[u8],
        binary: bool,
        max_bytes: usize,
    ) -> bool {
        let held = self.held.entry(conn).or_default();
        if held.queue.len() >= MAX_HELD || held.bytes + data.len() > max_bytes {
            return false;
        }
        held.bytes += data.len();
        held.queue.push_back((data.to_vec(), binary));
        true
    }

    /// The answer for `conn` came: what it sent meanwhile is handled next.
    pub(crate) fn release(&mut self, conn: ConnId) {
        if let Some(held) = self.held.get_mut(&conn) {
            held.waiting = false;
            if held.queue.is_empty() {
                self.held.remove(&conn);
            } else {
                self.released.push(conn);
            }
        }
    }

    /// The next message to handle of a released connection, until none is left or one of
    /// them makes it wait again.
    pub(crate) fn next_released(&mut self) -> Option<(ConnId, Vec<u8>, bool)> {
        while let Some(&conn) = self.released.last() {
            match self.held.get_mut(&conn) {
                Some(held) if !held.waiting => match held.queue.pop_front() {
                    Some((data, binary)) => {
                        held.bytes -= data.len();
                        return Some((conn, data, binary));
                    }
                    None => {
                        self.held.remove(&conn);
                        self.released.pop();
                    }
                },
                _ => {
                    self.released.pop();
                }
            }
        }
        None
    }

    /// `conn` is gone: forget what it had waiting.
    pub(crate) fn drop_held(&mut self, conn: ConnId) {
        self.held.remove(&conn);
    }
}

/// The channel of a node: probes, and later what is addressed to its clients.
pub(crate) fn node_channel(prefix: &str, node: &str) -> Vec<u8> {
    format!("{prefix}:n:{node}").into_bytes()
}

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
    if cl.broker.is_up() && !cl.heartbeat_in_flight && now >= cl.heartbeat_due {
        heartbeat(&mut cl, now, out);
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
                cl.heartbeat_due = now;
                cl.heartbeat_in_flight = false;
                cl.sweep_in_flight = false;
                sessions::broker_up(state, cl, now, out);
            }
            BrokerEvent::Down(why) => {
                log::warn!("cluster: broker down: {why}");
                sessions::broker_down(state, cl, now, out);
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
                sessions::on_message(state, cl, &channel, &payload, now, out);
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
                heartbeat_reply(state, cl, &reply, now, out);
            }
        }
        Op::Sweep => {
            cl.sweep_in_flight = false;
            // More to sweep: the next heartbeat names the node again.
        }
        Op::Ignore => {}
        Op::Join(pending) => sessions::join_answered(state, cl, pending, reply, now, out),
        Op::Leave(pending) => sessions::leave_answered(state, cl, pending, reply, now, out),
    }
}

fn heartbeat(cl: &mut Cluster, now: Instant, out: &mut Actions<Event>) {
    cl.heartbeat_due = now + cl.setup.heartbeat;
    let keys = [
        cl.key(&[b"nodes"]),
        cl.key(&[b"epoch"]),
        cl.key(&[b"clock"]),
        cl.key(&[b"nodeseq"]),
    ];
    let beat = cl.setup.heartbeat.as_millis().to_string();
    let dead = cl.setup.dead.as_millis().to_string();
    let registering = if cl.registered { "0" } else { "1" };
    let tag = cl.tag(Op::Heartbeat);
    let args: [&[u8]; 6] = [
        cl.node.as_bytes(),
        cl.epoch.as_bytes(),
        registering.as_bytes(),
        beat.as_bytes(),
        dead.as_bytes(),
        cl.setup.prefix.as_bytes(),
    ];
    let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    if cl
        .broker
        .eval(tag, scripts::HEARTBEAT_INDEX, &keys, &args, now, out)
    {
        cl.heartbeat_in_flight = true;
    } else {
        cl.untag(tag);
    }
}

fn heartbeat_reply(
    state: &mut CoreState,
    cl: &mut Cluster,
    reply: &Reply,
    now: Instant,
    out: &mut Actions<Event>,
) {
    let Some(fields) = reply.as_array() else {
        log::warn!("cluster: heartbeat refused: {reply:?}");
        return;
    };
    let text = |i: usize| fields.get(i).and_then(Reply::as_bytes).unwrap_or(b"");
    let int = |i: usize| match fields.get(i) {
        Some(Reply::Integer(n)) => *n,
        _ => 0,
    };
    let status = text(0).to_vec();
    let epoch = String::from_utf8_lossy(text(1)).into_owned();
    cl.nodes_alive = u64::try_from(int(2)).unwrap_or(0);
    if !cl.registered && status != b"fenced" {
        cl.registered = true;
        // Ids this node makes are unique in the cluster: its number in the high bits.
        let number = u64::try_from(int(3)).unwrap_or(0);
        crate::core::wire::set_message_id_base(number << 40);
    }
    match status.as_slice() {
        b"fenced" => return fenced(state, cl, now, out),
        b"lost" => {
            log::warn!("cluster: redis lost its data; writing back what this node holds");
            cl.epoch = epoch;
            sessions::write_back(state, cl, now, out);
        }
        _ => cl.epoch = epoch,
    }
    let dead = text(4);
    if !dead.is_empty() && !cl.sweep_in_flight {
        sweep(cl, dead.to_vec(), now, out);
    }
}

fn sweep(cl: &mut Cluster, dead: Vec<u8>, now: Instant, out: &mut Actions<Event>) {
    log::info!(
        "cluster: sweeping dead node {}",
        String::from_utf8_lossy(&dead)
    );
    let keys = [cl.key(&[b"nodes"]), cl.key(&[b"n", &dead, b"m"])];
    let batch = SWEEP_BATCH.to_string();
    let tag = cl.tag(Op::Sweep);
    let args: [&[u8]; 7] = [
        &dead,
        batch.as_bytes(),
        cl.setup.prefix.as_bytes(),
        b"{\"e\":\"leave\",\"s\":",
        b",\"c\":\"",
        b"\",\"u\":",
        b"}",
    ];
    let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    if cl
        .broker
        .eval(tag, scripts::SWEEP_INDEX, &keys, &args, now, out)
    {
        cl.sweep_in_flight = true;
    } else {
        cl.untag(tag);
    }
}

/// This node was declared dead while it was alive: close its clients with 1012 and join
/// again under a new name.
fn fenced(state: &mut CoreState, cl: &mut Cluster, now: Instant, out: &mut Actions<Event>) {
    cl.fenced_times += 1;
    let old = std::mem::replace(
        &mut cl.node,
        format!("{}-{}", cl.setup.node_id, cl.fenced_times),
    );
    log::warn!(
        "cluster: node {old} was declared dead while alive; closing its clients and joining again as {}",
        cl.node
    );
    let conns: Vec<ConnId> = state.clients.iter().map(|c| c.conn).collect();
    for conn in conns {
        state.close(out, conn, CLOSE_SERVICE_RESTART, "Service restart");
    }
    sessions::forget_all(cl, out);
    cl.registered = false;
    cl.broker
        .unsubscribe(&node_channel(&cl.setup.prefix, &old), out);
    cl.broker
        .subscribe(&node_channel(&cl.setup.prefix, &cl.node), out);
    cl.heartbeat_due = now;
}
