//! Agents over the wire: register, unregister, heartbeat, query, offline on disconnect, TTL.

use super::*;
use crate::core::timers;

fn register(h: &mut Harness, conn: ConnId, id: &str, payload: Value) -> Output {
    h.req(conn, "agent_register", id, payload)
}

fn cli(name: &str) -> Value {
    json!({"type":"cli","name":name,"capabilities":{"chat":true,"tools":["grep"]}})
}

#[test]
fn register_replies_the_record_with_defaults() {
    let mut h = Harness::new(token_config());
    let (a, a_id) = h.authed();
    h.advance(5);
    let o = register(
        &mut h,
        a,
        "r1",
        json!({"type":"pi","name":"Pi","capabilities":{"chat":true,"streaming":true,"modes":["plan"],"custom":{"vision":1}},"metadata":{"v":2}}),
    );
    let payload = o.reply(a, "agent_info", "r1");
    assert_eq!(
        payload,
        &json!({"status":"registered","agent":{
            "agentId": a_id, "type":"pi", "name":"Pi",
            "capabilities":{"chat":true,"tools":[],"streaming":true,"modes":["plan"],"custom":{"vision":1}},
            "status":"online", "clientId": a_id, "registeredAt": WALL0 + 5, "lastSeenAt": WALL0 + 5,
            "metadata":{"v":2}}})
    );
    assert_eq!(
        o.events,
        [Event::AgentRegistered {
            agent_id: a_id.clone(),
            client_id: a_id
        }]
    );
    assert_eq!(h.core.agent_count(), 1);
}

#[test]
fn register_validates_every_field() {
    let mut h = Harness::new(token_config());
    let (a, _) = h.authed();
    for (payload, field) in [
        (json!({"name":"n","capabilities":{}}), "type"),
        (json!({"type":"robot","name":"n","capabilities":{}}), "type"),
        (json!({"type":1,"name":"n","capabilities":{}}), "type"),
        (json!({"type":"cli","capabilities":{}}), "name"),
        (json!({"type":"cli","name":"","capabilities":{}}), "name"),
        (json!({"type":"cli","name":"n"}), "capabilities"),
        (
            json!({"type":"cli","name":"n","capabilities":[]}),
            "capabilities",
        ),
        (
            json!({"type":"cli","name":"n","capabilities":{"chat":"yes"}}),
            "capabilities",
        ),
        (
            json!({"type":"cli","name":"n","capabilities":{"tools":[1]}}),
            "capabilities",
        ),
        (
            json!({"type":"cli","name":"n","capabilities":{},"metadata":1}),
            "metadata",
        ),
        (
            json!({"agentId":"","type":"cli","name":"n","capabilities":{}}),
            "agentId",
        ),
        (
            json!({"agentId":5,"type":"cli","name":"n","capabilities":{}}),
            "agentId",
        ),
    ] {
        let o = register(&mut h, a, "r", payload.clone());
        let err = o.error(a, "INVALID_MESSAGE", Some("r"));
        assert_eq!(err["details"]["field"], field, "{payload}");
    }
    assert_eq!(h.core.agent_count(), 0);
}

