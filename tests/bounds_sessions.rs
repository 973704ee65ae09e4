//! PROTOCOL section 11 over real sockets, for sessions, presence and devices: names within
//! `max_name_bytes`, metadata kept as compact JSON, `max_memberships_per_user`, and the
//! bounded device lists (`hello_ok.presence`, `presence_query` → `presence_list`).

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::{json, Value};

/// An authenticated client of `token` that has sent `connect` as `device_id`; returns it
/// with its `hello_ok`.
fn device(gw: &TestGateway, token: &str, device_id: &str) -> (Client, Value) {
    let mut client = Client::authed(gw, token);
    let hello = client.request(
        "connect",
        json!({"deviceId": device_id, "role": "node", "protocolVersion": 1}),
    );
    assert_eq!(hello["type"], "hello_ok", "{hello}");
    (client, hello)
}

/// The `deviceId`s of a list of presence entries.
fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|d| d["deviceId"].as_str().expect("deviceId").to_owned())
        .collect()
}

/// Assert `msg` is `INVALID_MESSAGE` about `field`.
fn assert_invalid(msg: &Value, field: &str) {
    assert_error(msg, "INVALID_MESSAGE");
    assert_eq!(msg["payload"]["details"]["field"], field, "{msg}");
}

#[test]
fn a_session_name_and_a_presence_status_are_within_max_name_bytes() {
    let mut config = test_config();
    config.max_name_bytes = 16;
    let gw = TestGateway::start(config);
    let mut a = Client::authed(&gw, TOKEN);
    let at = "n".repeat(16);
    let over = "é".repeat(8) + "x"; // 17 bytes, 9 characters

    let reply = a.request("session_create", json!({"sessionId": "long", "name": over}));
    assert_invalid(&reply, "name");
    // Refused without a trace: the id is free, and the connection goes on.
    let reply = a.request("session_create", json!({"sessionId": "long", "name": at}));
    assert_eq!(reply["payload"]["status"], "created", "{reply}");
    assert_eq!(reply["payload"]["name"], at.as_str(), "{reply}");

    let mut b = Client::authed(&gw, TOKEN);
    b.request("session_join", json!({"sessionId": "long"}));
    a.recv_type("presence");
    let reply = b.request("presence", json!({"status": over, "sessionKey": "long"}));
    assert_invalid(&reply, "status");
    b.send_msg("presence", json!({"status": at, "sessionKey": "long"}));
    let presence = a.recv_type("presence");
    assert_eq!(presence["payload"]["status"], at.as_str(), "{presence}");
    a.expect_silence(std::time::Duration::from_millis(100));
}

/// The text of the next frame `ws` reads, which must be a JSON text message.
fn raw_text(ws: &mut RawWs) -> String {
    let frame = ws.read_frame().expect("a frame");
    String::from_utf8(frame.2).expect("UTF-8")
}

/// A raw socket, upgraded (its welcome read) and authenticated.
fn raw_authed(gw: &TestGateway) -> RawWs {
    let mut ws = RawWs::open(gw);
    ws.send_json(&json!({"type": "auth", "id": "a", "payload": {"token": TOKEN}}));
    let reply = ws.read_json().expect("auth reply");
    assert_eq!(reply["type"], "auth_success", "{reply}");
    ws
}

