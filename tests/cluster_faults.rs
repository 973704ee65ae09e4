//! Failures of a cluster (PROTOCOL section 13, "Failures"): real `gateway` processes sharing a
//! real `redis-server`, and what their clients see when a node is killed or frozen, when
//! Redis is frozen, slow, killed and restarted empty, or drops the nodes' subscriptions.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::binary::Binary;
use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};
use tungstenite::Message;

const TIMEOUT_MS: u64 = 400;
const BEAT_MS: u64 = 150;
const DEAD_MS: u64 = 1000;

/// A `gateway` process in a cluster.
struct Node {
    bin: Binary,
}

impl std::ops::Deref for Node {
    type Target = Binary;
    fn deref(&self) -> &Binary {
        &self.bin
    }
}

impl std::ops::DerefMut for Node {
    fn deref_mut(&mut self) -> &mut Binary {
        &mut self.bin
    }
}

impl Node {
    /// Start node `name` on `redis` and wait until it serves cluster requests.
    fn start(redis: &RedisServer, name: &str) -> Node {
        let redis_url = format!("cluster_redis={}", redis.url());
        let node_id = format!("node_id={name}");
        let timeout = format!("broker_timeout_ms={TIMEOUT_MS}");
        let beat = format!("node_heartbeat_ms={BEAT_MS}");
        let dead = format!("node_dead_ms={DEAD_MS}");
        let tokens = format!("auth_tokens=alice:{TOKEN}, bob:{TOKEN_BOB}, carol:{TOKEN_CAROL}");
        let mut args = vec!["--config", "/dev/null"];
        for set in [
            "port=0",
            "log_level=info",
            &tokens,
            &redis_url,
            &node_id,
            &timeout,
            &beat,
            &dead,
        ] {
            args.extend(["--set", set]);
        }
        let mut node = Node {
            bin: Binary::start(&args),
        };
        node.wait_broker("ok", WAIT);
        node
    }

    /// `/health`: its status and body.
    fn health(&self) -> (u16, Value) {
        let response = raw_http(
            self.addr,
            b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n",
        );
        let (status, body) = split_response(&response);
        (status, serde_json::from_str(&body).expect("health JSON"))
    }

