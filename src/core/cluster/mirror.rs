//! What a node keeps of the sessions it has members in, and of the requests on their way:
//! plain data, changed by `sessions.rs` (sessions) and `agents.rs` (agent requests) only.

use std::collections::HashMap;

use crate::app::ConnId;
use crate::core::requests::agents::NewAgent;

/// A member of a mirrored session.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) client_id: String,
    pub(crate) user_id: String,
    /// Its connection, when it is on this node and has not left.
    pub(crate) conn: Option<ConnId>,
    /// Whether it receives the session's messages (its join reply went out).
    pub(crate) live: bool,
    /// Messages for it that came after its join event and before its join reply, and their
    /// bytes (at most `max_outbound_buffer`: beyond, its connection is closed as a slow
    /// consumer, and this is `usize::MAX`).
    pub(crate) waiting: Vec<Vec<u8>>,
    pub(crate) waiting_bytes: usize,
}

/// A join of a connection on this node, from the request to its reply.
#[derive(Debug)]
pub(crate) struct PendingJoin {
    pub(crate) conn: ConnId,
    pub(crate) req_id: String,
    pub(crate) session_id: String,
    pub(crate) client_id: String,
    pub(crate) user_id: String,
    /// The usage key its membership counts under.
    pub(crate) usage_key: String,
    pub(crate) create: bool,
    pub(crate) name: String,
    pub(crate) meta: String,
    pub(crate) ts: u64,
    /// Whether the joiner has the `admin` scope.
    pub(crate) admin: bool,
    /// For a create: `open` or `private`, and the `allowUsers` (as JSON).
    pub(crate) access: &'static str,
    pub(crate) allow: Vec<String>,
}

/// A join in progress, in its session's mirror.
#[derive(Debug)]
pub(crate) struct Joining {
    pub(crate) pending: PendingJoin,
    /// The script's reply, once it came.
    pub(crate) snapshot: Option<Snapshot>,
    /// Whether its own join event came.
    pub(crate) event_seen: bool,
}

/// What the join script returned.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) status: &'static str,
    pub(crate) name: String,
    pub(crate) owner: String,
    pub(crate) access: String,
    pub(crate) meta: String,
    /// The number of the session's last membership change.
    pub(crate) seq: u64,
    pub(crate) members: Vec<(String, String)>,
}

/// A leave of a connection on this node.
#[derive(Debug)]
pub(crate) struct PendingLeave {
    pub(crate) conn: ConnId,
    pub(crate) req_id: String,
    pub(crate) session_id: String,
    pub(crate) client_id: String,
    pub(crate) ts: u64,
}

/// A membership to remove from Redis when the broker is up (see `Cluster::repairs`).
#[derive(Debug)]
pub(crate) struct Repair {
    pub(crate) session_id: String,
    pub(crate) client_id: String,
    pub(crate) usage_key: String,
}

/// This node's view of one session.
#[derive(Debug, Default)]
pub(crate) struct Mirror {
    /// Members in join order, once known.
    pub(crate) members: Vec<Member>,
    /// The number of the last membership change the mirror holds (see the `JOIN` script).
    pub(crate) seq: u64,
    /// Whether a `MEMBERS` read is on its way.
    pub(crate) refreshing: bool,
    /// Whether `members` is the session's membership at the channel's current point.
    pub(crate) known: bool,
    /// The session's name, owner and metadata (JSON) as the first join here found them,
    /// written back when Redis lost its data.
    pub(crate) name: String,
    pub(crate) owner: String,
    pub(crate) meta: String,
    /// `open` or `private`, as the channel last said.
    pub(crate) access: String,
    /// Whether Redis confirmed the channel's subscription.
    pub(crate) subscribed: bool,
    /// Joins waiting for the subscription.
    pub(crate) waiting_subscribe: Vec<PendingJoin>,
    /// Joins sent, by clientId.
    pub(crate) joining: HashMap<String, Joining>,
    /// While not known: the joiner whose event starts the mirror, and the events after it.
    pub(crate) anchor: Option<String>,
    pub(crate) backlog: Vec<Vec<u8>>,
    /// The bytes of `backlog`, at most `max_outbound_buffer`: beyond, the joins waiting for it
    /// are closed as slow consumers, and this is `usize::MAX`.
    pub(crate) backlog_bytes: usize,
}

