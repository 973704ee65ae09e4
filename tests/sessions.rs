//! The messages of PROTOCOL section 5 over real sockets: `ping`, `connect`, the session
//! requests, `presence`, the session-scoped relay, unknown types, and message order.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const QUIET: Duration = Duration::from_millis(100);

const RELAY_TYPES: [&str; 7] = [
    "chat",
    "chat_stream",
    "chat_complete",
    "tool_start",
    "tool_update",
    "tool_result",
    "broadcast",
];

fn member(client: &Client, user: &str) -> Value {
    json!({"clientId": client.client_id, "userId": user})
}

/// The next message must be a pong for a fresh ping: nothing else was queued before it.
fn assert_nothing_queued(client: &mut Client) {
    let pong = client.request("ping", json!({}));
    assert_eq!(pong["type"], "pong", "{pong}");
}

fn three(gw: &TestGateway, session_id: &str) -> (Client, Client, Client) {
    let mut group = session_group(gw, session_id, 3);
    let c = group.pop().unwrap();
    let b = group.pop().unwrap();
    let a = group.pop().unwrap();
    (a, b, c)
}

#[test]
fn ping_answers_pong_with_the_client_id() {
    let gw = TestGateway::start(test_config());
    let mut client = Client::connect(&gw);
    let pong = client.request("ping", json!({"anything": [1, 2]}));
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["payload"], json!({"clientId": client.client_id}));
    client.request("auth", json!({"token": TOKEN}));
    let pong = client.request("ping", json!({}));
    assert_eq!(pong["payload"], json!({"clientId": client.client_id}));
}

