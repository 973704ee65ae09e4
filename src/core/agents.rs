//! The agent registry: which agents exist, which connection and user own each one, what they
//! can do, and which one a `capability:NAME` route goes to (PROTOCOL sections 6 and 11).
//!
//! Contract:
//! - Pure data. Nothing here does I/O or reads the clock: times come in as `now_ms`,
//!   milliseconds since the Unix epoch. No input makes it panic.
//! - An agent is stored under its `agentId`. While its owning connection is open the agent is
//!   `online` or `busy`, and its `clientId` is the owner's. When the owner disconnects
//!   ([`AgentRegistry::owner_disconnected`]) it turns `offline` with `clientId` null and no
//!   owner, and stays stored until [`AgentRegistry::expire`] removes it or it is registered
//!   again. `online`/`busy` ⇔ has an owner ⇔ `clientId` is set.
//! - Ownership belongs to the connection ([`ConnId`]) while it is open, and to the user
//!   (`userId`) always. Only the owning connection may heartbeat or unregister an agent
//!   (`Forbidden` otherwise, and always on an offline agent). Registering an id held by another
//!   connection's online or busy agent, or an offline agent of another user, fails with
//!   `Exists`; an offline agent of the same user can be taken over by any of its connections.
//! - Every record remembers the accounting key (`account`) it is counted under in the per-user
//!   bounds; [`AgentRegistry::admit`] says, before a registration, whether it adds a record or
//!   moves one from another key, so the caller can keep those counts exact.
//! - `max_agents` bounds the stored agents, offline ones included. Re-registering or taking
//!   over an id that is already stored never hits the limit.
//! - Every list the registry returns is sorted by `agentId` (byte order), and may start after
//!   any id (stored or not): the pages of `agent_query`.
//! - Capability match (the original `findByCapability`): see `agents/capabilities.rs`.
//! - `capability:NAME` routing picks among the online, not busy agents with the capability,
//!   round-robin in `agentId` order: the next pick is the first such agent whose id comes after
//!   the last one picked for that name, wrapping around. Agents that join, leave or turn busy
//!   take or lose their place in the cycle without resetting it. The position is forgotten
//!   when no stored agent has the capability any more.
//!
//! The index. Each agent has one [`AgentRef`], a shared handle holding its id (the only copy)
//! and its current status and type. Capability names are interned (`Names`: one entry per
//! distinct name, with a small numeric id); the index is one ordered set of
//! `(name id, agent handle)` pairs, 16 bytes each. A status change (heartbeat busy/online,
//! owner gone) writes the handle only: O(log n) to find the agent, no capability is touched.
//! A pick or a filtered query walks the pairs of one name from a position, reading statuses
//! through the handles; only registration and removal touch an agent's names, O(its names ·
//! log n), reading them again from its stored capabilities text.
//!
//! Memory (64-bit): per record, the record itself (about 150 bytes in the map), its handle
//! (48), its strings (id, name, capabilities, metadata, clientId, user, account: their bytes
//! plus the allocator's rounding) and its place in its owner's set (about 40); per indexed
//! name of an agent, one pair (16 bytes, about 35 with the set's slack); per distinct name, one
//! interned entry (32 bytes in an ordered tree, 35 to 70 with its nodes' slack, plus the
//! name's bytes).
//!
//! Field contents (non-empty ids, name sizes, the bounds on capabilities) are the caller's to
//! validate; the registry accepts any strings.

mod capabilities;

use std::borrow::Borrow;
use std::cmp::Ordering as CmpOrdering;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

pub(crate) use capabilities::{Capabilities, Limits, ReadError};

use crate::app::ConnId;
use crate::core::errors::{ErrorCode, Refusal};

/// What kind of program an agent is; `type` on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    const ALL: [AgentType; 6] = [
        AgentType::Pi,
        AgentType::Cli,
        AgentType::Webchat,
        AgentType::Companion,
        AgentType::Channel,
        AgentType::Custom,
    ];

    /// The wire name.
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AgentStatus {
    /// Connected and ready for routed work.
    Online,
    /// Connected but not taking `capability:` routes.
    Busy,
    /// Its connection is gone; kept until its TTL expires or it is registered again.
    Offline,
}

