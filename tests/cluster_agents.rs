//! Agents and routes to them across nodes of one cluster (PROTOCOL sections 6, 12 and 13):
//! in-process gateways sharing a real `redis-server`, clients on different nodes.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::cluster::node;
use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};

fn agent(id: &str, capabilities: Value) -> Value {
    json!({"agentId": id, "type": "cli", "name": format!("Agent {id}"), "capabilities": capabilities})
}

fn register(client: &mut Client, payload: Value) -> Value {
    let reply = client.request("agent_register", payload);
    assert_eq!(reply["payload"]["status"], "registered", "{reply}");
    reply["payload"]["agent"].clone()
}

fn query(client: &mut Client, payload: Value) -> Vec<Value> {
    let reply = client.request("agent_query", payload);
    assert_eq!(reply["type"], "agent_list", "{reply}");
    reply["payload"]["agents"]
        .as_array()
        .expect("agents")
        .clone()
}

fn by_id<'a>(agents: &'a [Value], id: &str) -> &'a Value {
    agents
        .iter()
        .find(|a| a["agentId"] == id)
        .unwrap_or_else(|| panic!("{id} not in {agents:?}"))
}

#[test]
fn agents_registered_on_one_node_are_seen_and_owned_cluster_wide() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = [
        node(&redis, "n1", |c| c.max_agents = 3),
        node(&redis, "n2", |c| c.max_agents = 3),
    ];
    let mut alice = Client::authed(&nodes[0], TOKEN);
    let mut alice2 = Client::authed(&nodes[1], TOKEN);
    let mut bob = Client::authed(&nodes[1], TOKEN_BOB);

    let record = register(&mut alice, agent("helper", json!({"tools": ["search"]})));
    assert_eq!(record["clientId"], alice.client_id.as_str());
    assert_eq!(record["status"], "online");

    // Seen from the other node: with its clientId by the same user, without by another.
    let mine = query(&mut alice2, json!({}));
    assert_eq!(by_id(&mine, "helper")["clientId"], alice.client_id.as_str());
    let theirs = query(&mut bob, json!({"capability": "search"}));
    assert_eq!(by_id(&theirs, "helper")["clientId"], Value::Null);
    assert_eq!(
        by_id(&theirs, "helper")["capabilities"]["tools"],
        json!(["search"])
    );

    // The id is taken while its owner is online, whoever asks and wherever.
    let taken = bob.request("agent_register", agent("helper", json!({})));
    assert_error(&taken, "AGENT_EXISTS");
    let taken = alice2.request("agent_register", agent("helper", json!({})));
    assert_error(&taken, "AGENT_EXISTS");
    // Another client's clientId on another node is taken too.
    let squat = bob.request("agent_register", agent(&alice.client_id, json!({})));
    assert_error(&squat, "AGENT_EXISTS");

    // A heartbeat's status is seen everywhere; only the owner may send it.
    let updated = alice.request(
        "agent_heartbeat",
        json!({"agentId": "helper", "status": "busy"}),
    );
    assert_eq!(updated["payload"]["status"], "updated", "{updated}");
    assert_eq!(
        by_id(&query(&mut bob, json!({})), "helper")["status"],
        "busy"
    );
    let forbidden = bob.request("agent_heartbeat", json!({"agentId": "helper"}));
    assert_error(&forbidden, "FORBIDDEN");

    // max_agents counts the cluster's agents.
    register(&mut bob, agent("b1", json!({})));
    register(&mut alice2, agent("a2", json!({})));
    let full = bob.request("agent_register", agent("b2", json!({})));
    assert_error(&full, "LIMIT_EXCEEDED");

    // Unregistered by its owner: gone for everyone, and its seat is free.
    let gone = alice.request("agent_unregister", json!({"agentId": "helper"}));
    assert_eq!(gone["payload"]["status"], "unregistered", "{gone}");
    assert!(query(&mut bob, json!({}))
        .iter()
        .all(|a| a["agentId"] != "helper"));
    register(&mut bob, agent("b2", json!({})));

    // Paging: limit and cursor walk the whole registry in id order.
    let page = bob.request("agent_query", json!({"limit": 2}));
    let first: Vec<&str> = page["payload"]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["agentId"].as_str().unwrap())
        .collect();
    assert_eq!(first, ["a2", "b1"]);
    let next = page["payload"]["next"].as_str().expect("next").to_string();
    let rest = query(&mut bob, json!({"limit": 2, "cursor": next}));
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["agentId"], "b2");
}

