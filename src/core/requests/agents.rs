//! Handlers of the agent requests (`agent_register`, `agent_unregister`, `agent_heartbeat`,
//! `agent_query`; PROTOCOL sections 6 and 11): payload validation, the bounds, the registry
//! call, the per-user count, the reply.
//!
//! Contract:
//! - Replies: `agent_info` `{"status":"registered"|"unregistered"|"updated","agent"}` and
//!   `agent_list` `{"agents","next"?}` (sorted by `agentId`), each with `replyTo`.
//! - `agentId` must be a non-empty string of at most 128 bytes; it defaults to the sender's
//!   `clientId` in all three of register, unregister and heartbeat.
//! - `type` must be one of the six agent types, `name` a non-empty string of at most
//!   `max_name_bytes`, `capabilities` an object of the documented shape, `metadata` an object;
//!   `status` in a heartbeat `online` or `busy`; `onlineOnly` a boolean; `limit` an integer
//!   from 1 to `max_list_items`; `cursor` a `next` of an earlier page. Anything else:
//!   `INVALID_MESSAGE` naming the field.
//! - Bounds, checked before anything is stored: capabilities plus metadata as compact JSON
//!   within `max_agent_bytes`, at most `max_capabilities` names, a reply (with the record)
//!   within `max_message_size`, and `max_agents_per_user` (counted under the sender's `usage_key()`): else
//!   `LIMIT_EXCEEDED`. An `agentId` that is the `clientId` of another open connection:
//!   `AGENT_EXISTS`.
//! - Per-user counts stay exact: one per stored agent under the key of the client that
//!   registered it, moved on a takeover, released on unregister and TTL expiry.
//! - Registry refusals map to `AGENT_EXISTS`, `AGENT_NOT_FOUND`, `FORBIDDEN` and
//!   `LIMIT_EXCEEDED` (see [`AgentError`]). Register, unregister and heartbeat each add one to
//!   `stateVersion`.
//! - An `agent_list` page holds at most `limit` agents and never makes the reply larger than
//!   `max_message_size`; when more agents follow, `next` resumes after the page's last id.
//!   It lists every matching agent, but `clientId` is `null` in the records of another
//!   user's agents unless the sender has the `admin` scope (PROTOCOL section 12); `status`
//!   still tells an offline agent from a hidden one.
//! - When the owner closes, its agents turn offline (one `stateVersion` each) and, with a
//!   non-zero `agent_ttl_ms`, are removed when the TTL passes unless taken over before
//!   (one more).

use std::time::Instant;

use crate::app::{Actions, ConnId};
use crate::config::Config;
use crate::core::agents::{
    Admission, Agent, AgentError, AgentStatus, AgentType, Capabilities, Filter, Limits, Owner,
    ReadError, Registration,
};
use crate::core::auth::ANONYMOUS;
use crate::core::events::Event;
use crate::core::outbound::{self, Reject};
use crate::core::state::{CoreState, Req};
use crate::core::timers;
use crate::core::users::Resource;
use crate::core::wire::compact::{self, Budget, CompactError};
use crate::core::wire::fields::Raw;
use crate::core::wire::payloads::{self, AgentQueryIn, AgentRecord, AgentRefIn, AgentRegisterIn};
use crate::core::wire::{self, strict, Head};
use crate::core::wire::{check_name, opt_bool, opt_ident, opt_str, req_str, Envelope, FieldError};

pub(crate) const AGENT_TYPES: &str = "pi, cli, webchat, companion, channel, custom";

/// What an `agent_list` page needs after a record whose id is `agent_id`, at most:
/// `],"next":"<the id in hex>"}`.
pub(crate) fn page_tail(agent_id: &str) -> usize {
    br#"],"next":""}"#.len() + 2 * agent_id.len()
}

/// The bytes of the message `head` + `payload`, beside the payload itself.
pub(crate) fn envelope_bytes(head: &Head<'_>) -> usize {
    let mut probe = Vec::new();
    wire::write_envelope(&mut probe, head, |buf| {
        buf.extend_from_slice(b"{}");
        true
    });
    probe.len() - 2
}

