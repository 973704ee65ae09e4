//! Per-user bounds across the nodes of one cluster (PROTOCOL sections 11 and 13):
//! `max_connections_per_user` and `max_pending_routes_per_user` count a user's connections
//! and route requests on every node, under concurrent requests, given back by closes,
//! answers and a dead node's sweep, and written back after Redis restarted empty.
//! In-process gateways on a real `redis-server`, and one real `gateway` process to kill.

mod common;

use std::time::{Duration, Instant};

use common::binary::Binary;
use common::cluster::{node, wait_broker};
use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};

const BOUND: usize = 3;

/// An `auth` as alice on `client`, and its reply.
fn auth(client: &mut Client) -> Value {
    client.request("auth", json!({ "token": TOKEN }))
}

/// `client` is open and unauthenticated: `ping` is answered, a session request is not.
fn usable_unauthenticated(client: &mut Client) {
    let pong = client.request("ping", json!({}));
    assert_eq!(pong["type"], "pong", "{pong}");
    let refused = client.request("session_create", json!({ "sessionId": "x" }));
    assert_error(&refused, "AUTH_REQUIRED");
}

/// Retry `auth` on `client` until it succeeds (what frees a seat is sent to Redis without
/// waiting), within `within`.
fn auth_eventually(client: &mut Client, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let reply = auth(client);
        if reply["type"] == "auth_success" {
            return reply;
        }
        assert_error(&reply, "LIMIT_EXCEEDED");
        assert!(Instant::now() < deadline, "no seat came free: {reply}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn bounded(c: &mut gateway::Config) {
    c.max_connections_per_user = BOUND;
}

#[test]
fn connections_of_a_user_on_two_nodes_share_one_bound() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = [node(&redis, "n1", bounded), node(&redis, "n2", bounded)];
    let _a = Client::authed(&nodes[0], TOKEN);
    let _b = Client::authed(&nodes[0], TOKEN);
    let c = Client::authed(&nodes[1], TOKEN);

    // The fourth, on either node, is refused and stays open, unauthenticated.
    let mut fourth = Client::connect(&nodes[0]);
    let refused = auth(&mut fourth);
    let error = assert_error(&refused, "LIMIT_EXCEEDED");
    assert_eq!(
        error["payload"]["message"], "Too many connections for user alice",
        "{refused}"
    );
    usable_unauthenticated(&mut fourth);
    let mut other = Client::connect(&nodes[1]);
    assert_error(&auth(&mut other), "LIMIT_EXCEEDED");
    usable_unauthenticated(&mut other);
    // Another user is not counted with alice.
    let _bob = Client::authed(&nodes[1], TOKEN_BOB);

    // One closes on n2: a seat is free for the refused connection on n1, and only one.
    c.close_cleanly();
    let ok = auth_eventually(&mut fourth, WAIT);
    assert_eq!(ok["payload"]["userId"], "alice", "{ok}");
    assert_error(&auth(&mut other), "LIMIT_EXCEEDED");
    let session = fourth.request("session_create", json!({ "sessionId": "after" }));
    assert_eq!(session["payload"]["status"], "created", "{session}");
}

#[test]
fn concurrent_auths_on_two_nodes_fill_exactly_the_free_seats() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = [node(&redis, "n1", bounded), node(&redis, "n2", bounded)];
    let mut clients: Vec<Client> = (0..10).map(|i| Client::connect(&nodes[i % 2])).collect();
    let ids: Vec<String> = clients
        .iter_mut()
        .map(|c| c.send_msg("auth", json!({ "token": TOKEN })))
        .collect();
    let mut admitted = 0;
    for (client, id) in clients.iter_mut().zip(&ids) {
        let reply = client.recv();
        assert_eq!(reply["replyTo"], id.as_str(), "{reply}");
        if reply["type"] == "auth_success" {
            admitted += 1;
        } else {
            assert_error(&reply, "LIMIT_EXCEEDED");
        }
    }
    assert_eq!(admitted, BOUND);
}

