//! Routing: `route_request` to a client, an agent or a capability, and the once-only
//! `route_response`.

use super::*;

fn route(h: &mut Harness, conn: ConnId, id: &str, target: &str, payload: Value) -> Output {
    h.req_with(
        conn,
        "route_request",
        id,
        payload,
        json!({"target": target}),
    )
}

fn respond(h: &mut Harness, conn: ConnId, id: &str, target: &str, reply_to: &str) -> Output {
    h.req_with(
        conn,
        "route_response",
        id,
        json!({"answer": 42}),
        json!({"target": target, "replyTo": reply_to}),
    )
}

#[test]
fn request_and_response_between_two_clients() {
    let mut h = Harness::new(token_config());
    let (a, a_id) = h.authed();
    let (b, b_id) = h.authed();
    let o = route(&mut h, a, "req-1", &b_id, json!({"q":"?"}));
    assert!(o.to(a).is_empty(), "no reply on success");
    let delivered = o.one(b);
    check_envelope(delivered);
    assert_eq!(delivered["type"], "route_request");
    assert_eq!(delivered["id"], "req-1");
    assert_eq!(delivered["source"], a_id.as_str());
    assert_eq!(delivered["payload"], json!({"q":"?"}));
    assert!(delivered.get("target").is_none());
    let o = respond(&mut h, b, "resp-1", &a_id, "req-1");
    assert!(o.to(b).is_empty());
    let answer = o.one(a);
    check_envelope(answer);
    assert_eq!(answer["type"], "route_response");
    assert_eq!(answer["replyTo"], "req-1");
    assert_eq!(answer["source"], b_id.as_str());
    assert_eq!(answer["payload"], json!({"answer":42}));
    assert_ne!(answer["id"], "resp-1");
    // Once only.
    respond(&mut h, b, "resp-2", &a_id, "req-1").error(b, "TARGET_NOT_FOUND", Some("resp-2"));
}

#[test]
fn a_response_must_match_a_delivered_request() {
    let mut h = Harness::new(token_config());
    let (a, a_id) = h.authed();
    let (b, b_id) = h.authed();
    let (c, _) = h.authed();
    route(&mut h, a, "r1", &b_id, json!({}));
    // From someone the request was not delivered to.
    respond(&mut h, c, "x1", &a_id, "r1").error(c, "TARGET_NOT_FOUND", Some("x1"));
    // Wrong id, wrong target, unknown target.
    respond(&mut h, b, "x2", &a_id, "r2").error(b, "TARGET_NOT_FOUND", Some("x2"));
    respond(&mut h, b, "x3", &b_id, "r1").error(b, "TARGET_NOT_FOUND", Some("x3"));
    respond(&mut h, b, "x4", "nobody", "r1").error(b, "TARGET_NOT_FOUND", Some("x4"));
    // Missing fields are invalid.
    let o = h.req_with(
        b,
        "route_response",
        "x5",
        json!({}),
        json!({"target": a_id}),
    );
    assert_eq!(
        o.error(b, "INVALID_MESSAGE", Some("x5"))["details"]["field"],
        "replyTo"
    );
    let o = h.req_with(
        b,
        "route_response",
        "x6",
        json!({}),
        json!({"replyTo": "r1"}),
    );
    assert_eq!(
        o.error(b, "INVALID_MESSAGE", Some("x6"))["details"]["field"],
        "target"
    );
    // The real answer still goes through.
    let o = respond(&mut h, b, "ok", &a_id, "r1");
    assert_eq!(o.one(a)["replyTo"], "r1");
}

