//! The checks before a handler runs: size, parse, envelope, rate limit, in that order.

use super::*;

#[test]
fn oversized_messages_are_refused_and_the_connection_kept() {
    let mut h = Harness::new(Config {
        max_message_size: 64,
        ..none_config()
    });
    let (a, _) = h.open();
    let big = format!(
        r#"{{"type":"ping","id":"big","payload":{{"p":"{}"}}}}"#,
        "x".repeat(64)
    );
    let o = h.text(a, &big);
    o.error(a, "MESSAGE_TOO_LARGE", None);
    assert!(o.closes.is_empty());
    let frame = |n: usize| {
        format!(
            r#"{{"type":"ping","id":"1","payload":{{"p":"{}"}}}}"#,
            "x".repeat(n)
        )
    };
    let exact = frame(64 - frame(0).len());
    assert_eq!(exact.len(), 64);
    h.text(a, &exact).reply(a, "pong", "1");
}

#[test]
fn unparseable_messages_are_parse_errors() {
    let mut h = Harness::new(none_config());
    let (a, _) = h.open();
    for text in [
        "",
        "hello",
        "[1,2,3]",
        "\"str\"",
        "17",
        "null",
        "{\"type\":\"ping\"",
        "{\"type\":\"ping\",\"id\":\"1\"}{}",
    ] {
        let o = h.text(a, text);
        o.error(a, "PARSE_ERROR", None);
        assert!(o.closes.is_empty());
    }
    // Binary frames are read as UTF-8 JSON too.
    h.binary(a, b"{\"type\":\"ping\",\"id\":\"b1\"}")
        .reply(a, "pong", "b1");
    h.binary(a, b"{\"type\":\"ping\",\"id\":\"\xff\"}")
        .error(a, "PARSE_ERROR", None);
    h.binary(a, b"\xfe\xff").error(a, "PARSE_ERROR", None);
}

#[test]
fn malformed_envelopes_are_invalid_messages() {
    let mut h = Harness::new(none_config());
    let (a, _) = h.open();
    let long_id = "i".repeat(129);
    for (text, field, reply_to) in [
        (r#"{"id":"1"}"#.to_owned(), "type", Some("1")),
        (r#"{"type":"","id":"1"}"#.to_owned(), "type", Some("1")),
        (
            r#"{"type":["ping"],"id":"1"}"#.to_owned(),
            "type",
            Some("1"),
        ),
        (r#"{"type":"ping"}"#.to_owned(), "id", None),
        (r#"{"type":"ping","id":""}"#.to_owned(), "id", None),
        (r#"{"type":"ping","id":12}"#.to_owned(), "id", None),
        (format!(r#"{{"type":"ping","id":"{long_id}"}}"#), "id", None),
        (
            r#"{"type":"ping","id":"1","payload":7}"#.to_owned(),
            "payload",
            Some("1"),
        ),
    ] {
        let o = h.text(a, &text);
        let err = o.error(a, "INVALID_MESSAGE", reply_to);
        assert_eq!(err["details"]["field"], field, "{text}");
    }
}

#[test]
fn the_rate_limit_refuses_without_handling() {
    let mut h = Harness::new(Config {
        rate_limit_per_sec: 2,
        rate_limit_burst: 3,
        ..token_config()
    });
    let (a, _) = h.open();
    // auth takes a token too.
    h.text(
        a,
        r#"{"type":"auth","id":"a","payload":{"token":"secret"}}"#,
    )
    .reply(a, "auth_success", "a");
    h.text(a, r#"{"type":"ping","id":"1"}"#)
        .reply(a, "pong", "1");
    h.text(
        a,
        r#"{"type":"session_create","id":"2","payload":{"sessionId":"s"}}"#,
    )
    .reply(a, "session_info", "2");
    let o = h.text(
        a,
        r#"{"type":"session_leave","id":"3","payload":{"sessionId":"s"}}"#,
    );
    o.error(a, "RATE_LIMITED", Some("3"));
    assert!(o.closes.is_empty());
    assert_eq!(h.core.session_count(), 1, "not handled");
    // Refused messages before the limit step take no token.
    h.text(a, "garbage").error(a, "PARSE_ERROR", None);
    h.advance(499);
    h.text(a, r#"{"type":"ping","id":"4"}"#)
        .error(a, "RATE_LIMITED", Some("4"));
    h.advance(1);
    h.text(a, r#"{"type":"ping","id":"5"}"#)
        .reply(a, "pong", "5");
    h.text(a, r#"{"type":"ping","id":"6"}"#)
        .error(a, "RATE_LIMITED", Some("6"));
    // Each connection has its own bucket.
    let (b, _) = h.open();
    h.text(b, r#"{"type":"ping","id":"7"}"#)
        .reply(b, "pong", "7");
}

#[test]
fn rate_limited_before_the_auth_gate() {
    let mut h = Harness::new(Config {
        rate_limit_per_sec: 1,
        rate_limit_burst: 1,
        ..token_config()
    });
    let (a, _) = h.open();
    h.text(a, r#"{"type":"chat","id":"1"}"#)
        .error(a, "AUTH_REQUIRED", Some("1"));
    h.text(a, r#"{"type":"chat","id":"2"}"#)
        .error(a, "RATE_LIMITED", Some("2"));
}

#[test]
fn every_request_gets_exactly_one_answer_with_reply_to() {
    let mut h = Harness::new(token_config());
    let (a, _) = h.authed();
    let (b, b_id) = h.authed();
    h.create(b, "room");
    for (msg_type, payload) in [
        ("ping", json!({})),
        ("auth", json!({"token":"secret"})),
        (
            "connect",
            json!({"deviceId":"d","role":"node","protocolVersion":1}),
        ),
        ("session_create", json!({})),
        ("session_join", json!({"sessionId":"room"})),
        ("session_leave", json!({"sessionId":"room"})),
        ("session_patch", json!({"sessionKey":"room","patch":{}})),
        (
            "agent_register",
            json!({"type":"cli","name":"n","capabilities":{}}),
        ),
        ("agent_heartbeat", json!({})),
        ("agent_query", json!({})),
        ("agent_unregister", json!({})),
        ("whatever", json!({})),
    ] {
        let o = h.req(a, msg_type, "q", payload);
        let mine = o.to(a);
        assert_eq!(mine.len(), 1, "{msg_type}: {mine:#?}");
        assert_eq!(mine[0]["replyTo"], "q", "{msg_type}");
        check_envelope(mine[0]);
    }
    let _ = b_id;
}