#[test]
fn connect_replies_hello_ok_listing_authenticated_devices() {
    let gw = TestGateway::start(test_config());
    let started = now_ms();
    let mut a = Client::authed(&gw, TOKEN);
    // The same user: a connection sees the devices of its own user (PROTOCOL section 12).
    let mut b = Client::authed(&gw, TOKEN);
    let mut unauthed = Client::connect(&gw);
    let _silent = Client::authed(&gw, TOKEN);

    let hello = a.request(
        "connect",
        json!({"deviceId": "dev-a", "deviceName": "A", "role": "control", "protocolVersion": 1}),
    );
    assert_eq!(hello["type"], "hello_ok", "{hello}");
    let p = &hello["payload"];
    assert_eq!(p["clientId"], a.client_id.as_str());
    assert_eq!(p["paired"], true);
    assert!(p["uptime"].is_u64(), "{hello}");
    assert!(p["stateVersion"].is_u64(), "{hello}");
    assert_eq!(p["protocolVersion"], 1);
    assert_eq!(p["authRequired"], true);
    assert_eq!(p["health"]["status"], "ok");
    let checked = p["health"]["checkedAt"].as_u64().expect("checkedAt");
    assert!(checked + 1000 >= started && checked <= now_ms() + 1000);
    let presence = p["presence"].as_array().expect("presence");
    assert_eq!(presence.len(), 1, "{hello}");
    assert_eq!(presence[0]["deviceId"], "dev-a");
    assert_eq!(presence[0]["role"], "control");
    assert!(presence[0]["connectedAt"].is_u64(), "{hello}");

    let hello = unauthed.request(
        "connect",
        json!({"deviceId": "dev-u", "role": "webchat", "protocolVersion": 1}),
    );
    assert_eq!(hello["payload"]["presence"], json!([]), "{hello}");
    assert_eq!(hello["payload"]["clientId"], unauthed.client_id.as_str());

    let hello = b.request(
        "connect",
        json!({"deviceId": "dev-b", "role": "node", "protocolVersion": 2}),
    );
    assert_eq!(
        hello["payload"]["protocolVersion"], 1,
        "the gateway speaks version 1"
    );
    let mut devices: Vec<(String, String)> = hello["payload"]["presence"]
        .as_array()
        .expect("presence")
        .iter()
        .map(|d| {
            (
                d["deviceId"].as_str().unwrap().to_string(),
                d["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    devices.sort();
    assert_eq!(
        devices,
        [
            ("dev-a".to_string(), "control".to_string()),
            ("dev-b".to_string(), "node".to_string())
        ],
        "authenticated connections that sent connect: {hello}"
    );

    unauthed.request("auth", json!({"token": TOKEN}));
    drop(a);
    assert!(eventually(|| gw.health()["clients"] == 3));
    let hello = b.request(
        "connect",
        json!({"deviceId": "dev-b", "role": "node", "protocolVersion": 1}),
    );
    let mut devices: Vec<&str> = hello["payload"]["presence"]
        .as_array()
        .expect("presence")
        .iter()
        .map(|d| d["deviceId"].as_str().unwrap())
        .collect();
    devices.sort_unstable();
    assert_eq!(
        devices,
        ["dev-b", "dev-u"],
        "a device counts once its connection authenticates, and goes with it: {hello}"
    );
}

#[test]
fn hello_ok_state_version_counts_session_changes() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    let connect = json!({"deviceId": "d", "role": "node", "protocolVersion": 1});
    let version = |c: &mut Client| {
        c.request("connect", connect.clone())["payload"]["stateVersion"]
            .as_u64()
            .expect("stateVersion")
    };
    let v0 = version(&mut a);
    a.request("session_create", json!({"sessionId": "s"}));
    let v1 = version(&mut a);
    assert!(v1 > v0, "{v0} -> {v1}");
    b.request("session_join", json!({"sessionId": "s"}));
    a.recv_type("presence");
    let v2 = version(&mut b);
    assert!(v2 > v1, "{v1} -> {v2}");
    b.request("session_join", json!({"sessionId": "s"}));
    assert_eq!(version(&mut b), v2, "a repeated join changes nothing");
}

#[test]
fn connect_validates_its_fields() {
    let gw = TestGateway::start(test_config());
    let mut client = Client::connect(&gw);
    let good = json!({"deviceId": "d", "role": "node", "protocolVersion": 1});
    let with = |key: &str, value: Value| {
        let mut p = good.clone();
        p[key] = value;
        p
    };
    let without = |key: &str| {
        let mut p = good.clone();
        p.as_object_mut().unwrap().remove(key);
        p
    };
    let cases = [
        (without("deviceId"), "deviceId"),
        (with("deviceId", json!("")), "deviceId"),
        (with("deviceId", json!(7)), "deviceId"),
        (with("deviceId", json!("d".repeat(129))), "deviceId"),
        (with("deviceName", json!(7)), "deviceName"),
        (without("role"), "role"),
        (with("role", json!("admin")), "role"),
        (with("role", json!("Control")), "role"),
        (without("protocolVersion"), "protocolVersion"),
        (with("protocolVersion", json!(0)), "protocolVersion"),
        (with("protocolVersion", json!(-1)), "protocolVersion"),
        (with("protocolVersion", json!(1.5)), "protocolVersion"),
        (with("protocolVersion", json!("1")), "protocolVersion"),
        (with("protocolVersion", json!(null)), "protocolVersion"),
    ];
    for (payload, field) in cases {
        let reply = client.request_error("connect", payload.clone(), "INVALID_MESSAGE");
        assert_eq!(
            reply["payload"]["details"]["field"], field,
            "{payload} -> {reply}"
        );
    }
    for role in ["control", "node", "webchat"] {
        let hello = client.request("connect", with("role", json!(role)));
        assert_eq!(hello["type"], "hello_ok", "{hello}");
    }
    let hello = client.request("connect", with("deviceId", json!("d".repeat(128))));
    assert_eq!(hello["type"], "hello_ok", "{hello}");
}

#[test]
fn session_create_with_an_id_and_without_one() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let created = a.request(
        "session_create",
        json!({"sessionId": "room-1", "name": "Room", "metadata": {"topic": "x"}}),
    );
    assert_eq!(created["type"], "session_info");
    assert_eq!(created["sessionId"], "room-1", "{created}");
    let p = &created["payload"];
    assert_eq!(p["sessionId"], "room-1");
    assert_eq!(p["status"], "created");
    assert_eq!(p["name"], "Room");
    assert_eq!(p["metadata"], json!({"topic": "x"}));
    assert_eq!(p["members"], json!([member(&a, "alice")]));

    let generated = a.request("session_create", json!({}));
    let id = generated["payload"]["sessionId"]
        .as_str()
        .expect("sessionId");
    let uuid = id.strip_prefix("session-").expect("session- prefix");
    assert_eq!(uuid.len(), 36, "{id}");
    assert_eq!(uuid.split('-').count(), 5, "{id}");
    assert_eq!(generated["sessionId"], id);
    assert_eq!(generated["payload"]["status"], "created");
    assert_eq!(generated["payload"]["metadata"], json!({}));
    assert!(generated["payload"].get("name").is_none(), "{generated}");

    let odd_id = "r\u{e9}\"x\\ \u{1f600}";
    let odd = a.request("session_create", json!({"sessionId": odd_id}));
    assert_eq!(odd["sessionId"], odd_id, "{odd}");
    assert_eq!(odd["payload"]["sessionId"], odd_id, "{odd}");
    let left = a.request("session_leave", json!({"sessionId": odd_id}));
    assert_eq!(left["payload"]["status"], "left", "{left}");

    let other = a.request("session_create", json!({}));
    assert_ne!(other["payload"]["sessionId"], id);
    assert_eq!(gw.health()["sessions"], 3);
}

#[test]
fn session_create_on_an_existing_id_joins_it() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    a.request(
        "session_create",
        json!({"sessionId": "room", "name": "First", "metadata": {"v": 1}}),
    );
    let joined = b.request(
        "session_create",
        json!({"sessionId": "room", "name": "Second", "metadata": {"v": 2}}),
    );
    let p = &joined["payload"];
    assert_eq!(p["status"], "joined", "{joined}");
    assert_eq!(p["name"], "First");
    assert_eq!(p["metadata"], json!({"v": 1}));
    assert_eq!(
        p["members"],
        json!([member(&a, "alice"), member(&b, "bob")])
    );

    let presence = a.recv_type("presence");
    assert_eq!(presence["sessionId"], "room");
    assert!(presence.get("source").is_none(), "{presence}");
    assert!(presence.get("replyTo").is_none(), "{presence}");
    let p = &presence["payload"];
    assert_eq!(p["clientId"], b.client_id.as_str());
    assert_eq!(p["userId"], "bob");
    assert_eq!(p["status"], "joined");
    assert_eq!(p["sessionId"], "room");
    assert!(p["timestamp"].is_u64(), "{presence}");
    assert_eq!(gw.health()["sessions"], 1);
}

#[test]
fn join_replies_joined_and_a_repeat_join_is_a_no_op() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    let mut c = Client::authed(&gw, TOKEN);
    a.request(
        "session_create",
        json!({"sessionId": "room", "metadata": {"k": "v"}}),
    );

    let joined = b.request("session_join", json!({"sessionId": "room"}));
    assert_eq!(joined["sessionId"], "room");
    assert_eq!(joined["payload"]["status"], "joined");
    assert_eq!(joined["payload"]["metadata"], json!({"k": "v"}));
    assert_eq!(
        joined["payload"]["members"],
        json!([member(&a, "alice"), member(&b, "bob")])
    );
    assert_eq!(a.recv_type("presence")["payload"]["status"], "joined");

    let again = b.request("session_join", json!({"sessionId": "room"}));
    assert_eq!(again["payload"]["status"], "joined");
    assert_eq!(again["payload"]["members"], joined["payload"]["members"]);
    a.expect_silence(QUIET);

    let by_envelope = c.request_envelope(json!({"type": "session_join", "sessionId": "room"}));
    assert_eq!(by_envelope["payload"]["status"], "joined", "{by_envelope}");
    assert_eq!(
        by_envelope["payload"]["members"],
        json!([member(&a, "alice"), member(&b, "bob"), member(&c, "alice")])
    );
    assert_eq!(
        a.recv_type("presence")["payload"]["clientId"],
        c.client_id.as_str()
    );
    assert_eq!(
        b.recv_type("presence")["payload"]["clientId"],
        c.client_id.as_str()
    );

    let missing = c.request_error(
        "session_join",
        json!({"sessionId": "nope"}),
        "SESSION_NOT_FOUND",
    );
    assert!(
        missing["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("nope"),
        "{missing}"
    );
}

#[test]
fn leave_replies_left_and_tells_the_others() {
    let gw = TestGateway::start(test_config());
    let (mut a, mut b, mut c) = three(&gw, "room");
    let left = b.request("session_leave", json!({"sessionId": "room"}));
    assert_eq!(left["type"], "session_info");
    assert_eq!(left["sessionId"], "room");
    assert_eq!(
        left["payload"],
        json!({"sessionId": "room", "status": "left"})
    );
    for other in [&mut a, &mut c] {
        let presence = other.recv_type("presence");
        assert_eq!(presence["payload"]["status"], "left");
        assert_eq!(presence["payload"]["clientId"], b.client_id.as_str());
        assert_eq!(presence["payload"]["sessionId"], "room");
        assert!(presence.get("source").is_none(), "{presence}");
    }

    let again = b.request("session_leave", json!({"sessionId": "room"}));
    assert_eq!(
        again["payload"],
        json!({"sessionId": "room", "status": "left"})
    );
    a.expect_silence(QUIET);
    c.expect_silence(QUIET);

    b.request_error(
        "session_leave",
        json!({"sessionId": "nope"}),
        "SESSION_NOT_FOUND",
    );
    let id = b.send_scoped("chat", "room", json!({"text": "after leaving"}));
    let refused = b.recv();
    assert_error(&refused, "NOT_A_MEMBER");
    assert_eq!(refused["replyTo"], id.as_str());
    a.expect_silence(QUIET);

    let by_envelope = c.request_envelope(json!({"type": "session_leave", "sessionId": "room"}));
    assert_eq!(by_envelope["payload"]["status"], "left", "{by_envelope}");
    assert_eq!(a.recv_type("presence")["payload"]["status"], "left");
}

#[test]
fn the_last_member_leaving_removes_the_session_and_its_metadata() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    a.request(
        "session_create",
        json!({"sessionId": "room", "name": "Old", "metadata": {"old": true}}),
    );
    assert_eq!(gw.health()["sessions"], 1);
    let left = a.request("session_leave", json!({"sessionId": "room"}));
    assert_eq!(left["payload"]["status"], "left");
    assert_eq!(gw.health()["sessions"], 0);

    b.request_error(
        "session_join",
        json!({"sessionId": "room"}),
        "SESSION_NOT_FOUND",
    );
    a.request_error(
        "session_leave",
        json!({"sessionId": "room"}),
        "SESSION_NOT_FOUND",
    );
    let fresh = b.request("session_create", json!({"sessionId": "room"}));
    assert_eq!(fresh["payload"]["status"], "created");
    assert_eq!(fresh["payload"]["metadata"], json!({}));
    assert!(fresh["payload"].get("name").is_none(), "{fresh}");
    assert_eq!(fresh["payload"]["members"], json!([member(&b, "bob")]));
}

