//! PROTOCOL section 11 for agents over real sockets: the bounds of one registration, the
//! per-user agent count in every path, ownership by user, compact stored JSON, and
//! `agent_query` paging within `max_message_size`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn agent(id: &str, capabilities: Value) -> Value {
    json!({"agentId": id, "type": "cli", "name": id, "capabilities": capabilities})
}

/// Register; asserts the `registered` reply and returns the record.
fn register(client: &mut Client, payload: Value) -> Value {
    let reply = client.request("agent_register", payload);
    assert_eq!(reply["type"], "agent_info", "{reply}");
    reply["payload"]["agent"].clone()
}

/// Assert `reply` is `INVALID_MESSAGE` naming `field`.
fn assert_field(reply: &Value, field: &str) {
    assert_error(reply, "INVALID_MESSAGE");
    assert_eq!(reply["payload"]["details"]["field"], field, "{reply}");
}

fn names(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// The next text message, as the gateway wrote it.
fn recv_text(client: &mut Client) -> String {
    loop {
        match client.ws.read().expect("read") {
            tungstenite::Message::Text(text) => return text.as_str().to_owned(),
            tungstenite::Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

fn listed_ids(reply: &Value) -> Vec<String> {
    reply["payload"]["agents"]
        .as_array()
        .unwrap_or_else(|| panic!("agent_list: {reply}"))
        .iter()
        .map(|a| a["agentId"].as_str().expect("agentId").to_owned())
        .collect()
}

#[test]
fn capabilities_and_metadata_are_bounded_in_compact_bytes() {
    let mut config = test_config();
    config.max_agent_bytes = 1000;
    let gw = TestGateway::start(config);
    let mut a = Client::authed(&gw, TOKEN);

    // White space does not count: the stored text is compact.
    let padded = format!(
        r#"{{"type":"agent_register","id":"w1","payload":{{"agentId":"w","type":"cli","name":"w",
        "capabilities":{{"tools":["a"]}},"metadata":{{"note":"{}"{}}}}}}}"#,
        "x".repeat(800),
        " ".repeat(5000)
    );
    a.send_text(&padded);
    let reply = a.recv();
    assert_eq!(reply["type"], "agent_info", "{reply}");

    // Over the bound in metadata, in capabilities, or in both together: LIMIT_EXCEEDED.
    let big = "y".repeat(1000);
    for payload in [
        json!({"agentId": "m", "type": "cli", "name": "m", "capabilities": {}, "metadata": {"k": big}}),
        json!({"agentId": "c", "type": "cli", "name": "c", "capabilities": {"tools": [big]}}),
        json!({"agentId": "b", "type": "cli", "name": "b",
            "capabilities": {"custom": {"k": "z".repeat(500)}}, "metadata": {"k": "z".repeat(450)}}),
    ] {
        let reply = a.request("agent_register", payload);
        assert_error(&reply, "LIMIT_EXCEEDED");
    }
    // Nothing of a refused registration was stored, and the connection still works.
    let reply = a.request("agent_query", json!({}));
    assert_eq!(listed_ids(&reply), ["w"]);
}

