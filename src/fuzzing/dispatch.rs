//! Fuzzes the protocol core, `GatewayCore`, through the `App` trait. The input is a script:
//! each step's first byte picks an operation (open, close, message, raw message, timer,
//! clock, command, HTTP) and the next bytes its arguments. Messages are raw bytes or
//! envelopes built from the real message types and a small vocabulary (the configured tokens,
//! the open clients' ids, session and agent ids, request ids), so that authenticated,
//! session, agent and route states are reached. Auth is `token` with three users (`alice`,
//! `bob`, and `root` with the `admin` scope), so that private sessions, visibility and the
//! admin messages are reached too; rate limiting is on and every limit is small.
//!
//! Checks: no panic; every message sent is text, a JSON object with a non-empty string
//! `type` and `id`, an object `payload` and a numeric `timestamp` (PROTOCOL section 2), to
//! an open connection; closes name open connections; `/health` is JSON;
//! the core's client count is the number of open connections.

use std::time::{Duration, Instant};

use crate::app::{Action, Actions, App, CloseReason, ConnId, TransportStats};
use crate::config::{AuthMode, AuthToken, Config};
use crate::core::{Command, Event, GatewayCore};
use serde_json::{json, Map, Value};

/// Connection slots; a slot reopens with the next generation.
const SLOTS: usize = 4;

// New entries go at the end of these lists, so that the committed seeds keep their meaning.
#[rustfmt::skip]
const TYPES: [&str; 26] = [
    "ping", "auth", "connect", "session_create", "session_join", "session_leave",
    "session_patch", "presence", "chat", "chat_stream", "chat_complete", "tool_start",
    "tool_update", "tool_result", "broadcast", "route_request", "route_response",
    "agent_register", "agent_unregister", "agent_heartbeat", "agent_query", "custom", "other",
    "admin_kick", "admin_clients", "presence_query",
];

#[rustfmt::skip]
const KEYS: [&str; 27] = [
    "token", "password", "clientId", "clientType", "deviceId", "deviceName", "role",
    "protocolVersion", "sessionId", "sessionKey", "name", "metadata", "patch", "status",
    "agentId", "type", "capabilities", "capability", "onlineOnly", "chat", "tools", "text",
    "access", "allowUsers", "reason", "limit", "cursor",
];

#[rustfmt::skip]
const WORDS: [&str; 24] = [
    "secret", "wrong", "room", "r2", "ag1", "ag2", "capability:search", "search", "chat",
    "online", "busy", "offline", "away", "node", "control", "cli", "", "\u{e9}\u{0}\"\\",
    "root-secret", "open", "private", "alice", "root", "bob-secret",
];

/// Values of `access` and the users of `allowUsers`.
const ACCESS: [&str; 4] = ["open", "private", "Open", ""];
const USERS: [&str; 5] = ["alice", "bob", "root", "anonymous", ""];
const SESSIONS: [&str; 3] = ["room", "r2", "r3"];
const AGENTS: [&str; 3] = ["ag1", "ag2", "ag3"];
/// Types the host sends with; the host is trusted to send non-empty types and object payloads.
const MSG_TYPES: [&str; 4] = ["note", "error", "session_info", "x\"y"];
const PATHS: [&str; 4] = ["/health", "/metrics", "/health?x=1", "/nothing"];

fn config() -> Config {
    Config {
        auth_mode: AuthMode::Token,
        auth_tokens: vec![
            AuthToken {
                user: "alice".into(),
                secret: "secret".into(),
            },
            AuthToken {
                user: "bob".into(),
                secret: "bob-secret".into(),
            },
            AuthToken {
                user: "root".into(),
                secret: "root-secret".into(),
            },
        ],
        auth_timeout_ms: 1_000,
        max_auth_failures: 2,
        agent_ttl_ms: 2_000,
        max_payload: 1536,
        max_message_size: 1536,
        max_clients_per_session: 3,
        max_sessions_per_client: 2,
        max_sessions: 4,
        max_agents: 3,
        admin_users: vec!["root".into()],
        rate_limit_per_sec: 20,
        rate_limit_burst: 10,
        ..Config::default()
    }
}