#[test]
fn patch_merges_and_the_others_get_the_same_session_info() {
    let gw = TestGateway::start(test_config());
    let (mut a, mut b, mut c) = three(&gw, "room");
    let mut outsider = Client::authed(&gw, TOKEN_BOB);
    a.request(
        "session_patch",
        json!({"sessionKey": "room", "patch": {"a": 1, "b": 2, "c": {"d": 1}}}),
    );
    b.recv_type("session_info");
    c.recv_type("session_info");

    let patched = a.request(
        "session_patch",
        json!({"sessionKey": "room", "patch": {"b": null, "c": {"e": 2}, "f": [1]}}),
    );
    assert_eq!(patched["type"], "session_info");
    assert_eq!(patched["sessionId"], "room");
    let expected = json!({
        "sessionId": "room",
        "status": "patched",
        "owner": "alice",
        "access": "open",
        "metadata": {"a": 1, "c": {"e": 2}, "f": [1]},
    });
    assert_eq!(patched["payload"], expected);
    let mut fan_out_ids = Vec::new();
    for other in [&mut b, &mut c] {
        let info = other.recv_type("session_info");
        assert_eq!(info["payload"], expected, "{info}");
        assert_eq!(info["sessionId"], "room");
        assert!(info.get("replyTo").is_none(), "{info}");
        assert_ne!(info["id"], patched["id"]);
        fan_out_ids.push(info["id"].clone());
    }
    assert_eq!(fan_out_ids[0], fan_out_ids[1]);
    a.expect_silence(QUIET);

    let by_envelope = b.request_envelope(json!({
        "type": "session_patch",
        "sessionId": "room",
        "payload": {"patch": {"a": null}},
    }));
    assert_eq!(
        by_envelope["payload"]["metadata"],
        json!({"c": {"e": 2}, "f": [1]})
    );
    a.recv_type("session_info");
    c.recv_type("session_info");

    outsider.request_error(
        "session_patch",
        json!({"sessionKey": "room", "patch": {"x": 1}}),
        "NOT_A_MEMBER",
    );
    outsider.request_error(
        "session_patch",
        json!({"sessionKey": "nope", "patch": {"x": 1}}),
        "SESSION_NOT_FOUND",
    );
    a.expect_silence(QUIET);
    let joined = outsider.request("session_join", json!({"sessionId": "room"}));
    assert_eq!(
        joined["payload"]["metadata"],
        json!({"c": {"e": 2}, "f": [1]}),
        "refused patches changed nothing"
    );
}

