//! Sessions across nodes of one cluster (PROTOCOL sections 5 and 13): several gateways
//! sharing a real `redis-server`, clients on different nodes, over real sockets.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{node, wait_broker};
use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};

fn three_nodes(redis: &RedisServer) -> [TestGateway; 3] {
    [
        node(redis, "n1", |_| {}),
        node(redis, "n2", |_| {}),
        node(redis, "n3", |_| {}),
    ]
}

#[test]
fn members_on_three_nodes_see_joins_relays_and_leaves() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = three_nodes(&redis);
    let mut alice = Client::authed(&nodes[0], TOKEN);
    let mut bob = Client::authed(&nodes[1], TOKEN_BOB);
    let mut carol = Client::authed(&nodes[2], TOKEN_CAROL);

    let created = alice.request(
        "session_create",
        json!({"sessionId": "room", "name": "Room", "metadata": {"topic": [1, 2]}}),
    );
    assert_eq!(created["payload"]["status"], "created", "{created}");
    assert_eq!(created["payload"]["owner"], "alice");

    let joined = bob.request("session_join", json!({"sessionId": "room"}));
    assert_eq!(joined["payload"]["status"], "joined", "{joined}");
    assert_eq!(joined["payload"]["name"], "Room");
    assert_eq!(joined["payload"]["metadata"], json!({"topic": [1, 2]}));
    let members: Vec<&str> = joined["payload"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["clientId"].as_str().unwrap())
        .collect();
    assert_eq!(members, [alice.client_id.as_str(), bob.client_id.as_str()]);
    let presence = alice.recv_type("presence");
    assert_eq!(presence["payload"]["status"], "joined");
    assert_eq!(presence["payload"]["clientId"], bob.client_id.as_str());
    assert_eq!(presence["payload"]["userId"], "bob");

    carol.request("session_join", json!({"sessionId": "room"}));
    for member in [&mut alice, &mut bob] {
        let presence = member.recv_type("presence");
        assert_eq!(presence["payload"]["clientId"], carol.client_id.as_str());
    }

    // A relay reaches the members on the two other nodes, with one id, never the sender.
    alice.send_scoped("broadcast", "room", json!({"text": "hello"}));
    let at_bob = bob.recv_type("broadcast");
    let at_carol = carol.recv_type("broadcast");
    assert_eq!(at_bob["payload"], json!({"text": "hello"}));
    assert_eq!(at_bob["source"], alice.client_id.as_str());
    assert_eq!(at_bob["sessionId"], "room");
    assert_eq!(at_bob["id"], at_carol["id"]);
    alice.expect_silence(Duration::from_millis(200));

    // A client's own presence reaches the others.
    bob.send_msg(
        "presence",
        json!({"status": "typing", "sessionKey": "room"}),
    );
    for member in [&mut alice, &mut carol] {
        let typing = member.recv_type("presence");
        assert_eq!(typing["payload"]["status"], "typing");
        assert_eq!(typing["source"], bob.client_id.as_str());
    }

    // A leave on one node is presence `left` on the others; the leaver gets nothing more.
    let left = carol.request("session_leave", json!({"sessionId": "room"}));
    assert_eq!(left["payload"]["status"], "left", "{left}");
    for member in [&mut alice, &mut bob] {
        let presence = member.recv_type("presence");
        assert_eq!(presence["payload"]["status"], "left");
        assert_eq!(presence["payload"]["clientId"], carol.client_id.as_str());
    }
    bob.send_scoped("broadcast", "room", json!({"n": 2}));
    assert_eq!(alice.recv_type("broadcast")["payload"], json!({"n": 2}));
    carol.expect_silence(Duration::from_millis(200));
    let refused = carol.request_envelope(json!({
        "type": "broadcast", "sessionId": "room", "payload": {}
    }));
    assert_error(&refused, "NOT_A_MEMBER");

    // A disconnect is a leave too.
    bob.close_cleanly();
    let presence = alice.recv_type("presence");
    assert_eq!(presence["payload"]["status"], "left");
}

