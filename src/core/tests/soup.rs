//! A deterministic byte soup: thousands of random, plausible and mutated messages, opens,
//! closes, timers and commands, fed to one core. Nothing may panic, everything sent must be
//! valid JSON, and the core's counts must match the connections left open.

use std::collections::BTreeSet;

use super::*;
use crate::testkit::Rng;

const TYPES: &[&str] = &[
    "ping",
    "auth",
    "connect",
    "session_create",
    "session_join",
    "session_leave",
    "session_patch",
    "presence",
    "chat",
    "chat_stream",
    "chat_complete",
    "tool_start",
    "tool_update",
    "tool_result",
    "broadcast",
    "route_request",
    "route_response",
    "agent_register",
    "agent_unregister",
    "agent_heartbeat",
    "agent_query",
    "custom",
    "unknown_thing",
    "",
];

const KEYS: &[&str] = &[
    "sessionId",
    "sessionKey",
    "name",
    "metadata",
    "patch",
    "status",
    "token",
    "password",
    "clientId",
    "clientType",
    "deviceId",
    "deviceName",
    "role",
    "protocolVersion",
    "agentId",
    "type",
    "capabilities",
    "capability",
    "onlineOnly",
    "chat",
    "tools",
    "modes",
    "custom",
    "streaming",
];

const WORDS: &[&str] = &[
    "room",
    "r2",
    "secret",
    "hunter2",
    "control",
    "node",
    "webchat",
    "cli",
    "pi",
    "online",
    "busy",
    "offline",
    "joined",
    "left",
    "away",
    "search",
    "capability:search",
    "capability:chat",
    "",
    "é\u{0}\"\\",
];

struct Soup {
    h: Harness,
    rng: Rng,
    open: Vec<(ConnId, String)>,
    closed: Vec<ConnId>,
    timers: Vec<u64>,
    ids: Vec<String>,
    /// Every outgoing `type`, with its error `code` for errors.
    seen: BTreeSet<String>,
}

impl Soup {
    fn value(&mut self, depth: usize) -> Value {
        let known: Vec<String> = self.open.iter().map(|(_, id)| id.clone()).collect();
        match self.rng.below(if depth > 2 { 6 } else { 9 }) {
            0 => Value::Null,
            1 => json!(self.rng.chance(50)),
            2 => json!(self.rng.below(5) as i64 - 1),
            3 => json!(1.5),
            4 => json!(*self.rng.pick(WORDS)),
            5 if !known.is_empty() => json!(self.rng.pick(&known)),
            5 => json!("x"),
            6 => json!(self.rng.pick(&self.ids).clone()),
            7 => Value::Array(
                (0..self.rng.below(3))
                    .map(|_| self.value(depth + 1))
                    .collect(),
            ),
            _ => self.object(depth + 1),
        }
    }

    fn object(&mut self, depth: usize) -> Value {
        let mut map = serde_json::Map::new();
        for _ in 0..self.rng.below(5) {
            let key = self.rng.pick(KEYS).to_string();
            let value = self.value(depth);
            map.insert(key, value);
        }
        Value::Object(map)
    }

    fn envelope(&mut self) -> String {
        let mut msg = serde_json::Map::new();
        if !self.rng.chance(3) {
            msg.insert("type".into(), json!(*self.rng.pick(TYPES)));
        }
        if !self.rng.chance(3) {
            let id = if self.rng.chance(5) {
                self.value(0)
            } else {
                json!(self.rng.pick(&self.ids).clone())
            };
            msg.insert("id".into(), id);
        }
        if self.rng.chance(80) {
            let payload = if self.rng.chance(95) {
                self.object(0)
            } else {
                self.value(0)
            };
            msg.insert("payload".into(), payload);
        }
        for key in ["sessionId", "target", "replyTo", "source", "timestamp"] {
            if self.rng.chance(30) {
                let v = self.value(1);
                msg.insert(key.into(), v);
            }
        }
        Value::Object(msg).to_string()
    }

