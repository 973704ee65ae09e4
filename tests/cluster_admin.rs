//! The admin messages across nodes of one cluster (PROTOCOL sections 12 and 13):
//! `admin_kick` of a client on another node, authenticated or not, and `admin_clients`
//! paging through the clients of every node, over real sockets and a real `redis-server`.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::cluster::{node, wait_broker};
use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};

/// A node on which `ops` ([`TOKEN_OPS`]) is an admin.
fn admin_node(redis: &RedisServer, name: &str) -> TestGateway {
    admin_node_with(redis, name, |_| {})
}

fn admin_node_with(
    redis: &RedisServer,
    name: &str,
    tweak: impl FnOnce(&mut gateway::Config),
) -> TestGateway {
    node(redis, name, |config| {
        config.auth_tokens.push(gateway::AuthToken {
            user: "ops".into(),
            secret: TOKEN_OPS.into(),
        });
        config.admin_users = vec!["ops".into()];
        tweak(config);
    })
}

/// The close code and reason `client` sees.
fn closed(client: &mut Client) -> (u16, String) {
    let frame = client.expect_close().expect("a close frame");
    (u16::from(frame.code), frame.reason.as_str().to_owned())
}

fn kick(ops: &mut Client, client_id: &str, reason: &str) -> Value {
    ops.request(
        "admin_kick",
        json!({"clientId": client_id, "reason": reason}),
    )
}

#[test]
fn an_admin_kicks_clients_of_other_nodes_authenticated_or_not() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = [
        admin_node(&redis, "n1"),
        admin_node(&redis, "n2"),
        admin_node(&redis, "n3"),
    ];
    let mut ops = Client::authed(&nodes[0], TOKEN_OPS);
    let mut bob = Client::authed(&nodes[1], TOKEN_BOB);
    let mut carol = Client::authed(&nodes[2], TOKEN_CAROL);
    let mut anon_2 = Client::connect(&nodes[1]);
    let mut anon_3 = Client::connect(&nodes[2]);

    // An authenticated client of another node; the admin's next message waits for the kick.
    let kick_id = next_id();
    ops.send_batch(&[
        json!({"type": "admin_kick", "id": kick_id,
               "payload": {"clientId": bob.client_id, "reason": "why"}}),
        json!({"type": "ping", "id": "after-kick", "payload": {}}),
    ]);
    let reply = ops.recv();
    assert_eq!(reply["replyTo"], kick_id.as_str(), "{reply}");
    assert_eq!(reply["type"], "admin_result", "{reply}");
    assert_eq!(reply["payload"], json!({"status": "kicked"}));
    assert_eq!(ops.recv()["replyTo"], "after-kick");
    assert_eq!(closed(&mut bob), (1008, "Kicked: why".to_owned()));

    // Unauthenticated clients are in no client map: every node is asked.
    for anon in [&mut anon_2, &mut anon_3] {
        let reply = kick(&mut ops, &anon.client_id, "why");
        assert_eq!(reply["payload"], json!({"status": "kicked"}), "{reply}");
        assert_eq!(closed(anon), (1008, "Kicked: why".to_owned()));
    }

    // Nobody has these.
    for gone in ["no-such-client", bob.client_id.as_str(), &anon_2.client_id] {
        let reply = kick(&mut ops, gone, "why");
        assert_error(&reply, "TARGET_NOT_FOUND");
    }

    // Without the admin scope, refused before anything is asked; carol stays.
    let mut alice = Client::authed(&nodes[0], TOKEN);
    let reply = kick(&mut alice, &carol.client_id, "why");
    let error = assert_error(&reply, "FORBIDDEN");
    assert_eq!(error["payload"]["details"]["scope"], "admin", "{reply}");
    assert_eq!(carol.request("ping", json!({}))["type"], "pong");

    // A client of the admin's own node, as on one gateway.
    let reply = kick(&mut ops, &alice.client_id, "");
    assert_eq!(reply["payload"], json!({"status": "kicked"}), "{reply}");
    assert_eq!(closed(&mut alice), (1008, "Kicked".to_owned()));
}

/// Every page of an `admin_clients` walk with `limit`, from the first.
fn walk(ops: &mut Client, limit: usize) -> Vec<Vec<Value>> {
    walk_within(ops, limit, usize::MAX)
}

/// The same, each reply at most `max` bytes.
fn walk_within(ops: &mut Client, limit: usize, max: usize) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut cursor = Value::Null;
    for _ in 0..64 {
        let reply = ops.request("admin_clients", json!({"limit": limit, "cursor": cursor}));
        assert_eq!(reply["type"], "client_list", "{reply}");
        assert!(reply.to_string().len() <= max, "{reply}");
        let clients = reply["payload"]["clients"].as_array().expect("clients");
        assert!(clients.len() <= limit, "{reply}");
        pages.push(clients.clone());
        match &reply["payload"]["next"] {
            Value::Null => return pages,
            next => cursor = next.clone(),
        }
    }
    panic!("the walk does not end: {pages:?}");
}

