//! The connection lifecycle of PROTOCOL section 3 over real sockets: the welcome, the auth
//! gate, the auth timeout and failure limit, the three auth modes, and the cleanup when a
//! client disconnects.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn is_uuid_v4(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    lengths == [8, 4, 4, 4, 12]
        && id
            .chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c))
        && groups[2].starts_with('4')
        && groups[3].starts_with(['8', '9', 'a', 'b'])
}

fn close_of(client: &mut Client) -> (u16, String) {
    let frame = client.expect_close().expect("close frame");
    (u16::from(frame.code), frame.reason.as_str().to_string())
}

#[test]
fn welcome_names_the_client_and_the_auth_setting() {
    let gw = TestGateway::start(test_config());
    let before = now_ms();
    let a = Client::connect(&gw);
    let b = Client::connect(&gw);

    let welcome = &a.welcome;
    assert_eq!(welcome["type"], "session_info");
    assert!(
        welcome["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{welcome}"
    );
    assert!(welcome.get("replyTo").is_none(), "{welcome}");
    let ts = welcome["timestamp"].as_u64().expect("timestamp");
    assert!(ts + 1000 >= before && ts <= now_ms() + 1000, "{welcome}");
    let payload = welcome["payload"].as_object().expect("payload object");
    let mut keys: Vec<&str> = payload.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["authRequired", "clientId", "sessionId", "status"]);
    assert_eq!(payload["status"], "connected");
    assert_eq!(payload["authRequired"], true);
    assert_eq!(payload["sessionId"], payload["clientId"]);
    assert!(is_uuid_v4(&a.client_id), "{}", a.client_id);
    assert!(is_uuid_v4(&b.client_id), "{}", b.client_id);
    assert_ne!(a.client_id, b.client_id);
    assert_ne!(a.welcome["id"], b.welcome["id"]);

    let open = TestGateway::start(no_auth_config());
    let c = Client::connect(&open);
    assert_eq!(c.welcome["payload"]["authRequired"], false, "{}", c.welcome);
}

#[test]
fn only_auth_connect_and_ping_pass_the_gate() {
    let gw = TestGateway::start(test_config());
    let mut client = Client::connect(&gw);

    let gated = [
        ("session_create", json!({"sessionId": "room"})),
        ("session_join", json!({"sessionId": "room"})),
        ("session_leave", json!({"sessionId": "room"})),
        ("session_patch", json!({"sessionKey": "room", "patch": {}})),
        ("presence", json!({"status": "online"})),
        ("chat", json!({"text": "hi"})),
        ("broadcast", json!({})),
        ("route_request", json!({})),
        (
            "agent_register",
            json!({"type": "cli", "name": "x", "capabilities": {}}),
        ),
        ("agent_query", json!({})),
        ("no_such_type", json!({})),
    ];
    for (msg_type, payload) in gated {
        let reply = client.request_error(msg_type, payload, "AUTH_REQUIRED");
        assert!(reply["payload"]["message"].is_string());
    }
    let relayed = client
        .request_envelope(json!({"type": "chat", "sessionId": "room", "payload": {"text": "hi"}}));
    assert_error(&relayed, "AUTH_REQUIRED");

    let pong = client.request("ping", json!({}));
    assert_eq!(pong["type"], "pong");
    let hello = client.request(
        "connect",
        json!({"deviceId": "d-1", "role": "control", "protocolVersion": 1}),
    );
    assert_eq!(hello["type"], "hello_ok", "{hello}");
    assert_eq!(hello["payload"]["presence"], json!([]), "{hello}");

    assert_eq!(gw.health()["sessions"], 0, "nothing gated was handled");
    let ok = client.request("auth", json!({"token": TOKEN}));
    assert_eq!(ok["type"], "auth_success");
    let created = client.request("session_create", json!({"sessionId": "room"}));
    assert_eq!(created["payload"]["status"], "created", "{created}");
}

