//! The devices of `connect` across nodes (PROTOCOL sections 5, 12 and 13):
//! `hello_ok.presence` and `presence_query` list the devices of the sender's user on every
//! node (every user's for `admin`), in one cluster-wide `connect` order, through the
//! `DEVICES` script.
//!
//! Contract:
//! - A device is recorded when an authenticated connection sends `connect` (or authenticates
//!   after it did), and forgotten when the connection closes or its node is swept.
//! - `hello_ok` waits for the broker (the connection is held): its own device first, then the
//!   others in `connect` order, within `max_list_items` and `max_message_size`, as on one
//!   node. `presence_query` pages by the cursor of the same form (`p` and hex digits), the
//!   place being the cluster's. A connection that has not authenticated sees no device.

use std::time::Instant;

use super::mirror::PendingDevices;
use super::node::{Cluster, Op};
use super::reply::{self, json_str, unavailable};
use crate::app::{Actions, ConnId};
use crate::cluster::resp::Reply;
use crate::cluster::scripts;
use crate::core::events::Event;
use crate::core::outbound::{self, Reject};
use crate::core::requests::devices;
use crate::core::state::CoreState;
use crate::core::wire::payloads::{self, DevicePresenceOut, HelloOkOut, PresenceListOut};
use crate::core::wire::Head;

/// The ZSET of devices `conn` may see: its user's, or every one for `admin`; `None` before it
/// authenticated.
fn visible_key(state: &CoreState, cl: &Cluster, conn: ConnId) -> Option<Vec<u8>> {
    let client = state.clients.get(conn)?;
    if client.scopes.is_admin() {
        return Some(cl.key(&[b"dev", b"all"]));
    }
    let user = client.user_id.as_deref()?;
    Some(user_key(cl, user))
}

fn user_key(cl: &Cluster, user: &str) -> Vec<u8> {
    let mut key = cl.key(&[b"dev", b"u"]);
    key.push(b':');
    key.extend_from_slice(&json_str(user));
    key
}

/// Record the device of `conn` (it sent `connect`, or authenticated after it), and ask for
/// the first page its `hello_ok` shows when `hello` is given. False when the broker refused.
pub(crate) fn record(
    state: &CoreState,
    cl: &mut Cluster,
    conn: ConnId,
    hello: Option<PendingDevices>,
    now: Instant,
    out: &mut Actions<Event>,
) -> bool {
    let (Some(client), Some(view)) = (state.clients.get(conn), visible_key(state, cl, conn)) else {
        return false;
    };
    let (Some(device), Some(user)) = (&client.device, client.user_id.as_deref()) else {
        return false;
    };
    let entry = format!(
        "{}\0{}\0{}",
        device.device_id, device.role, device.connected_at
    );
    let records = cl.key(&[b"dev", b"r"]);
    let zset = user_key(cl, user);
    let limit = state.config.max_list_items.to_string();
    let prefix = cl.setup.prefix.clone();
    let node = cl.node.clone();
    let args: [&[u8]; 7] = [
        b"set",
        prefix.as_bytes(),
        client.client_id.as_bytes(),
        &zset,
        entry.as_bytes(),
        node.as_bytes(),
        limit.as_bytes(),
    ];
    let held = hello.is_some();
    let tag = cl.tag(hello.map_or(Op::Ignore, Op::Devices));
    if !cl.broker.eval(
        tag,
        scripts::DEVICES_INDEX,
        &[&view, &records],
        &args,
        now,
        out,
    ) {
        cl.untag(tag);
        return false;
    }
    if held {
        cl.hold(conn);
    }
    true
}

/// `conn`'s device goes (its connection closed).
pub(crate) fn forget(cl: &mut Cluster, client_id: &str, now: Instant, out: &mut Actions<Event>) {
    let prefix = cl.setup.prefix.clone();
    let keys = [cl.key(&[b"dev", b"all"]), cl.key(&[b"dev", b"r"])];
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let args: [&[u8]; 3] = [b"del", prefix.as_bytes(), client_id.as_bytes()];
    let tag = cl.tag(Op::Ignore);
    if !cl
        .broker
        .eval(tag, scripts::DEVICES_INDEX, &keys, &args, now, out)
    {
        cl.untag(tag);
    }
}

