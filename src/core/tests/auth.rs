//! The auth matrix: token, password and none; failures, the limit and the close; the auth
//! timeout; the auth gate.

use super::*;
use crate::core::timers;

fn auth(h: &mut Harness, conn: ConnId, id: &str, payload: Value) -> Output {
    h.req(conn, "auth", id, payload)
}

#[test]
fn token_auth_succeeds_with_the_user_of_the_matching_token() {
    let mut h = Harness::new(token_config());
    let (conn, client_id) = h.open();
    let o = auth(
        &mut h,
        conn,
        "a1",
        json!({"token":"hunter2","clientId":"ignored"}),
    );
    assert_eq!(
        o.reply(conn, "auth_success", "a1"),
        &json!({"clientId": client_id, "userId": "bob"})
    );
    assert_eq!(
        o.events,
        [Event::ClientAuthenticated {
            client_id: client_id.clone(),
            user_id: "bob".into()
        }]
    );
    assert_eq!(h.core.authenticated_count(), 1);
    // Again, even with a wrong token: same identity, no event.
    let o = auth(&mut h, conn, "a2", json!({"token":"wrong"}));
    assert_eq!(
        o.reply(conn, "auth_success", "a2"),
        &json!({"clientId": client_id, "userId": "bob"})
    );
    assert!(o.events.is_empty());
    // Members carry the userId.
    let payload = h.create(conn, "room");
    assert_eq!(payload["members"][0]["userId"], "bob");
}

#[test]
fn the_gate_refuses_everything_but_auth_connect_ping() {
    let mut h = Harness::new(token_config());
    let (conn, _) = h.open();
    for (msg_type, payload) in [
        ("session_create", json!({})),
        ("session_join", json!({"sessionId":"x"})),
        ("chat", json!({})),
        ("agent_query", json!({})),
        ("route_request", json!({})),
        ("presence", json!({"status":"away"})),
    ] {
        let o = h.req(conn, msg_type, "g", payload);
        o.error(conn, "AUTH_REQUIRED", Some("g"));
        assert!(o.closes.is_empty());
    }
    let o = h.req(
        conn,
        "connect",
        "c",
        json!({"deviceId":"d","role":"node","protocolVersion":1}),
    );
    assert_eq!(o.reply(conn, "hello_ok", "c")["presence"], json!([]));
    assert_eq!(h.core.session_count(), 0);
}

#[test]
fn missing_credentials_are_auth_required_and_do_not_count() {
    let mut h = Harness::new(token_config());
    let (conn, _) = h.open();
    for payload in [
        json!({}),
        json!({"token":""}),
        json!({"token":null}),
        json!({"password":"secret"}),
    ] {
        let o = auth(&mut h, conn, "m", payload);
        o.error(conn, "AUTH_REQUIRED", Some("m"));
    }
    // Wrongly typed fields are invalid, not failures.
    let o = auth(&mut h, conn, "t", json!({"token": 5}));
    assert_eq!(
        o.error(conn, "INVALID_MESSAGE", Some("t"))["details"]["field"],
        "token"
    );
    for _ in 0..2 {
        auth(&mut h, conn, "f", json!({"token":"bad"})).error(conn, "AUTH_FAILED", Some("f"));
    }
    // Two failures so far: the third good try still works.
    let o = auth(&mut h, conn, "ok", json!({"token":"secret"}));
    o.reply(conn, "auth_success", "ok");
    assert!(o.closes.is_empty());
}