#[test]
fn routes_reach_agents_on_other_nodes_and_capabilities_go_round_robin() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = [
        node(&redis, "n1", |_| {}),
        node(&redis, "n2", |_| {}),
        node(&redis, "n3", |_| {}),
    ];
    let mut workers: Vec<Client> = (0..3)
        .map(|i| Client::authed(&nodes[i], TOKEN_BOB))
        .collect();
    for (i, worker) in workers.iter_mut().enumerate() {
        register(
            worker,
            agent(&format!("w{i}"), json!({"tools": ["search"]})),
        );
    }
    let mut alice = Client::authed(&nodes[0], TOKEN);

    // By id, on another node: the answer comes from the agent's id (another user's agent).
    let id = next_id();
    alice.send(&json!({"type": "route_request", "id": id, "target": "w2", "payload": {"q": 1}}));
    let delivered = workers[2].recv_type("route_request");
    assert_eq!(delivered["source"], alice.client_id.as_str());
    workers[2].send(&json!({"type": "route_response", "id": next_id(),
        "target": alice.client_id, "replyTo": id, "payload": {"a": 1}}));
    let answer = alice.recv_type("route_response");
    assert_eq!(answer["source"], "w2", "{answer}");
    assert_eq!(answer["payload"], json!({"a": 1}));

    // By capability: one cluster-wide round robin, whichever node the requests come from.
    let mut requesters = [
        Client::authed(&nodes[0], TOKEN),
        Client::authed(&nodes[1], TOKEN),
        Client::authed(&nodes[2], TOKEN),
    ];
    for round in 0..6 {
        let requester = &mut requesters[round % 3];
        requester.send(&json!({"type": "route_request", "id": next_id(),
            "target": "capability:search", "payload": {"round": round}}));
    }
    let mut counts = HashMap::new();
    for (i, worker) in workers.iter_mut().enumerate() {
        for _ in 0..2 {
            let msg = worker.recv_type("route_request");
            assert!(msg["payload"]["round"].is_u64());
            *counts.entry(i).or_insert(0) += 1;
        }
        worker.expect_silence(Duration::from_millis(100));
    }
    assert_eq!(counts.len(), 3, "every agent got its share: {counts:?}");

    // A busy agent is passed over; none online: TARGET_NOT_FOUND.
    for (i, worker) in workers.iter_mut().enumerate() {
        let id = format!("w{i}");
        let busy = worker.request("agent_heartbeat", json!({"status": "busy", "agentId": id}));
        assert_eq!(busy["payload"]["agent"]["status"], "busy", "{busy}");
    }
    let none = alice.request_envelope(json!({"type": "route_request",
        "target": "capability:search", "payload": {}}));
    assert_error(&none, "TARGET_NOT_FOUND");
}

#[test]
fn an_agent_goes_offline_with_its_owner_and_is_removed_after_its_ttl() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = [
        node(&redis, "n1", |c| c.agent_ttl_ms = 1500),
        node(&redis, "n2", |c| c.agent_ttl_ms = 1500),
    ];
    let mut owner = Client::authed(&nodes[0], TOKEN);
    let mut bob = Client::authed(&nodes[1], TOKEN_BOB);
    register(&mut owner, agent("lamp", json!({"tools": ["light"]})));
    owner.close_cleanly();
    assert!(
        eventually(|| by_id(&query(&mut bob, json!({})), "lamp")["status"] == "offline"),
        "offline for everyone"
    );
    let refused = bob.request_envelope(json!({"type": "route_request", "target": "lamp",
        "payload": {}}));
    assert_error(&refused, "TARGET_NOT_FOUND");
    // Another user may not take it over; the same user may, from another node.
    let taken = bob.request("agent_register", agent("lamp", json!({})));
    assert_error(&taken, "AGENT_EXISTS");
    let mut again = Client::authed(&nodes[1], TOKEN);
    register(&mut again, agent("lamp", json!({"tools": ["light"]})));
    again.close_cleanly();
    // Removed once its TTL (from the second owner's close) has run out.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(6);
    loop {
        let agents = query(&mut bob, json!({}));
        if agents.iter().all(|a| a["agentId"] != "lamp") {
            break;
        }
        assert!(Instant::now() < deadline, "not removed: {agents:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "removed before its TTL"
    );
}