/// `presence_query` in a cluster: one page from the cluster's devices.
pub(crate) fn query(
    state: &mut CoreState,
    cl: &mut Cluster,
    p: PendingDevices,
    from: u64,
    now: Instant,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let Some(view) = visible_key(state, cl, p.conn) else {
        // Not authenticated: nothing to see, as on one node.
        answer(state, cl, p, Some(Reply::Array(Some(Vec::new()))), out);
        return Ok(());
    };
    if !cl.is_serving() {
        return Err(unavailable());
    }
    let records = cl.key(&[b"dev", b"r"]);
    let prefix = cl.setup.prefix.clone();
    let from = from.to_string();
    let limit = p.limit.to_string();
    let args: [&[u8]; 5] = [
        b"page",
        prefix.as_bytes(),
        b"",
        from.as_bytes(),
        limit.as_bytes(),
    ];
    let conn = p.conn;
    let tag = cl.tag(Op::Devices(p));
    if !cl.broker.eval(
        tag,
        scripts::DEVICES_INDEX,
        &[&view, &records],
        &args,
        now,
        out,
    ) {
        cl.untag(tag);
        return Err(unavailable());
    }
    cl.hold(conn);
    Ok(())
}

/// A device as a page of the cluster lists it: its place, `deviceId`, `role`, `connectedAt`.
type Found = (u64, String, &'static str, u64);

fn out_of<'a>(d: &&'a Found) -> DevicePresenceOut<'a> {
    DevicePresenceOut {
        device_id: &d.1,
        role: d.2,
        connected_at: d.3,
    }
}

/// A page of devices came: the `hello_ok` or the `presence_list` it answers.
pub(crate) fn answer(
    state: &mut CoreState,
    cl: &mut Cluster,
    p: PendingDevices,
    reply: Option<Reply>,
    out: &mut Actions<Event>,
) {
    cl.release(p.conn);
    let Some(fields) = reply.as_ref().and_then(Reply::as_array) else {
        let reject = unavailable();
        return reply::fail(state, cl, p.conn, &p.req_id, p.ts, reject, out);
    };
    // (place, deviceId, role, connectedAt) of each device, in `connect` order.
    let found: Vec<Found> = (0..fields.len() / 3)
        .filter_map(|i| {
            let place = reply::text(fields, 3 * i).parse().ok()?;
            let entry = reply::text(fields, 3 * i + 1);
            let mut parts = entry.splitn(3, '\0');
            let device_id = parts.next()?.to_owned();
            let role = payloads::role(parts.next()?)?;
            let connected_at = parts.next()?.parse().ok()?;
            Some((place, device_id, role, connected_at))
        })
        .collect();
    let Some(client) = state.clients.get(p.conn) else {
        return;
    };
    let limit = p.limit;
    if p.hello {
        let mut payload = HelloOkOut {
            client_id: &client.client_id,
            paired: true,
            uptime: state.uptime_ms(p.now),
            // The cluster's, as of the last heartbeat (`state` holds no cluster here).
            state_version: cl.counts.version,
            protocol_version: payloads::PROTOCOL_VERSION,
            presence: Vec::new(),
            health: payloads::HealthOut {
                status: "ok",
                checked_at: p.ts,
            },
            auth_required: state.auth_required(),
        };
        let head = Head::new("hello_ok", p.ts).reply_to(&p.req_id);
        let budget = devices::room(state.config.max_message_size, &head, &payload);
        // Its own device first, then the others in `connect` order.
        let own = client
            .device
            .as_ref()
            .map(|d| (0, d.device_id.clone(), d.role, d.connected_at));
        let all: Vec<&Found> = own.iter().chain(found.iter()).collect();
        payload.presence = devices::fit(all.into_iter(), out_of, limit, budget).0;
        outbound::send_ser(out, &mut state.metrics, p.conn, &head, &payload);
        return;
    }
    let head = Head::new("presence_list", p.ts).reply_to(&p.req_id);
    let longest = PresenceListOut {
        devices: Vec::new(),
        next: Some(devices::cursor(u64::MAX)),
    };
    let budget = devices::room(state.config.max_message_size, &head, &longest);
    let (devices_out, left_out) = devices::fit(found.iter(), out_of, limit, budget);
    let next = left_out.map(|d| devices::cursor(d.0));
    let payload = PresenceListOut {
        devices: devices_out,
        next,
    };
    outbound::send_ser(out, &mut state.metrics, p.conn, &head, &payload);
}
