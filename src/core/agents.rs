//! The agent registry: which agents exist, which connection owns each one, what they can do,
//! and which one a `capability:NAME` route goes to (PROTOCOL section 6).
//!
//! Contract:
//! - Pure data. Nothing here does I/O or reads the clock: times come in as `now_ms`,
//!   milliseconds since the Unix epoch. No input makes it panic.
//! - An agent is stored under its `agentId`. While its owning connection is open the agent is
//!   `online` or `busy`, and its `clientId` is the owner's. When the owner disconnects
//!   ([`AgentRegistry::owner_disconnected`]) it turns `offline` with `clientId` null and no
//!   owner, and stays stored until [`AgentRegistry::expire`] removes it or someone registers
//!   its id again. `online`/`busy` ⇔ has an owner ⇔ `clientId` is set.
//! - Ownership belongs to the connection ([`ConnId`]), not to a `clientId` string.
//!   Only the owning connection may heartbeat or unregister an agent (`Forbidden` otherwise,
//!   and always on an offline agent). Registering an id held by another connection's online or
//!   busy agent fails with `Exists`; an offline agent's id can be taken over by anyone.
//! - `max_agents` bounds the stored agents, offline ones included. Re-registering or taking
//!   over an id that is already stored never hits the limit.
//! - Every list the registry returns is sorted by `agentId` (byte order).
//! - Capability match (the original `findByCapability`): `chat` and `streaming` test those
//!   booleans; any other name matches when it is in `tools`, in `modes`, or a key of `custom`
//!   whose value is truthy as in JavaScript (anything but `false`, `null`, `0` and `""`).
//! - `capability:NAME` routing picks among the online, not busy agents with the capability,
//!   round-robin in `agentId` order: the next pick is the first such agent whose id comes after
//!   the last one picked for that name, wrapping around. Agents that join, leave or turn busy
//!   take or lose their place in the cycle without resetting it. The position is forgotten
//!   when no stored agent has the capability any more.
//! - Cost: lookups by id are O(log n); a capability query is O(matching agents · log n) through
//!   a per-capability index; a pick is O(log n); a disconnect costs in proportion to that owner's agents.
//! - Field contents (non-empty ids and names, sizes) are the caller's to validate; the
//!   registry accepts any strings.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::Bound;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::app::ConnId;

/// What kind of program an agent is; `type` on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentType {
    /// `pi`
    Pi,
    /// `cli`
    Cli,
    /// `webchat`
    Webchat,
    /// `companion`
    Companion,
    /// `channel`
    Channel,
    /// `custom`
    Custom,
}

impl AgentType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentType::Pi => "pi",
            AgentType::Cli => "cli",
            AgentType::Webchat => "webchat",
            AgentType::Companion => "companion",
            AgentType::Channel => "channel",
            AgentType::Custom => "custom",
        }
    }
}

/// Whether an agent can be reached and takes work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// Connected and ready for routed work.
    Online,
    /// Connected but not taking `capability:` routes.
    Busy,
    /// Its connection is gone; kept until its TTL expires or it is registered again.
    Offline,
}

impl AgentStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Online => "online",
            AgentStatus::Busy => "busy",
            AgentStatus::Offline => "offline",
        }
    }

    /// Online or busy: the agent has an owner connection.
    pub fn is_connected(self) -> bool {
        self != AgentStatus::Offline
    }
}

/// Capabilities as on the wire:
/// `{"chat":BOOL,"tools":[..],"streaming":BOOL,"modes":[..],"custom":{..}?}`.
///
/// When deserializing, a missing field takes its default: `chat` and `streaming` false,
/// `tools` and `modes` empty, `custom` absent (`null` also means absent). Unknown fields are
/// ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Takes part in chat.
    #[serde(default)]
    pub chat: bool,
    /// Names of the tools it offers.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Streams its answers.
    #[serde(default)]
    pub streaming: bool,
    /// Names of the modes it supports.
    #[serde(default)]
    pub modes: Vec<String>,
    /// Free-form flags; a key whose value is truthy counts as a capability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<Map<String, Value>>,
}

impl Capabilities {
    /// Whether these capabilities match `name` (see the module docs).
    pub fn matches(&self, name: &str) -> bool {
        match name {
            "chat" => self.chat,
            "streaming" => self.streaming,
            _ => {
                self.tools.iter().any(|tool| tool == name)
                    || self.modes.iter().any(|mode| mode == name)
                    || self
                        .custom
                        .as_ref()
                        .and_then(|custom| custom.get(name))
                        .is_some_and(is_truthy)
            }
        }
    }

    /// Every name these capabilities match, once each.
    fn names(&self) -> BTreeSet<&str> {
        let mut names = BTreeSet::new();
        if self.chat {
            names.insert("chat");
        }
        if self.streaming {
            names.insert("streaming");
        }
        let listed = self.tools.iter().chain(&self.modes).map(String::as_str);
        let custom = self
            .custom
            .iter()
            .flatten()
            .filter(|(_, value)| is_truthy(value))
            .map(|(key, _)| key.as_str());
        names.extend(
            listed
                .chain(custom)
                .filter(|name| *name != "chat" && *name != "streaming"),
        );
        names
    }
}

/// JavaScript truthiness of a JSON value.
fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(flag) => *flag,
        Value::Number(number) => number.as_f64().map_or(true, |n| n != 0.0 && !n.is_nan()),
        Value::String(text) => !text.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// An agent record. Its `Serialize` output is exactly the wire record of PROTOCOL section 6:
/// `{"agentId","type","name","capabilities":{..},"status","clientId":ID|null,"registeredAt":MS,
/// "lastSeenAt":MS,"metadata":{..}?}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    /// The id it is stored under.
    pub agent_id: String,
    /// What kind of agent it is.
    #[serde(rename = "type")]
    pub agent_type: AgentType,
    /// Display name.
    pub name: String,
    /// What it can do.
    pub capabilities: Capabilities,
    /// Online, busy or offline.
    pub status: AgentStatus,
    /// The owner connection's `clientId`; `None` (null) when offline.
    pub client_id: Option<String>,
    /// When its current owner first registered it.
    pub registered_at: u64,
    /// Its last registration, heartbeat or disconnect.
    pub last_seen_at: u64,
    /// Free-form data given at registration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(skip)]
    owner: Option<ConnId>,
    #[serde(skip)]
    offline_epoch: u64,
}

impl Agent {
    /// The connection that owns it; `None` when offline.
    pub fn owner(&self) -> Option<ConnId> {
        self.owner
    }

    /// The epoch of its current offline period (what [`AgentRegistry::expire`] wants);
    /// `None` when it is not offline.
    pub fn offline_epoch(&self) -> Option<u64> {
        (self.status == AgentStatus::Offline).then_some(self.offline_epoch)
    }
}

/// What `agent_register` asks for: `{"agentId"?,"type","name","capabilities","metadata"?}`.
/// It deserializes from that payload (`agentId` and `metadata` may be missing or null).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    /// The id to register; `None` means the registering client's `clientId`.
    pub agent_id: Option<String>,
    /// What kind of agent it is.
    #[serde(rename = "type")]
    pub agent_type: AgentType,
    /// Display name.
    pub name: String,
    /// What it can do.
    pub capabilities: Capabilities,
    /// Free-form data kept with the record.
    pub metadata: Option<Map<String, Value>>,
}

/// Why a registry operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentError {
    /// The id belongs to an online or busy agent of another connection.
    Exists,
    /// No agent has that id.
    NotFound,
    /// The agent is offline or owned by another connection.
    Forbidden,
    /// `max_agents` agents are stored already.
    LimitExceeded,
}

