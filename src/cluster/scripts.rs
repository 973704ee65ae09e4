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
//!   `P:clock`; the client map `P:c:{cid}` (`nodeId NUL userId`) of authenticated clients
//!   and each node's clients `P:n:{node}:c`.
//! - Per-user counts kept per node ([`USAGE`]): a user's authenticated connections
//!   `P:uc:{usage-key}` and its pending route requests `P:ur:{usage-key}` (HASHes nodeId ->
//!   count, the sum being the cluster's), and the usage keys a node counts under
//!   `P:n:{node}:u` (SET), so that the sweep of a dead node removes its fields.
//! - No script merges JSON (Redis's cjson rewrites `[]` as `{}`): what is stored or published
//!   was written by the gateway, and scripts only copy it.
//! - A script that refuses returns `{"err", WORD}`; the words are [`Refused`]'s.
//! - Each script touches a bounded number of keys: the sweep of a dead node takes at most
//!   `batch` memberships per call and is called again until it returns 0.

/// Create a session (or join it when it exists and the mode is `create`) or join one.
///
/// KEYS: session, members, users, sessions set, the user's counter, the node's set.
/// ARGV: mode (`create` | `join`), sid, cid, uid (as JSON), node, max_clients,
/// max_sessions, max_user_memberships, name, meta, access, channel, the event (without its
/// end: the script adds the change's number and `}`), usage key, sid (as JSON), admin
/// (`1` | `0`), owner (as JSON; empty: the joiner, who creates it), then for a new private
/// session its `allowUsers` (as JSON).
/// A private session (`access` = `private`) admits its owner, its `allowUsers` (SET
/// `P:s:{sid}:a`) and `admin`s (kept in `P:s:{sid}:adm` while members); to anyone else it
/// does not exist (`not_found`, or `taken` for a create).
/// Returns `{status, name, owner, access, meta, seq, cid1, uid1, cid2, uid2, ...}` with status
/// `created`, `joined` or `already`, the owner and user ids as JSON, and `seq` the number of
/// the session's last membership change (every join, leave and sweep counts one).
pub(crate) const JOIN: &str = r#"
local mode, sid, cid, uid, node = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local exists = redis.call('EXISTS', KEYS[1]) == 1
local status = 'joined'
if exists and redis.call('HGET', KEYS[1], 'access') == 'private' and ARGV[16] ~= '1'
    and redis.call('HGET', KEYS[1], 'owner') ~= uid
    and redis.call('SISMEMBER', KEYS[1] .. ':a', uid) == 0 then
  return {'err', (mode == 'create' and 'taken') or 'not_found'}
end
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
    local owner = (ARGV[17] ~= '' and ARGV[17]) or uid
    redis.call('HSET', KEYS[1], 'name', ARGV[9], 'meta', ARGV[10], 'owner', owner,
      'access', ARGV[11], 'seq', 0, 'sid', sid, 'sidj', ARGV[15])
    redis.call('SADD', KEYS[4], sid)
    for i = 18, #ARGV do redis.call('SADD', KEYS[1] .. ':a', ARGV[i]) end
  end
  if ARGV[16] == '1' then redis.call('SADD', KEYS[1] .. ':adm', cid) end
  local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  redis.call('ZADD', KEYS[2], seq, cid)
  redis.call('HSET', KEYS[3], cid, uid .. '\0' .. node .. '\0' .. ARGV[14])
  redis.call('INCR', KEYS[5])
  redis.call('SADD', KEYS[6], cid .. '\0' .. KEYS[1])
  redis.call('PUBLISH', ARGV[12], ARGV[13] .. seq .. '}')
  redis.call('INCR', string.sub(KEYS[4], 1, -10) .. ':version')
end
local s = redis.call('HMGET', KEYS[1], 'name', 'owner', 'access', 'meta', 'seq')
local reply = {status, s[1] or '', s[2] or '', s[3] or 'open', s[4] or '', s[5] or '0'}
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
/// ARGV: sid, cid, channel, the event (without its end, as in [`JOIN`]).
/// Returns `left`, or `{"err", "not_found" | "not_member"}`.
pub(crate) const LEAVE: &str = r#"
local sid, cid = ARGV[1], ARGV[2]
if redis.call('EXISTS', KEYS[1]) == 0 then return {'err', 'not_found'} end
if not redis.call('ZSCORE', KEYS[2], cid) then return {'err', 'not_member'} end
redis.call('ZREM', KEYS[2], cid)
redis.call('HDEL', KEYS[3], cid)
redis.call('SREM', KEYS[1] .. ':adm', cid)
if tonumber(redis.call('DECR', KEYS[5])) <= 0 then redis.call('DEL', KEYS[5]) end
redis.call('SREM', KEYS[6], cid .. '\0' .. KEYS[1])
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('PUBLISH', ARGV[3], ARGV[4] .. seq .. '}')
redis.call('INCR', string.sub(KEYS[4], 1, -10) .. ':version')
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[1] .. ':a', KEYS[1] .. ':adm')
  redis.call('SREM', KEYS[4], sid)
end
return 'left'
"#;