#[test]
fn presence_reaches_the_other_members_of_the_session() {
    let gw = TestGateway::start(test_config());
    let (mut a, mut b, mut c) = three(&gw, "room");
    let id = a.send_msg(
        "presence",
        json!({"status": "typing", "sessionKey": "room"}),
    );
    let mut ids = Vec::new();
    for other in [&mut b, &mut c] {
        let got = other.recv_type("presence");
        assert_eq!(got["sessionId"], "room");
        assert_eq!(got["source"], a.client_id.as_str());
        assert!(got.get("replyTo").is_none(), "{got}");
        assert_ne!(got["id"], id.as_str());
        let p = &got["payload"];
        assert_eq!(p["clientId"], a.client_id.as_str());
        assert_eq!(p["userId"], "alice");
        assert_eq!(p["status"], "typing");
        assert_eq!(p["sessionId"], "room");
        assert!(p["timestamp"].is_u64(), "{got}");
        ids.push(got["id"].clone());
    }
    assert_eq!(ids[0], ids[1], "one fan-out, one id");
    assert_nothing_queued(&mut a);

    a.send(&json!({"type": "presence", "id": next_id(), "sessionId": "room", "payload": {"status": "away"}}));
    assert_eq!(b.recv_type("presence")["payload"]["status"], "away");
    assert_eq!(c.recv_type("presence")["payload"]["status"], "away");
    assert_nothing_queued(&mut a);
}

