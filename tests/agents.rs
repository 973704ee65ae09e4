//! Agents over real sockets: PROTOCOL section 6 (registration, ownership, heartbeats,
//! queries and capability matching, offline agents and their TTL) and the agent limits and
//! payload errors of section 4.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{json, Value};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// Assert that `reply` is an `error` with `code`.
fn assert_error(reply: &Value, code: &str) {
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["payload"]["code"], code, "{reply}");
    assert!(
        reply["payload"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{reply}"
    );
}

/// Assert that `reply` is `INVALID_MESSAGE` naming `field`.
fn assert_invalid_field(reply: &Value, field: &str) {
    assert_error(reply, "INVALID_MESSAGE");
    assert_eq!(reply["payload"]["details"]["field"], field, "{reply}");
    assert!(
        reply["payload"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(field)),
        "the message names {field}: {reply}"
    );
}

/// Register an agent; asserts the `registered` reply and returns the record.
fn register(client: &mut Client, payload: Value) -> Value {
    let reply = client.request("agent_register", payload);
    assert_eq!(reply["type"], "agent_info", "{reply}");
    assert_eq!(reply["payload"]["status"], "registered", "{reply}");
    reply["payload"]["agent"].clone()
}

fn agent(id: &str, agent_type: &str, capabilities: Value) -> Value {
    json!({"agentId": id, "type": agent_type, "name": format!("Agent {id}"), "capabilities": capabilities})
}

/// `agent_query` with `payload`; returns the listed records.
fn query(client: &mut Client, payload: Value) -> Vec<Value> {
    let reply = client.request("agent_query", payload);
    assert_eq!(reply["type"], "agent_list", "{reply}");
    reply["payload"]["agents"]
        .as_array()
        .expect("agents array")
        .clone()
}

fn ids(agents: &[Value]) -> Vec<&str> {
    agents
        .iter()
        .map(|a| a["agentId"].as_str().expect("agentId"))
        .collect()
}

/// The record of `agent_id` as `agent_query` lists it.
fn find(client: &mut Client, agent_id: &str) -> Option<Value> {
    query(client, json!({}))
        .into_iter()
        .find(|a| a["agentId"] == agent_id)
}

/// Query until `agent_id`'s record satisfies `check` or `WAIT` passes.
fn wait_for_record(client: &mut Client, agent_id: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(record) = find(client, agent_id) {
            if check(&record) {
                return record;
            }
        }
        assert!(
            Instant::now() < deadline,
            "agent {agent_id} never reached the expected state"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Heartbeat `record`'s agent until the gateway's clock has passed its `registeredAt`.
fn pass_registered_at(owner: &mut Client, record: &Value) {
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = owner.request("agent_heartbeat", json!({"agentId": record["agentId"]}));
        assert_eq!(reply["payload"]["status"], "updated", "{reply}");
        if reply["payload"]["agent"]["lastSeenAt"].as_u64() > record["registeredAt"].as_u64() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway's clock did not move"
        );
    }
}