/// A node says it is alive; dead nodes are swept in batches.
///
/// KEYS: nodes, epoch, clock, node counter.
/// ARGV: node, epoch (empty on the first call), registering (`1` | `0`), heartbeat_ms,
/// dead_ms, prefix.
/// Returns `{state, epoch, nodes_alive, node_number, dead_node_or_empty, sessions, agents,
/// clients, version}` (the last four cluster-wide: `/health`'s counts and `stateVersion`,
/// which every change of sessions and agents counts in `P:version`) where state is
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
local counts = {redis.call('SCARD', ARGV[6] .. ':sessions'),
  redis.call('ZCARD', ARGV[6] .. ':agents'),
  tonumber(redis.call('GET', ARGV[6] .. ':clients') or '0'),
  tonumber(redis.call('GET', ARGV[6] .. ':version') or '0')}
return {state, current, alive, number, gone[1] or '', counts[1], counts[2], counts[3], counts[4]}
"#;

/// Remove up to `batch` memberships of a dead node, publishing `left` for each; the node is
/// forgotten when none are left.
///
/// KEYS: nodes, the dead node's memberships, the dead node's clients (their entries in the
/// client map go once its memberships are gone), the dead node's agents (offline once its
/// clients are gone; their TTL counts from then).
/// ARGV: dead node, batch, prefix, then the event's pieces: each membership's event is
/// `ARGV[4] .. sid-json .. ARGV[5] .. cid .. ARGV[6] .. uid-json .. ARGV[7] .. seq .. '}'`.
/// Once nothing is left, the node is forgotten and `{"e":"node_dead","n":NODE}` published on
/// `P:ctl` (node ids need no escaping), so that every node answers the routes it had sent
/// there. Returns how many entries are left to sweep.
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
    redis.call('SREM', skey .. ':adm', cid)
    local counter = p .. ':u:' .. ukey
    if tonumber(redis.call('DECR', counter)) <= 0 then redis.call('DEL', counter) end
    local seq = redis.call('HINCRBY', skey, 'seq', 1)
    redis.call('PUBLISH', skey,
      ARGV[4] .. sidj .. ARGV[5] .. cid .. ARGV[6] .. uidj .. ARGV[7] .. seq .. '}')
    redis.call('INCR', p .. ':version')
    if redis.call('ZCARD', skey .. ':m') == 0 then
      redis.call('DEL', skey, skey .. ':m', skey .. ':u', skey .. ':a', skey .. ':adm')
      redis.call('SREM', p .. ':sessions', sid)
    end
  end
end
local left = redis.call('SCARD', KEYS[2])
if left == 0 then
  local clients = redis.call('SRANDMEMBER', KEYS[3], batch)
  for _, cid in ipairs(clients) do
    redis.call('SREM', KEYS[3], cid)
    redis.call('DEL', p .. ':c:' .. cid)
    redis.call('DECR', p .. ':clients')
  end
  left = redis.call('SCARD', KEYS[3])
end
if left == 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  for _, aid in ipairs(redis.call('SRANDMEMBER', KEYS[4], batch)) do
    redis.call('SREM', KEYS[4], aid)
    redis.call('HSET', p .. ':a:{' .. aid .. '}', 'status', 'offline', 'cid', '', 'node', '',
      'seen', now)
    redis.call('ZADD', p .. ':offline', now, aid)
  end
  left = redis.call('SCARD', KEYS[4])
end
if left == 0 then
  local devices = p .. ':n:' .. dead .. ':d'
  for _, cid in ipairs(redis.call('SRANDMEMBER', devices, batch)) do
    redis.call('SREM', devices, cid)
    local z = redis.call('HGET', p .. ':dev:z', cid)
    if z then redis.call('ZREM', z, cid) end
    redis.call('ZREM', p .. ':dev:all', cid)
    redis.call('HDEL', p .. ':dev:r', cid)
    redis.call('HDEL', p .. ':dev:z', cid)
  end
  left = redis.call('SCARD', devices)
end
if left == 0 then
  -- The dead node's per-user counts (connections, pending routes).
  local usage = p .. ':n:' .. dead .. ':u'
  for _, ukey in ipairs(redis.call('SRANDMEMBER', usage, batch)) do
    redis.call('SREM', usage, ukey)
    redis.call('HDEL', p .. ':uc:' .. ukey, dead)
    redis.call('HDEL', p .. ':ur:' .. ukey, dead)
  end
  left = redis.call('SCARD', usage)
end
if left == 0 and redis.call('ZREM', KEYS[1], dead) == 1 then
  redis.call('PUBLISH', p .. ':ctl', '{"e":"node_dead","n":"' .. dead .. '"}')
end
return left
"#;

/// Record where an authenticated client is (or forget it, with an empty node).
///
/// KEYS: the client `P:c:{cid}`, the node's clients `P:n:{node}:c`, the count of clients
/// `P:clients`.
/// ARGV: cid, node (empty: forget), user id.
pub(crate) const CLIENT: &str = r#"
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  if redis.call('SREM', KEYS[2], ARGV[1]) == 1 then redis.call('DECR', KEYS[3]) end
else
  redis.call('SET', KEYS[1], ARGV[2] .. '\0' .. ARGV[3])
  if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then redis.call('INCR', KEYS[3]) end