#[test]
fn auth_success_carries_the_connection_and_the_token_user() {
    let gw = TestGateway::start(test_config());
    for (token, user) in [(TOKEN, "alice"), (TOKEN_BOB, "bob")] {
        let mut client = Client::connect(&gw);
        let reply = client.request(
            "auth",
            json!({"token": token, "clientId": "ignored-in-token-mode", "clientType": "cli"}),
        );
        assert_eq!(reply["type"], "auth_success", "{reply}");
        assert_eq!(
            reply["payload"],
            json!({"clientId": client.client_id, "userId": user})
        );
    }
}

#[test]
fn auth_after_success_keeps_the_identity() {
    let gw = TestGateway::start(test_config());
    let mut client = Client::authed(&gw, TOKEN);
    let expected = json!({"clientId": client.client_id, "userId": "alice"});
    for payload in [
        json!({"token": TOKEN_BOB}),
        json!({"token": "wrong"}),
        json!({"token": "wrong"}),
        json!({"token": "wrong"}),
        json!({}),
    ] {
        let reply = client.request("auth", payload);
        assert_eq!(reply["type"], "auth_success", "{reply}");
        assert_eq!(reply["payload"], expected);
    }
    client.request("session_create", json!({"sessionId": "s"}));
    let created = client.request("session_join", json!({"sessionId": "s"}));
    assert_eq!(
        created["payload"]["members"],
        json!([{"clientId": client.client_id, "userId": "alice"}])
    );
}

#[test]
fn unauthenticated_connection_is_closed_at_the_auth_timeout() {
    let mut config = test_config();
    config.auth_timeout_ms = 300;
    let gw = TestGateway::start(config);
    let started = Instant::now();
    let mut idle = Client::connect(&gw);
    let mut authed = Client::authed(&gw, TOKEN);

    let pong = idle.request("ping", json!({}));
    assert_eq!(pong["type"], "pong", "pings do not authenticate");
    assert_eq!(
        close_of(&mut idle),
        (1008, "Authentication timeout".to_string())
    );
    assert!(started.elapsed() >= Duration::from_millis(290));

    let until = started + Duration::from_millis(700);
    while Instant::now() < until {
        authed.expect_silence(Duration::from_millis(100));
    }
    assert_eq!(authed.request("ping", json!({}))["type"], "pong");
    assert!(eventually(|| gw.health()["clients"] == 1));
}

#[test]
fn third_auth_failure_is_answered_then_closed() {
    let gw = TestGateway::start(test_config());
    let mut client = Client::connect(&gw);
    for _ in 0..2 {
        client.request_error("auth", json!({"token": "wrong"}), "AUTH_FAILED");
        assert_eq!(client.request("ping", json!({}))["type"], "pong");
    }
    client.request_error("auth", json!({"token": "also-wrong"}), "AUTH_FAILED");
    assert_eq!(
        close_of(&mut client),
        (1008, "Too many authentication failures".to_string())
    );
    assert!(eventually(|| gw.health()["clients"] == 0));
}

#[test]
fn failure_limit_follows_the_config() {
    let mut config = test_config();
    config.max_auth_failures = 1;
    let gw = TestGateway::start(config);
    let mut client = Client::connect(&gw);
    client.request_error("auth", json!({"token": "wrong"}), "AUTH_FAILED");
    assert_eq!(close_of(&mut client).0, 1008);
}

#[test]
fn missing_credentials_are_not_counted_as_failures() {
    let gw = TestGateway::start(test_config());
    let mut client = Client::connect(&gw);
    client.request_error("auth", json!({"token": "wrong"}), "AUTH_FAILED");
    for payload in [
        json!({}),
        json!({"token": ""}),
        json!({"password": TOKEN}),
        json!({"token": null}),
        json!({"clientId": "alice"}),
    ] {
        client.request_error("auth", payload, "AUTH_REQUIRED");
    }
    client.request_error("auth", json!({"token": "wrong"}), "AUTH_FAILED");
    let reply = client.request("auth", json!({"token": TOKEN}));
    assert_eq!(reply["type"], "auth_success", "{reply}");
    assert_eq!(reply["payload"]["userId"], "alice");
}

