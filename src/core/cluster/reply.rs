//! What the cluster's request handlers share: the `UNAVAILABLE` refusal, the refusal of a
//! held request, a text field of a script's reply, a string written as JSON for a script
//! to store or publish as it is, and an event published on another node's channel.

use std::time::Instant;

use super::node::{self, Cluster, Op};
use crate::app::{Actions, ConnId};
use crate::cluster::resp::Reply;
use crate::core::errors::ErrorCode;
use crate::core::events::Event;
use crate::core::outbound::{self, Reject};
use crate::core::state::CoreState;
use crate::core::wire;

/// Send `reject` to `conn` in reply to `req_id` and let its later messages go on (the
/// connection was held while its request was at the broker).
pub(crate) fn fail(
    state: &mut CoreState,
    cl: &mut Cluster,
    conn: ConnId,
    req_id: &str,
    ts: u64,
    reject: Reject,
    out: &mut Actions<Event>,
) {
    outbound::send_error(out, &mut state.metrics, conn, Some(req_id), ts, &reject);
    cl.release(conn);
}

/// The refusal of a request that needs the cluster when its broker is down, its queue is
/// full, or no answer came within `broker_timeout_ms`.
pub(crate) fn unavailable() -> Reject {
    Reject::new(
        ErrorCode::Unavailable,
        "The cluster is unavailable: its broker did not answer",
    )
}

/// Field `i` of a script's array reply, as text (empty when absent or not a string).
pub(crate) fn text(fields: &[Reply], i: usize) -> String {
    fields
        .get(i)
        .and_then(Reply::as_bytes)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

/// `text` as a JSON string literal.
pub(crate) fn json_str(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 2);
    wire::write_str(&mut out, text);
    out
}

/// Publish `event` on the channel of `node` (its answer is not waited for); false when the
/// broker refused it.
pub(crate) fn publish_on_node(
    cl: &mut Cluster,
    node: &str,
    event: &[u8],
    now: Instant,
    out: &mut Actions<Event>,
) -> bool {
    let channel = node::node_channel(&cl.setup.prefix, node);
    let tag = cl.tag(Op::Ignore);
    let sent = cl
        .broker
        .call(tag, &[b"PUBLISH", &channel, event], now, out);
    if !sent {
        cl.untag(tag);
    }
    sent
}
