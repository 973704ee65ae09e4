//! Routing over real sockets: PROTOCOL section 6 (`route_request` to a clientId, an agentId
//! or `capability:NAME`, and the checked, once-only `route_response`).

mod common;

use std::time::Duration;

use common::*;
use gateway::AuthMode;
use serde_json::{json, Value};

const QUIET: Duration = Duration::from_millis(150);

fn assert_error(reply: &Value, code: &str) {
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["payload"]["code"], code, "{reply}");
}

/// Send a `route_request` to `target`; returns its id.
fn route_request(from: &mut Client, target: &str, payload: Value) -> String {
    let id = next_id();
    from.send(&json!({"type": "route_request", "id": id, "target": target, "payload": payload}));
    id
}

/// Send a `route_request` that must be refused; returns the error.
fn refused_request(from: &mut Client, target: &str) -> Value {
    from.request_envelope(json!({"type": "route_request", "target": target, "payload": {}}))
}

/// Send a `route_response`; returns its id.
fn route_response(from: &mut Client, target: &str, reply_to: &str, payload: Value) -> String {
    let id = next_id();
    from.send(&json!({
        "type": "route_response", "id": id, "target": target, "replyTo": reply_to,
        "payload": payload
    }));
    id
}

/// Send a `route_response` that must be refused; returns the error.
fn refused_response(from: &mut Client, target: &str, reply_to: &str) -> Value {
    from.request_envelope(json!({
        "type": "route_response", "target": target, "replyTo": reply_to, "payload": {}
    }))
}

/// Read the delivered `route_request` and check what every delivery carries.
fn expect_request(to: &mut Client, id: &str, from: &Client, payload: &Value) {
    let got = to.recv();
    assert_eq!(got["type"], "route_request", "{got}");
    assert_eq!(got["id"], id, "the requester's id is kept: {got}");
    assert_eq!(got["source"], from.client_id.as_str(), "{got}");
    assert_eq!(&got["payload"], payload, "{got}");
    assert!(got.get("target").is_none(), "no target to clients: {got}");
    assert!(got.get("replyTo").is_none(), "{got}");
    assert!(got["timestamp"].is_u64(), "{got}");
}

fn register(client: &mut Client, agent_id: &str, capabilities: Value) {
    let reply = client.request(
        "agent_register",
        json!({"agentId": agent_id, "type": "pi", "name": agent_id, "capabilities": capabilities}),
    );
    assert_eq!(reply["payload"]["status"], "registered", "{reply}");
}

/// Route to `capability:translate` and expect `agents[expected]` to receive it.
fn send_and_expect(a: &mut Client, agents: &mut [Client], expected: usize) {
    let payload = json!({"text": "hola", "expected": expected});
    let id = route_request(a, "capability:translate", payload.clone());
    expect_request(&mut agents[expected], &id, a, &payload);
}

fn pending(gw: &TestGateway) -> f64 {
    gw.metric("gateway_routes_pending").expect("routes gauge")
}

#[test]
fn request_and_response_between_two_clients() {
    let gw = TestGateway::start(test_config());
    // One user: a client is reached by its clientId from its own user (PROTOCOL section 12).
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN);

    let payload = json!({"question": "2+2?", "nested": {"n": [1, 2]}});
    let id = next_id();
    a.send(&json!({
        "type": "route_request", "id": id, "target": b.client_id, "payload": payload,
        "source": "spoofed"
    }));
    expect_request(&mut b, &id, &a, &payload);
    a.expect_silence(QUIET);
    assert_eq!(pending(&gw), 1.0);

    let answer = json!({"answer": 4});
    let response_id = route_response(&mut b, &a.client_id, &id, answer.clone());
    let got = a.recv();
    assert_eq!(got["type"], "route_response", "{got}");
    assert_eq!(got["replyTo"], id.as_str());
    assert_eq!(got["source"], b.client_id.as_str());
    assert_eq!(got["payload"], answer);
    assert!(got["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_ne!(got["id"], response_id.as_str(), "a fresh id");
    assert!(got.get("target").is_none(), "{got}");
    b.expect_silence(QUIET);
    assert_eq!(pending(&gw), 0.0);

    // Only once.
    let reply = refused_response(&mut b, &a.client_id, &id);
    assert_error(&reply, "TARGET_NOT_FOUND");
    a.expect_silence(QUIET);
}

#[test]
fn unknown_and_unauthenticated_targets_are_not_found() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut anon = Client::connect(&gw);

    let reply = refused_request(&mut a, &anon.client_id);
    assert_error(&reply, "TARGET_NOT_FOUND");
    anon.expect_silence(QUIET);

    for target in ["nobody", "capability:nothing", "capability:"] {
        let reply = refused_request(&mut a, target);
        assert_error(&reply, "TARGET_NOT_FOUND");
    }

    let reply = a.request_envelope(json!({"type": "route_request", "payload": {}}));
    assert_error(&reply, "INVALID_MESSAGE");
    assert_eq!(reply["payload"]["details"]["field"], "target", "{reply}");
    let reply = a.request_envelope(json!({"type": "route_request", "target": 5}));
    assert_eq!(reply["payload"]["details"]["field"], "target", "{reply}");

    // Once it has authenticated (as the sender's user), it is a target.
    let ok = anon.request("auth", json!({"token": TOKEN}));
    assert_eq!(ok["type"], "auth_success");
    let id = route_request(&mut a, &anon.client_id, json!({"hi": 1}));
    expect_request(&mut anon, &id, &a, &json!({"hi": 1}));
    assert_eq!(pending(&gw), 1.0);

    // An unauthenticated client cannot route at all.
    let mut anon2 = Client::connect(&gw);
    let reply = anon2
        .request_envelope(json!({"type": "route_request", "target": a.client_id, "payload": {}}));
    assert_error(&reply, "AUTH_REQUIRED");
    a.expect_silence(QUIET);
}