end
return 1
"#;

/// Publish a message to the node of a client.
///
/// KEYS: the client `P:c:{cid}`.
/// ARGV: prefix, the message.
/// Returns 1 when the client is known, else 0.
pub(crate) const SEND_TO: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local node = string.sub(v, 1, string.find(v, '\0', 1, true) - 1)
redis.call('PUBLISH', ARGV[1] .. ':n:' .. node, ARGV[2])
return 1
"#;

/// Publish a route request on the node of its target client, when the requester may reach
/// it: `allowed` (the requester's node found it `admin`, or sharing a session with the
/// target), or the same user id.
///
/// The request counts toward `max_pending_routes_per_user` of the requester, as in
/// [`ROUTE_AGENT`].
///
/// KEYS: the target client `P:c:{cid}`, the requester's pending routes `P:ur:{usage-key}`,
/// its node's usage keys `P:n:{node}:u`.
/// ARGV: prefix, the requester's user id, allowed (`1` | `0`), the message, the requester's
/// node, its usage key, `max_pending_routes_per_user`.
/// Returns the target's node when published, `{"err", "user_limit"}`, else 0.
pub(crate) const ROUTE: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local at = string.find(v, '\0', 1, true)
local node, uid = string.sub(v, 1, at - 1), string.sub(v, at + 1)
if ARGV[3] ~= '1' and uid ~= ARGV[2] then return 0 end
local sum = 0
for _, n in ipairs(redis.call('HVALS', KEYS[2])) do sum = sum + tonumber(n) end
if sum >= tonumber(ARGV[7]) then return {'err', 'user_limit'} end
if redis.call('ZSCORE', ARGV[1] .. ':nodes', ARGV[5]) then
  redis.call('HINCRBY', KEYS[2], ARGV[5], 1)
  redis.call('SADD', KEYS[3], ARGV[6])
end
redis.call('PUBLISH', ARGV[1] .. ':n:' .. node, ARGV[4])
return node
"#;

/// Register an agent, or take one over: the rules of PROTOCOL sections 6 and 11, counted
/// cluster-wide.
///
/// KEYS: the agent `P:a:{aid}`, every agent `P:agents` (ZSET), the owner's counter
/// `P:ua:{usage-key}`, the node's agents `P:n:{node}:a`, the client map entry of the id
/// `P:c:{aid}`, the offline agents `P:offline` (ZSET by the time they went offline).
/// ARGV: aid, cid, node, uid, usage key, type, name, capabilities, metadata, now (ms),
/// max_agents, max_agents_per_user, prefix, aid as JSON, then the capability names.
/// Returns `{"registered", registeredAt}` or `{"err", "exists" | "max_agents" |
/// "user_limit"}`.
pub(crate) const AGENT_REGISTER: &str = r#"
local aid, cid, node, uid, ukey, p = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[13]
if aid ~= cid and redis.call('EXISTS', KEYS[5]) == 1 then return {'err', 'exists'} end
local old = redis.call('HMGET', KEYS[1], 'status', 'cid', 'uid', 'ukey', 'node', 'reg')
local reg = ARGV[10]
local full = function(key) return tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[12]) end
if old[1] then
  if old[1] ~= 'offline' and old[2] ~= cid then return {'err', 'exists'} end
  if old[1] == 'offline' and old[3] ~= uid then return {'err', 'exists'} end
  if old[4] ~= ukey then
    if full(KEYS[3]) then return {'err', 'user_limit'} end
    local from = p .. ':ua:' .. old[4]
    if tonumber(redis.call('DECR', from)) <= 0 then redis.call('DEL', from) end
    redis.call('INCR', KEYS[3])
  end
  if old[2] == cid then reg = old[6] end
  if old[5] ~= '' then redis.call('SREM', p .. ':n:' .. old[5] .. ':a', aid) end
  for _, n in ipairs(redis.call('SMEMBERS', KEYS[1] .. ':n')) do
    redis.call('ZREM', p .. ':cap:' .. n, aid)
  end
  redis.call('DEL', KEYS[1] .. ':n')
  redis.call('ZREM', KEYS[6], aid)
else
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[11]) then return {'err', 'max_agents'} end
  if full(KEYS[3]) then return {'err', 'user_limit'} end
  redis.call('INCR', KEYS[3])
  redis.call('ZADD', KEYS[2], 0, aid)
end
redis.call('HSET', KEYS[1], 'type', ARGV[6], 'name', ARGV[7], 'caps', ARGV[8], 'meta', ARGV[9],
  'status', 'online', 'cid', cid, 'uid', uid, 'ukey', ukey, 'node', node, 'reg', reg,
  'seen', ARGV[10], 'aidj', ARGV[14])
for i = 15, #ARGV do
  redis.call('SADD', KEYS[1] .. ':n', ARGV[i])
  redis.call('ZADD', p .. ':cap:' .. ARGV[i], 0, aid)
end
redis.call('SADD', KEYS[4], aid)
redis.call('INCR', p .. ':version')
return {'registered', reg}
"#;