/// Register agent `id` on `worker`'s connection.
fn agent(worker: &mut Client, id: &str) {
    let registered = worker.request(
        "agent_register",
        json!({"agentId": id, "type": "cli", "name": "W", "capabilities": {}}),
    );
    assert_eq!(
        registered["payload"]["status"], "registered",
        "{registered}"
    );
}

/// Send a route request to agent `target`; the reply when one comes within `quiet` (none:
/// delivered).
fn route(client: &mut Client, target: &str, quiet: Duration) -> (String, Option<Value>) {
    let id = next_id();
    client.send(&route_msg(&id, target));
    let _ = client.ws.get_mut().set_read_timeout(Some(quiet));
    let reply = match client.ws.read() {
        Ok(tungstenite::Message::Text(text)) => Some(serde_json::from_str(text.as_str()).unwrap()),
        _ => None,
    };
    let _ = client.ws.get_mut().set_read_timeout(Some(WAIT));
    (id, reply)
}

/// A `route_request` `id` to `target`.
fn route_msg(id: &str, target: &str) -> Value {
    json!({"type": "route_request", "id": id, "target": target, "payload": {}})
}

#[test]
fn pending_routes_of_a_user_on_two_nodes_share_one_bound() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let limit = |c: &mut gateway::Config| c.max_pending_routes_per_user = 2;
    let nodes = [node(&redis, "n1", limit), node(&redis, "n2", limit)];
    let mut worker = Client::authed(&nodes[1], TOKEN_BOB);
    agent(&mut worker, "w");
    let mut other_worker = Client::authed(&nodes[0], TOKEN_BOB);
    agent(&mut other_worker, "w2");
    // Alice on n1 (a route across nodes) and on n2 (a route on the worker's node).
    let mut far = Client::authed(&nodes[0], TOKEN);
    let mut near = Client::authed(&nodes[1], TOKEN);
    let first = next_id();
    far.send(&route_msg(&first, "w"));
    assert_eq!(worker.recv_type("route_request")["id"], first.as_str());
    let second = next_id();
    near.send(&route_msg(&second, "w"));
    assert_eq!(worker.recv_type("route_request")["id"], second.as_str());

    // The third, from either node, is refused and not delivered.
    for client in [&mut far, &mut near] {
        let refused = client.request_envelope(json!({"type": "route_request", "target": "w",
            "payload": {}}));
        let error = assert_error(&refused, "LIMIT_EXCEEDED");
        assert_eq!(
            error["payload"]["message"], "Too many pending route requests for user alice",
            "{refused}"
        );
    }
    worker.expect_silence(Duration::from_millis(200));

    // An answer gives one back: the next request is delivered.
    worker.send(&json!({"type": "route_response", "id": next_id(),
        "target": far.client_id, "replyTo": first, "payload": {"ok": true}}));
    assert_eq!(far.recv_type("route_response")["replyTo"], first.as_str());
    let deadline = Instant::now() + WAIT;
    let delivered = loop {
        match route(&mut far, "w", Duration::from_millis(200)) {
            (id, None) => break id,
            (_, Some(reply)) => assert_error(&reply, "LIMIT_EXCEEDED"),
        };
        assert!(Instant::now() < deadline, "the answer gave nothing back");
    };
    assert_eq!(worker.recv_type("route_request")["id"], delivered.as_str());
    let refused = near.request_envelope(json!({"type": "route_request", "target": "w",
        "payload": {}}));
    assert_error(&refused, "LIMIT_EXCEEDED");

    // The target's connection closes: both its pending requests (one from each node) are
    // given back.
    worker.close_cleanly();
    let mut worker = other_worker;
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < 2 {
        let client = if got.is_empty() { &mut near } else { &mut far };
        let (id, reply) = route(client, "w2", Duration::from_millis(200));
        match reply {
            None => got.push(id),
            Some(reply) => {
                assert_error(&reply, "LIMIT_EXCEEDED");
            }
        }
        assert!(
            Instant::now() < deadline,
            "the target's close gave nothing back"
        );
    }
    for id in &got {
        assert_eq!(worker.recv_type("route_request")["id"], id.as_str());
    }

    // The requester's connection closes: its pending request is given back.
    near.close_cleanly();
    let deadline = Instant::now() + WAIT;
    loop {
        match route(&mut far, "w2", Duration::from_millis(200)) {
            (id, None) => {
                assert_eq!(worker.recv_type("route_request")["id"], id.as_str());
                break;
            }
            (_, Some(reply)) => {
                assert_error(&reply, "LIMIT_EXCEEDED");
            }
        }
        assert!(
            Instant::now() < deadline,
            "the requester's close gave nothing back"
        );
    }
}

