//! This node in the cluster: its name, its requests at the broker and what waits for them,
//! the connections held meanwhile, and its heartbeat (PROTOCOL section 13).
//!
//! Contract:
//! - Every request at the broker has a tag naming the [`Op`] that waits for its answer.
//! - A connection with a request at the broker is *held*: its later messages wait, in order
//!   (at most [`MAX_HELD`] of them and `max_message_size` bytes; beyond, `LIMIT_EXCEEDED`),
//!   and are handled when the answer came, so one connection's requests take effect in the
//!   order it sent them while other connections go on.
//! - The heartbeat runs every `node_heartbeat_ms` through the one script that also finds dead
//!   nodes (swept in batches by any live node), notices a lost epoch (Redis restarted empty)
//!   and a fenced node (declared dead while it was alive); [`Beat`] tells the caller which.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use core::net::SocketAddr;

use super::mirror::{
    Mirror, PendingAgent, PendingDevices, PendingJoin, PendingLeave, PendingPatch, PendingQuery,
    PendingRoute, Repair,
};
use super::pending::Pending;
use super::usage::{PendingAuth, PendingLocalRoute, Usage};
use crate::app::{Actions, ConnId};
use crate::cluster::broker::{Broker, BrokerEvent, BrokerSettings, MAX_BACKOFF};
use crate::cluster::resp::Reply;
use crate::cluster::scripts;
use crate::core::events::Event;

/// Messages held for one connection at most while it waits for the broker.
pub(crate) const MAX_HELD: usize = 64;
/// Bytes of commands on their way to Redis at most: beyond, cluster requests get
/// `UNAVAILABLE` until Redis has answered some (a Redis that cannot keep up does not make the
/// node hold unbounded memory).
pub(crate) const MAX_QUEUE_BYTES: usize = 64 * 1024 * 1024;
/// Route requests sent to other nodes remembered at most.
pub(crate) const MAX_OUTSTANDING: usize = 65_536;
/// Closed clients (and their memberships, and their agents) remembered at most while the
/// broker is down.
pub(crate) const MAX_FORGOTTEN: usize = 65_536;
/// Memberships removed by one sweep call at most.
const SWEEP_BATCH: usize = 200;

/// What a node needs to join the cluster, read from the configuration at start (the Redis
/// host already resolved).
#[derive(Clone, Debug)]
pub(crate) struct ClusterSetup {
    /// The Redis server.
    pub(crate) addr: SocketAddr,
    /// Its password, when it has one.
    pub(crate) password: Option<String>,
    /// Its database.
    pub(crate) db: u32,
    /// The prefix of every key and channel.
    pub(crate) prefix: String,
    /// This node's name.
    pub(crate) node_id: String,
    /// `broker_timeout_ms`.
    pub(crate) timeout: Duration,
    /// `node_heartbeat_ms`.
    pub(crate) heartbeat: Duration,
    /// `node_dead_ms`.
    pub(crate) dead: Duration,
}

/// What a request at the broker waits for.
#[derive(Debug)]
pub(crate) enum Op {
    /// The heartbeat script.
    Heartbeat,
    /// A sweep of a dead node (its name).
    Sweep(Vec<u8>),
    /// A reply nobody waits for (a leave on disconnect, a repair).
    Ignore,
    /// A client's relay or presence: refused with `UNAVAILABLE` when no reply comes.
    Publish(PendingPublish),
    /// A join or create of a connection.
    Join(PendingJoin),
    /// A leave of a connection.
    Leave(PendingLeave),
    /// A read of a session's members.
    Refresh(String),
    /// An agent request of a connection.
    Agent(PendingAgent),
    /// An `agent_query` of a connection.
    Query(PendingQuery),
    /// The read of a `session_patch`.
    PatchRead(PendingPatch),
    /// The compare-and-set of a `session_patch`.
    PatchWrite(PendingPatch),
    /// A route request to a client on another node.
    Route(PendingRoute),
    /// A page of the cluster's devices.
    Devices(PendingDevices),
    /// An admin request asked of other nodes (its number in `Cluster::admin`).
    Admin(u64),
    /// An `auth` waiting for its user's connections to be counted.
    Auth(PendingAuth),
    /// A route request to a target on this node, waiting for its requester's user's
    /// pending routes to be counted.
    RouteTake(PendingLocalRoute),
}

