//! The envelope of PROTOCOL section 2 over real sockets, and the rows of section 4 about
//! messages that cannot be read: `PARSE_ERROR`, `INVALID_MESSAGE` for the envelope and for
//! payload fields.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Send `text` and return the single reply.
fn answer(client: &mut Client, text: &str) -> Value {
    client.send_text(text);
    client.recv()
}

fn assert_kept(client: &mut Client) {
    assert_eq!(client.request("ping", json!({}))["type"], "pong");
}

fn check_envelope(msg: &Value, started: u64, request_ids: &HashSet<String>) {
    let id = msg["id"].as_str().expect("id");
    assert!(!id.is_empty() && id.len() <= 128, "{msg}");
    assert!(
        !request_ids.contains(id),
        "gateway reused a request id: {msg}"
    );
    assert!(msg["type"].as_str().is_some_and(|t| !t.is_empty()), "{msg}");
    assert!(msg["payload"].is_object(), "{msg}");
    let ts = msg["timestamp"].as_u64().expect("timestamp");
    assert!(ts + 1000 >= started && ts <= now_ms() + 1000, "{msg}");
}

#[test]
fn every_message_has_a_unique_id_a_timestamp_and_an_object_payload() {
    let gw = TestGateway::start(test_config());
    let started = now_ms();
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    let mut request_ids = HashSet::new();
    let mut received: Vec<Value> = vec![a.welcome.clone(), b.welcome.clone()];

    let exchange = |client: &mut Client, ids: &mut HashSet<String>, msg_type: &str, payload| {
        let id = client.send_msg(msg_type, payload);
        let reply = client.recv();
        assert_eq!(reply["replyTo"], id.as_str(), "{msg_type}: {reply}");
        ids.insert(id);
        reply
    };
    received.push(exchange(&mut a, &mut request_ids, "ping", json!({})));
    received.push(exchange(
        &mut a,
        &mut request_ids,
        "connect",
        json!({"deviceId": "d", "role": "node", "protocolVersion": 1}),
    ));
    received.push(exchange(
        &mut a,
        &mut request_ids,
        "session_create",
        json!({"sessionId": "r"}),
    ));
    received.push(exchange(
        &mut b,
        &mut request_ids,
        "session_join",
        json!({"sessionId": "r"}),
    ));
    received.push(a.recv_type("presence"));
    received.push(exchange(
        &mut b,
        &mut request_ids,
        "session_patch",
        json!({"sessionKey": "r", "patch": {"k": 1}}),
    ));
    received.push(a.recv_type("session_info"));
    received.push(exchange(
        &mut a,
        &mut request_ids,
        "session_join",
        json!({"sessionId": "none"}),
    ));
    received.push(exchange(
        &mut a,
        &mut request_ids,
        "no_such_type",
        json!({}),
    ));
    received.push(exchange(&mut a, &mut request_ids, "agent_query", json!({})));
    for i in 0..5 {
        let id = a.send_scoped("chat", "r", json!({"i": i}));
        request_ids.insert(id);
        received.push(b.recv_type("chat"));
    }
    received.push(exchange(
        &mut b,
        &mut request_ids,
        "session_leave",
        json!({"sessionId": "r"}),
    ));
    received.push(a.recv_type("presence"));

    let mut ids = HashSet::new();
    for msg in &received {
        check_envelope(msg, started, &request_ids);
        assert!(
            ids.insert(msg["id"].as_str().unwrap().to_string()),
            "duplicate id: {msg}"
        );
    }
    assert_eq!(ids.len(), received.len());
}

