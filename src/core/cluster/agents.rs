//! Agents across nodes (PROTOCOL sections 6, 11 and 13): the registry lives in Redis, changed
//! by the `AGENT_*` scripts, so that ownership, `max_agents` and `max_agents_per_user` hold
//! cluster-wide and every node's `agent_query` sees every agent.
//!
//! Contract:
//! - A request is read and checked as on one node (`requests/agents.rs`: fields, size bounds,
//!   an id that is another open connection's `clientId` here); the script then applies the
//!   rules that need the whole cluster (an id owned by an online client elsewhere, or by an
//!   offline agent of another user, or that is a `clientId` elsewhere: `AGENT_EXISTS`; the
//!   counts: `LIMIT_EXCEEDED`). The connection is held until the answer came.
//! - Replies are the standalone gateway's (`agent_info`, `agent_list`); an `agent_list` page
//!   shows `clientId` only for the sender's own user's agents (every agent's for `admin`),
//!   holds at most `limit` agents and fits in `max_message_size`.
//! - When a connection closes, its agents go offline (`AGENT_OFFLINE`; when the broker is down,
//!   once it is back); a node's agents go offline when the node is swept. Offline agents are
//!   removed `agent_ttl_ms` after they went offline by whichever node's heartbeat comes next
//!   (`AGENT_REMOVE` in `expire` mode), so the removal does not depend on the node that owned
//!   them.

use std::time::Instant;

use super::mirror::{PendingAgent, PendingQuery};
use super::node::{Cluster, Op};
use super::reply::{self, unavailable};
use crate::app::{Actions, ConnId};
use crate::cluster::resp::Reply;
use crate::cluster::scripts::{self, Refused};
use crate::core::agents::{AgentError, AgentStatus, AgentType};
use crate::core::auth::ANONYMOUS;
use crate::core::errors::ErrorCode;
use crate::core::events::Event;
use crate::core::outbound::{self, Reject};
use crate::core::requests::agents::{
    agent_ref, envelope_bytes, page_tail, read_query, read_register, Query,
};
use crate::core::state::{CoreState, Req};
use crate::core::users::{Resource, UserLimit};
use crate::core::wire::payloads::{self, AgentRecord, AgentRefIn};
use crate::core::wire::{self, opt_str, Envelope, FieldError, Head};

/// Offline agents removed by one expiry call at most.
const EXPIRE_BATCH: usize = 100;

fn agent_key(cl: &Cluster, agent_id: &str) -> Vec<u8> {
    let mut key = cl.key(&[b"a"]);
    key.extend_from_slice(b":{");
    key.extend_from_slice(agent_id.as_bytes());
    key.push(b'}');
    key
}

/// Send a script for a connection's agent request; the connection waits for its answer.
fn send(
    cl: &mut Cluster,
    script: usize,
    keys: &[Vec<u8>],
    args: &[&[u8]],
    op: Op,
    now: Instant,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let conn = match &op {
        Op::Agent(p) => p.conn,
        Op::Query(p) => p.conn,
        _ => {
            return Err(Reject::new(
                ErrorCode::InternalError,
                "Not an agent request",
            ))
        }
    };
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let tag = cl.tag(op);
    if !cl.broker.eval(tag, script, &keys, args, now, out) {
        cl.untag(tag);
        return Err(unavailable());
    }
    cl.hold(conn);
    Ok(())
}

/// `agent_register` in a cluster.
pub(crate) fn register(
    state: &mut CoreState,
    cl: &mut Cluster,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let Some(new) = read_register(state, req, env)? else {
        return Ok(());
    };
    if !cl.is_serving() {
        return Err(unavailable());
    }
    let Some(client) = state.clients.get(req.conn) else {
        return Ok(());
    };
    let aid = new.wanted.clone();
    let keys = [
        agent_key(cl, &aid),
        cl.key(&[b"agents"]),
        cl.key(&[b"ua", client.usage_key().as_bytes()]),
        cl.key(&[b"n", cl.node.as_bytes(), b"a"]),
        cl.key(&[b"c", aid.as_bytes()]),
        cl.key(&[b"offline"]),
    ];
    let ts = req.ts.to_string();
    let max_agents = state.config.max_agents.to_string();
    let max_user = state.config.max_agents_per_user.to_string();
    let mut aidj = Vec::new();
    wire::write_str(&mut aidj, &aid);
    let names: Vec<String> = new
        .capabilities
        .names()
        .into_iter()
        .map(|n| n.into_owned())
        .collect();
    let user = client.user_id.as_deref().unwrap_or(ANONYMOUS);
    let node = cl.node.clone();
    let prefix = cl.setup.prefix.clone();
    let (name, caps) = (new.name.clone(), new.capabilities.json().to_owned());
    let meta = new.metadata.as_deref().unwrap_or("").to_owned();
    let mut args: Vec<&[u8]> = vec![
        aid.as_bytes(),
        client.client_id.as_bytes(),
        node.as_bytes(),
        user.as_bytes(),
        client.usage_key().as_bytes(),
        new.agent_type.as_str().as_bytes(),
        name.as_bytes(),
        caps.as_bytes(),
        meta.as_bytes(),
        ts.as_bytes(),
        max_agents.as_bytes(),
        max_user.as_bytes(),
        prefix.as_bytes(),
        &aidj,
    ];
    args.extend(names.iter().map(|n| n.as_bytes()));
    let op = Op::Agent(PendingAgent {
        conn: req.conn,
        req_id: req.id.to_owned(),
        ts: req.ts,
        agent_id: aid.clone(),
        registered: Some(new),
    });
    send(
        cl,
        scripts::AGENT_REGISTER_INDEX,
        &keys,
        &args,
        op,
        req.now,
        out,
    )
}

