"""A Python `websockets` server doing the gateway's JSON work (PROTOCOL sections 3 and 5, the
subset the benchmarks use), as a peer to measure the gateway against. Not a gateway: no
limits, no agents, no routing.

    VENV/bin/python benches/peers/python_gateway.py [PORT]

Logs `python_gateway: listening on ws://127.0.0.1:PORT/ws` to stderr. Token: GATEWAY_TOKEN
(default dev-token-change-me). Stops on SIGTERM / SIGINT. Needs websockets >= 13 (the asyncio
server API).
"""

import asyncio
import itertools
import json
import os
import signal
import sys
import time
import uuid

from websockets.asyncio.server import broadcast, serve
from websockets.exceptions import ConnectionClosed

TOKEN = os.environ.get("GATEWAY_TOKEN", "dev-token-change-me")
RELAYED = {"chat", "chat_stream", "chat_complete", "tool_start", "tool_update", "tool_result", "broadcast"}
_ids = itertools.count(1)
sessions = {}  # sessionId -> {connection: Client}


class Client:
    __slots__ = ("ws", "client_id", "user_id", "sessions")

    def __init__(self, ws):
        self.ws = ws
        self.client_id = str(uuid.uuid4())
        self.user_id = None
        self.sessions = set()


def envelope(kind, payload, **extra):
    msg = {"type": kind, "id": f"p-{next(_ids):x}", "payload": payload, "timestamp": int(time.time() * 1000)}
    msg.update(extra)
    return json.dumps(msg, separators=(",", ":"))


def error(reply_to, code, message):
    extra = {"replyTo": reply_to} if reply_to else {}
    return envelope("error", {"code": code, "message": message}, **extra)


def presence(session, session_id, client, status):
    data = envelope("presence", {"clientId": client.client_id, "userId": client.user_id, "status": status,
                                 "sessionId": session_id, "timestamp": int(time.time() * 1000)},
                    sessionId=session_id)
    broadcast([ws for ws in session if ws is not client.ws], data)


def join(client, msg, create):
    payload = msg.get("payload") or {}
    session_id = payload.get("sessionId") or msg.get("sessionId") or (f"session-{uuid.uuid4()}" if create else None)
    if not isinstance(session_id, str) or not session_id:
        return error(msg["id"], "INVALID_MESSAGE", "sessionId")
    session = sessions.get(session_id)
    status = "joined"
    if session is None:
        if not create:
            return error(msg["id"], "SESSION_NOT_FOUND", f"Session {session_id} not found")
        session = sessions[session_id] = {}
        status = "created"
    fresh = client.ws not in session
    session[client.ws] = client
    client.sessions.add(session_id)
    members = [{"clientId": c.client_id, "userId": c.user_id} for c in session.values()]
    reply = envelope("session_info", {"sessionId": session_id, "status": status, "members": members},
                     replyTo=msg["id"], sessionId=session_id)
    if fresh:
        presence(session, session_id, client, "joined")
    return reply


def leave_all(client):
    for session_id in client.sessions:
        session = sessions.get(session_id)
        if session is None:
            continue
        session.pop(client.ws, None)
        if not session:
            del sessions[session_id]
        else:
            presence(session, session_id, client, "left")
    client.sessions.clear()


def handle(client, data):
    """The reply to send to the client itself, or None."""
    try:
        msg = json.loads(data)
    except ValueError:
        return error(None, "PARSE_ERROR", "Invalid JSON")
    if not isinstance(msg, dict):
        return error(None, "PARSE_ERROR", "Not a JSON object")
    kind, mid = msg.get("type"), msg.get("id")
    if not isinstance(kind, str) or not kind or not isinstance(mid, str) or not mid:
        return error(mid if isinstance(mid, str) else None, "INVALID_MESSAGE", "type and id are required")
    if kind == "ping":
        return envelope("pong", {"clientId": client.client_id}, replyTo=mid)
    if kind == "auth":
        token = (msg.get("payload") or {}).get("token")
        if not token:
            return error(mid, "AUTH_REQUIRED", "token required")
        if token != TOKEN:
            return error(mid, "AUTH_FAILED", "Invalid token")
        client.user_id = "dev"
        return envelope("auth_success", {"clientId": client.client_id, "userId": client.user_id}, replyTo=mid)
    if client.user_id is None:
        return error(mid, "AUTH_REQUIRED", "Authentication required")
    if kind == "session_create":
        return join(client, msg, True)
    if kind == "session_join":
        return join(client, msg, False)
    if kind in RELAYED:
        session_id = msg.get("sessionId")
        if not isinstance(session_id, str) or not session_id:
            return error(mid, "INVALID_MESSAGE", "sessionId")
        session = sessions.get(session_id)
        if session is None:
            return error(mid, "SESSION_NOT_FOUND", f"Session {session_id} not found")
        if client.ws not in session:
            return error(mid, "NOT_A_MEMBER", f"Not a member of session {session_id}")
        payload = msg.get("payload", {})
        data = envelope(kind, payload, sessionId=session_id, source=client.client_id)
        broadcast([ws for ws in session if ws is not client.ws], data)
        return None
    return error(mid, "UNKNOWN_TYPE", f"Unknown message type: {kind}")


async def handler(ws):
    client = Client(ws)
    try:
        await ws.send(envelope("session_info", {"sessionId": client.client_id, "clientId": client.client_id,
                                                "status": "connected", "authRequired": True}))
        async for data in ws:
            reply = handle(client, data)
            if reply is not None:
                await ws.send(reply)
    except (ConnectionClosed, OSError):
        pass  # the load generator drops its connections without waiting for our close frame
    finally:
        leave_all(client)


async def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    # As the gateway: a Ping every 30 s; no compression (the clients do not offer it anyway).
    async with serve(handler, "127.0.0.1", port, compression=None, max_size=10 * 1024 * 1024,
                     ping_interval=30, ping_timeout=30, backlog=1024) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(f"python_gateway: listening on ws://127.0.0.1:{bound}/ws", file=sys.stderr, flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