#[test]
fn every_member_sees_the_same_order_and_each_senders_order() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = three_nodes(&redis);
    let mut senders = [
        Client::authed(&nodes[0], TOKEN),
        Client::authed(&nodes[1], TOKEN_BOB),
    ];
    let mut receivers = [
        Client::authed(&nodes[1], TOKEN_CAROL),
        Client::authed(&nodes[2], TOKEN),
        Client::authed(&nodes[0], TOKEN_BOB),
    ];
    senders[0].request("session_create", json!({"sessionId": "order"}));
    let mut everyone: Vec<&mut Client> = Vec::new();
    let (s0, s1) = senders.split_at_mut(1);
    everyone.push(&mut s0[0]);
    for c in s1.iter_mut().chain(receivers.iter_mut()) {
        let reply = c.request("session_join", json!({"sessionId": "order"}));
        assert_eq!(reply["payload"]["status"], "joined", "{reply}");
        for earlier in everyone.iter_mut() {
            earlier.recv_type("presence");
        }
        everyone.push(c);
    }
    drop(everyone);
    const N: usize = 200;
    for i in 0..N {
        for (s, sender) in senders.iter_mut().enumerate() {
            sender.send_scoped("broadcast", "order", json!({"s": s, "i": i}));
        }
    }
    let mut orders = Vec::new();
    for receiver in receivers.iter_mut() {
        let mut seen = Vec::new();
        let mut next = [0usize; 2];
        for _ in 0..2 * N {
            let msg = receiver.recv_type("broadcast");
            let (s, i) = (
                msg["payload"]["s"].as_u64().unwrap() as usize,
                msg["payload"]["i"].as_u64().unwrap() as usize,
            );
            assert_eq!(i, next[s], "sender {s}'s messages in order");
            next[s] += 1;
            seen.push((s, i));
        }
        orders.push(seen);
    }
    assert_eq!(orders[0], orders[1], "one order for every member");
    assert_eq!(orders[1], orders[2], "one order for every member");
}

#[test]
fn concurrent_joins_into_a_full_session_take_exactly_the_free_seats() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = three_nodes(&redis);
    let mut owner = Client::authed(&nodes[0], TOKEN);
    owner.request("session_create", json!({"sessionId": "seats"}));
    // max_clients_per_session is 10: nine seats are free for twenty joiners on three nodes.
    let mut joiners: Vec<Client> = (0..20)
        .map(|i| Client::authed(&nodes[i % 3], [TOKEN, TOKEN_BOB, TOKEN_CAROL][i % 3]))
        .collect();
    let ids: Vec<String> = joiners
        .iter_mut()
        .map(|c| c.send_msg("session_join", json!({"sessionId": "seats"})))
        .collect();
    let (mut joined, mut full) = (0, 0);
    for (client, id) in joiners.iter_mut().zip(&ids) {
        // Presence of other joins may come before the reply.
        loop {
            let msg = client.recv();
            if msg["replyTo"] != id.as_str() {
                assert_eq!(msg["type"], "presence", "{msg}");
                continue;
            }
            match msg["type"].as_str() {
                Some("session_info") => joined += 1,
                Some("error") => {
                    assert_error(&msg, "SESSION_FULL");
                    full += 1;
                }
                _ => panic!("{msg}"),
            }
            break;
        }
    }
    assert_eq!((joined, full), (9, 11));
}

#[test]
fn an_unreachable_broker_fails_cluster_requests_and_keeps_connections() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let gw = node(&redis, "solo", |_| {});
    let mut alice = Client::authed(&gw, TOKEN);
    alice.request(
        "session_create",
        json!({"sessionId": "kept", "name": "Kept", "metadata": {"k": [1]}}),
    );
    redis.kill();
    wait_broker(&gw, "down");
    let (status, body) = gw.http_get("/health");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"status\":\"degraded\""), "{body}");
    // What needs only this node works; what needs the cluster is UNAVAILABLE, at once.
    let pong = alice.request("ping", json!({}));
    assert_eq!(pong["type"], "pong");
    let started = Instant::now();
    alice.request_error("session_join", json!({"sessionId": "x"}), "UNAVAILABLE");
    let refused = alice.request_envelope(json!({
        "type": "broadcast", "sessionId": "kept", "payload": {}
    }));
    assert_error(&refused, "UNAVAILABLE");
    assert!(started.elapsed() < Duration::from_millis(500));
    // Back within 5 s of Redis (empty) coming back.
    redis.restart();
    let back = Instant::now();
    wait_broker(&gw, "ok");
    assert!(back.elapsed() < Duration::from_secs(5));
    // The node writes back what it holds at its next heartbeat.
    let mut bob = Client::authed(&gw, TOKEN_BOB);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = bob.request("session_join", json!({"sessionId": "kept"}));
        if reply["payload"]["status"] == "joined" {
            assert_eq!(reply["payload"]["name"], "Kept", "{reply}");
            assert_eq!(reply["payload"]["metadata"], json!({"k": [1]}), "{reply}");
            break;
        }
        assert_error(&reply, "SESSION_NOT_FOUND");
        assert!(
            Instant::now() < deadline,
            "the session was not written back: {}",
            redis.command(&["KEYS", "*"])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(alice.recv_type("presence")["payload"]["status"], "joined");
}