/// The sender of a message published on a session's channel.
#[derive(Debug)]
pub(crate) struct PendingPublish {
    pub(crate) conn: ConnId,
    pub(crate) req_id: String,
    pub(crate) ts: u64,
}

/// Messages of a held connection, waiting for its request at the broker.
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// A request of it is at the broker.
    pub(crate) waiting: bool,
    /// The messages and whether each is binary.
    pub(crate) queue: VecDeque<(Vec<u8>, bool)>,
    /// Their bytes.
    pub(crate) bytes: usize,
}

/// The cluster state of this node.
pub(crate) struct Cluster {
    pub(crate) broker: Broker,
    pub(crate) setup: ClusterSetup,
    /// The name in use (the configured one, with `-N` after each fencing).
    pub(crate) node: String,
    pub(crate) fenced_times: u32,
    /// The epoch of the Redis data this node wrote; empty before the first heartbeat.
    pub(crate) epoch: String,
    pub(crate) registered: bool,
    /// Live nodes as of the last heartbeat.
    pub(crate) nodes_alive: u64,
    /// The cluster's counts as of the last heartbeat.
    pub(crate) counts: ClusterCounts,
    pub(crate) next_tag: u64,
    pub(crate) ops: HashMap<u64, Op>,
    /// Sessions with a member on this node, or a join on its way.
    pub(crate) sessions: HashMap<String, Mirror>,
    /// Connections waiting for the broker, with what they sent meanwhile.
    pub(crate) held: HashMap<ConnId, Held>,
    /// Held connections whose reply came, with messages to handle.
    pub(crate) released: Vec<ConnId>,
    pub(crate) heartbeat_due: Instant,
    pub(crate) heartbeat_in_flight: bool,
    pub(crate) sweep_in_flight: bool,
    /// Memberships whose end may not have reached Redis (the broker was down when the
    /// connection left, or a join's reply was lost): removed again when the broker is up.
    pub(crate) repairs: Vec<Repair>,
    /// The agents each connection of this node registered (they go offline with it).
    pub(crate) agents_of: HashMap<ConnId, Vec<String>>,
    /// The same, by agent id: the connection of each agent registered on this node.
    pub(crate) agent_conns: HashMap<String, ConnId>,
    /// Agents of connections that closed while the broker was down: set offline when it is
    /// up (`clientId`, agent ids).
    pub(crate) offline_repairs: Vec<(String, Vec<String>)>,
    /// Route requests this node's clients sent, not answered yet: (requester, request id) ->
    /// the target's node (this node's name for a local target) and the requester's usage
    /// key, so that a dead node's are answered `TARGET_NOT_FOUND` and each ends its count
    /// toward `max_pending_routes_per_user` (at most [`MAX_OUTSTANDING`]).
    pub(crate) outstanding: HashMap<(ConnId, String), (String, String)>,
    /// Route requests delivered to this node's clients, waiting for their answer.
    pub(crate) routes: Pending,
    /// Whether a local client could not be recorded in the client map (written again when
    /// the broker is up).
    pub(crate) clients_unwritten: bool,
    /// Clients that closed while the broker was down, to forget when it is up (at most
    /// [`MAX_FORGOTTEN`]; beyond, their records go when this node is swept).
    pub(crate) forgotten: Vec<String>,
    /// Admin requests asked of other nodes, waiting for their answers.
    pub(crate) admin: super::asks::Asks,
    pub(crate) events: Vec<BrokerEvent>,
    /// This node's share of the per-user counts kept in Redis (`users.rs`).
    pub(crate) usage: Usage,
    /// Route requests of this node's clients whose script has not answered yet, and those
    /// of them whose end (an answer, a `done`) came first (`users.rs`).
    pub(crate) routes_asked: HashSet<(ConnId, String)>,
    pub(crate) routes_ended_early: HashSet<(ConnId, String)>,
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
            max_queue_bytes: MAX_QUEUE_BYTES,
            probe_every: setup.heartbeat,
            // Back within a quarter of node_dead_ms of Redis: a pause of Redis (after which
            // every node has node_dead_ms to beat again) makes no node dead that was merely
            // waiting to retry.
            max_backoff: MAX_BACKOFF.min(setup.dead / 4),
            probe_channel: node_channel(&setup.prefix, &node),
            name: format!("{}-{}", setup.prefix, node),
            scripts: scripts::ALL.to_vec(),
        };
        let mut broker = Broker::new(settings, now);
        broker.want(&control_channel(&setup.prefix));
        Cluster {
            broker,
            setup,
            node,
            fenced_times: 0,
            epoch: String::new(),
            registered: false,
            nodes_alive: 0,
            counts: ClusterCounts::default(),
            next_tag: 1,
            ops: HashMap::new(),
            sessions: HashMap::new(),
            held: HashMap::new(),
            released: Vec::new(),
            heartbeat_due: now,
            heartbeat_in_flight: false,
            sweep_in_flight: false,
            repairs: Vec::new(),
            routes: Pending::default(),
            outstanding: HashMap::new(),
            agents_of: HashMap::new(),
            agent_conns: HashMap::new(),
            offline_repairs: Vec::new(),
            clients_unwritten: false,
            forgotten: Vec::new(),
            admin: super::asks::Asks::default(),
            events: Vec::new(),
            usage: Usage::default(),
            routes_asked: HashSet::new(),
            routes_ended_early: HashSet::new(),
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

    /// The key of session `session_id`'s HASH, which is also the name of its channel.
    pub(crate) fn session_channel(&self, session_id: &str) -> Vec<u8> {
        let mut key = self.key(&[b"s"]);
        key.extend_from_slice(b":{");
        key.extend_from_slice(session_id.as_bytes());
        key.push(b'}');
        key
    }

    /// Whether cluster requests are served: the broker is up and this node is registered
    /// (its first heartbeat was answered, so it knows the epoch of the data it writes).
    pub(crate) fn is_serving(&self) -> bool {
        self.broker.is_up() && self.registered && !self.epoch.is_empty()
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

    /// Remember a membership to remove when the broker is up, at most [`MAX_FORGOTTEN`]
    /// (beyond, it stays in Redis until this node is swept or Redis restarts).
    pub(crate) fn repair_later(&mut self, repair: Repair) {
        if self.repairs.len() < MAX_FORGOTTEN {
            self.repairs.push(repair);
        } else {
            log::warn!(
                "cluster: too many memberships to remove once the broker is back; one is left"
            );
        }
    }

    /// Remember agents to set offline when the broker is up, at most [`MAX_FORGOTTEN`]
    /// connections' (beyond, they stay online in Redis until this node is swept).
    pub(crate) fn offline_later(&mut self, client_id: String, agents: Vec<String>) {
        if self.offline_repairs.len() < MAX_FORGOTTEN {
            self.offline_repairs.push((client_id, agents));
        } else {
            log::warn!(
                "cluster: too many agents to set offline once the broker is back; some are left"
            );
        }
    }

    /// `conn` is gone: forget what it had waiting.
    pub(crate) fn drop_held(&mut self, conn: ConnId) {
        self.held.remove(&conn);
    }
}

/// The channel every node listens to: node events (`node_dead`).
pub(crate) fn control_channel(prefix: &str) -> Vec<u8> {
    format!("{prefix}:ctl").into_bytes()
}

/// The channel of a node: probes, and later what is addressed to its clients.
pub(crate) fn node_channel(prefix: &str, node: &str) -> Vec<u8> {
    format!("{prefix}:n:{node}").into_bytes()
}

/// What the cluster holds, as its last heartbeat read it (`/health`, `stateVersion`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ClusterCounts {
    pub(crate) sessions: u64,
    pub(crate) agents: u64,
    /// Authenticated clients.
    pub(crate) clients: u64,
    /// Changes of sessions and agents since the data began.
    pub(crate) version: u64,
}

