//! PROTOCOL section 11 over real sockets: what one user's connections may hold, what an
//! `auth` may cost, and what a connection may store before it authenticates.

mod common;

use common::*;
use gateway::AuthMode;
use serde_json::json;

#[test]
fn an_auth_past_max_connections_per_user_is_refused_and_the_connection_kept() {
    let mut config = test_config();
    config.max_connections_per_user = 2;
    let gw = TestGateway::start(config);
    let first = Client::authed(&gw, TOKEN);
    let _second = Client::authed(&gw, TOKEN);

    let mut third = Client::connect(&gw);
    let reply = third.request("auth", json!({ "token": TOKEN }));
    let error = assert_error(&reply, "LIMIT_EXCEEDED");
    assert_eq!(
        error["payload"]["message"], "Too many connections for user alice",
        "{reply}"
    );
    // Not counted as a failure (max_auth_failures is 3), and still unauthenticated.
    for _ in 0..3 {
        let reply = third.request("auth", json!({ "token": TOKEN }));
        assert_error(&reply, "LIMIT_EXCEEDED");
    }
    let reply = third.request("session_create", json!({ "sessionId": "room" }));
    assert_error(&reply, "AUTH_REQUIRED");
    // Another user is not held by alice's bound.
    let _bob = Client::authed(&gw, TOKEN_BOB);

    // Once one of alice's connections is gone, the third may authenticate.
    drop(first);
    assert!(eventually(|| {
        let reply = third.request("auth", json!({ "token": TOKEN }));
        reply["type"] == "auth_success"
    }));
}

#[test]
fn anonymous_connections_are_not_one_user() {
    let mut config = no_auth_config();
    config.max_connections_per_user = 1;
    assert_eq!(config.auth_mode, AuthMode::None);
    let gw = TestGateway::start(config);
    let mut clients: Vec<Client> = (0..5).map(|_| Client::connect(&gw)).collect();
    for client in &mut clients {
        // A request only an authenticated connection may make.
        let reply = client.request("agent_query", json!({}));
        assert_eq!(reply["type"], "agent_list", "{reply}");
    }
}

#[test]
fn a_device_name_past_max_name_bytes_is_refused_before_auth_too() {
    let mut config = test_config();
    config.max_name_bytes = 16;
    let gw = TestGateway::start(config);
    let mut client = Client::connect(&gw);
    let connect = |name: &str| json!({"deviceId": "d-1", "deviceName": name, "role": "node", "protocolVersion": 1});
    let reply = client.request("connect", connect(&"n".repeat(17)));
    let error = assert_error(&reply, "INVALID_MESSAGE");
    assert_eq!(
        error["payload"]["details"]["field"], "deviceName",
        "{reply}"
    );
    let reply = client.request("connect", connect(&"n".repeat(16)));
    assert_eq!(reply["type"], "hello_ok", "{reply}");
}

#[test]
fn a_credential_over_4096_bytes_fails_and_counts_toward_max_auth_failures() {
    let mut config = test_config();
    config.max_auth_failures = 2;
    let gw = TestGateway::start(config);
    let mut client = Client::connect(&gw);
    // A long token that starts with a configured one is no closer to it.
    let long = format!("{TOKEN}{}", "x".repeat(5000 - TOKEN.len()));
    let reply = client.request("auth", json!({ "token": long }));
    assert_error(&reply, "AUTH_FAILED");
    // Still open after the first failure; the second closes it.
    let reply = client.request("ping", json!({}));
    assert_eq!(reply["type"], "pong", "{reply}");
    let reply = client.request("auth", json!({ "token": "y".repeat(5000) }));
    assert_error(&reply, "AUTH_FAILED");
    let frame = client.expect_close().expect("close frame");
    assert_eq!(u16::from(frame.code), 1008);

    // The same holds for a password.
    let gw = TestGateway::start(password_config("pw"));
    let mut client = Client::connect(&gw);
    let reply = client.request("auth", json!({ "password": "p".repeat(5000) }));
    assert_error(&reply, "AUTH_FAILED");
    let reply = client.request("auth", json!({ "password": "pw" }));
    assert_eq!(reply["type"], "auth_success", "{reply}");
}
