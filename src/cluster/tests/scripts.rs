//! The heartbeat script on a real `redis-server`: a new epoch for everyone after Redis lost
//! its data, a node silent past `node_dead_ms` fenced whether or not it was swept yet, and
//! a pause of Redis itself that makes nobody dead.

use super::super::resp_encode::Int;
use super::super::scripts::HEARTBEAT;
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