#[test]
fn a_host_reaches_clients_and_sessions_on_other_nodes() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = three_nodes(&redis);
    let mut alice = Client::authed(&nodes[1], TOKEN);
    let mut bob = Client::authed(&nodes[2], TOKEN_BOB);
    alice.request("session_create", json!({"sessionId": "hosted"}));
    bob.request("session_join", json!({"sessionId": "hosted"}));
    alice.recv_type("presence");

    // The host of node 1, which has neither client, reaches both.
    let host = &nodes[0].handle;
    host.send_to_client(&alice.client_id, "note", json!({"for": "alice"}))
        .expect("queued");
    let note = alice.recv_type("note");
    assert_eq!(note["payload"], json!({"for": "alice"}));
    host.broadcast_to_session("hosted", json!({"news": 1}))
        .expect("queued");
    for member in [&mut alice, &mut bob] {
        let news = member.recv_type("broadcast");
        assert_eq!(news["payload"], json!({"news": 1}));
        assert_eq!(news["sessionId"], "hosted");
    }

    // A client that left is no longer reached.
    let gone = bob.client_id.clone();
    bob.close_cleanly();
    alice.recv_type("presence");
    host.send_to_client(&gone, "note", json!({}))
        .expect("queued");
    host.send_to_client(&alice.client_id, "note", json!({"n": 2}))
        .expect("queued");
    assert_eq!(alice.recv_type("note")["payload"], json!({"n": 2}));
}

#[test]
fn health_and_metrics_describe_the_cluster() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = three_nodes(&redis);
    assert!(
        eventually(|| nodes[0].health()["cluster"]["nodes"] == 3),
        "{}",
        nodes[0].health()
    );
    // The counts are the cluster's: a session on one node, an agent on another.
    let mut alice = Client::authed(&nodes[0], TOKEN);
    alice.request("session_create", json!({"sessionId": "counted"}));
    let mut bob = Client::authed(&nodes[1], TOKEN_BOB);
    let agent = json!({"type": "cli", "name": "b", "capabilities": {}});
    bob.request("agent_register", agent);
    assert!(
        eventually(|| {
            let h = nodes[2].health();
            h["sessions"] == 1 && h["agents"] == 1 && h["clients"] == 2
        }),
        "{}",
        nodes[2].health()
    );
    let mut carol = Client::authed(&nodes[2], TOKEN_CAROL);
    let hello = carol.request(
        "connect",
        json!({"deviceId": "d1", "role": "node", "protocolVersion": 1}),
    );
    assert!(
        hello["payload"]["stateVersion"].as_u64().unwrap() >= 2,
        "{hello}"
    );
    let health = nodes[1].health();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["cluster"]["nodeId"], "n2");
    assert_eq!(health["cluster"]["broker"], "ok");
    let gw = &nodes[2];
    assert_eq!(gw.metric("gateway_cluster_nodes"), Some(3.0));
    assert_eq!(gw.metric("gateway_broker_up"), Some(1.0));
    assert!(gw.metric("gateway_broker_commands_total").unwrap() > 0.0);
    assert_eq!(gw.metric("gateway_broker_errors_total"), Some(0.0));
    let answered = gw.metric("gateway_broker_rtt_seconds_count").unwrap();
    assert!(answered > 0.0);
    assert_eq!(
        gw.metric("gateway_broker_rtt_seconds_bucket{le=\"+Inf\"}"),
        Some(answered)
    );
}