#[test]
fn an_empty_redis_after_a_restart_gets_each_node_s_counts_back() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let nodes = [node(&redis, "n1", bounded), node(&redis, "n2", bounded)];
    let _held: Vec<Client> = (0..BOUND)
        .map(|_| Client::authed(&nodes[0], TOKEN))
        .collect();

    redis.restart();
    wait_broker(&nodes[0], "ok");
    wait_broker(&nodes[1], "ok");
    // Once n1 has written back its share, n2 has no seat to give.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut late = Client::connect(&nodes[1]);
        let reply = auth(&mut late);
        if reply["type"] == "error" {
            assert_error(&reply, "LIMIT_EXCEEDED");
            usable_unauthenticated(&mut late);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "n1's connections not written back"
        );
        late.close_cleanly();
        std::thread::sleep(Duration::from_millis(50));
    }
    let counts = redis.command(&["HGETALL", "gw:uc:alice"]);
    assert!(
        counts.contains("n1") && counts.contains("\r\n3\r\n"),
        "{counts}"
    );
}

#[test]
fn auth_while_the_broker_is_down_is_decided_by_the_node_and_counted_once_it_is_back() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let quick = |c: &mut gateway::Config| {
        bounded(c);
        c.broker_timeout_ms = 400;
    };
    let nodes = [node(&redis, "n1", quick), node(&redis, "n2", quick)];
    let mut on_n1 = vec![Client::authed(&nodes[0], TOKEN)];
    let on_n2 = [
        Client::authed(&nodes[1], TOKEN),
        Client::authed(&nodes[1], TOKEN),
    ];

    redis.signal("STOP");
    wait_broker(&nodes[0], "down");
    wait_broker(&nodes[1], "down");
    // n2's two close, and n1 admits one more on its own count.
    for client in on_n2 {
        client.close_cleanly();
    }
    let mut down = Client::connect(&nodes[0]);
    let ok = auth(&mut down);
    assert_eq!(ok["type"], "auth_success", "{ok}");
    on_n1.push(down);
    redis.signal("CONT");
    wait_broker(&nodes[0], "ok");
    wait_broker(&nodes[1], "ok");

    // Each node writes its own count again once it is back: n1 two, n2 none.
    let deadline = Instant::now() + WAIT;
    while redis.command(&["HGET", "gw:uc:alice", "n1"]) != "$1\r\n2\r\n"
        || redis.command(&["HEXISTS", "gw:uc:alice", "n2"]) != ":0\r\n"
    {
        assert!(Instant::now() < deadline, "the counts are not written back");
        std::thread::sleep(Duration::from_millis(20));
    }
    // So one seat is free, and only one.
    let mut seated = Client::connect(&nodes[1]);
    assert_eq!(auth(&mut seated)["type"], "auth_success");
    let mut refused = Client::connect(&nodes[1]);
    assert_error(&auth(&mut refused), "LIMIT_EXCEEDED");
    let mut refused = Client::connect(&nodes[0]);
    assert_error(&auth(&mut refused), "LIMIT_EXCEEDED");
}

const BEAT_MS: u64 = 150;
const DEAD_MS: u64 = 1000;

/// A `gateway` process in the cluster, serving once it can create a session.
fn process(redis: &RedisServer, name: &str, extra: &[&str]) -> Binary {
    let sets = [
        "port=0".to_string(),
        "log_level=info".to_string(),
        format!("auth_tokens=alice:{TOKEN}, bob:{TOKEN_BOB}"),
        format!("cluster_redis={}", redis.url()),
        format!("node_id={name}"),
        format!("node_heartbeat_ms={BEAT_MS}"),
        format!("node_dead_ms={DEAD_MS}"),
    ];
    let mut args = vec!["--config", "/dev/null"];
    for set in sets.iter().map(String::as_str).chain(extra.iter().copied()) {
        args.extend(["--set", set]);
    }
    let process = Binary::start(&args);
    let deadline = Instant::now() + WAIT;
    loop {
        let mut client = Client::connect_url(&process.url);
        let reply = client.request("auth", json!({ "token": TOKEN_BOB }));
        let created = client.request("session_create", json!({ "sessionId": name }));
        if reply["type"] == "auth_success" && created["type"] != "error" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name} does not serve: {created}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    process
}