/// The text of a payload member, when it is an object (`Err(())` when it is another value).
fn object(raw: Option<Raw<'_>>) -> Result<Option<&[u8]>, ()> {
    match raw.map(|raw| raw.get().as_bytes()) {
        None => Ok(None),
        Some(text) if text.starts_with(b"{") => Ok(Some(text)),
        Some(_) => Err(()),
    }
}

/// The compact text of `metadata`, within `max_bytes`, for the agent `agent_id`.
fn metadata(
    raw: Option<Raw<'_>>,
    max_bytes: usize,
    agent_id: &str,
) -> Result<Option<Box<str>>, Reject> {
    match object(raw) {
        Ok(None) => Ok(None),
        Ok(Some(raw)) => {
            let mut out = Vec::new();
            let mut budget = Budget {
                out: &mut out,
                max: max_bytes,
            };
            match compact::compact_strict(raw, &mut budget) {
                Ok(()) => Ok(Some(String::from_utf8_lossy(&out).into())),
                Err(CompactError::TooLarge) => {
                    Err(Reject::refused(&AgentError::TooLarge(max_bytes), agent_id))
                }
                Err(CompactError::Invalid(e)) => {
                    Err(FieldError::new("metadata", format!("metadata: {e}")).into())
                }
            }
        }
        Err(()) => Err(FieldError::new("metadata", "metadata must be an object").into()),
    }
}

/// The checks of a relayed payload (PROTOCOL section 11) on capabilities' text, worded as
/// a capabilities error.
fn check_capabilities(raw: &[u8]) -> Result<(), ReadError> {
    strict::check_text(raw).map_err(ReadError::Invalid)
}

/// The capabilities of the agent `agent_id`, within `limits`; `max_agent_bytes` for the
/// message of a size refusal.
fn capabilities(
    raw: Option<Raw<'_>>,
    limits: Limits,
    max_agent_bytes: usize,
    agent_id: &str,
) -> Result<Capabilities, Reject> {
    match object(raw) {
        Ok(None) => Err(FieldError::new("capabilities", "capabilities is required").into()),
        Ok(Some(raw)) => check_capabilities(raw)
            .and_then(|()| Capabilities::read(raw, limits))
            .map_err(|e| match e {
                ReadError::Invalid(e) => {
                    FieldError::new("capabilities", format!("capabilities: {e}")).into()
                }
                ReadError::TooLarge => {
                    Reject::refused(&AgentError::TooLarge(max_agent_bytes), agent_id)
                }
                ReadError::TooManyNames => {
                    Reject::refused(&AgentError::TooManyCapabilities(limits.max_names), agent_id)
                }
            }),
        Err(()) => Err(FieldError::new("capabilities", "capabilities must be an object").into()),
    }
}

/// An `agent_register` read and checked against the bounds, before anything is stored.
#[derive(Debug)]
pub(crate) struct NewAgent {
    /// The `agentId` given, if one was.
    pub agent_id: Option<String>,
    /// The id it registers: the given one, or the sender's `clientId`.
    pub wanted: String,
    pub agent_type: AgentType,
    pub name: String,
    pub capabilities: Capabilities,
    pub metadata: Option<Box<str>>,
}