#[test]
fn presence_without_a_session_key_goes_to_every_session_of_the_sender() {
    let gw = TestGateway::start(test_config());
    let (mut a, mut b, mut c) = three(&gw, "room");
    let mut d = Client::authed(&gw, TOKEN_BOB);
    d.request("session_create", json!({"sessionId": "side"}));
    a.request("session_join", json!({"sessionId": "side"}));
    d.recv_type("presence");
    b.send_msg("presence", json!({"status": "idle"}));
    let at_a = a.recv_type("presence");
    assert_eq!(at_a["payload"]["sessionId"], "room");
    assert_eq!(at_a["payload"]["status"], "idle");
    assert_eq!(c.recv_type("presence")["payload"]["sessionId"], "room");
    d.expect_silence(QUIET);

    a.send_msg("presence", json!({"status": "busy"}));
    assert_eq!(b.recv_type("presence")["payload"]["sessionId"], "room");
    assert_eq!(c.recv_type("presence")["payload"]["sessionId"], "room");
    let at_d = d.recv_type("presence");
    assert_eq!(at_d["payload"]["sessionId"], "side");
    assert_eq!(at_d["sessionId"], "side");
    assert_eq!(at_d["payload"]["clientId"], a.client_id.as_str());
    assert_nothing_queued(&mut a);

    let mut loner = Client::authed(&gw, TOKEN);
    loner.send_msg("presence", json!({"status": "online"}));
    assert_nothing_queued(&mut loner);
}