    /// Wait until `/health` says the broker is `state` (`ok` or `down`).
    fn wait_broker(&mut self, state: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (_, health) = self.health();
            if health["cluster"]["broker"] == state {
                return;
            }
            if Instant::now() >= deadline {
                panic!("broker not {state}: {health}; stderr:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn node_id(&self) -> String {
        self.health().1["cluster"]["nodeId"]
            .as_str()
            .expect("nodeId")
            .to_string()
    }

    /// SIGKILL, and wait for it to be gone.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Only while it is ours: the id of a reaped child may be another process's by now.
        if let Ok(None) = self.child.try_wait() {
            self.signal_quietly("CONT");
        }
        self.kill();
    }
}

impl Node {
    fn signal_quietly(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// The next message within `within`, or `None`.
fn try_recv(client: &mut Client, within: Duration) -> Option<Value> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        client.ws.get_mut().set_read_timeout(Some(left)).unwrap();
        let result = client.ws.read();
        client.ws.get_mut().set_read_timeout(Some(WAIT)).unwrap();
        match result {
            Ok(Message::Text(text)) => return Some(serde_json::from_str(text.as_str()).unwrap()),
            Ok(Message::Close(frame)) => panic!("connection closed: {frame:?}"),
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                continue
            }
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

/// Fail on a presence `left` among `msg`.
fn no_left(msg: &Value) {
    assert!(
        !(msg["type"] == "presence" && msg["payload"]["status"] == "left"),
        "nobody left: {msg}"
    );
}

/// Relay from `from` to `to` in `session` until one arrives (messages in flight when a
/// broker link breaks may be lost; relays refused meanwhile are `UNAVAILABLE`); returns how
/// long it took.
fn relay_gets_through(
    from: &mut Client,
    to: &mut Client,
    session: &str,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    let mut n = 0;
    loop {
        assert!(
            started.elapsed() < within,
            "no relay from {} reached {} within {within:?}",
            from.client_id,
            to.client_id
        );
        n += 1;
        from.send_scoped("broadcast", session, json!({ "n": n }));
        while let Some(msg) = try_recv(from, Duration::from_millis(1)) {
            no_left(&msg);
            if msg["type"] == "error" {
                assert_error(&msg, "UNAVAILABLE");
            }
        }
        let wait = Instant::now() + Duration::from_millis(150);
        while let Some(msg) = try_recv(to, wait.saturating_duration_since(Instant::now())) {
            no_left(&msg);
            if msg["type"] == "broadcast" && msg["source"] == from.client_id.as_str() {
                return started.elapsed();
            }
        }
    }
}

/// Wait until `redis` is busy (a `PING` on a connection of its own goes unanswered for a
/// while).
fn wait_asleep(redis: &RedisServer) {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "redis never got busy");
        let mut stream = TcpStream::connect(redis.addr).expect("connect to redis");
        stream
            .set_read_timeout(Some(Duration::from_millis(40)))
            .unwrap();
        stream.write_all(b"PING\r\n").expect("write to redis");
        let mut buf = [0u8; 16];
        match stream.read(&mut buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return
            }
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Members of `session` in Redis (clientIds).
fn members_in_redis(redis: &RedisServer, session: &str) -> String {
    redis.command(&["ZRANGE", &format!("gw:s:{{{session}}}:m"), "0", "-1"])
}

/// alice on `a` creates `session`; bob on `b` joins it; each saw the other.
fn pair(a: &Node, b: &Node, session: &str) -> (Client, Client) {
    let mut alice = a.client(TOKEN);
    let mut bob = b.client(TOKEN_BOB);
    let created = alice.request(
        "session_create",
        json!({ "sessionId": session, "name": "Room", "metadata": { "topic": [1, 2] } }),
    );
    assert_eq!(created["payload"]["status"], "created", "{created}");
    let joined = bob.request("session_join", json!({ "sessionId": session }));
    assert_eq!(joined["payload"]["status"], "joined", "{joined}");
    let presence = alice.recv_type("presence");
    assert_eq!(presence["payload"]["clientId"], bob.client_id.as_str());
    (alice, bob)
}

#[test]
fn a_killed_node_s_members_leave_and_the_session_goes_on() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let n1 = Node::start(&redis, "n1");
    let n2 = Node::start(&redis, "n2");
    let mut n3 = Node::start(&redis, "n3");
    let (mut alice, mut bob) = pair(&n1, &n2, "room");
    let mut carol = n3.client(TOKEN_CAROL);
    carol.request("session_join", json!({ "sessionId": "room" }));
    for member in [&mut alice, &mut bob] {
        let presence = member.recv_type("presence");
        assert_eq!(presence["payload"]["clientId"], carol.client_id.as_str());
    }

    n3.kill();
    let killed = Instant::now();
    for member in [&mut alice, &mut bob] {
        let presence = member.recv_type("presence");
        assert_eq!(presence["payload"]["status"], "left", "{presence}");
        assert_eq!(presence["payload"]["clientId"], carol.client_id.as_str());
        let after = killed.elapsed();
        assert!(
            after < Duration::from_millis(DEAD_MS + 2000),
            "left after {after:?}"
        );
    }
    // The rest of the session goes on.
    alice.send_scoped("broadcast", "room", json!({ "text": "still here" }));
    assert_eq!(bob.recv_type("broadcast")["payload"]["text"], "still here");
    let members = members_in_redis(&redis, "room");
    assert!(!members.contains(&carol.client_id), "{members}");
    // Redis forgets the dead node once it is swept.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let nodes = redis.command(&["ZRANGE", "gw:nodes", "0", "-1"]);
        let counted = n1.health().1["cluster"]["nodes"].clone();
        if !nodes.contains("n3") && counted == 2 {
            assert!(nodes.contains("n1") && nodes.contains("n2"), "{nodes}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "n3 still listed: {nodes}, or counted: {counted}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(redis.command(&["EXISTS", "gw:n:n3:m"]), ":0\r\n");
}

#[test]
fn a_frozen_redis_fails_requests_keeps_connections_and_sweeps_nobody() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut n1 = Node::start(&redis, "n1");
    let mut n2 = Node::start(&redis, "n2");
    let (mut alice, mut bob) = pair(&n1, &n2, "room");
    let mut carol = n2.client(TOKEN_CAROL);
    carol.request("session_join", json!({ "sessionId": "room" }));
    alice.recv_type("presence");
    bob.recv_type("presence");

    redis.signal("STOP");
    let stopped = Instant::now();
    // Cluster requests are refused within about broker_timeout_ms, a relay sent before the
    // node noticed included, and the connections kept.
    let relayed = bob.send_scoped("broadcast", "room", json!({ "lost": true }));
    let asked = Instant::now();
    alice.request_error(
        "session_join",
        json!({ "sessionId": "other" }),
        "UNAVAILABLE",
    );
    let took = asked.elapsed();
    assert!(
        took < Duration::from_millis(TIMEOUT_MS + 600),
        "UNAVAILABLE after {took:?}"
    );
    let refused = bob.recv_type("error");
    assert_eq!(refused["replyTo"], relayed.as_str(), "{refused}");
    assert_error(&refused, "UNAVAILABLE");
    assert!(stopped.elapsed() < Duration::from_millis(TIMEOUT_MS + 600));
    n1.wait_broker("down", Duration::from_millis(TIMEOUT_MS + 1000));
    n2.wait_broker("down", Duration::from_millis(TIMEOUT_MS + 1000));
    let (status, health) = n1.health();
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(alice.request("ping", json!({}))["type"], "pong");
    let asked = Instant::now();
    let refused = bob.request_envelope(json!({
        "type": "broadcast", "sessionId": "room", "payload": {}
    }));
    assert_error(&refused, "UNAVAILABLE");
    assert!(asked.elapsed() < Duration::from_millis(TIMEOUT_MS + 600));
    // A client that goes meanwhile leaves once Redis is back.
    let carol_id = carol.client_id.clone();
    carol.close_cleanly();
    // Frozen for longer than node_dead_ms.
    while stopped.elapsed() < Duration::from_millis(DEAD_MS + 500) {
        assert_eq!(bob.request("ping", json!({}))["type"], "pong");
        std::thread::sleep(Duration::from_millis(100));
    }
    redis.signal("CONT");
    let back = Instant::now();
    n1.wait_broker("ok", Duration::from_secs(5));
    n2.wait_broker("ok", Duration::from_secs(5));
    assert!(back.elapsed() < Duration::from_secs(5));
    for member in [&mut alice, &mut bob] {
        let presence = loop {
            let msg = member.recv();
            if msg["type"] != "broadcast" {
                break msg;
            }
        };
        assert_eq!(presence["payload"]["status"], "left", "{presence}");
        assert_eq!(presence["payload"]["clientId"], carol_id.as_str());
    }
    // Nobody was swept for the pause: both still members, each sees the other's relays,
    // and nobody else is told anyone left, even once node_dead_ms has passed again.
    relay_gets_through(&mut alice, &mut bob, "room", Duration::from_secs(3));
    relay_gets_through(&mut bob, &mut alice, "room", Duration::from_secs(3));
    let settled = Instant::now() + Duration::from_millis(DEAD_MS + 500);
    while Instant::now() < settled {
        for member in [&mut alice, &mut bob] {
            if let Some(msg) = try_recv(member, Duration::from_millis(50)) {
                no_left(&msg);
            }
        }
    }
    relay_gets_through(&mut alice, &mut bob, "room", Duration::from_secs(1));
    let members = members_in_redis(&redis, "room");
    assert!(
        members.contains(&alice.client_id) && members.contains(&bob.client_id),
        "{members}"
    );
    assert_eq!(n1.node_id(), "n1");
    assert_eq!(n2.node_id(), "n2");
}

#[test]
fn a_frozen_node_is_declared_dead_then_finds_it_was_fenced() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let n1 = Node::start(&redis, "n1");
    let mut n2 = Node::start(&redis, "n2");
    let (mut alice, mut bob) = pair(&n1, &n2, "room");

    n2.signal("STOP");
    let stopped = Instant::now();
    let presence = alice.recv_type("presence");
    assert_eq!(presence["payload"]["status"], "left", "{presence}");
    assert_eq!(presence["payload"]["clientId"], bob.client_id.as_str());
    let after = stopped.elapsed();
    assert!(
        after < Duration::from_millis(DEAD_MS + 2000),
        "left after {after:?}"
    );

    n2.signal("CONT");
    let frame = bob.expect_close().expect("a close frame");
    assert_eq!(u16::from(frame.code), 1012, "{frame:?}");
    assert_eq!(frame.reason.as_str(), "Service restart");
    n2.line_with("joining again as n2-1");
    n2.wait_broker("ok", Duration::from_secs(5));
    assert_eq!(n2.node_id(), "n2-1");
    // It serves new clients under its new name.
    let mut carol = n2.client(TOKEN_CAROL);
    let joined = carol.request("session_join", json!({ "sessionId": "room" }));
    assert_eq!(joined["payload"]["status"], "joined", "{joined}");
    let members = joined["payload"]["members"]
        .as_array()
        .expect("members")
        .clone();
    assert_eq!(members.len(), 2, "{joined}");
    assert_eq!(alice.recv_type("presence")["payload"]["status"], "joined");
    relay_gets_through(&mut carol, &mut alice, "room", Duration::from_secs(2));
    relay_gets_through(&mut alice, &mut carol, "room", Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let nodes = redis.command(&["ZRANGE", "gw:nodes", "0", "-1"]);
        if !nodes.contains("n2\r\n") && nodes.contains("n2-1\r\n") {
            break;
        }
        assert!(Instant::now() < deadline, "nodes: {nodes}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dropped_subscriptions_are_restored_and_the_session_goes_on() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let n1 = Node::start(&redis, "n1");
    let mut n2 = Node::start(&redis, "n2");
    let (mut alice, mut bob) = pair(&n1, &n2, "room");
    let killed = redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_eq!(killed, ":2\r\n", "one subscriber link per node");
    relay_gets_through(&mut alice, &mut bob, "room", Duration::from_secs(3));
    relay_gets_through(&mut bob, &mut alice, "room", Duration::from_secs(3));
    n2.line_with("broker up");
    let subscribers = redis.command(&["PUBSUB", "NUMSUB", "gw:s:{room}"]);
    assert!(subscribers.ends_with(":2\r\n"), "{subscribers}");

    // A join and a leave published while one node's subscription is gone: that node catches
    // up once it is back, and its members see them as presence.
    let mut carol = n2.client(TOKEN_CAROL);
    kill_subscriber(&redis, &n1);
    let joined = carol.request("session_join", json!({ "sessionId": "room" }));
    assert_eq!(joined["payload"]["status"], "joined", "{joined}");
    assert_eq!(bob.recv_type("presence")["payload"]["status"], "joined");
    let presence = alice.recv_type("presence");
    assert_eq!(presence["payload"]["status"], "joined", "{presence}");
    assert_eq!(presence["payload"]["clientId"], carol.client_id.as_str());
    relay_gets_through(&mut carol, &mut alice, "room", Duration::from_secs(3));
    kill_subscriber(&redis, &n1);
    let asked = bob.send_msg("session_leave", json!({ "sessionId": "room" }));
    let left = loop {
        let msg = bob.recv();
        if msg["replyTo"] == asked.as_str() {
            break msg;
        }
        assert_eq!(msg["type"], "broadcast", "{msg}");
    };
    assert_eq!(left["payload"]["status"], "left", "{left}");
    let presence = loop {
        let msg = alice.recv();
        if msg["type"] != "broadcast" {
            break msg;
        }
    };
    assert_eq!(presence["payload"]["status"], "left", "{presence}");
    assert_eq!(presence["payload"]["clientId"], bob.client_id.as_str());
}

/// Kill the subscriber link of `node` (found by its local port) in `redis`.
fn kill_subscriber(redis: &RedisServer, node: &Node) {
    let pid = node.child.id();
    let mut inodes = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the node's fds") {
        let target = std::fs::read_link(fd.expect("an fd").path()).unwrap_or_default();
        let target = target.to_string_lossy().into_owned();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.push(inode.to_string());
        }
    }
    let tcp = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).expect("tcp table");
    let redis_port = format!(":{:04X}", redis.port);
    let ports: Vec<u16> = tcp
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, inode) = (fields[1], fields[2], fields[9]);
            (remote.ends_with(&redis_port) && inodes.iter().any(|i| i == inode))
                .then(|| u16::from_str_radix(&local[local.len() - 4..], 16).expect("a port"))
        })
        .collect();
    let list = redis.command(&["CLIENT", "LIST", "TYPE", "pubsub"]);
    let id = list
        .lines()
        .find(|line| {
            ports
                .iter()
                .any(|p| line.contains(&format!("addr=127.0.0.1:{p} ")))
        })
        .and_then(|line| line.split_whitespace().next())
        .and_then(|id| id.strip_prefix("id="))
        .unwrap_or_else(|| panic!("no subscriber of the node among {list} (ports {ports:?})"))
        .to_string();
    assert_eq!(redis.command(&["CLIENT", "KILL", "ID", &id]), ":1\r\n");
}