#[test]
fn register_defaults_agent_id_to_client_id_and_replies_the_full_record() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let before = now_ms();
    let record = register(
        &mut a,
        json!({"type": "pi", "name": "Pi one", "capabilities": {"chat": true}}),
    );
    let after = now_ms();

    let mut keys: Vec<&str> = record
        .as_object()
        .expect("record")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "agentId",
            "capabilities",
            "clientId",
            "lastSeenAt",
            "name",
            "registeredAt",
            "status",
            "type"
        ],
        "no metadata when none was given: {record}"
    );
    assert_eq!(record["agentId"], a.client_id.as_str());
    assert_eq!(record["clientId"], a.client_id.as_str());
    assert_eq!(record["type"], "pi");
    assert_eq!(record["name"], "Pi one");
    assert_eq!(record["status"], "online");
    assert_eq!(
        record["capabilities"],
        json!({"chat": true, "tools": [], "streaming": false, "modes": []}),
        "missing capability fields take their defaults"
    );
    // The gateway's wall clock may round a few ms apart from ours.
    let registered_at = record["registeredAt"].as_u64().expect("registeredAt");
    assert!(
        (before - 5..=after + 5).contains(&registered_at),
        "{before} <= {registered_at} <= {after}"
    );
    assert_eq!(record["lastSeenAt"], record["registeredAt"]);

    // An explicit id, every capability field, and metadata: all echoed.
    let full = json!({
        "agentId": "agent-full",
        "type": "companion",
        "name": "Full",
        "capabilities": {
            "chat": false,
            "tools": ["search", "fetch"],
            "streaming": true,
            "modes": ["fast"],
            "custom": {"vision": true}
        },
        "metadata": {"version": "1.2", "region": "eu"}
    });
    let record = register(&mut a, full.clone());
    assert_eq!(record["agentId"], "agent-full");
    assert_eq!(record["clientId"], a.client_id.as_str());
    assert_eq!(record["type"], "companion");
    assert_eq!(record["capabilities"], full["capabilities"]);
    assert_eq!(record["metadata"], full["metadata"]);

    // The query lists both, sorted by agentId, with the same records.
    let listed = query(&mut a, json!({}));
    let mut expected = vec!["agent-full", a.client_id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids(&listed), expected);
    assert!(listed.contains(&record), "{listed:?}");
    assert_eq!(gw.health()["agents"], 2);
}

#[test]
fn re_registering_ones_own_agent_keeps_registered_at_and_replaces_the_rest() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let first = register(
        &mut a,
        json!({"agentId": "same", "type": "pi", "name": "Old", "capabilities": {"chat": true}, "metadata": {"v": 1}}),
    );
    pass_registered_at(&mut a, &first);
    let second = register(
        &mut a,
        json!({"agentId": "same", "type": "cli", "name": "New", "capabilities": {"tools": ["grep"]}}),
    );
    assert_eq!(second["registeredAt"], first["registeredAt"]);
    assert!(second["lastSeenAt"].as_u64() > first["registeredAt"].as_u64());
    assert_eq!(second["type"], "cli");
    assert_eq!(second["name"], "New");
    assert_eq!(second["capabilities"]["chat"], false);
    assert_eq!(second["capabilities"]["tools"], json!(["grep"]));
    assert!(
        second.get("metadata").is_none(),
        "metadata replaced: {second}"
    );
    assert_eq!(ids(&query(&mut a, json!({}))), ["same"]);
}

#[test]
fn an_id_owned_by_another_online_client_is_agent_exists() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    register(&mut a, agent("shared", "pi", json!({"chat": true})));

    let reply = b.request("agent_register", agent("shared", "cli", json!({})));
    assert_error(&reply, "AGENT_EXISTS");
    // b's default id is b's clientId; registering a's clientId as an agent id is refused
    // once a has registered it.
    register(
        &mut a,
        json!({"type": "pi", "name": "a", "capabilities": {}}),
    );
    let reply = b.request(
        "agent_register",
        json!({"agentId": a.client_id, "type": "pi", "name": "b", "capabilities": {}}),
    );
    assert_error(&reply, "AGENT_EXISTS");

    let record = find(&mut a, "shared").expect("still registered");
    assert_eq!(record["clientId"], a.client_id.as_str());
    assert_eq!(record["type"], "pi");
    assert_eq!(record["status"], "online");
    // Another user sees the record without its clientId (PROTOCOL section 12).
    let record = find(&mut b, "shared").expect("still registered");
    assert_eq!(record["clientId"], json!(null));
    assert_eq!(record["status"], "online");
}

