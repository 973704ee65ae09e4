use super::*;
use crate::testkit::Rng;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn rules() -> UpgradeRules {
    rules_with(8192, false)
}

fn rules_with(max_header_bytes: usize, require_origin: bool) -> UpgradeRules {
    let patterns = vec![
        "http://localhost:*".to_string(),
        "http://127.0.0.1:*".to_string(),
    ];
    UpgradeRules {
        path: "/ws".to_string(),
        max_header_bytes,
        origins: OriginPolicy::new(&patterns, require_origin),
    }
}

const BASE: [(&str, &str); 6] = [
    ("Host", "localhost:18789"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
    ("Origin", "http://localhost:3000"),
];

/// A request head from a request line and header fields.
fn head(request_line: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut text = format!("{request_line}\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.into_bytes()
}

/// The base upgrade headers with `changes` applied: `Some(value)` replaces the field (or
/// appends it when absent), `None` removes it.
fn headers_with<'a>(changes: &[(&'a str, Option<&'a str>)]) -> Vec<(&'a str, &'a str)> {
    let mut headers: Vec<(&str, &str)> = BASE.to_vec();
    for (name, change) in changes {
        let position = headers.iter().position(|(n, _)| n == name);
        match (position, change) {
            (Some(i), Some(value)) => headers[i].1 = value,
            (Some(i), None) => {
                headers.remove(i);
            }
            (None, Some(value)) => headers.push((name, value)),
            (None, None) => {}
        }
    }
    headers
}

fn upgrade_with(changes: &[(&str, Option<&str>)]) -> Vec<u8> {
    head("GET /ws HTTP/1.1", &headers_with(changes))
}

fn upgraded(head_len: usize) -> Outcome {
    Outcome::Upgrade {
        accept_key: ACCEPT.to_string(),
        head_len,
    }
}

fn plain(path: &str, head_len: usize) -> Outcome {
    Outcome::Plain {
        path: path.to_string(),
        head_len,
    }
}

/// Parses `buf` whole and split at every byte offset. Every prefix must be `Partial` until
/// the head is complete (or `max_header_bytes` is reached), then give the whole outcome.
fn split_outcome(buf: &[u8], rules: &UpgradeRules) -> Outcome {
    let whole = parse_request(buf, rules);
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(usize::MAX, |i| i + 4);
    let decided_at = head_end.min(rules.max_header_bytes);
    for i in 0..=buf.len() {
        let part = parse_request(&buf[..i], rules);
        if i < decided_at {
            assert_eq!(part, Outcome::Partial, "prefix of {i} bytes");
        } else {
            assert_eq!(part, whole, "prefix of {i} bytes");
        }
    }
    whole
}

/// For requests that may be refused before their head ends: every prefix gives `Partial`
/// or the whole outcome.
fn loose_split_outcome(buf: &[u8], rules: &UpgradeRules) -> Outcome {
    let whole = parse_request(buf, rules);
    for i in 0..=buf.len() {
        let part = parse_request(&buf[..i], rules);
        if part != Outcome::Partial {
            assert_eq!(part, whole, "prefix of {i} bytes");
        }
    }
    whole
}

fn outcome(buf: &[u8]) -> Outcome {
    split_outcome(buf, &rules())
}

fn refused(buf: &[u8]) -> Refusal {
    match outcome(buf) {
        Outcome::Refuse(refusal) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn valid_upgrade() {
    let buf = upgrade_with(&[]);
    assert_eq!(outcome(&buf), upgraded(buf.len()));
}

#[test]
fn upgrade_with_query_string() {
    let buf = head("GET /ws?token=abc&x=1 HTTP/1.1", &headers_with(&[]));
    assert_eq!(outcome(&buf), upgraded(buf.len()));
    let buf = head("GET /ws? HTTP/1.1", &headers_with(&[]));
    assert_eq!(outcome(&buf), upgraded(buf.len()));
}

#[test]
fn rfc_6455_sample_accept() {
    let buf = upgrade_with(&[]);
    let Outcome::Upgrade { accept_key, .. } = parse_request(&buf, &rules()) else {
        panic!("expected an upgrade");
    };
    assert_eq!(accept_key, ACCEPT);
    let mut out = Vec::new();
    write_accept(&mut out, &accept_key);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
}

#[test]
fn accept_never_advertises_extensions_or_protocols() {
    let buf = upgrade_with(&[
        ("Sec-WebSocket-Extensions", Some("permessage-deflate")),
        ("Sec-WebSocket-Protocol", Some("chat, superchat")),
    ]);
    let Outcome::Upgrade { accept_key, .. } = outcome(&buf) else {
        panic!("expected an upgrade");
    };
    let mut out = Vec::new();
    write_accept(&mut out, &accept_key);
    let text = String::from_utf8(out).unwrap().to_ascii_lowercase();
    assert!(!text.contains("extensions"));
    assert!(!text.contains("protocol:"));
}

#[test]
fn pipelined_bytes_after_the_head() {
    let request = upgrade_with(&[]);
    let mut buf = request.clone();
    buf.extend_from_slice(&[0x81, 0x85, 1, 2, 3, 4, b'h', b'e', b'l', b'l', b'o']);
    buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(outcome(&buf), upgraded(request.len()));
    let plain_request = head("GET /health HTTP/1.1", &[("Host", "x")]);
    let mut buf = plain_request.clone();
    buf.extend_from_slice(b"GET /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(outcome(&buf), plain("/health", plain_request.len()));
}

#[test]
fn row_1_head_too_large() {
    let big = "x".repeat(9000);
    let buf = upgrade_with(&[("X-Padding", Some(&big))]);
    assert_eq!(refused(&buf), Refusal::HEADERS_TOO_LARGE);
    // Refused as soon as max_header_bytes bytes are buffered without a complete head.
    assert_eq!(
        parse_request(&buf[..8192], &rules()),
        Outcome::Refuse(Refusal::HEADERS_TOO_LARGE)
    );
    assert_eq!(parse_request(&buf[..8191], &rules()), Outcome::Partial);
    // Oversized and also a bad method: 431 comes first.
    let buf = head("POST /ws HTTP/1.1", &[("X-Padding", &big)]);
    assert_eq!(refused(&buf), Refusal::HEADERS_TOO_LARGE);
    // A head that never ends hits the limit too.
    let trickle = format!("GET /ws HTTP/1.1\r\nX: {}", "a".repeat(9000));
    assert_eq!(
        parse_request(trickle.as_bytes(), &rules()),
        Outcome::Refuse(Refusal::HEADERS_TOO_LARGE)
    );
}

#[test]
fn row_1_head_exactly_at_the_limit() {
    let buf = upgrade_with(&[]);
    let exact = rules_with(buf.len(), false);
    assert_eq!(split_outcome(&buf, &exact), upgraded(buf.len()));
    let one_less = rules_with(buf.len() - 1, false);
    assert_eq!(
        split_outcome(&buf, &one_less),
        Outcome::Refuse(Refusal::HEADERS_TOO_LARGE)
    );
    // Pipelined bytes do not count against the limit.
    let mut with_data = buf.clone();
    with_data.extend_from_slice(&[0x81; 100]);
    assert_eq!(split_outcome(&with_data, &exact), upgraded(buf.len()));
}

#[test]
fn row_1_too_many_headers() {
    let names: Vec<String> = (0..MAX_HEADERS).map(|i| format!("X-Extra-{i}")).collect();
    let mut headers = BASE.to_vec();
    for name in &names[..MAX_HEADERS - BASE.len()] {
        headers.push((name, "1"));
    }
    let buf = head("GET /ws HTTP/1.1", &headers);
    assert_eq!(outcome(&buf), upgraded(buf.len()));
    headers.push(("X-One-Too-Many", "1"));
    let buf = head("GET /ws HTTP/1.1", &headers);
    assert_eq!(
        loose_split_outcome(&buf, &rules()),
        Outcome::Refuse(Refusal::TOO_MANY_HEADERS)
    );
}

#[test]
fn row_2_method() {
    let headers = headers_with(&[]);
    for method in ["POST", "PUT", "HEAD", "DELETE", "OPTIONS", "get", "BREW"] {
        let buf = head(&format!("{method} /ws HTTP/1.1"), &headers);
        assert_eq!(refused(&buf), Refusal::METHOD_NOT_ALLOWED, "{method}");
    }
    let buf = head("POST /health HTTP/1.1", &[("Host", "x")]);
    assert_eq!(refused(&buf), Refusal::METHOD_NOT_ALLOWED);
}

#[test]
fn row_2_http_version() {
    let headers = headers_with(&[]);
    let buf = head("GET /ws HTTP/1.0", &headers);
    assert_eq!(refused(&buf), Refusal::HTTP_VERSION);
    let buf = head("POST /ws HTTP/1.0", &headers);
    assert_eq!(refused(&buf), Refusal::HTTP_VERSION);
    let buf = head("GET /health HTTP/1.0", &[]);
    assert_eq!(refused(&buf), Refusal::HTTP_VERSION);
    for line in [
        "GET /ws HTTP/2.0",
        "GET /ws HTTP/1.2",
        "GET /ws HTTP/1",
        "GET /ws",
    ] {
        let buf = head(line, &headers);
        assert_eq!(
            loose_split_outcome(&buf, &rules()),
            Outcome::Refuse(Refusal::MALFORMED),
            "{line}"
        );
    }
}

#[test]
fn row_2_unparseable() {
    let requests: [&[u8]; 9] = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET  /ws HTTP/1.1\r\n\r\n",
        b"GET /ws  HTTP/1.1\r\n\r\n",
        b"GET /w s HTTP/1.1\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"GET /ws HTTP/1.1\rX: y\r\n\r\n",
        b"G\xc3\xa9T /ws HTTP/1.1\r\n\r\n",
    ];
    for buf in requests {
        assert_eq!(
            loose_split_outcome(buf, &rules()),
            Outcome::Refuse(Refusal::MALFORMED),
            "{:?}",
            String::from_utf8_lossy(buf)
        );
    }
}

#[test]
fn row_2_body_is_refused() {
    let buf = upgrade_with(&[("Content-Length", Some("5"))]);
    assert_eq!(refused(&buf), Refusal::BODY_NOT_ALLOWED);
    let buf = upgrade_with(&[("Transfer-Encoding", Some("chunked"))]);
    assert_eq!(refused(&buf), Refusal::BODY_NOT_ALLOWED);
    let buf = head("GET /health HTTP/1.1", &[("Content-Length", "1")]);
    assert_eq!(refused(&buf), Refusal::BODY_NOT_ALLOWED);
    let buf = upgrade_with(&[("Content-Length", Some("0"))]);
    assert_eq!(outcome(&buf), upgraded(buf.len()));
}

#[test]
fn row_3_other_paths_are_plain() {
    for (line, path) in [
        ("GET /health HTTP/1.1", "/health"),
        ("GET /metrics HTTP/1.1", "/metrics"),
        ("GET /other?x=1 HTTP/1.1", "/other"),
        ("GET / HTTP/1.1", "/"),
        ("GET /ws/ HTTP/1.1", "/ws/"),
        ("GET /WS HTTP/1.1", "/WS"),
        ("GET /ws/x?y HTTP/1.1", "/ws/x"),
        ("GET ?ws HTTP/1.1", ""),
        ("GET * HTTP/1.1", "*"),
        ("GET http://localhost/ws HTTP/1.1", "http://localhost/ws"),
    ] {
        let bare = head(line, &[("Host", "localhost")]);
        assert_eq!(outcome(&bare), plain(path, bare.len()), "{line}");
        let with_upgrade = head(line, &headers_with(&[("Origin", Some("http://evil"))]));
        assert_eq!(
            outcome(&with_upgrade),
            plain(path, with_upgrade.len()),
            "{line}"
        );
    }
    let no_headers = b"GET /health HTTP/1.1\r\n\r\n";
    assert_eq!(outcome(no_headers), plain("/health", no_headers.len()));
}

#[test]
fn row_4_websocket_version() {
    for version in [
        None,
        Some("8"),
        Some("12"),
        Some("14"),
        Some("13, 8"),
        Some(""),
    ] {
        let buf = upgrade_with(&[("Sec-WebSocket-Version", version)]);
        assert_eq!(refused(&buf), Refusal::UNSUPPORTED_VERSION, "{version:?}");
    }
    let mut headers = headers_with(&[]);
    headers.push(("Sec-WebSocket-Version", "13"));
    let buf = head("GET /ws HTTP/1.1", &headers);
    assert_eq!(refused(&buf), Refusal::UNSUPPORTED_VERSION);
    // A plain GET of the WebSocket path goes through the table too.
    let buf = head("GET /ws HTTP/1.1", &[("Host", "localhost")]);
    assert_eq!(refused(&buf), Refusal::UNSUPPORTED_VERSION);
    // Version comes before the other upgrade checks and the origin.
    let buf = upgrade_with(&[
        ("Sec-WebSocket-Version", Some("8")),
        ("Sec-WebSocket-Key", None),
        ("Origin", Some("http://evil.com")),
    ]);
    assert_eq!(refused(&buf), Refusal::UNSUPPORTED_VERSION);
    let buf = upgrade_with(&[("sec-websocket-version", Some("13"))]);
    assert_eq!(refused(&buf), Refusal::UNSUPPORTED_VERSION);
    let buf = upgrade_with(&[
        ("Sec-WebSocket-Version", None),
        ("sec-websocket-version", Some("13")),
    ]);
    assert_eq!(outcome(&buf), upgraded(buf.len()));
}

#[test]
fn row_5_upgrade_header() {
    for upgrade in [
        None,
        Some("h2c"),
        Some("websockets"),
        Some("web socket"),
        Some(""),
    ] {
        let buf = upgrade_with(&[("Upgrade", upgrade)]);
        assert_eq!(refused(&buf), Refusal::NOT_WEBSOCKET, "{upgrade:?}");
    }
    for upgrade in [
        "WebSocket",
        "WEBSOCKET",
        "h2c, websocket",
        " websocket ,foo",
    ] {
        let buf = upgrade_with(&[("Upgrade", Some(upgrade))]);
        assert_eq!(outcome(&buf), upgraded(buf.len()), "{upgrade}");
    }
    let mut headers = headers_with(&[("Upgrade", Some("h2c"))]);
    headers.push(("Upgrade", "websocket"));
    let buf = head("GET /ws HTTP/1.1", &headers);
    assert_eq!(outcome(&buf), upgraded(buf.len()));
}

#[test]
fn row_5_connection_header() {
    for connection in [
        None,
        Some("keep-alive"),
        Some("upgraded"),
        Some("close"),
        Some(""),
    ] {
        let buf = upgrade_with(&[("Connection", connection)]);
        assert_eq!(
            refused(&buf),
            Refusal::NOT_CONNECTION_UPGRADE,
            "{connection:?}"
        );
    }
    for connection in [
        "upgrade",
        "UPGRADE",
        "keep-alive, Upgrade",
        "Upgrade,keep-alive",
        "a,\tupgrade",
    ] {
        let buf = upgrade_with(&[("Connection", Some(connection))]);
        assert_eq!(outcome(&buf), upgraded(buf.len()), "{connection}");
    }
    let mut headers = headers_with(&[("Connection", Some("keep-alive"))]);
    headers.push(("connection", "Upgrade"));
    let buf = head("GET /ws HTTP/1.1", &headers);
    assert_eq!(outcome(&buf), upgraded(buf.len()));
}

#[test]
fn row_5_websocket_key() {
    for key in [
        None,
        Some(""),
        Some("dGhlIHNhbXBsZSBub25jZQ"),
        Some("dGhlIHNhbXBsZSBub25jZQ="),
        Some("dGhlIHNhbXBsZSBub25jZQ==="),
        Some("dGhlIHNhbXBsZSBub25jZ=="),
        Some("dGhlIHNhbXBsZSBub25jZXg="),
        Some("dGhlIHNhbXBsZSBub25jZXh5"),
        Some("dGhlIHNhbXBsZSBub25jZR=="),
        Some("dGhlIHNhbXBs-SBub25jZQ=="),
        Some("dGhlIHNhbXBs_SBub25jZQ=="),
        Some("dGhlIHNhbXBs SBub25jZQ=="),
        Some("dGhlIHNhbXBsZSBub25jZQ==dGhlIHNhbXBsZSBub25jZQ=="),
        Some("not a key"),
    ] {
        let buf = upgrade_with(&[("Sec-WebSocket-Key", key)]);
        assert_eq!(refused(&buf), Refusal::BAD_KEY, "{key:?}");
    }
    let mut headers = headers_with(&[]);
    headers.push(("Sec-WebSocket-Key", KEY));
    let buf = head("GET /ws HTTP/1.1", &headers);
    assert_eq!(refused(&buf), Refusal::BAD_KEY);
    for key in [
        "AAAAAAAAAAAAAAAAAAAAAA==",
        "/////////////////////w==",
        "x3JJHMbDL1EzLkh9GBhXDw==",
    ] {
        let buf = upgrade_with(&[("Sec-WebSocket-Key", Some(key))]);
        let expected = Outcome::Upgrade {
            accept_key: tungstenite::handshake::derive_accept_key(key.as_bytes()),
            head_len: buf.len(),
        };
        assert_eq!(outcome(&buf), expected, "{key}");
    }
}

#[test]
fn row_5_order() {
    let buf = upgrade_with(&[
        ("Upgrade", None),
        ("Connection", None),
        ("Sec-WebSocket-Key", None),
    ]);
    assert_eq!(refused(&buf), Refusal::NOT_WEBSOCKET);
    let buf = upgrade_with(&[("Connection", None), ("Sec-WebSocket-Key", None)]);
    assert_eq!(refused(&buf), Refusal::NOT_CONNECTION_UPGRADE);
    let buf = upgrade_with(&[
        ("Sec-WebSocket-Key", None),
        ("Origin", Some("http://evil.com")),
    ]);
    assert_eq!(refused(&buf), Refusal::BAD_KEY);
}

#[test]
fn row_6_origin() {
    let buf = upgrade_with(&[("Origin", Some("http://evil.com"))]);
    let refusal = refused(&buf);
    assert_eq!(refusal, Refusal::ORIGIN_NOT_ALLOWED);
    assert_eq!((refusal.status, refusal.body), (403, "Origin not allowed"));
    for origin in [
        "http://localhost:8080.evil.com",
        "https://localhost:3000",
        "http://localhost",
        "http://localhost:3000/",
        "null",
        "",
    ] {
        let buf = upgrade_with(&[("Origin", Some(origin))]);
        assert_eq!(refused(&buf), Refusal::ORIGIN_NOT_ALLOWED, "{origin}");
    }
    let buf = upgrade_with(&[("Origin", Some("http://127.0.0.1:5173"))]);
    assert_eq!(outcome(&buf), upgraded(buf.len()));
    let buf = upgrade_with(&[("origin", Some("http://localhost:1"))]);
    assert_eq!(refused(&buf), Refusal::ORIGIN_NOT_ALLOWED);
    let mut headers = headers_with(&[]);
    headers.push(("Origin", "http://localhost:3000"));
    let buf = head("GET /ws HTTP/1.1", &headers);
    assert_eq!(refused(&buf), Refusal::ORIGIN_NOT_ALLOWED);
    let buf = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
            Origin: http://localhost:30\xff0\r\n\r\n";
    assert_eq!(refused(buf), Refusal::ORIGIN_NOT_ALLOWED);
}

#[test]
fn row_6_missing_origin() {
    let buf = upgrade_with(&[("Origin", None)]);
    assert_eq!(outcome(&buf), upgraded(buf.len()));
    assert_eq!(
        split_outcome(&buf, &rules_with(8192, true)),
        Outcome::Refuse(Refusal::ORIGIN_NOT_ALLOWED)
    );
    let allow_all = UpgradeRules {
        origins: OriginPolicy::allow_all(),
        ..rules()
    };
    assert_eq!(split_outcome(&buf, &allow_all), upgraded(buf.len()));
    let buf = upgrade_with(&[("Origin", Some("https://anywhere.example"))]);
    assert_eq!(split_outcome(&buf, &allow_all), upgraded(buf.len()));
}

#[test]
fn header_values_are_trimmed_and_names_ignore_case() {
    let buf = b"GET /ws HTTP/1.1\r\nupgrade:websocket \r\nCONNECTION:\tUpgrade\r\n\
            sec-websocket-key:  dGhlIHNhbXBsZSBub25jZQ==\t\r\nSEC-WEBSOCKET-VERSION: 13\r\n\
            origin: http://localhost:3000 \r\n\r\n";
    assert_eq!(outcome(buf), upgraded(buf.len()));
}

#[test]
fn bare_line_feeds_and_leading_empty_lines() {
    let buf = b"GET /ws HTTP/1.1\nUpgrade: websocket\nConnection: Upgrade\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n\n";
    assert_eq!(loose_split_outcome(buf, &rules()), upgraded(buf.len()));
    let mut buf = b"\r\n".to_vec();
    buf.extend_from_slice(&upgrade_with(&[]));
    assert_eq!(loose_split_outcome(&buf, &rules()), upgraded(buf.len()));
}

#[test]
fn empty_buffer_is_partial() {
    assert_eq!(parse_request(b"", &rules()), Outcome::Partial);
    assert_eq!(parse_request(b"\r\n", &rules()), Outcome::Partial);
}

fn response_text(write: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut out = b"previous".to_vec();
    write(&mut out);
    assert!(out.starts_with(b"previous"), "appends");
    String::from_utf8(out[8..].to_vec()).unwrap()
}

#[test]
fn refusal_bytes() {
    let text = response_text(|out| write_refusal(out, Refusal::ORIGIN_NOT_ALLOWED));
    assert_eq!(
        text,
        "HTTP/1.1 403 Forbidden\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 19\r\n\
             Connection: close\r\n\
             \r\n\
             Origin not allowed\n"
    );
    let text = response_text(|out| write_refusal(out, Refusal::UNSUPPORTED_VERSION));
    assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
    assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
    let text = response_text(|out| write_refusal(out, Refusal::METHOD_NOT_ALLOWED));
    assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
    assert!(text.contains("\r\nAllow: GET\r\n"));
    for (refusal, status_line) in [
        (
            Refusal::HEADERS_TOO_LARGE,
            "HTTP/1.1 431 Request Header Fields Too Large\r\n",
        ),
        (Refusal::MALFORMED, "HTTP/1.1 400 Bad Request\r\n"),
        (Refusal::AT_CAPACITY, "HTTP/1.1 503 Service Unavailable\r\n"),
    ] {
        let text = response_text(|out| write_refusal(out, refusal));
        assert!(text.starts_with(status_line), "{text}");
        assert!(!text.contains("Sec-WebSocket-Version"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
        assert!(head.contains("\r\nConnection: close"));
        assert_eq!(body, format!("{}\n", refusal.body));
    }
}

#[test]
fn response_bytes() {
    let body = br#"{"status":"ok"}"#;
    let text = response_text(|out| write_response(out, 200, "application/json", body));
    assert_eq!(
        text,
        "HTTP/1.1 200 OK\r\n\
             Content-Type: application/json\r\n\
             Content-Length: 15\r\n\
             Connection: close\r\n\
             \r\n\
             {\"status\":\"ok\"}"
    );
    let text = response_text(|out| write_response(out, 404, "text/plain", b""));
    assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
    assert!(text.ends_with("Content-Length: 0\r\nConnection: close\r\n\r\n"));
    let text = response_text(|out| write_response(out, 299, "text/plain", b"x"));
    assert!(text.starts_with("HTTP/1.1 299 Success\r\n"));
    let text = response_text(|out| write_response(out, 7, "text/plain", b"x"));
    assert!(text.starts_with("HTTP/1.1 500 Internal Server Error\r\n"));
    let text = response_text(|out| write_response(out, 200, "text/plain\r\nX-Evil: 1", b""));
    assert!(text.contains("\r\nContent-Type: text/plainX-Evil: 1\r\n"));
}

const PIECES: [&[u8]; 24] = [
    b"GET ",
    b"POST ",
    b"/ws",
    b"/health",
    b"?q=1",
    b" HTTP/1.1",
    b" HTTP/1.0",
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n\r\n",
    b": ",
    b":",
    b",",
    b" ",
    b"Upgrade: websocket",
    b"Connection: keep-alive, Upgrade",
    b"Sec-WebSocket-Version: 13",
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    b"Origin: http://localhost:3000",
    b"Origin: null",
    b"Content-Length: 0",
    b"\x00",
    b"\xff\xfe",
];

fn soup(rng: &mut Rng) -> Vec<u8> {
    match rng.below(3) {
        0 => (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
        1 => {
            let mut buf = Vec::new();
            for _ in 0..rng.below(40) {
                let piece = rng.pick(&PIECES);
                buf.extend_from_slice(piece);
            }
            buf
        }
        _ => {
            let mut buf = upgrade_with(&[]);
            for _ in 0..=rng.below(4) {
                let at = rng.below(buf.len() + 1);
                match rng.below(4) {
                    0 if at < buf.len() => buf[at] = rng.next() as u8,
                    1 if at < buf.len() => {
                        let end = (at + rng.below(8)).min(buf.len());
                        buf.drain(at..end);
                    }
                    2 => {
                        let piece = rng.pick(&PIECES);
                        buf.splice(at..at, piece.iter().copied());
                    }
                    _ => buf.truncate(at),
                }
            }
            buf
        }
    }
}

fn assert_sane(buf: &[u8], rules: &UpgradeRules, result: &Outcome) {
    match result {
        Outcome::Partial => assert!(buf.len() < rules.max_header_bytes),
        Outcome::Upgrade {
            accept_key,
            head_len,
        } => {
            assert!(*head_len <= buf.len() && *head_len <= rules.max_header_bytes);
            assert_eq!(accept_key.len(), 28);
        }
        Outcome::Plain { path, head_len } => {
            assert!(*head_len <= buf.len() && *head_len <= rules.max_header_bytes);
            assert!(path != &rules.path && !path.contains('?'));
        }
        Outcome::Refuse(refusal) => {
            assert!(
                [400, 403, 405, 426, 431].contains(&refusal.status),
                "{refusal:?}"
            );
            let mut out = Vec::new();
            write_refusal(&mut out, *refusal);
            assert!(out.starts_with(b"HTTP/1.1 4"));
        }
    }
}

#[test]
fn byte_soup() {
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    let small = rules_with(200, false);
    let normal = rules();
    for round in 0..20_000 {
        let buf = soup(&mut rng);
        let rules = if round % 4 == 0 { &small } else { &normal };
        let whole = parse_request(&buf, rules);
        assert_sane(&buf, rules, &whole);
        let cut = rng.below(buf.len() + 1);
        let part = parse_request(&buf[..cut], rules);
        assert_sane(&buf[..cut], rules, &part);
        if part != Outcome::Partial {
            assert_eq!(
                part,
                whole,
                "round {round}: {:?}",
                String::from_utf8_lossy(&buf)
            );
        }
    }
}