/// Read and check an `agent_register` of `req` (PROTOCOL sections 6 and 11): its fields, the
/// size bounds, a reply that fits in one message, and an id that is not another open
/// connection's `clientId` here. `None` when the sender is gone.
pub(crate) fn read_register(
    state: &CoreState,
    req: &Req<'_>,
    env: &Envelope<'_>,
) -> Result<Option<NewAgent>, Reject> {
    let p: AgentRegisterIn<'_> = payloads::parse(env)?;
    let agent_id = opt_ident(&p.agent_id, "agentId")?.map(str::to_owned);
    let type_name = req_str(&p.agent_type, "type")?;
    check_name(type_name, "type", state.config.max_name_bytes)?;
    let agent_type = payloads::agent_type(type_name)
        .ok_or_else(|| FieldError::new("type", format!("type must be one of {AGENT_TYPES}")))?;
    let name = check_name(
        req_str(&p.name, "name")?,
        "name",
        state.config.max_name_bytes,
    )?;
    let Some(client) = state.clients.get(req.conn) else {
        return Ok(None);
    };
    let wanted = agent_id.clone().unwrap_or_else(|| client.client_id.clone());
    let max_bytes = state.config.max_agent_bytes;
    let metadata = metadata(p.metadata, max_bytes, &wanted)?;
    let limits = Limits {
        max_names: state.config.max_capabilities,
        max_bytes: max_bytes - metadata.as_deref().map_or(0, str::len),
    };
    let capabilities = capabilities(p.capabilities, limits, max_bytes, &wanted)?;
    // The reply carries the record: refuse what would not fit in one message.
    let head = Head::new("agent_info", req.ts).reply_to(req.id);
    let mut reply = Vec::new();
    let pending = AgentRecord {
        agent_id: &wanted,
        agent_type,
        name,
        capabilities: capabilities.json(),
        status: AgentStatus::Online,
        client_id: Some(&client.client_id),
        registered_at: req.ts,
        last_seen_at: req.ts,
        metadata: metadata.as_deref(),
    };
    payloads::agent_info("registered", pending)(&mut reply);
    if reply.len() + envelope_bytes(&head) > state.config.max_message_size {
        return Err(Reject::refused(&AgentError::TooLarge(max_bytes), &wanted));
    }
    if wanted != client.client_id && state.clients.conn_of(&wanted).is_some() {
        return Err(Reject::refused(&AgentError::Exists, &wanted));
    }
    Ok(Some(NewAgent {
        agent_id,
        wanted,
        agent_type,
        name: name.to_owned(),
        capabilities,
        metadata,
    }))
}

/// `agent_register` → `agent_info` `registered`.
pub(crate) fn register(
    state: &mut CoreState,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let Some(NewAgent {
        agent_id,
        wanted,
        agent_type,
        name,
        capabilities,
        metadata,
    }) = read_register(state, req, env)?
    else {
        return Ok(());
    };
    let head = Head::new("agent_info", req.ts).reply_to(req.id);
    let Some(client) = state.clients.get(req.conn) else {
        return Ok(());
    };
    let owner = Owner {
        conn: req.conn,
        client_id: &client.client_id,
        user_id: client.user_id.as_deref().unwrap_or(ANONYMOUS),
        account: client.usage_key(),
    };
    // Count the agent under the sender's key before storing it (a new record, or a takeover
    // from another key), and release the key it leaves.
    let moved_from = match state.agents.admit(&wanted, &owner) {
        Ok(Admission::Replace) => None,
        Ok(Admission::New) => Some(None),
        Ok(Admission::TakeOver { from }) if from == owner.account => None,
        Ok(Admission::TakeOver { from }) => Some(Some(from.to_owned())),
        Err(e) => return Err(Reject::refused(&e, &wanted)),
    };
    if moved_from.is_some() {
        state
            .users
            .try_add(owner.account, Resource::Agents)
            .map_err(|e| Reject::refused(&e, owner.user_id))?;
    }
    let reg = Registration {
        agent_id,
        agent_type,
        name: name.into(),
        capabilities,
        metadata,
    };
    // Taking over an offline agent ends its TTL: forget the pending expiry so the table
    // holds only agents that are offline now.
    let stale_epoch = state.agents.get(&wanted).and_then(|a| a.offline_epoch());
    let agent = match state.agents.register(&owner, reg, req.ts) {
        Ok(agent) => agent,
        Err(e) => {
            if moved_from.is_some() {
                state.users.release(owner.account, Resource::Agents);
            }
            return Err(Reject::refused(&e, &wanted));
        }
    };
    if let Some(Some(from)) = &moved_from {
        state.users.release(from, Resource::Agents);
    }
    if let Some(epoch) = stale_epoch {
        state.agent_ttl.remove(&epoch);
    }
    let event = Event::AgentRegistered {
        agent_id: agent.agent_id().to_owned(),
        client_id: client.client_id.clone(),
    };
    let payload = payloads::agent_info("registered", agent.into());
    outbound::send(out, &mut state.metrics, req.conn, &head, payload);
    state.state_version += 1;
    log::debug!(
        "agent {} registered",
        crate::core::escaped::Escaped(&wanted)
    );
    out.emit(event);
    Ok(())
}

