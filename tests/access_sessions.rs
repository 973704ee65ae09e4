//! Private sessions (PROTOCOL section 12) over real sockets: `access` and `allowUsers` on
//! `session_create`, a private session that does not exist for a user it does not admit,
//! the owner's `session_patch` of `allowUsers` and `access` (members no longer allowed are
//! removed), `admin`, `owner` and `access` in `session_info`, and the bounds of `allowUsers`.

mod common;

use common::*;
use gateway::Config;
use serde_json::{json, Value};

const CAROL: &str = TOKEN_CAROL;
const OPS: &str = TOKEN_OPS;

/// alice, bob, carol, and ops with the `admin` scope.
fn config() -> Config {
    with_token(admin_config(), "carol", CAROL)
}

/// The next message must be a pong for a fresh ping: nothing else was queued before it.
fn assert_nothing_queued(client: &mut Client) {
    let pong = client.request("ping", json!({}));
    assert_eq!(pong["type"], "pong", "{pong}");
}

/// Assert `msg` is `INVALID_MESSAGE` about `field`.
fn assert_invalid(msg: &Value, field: &str) {
    assert_error(msg, "INVALID_MESSAGE");
    assert_eq!(msg["payload"]["details"]["field"], field, "{msg}");
}

/// Assert `msg` is `FORBIDDEN` for a reason other than a missing scope.
fn assert_forbidden(msg: &Value) {
    assert_error(msg, "FORBIDDEN");
    assert!(msg["payload"].get("details").is_none(), "{msg}");
}

/// Assert `msg` is a `session_info` of `status` about `session_id`.
fn assert_info<'m>(msg: &'m Value, session_id: &str, status: &str) -> &'m Value {
    assert_eq!(msg["type"], "session_info", "{msg}");
    assert_eq!(msg["payload"]["sessionId"], session_id, "{msg}");
    assert_eq!(msg["payload"]["status"], status, "{msg}");
    &msg["payload"]
}

/// `session_join` of `session_id`, which must succeed; returns the reply's payload.
fn join(client: &mut Client, session_id: &str) -> Value {
    let reply = client.request("session_join", json!({ "sessionId": session_id }));
    assert_info(&reply, session_id, "joined").clone()
}

/// The error a missing session gets, and the one `session_id` gets, must be the same but
/// for the id: a private session one may not join looks exactly like no session.
fn assert_looks_missing(got: &Value, session_id: &str, missing: &Value) {
    assert_error(got, "SESSION_NOT_FOUND");
    assert_eq!(
        got["payload"]["message"].as_str().unwrap(),
        missing["payload"]["message"]
            .as_str()
            .unwrap()
            .replace("nowhere", session_id),
        "{got}"
    );
    assert_eq!(
        got["payload"].get("details"),
        missing["payload"].get("details")
    );
}

/// `stateVersion` as a fresh connection's `hello_ok` reports it.
fn state_version(gw: &TestGateway) -> u64 {
    let mut probe = Client::authed(gw, OPS);
    let hello = probe.request(
        "connect",
        json!({"deviceId": "probe", "role": "node", "protocolVersion": 1}),
    );
    hello["payload"]["stateVersion"]
        .as_u64()
        .expect("stateVersion")
}

#[test]
fn create_private_with_and_without_allow_users() {
    let gw = TestGateway::start(config());
    let mut alice = Client::authed(&gw, TOKEN);
    let reply = alice.request(
        "session_create",
        json!({"sessionId": "p", "access": "private", "allowUsers": ["bob"]}),
    );
    let created = assert_info(&reply, "p", "created");
    assert_eq!(created["owner"], "alice", "{reply}");
    assert_eq!(created["access"], "private", "{reply}");

    let mut bob = Client::authed(&gw, TOKEN_BOB);
    let joined = join(&mut bob, "p");
    assert_eq!(joined["owner"], "alice");
    assert_eq!(joined["access"], "private");
    assert_eq!(joined["members"].as_array().unwrap().len(), 2, "{joined}");
    let presence = alice.recv_type("presence");
    assert_eq!(presence["payload"]["status"], "joined");
    assert_eq!(presence["payload"]["userId"], "bob");

    let mut carol = Client::authed(&gw, CAROL);
    let missing = carol.request_error(
        "session_join",
        json!({"sessionId": "nowhere"}),
        "SESSION_NOT_FOUND",
    );
    let refused = carol.request("session_join", json!({"sessionId": "p"}));
    assert_looks_missing(&refused, "p", &missing);

    // Without allowUsers only the owner's user gets in, on any of its connections.
    alice.request(
        "session_create",
        json!({"sessionId": "q", "access": "private"}),
    );
    let refused = bob.request("session_join", json!({"sessionId": "q"}));
    assert_looks_missing(&refused, "q", &missing);
    let mut alice2 = Client::authed(&gw, TOKEN);
    assert_eq!(join(&mut alice2, "q")["access"], "private");

    // The default is open, and says so.
    let reply = carol.request("session_create", json!({"sessionId": "o"}));
    let created = assert_info(&reply, "o", "created");
    assert_eq!(created["owner"], "carol");
    assert_eq!(created["access"], "open");
    assert_eq!(join(&mut bob, "o")["owner"], "carol");
    assert_nothing_queued(&mut bob);
}