/// What a heartbeat's answer says of this node.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Beat {
    /// Alive, with the data it wrote.
    Ok,
    /// Redis lost its data: this node writes back what it holds.
    Lost,
    /// This node was declared dead while alive: it joins again under a new name.
    Fenced,
}

/// Send the heartbeat script.
pub(crate) fn heartbeat(cl: &mut Cluster, now: Instant, out: &mut Actions<Event>) {
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

/// Read the heartbeat's answer; sweep a dead node it names.
pub(crate) fn heartbeat_reply(
    cl: &mut Cluster,
    reply: &Reply,
    now: Instant,
    out: &mut Actions<Event>,
) -> Beat {
    let Some(fields) = reply.as_array() else {
        log::warn!("cluster: heartbeat refused: {reply:?}");
        return Beat::Ok;
    };
    let text = |i: usize| fields.get(i).and_then(Reply::as_bytes).unwrap_or(b"");
    let int = |i: usize| match fields.get(i) {
        Some(Reply::Integer(n)) => *n,
        _ => 0,
    };
    let status = text(0).to_vec();
    let epoch = String::from_utf8_lossy(text(1)).into_owned();
    cl.nodes_alive = u64::try_from(int(2)).unwrap_or(0);
    if status == b"fenced" {
        return Beat::Fenced;
    }
    if !cl.registered {
        cl.registered = true;
        // Ids this node makes are unique in the cluster: its number in the high bits.
        let number = u64::try_from(int(3)).unwrap_or(0);
        crate::core::wire::set_message_id_base(number << 40);
    }
    cl.epoch = epoch;
    let count = |i: usize| u64::try_from(int(i)).unwrap_or(0);
    cl.counts = ClusterCounts {
        sessions: count(5),
        agents: count(6),
        clients: count(7),
        version: count(8),
    };
    let dead = text(4);
    if !dead.is_empty() && !cl.sweep_in_flight {
        sweep(cl, dead.to_vec(), now, out);
    }
    if status == b"lost" {
        Beat::Lost
    } else {
        Beat::Ok
    }
}

pub(crate) fn sweep(cl: &mut Cluster, dead: Vec<u8>, now: Instant, out: &mut Actions<Event>) {
    log::info!(
        "cluster: sweeping dead node {}",
        String::from_utf8_lossy(&dead)
    );
    let keys = [
        cl.key(&[b"nodes"]),
        cl.key(&[b"n", &dead, b"m"]),
        cl.key(&[b"n", &dead, b"c"]),
        cl.key(&[b"n", &dead, b"a"]),
    ];
    let batch = SWEEP_BATCH.to_string();
    let tag = cl.tag(Op::Sweep(dead.clone()));
    let args: [&[u8]; 7] = [
        &dead,
        batch.as_bytes(),
        cl.setup.prefix.as_bytes(),
        b"{\"e\":\"leave\",\"s\":",
        b",\"c\":\"",
        b"\",\"u\":",
        b",\"q\":",
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

/// Take a new name after being fenced (the configured one with `-N`), and listen on its
/// channel instead of the old one's.
pub(crate) fn rename(cl: &mut Cluster, now: Instant, out: &mut Actions<Event>) -> String {
    cl.fenced_times += 1;
    let old = std::mem::replace(
        &mut cl.node,
        format!("{}-{}", cl.setup.node_id, cl.fenced_times),
    );
    for channel in cl
        .sessions
        .keys()
        .map(|id| cl.session_channel(id))
        .collect::<Vec<_>>()
    {
        cl.broker.unsubscribe(&channel, out);
    }
    cl.sessions.clear();
    cl.held.clear();
    cl.released.clear();
    cl.registered = false;
    cl.broker
        .unsubscribe(&node_channel(&cl.setup.prefix, &old), out);
    cl.broker
        .subscribe(&node_channel(&cl.setup.prefix, &cl.node), out);
    cl.heartbeat_due = now;
    old
}
