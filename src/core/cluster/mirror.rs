//! What a node keeps of the sessions it has members in, and of the requests on their way:
//! plain data, changed by `sessions.rs` only.

use std::collections::HashMap;

use crate::app::ConnId;

/// A member of a mirrored session.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) client_id: String,
    pub(crate) user_id: String,
    /// Its connection, when it is on this node and has not left.
    pub(crate) conn: Option<ConnId>,
    /// Whether it receives the session's messages (its join reply went out).
    pub(crate) live: bool,
    /// Messages for it that came after its join event and before its join reply.
    pub(crate) waiting: Vec<Vec<u8>>,
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

/// A catch-up of a mirror with Redis after its channel's subscription was lost a while (see
/// the `SYNC` script): the members as of the script's mark on the channel.
#[derive(Debug)]
pub(crate) struct Catchup {
    /// The mark's token.
    pub(crate) token: String,
    /// The script's reply: the members (clientId, userId) at the mark.
    pub(crate) members: Option<Vec<(String, String)>>,
    /// Whether the mark came on the channel.
    pub(crate) seen: bool,
    /// Events after the mark, while the reply is awaited.
    pub(crate) backlog: Vec<Vec<u8>>,
}

/// This node's view of one session.
#[derive(Debug, Default)]
pub(crate) struct Mirror {
    /// Members in join order, once known.
    pub(crate) members: Vec<Member>,
    /// Whether `members` is the session's membership at the channel's current point.
    pub(crate) known: bool,
    /// The session's name, owner and metadata (JSON) as the first join here found them,
    /// written back when Redis lost its data.
    pub(crate) name: String,
    pub(crate) owner: String,
    pub(crate) meta: String,
    /// Whether Redis confirmed the channel's subscription.
    pub(crate) subscribed: bool,
    /// Joins waiting for the subscription.
    pub(crate) waiting_subscribe: Vec<PendingJoin>,
    /// Joins sent, by clientId.
    pub(crate) joining: HashMap<String, Joining>,
    /// While not known: the joiner whose event starts the mirror, and the events after it.
    pub(crate) anchor: Option<String>,
    pub(crate) backlog: Vec<Vec<u8>>,
    /// The channel was subscribed again while known: events may have been missed, so the
    /// members are read again once the broker's data is known to be intact.
    pub(crate) stale: bool,
    /// The catch-up in progress.
    pub(crate) catchup: Option<Catchup>,
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