#[test]
fn a_private_session_does_not_exist_for_a_user_it_does_not_allow() {
    let gw = TestGateway::start(config());
    let mut alice = Client::authed(&gw, TOKEN);
    alice.request(
        "session_create",
        json!({"sessionId": "p", "access": "private", "allowUsers": ["carol"], "metadata": {"k": 1}}),
    );
    let mut bob = Client::authed(&gw, TOKEN_BOB);

    // Each request, first for a session that does not exist, then for `p`.
    let envelopes = |session_id: &str| {
        vec![
            json!({"type": "session_join", "payload": {"sessionId": session_id}}),
            json!({"type": "chat", "sessionId": session_id, "payload": {"text": "hi"}}),
            json!({"type": "broadcast", "sessionId": session_id, "payload": {}}),
            json!({"type": "session_patch", "payload": {"sessionKey": session_id, "patch": {"k": 2}}}),
            json!({"type": "session_patch", "payload": {"sessionKey": session_id, "allowUsers": ["bob"]}}),
            json!({"type": "session_patch", "payload": {"sessionKey": session_id, "access": "open"}}),
            json!({"type": "presence", "payload": {"sessionKey": session_id, "status": "away"}}),
        ]
    };
    for (missing, private) in envelopes("nowhere").into_iter().zip(envelopes("p")) {
        let missing = bob.request_envelope(missing);
        assert_error(&missing, "SESSION_NOT_FOUND");
        let got = bob.request_envelope(private.clone());
        assert_looks_missing(&got, "p", &missing);
    }

    // The id is taken: FORBIDDEN, with no scope named; leaving replies left.
    let taken = bob.request("session_create", json!({"sessionId": "p"}));
    assert_forbidden(&taken);
    let left = bob.request("session_leave", json!({"sessionId": "p"}));
    let payload = assert_info(&left, "p", "left");
    assert_eq!(payload, &json!({"sessionId": "p", "status": "left"}));

    // Nothing reached alice and nothing changed.
    assert_nothing_queued(&mut alice);
    let mut carol = Client::authed(&gw, CAROL);
    let joined = join(&mut carol, "p");
    assert_eq!(joined["metadata"], json!({"k": 1}));
    assert_eq!(joined["access"], "private");
    assert_eq!(joined["members"].as_array().unwrap().len(), 2, "{joined}");
}