impl AgentError {
    /// The protocol error code.
    pub fn code(&self) -> &'static str {
        match self {
            AgentError::Exists => "AGENT_EXISTS",
            AgentError::NotFound => "AGENT_NOT_FOUND",
            AgentError::Forbidden => "FORBIDDEN",
            AgentError::LimitExceeded => "LIMIT_EXCEEDED",
        }
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AgentError::Exists => "agent id is owned by another online client",
            AgentError::NotFound => "agent not found",
            AgentError::Forbidden => "agent is offline or owned by another client",
            AgentError::LimitExceeded => "too many agents",
        })
    }
}

impl std::error::Error for AgentError {}

/// The agents that have one capability.
#[derive(Debug, Default)]
struct CapabilityEntry {
    /// Every stored agent with it, online or not.
    all: BTreeSet<String>,
    /// The online (not busy) ones among them.
    ready: BTreeSet<String>,
    /// The id picked last by round robin.
    last_pick: Option<String>,
}

/// Everything derived from the agent records, kept in step with them.
#[derive(Debug, Default)]
struct Indexes {
    capabilities: HashMap<String, CapabilityEntry>,
    by_owner: HashMap<ConnId, BTreeSet<String>>,
    connected: usize,
}

impl Indexes {
    /// Account for a record that was just stored.
    fn insert(&mut self, agent: &Agent) {
        let id = &agent.agent_id;
        let ready = agent.status == AgentStatus::Online;
        for name in agent.capabilities.names() {
            let entry = match self.capabilities.get_mut(name) {
                Some(entry) => entry,
                None => self.capabilities.entry(name.to_owned()).or_default(),
            };
            entry.all.insert(id.clone());
            if ready {
                entry.ready.insert(id.clone());
            }
        }
        if let Some(owner) = agent.owner {
            self.by_owner.entry(owner).or_default().insert(id.clone());
        }
        if agent.status.is_connected() {
            self.connected += 1;
        }
    }

    /// Forget a record, leaving capability entries in place even when they become empty.
    fn detach(&mut self, agent: &Agent) {
        let id = agent.agent_id.as_str();
        for name in agent.capabilities.names() {
            if let Some(entry) = self.capabilities.get_mut(name) {
                entry.all.remove(id);
                entry.ready.remove(id);
            }
        }
        if let Some(owner) = agent.owner {
            if let Some(ids) = self.by_owner.get_mut(&owner) {
                ids.remove(id);
                if ids.is_empty() {
                    self.by_owner.remove(&owner);
                }
            }
        }
        if agent.status.is_connected() {
            self.connected = self.connected.saturating_sub(1);
        }
    }

    /// Drop the entries of `agent`'s capabilities that no stored agent has any more.
    fn prune(&mut self, agent: &Agent) {
        for name in agent.capabilities.names() {
            if self
                .capabilities
                .get(name)
                .is_some_and(|entry| entry.all.is_empty())
            {
                self.capabilities.remove(name);
            }
        }
    }

    /// Forget a record that was just removed.
    fn remove(&mut self, agent: &Agent) {
        self.detach(agent);
        self.prune(agent);
    }

    /// Account for `agent.status` having just changed from `before` (its owner unchanged).
    fn status_changed(&mut self, agent: &Agent, before: AgentStatus) {
        let was_ready = before == AgentStatus::Online;
        let is_ready = agent.status == AgentStatus::Online;
        if was_ready != is_ready {
            let id = &agent.agent_id;
            for name in agent.capabilities.names() {
                if let Some(entry) = self.capabilities.get_mut(name) {
                    if is_ready {
                        entry.ready.insert(id.clone());
                    } else {
                        entry.ready.remove(id);
                    }
                }
            }
        }
        match (before.is_connected(), agent.status.is_connected()) {
            (true, false) => self.connected = self.connected.saturating_sub(1),
            (false, true) => self.connected += 1,
            _ => {}
        }
    }
}

/// The registered agents, with an index by capability and by owner connection.
#[derive(Debug)]
pub struct AgentRegistry {
    max_agents: usize,
    agents: BTreeMap<String, Agent>,
    index: Indexes,
    last_epoch: u64,
}

impl AgentRegistry {
    /// An empty registry that stores at most `max_agents` agents.
    pub fn new(max_agents: usize) -> Self {
        AgentRegistry {
            max_agents,
            agents: BTreeMap::new(),
            index: Indexes::default(),
            last_epoch: 0,
        }
    }

    /// Register, re-register or take over an agent for the connection `owner`, whose
    /// `clientId` is `owner_client_id`. The id defaults to `owner_client_id`.
    ///
    /// - An id held by another connection's online or busy agent: [`AgentError::Exists`].
    /// - The owner's own agent: its type, name, capabilities and metadata are replaced;
    ///   `registeredAt` is kept.
    /// - An offline agent: taken over by `owner`, replaced as above, `registeredAt` = now.
    /// - A new id when `max_agents` agents are stored (offline ones included):
    ///   [`AgentError::LimitExceeded`].
    ///
    /// In every success the agent is `online` (a busy one included), `clientId` is
    /// `owner_client_id` and `lastSeenAt` is `now_ms`.
    pub fn register(
        &mut self,
        owner: ConnId,
        owner_client_id: &str,
        mut reg: Registration,
        now_ms: u64,
    ) -> Result<&Agent, AgentError> {
        let agent_id = reg
            .agent_id
            .take()
            .unwrap_or_else(|| owner_client_id.to_owned());
        let stored = self.agents.len();
        match self.agents.entry(agent_id) {
            Entry::Occupied(mut slot) => {
                let existing = slot.get();
                let registered_at = if existing.owner == Some(owner) {
                    existing.registered_at
                } else if existing.status.is_connected() {
                    return Err(AgentError::Exists);
                } else {
                    now_ms
                };
                let agent = new_agent(
                    slot.key().clone(),
                    reg,
                    owner,
                    owner_client_id,
                    registered_at,
                    now_ms,
                );
                self.index.detach(existing);
                self.index.insert(&agent);
                let old = slot.insert(agent);
                self.index.prune(&old);
                Ok(slot.into_mut())
            }
            Entry::Vacant(slot) => {
                if stored >= self.max_agents {
                    return Err(AgentError::LimitExceeded);
                }
                let agent = new_agent(
                    slot.key().clone(),
                    reg,
                    owner,
                    owner_client_id,
                    now_ms,
                    now_ms,
                );
                self.index.insert(&agent);
                Ok(slot.insert(agent))
            }
        }
    }

    /// Remove an agent at its owner's request and return the removed record, as it was just
    /// before removal (status `online` or `busy`, `clientId` set).
    ///
    /// [`AgentError::NotFound`] for an unknown id; [`AgentError::Forbidden`] when it is
    /// offline or owned by another connection.
    pub fn unregister(&mut self, agent_id: &str, by: ConnId) -> Result<Agent, AgentError> {
        owned(&mut self.agents, agent_id, by)?;
        let agent = self.agents.remove(agent_id).ok_or(AgentError::NotFound)?;
        self.index.remove(&agent);
        Ok(agent)
    }