#[test]
fn a_slow_redis_is_waited_for_and_a_stalled_one_is_survived() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let n1 = Node::start(&redis, "n1");
    let mut n2 = Node::start(&redis, "n2");
    let (mut alice, mut bob) = pair(&n1, &n2, "room");
    let mut carol = n2.client(TOKEN_CAROL);

    // Slower than usual, within broker_timeout_ms: waited for.
    let mut overlapped = false;
    for _ in 0..3 {
        std::thread::scope(|s| {
            let sleeping = s.spawn(|| redis.command(&["DEBUG", "SLEEP", "0.2"]));
            wait_asleep(&redis);
            let asked = Instant::now();
            let joined = carol.request("session_join", json!({ "sessionId": "room" }));
            assert_eq!(joined["payload"]["status"], "joined", "{joined}");
            overlapped = asked.elapsed() >= Duration::from_millis(100);
            assert_eq!(sleeping.join().unwrap(), "+OK\r\n");
        });
        alice.recv_type("presence");
        bob.recv_type("presence");
        if overlapped {
            break;
        }
        let left = carol.request("session_leave", json!({ "sessionId": "room" }));
        assert_eq!(left["payload"]["status"], "left", "{left}");
        alice.recv_type("presence");
        bob.recv_type("presence");
    }
    assert!(overlapped, "the join never waited for the sleeping Redis");

    // Stalled beyond broker_timeout_ms: refused, then served again.
    std::thread::scope(|s| {
        let sleeping = s.spawn(|| redis.command(&["DEBUG", "SLEEP", "0.8"]));
        wait_asleep(&redis);
        let asked = Instant::now();
        let refused = bob.request("session_join", json!({ "sessionId": "elsewhere" }));
        assert_error(&refused, "UNAVAILABLE");
        let took = asked.elapsed();
        assert!(
            took < Duration::from_millis(TIMEOUT_MS + 300),
            "UNAVAILABLE after {took:?}"
        );
        assert_eq!(sleeping.join().unwrap(), "+OK\r\n");
    });
    n2.wait_broker("ok", Duration::from_secs(5));
    let created = bob.request("session_create", json!({ "sessionId": "elsewhere" }));
    assert_eq!(created["payload"]["status"], "created", "{created}");
    relay_gets_through(&mut alice, &mut bob, "room", Duration::from_secs(2));
    relay_gets_through(&mut bob, &mut alice, "room", Duration::from_secs(2));
}

