//! The heartbeat script on a real `redis-server`: a new epoch for everyone after Redis lost
//! its data, a node silent past `node_dead_ms` fenced whether or not it was swept yet, and
//! a pause of Redis itself that makes nobody dead; the per-user counts of each node, taken
//! up to a bound on their sum, given back, written again and swept.

use super::super::resp_encode::Int;
use super::super::scripts::{HEARTBEAT, SWEEP, USAGE};
use super::redis_server::{Conn, Server};
use super::*;

const KEYS: [&[u8]; 4] = [b"gw:nodes", b"gw:epoch", b"gw:clock", b"gw:nodeseq"];

/// What one heartbeat answered: state, epoch, and the dead node it names.
#[derive(Debug)]
struct Beat {
    state: String,
    epoch: String,
    dead: String,
}

fn beat(conn: &mut Conn, node: &str, epoch: &str, registering: bool) -> Beat {
    let registering: &[u8] = if registering { b"1" } else { b"0" };
    let mut args: Vec<&[u8]> = vec![b"EVAL", HEARTBEAT.as_bytes(), b"4"];
    args.extend_from_slice(&KEYS);
    args.extend_from_slice(&[
        node.as_bytes(),
        epoch.as_bytes(),
        registering,
        b"150",
        b"1000",
        b"gw",
    ]);
    let reply = conn.call(&args);
    let fields = reply.as_array().expect("an array").to_vec();
    let text = |i: usize| String::from_utf8_lossy(fields[i].as_bytes().unwrap_or(b"")).into_owned();
    Beat {
        state: text(0),
        epoch: text(1),
        dead: text(4),
    }
}

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

/// Two registered nodes, `a` and `b`, and the epoch they share.
fn two_nodes(conn: &mut Conn) -> String {
    let a = beat(conn, "a", "", true);
    let b = beat(conn, "b", "", true);
    assert_eq!((a.state.as_str(), b.state.as_str()), ("ok", "ok"));
    assert_eq!(a.epoch, b.epoch);
    a.epoch
}

fn backdate(conn: &mut Conn, key: &[u8], member: Option<&[u8]>, ms_ago: i64) {
    let at = Int::new(redis_now(conn) - ms_ago);
    match member {
        Some(member) => conn.call(&[b"ZADD", key, &at, member]),
        None => conn.call(&[b"SET", key, &at]),
    };
}

#[test]
fn heartbeats_after_data_loss_a_silent_node_and_a_paused_redis() {
    let Some(server) = Server::start() else {
        return;
    };
    let mut conn = server.connect(RespLimits::new(1 << 20));

    // Redis lost its data: each node in turn finds the epoch changed, none is fenced.
    let epoch = two_nodes(&mut conn);
    conn.call(&[b"FLUSHALL"]);
    let a = beat(&mut conn, "a", &epoch, false);
    assert_eq!(a.state, "lost", "{a:?}");
    assert_ne!(a.epoch, epoch);
    let b = beat(&mut conn, "b", &epoch, false);
    assert_eq!(b.state, "lost", "{b:?}");
    assert_eq!(b.epoch, a.epoch);
    assert_eq!(beat(&mut conn, "a", &a.epoch, false).state, "ok");
    assert_eq!(beat(&mut conn, "b", &a.epoch, false).state, "ok");

    // A node silent past node_dead_ms while others kept beating: named dead, and fenced when
    // it comes back, though nobody swept it yet.
    conn.call(&[b"FLUSHALL"]);
    let epoch = two_nodes(&mut conn);
    backdate(&mut conn, b"gw:nodes", Some(b"b"), 1500);
    let a = beat(&mut conn, "a", &epoch, false);
    assert_eq!((a.state.as_str(), a.dead.as_str()), ("ok", "b"), "{a:?}");
    let b = beat(&mut conn, "b", &epoch, false);
    assert_eq!(b.state, "fenced", "{b:?}");
    assert_eq!(
        beat(&mut conn, "a", &epoch, false).dead,
        "b",
        "still to sweep"
    );

    // Redis itself was paused (nobody reached it): nobody is dead for that silence.
    conn.call(&[b"FLUSHALL"]);
    let epoch = two_nodes(&mut conn);
    for node in [&b"a"[..], b"b"] {
        backdate(&mut conn, b"gw:nodes", Some(node), 3000);
    }
    backdate(&mut conn, b"gw:clock", None, 3000);
    let a = beat(&mut conn, "a", &epoch, false);
    assert_eq!((a.state.as_str(), a.dead.as_str()), ("ok", ""), "{a:?}");
    let b = beat(&mut conn, "b", &epoch, false);
    assert_eq!((b.state.as_str(), b.dead.as_str()), ("ok", ""), "{b:?}");
}

fn usage(conn: &mut Conn, keys: &[&[u8]], args: &[&[u8]]) -> Reply {
    let count = keys.len().to_string();
    let mut call: Vec<&[u8]> = vec![b"EVAL", USAGE.as_bytes(), count.as_bytes()];
    call.extend_from_slice(keys);
    call.extend_from_slice(args);
    conn.call(&call)
}

