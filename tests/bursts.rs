//! Limits hold under a burst from many connections at once: `max_connections`, the rate
//! limit, both message size limits and the auth failure limit; and a burst of pipelined
//! messages or of empty frames from one connection shares the loop with the others.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use common::*;
use serde_json::{json, Value};

/// Run `work` on `n` threads released together; collect their results.
fn burst<T: Send + 'static>(n: usize, work: impl Fn(usize) -> T + Send + Sync + 'static) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(n));
    let work = Arc::new(work);
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let work = Arc::clone(&work);
            thread::spawn(move || {
                barrier.wait();
                work(i)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("worker"))
        .collect()
}

#[test]
fn max_connections_holds_under_a_burst() {
    let mut config = test_config();
    config.max_connections = 20;
    let gw = TestGateway::start(config);
    let url = gw.url();
    let all_tried = Arc::new(Barrier::new(50));
    let results = burst(50, move |_| {
        let ws = open_ws(&url, None);
        // Keep the socket open until every thread has tried.
        all_tried.wait();
        ws.is_ok()
    });
    let opened = results.iter().filter(|ok| **ok).count();
    assert_eq!(opened, 20, "exactly max_connections upgrades succeed");
    assert!(eventually(|| gw.health()["clients"] == 0));
}

#[test]
fn rate_limit_holds_per_connection_under_a_burst() {
    let mut config = test_config();
    config.rate_limit_per_sec = 1;
    config.rate_limit_burst = 10;
    let gw = TestGateway::start(config);
    let addr = gw.addr;
    let results = burst(20, move |_| {
        let mut raw = RawWs::open_at(addr, "/ws", &[]);
        let mut batch = Vec::new();
        for i in 0..40 {
            let ping = json!({"type": "ping", "id": format!("p{i}")}).to_string();
            batch.extend(frame(1, true, ping.as_bytes(), true));
        }
        raw.send(&batch);
        let (mut pongs, mut limited) = (0, 0);
        for _ in 0..40 {
            let reply: Value = raw.read_json().expect("reply");
            match reply["type"].as_str() {
                Some("pong") => pongs += 1,
                Some("error") if reply["payload"]["code"] == "RATE_LIMITED" => limited += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        (pongs, limited)
    });
    for (pongs, limited) in results {
        assert!((10..=12).contains(&pongs), "pongs {pongs}");
        assert_eq!(pongs + limited, 40);
    }
}

#[test]
fn size_limits_hold_under_a_burst() {
    let mut config = test_config();
    config.max_message_size = 4096;
    config.max_payload = 64 * 1024;
    let gw = TestGateway::start(config);
    let addr = gw.addr;
    let results = burst(20, move |i| {
        let mut raw = RawWs::open_at(addr, "/ws", &[]);
        let big = json!({"type": "ping", "id": "big", "pad": "x".repeat(8000)}).to_string();
        raw.send(&frame(1, true, big.as_bytes(), true));
        let too_large = raw.read_json().expect("error");
        raw.send(&frame(1, true, br#"{"type":"ping","id":"small"}"#, true));
        let pong = raw.read_json().expect("pong");
        // Every other connection also sends a frame over max_payload.
        let closed = if i % 2 == 0 {
            raw.send(&frame(1, true, &vec![b'x'; 70 * 1024], true));
            raw.read_close().map(|c| c.0)
        } else {
            None
        };
        (
            too_large["payload"]["code"].clone(),
            pong["replyTo"].clone(),
            closed,
            i,
        )
    });
    for (code, reply_to, closed, i) in results {
        assert_eq!(code, "MESSAGE_TOO_LARGE");
        assert_eq!(reply_to, "small");
        if i % 2 == 0 {
            assert_eq!(closed, Some(1009));
        }
    }
}

#[test]
fn auth_failure_limit_holds_under_a_burst() {
    let gw = TestGateway::start(test_config());
    let addr = gw.addr;
    let results = burst(20, move |_| {
        let mut raw = RawWs::open_at(addr, "/ws", &[]);
        let mut batch = Vec::new();
        for i in 0..6 {
            let auth =
                json!({"type": "auth", "id": format!("a{i}"), "payload": {"token": "wrong"}})
                    .to_string();
            batch.extend(frame(1, true, auth.as_bytes(), true));
        }
        raw.send(&batch);
        let mut failed = 0;
        loop {
            let (_, opcode, payload) = raw.read_frame().expect("frame");
            match opcode {
                1 => {
                    let reply: Value = serde_json::from_slice(&payload).unwrap();
                    assert_eq!(reply["payload"]["code"], "AUTH_FAILED");
                    failed += 1;
                }
                8 => return (failed, u16::from_be_bytes([payload[0], payload[1]])),
                _ => {}
            }
        }
    });
    for (failed, code) in results {
        assert_eq!((failed, code), (3, 1008));
    }
    assert!(eventually(|| gw.health()["clients"] == 0));
}

/// One connection's pipelined messages do not hold the loop for the others: a client writes
/// 3 000 pings in one write; a bystander's ping is answered, and a chat it sends after its
/// pong reaches the flooding client, while the flood is still being answered. Every pong
/// arrives, in order.
#[test]
fn a_pipelined_flood_shares_the_loop_with_a_bystander() {
    const FLOOD: usize = 3000;
    let gw = TestGateway::start(test_config());
    let mut group = session_group(&gw, "room", 2);
    let mut bystander = group.pop().expect("two clients");
    let mut flooder = group.pop().expect("two clients");
    let mut blob = Vec::new();
    for i in 0..FLOOD {
        let ping = json!({"type": "ping", "id": format!("f{i}")}).to_string();
        blob.extend_from_slice(&frame(1, true, ping.as_bytes(), true));
    }
    flooder.ws.get_mut().write_all(&blob).expect("one write");

    let pong = bystander.request("ping", json!({}));
    assert_eq!(pong["type"], "pong", "{pong}");
    bystander.send_scoped("chat", "room", json!({"text": "between"}));

    let mut chat_after = None;
    let mut pongs = 0;
    while pongs < FLOOD || chat_after.is_none() {
        let msg = flooder.recv();
        match msg["type"].as_str() {
            Some("pong") => {
                assert_eq!(msg["replyTo"], format!("f{pongs}"), "{msg}");
                pongs += 1;
            }
            Some("chat") => chat_after = Some(pongs),
            _ => panic!("unexpected {msg}"),
        }
    }
    let chat_after = chat_after.expect("the chat");
    assert!(
        chat_after < FLOOD,
        "the bystander's ping and chat were handled only after the whole flood"
    );
}

/// Frames that make no message share the loop too: a client that opened a message writes
/// 30 000 empty continuation frames and the frame that ends it in one write (less than a
/// turn's read budget); a bystander's ping is answered, and a chat it sends after its pong
/// reaches the flooding client before the reply to the message at the end of the flood.
#[test]
fn a_flood_of_empty_frames_shares_the_loop_with_a_bystander() {
    const FLOOD: usize = 30_000;
    let gw = TestGateway::start(test_config());
    let mut group = session_group(&gw, "room", 2);
    let mut bystander = group.pop().expect("two clients");
    let mut flooder = group.pop().expect("two clients");
    let ping = json!({"type": "ping", "id": "end"}).to_string();
    let (start, end) = ping.as_bytes().split_at(8);
    let mut blob = frame(1, false, start, true);
    for _ in 0..FLOOD {
        blob.extend_from_slice(&frame(0, false, b"", true));
    }
    blob.extend_from_slice(&frame(0, true, end, true));
    flooder.ws.get_mut().write_all(&blob).expect("one write");

    let pong = bystander.request("ping", json!({}));
    assert_eq!(pong["type"], "pong", "{pong}");
    bystander.send_scoped("chat", "room", json!({"text": "between"}));

    let first = flooder.recv();
    assert_eq!(
        first["type"], "chat",
        "the bystander waited for the whole flood: {first}"
    );
    let reply = flooder.recv();
    assert_eq!(reply["replyTo"], "end", "{reply}");
}

/// What flooding connections got done while another user's client went round `ROUNDS`
/// times: a chat into the session they share, then a ping and its pong. The flooders are
/// `flooders` connections of alice, or with `users`, one connection each of as many users.
/// Each flooder counts its pongs between two chats of the bystander; returned: the median
/// over the rounds of their sum, and `gateway_turn_share_waits_total` at the end.
fn flood_work_per_bystander_round(flooders: usize, users: bool) -> (usize, f64) {
    const FLOOD: usize = 20_000;
    const ROUNDS: usize = 9;
    let mut config = test_config();
    if users {
        for i in 0..flooders {
            config = with_token(config, &format!("user{i}"), &format!("secret-user{i}"));
        }
    }
    let gw = TestGateway::start(config);
    let group: Vec<Client> = if users {
        (0..flooders)
            .map(|i| {
                let mut client = Client::authed(&gw, &format!("secret-user{i}"));
                let reply = client.request("session_create", json!({ "sessionId": "room" }));
                assert!(reply["payload"]["status"].is_string(), "{reply}");
                client
            })
            .collect()
    } else {
        session_group(&gw, "room", flooders)
    };
    let mut bystander = Client::authed(&gw, TOKEN_BOB);
    let joined = bystander.request("session_create", json!({ "sessionId": "room" }));
    assert_eq!(joined["payload"]["status"], "joined", "{joined}");
    let mut blob = Vec::new();
    for i in 0..FLOOD {
        let ping = json!({"type": "ping", "id": format!("f{i}")}).to_string();
        blob.extend_from_slice(&frame(1, true, ping.as_bytes(), true));
    }
    let blob = Arc::new(blob);
    // Flooders whose pongs have begun to arrive.
    let streaming = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = group
        .into_iter()
        .map(|mut flooder| {
            let mut socket = flooder.ws.get_ref().try_clone().expect("clone");
            let blob = Arc::clone(&blob);
            let streaming = Arc::clone(&streaming);
            thread::spawn(move || socket.write_all(&blob).expect("the flood"));
            thread::spawn(move || {
                // The pong count at each chat of the bystander, until its last one.
                let (mut pongs, mut at_chat) = (0, Vec::new());
                loop {
                    let msg = flooder.recv();
                    match msg["type"].as_str() {
                        Some("pong") => {
                            pongs += 1;
                            if pongs == 10 {
                                streaming.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Some("chat") if msg["payload"]["text"] == "last" => break,
                        Some("chat") => at_chat.push(pongs),
                        _ => {}
                    }
                }
                assert!(
                    pongs < FLOOD,
                    "the flood ended before the bystander's rounds"
                );
                at_chat
            })
        })
        .collect();
    assert!(
        eventually(|| streaming.load(Ordering::SeqCst) == flooders),
        "the floods began"
    );
    for round in 0..=ROUNDS {
        bystander.send_scoped("chat", "room", json!({ "text": format!("r{round}") }));
        let pong = bystander.request("ping", json!({}));
        assert_eq!(pong["type"], "pong", "{pong}");
    }
    bystander.send_scoped("chat", "room", json!({ "text": "last" }));
    let counts: Vec<Vec<usize>> = readers
        .into_iter()
        .map(|r| r.join().expect("reader"))
        .collect();
    let mut per_round: Vec<usize> = (0..ROUNDS)
        .map(|r| counts.iter().map(|at| at[r + 1] - at[r]).sum())
        .collect();
    per_round.sort_unstable();
    let waits = gw
        .metric("gateway_turn_share_waits_total")
        .expect("the counter");
    (per_round[ROUNDS / 2], waits)
}

/// The connections of one user share one share of a loop turn, and different users keep a
/// share each: while 8 connections of alice each stream pipelined pings, bob's round trip
/// lets them get a fraction done of what one connection each of 8 users gets done (8 shares
/// of each turn: bob then waits for all of them in every turn). Alice's connections wait for
/// her share; those of 8 users never wait for another's.
#[test]
fn many_connections_of_one_user_share_one_share_of_the_loop() {
    let (one_user, waits_one_user) = flood_work_per_bystander_round(8, false);
    let (eight_users, waits_eight_users) = flood_work_per_bystander_round(8, true);
    println!(
        "flooders' pongs per round trip of bob: 8 connections of one user {one_user}, \
         of 8 users {eight_users}"
    );
    assert!(
        waits_one_user > 0.0,
        "8 busy connections of one user wait for its share"
    );
    assert_eq!(
        waits_eight_users, 0.0,
        "no connection waits for another user's share"
    );
    assert!(
        2 * one_user < eight_users,
        "8 connections of one user took {one_user} pongs per round, of 8 users {eight_users}"
    );
}
