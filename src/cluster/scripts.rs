//! The Lua scripts of the cluster: every check-and-set on shared state is one of these, run
//! atomically by Redis, and every event a change causes is published inside the script that
//! makes the change, so that membership changes and messages have one order: Redis's.
//!
//! Contract (the keys each script is given, under the cluster prefix `P`):
//! - session `P:s:{sid}` (HASH name, meta, owner, access, seq), its members `P:s:{sid}:m`
//!   (ZSET clientId by join sequence), their users and nodes `P:s:{sid}:u` (HASH clientId ->
//!   `userId-as-JSON NUL nodeId NUL usage-key`), the set of sessions `P:sessions`, a user's
//!   memberships `P:u:{usage-key}` (a counter), a node's memberships `P:n:{node}:m` (SET of
//!   `clientId NUL session-key`). A client id is a UUID and a node id a plain name, so the
//!   first NUL of an entry ends it, whatever bytes a session id or a user id holds; the
//!   session HASH keeps its id (`sid`), and as JSON (`sidj`) for the events the sweep
//!   publishes. A session's channel has the name of its HASH.
//!   the nodes `P:nodes` (ZSET nodeId by last heartbeat, Redis `TIME` in ms), the epoch
//!   `P:epoch`, the node counter `P:nodeseq`, and the last time any node reached Redis,
//!   `P:clock`.
//! - No script merges JSON (Redis's cjson rewrites `[]` as `{}`): what is stored or published
//!   was written by the gateway, and scripts only copy it.
//! - A script that refuses returns `{"err", WORD}`; the words are [`Refused`]'s.
//! - Each script touches a bounded number of keys: the sweep of a dead node takes at most
//!   `batch` memberships per call and is called again until it returns 0.

/// Create a session (or join it when it exists and the mode is `create`) or join one.
///
/// KEYS: session, members, users, sessions set, the user's counter, the node's set.
/// ARGV: mode (`create` | `join`), sid, cid, uid (as JSON), node, max_clients,
/// max_sessions, max_user_memberships, name, meta, access, channel, event, usage key, sid
/// (as JSON), owner (as JSON; empty: the joiner, who creates it).
/// Returns `{status, name, owner, access, meta, cid1, uid1, cid2, uid2, ...}` with status
/// `created`, `joined` or `already`, the owner and user ids as JSON.
pub(crate) const JOIN: &str = r#"
local mode, sid, cid, uid, node = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local exists = redis.call('EXISTS', KEYS[1]) == 1
local status = 'joined'
if not exists then
  if mode == 'join' then return {'err', 'not_found'} end
  if redis.call('SCARD', KEYS[4]) >= tonumber(ARGV[7]) then return {'err', 'max_sessions'} end
  status = 'created'
end
if exists and redis.call('ZSCORE', KEYS[2], cid) then
  status = 'already'
else
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then return {'err', 'full'} end
  if tonumber(redis.call('GET', KEYS[5]) or '0') >= tonumber(ARGV[8]) then
    return {'err', 'user_limit'}
  end
  if not exists then
    local owner = (ARGV[16] ~= '' and ARGV[16]) or uid
    redis.call('HSET', KEYS[1], 'name', ARGV[9], 'meta', ARGV[10], 'owner', owner,
      'access', ARGV[11], 'seq', 0, 'sid', sid, 'sidj', ARGV[15])
    redis.call('SADD', KEYS[4], sid)
  end
  local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  redis.call('ZADD', KEYS[2], seq, cid)
  redis.call('HSET', KEYS[3], cid, uid .. '\0' .. node .. '\0' .. ARGV[14])
  redis.call('INCR', KEYS[5])
  redis.call('SADD', KEYS[6], cid .. '\0' .. KEYS[1])
  redis.call('PUBLISH', ARGV[12], ARGV[13])