#[test]
fn auth_field_of_the_wrong_type_is_invalid() {
    let gw = TestGateway::start(test_config());
    let mut client = Client::connect(&gw);
    let reply = client.request_error("auth", json!({"token": 42}), "INVALID_MESSAGE");
    assert_eq!(reply["payload"]["details"]["field"], "token", "{reply}");
    let reply = client.request("auth", json!({"token": TOKEN}));
    assert_eq!(reply["type"], "auth_success", "{reply}");
}

#[test]
fn password_mode_takes_the_user_from_client_id() {
    let gw = TestGateway::start(password_config("open sesame"));
    let mut carol = Client::connect(&gw);
    assert_eq!(carol.welcome["payload"]["authRequired"], true);
    carol.request_error("auth", json!({"token": "open sesame"}), "AUTH_REQUIRED");
    carol.request_error("auth", json!({"password": "wrong"}), "AUTH_FAILED");
    let reply = carol.request(
        "auth",
        json!({"password": "open sesame", "clientId": "carol"}),
    );
    assert_eq!(reply["type"], "auth_success", "{reply}");
    assert_eq!(
        reply["payload"],
        json!({"clientId": carol.client_id, "userId": "carol"})
    );

    let mut anon = Client::connect(&gw);
    let reply = anon.request("auth", json!({"password": "open sesame"}));
    assert_eq!(
        reply["payload"],
        json!({"clientId": anon.client_id, "userId": "anonymous"})
    );

    carol.request("session_create", json!({"sessionId": "pw"}));
    let joined = anon.request("session_join", json!({"sessionId": "pw"}));
    assert_eq!(
        joined["payload"]["members"],
        json!([
            {"clientId": carol.client_id, "userId": "carol"},
            {"clientId": anon.client_id, "userId": "anonymous"},
        ])
    );
}

#[test]
fn none_mode_authenticates_everyone_as_anonymous() {
    let gw = TestGateway::start(no_auth_config());
    let mut a = Client::connect(&gw);
    let created = a.request("session_create", json!({"sessionId": "open"}));
    assert_eq!(created["payload"]["status"], "created", "{created}");
    assert_eq!(
        created["payload"]["members"],
        json!([{"clientId": a.client_id, "userId": "anonymous"}])
    );
    let hello = a.request(
        "connect",
        json!({"deviceId": "dev-a", "role": "node", "protocolVersion": 1}),
    );
    assert_eq!(hello["payload"]["authRequired"], false, "{hello}");
    let presence = hello["payload"]["presence"].as_array().expect("presence");
    assert_eq!(presence.len(), 1, "{hello}");
    assert_eq!(presence[0]["deviceId"], "dev-a");
    let reply = a.request("auth", json!({"token": "anything"}));
    assert_eq!(
        reply["payload"],
        json!({"clientId": a.client_id, "userId": "anonymous"})
    );
}