#[test]
fn admin_clients_pages_through_every_client_of_every_node_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = [
        admin_node(&redis, "n1"),
        admin_node(&redis, "n2"),
        admin_node(&redis, "n3"),
    ];
    let mut ops = Client::authed(&nodes[0], TOKEN_OPS);
    let mut clients = [
        Client::authed(&nodes[0], TOKEN),
        Client::authed(&nodes[1], TOKEN_BOB),
        Client::authed(&nodes[1], TOKEN_CAROL),
        Client::connect(&nodes[1]),
        Client::authed(&nodes[2], TOKEN),
        Client::authed(&nodes[2], TOKEN_BOB),
        Client::connect(&nodes[2]),
    ];
    clients[1].request("session_create", json!({"sessionId": "room"}));
    clients[5].request("session_join", json!({"sessionId": "room"}));

    let pages = walk(&mut ops, 2);
    let mut seen: HashMap<String, Value> = HashMap::new();
    for record in pages.iter().flatten() {
        let id = record["clientId"].as_str().expect("clientId").to_owned();
        assert!(
            seen.insert(id, record.clone()).is_none(),
            "twice: {pages:?}"
        );
    }
    let mut expected: Vec<String> = clients.iter().map(|c| c.client_id.clone()).collect();
    expected.push(ops.client_id.clone());
    let mut listed: Vec<String> = seen.keys().cloned().collect();
    expected.sort_unstable();
    listed.sort_unstable();
    assert_eq!(listed, expected, "{pages:?}");

    // The records are the nodes' own.
    let bob = &seen[&clients[5].client_id];
    assert_eq!(bob["userId"], "bob");
    assert_eq!(bob["authenticated"], true);
    assert_eq!(bob["sessions"], json!(["room"]));
    let anon = &seen[&clients[6].client_id];
    assert_eq!(anon["userId"], Value::Null);
    assert_eq!(anon["authenticated"], false);
    assert!(
        anon["connectedAt"].as_u64().is_some_and(|t| t > 0),
        "{anon}"
    );

    // One page with room for all.
    let all = walk(&mut ops, 100);
    let count: usize = all.iter().map(Vec::len).sum();
    assert_eq!(count, expected.len(), "{all:?}");

    // A cursor this gateway did not give is refused as on one gateway.
    for bad in [json!("c0"), json!("n1"), json!("x.no such node"), json!(3)] {
        let reply = ops.request("admin_clients", json!({"cursor": bad}));
        let error = assert_error(&reply, "INVALID_MESSAGE");
        assert_eq!(error["payload"]["details"]["field"], "cursor", "{reply}");
    }
}

#[test]
fn no_client_list_is_larger_than_max_message_size() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // The least max_message_size the configuration allows with the default max_name_bytes.
    const MAX: usize = 1300;
    let small = |config: &mut gateway::Config| config.max_message_size = MAX;
    let nodes = [
        admin_node_with(&redis, "n1", small),
        admin_node_with(&redis, "n2", small),
        admin_node_with(&redis, "n3", small),
    ];
    let mut ops = Client::authed(&nodes[0], TOKEN_OPS);
    let mut expected = vec![ops.client_id.clone()];
    let mut members = Vec::new();
    for (i, gw) in nodes.iter().cycle().take(9).enumerate() {
        let mut client = Client::authed(gw, [TOKEN, TOKEN_BOB, TOKEN_CAROL][i % 3]);
        // Two long session ids make records of some 300 bytes: three or four to a reply.
        for k in 0..2 {
            let session = format!("{i}-{k}-{}", "s".repeat(110));
            client.request("session_create", json!({"sessionId": session}));
        }
        expected.push(client.client_id.clone());
        members.push(client);
    }
    let pages = walk_within(&mut ops, 100, MAX);
    let mut listed: Vec<String> = pages
        .iter()
        .flatten()
        .map(|r| r["clientId"].as_str().expect("clientId").to_owned())
        .collect();
    listed.sort_unstable();
    expected.sort_unstable();
    assert_eq!(listed, expected, "{pages:?}");
    // A node's clients take more than one page.
    assert!(pages.len() > 3, "{pages:?}");
}