#[test]
fn the_last_failure_is_answered_then_the_connection_closes() {
    let mut h = Harness::new(token_config());
    let (conn, _) = h.open();
    for i in 0..2 {
        let o = auth(&mut h, conn, &format!("f{i}"), json!({"token":"bad"}));
        o.error(conn, "AUTH_FAILED", Some(&format!("f{i}")));
        assert!(o.closes.is_empty());
    }
    let o = auth(&mut h, conn, "f2", json!({"token":"bad"}));
    o.error(conn, "AUTH_FAILED", Some("f2"));
    assert_eq!(
        o.closes,
        [(conn, 1008, "Too many authentication failures".to_owned())]
    );
    assert_eq!(o.order, [("send", Some(conn)), ("close", Some(conn))]);
    // Anything after the close request is ignored.
    h.text(conn, r#"{"type":"ping","id":"p"}"#).silent();
    let o = h.close(conn, CloseReason::App(1008));
    assert!(matches!(
        &o.events[..],
        [Event::ClientDisconnected { reason, .. }] if reason == "app:1008"
    ));
}

#[test]
fn no_failure_limit_when_max_auth_failures_is_zero() {
    let mut h = Harness::new(Config {
        max_auth_failures: 0,
        ..token_config()
    });
    let (conn, _) = h.open();
    for _ in 0..10 {
        let o = auth(&mut h, conn, "f", json!({"token":"bad"}));
        o.error(conn, "AUTH_FAILED", Some("f"));
        assert!(o.closes.is_empty());
    }
}

#[test]
fn password_mode_uses_the_client_id_as_user() {
    let config = Config {
        auth_mode: AuthMode::Password,
        auth_password: Some("pw#1".into()),
        ..Config::default()
    };
    let mut h = Harness::new(config);
    let (a, a_id) = h.open();
    let o = auth(
        &mut h,
        a,
        "1",
        json!({"password":"pw#1","clientId":"carol","clientType":"ui"}),
    );
    assert_eq!(
        o.reply(a, "auth_success", "1"),
        &json!({"clientId": a_id, "userId": "carol"})
    );
    let (b, _) = h.open();
    let o = auth(&mut h, b, "2", json!({"password":"pw#1","clientId":""}));
    assert_eq!(o.reply(b, "auth_success", "2")["userId"], "anonymous");
    let (c, _) = h.open();
    auth(&mut h, c, "3", json!({"password":"nope"})).error(c, "AUTH_FAILED", Some("3"));
    auth(&mut h, c, "4", json!({"token":"pw#1"})).error(c, "AUTH_REQUIRED", Some("4"));
    let long = "x".repeat(129);
    let o = auth(&mut h, c, "5", json!({"password":"pw#1","clientId": long}));
    assert_eq!(
        o.error(c, "INVALID_MESSAGE", Some("5"))["details"]["field"],
        "clientId"
    );
}

#[test]
fn password_mode_without_a_password_refuses_everyone() {
    let mut h = Harness::new(Config {
        auth_mode: AuthMode::Password,
        ..Config::default()
    });
    let (c, _) = h.open();
    auth(&mut h, c, "1", json!({"password":"x"})).error(c, "AUTH_FAILED", Some("1"));
}

#[test]
fn mode_none_answers_auth_with_anonymous() {
    let mut h = Harness::new(none_config());
    let (conn, id) = h.open();
    let o = auth(&mut h, conn, "1", json!({}));
    assert_eq!(
        o.reply(conn, "auth_success", "1"),
        &json!({"clientId": id, "userId": "anonymous"})
    );
}

#[test]
fn the_auth_timer_closes_an_unauthenticated_connection() {
    let mut h = Harness::new(token_config());
    let (conn, _, opened) = h.open_full();
    let (at, token) = opened.timers[0];
    assert_eq!(token, timers::auth_timeout(conn));
    // Fired early (never happens, but harmless): nothing.
    h.timer(token).silent();
    assert!(h.timer(token).closes.is_empty());
    h.now = at;
    let o = h.timer(token);
    assert_eq!(
        o.closes,
        [(conn, 1008, "Authentication timeout".to_owned())]
    );
    // A second firing does nothing.
    assert!(h.timer(token).closes.is_empty());
}

#[test]
fn the_auth_timer_does_nothing_after_auth_or_for_a_stale_connection() {
    let mut h = Harness::new(token_config());
    let (a, _) = h.authed();
    let (b, _) = h.open();
    h.advance(60_000);
    let o = h.timer(timers::auth_timeout(a));
    assert!(o.closes.is_empty() && o.sent.is_empty());
    // Same slot, other generation.
    let stale = ConnId {
        index: b.index,
        generation: b.generation + 1,
    };
    assert!(h.timer(timers::auth_timeout(stale)).closes.is_empty());
    h.close(b, CloseReason::Peer(1000));
    assert!(h.timer(timers::auth_timeout(b)).closes.is_empty());
}

#[test]
fn no_auth_timer_when_the_timeout_is_zero() {
    let mut h = Harness::new(Config {
        auth_timeout_ms: 0,
        ..token_config()
    });
    let (_, _, o) = h.open_full();
    assert!(o.timers.is_empty());
}

#[test]
fn connect_replies_hello_ok_with_presence_of_authenticated_devices() {
    let mut h = Harness::new(token_config());
    let (a, a_id) = h.authed();
    h.advance(1500);
    let o = h.req(
        a,
        "connect",
        "c1",
        json!({"deviceId":"dev-a","deviceName":"Laptop","role":"control","protocolVersion":3}),
    );
    let hello = o.reply(a, "hello_ok", "c1");
    assert_eq!(
        hello,
        &json!({
            "clientId": a_id,
            "paired": true,
            "uptime": 1500,
            "stateVersion": 0,
            "protocolVersion": 1,
            "presence": [{"deviceId":"dev-a","role":"control","connectedAt": WALL0 + 1500}],
            "health": {"status":"ok","checkedAt": WALL0 + 1500},
            "authRequired": true
        })
    );
    // An unauthenticated device is not listed, and sees nothing.
    let (b, _) = h.open();
    let o = h.req(
        b,
        "connect",
        "c2",
        json!({"deviceId":"dev-b","role":"node","protocolVersion":1}),
    );
    assert_eq!(o.reply(b, "hello_ok", "c2")["presence"], json!([]));
    let (c, _) = h.authed();
    let o = h.req(
        c,
        "connect",
        "c3",
        json!({"deviceId":"dev-c","role":"webchat","protocolVersion":1}),
    );
    let devices: Vec<_> = o.reply(c, "hello_ok", "c3")["presence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["deviceId"].as_str().unwrap().to_owned())
        .collect();
    // The sender's own device first, then the others in connect order (PROTOCOL section 11).
    assert_eq!(devices, ["dev-c", "dev-a"]);
}

#[test]
fn connect_validates_its_fields() {
    let mut h = Harness::new(token_config());
    let (conn, _) = h.open();
    for (payload, field) in [
        (json!({"role":"control","protocolVersion":1}), "deviceId"),
        (
            json!({"deviceId":"","role":"control","protocolVersion":1}),
            "deviceId",
        ),
        (
            json!({"deviceId":7,"role":"control","protocolVersion":1}),
            "deviceId",
        ),
        (json!({"deviceId":"d","protocolVersion":1}), "role"),
        (
            json!({"deviceId":"d","role":"admin","protocolVersion":1}),
            "role",
        ),
        (json!({"deviceId":"d","role":"node"}), "protocolVersion"),
        (
            json!({"deviceId":"d","role":"node","protocolVersion":0}),
            "protocolVersion",
        ),
        (
            json!({"deviceId":"d","role":"node","protocolVersion":-1}),
            "protocolVersion",
        ),
        (
            json!({"deviceId":"d","role":"node","protocolVersion":1.5}),
            "protocolVersion",
        ),
        (
            json!({"deviceId":"d","role":"node","protocolVersion":"1"}),
            "protocolVersion",
        ),
        (
            json!({"deviceId":"d","deviceName":1,"role":"node","protocolVersion":1}),
            "deviceName",
        ),
    ] {
        let o = h.req(conn, "connect", "c", payload.clone());
        let err = o.error(conn, "INVALID_MESSAGE", Some("c"));
        assert_eq!(err["details"]["field"], field, "{payload}");
    }
}