fn take(conn: &mut Conn, node: &str, bound: &str) -> Reply {
    let set = format!("gw:n:{node}:u");
    usage(
        conn,
        &[b"gw:uc:alice", set.as_bytes()],
        &[b"take", node.as_bytes(), b"gw", b"alice", bound.as_bytes()],
    )
}

fn add(conn: &mut Conn, node: &str, n: &str) -> Reply {
    let set = format!("gw:n:{node}:u");
    usage(
        conn,
        &[b"gw:uc:alice", set.as_bytes(), b"gw:ur:alice"],
        &[b"add", node.as_bytes(), b"gw", b"alice", n.as_bytes()],
    )
}

fn field(conn: &mut Conn, key: &[u8], node: &[u8]) -> Reply {
    conn.call(&[b"HGET", key, node])
}

#[test]
fn per_user_counts_hold_a_bound_on_the_sum_of_every_node_s_share() {
    let Some(server) = Server::start() else {
        return;
    };
    let mut conn = server.connect(RespLimits::new(1 << 20));
    let bulk = |s: &str| Reply::Bulk(Some(s.as_bytes().to_vec()));

    // A node that is not among the nodes counts nothing.
    assert_eq!(take(&mut conn, "a", "3"), Reply::Integer(-1));
    assert_eq!(conn.call(&[b"EXISTS", b"gw:uc:alice"]), Reply::Integer(0));
    conn.call(&[b"ZADD", b"gw:nodes", b"1", b"a", b"1", b"b"]);

    // Two nodes share a bound of 3.
    assert_eq!(take(&mut conn, "a", "3"), Reply::Integer(1));
    assert_eq!(take(&mut conn, "b", "3"), Reply::Integer(1));
    assert_eq!(take(&mut conn, "a", "3"), Reply::Integer(1));
    assert_eq!(take(&mut conn, "b", "3"), Reply::Integer(0));
    assert_eq!(field(&mut conn, b"gw:uc:alice", b"a"), bulk("2"));
    // Given back: a seat is free; a node whose share is 0 has no field, and the key leaves
    // its set.
    assert_eq!(add(&mut conn, "b", "-1"), Reply::Integer(1));
    assert_eq!(field(&mut conn, b"gw:uc:alice", b"b"), Reply::Bulk(None));
    assert_eq!(
        conn.call(&[b"SISMEMBER", b"gw:n:b:u", b"alice"]),
        Reply::Integer(0)
    );
    assert_eq!(take(&mut conn, "b", "3"), Reply::Integer(1));

    // A node writes its share again: its old fields cleared, the new ones set.
    let clear: [&[u8]; 3] = [b"clear", b"a", b"gw"];
    assert_eq!(usage(&mut conn, &[b"gw:n:a:u"], &clear), Reply::Integer(1));
    assert_eq!(field(&mut conn, b"gw:uc:alice", b"a"), Reply::Bulk(None));
    let set: [&[u8]; 9] = [
        b"set", b"a", b"gw", b"alice", b"1", b"4", b"bob", b"2", b"0",
    ];
    assert_eq!(usage(&mut conn, &[b"gw:n:a:u"], &set), Reply::Integer(1));
    assert_eq!(field(&mut conn, b"gw:uc:alice", b"a"), bulk("1"));
    assert_eq!(field(&mut conn, b"gw:ur:alice", b"a"), bulk("4"));
    assert_eq!(field(&mut conn, b"gw:uc:bob", b"a"), bulk("2"));
    assert_eq!(field(&mut conn, b"gw:ur:bob", b"a"), Reply::Bulk(None));

    // The sweep of dead node a removes its fields and leaves b's; a forgets it, so nothing
    // it writes after counts.
    let mut call: Vec<&[u8]> = vec![b"EVAL", SWEEP.as_bytes(), b"4"];
    call.extend_from_slice(&[b"gw:nodes", b"gw:n:a:m", b"gw:n:a:c", b"gw:n:a:a"]);
    call.extend_from_slice(&[b"a", b"200", b"gw", b"", b"", b"", b""]);
    assert_eq!(conn.call(&call), Reply::Integer(0));
    assert_eq!(field(&mut conn, b"gw:uc:alice", b"a"), Reply::Bulk(None));
    assert_eq!(field(&mut conn, b"gw:ur:alice", b"a"), Reply::Bulk(None));
    assert_eq!(field(&mut conn, b"gw:uc:bob", b"a"), Reply::Bulk(None));
    assert_eq!(field(&mut conn, b"gw:uc:alice", b"b"), bulk("1"));
    assert_eq!(conn.call(&[b"EXISTS", b"gw:n:a:u"]), Reply::Integer(0));
    assert_eq!(add(&mut conn, "a", "1"), Reply::Integer(-1));
    assert_eq!(field(&mut conn, b"gw:uc:alice", b"a"), Reply::Bulk(None));
}