#[test]
fn agent_turns_offline_on_disconnect_and_can_be_taken_over() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    let first = register(&mut a, agent("worker", "pi", json!({"chat": true})));
    // Let the gateway's clock pass registeredAt, so a fresh one can be told apart.
    pass_registered_at(&mut a, &first);
    drop(a);

    let offline = wait_for_record(&mut b, "worker", |r| r["status"] == "offline");
    assert!(offline["clientId"].is_null(), "{offline}");
    assert!(
        offline.as_object().unwrap().contains_key("clientId"),
        "clientId is present as null: {offline}"
    );
    assert_eq!(offline["registeredAt"], first["registeredAt"]);
    assert!(offline["lastSeenAt"].as_u64() > first["registeredAt"].as_u64());
    assert_eq!(gw.health()["agents"], 1, "kept until its TTL");

    // Heartbeat and unregister of an offline agent: FORBIDDEN, for anyone.
    let reply = b.request("agent_heartbeat", json!({"agentId": "worker"}));
    assert_error(&reply, "FORBIDDEN");
    let reply = b.request("agent_unregister", json!({"agentId": "worker"}));
    assert_error(&reply, "FORBIDDEN");

    // Another user may not take over an offline id (PROTOCOL section 11); another connection
    // of its user may, and registeredAt is set anew.
    let reply = b.request("agent_register", agent("worker", "cli", json!({})));
    assert_error(&reply, "AGENT_EXISTS");
    let mut b = Client::authed(&gw, TOKEN);
    let taken = register(&mut b, agent("worker", "cli", json!({"streaming": true})));
    assert_eq!(taken["clientId"], b.client_id.as_str());
    assert_eq!(taken["status"], "online");
    assert_eq!(taken["type"], "cli");
    assert!(
        taken["registeredAt"].as_u64() >= offline["lastSeenAt"].as_u64(),
        "fresh registeredAt: {taken} after {offline}"
    );
    assert_ne!(taken["registeredAt"], first["registeredAt"]);
    let reply = b.request("agent_heartbeat", json!({"agentId": "worker"}));
    assert_eq!(
        reply["payload"]["status"], "updated",
        "the new owner owns it"
    );
}

#[test]
fn unregister_checks_existence_and_ownership() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);

    let reply = a.request("agent_unregister", json!({"agentId": "nobody"}));
    assert_error(&reply, "AGENT_NOT_FOUND");
    let reply = a.request("agent_unregister", json!({}));
    assert_error(&reply, "AGENT_NOT_FOUND");

    let registered = register(&mut a, agent("mine", "pi", json!({"chat": true})));
    let reply = b.request("agent_unregister", json!({"agentId": "mine"}));
    assert_error(&reply, "FORBIDDEN");
    assert_eq!(find(&mut b, "mine").expect("kept")["status"], "online");

    let reply = a.request("agent_unregister", json!({"agentId": "mine"}));
    assert_eq!(reply["type"], "agent_info", "{reply}");
    assert_eq!(reply["payload"]["status"], "unregistered");
    assert_eq!(
        reply["payload"]["agent"], registered,
        "the record as it was before removal"
    );
    assert!(find(&mut a, "mine").is_none());
    let reply = a.request("agent_unregister", json!({"agentId": "mine"}));
    assert_error(&reply, "AGENT_NOT_FOUND");

    // Without agentId, the sender's clientId is meant.
    register(
        &mut b,
        json!({"type": "cli", "name": "b", "capabilities": {}}),
    );
    let reply = b.request("agent_unregister", json!({}));
    assert_eq!(reply["payload"]["status"], "unregistered", "{reply}");
    assert_eq!(reply["payload"]["agent"]["agentId"], b.client_id.as_str());
    assert_eq!(gw.health()["agents"], 0);
}

