//! Visibility (PROTOCOL section 12) over real sockets: what a user sees of another user's
//! devices, agents and clients, and what its own user, a shared session or `admin` sees.

mod common;

use std::time::Duration;

use common::*;
use gateway::Config;
use serde_json::{json, Value};

const OPS: &str = TOKEN_OPS;
const QUIET: Duration = Duration::from_millis(150);

/// alice and bob (defaults), and ops with the `admin` scope.
fn config() -> Config {
    admin_config()
}

/// A client authenticated with `token` that sent `connect` as `device_id`, and its hello_ok.
fn device(gw: &TestGateway, token: &str, device_id: &str) -> (Client, Value) {
    let mut client = Client::authed(gw, token);
    let hello = client.request(
        "connect",
        json!({"deviceId": device_id, "role": "node", "protocolVersion": 1}),
    );
    assert_eq!(hello["type"], "hello_ok", "{hello}");
    (client, hello)
}

fn ids(devices: &Value) -> Vec<String> {
    devices
        .as_array()
        .expect("a device list")
        .iter()
        .map(|d| d["deviceId"].as_str().expect("deviceId").to_owned())
        .collect()
}

/// Every page of `presence_query` with `limit`.
fn all_pages(client: &mut Client, limit: u64) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let reply = client.request("presence_query", json!({"limit": limit, "cursor": cursor}));
        assert_eq!(reply["type"], "presence_list", "{reply}");
        pages.push(ids(&reply["payload"]["devices"]));
        match reply["payload"].get("next") {
            Some(next) => cursor = next.clone(),
            None => return pages,
        }
        assert!(pages.len() < 100, "paging does not end");
    }
}

#[test]
fn hello_ok_and_presence_list_hold_only_the_senders_users_devices() {
    let gw = TestGateway::start(config());
    let (mut a1, _) = device(&gw, TOKEN, "alice-1");
    let (mut b, hello) = device(&gw, TOKEN_BOB, "bob-1");
    assert_eq!(ids(&hello["payload"]["presence"]), ["bob-1"], "{hello}");
    let (_a2, hello) = device(&gw, TOKEN, "alice-2");
    assert_eq!(ids(&hello["payload"]["presence"]), ["alice-2", "alice-1"]);

    let reply = b.request("presence_query", json!({}));
    assert_eq!(ids(&reply["payload"]["devices"]), ["bob-1"], "{reply}");
    let reply = a1.request("presence_query", json!({}));
    assert_eq!(ids(&reply["payload"]["devices"]), ["alice-1", "alice-2"]);

    // admin sees every user's devices.
    let (mut ops, hello) = device(&gw, OPS, "ops-1");
    assert_eq!(
        ids(&hello["payload"]["presence"]),
        ["ops-1", "alice-1", "bob-1", "alice-2"]
    );
    let reply = ops.request("presence_query", json!({}));
    assert_eq!(
        ids(&reply["payload"]["devices"]),
        ["alice-1", "bob-1", "alice-2", "ops-1"]
    );
    // ops's own device is not shown to alice or bob.
    let reply = b.request("presence_query", json!({}));
    assert_eq!(ids(&reply["payload"]["devices"]), ["bob-1"], "{reply}");
}

#[test]
fn one_users_pages_among_many_users_hold_only_its_devices() {
    let mut config = config();
    config.max_list_items = 3;
    let gw = TestGateway::start(config);
    let mut keep = Vec::new();
    let mut alice = Vec::new();
    for i in 0..5 {
        for j in 0..6 {
            keep.push(device(&gw, TOKEN_BOB, &format!("bob-{i}-{j}")).0);
        }
        let name = format!("alice-{i}");
        keep.push(device(&gw, TOKEN, &name).0);
        alice.push(name);
    }
    let me = keep.last_mut().unwrap();
    assert_eq!(all_pages(me, 2), [&alice[0..2], &alice[2..4], &alice[4..5]]);
    assert_eq!(all_pages(me, 3), [&alice[0..3], &alice[3..5]]);
    assert_eq!(all_pages(me, 1).len(), 5);
    // bob's 30 devices take 10 full pages of 3, none of alice's among them.
    let bobs = all_pages(&mut keep[0], 3);
    assert_eq!(bobs.len(), 10);
    assert!(bobs.iter().flatten().all(|d| d.starts_with("bob-")));
}