/// `agent_unregister` and `agent_heartbeat` in a cluster.
pub(crate) fn change(
    state: &mut CoreState,
    cl: &mut Cluster,
    req: &Req<'_>,
    env: &Envelope<'_>,
    unregister: bool,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let p: AgentRefIn<'_> = payloads::parse(env)?;
    let status = match opt_str(&p.status, "status")? {
        None => "",
        Some(name) => payloads::heartbeat_status(name)
            .ok_or_else(|| FieldError::new("status", "status must be online or busy"))?
            .as_str(),
    };
    let Some(agent_id) = agent_ref(state, req, &p)? else {
        return Ok(());
    };
    if !cl.is_serving() {
        return Err(unavailable());
    }
    let Some(client) = state.clients.get(req.conn) else {
        return Ok(());
    };
    let cid = client.client_id.clone();
    let ts = req.ts.to_string();
    let prefix = cl.setup.prefix.clone();
    let op = Op::Agent(PendingAgent {
        conn: req.conn,
        req_id: req.id.to_owned(),
        ts: req.ts,
        agent_id: agent_id.clone(),
        registered: None,
    });
    if unregister {
        let keys = [cl.key(&[b"agents"]), cl.key(&[b"offline"])];
        let args: [&[u8]; 4] = [
            b"unregister",
            prefix.as_bytes(),
            agent_id.as_bytes(),
            cid.as_bytes(),
        ];
        send(
            cl,
            scripts::AGENT_REMOVE_INDEX,
            &keys,
            &args,
            op,
            req.now,
            out,
        )
    } else {
        let keys = [agent_key(cl, &agent_id)];
        let args: [&[u8]; 4] = [
            cid.as_bytes(),
            status.as_bytes(),
            ts.as_bytes(),
            prefix.as_bytes(),
        ];
        send(
            cl,
            scripts::AGENT_STATUS_INDEX,
            &keys,
            &args,
            op,
            req.now,
            out,
        )
    }
}

