//! Sessions: create, join, leave, patch, presence, relay, and cleanup on disconnect.

use super::*;

fn members(payload: &Value) -> Vec<String> {
    payload["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["clientId"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn create_generates_an_id_and_replies_created() {
    let mut h = Harness::new(token_config());
    let (a, a_id) = h.authed();
    let o = h.req(
        a,
        "session_create",
        "c1",
        json!({"name":"Room","metadata":{"k":"v"}}),
    );
    let payload = o.reply(a, "session_info", "c1").clone();
    let session_id = payload["sessionId"].as_str().unwrap().to_owned();
    let uuid = session_id.strip_prefix("session-").expect("session-UUID");
    assert!(uuid::Uuid::parse_str(uuid).is_ok());
    assert_eq!(o.one(a)["sessionId"], session_id.as_str());
    assert_eq!(
        payload,
        json!({"sessionId": session_id, "status": "created", "name": "Room",
               "owner": "alice", "access": "open",
               "members": [{"clientId": a_id, "userId": "alice"}], "metadata": {"k":"v"}})
    );
    assert_eq!(
        o.events,
        [Event::SessionCreated {
            session_id: session_id.clone(),
            client_id: a_id
        }]
    );
    assert_eq!(h.core.session_count(), 1);
}

#[test]
fn create_with_an_existing_id_joins_it() {
    let mut h = Harness::new(token_config());
    let (a, a_id) = h.authed();
    let (b, b_id) = h.authed();
    h.req(
        a,
        "session_create",
        "c1",
        json!({"sessionId":"room","metadata":{"x":1}}),
    );
    let o = h.req(
        b,
        "session_create",
        "c2",
        json!({"sessionId":"room","name":"ignored"}),
    );
    let reply = o.to(b)[0];
    assert_eq!(reply["replyTo"], "c2");
    assert_eq!(reply["payload"]["status"], "joined");
    assert_eq!(reply["payload"]["metadata"], json!({"x":1}));
    assert!(reply["payload"].get("name").is_none());
    assert_eq!(members(&reply["payload"]), [a_id.clone(), b_id.clone()]);
    let presence = o.one(a);
    assert_eq!(presence["type"], "presence");
    assert_eq!(presence["sessionId"], "room");
    assert!(presence.get("source").is_none());
    assert_eq!(
        presence["payload"],
        json!({"clientId": b_id, "userId":"alice", "status":"joined", "sessionId":"room", "timestamp": WALL0})
    );
    assert_eq!(
        o.events,
        [Event::SessionJoined {
            session_id: "room".into(),
            client_id: b_id
        }]
    );
}

#[test]
fn create_validates_fields_and_limits() {
    let mut h = Harness::new(Config {
        max_sessions: 1,
        ..token_config()
    });
    let (a, _) = h.authed();
    for (payload, field) in [
        (json!({"sessionId": 5}), "sessionId"),
        (json!({"sessionId": ""}), "sessionId"),
        (json!({"sessionId": "x".repeat(129)}), "sessionId"),
        (json!({"name": []}), "name"),
        (json!({"metadata": "m"}), "metadata"),
    ] {
        let o = h.req(a, "session_create", "c", payload);
        assert_eq!(
            o.error(a, "INVALID_MESSAGE", Some("c"))["details"]["field"],
            field
        );
    }
    let big = "x".repeat(64 * 1024);
    let o = h.req(
        a,
        "session_create",
        "big",
        json!({"sessionId":"m","metadata":{"k": big}}),
    );
    o.error(a, "LIMIT_EXCEEDED", Some("big"));
    assert_eq!(h.core.session_count(), 0);
    h.create(a, "one");
    // Metadata over the limit is ignored, as any other, when the session exists.
    let (b, _) = h.authed();
    let o = h.req(
        b,
        "session_create",
        "join",
        json!({"sessionId":"one","metadata":{"k": big}}),
    );
    assert_eq!(o.to(b)[0]["payload"]["status"], "joined");
    let o = h.req(a, "session_create", "two", json!({"sessionId":"two"}));
    o.error(a, "LIMIT_EXCEEDED", Some("two"));
}

#[test]
fn join_errors_and_repeat_join() {
    let mut h = Harness::new(Config {
        max_clients_per_session: 2,
        max_sessions_per_client: 1,
        ..token_config()
    });
    let (a, _) = h.authed();
    let (b, _) = h.authed();
    let (c, _) = h.authed();
    h.join(a, "nope").error(a, "SESSION_NOT_FOUND", Some("sj"));
    h.create(a, "r");
    let o = h.join(b, "r");
    assert_eq!(o.to(b)[0]["payload"]["status"], "joined");
    // Joining again: a no-op that still replies joined; nobody else hears of it.
    let o = h.join(b, "r");
    let payload = o.reply(b, "session_info", "sj");
    assert_eq!(payload["status"], "joined");
    assert_eq!(payload["members"].as_array().unwrap().len(), 2);
    assert!(o.events.is_empty());
    h.join(c, "r").error(c, "SESSION_FULL", Some("sj"));
    h.create(c, "s");
    // c is in one session already: max_sessions_per_client.
    h.req(b, "session_leave", "l", json!({"sessionId":"r"}));
    h.join(c, "r").error(c, "LIMIT_EXCEEDED", Some("sj"));
    // The envelope's sessionId works too; the payload's must be a string.
    let o = h.req_with(b, "session_join", "e", json!({}), json!({"sessionId":"s"}));
    assert_eq!(o.to(b)[0]["payload"]["status"], "joined");
    let o = h.req(b, "session_join", "bad", json!({"sessionId": 1}));
    assert_eq!(
        o.error(b, "INVALID_MESSAGE", Some("bad"))["details"]["field"],
        "sessionId"
    );
    let o = h.req(b, "session_join", "none", json!({}));
    assert_eq!(
        o.error(b, "INVALID_MESSAGE", Some("none"))["details"]["field"],
        "sessionId"
    );
}

#[test]
fn leave_tells_the_others_and_removes_an_empty_session() {
    let mut h = Harness::new(token_config());
    let (a, a_id) = h.authed();
    let (b, _) = h.authed();
    let (c, _) = h.authed();
    h.create(a, "r");
    h.join(b, "r");
    let o = h.req(c, "session_leave", "l0", json!({"sessionId":"r"}));
    assert_eq!(
        o.reply(c, "session_info", "l0"),
        &json!({"sessionId":"r","status":"left"})
    );
    h.req(c, "session_leave", "l1", json!({"sessionId":"zzz"}))
        .error(c, "SESSION_NOT_FOUND", Some("l1"));
    let o = h.req(a, "session_leave", "l2", json!({"sessionId":"r"}));
    assert_eq!(o.to(a).len(), 1);
    assert_eq!(
        o.to(a)[0]["payload"],
        json!({"sessionId":"r","status":"left"})
    );
    assert_eq!(o.to(a)[0]["sessionId"], "r");
    let presence = o.one(b);
    assert_eq!(presence["payload"]["status"], "left");
    assert_eq!(presence["payload"]["clientId"], a_id.as_str());
    assert_eq!(
        o.events,
        [Event::SessionLeft {
            session_id: "r".into(),
            client_id: a_id
        }]
    );
    let o = h.req(b, "session_leave", "l3", json!({"sessionId":"r"}));
    o.reply(b, "session_info", "l3");
    assert_eq!(h.core.session_count(), 0);
    h.join(a, "r").error(a, "SESSION_NOT_FOUND", Some("sj"));
}

#[test]
fn patch_merges_and_tells_the_others() {
    let mut h = Harness::new(token_config());
    let (a, _) = h.authed();
    let (b, _) = h.authed();
    let (c, _) = h.authed();
    h.req(
        a,
        "session_create",
        "c",
        json!({"sessionId":"r","metadata":{"a":1,"b":2}}),
    );
    h.join(b, "r");
    let o = h.req(
        a,
        "session_patch",
        "p1",
        json!({"sessionKey":"r","patch":{"b":null,"c":[3]}}),
    );
    let mine = o.to(a);
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["replyTo"], "p1");
    assert_eq!(mine[0]["sessionId"], "r");
    let expected = json!({"sessionId":"r","status":"patched","owner":"alice","access":"open",
                          "metadata":{"a":1,"c":[3]}});
    assert_eq!(mine[0]["payload"], expected);
    let theirs = o.one(b);
    assert_eq!(theirs["type"], "session_info");
    assert_eq!(theirs["payload"], expected);
    assert!(theirs.get("replyTo").is_none());
    assert_ne!(theirs["id"], mine[0]["id"]);
    // Too large: refused, unchanged.
    let big = "x".repeat(64 * 1024);
    h.req(
        a,
        "session_patch",
        "p2",
        json!({"sessionKey":"r","patch":{"big":big}}),
    )
    .error(a, "LIMIT_EXCEEDED", Some("p2"));
    let o = h.req(
        a,
        "session_patch",
        "p3",
        json!({"sessionKey":"r","patch":{}}),
    );
    assert_eq!(o.to(a)[0]["payload"]["metadata"], json!({"a":1,"c":[3]}));
    h.req(
        c,
        "session_patch",
        "p4",
        json!({"sessionKey":"r","patch":{}}),
    )
    .error(c, "NOT_A_MEMBER", Some("p4"));
    h.req(
        c,
        "session_patch",
        "p5",
        json!({"sessionKey":"q","patch":{}}),
    )
    .error(c, "SESSION_NOT_FOUND", Some("p5"));
    for (payload, field) in [
        (json!({"sessionKey":"r"}), "patch"),
        (json!({"sessionKey":"r","patch":[1]}), "patch"),
        (json!({"patch":{}}), "sessionKey"),
        (json!({"sessionKey":3,"patch":{}}), "sessionKey"),
    ] {
        let o = h.req(a, "session_patch", "p6", payload);
        assert_eq!(
            o.error(a, "INVALID_MESSAGE", Some("p6"))["details"]["field"],
            field
        );
    }
}