#[test]
fn replies_carry_stored_json_compact_and_verbatim() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let text = r#"{"type":"agent_register","id":"v1","payload":{"agentId":"v","type":"pi","name":"v",
        "capabilities":{ "chat" : true , "custom" : { "z" : [ 1 , 2 ] , "a" : { } } },
        "metadata":{ "b" : 1 , "a" : "x y" }}}"#;
    a.send_text(text);
    let reply = a.recv();
    assert_eq!(reply["type"], "agent_info", "{reply}");
    let query = a.request("agent_query", json!({}));
    // Read the raw text of the reply too: member order kept, no white space.
    for record in [&reply["payload"]["agent"], &query["payload"]["agents"][0]] {
        let raw = serde_json::to_string(&record["metadata"]).unwrap();
        assert_eq!(record["metadata"], json!({"b": 1, "a": "x y"}), "{raw}");
        assert_eq!(
            record["capabilities"],
            json!({"chat": true, "tools": [], "streaming": false, "modes": [], "custom": {"z": [1, 2], "a": {}}})
        );
    }
    // The same bytes in the reply: one stored text, written verbatim.
    a.send_text(r#"{"type":"agent_query","id":"q-raw","payload":{}}"#);
    let raw = recv_text(&mut a);
    assert!(
        raw.contains(r#""metadata":{"b":1,"a":"x y"}"#),
        "compact and in order: {raw}"
    );
    assert!(
        raw.contains(r#""custom":{"z":[1,2],"a":{}}"#),
        "compact and in order: {raw}"
    );
}

#[test]
fn max_capabilities_counts_tools_modes_and_custom_keys() {
    let mut config = test_config();
    config.max_capabilities = 4;
    let gw = TestGateway::start(config);
    let mut a = Client::authed(&gw, TOKEN);
    register(
        &mut a,
        agent(
            "ok",
            json!({"tools": ["a", "b"], "modes": ["c"], "custom": {"d": false}}),
        ),
    );
    for caps in [
        json!({"tools": names(5, "t")}),
        json!({"tools": ["a", "b"], "modes": ["c"], "custom": {"d": 1, "e": 1}}),
        json!({"tools": names(95_000, "n")}),
    ] {
        let reply = a.request("agent_register", agent("over", caps));
        let error = assert_error(&reply, "LIMIT_EXCEEDED");
        assert!(
            error["payload"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("capabilities")),
            "{error}"
        );
    }
    let reply = a.request("agent_query", json!({}));
    assert_eq!(listed_ids(&reply), ["ok"]);
}

#[test]
fn agent_name_and_type_are_bounded_by_max_name_bytes() {
    let mut config = test_config();
    config.max_name_bytes = 16;
    let gw = TestGateway::start(config);
    let mut a = Client::authed(&gw, TOKEN);
    register(
        &mut a,
        json!({"agentId": "n", "type": "cli", "name": "x".repeat(16), "capabilities": {}}),
    );
    let reply = a.request(
        "agent_register",
        json!({"agentId": "n2", "type": "cli", "name": "x".repeat(17), "capabilities": {}}),
    );
    assert_field(&reply, "name");
    let reply = a.request(
        "agent_register",
        json!({"agentId": "n2", "type": "c".repeat(17), "name": "x", "capabilities": {}}),
    );
    assert_field(&reply, "type");
    assert_eq!(gw.health()["agents"], 1);
}

#[test]
fn max_agents_per_user_counts_every_connection_of_the_user_and_is_released() {
    let mut config = test_config();
    config.max_agents_per_user = 2;
    config.agent_ttl_ms = 1000;
    let gw = TestGateway::start(config);
    let mut a1 = Client::authed(&gw, TOKEN);
    let mut a2 = Client::authed(&gw, TOKEN);
    let mut bob = Client::authed(&gw, TOKEN_BOB);
    register(&mut a1, agent("a1", json!({})));
    register(&mut a2, agent("a2", json!({})));
    let reply = a2.request("agent_register", agent("a3", json!({})));
    let error = assert_error(&reply, "LIMIT_EXCEEDED");
    assert_eq!(
        error["payload"]["message"],
        "Too many agents for user alice"
    );
    // Another user has its own count; re-registering one's own agent is not a new one.
    register(&mut bob, agent("b1", json!({})));
    register(&mut a1, agent("a1", json!({"chat": true})));

    // Unregister releases one.
    let reply = a2.request("agent_unregister", json!({"agentId": "a2"}));
    assert_eq!(reply["payload"]["status"], "unregistered", "{reply}");
    register(&mut a2, agent("a3", json!({})));

    // Offline agents still count; a takeover by another connection of the user moves none.
    drop(a1);
    assert!(eventually(|| {
        let reply = bob.request("agent_query", json!({"onlineOnly": true}));
        !listed_ids(&reply).contains(&"a1".to_owned())
    }));
    let reply = a2.request("agent_register", agent("a4", json!({})));
    assert_error(&reply, "LIMIT_EXCEEDED");
    register(&mut a2, agent("a1", json!({})));
    let reply = a2.request("agent_register", agent("a4", json!({})));
    assert_error(&reply, "LIMIT_EXCEEDED");

    // TTL expiry releases: once alice's connection with both agents closes and the TTL
    // passes, two new agents fit again.
    drop(a2);
    let mut a3 = Client::authed(&gw, TOKEN);
    assert!(eventually(|| gw.health()["agents"] == 1));
    register(&mut a3, agent("a5", json!({})));
    register(&mut a3, agent("a6", json!({})));
    let reply = a3.request("agent_register", agent("a7", json!({})));
    assert_error(&reply, "LIMIT_EXCEEDED");
}

#[test]
fn anonymous_connections_are_each_counted_alone_and_takeover_moves_the_count() {
    let mut config = no_auth_config();
    config.max_agents_per_user = 1;
    let gw = TestGateway::start(config);
    let mut one = Client::connect(&gw);
    let mut two = Client::connect(&gw);
    register(&mut one, agent("x", json!({})));
    register(&mut two, agent("y", json!({})));
    let reply = two.request("agent_register", agent("z", json!({})));
    assert_error(&reply, "LIMIT_EXCEEDED");
    // `one` goes; `two` may not take over `x` while it holds its one agent...
    drop(one);
    assert!(eventually(|| {
        let reply = two.request("agent_query", json!({"onlineOnly": true}));
        listed_ids(&reply) == ["y"]
    }));
    let reply = two.request("agent_register", agent("x", json!({})));
    assert_error(&reply, "LIMIT_EXCEEDED");
    // ...but once it gave `y` back, it may, and then holds exactly one.
    two.request("agent_unregister", json!({"agentId": "y"}));
    register(&mut two, agent("x", json!({})));
    let reply = two.request("agent_register", agent("y", json!({})));
    assert_error(&reply, "LIMIT_EXCEEDED");
    // A newcomer's own count was never touched by x's old owner.
    let mut three = Client::connect(&gw);
    register(&mut three, agent("w", json!({})));
}

#[test]
fn an_offline_agent_can_be_taken_over_only_by_its_user() {
    let gw = TestGateway::start(test_config());
    let mut bob = Client::authed(&gw, TOKEN_BOB);
    register(&mut bob, agent("bobs", json!({"tools": ["work"]})));
    drop(bob);
    let mut alice = Client::authed(&gw, TOKEN);
    assert!(eventually(|| {
        let reply = alice.request("agent_query", json!({"onlineOnly": true}));
        listed_ids(&reply).is_empty()
    }));
    let reply = alice.request("agent_register", agent("bobs", json!({"tools": ["work"]})));
    assert_error(&reply, "AGENT_EXISTS");
    // Requests for bob's agent are not delivered to alice.
    let reply =
        alice.request_envelope(json!({"type": "route_request", "target": "bobs", "payload": {}}));
    assert_error(&reply, "TARGET_NOT_FOUND");
    let mut bob_again = Client::authed(&gw, TOKEN_BOB);
    let record = register(&mut bob_again, agent("bobs", json!({"tools": ["work"]})));
    assert_eq!(record["clientId"], bob_again.client_id.as_str());
}

#[test]
fn an_agent_id_that_is_another_open_connections_client_id_is_agent_exists() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN);
    let reply = a.request("agent_register", agent(&b.client_id.clone(), json!({})));
    assert_error(&reply, "AGENT_EXISTS");
    // b's default registration is free, and a's own clientId is fine for a.
    let record = register(
        &mut b,
        json!({"type": "cli", "name": "b", "capabilities": {}}),
    );
    assert_eq!(record["agentId"], b.client_id.as_str());
    let own = a.client_id.clone();
    register(&mut a, agent(&own, json!({})));
}