#[test]
fn heartbeat_sets_online_or_busy_and_checks_ownership() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    let registered = register(&mut a, agent("hb", "pi", json!({"chat": true})));

    let reply = a.request(
        "agent_heartbeat",
        json!({"agentId": "hb", "status": "busy"}),
    );
    assert_eq!(reply["type"], "agent_info", "{reply}");
    assert_eq!(reply["payload"]["status"], "updated");
    let busy = &reply["payload"]["agent"];
    assert_eq!(busy["status"], "busy");
    assert_eq!(busy["clientId"], a.client_id.as_str());
    assert_eq!(busy["registeredAt"], registered["registeredAt"]);
    assert!(busy["lastSeenAt"].as_u64() >= registered["lastSeenAt"].as_u64());
    assert_eq!(find(&mut b, "hb").unwrap()["status"], "busy");

    // No status: stays busy.
    let reply = a.request("agent_heartbeat", json!({"agentId": "hb"}));
    assert_eq!(reply["payload"]["agent"]["status"], "busy", "{reply}");

    let reply = a.request(
        "agent_heartbeat",
        json!({"agentId": "hb", "status": "online"}),
    );
    assert_eq!(reply["payload"]["agent"]["status"], "online", "{reply}");

    for bad in [json!("offline"), json!("idle"), json!(""), json!(1)] {
        let reply = a.request("agent_heartbeat", json!({"agentId": "hb", "status": bad}));
        assert_invalid_field(&reply, "status");
    }
    assert_eq!(find(&mut a, "hb").unwrap()["status"], "online");

    let reply = b.request(
        "agent_heartbeat",
        json!({"agentId": "hb", "status": "busy"}),
    );
    assert_error(&reply, "FORBIDDEN");
    assert_eq!(find(&mut a, "hb").unwrap()["status"], "online");
    let reply = a.request("agent_heartbeat", json!({"agentId": "ghost"}));
    assert_error(&reply, "AGENT_NOT_FOUND");
    // Without agentId the sender's own id is meant, which names no agent here.
    let reply = a.request("agent_heartbeat", json!({}));
    assert_error(&reply, "AGENT_NOT_FOUND");
}

#[test]
fn query_matches_capabilities_types_and_online_only() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    register(
        &mut a,
        agent(
            "a-chat",
            "pi",
            json!({"chat": true, "tools": ["search"], "modes": ["fast"]}),
        ),
    );
    register(
        &mut a,
        agent(
            "b-stream",
            "webchat",
            json!({"streaming": true, "custom": {
                "vision": true, "label": "yes", "obj": {}, "list": [], "count": 2,
                "off": false, "nothing": null, "zero": 0, "empty": ""
            }}),
        ),
    );
    register(
        &mut a,
        agent(
            "c-names",
            "cli",
            json!({"tools": ["chat"], "modes": ["streaming"]}),
        ),
    );
    register(&mut a, agent("d-plain", "cli", json!({})));
    register(&mut b, agent("e-gone", "pi", json!({"chat": true})));

    let by_capability = |client: &mut Client, name: &str| {
        let agents = query(client, json!({"capability": name}));
        ids(&agents)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(by_capability(&mut a, "chat"), ["a-chat", "e-gone"]);
    assert_eq!(
        by_capability(&mut a, "streaming"),
        ["b-stream"],
        "chat and streaming test only the booleans"
    );
    assert_eq!(by_capability(&mut a, "search"), ["a-chat"], "tools");
    assert_eq!(by_capability(&mut a, "fast"), ["a-chat"], "modes");
    for truthy in ["vision", "label", "obj", "list", "count"] {
        assert_eq!(
            by_capability(&mut a, truthy),
            ["b-stream"],
            "custom {truthy}"
        );
    }
    for falsy in ["off", "nothing", "zero", "empty", "missing"] {
        assert!(by_capability(&mut a, falsy).is_empty(), "custom {falsy}");
    }
    assert!(by_capability(&mut a, "Search").is_empty(), "case-sensitive");

    // No filter: everyone, sorted by agentId.
    assert_eq!(
        ids(&query(&mut a, json!({}))),
        ["a-chat", "b-stream", "c-names", "d-plain", "e-gone"]
    );
    // Type filter, alone and with a capability.
    assert_eq!(
        ids(&query(&mut a, json!({"type": "cli"}))),
        ["c-names", "d-plain"]
    );
    assert_eq!(
        ids(&query(&mut a, json!({"type": "pi", "capability": "chat"}))),
        ["a-chat", "e-gone"]
    );
    assert!(query(&mut a, json!({"type": "channel"})).is_empty());

    // onlineOnly keeps online and busy agents and drops offline ones.
    a.request(
        "agent_heartbeat",
        json!({"agentId": "d-plain", "status": "busy"}),
    );
    drop(b);
    wait_for_record(&mut a, "e-gone", |r| r["status"] == "offline");
    assert_eq!(
        ids(&query(&mut a, json!({"onlineOnly": true}))),
        ["a-chat", "b-stream", "c-names", "d-plain"]
    );
    assert_eq!(
        ids(&query(
            &mut a,
            json!({"onlineOnly": false, "capability": "chat"})
        )),
        ["a-chat", "e-gone"]
    );
    assert_eq!(
        ids(&query(
            &mut a,
            json!({"onlineOnly": true, "capability": "chat"})
        )),
        ["a-chat"]
    );

    // Bad query fields are named.
    let reply = a.request("agent_query", json!({"type": "robot"}));
    assert_invalid_field(&reply, "type");
    let reply = a.request("agent_query", json!({"onlineOnly": "yes"}));
    assert_invalid_field(&reply, "onlineOnly");
    let reply = a.request("agent_query", json!({"capability": 7}));
    assert_invalid_field(&reply, "capability");
}