#[test]
fn an_online_agent_id_belongs_to_its_client() {
    let mut h = Harness::new(token_config());
    let (a, a_id) = h.authed();
    let (b, b_id) = h.authed();
    let mut p = cli("A");
    p["agentId"] = json!("shared");
    register(&mut h, a, "r1", p.clone()).reply(a, "agent_info", "r1");
    register(&mut h, b, "r2", p.clone()).error(b, "AGENT_EXISTS", Some("r2"));
    h.req(b, "agent_unregister", "u1", json!({"agentId":"shared"}))
        .error(b, "FORBIDDEN", Some("u1"));
    h.req(b, "agent_heartbeat", "h1", json!({"agentId":"shared"}))
        .error(b, "FORBIDDEN", Some("h1"));
    h.req(b, "agent_unregister", "u2", json!({"agentId":"ghost"}))
        .error(b, "AGENT_NOT_FOUND", Some("u2"));
    h.req(b, "agent_heartbeat", "h2", json!({"agentId":"ghost"}))
        .error(b, "AGENT_NOT_FOUND", Some("h2"));
    // Offline on disconnect, with an event and a TTL timer; then anyone can take it over.
    let closed = h.close(a, CloseReason::Reset);
    assert!(closed.events.contains(&Event::AgentOffline {
        agent_id: "shared".into()
    }));
    assert_eq!(closed.timers.len(), 1);
    assert_eq!(closed.timers[0].0, h.now + Duration::from_millis(300_000));
    let o = h.req(b, "agent_query", "q", json!({}));
    let agent = &o.reply(b, "agent_list", "q")["agents"][0];
    assert_eq!(agent["status"], "offline");
    assert_eq!(agent["clientId"], Value::Null);
    assert_ne!(agent["clientId"], a_id.as_str());
    h.req(b, "agent_heartbeat", "h3", json!({"agentId":"shared"}))
        .error(b, "FORBIDDEN", Some("h3"));
    let ttl_token = closed.timers[0].1;
    let o = register(&mut h, b, "r3", p);
    assert_eq!(
        o.reply(b, "agent_info", "r3")["agent"]["clientId"],
        b_id.as_str()
    );
    // The old TTL timer no longer removes it.
    h.advance(300_000);
    h.timer(ttl_token).silent();
    assert_eq!(h.core.agent_count(), 1);
}

#[test]
fn the_ttl_removes_an_offline_agent_unless_it_came_back() {
    let mut h = Harness::new(token_config());
    let (a, _) = h.authed();
    let (b, _) = h.authed();
    let mut p = cli("x");
    p["agentId"] = json!("x");
    register(&mut h, a, "r", p.clone());
    let mut q = cli("y");
    q["agentId"] = json!("y");
    register(&mut h, a, "r", q);
    let o = h.close(a, CloseReason::Timeout);
    assert_eq!(o.timers.len(), 2);
    let tokens: Vec<u64> = o.timers.iter().map(|t| t.1).collect();
    for token in &tokens {
        assert!(matches!(
            timers::decode(*token),
            timers::Timer::AgentTtl { .. }
        ));
    }
    assert_eq!(h.core.pending_agent_expiries(), 2);
    // x comes back before its TTL (and no longer waits for one); y does not.
    register(&mut h, b, "r2", p);
    assert_eq!(h.core.pending_agent_expiries(), 1);
    h.advance(300_000);
    for token in tokens {
        h.timer(token).silent();
    }
    assert_eq!(h.core.agent_count(), 1);
    let o = h.req(b, "agent_query", "q", json!({}));
    let agents = &o.reply(b, "agent_list", "q")["agents"];
    assert_eq!(agents.as_array().unwrap().len(), 1);
    assert_eq!(agents[0]["agentId"], "x");
    assert_eq!(agents[0]["status"], "online");
    assert_eq!(h.core.pending_agent_expiries(), 0);
}

#[test]
fn a_zero_ttl_keeps_offline_agents() {
    let mut h = Harness::new(Config {
        agent_ttl_ms: 0,
        ..token_config()
    });
    let (a, _) = h.authed();
    register(&mut h, a, "r", cli("x"));
    let o = h.close(a, CloseReason::Reset);
    assert!(o.timers.is_empty());
    assert_eq!(h.core.agent_count(), 1);
}