    /// Record a heartbeat from the owner: `lastSeenAt` becomes `now_ms` and, when `status` is
    /// `Online` or `Busy`, the status changes to it. `Some(Offline)` is treated as `None`
    /// (an agent turns offline only when its connection closes).
    ///
    /// Errors as [`AgentRegistry::unregister`].
    pub fn heartbeat(
        &mut self,
        agent_id: &str,
        by: ConnId,
        status: Option<AgentStatus>,
        now_ms: u64,
    ) -> Result<&Agent, AgentError> {
        let agent = owned(&mut self.agents, agent_id, by)?;
        agent.last_seen_at = now_ms;
        if let Some(status @ (AgentStatus::Online | AgentStatus::Busy)) = status {
            let before = agent.status;
            agent.status = status;
            self.index.status_changed(agent, before);
        }
        Ok(agent)
    }

    /// The agents matching every filter given, sorted by `agentId`: having `capability`,
    /// of `agent_type`, and, with `online_only`, online or busy.
    pub fn query(
        &self,
        capability: Option<&str>,
        agent_type: Option<AgentType>,
        online_only: bool,
    ) -> Vec<&Agent> {
        let keep = |agent: &&Agent| {
            (agent_type.is_none() || agent_type == Some(agent.agent_type))
                && (!online_only || agent.status.is_connected())
        };
        match capability {
            Some(name) => match self.index.capabilities.get(name) {
                Some(entry) => entry
                    .all
                    .iter()
                    .filter_map(|id| self.agents.get(id))
                    .filter(keep)
                    .collect(),
                None => Vec::new(),
            },
            None => self.agents.values().filter(keep).collect(),
        }
    }

    /// The connection `owner` closed: each of its agents turns offline, with `clientId` null
    /// and `lastSeenAt` = `now_ms`, and enters a new offline epoch. Returns `(agentId, epoch)`
    /// for each, sorted by id; pass both to [`AgentRegistry::expire`] when the TTL runs out.
    /// Epochs are unique within the registry and increase with each offline transition.
    pub fn owner_disconnected(&mut self, owner: ConnId, now_ms: u64) -> Vec<(String, u64)> {
        let Some(ids) = self.index.by_owner.remove(&owner) else {
            return Vec::new();
        };
        let mut gone = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(agent) = self.agents.get_mut(&id) else {
                continue;
            };
            let before = agent.status;
            self.last_epoch += 1;
            agent.status = AgentStatus::Offline;
            agent.client_id = None;
            agent.owner = None;
            agent.last_seen_at = now_ms;
            agent.offline_epoch = self.last_epoch;
            self.index.status_changed(agent, before);
            gone.push((id, self.last_epoch));
        }
        gone
    }

    /// The TTL of an offline period ran out: remove `agent_id` if it is still offline in
    /// `epoch` (not re-registered since, nor gone offline again later). Returns whether it
    /// was removed.
    pub fn expire(&mut self, agent_id: &str, epoch: u64) -> bool {
        let expired = self
            .agents
            .get(agent_id)
            .is_some_and(|agent| agent.offline_epoch() == Some(epoch));
        if !expired {
            return false;
        }
        match self.agents.remove(agent_id) {
            Some(agent) => {
                self.index.remove(&agent);
                true
            }
            None => false,
        }
    }

    /// `capability:NAME` routing: the next online, not busy agent with `capability` in
    /// round-robin order (see the module docs). Returns its owner connection and id.
    pub fn pick_by_capability(&mut self, capability: &str) -> Option<(ConnId, &str)> {
        let entry = self.index.capabilities.get_mut(capability)?;
        let next = match &entry.last_pick {
            Some(last) => entry
                .ready
                .range::<str, _>((Bound::Excluded(last.as_str()), Bound::Unbounded))
                .next()
                .or_else(|| entry.ready.first()),
            None => entry.ready.first(),
        }?;
        entry.last_pick = Some(next.clone());
        let agent = self.agents.get(next)?;
        Some((agent.owner?, agent.agent_id.as_str()))
    }

    /// The agent stored under `agent_id`, in any status.
    pub fn get(&self, agent_id: &str) -> Option<&Agent> {
        self.agents.get(agent_id)
    }

    /// The owner connection of an online or busy agent; `None` when offline or unknown.
    pub fn owner_of(&self, agent_id: &str) -> Option<ConnId> {
        self.agents.get(agent_id).and_then(|agent| agent.owner)
    }

    /// How many agents are stored, offline ones included.
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// Whether no agent is stored.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// How many agents are online or busy.
    pub fn online_count(&self) -> usize {
        self.index.connected
    }
}

/// The agent `agent_id`, if it exists and `by` owns it.
fn owned<'a>(
    agents: &'a mut BTreeMap<String, Agent>,
    agent_id: &str,
    by: ConnId,
) -> Result<&'a mut Agent, AgentError> {
    let agent = agents.get_mut(agent_id).ok_or(AgentError::NotFound)?;
    if agent.owner == Some(by) {
        Ok(agent)
    } else {
        Err(AgentError::Forbidden)
    }
}