#[test]
fn offline_agents_are_removed_after_their_ttl() {
    let mut config = test_config();
    config.agent_ttl_ms = 300;
    let gw = TestGateway::start(config);
    let mut a = Client::authed(&gw, TOKEN);
    // Another connection of the same user: only it may take over (PROTOCOL section 11).
    let mut b = Client::authed(&gw, TOKEN);
    register(&mut a, agent("expires", "pi", json!({"chat": true})));
    register(&mut a, agent("rescued", "pi", json!({"chat": true})));

    let disconnected = Instant::now();
    drop(a);
    wait_for_record(&mut b, "expires", |r| r["status"] == "offline");
    wait_for_record(&mut b, "rescued", |r| r["status"] == "offline");
    // Re-registered before its TTL: it stays.
    register(&mut b, agent("rescued", "cli", json!({})));

    let deadline = Instant::now() + WAIT;
    while find(&mut b, "expires").is_some() {
        assert!(Instant::now() < deadline, "offline agent never removed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let removed_after = disconnected.elapsed();
    assert!(
        removed_after >= Duration::from_millis(250),
        "removed after {removed_after:?}, before its TTL"
    );
    assert!(
        query(&mut b, json!({"capability": "chat"})).is_empty(),
        "gone from the capability index too"
    );
    let reply = b.request("agent_unregister", json!({"agentId": "expires"}));
    assert_error(&reply, "AGENT_NOT_FOUND");

    // The rescued agent outlives the TTL of its old offline period.
    let until = disconnected + Duration::from_millis(600);
    while Instant::now() < until {
        let record = find(&mut b, "rescued").expect("re-registered agent kept");
        assert_eq!(record["status"], "online");
        assert_eq!(record["clientId"], b.client_id.as_str());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(gw.health()["agents"], 1);
}

#[test]
fn max_agents_refuses_new_ids_with_limit_exceeded() {
    let mut config = test_config();
    config.max_agents = 2;
    let gw = TestGateway::start(config);
    let mut a = Client::authed(&gw, TOKEN);
    // Another connection of the same user: only it may take over (PROTOCOL section 11).
    let mut b = Client::authed(&gw, TOKEN);
    register(&mut a, agent("one", "pi", json!({})));
    register(&mut b, agent("two", "pi", json!({})));

    let reply = b.request("agent_register", agent("three", "pi", json!({})));
    assert_error(&reply, "LIMIT_EXCEEDED");
    assert_eq!(ids(&query(&mut a, json!({}))), ["one", "two"]);

    // Re-registering an existing id is not a new agent.
    register(&mut a, agent("one", "cli", json!({"chat": true})));

    // Offline agents still count until removed.
    drop(a);
    wait_for_record(&mut b, "one", |r| r["status"] == "offline");
    let reply = b.request("agent_register", agent("three", "pi", json!({})));
    assert_error(&reply, "LIMIT_EXCEEDED");
    // Taking over the offline id is allowed.
    register(&mut b, agent("one", "pi", json!({})));

    // Unregistering frees a place.
    b.request("agent_unregister", json!({"agentId": "two"}));
    let record = register(&mut b, agent("three", "pi", json!({})));
    assert_eq!(record["agentId"], "three");
}

#[test]
fn bad_register_payloads_are_invalid_message_naming_the_field() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let caps = json!({"chat": true});
    let cases = [
        (
            json!({"type": "robot", "name": "x", "capabilities": caps}),
            "type",
        ),
        (
            json!({"type": "PI", "name": "x", "capabilities": caps}),
            "type",
        ),
        (
            json!({"type": 3, "name": "x", "capabilities": caps}),
            "type",
        ),
        (json!({"name": "x", "capabilities": caps}), "type"),
        (json!({"type": "pi", "capabilities": caps}), "name"),
        (
            json!({"type": "pi", "name": "", "capabilities": caps}),
            "name",
        ),
        (
            json!({"type": "pi", "name": ["x"], "capabilities": caps}),
            "name",
        ),
        (json!({"type": "pi", "name": "x"}), "capabilities"),
        (
            json!({"type": "pi", "name": "x", "capabilities": [1]}),
            "capabilities",
        ),
        (
            json!({"type": "pi", "name": "x", "capabilities": "chat"}),
            "capabilities",
        ),
        (
            json!({"type": "pi", "name": "x", "capabilities": {"chat": "yes"}}),
            "capabilities",
        ),
        (
            json!({"type": "pi", "name": "x", "capabilities": {"tools": "grep"}}),
            "capabilities",
        ),
        (
            json!({"type": "pi", "name": "x", "capabilities": caps, "metadata": "m"}),
            "metadata",
        ),
        (
            json!({"agentId": 5, "type": "pi", "name": "x", "capabilities": caps}),
            "agentId",
        ),
        (
            json!({"agentId": "", "type": "pi", "name": "x", "capabilities": caps}),
            "agentId",
        ),
        (
            json!({"agentId": "a".repeat(129), "type": "pi", "name": "x", "capabilities": caps}),
            "agentId",
        ),
    ];
    for (payload, field) in cases {
        let reply = a.request("agent_register", payload.clone());
        assert_invalid_field(&reply, field);
    }
    assert!(query(&mut a, json!({})).is_empty(), "nothing registered");
    assert_eq!(gw.health()["agents"], 0);

    // Every agent type is accepted.
    for (i, t) in ["pi", "cli", "webchat", "companion", "channel", "custom"]
        .into_iter()
        .enumerate()
    {
        let record = register(&mut a, agent(&format!("t{i}"), t, json!({})));
        assert_eq!(record["type"], t);
    }
}

#[test]
fn agent_requests_need_authentication() {
    let gw = TestGateway::start(test_config());
    let mut anon = Client::connect(&gw);
    for (msg_type, payload) in [
        ("agent_register", agent("x", "pi", json!({}))),
        ("agent_query", json!({})),
        ("agent_heartbeat", json!({"agentId": "x"})),
        ("agent_unregister", json!({"agentId": "x"})),
    ] {
        let reply = anon.request(msg_type, payload);
        assert_error(&reply, "AUTH_REQUIRED");
    }
    assert_eq!(gw.health()["agents"], 0);
}