#[test]
fn with_auth_off_every_connection_is_a_target() {
    let mut config = test_config();
    config.auth_mode = AuthMode::None;
    let gw = TestGateway::start(config);
    let mut a = Client::connect(&gw);
    let mut b = Client::connect(&gw);
    let id = route_request(&mut a, &b.client_id, json!({"x": 1}));
    expect_request(&mut b, &id, &a, &json!({"x": 1}));
    route_response(&mut b, &a.client_id, &id, json!({"y": 2}));
    let got = a.recv();
    assert_eq!(got["type"], "route_response");
    assert_eq!(got["payload"], json!({"y": 2}));
}

#[test]
fn route_to_an_agent_id_reaches_its_owner_while_online() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    register(&mut b, "helper", json!({"chat": true}));

    let id = route_request(&mut a, "helper", json!({"task": "summarise"}));
    expect_request(&mut b, &id, &a, &json!({"task": "summarise"}));
    route_response(&mut b, &a.client_id, &id, json!({"done": true}));
    let got = a.recv();
    assert_eq!(got["type"], "route_response");
    assert_eq!(got["replyTo"], id.as_str());
    // bob's agent answers alice, another user: from the agent, not bob's clientId.
    assert_eq!(got["source"], "helper");

    // A busy agent is still reachable by its id.
    b.request(
        "agent_heartbeat",
        json!({"agentId": "helper", "status": "busy"}),
    );
    let id = route_request(&mut a, "helper", json!({}));
    expect_request(&mut b, &id, &a, &json!({}));

    // Offline: still registered, but not a target.
    drop(b);
    assert!(eventually(|| gw.health()["clients"] == 1));
    let mut c = Client::authed(&gw, TOKEN);
    let listed = c.request("agent_query", json!({}));
    assert_eq!(listed["payload"]["agents"][0]["status"], "offline");
    let reply = refused_request(&mut a, "helper");
    assert_error(&reply, "TARGET_NOT_FOUND");
}

#[test]
fn capability_targets_go_round_robin_over_online_agents() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut agents: Vec<Client> = (0..3).map(|_| Client::authed(&gw, TOKEN_BOB)).collect();
    // Registered out of order: the order is by agentId.
    register(&mut agents[2], "tr-3", json!({"tools": ["translate"]}));
    register(&mut agents[0], "tr-1", json!({"tools": ["translate"]}));
    register(&mut agents[1], "tr-2", json!({"modes": ["translate"]}));
    let mut other = Client::authed(&gw, TOKEN_BOB);
    register(
        &mut other,
        "tr-0",
        json!({"tools": ["summarise"], "chat": true}),
    );

    for expected in [0, 1, 2, 0, 1, 2] {
        send_and_expect(&mut a, &mut agents, expected);
    }
    for client in agents.iter_mut().chain([&mut other]) {
        client.expect_silence(QUIET);
    }

    // Busy agents are skipped, the cycle goes on from the last one picked (tr-3).
    agents[1].request(
        "agent_heartbeat",
        json!({"agentId": "tr-2", "status": "busy"}),
    );
    for expected in [0, 2, 0] {
        send_and_expect(&mut a, &mut agents, expected);
    }
    // Back online: it takes its place in the cycle again (after tr-1 comes tr-2).
    agents[1].request(
        "agent_heartbeat",
        json!({"agentId": "tr-2", "status": "online"}),
    );
    send_and_expect(&mut a, &mut agents, 1);

    // All busy: nobody.
    for (i, client) in agents.iter_mut().enumerate() {
        let reply = client.request(
            "agent_heartbeat",
            json!({"agentId": format!("tr-{}", i + 1), "status": "busy"}),
        );
        assert_eq!(reply["payload"]["agent"]["status"], "busy");
    }
    let reply = refused_request(&mut a, "capability:translate");
    assert_error(&reply, "TARGET_NOT_FOUND");

    // Offline agents are skipped too.
    agents[0].request(
        "agent_heartbeat",
        json!({"agentId": "tr-1", "status": "online"}),
    );
    agents[2].request(
        "agent_heartbeat",
        json!({"agentId": "tr-3", "status": "online"}),
    );
    let last = agents.pop().expect("tr-3's client");
    drop(last);
    assert!(eventually(|| gw.health()["clients"] == 4));
    for _ in 0..2 {
        send_and_expect(&mut a, &mut agents, 0);
    }

    // Booleans route too.
    let id = route_request(&mut a, "capability:chat", json!({}));
    expect_request(&mut other, &id, &a, &json!({}));
    let reply = refused_request(&mut a, "capability:streaming");
    assert_error(&reply, "TARGET_NOT_FOUND");
}