#[test]
fn the_owner_removes_a_member_from_allow_users() {
    let mut config = config();
    // One membership per user: bob's must be given back when he is removed.
    config.max_memberships_per_user = 1;
    let gw = TestGateway::start(config);
    let mut alice = Client::authed(&gw, TOKEN);
    alice.request(
        "session_create",
        json!({"sessionId": "p", "access": "private", "allowUsers": ["bob", "carol"]}),
    );
    let mut bob = Client::authed(&gw, TOKEN_BOB);
    let mut carol = Client::authed(&gw, CAROL);
    join(&mut bob, "p");
    alice.recv_type("presence");
    join(&mut carol, "p");
    alice.recv_type("presence");
    bob.recv_type("presence");

    let version_before = state_version(&gw);
    // Each other member, alice included, sees bob leave, then the patch.
    let id = alice.send_msg(
        "session_patch",
        json!({"sessionKey": "p", "allowUsers": ["carol"]}),
    );
    let removed = bob.recv();
    assert_eq!(
        removed["payload"],
        json!({"sessionId": "p", "status": "removed"}),
        "{removed}"
    );
    assert_eq!(removed["type"], "session_info");
    assert!(removed.get("replyTo").is_none(), "{removed}");
    assert_eq!(removed["sessionId"], "p");
    for (other, reply_to) in [(&mut alice, json!(id)), (&mut carol, Value::Null)] {
        let left = other.recv_type("presence");
        assert_eq!(left["payload"]["status"], "left");
        assert_eq!(left["payload"]["clientId"], bob.client_id.as_str());
        assert_eq!(left["payload"]["userId"], "bob");
        let patched = other.recv();
        let payload = assert_info(&patched, "p", "patched");
        assert_eq!(payload["owner"], "alice");
        assert_eq!(payload["access"], "private");
        assert_eq!(patched["replyTo"], reply_to, "{patched}");
    }
    // The patch and bob's leaving are two changes.
    assert_eq!(state_version(&gw), version_before + 2);

    // bob is out and cannot come back, nor see it.
    let missing = bob.request_error(
        "session_join",
        json!({"sessionId": "nowhere"}),
        "SESSION_NOT_FOUND",
    );
    let refused = bob.request("session_join", json!({"sessionId": "p"}));
    assert_looks_missing(&refused, "p", &missing);
    let id = bob.send_scoped("chat", "p", json!({"text": "still here?"}));
    let refused = bob.recv();
    assert_error(&refused, "SESSION_NOT_FOUND");
    assert_eq!(refused["replyTo"], id.as_str());
    // His one membership was given back.
    let reply = bob.request("session_create", json!({"sessionId": "elsewhere"}));
    assert_info(&reply, "elsewhere", "created");

    // A relay in the session reaches alice and not bob.
    carol.send_scoped("chat", "p", json!({"text": "just us"}));
    assert_eq!(alice.recv_type("chat")["payload"]["text"], "just us");
    assert_nothing_queued(&mut bob);
}

#[test]
fn only_the_owner_or_admin_may_change_access() {
    let gw = TestGateway::start(config());
    let mut alice = Client::authed(&gw, TOKEN);
    alice.request(
        "session_create",
        json!({"sessionId": "p", "access": "private", "allowUsers": ["bob"]}),
    );
    let mut bob = Client::authed(&gw, TOKEN_BOB);
    join(&mut bob, "p");
    alice.recv_type("presence");

    // bob is a member, and may patch the metadata, but not the access.
    for payload in [
        json!({"sessionKey": "p", "allowUsers": ["bob", "carol"]}),
        json!({"sessionKey": "p", "access": "open"}),
        json!({"sessionKey": "p", "allowUsers": [], "patch": {"k": 1}}),
    ] {
        let refused = bob.request("session_patch", payload);
        assert_forbidden(&refused);
    }
    let reply = bob.request(
        "session_patch",
        json!({"sessionKey": "p", "patch": {"k": 2}}),
    );
    assert_eq!(
        assert_info(&reply, "p", "patched")["metadata"],
        json!({"k": 2})
    );
    assert_eq!(alice.recv()["payload"]["metadata"], json!({"k": 2}));
    let mut carol = Client::authed(&gw, CAROL);
    carol.request_error(
        "session_join",
        json!({"sessionId": "p"}),
        "SESSION_NOT_FOUND",
    );

    // The admin may, without being a member; alice stays the owner.
    let mut ops = Client::authed(&gw, OPS);
    let reply = ops.request(
        "session_patch",
        json!({"sessionKey": "p", "allowUsers": ["bob", "carol"]}),
    );
    let patched = assert_info(&reply, "p", "patched");
    assert_eq!(patched["owner"], "alice");
    for member in [&mut alice, &mut bob] {
        assert_info(&member.recv(), "p", "patched");
    }
    join(&mut carol, "p");
}

