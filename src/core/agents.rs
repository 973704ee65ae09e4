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
use std::ops::Bound;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::app::ConnId;
use crate::core::errors::{ErrorCode, Refusal};

/// What kind of program an agent is; `type` on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AgentType {
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
    #[cfg(test)]
    pub(crate) fn as_str(self) -> &'static str {
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
pub(crate) enum AgentStatus {
    /// Connected and ready for routed work.
    Online,
    /// Connected but not taking `capability:` routes.
    Busy,
    /// Its connection is gone; kept until its TTL expires or it is registered again.
    Offline,
}

impl AgentStatus {
    /// The wire name.
    #[cfg(test)]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Online => "online",
            AgentStatus::Busy => "busy",
            AgentStatus::Offline => "offline",
        }
    }

    /// Online or busy: the agent has an owner connection.
    pub(crate) fn is_connected(self) -> bool {
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
pub(crate) struct Capabilities {
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
    #[cfg(test)]
    pub(crate) fn matches(&self, name: &str) -> bool {
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
pub(crate) struct Agent {
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
    #[cfg(test)]
    pub(crate) fn owner(&self) -> Option<ConnId> {
        self.owner
    }

    /// The epoch of its current offline period (what [`AgentRegistry::expire`] wants);
    /// `None` when it is not offline.
    pub(crate) fn offline_epoch(&self) -> Option<u64> {
        (self.status == AgentStatus::Offline).then_some(self.offline_epoch)
    }
}

/// What `agent_register` asks for: `{"agentId"?,"type","name","capabilities","metadata"?}`.
/// It deserializes from that payload (`agentId` and `metadata` may be missing or null).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Registration {
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
pub(crate) enum AgentError {
    /// The id belongs to an online or busy agent of another connection.
    Exists,
    /// No agent has that id.
    NotFound,
    /// The agent is offline or owned by another connection.
    Forbidden,
    /// `max_agents` agents are stored already.
    LimitExceeded,
}

impl Refusal for AgentError {
    fn code(&self) -> ErrorCode {
        match self {
            AgentError::Exists => ErrorCode::AgentExists,
            AgentError::NotFound => ErrorCode::AgentNotFound,
            AgentError::Forbidden => ErrorCode::Forbidden,
            AgentError::LimitExceeded => ErrorCode::LimitExceeded,
        }
    }

    /// A message naming the agent `agent_id`.
    fn message(&self, agent_id: &str) -> String {
        match self {
            AgentError::Exists => format!("Agent {agent_id} is registered by another client"),
            AgentError::NotFound => format!("Agent {agent_id} not found"),
            AgentError::Forbidden => {
                format!("Agent {agent_id} is offline or owned by another client")
            }
            AgentError::LimitExceeded => "Too many agents".to_owned(),
        }
    }
}

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
pub(crate) struct AgentRegistry {
    max_agents: usize,
    agents: BTreeMap<String, Agent>,
    index: Indexes,
    last_epoch: u64,
}

impl AgentRegistry {
    /// An empty registry that stores at most `max_agents` agents.
    pub(crate) fn new(max_agents: usize) -> Self {
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
    pub(crate) fn register(
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
    pub(crate) fn unregister(&mut self, agent_id: &str, by: ConnId) -> Result<Agent, AgentError> {
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
    pub(crate) fn heartbeat(
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
    pub(crate) fn query(
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
    pub(crate) fn owner_disconnected(&mut self, owner: ConnId, now_ms: u64) -> Vec<(String, u64)> {
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
    pub(crate) fn expire(&mut self, agent_id: &str, epoch: u64) -> bool {
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
    pub(crate) fn pick_by_capability(&mut self, capability: &str) -> Option<(ConnId, &str)> {
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
    pub(crate) fn get(&self, agent_id: &str) -> Option<&Agent> {
        self.agents.get(agent_id)
    }

    /// The owner connection of an online or busy agent; `None` when offline or unknown.
    pub(crate) fn owner_of(&self, agent_id: &str) -> Option<ConnId> {
        self.agents.get(agent_id).and_then(|agent| agent.owner)
    }

    /// How many agents are stored, offline ones included.
    pub(crate) fn len(&self) -> usize {
        self.agents.len()
    }

    /// Whether no agent is stored.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// How many agents are online or busy.
    pub(crate) fn online_count(&self) -> usize {
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
mod tests;