    /// A well-formed request of a random type, with mostly sensible field values.
    fn plausible(&mut self) -> String {
        let msg_type = *self.rng.pick(TYPES);
        let peers: Vec<String> = self.open.iter().map(|(_, id)| id.clone()).collect();
        let peer = if peers.is_empty() {
            "nobody".to_owned()
        } else {
            self.rng.pick(&peers).clone()
        };
        let session = *self.rng.pick(&["room", "r2", "r3"]);
        let agent = *self.rng.pick(&["ag1", "ag2", "ag3"]);
        let id = self.rng.pick(&self.ids).clone();
        let caps =
            json!({"chat": self.rng.chance(50), "tools": [*self.rng.pick(&["search", "grep"])]});
        let mut extra = json!({});
        let payload = match msg_type {
            "auth" => json!({"token": *self.rng.pick(&["secret", "hunter2", "bad", ""])}),
            "connect" => {
                json!({"deviceId": "d", "role": *self.rng.pick(&["node", "control", "x"]), "protocolVersion": 1})
            }
            "session_create" => json!({"sessionId": session, "metadata": {"k": self.rng.below(3)}}),
            "session_join" | "session_leave" => json!({"sessionId": session}),
            "session_patch" => {
                json!({"sessionKey": session, "patch": {"k": self.value(1), "n": null}})
            }
            "presence" => {
                if self.rng.chance(50) {
                    json!({"status": *self.rng.pick(&["away", "joined", "here"]), "sessionKey": session})
                } else {
                    json!({"status": "here"})
                }
            }
            "route_request" => {
                let target = match self.rng.below(3) {
                    0 => peer.clone(),
                    1 => agent.to_owned(),
                    _ => "capability:search".to_owned(),
                };
                extra = json!({"target": target});
                json!({"q": 1})
            }
            "route_response" => {
                extra =
                    json!({"target": peer.clone(), "replyTo": self.rng.pick(&self.ids).clone()});
                json!({"a": 2})
            }
            "agent_register" => {
                json!({"agentId": agent, "type": "cli", "name": "n", "capabilities": caps})
            }
            "agent_unregister" => json!({"agentId": agent}),
            "agent_heartbeat" => {
                json!({"agentId": agent, "status": *self.rng.pick(&["online", "busy"])})
            }
            "agent_query" => json!({"capability": "search", "onlineOnly": self.rng.chance(50)}),
            "custom" => json!({"clientId": peer, "status": *self.rng.pick(&["busy", "idle"])}),
            _ => {
                extra = json!({"sessionId": session});
                json!({"text": "hi"})
            }
        };
        let mut msg = json!({"type": msg_type, "id": id, "payload": payload});
        if let (Value::Object(m), Value::Object(e)) = (&mut msg, extra) {
            m.extend(e);
        }
        msg.to_string()
    }