#[test]
fn presence_errors() {
    let gw = TestGateway::start(test_config());
    let (mut a, mut b, _c) = three(&gw, "room");
    let mut d = Client::authed(&gw, TOKEN_BOB);
    d.request("session_create", json!({"sessionId": "side"}));

    a.request_error(
        "presence",
        json!({"status": "x", "sessionKey": "nope"}),
        "SESSION_NOT_FOUND",
    );
    a.request_error(
        "presence",
        json!({"status": "x", "sessionKey": "side"}),
        "NOT_A_MEMBER",
    );
    for payload in [
        json!({"status": "joined", "sessionKey": "room"}),
        json!({"status": "left", "sessionKey": "room"}),
        json!({"status": "", "sessionKey": "room"}),
        json!({"sessionKey": "room"}),
        json!({"status": null}),
    ] {
        let reply = a.request_error("presence", payload.clone(), "INVALID_MESSAGE");
        assert_eq!(reply["payload"]["details"]["field"], "status", "{payload}");
    }
    b.expect_silence(QUIET);
    d.expect_silence(QUIET);
}

#[test]
fn every_relay_type_reaches_every_other_member() {
    let gw = TestGateway::start(test_config());
    let (mut a, mut b, mut c) = three(&gw, "room");
    for (i, msg_type) in RELAY_TYPES.iter().enumerate() {
        let payload = json!({"i": i, "text": "héllo \"q\"", "nested": {"list": [1, 2.5, null]}});
        let id = a.send_scoped(msg_type, "room", payload.clone());
        let mut ids = Vec::new();
        for other in [&mut b, &mut c] {
            let got = other.recv();
            assert_eq!(got["type"], *msg_type, "{got}");
            assert_eq!(got["payload"], payload, "{got}");
            assert_eq!(got["sessionId"], "room", "{got}");
            assert_eq!(got["source"], a.client_id.as_str(), "{got}");
            assert!(got.get("replyTo").is_none(), "{got}");
            let got_id = got["id"].as_str().expect("id").to_string();
            assert!(!got_id.is_empty());
            assert_ne!(got_id, id);
            ids.push(got_id);
        }
        assert_eq!(ids[0], ids[1], "one fan-out, one id");
    }
    assert_nothing_queued(&mut a);

    for msg_type in RELAY_TYPES {
        c.send_scoped(msg_type, "room", json!({"from": "c"}));
        for other in [&mut a, &mut b] {
            let got = other.recv_type(msg_type);
            assert_eq!(got["source"], c.client_id.as_str());
            assert_eq!(got["payload"], json!({"from": "c"}));
        }
    }
    assert_nothing_queued(&mut c);
}