#[test]
fn a_restarted_empty_redis_gets_both_nodes_state_back() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let mut n1 = Node::start(&redis, "n1");
    let mut n2 = Node::start(&redis, "n2");
    let (mut alice, mut bob) = pair(&n1, &n2, "room");

    redis.restart();
    let back = Instant::now();
    n1.wait_broker("ok", Duration::from_secs(5));
    n2.wait_broker("ok", Duration::from_secs(5));
    assert!(back.elapsed() < Duration::from_secs(5));
    // Both nodes write back their members.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let members = members_in_redis(&redis, "room");
        if members.contains(&alice.client_id) && members.contains(&bob.client_id) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not written back: {members}; n1:\n{}\nn2:\n{}",
            n1.log(),
            n2.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(n1.node_id(), "n1");
    assert_eq!(n2.node_id(), "n2");
    relay_gets_through(&mut alice, &mut bob, "room", Duration::from_secs(3));
    relay_gets_through(&mut bob, &mut alice, "room", Duration::from_secs(3));
    // A third client joins the session as it was.
    let mut carol = n2.client(TOKEN_CAROL);
    let joined = carol.request("session_join", json!({ "sessionId": "room" }));
    assert_eq!(joined["payload"]["status"], "joined", "{joined}");
    assert_eq!(joined["payload"]["name"], "Room", "{joined}");
    assert_eq!(joined["payload"]["owner"], "alice", "{joined}");
    assert_eq!(joined["payload"]["metadata"], json!({ "topic": [1, 2] }));
    let members: Vec<&str> = joined["payload"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["clientId"].as_str().unwrap())
        .collect();
    assert_eq!(members.len(), 3, "{joined}");
    for member in [&mut alice, &mut bob] {
        let presence = member.recv_type("presence");
        assert_eq!(presence["payload"]["clientId"], carol.client_id.as_str());
    }
    relay_gets_through(&mut carol, &mut alice, "room", Duration::from_secs(2));
}