#[test]
fn presence_fans_out_to_the_other_members() {
    let mut h = Harness::new(token_config());
    let (a, a_id) = h.authed();
    let (b, _) = h.authed();
    let (c, _) = h.authed();
    h.create(a, "r1");
    h.create(a, "r2");
    h.join(b, "r1");
    h.join(c, "r2");
    let o = h.req(
        a,
        "presence",
        "p1",
        json!({"status":"away","sessionKey":"r1"}),
    );
    assert!(o.to(a).is_empty());
    assert!(o.to(c).is_empty());
    let msg = o.one(b);
    assert_eq!(msg["type"], "presence");
    assert_eq!(msg["sessionId"], "r1");
    assert_eq!(msg["source"], a_id.as_str());
    assert_eq!(
        msg["payload"],
        json!({"clientId": a_id, "userId":"alice","status":"away","sessionId":"r1","timestamp":WALL0})
    );
    // Without sessionKey: every session of the sender.
    let o = h.req(a, "presence", "p2", json!({"status":"busy"}));
    assert_eq!(o.one(b)["payload"]["sessionId"], "r1");
    assert_eq!(o.one(c)["payload"]["sessionId"], "r2");
    // Errors.
    for status in ["joined", "left"] {
        let o = h.req(a, "presence", "p3", json!({"status": status}));
        assert_eq!(
            o.error(a, "INVALID_MESSAGE", Some("p3"))["details"]["field"],
            "status"
        );
    }
    let o = h.req(a, "presence", "p4", json!({}));
    assert_eq!(
        o.error(a, "INVALID_MESSAGE", Some("p4"))["details"]["field"],
        "status"
    );
    h.req(b, "presence", "p5", json!({"status":"x","sessionKey":"r2"}))
        .error(b, "NOT_A_MEMBER", Some("p5"));
    h.req(b, "presence", "p6", json!({"status":"x","sessionKey":"r9"}))
        .error(b, "SESSION_NOT_FOUND", Some("p6"));
    // A client in no session: nothing at all.
    let (d, _) = h.authed();
    h.req(d, "presence", "p7", json!({"status":"x"})).silent();
}