    fn mutate(&mut self, text: String) -> Vec<u8> {
        let mut bytes = text.into_bytes();
        for _ in 0..1 + self.rng.below(4) {
            let at = self.rng.below(bytes.len() + 1);
            match self.rng.below(4) {
                0 if at < bytes.len() => bytes[at] = self.rng.next() as u8,
                1 => bytes.insert(at, *self.rng.pick(b"{}[]\",:\\0 \xff")),
                2 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
        bytes
    }

    fn step(&mut self) {
        let roll = self.rng.below(100);
        if self.open.is_empty() || roll < 4 {
            let (conn, id, o) = self.h.open_full();
            self.timers.extend(o.timers.iter().map(|t| t.1));
            self.open.push((conn, id));
            return;
        }
        let (conn, client_id) = self.open[self.rng.below(self.open.len())].clone();
        let o = match roll {
            4..=6 => {
                let at = self.open.iter().position(|(c, _)| *c == conn).unwrap();
                self.open.swap_remove(at);
                self.closed.push(conn);
                let reason = *self.rng.pick(&[
                    CloseReason::Peer(1000),
                    CloseReason::Reset,
                    CloseReason::Timeout,
                    CloseReason::App(1008),
                ]);
                self.h.close(conn, reason)
            }
            7..=9 => {
                self.h.advance(self.rng.below(400_000) as u64);
                let token = if self.timers.is_empty() || self.rng.chance(20) {
                    self.rng.next()
                } else {
                    self.timers[self.rng.below(self.timers.len())]
                };
                self.h.timer(token)
            }
            10..=11 => {
                let cmd = match self.rng.below(3) {
                    0 => Command::SendToClient {
                        client_id,
                        msg_type: "note".into(),
                        payload: self.value(0),
                    },
                    1 => Command::BroadcastToSession {
                        session_id: self.rng.pick(WORDS).to_string(),
                        msg_type: "news".into(),
                        payload: self.value(0),
                    },
                    _ => Command::Kick {
                        client_id,
                        reason: Some(self.rng.pick(WORDS).to_string()),
                    },
                };
                self.h.command(cmd)
            }
            12..=13 => {
                let stale = *self.rng.pick(&[
                    ConnId {
                        index: conn.index,
                        generation: conn.generation + 1,
                    },
                    crate::testkit::conn(999),
                ]);
                let text = self.envelope();
                let o = self.h.text(stale, &text);
                o.silent();
                o
            }
            14..=15 if !self.closed.is_empty() => {
                let gone = self.closed[self.rng.below(self.closed.len())];
                let text = self.envelope();
                let o = self.h.text(gone, &text);
                o.silent();
                o
            }
            16..=30 => {
                let len = self.rng.below(200);
                let bytes: Vec<u8> = (0..len).map(|_| self.rng.next() as u8).collect();
                self.h.binary(conn, &bytes)
            }
            31..=45 => {
                let text = if self.rng.chance(50) {
                    self.plausible()
                } else {
                    self.envelope()
                };
                let bytes = self.mutate(text);
                match std::str::from_utf8(&bytes) {
                    Ok(text) => self.h.text(conn, text),
                    Err(_) => self.h.binary(conn, &bytes),
                }
            }
            46..=60 => {
                let text = self.envelope();
                self.h.text(conn, &text)
            }
            _ => {
                let text = self.plausible();
                self.h.text(conn, &text)
            }
        };
        self.timers.extend(o.timers.iter().map(|t| t.1));
        for sent in &o.sent {
            let t = sent.msg["type"].as_str().unwrap_or("?");
            match sent.msg["payload"]["code"].as_str() {
                Some(code) if t == "error" => self.seen.insert(code.to_owned()),
                _ => self.seen.insert(t.to_owned()),
            };
        }
        if self.timers.len() > 64 {
            self.timers.drain(..32);
        }
    }
}

fn stir(config: Config, seed: u64, steps: usize) -> BTreeSet<String> {
    let mut h = Harness::new(config);
    h.core.register_handler("custom", |ctx, msg| {
        let target = msg.payload["clientId"].as_str().unwrap_or("").to_owned();
        ctx.send_to(&target, "custom_note", &msg.payload);
        ctx.broadcast("room", "custom_news", json!({"id": msg.id}));
        ctx.reply("custom_ok", json!({}));
        if msg.payload["status"] == "busy" {
            ctx.kick(&target);
        }
    });
    let mut soup = Soup {
        h,
        rng: Rng::new(seed),
        open: Vec::new(),
        closed: Vec::new(),
        timers: Vec::new(),
        ids: vec!["1".into(), "r1".into(), "x".repeat(128), "q".into()],
        seen: BTreeSet::new(),
    };
    for _ in 0..steps {
        soup.step();
        assert_eq!(soup.h.core.client_count(), soup.open.len());
    }
    let sessions_before = soup.h.core.session_count();
    let agents_online = BTreeSet::from_iter(soup.open.iter().map(|(c, _)| *c));
    assert_eq!(agents_online.len(), soup.open.len());
    for (conn, _) in std::mem::take(&mut soup.open) {
        soup.h.close(conn, CloseReason::Shutdown);
    }
    assert!(soup.h.core.session_count() <= sessions_before);
    assert_eq!(
        soup.h.core.session_count(),
        0,
        "every session goes with its members"
    );
    assert_eq!(soup.h.core.client_count(), 0);
    soup.seen
}

#[test]
fn soup_in_token_mode() {
    let config = Config {
        max_clients_per_session: 3,
        max_sessions_per_client: 3,
        max_sessions: 8,
        max_agents: 4,
        max_message_size: 400,
        max_auth_failures: 5,
        ..token_config()
    };
    let mut seen = BTreeSet::new();
    for seed in [1, 2, 3] {
        seen.extend(stir(config.clone(), seed, 4000));
    }
    for t in [
        "auth_success",
        "AUTH_FAILED",
        "session_info",
        "agent_info",
        "PARSE_ERROR",
    ] {
        assert!(seen.contains(t), "the soup never produced {t}: {seen:?}");
    }
}

#[test]
fn soup_in_mode_none_with_rate_limits() {
    let config = Config {
        max_clients_per_session: 4,
        max_sessions: 16,
        max_agents: 6,
        rate_limit_per_sec: 50,
        rate_limit_burst: 20,
        ..none_config()
    };
    let mut seen = BTreeSet::new();
    for seed in [11, 12, 13] {
        seen.extend(stir(config.clone(), seed, 4000));
    }
    for t in [
        "chat",
        "presence",
        "route_request",
        "route_response",
        "RATE_LIMITED",
        "SESSION_FULL",
    ] {
        assert!(seen.contains(t), "the soup never produced {t}: {seen:?}");
    }
}