#[test]
fn disconnect_leaves_every_session_and_tells_the_others() {
    let gw = TestGateway::start(test_config());
    let mut group = session_group(&gw, "room", 3);
    let mut c = group.pop().unwrap();
    let mut b = group.pop().unwrap();
    let mut a = group.pop().unwrap();
    a.request("session_create", json!({"sessionId": "side"}));
    c.request("session_join", json!({"sessionId": "side"}));
    a.recv_type("presence");
    let registered = c.request(
        "agent_register",
        json!({"agentId": "c-agent", "type": "cli", "name": "C", "capabilities": {}}),
    );
    assert_eq!(
        registered["payload"]["status"], "registered",
        "{registered}"
    );
    assert_eq!(gw.health()["sessions"], 2);
    assert_eq!(gw.health()["clients"], 3);

    let c_id = c.client_id.clone();
    drop(c);

    let mut seen_by_a: Vec<String> = Vec::new();
    for _ in 0..2 {
        let left = a.recv_type("presence");
        assert_eq!(left["payload"]["status"], "left", "{left}");
        assert_eq!(left["payload"]["clientId"], c_id.as_str());
        assert_eq!(left["payload"]["userId"], "alice");
        assert!(left["payload"]["timestamp"].is_u64(), "{left}");
        assert_eq!(left["sessionId"], left["payload"]["sessionId"]);
        assert!(left.get("source").is_none(), "{left}");
        seen_by_a.push(left["payload"]["sessionId"].as_str().unwrap().to_string());
    }
    seen_by_a.sort();
    assert_eq!(seen_by_a, ["room", "side"]);
    let left = b.recv_type("presence");
    assert_eq!(left["payload"]["status"], "left");
    assert_eq!(left["payload"]["clientId"], c_id.as_str());
    assert_eq!(left["payload"]["sessionId"], "room");
    assert_eq!(gw.health()["clients"], 2);

    let agents = a.request("agent_query", json!({}));
    let agent = &agents["payload"]["agents"][0];
    assert_eq!(agent["agentId"], "c-agent", "{agents}");
    assert_eq!(agent["status"], "offline", "{agents}");
    assert!(agent["clientId"].is_null(), "{agents}");

    let a_id = a.client_id.clone();
    a.close_cleanly();
    let left = b.recv_type("presence");
    assert_eq!(left["payload"]["status"], "left");
    assert_eq!(left["payload"]["clientId"], a_id.as_str());
    assert!(eventually(|| {
        let health = gw.health();
        health["clients"] == 1 && health["sessions"] == 1
    }));
    b.expect_silence(Duration::from_millis(100));

    let mut d = Client::authed(&gw, TOKEN_BOB);
    d.request_error(
        "session_join",
        json!({"sessionId": "side"}),
        "SESSION_NOT_FOUND",
    );
    drop(b);
    assert!(eventually(|| {
        let health = gw.health();
        health["clients"] == 1 && health["sessions"] == 0
    }));
    d.request_error(
        "session_join",
        json!({"sessionId": "room"}),
        "SESSION_NOT_FOUND",
    );
    let health: Value = gw.health();
    assert_eq!(health["clients"], 1);
}

#[test]
fn nothing_after_the_failure_that_closes_is_handled() {
    let gw = TestGateway::start(test_config());
    let mut client = Client::connect(&gw);
    let wrong = |id: &str| json!({"type": "auth", "id": id, "payload": {"token": "wrong"}});
    client.send_batch(&[
        wrong("f1"),
        wrong("f2"),
        wrong("f3"),
        json!({"type": "ping", "id": "late-ping"}),
        json!({"type": "auth", "id": "late-auth", "payload": {"token": TOKEN}}),
    ]);
    for id in ["f1", "f2", "f3"] {
        let reply = client.recv();
        assert_error(&reply, "AUTH_FAILED");
        assert_eq!(reply["replyTo"], id);
    }
    match client.ws.read() {
        Ok(tungstenite::Message::Close(Some(frame))) => {
            assert_eq!(u16::from(frame.code), 1008);
            assert_eq!(frame.reason.as_str(), "Too many authentication failures");
        }
        other => panic!("expected the close right after the third failure, got {other:?}"),
    }
}

#[test]
fn no_auth_timeout_when_auth_is_off() {
    let mut config = no_auth_config();
    config.auth_timeout_ms = 100;
    let gw = TestGateway::start(config);
    let mut client = Client::connect(&gw);
    let until = Instant::now() + Duration::from_millis(400);
    while Instant::now() < until {
        client.expect_silence(Duration::from_millis(100));
    }
    assert_eq!(client.request("ping", json!({}))["type"], "pong");
}