#[test]
fn a_killed_node_s_routes_are_answered_and_its_agents_go_offline() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let n1 = Node::start(&redis, "n1");
    let mut n2 = Node::start(&redis, "n2");
    let mut alice = n1.client(TOKEN);
    let mut worker = n2.client(TOKEN_BOB);
    let registered = worker.request(
        "agent_register",
        json!({"agentId": "w", "type": "cli", "name": "W", "capabilities": {"tools": ["x"]}}),
    );
    assert_eq!(
        registered["payload"]["status"], "registered",
        "{registered}"
    );
    // A request delivered to the worker, not answered when its node dies.
    let id = next_id();
    alice.send(&json!({"type": "route_request", "id": id, "target": "w", "payload": {}}));
    assert_eq!(worker.recv_type("route_request")["id"], id.as_str());

    n2.kill();
    let killed = Instant::now();
    let answer = try_recv(&mut alice, Duration::from_millis(DEAD_MS + 2000))
        .expect("the pending route is answered");
    assert_eq!(answer["replyTo"], id.as_str(), "{answer}");
    assert_error(&answer, "TARGET_NOT_FOUND");
    assert!(killed.elapsed() < Duration::from_millis(DEAD_MS + 2000));
    // Its agent is offline for everyone.
    let agents = alice.request("agent_query", json!({}));
    assert_eq!(
        agents["payload"]["agents"][0]["status"], "offline",
        "{agents}"
    );
    let refused = alice.request_envelope(json!({"type": "route_request", "target": "w",
        "payload": {}}));
    assert_error(&refused, "TARGET_NOT_FOUND");
}
