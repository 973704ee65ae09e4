//! The admin scripts on a real `redis-server`: `ADMIN_KICK` asks the node the client map
//! names or every other live node, counting only the nodes that heard it; `ADMIN_PAGE` walks
//! the live nodes in the byte order of their ids, passing over those that hear nothing.

use super::super::resp_encode::Int;
use super::super::scripts::{ADMIN_KICK, ADMIN_PAGE};
use super::redis_server::{Conn, Server};
use super::*;

/// Redis's clock, in ms.
fn redis_now(conn: &mut Conn) -> i64 {
    let reply = conn.call(&[b"TIME"]);
    let fields = reply.as_array().expect("TIME").to_vec();
    let int = |i: usize| -> i64 {
        String::from_utf8_lossy(fields[i].as_bytes().expect("a number"))
            .parse()
            .expect("a number")
    };
    int(0) * 1000 + int(1) / 1000
}

/// A connection subscribed to node `node`'s channel.
fn subscriber(server: &Server, node: &str) -> Conn {
    let mut conn = server.connect(LIMITS);
    let channel = format!("gw:n:{node}");
    conn.call(&[b"SUBSCRIBE", channel.as_bytes()]);
    conn
}

/// The next message `conn` (a subscriber) gets.
fn message(conn: &mut Conn) -> Vec<u8> {
    let push = conn.reply().expect("a message");
    let fields = push.as_array().expect("a push").to_vec();
    assert_eq!(fields[0].as_bytes(), Some(&b"message"[..]), "{push:?}");
    fields[2].as_bytes().expect("a payload").to_vec()
}

/// `{node, slot, more}` of one `ADMIN_PAGE` call by node `m`, or empty.
fn page(conn: &mut Conn, from: &str, after: bool, slot: &str) -> Vec<String> {
    let after: &[u8] = if after { b"1" } else { b"0" };
    let reply = conn.call(&[
        b"EVAL",
        ADMIN_PAGE.as_bytes(),
        b"1",
        b"gw:nodes",
        b"gw",
        b"m",
        b"10000",
        from.as_bytes(),
        after,
        slot.as_bytes(),
        b"{\"f\":",
    ]);
    reply
        .as_array()
        .expect("an array")
        .iter()
        .map(|f| String::from_utf8_lossy(f.as_bytes().unwrap_or(b"")).into_owned())
        .collect()
}

fn kick(conn: &mut Conn, client_id: &str) -> i64 {
    let key = format!("gw:c:{client_id}");
    match conn.call(&[
        b"EVAL",
        ADMIN_KICK.as_bytes(),
        b"2",
        key.as_bytes(),
        b"gw:nodes",
        b"gw",
        b"m",
        b"10000",
        b"ask",
    ]) {
        Reply::Integer(n) => n,
        other => panic!("{other:?}"),
    }
}

#[test]
fn admin_scripts_ask_live_nodes_that_hear_in_byte_order() {
    let Some(server) = Server::start() else {
        return;
    };
    let mut conn = server.connect(LIMITS);
    let now = redis_now(&mut conn);
    // Live: B, Z_, a-2, b, ghost (nobody hears its channel) and m (the caller); old is dead.
    for node in ["b", "a-2", "Z_", "B", "ghost", "m"] {
        conn.call(&[b"ZADD", b"gw:nodes", &Int::new(now), node.as_bytes()]);
    }
    conn.call(&[b"ZADD", b"gw:nodes", &Int::new(now - 60_000), b"old"]);
    let mut heard: Vec<(&str, Conn)> = ["B", "Z_", "a-2", "b", "old", "m"]
        .into_iter()
        .map(|node| (node, subscriber(&server, node)))
        .collect();

    // Byte order ('B' < 'Z' < 'a'), the cursor's slot for its own node only.
    assert_eq!(page(&mut conn, "", false, "0"), ["B", "0", "1"]);
    assert_eq!(message(&mut heard[0].1), b"{\"f\":0}");
    assert_eq!(page(&mut conn, "B", true, "0"), ["Z_", "0", "1"]);
    assert_eq!(page(&mut conn, "a-2", false, "7"), ["a-2", "7", "1"]);
    assert_eq!(message(&mut heard[2].1), b"{\"f\":7}");
    assert_eq!(page(&mut conn, "a-1", false, "7"), ["a-2", "0", "1"]);
    // The ghost hears nothing, so it is passed over; the caller's own page is not asked.
    assert_eq!(page(&mut conn, "b", true, "0"), ["m", "0", "0"]);
    assert!(page(&mut conn, "m", true, "0").is_empty());

    // The node of the client map, unless it is the caller's or hears nothing.
    conn.call(&[b"SET", b"gw:c:c1", b"b\0alice"]);
    conn.call(&[b"SET", b"gw:c:c2", b"m\0alice"]);
    conn.call(&[b"SET", b"gw:c:c3", b"ghost\0alice"]);
    assert_eq!(kick(&mut conn, "c1"), 1);
    assert_eq!(kick(&mut conn, "c2"), 0);
    assert_eq!(kick(&mut conn, "c3"), 0);
    // A client in no map: every live node but the caller, counting those that heard.
    assert_eq!(kick(&mut conn, "c4"), 4);
    // What each node heard since, in order (old, dead, and m, the caller, heard nothing: the
    // count says so).
    let page_0: &[u8] = b"{\"f\":0}";
    for (node, sub) in heard.iter_mut() {
        let expected: &[&[u8]] = match *node {
            "B" => &[b"ask"],
            "Z_" | "a-2" => &[page_0, b"ask"],
            "b" => &[b"ask", b"ask"],
            _ => &[],
        };
        for want in expected {
            assert_eq!(message(sub), *want, "{node}");
        }
    }
}