/// The id of the Redis connection named `name` (`CLIENT LIST`).
fn connection_id(redis: &RedisServer, name: &str) -> String {
    let list = redis.command(&["CLIENT", "LIST"]);
    let line = list
        .lines()
        .find(|l| l.split(' ').any(|f| f == format!("name={name}")))
        .unwrap_or_else(|| panic!("no connection {name} in {list}"));
    line.split(' ')
        .find_map(|f| f.strip_prefix("id="))
        .expect("id")
        .to_string()
}

#[test]
fn a_node_whose_subscriber_was_cut_catches_up_on_what_it_missed() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = [node(&redis, "n1", |_| {}), node(&redis, "n2", |_| {})];
    let mut alice = Client::authed(&nodes[0], TOKEN);
    let mut bob = Client::authed(&nodes[1], TOKEN_BOB);
    let mut carol = Client::authed(&nodes[1], TOKEN_CAROL);
    alice.request("session_create", json!({"sessionId": "gap"}));
    bob.request("session_join", json!({"sessionId": "gap"}));
    alice.recv_type("presence");

    // Node 1 loses its subscriber; carol joins through node 2 while it is away.
    let id = connection_id(&redis, "gw-n1-sub");
    redis.command(&["CLIENT", "KILL", "ID", &id]);
    let joined = carol.request("session_join", json!({"sessionId": "gap"}));
    assert_eq!(joined["payload"]["status"], "joined", "{joined}");
    bob.recv_type("presence");
    wait_broker(&nodes[0], "ok");

    // Node 1 learns of carol: alice gets her presence and her relays.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut saw_joined = false;
    loop {
        carol.send_scoped("broadcast", "gap", json!({"from": "carol"}));
        alice
            .ws
            .get_mut()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let got = match alice.ws.read() {
            Ok(tungstenite::Message::Text(text)) => serde_json::from_str::<Value>(&text).ok(),
            _ => None,
        };
        alice.ws.get_mut().set_read_timeout(Some(WAIT)).unwrap();
        match got {
            Some(msg) if msg["type"] == "presence" => {
                assert_eq!(
                    msg["payload"]["clientId"],
                    carol.client_id.as_str(),
                    "{msg}"
                );
                assert_eq!(msg["payload"]["status"], "joined");
                saw_joined = true;
            }
            Some(msg) if msg["type"] == "broadcast" => {
                assert_eq!(msg["source"], carol.client_id.as_str());
                break;
            }
            Some(msg) => panic!("{msg}"),
            None => {}
        }
        assert!(Instant::now() < deadline, "node 1 never took carol in");
    }
    assert!(saw_joined, "alice was told carol joined before her relay");
}

#[test]
fn routes_to_a_client_on_another_node_follow_the_visibility_rules() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = [node(&redis, "n1", |_| {}), node(&redis, "n2", |_| {})];
    let mut desk = Client::authed(&nodes[0], TOKEN);
    let mut phone = Client::authed(&nodes[1], TOKEN);
    let mut bob = Client::authed(&nodes[1], TOKEN_BOB);

    // Same user, two nodes: delivered with the requester's id and source, answered once.
    let id = next_id();
    desk.send(
        &json!({"type": "route_request", "id": id, "target": phone.client_id,
                      "payload": {"q": 1}}),
    );
    let delivered = phone.recv_type("route_request");
    assert_eq!(delivered["id"], id.as_str());
    assert_eq!(delivered["source"], desk.client_id.as_str());
    assert_eq!(delivered["payload"], json!({"q": 1}));
    phone.send(
        &json!({"type": "route_response", "id": next_id(), "target": desk.client_id,
                       "replyTo": id, "payload": {"a": 2}}),
    );
    let answer = desk.recv_type("route_response");
    assert_eq!(answer["replyTo"], id.as_str());
    assert_eq!(answer["source"], phone.client_id.as_str());
    assert_eq!(answer["payload"], json!({"a": 2}));
    let again = phone.request_envelope(json!({"type": "route_response",
        "target": desk.client_id, "replyTo": id, "payload": {}}));
    assert_error(&again, "TARGET_NOT_FOUND");

    // Another user is reached only through a shared session.
    let refused = bob.request_envelope(json!({"type": "route_request",
        "target": desk.client_id, "payload": {}}));
    assert_error(&refused, "TARGET_NOT_FOUND");
    let unknown = bob.request_envelope(json!({"type": "route_request",
        "target": "no-such-client", "payload": {}}));
    assert_eq!(
        refused["payload"]["message"]
            .as_str()
            .map(|m| m.replace(&desk.client_id, "X")),
        unknown["payload"]["message"]
            .as_str()
            .map(|m| m.replace("no-such-client", "X")),
        "an unreachable client looks like an unknown one"
    );
    desk.request("session_create", json!({"sessionId": "shared"}));
    bob.request("session_join", json!({"sessionId": "shared"}));
    desk.recv_type("presence");
    let id = next_id();
    bob.send(
        &json!({"type": "route_request", "id": id, "target": desk.client_id,
                     "payload": {}}),
    );
    assert_eq!(
        desk.recv_type("route_request")["source"],
        bob.client_id.as_str()
    );

    // No agent has the capability.
    let capability = bob.request_envelope(json!({"type": "route_request",
        "target": "capability:search", "payload": {}}));
    assert_error(&capability, "TARGET_NOT_FOUND");
}

