//! The devices a connection can see (PROTOCOL sections 5 and 11): `hello_ok.presence` and
//! `presence_query` → `presence_list`.
//!
//! Contract:
//! - What a connection may see is chosen by [`visible`] alone (PROTOCOL section 12): the
//!   device of every authenticated connection of its own `userId` that sent `connect` (of
//!   every user, with the `admin` scope), in the order their last `connect` was handled (the
//!   client table's device indexes). Connections authenticated as `anonymous` are one user
//!   here. A connection that has not authenticated sees none.
//! - `hello_ok.presence` ([`hello_presence`]) holds the sender's own device first, then the
//!   others in that order: at most `max_list_items` entries; the rest is read with
//!   `presence_query`.
//! - `presence_query {limit?, cursor?}` ([`query`]) → `presence_list {devices, next?}`:
//!   `limit` is an integer from 1 to `max_list_items` (absent: `max_list_items`); `next` is
//!   present when devices remain, and given back as `cursor` returns the following page. A
//!   device whose connection sent `connect` after a page was listed comes on a later page; one
//!   that went away is skipped. The cursor is opaque (`p` and hex digits); a `limit` or
//!   `cursor` that is not one of these is `INVALID_MESSAGE` naming the field.
//! - No reply is larger than `max_message_size`: a page stops early, with `next`, when the
//!   following entry would not fit. A page costs O(log n + its length), whatever the number of
//!   connections.

use crate::app::{Actions, ConnId};
use crate::core::clients::{Clients, Device, Owners};
use crate::core::events::Event;
use crate::core::outbound::{self, Reject};
use crate::core::state::{CoreState, Req};
use crate::core::wire::payloads::{self, DevicePresenceOut, PresenceListOut, PresenceQueryIn};
use crate::core::wire::{self, Envelope, FieldError, Head, Loose};

/// The devices `conn` may see, in `connect` order, from the one whose place is `from` on.
/// The one place that decides what a connection sees of the others.
pub(crate) fn visible(
    clients: &Clients,
    conn: ConnId,
    from: u64,
) -> impl Iterator<Item = &Device> + '_ {
    let owners = match clients.get(conn) {
        Some(client) if client.scopes.is_admin() => Owners::Every,
        Some(client) => client
            .user_id
            .as_deref()
            .map_or(Owners::Nobody, Owners::User),
        None => Owners::Nobody,
    };
    clients.devices_from(owners, from).map(|(_, device)| device)
}

/// `hello_ok.presence` for `conn`: its own device first, then what else it may see, at most
/// `limit` (`max_list_items`) entries within `budget` bytes of JSON.
pub(crate) fn hello_presence(
    clients: &Clients,
    conn: ConnId,
    limit: usize,
    budget: usize,
) -> Vec<DevicePresenceOut<'_>> {
    // The sender's own device, when it may see it at all.
    let own = clients
        .get(conn)
        .and_then(|c| c.device.as_deref())
        .filter(|own| {
            visible(clients, conn, own.seq)
                .next()
                .is_some_and(|d| d.seq == own.seq)
        });
    let own_seq = own.map(|d| d.seq);
    let others = visible(clients, conn, 0).filter(|d| Some(d.seq) != own_seq);
    page(own.into_iter().chain(others), limit, budget).0
}

/// The entries of `devices`, at most `limit` of them and `budget` bytes of JSON (commas
/// included); and the place of the first device left out, when one was.
fn page<'d>(
    devices: impl Iterator<Item = &'d Device>,
    limit: usize,
    budget: usize,
) -> (Vec<DevicePresenceOut<'d>>, Option<u64>) {
    let entry = |device: &&'d Device| DevicePresenceOut {
        device_id: &device.device_id,
        role: device.role,
        connected_at: device.connected_at,
    };
    let (entries, left_out) = fit(devices, entry, limit, budget);
    (entries, left_out.map(|d| d.seq))
}

/// The entries of the first `items`, at most `limit` of them and `budget` bytes of JSON
/// (commas included); and the first item left out, when one was. The one rule of a page's
/// size, for this node's devices and for a cluster's.
pub(crate) fn fit<'d, T: 'd>(
    items: impl Iterator<Item = T>,
    entry: impl Fn(&T) -> DevicePresenceOut<'d>,
    limit: usize,
    budget: usize,
) -> (Vec<DevicePresenceOut<'d>>, Option<T>) {
    let mut kept = Vec::new();
    let mut used = 0;
    let mut scratch = Vec::new();
    for item in items {
        let out = entry(&item);
        scratch.clear();
        let written = wire::ser(&out)(&mut scratch);
        let cost = scratch.len() + usize::from(!kept.is_empty());
        if !written || kept.len() == limit || used + cost > budget {
            return (kept, Some(item));
        }
        used += cost;
        kept.push(out);
    }
    (kept, None)
}