/// The input, read one choice at a time; an exhausted script reads zeros.
struct Script<'a>(&'a [u8]);

impl<'a> Script<'a> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n.max(1)
    }

    fn pick<'t>(&mut self, items: &[&'t str]) -> &'t str {
        items[self.below(items.len())]
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

struct Harness {
    core: GatewayCore,
    out: Actions<Event>,
    now: Instant,
    slots: [Option<ConnId>; SLOTS],
    generations: [u32; SLOTS],
    timers: Vec<(Instant, u64)>,
}

impl Harness {
    fn new() -> Harness {
        let config = config();
        assert!(config.validate().is_ok());
        let now = Instant::now();
        let mut core = GatewayCore::new(&config, now, 1_764_201_600_000);
        core.register_handler("custom", |ctx, msg| {
            let target = msg.payload["clientId"].as_str().unwrap_or("").to_owned();
            ctx.send_to(&target, "custom_note", &msg.payload);
            ctx.broadcast("room", "custom_news", json!({"id": msg.id}));
            ctx.reply("custom_ok", json!({}));
            if msg.payload["status"] == "busy" {
                ctx.kick(&target);
            }
            if msg.payload["status"] == "away" {
                ctx.kick_with_reason(&target, &"\u{e9}".repeat(70));
            }
        });
        Harness {
            core,
            out: Actions::new(),
            now,
            slots: [None; SLOTS],
            generations: [0; SLOTS],
            timers: Vec::new(),
        }
    }

    fn is_open(&self, conn: ConnId) -> bool {
        self.slots.contains(&Some(conn))
    }

    /// The clientId of an open connection picked by the script, or an unknown one.
    fn client(&self, s: &mut Script) -> String {
        let slot = s.below(SLOTS + 1);
        self.slots
            .get(slot)
            .copied()
            .flatten()
            .and_then(|conn| self.core.client_id_of(conn))
            .unwrap_or("nobody")
            .to_owned()
    }

    fn id(&self, s: &mut Script) -> String {
        match s.below(5) {
            0 => "1".into(),
            1 => "r1".into(),
            2 => "x".repeat(128),
            3 => "x".repeat(129),
            _ => "q".into(),
        }
    }

    fn string(&self, s: &mut Script) -> String {
        match s.below(5) {
            0 => self.client(s),
            1 => self.id(s),
            2 => s.pick(&SESSIONS).into(),
            3 => s.pick(&AGENTS).into(),
            _ => s.pick(&WORDS).into(),
        }
    }

    /// A kick reason: none, empty, short, or one longer than a close frame allows.
    fn reason(&self, s: &mut Script) -> Option<String> {
        match s.below(4) {
            0 => None,
            1 => Some(String::new()),
            2 => Some("spam".into()),
            _ => Some("\u{e9}".repeat(70)),
        }
    }

    /// An `allowUsers` value: an array of users, or something that is not one.
    fn allow_users(&self, s: &mut Script) -> Value {
        match s.below(4) {
            0 => Value::Null,
            1 => json!(s.pick(&USERS)),
            _ => Value::Array((0..s.below(4)).map(|_| json!(s.pick(&USERS))).collect()),
        }
    }

    fn value(&self, s: &mut Script, depth: usize) -> Value {
        match s.below(if depth >= 2 { 6 } else { 8 }) {
            0 => Value::Null,
            1 => json!(s.byte() & 1 == 1),
            2 => json!(i64::from(s.byte()) - 2),
            3 => json!(1.5),
            4 | 5 => json!(self.string(s)),
            6 => Value::Array((0..s.below(3)).map(|_| self.value(s, depth + 1)).collect()),
            _ => self.object(s, depth + 1),
        }
    }

    fn object(&self, s: &mut Script, depth: usize) -> Value {
        let mut map = Map::new();
        for _ in 0..s.below(5) {
            let key = s.pick(&KEYS).to_owned();
            map.insert(key, self.value(s, depth));
        }
        Value::Object(map)
    }