end
local s = redis.call('HMGET', KEYS[1], 'name', 'owner', 'access', 'meta')
local reply = {status, s[1] or '', s[2] or '', s[3] or 'open', s[4] or ''}
local members = redis.call('ZRANGE', KEYS[2], 0, -1)
for _, m in ipairs(members) do
  local info = redis.call('HGET', KEYS[3], m) or ''
  local at = string.find(info, '\0', 1, true)
  reply[#reply + 1] = m
  reply[#reply + 1] = at and string.sub(info, 1, at - 1) or info
end
return reply
"#;

/// Leave a session; the last member out deletes it.
///
/// KEYS: session, members, users, sessions set, the user's counter, the node's set.
/// ARGV: sid, cid, channel, event.
/// Returns `left`, or `{"err", "not_found" | "not_member"}`.
pub(crate) const LEAVE: &str = r#"
local sid, cid = ARGV[1], ARGV[2]
if redis.call('EXISTS', KEYS[1]) == 0 then return {'err', 'not_found'} end
if not redis.call('ZSCORE', KEYS[2], cid) then return {'err', 'not_member'} end
redis.call('ZREM', KEYS[2], cid)
redis.call('HDEL', KEYS[3], cid)
if tonumber(redis.call('DECR', KEYS[5])) <= 0 then redis.call('DEL', KEYS[5]) end
redis.call('SREM', KEYS[6], cid .. '\0' .. KEYS[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  redis.call('SREM', KEYS[4], sid)
end
return 'left'
"#;

/// A node says it is alive; dead nodes are swept in batches.
///
/// KEYS: nodes, epoch, clock, node counter.
/// ARGV: node, epoch (empty on the first call), registering (`1` | `0`), heartbeat_ms,
/// dead_ms, prefix.
/// Returns `{state, epoch, nodes_alive, node_number, dead_node_or_empty}` where state is
/// `ok`, `fenced` (this node was declared dead) or `lost` (the epoch changed: Redis lost its
/// data). A dead node found is named so that the caller sweeps it with [`SWEEP`].
pub(crate) const HEARTBEAT: &str = r#"
local node, epoch, registering = ARGV[1], ARGV[2], ARGV[3] == '1'
local beat, dead = tonumber(ARGV[4]), tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = 'ok'
local current = redis.call('GET', KEYS[2])
if not current then
  -- A new epoch, even for a node that knew one: every other node then finds it changed
  -- and writes back too.
  current = string.format('%s-%s.%06d', node, t[1], tonumber(t[2]))
  if current == epoch then current = current .. '+' end
  redis.call('SET', KEYS[2], current)
  if epoch ~= '' then state = 'lost' end
elseif epoch ~= '' and current ~= epoch then
  state = 'lost'
end
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
if last > 0 and now - last > 2 * beat then
  -- Nobody reached Redis for a while (Redis paused, or every node cut off): that silence
  -- makes no node dead.
  local all = redis.call('ZRANGE', KEYS[1], 0, -1)
  for _, n in ipairs(all) do redis.call('ZADD', KEYS[1], now, n) end
end
redis.call('SET', KEYS[3], now)
if state == 'ok' and not registering then
  -- Dead once silent for `dead`, whether or not a sweep has begun (or ended): a node back
  -- from a pause of its own never takes up again memberships a sweep may be removing.
  local score = redis.call('ZSCORE', KEYS[1], node)
  if not score or tonumber(score) < now - dead then state = 'fenced' end
end
local number = 0
if state ~= 'fenced' then
  redis.call('ZADD', KEYS[1], now, node)
  if registering then number = redis.call('INCR', KEYS[4]) end
end
local alive = redis.call('ZCOUNT', KEYS[1], now - dead, '+inf')
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - dead), 'LIMIT', 0, 1)
return {state, current, alive, number, gone[1] or ''}
"#;

/// Remove up to `batch` memberships of a dead node, publishing `left` for each; the node is
/// forgotten when none are left.
///
/// KEYS: nodes, the dead node's set.
/// ARGV: dead node, batch, prefix, then the event's pieces: each membership's event is
/// `ARGV[4] .. sid-json .. ARGV[5] .. cid .. ARGV[6] .. uid-json .. ARGV[7]`.
/// Returns how many memberships are left to sweep.
pub(crate) const SWEEP: &str = r#"
local dead, batch, p = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local entries = redis.call('SRANDMEMBER', KEYS[2], batch)
for _, entry in ipairs(entries) do
  local at = string.find(entry, '\0', 1, true)
  local cid, skey = string.sub(entry, 1, at - 1), string.sub(entry, at + 1)
  local info = redis.call('HGET', skey .. ':u', cid)
  redis.call('SREM', KEYS[2], entry)
  if info then
    local a = string.find(info, '\0', 1, true)
    local b = string.find(info, '\0', a + 1, true)
    local uidj, ukey = string.sub(info, 1, a - 1), string.sub(info, b + 1)
    local sidj = redis.call('HGET', skey, 'sidj') or '""'
    local sid = redis.call('HGET', skey, 'sid') or ''
    redis.call('ZREM', skey .. ':m', cid)
    redis.call('HDEL', skey .. ':u', cid)
    local counter = p .. ':u:' .. ukey
    if tonumber(redis.call('DECR', counter)) <= 0 then redis.call('DEL', counter) end
    redis.call('PUBLISH', skey, ARGV[4] .. sidj .. ARGV[5] .. cid .. ARGV[6] .. uidj .. ARGV[7])
    if redis.call('ZCARD', skey .. ':m') == 0 then
      redis.call('DEL', skey, skey .. ':m', skey .. ':u')
      redis.call('SREM', p .. ':sessions', sid)
    end
  end
end
local left = redis.call('SCARD', KEYS[2])
if left == 0 then redis.call('ZREM', KEYS[1], dead) end
return left
"#;

/// Read a session's members and mark that point on its channel, so that a node which may
/// have missed some of the channel's events (its subscription was lost a while) takes up the
/// membership exactly there.
///
/// KEYS: members, users. ARGV: channel, event.
/// Returns `{cid1, uid1, cid2, uid2, ...}` in join order, the user ids as JSON.
pub(crate) const SYNC: &str = r#"
local reply = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local info = redis.call('HGET', KEYS[2], m) or ''
  local at = string.find(info, '\0', 1, true)
  reply[#reply + 1] = m
  reply[#reply + 1] = at and string.sub(info, 1, at - 1) or info
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return reply
"#;

/// Every script, in the order of their indexes.
pub(crate) const ALL: [&str; 5] = [JOIN, LEAVE, HEARTBEAT, SWEEP, SYNC];
/// The index of [`JOIN`] in [`ALL`].
pub(crate) const JOIN_INDEX: usize = 0;
/// The index of [`LEAVE`] in [`ALL`].
pub(crate) const LEAVE_INDEX: usize = 1;
/// The index of [`HEARTBEAT`] in [`ALL`].
pub(crate) const HEARTBEAT_INDEX: usize = 2;
/// The index of [`SWEEP`] in [`ALL`].
pub(crate) const SWEEP_INDEX: usize = 3;
/// The index of [`SYNC`] in [`ALL`].
pub(crate) const SYNC_INDEX: usize = 4;

/// A refusal word returned by a script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The session does not exist.
    NotFound,
    /// `max_sessions` reached.
    MaxSessions,
    /// `max_clients_per_session` reached.
    Full,
    /// `max_memberships_per_user` reached.
    UserLimit,
    /// The client is not a member.
    NotMember,
}

impl Refused {
    /// The refusal a script's `{"err", WORD}` names.
    pub(crate) fn from_word(word: &[u8]) -> Option<Refused> {
        Some(match word {
            b"not_found" => Refused::NotFound,
            b"max_sessions" => Refused::MaxSessions,
            b"full" => Refused::Full,
            b"user_limit" => Refused::UserLimit,
            b"not_member" => Refused::NotMember,
            _ => return None,
        })
    }
}