#[test]
fn missing_or_null_payload_means_an_empty_object() {
    let gw = TestGateway::start(test_config());
    let mut group = session_group(&gw, "room", 2);
    let (a, rest) = group.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut rest[0]);

    a.send(&json!({"type": "chat", "id": "no-payload", "sessionId": "room"}));
    let got = b.recv_type("chat");
    assert_eq!(got["payload"], json!({}), "{got}");
    a.send(&json!({"type": "chat", "id": "null-payload", "sessionId": "room", "payload": null}));
    let got = b.recv_type("chat");
    assert_eq!(got["payload"], json!({}), "{got}");

    let pong = answer(a, r#"{"type":"ping","id":"bare"}"#);
    assert_eq!(pong["replyTo"], "bare");
    assert_eq!(pong["payload"], json!({"clientId": a.client_id}));

    let created = answer(a, r#"{"type":"session_create","id":"gen"}"#);
    assert_eq!(created["replyTo"], "gen");
    assert_eq!(created["payload"]["status"], "created", "{created}");
    let left = a.request("session_leave", json!({"sessionId": "room"}));
    assert_eq!(
        left["payload"],
        json!({"sessionId": "room", "status": "left"})
    );
}

#[test]
fn timestamp_source_and_reply_to_from_a_client_are_not_trusted() {
    let gw = TestGateway::start(test_config());
    let mut group = session_group(&gw, "room", 2);
    let (a, rest) = group.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut rest[0]);
    a.send(&json!({
        "type": "chat",
        "id": "forged",
        "sessionId": "room",
        "source": "someone-else",
        "replyTo": "x",
        "timestamp": 5,
        "target": "t",
        "payload": {"text": "hi"},
    }));
    let got = b.recv_type("chat");
    assert_eq!(got["source"], a.client_id.as_str(), "{got}");
    assert!(got.get("replyTo").is_none(), "{got}");
    assert!(got.get("target").is_none(), "{got}");
    assert!(got["timestamp"].as_u64().unwrap() > 5, "{got}");
    assert_ne!(got["id"], "forged");
}

#[test]
fn bad_type_or_id_is_invalid_message_and_the_connection_stays() {
    let gw = TestGateway::start(test_config());
    let mut client = Client::connect(&gw);
    let long_id = "x".repeat(129);
    let long_multibyte_id = "é".repeat(65);
    let cases: Vec<(Value, &str, Option<&str>)> = vec![
        (json!({"id": "e-1"}), "type", Some("e-1")),
        (json!({"type": "", "id": "e-2"}), "type", Some("e-2")),
        (json!({"type": 5, "id": "e-3"}), "type", Some("e-3")),
        (json!({"type": null, "id": "e-4"}), "type", Some("e-4")),
        (json!({"type": ["ping"], "id": "e-5"}), "type", Some("e-5")),
        (json!({"type": "ping"}), "id", None),
        (json!({"type": "ping", "id": ""}), "id", None),
        (json!({"type": "ping", "id": 7}), "id", None),
        (json!({"type": "ping", "id": null}), "id", None),
        (json!({"type": "ping", "id": {"a": 1}}), "id", None),
        (json!({"type": "ping", "id": long_id}), "id", None),
        (json!({"type": "ping", "id": long_multibyte_id}), "id", None),
        (json!({}), "id", None),
    ];
    for (msg, field, reply_to) in cases {
        client.send(&msg);
        let reply = client.recv();
        assert_error(&reply, "INVALID_MESSAGE");
        assert_eq!(
            reply["payload"]["details"]["field"], field,
            "{msg} -> {reply}"
        );
        match reply_to {
            Some(id) => assert_eq!(reply["replyTo"], id, "{msg} -> {reply}"),
            None => assert!(reply.get("replyTo").is_none(), "{msg} -> {reply}"),
        }
    }
    assert_kept(&mut client);

    for id in ["x".repeat(128), "é".repeat(64)] {
        client.send(&json!({"type": "ping", "id": id}));
        let pong = client.recv();
        assert_eq!(pong["type"], "pong", "{pong}");
        assert_eq!(pong["replyTo"], id.as_str());
    }
}

#[test]
fn non_object_payload_is_invalid_message_on_payload() {
    let gw = TestGateway::start(test_config());
    let mut client = Client::authed(&gw, TOKEN);
    for payload in [json!("text"), json!(5), json!([1]), json!(true)] {
        client.send(&json!({"type": "session_create", "id": "np", "payload": payload}));
        let reply = client.recv();
        assert_error(&reply, "INVALID_MESSAGE");
        assert_eq!(reply["replyTo"], "np");
        assert_eq!(reply["payload"]["details"]["field"], "payload", "{reply}");
    }
    assert_eq!(gw.health()["sessions"], 0);
    assert_kept(&mut client);
}