/// The room the reply `head` with the payload `empty` (its list empty) leaves within
/// `max_message_size`: the bytes of JSON the list's entries may take.
pub(crate) fn room<T: serde::Serialize>(
    max_message_size: usize,
    head: &Head<'_>,
    empty: &T,
) -> usize {
    let mut buf = Vec::new();
    wire::write_envelope(&mut buf, head, wire::ser(empty));
    max_message_size.saturating_sub(buf.len())
}

/// The cursor of the page starting at the device whose place is `seq`.
pub(crate) fn cursor(seq: u64) -> String {
    format!("p{seq:x}")
}

/// The place a cursor names, or `None` when it is not one [`cursor`] writes.
fn parse_cursor(text: &str) -> Option<u64> {
    let hex = text.strip_prefix('p')?;
    if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// `cursor`: absent or `null` is the first page; else a cursor this gateway gave.
pub(crate) fn page_start(value: &Option<Loose<'_>>) -> Result<u64, FieldError> {
    match wire::opt_str(value, "cursor")? {
        None => Ok(0),
        Some(text) => parse_cursor(text)
            .ok_or_else(|| FieldError::new("cursor", "cursor is not one this gateway gave")),
    }
}

/// `presence_query` → `presence_list`.
pub(crate) fn query(
    state: &mut CoreState,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let p: PresenceQueryIn<'_> = payloads::parse(env)?;
    let limit = wire::opt_limit(&p.limit, state.config.max_list_items)?;
    let from = page_start(&p.cursor)?;
    let head = Head::new("presence_list", req.ts).reply_to(req.id);
    let longest = PresenceListOut {
        devices: Vec::new(),
        next: Some(cursor(u64::MAX)),
    };
    let budget = room(state.config.max_message_size, &head, &longest);
    let (devices, next) = page(visible(&state.clients, req.conn, from), limit, budget);
    let payload = PresenceListOut {
        devices,
        next: next.map(cursor),
    };
    outbound::send_ser(out, &mut state.metrics, req.conn, &head, &payload);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(seq: u64, id: &str) -> Device {
        Device {
            device_id: id.to_owned(),
            device_name: None,
            role: "node",
            connected_at: 7,
            seq,
        }
    }

    #[test]
    fn cursors_round_trip_and_nothing_else_parses() {
        for seq in [0, 1, 0xabc, u64::MAX] {
            assert_eq!(parse_cursor(&cursor(seq)), Some(seq));
        }
        for bad in [
            "",
            "p",
            "x1",
            "p-1",
            "p+1",
            "pg",
            "p12345678901234567",
            "P1",
        ] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn limits_are_checked() {
        assert_eq!(crate::core::wire::opt_limit(&None, 5), Ok(5));
        assert_eq!(crate::core::wire::opt_limit(&Some(Loose::Null), 5), Ok(5));
        assert_eq!(
            crate::core::wire::opt_limit(&Some(Loose::UInt(5)), 5),
            Ok(5)
        );
        assert_eq!(
            crate::core::wire::opt_limit(&Some(Loose::UInt(1)), 5),
            Ok(1)
        );
        for bad in [
            Loose::UInt(0),
            Loose::UInt(6),
            Loose::Number,
            Loose::Bool(true),
        ] {
            assert_eq!(
                crate::core::wire::opt_limit(&Some(bad), 5)
                    .unwrap_err()
                    .field,
                "limit"
            );
        }
        assert_eq!(
            page_start(&Some(Loose::UInt(1))).unwrap_err().field,
            "cursor"
        );
        assert_eq!(page_start(&Some(Loose::Str("p10".into()))), Ok(16));
    }

    #[test]
    fn a_page_stops_at_its_limit_or_its_budget() {
        let devices: Vec<Device> = (0..5).map(|i| device(i * 2, &format!("d{i}"))).collect();
        let (all, next) = page(devices.iter(), 10, usize::MAX);
        assert_eq!(all.len(), 5);
        assert_eq!(next, None);
        let (two, next) = page(devices.iter(), 2, usize::MAX);
        assert_eq!(two.len(), 2);
        assert_eq!(next, Some(4));
        let one = serde_json::to_vec(&all[0]).unwrap().len();
        // Two entries and their comma fit exactly; one byte less holds one.
        let (fit, next) = page(devices.iter(), 10, 2 * one + 1);
        assert_eq!((fit.len(), next), (2, Some(4)));
        let (fit, next) = page(devices.iter(), 10, 2 * one);
        assert_eq!((fit.len(), next), (1, Some(2)));
    }
}