    /// A payload with the fields `msg_type` reads, their values picked by the script.
    fn plausible(&self, s: &mut Script, msg_type: &str) -> Value {
        match msg_type {
            "auth" => json!({"token": s.pick(&WORDS)}),
            "connect" => json!({"deviceId": s.pick(&WORDS), "role": s.pick(&WORDS),
                                "protocolVersion": s.below(3)}),
            "session_create" => json!({"sessionId": s.pick(&SESSIONS),
                                       "metadata": self.object(s, 1),
                                       "access": s.pick(&ACCESS),
                                       "allowUsers": self.allow_users(s)}),
            "session_join" | "session_leave" => json!({"sessionId": s.pick(&SESSIONS)}),
            "session_patch" => {
                let mut p = json!({"sessionKey": s.pick(&SESSIONS)});
                // Bits 1, 2, 4: `patch`, `access`, `allowUsers` present.
                let present = s.byte();
                if present & 1 != 0 {
                    p["patch"] = self.object(s, 1);
                }
                if present & 2 != 0 {
                    p["access"] = json!(s.pick(&ACCESS));
                }
                if present & 4 != 0 {
                    p["allowUsers"] = self.allow_users(s);
                }
                p
            }
            "presence" => json!({"status": s.pick(&WORDS), "sessionKey": s.pick(&SESSIONS)}),
            "agent_register" => json!({"agentId": s.pick(&AGENTS), "type": s.pick(&WORDS),
                "name": s.pick(&WORDS),
                "capabilities": {"chat": s.byte() & 1 == 1, "tools": [s.pick(&WORDS)]}}),
            "agent_unregister" | "agent_heartbeat" => {
                json!({"agentId": s.pick(&AGENTS), "status": s.pick(&WORDS)})
            }
            "agent_query" => json!({"capability": s.pick(&WORDS), "onlineOnly": s.byte() & 1 == 1}),
            "custom" => json!({"clientId": self.client(s), "status": s.pick(&WORDS)}),
            "admin_kick" => json!({"clientId": self.client(s), "reason": self.reason(s)}),
            "admin_clients" | "presence_query" => {
                let cursor = match s.below(3) {
                    0 => Value::Null,
                    1 => json!("c1"),
                    _ => json!(s.pick(&WORDS)),
                };
                json!({"limit": s.below(4), "cursor": cursor})
            }
            _ => self.object(s, 0),
        }
    }

    /// An envelope; the first byte's bits say which members are left out or malformed.
    fn envelope(&self, s: &mut Script) -> Vec<u8> {
        let flags = s.byte();
        let msg_type = s.pick(&TYPES);
        let mut msg = Map::new();
        if flags & 1 == 0 {
            msg.insert("type".into(), json!(msg_type));
        }
        if flags & 2 == 0 {
            msg.insert("id".into(), json!(self.id(s)));
        } else if flags & 4 != 0 {
            msg.insert("id".into(), self.value(s, 1));
        }
        if flags & 8 == 0 {
            msg.insert("payload".into(), self.plausible(s, msg_type));
        } else if flags & 4 != 0 {
            msg.insert("payload".into(), self.value(s, 0));
        }
        for (bit, key) in [(16, "sessionId"), (32, "target"), (64, "replyTo")] {
            if flags & bit != 0 {
                msg.insert(key.into(), json!(self.string(s)));
            }
        }
        let mut bytes = Value::Object(msg).to_string().into_bytes();
        if flags & 128 != 0 && !bytes.is_empty() {
            // One byte changed, so that near-valid JSON is tried too.
            let at = s.below(bytes.len());
            bytes[at] = s.byte();
        }
        bytes
    }

