//! The admin requests this node asked of other nodes and what came of them so far: plain
//! data, changed by `admin.rs` only (which `node.rs` keeps in its `Cluster`).

use std::collections::HashMap;
use std::time::Instant;

use crate::app::ConnId;

/// The requests this node asked of other nodes, waiting for their answers.
#[derive(Debug, Default)]
pub(crate) struct Asks {
    pub(crate) next: u64,
    pub(crate) waiting: HashMap<u64, Ask>,
}

/// One request asked of other nodes.
#[derive(Debug)]
pub(crate) struct Ask {
    pub(crate) conn: ConnId,
    pub(crate) req_id: String,
    pub(crate) ts: u64,
    /// Past this, `UNAVAILABLE`.
    pub(crate) deadline: Instant,
    pub(crate) what: Asked,
}

/// What an ask waits for. Answers may come before the script's reply (they travel on the
/// subscriber connection, the reply on the command connection), so each part is kept until
/// the other comes.
#[derive(Debug)]
pub(crate) enum Asked {
    Kick {
        /// The client to kick (for the message of `TARGET_NOT_FOUND`).
        client_id: String,
        /// How many nodes got the request (the script's reply).
        asked: Option<i64>,
        /// How many answered that they have no such client.
        said_no: i64,
    },
    Page {
        limit: usize,
        budget: usize,
        /// The node the page comes from and whether a live node follows it (the script's
        /// reply).
        node: Option<(String, bool)>,
        /// The page's records (a JSON array) and the slot its node goes on from.
        page: Option<(Vec<u8>, Option<u32>)>,
    },
}
