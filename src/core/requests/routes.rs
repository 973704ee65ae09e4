//! Handlers of `route_request` and `route_response` (PROTOCOL section 6).
//!
//! Contract:
//! - `route_request` needs a non-empty string `target`, resolved in this order: `capability:NAME`
//!   (round-robin over online, not busy agents with the capability); the `agentId` of an
//!   online or busy agent; a `clientId` of an open, authenticated connection that is not
//!   closing and that the sender may reach (PROTOCOL section 12): one of the same `userId`,
//!   one that shares a session with the sender, or any when the sender has the `admin` scope.
//!   No match, or a client the sender may not reach: `TARGET_NOT_FOUND`, with the same
//!   message. The shared-session check ([`SessionTable::share_a_session`]) costs
//!   O((a + b) · log min(a, b)) comparisons of session ids for a sender in a sessions and a
//!   target in b, each at most `max_sessions_per_client`. The target receives `route_request`
//!   with the requester's `id` and `payload` and `source` = requester's `clientId`; the
//!   requester gets nothing on success.
//! - The delivery is recorded in the route table (bounded, see `routes`); a second pending
//!   request with the same `id` from the same requester to the same target is refused with
//!   `INVALID_MESSAGE` naming `id`; a full table, or a target with 1024 requests pending
//!   toward it, refuses with `LIMIT_EXCEEDED` and nothing is delivered.
//! - Each pending request counts as one `Resource::PendingRoutes` of its requester's user
//!   (`usage_key`), against `max_pending_routes_per_user` (`LIMIT_EXCEEDED` past it, nothing
//!   delivered). It is given back whenever the table drops the entry: answered, evicted by
//!   the requester's own newer request (so a connection at its own bound is not refused by
//!   its user's), or dropped with either connection ([`conn_gone`]).
//! - `route_response` needs `target` (the requester's `clientId`) and `replyTo` (the request's
//!   `id`), both strings (`INVALID_MESSAGE` otherwise). It is delivered, with a new `id`,
//!   `replyTo` = the request's id and `source` = the responder's `clientId` (or, when the
//!   request went to an agent of another user and the requester is not `admin`, that
//!   agent's id: section 12 hides other users' `clientId`s), only if that
//!   exact request was delivered to the sender from that target and not yet answered;
//!   otherwise `TARGET_NOT_FOUND`.
//! - Either one whose delivery (the payload under the envelope written for the recipient)
//!   would be larger than `max_message_size` is `LIMIT_EXCEEDED`, checked before anything
//!   changes: a request is not recorded, a response leaves its request pending.

use crate::app::{Actions, ConnId};
use crate::core::clients::{Client, Clients};
use crate::core::errors::ErrorCode;
use crate::core::events::Event;
use crate::core::outbound::{self, short, Reject};
use crate::core::routes::RouteError;
use crate::core::sessions::SessionTable;
use crate::core::state::{CoreState, Req};
use crate::core::users::{Resource, Users};
use crate::core::wire::{self, Head, MsgId};
use crate::core::wire::{Envelope, Field, FieldError};

/// Prefix of a capability target.
pub(crate) const CAPABILITY_PREFIX: &str = "capability:";

fn required_str<'b>(field: &'b Field<'_>, name: &'static str) -> Result<&'b str, FieldError> {
    match field {
        Field::Str(text) if !text.is_empty() => Ok(text),
        Field::Str(_) => Err(FieldError::new(name, format!("{name} must not be empty"))),
        Field::Absent => Err(FieldError::new(name, format!("{name} is required"))),
        Field::Wrong => Err(FieldError::new(name, format!("{name} must be a string"))),
    }
}

fn not_found(target: &str) -> Reject {
    Reject::new(
        ErrorCode::TargetNotFound,
        format!("Target {} not found", short(target)),
    )
}

/// The connection a `route_request` target names, for the sender `from`, and the id of the
/// agent it was resolved to, if it was resolved to one.
fn resolve_target(
    state: &mut CoreState,
    from: ConnId,
    target: &str,
) -> Option<(ConnId, Option<String>)> {
    if let Some(name) = target.strip_prefix(CAPABILITY_PREFIX) {
        return state
            .agents
            .pick_by_capability(name)
            .map(|(conn, agent_id)| (conn, Some(agent_id.to_owned())));
    }
    let agent = state
        .agents
        .owner_of(target)
        .filter(|conn| state.clients.get(*conn).is_some_and(|c| !c.closing));
    if let Some(conn) = agent {
        return Some((conn, Some(target.to_owned())));
    }
    let auth_required = state.auth_required();
    let sender = state.clients.get(from)?;
    state
        .clients
        .conn_of(target)
        .and_then(|conn| state.clients.get(conn))
        .filter(|c| !c.closing && (c.is_authenticated() || !auth_required))
        .filter(|c| may_reach(&state.sessions, sender, c))
        .map(|c| (c.conn, None))
}