/// The answer to an agent request: its reply, or its refusal.
pub(crate) fn answered(
    state: &mut CoreState,
    cl: &mut Cluster,
    p: PendingAgent,
    reply: Option<Reply>,
    out: &mut Actions<Event>,
) {
    cl.release(p.conn);
    let Some(reply) = reply else {
        let reject = unavailable();
        return reply::fail(state, cl, p.conn, &p.req_id, p.ts, reject, out);
    };
    let fields = reply.as_array().unwrap_or(&[]);
    let text = |i: usize| reply::text(fields, i);
    let status = text(0);
    if status == "err" || fields.is_empty() {
        let word = fields.get(1).and_then(Reply::as_bytes).unwrap_or(b"");
        let user = state
            .clients
            .get(p.conn)
            .and_then(|c| c.user_id.clone())
            .unwrap_or_else(|| ANONYMOUS.to_owned());
        let reject = match Refused::from_word(word) {
            Some(Refused::Exists) => Reject::refused(&AgentError::Exists, &p.agent_id),
            Some(Refused::MaxAgents) => Reject::refused(&AgentError::LimitExceeded, &p.agent_id),
            Some(Refused::UserLimit) => Reject::refused(&UserLimit(Resource::Agents), &user),
            Some(Refused::NotFound) => Reject::refused(&AgentError::NotFound, &p.agent_id),
            Some(Refused::Forbidden) => Reject::refused(&AgentError::Forbidden, &p.agent_id),
            _ => Reject::new(
                ErrorCode::InternalError,
                "The cluster's agent script failed",
            ),
        };
        return reply::fail(state, cl, p.conn, &p.req_id, p.ts, reject, out);
    }
    let Some(client) = state.clients.get(p.conn) else {
        return;
    };
    let head = Head::new("agent_info", p.ts).reply_to(&p.req_id);
    let client_id = client.client_id.clone();
    match (status.as_str(), &p.registered) {
        ("registered", Some(new)) => {
            let registered_at = text(1).parse().unwrap_or(p.ts);
            let record = AgentRecord {
                agent_id: &p.agent_id,
                agent_type: new.agent_type,
                name: &new.name,
                capabilities: new.capabilities.json(),
                status: AgentStatus::Online,
                client_id: Some(&client_id),
                registered_at,
                last_seen_at: p.ts,
                metadata: new.metadata.as_deref(),
            };
            outbound::send(
                out,
                &mut state.metrics,
                p.conn,
                &head,
                payloads::agent_info("registered", record),
            );
            let owned = cl.agents_of.entry(p.conn).or_default();
            if !owned.contains(&p.agent_id) {
                owned.push(p.agent_id.clone());
            }
            cl.agent_conns.insert(p.agent_id.clone(), p.conn);
            state.state_version += 1;
            out.emit(Event::AgentRegistered {
                agent_id: p.agent_id,
                client_id,
            });
        }
        (label @ ("unregistered" | "updated"), _) => {
            // type, name, caps, meta, status, reg, seen
            let agent_type = payloads::agent_type(&text(1)).unwrap_or(AgentType::Custom);
            let (name, caps, meta) = (text(2), text(3), text(4));
            let status = payloads::heartbeat_status(&text(5)).unwrap_or(AgentStatus::Online);
            let record = AgentRecord {
                agent_id: &p.agent_id,
                agent_type,
                name: &name,
                capabilities: &caps,
                status,
                client_id: Some(&client_id),
                registered_at: text(6).parse().unwrap_or(0),
                last_seen_at: text(7).parse().unwrap_or(p.ts),
                metadata: (!meta.is_empty()).then_some(meta.as_str()),
            };
            let label = if label == "unregistered" {
                "unregistered"
            } else {
                "updated"
            };
            outbound::send(
                out,
                &mut state.metrics,
                p.conn,
                &head,
                payloads::agent_info(label, record),
            );
            if label == "unregistered" {
                if let Some(owned) = cl.agents_of.get_mut(&p.conn) {
                    owned.retain(|a| *a != p.agent_id);
                }
                cl.agent_conns.remove(&p.agent_id);
            }
            state.state_version += 1;
        }
        _ => {
            let reject = Reject::new(
                ErrorCode::InternalError,
                "The cluster's agent script failed",
            );
            reply::fail(state, cl, p.conn, &p.req_id, p.ts, reject, out);
        }
    }
}

/// `agent_query` in a cluster.
pub(crate) fn query(
    state: &mut CoreState,
    cl: &mut Cluster,
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
    if !cl.is_serving() {
        return Err(unavailable());
    }
    let index = match &capability {
        Some(name) => cl.key(&[b"cap", name.as_bytes()]),
        None => cl.key(&[b"agents"]),
    };
    let limit_text = limit.to_string();
    let prefix = cl.setup.prefix.clone();
    let args: [&[u8]; 5] = [
        after.as_deref().unwrap_or("").as_bytes(),
        limit_text.as_bytes(),
        if online_only { b"1" } else { b"0" },
        agent_type.map_or("", |t| t.as_str()).as_bytes(),
        prefix.as_bytes(),
    ];
    let op = Op::Query(PendingQuery {
        conn: req.conn,
        req_id: req.id.to_owned(),
        ts: req.ts,
        limit,
    });
    send(
        cl,
        scripts::AGENT_QUERY_INDEX,
        &[index],
        &args,
        op,
        req.now,
        out,
    )
}

