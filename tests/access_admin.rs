//! The admin messages (PROTOCOL section 12) over real sockets: `admin_kick` and
//! `admin_clients`, allowed with the `admin` scope only.

mod common;

use std::collections::HashSet;

use common::*;
use gateway::Config;
use serde_json::{json, Value};

const OPS: &str = TOKEN_OPS;

/// alice and bob (defaults), and ops with the `admin` scope.
fn config() -> Config {
    admin_config()
}

fn kick(ops: &mut Client, target: &Client, reason: Option<&str>) {
    let mut payload = json!({"clientId": target.client_id});
    if let Some(reason) = reason {
        payload["reason"] = json!(reason);
    }
    let reply = ops.request("admin_kick", payload);
    assert_eq!(reply["type"], "admin_result", "{reply}");
    assert_eq!(reply["payload"], json!({"status": "kicked"}), "{reply}");
}

/// The close code and reason `client` sees.
fn closed(client: &mut Client) -> (u16, String) {
    let frame = client.expect_close().expect("a close frame");
    (u16::from(frame.code), frame.reason.as_str().to_owned())
}

#[test]
fn admin_kick_closes_the_connection_with_kicked() {
    let gw = TestGateway::start(config());
    let mut ops = Client::authed(&gw, OPS);
    let mut bob = Client::authed(&gw, TOKEN_BOB);
    kick(&mut ops, &bob, None);
    assert_eq!(closed(&mut bob), (1008, "Kicked".to_owned()));

    let mut alice = Client::authed(&gw, TOKEN);
    kick(&mut ops, &alice, Some("too many requests"));
    assert_eq!(
        closed(&mut alice),
        (1008, "Kicked: too many requests".to_owned())
    );
    // An empty reason is none.
    let mut alice = Client::authed(&gw, TOKEN);
    kick(&mut ops, &alice, Some(""));
    assert_eq!(closed(&mut alice), (1008, "Kicked".to_owned()));
    // The admin's connection stays usable.
    assert_eq!(ops.request("ping", json!({}))["type"], "pong");
}

#[test]
fn a_long_reason_is_cut_on_a_character_boundary_to_fit_a_close_frame() {
    let gw = TestGateway::start(config());
    let mut ops = Client::authed(&gw, OPS);
    let mut bob = Client::authed(&gw, TOKEN_BOB);
    // 2-byte characters: "Kicked: " and 57 of them make 122 bytes; a 58th would pass 123.
    let reason = "é".repeat(300);
    kick(&mut ops, &bob, Some(&reason));
    let (code, text) = closed(&mut bob);
    assert_eq!(code, 1008);
    assert_eq!(text, format!("Kicked: {}", "é".repeat(57)));
    assert_eq!(text.len(), 122);

    let mut alice = Client::authed(&gw, TOKEN);
    kick(&mut ops, &alice, Some(&"x".repeat(1000)));
    let (_, text) = closed(&mut alice);
    assert_eq!(text, format!("Kicked: {}", "x".repeat(115)));
}

#[test]
fn an_unknown_or_gone_client_is_target_not_found() {
    let gw = TestGateway::start(config());
    let mut ops = Client::authed(&gw, OPS);
    let reply = ops.request("admin_kick", json!({"clientId": "no-such-client"}));
    assert_error(&reply, "TARGET_NOT_FOUND");
    let mut bob = Client::authed(&gw, TOKEN_BOB);
    let bob_id = bob.client_id.clone();
    kick(&mut ops, &bob, None);
    closed(&mut bob);
    assert!(eventually(|| {
        let reply = ops.request("admin_kick", json!({"clientId": bob_id}));
        assert_eq!(reply["type"], "error", "{reply}");
        reply["payload"]["code"] == "TARGET_NOT_FOUND"
    }));
    // Bad fields are named.
    for (payload, field) in [
        (json!({}), "clientId"),
        (json!({"clientId": ""}), "clientId"),
        (json!({"clientId": 5}), "clientId"),
        (json!({"clientId": "x", "reason": 5}), "reason"),
    ] {
        let reply = ops.request("admin_kick", payload);
        assert_error(&reply, "INVALID_MESSAGE");
        assert_eq!(reply["payload"]["details"]["field"], field, "{reply}");
    }
}