#[test]
fn a_node_gone_mid_walk_is_passed_over() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut nodes = [
        admin_node(&redis, "n1"),
        admin_node(&redis, "n2"),
        admin_node(&redis, "n3"),
    ];
    let mut ops = Client::authed(&nodes[0], TOKEN_OPS);
    let on_2 = [
        Client::authed(&nodes[1], TOKEN),
        Client::authed(&nodes[1], TOKEN_BOB),
    ];
    let on_3 = [
        Client::authed(&nodes[2], TOKEN),
        Client::authed(&nodes[2], TOKEN_BOB),
    ];
    let of_2: Vec<String> = on_2.iter().map(|c| c.client_id.clone()).collect();
    let mut listed = Vec::new();
    let mut cursor = Value::Null;
    // One record a page, until the first of n2's.
    loop {
        let reply = ops.request("admin_clients", json!({"limit": 1, "cursor": cursor}));
        let record = &reply["payload"]["clients"][0];
        listed.push(record["clientId"].as_str().expect("a record").to_owned());
        cursor = reply["payload"]["next"].clone();
        assert!(!cursor.is_null(), "{reply}");
        if of_2.contains(listed.last().unwrap()) {
            break;
        }
    }
    // Its clients' sockets go first, so that its shutdown waits for no close handshake.
    drop(on_2);
    nodes[1].stop();
    assert!(eventually(|| redis
        .command(&["PUBSUB", "NUMSUB", "gw:n:n2"])
        .ends_with(":0\r\n")));
    // The walk goes on at n3, though n2 is not dead yet for the cluster.
    loop {
        let reply = ops.request("admin_clients", json!({"limit": 1, "cursor": cursor}));
        assert_eq!(reply["type"], "client_list", "{reply}");
        for record in reply["payload"]["clients"].as_array().expect("clients") {
            listed.push(record["clientId"].as_str().expect("clientId").to_owned());
        }
        cursor = reply["payload"]["next"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert_eq!(listed[0], ops.client_id);
    let mut rest = listed[2..].to_vec();
    rest.sort_unstable();
    let mut of_3: Vec<String> = on_3.iter().map(|c| c.client_id.clone()).collect();
    of_3.sort_unstable();
    assert_eq!(rest, of_3, "{listed:?}");
}

#[test]
fn with_the_broker_down_a_client_elsewhere_is_unavailable() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let nodes = [admin_node(&redis, "n1"), admin_node(&redis, "n2")];
    let mut ops = Client::authed(&nodes[0], TOKEN_OPS);
    let bob = Client::authed(&nodes[1], TOKEN_BOB);
    let mut alice = Client::authed(&nodes[0], TOKEN);
    redis.kill();
    wait_broker(&nodes[0], "down");

    let reply = kick(&mut ops, &bob.client_id, "why");
    assert_error(&reply, "UNAVAILABLE");
    let reply = ops.request("admin_clients", json!({}));
    assert_error(&reply, "UNAVAILABLE");
    // A client of the admin's own node needs no broker.
    let reply = kick(&mut ops, &alice.client_id, "why");
    assert_eq!(reply["payload"], json!({"status": "kicked"}), "{reply}");
    assert_eq!(closed(&mut alice), (1008, "Kicked: why".to_owned()));
}

/// A connection to `redis` subscribed to `channel`, which reads nothing more: a node that
/// is alive for Redis and never answers.
fn silent_subscriber(redis: &RedisServer, channel: &str) -> TcpStream {
    let mut stream = TcpStream::connect(redis.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let command = format!(
        "*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{channel}\r\n",
        channel.len()
    );
    stream.write_all(command.as_bytes()).expect("subscribe");
    let mut reply = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&reply).contains(":1\r\n") {
        let n = stream.read(&mut buf).expect("subscribed");
        assert!(n > 0, "redis closed the subscriber");
        reply.extend_from_slice(&buf[..n]);
    }
    stream
}

#[test]
fn a_node_that_does_not_answer_within_broker_timeout_is_unavailable() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = [admin_node(&redis, "n1"), admin_node(&redis, "n2")];
    let mut ops = Client::authed(&nodes[0], TOKEN_OPS);
    let mut bob = Client::authed(&nodes[1], TOKEN_BOB);
    // A live node, for Redis, that hears its channel and never answers.
    let _ghost = silent_subscriber(&redis, "gw:n:ghost");
    redis.command(&["ZADD", "gw:nodes", "9999999999999", "ghost"]);

    // An id in no client map is asked of every node: the ghost's answer never comes.
    let started = Instant::now();
    let reply = kick(&mut ops, "no-such-client", "why");
    assert_error(&reply, "UNAVAILABLE");
    assert!(started.elapsed() >= Duration::from_millis(1500), "{reply}");
    // The walk starts at the ghost (ids in byte order).
    let reply = ops.request("admin_clients", json!({}));
    assert_error(&reply, "UNAVAILABLE");
    // A client the client map places on a node that answers is unaffected.
    let reply = kick(&mut ops, &bob.client_id, "why");
    assert_eq!(reply["payload"], json!({"status": "kicked"}), "{reply}");
    assert_eq!(closed(&mut bob), (1008, "Kicked: why".to_owned()));
}