#[test]
fn request_targets_and_their_errors() {
    let mut h = Harness::new(token_config());
    let (a, _) = h.authed();
    let (pending, pending_id) = h.open();
    route(&mut h, a, "t1", "nobody", json!({})).error(a, "TARGET_NOT_FOUND", Some("t1"));
    // An unauthenticated connection is not a target while auth is on.
    route(&mut h, a, "t2", &pending_id, json!({})).error(a, "TARGET_NOT_FOUND", Some("t2"));
    assert!(
        h.text(pending, r#"{"type":"ping","id":"p"}"#)
            .to(pending)
            .len()
            == 1
    );
    let o = h.req(a, "route_request", "t3", json!({}));
    assert_eq!(
        o.error(a, "INVALID_MESSAGE", Some("t3"))["details"]["field"],
        "target"
    );
    let o = h.req_with(a, "route_request", "t4", json!({}), json!({"target": 5}));
    assert_eq!(
        o.error(a, "INVALID_MESSAGE", Some("t4"))["details"]["field"],
        "target"
    );
    route(&mut h, a, "t5", "capability:none", json!({})).error(a, "TARGET_NOT_FOUND", Some("t5"));
}

#[test]
fn mode_none_routes_to_any_client() {
    let mut h = Harness::new(none_config());
    let (a, _) = h.open();
    let (b, b_id) = h.open();
    let o = route(&mut h, a, "r", &b_id, json!({}));
    assert_eq!(o.one(b)["type"], "route_request");
}

#[test]
fn routing_to_an_agent_id_and_by_capability_round_robin() {
    let mut h = Harness::new(token_config());
    let (req, req_id) = h.authed();
    let mut agents = Vec::new();
    for name in ["a", "b", "c"] {
        let (conn, _) = h.authed();
        h.req(
            conn,
            "agent_register",
            "r",
            json!({"agentId": format!("agent-{name}"), "type":"cli","name":name,"capabilities":{"tools":["search"]}}),
        );
        agents.push(conn);
    }
    let o = route(&mut h, req, "r0", "agent-b", json!({}));
    assert_eq!(o.one(agents[1])["source"], req_id.as_str());
    // Round robin over the online, not busy agents.
    h.req(
        agents[2],
        "agent_heartbeat",
        "hb",
        json!({"agentId":"agent-c","status":"busy"}),
    )
    .reply(agents[2], "agent_info", "hb");
    let mut got = Vec::new();
    for i in 0..4 {
        let o = route(
            &mut h,
            req,
            &format!("c{i}"),
            "capability:search",
            json!({}),
        );
        assert_eq!(o.sent.len(), 1);
        got.push(agents.iter().position(|c| *c == o.sent[0].conn).unwrap());
    }
    assert_eq!(got, [0, 1, 0, 1]);
    // An agent whose client left is offline: not a target.
    h.close(agents[0], CloseReason::Reset);
    route(&mut h, req, "x", "agent-a", json!({})).error(req, "TARGET_NOT_FOUND", Some("x"));
    let o = route(&mut h, req, "y", "capability:search", json!({}));
    assert_eq!(o.one(agents[1])["type"], "route_request");
    // A busy agent is still reachable by id.
    let o = route(&mut h, req, "z", "agent-c", json!({}));
    assert_eq!(o.one(agents[2])["id"], "z");
}

#[test]
fn pending_requests_are_dropped_when_either_side_leaves() {
    let mut h = Harness::new(token_config());
    let (a, a_id) = h.authed();
    let (b, b_id) = h.authed();
    route(&mut h, a, "r1", &b_id, json!({}));
    route(&mut h, b, "r2", &a_id, json!({}));
    // The same id to the same target while pending: refused.
    let o = route(&mut h, a, "r1", &b_id, json!({}));
    assert_eq!(
        o.error(a, "INVALID_MESSAGE", Some("r1"))["details"]["field"],
        "id"
    );
    h.close(a, CloseReason::Reset);
    // b's pending answer to a is gone along with a.
    respond(&mut h, b, "x", &a_id, "r1").error(b, "TARGET_NOT_FOUND", Some("x"));
    // A reconnecting client gets a new clientId, so nothing can be answered to it by mistake.
    let (c, c_id) = h.authed();
    assert_ne!(c_id, a_id);
    respond(&mut h, c, "y", &b_id, "r2").error(c, "TARGET_NOT_FOUND", Some("y"));
}