#[test]
fn an_unauthenticated_connection_can_be_kicked() {
    let gw = TestGateway::start(config());
    let mut ops = Client::authed(&gw, OPS);
    let mut stranger = Client::connect(&gw);
    kick(&mut ops, &stranger, Some("bye"));
    assert_eq!(closed(&mut stranger), (1008, "Kicked: bye".to_owned()));
}

#[test]
fn without_the_admin_scope_admin_messages_are_forbidden() {
    let gw = TestGateway::start(config());
    let mut alice = Client::authed(&gw, TOKEN);
    let mut bob = Client::authed(&gw, TOKEN_BOB);
    for (msg_type, payload) in [
        ("admin_kick", json!({"clientId": bob.client_id})),
        ("admin_clients", json!({})),
        ("admin_kick", json!({"clientId": 5})),
    ] {
        let reply = alice.request(msg_type, payload);
        assert_error(&reply, "FORBIDDEN");
        assert_eq!(reply["payload"]["details"]["scope"], "admin", "{reply}");
    }
    // bob was not kicked.
    assert_eq!(bob.request("ping", json!({}))["type"], "pong");
    // auth_mode = none grants every scope but admin.
    let gw = TestGateway::start(no_auth_config());
    let mut anon = Client::connect(&gw);
    let reply = anon.request("admin_clients", json!({}));
    assert_error(&reply, "FORBIDDEN");
    assert_eq!(reply["payload"]["details"]["scope"], "admin", "{reply}");
}

/// Every page of `admin_clients` with `limit` (null: the default); each reply checked
/// against `max`.
fn all_pages(ops: &mut Client, limit: Value, max: usize) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let reply = ops.request("admin_clients", json!({"limit": limit, "cursor": cursor}));
        assert_eq!(reply["type"], "client_list", "{reply}");
        let size = reply.to_string().len();
        assert!(size <= max, "a reply of {size} bytes");
        pages.push(reply["payload"]["clients"].as_array().unwrap().clone());
        match reply["payload"].get("next") {
            Some(next) => cursor = next.clone(),
            None => return pages,
        }
        assert!(pages.len() < 200, "paging does not end");
    }
}