/// Whether `sender` may send a `route_request` to the client `target` by its `clientId`:
/// same `userId`, a shared session, or the `admin` scope.
fn may_reach(sessions: &SessionTable, sender: &Client, target: &Client) -> bool {
    sender.sees_client_ids_of(target) || sessions.share_a_session(sender.conn, target.conn)
}

/// `route_request`: deliver to the target.
pub(crate) fn request(
    state: &mut CoreState,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let target = required_str(&env.target, "target")?;
    let (responder, agent_id) =
        resolve_target(state, req.conn, target).ok_or_else(|| not_found(target))?;
    // A requester that may not see the agent owner's `clientId` (section 12) is answered
    // from the agent's id instead.
    let sees = match (state.clients.get(req.conn), state.clients.get(responder)) {
        (Some(sender), Some(owner)) => sender.sees_client_ids_of(owner),
        _ => false,
    };
    let shown_as = agent_id.filter(|_| !sees);
    if let Some(client) = state.clients.get(req.conn) {
        let head = Head {
            id: MsgId::Given(req.id),
            ..Head::new("route_request", req.ts).source(&client.client_id)
        };
        outbound::check_delivery(&head, env.payload.len(), state.config.max_message_size)?;
    }
    let evicted = state
        .routes
        .insert_as(req.conn, responder, req.id, shown_as.as_deref())
        .map_err(|e| Reject::refused(&e, req.id))?;
    if let Some(requester) = evicted {
        release(&mut state.users, &state.clients, requester);
    }
    let Some(client) = state.clients.get(req.conn) else {
        return Ok(());
    };
    if let Err(limit) = state
        .users
        .try_add(client.usage_key(), Resource::PendingRoutes)
    {
        state.routes.take(responder, req.conn, req.id);
        return Err(Reject::refused(&limit, client.usage_key()));
    }
    let head = Head {
        id: MsgId::Given(req.id),
        ..Head::new("route_request", req.ts).source(&client.client_id)
    };
    outbound::send(
        out,
        &mut state.metrics,
        responder,
        &head,
        wire::raw(env.payload),
    );
    Ok(())
}

/// `route_response`: deliver to the requester, once.
pub(crate) fn response(
    state: &mut CoreState,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let target = required_str(&env.target, "target")?;
    let reply_to = required_str(&env.reply_to, "replyTo")?;
    let requester = state
        .clients
        .conn_of(target)
        .ok_or_else(|| not_found(target))?;
    let Some(shown_as) = state.routes.shown(req.conn, requester, reply_to) else {
        let request = format!("{} from {}", short(reply_to), short(target));
        return Err(Reject::refused(&RouteError::NotPending, &request));
    };
    if let Some(client) = state.clients.get(req.conn) {
        let head = Head::new("route_response", req.ts)
            .reply_to(reply_to)
            .source(shown_as.unwrap_or(&client.client_id));
        outbound::check_delivery(&head, env.payload.len(), state.config.max_message_size)?;
    }
    let shown_as = state
        .routes
        .take_shown(req.conn, requester, reply_to)
        .flatten();
    release(&mut state.users, &state.clients, requester);
    let Some(client) = state.clients.get(req.conn) else {
        return Ok(());
    };
    let head = Head::new("route_response", req.ts)
        .reply_to(reply_to)
        .source(shown_as.as_deref().unwrap_or(&client.client_id));
    outbound::send(
        out,
        &mut state.metrics,
        requester,
        &head,
        wire::raw(env.payload),
    );
    Ok(())
}

/// Drop the routes of `client`, whose connection closed (it is no longer in the client
/// table), giving back what each dropped entry's requester held.
pub(crate) fn conn_gone(state: &mut CoreState, client: &Client) {
    let (users, clients) = (&mut state.users, &state.clients);
    state.routes.drop_conn(client.conn, |requester, n| {
        let user = if requester == client.conn {
            client.user()
        } else {
            clients.get(requester).and_then(Client::user)
        };
        if let Some(user) = user {
            users.release_n_at(user, Resource::PendingRoutes, n);
        }
    });
}

/// Give back the pending route `requester` (an open connection) held.
fn release(users: &mut Users, clients: &Clients, requester: ConnId) {
    if let Some(user) = clients.get(requester).and_then(Client::user) {
        users.release_n_at(user, Resource::PendingRoutes, 1);
    }
}