impl AgentStatus {
    const ALL: [AgentStatus; 3] = [AgentStatus::Online, AgentStatus::Busy, AgentStatus::Offline];

    /// The wire name.
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

/// An agent's identity, shared by its record and every index entry that names it.
#[derive(Debug)]
struct Handle {
    id: Box<str>,
    /// `status` in bits 0-1, `type` in bits 2-4 (indexes into their `ALL`). Atomic only so
    /// that the registry stays `Send`; it is read and written by one thread.
    flags: AtomicU8,
}

/// A shared [`Handle`], ordered (and borrowed as `str`) by the agent id.
#[derive(Clone, Debug)]
pub(crate) struct AgentRef(Arc<Handle>);

impl AgentRef {
    fn new(id: &str, status: AgentStatus, agent_type: AgentType) -> Self {
        let handle = Handle {
            id: id.into(),
            flags: AtomicU8::new(0),
        };
        let this = AgentRef(Arc::new(handle));
        this.set(status, agent_type);
        this
    }

    fn id(&self) -> &str {
        &self.0.id
    }

    fn flags(&self) -> u8 {
        self.0.flags.load(Ordering::Relaxed)
    }

    fn status(&self) -> AgentStatus {
        AgentStatus::ALL[usize::from(self.flags() & 0b11).min(2)]
    }

    fn agent_type(&self) -> AgentType {
        AgentType::ALL[usize::from(self.flags() >> 2).min(5)]
    }

    fn set(&self, status: AgentStatus, agent_type: AgentType) {
        let flags = status as u8 | (agent_type as u8) << 2;
        self.0.flags.store(flags, Ordering::Relaxed);
    }

    fn set_status(&self, status: AgentStatus) {
        self.set(status, self.agent_type());
    }
}

impl PartialEq for AgentRef {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl Eq for AgentRef {}

impl PartialOrd for AgentRef {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for AgentRef {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.id().cmp(other.id())
    }
}

impl Borrow<str> for AgentRef {
    fn borrow(&self) -> &str {
        self.id()
    }
}

/// An agent record; `payloads::write_agent` writes it as the wire record of PROTOCOL section 6.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Agent {
    handle: AgentRef,
    /// Display name.
    pub name: Box<str>,
    /// What it can do, as compact JSON.
    pub capabilities: Capabilities,
    /// The owner connection's `clientId`; `None` (null) when offline.
    pub client_id: Option<Box<str>>,
    /// When its current owner first registered it.
    pub registered_at: u64,
    /// Its last registration, heartbeat or disconnect.
    pub last_seen_at: u64,
    /// Free-form data given at registration, as compact JSON.
    pub metadata: Option<Box<str>>,
    owner: Option<ConnId>,
    user_id: Box<str>,
    account: Box<str>,
    offline_epoch: u64,
}

impl Agent {
    /// The id it is stored under.
    pub(crate) fn agent_id(&self) -> &str {
        self.handle.id()
    }

    /// What kind of agent it is.
    pub(crate) fn agent_type(&self) -> AgentType {
        self.handle.agent_type()
    }

    /// Online, busy or offline.
    pub(crate) fn status(&self) -> AgentStatus {
        self.handle.status()
    }

    /// The `userId` it belongs to: who sees its `clientId` in `agent_list` and may take it
    /// over once it is offline.
    pub(crate) fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The accounting key it is counted under (see `users.rs`).
    pub(crate) fn account(&self) -> &str {
        &self.account
    }

    /// The connection that owns it; `None` when offline.
    #[cfg(test)]
    pub(crate) fn owner(&self) -> Option<ConnId> {
        self.owner
    }

    /// The epoch of its current offline period (what [`AgentRegistry::expire`] wants);
    /// `None` when it is not offline.
    pub(crate) fn offline_epoch(&self) -> Option<u64> {
        (self.status() == AgentStatus::Offline).then_some(self.offline_epoch)
    }
}

/// What `agent_register` asks for, validated by the caller.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Registration {
    /// The id to register; `None` means the registering client's `clientId`.
    pub agent_id: Option<String>,
    /// What kind of agent it is.
    pub agent_type: AgentType,
    /// Display name.
    pub name: Box<str>,
    /// What it can do.
    pub capabilities: Capabilities,
    /// Free-form data kept with the record, compact JSON.
    pub metadata: Option<Box<str>>,
}

