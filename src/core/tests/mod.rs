//! Tests of [`GatewayCore`] through the [`App`] trait: a harness opens fake connections,
//! feeds JSON text, and decodes the actions pushed.

mod agents;
mod auth;
mod host;
mod jwt;
mod limits;
mod reload;
mod routing;
mod sessions;
mod soup;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Command, Event, GatewayCore};
use crate::app::{Action, Actions, App, CloseReason, ConnId, HttpResponse, TransportStats};
use crate::config::{AuthMode, AuthToken, Config};

/// Start of the fake wall clock: 2025-11-27T00:00:00Z.
const WALL0: u64 = 1_764_201_600_000;

/// A config with two tokens: `alice:secret` and `bob:hunter2`.
fn token_config() -> Config {
    Config {
        auth_tokens: vec![
            AuthToken {
                user: "alice".into(),
                secret: "secret".into(),
            },
            AuthToken {
                user: "bob".into(),
                secret: "hunter2".into(),
            },
        ],
        ..Config::default()
    }
}

fn none_config() -> Config {
    Config {
        auth_mode: AuthMode::None,
        ..Config::default()
    }
}

/// One message sent by the core, decoded.
#[derive(Clone, Debug)]
struct Sent {
    conn: ConnId,
    msg: Value,
    staged_at: std::ops::Range<usize>,
}

/// Everything one call pushed, decoded.
#[derive(Debug, Default)]
struct Output {
    sent: Vec<Sent>,
    closes: Vec<(ConnId, u16, String)>,
    events: Vec<Event>,
    timers: Vec<(Instant, u64)>,
    /// Every action in order, as a short tag: `send`, `close`, `emit`, `timer`.
    order: Vec<(&'static str, Option<ConnId>)>,
}

impl Output {
    fn decode(out: &Actions<Event>) -> Output {
        let mut o = Output::default();
        for action in out.list() {
            match action {
                Action::Send { conn, msg } => {
                    let bytes = out.bytes(msg);
                    let value: Value = serde_json::from_slice(bytes).unwrap_or_else(|e| {
                        panic!(
                            "core sent invalid JSON ({e}): {}",
                            String::from_utf8_lossy(bytes)
                        )
                    });
                    assert!(!msg.is_binary(), "core sends text");
                    let start = bytes.as_ptr() as usize;
                    o.sent.push(Sent {
                        conn: *conn,
                        msg: value,
                        staged_at: start..start + bytes.len(),
                    });
                    o.order.push(("send", Some(*conn)));
                }
                Action::Close { conn, code, reason } => {
                    o.closes.push((*conn, *code, reason.to_string()));
                    o.order.push(("close", Some(*conn)));
                }
                Action::Emit(event) => {
                    o.events.push(event.clone());
                    o.order.push(("emit", None));
                }
                Action::RaiseLimit { .. }
                | Action::ShareTurn { .. }
                | Action::SetLimits(_)
                | Action::LinkConnect { .. }
                | Action::LinkSend { .. }
                | Action::LinkClose { .. } => {}
                Action::Timer { at, token } => {
                    o.timers.push((*at, *token));
                    o.order.push(("timer", None));
                }
            }
        }
        o
    }

    /// Every message sent to `conn`.
    fn to(&self, conn: ConnId) -> Vec<&Value> {
        self.sent
            .iter()
            .filter(|s| s.conn == conn)
            .map(|s| &s.msg)
            .collect()
    }

    /// The one message sent to `conn`.
    fn one(&self, conn: ConnId) -> &Value {
        let to = self.to(conn);
        assert_eq!(to.len(), 1, "expected one message to {conn:?}, got {to:#?}");
        to[0]
    }

    /// The one message of this call, sent to `conn`, checked as a reply of `msg_type` to
    /// `request_id`.
    fn reply(&self, conn: ConnId, msg_type: &str, request_id: &str) -> &Value {
        assert_eq!(
            self.sent.len(),
            1,
            "expected exactly one message, got {:#?}",
            self.sent
        );
        let msg = self.one(conn);
        assert_eq!(msg["type"], msg_type, "{msg:#}");
        assert_eq!(msg["replyTo"], request_id, "{msg:#}");
        check_envelope(msg);
        &msg["payload"]
    }

    /// The one message of this call is an `error` to `conn` with `code` and `replyTo`.
    fn error(&self, conn: ConnId, code: &str, request_id: Option<&str>) -> &Value {
        assert_eq!(
            self.sent.len(),
            1,
            "expected exactly one message, got {:#?}",
            self.sent
        );
        let msg = self.one(conn);
        assert_eq!(msg["type"], "error", "{msg:#}");
        assert_eq!(msg["payload"]["code"], code, "{msg:#}");
        assert!(msg["payload"]["message"].is_string());
        match request_id {
            Some(id) => assert_eq!(msg["replyTo"], id, "{msg:#}"),
            None => assert!(msg.get("replyTo").is_none(), "{msg:#}"),
        }
        check_envelope(msg);
        &msg["payload"]
    }