#[test]
fn private_sessions_and_patches_hold_across_nodes() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = [node(&redis, "n1", |_| {}), node(&redis, "n2", |_| {})];
    let mut alice = Client::authed(&nodes[0], TOKEN);
    let mut bob = Client::authed(&nodes[1], TOKEN_BOB);
    let mut carol = Client::authed(&nodes[1], TOKEN_CAROL);
    let created = alice.request(
        "session_create",
        json!({"sessionId": "secret", "access": "private", "allowUsers": ["carol"],
               "metadata": {"a": 1}}),
    );
    assert_eq!(created["payload"]["access"], "private", "{created}");

    // Invisible to bob, wherever he asks from; carol is admitted.
    bob.request_error(
        "session_join",
        json!({"sessionId": "secret"}),
        "SESSION_NOT_FOUND",
    );
    bob.request_error(
        "session_create",
        json!({"sessionId": "secret"}),
        "FORBIDDEN",
    );
    let joined = carol.request("session_join", json!({"sessionId": "secret"}));
    assert_eq!(joined["payload"]["access"], "private");
    assert_eq!(joined["payload"]["owner"], "alice");
    alice.recv_type("presence");

    // A member's patch: merged here, seen by the other node's member.
    let patched = carol.request(
        "session_patch",
        json!({"sessionKey": "secret", "patch": {"b": [2]}}),
    );
    assert_eq!(patched["payload"]["status"], "patched", "{patched}");
    assert_eq!(patched["payload"]["metadata"], json!({"a": 1, "b": [2]}));
    let seen = alice.recv_type("session_info");
    assert_eq!(seen["payload"]["status"], "patched");
    assert!(seen.get("replyTo").is_none());
    assert_eq!(seen["payload"]["metadata"], json!({"a": 1, "b": [2]}));
    bob.request_error(
        "session_patch",
        json!({"sessionKey": "secret", "patch": {"x": 1}}),
        "SESSION_NOT_FOUND",
    );
    carol.request_error(
        "session_patch",
        json!({"sessionKey": "secret", "allowUsers": ["bob"]}),
        "FORBIDDEN",
    );

    // The owner takes carol off the list: she is removed, alice sees her leave.
    let id = alice.send_msg(
        "session_patch",
        json!({"sessionKey": "secret", "allowUsers": []}),
    );
    let removed = carol.recv_type("session_info");
    assert_eq!(removed["payload"]["status"], "removed", "{removed}");
    let mut got = [alice.recv(), alice.recv()];
    got.sort_by_key(|m| m["type"].as_str().unwrap_or("").to_string());
    assert_eq!(got[0]["type"], "presence");
    assert_eq!(got[0]["payload"]["status"], "left");
    assert_eq!(got[1]["replyTo"], id.as_str());
    assert_eq!(got[1]["payload"]["status"], "patched");
    let refused = carol.request_envelope(json!({"type": "broadcast", "sessionId": "secret",
        "payload": {}}));
    assert_error(&refused, "NOT_A_MEMBER");
}