/// Who registers: the connection, its `clientId`, its `userId` and its accounting key.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Owner<'a> {
    /// The connection.
    pub conn: ConnId,
    /// Its `clientId`.
    pub client_id: &'a str,
    /// Its `userId`: who may take its agents over once they are offline.
    pub user_id: &'a str,
    /// The key its usage is counted under.
    pub account: &'a str,
}

/// What a registration would do, when allowed ([`AgentRegistry::admit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission<'r> {
    /// Store a new record.
    New,
    /// Replace the owner's own record.
    Replace,
    /// Take over an offline record of the same user, counted under `from` so far.
    TakeOver {
        /// The accounting key the record was counted under.
        from: &'r str,
    },
}

/// Why a registry operation, or a registration's bounds, refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AgentError {
    /// The id belongs to an online or busy agent of another connection, to an offline agent
    /// of another user, or is the `clientId` of another open connection.
    Exists,
    /// No agent has that id.
    NotFound,
    /// The agent is offline or owned by another connection.
    Forbidden,
    /// `max_agents` agents are stored already.
    LimitExceeded,
    /// Capabilities plus metadata pass `max_agent_bytes` (the bound), or the record would not
    /// fit in one reply.
    TooLarge(usize),
    /// More capability names than `max_capabilities` (the bound).
    TooManyCapabilities(usize),
}

impl Refusal for AgentError {
    fn code(&self) -> ErrorCode {
        match self {
            AgentError::Exists => ErrorCode::AgentExists,
            AgentError::NotFound => ErrorCode::AgentNotFound,
            AgentError::Forbidden => ErrorCode::Forbidden,
            AgentError::LimitExceeded
            | AgentError::TooLarge(_)
            | AgentError::TooManyCapabilities(_) => ErrorCode::LimitExceeded,
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
            AgentError::TooLarge(max) => {
                format!("Agent {agent_id}: capabilities and metadata exceed {max} bytes")
            }
            AgentError::TooManyCapabilities(max) => {
                format!("Agent {agent_id} has more than {max} capabilities")
            }
        }
    }
}

/// What a list keeps: the filters of `agent_query`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Filter<'a> {
    /// Only agents with this capability.
    pub capability: Option<&'a str>,
    /// Only agents of this type.
    pub agent_type: Option<AgentType>,
    /// Only online or busy agents.
    pub online_only: bool,
}

impl Filter<'_> {
    fn keeps(&self, agent: &AgentRef) -> bool {
        (self.agent_type.is_none() || self.agent_type == Some(agent.agent_type()))
            && (!self.online_only || agent.status().is_connected())
    }
}

/// One interned capability name.
#[derive(Debug)]
struct NameInfo {
    id: u32,
    /// Stored agents with it; the entry goes when none is left.
    agents: u32,
    /// The agent picked last by round robin.
    last_pick: Option<AgentRef>,
}

/// An index entry: an agent with a capability. `agent: None` sorts before every agent of the
/// name, as a range bound only; stored pairs always have an agent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Pair {
    name: u32,
    agent: Option<AgentRef>,
}

/// Everything derived from the agent records, kept in step with them.
#[derive(Debug, Default)]
struct Indexes {
    /// Ordered, not hashed: a table of up to `max_agents` × 256 names that grew or rehashed
    /// itself in one registration would stall the loop (0.7 s seen at 1.5 million names).
    names: BTreeMap<Box<str>, NameInfo>,
    /// Name ids free for reuse, so ids stay below the number of distinct names ever held at once.
    free_ids: Vec<u32>,
    next_id: u32,
    pairs: BTreeSet<Pair>,
    by_owner: HashMap<ConnId, BTreeSet<AgentRef>>,
    connected: usize,
}