#[test]
fn access_turns_open_and_private() {
    let gw = TestGateway::start(config());
    let mut alice = Client::authed(&gw, TOKEN);
    // allowUsers on an open session is kept until it turns private.
    alice.request(
        "session_create",
        json!({"sessionId": "s", "allowUsers": ["bob"]}),
    );
    let mut bob = Client::authed(&gw, TOKEN_BOB);
    let mut carol = Client::authed(&gw, CAROL);
    join(&mut carol, "s");
    alice.recv_type("presence");
    join(&mut bob, "s");
    alice.recv_type("presence");
    carol.recv_type("presence");

    let id = alice.send_msg(
        "session_patch",
        json!({"sessionKey": "s", "access": "private"}),
    );
    assert_eq!(alice.recv_type("presence")["payload"]["status"], "left");
    let reply = alice.recv();
    assert_eq!(reply["replyTo"], id.as_str());
    assert_eq!(assert_info(&reply, "s", "patched")["access"], "private");
    assert_eq!(carol.recv()["payload"]["status"], "removed");
    assert_eq!(bob.recv_type("presence")["payload"]["status"], "left");
    assert_eq!(bob.recv()["payload"]["access"], "private");
    carol.request_error(
        "session_join",
        json!({"sessionId": "s"}),
        "SESSION_NOT_FOUND",
    );
    let members = &join(&mut bob, "s")["members"];
    assert_eq!(members.as_array().unwrap().len(), 2, "{members}");

    let reply = alice.request(
        "session_patch",
        json!({"sessionKey": "s", "access": "open"}),
    );
    assert_eq!(assert_info(&reply, "s", "patched")["access"], "open");
    assert_eq!(bob.recv()["payload"]["access"], "open");
    assert_eq!(join(&mut carol, "s")["access"], "open");
    // Turning private again removes carol again: the list was kept.
    alice.recv_type("presence");
    bob.recv_type("presence");
    alice.send_msg(
        "session_patch",
        json!({"sessionKey": "s", "access": "private"}),
    );
    assert_eq!(carol.recv()["payload"]["status"], "removed");
    assert_eq!(bob.recv_type("presence")["payload"]["status"], "left");
    assert_eq!(bob.recv()["payload"]["status"], "patched");
}

#[test]
fn an_admin_joins_and_sees_a_private_session() {
    let gw = TestGateway::start(config());
    let mut alice = Client::authed(&gw, TOKEN);
    alice.request(
        "session_create",
        json!({"sessionId": "p", "access": "private", "metadata": {"a": 1}}),
    );
    let mut ops = Client::authed(&gw, OPS);
    let joined = join(&mut ops, "p");
    assert_eq!(joined["owner"], "alice");
    assert_eq!(joined["access"], "private");
    assert_eq!(joined["metadata"], json!({"a": 1}));
    alice.recv_type("presence");
    ops.send_scoped("chat", "p", json!({"text": "ops here"}));
    assert_eq!(alice.recv_type("chat")["payload"]["text"], "ops here");
    // Removing every allowed user keeps the owner and the admin.
    alice.request(
        "session_patch",
        json!({"sessionKey": "p", "allowUsers": []}),
    );
    assert_info(&ops.recv(), "p", "patched");
    // The admin's create on the id joins it.
    let mut ops2 = Client::authed(&gw, OPS);
    let reply = ops2.request("session_create", json!({"sessionId": "p"}));
    assert_info(&reply, "p", "joined");

    // An admin outside a session that removes its last member removes the session.
    let mut bob = Client::authed(&gw, TOKEN_BOB);
    bob.request(
        "session_create",
        json!({"sessionId": "b", "allowUsers": ["carol"], "metadata": {"x": 1}}),
    );
    let mut carol = Client::authed(&gw, CAROL);
    join(&mut carol, "b");
    bob.recv_type("presence");
    bob.request("session_leave", json!({"sessionId": "b"}));
    carol.recv_type("presence");
    let mut outside = Client::authed(&gw, OPS);
    let reply = outside.request(
        "session_patch",
        json!({"sessionKey": "b", "access": "private", "allowUsers": []}),
    );
    let patched = assert_info(&reply, "b", "patched");
    assert_eq!(patched["owner"], "bob");
    assert_eq!(patched["access"], "private");
    assert_eq!(patched["metadata"], json!({"x": 1}));
    assert_eq!(carol.recv()["payload"]["status"], "removed");
    assert_nothing_queued(&mut carol);
    bob.request_error(
        "session_join",
        json!({"sessionId": "b"}),
        "SESSION_NOT_FOUND",
    );
    let reply = bob.request("session_create", json!({"sessionId": "b"}));
    assert_info(&reply, "b", "created");
}