#[test]
fn metadata_is_measured_and_replied_as_compact_json() {
    let gw = TestGateway::start(test_config());
    let mut ws = raw_authed(&gw);
    // Spaces around every token: stored and replied without them (keys in their sorted
    // order, as the gateway has always kept them).
    let spaced = r#"{ "b" : [ 1 , { "c" : null } ] , "a" : "x y" }"#;
    let create = format!(
        r#"{{"type":"session_create","id":"c1","payload":{{"sessionId":"m","metadata":{spaced}}}}}"#
    );
    ws.send(&frame(1, true, create.as_bytes(), true));
    let reply = raw_text(&mut ws);
    assert!(
        reply.contains(r#""metadata":{"a":"x y","b":[1,{"c":null}]}"#),
        "{reply}"
    );

    // The limit (64 KiB) counts the compact text: at it is taken even with 64 KiB of
    // spaces around it, one byte over is refused.
    let mut a = Client::authed(&gw, TOKEN);
    let fill = |len: usize| json!({ "k": "x".repeat(len - r#"{"k":""}"#.len()) });
    let at = fill(64 * 1024);
    assert_eq!(at.to_string().len(), 64 * 1024);
    let padded = format!(
        r#"{{"type":"session_create","id":"c2","payload":{{"sessionId":"big","metadata":{}{at}}}}}"#,
        " ".repeat(64 * 1024)
    );
    a.send_text(&padded);
    let reply = a.recv();
    assert_eq!(reply["payload"]["status"], "created", "{reply}");
    assert_eq!(reply["payload"]["metadata"], at);
    let reply = a.request(
        "session_create",
        json!({"sessionId": "over", "metadata": fill(64 * 1024 + 1)}),
    );
    assert_error(&reply, "LIMIT_EXCEEDED");
    // A patch past the limit leaves the metadata as it was.
    let reply = a.request(
        "session_patch",
        json!({"sessionKey": "big", "patch": {"more": 1}}),
    );
    assert_error(&reply, "LIMIT_EXCEEDED");
    let reply = a.request(
        "session_patch",
        json!({"sessionKey": "big", "patch": {"k": null, "n": [1, 2]}}),
    );
    assert_eq!(
        reply["payload"]["metadata"],
        json!({"n": [1, 2]}),
        "{reply}"
    );
}

#[test]
fn stored_metadata_costs_about_its_compact_size() {
    // 64 KiB of `[0,0,...]` is some 32 000 values: about 1 MiB each as a parsed tree, 120
    // MiB for these sessions, against 7.5 MiB as text.
    const SESSIONS: usize = 120;
    let mut config = test_config();
    config.max_sessions_per_client = SESSIONS;
    let gw = TestGateway::start(config);
    let mut a = Client::authed(&gw, TOKEN);
    let zeros = vec![0u8; (64 * 1024 - r#"{"z":[]}"#.len()) / 2];
    let metadata = json!({ "z": zeros });
    assert!(metadata.to_string().len() <= 64 * 1024);
    let before = rss_kib("self");
    for i in 0..SESSIONS {
        let reply = a.request(
            "session_create",
            json!({"sessionId": format!("s{i}"), "metadata": metadata}),
        );
        assert_eq!(reply["payload"]["status"], "created", "{reply}");
    }
    let grown_mib = rss_kib("self").saturating_sub(before) / 1024;
    assert!(
        grown_mib < 40,
        "{SESSIONS} sessions of 64 KiB took {grown_mib} MiB"
    );
}

#[test]
fn memberships_are_bounded_per_user_and_given_back_wherever_they_end() {
    let mut config = test_config();
    config.max_memberships_per_user = 3;
    let gw = TestGateway::start(config);
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN);
    a.request("session_create", json!({"sessionId": "s1"}));
    a.request("session_create", json!({"sessionId": "s2"}));
    b.request("session_join", json!({"sessionId": "s1"}));
    a.recv_type("presence");

    // Three over both of alice's connections: a fourth is refused, by join or create.
    let reply = b.request_error(
        "session_create",
        json!({"sessionId": "s3"}),
        "LIMIT_EXCEEDED",
    );
    assert_eq!(
        reply["payload"]["message"], "Too many session memberships for user alice",
        "{reply}"
    );
    b.request_error("session_join", json!({"sessionId": "s2"}), "LIMIT_EXCEEDED");
    // The table's own refusals come first; joining again adds nothing and is not refused.
    b.request_error(
        "session_join",
        json!({"sessionId": "nope"}),
        "SESSION_NOT_FOUND",
    );
    let reply = a.request("session_join", json!({"sessionId": "s1"}));
    assert_eq!(reply["payload"]["status"], "joined", "{reply}");
    // Another user is not held by alice's bound.
    let mut bob = Client::authed(&gw, TOKEN_BOB);
    let reply = bob.request("session_create", json!({"sessionId": "s3"}));
    assert_eq!(reply["payload"]["status"], "created", "{reply}");
    b.request_error("session_join", json!({"sessionId": "s3"}), "LIMIT_EXCEEDED");

    // A leave gives one back, exactly one.
    a.request("session_leave", json!({"sessionId": "s2"}));
    let reply = b.request("session_create", json!({"sessionId": "s2"}));
    assert_eq!(reply["payload"]["status"], "created", "{reply}");
    b.request_error(
        "session_create",
        json!({"sessionId": "s4"}),
        "LIMIT_EXCEEDED",
    );

    // A disconnect gives back every membership of the connection (b held s1 and s2),
    // before the others are told.
    drop(b);
    let left = a.recv_type("presence");
    assert_eq!(left["payload"]["status"], "left", "{left}");
    let reply = a.request("session_create", json!({"sessionId": "s4"}));
    assert_eq!(reply["payload"]["status"], "created", "{reply}");
    let reply = a.request("session_create", json!({"sessionId": "s5"}));
    assert_eq!(reply["payload"]["status"], "created", "{reply}");
    a.request_error(
        "session_create",
        json!({"sessionId": "s6"}),
        "LIMIT_EXCEEDED",
    );
    a.request_error("session_join", json!({"sessionId": "s3"}), "LIMIT_EXCEEDED");
    // The connection stays usable.
    let reply = a.request("ping", json!({}));
    assert_eq!(reply["type"], "pong", "{reply}");
}

#[test]
fn anonymous_connections_each_have_their_own_membership_bound() {
    let mut config = no_auth_config();
    config.max_memberships_per_user = 1;
    let gw = TestGateway::start(config);
    let mut a = Client::connect(&gw);
    let mut b = Client::connect(&gw);
    a.request("session_create", json!({"sessionId": "a"}));
    let reply = b.request("session_create", json!({"sessionId": "b"}));
    assert_eq!(reply["payload"]["status"], "created", "{reply}");
    a.request_error("session_join", json!({"sessionId": "b"}), "LIMIT_EXCEEDED");
}

#[test]
fn hello_ok_lists_the_senders_device_first_and_at_most_max_list_items() {
    let mut config = test_config();
    config.max_list_items = 3;
    let gw = TestGateway::start(config);
    let mut clients = Vec::new();
    for i in 0..4 {
        let (client, hello) = device(&gw, TOKEN, &format!("d{i}"));
        let listed = ids(&hello["payload"]["presence"]);
        let mut expected = vec![format!("d{i}")];
        expected.extend((0..i.min(2)).map(|j| format!("d{j}")));
        assert_eq!(listed, expected, "{hello}");
        clients.push(client);
    }
    // An unauthenticated device is neither listed nor shown anything.
    let mut anon = Client::connect(&gw);
    let hello = anon.request(
        "connect",
        json!({"deviceId": "anon", "role": "node", "protocolVersion": 1}),
    );
    assert_eq!(hello["payload"]["presence"], json!([]), "{hello}");
    // Another user sees only its own devices (PROTOCOL section 12).
    let (_, hello) = device(&gw, TOKEN_BOB, "d4");
    assert_eq!(ids(&hello["payload"]["presence"]), ["d4"]);
}

/// Every page of `presence_query` with `limit` (none: the default), checked for `next`.
fn all_pages(client: &mut Client, limit: Option<u64>) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut payload = json!({});
        if let Some(limit) = limit {
            payload["limit"] = json!(limit);
        }
        if let Some(cursor) = &cursor {
            payload["cursor"] = json!(cursor);
        }
        let reply = client.request("presence_query", payload);
        assert_eq!(reply["type"], "presence_list", "{reply}");
        pages.push(ids(&reply["payload"]["devices"]));
        match reply["payload"]["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return pages,
        }
        assert!(pages.len() < 100, "paging does not end");
    }
}

#[test]
fn presence_query_pages_through_every_device_once() {
    let mut config = test_config();
    config.max_list_items = 3;
    let gw = TestGateway::start(config);
    let mut clients: Vec<Client> = (0..5)
        .map(|i| device(&gw, TOKEN, &format!("d{i}")).0)
        .collect();
    let mut anon = Client::connect(&gw);
    anon.request(
        "connect",
        json!({"deviceId": "anon", "role": "node", "protocolVersion": 1}),
    );
    let reply = anon.request("presence_query", json!({}));
    assert_error(&reply, "AUTH_REQUIRED");

    let me = &mut clients[4];
    assert_eq!(
        all_pages(me, None),
        [vec!["d0", "d1", "d2"], vec!["d3", "d4"]]
    );
    assert_eq!(
        all_pages(me, Some(2)),
        [vec!["d0", "d1"], vec!["d2", "d3"], vec!["d4"]]
    );
    assert_eq!(all_pages(me, Some(1)).len(), 5);
    // A device gone between pages is skipped, one that connects later comes at the end.
    let first = me.request("presence_query", json!({"limit": 2}));
    let next = first["payload"]["next"].as_str().unwrap().to_owned();
    drop(clients.remove(2));
    let (_late, _) = device(&gw, TOKEN, "late");
    let me = &mut clients[3];
    assert!(eventually(|| {
        let reply = me.request("presence_query", json!({"cursor": next}));
        ids(&reply["payload"]["devices"]) == ["d3", "d4", "late"]
    }));
}

#[test]
fn presence_query_refuses_a_bad_limit_or_cursor_and_stays_usable() {
    let gw = TestGateway::start(test_config());
    let (mut a, _) = device(&gw, TOKEN, "d0");
    for limit in [
        json!(0),
        json!(101),
        json!(-1),
        json!(1.5),
        json!("2"),
        json!(true),
    ] {
        let reply = a.request("presence_query", json!({"limit": limit}));
        assert_invalid(&reply, "limit");
    }
    for cursor in [json!("bogus"), json!(""), json!(7), json!({}), json!("p")] {
        let reply = a.request("presence_query", json!({"cursor": cursor}));
        assert_invalid(&reply, "cursor");
    }
    let reply = a.request("presence_query", json!({"limit": 100, "cursor": null}));
    assert_eq!(ids(&reply["payload"]["devices"]), ["d0"], "{reply}");
    assert!(reply["payload"].get("next").is_none(), "{reply}");
}

#[test]
fn no_device_list_is_larger_than_max_message_size() {
    const MAX: usize = 2048;
    let mut config = test_config();
    config.max_message_size = MAX;
    let gw = TestGateway::start(config);
    // 20 entries of some 160 bytes: 3 KiB of list, well within max_list_items (100).
    let names: Vec<String> = (0..20)
        .map(|i| format!("{i:02}{}", "x".repeat(126)))
        .collect();
    let mut clients = Vec::new();
    for name in &names {
        let (client, hello) = device(&gw, TOKEN, name);
        assert!(
            hello.to_string().len() <= MAX,
            "hello_ok of {}",
            hello.to_string().len()
        );
        clients.push(client);
    }
    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    let mut pages = 0;
    loop {
        let reply = clients[0].request("presence_query", json!({"cursor": cursor}));
        assert!(
            reply.to_string().len() <= MAX,
            "{} bytes",
            reply.to_string().len()
        );
        let page = ids(&reply["payload"]["devices"]);
        assert!(!page.is_empty(), "{reply}");
        seen.extend(page);
        pages += 1;
        match reply["payload"].get("next") {
            Some(next) => cursor = next.clone(),
            None => break,
        }
    }
    assert!(pages > 1);
    assert_eq!(seen, names);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), names.len());
}

#[test]
fn no_session_reply_nor_relay_is_larger_than_max_message_size() {
    const MAX: usize = 4096;
    let mut config = test_config();
    config.max_message_size = MAX;
    config.max_clients_per_session = 1000;
    let gw = TestGateway::start(config);
    let mut a = Client::authed(&gw, TOKEN);

    // Metadata within 64 KiB whose reply would not fit: refused, and nothing created.
    let too_big = json!({"sessionId": "big", "metadata": {"k": "x".repeat(MAX - 100)}});
    let reply = a.request_within("session_create", too_big, MAX);
    assert_error(&reply, "LIMIT_EXCEEDED");
    assert!(
        reply["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("max_message_size"),
        "{reply}"
    );
    let reply = a.request_within("session_join", json!({"sessionId": "big"}), MAX);
    assert_error(&reply, "SESSION_NOT_FOUND");

    // A session whose joined replies grow with every member, until one would not fit: that
    // join is refused and undone, and the others hear nothing of it.
    let (mut members, mut refused) =
        join_until_too_large(a, MAX, |_| Client::authed(&gw, TOKEN_BOB));
    let reply = refused.request_within("session_leave", json!({"sessionId": "room"}), MAX);
    assert_eq!(reply["type"], "session_info", "{reply}");
    let id = refused.send_scoped("chat", "room", json!({"text": "in?"}));
    let reply = refused.recv_within(MAX);
    assert_eq!(reply["replyTo"], id.as_str(), "{reply}");
    assert_error(&reply, "NOT_A_MEMBER");

    // A relay that fits as sent but not as delivered (the gateway adds `source` and
    // `sessionId` and its own `id`): refused, delivered to no one.
    let (sender, rest) = members.split_first_mut().unwrap();
    let envelope = |text: &str| json!({"type": "chat", "id": "c", "sessionId": "room", "payload": {"text": text}});
    let bare = envelope("").to_string().len();
    let text = "y".repeat(MAX - bare);
    assert_eq!(envelope(&text).to_string().len(), MAX);
    sender.send(&envelope(&text));
    let reply = sender.recv_within(MAX);
    assert_eq!(reply["replyTo"], "c", "{reply}");
    assert_error(&reply, "LIMIT_EXCEEDED");
    // The first message the others get is the next relay, which fits.
    sender.send(&envelope(&text[..MAX / 2]));
    for m in rest.iter_mut() {
        let chat = m.recv_within(MAX);
        assert_eq!(chat["type"], "chat", "{chat}");
        assert_eq!(chat["payload"]["text"].as_str().unwrap().len(), MAX / 2);
    }

    // A patch whose merged metadata would not fit in the `patched` reply: refused, the
    // metadata unchanged; one that fits reaches every member.
    patch_until_too_large(sender, rest, MAX);

    // A route_request that would not fit as delivered is refused and not recorded.
    let target = rest[0].client_id.clone();
    let route = |payload: Value| json!({"type": "route_request", "id": "r", "target": target, "payload": payload});
    let bare = route(json!({"q": ""})).to_string().len();
    let q = "q".repeat(MAX - bare);
    sender.send(&route(json!({ "q": q })));
    let reply = sender.recv_within(MAX);
    assert_error(&reply, "LIMIT_EXCEEDED");
    sender.send(&route(json!({"q": "small"})));
    let delivered = rest[0].recv_within(MAX);
    assert_eq!(delivered["type"], "route_request", "{delivered}");
    assert_eq!(delivered["payload"]["q"], "small", "{delivered}");
}

#[test]
fn session_metadata_with_a_key_twice_is_refused_naming_metadata_and_not_created() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    let long = "x".repeat(70 * 1024);
    for (i, metadata) in [
        r#"{"role":"user","role":"admin"}"#.to_owned(),
        r#"{"o":{"ab":1,"a\u0062":2}}"#.to_owned(),
        r#"{"l":[{"k":1,"k":1}]}"#.to_owned(),
        // In a payload longer than the metadata limit, the metadata within it.
        format!(r#"{{"role":"user","role":"admin"}},"pad":"{long}""#),
    ]
    .iter()
    .enumerate()
    {
        let id = next_id();
        a.send_text(&format!(
            r#"{{"type":"session_create","id":"{id}","payload":{{"sessionId":"s{i}","metadata":{metadata}}}}}"#
        ));
        let reply = a.recv();
        assert_eq!(reply["replyTo"], id.as_str(), "{reply}");
        assert_invalid(&reply, "metadata");
        let reply = b.request("session_join", json!({ "sessionId": format!("s{i}") }));
        assert_error(&reply, "SESSION_NOT_FOUND");
    }
    // The same keys in different objects are no duplicates.
    let reply = a.request(
        "session_create",
        json!({"sessionId": "ok", "metadata": {"role": "user", "o": {"role": 1}}}),
    );
    assert_eq!(reply["payload"]["status"], "created", "{reply}");
}

/// `allowUsers` is read only as far as its limit: a 1 MiB list of ids is `LIMIT_EXCEEDED`
/// whatever its last entry is, and nothing is created; what is wrong within the limit is
/// `INVALID_MESSAGE` about `allowUsers`, a lone surrogate escape included; the connection
/// stays usable.
#[test]
fn allow_users_is_read_no_further_than_its_limit() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    let many = r#""ab","#.repeat(200_000);
    for (i, (allow, code)) in [
        (format!(r#"[{many}"ab"]"#), "LIMIT_EXCEEDED"),
        (format!(r#"[{many}1]"#), "LIMIT_EXCEEDED"),
        (format!(r#"[{many}"\ud800"]"#), "LIMIT_EXCEEDED"),
        (r#"["ab",1]"#.to_owned(), "INVALID_MESSAGE"),
        (r#"["ab",""]"#.to_owned(), "INVALID_MESSAGE"),
        (r#"["ab","\ud800"]"#.to_owned(), "INVALID_MESSAGE"),
    ]
    .iter()
    .enumerate()
    {
        let id = next_id();
        a.send_text(&format!(
            r#"{{"type":"session_create","id":"{id}","payload":{{"sessionId":"s{i}","access":"private","allowUsers":{allow}}}}}"#
        ));
        let reply = a.recv();
        assert_eq!(reply["replyTo"], id.as_str(), "{reply}");
        assert_error(&reply, code);
        if *code == "INVALID_MESSAGE" {
            assert_invalid(&reply, "allowUsers");
        }
        let reply = b.request("session_join", json!({ "sessionId": format!("s{i}") }));
        assert_error(&reply, "SESSION_NOT_FOUND");
    }
    let reply = a.request(
        "session_create",
        json!({"sessionId": "ok", "access": "private", "allowUsers": ["bob"]}),
    );
    assert_eq!(reply["payload"]["status"], "created", "{reply}");
    let reply = b.request("session_join", json!({ "sessionId": "ok" }));
    assert_eq!(reply["payload"]["status"], "joined", "{reply}");
}