    /// Nothing was sent.
    fn silent(&self) {
        assert!(
            self.sent.is_empty(),
            "expected nothing, got {:#?}",
            self.sent
        );
    }
}

/// Fields every outgoing envelope has.
fn check_envelope(msg: &Value) {
    assert!(msg["type"].as_str().is_some_and(|t| !t.is_empty()), "{msg}");
    assert!(msg["id"].as_str().is_some_and(|t| !t.is_empty()), "{msg}");
    assert!(
        msg["payload"].is_object() || msg["payload"].is_array(),
        "{msg}"
    );
    assert!(
        msg["timestamp"].as_u64().is_some_and(|t| t >= WALL0),
        "{msg}"
    );
}

/// A fake reactor around one core.
struct Harness {
    core: GatewayCore,
    t0: Instant,
    now: Instant,
    next_index: u32,
    out: Actions<Event>,
    auth_required: bool,
}

impl Harness {
    fn new(config: Config) -> Self {
        let t0 = Instant::now();
        Harness {
            core: GatewayCore::new(&config, t0, WALL0),
            t0,
            now: t0,
            next_index: 0,
            out: Actions::new(),
            auth_required: config.auth_mode != AuthMode::None,
        }
    }

    fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
    }

    fn run(&mut self, f: impl FnOnce(&mut GatewayCore, Instant, &mut Actions<Event>)) -> Output {
        self.out.clear();
        f(&mut self.core, self.now, &mut self.out);
        Output::decode(&self.out)
    }

    /// Open a connection; returns it, its clientId and what on_open pushed.
    fn open_full(&mut self) -> (ConnId, String, Output) {
        let conn = ConnId {
            index: self.next_index,
            generation: 7,
        };
        self.next_index += 1;
        let o = self.run(|core, now, out| core.on_open(conn, now, out));
        let welcome = o.one(conn).clone();
        let client_id = welcome["payload"]["clientId"].as_str().unwrap().to_owned();
        (conn, client_id, o)
    }

    fn open(&mut self) -> (ConnId, String) {
        let (conn, id, _) = self.open_full();
        (conn, id)
    }

    /// Open and authenticate with `alice`'s token (or nothing in auth mode none).
    fn authed(&mut self) -> (ConnId, String) {
        let (conn, id) = self.open();
        if self.auth_required {
            let o = self.text(
                conn,
                r#"{"type":"auth","id":"a1","payload":{"token":"secret"}}"#,
            );
            o.reply(conn, "auth_success", "a1");
        }
        (conn, id)
    }

    fn text(&mut self, conn: ConnId, text: &str) -> Output {
        self.run(|core, now, out| core.on_message(conn, text.as_bytes(), false, now, out))
    }

    fn binary(&mut self, conn: ConnId, data: &[u8]) -> Output {
        self.run(|core, now, out| core.on_message(conn, data, true, now, out))
    }

    /// Send `{"type","id","payload"}` (plus any extra envelope fields in `extra`).
    fn req(&mut self, conn: ConnId, msg_type: &str, id: &str, payload: Value) -> Output {
        self.req_with(conn, msg_type, id, payload, json!({}))
    }

    fn req_with(
        &mut self,
        conn: ConnId,
        msg_type: &str,
        id: &str,
        payload: Value,
        extra: Value,
    ) -> Output {
        let mut msg = json!({"type": msg_type, "id": id, "payload": payload});
        if let (Value::Object(m), Value::Object(e)) = (&mut msg, extra) {
            m.extend(e);
        }
        let text = msg.to_string();
        self.text(conn, &text)
    }

    fn close(&mut self, conn: ConnId, reason: CloseReason) -> Output {
        self.run(|core, now, out| core.on_close(conn, reason, now, out))
    }

    fn timer(&mut self, token: u64) -> Output {
        self.run(|core, now, out| core.on_timer(token, now, out))
    }

    fn command(&mut self, cmd: Command) -> Output {
        self.run(|core, now, out| core.on_command(cmd, now, out))
    }

    fn http(&mut self, path: &str, stats: &TransportStats) -> Option<HttpResponse> {
        let now = self.now;
        self.core.http_get(path, stats, now)
    }

    /// Create (or join) session `id` as `conn`; returns the reply payload.
    fn create(&mut self, conn: ConnId, id: &str) -> Value {
        let o = self.req(conn, "session_create", "sc", json!({"sessionId": id}));
        o.reply(conn, "session_info", "sc").clone()
    }

    /// Join session `id` as `conn`; returns the whole output.
    fn join(&mut self, conn: ConnId, id: &str) -> Output {
        self.req(conn, "session_join", "sj", json!({"sessionId": id}))
    }

    /// The `stateVersion` a `connect` reports now.
    fn state_version(&mut self, conn: ConnId) -> u64 {
        let o = self.req(
            conn,
            "connect",
            "sv",
            json!({"deviceId":"d","role":"control","protocolVersion":1}),
        );
        o.reply(conn, "hello_ok", "sv")["stateVersion"]
            .as_u64()
            .unwrap()
    }
}

