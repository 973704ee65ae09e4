// A Node `ws` server doing the gateway's JSON work (PROTOCOL sections 3 and 5, the subset the
// benchmarks use), as a peer to measure the gateway against. Not a gateway: no limits, no
// agents, no routing.
//
//   NODE_PATH=DIR/node_modules node benches/peers/node_gateway.js [PORT]
//
// Logs `node_gateway: listening on ws://127.0.0.1:PORT/ws` to stderr. Token: GATEWAY_TOKEN
// (default dev-token-change-me). Stops on SIGTERM / SIGINT. With TLS_CERT and TLS_KEY (PEM
// files) it serves wss:// through Node's `https` server instead (benches/tls.rs).
'use strict';

const crypto = require('crypto');
const { WebSocketServer } = require('ws');

const TOKEN = process.env.GATEWAY_TOKEN || 'dev-token-change-me';
const HEARTBEAT_MS = 30000; // as the gateway: a Ping every 30 s, dropped after 60 s silent
const RELAYED = new Set(['chat', 'chat_stream', 'chat_complete', 'tool_start', 'tool_update',
  'tool_result', 'broadcast']);

let nextId = 1;
const sessions = new Map(); // sessionId -> Set of sockets

function envelope(type, payload, extra) {
  return JSON.stringify(Object.assign(
    { type, id: 'n-' + (nextId++).toString(16), payload, timestamp: Date.now() }, extra));
}

function send(ws, type, payload, extra) {
  ws.send(envelope(type, payload, extra));
}

function error(ws, replyTo, code, message) {
  send(ws, 'error', { code, message }, replyTo ? { replyTo } : undefined);
}

function members(set) {
  return Array.from(set, (m) => ({ clientId: m.clientId, userId: m.userId }));
}

function presence(session, sessionId, ws, status) {
  const data = envelope('presence', {
    clientId: ws.clientId, userId: ws.userId, status, sessionId, timestamp: Date.now(),
  }, { sessionId });
  for (const other of session) if (other !== ws) other.send(data);
}

function join(ws, msg, create) {
  const p = msg.payload || {};
  const sessionId = p.sessionId || msg.sessionId || (create ? 'session-' + crypto.randomUUID() : null);
  if (typeof sessionId !== 'string' || !sessionId) return error(ws, msg.id, 'INVALID_MESSAGE', 'sessionId');
  let session = sessions.get(sessionId);
  let status = 'joined';
  if (!session) {
    if (!create) return error(ws, msg.id, 'SESSION_NOT_FOUND', `Session ${sessionId} not found`);
    session = new Set();
    sessions.set(sessionId, session);
    status = 'created';
  }
  const fresh = !session.has(ws);
  session.add(ws);
  ws.sessions.add(sessionId);
  send(ws, 'session_info', { sessionId, status, members: members(session) },
    { replyTo: msg.id, sessionId });
  if (fresh) presence(session, sessionId, ws, 'joined');
}

function leaveAll(ws) {
  for (const sessionId of ws.sessions) {
    const session = sessions.get(sessionId);
    if (!session) continue;
    session.delete(ws);
    if (session.size === 0) sessions.delete(sessionId);
    else presence(session, sessionId, ws, 'left');
  }
  ws.sessions.clear();
}

function onMessage(ws, data) {
  let msg;
  try {
    msg = JSON.parse(data);
  } catch (e) {
    return error(ws, null, 'PARSE_ERROR', 'Invalid JSON');
  }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
    return error(ws, null, 'PARSE_ERROR', 'Not a JSON object');
  }
  if (typeof msg.type !== 'string' || !msg.type || typeof msg.id !== 'string' || !msg.id) {
    return error(ws, typeof msg.id === 'string' ? msg.id : null, 'INVALID_MESSAGE', 'type and id are required');
  }
  switch (msg.type) {
    case 'ping':
      return send(ws, 'pong', { clientId: ws.clientId }, { replyTo: msg.id });
    case 'auth': {
      const token = msg.payload && msg.payload.token;
      if (!token) return error(ws, msg.id, 'AUTH_REQUIRED', 'token required');
      if (token !== TOKEN) return error(ws, msg.id, 'AUTH_FAILED', 'Invalid token');
      ws.userId = 'dev';
      return send(ws, 'auth_success', { clientId: ws.clientId, userId: ws.userId }, { replyTo: msg.id });
    }
  }
  if (!ws.userId) return error(ws, msg.id, 'AUTH_REQUIRED', 'Authentication required');
  if (msg.type === 'session_create') return join(ws, msg, true);
  if (msg.type === 'session_join') return join(ws, msg, false);
  if (RELAYED.has(msg.type)) {
    const sessionId = msg.sessionId;
    if (typeof sessionId !== 'string' || !sessionId) return error(ws, msg.id, 'INVALID_MESSAGE', 'sessionId');
    const session = sessions.get(sessionId);
    if (!session) return error(ws, msg.id, 'SESSION_NOT_FOUND', `Session ${sessionId} not found`);
    if (!session.has(ws)) return error(ws, msg.id, 'NOT_A_MEMBER', `Not a member of session ${sessionId}`);
    const data = envelope(msg.type, msg.payload === undefined ? {} : msg.payload,
      { sessionId, source: ws.clientId });
    for (const other of session) if (other !== ws) other.send(data);
    return undefined;
  }
  return error(ws, msg.id, 'UNKNOWN_TYPE', `Unknown message type: ${msg.type}`);
}

const port = Number(process.argv[2] || 0);
const options = { path: '/ws', perMessageDeflate: false, maxPayload: 10 * 1024 * 1024 };
let scheme = 'ws';
let https = null;
if (process.env.TLS_CERT && process.env.TLS_KEY) {
  const fs = require('fs');
  https = require('https').createServer({
    cert: fs.readFileSync(process.env.TLS_CERT), key: fs.readFileSync(process.env.TLS_KEY),
  });
  options.server = https;
  scheme = 'wss';
} else {
  Object.assign(options, { host: '127.0.0.1', port });
}
const wss = new WebSocketServer(options);

wss.on('connection', (ws) => {
  ws.clientId = crypto.randomUUID();
  ws.userId = null;
  ws.sessions = new Set();
  ws.alive = true;
  ws.on('pong', () => { ws.alive = true; });
  ws.on('message', (data) => { ws.alive = true; onMessage(ws, data); });
  ws.on('close', () => leaveAll(ws));
  ws.on('error', () => {});
  send(ws, 'session_info', {
    sessionId: ws.clientId, clientId: ws.clientId, status: 'connected', authRequired: true,
  });
});

const heartbeat = setInterval(() => {
  for (const ws of wss.clients) {
    if (!ws.alive) { ws.terminate(); continue; }
    ws.alive = false;
    ws.ping();
  }
}, HEARTBEAT_MS);

const listening = (address) => {
  process.stderr.write(`node_gateway: listening on ${scheme}://127.0.0.1:${address.port}/ws\n`);
};
if (https) {
  https.listen(port, '127.0.0.1', () => listening(https.address()));
} else {
  wss.on('listening', () => listening(wss.address()));
}

function stop() {
  clearInterval(heartbeat);
  for (const ws of wss.clients) ws.close(1001, 'Server shutting down');
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