/// The agent id a request names, defaulting to the sender's `clientId`.
pub(crate) fn agent_ref(
    state: &CoreState,
    req: &Req<'_>,
    p: &AgentRefIn<'_>,
) -> Result<Option<String>, Reject> {
    Ok(match opt_ident(&p.agent_id, "agentId")? {
        Some(id) => Some(id.to_owned()),
        None => state.clients.get(req.conn).map(|c| c.client_id.clone()),
    })
}

/// `agent_unregister` → `agent_info` `unregistered`.
pub(crate) fn unregister(
    state: &mut CoreState,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let p: AgentRefIn<'_> = payloads::parse(env)?;
    let Some(agent_id) = agent_ref(state, req, &p)? else {
        return Ok(());
    };
    let agent = state
        .agents
        .unregister(&agent_id, req.conn)
        .map_err(|e| Reject::refused(&e, &agent_id))?;
    state.users.release(agent.account(), Resource::Agents);
    state.state_version += 1;
    log::debug!(
        "agent {} unregistered",
        crate::core::escaped::Escaped(&agent_id)
    );
    let head = Head::new("agent_info", req.ts).reply_to(req.id);
    let payload = payloads::agent_info("unregistered", (&agent).into());
    outbound::send(out, &mut state.metrics, req.conn, &head, payload);
    Ok(())
}

/// `agent_heartbeat` → `agent_info` `updated`.
pub(crate) fn heartbeat(
    state: &mut CoreState,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let p: AgentRefIn<'_> = payloads::parse(env)?;
    let status = match opt_str(&p.status, "status")? {
        None => None,
        Some(name) => Some(
            payloads::heartbeat_status(name)
                .ok_or_else(|| FieldError::new("status", "status must be online or busy"))?,
        ),
    };
    let Some(agent_id) = agent_ref(state, req, &p)? else {
        return Ok(());
    };
    let agent = state
        .agents
        .heartbeat(&agent_id, req.conn, status, req.ts)
        .map_err(|e| Reject::refused(&e, &agent_id))?;
    let head = Head::new("agent_info", req.ts).reply_to(req.id);
    let payload = payloads::agent_info("updated", agent.into());
    outbound::send(out, &mut state.metrics, req.conn, &head, payload);
    state.state_version += 1;
    Ok(())
}

/// An `agent_query` read and checked.
pub(crate) struct Query {
    pub capability: Option<String>,
    pub agent_type: Option<AgentType>,
    pub online_only: bool,
    pub limit: usize,
    /// The id the page starts after (the `cursor`).
    pub after: Option<String>,
}

/// Read and check an `agent_query`'s fields.
pub(crate) fn read_query(state: &CoreState, env: &Envelope<'_>) -> Result<Query, Reject> {
    let p: AgentQueryIn<'_> = payloads::parse(env)?;
    let capability = opt_str(&p.capability, "capability")?.map(str::to_owned);
    let agent_type = match opt_str(&p.agent_type, "type")? {
        None => None,
        Some(name) => Some(payloads::agent_type(name).ok_or_else(|| {
            FieldError::new("type", format!("type must be one of {AGENT_TYPES}"))
        })?),
    };
    let online_only = opt_bool(&p.online_only, "onlineOnly")?.unwrap_or(false);
    let limit = wire::opt_limit(&p.limit, state.config.max_list_items)?;
    let after = match opt_str(&p.cursor, "cursor")? {
        None => None,
        Some(text) => Some(payloads::read_cursor(text).ok_or_else(|| {
            FieldError::new("cursor", "cursor must be the next of an agent_list")
        })?),
    };
    Ok(Query {
        capability,
        agent_type,
        online_only,
        limit,
        after,
    })
}