/// A fresh online record built from a registration (its `agent_id` already taken out).
fn new_agent(
    agent_id: String,
    reg: Registration,
    owner: ConnId,
    owner_client_id: &str,
    registered_at: u64,
    now_ms: u64,
) -> Agent {
    Agent {
        agent_id,
        agent_type: reg.agent_type,
        name: reg.name,
        capabilities: reg.capabilities,
        status: AgentStatus::Online,
        client_id: Some(owner_client_id.to_owned()),
        registered_at,
        last_seen_at: now_ms,
        metadata: reg.metadata,
        owner: Some(owner),
        offline_epoch: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conn(index: u32) -> ConnId {
        ConnId {
            index,
            generation: 0,
        }
    }

    fn caps(chat: bool, streaming: bool, tools: &[&str], modes: &[&str]) -> Capabilities {
        Capabilities {
            chat,
            tools: tools.iter().map(|t| t.to_string()).collect(),
            streaming,
            modes: modes.iter().map(|m| m.to_string()).collect(),
            custom: None,
        }
    }

    fn tool(name: &str) -> Capabilities {
        caps(false, false, &[name], &[])
    }

    fn reg(agent_id: Option<&str>, capabilities: Capabilities) -> Registration {
        Registration {
            agent_id: agent_id.map(str::to_owned),
            agent_type: AgentType::Pi,
            name: "agent".to_owned(),
            capabilities,
            metadata: None,
        }
    }

    fn ids<'a>(agents: &[&'a Agent]) -> Vec<&'a str> {
        agents.iter().map(|a| a.agent_id.as_str()).collect()
    }

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    /// Register `id` with `capabilities` for `conn(owner)`, whose clientId is `c{owner}`.
    fn add(r: &mut AgentRegistry, owner: u32, id: &str, capabilities: Capabilities) {
        let client = format!("c{owner}");
        r.register(conn(owner), &client, reg(Some(id), capabilities), 1)
            .expect("register");
    }

    #[test]
    fn register_defaults_the_id_to_the_client_id_and_starts_online() {
        let mut r = AgentRegistry::new(10);
        let agent = r
            .register(conn(1), "client-1", reg(None, tool("x")), 1000)
            .unwrap()
            .clone();
        assert_eq!(agent.agent_id, "client-1");
        assert_eq!(agent.status, AgentStatus::Online);
        assert_eq!(agent.client_id.as_deref(), Some("client-1"));
        assert_eq!((agent.registered_at, agent.last_seen_at), (1000, 1000));
        assert_eq!(agent.owner(), Some(conn(1)));
        assert_eq!(agent.offline_epoch(), None);
        assert_eq!(r.get("client-1"), Some(&agent));
        assert_eq!(r.owner_of("client-1"), Some(conn(1)));
        assert_eq!((r.len(), r.online_count(), r.is_empty()), (1, 1, false));

        let named = r
            .register(conn(1), "client-1", reg(Some("helper"), tool("x")), 1001)
            .unwrap();
        assert_eq!(named.agent_id, "helper");
        assert_eq!(named.client_id.as_deref(), Some("client-1"));
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn reregistering_ones_own_agent_replaces_it_and_keeps_registered_at() {
        let mut r = AgentRegistry::new(10);
        let mut first = reg(Some("a"), tool("old"));
        first.metadata = Some(object(json!({"v": 1})));
        r.register(conn(1), "c1", first, 100).unwrap();
        r.heartbeat("a", conn(1), Some(AgentStatus::Busy), 150)
            .unwrap();

        let mut second = reg(Some("a"), tool("new"));
        second.agent_type = AgentType::Cli;
        second.name = "renamed".to_owned();
        let agent = r.register(conn(1), "c1", second, 200).unwrap().clone();
        assert_eq!(agent.agent_type, AgentType::Cli);
        assert_eq!(agent.name, "renamed");
        assert_eq!(agent.capabilities, tool("new"));
        assert_eq!(agent.metadata, None);
        assert_eq!(agent.status, AgentStatus::Online);
        assert_eq!((agent.registered_at, agent.last_seen_at), (100, 200));
        assert_eq!((r.len(), r.online_count()), (1, 1));
        assert!(r.query(Some("old"), None, false).is_empty());
        assert_eq!(ids(&r.query(Some("new"), None, false)), ["a"]);
        assert_eq!(r.pick_by_capability("new"), Some((conn(1), "a")));
    }

    #[test]
    fn an_id_held_by_another_connections_online_or_busy_agent_is_exists() {
        let mut r = AgentRegistry::new(10);
        add(&mut r, 1, "a", tool("x"));
        add(&mut r, 1, "b", tool("x"));
        r.heartbeat("b", conn(1), Some(AgentStatus::Busy), 5)
            .unwrap();
        let before = (r.get("a").cloned(), r.get("b").cloned());

        for id in ["a", "b"] {
            assert_eq!(
                r.register(conn(2), "c2", reg(Some(id), tool("y")), 9),
                Err(AgentError::Exists)
            );
        }
        // The same clientId on another connection does not own the agent either.
        assert_eq!(
            r.register(conn(2), "c1", reg(Some("a"), tool("y")), 9),
            Err(AgentError::Exists)
        );
        assert_eq!((r.get("a").cloned(), r.get("b").cloned()), before);
        assert!(r.query(Some("y"), None, false).is_empty());
    }

    #[test]
    fn an_offline_agents_id_can_be_taken_over() {
        let mut r = AgentRegistry::new(10);
        r.register(conn(1), "c1", reg(Some("a"), tool("x")), 100)
            .unwrap();
        let gone = r.owner_disconnected(conn(1), 200);
        assert_eq!(gone.len(), 1);
        let epoch = gone[0].1;

        let agent = r
            .register(conn(2), "c2", reg(Some("a"), tool("y")), 300)
            .unwrap()
            .clone();
        assert_eq!(agent.status, AgentStatus::Online);
        assert_eq!(agent.client_id.as_deref(), Some("c2"));
        assert_eq!(agent.owner(), Some(conn(2)));
        assert_eq!((agent.registered_at, agent.last_seen_at), (300, 300));
        assert_eq!(agent.offline_epoch(), None);
        assert_eq!(r.owner_of("a"), Some(conn(2)));
        assert_eq!(r.online_count(), 1);
        assert!(!r.expire("a", epoch));
        assert_eq!(
            r.unregister("a", conn(1)).unwrap_err(),
            AgentError::Forbidden
        );
        assert_eq!(
            r.unregister("a", conn(2)).unwrap().client_id.as_deref(),
            Some("c2")
        );

        // The original connection may take its own id back too.
        r.register(conn(3), "c3", reg(Some("b"), tool("x")), 400)
            .unwrap();
        r.owner_disconnected(conn(3), 500);
        let back = r
            .register(conn(4), "c3", reg(Some("b"), tool("x")), 600)
            .unwrap();
        assert_eq!(back.owner(), Some(conn(4)));
    }

    #[test]
    fn the_limit_counts_offline_agents_but_not_reregistration() {
        let mut r = AgentRegistry::new(2);
        add(&mut r, 1, "a", tool("x"));
        add(&mut r, 2, "b", tool("x"));
        assert_eq!(
            r.register(conn(1), "c1", reg(Some("c"), tool("x")), 2),
            Err(AgentError::LimitExceeded)
        );
        let epoch = r.owner_disconnected(conn(2), 3)[0].1;
        assert_eq!((r.len(), r.online_count()), (2, 1));
        assert_eq!(
            r.register(conn(1), "c1", reg(Some("c"), tool("x")), 4),
            Err(AgentError::LimitExceeded)
        );
        // Re-registering one's own agent and taking over an offline one are fine at the limit.
        assert!(r
            .register(conn(1), "c1", reg(Some("a"), tool("y")), 5)
            .is_ok());
        assert!(r
            .register(conn(3), "c3", reg(Some("b"), tool("y")), 6)
            .is_ok());
        assert_eq!(r.len(), 2);
        // Once one is gone there is room again.
        assert!(!r.expire("b", epoch));
        r.unregister("b", conn(3)).unwrap();
        assert!(r
            .register(conn(1), "c1", reg(Some("c"), tool("x")), 7)
            .is_ok());
        assert!(r.get("c").is_some());
    }

    #[test]
    fn a_zero_limit_refuses_every_registration() {
        let mut r = AgentRegistry::new(0);
        assert_eq!(
            r.register(conn(1), "c1", reg(None, tool("x")), 1),
            Err(AgentError::LimitExceeded)
        );
        assert!(r.is_empty());
        assert_eq!(r.pick_by_capability("x"), None);
    }

    #[test]
    fn unregister_checks_existence_and_ownership() {
        let mut r = AgentRegistry::new(10);
        add(&mut r, 1, "a", tool("x"));
        add(&mut r, 2, "b", tool("x"));
        r.heartbeat("a", conn(1), Some(AgentStatus::Busy), 50)
            .unwrap();
        add(&mut r, 3, "off", tool("x"));
        r.owner_disconnected(conn(3), 60);

        assert_eq!(r.unregister("nope", conn(1)), Err(AgentError::NotFound));
        assert_eq!(r.unregister("b", conn(1)), Err(AgentError::Forbidden));
        assert_eq!(r.unregister("off", conn(3)), Err(AgentError::Forbidden));
        let stale = ConnId {
            index: 1,
            generation: 1,
        };
        assert_eq!(r.unregister("a", stale), Err(AgentError::Forbidden));

        let removed = r.unregister("a", conn(1)).unwrap();
        assert_eq!(removed.agent_id, "a");
        assert_eq!(removed.status, AgentStatus::Busy);
        assert_eq!(removed.client_id.as_deref(), Some("c1"));
        assert_eq!(removed.last_seen_at, 50);
        assert_eq!(r.get("a"), None);
        assert_eq!(r.owner_of("a"), None);
        assert_eq!((r.len(), r.online_count()), (2, 1));
        assert_eq!(ids(&r.query(Some("x"), None, false)), ["b", "off"]);
        assert_eq!(r.unregister("a", conn(1)), Err(AgentError::NotFound));
        assert!(r.owner_disconnected(conn(1), 70).is_empty());
    }

    #[test]
    fn heartbeat_checks_ownership_and_updates_status_and_last_seen() {
        let mut r = AgentRegistry::new(10);
        add(&mut r, 1, "a", tool("x"));
        add(&mut r, 2, "off", tool("x"));
        r.owner_disconnected(conn(2), 5);

        assert_eq!(
            r.heartbeat("nope", conn(1), None, 9).unwrap_err(),
            AgentError::NotFound
        );
        assert_eq!(
            r.heartbeat("a", conn(2), None, 9).unwrap_err(),
            AgentError::Forbidden
        );
        assert_eq!(
            r.heartbeat("off", conn(2), Some(AgentStatus::Online), 9)
                .unwrap_err(),
            AgentError::Forbidden
        );
        assert_eq!(r.get("off").unwrap().status, AgentStatus::Offline);

        let agent = r.heartbeat("a", conn(1), None, 10).unwrap();
        assert_eq!(
            (agent.status, agent.last_seen_at),
            (AgentStatus::Online, 10)
        );
        let agent = r
            .heartbeat("a", conn(1), Some(AgentStatus::Busy), 20)
            .unwrap();
        assert_eq!((agent.status, agent.last_seen_at), (AgentStatus::Busy, 20));
        assert_eq!(r.pick_by_capability("x"), None);
        assert_eq!(r.online_count(), 1);
        let agent = r.heartbeat("a", conn(1), None, 30).unwrap();
        assert_eq!(agent.status, AgentStatus::Busy);
        let agent = r
            .heartbeat("a", conn(1), Some(AgentStatus::Offline), 40)
            .unwrap();
        assert_eq!((agent.status, agent.last_seen_at), (AgentStatus::Busy, 40));
        assert_eq!(agent.registered_at, 1);
        let agent = r
            .heartbeat("a", conn(1), Some(AgentStatus::Online), 50)
            .unwrap();
        assert_eq!(agent.status, AgentStatus::Online);
        assert_eq!(r.pick_by_capability("x"), Some((conn(1), "a")));
    }

    #[test]
    fn disconnect_turns_every_agent_of_the_owner_offline() {
        let mut r = AgentRegistry::new(10);
        add(&mut r, 1, "m", tool("x"));
        add(&mut r, 1, "b", tool("x"));
        add(&mut r, 1, "k", tool("y"));
        add(&mut r, 2, "other", tool("x"));
        r.heartbeat("k", conn(1), Some(AgentStatus::Busy), 2)
            .unwrap();
        assert_eq!((r.len(), r.online_count()), (4, 4));

        let stale = ConnId {
            index: 1,
            generation: 7,
        };
        assert!(r.owner_disconnected(stale, 5).is_empty());
        assert!(r.owner_disconnected(conn(9), 5).is_empty());

        let gone = r.owner_disconnected(conn(1), 10);
        let gone_ids: Vec<&str> = gone.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(gone_ids, ["b", "k", "m"]);
        assert!(gone.windows(2).all(|w| w[0].1 < w[1].1));
        for (id, epoch) in &gone {
            let agent = r.get(id).unwrap();
            assert_eq!(agent.status, AgentStatus::Offline);
            assert_eq!(agent.client_id, None);
            assert_eq!(agent.owner(), None);
            assert_eq!(agent.last_seen_at, 10);
            assert_eq!(agent.registered_at, 1);
            assert_eq!(agent.offline_epoch(), Some(*epoch));
            assert_eq!(r.owner_of(id), None);
        }
        assert_eq!((r.len(), r.online_count()), (4, 1));
        assert_eq!(r.owner_of("other"), Some(conn(2)));
        assert_eq!(r.get("other").unwrap().status, AgentStatus::Online);
        assert!(r.owner_disconnected(conn(1), 11).is_empty());

        let later = r.owner_disconnected(conn(2), 12);
        assert_eq!(later.len(), 1);
        assert!(later[0].1 > gone[2].1);
        assert_eq!(r.online_count(), 0);
    }

    #[test]
    fn ttl_expiry_removes_only_the_same_offline_period() {
        let mut r = AgentRegistry::new(10);
        add(&mut r, 1, "a", tool("x"));
        assert!(!r.expire("a", 0), "an online agent never expires");
        let first = r.owner_disconnected(conn(1), 10)[0].1;

        // Re-registered before its TTL: the old timer must not remove it.
        add(&mut r, 2, "a", tool("x"));
        assert!(!r.expire("a", first));
        assert_eq!(r.get("a").unwrap().status, AgentStatus::Online);

        // It goes offline again: the first timer still must not remove it, the second does.
        let second = r.owner_disconnected(conn(2), 20)[0].1;
        assert_ne!(first, second);
        assert!(!r.expire("a", first));
        assert!(r.get("a").is_some());
        assert!(!r.expire("a", second + 1));
        assert!(r.expire("a", second));
        assert_eq!(r.get("a"), None);
        assert!(r.is_empty());
        assert!(!r.expire("a", second));
        assert!(!r.expire("unknown", second));
        assert!(r.query(Some("x"), None, false).is_empty());
        assert_eq!(r.pick_by_capability("x"), None);
    }

    #[test]
    fn capability_matching_follows_find_by_capability() {
        let plain = caps(true, false, &["search", "streaming"], &["plan"]);
        assert!(plain.matches("chat"));
        assert!(!plain.matches("streaming"), "only the boolean counts");
        assert!(plain.matches("search"));
        assert!(plain.matches("plan"));
        assert!(!plain.matches("other"));
        assert!(!plain.matches(""));

        let streaming = caps(false, true, &["chat"], &["chat"]);
        assert!(streaming.matches("streaming"));
        assert!(!streaming.matches("chat"), "only the boolean counts");

        let custom = Capabilities {
            custom: Some(object(json!({
                "yes": true, "one": 1, "minus": -1, "half": 0.5, "text": "x", "zero_text": "0",
                "false_text": "false", "list": [], "object": {},
                "no": false, "null": null, "zero": 0, "float_zero": 0.0, "minus_zero": -0.0,
                "empty": "", "chat": true, "streaming": true
            }))),
            ..Capabilities::default()
        };
        for name in [
            "yes",
            "one",
            "minus",
            "half",
            "text",
            "zero_text",
            "false_text",
            "list",
            "object",
        ] {
            assert!(custom.matches(name), "{name} is truthy");
        }
        for name in [
            "no",
            "null",
            "zero",
            "float_zero",
            "minus_zero",
            "empty",
            "missing",
            "chat",
            "streaming",
        ] {
            assert!(!custom.matches(name), "{name} does not match");
        }
        assert!(!Capabilities::default().matches("chat"));
        assert!(!Capabilities::default().matches("anything"));

        // The index answers exactly as `matches` does.
        let mut r = AgentRegistry::new(10);
        add(&mut r, 1, "plain", plain.clone());
        add(&mut r, 2, "streaming", streaming.clone());
        add(&mut r, 3, "custom", custom.clone());
        let names = [
            "chat",
            "streaming",
            "search",
            "plan",
            "yes",
            "one",
            "minus",
            "half",
            "text",
            "zero_text",
            "false_text",
            "list",
            "object",
            "no",
            "null",
            "zero",
            "float_zero",
            "minus_zero",
            "empty",
            "missing",
            "",
        ];
        for name in names {
            let expected: Vec<&str> = [
                ("custom", &custom),
                ("plain", &plain),
                ("streaming", &streaming),
            ]
            .into_iter()
            .filter(|(_, c)| c.matches(name))
            .map(|(id, _)| id)
            .collect();
            assert_eq!(ids(&r.query(Some(name), None, false)), expected, "{name}");
            let picked = r.pick_by_capability(name).map(|(_, id)| id.to_owned());
            assert_eq!(picked.is_some(), !expected.is_empty(), "{name}");
        }
    }

    #[test]
    fn round_robin_is_fair_with_a_busy_agent_and_one_going_offline() {
        let mut r = AgentRegistry::new(10);
        add(&mut r, 1, "a", tool("x"));
        add(&mut r, 2, "b", tool("x"));
        add(&mut r, 3, "c", tool("x"));
        let picks = |r: &mut AgentRegistry, n: usize| -> Vec<String> {
            (0..n)
                .map(|_| {
                    let (owner, id) = r.pick_by_capability("x").unwrap();
                    let id = id.to_owned();
                    assert_eq!(r.owner_of(&id), Some(owner));
                    id
                })
                .collect()
        };
        assert_eq!(picks(&mut r, 4), ["a", "b", "c", "a"]);
        r.heartbeat("b", conn(2), Some(AgentStatus::Busy), 2)
            .unwrap();
        assert_eq!(picks(&mut r, 3), ["c", "a", "c"]);
        r.owner_disconnected(conn(3), 3);
        assert_eq!(picks(&mut r, 2), ["a", "a"]);
        r.heartbeat("b", conn(2), Some(AgentStatus::Online), 4)
            .unwrap();
        assert_eq!(picks(&mut r, 4), ["b", "a", "b", "a"]);
        add(&mut r, 4, "c", tool("x"));
        assert_eq!(picks(&mut r, 6), ["b", "c", "a", "b", "c", "a"]);
    }

    #[test]
    fn round_robin_keeps_its_place_as_agents_come_and_go() {
        let mut r = AgentRegistry::new(10);
        add(&mut r, 1, "a", tool("x"));
        add(&mut r, 1, "c", tool("x"));
        assert_eq!(r.pick_by_capability("x"), Some((conn(1), "a")));
        add(&mut r, 2, "b", tool("x"));
        assert_eq!(r.pick_by_capability("x"), Some((conn(2), "b")));
        r.unregister("b", conn(2)).unwrap();
        assert_eq!(r.pick_by_capability("x"), Some((conn(1), "c")));
        assert_eq!(r.pick_by_capability("x"), Some((conn(1), "a")));
        // Each capability name has its own place.
        add(&mut r, 3, "d", caps(false, false, &["x", "y"], &[]));
        assert_eq!(r.pick_by_capability("y"), Some((conn(3), "d")));
        assert_eq!(r.pick_by_capability("x"), Some((conn(1), "c")));
        assert_eq!(r.pick_by_capability("x"), Some((conn(3), "d")));
        assert_eq!(r.pick_by_capability("x"), Some((conn(1), "a")));
    }

    #[test]
    fn pick_finds_nothing_without_an_online_idle_match() {
        let mut r = AgentRegistry::new(10);
        assert_eq!(r.pick_by_capability("x"), None);
        add(&mut r, 1, "busy", tool("x"));
        r.heartbeat("busy", conn(1), Some(AgentStatus::Busy), 2)
            .unwrap();
        add(&mut r, 2, "off", tool("x"));
        r.owner_disconnected(conn(2), 3);
        add(&mut r, 3, "other", tool("y"));
        assert_eq!(r.pick_by_capability("x"), None);
        assert_eq!(r.pick_by_capability("z"), None);
        assert_eq!(r.pick_by_capability(""), None);
        assert_eq!(r.pick_by_capability("y"), Some((conn(3), "other")));
    }

    #[test]
    fn query_filters_combine_and_results_are_sorted_by_id() {
        let mut r = AgentRegistry::new(10);
        let mut add_typed = |owner: u32, id: &str, agent_type: AgentType, c: Capabilities| {
            let mut registration = reg(Some(id), c);
            registration.agent_type = agent_type;
            r.register(conn(owner), &format!("c{owner}"), registration, 1)
                .unwrap();
        };
        add_typed(1, "zeta", AgentType::Cli, tool("x"));
        add_typed(2, "alpha", AgentType::Pi, caps(true, false, &[], &[]));
        add_typed(3, "mid", AgentType::Cli, caps(true, false, &["x"], &[]));
        add_typed(4, "beta", AgentType::Webchat, tool("x"));
        r.heartbeat("mid", conn(3), Some(AgentStatus::Busy), 2)
            .unwrap();
        r.owner_disconnected(conn(4), 3);

        assert_eq!(
            ids(&r.query(None, None, false)),
            ["alpha", "beta", "mid", "zeta"]
        );
        assert_eq!(ids(&r.query(None, None, true)), ["alpha", "mid", "zeta"]);
        assert_eq!(
            ids(&r.query(Some("x"), None, false)),
            ["beta", "mid", "zeta"]
        );
        assert_eq!(ids(&r.query(Some("x"), None, true)), ["mid", "zeta"]);
        assert_eq!(
            ids(&r.query(None, Some(AgentType::Cli), false)),
            ["mid", "zeta"]
        );
        assert_eq!(
            ids(&r.query(Some("chat"), Some(AgentType::Cli), true)),
            ["mid"]
        );
        assert_eq!(
            ids(&r.query(Some("x"), Some(AgentType::Webchat), false)),
            ["beta"]
        );
        assert!(r
            .query(Some("x"), Some(AgentType::Webchat), true)
            .is_empty());
        assert!(r.query(None, Some(AgentType::Channel), false).is_empty());
        assert!(r.query(Some("unknown"), None, false).is_empty());
    }

    #[test]
    fn the_serialized_record_is_the_wire_record() {
        let mut r = AgentRegistry::new(10);
        let registration = Registration {
            agent_id: Some("agent-1".to_owned()),
            agent_type: AgentType::Companion,
            name: "Helper".to_owned(),
            capabilities: Capabilities {
                chat: true,
                tools: vec!["search".to_owned()],
                streaming: false,
                modes: vec!["plan".to_owned()],
                custom: Some(object(json!({"vision": true}))),
            },
            metadata: Some(object(json!({"version": "1.2"}))),
        };
        r.register(conn(1), "client-1", registration, 1000).unwrap();
        r.heartbeat("agent-1", conn(1), Some(AgentStatus::Busy), 2000)
            .unwrap();
        assert_eq!(
            serde_json::to_string(r.get("agent-1").unwrap()).unwrap(),
            concat!(
                r#"{"agentId":"agent-1","type":"companion","name":"Helper","#,
                r#""capabilities":{"chat":true,"tools":["search"],"streaming":false,"#,
                r#""modes":["plan"],"custom":{"vision":true}},"status":"busy","#,
                r#""clientId":"client-1","registeredAt":1000,"lastSeenAt":2000,"#,
                r#""metadata":{"version":"1.2"}}"#
            )
        );

        r.register(conn(2), "client-2", reg(None, Capabilities::default()), 5)
            .unwrap();
        r.owner_disconnected(conn(2), 6);
        assert_eq!(
            serde_json::to_string(r.get("client-2").unwrap()).unwrap(),
            concat!(
                r#"{"agentId":"client-2","type":"pi","name":"agent","#,
                r#""capabilities":{"chat":false,"tools":[],"streaming":false,"modes":[]},"#,
                r#""status":"offline","clientId":null,"registeredAt":5,"lastSeenAt":6}"#
            )
        );
    }

    #[test]
    fn wire_payloads_deserialize_with_documented_defaults() {
        let empty: Capabilities = serde_json::from_value(json!({})).unwrap();
        assert_eq!(empty, Capabilities::default());
        let partial: Capabilities =
            serde_json::from_value(json!({"chat": true, "custom": null, "extra": 1})).unwrap();
        assert_eq!(partial, caps(true, false, &[], &[]));
        assert!(serde_json::from_value::<Capabilities>(json!({"tools": "x"})).is_err());

        let registration: Registration = serde_json::from_value(json!({
            "type": "channel", "name": "n", "capabilities": {"tools": ["t"]},
            "metadata": {"k": 1}
        }))
        .unwrap();
        assert_eq!(registration.agent_id, None);
        assert_eq!(registration.agent_type, AgentType::Channel);
        assert_eq!(registration.capabilities, tool("t"));
        assert_eq!(registration.metadata, Some(object(json!({"k": 1}))));
        let named: Registration = serde_json::from_value(json!({
            "agentId": "x", "type": "custom", "name": "n", "capabilities": {}
        }))
        .unwrap();
        assert_eq!(named.agent_id.as_deref(), Some("x"));
        assert!(serde_json::from_value::<Registration>(
            json!({"type": "robot", "name": "n", "capabilities": {}})
        )
        .is_err());
        assert!(
            serde_json::from_value::<Registration>(json!({"type": "pi", "name": "n"})).is_err()
        );

        for t in [
            AgentType::Pi,
            AgentType::Cli,
            AgentType::Webchat,
            AgentType::Companion,
            AgentType::Channel,
            AgentType::Custom,
        ] {
            assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
            assert_eq!(
                serde_json::from_value::<AgentType>(json!(t.as_str())).unwrap(),
                t
            );
        }
        for s in [AgentStatus::Online, AgentStatus::Busy, AgentStatus::Offline] {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
    }

    #[test]
    fn errors_carry_their_protocol_codes() {
        assert_eq!(AgentError::Exists.code(), "AGENT_EXISTS");
        assert_eq!(AgentError::NotFound.code(), "AGENT_NOT_FOUND");
        assert_eq!(AgentError::Forbidden.code(), "FORBIDDEN");
        assert_eq!(AgentError::LimitExceeded.code(), "LIMIT_EXCEEDED");
        assert!(!AgentError::Exists.to_string().is_empty());
    }

    #[test]
    fn ten_thousand_agents() {
        let mut r = AgentRegistry::new(10_000);
        for i in 0..10_000u32 {
            let mut c = caps(i % 2 == 0, false, &["common"], &[]);
            if i % 1000 == 0 {
                c.tools.push("rare".to_owned());
            }
            r.register(
                conn(i % 100),
                "c",
                reg(Some(&format!("agent-{i:05}")), c),
                1,
            )
            .unwrap();
        }
        assert_eq!(
            r.register(conn(0), "c", reg(Some("one-more"), tool("x")), 2),
            Err(AgentError::LimitExceeded)
        );
        assert_eq!(r.query(Some("rare"), None, true).len(), 10);
        assert_eq!(r.query(Some("chat"), None, false).len(), 5000);
        let first = r.pick_by_capability("common").unwrap().1.to_owned();
        assert_eq!(first, "agent-00000");
        assert_eq!(r.pick_by_capability("rare").unwrap().1, "agent-00000");
        assert_eq!(r.owner_disconnected(conn(0), 3).len(), 100);
        assert_eq!(r.online_count(), 9_900);
        assert_eq!(r.pick_by_capability("rare"), None);
        assert_eq!(r.pick_by_capability("common").unwrap().1, "agent-00001");
    }

    /// SplitMix64: a small deterministic generator for the randomized test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn chance(&mut self, one_in: usize) -> bool {
            self.below(one_in) == 0
        }

        fn choose<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    const NAMES: [&str; 7] = ["chat", "streaming", "x", "y", "z", "w", "nope"];
    const TYPES: [AgentType; 3] = [AgentType::Pi, AgentType::Cli, AgentType::Custom];

    fn random_capabilities(rng: &mut Rng) -> Capabilities {
        let subset = |rng: &mut Rng, from: &[&str]| -> Vec<String> {
            from.iter()
                .filter(|_| rng.chance(2))
                .map(|s| s.to_string())
                .collect()
        };
        let custom = if rng.chance(2) {
            let values = [
                json!(true),
                json!(false),
                json!(0),
                json!(1),
                json!(""),
                json!("s"),
                json!(null),
                json!([]),
            ];
            let mut map = Map::new();
            for key in ["z", "w", "streaming"] {
                if rng.chance(2) {
                    map.insert(key.to_owned(), rng.choose(&values).clone());
                }
            }
            Some(map)
        } else {
            None
        };
        Capabilities {
            chat: rng.chance(2),
            tools: subset(rng, &["x", "y", "chat"]),
            streaming: rng.chance(3),
            modes: subset(rng, &["y", "z"]),
            custom,
        }
    }

    /// What the registry should hold, kept the obvious way.
    #[derive(Clone, Debug)]
    struct ModelAgent {
        owner: Option<ConnId>,
        client_id: Option<String>,
        status: AgentStatus,
        agent_type: AgentType,
        capabilities: Capabilities,
        registered_at: u64,
        last_seen_at: u64,
        epoch: u64,
    }

    #[derive(Default)]
    struct Model {
        agents: BTreeMap<String, ModelAgent>,
        last_pick: HashMap<String, String>,
        last_epoch: u64,
    }

    impl Model {
        fn pick(&mut self, name: &str) -> Option<(ConnId, String)> {
            let ready: Vec<(&String, &ModelAgent)> = self
                .agents
                .iter()
                .filter(|(_, a)| a.status == AgentStatus::Online && a.capabilities.matches(name))
                .collect();
            let last = self.last_pick.get(name);
            let (id, agent) = ready
                .iter()
                .find(|(id, _)| last.is_some_and(|last| *id > last))
                .or(ready.first())?;
            let picked = (agent.owner?, id.to_string());
            self.last_pick.insert(name.to_owned(), picked.1.clone());
            Some(picked)
        }

        fn forget_unused_picks(&mut self) {
            let agents = &self.agents;
            self.last_pick
                .retain(|name, _| agents.values().any(|a| a.capabilities.matches(name)));
        }
    }

    /// The registry's records and every index agree with each other and with the model.
    fn check(r: &AgentRegistry, model: &Model) {
        assert_eq!(r.len(), model.agents.len());
        assert_eq!(r.is_empty(), model.agents.is_empty());
        let connected = model
            .agents
            .values()
            .filter(|a| a.status.is_connected())
            .count();
        assert_eq!(r.online_count(), connected);
        assert!(r.len() <= r.max_agents);

        let stored: Vec<&String> = r.agents.keys().collect();
        let expected: Vec<&String> = model.agents.keys().collect();
        assert_eq!(stored, expected);
        let mut by_owner: HashMap<ConnId, BTreeSet<String>> = HashMap::new();
        for (id, m) in &model.agents {
            let a = &r.agents[id];
            assert_eq!(&a.agent_id, id);
            assert_eq!(a.status, m.status, "{id}");
            assert_eq!(a.owner, m.owner, "{id}");
            assert_eq!(a.client_id, m.client_id, "{id}");
            assert_eq!(a.agent_type, m.agent_type, "{id}");
            assert_eq!(a.capabilities, m.capabilities, "{id}");
            assert_eq!(a.registered_at, m.registered_at, "{id}");
            assert_eq!(a.last_seen_at, m.last_seen_at, "{id}");
            let offline = m.status == AgentStatus::Offline;
            assert_eq!(a.offline_epoch(), offline.then_some(m.epoch), "{id}");
            assert_eq!(offline, m.owner.is_none(), "{id}");
            assert_eq!(offline, m.client_id.is_none(), "{id}");
            assert_eq!(r.owner_of(id), m.owner);
            if let Some(owner) = m.owner {
                by_owner.entry(owner).or_default().insert(id.clone());
            }
        }
        assert_eq!(r.index.by_owner, by_owner);

        let mut indexed: BTreeSet<&str> = BTreeSet::new();
        for a in r.agents.values() {
            indexed.extend(a.capabilities.names());
        }
        let keys: BTreeSet<&str> = r.index.capabilities.keys().map(String::as_str).collect();
        assert_eq!(keys, indexed, "one index entry per capability in use");
        for (name, entry) in &r.index.capabilities {
            let all: BTreeSet<String> = model
                .agents
                .iter()
                .filter(|(_, a)| a.capabilities.matches(name))
                .map(|(id, _)| id.clone())
                .collect();
            let ready: BTreeSet<String> = model
                .agents
                .iter()
                .filter(|(_, a)| a.status == AgentStatus::Online && a.capabilities.matches(name))
                .map(|(id, _)| id.clone())
                .collect();
            assert_eq!(entry.all, all, "{name}");
            assert_eq!(entry.ready, ready, "{name}");
            assert_eq!(
                entry.last_pick.as_ref(),
                model.last_pick.get(name),
                "{name}"
            );
        }
        for name in model.last_pick.keys() {
            assert!(r.index.capabilities.contains_key(name), "{name}");
        }
    }

    fn run_random(seed: u64, steps: usize) {
        const CONNS: u32 = 4;
        let mut rng = Rng(seed);
        let mut r = AgentRegistry::new(9);
        let mut model = Model::default();
        let mut generations = [0u32; CONNS as usize];
        let mut timers: Vec<(String, u64)> = Vec::new();
        let mut now = 0u64;
        let pool: Vec<String> = (0..8)
            .map(|i| format!("a{i}"))
            .chain((0..CONNS).map(|i| format!("c{i}")))
            .collect();

        for _ in 0..steps {
            now += rng.below(50) as u64;
            let index = rng.below(CONNS as usize);
            let who = ConnId {
                index: index as u32,
                generation: generations[index],
            };
            let client_id = format!("c{index}");
            let owned: Vec<&String> = model
                .agents
                .iter()
                .filter(|(_, a)| a.owner == Some(who))
                .map(|(id, _)| id)
                .collect();
            let id = match owned.is_empty() || rng.chance(2) {
                true => rng.choose(&pool).clone(),
                false => rng.choose(&owned).to_string(),
            };
            match rng.below(100) {
                0..=29 => {
                    let explicit = !rng.chance(4);
                    let capabilities = random_capabilities(&mut rng);
                    let agent_type = *rng.choose(&TYPES);
                    let registration = Registration {
                        agent_id: explicit.then(|| id.clone()),
                        agent_type,
                        name: "n".to_owned(),
                        capabilities: capabilities.clone(),
                        metadata: None,
                    };
                    let id = if explicit { id } else { client_id.clone() };
                    let expected = match model.agents.get(&id) {
                        Some(m) if m.owner == Some(who) => Ok(m.registered_at),
                        Some(m) if m.status.is_connected() => Err(AgentError::Exists),
                        Some(_) => Ok(now),
                        None if model.agents.len() >= 9 => Err(AgentError::LimitExceeded),
                        None => Ok(now),
                    };
                    let got = r
                        .register(who, &client_id, registration, now)
                        .map(|a| (a.agent_id.clone(), a.registered_at));
                    assert_eq!(got, expected.clone().map(|at| (id.clone(), at)));
                    if let Ok(registered_at) = expected {
                        model.agents.insert(
                            id,
                            ModelAgent {
                                owner: Some(who),
                                client_id: Some(client_id),
                                status: AgentStatus::Online,
                                agent_type,
                                capabilities,
                                registered_at,
                                last_seen_at: now,
                                epoch: 0,
                            },
                        );
                    }
                }
                30..=37 => {
                    let expected = match model.agents.get(&id) {
                        None => Err(AgentError::NotFound),
                        Some(m) if m.owner != Some(who) => Err(AgentError::Forbidden),
                        Some(m) => Ok(m.status),
                    };
                    let got = r.unregister(&id, who).map(|a| a.status);
                    assert_eq!(got, expected);
                    if expected.is_ok() {
                        model.agents.remove(&id);
                    }
                }
                38..=57 => {
                    let status = *rng.choose(&[
                        None,
                        Some(AgentStatus::Online),
                        Some(AgentStatus::Busy),
                        Some(AgentStatus::Offline),
                    ]);
                    let got = r.heartbeat(&id, who, status, now).map(|a| a.status);
                    match model.agents.get_mut(&id) {
                        None => assert_eq!(got, Err(AgentError::NotFound)),
                        Some(m) if m.owner != Some(who) => {
                            assert_eq!(got, Err(AgentError::Forbidden))
                        }
                        Some(m) => {
                            if let Some(s @ (AgentStatus::Online | AgentStatus::Busy)) = status {
                                m.status = s;
                            }
                            m.last_seen_at = now;
                            assert_eq!(got, Ok(m.status));
                        }
                    }
                }
                58..=64 => {
                    let mut expected = Vec::new();
                    for (id, m) in model.agents.iter_mut() {
                        if m.owner == Some(who) {
                            model.last_epoch += 1;
                            m.owner = None;
                            m.client_id = None;
                            m.status = AgentStatus::Offline;
                            m.last_seen_at = now;
                            m.epoch = model.last_epoch;
                            expected.push((id.clone(), m.epoch));
                        }
                    }
                    let got = r.owner_disconnected(who, now);
                    assert_eq!(got, expected);
                    timers.extend(got);
                    generations[index] += 1;
                }
                65..=74 => {
                    let (id, epoch) = if !timers.is_empty() && !rng.chance(4) {
                        timers.swap_remove(rng.below(timers.len()))
                    } else {
                        (id, rng.below(model.last_epoch as usize + 2) as u64)
                    };
                    let expected = model
                        .agents
                        .get(&id)
                        .is_some_and(|m| m.status == AgentStatus::Offline && m.epoch == epoch);
                    assert_eq!(r.expire(&id, epoch), expected, "{id} {epoch}");
                    if expected {
                        model.agents.remove(&id);
                    }
                }
                75..=89 => {
                    let name = *rng.choose(&NAMES);
                    let expected = model.pick(name);
                    let got = r
                        .pick_by_capability(name)
                        .map(|(owner, id)| (owner, id.to_owned()));
                    assert_eq!(got, expected, "{name}");
                }
                _ => {
                    let name = rng.chance(3).then(|| *rng.choose(&NAMES));
                    let agent_type = rng.chance(2).then(|| *rng.choose(&TYPES));
                    let online_only = rng.chance(2);
                    let expected: Vec<&str> = model
                        .agents
                        .iter()
                        .filter(|(_, a)| name.map_or(true, |n| a.capabilities.matches(n)))
                        .filter(|(_, a)| agent_type.is_none() || agent_type == Some(a.agent_type))
                        .filter(|(_, a)| !online_only || a.status.is_connected())
                        .map(|(id, _)| id.as_str())
                        .collect();
                    assert_eq!(ids(&r.query(name, agent_type, online_only)), expected);
                }
            }
            model.forget_unused_picks();
            check(&r, &model);
        }
    }

    #[test]
    fn randomized_operations_agree_with_a_simple_model() {
        for seed in [1, 2, 3, 0xDEAD_BEEF] {
            run_random(seed, 5_000);
        }
    }
}