#[test]
fn invalid_access_and_allow_users_name_the_field() {
    let gw = TestGateway::start(config());
    let mut alice = Client::authed(&gw, TOKEN);
    alice.request("session_create", json!({"sessionId": "mine"}));
    let cases = [
        ("access", json!("secret")),
        ("access", json!("Private")),
        ("access", json!(1)),
        ("access", json!(["private"])),
        ("allowUsers", json!("bob")),
        ("allowUsers", json!({"bob": true})),
        ("allowUsers", json!(true)),
        ("allowUsers", json!(["bob", 7])),
        ("allowUsers", json!(["bob", null])),
        ("allowUsers", json!([["bob"]])),
        ("allowUsers", json!([""])),
        ("allowUsers", json!(["x".repeat(129)])),
    ];
    for (field, value) in cases {
        let mut payload = json!({"sessionId": "s"});
        payload[field] = value.clone();
        let reply = alice.request("session_create", payload);
        assert_invalid(&reply, field);
        let mut payload = json!({"sessionKey": "mine"});
        payload[field] = value;
        let reply = alice.request("session_patch", payload);
        assert_invalid(&reply, field);
    }
    // Nothing was created or changed, and the connection still works.
    alice.request_error(
        "session_join",
        json!({"sessionId": "s"}),
        "SESSION_NOT_FOUND",
    );
    let joined = alice.request("session_create", json!({"sessionId": "mine"}));
    assert_eq!(joined["payload"]["access"], "open");
    // `null` is absent; an id of 128 bytes is allowed.
    let reply = alice.request(
        "session_create",
        json!({"sessionId": "n", "access": null, "allowUsers": null}),
    );
    assert_eq!(reply["payload"]["access"], "open", "{reply}");
    let reply = alice.request(
        "session_patch",
        json!({"sessionKey": "n", "allowUsers": ["x".repeat(128)]}),
    );
    assert_info(&reply, "n", "patched");
    let reply = alice.request("session_patch", json!({"sessionKey": "n"}));
    assert_invalid(&reply, "patch");
}

#[test]
fn allow_users_counts_toward_the_metadata_limit() {
    let gw = TestGateway::start(config());
    let mut alice = Client::authed(&gw, TOKEN);
    // Ids of 125 bytes count 128 each: 511 of them and the metadata `{}` fit in 64 KiB, 512
    // do not.
    let ids = |n: usize, tag: &str| -> Vec<String> {
        (0..n).map(|i| format!("{tag}{i:0>124}")).collect()
    };
    assert_eq!(ids(1, "u")[0].len(), 125);
    let reply = alice.request(
        "session_create",
        json!({"sessionId": "full", "access": "private", "allowUsers": ids(511, "u")}),
    );
    assert_eq!(
        assert_info(&reply, "full", "created")["metadata"],
        json!({})
    );
    let over = ids(512, "u");
    let refused = alice.request_error(
        "session_create",
        json!({"sessionId": "over", "allowUsers": over}),
        "LIMIT_EXCEEDED",
    );
    assert!(refused["payload"]["message"]
        .as_str()
        .unwrap()
        .contains("allowUsers"));
    // Repeats count as sent: 20 000 times "bob" is refused.
    let repeats = vec!["bob"; 20_000];
    alice.request_error(
        "session_create",
        json!({"sessionId": "over", "allowUsers": repeats}),
        "LIMIT_EXCEEDED",
    );
    // Metadata and ids share the limit, on create and on patch.
    let half = "x".repeat(40 * 1024);
    alice.request_error(
        "session_create",
        json!({"sessionId": "over", "metadata": {"m": half}, "allowUsers": ids(200, "u")}),
        "LIMIT_EXCEEDED",
    );
    alice.request(
        "session_create",
        json!({"sessionId": "half", "metadata": {"m": half}, "allowUsers": ids(100, "u")}),
    );
    alice.request_error(
        "session_patch",
        json!({"sessionKey": "half", "allowUsers": ids(200, "v")}),
        "LIMIT_EXCEEDED",
    );
    alice.request_error(
        "session_patch",
        json!({"sessionKey": "half", "patch": {"n": "x".repeat(20 * 1024)}}),
        "LIMIT_EXCEEDED",
    );
    // Dropping the metadata in the same patch makes room.
    let reply = alice.request(
        "session_patch",
        json!({"sessionKey": "half", "patch": {"m": null}, "allowUsers": ids(200, "v")}),
    );
    assert_eq!(
        assert_info(&reply, "half", "patched")["metadata"],
        json!({})
    );
    alice.request_error(
        "session_join",
        json!({"sessionId": "over"}),
        "SESSION_NOT_FOUND",
    );
}