#[test]
fn responses_must_match_a_delivered_request() {
    let gw = TestGateway::start(test_config());
    // One user: a client is reached by its clientId from its own user (PROTOCOL section 12).
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN);
    let mut c = Client::authed(&gw, TOKEN);

    let id = route_request(&mut a, &b.client_id, json!({"n": 1}));
    expect_request(&mut b, &id, &a, &json!({"n": 1}));

    // Wrong target: not the requester.
    let reply = refused_response(&mut b, &c.client_id, &id);
    assert_error(&reply, "TARGET_NOT_FOUND");
    let reply = refused_response(&mut b, "nobody", &id);
    assert_error(&reply, "TARGET_NOT_FOUND");
    // A made-up replyTo.
    let reply = refused_response(&mut b, &a.client_id, "made-up");
    assert_error(&reply, "TARGET_NOT_FOUND");
    // A client the request was not delivered to.
    let reply = refused_response(&mut c, &a.client_id, &id);
    assert_error(&reply, "TARGET_NOT_FOUND");
    // The requester answering itself.
    let reply = refused_response(&mut a, &b.client_id, &id);
    assert_error(&reply, "TARGET_NOT_FOUND");
    a.expect_silence(QUIET);
    c.expect_silence(QUIET);

    // Missing fields are named.
    let reply = b.request_envelope(json!({"type": "route_response", "replyTo": id}));
    assert_eq!(reply["payload"]["details"]["field"], "target", "{reply}");
    let reply = b.request_envelope(json!({"type": "route_response", "target": a.client_id}));
    assert_eq!(reply["payload"]["details"]["field"], "replyTo", "{reply}");

    // The refused attempts did not use up the real answer.
    route_response(&mut b, &a.client_id, &id, json!({"ok": true}));
    let got = a.recv();
    assert_eq!(got["type"], "route_response");
    assert_eq!(got["replyTo"], id.as_str());
    assert_eq!(got["payload"], json!({"ok": true}));
    let reply = refused_response(&mut b, &a.client_id, &id);
    assert_error(&reply, "TARGET_NOT_FOUND");
    a.expect_silence(QUIET);
}

#[test]
fn pending_routes_are_dropped_when_either_side_disconnects() {
    let gw = TestGateway::start(test_config());
    // One user: a client is reached by its clientId from its own user (PROTOCOL section 12).
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN);

    let first = route_request(&mut a, &b.client_id, json!({"n": 1}));
    expect_request(&mut b, &first, &a, &json!({"n": 1}));
    let second = route_request(&mut a, &b.client_id, json!({"n": 2}));
    expect_request(&mut b, &second, &a, &json!({"n": 2}));
    assert_eq!(pending(&gw), 2.0);

    let a_id = a.client_id.clone();
    drop(a);
    assert!(
        eventually(|| pending(&gw) == 0.0),
        "pending routes of a closed requester are dropped"
    );
    let reply = refused_response(&mut b, &a_id, &first);
    assert_error(&reply, "TARGET_NOT_FOUND");

    // The responder leaving drops them too.
    let mut c = Client::authed(&gw, TOKEN);
    let id = route_request(&mut c, &b.client_id, json!({}));
    expect_request(&mut b, &id, &c, &json!({}));
    assert_eq!(pending(&gw), 1.0);
    drop(b);
    assert!(
        eventually(|| pending(&gw) == 0.0),
        "pending routes of a closed responder are dropped"
    );
    c.expect_silence(QUIET);
}