#[test]
fn unparseable_messages_are_parse_errors_and_the_connection_stays() {
    let gw = TestGateway::start(test_config());
    let mut client = Client::connect(&gw);
    for text in [
        "not json",
        "{",
        r#"{"type":"ping","id":"x""#,
        "[1, 2]",
        r#""a string""#,
        "42",
        "null",
        "true",
        "",
        r#"[{"type":"ping","id":"in-array"}]"#,
        r#"{"type":"ping","id":"trailing"} extra"#,
    ] {
        let reply = answer(&mut client, text);
        assert_error(&reply, "PARSE_ERROR");
        assert!(reply.get("replyTo").is_none(), "{text:?} -> {reply}");
    }
    assert_kept(&mut client);
}

#[test]
fn payload_fields_of_the_wrong_type_name_the_field() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    a.request("session_create", json!({"sessionId": "room"}));
    let cases = [
        ("session_create", json!({"sessionId": 5}), "sessionId"),
        ("session_create", json!({"sessionId": ""}), "sessionId"),
        ("session_create", json!({"name": 3}), "name"),
        ("session_create", json!({"metadata": [1]}), "metadata"),
        ("session_create", json!({"metadata": "m"}), "metadata"),
        ("session_join", json!({"sessionId": 5}), "sessionId"),
        ("session_join", json!({}), "sessionId"),
        ("session_leave", json!({"sessionId": true}), "sessionId"),
        (
            "session_patch",
            json!({"sessionKey": "room", "patch": "p"}),
            "patch",
        ),
        ("session_patch", json!({"sessionKey": "room"}), "patch"),
        (
            "session_patch",
            json!({"sessionKey": 1, "patch": {}}),
            "sessionKey",
        ),
        ("presence", json!({"status": 3}), "status"),
        (
            "presence",
            json!({"status": "away", "sessionKey": 2}),
            "sessionKey",
        ),
        (
            "connect",
            json!({"deviceId": "d", "role": "node", "protocolVersion": "1"}),
            "protocolVersion",
        ),
    ];
    for (msg_type, payload, field) in cases {
        let reply = a.request_error(msg_type, payload.clone(), "INVALID_MESSAGE");
        assert_eq!(
            reply["payload"]["details"]["field"], field,
            "{msg_type} {payload} -> {reply}"
        );
    }
    assert_eq!(gw.health()["sessions"], 1, "no refused create was handled");
    a.expect_silence(Duration::from_millis(50));
    assert_kept(&mut a);
}

#[test]
fn the_relayed_payload_is_the_top_level_payload_member() {
    let gw = TestGateway::start(test_config());
    let mut group = session_group(&gw, "room", 2);
    let (a, rest) = group.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut rest[0]);
    let texts = [
        r#"{"type":"chat","id":"n1","sessionId":"room","meta":{"payload":{"fake":1}},"payload":{"real":1}}"#,
        r#"{"type":"chat","id":"n2","note":"\"payload\":{\"fake\":2}","sessionId":"room","payload":{"real":2}}"#,
        r#"{"payload":{"real":3},"type":"chat","id":"n3","sessionId":"room","after":{"payload":{}}}"#,
        r#"{"type":"chat","id":"n4","sessionId":"room","pay\u006coad":{"real":4}}"#,
        "{ \"type\" : \"chat\" , \"id\" : \"n5\" , \"sessionId\" : \"room\" , \"payload\" :\n {\"real\" : 5 , \"s\" : \"}{\\\"\" } }",
    ];
    for (i, text) in texts.iter().enumerate() {
        a.send_text(text);
        let got = b.recv_type("chat");
        assert_eq!(got["payload"]["real"], i + 1, "{text} -> {got}");
        assert!(got["payload"].get("fake").is_none(), "{got}");
        if i == 4 {
            assert_eq!(got["payload"]["s"], "}{\"", "{got}");
        }
    }
    assert_kept(a);
}

