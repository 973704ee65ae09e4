//! A reload (PROTOCOL section 12) through the core: revoked tokens close their connections,
//! scopes follow the new lists from the next message, a refused configuration changes
//! nothing.

use super::*;
use crate::app::TransportLimits;

fn tokens(pairs: &[(&str, &str)]) -> Vec<AuthToken> {
    pairs
        .iter()
        .map(|(user, secret)| AuthToken {
            user: user.to_string(),
            secret: secret.to_string(),
        })
        .collect()
}

impl Harness {
    /// Open a connection and authenticate it with `token`.
    fn authed_with(&mut self, token: &str) -> ConnId {
        let (conn, _) = self.open();
        let o = self.req(conn, "auth", "a", json!({ "token": token }));
        o.reply(conn, "auth_success", "a");
        conn
    }

    fn reload(&mut self, config: Config) -> (Result<Vec<&'static str>, String>, Output) {
        let mut result = None;
        let o = self.run(|core, now, out| {
            result = Some(core.reload(config, now, out).map_err(|e| e.to_string()));
        });
        (result.expect("called"), o)
    }

    /// The limits the last call handed to the transport.
    fn limits(&self) -> Vec<TransportLimits> {
        self.out
            .list()
            .iter()
            .filter_map(|a| match a {
                Action::SetLimits(limits) => Some((**limits).clone()),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn a_token_no_longer_configured_closes_exactly_its_connections() {
    let config = Config {
        auth_tokens: tokens(&[("alice", "a1"), ("bob", "b1"), ("carol", "c1")]),
        ..Config::default()
    };
    let mut h = Harness::new(config.clone());
    let alice = h.authed_with("a1");
    let bob = h.authed_with("b1");
    let carol = h.authed_with("c1");
    let (pending, _) = h.open();
    // alice's token is gone; carol's secret now names dave (the pair carol:c1 is gone).
    let new = Config {
        auth_tokens: tokens(&[("bob", "b1"), ("dave", "c1")]),
        ..config
    };
    let (result, o) = h.reload(new);
    assert_eq!(result, Ok(vec!["auth_tokens"]));
    let mut closes = o.closes.clone();
    closes.sort();
    assert_eq!(
        closes,
        [
            (alice, 1008, "Token revoked".to_owned()),
            (carol, 1008, "Token revoked".to_owned())
        ]
    );
    assert_eq!(
        o.events,
        [Event::ConfigReloaded {
            changed: vec!["auth_tokens".into()]
        }]
    );
    h.req(bob, "ping", "p", json!({})).reply(bob, "pong", "p");
    h.req(pending, "ping", "p", json!({}))
        .reply(pending, "pong", "p");
    // The new token works, the old one no longer does.
    let (late, _) = h.open();
    h.req(late, "auth", "x", json!({"token": "a1"}))
        .error(late, "AUTH_FAILED", Some("x"));
    h.authed_with("c1");
}

#[test]
fn scopes_follow_the_new_lists_from_the_next_message() {
    let mut h = Harness::new(token_config());
    let (alice, _) = h.authed();
    h.req(alice, "agent_query", "q1", json!({}))
        .reply(alice, "agent_list", "q1");
    let (result, o) = h.reload(no_route_config());
    assert_eq!(result, Ok(vec!["allow_route"]));
    assert!(o.closes.is_empty());
    let e = h
        .req(alice, "agent_query", "q2", json!({}))
        .error(alice, "FORBIDDEN", Some("q2"))
        .clone();
    assert_eq!(e["details"]["scope"], "route");
    let (result, _) = h.reload(Config {
        admin_users: vec!["alice".into()],
        ..no_route_config()
    });
    assert_eq!(result, Ok(vec!["admin_users"]));
    h.req(alice, "agent_query", "q3", json!({}))
        .reply(alice, "agent_list", "q3");
}

fn no_route_config() -> Config {
    Config {
        allow_route: vec!["bob".into()],
        ..token_config()
    }
}

#[test]
fn a_changed_password_closes_the_password_connections() {
    let config = Config {
        auth_mode: AuthMode::Password,
        auth_password: Some("pw1".into()),
        ..Config::default()
    };
    let mut h = Harness::new(config.clone());
    let (conn, _) = h.open();
    h.req(conn, "auth", "a", json!({"password": "pw1"}))
        .reply(conn, "auth_success", "a");
    let (same, o) = h.reload(config.clone());
    assert_eq!(same, Ok(vec![]));
    assert!(o.closes.is_empty());
    let (result, o) = h.reload(Config {
        auth_password: Some("pw2".into()),
        ..config
    });
    assert_eq!(result, Ok(vec!["auth_password"]));
    assert_eq!(o.closes, [(conn, 1008, "Token revoked".to_owned())]);
}

#[test]
fn a_refused_configuration_changes_nothing() {
    let mut h = Harness::new(token_config());
    let (alice, _) = h.authed();
    let broken = Config {
        auth_tokens: Vec::new(),
        max_message_size: 64 << 20, // over max_payload
        ..token_config()
    };
    let (result, o) = h.reload(broken);
    assert!(result.unwrap_err().contains("max_message_size"));
    assert!(o.closes.is_empty() && o.events.is_empty() && h.out.is_empty());
    h.req(alice, "ping", "p", json!({}))
        .reply(alice, "pong", "p");
    h.authed_with("hunter2");
}

#[test]
fn keys_that_cannot_change_keep_their_value_and_bounds_reach_the_transport() {
    let mut h = Harness::new(token_config());
    let (alice, _) = h.authed();
    let new = Config {
        port: 1,
        heartbeat_interval_ms: 1000,
        cors_origins: vec!["https://app.example".into()],
        max_payload: 1 << 20,
        max_message_size: 1100,
        max_name_bytes: 4,
        ..token_config()
    };
    let (result, _) = h.reload(new);
    assert_eq!(
        result,
        Ok(vec![
            "cors_origins",
            "max_payload",
            "max_message_size",
            "max_name_bytes"
        ])
    );
    assert_eq!(h.core.config().port, Config::default().port);
    assert_eq!(h.core.config().heartbeat_interval_ms, 30_000);
    let limits = h.limits();
    assert_eq!(limits.len(), 1);
    assert_eq!(limits[0].max_payload, 1 << 20);
    assert!(!limits[0].origins.allows(Some("http://localhost:1")));
    assert!(limits[0].origins.allows(Some("https://app.example")));
    // The new bounds check the next message.
    let big = format!(
        r#"{{"type":"ping","id":"p","payload":{{"x":"{}"}}}}"#,
        "y".repeat(1100)
    );
    h.text(alice, &big).error(alice, "MESSAGE_TOO_LARGE", None);
    h.req(
        alice,
        "session_create",
        "s",
        json!({"sessionId": "r", "name": "longer"}),
    )
    .error(alice, "INVALID_MESSAGE", Some("s"));
}

#[test]
fn rate_limiting_turned_on_and_off_applies_to_open_connections() {
    let mut h = Harness::new(token_config());
    let (alice, _) = h.authed();
    let limited = Config {
        rate_limit_per_sec: 1,
        rate_limit_burst: 2,
        ..token_config()
    };
    h.reload(limited.clone()).0.expect("valid");
    h.req(alice, "ping", "1", json!({}))
        .reply(alice, "pong", "1");
    h.req(alice, "ping", "2", json!({}))
        .reply(alice, "pong", "2");
    h.req(alice, "ping", "3", json!({}))
        .error(alice, "RATE_LIMITED", Some("3"));
    h.reload(token_config()).0.expect("valid");
    for i in 0..10 {
        let id = i.to_string();
        h.req(alice, "ping", &id, json!({}))
            .reply(alice, "pong", &id);
    }
}

#[test]
fn the_handle_command_reloads_too() {
    let mut h = Harness::new(token_config());
    let (alice, _) = h.authed();
    let o = h.command(Command::Reload(Box::new(Config {
        auth_tokens: tokens(&[("bob", "hunter2")]),
        ..token_config()
    })));
    assert_eq!(o.closes, [(alice, 1008, "Token revoked".to_owned())]);
    // A refused one is logged and changes nothing.
    let o = h.command(Command::Reload(Box::new(Config {
        max_list_items: 0,
        ..token_config()
    })));
    assert!(o.closes.is_empty() && o.events.is_empty());
    assert_eq!(h.core.config().auth_tokens.len(), 1);
}