/// The page of a query: written as one node writes it.
pub(crate) fn page(
    state: &mut CoreState,
    cl: &mut Cluster,
    p: PendingQuery,
    reply: Option<Reply>,
    out: &mut Actions<Event>,
) {
    cl.release(p.conn);
    let Some(fields) = reply.as_ref().and_then(Reply::as_array) else {
        let reject = unavailable();
        return reply::fail(state, cl, p.conn, &p.req_id, p.ts, reject, out);
    };
    let Some(client) = state.clients.get(p.conn) else {
        return;
    };
    let admin = client.scopes.is_admin();
    let viewer = client
        .user_id
        .clone()
        .unwrap_or_else(|| ANONYMOUS.to_owned());
    let text = |i: usize| reply::text(fields, i);
    let head = Head::new("agent_list", p.ts).reply_to(&p.req_id);
    let budget = state
        .config
        .max_message_size
        .saturating_sub(envelope_bytes(&head));
    let mut more = text(0) == "1";
    // aid, type, name, caps, meta, status, cid, uid, reg, seen
    let records: Vec<[String; 10]> = fields[1..]
        .chunks(10)
        .filter(|c| c.len() == 10)
        .map(|c| {
            std::array::from_fn(|j| {
                c[j].as_bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default()
            })
        })
        .collect();
    let last_looked = records.last().map(|r| r[0].clone());
    let write = |buf: &mut Vec<u8>| {
        let start = buf.len();
        buf.extend_from_slice(b"{\"agents\":[");
        let mut last: Option<&str> = None;
        for (count, r) in records.iter().enumerate() {
            if count == p.limit {
                more = true;
                break;
            }
            let status = match r[5].as_str() {
                "busy" => AgentStatus::Busy,
                "offline" => AgentStatus::Offline,
                _ => AgentStatus::Online,
            };
            let shown = admin || r[7] == viewer;
            let record = AgentRecord {
                agent_id: &r[0],
                agent_type: payloads::agent_type(&r[1]).unwrap_or(AgentType::Custom),
                name: &r[2],
                capabilities: &r[3],
                status,
                client_id: (shown && !r[6].is_empty()).then_some(r[6].as_str()),
                registered_at: r[8].parse().unwrap_or(0),
                last_seen_at: r[9].parse().unwrap_or(0),
                metadata: (!r[4].is_empty()).then_some(r[4].as_str()),
            };
            let mark = buf.len();
            if count > 0 {
                buf.push(b',');
            }
            payloads::write_agent(buf, &record);
            if buf.len() - start + page_tail(&r[0]) > budget {
                buf.truncate(mark);
                if count == 0 {
                    last = Some(&r[0]);
                }
                more = true;
                break;
            }
            last = Some(&r[0]);
        }
        buf.push(b']');
        // A page the scan ended early may be short (even empty): it resumes after the last
        // id looked at.
        let resume = last.or(last_looked.as_deref());
        if let (true, Some(id)) = (more, resume) {
            buf.extend_from_slice(b",\"next\":");
            wire::write_str(buf, &payloads::cursor(id));
        }
        buf.push(b'}');
        true
    };
    outbound::send(out, &mut state.metrics, p.conn, &head, write);
}

/// `conn` closed: its agents go offline.
pub(crate) fn owner_gone(
    cl: &mut Cluster,
    conn: ConnId,
    client_id: &str,
    ts: u64,
    now: Instant,
    out: &mut Actions<Event>,
) {
    let Some(agents) = cl.agents_of.remove(&conn) else {
        return;
    };
    for agent_id in &agents {
        cl.agent_conns.remove(agent_id);
    }
    if agents.is_empty() {
        return;
    }
    for agent_id in &agents {
        out.emit(Event::AgentOffline {
            agent_id: agent_id.clone(),
        });
    }
    if !offline(cl, client_id, &agents, ts, now, out) {
        cl.offline_later(client_id.to_owned(), agents);
    }
}

fn offline(
    cl: &mut Cluster,
    client_id: &str,
    agents: &[String],
    ts: u64,
    now: Instant,
    out: &mut Actions<Event>,
) -> bool {
    let keys = [
        cl.key(&[b"n", cl.node.as_bytes(), b"a"]),
        cl.key(&[b"offline"]),
    ];
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let ts = ts.to_string();
    let prefix = cl.setup.prefix.clone();
    let mut args: Vec<&[u8]> = vec![client_id.as_bytes(), ts.as_bytes(), prefix.as_bytes()];
    args.extend(agents.iter().map(|a| a.as_bytes()));
    let tag = cl.tag(Op::Ignore);
    let sent = cl
        .broker
        .eval(tag, scripts::AGENT_OFFLINE_INDEX, &keys, &args, now, out);
    if !sent {
        cl.untag(tag);
    }
    sent
}

/// The broker is up again: the agents of connections that closed meanwhile go offline.
pub(crate) fn broker_up(cl: &mut Cluster, ts: u64, now: Instant, out: &mut Actions<Event>) {
    for (client_id, agents) in std::mem::take(&mut cl.offline_repairs) {
        if !offline(cl, &client_id, &agents, ts, now, out) {
            cl.offline_later(client_id, agents);
        }
    }
}

/// Remove the offline agents whose TTL ran out (called with each heartbeat).
pub(crate) fn expire(cl: &mut Cluster, ttl_ms: u64, now: Instant, out: &mut Actions<Event>) {
    if ttl_ms == 0 || !cl.is_serving() {
        return;
    }
    let keys = [cl.key(&[b"agents"]), cl.key(&[b"offline"])];
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let ttl = ttl_ms.to_string();
    let batch = EXPIRE_BATCH.to_string();
    let prefix = cl.setup.prefix.clone();
    let args: [&[u8]; 4] = [
        b"expire",
        prefix.as_bytes(),
        ttl.as_bytes(),
        batch.as_bytes(),
    ];
    let tag = cl.tag(Op::Ignore);
    if !cl
        .broker
        .eval(tag, scripts::AGENT_REMOVE_INDEX, &keys, &args, now, out)
    {
        cl.untag(tag);
    }
}
