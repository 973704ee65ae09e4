//! Scopes (PROTOCOL section 12): each scope granted and refused over real sockets, the scope
//! check before any other, and `auth_mode = none` granting every scope but `admin`.

mod common;

use common::*;
use gateway::Config;
use serde_json::{json, Value};

const CAROL: &str = TOKEN_CAROL;
const OPS: &str = TOKEN_OPS;

/// alice: every scope but admin (defaults); bob: sessions only; carol: agents only;
/// ops: admin.
fn config() -> Config {
    let mut config = with_token(admin_config(), "carol", CAROL);
    config.allow_sessions = vec!["alice".into(), "bob".into()];
    config.allow_agents = vec!["alice".into(), "carol".into()];
    config.allow_route = vec!["alice".into()];
    config
}

/// One request of each scope, with a payload that would succeed (or fail for a reason
/// other than the scope).
fn requests() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "sessions",
            "session_create",
            json!({"sessionId": "s-scope"}),
        ),
        ("sessions", "session_join", json!({"sessionId": "s-scope"})),
        (
            "sessions",
            "presence",
            json!({"sessionId": "s-scope", "status": "online"}),
        ),
        ("sessions", "session_leave", json!({"sessionId": "s-scope"})),
        (
            "agents",
            "agent_register",
            json!({"name": "a", "type": "custom", "capabilities": {}}),
        ),
        ("agents", "agent_heartbeat", json!({})),
        ("agents", "agent_unregister", json!({})),
        (
            "agents",
            "route_response",
            json!({"requestId": "nope", "response": {}}),
        ),
        ("route", "agent_query", json!({})),
        ("route", "presence_query", json!({})),
        (
            "route",
            "route_request",
            json!({"target": "nobody", "request": {}}),
        ),
    ]
}

fn assert_forbidden(reply: &Value, scope: &str) {
    assert_error(reply, "FORBIDDEN");
    assert_eq!(reply["payload"]["details"]["scope"], scope, "{reply}");
}

#[test]
fn each_scope_is_refused_without_it_and_allowed_with_it() {
    let gw = TestGateway::start(config());
    let users = [
        ("alice", TOKEN),
        ("bob", TOKEN_BOB),
        ("carol", CAROL),
        ("ops", OPS),
    ];
    for (user, token) in users {
        let mut client = Client::authed(&gw, token);
        for (scope, msg_type, payload) in requests() {
            let id = client.send_msg(msg_type, payload);
            let granted = matches!(
                (user, scope),
                ("alice" | "ops", _) | ("bob", "sessions") | ("carol", "agents")
            );
            // Requests answered only when refused (presence, route_response,
            // route_request to a missing target) still answer here: a refusal of some kind.
            if granted {
                if matches!(msg_type, "presence") {
                    continue;
                }
                let reply = client.recv();
                assert_eq!(reply["replyTo"], id.as_str(), "{user} {msg_type}: {reply}");
                assert_ne!(
                    reply["payload"]["code"], "FORBIDDEN",
                    "{user} may {msg_type}: {reply}"
                );
            } else {
                let reply = client.recv();
                assert_eq!(reply["replyTo"], id.as_str(), "{user} {msg_type}: {reply}");
                assert_forbidden(&reply, scope);
            }
        }
        // ping, auth and connect need no scope.
        assert_eq!(client.request("ping", json!({}))["type"], "pong");
        let hello = client.request(
            "connect",
            json!({"deviceId": "d", "role": "control", "protocolVersion": 1}),
        );
        assert_eq!(hello["type"], "hello_ok", "{hello}");
    }
}

#[test]
fn the_scope_check_comes_before_the_payload_check() {
    let gw = TestGateway::start(config());
    let mut carol = Client::authed(&gw, CAROL);
    // An invalid payload of a type carol may not send: FORBIDDEN, not INVALID_MESSAGE.
    let reply = carol.request("session_create", json!({"sessionId": 5}));
    assert_forbidden(&reply, "sessions");
    let reply = carol.request_envelope(json!({
        "type": "chat", "sessionId": "x", "payload": {"a": 1, "a": 2}
    }));
    assert_forbidden(&reply, "sessions");
    // The connection stays usable.
    assert_eq!(carol.request("ping", json!({}))["type"], "pong");
}

#[test]
fn without_auth_every_scope_but_admin_is_granted_and_the_lists_are_ignored() {
    let gw = TestGateway::start(Config {
        allow_sessions: Vec::new(),
        allow_agents: Vec::new(),
        allow_route: Vec::new(),
        admin_users: vec!["*".into()],
        ..no_auth_config()
    });
    let mut client = Client::connect(&gw);
    let reply = client.request("session_create", json!({"sessionId": "open"}));
    assert_eq!(reply["type"], "session_info", "{reply}");
    let reply = client.request("agent_query", json!({}));
    assert_eq!(reply["type"], "agent_list", "{reply}");
    let reply = client.request(
        "agent_register",
        json!({"name": "a", "type": "custom", "capabilities": {}}),
    );
    assert_eq!(reply["type"], "agent_info", "{reply}");
}

#[test]
fn an_empty_list_grants_nobody_and_a_star_everybody() {
    let gw = TestGateway::start(Config {
        allow_sessions: vec!["*".into()],
        allow_route: Vec::new(),
        ..test_config()
    });
    let mut alice = Client::authed(&gw, TOKEN);
    let reply = alice.request("agent_query", json!({}));
    assert_forbidden(&reply, "route");
    let reply = alice.request("session_create", json!({"sessionId": "fine"}));
    assert_eq!(reply["type"], "session_info", "{reply}");
}