/// Remove an agent (`agent_unregister` by its owner), or the agents whose TTL ran out.
///
/// KEYS: every agent `P:agents`, the offline agents `P:offline`.
/// ARGV: mode (`unregister` | `expire`), prefix, then for `unregister`: aid, cid; for
/// `expire`: agent_ttl_ms, batch.
/// Returns for `unregister` `{"unregistered", type, name, caps, meta, status, reg, seen}` or
/// `{"err", "not_found" | "forbidden"}`; for `expire` how many were removed.
pub(crate) const AGENT_REMOVE: &str = r#"
local p = ARGV[2]
local remove = function(aid)
  local key = p .. ':a:{' .. aid .. '}'
  local h = redis.call('HMGET', key, 'ukey', 'node')
  for _, n in ipairs(redis.call('SMEMBERS', key .. ':n')) do
    redis.call('ZREM', p .. ':cap:' .. n, aid)
  end
  redis.call('DEL', key, key .. ':n')
  redis.call('ZREM', KEYS[1], aid)
  redis.call('ZREM', KEYS[2], aid)
  if h[2] and h[2] ~= '' then redis.call('SREM', p .. ':n:' .. h[2] .. ':a', aid) end
  if h[1] then
    local counter = p .. ':ua:' .. h[1]
    if tonumber(redis.call('DECR', counter)) <= 0 then redis.call('DEL', counter) end
  end
  redis.call('INCR', p .. ':version')
end
if ARGV[1] == 'unregister' then
  local key = p .. ':a:{' .. ARGV[3] .. '}'
  local h = redis.call('HMGET', key, 'type', 'name', 'caps', 'meta', 'status', 'reg', 'seen', 'cid')
  if not h[1] then return {'err', 'not_found'} end
  if h[5] == 'offline' or h[8] ~= ARGV[4] then return {'err', 'forbidden'} end
  remove(ARGV[3])
  return {'unregistered', h[1], h[2], h[3], h[4], h[5], h[6], h[7]}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]), 'LIMIT', 0,
  tonumber(ARGV[4]))
for _, aid in ipairs(due) do remove(aid) end
return #due
"#;

/// `agent_heartbeat`: the owner sets the status (`online` | `busy`, or keeps it) and
/// `lastSeenAt`.
///
/// KEYS: the agent `P:a:{aid}`.
/// ARGV: cid, status (empty: kept), now (ms), prefix.
/// Returns `{"updated", type, name, caps, meta, status, reg, seen}` or `{"err",
/// "not_found" | "forbidden"}`.
pub(crate) const AGENT_STATUS: &str = r#"
local h = redis.call('HMGET', KEYS[1], 'status', 'cid')
if not h[1] then return {'err', 'not_found'} end
if h[1] == 'offline' or h[2] ~= ARGV[1] then return {'err', 'forbidden'} end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'status', ARGV[2]) end
redis.call('HSET', KEYS[1], 'seen', ARGV[3])
redis.call('INCR', ARGV[4] .. ':version')
local r = redis.call('HMGET', KEYS[1], 'type', 'name', 'caps', 'meta', 'status', 'reg', 'seen')
return {'updated', r[1], r[2], r[3], r[4], r[5], r[6], r[7]}
"#;

/// The agents of a client that closed go offline (their TTL counts from now).
///
/// KEYS: the node's agents `P:n:{node}:a`, the offline agents `P:offline`.
/// ARGV: cid, now (ms), prefix, then the agent ids.
/// Returns how many went offline.
pub(crate) const AGENT_OFFLINE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = 0
for i = 4, #ARGV do
  local key = ARGV[3] .. ':a:{' .. ARGV[i] .. '}'
  if redis.call('HGET', key, 'cid') == ARGV[1] then
    redis.call('HSET', key, 'status', 'offline', 'cid', '', 'node', '', 'seen', ARGV[2])
    redis.call('SREM', KEYS[1], ARGV[i])
    redis.call('ZADD', KEYS[2], now, ARGV[i])
    redis.call('INCR', ARGV[3] .. ':version')
    gone = gone + 1
  end
end
return gone
"#;