#[test]
fn relay_errors_and_nothing_reaches_the_members() {
    let gw = TestGateway::start(test_config());
    let (mut a, mut b, _c) = three(&gw, "room");
    let mut outsider = Client::authed(&gw, TOKEN_BOB);
    outsider.request("session_create", json!({"sessionId": "other"}));
    for msg_type in RELAY_TYPES {
        let reply = a.request_error(msg_type, json!({"text": "x"}), "INVALID_MESSAGE");
        assert_eq!(reply["payload"]["details"]["field"], "sessionId", "{reply}");

        let reply = a.request_envelope(json!({"type": msg_type, "sessionId": 5}));
        assert_error(&reply, "INVALID_MESSAGE");

        let reply = a.request_envelope(json!({"type": msg_type, "sessionId": "nope"}));
        assert_error(&reply, "SESSION_NOT_FOUND");

        let reply = a.request_envelope(json!({"type": msg_type, "sessionId": "other"}));
        assert_error(&reply, "NOT_A_MEMBER");

        let reply = outsider.request_envelope(json!({"type": msg_type, "sessionId": "room"}));
        assert_error(&reply, "NOT_A_MEMBER");
    }
    b.expect_silence(QUIET);
    outsider.expect_silence(QUIET);

    let mut loner = Client::authed(&gw, TOKEN);
    loner.request("session_create", json!({"sessionId": "solo"}));
    loner.send_scoped("chat", "solo", json!({"text": "anyone?"}));
    assert_nothing_queued(&mut loner);
}

#[test]
fn unknown_types_are_refused_after_auth() {
    let gw = TestGateway::start(test_config());
    let mut client = Client::authed(&gw, TOKEN);
    for msg_type in [
        "nope",
        "Chat",
        "session-create",
        "pong",
        "auth_success",
        "error",
    ] {
        let reply = client.request_error(msg_type, json!({}), "UNKNOWN_TYPE");
        assert!(
            reply["payload"]["message"]
                .as_str()
                .unwrap()
                .contains(msg_type),
            "{reply}"
        );
    }
    assert_nothing_queued(&mut client);
}

#[test]
fn many_messages_from_one_client_arrive_in_order() {
    let gw = TestGateway::start(test_config());
    let (mut a, mut b, mut c) = three(&gw, "room");
    const N: usize = 500;
    let batch: Vec<Value> = (0..N)
        .map(|i| {
            json!({
                "type": RELAY_TYPES[i % RELAY_TYPES.len()],
                "id": format!("m-{i}"),
                "sessionId": "room",
                "payload": {"seq": i},
            })
        })
        .collect();
    a.send_batch(&batch);
    for other in [&mut b, &mut c] {
        for i in 0..N {
            let got = other.recv();
            assert_eq!(got["payload"]["seq"], i, "{got}");
            assert_eq!(got["type"], RELAY_TYPES[i % RELAY_TYPES.len()]);
        }
    }
    assert_nothing_queued(&mut a);
}

#[test]
fn messages_from_one_connection_are_handled_in_order() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    a.request("session_create", json!({"sessionId": "room"}));
    b.send_batch(&[
        json!({"type": "session_join", "id": "j", "payload": {"sessionId": "room"}}),
        json!({"type": "chat", "id": "c1", "sessionId": "room", "payload": {"n": 1}}),
        json!({"type": "session_patch", "id": "p", "payload": {"sessionKey": "room", "patch": {"n": 1}}}),
        json!({"type": "session_leave", "id": "l", "payload": {"sessionId": "room"}}),
        json!({"type": "chat", "id": "c2", "sessionId": "room", "payload": {"n": 2}}),
    ]);
    let replies: Vec<Value> = (0..4).map(|_| b.recv()).collect();
    let reply_to: Vec<&str> = replies
        .iter()
        .map(|r| r["replyTo"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(reply_to, ["j", "p", "l", "c2"], "{replies:?}");
    assert_eq!(replies[0]["payload"]["status"], "joined");
    assert_eq!(replies[1]["payload"]["status"], "patched");
    assert_eq!(replies[2]["payload"]["status"], "left");
    assert_error(&replies[3], "NOT_A_MEMBER");

    let got: Vec<Value> = (0..4).map(|_| a.recv()).collect();
    let kinds: Vec<(&str, &str)> = got
        .iter()
        .map(|m| {
            (
                m["type"].as_str().unwrap(),
                m["payload"]["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("presence", "joined"),
            ("chat", ""),
            ("session_info", "patched"),
            ("presence", "left")
        ],
        "{got:?}"
    );
    assert_nothing_queued(&mut a);
}
