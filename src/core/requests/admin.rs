//! Handlers of the admin messages (PROTOCOL section 12; the dispatcher lets only connections
//! with the `admin` scope reach them): `admin_kick` and `admin_clients`.
//!
//! Contract:
//! - `admin_kick {clientId, reason?}` replies `admin_result {"status":"kicked"}`, then closes
//!   the connection whose `clientId` it is (authenticated or not, the sender's own included)
//!   with 1008 and the reason `Kicked`, or `Kicked: REASON` cut on a character boundary to
//!   fit the 123 bytes of a close reason (an empty `reason` is none). No open connection with
//!   that `clientId`, or one already closing: `TARGET_NOT_FOUND`. `clientId` must be a
//!   non-empty string and `reason` a string (`null` is absent), else `INVALID_MESSAGE`
//!   naming the field. Only a kick with a reason allocates its close reason.
//! - `admin_clients {limit?, cursor?}` → `client_list {clients, next?}`: every open
//!   connection in the order of its slot in the client table, each `{clientId, userId,
//!   authenticated, connectedAt, sessions}` (`userId` null until it authenticates;
//!   `sessions` the ids of the sessions it is in, at most `max_sessions_per_client`).
//!   `limit` is an integer from 1 to `max_list_items` (absent: `max_list_items`); `next`,
//!   given back as `cursor`, returns the following page. A walk through the pages lists
//!   every connection open all along exactly once; one that closes is skipped, one that opens
//!   meanwhile may or may not be listed (as an agent registered during an `agent_query`
//!   walk). The cursor is `c` and hex digits; any other `limit` or `cursor` is
//!   `INVALID_MESSAGE` naming the field.
//! - No `client_list` is larger than `max_message_size`: a page stops early, with `next`,
//!   when the following record would not fit; a record that does not fit on a page of its
//!   own is passed over, so that paging moves on. A page costs O(log n + its length ·
//!   sessions per client).

use crate::app::Actions;
use crate::core::clients::Client;
use crate::core::errors::ErrorCode;
use crate::core::escaped::Escaped;
use crate::core::events::Event;
use crate::core::outbound::{self, short, Reject};
use crate::core::requests::devices;
use crate::core::state::{kick_reason, CoreState, Req, CLOSE_POLICY};
use crate::core::wire::payloads::{
    self, AdminClientsIn, AdminKickIn, AdminResultOut, ClientListOut, ClientOut,
};
use crate::core::wire::{self, opt_str, req_str, Envelope, FieldError, Head, Loose};

/// `admin_kick` → `admin_result`, then the close.
pub(crate) fn kick(
    state: &mut CoreState,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let p: AdminKickIn<'_> = payloads::parse(env)?;
    let client_id = req_str(&p.client_id, "clientId")?;
    let reason = opt_str(&p.reason, "reason")?;
    let conn = state
        .clients
        .conn_of(client_id)
        .filter(|&conn| state.clients.get(conn).is_some_and(|c| !c.closing))
        .ok_or_else(|| {
            Reject::new(
                ErrorCode::TargetNotFound,
                format!("Client {} not found", short(client_id)),
            )
        })?;
    let head = Head::new("admin_result", req.ts).reply_to(req.id);
    let payload = AdminResultOut { status: "kicked" };
    outbound::send_ser(out, &mut state.metrics, req.conn, &head, &payload);
    log::debug!("admin kicks client {}", Escaped(client_id));
    state.close(out, conn, CLOSE_POLICY, kick_reason(reason));
    Ok(())
}

/// `admin_clients` → `client_list`.
pub(crate) fn clients(
    state: &mut CoreState,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let p: AdminClientsIn<'_> = payloads::parse(env)?;
    let limit = wire::opt_limit(&p.limit, state.config.max_list_items)?;
    let from = page_start(&p.cursor)?;
    let head = Head::new("client_list", req.ts).reply_to(req.id);
    let longest = ClientListOut {
        clients: Vec::new(),
        next: Some(cursor(u32::MAX)),
    };
    let budget = devices::room(state.config.max_message_size, &head, &longest);
    let open = state.clients.clients_from(from);
    let sessions = &state.sessions;
    let (clients, next) = page(open, limit, budget, |client| {
        sessions
            .sessions_of(client.conn)
            .iter()
            .map(|id| &**id)
            .collect()
    });
    let payload = ClientListOut {
        clients,
        next: next.map(cursor),
    };
    outbound::send_ser(out, &mut state.metrics, req.conn, &head, &payload);
    Ok(())
}

/// The records of `open`, at most `limit` of them and `budget` bytes of JSON (commas
/// included), each with the ids of the sessions `sessions` says it is in; and the place the
/// next page starts at, when one follows. In a cluster, the page a node gives of its own
/// clients (`core/cluster/admin.rs`).
pub(crate) fn page<'c>(
    open: impl Iterator<Item = &'c Client>,
    limit: usize,
    budget: usize,
    sessions: impl Fn(&'c Client) -> Vec<&'c str>,
) -> (Vec<ClientOut<'c>>, Option<u32>) {
    let mut entries = Vec::new();
    let mut used = 0;
    let mut scratch = Vec::new();
    for client in open {
        if entries.len() == limit {
            return (entries, Some(client.conn.index));
        }
        let entry = record(client, sessions(client));
        scratch.clear();
        let written = wire::ser(&entry)(&mut scratch);
        let cost = scratch.len() + usize::from(!entries.is_empty());
        if !written || used + cost > budget {
            // One that fits on no page is passed over; else it starts the next page.
            let next = if entries.is_empty() {
                client.conn.index.saturating_add(1)
            } else {
                client.conn.index
            };
            return (entries, Some(next));
        }
        used += cost;
        entries.push(entry);
    }
    (entries, None)
}

/// The `client_list` record of `client`, in the sessions `sessions`.
fn record<'c>(client: &'c Client, sessions: Vec<&'c str>) -> ClientOut<'c> {
    ClientOut {
        client_id: &client.client_id,
        user_id: client.user_id.as_deref(),
        authenticated: client.is_authenticated(),
        connected_at: client.connected_at,
        sessions,
    }
}

/// The cursor of the page starting at slot `index`.
fn cursor(index: u32) -> String {
    format!("c{index:x}")
}

/// The slot a cursor names, or `None` when it is not one [`cursor`] writes.
fn parse_cursor(text: &str) -> Option<u32> {
    let hex = text.strip_prefix('c')?;
    if hex.is_empty() || hex.len() > 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// `cursor`: absent or `null` is the first page; else a cursor this gateway gave.
fn page_start(value: &Option<Loose<'_>>) -> Result<u32, FieldError> {
    match opt_str(value, "cursor")? {
        None => Ok(0),
        Some(text) => parse_cursor(text)
            .ok_or_else(|| FieldError::new("cursor", "cursor is not one this gateway gave")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_nothing_else_parses() {
        for index in [0, 1, 0xabc, u32::MAX] {
            assert_eq!(parse_cursor(&cursor(index)), Some(index));
        }
        for bad in ["", "c", "p1", "c-1", "cg", "c123456789", "C1"] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
        assert_eq!(
            page_start(&Some(Loose::UInt(1))).unwrap_err().field,
            "cursor"
        );
        assert_eq!(page_start(&Some(Loose::Null)), Ok(0));
    }
}