#[test]
fn unregister_and_heartbeat_default_to_the_own_client_id() {
    let mut h = Harness::new(token_config());
    let (a, a_id) = h.authed();
    register(&mut h, a, "r", cli("x"));
    h.advance(10);
    let o = h.req(a, "agent_heartbeat", "h", json!({"status":"busy"}));
    let payload = o.reply(a, "agent_info", "h");
    assert_eq!(payload["status"], "updated");
    assert_eq!(payload["agent"]["status"], "busy");
    assert_eq!(payload["agent"]["lastSeenAt"], WALL0 + 10);
    let o = h.req(
        a,
        "agent_heartbeat",
        "h2",
        json!({"agentId": a_id, "status":"online"}),
    );
    assert_eq!(o.reply(a, "agent_info", "h2")["agent"]["status"], "online");
    for status in [json!("offline"), json!("idle"), json!(1)] {
        let o = h.req(a, "agent_heartbeat", "h3", json!({"status": status}));
        assert_eq!(
            o.error(a, "INVALID_MESSAGE", Some("h3"))["details"]["field"],
            "status"
        );
    }
    let o = h.req(a, "agent_unregister", "u", json!({}));
    let payload = o.reply(a, "agent_info", "u");
    assert_eq!(payload["status"], "unregistered");
    assert_eq!(payload["agent"]["agentId"], a_id.as_str());
    assert_eq!(h.core.agent_count(), 0);
    h.req(a, "agent_unregister", "u2", json!({}))
        .error(a, "AGENT_NOT_FOUND", Some("u2"));
}

#[test]
fn query_filters_by_capability_type_and_status() {
    let mut h = Harness::new(token_config());
    let (a, _) = h.authed();
    let (b, _) = h.authed();
    let (c, _) = h.authed();
    register(
        &mut h,
        a,
        "r",
        json!({"agentId":"a1","type":"pi","name":"a","capabilities":{"chat":true,"tools":["grep"]}}),
    );
    register(
        &mut h,
        b,
        "r",
        json!({"agentId":"b1","type":"cli","name":"b","capabilities":{"modes":["grep"],"custom":{"x":true,"off":0}}}),
    );
    register(
        &mut h,
        c,
        "r",
        json!({"agentId":"c1","type":"cli","name":"c","capabilities":{"streaming":true}}),
    );
    h.close(c, CloseReason::Reset);
    let ids = |h: &mut Harness, payload: Value| -> Vec<String> {
        let o = h.req(a, "agent_query", "q", payload);
        o.reply(a, "agent_list", "q")["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["agentId"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&mut h, json!({})), ["a1", "b1", "c1"]);
    assert_eq!(ids(&mut h, json!({"onlineOnly":true})), ["a1", "b1"]);
    assert_eq!(ids(&mut h, json!({"capability":"grep"})), ["a1", "b1"]);
    assert_eq!(ids(&mut h, json!({"capability":"chat"})), ["a1"]);
    assert_eq!(ids(&mut h, json!({"capability":"x"})), ["b1"]);
    assert!(ids(&mut h, json!({"capability":"off"})).is_empty());
    assert_eq!(ids(&mut h, json!({"type":"cli"})), ["b1", "c1"]);
    assert_eq!(ids(&mut h, json!({"type":"cli","onlineOnly":true})), ["b1"]);
    for (payload, field) in [
        (json!({"type":"robot"}), "type"),
        (json!({"onlineOnly":"yes"}), "onlineOnly"),
        (json!({"capability":1}), "capability"),
    ] {
        let o = h.req(a, "agent_query", "bad", payload);
        assert_eq!(
            o.error(a, "INVALID_MESSAGE", Some("bad"))["details"]["field"],
            field
        );
    }
}

#[test]
fn max_agents_is_limit_exceeded() {
    let mut h = Harness::new(Config {
        max_agents: 1,
        ..token_config()
    });
    let (a, _) = h.authed();
    register(&mut h, a, "r1", cli("a")).reply(a, "agent_info", "r1");
    let mut p = cli("b");
    p["agentId"] = json!("second");
    register(&mut h, a, "r2", p).error(a, "LIMIT_EXCEEDED", Some("r2"));
    // Re-registering the same id is not a new agent.
    register(&mut h, a, "r3", cli("a2")).reply(a, "agent_info", "r3");
}
