//! The limits table of PROTOCOL section 4 over real sockets: message sizes, session and
//! agent limits, the metadata limit, the rate limit and the slow consumer.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const QUIET: Duration = Duration::from_millis(100);
const SLOW_CONSUMER: &str = "gateway_connections_closed_total{reason=\"slow_consumer\"}";

/// A `ping` message of exactly `len` bytes.
fn ping_of_len(id: &str, len: usize) -> String {
    let empty = format!(r#"{{"type":"ping","id":"{id}","pad":""}}"#);
    assert!(len >= empty.len());
    let text = format!(
        r#"{{"type":"ping","id":"{id}","pad":"{}"}}"#,
        "x".repeat(len - empty.len())
    );
    assert_eq!(text.len(), len);
    text
}

#[test]
fn message_over_max_message_size_is_refused_and_the_connection_kept() {
    let mut config = test_config();
    config.max_message_size = 4096;
    let gw = TestGateway::start(config);
    let mut client = Client::connect(&gw);

    client.send_text(&ping_of_len("at-limit", 4096));
    let pong = client.recv();
    assert_eq!(pong["type"], "pong", "{pong}");
    assert_eq!(pong["replyTo"], "at-limit");

    client.send_text(&ping_of_len("over", 4097));
    let error = client.recv();
    assert_error(&error, "MESSAGE_TOO_LARGE");
    assert!(error.get("replyTo").is_none(), "{error}");

    let mut group = session_group(&gw, "room", 2);
    let chat = json!({
        "type": "chat",
        "id": "big-chat",
        "sessionId": "room",
        "payload": {"text": "y".repeat(5000)},
    });
    group[0].send(&chat);
    assert_error(&group[0].recv(), "MESSAGE_TOO_LARGE");
    group[1].expect_silence(QUIET);

    assert_eq!(client.request("ping", json!({}))["type"], "pong");
    assert_eq!(group[0].request("ping", json!({}))["type"], "pong");
}

#[test]
fn message_over_max_payload_across_fragments_closes_1009() {
    let mut config = test_config();
    config.max_payload = 8192;
    config.max_message_size = 4096;
    let gw = TestGateway::start(config);
    let mut raw = RawWs::open(&gw);
    let half = vec![b' '; 5000];
    raw.send(&frame(
        1,
        false,
        br#"{"type":"ping","id":"f","pad":""#,
        true,
    ));
    raw.send(&frame(0, false, &half, true));
    raw.send(&frame(0, true, &half, true));
    assert_eq!(raw.read_close().map(|c| c.0), Some(1009));
    assert!(raw.sees_eof());
}

#[test]
fn invalid_utf8_in_a_fragmented_text_closes_1007_before_the_end() {
    let gw = TestGateway::start(test_config());
    let mut raw = RawWs::open(&gw);
    raw.send(&frame(1, false, b"{\"type\":\"ping\",\"id\":\"\xff", true));
    assert_eq!(raw.read_close().map(|c| c.0), Some(1007));
}

#[test]
fn session_full_refuses_joins_and_creates_without_telling_the_members() {
    let mut config = test_config();
    config.max_clients_per_session = 2;
    let gw = TestGateway::start(config);
    let mut group = session_group(&gw, "room", 2);
    let mut third = Client::authed(&gw, TOKEN_BOB);

    third.request_error("session_join", json!({"sessionId": "room"}), "SESSION_FULL");
    third.request_error(
        "session_create",
        json!({"sessionId": "room"}),
        "SESSION_FULL",
    );
    let id = third.send_scoped("chat", "room", json!({}));
    let refused = third.recv();
    assert_error(&refused, "NOT_A_MEMBER");
    assert_eq!(refused["replyTo"], id.as_str());
    for member in group.iter_mut() {
        member.expect_silence(QUIET);
    }

    let again = group[0].request("session_join", json!({"sessionId": "room"}));
    assert_eq!(
        again["payload"]["status"], "joined",
        "a member re-joining a full session is a no-op"
    );

    group[1].request("session_leave", json!({"sessionId": "room"}));
    group[0].recv_type("presence");
    let joined = third.request("session_join", json!({"sessionId": "room"}));
    assert_eq!(joined["payload"]["status"], "joined", "{joined}");
    assert_eq!(joined["payload"]["members"].as_array().unwrap().len(), 2);
}

#[test]
fn max_sessions_per_client_is_limit_exceeded() {
    let mut config = test_config();
    config.max_sessions_per_client = 2;
    config.max_clients_per_session = 2;
    let gw = TestGateway::start(config);
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    let mut c = Client::authed(&gw, TOKEN_BOB);
    a.request("session_create", json!({"sessionId": "s1"}));
    a.request("session_create", json!({"sessionId": "s2"}));
    a.request_error(
        "session_create",
        json!({"sessionId": "s3"}),
        "LIMIT_EXCEEDED",
    );
    a.request_error("session_create", json!({}), "LIMIT_EXCEEDED");
    assert_eq!(gw.health()["sessions"], 2, "nothing was created");

    b.request("session_create", json!({"sessionId": "open"}));
    a.request_error(
        "session_join",
        json!({"sessionId": "open"}),
        "LIMIT_EXCEEDED",
    );
    a.request_error(
        "session_create",
        json!({"sessionId": "open"}),
        "LIMIT_EXCEEDED",
    );
    b.expect_silence(QUIET);

    b.request("session_create", json!({"sessionId": "full"}));
    c.request("session_join", json!({"sessionId": "full"}));
    b.recv_type("presence");
    a.request_error("session_join", json!({"sessionId": "full"}), "SESSION_FULL");

    let again = a.request("session_join", json!({"sessionId": "s1"}));
    assert_eq!(again["payload"]["status"], "joined", "{again}");

    a.request("session_leave", json!({"sessionId": "s1"}));
    let joined = a.request("session_join", json!({"sessionId": "open"}));
    assert_eq!(joined["payload"]["status"], "joined", "{joined}");
}

#[test]
fn max_sessions_is_limit_exceeded_for_new_sessions_only() {
    let mut config = test_config();
    config.max_sessions = 2;
    let gw = TestGateway::start(config);
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    let mut c = Client::authed(&gw, TOKEN);
    a.request("session_create", json!({"sessionId": "s1"}));
    b.request("session_create", json!({"sessionId": "s2"}));
    c.request_error(
        "session_create",
        json!({"sessionId": "s3"}),
        "LIMIT_EXCEEDED",
    );
    c.request_error("session_create", json!({}), "LIMIT_EXCEEDED");
    assert_eq!(gw.health()["sessions"], 2);

    let joined = c.request("session_create", json!({"sessionId": "s1"}));
    assert_eq!(joined["payload"]["status"], "joined", "{joined}");
    a.recv_type("presence");

    b.request("session_leave", json!({"sessionId": "s2"}));
    let created = c.request("session_create", json!({"sessionId": "s3"}));
    assert_eq!(created["payload"]["status"], "created", "{created}");
}

#[test]
fn max_agents_is_limit_exceeded() {
    let mut config = test_config();
    config.max_agents = 1;
    let gw = TestGateway::start(config);
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    let register = |id: &str| json!({"agentId": id, "type": "cli", "name": id, "capabilities": {}});
    let ok = a.request("agent_register", register("a-1"));
    assert_eq!(ok["payload"]["status"], "registered", "{ok}");
    b.request_error("agent_register", register("b-1"), "LIMIT_EXCEEDED");
    a.request_error("agent_register", register("a-2"), "LIMIT_EXCEEDED");
    let list = b.request("agent_query", json!({}));
    assert_eq!(
        list["payload"]["agents"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
}

/// `{"k":"xxx…"}` of exactly `len` bytes as compact JSON.
fn metadata_of_len(len: usize) -> Value {
    let value = json!({"k": "x".repeat(len - 8)});
    assert_eq!(value.to_string().len(), len);
    value
}

#[test]
fn metadata_over_64_kib_is_refused_on_create() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    a.request_error(
        "session_create",
        json!({"sessionId": "big", "metadata": metadata_of_len(65_537)}),
        "LIMIT_EXCEEDED",
    );
    assert_eq!(gw.health()["sessions"], 0);
    a.request_error(
        "session_join",
        json!({"sessionId": "big"}),
        "SESSION_NOT_FOUND",
    );

    let at_limit = metadata_of_len(65_536);
    let created = a.request(
        "session_create",
        json!({"sessionId": "big", "metadata": at_limit}),
    );
    assert_eq!(created["payload"]["status"], "created", "{created}");
    assert_eq!(created["payload"]["metadata"], at_limit);
}

#[test]
fn metadata_over_64_kib_after_a_patch_is_refused_and_unchanged() {
    let gw = TestGateway::start(test_config());
    let mut group = session_group(&gw, "room", 2);
    group[0].request(
        "session_patch",
        json!({"sessionKey": "room", "patch": {"a": 1, "big": "x".repeat(60_000)}}),
    );
    group[1].recv_type("session_info");

    group[0].request_error(
        "session_patch",
        json!({"sessionKey": "room", "patch": {"more": "y".repeat(6_000)}}),
        "LIMIT_EXCEEDED",
    );
    group[0].request_error(
        "session_patch",
        json!({"sessionKey": "room", "patch": {"a": null, "huge": "z".repeat(70_000)}}),
        "LIMIT_EXCEEDED",
    );
    group[1].expect_silence(QUIET);

    let patched = group[0].request(
        "session_patch",
        json!({"sessionKey": "room", "patch": {"b": 2}}),
    );
    let metadata = &patched["payload"]["metadata"];
    assert_eq!(metadata["a"], 1, "unchanged by the refused patches");
    assert_eq!(metadata["b"], 2);
    assert_eq!(metadata["big"].as_str().map(str::len), Some(60_000));
    assert!(metadata.get("more").is_none() && metadata.get("huge").is_none());
    group[1].recv_type("session_info");

    let swapped = group[1].request(
        "session_patch",
        json!({"sessionKey": "room", "patch": {"big": null, "other": "w".repeat(60_000)}}),
    );
    assert_eq!(
        swapped["payload"]["status"], "patched",
        "the limit applies to the merged result"
    );
}

#[test]
fn rate_limit_gives_a_burst_then_refuses_without_handling() {
    let mut config = test_config();
    config.rate_limit_per_sec = 2;
    config.rate_limit_burst = 3;
    let gw = TestGateway::start(config);
    let mut client = Client::connect(&gw);
    client.send_batch(&[
        json!({"type": "auth", "id": "a", "payload": {"token": TOKEN}}),
        json!({"type": "ping", "id": "p1"}),
        json!({"type": "ping", "id": "p2"}),
        json!({"type": "ping", "id": "p3"}),
        json!({"type": "session_create", "id": "s", "payload": {"sessionId": "room"}}),
    ]);
    let replies: Vec<Value> = (0..5).map(|_| client.recv()).collect();
    let summary: Vec<(&str, &str)> = replies
        .iter()
        .map(|r| {
            (
                r["replyTo"].as_str().unwrap_or(""),
                r["payload"]["code"]
                    .as_str()
                    .unwrap_or(r["type"].as_str().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("a", "auth_success"),
            ("p1", "pong"),
            ("p2", "pong"),
            ("p3", "RATE_LIMITED"),
            ("s", "RATE_LIMITED"),
        ],
        "{replies:?}"
    );
    assert_eq!(
        gw.health()["sessions"],
        0,
        "a refused message is not handled"
    );

    let mut refusals = 0;
    let created = eventually(|| {
        let reply = client.request("session_create", json!({"sessionId": "room"}));
        if reply["type"] == "error" {
            assert_error(&reply, "RATE_LIMITED");
            refusals += 1;
            false
        } else {
            assert_eq!(reply["payload"]["status"], "created", "{reply}");
            true
        }
    });
    assert!(created, "the bucket refills");
    assert!(refusals > 0, "the refill is not instant");
    assert_eq!(gw.health()["sessions"], 1);
}

#[test]
fn messages_refused_before_the_rate_limit_take_no_token() {
    let mut config = test_config();
    config.rate_limit_per_sec = 1;
    config.rate_limit_burst = 2;
    config.max_message_size = 1500;
    let gw = TestGateway::start(config);
    let mut client = Client::connect(&gw);
    let too_large = ping_of_len("large", 2000);
    client.send_batch(&[
        json!("not an object"),
        json!([1, 2]),
        json!({"type": "ping"}),
        json!({"type": "", "id": "empty-type"}),
        json!({"type": "ping", "id": "p1"}),
        json!({"type": "ping", "id": "p2"}),
        json!({"type": "ping", "id": "p3"}),
    ]);
    let mut codes = Vec::new();
    for _ in 0..7 {
        let reply = client.recv();
        codes.push(
            reply["payload"]["code"]
                .as_str()
                .unwrap_or(reply["type"].as_str().unwrap())
                .to_string(),
        );
    }
    assert_eq!(
        codes,
        [
            "PARSE_ERROR",
            "PARSE_ERROR",
            "INVALID_MESSAGE",
            "INVALID_MESSAGE",
            "pong",
            "pong",
            "RATE_LIMITED"
        ]
    );
    client.send_text(&too_large);
    assert_error(&client.recv(), "MESSAGE_TOO_LARGE");
}

#[test]
fn rate_limit_is_per_connection() {
    let mut config = test_config();
    config.rate_limit_per_sec = 1;
    config.rate_limit_burst = 1;
    let gw = TestGateway::start(config);
    let mut a = Client::connect(&gw);
    let mut b = Client::connect(&gw);
    assert_eq!(a.request("ping", json!({}))["type"], "pong");
    a.request_error("ping", json!({}), "RATE_LIMITED");
    assert_eq!(b.request("ping", json!({}))["type"], "pong");
}

#[test]
fn slow_consumer_is_closed_and_the_others_get_every_message_in_order() {
    let mut config = test_config();
    config.max_message_size = 128 * 1024;
    config.max_outbound_buffer = 256 * 1024;
    config.close_timeout_ms = 3000;
    let gw = TestGateway::start(config);

    let mut flooder = Client::authed(&gw, TOKEN);
    flooder.request("session_create", json!({"sessionId": "flood"}));
    let mut reader = Client::authed(&gw, TOKEN_BOB);
    reader.request("session_join", json!({"sessionId": "flood"}));
    flooder.recv_type("presence");

    let mut slow = RawWs::open(&gw);
    slow.send_json(&json!({"type": "auth", "id": "a", "payload": {"token": TOKEN}}));
    let authed = slow.read_json().expect("auth reply");
    assert_eq!(authed["type"], "auth_success", "{authed}");
    let slow_id = authed["payload"]["clientId"].as_str().unwrap().to_string();
    slow.send_json(&json!({"type": "session_join", "id": "j", "payload": {"sessionId": "flood"}}));
    assert_eq!(slow.read_json().expect("join reply")["replyTo"], "j");
    assert_eq!(
        flooder.recv_type("presence")["payload"]["clientId"],
        slow_id.as_str()
    );
    assert_eq!(
        reader.recv_type("presence")["payload"]["clientId"],
        slow_id.as_str()
    );

    let progress = Arc::new(AtomicUsize::new(0));
    let reader_progress = Arc::clone(&progress);
    let reader_slow_id = slow_id.clone();
    let reader_thread = std::thread::spawn(move || {
        let mut seqs: Vec<u64> = Vec::new();
        let mut saw_left = false;
        loop {
            let msg = reader.recv();
            match msg["type"].as_str() {
                Some("chat") if msg["payload"]["last"] == true => break,
                Some("chat") => {
                    seqs.push(msg["payload"]["seq"].as_u64().expect("seq"));
                    reader_progress.fetch_add(1, Ordering::SeqCst);
                }
                Some("presence") => {
                    assert_eq!(msg["payload"]["status"], "left", "{msg}");
                    assert_eq!(msg["payload"]["clientId"], reader_slow_id.as_str());
                    saw_left = true;
                }
                _ => panic!("unexpected at the reader: {msg}"),
            }
        }
        (seqs, saw_left, reader)
    });

    let blob = "z".repeat(100 * 1024);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0usize;
    let mut closed_after = None;
    while closed_after.map_or(true, |at| sent < at + 5) {
        while sent > progress.load(Ordering::SeqCst) + 2 {
            assert!(Instant::now() < deadline, "the reader stalled at {sent}");
            std::thread::sleep(Duration::from_millis(1));
        }
        flooder.send_scoped("chat", "flood", json!({"seq": sent, "text": blob}));
        sent += 1;
        if closed_after.is_none() && sent % 4 == 0 && gw.metric(SLOW_CONSUMER) == Some(1.0) {
            closed_after = Some(sent);
        }
        assert!(
            Instant::now() < deadline,
            "no slow consumer close after {sent} messages of 100 KiB"
        );
    }
    flooder.send_scoped("chat", "flood", json!({"last": true}));
    let (seqs, saw_left, _reader) = reader_thread.join().expect("reader");
    assert_eq!(seqs, (0..sent as u64).collect::<Vec<_>>());
    assert!(saw_left, "the reader saw the slow consumer leave");

    let left = flooder.recv_type("presence");
    assert_eq!(left["payload"]["status"], "left");
    assert_eq!(left["payload"]["clientId"], slow_id.as_str());
    assert_eq!(gw.metric(SLOW_CONSUMER), Some(1.0), "only the slow one");
    assert_eq!(gw.health()["clients"], 2);

    let mut next = 0u64;
    let close = loop {
        let (_, opcode, payload) = slow.read_frame().expect("frame for the slow consumer");
        match opcode {
            1 => {
                let msg: Value = serde_json::from_slice(&payload).expect("JSON");
                assert_eq!(msg["payload"]["seq"], next, "nothing skipped");
                next += 1;
            }
            8 => break payload,
            9 | 10 => {}
            other => panic!("opcode {other}"),
        }
    };
    assert!(next > 0 && next <= sent as u64);
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 1008);
    assert_eq!(&close[2..], b"Slow consumer");
}