#[test]
fn a_killed_node_s_connections_and_routes_are_given_back() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let bound = format!("max_connections_per_user={BOUND}");
    let mut doomed = process(&redis, "doomed", &[&bound, "max_pending_routes_per_user=1"]);
    let survivor = node(&redis, "survivor", |c| {
        bounded(c);
        c.max_pending_routes_per_user = 1;
        c.node_heartbeat_ms = BEAT_MS;
        c.node_dead_ms = DEAD_MS;
    });
    let mut worker = Client::authed(&survivor, TOKEN_BOB);
    agent(&mut worker, "w");
    // Alice holds every seat on the doomed node, and her one pending route from it.
    let mut on_doomed: Vec<Client> = (0..BOUND)
        .map(|_| {
            let mut c = Client::connect_url(&doomed.url);
            let reply = auth(&mut c);
            assert_eq!(reply["type"], "auth_success", "{reply}");
            c
        })
        .collect();
    let id = next_id();
    on_doomed[0].send(&route_msg(&id, "w"));
    assert_eq!(worker.recv_type("route_request")["id"], id.as_str());
    let mut late = Client::connect(&survivor);
    assert_error(&auth(&mut late), "LIMIT_EXCEEDED");

    let _ = doomed.child.kill();
    let killed = Instant::now();
    on_doomed.clear();
    let within = Duration::from_millis(DEAD_MS + 2000);
    let mut seated = vec![late];
    auth_eventually(&mut seated[0], within);
    for _ in 1..BOUND {
        let mut c = Client::connect(&survivor);
        assert_eq!(auth(&mut c)["type"], "auth_success");
        seated.push(c);
    }
    assert!(killed.elapsed() < within, "{:?}", killed.elapsed());
    // Its pending route was given back too: alice may route again.
    let (id, reply) = route(&mut seated[0], "w", Duration::from_millis(300));
    assert_eq!(reply, None);
    assert_eq!(worker.recv_type("route_request")["id"], id.as_str());
    let mut fourth = Client::connect(&survivor);
    assert_error(&auth(&mut fourth), "LIMIT_EXCEEDED");
}

#[test]
fn a_route_answered_before_its_script_s_reply_is_given_back() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // The requester's node hears its channel at once but its scripts reply 300 ms late: the
    // answer comes first.
    let proxy = common::cluster::SlowCommandsProxy::start(&redis, Duration::from_millis(300));
    let slow = node(&redis, "slow", |c| {
        let url = format!("redis://127.0.0.1:{}", proxy.port);
        c.cluster_redis = Some(gateway::RedisUrl::parse(&url).expect("url"));
        c.max_pending_routes_per_user = 1;
    });
    let quick = node(&redis, "quick", |c| c.max_pending_routes_per_user = 1);
    let mut worker = Client::authed(&quick, TOKEN_BOB);
    agent(&mut worker, "w");
    let mut alice = Client::authed(&slow, TOKEN);
    for _ in 0..3 {
        let id = next_id();
        alice.send(&route_msg(&id, "w"));
        assert_eq!(worker.recv_type("route_request")["id"], id.as_str());
        worker.send(&json!({"type": "route_response", "id": next_id(),
            "target": alice.client_id, "replyTo": id, "payload": {}}));
        assert_eq!(alice.recv_type("route_response")["replyTo"], id.as_str());
        // The script's reply comes after the answer: the count is given back then, so the
        // next request waits for it at most a little.
        let deadline = Instant::now() + WAIT;
        while redis.command(&["HGET", "gw:ur:alice", "slow"]) != "$-1\r\n" {
            assert!(Instant::now() < deadline, "the answered route still counts");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
