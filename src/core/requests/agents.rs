//! Handlers of the agent requests (`agent_register`, `agent_unregister`, `agent_heartbeat`,
//! `agent_query`; PROTOCOL section 6): payload validation, the registry call, the reply.
//!
//! Contract:
//! - Replies: `agent_info` `{"status":"registered"|"unregistered"|"updated","agent"}` and
//!   `agent_list` `{"agents"}` (sorted by `agentId`), each with `replyTo`.
//! - `agentId` must be a non-empty string of at most 128 bytes; it defaults to the sender's
//!   `clientId` in all three of register, unregister and heartbeat.
//! - `type` must be one of the six agent types, `name` a non-empty string, `capabilities` an
//!   object of the documented shape, `metadata` an object; `status` in a heartbeat `online`
//!   or `busy`; `onlineOnly` a boolean. Anything else: `INVALID_MESSAGE` naming the field.
//! - Registry refusals map to `AGENT_EXISTS`, `AGENT_NOT_FOUND`, `FORBIDDEN` and
//!   `LIMIT_EXCEEDED` (see [`AgentError`](crate::core::agents::AgentError)). Register,
//!   unregister and heartbeat each add one to `stateVersion`.
//! - When the owner closes, its agents turn offline (one `stateVersion` each) and, with a
//!   non-zero `agent_ttl_ms`, are removed when the TTL passes unless taken over before
//!   (one more).

use std::time::Instant;

use serde_json::Value;

use crate::app::{Actions, ConnId};
use crate::config::Config;
use crate::core::agents::{Capabilities, Registration};
use crate::core::events::Event;
use crate::core::outbound::{self, Reject};
use crate::core::state::{CoreState, Req};
use crate::core::timers;
use crate::core::wire::payloads::{
    self, AgentInfoOut, AgentListOut, AgentQueryIn, AgentRefIn, AgentRegisterIn,
};
use crate::core::wire::Head;
use crate::core::wire::{opt_bool, opt_ident, opt_object, opt_str, req_str, Envelope, FieldError};

const AGENT_TYPES: &str = "pi, cli, webchat, companion, channel, custom";

fn capabilities(value: Option<Value>) -> Result<Capabilities, FieldError> {
    match value {
        Some(value @ Value::Object(_)) => serde_json::from_value(value)
            .map_err(|e| FieldError::new("capabilities", format!("capabilities: {e}"))),
        None | Some(Value::Null) => {
            Err(FieldError::new("capabilities", "capabilities is required"))
        }
        Some(_) => Err(FieldError::new(
            "capabilities",
            "capabilities must be an object",
        )),
    }
}

fn send_agent_info(
    state: &mut CoreState,
    req: &Req<'_>,
    out: &mut Actions<Event>,
    payload: &AgentInfoOut<'_>,
) {
    let head = Head::new("agent_info", req.ts).reply_to(req.id);
    outbound::send_ser(out, &mut state.metrics, req.conn, &head, payload);
}

/// `agent_register` → `agent_info` `registered`.
pub(crate) fn register(
    state: &mut CoreState,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let p: AgentRegisterIn<'_> = payloads::parse(env.payload)?;
    let agent_id = opt_ident(&p.agent_id, "agentId")?.map(str::to_owned);
    let type_name = req_str(&p.agent_type, "type")?;
    let agent_type = payloads::agent_type(type_name)
        .ok_or_else(|| FieldError::new("type", format!("type must be one of {AGENT_TYPES}")))?;
    let name = req_str(&p.name, "name")?.to_owned();
    let capabilities = capabilities(p.capabilities)?;
    let metadata = opt_object(p.metadata, "metadata")?;
    let Some(client) = state.clients.get(req.conn) else {
        return Ok(());
    };
    let wanted = agent_id.clone().unwrap_or_else(|| client.client_id.clone());
    let reg = Registration {
        agent_id,
        agent_type,
        name,
        capabilities,
        metadata,
    };
    // Taking over an offline agent ends its TTL: forget the pending expiry so the table
    // holds only agents that are offline now.
    let stale_epoch = state.agents.get(&wanted).and_then(|a| a.offline_epoch());
    let agent = state
        .agents
        .register(req.conn, &client.client_id, reg, req.ts)
        .map_err(|e| Reject::refused(&e, &wanted))?;
    if let Some(epoch) = stale_epoch {
        state.agent_ttl.remove(&epoch);
    }
    let event = Event::AgentRegistered {
        agent_id: agent.agent_id.clone(),
        client_id: client.client_id.clone(),
    };
    let head = Head::new("agent_info", req.ts).reply_to(req.id);
    let payload = AgentInfoOut {
        status: "registered",
        agent,
    };
    outbound::send_ser(out, &mut state.metrics, req.conn, &head, &payload);
    state.state_version += 1;
    log::debug!(
        "agent {} registered",
        crate::core::escaped::Escaped(&wanted)
    );
    out.emit(event);
    Ok(())
}

/// The agent id a request names, defaulting to the sender's `clientId`.
fn agent_ref(
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
    let p: AgentRefIn<'_> = payloads::parse(env.payload)?;
    let Some(agent_id) = agent_ref(state, req, &p)? else {
        return Ok(());
    };
    let agent = state
        .agents
        .unregister(&agent_id, req.conn)
        .map_err(|e| Reject::refused(&e, &agent_id))?;
    state.state_version += 1;
    log::debug!(
        "agent {} unregistered",
        crate::core::escaped::Escaped(&agent_id)
    );
    let payload = AgentInfoOut {
        status: "unregistered",
        agent: &agent,
    };
    send_agent_info(state, req, out, &payload);
    Ok(())
}

/// `agent_heartbeat` → `agent_info` `updated`.
pub(crate) fn heartbeat(
    state: &mut CoreState,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let p: AgentRefIn<'_> = payloads::parse(env.payload)?;
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
    let payload = AgentInfoOut {
        status: "updated",
        agent,
    };
    outbound::send_ser(out, &mut state.metrics, req.conn, &head, &payload);
    state.state_version += 1;
    Ok(())
}

/// `agent_query` → `agent_list`.
pub(crate) fn query(
    state: &mut CoreState,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let p: AgentQueryIn<'_> = payloads::parse(env.payload)?;
    let capability = opt_str(&p.capability, "capability")?;
    let agent_type = match opt_str(&p.agent_type, "type")? {
        None => None,
        Some(name) => Some(payloads::agent_type(name).ok_or_else(|| {
            FieldError::new("type", format!("type must be one of {AGENT_TYPES}"))
        })?),
    };
    let online_only = opt_bool(&p.online_only, "onlineOnly")?.unwrap_or(false);
    let payload = AgentListOut {
        agents: state.agents.query(capability, agent_type, online_only),
    };
    let head = Head::new("agent_list", req.ts).reply_to(req.id);
    outbound::send_ser(out, &mut state.metrics, req.conn, &head, &payload);
    Ok(())
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
        if state.agents.expire(&agent_id, epoch) {
            state.state_version += 1;
            log::debug!(
                "agent {} removed after its TTL",
                crate::core::escaped::Escaped(&agent_id)
            );
        }
    }
}