#[test]
fn concurrent_patches_on_two_nodes_lose_nothing() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = [node(&redis, "n1", |_| {}), node(&redis, "n2", |_| {})];
    let mut alice = Client::authed(&nodes[0], TOKEN);
    let mut bob = Client::authed(&nodes[1], TOKEN_BOB);
    alice.request("session_create", json!({"sessionId": "board"}));
    bob.request("session_join", json!({"sessionId": "board"}));
    alice.recv_type("presence");
    const N: usize = 20;
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(alice.send_msg(
            "session_patch",
            json!({"sessionKey": "board",
            "patch": {format!("a{i}"): i}}),
        ));
        ids.push(bob.send_msg(
            "session_patch",
            json!({"sessionKey": "board",
            "patch": {format!("b{i}"): i}}),
        ));
    }
    // Each gets its N replies and the other's N notices, in some interleaving.
    let mut last = Value::Null;
    for client in [&mut alice, &mut bob] {
        let mut replies = 0;
        for _ in 0..2 * N {
            let msg = client.recv_type("session_info");
            assert_eq!(msg["payload"]["status"], "patched", "{msg}");
            if msg.get("replyTo").is_some() {
                replies += 1;
            }
            last = msg["payload"]["metadata"].clone();
        }
        assert_eq!(replies, N);
    }
    let reply = alice.request("session_patch", json!({"sessionKey": "board", "patch": {}}));
    let metadata = reply["payload"]["metadata"]
        .as_object()
        .expect("metadata")
        .clone();
    assert_eq!(
        metadata.len(),
        2 * N,
        "every patch kept: {metadata:?} (last seen {last})"
    );
}

/// Authenticate with `token` on `gw` and send `connect` as `device`; the client and its
/// `hello_ok`.
fn device(gw: &TestGateway, token: &str, device: &str) -> (Client, Value) {
    let mut client = Client::authed(gw, token);
    let hello = client.request(
        "connect",
        json!({"deviceId": device, "role": "node", "protocolVersion": 1}),
    );
    assert_eq!(hello["type"], "hello_ok", "{hello}");
    (client, hello)
}

fn device_ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("devices")
        .iter()
        .map(|d| d["deviceId"].as_str().expect("deviceId"))
        .collect()
}

#[test]
fn a_user_sees_its_devices_on_every_node_and_no_one_else_s() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = [node(&redis, "n1", |_| {}), node(&redis, "n2", |_| {})];
    let (mut desk, hello) = device(&nodes[0], TOKEN, "desk");
    assert_eq!(device_ids(&hello["payload"]["presence"]), ["desk"]);
    let (_bob, _) = device(&nodes[1], TOKEN_BOB, "bob-phone");
    let (phone, hello) = device(&nodes[1], TOKEN, "phone");
    // Its own device first, then the user's others, wherever they are; not bob's.
    assert_eq!(device_ids(&hello["payload"]["presence"]), ["phone", "desk"]);

    let page = desk.request("presence_query", json!({"limit": 1}));
    assert_eq!(device_ids(&page["payload"]["devices"]), ["desk"]);
    let next = page["payload"]["next"].as_str().expect("next").to_string();
    let page = desk.request("presence_query", json!({"limit": 1, "cursor": next}));
    assert_eq!(device_ids(&page["payload"]["devices"]), ["phone"]);
    assert!(page["payload"].get("next").is_none(), "{page}");

    // A device goes with its connection.
    phone.close_cleanly();
    assert!(eventually(|| {
        let page = desk.request("presence_query", json!({}));
        device_ids(&page["payload"]["devices"]) == ["desk"]
    }));
}