#[test]
fn a_message_nested_deeper_than_128_levels_anywhere_is_invalid_message() {
    let gw = TestGateway::start(test_config());
    let mut group = session_group(&gw, "room", 2);
    let (a, rest) = group.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut rest[0]);
    let deep = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
    let objects = |levels: usize| format!("{}1{}", r#"{"a":"#.repeat(levels), "}".repeat(levels));
    // The envelope is level 1: a member holds at most 127 levels.
    let pong = answer(
        a,
        &format!(r#"{{"type":"ping","id":"p1","zz":{}}}"#, deep(127)),
    );
    assert_eq!(pong["type"], "pong", "{pong}");
    for (id, text, field) in [
        (
            "p2",
            format!(r#"{{"type":"ping","id":"p2","zz":{}}}"#, deep(128)),
            "envelope",
        ),
        (
            "p3",
            format!(r#"{{"type":"ping","id":"p3","zz":{}}}"#, deep(500_000)),
            "envelope",
        ),
        (
            "c1",
            format!(
                r#"{{"type":"chat","id":"c1","sessionId":"room","payload":{{"a":1}},"zz":{}}}"#,
                objects(150_000)
            ),
            "envelope",
        ),
        (
            "t1",
            format!(
                r#"{{"type":"chat","id":"t1","sessionId":"room","target":{}}}"#,
                deep(128)
            ),
            "target",
        ),
        (
            "j1",
            format!(
                r#"{{"type":"session_join","id":"j1","payload":{{"sessionId":"room","zz":{}}}}}"#,
                deep(127)
            ),
            "payload",
        ),
        (
            "c2",
            format!(
                r#"{{"type":"chat","id":"c2","sessionId":"room","payload":{{"a":{}}}}}"#,
                deep(127)
            ),
            "payload",
        ),
    ] {
        let reply = answer(a, &text);
        assert_eq!(reply["replyTo"], id, "{reply}");
        let error = assert_error(&reply, "INVALID_MESSAGE");
        assert_eq!(error["payload"]["details"]["field"], field, "{id}: {reply}");
        assert_kept(a);
    }
    // Nothing was relayed: the member's next message is the chat after them.
    a.send(&json!({"type": "chat", "id": "ok", "sessionId": "room", "payload": {"n": 1}}));
    let got = b.recv();
    assert_eq!(got["type"], "chat", "{got}");
    assert_eq!(got["payload"], json!({"n": 1}), "{got}");
}

/// A payload member a request does not read is ignored however large it is, and the members
/// it reads are read as before (escaped names too): a member twice or a lone surrogate after
/// it is refused with serde_json's words for the whole payload (its line and column).
#[test]
fn payload_members_a_request_does_not_read_are_ignored_and_the_others_read_as_before() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let unread = format!("[{}0]", "0,".repeat(100_000));
    let send = |a: &mut Client, msg_type: &str, id: &str, payload: &str| {
        let reply = answer(
            a,
            &format!(r#"{{"type":"{msg_type}","id":"{id}","junk":{unread},"payload":{payload}}}"#),
        );
        assert_eq!(reply["replyTo"], id, "{reply}");
        reply
    };

    let payload = format!(
        r#"{{"x":{unread},"agent\u0049d":"a1","type":"custom","name":"n","capabilities":{{"chat":true}},"y":{{"agentId":"no"}}}}"#
    );
    let reply = send(&mut a, "agent_register", "r1", &payload);
    assert_eq!(reply["type"], "agent_info", "{reply}");
    let agent = &reply["payload"]["agent"];
    assert_eq!(
        (
            &agent["agentId"],
            &agent["name"],
            &agent["capabilities"]["chat"]
        ),
        (&json!("a1"), &json!("n"), &json!(true)),
        "{reply}"
    );

    let payload = format!(
        r#"{{"x":{unread},"sessionId":"s2","name":"N","metadata":{{"k":[1]}},"z":{{"name":5}}}}"#
    );
    let reply = send(&mut a, "session_create", "c1", &payload);
    let info = &reply["payload"];
    assert_eq!(
        (&info["sessionId"], &info["name"], &info["metadata"]),
        (&json!("s2"), &json!("N"), &json!({"k": [1]})),
        "{reply}"
    );

    // What serde_json says of the whole payload, read as the request reads it.
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Register {
        #[serde(rename = "agentId")]
        agent_id: Option<Value>,
        name: Option<Value>,
    }
    for payload in [
        format!(r#"{{"x":{unread},"agentId":"a","agentId" :"b"}}"#),
        format!("{{\"x\":{unread},\n \"name\":\"\\udc00\"}}"),
        format!(r#"{{"x":{unread},"\ud800":1}}"#),
    ] {
        let serde = serde_json::from_str::<Register>(&payload)
            .err()
            .expect("refused");
        let reply = send(&mut a, "agent_register", "r2", &payload);
        assert_error(&reply, "INVALID_MESSAGE");
        assert_eq!(reply["payload"]["details"]["field"], "payload", "{reply}");
        assert_eq!(reply["payload"]["message"], format!("payload: {serde}"));
    }
    assert_kept(&mut a);
}