impl Indexes {
    /// Index `agent` under each of `names`.
    fn add_names<'n>(&mut self, agent: &AgentRef, names: impl Iterator<Item = &'n str>) {
        for name in names {
            let info = match self.names.get_mut(name) {
                Some(info) => info,
                None => {
                    let id = self.free_ids.pop().unwrap_or_else(|| {
                        self.next_id += 1;
                        self.next_id - 1
                    });
                    let info = NameInfo {
                        id,
                        agents: 0,
                        last_pick: None,
                    };
                    self.names.entry(name.into()).or_insert(info)
                }
            };
            info.agents += 1;
            self.pairs.insert(Pair {
                name: info.id,
                agent: Some(agent.clone()),
            });
        }
    }

    /// Forget `agent` under each of `names`; a name no agent has any more is dropped.
    fn remove_names<'n>(&mut self, agent: &AgentRef, names: impl Iterator<Item = &'n str>) {
        for name in names {
            let Some(info) = self.names.get_mut(name) else {
                continue;
            };
            self.pairs.remove(&Pair {
                name: info.id,
                agent: Some(agent.clone()),
            });
            info.agents = info.agents.saturating_sub(1);
            if info.agents == 0 {
                self.free_ids.push(info.id);
                self.names.remove(name);
            }
        }
    }

    /// Move the agent's names from `old` to `new`, touching only those that differ (so a name
    /// in both keeps its round-robin place).
    fn replace_names(&mut self, agent: &AgentRef, old: &Capabilities, new: &Capabilities) {
        let old = old.names();
        let new = new.names();
        self.add_names(agent, new.difference(&old).map(|n| &**n));
        self.remove_names(agent, old.difference(&new).map(|n| &**n));
    }

    fn add_owned(&mut self, owner: ConnId, agent: &AgentRef) {
        self.by_owner
            .entry(owner)
            .or_default()
            .insert(agent.clone());
        self.connected += 1;
    }

    fn remove_owned(&mut self, owner: ConnId, agent_id: &str) {
        if let Some(ids) = self.by_owner.get_mut(&owner) {
            if ids.remove(agent_id) {
                self.connected = self.connected.saturating_sub(1);
            }
            if ids.is_empty() {
                self.by_owner.remove(&owner);
            }
        }
    }

    /// The pairs of name `id` after `after` (from the first when `None`).
    fn pairs_after<'s>(
        &'s self,
        id: u32,
        after: Option<AgentRef>,
    ) -> impl Iterator<Item = &'s AgentRef> + 's {
        let from = Pair {
            name: id,
            agent: after,
        };
        self.pairs
            .range((Bound::Excluded(from), Bound::Unbounded))
            .take_while(move |pair| pair.name == id)
            .filter_map(|pair| pair.agent.as_ref())
    }
}

/// The registered agents, with an index by capability and by owner connection.
///
/// Its maps are keyed by [`AgentRef`], whose order is its id's, which never changes (only the
/// status and type beside it do): hence `clippy::mutable_key_type` is allowed where they are.
#[derive(Debug)]
pub(crate) struct AgentRegistry {
    max_agents: usize,
    agents: BTreeMap<AgentRef, Agent>,
    index: Indexes,
    last_epoch: u64,
}

impl AgentRegistry {
    /// Store at most `max_agents` agents from now on (a reload): the next new agent is
    /// checked against it; agents already stored are kept.
    pub(crate) fn set_max_agents(&mut self, max_agents: usize) {
        self.max_agents = max_agents;
    }

    /// An empty registry that stores at most `max_agents` agents.
    pub(crate) fn new(max_agents: usize) -> Self {
        AgentRegistry {
            max_agents,
            agents: BTreeMap::new(),
            index: Indexes::default(),
            last_epoch: 0,
        }
    }