#[test]
fn agent_query_pages_by_limit_and_cursor() {
    let mut config = test_config();
    config.max_list_items = 3;
    let gw = TestGateway::start(config);
    let mut a = Client::authed(&gw, TOKEN);
    for i in 0..7 {
        register(&mut a, agent(&format!("p{i}"), json!({"tools": ["t"]})));
    }
    // Default limit: max_list_items; each page names the next.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut payload = json!({"capability": "t"});
        if let Some(c) = &cursor {
            payload["cursor"] = json!(c);
        }
        let reply = a.request("agent_query", payload);
        let ids = listed_ids(&reply);
        assert!(ids.len() <= 3, "{reply}");
        seen.extend(ids);
        pages += 1;
        match reply["payload"]["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, names(7, "p"));
    // limit 2 without a capability; the last page has no next.
    let reply = a.request("agent_query", json!({"limit": 2}));
    assert_eq!(listed_ids(&reply), ["p0", "p1"]);
    let next = reply["payload"]["next"].as_str().expect("next").to_owned();
    let reply = a.request("agent_query", json!({"limit": 3, "cursor": next}));
    assert_eq!(listed_ids(&reply), ["p2", "p3", "p4"]);
    let next = reply["payload"]["next"].as_str().expect("next").to_owned();

    // A cursor from a changed registry resumes after its id, even when that id is gone.
    a.request("agent_unregister", json!({"agentId": "p4"}));
    register(&mut a, agent("p45", json!({})));
    let reply = a.request("agent_query", json!({"cursor": next}));
    assert_eq!(listed_ids(&reply), ["p45", "p5", "p6"]);
    assert!(reply["payload"].get("next").is_none(), "{reply}");

    for bad in [json!(0), json!(4), json!(-1), json!(1.5), json!("2")] {
        let reply = a.request("agent_query", json!({"limit": bad}));
        assert_field(&reply, "limit");
    }
    for bad in [json!("zz"), json!("abc"), json!(""), json!(7), json!("ff")] {
        let reply = a.request("agent_query", json!({"cursor": bad}));
        assert_field(&reply, "cursor");
    }
}

#[test]
fn no_agent_list_is_larger_than_max_message_size_and_paging_still_covers_all() {
    let mut config = test_config();
    config.max_message_size = 8 * 1024;
    config.max_agent_bytes = 4 * 1024;
    config.max_list_items = 100;
    let gw = TestGateway::start(config);
    let mut a = Client::authed(&gw, TOKEN);
    let meta = "m".repeat(3000);
    for i in 0..12 {
        register(
            &mut a,
            json!({"agentId": format!("big{i:02}"), "type": "pi", "name": "n",
                "capabilities": {"chat": true}, "metadata": {"m": meta}}),
        );
    }
    let mut seen = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut payload = json!({"capability": "chat"});
        if let Some(c) = &cursor {
            payload["cursor"] = json!(c);
        }
        let id = next_id();
        a.send(&json!({"type": "agent_query", "id": id, "payload": payload}));
        let raw = recv_text(&mut a);
        assert!(raw.len() <= 8 * 1024, "a reply of {} bytes", raw.len());
        let reply: Value = serde_json::from_str(&raw).unwrap();
        let ids = listed_ids(&reply);
        assert!(!ids.is_empty() && ids.len() < 12, "{}", ids.len());
        seen.extend(ids);
        match reply["payload"]["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 12);
}

#[test]
fn many_status_changes_of_an_agent_at_its_limits_leave_pings_fast() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    // max_capabilities (256) names, each on many agents.
    for i in 0..50 {
        register(
            &mut a,
            agent(&format!("w{i:02}"), json!({"tools": names(256, "tool")})),
        );
    }
    let mut bystander = Client::authed(&gw, TOKEN_BOB);
    let started = std::time::Instant::now();
    for i in 0..400 {
        let status = if i % 2 == 0 { "busy" } else { "online" };
        a.send_msg(
            "agent_heartbeat",
            json!({"agentId": "w00", "status": status}),
        );
    }
    let reply = bystander.request("ping", json!({}));
    assert_eq!(reply["type"], "pong");
    // 400 heartbeats and a ping: far under the seconds the old index took.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn stored_json_with_a_key_twice_or_nested_past_128_is_refused_naming_its_field() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    let deep = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
    let cases = [
        (
            r#"{"custom":{"x":true,"x":false}}"#.to_owned(),
            "{}".to_owned(),
            "capabilities",
        ),
        (
            r#"{"tools":["t"],"tools":["u"]}"#.to_owned(),
            "{}".to_owned(),
            "capabilities",
        ),
        (
            r#"{"custom":{"o":{"ab":1,"a\u0062":2}}}"#.to_owned(),
            "{}".to_owned(),
            "capabilities",
        ),
        (
            "{}".to_owned(),
            r#"{"role":"user","role":"admin"}"#.to_owned(),
            "metadata",
        ),
        (
            "{}".to_owned(),
            format!(r#"{{"k":[{{"a":1,"a":2}}],{}}}"#, r#""z":0"#),
            "metadata",
        ),
        // Nesting counts over the whole message: past 128 levels it is refused as the
        // payload's, before a field is read.
        (
            "{}".to_owned(),
            format!(r#"{{"d":{}}}"#, deep(126)),
            "payload",
        ),
    ];
    for (capabilities, metadata, field) in &cases {
        let id = next_id();
        a.send_text(&format!(
            r#"{{"type":"agent_register","id":"{id}","payload":{{"agentId":"ag","type":"cli","name":"n","capabilities":{capabilities},"metadata":{metadata}}}}}"#
        ));
        let reply = a.recv();
        assert_eq!(reply["replyTo"], id.as_str(), "{reply}");
        assert_field(&reply, field);
    }
    // Nothing was stored, and the same agent without the duplicate registers.
    let list = b.request("agent_query", json!({}));
    assert_eq!(listed_ids(&list), Vec::<String>::new(), "{list}");
    let id = next_id();
    a.send_text(&format!(
        r#"{{"type":"agent_register","id":"{id}","payload":{{"agentId":"ag","type":"cli","name":"n","capabilities":{{"custom":{{"x":true,"y":false}}}},"metadata":{{"role":"user","d":{}}}}}}}"#,
        deep(125)
    ));
    // (Read as text: the reply nests deeper than serde_json reads.)
    let reply = recv_text(&mut a);
    assert!(reply.contains(r#""type":"agent_info""#), "{reply}");
    b.send_text(r#"{"type":"agent_query","id":"q","payload":{}}"#);
    let text = recv_text(&mut b);
    assert!(text.contains(r#""custom":{"x":true,"y":false}"#), "{text}");
    assert!(
        text.contains(r#""metadata":{"role":"user","d":[["#),
        "{text}"
    );
}