/// `agent_query` → `agent_list`.
pub(crate) fn query(
    state: &mut CoreState,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let Query {
        capability,
        agent_type,
        online_only,
        limit,
        after,
    } = read_query(state, env)?;
    let filter = Filter {
        capability: capability.as_deref(),
        agent_type,
        online_only,
    };
    let head = Head::new("agent_list", req.ts).reply_to(req.id);
    let budget = state
        .config
        .max_message_size
        .saturating_sub(envelope_bytes(&head));
    let viewer = match state.clients.get(req.conn) {
        Some(client) if client.scopes.is_admin() => Viewer::Admin,
        Some(client) => Viewer::User(client.user_id.as_deref().unwrap_or(ANONYMOUS)),
        None => return Ok(()),
    };
    let agents = state.agents.list(filter, after.as_deref());
    let payload = |buf: &mut Vec<u8>| {
        write_page(buf, agents, viewer, limit, budget);
        true
    };
    outbound::send(out, &mut state.metrics, req.conn, &head, payload);
    Ok(())
}

/// Who reads an `agent_list`: whose agents it shows the `clientId` of.
#[derive(Clone, Copy, Debug)]
enum Viewer<'a> {
    /// Every agent's.
    Admin,
    /// Those of this user's agents.
    User(&'a str),
}

impl Viewer<'_> {
    /// The wire record of `agent` as this viewer sees it.
    fn record<'a>(&self, agent: &'a Agent) -> AgentRecord<'a> {
        let mut record = AgentRecord::from(agent);
        if let Viewer::User(user) = self {
            if agent.user_id() != *user {
                record.client_id = None;
            }
        }
        record
    }
}

/// Write `{"agents":[..],"next"?}`: at most `limit` agents, in at most `budget` bytes. An
/// agent that does not fit on a page of its own (only a configuration whose
/// `max_message_size` leaves little beside `max_agent_bytes` allows one) is passed over, and
/// the page ends there with its `next`, so that paging still moves on.
fn write_page<'a>(
    buf: &mut Vec<u8>,
    agents: impl Iterator<Item = &'a Agent>,
    viewer: Viewer<'_>,
    limit: usize,
    budget: usize,
) {
    let start = buf.len();
    buf.extend_from_slice(b"{\"agents\":[");
    let mut last = None;
    let mut more = false;
    for (count, agent) in agents.enumerate() {
        if count == limit {
            more = true;
            break;
        }
        let mark = buf.len();
        if count > 0 {
            buf.push(b',');
        }
        payloads::write_agent(buf, &viewer.record(agent));
        if buf.len() - start + page_tail(agent.agent_id()) > budget {
            buf.truncate(mark);
            if count == 0 {
                last = Some(agent.agent_id());
            }
            more = true;
            break;
        }
        last = Some(agent.agent_id());
    }
    buf.push(b']');
    if let (true, Some(last)) = (more, last) {
        buf.extend_from_slice(b",\"next\":");
        wire::write_str(buf, &payloads::cursor(last));
    }
    buf.push(b'}');
}

/// The owner of agents closed: each of its agents turns offline, until its TTL expires.
pub(crate) fn owner_gone(
    state: &mut CoreState,
    conn: ConnId,
    now: Instant,
    ts: u64,
    out: &mut Actions<Event>,
) {
    let expiry = Config::duration(state.config.agent_ttl_ms).and_then(|ttl| now.checked_add(ttl));
    for (agent_id, epoch) in state.agents.owner_disconnected(conn, ts) {
        state.state_version += 1;
        log::debug!("agent {} offline", crate::core::escaped::Escaped(&agent_id));
        if let Some(at) = expiry {
            state.agent_ttl.insert(epoch, agent_id.clone());
            out.set_timer(at, timers::agent_ttl(epoch));
        }
        out.emit(Event::AgentOffline { agent_id });
    }
}

/// The TTL timer of the offline agent of `epoch` fired: remove the agent, unless it was
/// taken over since.
pub(crate) fn ttl_expired(state: &mut CoreState, epoch: u64) {
    if let Some(agent_id) = state.agent_ttl.remove(&epoch) {
        if let Some(agent) = state.agents.expire(&agent_id, epoch) {
            state.users.release(agent.account(), Resource::Agents);
            state.state_version += 1;
            log::debug!(
                "agent {} removed after its TTL",
                crate::core::escaped::Escaped(&agent_id)
            );
        }
    }
}