fn register(client: &mut Client, agent_id: &str) {
    let reply = client.request(
        "agent_register",
        json!({"agentId": agent_id, "type": "pi", "name": agent_id, "capabilities": {}}),
    );
    assert_eq!(reply["payload"]["status"], "registered", "{reply}");
}

/// The records of `agent_query`, by `agentId`.
fn agents(client: &mut Client) -> Vec<(String, Value, String)> {
    let reply = client.request("agent_query", json!({}));
    assert_eq!(reply["type"], "agent_list", "{reply}");
    reply["payload"]["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|a| {
            (
                a["agentId"].as_str().unwrap().to_owned(),
                a["clientId"].clone(),
                a["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn agent_list_shows_every_agent_but_not_another_users_client_id() {
    let gw = TestGateway::start(config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut a2 = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    let mut ops = Client::authed(&gw, OPS);
    register(&mut a, "a-agent");
    register(&mut b, "b-agent");
    let (a_id, b_id) = (json!(a.client_id), json!(b.client_id));
    let online = |id: &str, client: &Value| (id.to_owned(), client.clone(), "online".to_owned());

    assert_eq!(
        agents(&mut b),
        [online("a-agent", &Value::Null), online("b-agent", &b_id)]
    );
    assert_eq!(
        agents(&mut a2),
        [online("a-agent", &a_id), online("b-agent", &Value::Null)]
    );
    assert_eq!(
        agents(&mut ops),
        [online("a-agent", &a_id), online("b-agent", &b_id)]
    );

    // Offline is told by status: the record is kept with clientId null for everyone.
    drop(a);
    assert!(eventually(|| agents(&mut a2)[0].2 == "offline"));
    let offline = ("a-agent".to_owned(), Value::Null, "offline".to_owned());
    assert_eq!(agents(&mut b)[0], offline);
    assert_eq!(agents(&mut ops)[0], offline);
}

/// Send a `route_request` to `target`; returns its id.
fn route(from: &mut Client, target: &str) -> String {
    let id = next_id();
    from.send(&json!({"type": "route_request", "id": id, "target": target, "payload": {"n": 1}}));
    id
}

/// `to` receives the route `id` from `from`.
fn delivered(to: &mut Client, id: &str, from: &Client) {
    let got = to.recv_type("route_request");
    assert_eq!(got["id"], id, "{got}");
    assert_eq!(got["source"], from.client_id.as_str(), "{got}");
}

/// A route from `from` to `target` is refused as a missing target would be.
fn not_found(from: &mut Client, target: &str) {
    let reply =
        from.request_envelope(json!({"type": "route_request", "target": target, "payload": {}}));
    assert_error(&reply, "TARGET_NOT_FOUND");
    assert_eq!(
        reply["payload"]["message"],
        format!("Target {target} not found"),
        "{reply}"
    );
}

#[test]
fn a_client_id_is_reached_from_its_user_a_shared_session_or_admin() {
    let gw = TestGateway::start(config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut a2 = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    let mut ops = Client::authed(&gw, OPS);

    // Another user: as if there were no such client.
    not_found(&mut b, &a.client_id);
    not_found(&mut b, "no-such-client");
    a.expect_silence(QUIET);
    // The same user.
    let id = route(&mut a2, &a.client_id);
    delivered(&mut a, &id, &a2);
    // admin.
    let id = route(&mut ops, &a.client_id);
    delivered(&mut a, &id, &ops);
    // A shared session, while it is shared.
    let reply = a.request("session_create", json!({"sessionId": "room"}));
    assert_eq!(reply["payload"]["status"], "created", "{reply}");
    let reply = b.request("session_join", json!({"sessionId": "room"}));
    assert_eq!(reply["payload"]["status"], "joined", "{reply}");
    assert_eq!(a.recv_type("presence")["payload"]["status"], "joined");
    let id = route(&mut b, &a.client_id);
    delivered(&mut a, &id, &b);
    let reply = b.request("session_leave", json!({"sessionId": "room"}));
    assert_eq!(reply["payload"]["status"], "left", "{reply}");
    assert_eq!(a.recv_type("presence")["payload"]["status"], "left");
    not_found(&mut b, &a.client_id);
    // One session each, not the same one, is not shared.
    let reply = b.request("session_create", json!({"sessionId": "elsewhere"}));
    assert_eq!(reply["payload"]["status"], "created", "{reply}");
    not_found(&mut b, &a.client_id);
    a.expect_silence(QUIET);
}

#[test]
fn a_target_naming_an_online_agent_is_routed_to_it_whoever_sends() {
    let gw = TestGateway::start(config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    register(&mut a, "helper");
    let id = route(&mut b, "helper");
    delivered(&mut a, &id, &b);
    // An agent registered under its default id, the clientId: routed as the agent.
    let reply = a.request(
        "agent_register",
        json!({"type": "pi", "name": "default", "capabilities": {}}),
    );
    assert_eq!(reply["payload"]["status"], "registered", "{reply}");
    let id = route(&mut b, &a.client_id);
    delivered(&mut a, &id, &b);
    // Once that agent is gone, the clientId rule applies again.
    let reply = a.request("agent_unregister", json!({}));
    assert_eq!(reply["payload"]["status"], "unregistered", "{reply}");
    not_found(&mut b, &a.client_id);
}

#[test]
fn anonymous_connections_are_one_user() {
    let gw = TestGateway::start(no_auth_config());
    let mut one = Client::connect(&gw);
    let hello = one.request(
        "connect",
        json!({"deviceId": "anon-1", "role": "node", "protocolVersion": 1}),
    );
    assert_eq!(ids(&hello["payload"]["presence"]), ["anon-1"], "{hello}");
    let mut two = Client::connect(&gw);
    let hello = two.request(
        "connect",
        json!({"deviceId": "anon-2", "role": "node", "protocolVersion": 1}),
    );
    assert_eq!(ids(&hello["payload"]["presence"]), ["anon-2", "anon-1"]);
    let id = route(&mut two, &one.client_id);
    delivered(&mut one, &id, &two);
    register(&mut one, "anon-agent");
    let listed = agents(&mut two);
    assert_eq!(listed[0].1, json!(one.client_id), "{listed:?}");
}

/// `responder` answers the route `id` it received from `requester`; returns what the
/// requester receives.
fn answer(responder: &mut Client, requester: &mut Client, id: &str) -> Value {
    responder.send(&json!({
        "type": "route_response", "id": next_id(), "target": requester.client_id,
        "replyTo": id, "payload": {"ok": true}
    }));
    let got = requester.recv_type("route_response");
    assert_eq!(got["replyTo"], id, "{got}");
    got
}

#[test]
fn a_response_from_another_users_agent_comes_from_the_agent_not_its_client_id() {
    let gw = TestGateway::start(config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut a2 = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    let mut ops = Client::authed(&gw, OPS);
    let reply = a.request(
        "agent_register",
        json!({"agentId": "bot1", "type": "pi", "name": "bot1",
               "capabilities": {"tools": ["sum"]}}),
    );
    assert_eq!(reply["payload"]["status"], "registered", "{reply}");
    // Another user, by agent id and by capability: the response names the agent.
    for target in ["bot1", "capability:sum"] {
        let id = route(&mut b, target);
        delivered(&mut a, &id, &b);
        let got = answer(&mut a, &mut b, &id);
        assert_eq!(got["source"], "bot1", "{target}: {got}");
    }
    // The same user and admin see the clientId, as agent_list shows them.
    for requester in [&mut a2, &mut ops] {
        let id = route(requester, "bot1");
        delivered(&mut a, &id, requester);
        let got = answer(&mut a, requester, &id);
        assert_eq!(got["source"], a.client_id.as_str(), "{got}");
    }
}
