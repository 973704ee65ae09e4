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

/// Payloads every request refuses: a duplicate key, nesting past 128 levels (with the
/// envelope), a lone surrogate escape, a number out of range; each with where it hides.
fn bad_payloads() -> Vec<(&'static str, String)> {
    vec![
        ("duplicate key", r#"{"text":"a","text":"b"}"#.to_owned()),
        (
            "nested duplicate",
            r#"{"o":{"k":[{"x":1,"x":2}]}}"#.to_owned(),
        ),
        ("escaped duplicate", r#"{"ab":1,"a\u0062":2}"#.to_owned()),
        ("deep", deep_payload(128)),
        ("very deep", deep_payload(100_000)),
        ("lone surrogate", r#"{"text":"\ud800"}"#.to_owned()),
        (
            "lone trailing surrogate",
            r#"{"o":{"\udc00":1}}"#.to_owned(),
        ),
        ("out of range", r#"{"n":[1,1e999999]}"#.to_owned()),
    ]
}

/// A payload `levels` deep, the payload object counted.
fn deep_payload(levels: usize) -> String {
    format!(
        "{{\"a\":{}{}}}",
        "[".repeat(levels - 1),
        "]".repeat(levels - 1)
    )
}

/// Send `{type, id, <fields>, payload}` as raw text; returns the reply, which must be an
/// INVALID_MESSAGE about `payload`.
fn refused_raw(client: &mut Client, msg_type: &str, fields: &str, payload: &str, what: &str) {
    let id = next_id();
    client.send_text(&format!(
        r#"{{"type":"{msg_type}","id":"{id}",{fields}"payload":{payload}}}"#
    ));
    let reply = client.recv();
    assert_eq!(reply["replyTo"], id.as_str(), "{what}: {reply}");
    let error = assert_error(&reply, "INVALID_MESSAGE");
    assert_eq!(
        error["payload"]["details"]["field"], "payload",
        "{what}: {reply}"
    );
}

#[test]
fn a_relay_or_patch_with_a_payload_any_request_refuses_is_refused_and_not_forwarded() {
    let gw = TestGateway::start(test_config());
    let mut group = session_group(&gw, "room", 2);
    let (sender, rest) = group.split_at_mut(1);
    let (sender, member) = (&mut sender[0], &mut rest[0]);
    for (what, payload) in bad_payloads() {
        for msg_type in ["chat", "tool_result", "broadcast"] {
            refused_raw(sender, msg_type, r#""sessionId":"room","#, &payload, what);
        }
        let patch = format!(r#"{{"sessionKey":"room","patch":{payload}}}"#);
        refused_raw(sender, "session_patch", "", &patch, what);
    }
    // Nothing reached the member: the next thing it gets is a good relay, at the deepest
    // nesting allowed.
    let good = deep_payload(127);
    sender.send_text(&format!(
        r#"{{"type":"chat","id":"ok","sessionId":"room","payload":{good}}}"#
    ));
    // (Read as text: with the envelope it is 128 deep, past what serde_json reads.)
    let got = loop {
        match member.ws.read().expect("read") {
            tungstenite::Message::Text(text) => break text.as_str().to_owned(),
            _ => continue,
        }
    };
    assert!(got.contains(r#""type":"chat""#), "{got}");
    assert!(got.contains(&good), "{got}");
    // The patch was not applied either.
    let reply = member.request("session_join", json!({ "sessionId": "room" }));
    assert_eq!(reply["payload"]["metadata"], json!({}), "{reply}");
}

#[test]
fn a_route_with_a_payload_any_request_refuses_is_refused_and_not_forwarded() {
    let gw = TestGateway::start(test_config());
    let mut requester = Client::authed(&gw, TOKEN);
    let mut responder = Client::authed(&gw, TOKEN_BOB);
    serve_routes(&mut responder);
    let to_responder = format!(r#""target":"{}","#, responder.client_id);
    for (what, payload) in bad_payloads() {
        refused_raw(
            &mut requester,
            "route_request",
            &to_responder,
            &payload,
            what,
        );
    }
    // The responder's first delivery is the good request, which is then pending.
    requester.send_text(&format!(
        r#"{{"type":"route_request","id":"r-1",{to_responder}"payload":{{"q":1}}}}"#
    ));
    let got = responder.recv_type("route_request");
    assert_eq!(got["id"], "r-1", "{got}");

    let to_requester = format!(r#""target":"{}","replyTo":"r-1","#, requester.client_id);
    for (what, payload) in bad_payloads() {
        refused_raw(
            &mut responder,
            "route_response",
            &to_requester,
            &payload,
            what,
        );
    }
    // A refused response does not answer the request: the good one is still delivered.
    responder.send_text(&format!(
        r#"{{"type":"route_response","id":"a-1",{to_requester}"payload":{{"a":1}}}}"#
    ));
    let got = requester.recv_type("route_response");
    assert_eq!(got["replyTo"], "r-1", "{got}");
    assert_eq!(got["payload"], json!({"a": 1}), "{got}");
}

/// Send a `route_request` with `id` to `target`.
/// Register an agent under `client`'s own `clientId`, so that another user's `route_request`
/// to that id reaches it (PROTOCOL section 12: a client is reached by its `clientId` only from
/// its own user, a shared session or `admin`; an online agent by anyone).
fn serve_routes(client: &mut Client) {
    let reply = client.request(
        "agent_register",
        json!({"type": "pi", "name": "responder", "capabilities": {}}),
    );
    assert_eq!(reply["payload"]["status"], "registered", "{reply}");
}

fn route(from: &mut Client, target: &Client, id: &str) {
    from.send(
        &json!({"type": "route_request", "id": id, "target": target.client_id, "payload": {}}),
    );
}

/// The next message of `to` is the delivery of request `id`.
fn delivered(to: &mut Client, id: &str) {
    let got = to.recv_type("route_request");
    assert_eq!(got["id"], id, "{got}");
}

/// A `route_request` with `id` to `target` is refused with LIMIT_EXCEEDED.
fn over_the_bound(from: &mut Client, target: &Client, id: &str) {
    route(from, target, id);
    let reply = from.recv();
    assert_eq!(reply["replyTo"], id, "{reply}");
    let error = assert_error(&reply, "LIMIT_EXCEEDED");
    assert_eq!(
        error["payload"]["message"], "Too many pending route requests for user alice",
        "{reply}"
    );
}

#[test]
fn pending_routes_are_bounded_per_user_and_given_back_on_every_path() {
    let mut config = test_config();
    config.max_pending_routes_per_user = 2;
    let gw = TestGateway::start(config);
    let mut alice = Client::authed(&gw, TOKEN);
    let mut alice2 = Client::authed(&gw, TOKEN);
    let mut bob = Client::authed(&gw, TOKEN_BOB);
    let mut bob2 = Client::authed(&gw, TOKEN_BOB);
    for target in [&mut alice, &mut bob, &mut bob2] {
        serve_routes(target);
    }

    route(&mut alice, &bob, "r1");
    delivered(&mut bob, "r1");
    route(&mut alice2, &bob, "r2");
    delivered(&mut bob, "r2");
    // Both of alice's connections count toward the one bound; bob's bound is his own.
    over_the_bound(&mut alice, &bob2, "r3");
    over_the_bound(&mut alice2, &bob2, "r3");
    route(&mut bob, &alice, "b1");
    delivered(&mut alice, "b1");

    // Answered: given back.
    bob.send(&json!({"type": "route_response", "id": "a1", "target": alice.client_id, "replyTo": "r1", "payload": {}}));
    assert_eq!(alice.recv_type("route_response")["replyTo"], "r1");
    route(&mut alice, &bob2, "r4");
    delivered(&mut bob2, "r4");
    over_the_bound(&mut alice, &bob2, "r5");

    // The responder's connection closed: its pending request (r2) is given back.
    bob.close_cleanly();
    assert!(eventually(|| accepted(&mut alice2, &bob2, "r6")));
    delivered(&mut bob2, "r6");
    over_the_bound(&mut alice2, &bob2, "r7");

    // The requester's connection closed: its pending request (r6) is given back.
    alice2.close_cleanly();
    assert!(eventually(|| accepted(&mut alice, &bob2, "r8")));
    delivered(&mut bob2, "r8");
}

/// Send a `route_request`; whether it was accepted (no error before the next pong).
fn accepted(from: &mut Client, target: &Client, id: &str) -> bool {
    route(from, target, id);
    let ping = from.send_msg("ping", json!({}));
    let first = from.recv();
    if first["type"] == "pong" {
        return true;
    }
    assert_error(&first, "LIMIT_EXCEEDED");
    assert_eq!(from.recv()["replyTo"], ping.as_str());
    false
}

#[test]
fn an_eviction_by_the_requesters_own_bound_gives_its_route_back() {
    // 1024 pending per connection (section 10): the 1025th evicts the oldest, so alice
    // still holds 1024 and has room for one more on another connection.
    let mut config = test_config();
    config.max_pending_routes_per_user = 1025;
    let gw = TestGateway::start(config);
    let mut alice = Client::authed(&gw, TOKEN);
    let mut alice2 = Client::authed(&gw, TOKEN);
    let mut bob = Client::authed(&gw, TOKEN_BOB);
    let mut bob2 = Client::authed(&gw, TOKEN_BOB);
    serve_routes(&mut bob);
    serve_routes(&mut bob2);
    let batch: Vec<_> = (0..1025)
        .map(|i| json!({"type": "route_request", "id": format!("r{i}"), "target": bob.client_id, "payload": {}}))
        .collect();
    alice.send_batch(&batch);
    for i in 0..1025 {
        delivered(&mut bob, &format!("r{i}"));
    }
    // bob holds 1024, its own bound as a target: alice2's go to bob2.
    assert!(accepted(&mut alice2, &bob2, "s1"));
    delivered(&mut bob2, "s1");
    over_the_bound(&mut alice2, &bob2, "s2");
    // The evicted r0 cannot be answered; r1 can, and gives its unit back.
    let answer = |reply_to: &str| json!({"type": "route_response", "id": "a", "target": alice.client_id, "replyTo": reply_to, "payload": {}});
    let reply = bob.request_envelope(answer("r0"));
    assert_error(&reply, "TARGET_NOT_FOUND");
    bob.send(&answer("r1"));
    assert_eq!(alice.recv_type("route_response")["replyTo"], "r1");
    assert!(accepted(&mut alice2, &bob2, "s3"));
}

/// `n` `route_request`s from `from` to `target`, ids `PREFIX0` ... in one batch, each
/// delivered.
fn routed(from: &mut Client, target: &mut Client, prefix: &str, n: usize) {
    let batch: Vec<_> = (0..n)
        .map(|i| json!({"type": "route_request", "id": format!("{prefix}{i}"), "target": target.client_id, "payload": {}}))
        .collect();
    from.send_batch(&batch);
    for i in 0..n {
        delivered(target, &format!("{prefix}{i}"));
    }
}

/// A `route_request` with `id` to `target` is refused as past a table bound (not the user's).
fn table_full(from: &mut Client, target: &Client, id: &str) {
    route(from, target, id);
    let reply = from.recv();
    assert_eq!(reply["replyTo"], id, "{reply}");
    let error = assert_error(&reply, "LIMIT_EXCEEDED");
    assert_eq!(
        error["payload"]["message"], "Too many pending route requests",
        "{reply}"
    );
}

#[test]
fn a_target_holds_at_most_1024_pending_requests() {
    let gw = TestGateway::start(with_token(test_config(), "carol", TOKEN_CAROL));
    let mut alice = Client::authed(&gw, TOKEN);
    let mut alice2 = Client::authed(&gw, TOKEN);
    let mut carol = Client::authed(&gw, TOKEN_CAROL);
    let mut bob = Client::authed(&gw, TOKEN_BOB);
    serve_routes(&mut bob);
    routed(&mut alice, &mut bob, "a", 1000);
    routed(&mut carol, &mut bob, "c", 24);
    // The 1025th toward bob is refused, whoever sends it, and not delivered; neither
    // requester is at its own bound, so nothing of theirs is evicted for it.
    table_full(&mut alice2, &bob, "x1");
    table_full(&mut carol, &bob, "x2");
    table_full(&mut alice, &bob, "x3");
    bob.expect_silence(std::time::Duration::from_millis(150));
    assert_eq!(gw.metric("gateway_routes_pending"), Some(1024.0));
    // Another target is not bounded by bob's.
    let mut bob2 = Client::authed(&gw, TOKEN_BOB);
    serve_routes(&mut bob2);
    assert!(accepted(&mut carol, &bob2, "y1"));
    delivered(&mut bob2, "y1");
    // Once bob answers one, the next toward it is delivered, and the others still answer.
    bob.send(&json!({"type": "route_response", "id": "b1", "target": carol.client_id, "replyTo": "c0", "payload": {}}));
    assert_eq!(carol.recv_type("route_response")["replyTo"], "c0");
    assert!(accepted(&mut alice2, &bob, "x4"));
    delivered(&mut bob, "x4");
    table_full(&mut carol, &bob, "x5");
    bob.send(&json!({"type": "route_response", "id": "b2", "target": alice.client_id, "replyTo": "a999", "payload": {}}));
    assert_eq!(alice.recv_type("route_response")["replyTo"], "a999");
}

#[test]
fn closing_a_target_gives_back_what_each_requester_held() {
    let mut config = test_config();
    config.max_pending_routes_per_user = 1100;
    let gw = TestGateway::start(config);
    let mut alice = Client::authed(&gw, TOKEN);
    let mut alice2 = Client::authed(&gw, TOKEN);
    let mut bob = Client::authed(&gw, TOKEN_BOB);
    let mut bob2 = Client::authed(&gw, TOKEN_BOB);
    let mut bob3 = Client::authed(&gw, TOKEN_BOB);
    for target in [&mut bob, &mut bob2, &mut bob3] {
        serve_routes(target);
    }
    // bob fills with alice's two connections taking turns, then alice's user is at 1100.
    for turn in 0..8 {
        let from = if turn % 2 == 0 {
            &mut alice
        } else {
            &mut alice2
        };
        routed(from, &mut bob, &format!("t{turn}-"), 128);
    }
    routed(&mut alice, &mut bob2, "u", 76);
    over_the_bound(&mut alice2, &bob3, "o1");

    // bob's 1024 go back with its connection: 1024 more are accepted, and not one more.
    bob.close_cleanly();
    assert!(eventually(
        || gw.metric("gateway_routes_pending") == Some(76.0)
    ));
    routed(&mut alice2, &mut bob2, "v", 948);
    routed(&mut alice, &mut bob3, "w", 76);
    over_the_bound(&mut alice, &bob3, "o2");
    assert_eq!(gw.metric("gateway_routes_pending"), Some(1100.0));
}