#[test]
fn a_join_whose_event_comes_before_the_scripts_reply_is_answered() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let proxy = common::cluster::SlowCommandsProxy::start(&redis, Duration::from_millis(150));
    let slow = node(&redis, "slow", |config| {
        let url = format!("redis://127.0.0.1:{}", proxy.port);
        config.cluster_redis = Some(gateway::RedisUrl::parse(&url).expect("url"));
    });
    let quick = node(&redis, "quick", |_| {});
    let mut alice = Client::authed(&slow, TOKEN);
    let mut bob = Client::authed(&quick, TOKEN_BOB);
    let mut carol = Client::authed(&slow, TOKEN_CAROL);

    // A create on the slow node: its join event is there 150 ms before the script's reply.
    let created = alice.request("session_create", json!({"sessionId": "early"}));
    assert_eq!(created["payload"]["status"], "created", "{created}");
    // The first join of the slow node into a session made elsewhere, then a second one.
    bob.request("session_create", json!({"sessionId": "elsewhere"}));
    let joined = carol.request("session_join", json!({"sessionId": "elsewhere"}));
    assert_eq!(joined["payload"]["status"], "joined", "{joined}");
    assert_eq!(
        bob.recv_type("presence")["payload"]["clientId"],
        carol.client_id.as_str()
    );
    let joined = alice.request("session_join", json!({"sessionId": "elsewhere"}));
    assert_eq!(joined["payload"]["status"], "joined", "{joined}");
    assert_eq!(
        carol.recv_type("presence")["payload"]["clientId"],
        alice.client_id.as_str()
    );
    bob.recv_type("presence");

    // The mirrors so started are whole: relays reach the members on both nodes.
    bob.send_scoped("broadcast", "elsewhere", json!({"n": 1}));
    assert_eq!(alice.recv_type("broadcast")["payload"], json!({"n": 1}));
    assert_eq!(carol.recv_type("broadcast")["payload"], json!({"n": 1}));
    let joined = bob.request("session_join", json!({"sessionId": "early"}));
    assert_eq!(joined["payload"]["status"], "joined", "{joined}");
    assert_eq!(
        alice.recv_type("presence")["payload"]["clientId"],
        bob.client_id.as_str()
    );
    alice.send_scoped("broadcast", "early", json!({"n": 2}));
    assert_eq!(bob.recv_type("broadcast")["payload"], json!({"n": 2}));
}

#[test]
fn what_waits_for_a_slow_join_reply_is_bounded_by_max_outbound_buffer() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // The slow node hears the channel at once but its script replies 400 ms late, so what
    // the session carries meanwhile waits for the joiner's reply.
    let proxy = common::cluster::SlowCommandsProxy::start(&redis, Duration::from_millis(400));
    let slow = node(&redis, "slow", |config| {
        let url = format!("redis://127.0.0.1:{}", proxy.port);
        config.cluster_redis = Some(gateway::RedisUrl::parse(&url).expect("url"));
        config.max_message_size = 16 * 1024;
        config.max_outbound_buffer = 64 * 1024;
    });
    let quick = node(&redis, "quick", |_| {});
    let mut bob = Client::authed(&quick, TOKEN_BOB);
    bob.request("session_create", json!({"sessionId": "flood"}));
    let mut alice = Client::authed(&slow, TOKEN);
    alice.send_msg("session_join", json!({"sessionId": "flood"}));
    // Bob's presence of alice's join is the point from which she is owed every relay.
    assert_eq!(bob.recv_type("presence")["payload"]["status"], "joined");
    let text = "x".repeat(8 * 1024);
    for i in 0..20 {
        bob.send_scoped("broadcast", "flood", json!({"i": i, "text": text}));
    }
    // 160 KiB owed before her reply: more than one connection may queue.
    let frame = alice.expect_close().expect("a close frame");
    assert_eq!(u16::from(frame.code), 1008, "{frame:?}");
    assert_eq!(frame.reason.as_str(), "Slow consumer");
    // The session goes on without her, and her membership is gone.
    assert_eq!(bob.recv_type("presence")["payload"]["status"], "left");
}