#[test]
fn relays_reach_every_other_member_with_one_staged_copy() {
    let mut h = Harness::new(token_config());
    let (a, a_id) = h.authed();
    let (b, _) = h.authed();
    let (c, _) = h.authed();
    let (outsider, _) = h.authed();
    h.create(a, "r");
    h.join(b, "r");
    h.join(c, "r");
    for msg_type in [
        "chat",
        "chat_stream",
        "chat_complete",
        "tool_start",
        "tool_update",
        "tool_result",
        "broadcast",
    ] {
        let text = format!(
            r#"{{"type":"{msg_type}","id":"m1","sessionId":"r","source":"forged","payload":{{"text":"hi","n":[1,{{"x":null}}]}}}}"#
        );
        let o = h.text(a, &text);
        assert!(
            o.to(a).is_empty(),
            "the sender does not get its own message"
        );
        assert!(o.to(outsider).is_empty());
        for conn in [b, c] {
            let msg = o.one(conn);
            check_envelope(msg);
            assert_eq!(msg["type"], msg_type);
            assert_eq!(msg["sessionId"], "r");
            assert_eq!(msg["source"], a_id.as_str());
            assert_eq!(msg["payload"], json!({"text":"hi","n":[1,{"x":null}]}));
            assert_ne!(msg["id"], "m1");
            assert!(msg.get("replyTo").is_none());
        }
        assert_eq!(o.sent[0].staged_at, o.sent[1].staged_at, "staged once");
    }
    h.text(a, r#"{"type":"chat","id":"x1","payload":{}}"#)
        .error(a, "INVALID_MESSAGE", Some("x1"));
    h.text(a, r#"{"type":"chat","id":"x2","sessionId":9}"#)
        .error(a, "INVALID_MESSAGE", Some("x2"));
    h.text(a, r#"{"type":"chat","id":"x3","sessionId":"nope"}"#)
        .error(a, "SESSION_NOT_FOUND", Some("x3"));
    h.text(outsider, r#"{"type":"chat","id":"x4","sessionId":"r"}"#)
        .error(outsider, "NOT_A_MEMBER", Some("x4"));
    // Alone in a session: nothing sent, no error.
    h.create(outsider, "solo");
    h.text(outsider, r#"{"type":"chat","id":"x5","sessionId":"solo"}"#)
        .silent();
}

#[test]
fn disconnect_leaves_every_session() {
    let mut h = Harness::new(token_config());
    let (a, a_id) = h.authed();
    let (b, _) = h.authed();
    h.create(a, "shared");
    h.create(a, "mine");
    h.join(b, "shared");
    let o = h.close(a, CloseReason::Peer(1000));
    let presence = o.one(b);
    assert_eq!(presence["payload"]["status"], "left");
    assert_eq!(presence["payload"]["clientId"], a_id.as_str());
    assert_eq!(presence["sessionId"], "shared");
    assert_eq!(
        o.events,
        [
            Event::SessionLeft {
                session_id: "shared".into(),
                client_id: a_id.clone()
            },
            Event::SessionLeft {
                session_id: "mine".into(),
                client_id: a_id.clone()
            },
            Event::ClientDisconnected {
                client_id: a_id,
                reason: "peer:1000".into()
            },
        ]
    );
    assert_eq!(h.core.session_count(), 1);
    assert_eq!(h.core.client_count(), 2 - 1);
    let payload = h.join(b, "shared");
    assert_eq!(
        payload.to(b)[0]["payload"]["members"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A closed connection's messages and a second close are ignored.
    h.text(a, r#"{"type":"ping","id":"p"}"#).silent();
    assert!(h.close(a, CloseReason::Reset).events.is_empty());
}