/// One page of agents, in id order, after a cursor, with the filters of `agent_query`.
///
/// KEYS: the index to page through: every agent `P:agents`, or one capability's
/// `P:cap:{name}`.
/// ARGV: after (empty: from the start), limit, online only (`1` | `0`), type (empty: any),
/// prefix.
/// Returns `{more, then for each agent: aid, type, name, caps, meta, status, cid, uid, reg,
/// seen}`: at most `limit` agents; `more` is `1` when agents may follow the last one (at most
/// 1 000 ids are looked at per page, so a page may end early, even empty, with `more`).
pub(crate) const AGENT_QUERY: &str = r#"
local min = (ARGV[1] == '' and '-') or ('(' .. ARGV[1])
local limit, online, kind, p = tonumber(ARGV[2]), ARGV[3] == '1', ARGV[4], ARGV[5]
local reply, count, looked = {'0'}, 0, 0
while true do
  local ids = redis.call('ZRANGEBYLEX', KEYS[1], min, '+', 'LIMIT', 0, 100)
  if #ids == 0 then return reply end
  for _, aid in ipairs(ids) do
    looked = looked + 1
    local r = redis.call('HMGET', p .. ':a:{' .. aid .. '}', 'type', 'name', 'caps', 'meta',
      'status', 'cid', 'uid', 'reg', 'seen')
    if r[1] and (not online or r[5] ~= 'offline') and (kind == '' or r[1] == kind) then
      if count == limit then reply[1] = '1' return reply end
      count = count + 1
      reply[#reply + 1] = aid
      for j = 1, 9 do reply[#reply + 1] = r[j] end
    end
    min = '(' .. aid
    if looked >= 1000 then reply[1] = '1' return reply end
  end
end
"#;

/// Publish a route request on the node of an agent's owner: the agent by id (online or
/// busy), or the next online agent with a capability, round-robin over the cluster.
///
/// A request published counts toward `max_pending_routes_per_user` of the requester: one
/// more in its node's field of `P:ur:{usage-key}` (none for a node not among the nodes, as
/// in [`USAGE`]), unless the fields' sum has reached the bound (then nothing is published);
/// the requester's node gives it back when the request is answered or dropped.
///
/// KEYS: for `agent`: the agent `P:a:{aid}`; for `capability`: the capability's agents
/// `P:cap:{name}` and its round-robin counter `P:rr:{name}`; then the requester's pending
/// routes `P:ur:{usage-key}` and its node's usage keys `P:n:{node}:u`.
/// ARGV: mode (`agent` | `capability`), prefix, the event's start, its rest: the event is
/// `start .. cid .. '","a":' .. aid-as-JSON .. rest`; then the requester's node, its usage
/// key, `max_pending_routes_per_user`.
/// Returns `{agent id, node}` when published, `{"err", "user_limit"}`, else 0.
pub(crate) const ROUTE_AGENT: &str = r#"
local p = ARGV[2]
local over = function()
  local sum = 0
  for _, n in ipairs(redis.call('HVALS', KEYS[#KEYS - 1])) do sum = sum + tonumber(n) end
  return sum >= tonumber(ARGV[7])
end
local publish = function(aid, h)
  if redis.call('ZSCORE', p .. ':nodes', ARGV[5]) then
    redis.call('HINCRBY', KEYS[#KEYS - 1], ARGV[5], 1)
    redis.call('SADD', KEYS[#KEYS], ARGV[6])
  end
  redis.call('PUBLISH', p .. ':n:' .. h[2], ARGV[3] .. h[1] .. '","a":' .. h[3] .. ARGV[4])
  return {aid, h[2]}
end
if ARGV[1] == 'agent' then
  local h = redis.call('HMGET', KEYS[1], 'cid', 'node', 'aidj', 'status')
  if not h[4] or h[4] == 'offline' then return 0 end
  if over() then return {'err', 'user_limit'} end
  return publish(string.sub(KEYS[1], #p + 5, -2), h)
end
local online = {}
for _, aid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('HGET', p .. ':a:{' .. aid .. '}', 'status') == 'online' then
    online[#online + 1] = aid
  end
end
if #online == 0 then return 0 end
if over() then return {'err', 'user_limit'} end
local n = redis.call('INCR', KEYS[2])
local aid = online[(n - 1) % #online + 1]
return publish(aid, redis.call('HMGET', p .. ':a:{' .. aid .. '}', 'cid', 'node', 'aidj'))
"#;

/// What `session_patch` reads before it merges the metadata in Rust.
///
/// KEYS: session.
/// ARGV: uid (as JSON), admin (`1` | `0`).
/// Returns `{version, meta, owner, access, allowBytes}` (`allowBytes`: what `allowUsers`
/// counts toward the metadata limit), or `{"err", "not_found"}` (a private session is not
/// found by those it does not admit).
pub(crate) const SESSION_READ: &str = r#"
local h = redis.call('HMGET', KEYS[1], 'ver', 'meta', 'owner', 'access')
if not h[3] then return {'err', 'not_found'} end
if h[4] == 'private' and ARGV[2] ~= '1' and h[3] ~= ARGV[1]
    and redis.call('SISMEMBER', KEYS[1] .. ':a', ARGV[1]) == 0 then
  return {'err', 'not_found'}
end
local bytes = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1] .. ':a')) do bytes = bytes + #id + 1 end
return {h[1] or '0', h[2] or '', h[3], h[4] or 'open', tostring(bytes)}
"#;

/// `session_patch`: the merged metadata written if nobody changed it since it was read (a
/// compare-and-set on its version), a new `access` or `allowUsers` (owner or `admin` only),
/// the members a private session no longer admits removed, the notice published.
///
/// KEYS: session, members, users, sessions set.
/// ARGV: cid, uid (as JSON), admin (`1` | `0`), the version read (empty: the metadata is not
/// changed), the merged metadata, access (empty: kept), replace allowUsers (`1` | `0`), the
/// patched event, prefix, the removed event's start, sid, then the new allowUsers (as JSON).
/// Returns `{"patched"}`, `{"retry"}` (the metadata changed since it was read), or `{"err",
/// "not_found" | "not_owner" | "not_member"}`.
pub(crate) const SESSION_PATCH: &str = r#"
local skey, cid, uid, admin = KEYS[1], ARGV[1], ARGV[2], ARGV[3] == '1'
local h = redis.call('HMGET', skey, 'owner', 'access', 'ver')
local owner, access = h[1], h[2] or 'open'
if not owner then return {'err', 'not_found'} end
if access == 'private' and not admin and owner ~= uid
    and redis.call('SISMEMBER', skey .. ':a', uid) == 0 then
  return {'err', 'not_found'}
end
local changes_access = ARGV[6] ~= '' or ARGV[7] == '1'
if changes_access and not admin and owner ~= uid then return {'err', 'not_owner'} end
if ARGV[4] ~= '' then
  if not redis.call('ZSCORE', KEYS[2], cid) then return {'err', 'not_member'} end
  if (h[3] or '0') ~= ARGV[4] then return {'retry'} end
  redis.call('HSET', skey, 'meta', ARGV[5])
end
redis.call('HINCRBY', skey, 'ver', 1)
if ARGV[6] ~= '' then
  redis.call('HSET', skey, 'access', ARGV[6])
  access = ARGV[6]
end
if ARGV[7] == '1' then
  redis.call('DEL', skey .. ':a')
  for i = 12, #ARGV do redis.call('SADD', skey .. ':a', ARGV[i]) end
end
if changes_access and access == 'private' then
  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    local info = redis.call('HGET', KEYS[3], m) or ''
    local a = string.find(info, '\0', 1, true)
    local b = a and string.find(info, '\0', a + 1, true)
    local muid = a and string.sub(info, 1, a - 1) or ''
    if muid ~= owner and redis.call('SISMEMBER', skey .. ':a', muid) == 0
        and redis.call('SISMEMBER', skey .. ':adm', m) == 0 then
      local node, ukey = string.sub(info, a + 1, b - 1), string.sub(info, b + 1)
      redis.call('ZREM', KEYS[2], m)
      redis.call('HDEL', KEYS[3], m)
      local counter = ARGV[9] .. ':u:' .. ukey
      if tonumber(redis.call('DECR', counter)) <= 0 then redis.call('DEL', counter) end
      redis.call('SREM', ARGV[9] .. ':n:' .. node .. ':m', m .. '\0' .. skey)
      local seq = redis.call('HINCRBY', skey, 'seq', 1)
      redis.call('PUBLISH', skey, ARGV[10] .. m .. '","q":' .. seq .. '}')
    end
  end
end
redis.call('PUBLISH', skey, ARGV[8])
redis.call('INCR', ARGV[9] .. ':version')
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('DEL', skey, KEYS[2], KEYS[3], skey .. ':a', skey .. ':adm')
  redis.call('SREM', KEYS[4], ARGV[11])
end
return {'patched'}
"#;

/// The devices of `connect` (`hello_ok.presence`, `presence_query`), cluster-wide: each in
/// its user's ZSET `P:dev:u:{user}` and in `P:dev:all` (for `admin`) by a cluster-wide
/// `connect` order (`P:dev:seq`), its entry `deviceId NUL role NUL connectedAt` in the HASH
/// `P:dev:r`, its user's ZSET's key in `P:dev:z`, and in its node's SET `P:n:{node}:d`.
///
/// KEYS: the ZSET to page (the viewer's user's, or `P:dev:all`), the entries `P:dev:r`.
/// ARGV: mode (`set` | `page` | `del`), prefix, cid, then for `set`: the device's user's ZSET
/// key, its entry, its node, the page's limit; for `page`: from (a place, inclusive), limit;
/// for `del`: nothing more.
/// Returns for `set` and `page` `{place1, entry1, cid1, ...}` in `connect` order: at most
/// `limit` + 1 devices (`set` leaves out the device it set); for `del` 1.
pub(crate) const DEVICES: &str = r#"
local mode, p, cid = ARGV[1], ARGV[2], ARGV[3]
local forget = function()
  local z = redis.call('HGET', p .. ':dev:z', cid)
  if z then redis.call('ZREM', z, cid) end
  redis.call('ZREM', p .. ':dev:all', cid)
  redis.call('HDEL', p .. ':dev:r', cid)
  redis.call('HDEL', p .. ':dev:z', cid)
end
if mode == 'del' then
  forget()
  return 1
end
local from, limit = '-inf', 0
if mode == 'set' then
  forget()
  local seq = redis.call('INCR', p .. ':dev:seq')
  redis.call('ZADD', ARGV[4], seq, cid)
  redis.call('ZADD', p .. ':dev:all', seq, cid)
  redis.call('HSET', p .. ':dev:r', cid, ARGV[5])
  redis.call('HSET', p .. ':dev:z', cid, ARGV[4])
  redis.call('SADD', p .. ':n:' .. ARGV[6] .. ':d', cid)
  limit = tonumber(ARGV[7]) + 2
else
  from, limit = ARGV[4], tonumber(ARGV[5]) + 1
end
local reply = {}
local found = redis.call('ZRANGEBYSCORE', KEYS[1], from, '+inf', 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #found, 2 do
  if not (mode == 'set' and found[i] == cid) then
    reply[#reply + 1] = found[i + 1]
    reply[#reply + 1] = redis.call('HGET', KEYS[2], found[i]) or ''
    reply[#reply + 1] = found[i]
  end
end
return reply
"#;

/// A session's members now, with the number of its last membership change: what a node
/// that may have missed changes (its subscriber was reconnected) sets its mirror to.
///
/// KEYS: session, members, users.
/// Returns `{seq, cid1, uid1, ...}` (user ids as JSON), or `{}` when the session is gone.
pub(crate) const MEMBERS: &str = r#"
local seq = redis.call('HGET', KEYS[1], 'seq')
if not seq then return {} end
local reply = {seq}
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local info = redis.call('HGET', KEYS[3], m) or ''
  local at = string.find(info, '\0', 1, true)
  reply[#reply + 1] = m
  reply[#reply + 1] = at and string.sub(info, 1, at - 1) or info
end
return reply
"#;

/// Ask for an `admin_kick` of a client on another node: on the node the client map names,
/// or, for a client not in it (an unauthenticated one), on every live node but the asker.
///
/// KEYS: the client `P:c:{cid}`, the nodes `P:nodes`.
/// ARGV: prefix, the asking node, node_dead_ms, the request event.
/// Returns how many nodes got the request (PUBLISH counts the subscribers that did, so a
/// node whose process is gone is not waited for): 0 when none will answer.
pub(crate) const ADMIN_KICK: &str = r#"
local p, me = ARGV[1], ARGV[2]
local v = redis.call('GET', KEYS[1])
if v then
  local node = string.sub(v, 1, string.find(v, '\0', 1, true) - 1)
  if node == me then return 0 end
  return redis.call('PUBLISH', p .. ':n:' .. node, ARGV[4])
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local asked = 0
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], now - tonumber(ARGV[3]), '+inf')) do
  if n ~= me then asked = asked + redis.call('PUBLISH', p .. ':n:' .. n, ARGV[4]) end
end
return asked
"#;

/// Ask the node whose page of `admin_clients` comes next: the live nodes in byte order of
/// their ids, from the cursor's node (at its slot) or, with `after`, the first one past it;
/// a node that gets no request (its process is gone) is passed over. The asking node's own
/// page is not asked for: the caller makes it.
///
/// KEYS: the nodes `P:nodes`.
/// ARGV: prefix, the asking node, node_dead_ms, the cursor's node (empty: the first),
/// after (`1` | `0`), the cursor's slot, the request event without its end (the script adds
/// the slot and `}`).
/// Returns `{node, slot, more}` (`more` = `1` when a live node follows it), or `{}` when no
/// node is left.
pub(crate) const ADMIN_PAGE: &str = r#"
local p, me, from, after = ARGV[1], ARGV[2], ARGV[4], ARGV[5] == '1'
local before = function(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[3]), '+inf')
table.sort(live, before)
local chosen = nil
for _, n in ipairs(live) do
  if chosen then return {chosen[1], chosen[2], '1'} end
  if before(from, n) or (n == from and not after) then
    local slot = (n == from and ARGV[6]) or '0'
    if n == me or redis.call('PUBLISH', p .. ':n:' .. n, ARGV[7] .. slot .. '}') > 0 then
      chosen = {n, slot}
    end
  end
end
if chosen then return {chosen[1], chosen[2], '0'} end
return {}
"#;

/// Per-user counts of connections and pending route requests, cluster-wide: each node keeps
/// its own field in the user's HASH, so that the sum is the cluster's, a dead node's sweep
/// removes its fields and a node writes its own again after Redis lost its data.
///
/// A node that is not among the nodes (`P:nodes`: never registered, or swept) writes
/// nothing and gets -1: what it wrote after its sweep would never be swept.
///
/// Modes (ARGV: mode, node, prefix, then the mode's own):
/// - `take`: one more for this node unless the sum has reached the bound. KEYS: the counts
///   (`P:uc:{usage-key}` or `P:ur:{usage-key}`), the node's usage keys `P:n:{node}:u`.
///   ARGV: usage key, bound. Returns 1 when taken, else 0.
/// - `add`: this node's field changed by `n` (negative: given back), removed at 0. KEYS: as
///   for `take`, then the other counts of the same key (the key leaves the node's set once
///   neither has a field of the node). ARGV: usage key, n. Returns 1.
/// - `clear`: every field of this node removed (before it writes its counts again). KEYS:
///   the node's usage keys. Returns 1.
/// - `set`: this node's fields set. KEYS: the node's usage keys. ARGV: for each usage key:
///   the key, its connections, its pending routes. Returns 1.
pub(crate) const USAGE: &str = r#"
local mode, node, p = ARGV[1], ARGV[2], ARGV[3]
if not redis.call('ZSCORE', p .. ':nodes', node) then return -1 end
if mode == 'take' then
  local sum = 0
  for _, n in ipairs(redis.call('HVALS', KEYS[1])) do sum = sum + tonumber(n) end
  if sum >= tonumber(ARGV[5]) then return 0 end
  redis.call('HINCRBY', KEYS[1], node, 1)
  redis.call('SADD', KEYS[2], ARGV[4])
  return 1
end
if mode == 'add' then
  if redis.call('HINCRBY', KEYS[1], node, tonumber(ARGV[5])) > 0 then
    redis.call('SADD', KEYS[2], ARGV[4])
  else
    redis.call('HDEL', KEYS[1], node)
    if redis.call('HEXISTS', KEYS[3], node) == 0 then redis.call('SREM', KEYS[2], ARGV[4]) end
  end
  return 1
end
if mode == 'clear' then
  for _, ukey in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    redis.call('HDEL', p .. ':uc:' .. ukey, node)
    redis.call('HDEL', p .. ':ur:' .. ukey, node)
  end
  redis.call('DEL', KEYS[1])
  return 1
end
for i = 4, #ARGV - 2, 3 do
  local ukey, counts = ARGV[i], {ARGV[i + 1], ARGV[i + 2]}
  for j, kind in ipairs({':uc:', ':ur:'}) do
    if tonumber(counts[j]) > 0 then
      redis.call('HSET', p .. kind .. ukey, node, counts[j])
    else
      redis.call('HDEL', p .. kind .. ukey, node)
    end
  end
  redis.call('SADD', KEYS[1], ukey)
end
return 1
"#;

/// Every script, in the order of their indexes.
pub(crate) const ALL: [&str; 20] = [
    JOIN,
    LEAVE,
    HEARTBEAT,
    SWEEP,
    CLIENT,
    SEND_TO,
    MEMBERS,
    ROUTE,
    AGENT_REGISTER,
    AGENT_REMOVE,
    AGENT_STATUS,
    AGENT_OFFLINE,
    AGENT_QUERY,
    ROUTE_AGENT,
    SESSION_READ,
    SESSION_PATCH,
    DEVICES,
    ADMIN_KICK,
    ADMIN_PAGE,
    USAGE,
];
/// The index of [`JOIN`] in [`ALL`].
pub(crate) const JOIN_INDEX: usize = 0;
/// The index of [`LEAVE`] in [`ALL`].
pub(crate) const LEAVE_INDEX: usize = 1;
/// The index of [`HEARTBEAT`] in [`ALL`].
pub(crate) const HEARTBEAT_INDEX: usize = 2;
/// The index of [`SWEEP`] in [`ALL`].
pub(crate) const SWEEP_INDEX: usize = 3;
/// The index of [`CLIENT`] in [`ALL`].
pub(crate) const CLIENT_INDEX: usize = 4;
/// The index of [`SEND_TO`] in [`ALL`].
pub(crate) const SEND_TO_INDEX: usize = 5;
/// The index of [`MEMBERS`] in [`ALL`].
pub(crate) const MEMBERS_INDEX: usize = 6;
/// The index of [`ROUTE`] in [`ALL`].
pub(crate) const ROUTE_INDEX: usize = 7;
/// The index of [`AGENT_REGISTER`] in [`ALL`].
pub(crate) const AGENT_REGISTER_INDEX: usize = 8;
/// The index of [`AGENT_REMOVE`] in [`ALL`].
pub(crate) const AGENT_REMOVE_INDEX: usize = 9;
/// The index of [`AGENT_STATUS`] in [`ALL`].
pub(crate) const AGENT_STATUS_INDEX: usize = 10;
/// The index of [`AGENT_OFFLINE`] in [`ALL`].
pub(crate) const AGENT_OFFLINE_INDEX: usize = 11;
/// The index of [`AGENT_QUERY`] in [`ALL`].
pub(crate) const AGENT_QUERY_INDEX: usize = 12;
/// The index of [`ROUTE_AGENT`] in [`ALL`].
pub(crate) const ROUTE_AGENT_INDEX: usize = 13;
/// The index of [`SESSION_READ`] in [`ALL`].
pub(crate) const SESSION_READ_INDEX: usize = 14;
/// The index of [`SESSION_PATCH`] in [`ALL`].
pub(crate) const SESSION_PATCH_INDEX: usize = 15;
/// The index of [`DEVICES`] in [`ALL`].
pub(crate) const DEVICES_INDEX: usize = 16;
/// The index of [`ADMIN_KICK`] in [`ALL`].
pub(crate) const ADMIN_KICK_INDEX: usize = 17;
/// The index of [`ADMIN_PAGE`] in [`ALL`].
pub(crate) const ADMIN_PAGE_INDEX: usize = 18;
/// The index of [`USAGE`] in [`ALL`].
pub(crate) const USAGE_INDEX: usize = 19;

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
    /// The agent id is taken (PROTOCOL section 6).
    Exists,
    /// `max_agents` reached.
    MaxAgents,
    /// The agent is offline or owned by another client.
    Forbidden,
    /// A create of the id of a private session the caller may not join.
    Taken,
    /// A change of access by someone who is neither the owner nor `admin`.
    NotOwner,
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
            b"exists" => Refused::Exists,
            b"max_agents" => Refused::MaxAgents,
            b"forbidden" => Refused::Forbidden,
            b"taken" => Refused::Taken,
            b"not_owner" => Refused::NotOwner,
            _ => return None,
        })
    }
}