#[test]
fn welcome_in_token_mode_arms_the_auth_timer() {
    let mut h = Harness::new(token_config());
    let (conn, client_id, o) = h.open_full();
    let welcome = o.one(conn);
    check_envelope(welcome);
    assert_eq!(welcome["type"], "session_info");
    assert!(welcome.get("replyTo").is_none());
    assert_eq!(
        welcome["payload"],
        json!({"sessionId": client_id, "clientId": client_id, "status": "connected", "authRequired": true})
    );
    assert!(uuid::Uuid::parse_str(&client_id).is_ok_and(|u| u.get_version_num() == 4));
    assert_eq!(o.timers.len(), 1);
    assert_eq!(o.timers[0].0, h.t0 + Duration::from_millis(10_000));
    assert_eq!(
        o.events,
        [Event::ClientConnected {
            client_id: client_id.clone()
        }]
    );
    assert_eq!(h.core.client_count(), 1);
    assert_eq!(h.core.client_id_of(conn), Some(client_id.as_str()));
    let (_, other) = h.open();
    assert_ne!(other, client_id);
}

#[test]
fn welcome_in_mode_none_is_authenticated_at_once() {
    let mut h = Harness::new(none_config());
    let (conn, client_id, o) = h.open_full();
    assert_eq!(o.one(conn)["payload"]["authRequired"], false);
    assert!(o.timers.is_empty());
    assert_eq!(
        o.events,
        [
            Event::ClientConnected {
                client_id: client_id.clone()
            },
            Event::ClientAuthenticated {
                client_id: client_id.clone(),
                user_id: "anonymous".into()
            }
        ]
    );
    assert_eq!(h.core.authenticated_count(), 1);
    let payload = h.create(conn, "r");
    assert_eq!(
        payload["members"],
        json!([{"clientId": client_id, "userId": "anonymous"}])
    );
}

#[test]
fn ping_answers_pong_before_auth() {
    let mut h = Harness::new(token_config());
    let (conn, client_id) = h.open();
    let o = h.text(conn, r#"{"type":"ping","id":"p-1"}"#);
    assert_eq!(
        o.reply(conn, "pong", "p-1"),
        &json!({"clientId": client_id})
    );
    let o = h.text(
        conn,
        r#"{"type":"ping","id":"p-2","payload":{"x":[1,2]},"timestamp":1}"#,
    );
    assert_eq!(
        o.reply(conn, "pong", "p-2"),
        &json!({"clientId": client_id})
    );
}

#[test]
fn outgoing_ids_are_unique_and_timestamps_follow_the_clock() {
    let mut h = Harness::new(none_config());
    let (a, _) = h.open();
    let (b, _) = h.open();
    h.create(a, "r");
    h.join(b, "r");
    let mut ids = std::collections::HashSet::new();
    for i in 0..50 {
        h.advance(3);
        let o = h.req(a, "ping", &format!("p{i}"), json!({}));
        let msg = o.one(a);
        assert!(ids.insert(msg["id"].as_str().unwrap().to_owned()));
        assert_eq!(msg["timestamp"], WALL0 + 3 * (i + 1));
        let o = h.req_with(a, "chat", "same", json!({}), json!({"sessionId":"r"}));
        assert!(ids.insert(o.one(b)["id"].as_str().unwrap().to_owned()));
    }
}

#[test]
fn unknown_types_get_unknown_type_and_an_event() {
    let mut h = Harness::new(token_config());
    let (conn, client_id) = h.open();
    let o = h.text(conn, r#"{"type":"frobnicate","id":"f1"}"#);
    o.error(conn, "AUTH_REQUIRED", Some("f1"));
    assert!(o.events.is_empty());
    h.text(
        conn,
        r#"{"type":"auth","id":"a","payload":{"token":"secret"}}"#,
    );
    let o = h.text(conn, r#"{"type":"frobnicate","id":"f2","payload":{"k":1}}"#);
    o.error(conn, "UNKNOWN_TYPE", Some("f2"));
    assert_eq!(
        o.events,
        [Event::UnhandledMessage {
            client_id,
            msg_type: "frobnicate".into(),
            message: r#"{"type":"frobnicate","id":"f2","payload":{"k":1}}"#.into(),
        }]
    );
}

#[test]
fn state_version_counts_session_and_agent_changes() {
    let mut h = Harness::new(none_config());
    let (a, _) = h.open();
    let (b, _) = h.open();
    assert_eq!(h.state_version(a), 0);
    h.create(a, "r"); // +1
    h.join(b, "r"); // +1
    h.join(b, "r"); // no-op
    h.req(
        a,
        "session_patch",
        "p",
        json!({"sessionKey":"r","patch":{"k":1}}),
    ); // +1
    h.req(b, "session_leave", "l", json!({"sessionId":"r"})); // +1
    assert_eq!(h.state_version(a), 4);
    h.req(
        a,
        "agent_register",
        "ar",
        json!({"type":"cli","name":"n","capabilities":{}}),
    ); // +1
    h.req(a, "agent_heartbeat", "ah", json!({})); // +1
    h.req(a, "agent_query", "aq", json!({})); // none
    assert_eq!(h.state_version(a), 6);
    h.close(a, CloseReason::Reset); // session removed +1, agent offline +1
    assert_eq!(h.state_version(b), 8);
    assert_eq!(h.core.state_version(), 8);
}