fn client_ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|c| c["clientId"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn admin_clients_lists_every_connection_with_its_fields() {
    let gw = TestGateway::start(config());
    let before = now_ms();
    let mut ops = Client::authed(&gw, OPS);
    let mut alice = Client::authed(&gw, TOKEN);
    let stranger = Client::connect(&gw);
    let after = now_ms();
    for session in ["s-1", "s-2"] {
        let reply = alice.request("session_create", json!({"sessionId": session}));
        assert_eq!(reply["payload"]["status"], "created", "{reply}");
    }
    let reply = ops.request("admin_clients", json!({}));
    assert_eq!(reply["type"], "client_list", "{reply}");
    assert!(reply["payload"].get("next").is_none(), "{reply}");
    let records = reply["payload"]["clients"].as_array().unwrap();
    assert_eq!(records.len(), 3, "{reply}");
    let record = |client: &Client| {
        records
            .iter()
            .find(|r| r["clientId"] == client.client_id.as_str())
            .unwrap_or_else(|| panic!("{} not listed: {reply}", client.client_id))
    };
    let (o, a, s) = (record(&ops), record(&alice), record(&stranger));
    assert_eq!(o["userId"], "ops");
    assert_eq!(o["sessions"], json!([]));
    assert_eq!(a["userId"], "alice");
    assert_eq!(a["authenticated"], true);
    assert_eq!(a["sessions"], json!(["s-1", "s-2"]));
    assert_eq!(s["userId"], Value::Null, "{s}");
    assert_eq!(s["authenticated"], false);
    assert_eq!(s["sessions"], json!([]));
    for record in records {
        let at = record["connectedAt"].as_u64().expect("connectedAt");
        assert!(
            at + 1000 >= before && at <= after + 1000,
            "{record} ({before}..{after})"
        );
        let keys: HashSet<&str> = record
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let expected = [
            "clientId",
            "userId",
            "authenticated",
            "connectedAt",
            "sessions",
        ];
        assert_eq!(keys, expected.into_iter().collect());
    }
    // A connection that closed is no longer listed.
    drop(stranger);
    assert!(eventually(|| {
        let reply = ops.request("admin_clients", json!({}));
        reply["payload"]["clients"].as_array().unwrap().len() == 2
    }));
}

#[test]
fn admin_clients_pages_list_every_client_once() {
    let mut config = config();
    config.max_list_items = 4;
    let gw = TestGateway::start(config);
    let mut ops = Client::authed(&gw, OPS);
    let mut others: Vec<Client> = Vec::new();
    for i in 0..9 {
        others.push(match i % 3 {
            0 => Client::authed(&gw, TOKEN),
            1 => Client::authed(&gw, TOKEN_BOB),
            _ => Client::connect(&gw),
        });
    }
    let mut expected = vec![ops.client_id.clone()];
    expected.extend(others.iter().map(|c| c.client_id.clone()));
    expected.sort();

    let pages = all_pages(&mut ops, json!(3), usize::MAX);
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3, 1]);
    let mut listed = client_ids(&pages.concat());
    listed.sort();
    assert_eq!(listed, expected);
    let pages = all_pages(&mut ops, Value::Null, usize::MAX);
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 2]);

    // Between pages: one that closed is skipped, every other one still comes once.
    let first = ops.request("admin_clients", json!({"limit": 2}));
    let on_first = client_ids(first["payload"]["clients"].as_array().unwrap());
    let next = first["payload"]["next"].clone();
    let later = |id: &String| !on_first.contains(id);
    let gone = others.iter().position(|c| later(&c.client_id)).unwrap();
    let gone = others.remove(gone).client_id.clone();
    let mut rest_expected: Vec<String> = expected
        .iter()
        .filter(|id| later(id) && **id != gone)
        .cloned()
        .collect();
    rest_expected.sort();
    assert!(eventually(|| {
        let mut rest = Vec::new();
        let mut cursor = next.clone();
        loop {
            let reply = ops.request("admin_clients", json!({"limit": 4, "cursor": cursor}));
            rest.extend(client_ids(reply["payload"]["clients"].as_array().unwrap()));
            match reply["payload"].get("next") {
                Some(c) => cursor = c.clone(),
                None => break,
            }
        }
        rest.sort();
        rest == rest_expected
    }));

    // Bad limits and cursors are named; the connection stays usable.
    for (payload, field) in [
        (json!({"limit": 0}), "limit"),
        (json!({"limit": 5}), "limit"),
        (json!({"limit": "2"}), "limit"),
        (json!({"cursor": "p1"}), "cursor"),
        (json!({"cursor": 1}), "cursor"),
        (json!({"cursor": "c"}), "cursor"),
    ] {
        let reply = ops.request("admin_clients", payload);
        assert_error(&reply, "INVALID_MESSAGE");
        assert_eq!(reply["payload"]["details"]["field"], field, "{reply}");
    }
    assert_eq!(ops.request("ping", json!({}))["type"], "pong");
}

#[test]
fn no_client_list_is_larger_than_max_message_size() {
    const MAX: usize = 2048;
    let mut config = config();
    config.max_message_size = MAX;
    let gw = TestGateway::start(config);
    let mut ops = Client::authed(&gw, OPS);
    // 12 clients in 4 sessions of 100-byte ids each: some 450 bytes a record.
    let mut clients = Vec::new();
    for i in 0..12 {
        let mut client = Client::authed(&gw, TOKEN);
        for s in 0..4 {
            let session = format!("{i:02}-{s}-{}", "s".repeat(95));
            let reply = client.request("session_create", json!({"sessionId": session}));
            assert_eq!(reply["payload"]["status"], "created", "{reply}");
        }
        clients.push(client);
    }
    let pages = all_pages(&mut ops, Value::Null, MAX);
    assert!(pages.len() > 3, "{} pages", pages.len());
    assert!(pages.iter().all(|p| !p.is_empty()));
    let listed = client_ids(&pages.concat());
    assert_eq!(listed.len(), 13);
    assert_eq!(listed.iter().collect::<HashSet<_>>().len(), 13);
}