impl Mirror {
    pub(crate) fn member(&self, client_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.client_id == client_id)
    }

    pub(crate) fn local_member(&self, conn: ConnId) -> Option<&Member> {
        self.members.iter().find(|m| m.conn == Some(conn))
    }

    /// Whether the mirror is still needed: a member or a join on this node.
    pub(crate) fn in_use(&self) -> bool {
        !self.joining.is_empty()
            || !self.waiting_subscribe.is_empty()
            || self.members.iter().any(|m| m.conn.is_some())
    }
}

/// An agent request of a connection, waiting for its script.
#[derive(Debug)]
pub(crate) struct PendingAgent {
    pub(crate) conn: ConnId,
    pub(crate) req_id: String,
    pub(crate) ts: u64,
    pub(crate) agent_id: String,
    /// For a registration: what the reply shows.
    pub(crate) registered: Option<NewAgent>,
}

/// A query waiting for its page.
#[derive(Debug)]
pub(crate) struct PendingQuery {
    pub(crate) conn: ConnId,
    pub(crate) req_id: String,
    pub(crate) ts: u64,
    pub(crate) limit: usize,
}

/// A `route_request` at the broker.
#[derive(Debug)]
pub(crate) struct PendingRoute {
    pub(crate) conn: ConnId,
    pub(crate) req_id: String,
    pub(crate) target: String,
    pub(crate) ts: u64,
    /// The requester's usage key (its request counts toward its user's pending routes).
    pub(crate) usage_key: String,
    /// The generation of this node's per-user counts when the script was sent
    /// (`usage.rs`).
    pub(crate) generation: u64,
    /// When the target was looked up as an agent and none has that id: the route to a
    /// client of that id to try next (the `ROUTE` script's key and arguments).
    pub(crate) then_client: Option<ClientRoute>,
}

/// The `ROUTE` script's key and arguments for a route to a client.
#[derive(Debug)]
pub(crate) struct ClientRoute {
    pub(crate) key: Vec<u8>,
    pub(crate) user: String,
    pub(crate) allowed: bool,
    pub(crate) event: Vec<u8>,
}

/// A `session_patch` from its read to its reply (`patch.rs`).
#[derive(Debug, Clone)]
pub(crate) struct PendingPatch {
    pub(crate) conn: ConnId,
    pub(crate) req_id: String,
    pub(crate) ts: u64,
    pub(crate) session_id: String,
    pub(crate) client_id: String,
    /// The sender's `userId`, as JSON.
    pub(crate) user: String,
    pub(crate) admin: bool,
    /// The `patch` object's text.
    pub(crate) patch: Option<String>,
    pub(crate) access: Option<&'static str>,
    /// The new `allowUsers`, as JSON strings, and what they count toward the limit.
    pub(crate) allow: Option<Vec<String>>,
    pub(crate) allow_bytes: Option<usize>,
    /// Compare-and-sets lost so far.
    pub(crate) tries: u32,
    /// Once written: the owner, access and metadata the reply shows.
    pub(crate) read: Option<(String, &'static str, String)>,
}

/// A `hello_ok` or a `presence_list` waiting for a page of the cluster's devices.
#[derive(Debug)]
pub(crate) struct PendingDevices {
    pub(crate) conn: ConnId,
    pub(crate) req_id: String,
    pub(crate) ts: u64,
    /// When the request was handled (`hello_ok.uptime`).
    pub(crate) now: std::time::Instant,
    pub(crate) limit: usize,
    /// A `hello_ok` (else a `presence_list`).
    pub(crate) hello: bool,
}
