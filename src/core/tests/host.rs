//! The embedding program's side: commands, custom handlers, `/health` and `/metrics`.

use std::sync::{Arc, Mutex};

use super::*;
use crate::core::{ErrorCode, Message};

#[test]
fn commands_send_broadcast_and_kick() {
    let mut h = Harness::new(token_config());
    let (a, a_id) = h.authed();
    let (b, _) = h.authed();
    let (pending, pending_id) = h.open();
    h.create(a, "r");
    h.join(b, "r");
    let o = h.command(Command::SendToClient {
        client_id: pending_id.clone(),
        msg_type: "notice".into(),
        payload: json!({"n":1}),
    });
    let msg = o.one(pending);
    check_envelope(msg);
    assert_eq!(msg["type"], "notice");
    assert_eq!(msg["payload"], json!({"n":1}));
    assert!(msg.get("source").is_none() && msg.get("replyTo").is_none());
    h.command(Command::SendToClient {
        client_id: "nobody".into(),
        msg_type: "notice".into(),
        payload: json!({}),
    })
    .silent();
    let o = h.command(Command::BroadcastToSession {
        session_id: "r".into(),
        msg_type: "announcement".into(),
        payload: json!({"text":"hi"}),
    });
    assert_eq!(o.sent.len(), 2);
    assert_eq!(o.sent[0].staged_at, o.sent[1].staged_at);
    for conn in [a, b] {
        let msg = o.one(conn);
        assert_eq!(msg["type"], "announcement");
        assert_eq!(msg["sessionId"], "r");
        assert!(msg.get("source").is_none());
    }
    h.command(Command::BroadcastToSession {
        session_id: "none".into(),
        msg_type: "x".into(),
        payload: json!({}),
    })
    .silent();
    let o = h.command(Command::Kick {
        client_id: a_id.clone(),
        reason: None,
    });
    assert_eq!(o.closes, [(a, 1008, "Kicked".to_owned())]);
    // Kicking again while it closes does nothing; its messages are ignored.
    assert!(h
        .command(Command::Kick {
            client_id: a_id,
            reason: Some("again".into()),
        })
        .closes
        .is_empty());
    h.text(a, r#"{"type":"ping","id":"p"}"#).silent();
    let _ = pending;
}

#[test]
fn built_in_types_cannot_be_taken_over() {
    let mut h = Harness::new(token_config());
    assert!(!h.core.register_handler("ping", |_, _| {}));
    assert!(!h.core.register_handler("chat", |_, _| {}));
    assert!(!h.core.register_handler("", |_, _| {}));
    assert!(h.core.register_handler("custom", |_, _| {}));
    assert!(h.core.register_handler("custom", |_, _| {}));
}

#[test]
fn a_handler_sees_the_message_and_acts_through_its_context() {
    let mut h = Harness::new(token_config());
    let seen: Arc<Mutex<Vec<(String, String, Message)>>> = Arc::default();
    let log = seen.clone();
    assert!(h.core.register_handler("echo", move |ctx, msg| {
        log.lock().unwrap().push((
            ctx.client_id().to_owned(),
            ctx.user_id().to_owned(),
            msg.clone(),
        ));
        assert_eq!(ctx.request_id(), msg.id);
        ctx.reply("echo_ok", &msg.payload);
        let target = msg.payload["to"].as_str().unwrap_or("");
        let delivered = ctx.send_to(target, "poke", json!({"from": ctx.client_id()}));
        let n = ctx.broadcast("r", "room_news", json!({"v": 1}));
        ctx.error(
            ErrorCode::Forbidden,
            &format!("delivered={delivered} n={n}"),
        );
        if msg.payload["kick"] == true {
            let me = ctx.client_id().to_owned();
            assert!(ctx.kick(&me));
        }
    }));
    let (a, a_id) = h.authed();
    let (b, b_id) = h.authed();
    h.create(a, "r");
    h.join(b, "r");
    // Before auth the gate applies.
    let (c, _) = h.open();
    h.text(c, r#"{"type":"echo","id":"e0"}"#)
        .error(c, "AUTH_REQUIRED", Some("e0"));
    let o = h.req_with(
        a,
        "echo",
        "e1",
        json!({"to": b_id}),
        json!({"sessionId":"r"}),
    );
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let (client_id, user_id, msg) = &seen[0];
        assert_eq!(client_id, &a_id);
        assert_eq!(user_id, "alice");
        assert_eq!(
            msg,
            &Message {
                msg_type: "echo".into(),
                id: "e1".into(),
                payload: json!({"to": b_id}),
                session_id: Some("r".into()),
            }
        );
    }
    let to_a = o.to(a);
    assert_eq!(to_a.len(), 3, "{to_a:#?}");
    assert_eq!(to_a[0]["type"], "echo_ok");
    assert_eq!(to_a[0]["replyTo"], "e1");
    assert_eq!(to_a[0]["payload"], json!({"to": b_id}));
    assert_eq!(to_a[1]["type"], "room_news");
    assert_eq!(to_a[1]["sessionId"], "r");
    assert_eq!(to_a[2]["type"], "error");
    assert_eq!(to_a[2]["replyTo"], "e1");
    assert_eq!(to_a[2]["payload"]["code"], "FORBIDDEN");
    assert_eq!(to_a[2]["payload"]["message"], "delivered=true n=2");
    let to_b = o.to(b);
    assert_eq!(to_b.len(), 2);
    assert_eq!(to_b[0]["type"], "poke");
    assert_eq!(to_b[0]["payload"], json!({"from": a_id}));
    assert!(to_b[0].get("source").is_none());
    assert_eq!(to_b[1]["type"], "room_news");
    assert!(o.events.is_empty());
    let o = h.req(b, "echo", "e2", json!({"kick": true}));
    assert_eq!(o.closes, [(b, 1008, "Kicked".to_owned())]);
    // A payload that is too deep for a Value is refused before the handler runs.
    let deep = format!(
        r#"{{"type":"echo","id":"e3","payload":{{"d":{}{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    h.text(a, &deep).error(a, "INVALID_MESSAGE", Some("e3"));
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn a_reply_that_does_not_serialize_becomes_internal_error() {
    let mut h = Harness::new(none_config());
    h.core.register_handler("bad", |ctx, _| {
        let mut map = std::collections::BTreeMap::new();
        map.insert(vec![1u8], 1);
        ctx.reply("bad_ok", &map);
        assert!(!ctx.send_to("nobody", "x", json!({})));
    });
    let (a, _) = h.open();
    h.text(a, r#"{"type":"bad","id":"b"}"#)
        .error(a, "INTERNAL_ERROR", Some("b"));
}

#[test]
fn host_messages_need_a_type_and_an_object_payload() {
    let mut h = Harness::new(token_config());
    let (a, a_id) = h.authed();
    h.create(a, "r");
    for (msg_type, payload) in [
        ("", json!({})),
        ("t", json!(null)),
        ("t", json!([1])),
        ("t", json!("s")),
    ] {
        h.command(Command::SendToClient {
            client_id: a_id.clone(),
            msg_type: msg_type.into(),
            payload: payload.clone(),
        })
        .silent();
        h.command(Command::BroadcastToSession {
            session_id: "r".into(),
            msg_type: msg_type.into(),
            payload,
        })
        .silent();
    }
    h.core.register_handler("odd", |ctx, _| {
        assert_eq!(ctx.broadcast("r", "t", json!(7)), 0);
        ctx.reply("", json!({}));
    });
    h.text(a, r#"{"type":"odd","id":"o"}"#)
        .error(a, "INTERNAL_ERROR", Some("o"));
}

fn stats() -> TransportStats {
    TransportStats {
        open_connections: 2,
        sockets: 3,
        connections_accepted: 5,
        connections_closed: [1, 0, 0, 2, 0, 0, 0],
        handshake_refusals: vec![(403, 4)],
        handshake_timeouts: 1,
        bytes_in: 1000,
        bytes_out: 2000,
        bytes_queued: 64,
        events_dropped: 7,
        timers_pending: 3,
        ..TransportStats::default()
    }
}

#[test]
fn health_reports_counts_and_times() {
    let mut h = Harness::new(token_config());
    let (a, _) = h.authed();
    h.open();
    h.create(a, "r");
    h.req(
        a,
        "agent_register",
        "r",
        json!({"type":"cli","name":"n","capabilities":{}}),
    );
    h.advance(2500);
    let resp = h.http("/health", &stats()).expect("served");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.content_type, "application/json");
    let body: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(
        body,
        json!({"status":"ok","service":"gateway","timestamp": WALL0 + 2500,"uptime":2500,
               "clients":2,"sessions":1,"agents":1})
    );
    assert!(h.http("/health?x=1", &stats()).is_some());
    assert!(h.http("/other", &stats()).is_none());
    assert!(h.http("/", &stats()).is_none());
}

#[test]
fn metrics_count_messages_errors_and_transport_numbers() {
    let mut h = Harness::new(token_config());
    let (a, _) = h.authed();
    let (b, _) = h.open();
    h.text(a, r#"{"type":"ping","id":"1"}"#);
    h.text(a, r#"{"type":"ping","id":"2"}"#);
    h.text(a, r#"{"type":"mystery_1","id":"3"}"#);
    h.text(a, r#"{"type":"mystery_2","id":"4"}"#);
    h.text(a, "not json");
    h.text(b, r#"{"type":"session_create","id":"5"}"#);
    let resp = h.http("/metrics", &stats()).expect("served");
    assert_eq!(resp.status, 200);
    assert!(resp.content_type.starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(resp.body).unwrap();
    for line in [
        "gateway_connections_open 2",
        "gateway_clients 2",
        "gateway_clients_authenticated 1",
        "gateway_sessions 0",
        "gateway_agents 0",
        "gateway_output_queued_bytes 64",
        "gateway_connections_accepted_total 5",
        "gateway_connections_closed_total{reason=\"peer\"} 1",
        "gateway_connections_closed_total{reason=\"timeout\"} 2",
        "gateway_handshake_refusals_total{status=\"403\"} 4",
        "gateway_messages_in_total{type=\"ping\"} 2",
        "gateway_messages_in_total{type=\"auth\"} 1",
        "gateway_messages_in_total{type=\"other\"} 2",
        "gateway_messages_in_total{type=\"invalid\"} 1",
        "gateway_messages_out_total{type=\"pong\"} 2",
        "gateway_messages_out_total{type=\"session_info\"} 2",
        "gateway_messages_out_total{type=\"auth_success\"} 1",
        "gateway_messages_out_total{type=\"error\"} 4",
        "gateway_bytes_in_total 1000",
        "gateway_bytes_out_total 2000",
        "gateway_errors_total{code=\"UNKNOWN_TYPE\"} 2",
        "gateway_errors_total{code=\"PARSE_ERROR\"} 1",
        "gateway_errors_total{code=\"AUTH_REQUIRED\"} 1",
        "gateway_events_dropped_total 7",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
    assert!(!text.contains("mystery"));
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("gateway_"), "{line}");
    }
}

#[test]
fn http_endpoints_can_be_switched_off() {
    let mut h = Harness::new(Config {
        http_endpoints: false,
        ..token_config()
    });
    assert!(h.http("/health", &stats()).is_none());
    assert!(h.http("/metrics", &stats()).is_none());
}