    /// Runs one core call and checks what it pushed.
    fn run(&mut self, call: impl FnOnce(&mut GatewayCore, Instant, &mut Actions<Event>)) {
        self.out.clear();
        call(&mut self.core, self.now, &mut self.out);
        for action in self.out.list() {
            match action {
                Action::Send { conn, msg } => {
                    let bytes = self.out.bytes(msg);
                    assert!(self.is_open(*conn), "send to {conn:?}, not open");
                    assert!(!msg.is_binary());
                    let value: Value = serde_json::from_slice(bytes).unwrap_or_else(|e| {
                        panic!("invalid JSON ({e}): {}", String::from_utf8_lossy(bytes))
                    });
                    let text = |key: &str| value[key].as_str().is_some_and(|t| !t.is_empty());
                    assert!(value.is_object() && text("type") && text("id"), "{value}");
                    assert!(
                        value["payload"].is_object() && value["timestamp"].is_u64(),
                        "{value}"
                    );
                }
                Action::Close { conn, reason, .. } => {
                    assert!(self.is_open(*conn), "close of {conn:?}, not open");
                    assert!(reason.len() <= 123);
                }
                Action::Timer { at, token } => self.timers.push((*at, *token)),
                Action::Emit(_)
                | Action::RaiseLimit { .. }
                | Action::ShareTurn { .. }
                | Action::SetLimits(_)
                | Action::LinkConnect { .. }
                | Action::LinkSend { .. }
                | Action::LinkClose { .. } => {}
            }
        }
        if self.timers.len() > 64 {
            self.timers.drain(..32);
        }
        let open = self.slots.iter().filter(|slot| slot.is_some()).count();
        assert_eq!(self.core.client_count(), open);
    }

    fn step(&mut self, s: &mut Script) {
        let slot = s.below(SLOTS);
        match s.below(12) {
            0 => {
                if self.slots[slot].is_none() {
                    self.generations[slot] += 1;
                    let conn = ConnId {
                        index: slot as u32,
                        generation: self.generations[slot],
                    };
                    self.slots[slot] = Some(conn);
                    self.run(|core, now, out| core.on_open(conn, now, out));
                }
            }
            1 => {
                if let Some(conn) = self.slots[slot].take() {
                    let reason = match s.below(4) {
                        0 => CloseReason::Peer(1000),
                        1 => CloseReason::App(1008),
                        2 => CloseReason::Timeout,
                        _ => CloseReason::Reset,
                    };
                    self.run(|core, now, out| core.on_close(conn, reason, now, out));
                }
            }
            2 => self.now += Duration::from_millis(u64::from(s.byte()) * 50),
            3 => {
                let (at, token) = if self.timers.is_empty() || s.byte() == 0xff {
                    let raw = s.bytes(8);
                    let mut token = [0u8; 8];
                    token[..raw.len()].copy_from_slice(raw);
                    (self.now, u64::from_le_bytes(token))
                } else {
                    self.timers.remove(s.below(self.timers.len()))
                };
                self.now = self.now.max(at);
                self.run(|core, now, out| core.on_timer(token, now, out));
            }
            4 => {
                let cmd = match s.below(3) {
                    0 => Command::SendToClient {
                        client_id: self.client(s),
                        msg_type: s.pick(&MSG_TYPES).into(),
                        payload: self.object(s, 0),
                    },
                    1 => Command::BroadcastToSession {
                        session_id: self.string(s),
                        msg_type: s.pick(&MSG_TYPES).into(),
                        payload: self.object(s, 0),
                    },
                    _ => Command::Kick {
                        client_id: self.client(s),
                        reason: self.reason(s),
                    },
                };
                self.run(|core, now, out| core.on_command(cmd, now, out));
            }
            5 => {
                let path = s.pick(&PATHS);
                let now = self.now;
                if let Some(response) = self.core.http_get(path, &TransportStats::default(), now) {
                    if path.starts_with("/health") {
                        assert!(serde_json::from_slice::<Value>(&response.body).is_ok());
                    }
                }
            }
            op => {
                let Some(conn) = self.slots[slot] else {
                    return;
                };
                let (data, binary) = if op == 6 {
                    let len = usize::from(s.byte()) * 8;
                    let binary = s.byte() & 1 == 1;
                    (s.bytes(len).to_vec(), binary)
                } else {
                    (self.envelope(s), false)
                };
                // The reactor hands over text messages only when they are UTF-8.
                let binary = binary || std::str::from_utf8(&data).is_err();
                self.run(|core, now, out| core.on_message(conn, &data, binary, now, out));
            }
        }
    }
}

/// Runs one input: returns when it holds, panics when a check fails.
pub fn run(data: &[u8]) {
    let mut harness = Harness::new();
    let mut script = Script(data);
    while !script.0.is_empty() {
        harness.step(&mut script);
    }
}