#[test]
fn a_relay_or_route_too_large_as_delivered_is_refused_on_a_cluster_node() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    const MAX: usize = 4096;
    let a = node(&redis, "a", |config| config.max_message_size = MAX);
    let b = node(&redis, "b", |config| config.max_message_size = MAX);
    let mut alice = Client::authed(&a, TOKEN);
    alice.request("session_create", json!({"sessionId": "room"}));
    let mut bob = Client::authed(&b, TOKEN_BOB);
    bob.request("session_join", json!({"sessionId": "room"}));
    assert_eq!(alice.recv_type("presence")["payload"]["status"], "joined");

    // A chat of exactly MAX bytes as sent: its delivery adds the gateway's id, timestamp
    // and source, so it is refused and reaches no one; the next, smaller one is delivered.
    let envelope = |text: &str| json!({"type": "chat", "id": "c", "sessionId": "room", "payload": {"text": text}});
    let text = "y".repeat(MAX - envelope("").to_string().len());
    alice.send(&envelope(&text));
    let reply = alice.recv();
    assert_eq!(reply["replyTo"], "c", "{reply}");
    assert_error(&reply, "LIMIT_EXCEEDED");
    alice.send(&envelope("small"));
    let chat = bob.recv_type("chat");
    assert_eq!(chat["payload"]["text"], "small", "{chat}");

    // The same for a route_request to a client on the other node.
    let route = |q: &str| json!({"type": "route_request", "id": "r", "target": bob.client_id, "payload": {"q": q}});
    let q = "q".repeat(MAX - route("").to_string().len());
    alice.send(&route(&q));
    let reply = alice.recv();
    assert_eq!(reply["replyTo"], "r", "{reply}");
    assert_error(&reply, "LIMIT_EXCEEDED");
    alice.send(&route("small"));
    let delivered = bob.recv_type("route_request");
    assert_eq!(delivered["payload"]["q"], "small", "{delivered}");
}

#[test]
fn session_metadata_with_a_key_twice_is_refused_on_any_node() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = [node(&redis, "n1", |_| {}), node(&redis, "n2", |_| {})];
    let mut alice = Client::authed(&nodes[0], TOKEN);
    let mut bob = Client::authed(&nodes[1], TOKEN_BOB);
    alice.send_text(
        r#"{"type":"session_create","id":"c1","payload":{"sessionId":"dup","metadata":{"role":"user","role":"admin"}}}"#,
    );
    let reply = alice.recv();
    assert_eq!(reply["replyTo"], "c1", "{reply}");
    assert_error(&reply, "INVALID_MESSAGE");
    assert_eq!(reply["payload"]["details"]["field"], "metadata", "{reply}");
    let reply = bob.request("session_join", json!({"sessionId": "dup"}));
    assert_error(&reply, "SESSION_NOT_FOUND");
    let created = alice.request(
        "session_create",
        json!({"sessionId": "dup", "metadata": {"role": "user"}}),
    );
    assert_eq!(created["payload"]["status"], "created", "{created}");
}

#[test]
fn no_session_reply_is_larger_than_max_message_size_on_a_cluster_node() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    const MAX: usize = 4096;
    let tweak = |config: &mut gateway::Config| {
        config.max_message_size = MAX;
        config.max_clients_per_session = 1000;
    };
    let nodes = [node(&redis, "a", tweak), node(&redis, "b", tweak)];
    let mut alice = Client::authed(&nodes[0], TOKEN);

    // Metadata within 64 KiB whose `created` reply would not fit: refused, nothing left.
    let too_big = json!({"sessionId": "big", "metadata": {"k": "x".repeat(MAX - 100)}});
    let reply = alice.request_within("session_create", too_big, MAX);
    assert_error(&reply, "LIMIT_EXCEEDED");
    let mut bob = Client::authed(&nodes[1], TOKEN_BOB);
    let reply = bob.request_within("session_join", json!({"sessionId": "big"}), MAX);
    assert_error(&reply, "SESSION_NOT_FOUND");

    // Joins on either node until one's `joined` reply would not fit: that one is refused,
    // and its membership given back (the others see it join and leave).
    let (mut members, mut refused) =
        join_until_too_large(alice, MAX, |n| Client::authed(&nodes[n % 2], TOKEN_BOB));
    for m in members.iter_mut() {
        let joined = m.recv_within(MAX);
        assert_eq!(joined["payload"]["status"], "joined", "{joined}");
        assert_eq!(joined["payload"]["clientId"], refused.client_id.as_str());
        let left = m.recv_within(MAX);
        assert_eq!(left["payload"]["status"], "left", "{left}");
        assert_eq!(left["payload"]["clientId"], refused.client_id.as_str());
    }
    let id = refused.send_scoped("chat", "room", json!({"text": "in?"}));
    let reply = refused.recv_within(MAX);
    assert_eq!(reply["replyTo"], id.as_str(), "{reply}");
    assert_error(&reply, "NOT_A_MEMBER");

    // A patch whose `patched` reply would not fit: refused, the metadata unchanged.
    let (sender, rest) = members.split_first_mut().unwrap();
    patch_until_too_large(sender, rest, MAX);
}