    /// Whether `owner` may register `agent_id`, and what it would do (see the module docs).
    pub(crate) fn admit(
        &self,
        agent_id: &str,
        owner: &Owner<'_>,
    ) -> Result<Admission<'_>, AgentError> {
        match self.agents.get(agent_id) {
            Some(existing) if existing.owner == Some(owner.conn) => Ok(Admission::Replace),
            Some(existing) if existing.status().is_connected() => Err(AgentError::Exists),
            Some(existing) if *existing.user_id != *owner.user_id => Err(AgentError::Exists),
            Some(existing) => Ok(Admission::TakeOver {
                from: &existing.account,
            }),
            None if self.agents.len() >= self.max_agents => Err(AgentError::LimitExceeded),
            None => Ok(Admission::New),
        }
    }

    /// Register, re-register or take over an agent for `owner`. The id defaults to
    /// `owner.client_id`. Refusals as [`AgentRegistry::admit`].
    ///
    /// - The owner's own agent: its type, name, capabilities and metadata are replaced;
    ///   `registeredAt` is kept.
    /// - An offline agent of the same user: taken over, replaced as above, `registeredAt` =
    ///   now, counted under `owner.account` from now on.
    ///
    /// In every success the agent is `online` (a busy one included), `clientId` is
    /// `owner.client_id` and `lastSeenAt` is `now_ms`.
    pub(crate) fn register(
        &mut self,
        owner: &Owner<'_>,
        mut reg: Registration,
        now_ms: u64,
    ) -> Result<&Agent, AgentError> {
        let agent_id = reg
            .agent_id
            .take()
            .unwrap_or_else(|| owner.client_id.to_owned());
        let replace = self.admit(&agent_id, owner)? == Admission::Replace;
        let handle = match self.agents.get_key_value(agent_id.as_str()) {
            Some((handle, existing)) => {
                let handle = handle.clone();
                if let Some(previous) = existing.owner {
                    self.index.remove_owned(previous, &agent_id);
                }
                self.index
                    .replace_names(&handle, &existing.capabilities, &reg.capabilities);
                handle
            }
            None => {
                let handle = AgentRef::new(&agent_id, AgentStatus::Online, reg.agent_type);
                let names = reg.capabilities.names();
                self.index.add_names(&handle, names.iter().map(|n| &**n));
                handle
            }
        };
        handle.set(AgentStatus::Online, reg.agent_type);
        self.index.add_owned(owner.conn, &handle);
        let registered_at = match self.agents.get(agent_id.as_str()) {
            Some(existing) if replace => existing.registered_at,
            _ => now_ms,
        };
        let agent = Agent {
            handle: handle.clone(),
            name: reg.name,
            capabilities: reg.capabilities,
            client_id: Some(owner.client_id.into()),
            registered_at,
            last_seen_at: now_ms,
            metadata: reg.metadata,
            owner: Some(owner.conn),
            user_id: owner.user_id.into(),
            account: owner.account.into(),
            offline_epoch: 0,
        };
        Ok(match self.agents.entry(handle) {
            Entry::Occupied(slot) => {
                let slot = slot.into_mut();
                *slot = agent;
                slot
            }
            Entry::Vacant(slot) => slot.insert(agent),
        })
    }

    /// Remove a stored record and everything that indexes it.
    fn remove(&mut self, agent_id: &str) -> Option<Agent> {
        let agent = self.agents.remove(agent_id)?;
        let names = agent.capabilities.names();
        self.index
            .remove_names(&agent.handle, names.iter().map(|n| &**n));
        if let Some(owner) = agent.owner {
            self.index.remove_owned(owner, agent_id);
        }
        Some(agent)
    }

    /// Remove an agent at its owner's request and return the removed record, as it was just
    /// before removal (status `online` or `busy`, `clientId` set).
    ///
    /// [`AgentError::NotFound`] for an unknown id; [`AgentError::Forbidden`] when it is
    /// offline or owned by another connection.
    pub(crate) fn unregister(&mut self, agent_id: &str, by: ConnId) -> Result<Agent, AgentError> {
        owned(&mut self.agents, agent_id, by)?;
        self.remove(agent_id).ok_or(AgentError::NotFound)
    }

    /// Record a heartbeat from the owner: `lastSeenAt` becomes `now_ms` and, when `status` is
    /// `Online` or `Busy`, the status changes to it. `Some(Offline)` is treated as `None`
    /// (an agent turns offline only when its connection closes). O(log n): no capability is
    /// touched.
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
            agent.handle.set_status(status);
        }
        Ok(agent)
    }

    /// The agents `filter` keeps whose id comes after `after` (from the first when `None`),
    /// sorted by `agentId`, lazily: taking k of them costs O(log n + k + the agents of that
    /// capability, or of the registry, passed over by the filter).
    #[allow(clippy::mutable_key_type)]
    pub(crate) fn list<'s>(
        &'s self,
        filter: Filter<'s>,
        after: Option<&str>,
    ) -> Box<dyn Iterator<Item = &'s Agent> + 's> {
        match filter.capability {
            Some(name) => {
                let Some(info) = self.index.names.get(name) else {
                    return Box::new(std::iter::empty());
                };
                let after = after.map(|id| AgentRef::new(id, AgentStatus::Offline, AgentType::Pi));
                let agents = &self.agents;
                Box::new(
                    self.index
                        .pairs_after(info.id, after)
                        .filter(move |agent| filter.keeps(agent))
                        .filter_map(move |agent| agents.get(agent.id())),
                )
            }
            None => {
                let from = after.map_or(Bound::Unbounded, Bound::Excluded);
                Box::new(
                    self.agents
                        .range::<str, _>((from, Bound::Unbounded))
                        .map(|(_, agent)| agent)
                        .filter(move |agent| filter.keeps(&agent.handle)),
                )
            }
        }
    }

    /// Every agent `filter` keeps, sorted by `agentId`.
    #[cfg(test)]
    pub(crate) fn query<'s>(
        &'s self,
        capability: Option<&'s str>,
        agent_type: Option<AgentType>,
        online_only: bool,
    ) -> Vec<&'s Agent> {
        let filter = Filter {
            capability,
            agent_type,
            online_only,
        };
        self.list(filter, None).collect()
    }

    /// The connection `owner` closed: each of its agents turns offline, with `clientId` null
    /// and `lastSeenAt` = `now_ms`, and enters a new offline epoch. Returns `(agentId, epoch)`
    /// for each, sorted by id; pass both to [`AgentRegistry::expire`] when the TTL runs out.
    /// Epochs are unique within the registry and increase with each offline transition.
    /// Costs O(its agents · log n); no capability is touched.
    pub(crate) fn owner_disconnected(&mut self, owner: ConnId, now_ms: u64) -> Vec<(String, u64)> {
        let Some(ids) = self.index.by_owner.remove(&owner) else {
            return Vec::new();
        };
        let mut gone = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(agent) = self.agents.get_mut(id.id()) else {
                continue;
            };
            self.last_epoch += 1;
            self.index.connected = self.index.connected.saturating_sub(1);
            agent.handle.set_status(AgentStatus::Offline);
            agent.client_id = None;
            agent.owner = None;
            agent.last_seen_at = now_ms;
            agent.offline_epoch = self.last_epoch;
            gone.push((id.id().to_owned(), self.last_epoch));
        }
        gone
    }

    /// The TTL of an offline period ran out: remove `agent_id` if it is still offline in
    /// `epoch` (not re-registered since, nor gone offline again later). Returns the removed
    /// record.
    pub(crate) fn expire(&mut self, agent_id: &str, epoch: u64) -> Option<Agent> {
        let expired = self
            .agents
            .get(agent_id)
            .is_some_and(|agent| agent.offline_epoch() == Some(epoch));
        if expired {
            self.remove(agent_id)
        } else {
            None
        }
    }

    /// `capability:NAME` routing: the next online, not busy agent with `capability` in
    /// round-robin order (see the module docs). Returns its owner connection and id. Costs
    /// O(log n + the agents with that capability passed over as busy or offline).
    pub(crate) fn pick_by_capability(&mut self, capability: &str) -> Option<(ConnId, &str)> {
        let info = self.index.names.get(capability)?;
        let ready = |agent: &&AgentRef| agent.status() == AgentStatus::Online;
        let last = info.last_pick.clone();
        let next = self
            .index
            .pairs_after(info.id, last)
            .find(ready)
            .or_else(|| self.index.pairs_after(info.id, None).find(ready))?
            .clone();
        if let Some(info) = self.index.names.get_mut(capability) {
            info.last_pick = Some(next.clone());
        }
        let agent = self.agents.get(next.id())?;
        Some((agent.owner?, agent.agent_id()))
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
#[allow(clippy::mutable_key_type)]
fn owned<'a>(
    agents: &'a mut BTreeMap<AgentRef, Agent>,
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

#[cfg(test)]
mod tests;
