//! The value syntaxes and the rules of one key, through the file.

use super::*;
use crate::config::values::{LOG_LEVELS, USIZE_MAX};

#[test]
fn numbers() {
    assert_eq!(parsed("port = 0").port, 0);
    assert_eq!(parsed("port = 65535").port, 65535);
    assert_eq!(parsed("port=007").port, 7);
    assert_eq!(parsed("  port   =   80   ").port, 80);
    assert_eq!(
        parsed("max_auth_failures = 4294967295").max_auth_failures,
        u32::MAX
    );
    for bad in [
        "abc",
        "",
        "+1",
        "-1",
        "1_000",
        "1 000",
        "0x10",
        "1.5",
        "65536",
        "99999999999999999999",
    ] {
        assert_eq!(
            error(&format!("port = {bad}")),
            format!("gateway.conf:1: port: expected a number from 0 to 65535, got {bad:?}")
        );
    }
    assert_eq!(
            error("max_auth_failures = 4294967296"),
            "gateway.conf:1: max_auth_failures: expected a number from 0 to 4294967295, got \"4294967296\""
        );
    assert!(error("max_connections = 0").contains("expected a number from 1 to"));
    assert!(error("max_agents = 0")
        .starts_with("gateway.conf:1: max_agents: expected a number from 1 to"));
    assert!(error("rate_limit_per_sec = -5").contains("rate_limit_per_sec: expected a number"));
}

#[test]
fn sizes() {
    for (text, bytes) in [
        ("512", 512),
        ("2MiB", 2 << 20),
        ("2 MiB", 2 << 20),
        ("2 \t MiB", 2 << 20),
        ("3KiB", 3072),
        ("3 KiB", 3072),
        ("0001 KiB", 1024),
    ] {
        assert_eq!(
            parsed(&format!("max_payload = {text}")).max_payload,
            bytes,
            "{text}"
        );
    }
    if usize::BITS == 64 {
        assert_eq!(
            parsed("max_payload = 18446744073709551615").max_payload,
            usize::MAX
        );
    }
    for bad in [
        "0",
        "0 KiB",
        "",
        "MiB",
        "2 mib",
        "2 MB",
        "2 GiB",
        "2 B",
        "2MiB MiB",
        "-2 MiB",
        "1.5 MiB",
        "18446744073709551616",
        "18446744073709551615 MiB",
        "17592186044416 MiB",
    ] {
        let e = error(&format!("max_payload = {bad}"));
        assert_eq!(
            e,
            format!(
                "gateway.conf:1: max_payload: expected a size from 1 to {USIZE_MAX} bytes \
                     (a KiB or MiB suffix is accepted), got {bad:?}"
            )
        );
    }
}

#[test]
fn durations() {
    assert_eq!(parsed("agent_ttl_ms = 0").agent_ttl_ms, 0);
    assert_eq!(
        parsed(&format!("agent_ttl_ms = {MAX_MS}")).agent_ttl_ms,
        MAX_MS
    );
    for bad in ["5s", "1e3", "-1", "", "31536000001", "18446744073709551616"] {
        assert_eq!(
            error(&format!("client_timeout_ms = {bad}")),
            format!(
                "gateway.conf:1: client_timeout_ms: expected milliseconds from 0 to \
                     31536000000 (0 = off), got {bad:?}"
            )
        );
    }
    assert_eq!(Config::duration(0), None);
    assert_eq!(Config::duration(1500), Some(Duration::from_millis(1500)));
}

#[test]
fn booleans_levels_and_modes() {
    assert!(!parsed("http_endpoints = false").http_endpoints);
    assert!(parsed("require_origin = true").require_origin);
    for bad in ["TRUE", "yes", "1", "", "true false"] {
        assert_eq!(
            error(&format!("require_origin = {bad}")),
            format!("gateway.conf:1: require_origin: expected true or false, got {bad:?}")
        );
    }
    for (name, level) in LOG_LEVELS {
        assert_eq!(parsed(&format!("log_level = {name}")).log_level, level);
    }
    for bad in ["INFO", "off", "warning", ""] {
        assert_eq!(
            error(&format!("log_level = {bad}")),
            format!(
                "gateway.conf:1: log_level: expected one of error, warn, info, debug, \
                     trace, got {bad:?}"
            )
        );
    }
    for mode in [
        AuthMode::Token,
        AuthMode::Password,
        AuthMode::Jwt,
        AuthMode::None,
    ] {
        assert_eq!(
            parsed(&format!("auth_mode = {}", mode.as_str())).auth_mode,
            mode
        );
    }
    assert_eq!(
        error("auth_mode = Token"),
        "gateway.conf:1: auth_mode: expected token, password, jwt or none, got \"Token\""
    );
}

#[test]
fn host_and_path() {
    assert_eq!(parsed("host = ::1").host, "::1");
    assert_eq!(parsed("host = 0.0.0.0").host, "0.0.0.0");
    for bad in ["localhost", "", "[::1]", "127.0.0.1:80", "256.0.0.1"] {
        assert_eq!(
            error(&format!("host = {bad}")),
            format!(
                "gateway.conf:1: host: expected an IP address such as 127.0.0.1 or ::1, \
                     got {bad:?}"
            )
        );
    }
    assert_eq!(parsed("path = /").path, "/");
    assert_eq!(parsed("path = /a/b-c").path, "/a/b-c");
    assert_eq!(
        error("path = ws"),
        "gateway.conf:1: path: must start with `/`, got \"ws\""
    );
    assert_eq!(
        error("path ="),
        "gateway.conf:1: path: must start with `/`, got \"\""
    );
    for bad in ["/a?b", "/a b", "/a#b"] {
        assert!(
            error(&format!("path = {bad}")).starts_with("gateway.conf:1: path: must not contain"),
            "{bad}"
        );
    }
}

#[test]
fn lists() {
    assert_eq!(
        parsed("cors_origins = https://a.example ,http://b:*,   *").cors_origins,
        vec!["https://a.example", "http://b:*", "*"]
    );
    assert!(parsed("cors_origins =").cors_origins.is_empty());
    assert!(parsed("cors_origins =   # nothing allowed")
        .cors_origins
        .is_empty());
    assert!(parsed("auth_tokens =").auth_tokens.is_empty());
    assert_eq!(
        error("cors_origins = a, , b"),
        "gateway.conf:1: cors_origins: item 2 of the list is empty"
    );
    assert_eq!(
        error("cors_origins = a,"),
        "gateway.conf:1: cors_origins: item 2 of the list is empty"
    );
    assert_eq!(
        error("cors_origins = ,a"),
        "gateway.conf:1: cors_origins: item 1 of the list is empty"
    );
    assert!(error("cors_origins = http://a http://b")
        .starts_with("gateway.conf:1: cors_origins: item 1: a pattern has no white space"));
}

#[test]
fn tokens() {
    let c = parsed("auth_tokens = alice:s1, bob : s:2 ,carol:#x#, dave:a b");
    assert_eq!(
        c.auth_tokens,
        vec![
            token("alice", "s1"),
            token("bob", "s:2"),
            token("carol", "#x#"),
            token("dave", "a b")
        ]
    );
    let cases = [
        (
            "auth_tokens = alice",
            "item 1: expected USER:SECRET, found no `:`",
        ),
        (
            "auth_tokens = a:b, :hunter2",
            "item 2: USER is empty (expected USER:SECRET)",
        ),
        (
            "auth_tokens = a: ",
            "item 1: SECRET is empty (expected USER:SECRET)",
        ),
        ("auth_tokens = a:b,,c:d", "item 2 of the list is empty"),
        ("auth_tokens = a:b,", "item 2 of the list is empty"),
        (
            "auth_tokens = a:hunter2, b:hunter2",
            "items 1 and 2 have the same SECRET",
        ),
        (
            "auth_tokens = a:***",
            "item 1: SECRET is `***`, the mask that --print-config prints; put the real \
                 secret back",
        ),
    ];
    for (text, message) in cases {
        let e = error(text);
        assert_eq!(e, format!("gateway.conf:1: auth_tokens: {message}"));
        assert!(!e.contains("hunter2"), "{e}");
    }
    // A secret no client could send (PROTOCOL section 11) is refused, at the bound it is not.
    let at_bound = format!("auth_tokens = a:{}", "s".repeat(4096));
    assert_eq!(parsed(&at_bound).auth_tokens[0].secret.len(), 4096);
    assert_eq!(
        error(&format!("auth_tokens = a:{}", "s".repeat(4097))),
        "gateway.conf:1: auth_tokens: item 1: SECRET is longer than 4096 bytes, the longest \
         credential a client may send"
    );
    assert_eq!(
        error(&format!("auth_password = {}", "p".repeat(4097))),
        "gateway.conf:1: auth_password: is longer than 4096 bytes, the longest credential a \
         client may send"
    );
    // The same user with two secrets is allowed (rotation).
    assert_eq!(parsed("auth_tokens = a:x, a:y").auth_tokens.len(), 2);
}

#[test]
fn password() {
    assert_eq!(
        parsed("auth_password = p@ss w0rd").auth_password.as_deref(),
        Some("p@ss w0rd")
    );
    assert_eq!(parsed("auth_password =").auth_password, None);
    assert_eq!(parsed("auth_password = # none").auth_password, None);
    assert_eq!(
        error("auth_password = ***"),
        "gateway.conf:1: auth_password: is `***`, the mask that --print-config prints; put \
             the real password back"
    );
}

#[test]
fn long_values_are_cut_in_messages() {
    let long = "9".repeat(500);
    let e = error(&format!("port = {long}"));
    assert!(
        e.ends_with(&format!("got \"{}\"...", "9".repeat(64))),
        "{e}"
    );
}

#[test]
fn values_the_file_format_cannot_hold_are_refused() {
    // `,#u` does not start a comment, but the printed `, #u` would.
    assert!(error("auth_tokens = a:b,#u:s")
        .starts_with("gateway.conf:1: auth_tokens: item 2: USER must not contain"));
    assert!(error("cors_origins = http://a,#b")
        .starts_with("gateway.conf:1: cors_origins: item 2: a pattern has no"));
    assert!(set_error("auth_tokens", "u:a #b")
        .starts_with("auth_tokens: item 1: SECRET must not contain"));
    assert!(set_error("auth_password", "#pw").starts_with("auth_password: must not contain"));
    assert!(set_error("auth_password", "a\t#b").starts_with("auth_password: must not contain"));
    assert!(set_error("auth_password", "a\nb").starts_with("auth_password: must not contain"));
    let mut c = Config::default();
    c.set("auth_tokens", "u:#s, v:s#t").unwrap();
    c.set("auth_password", "p#w").unwrap();
    assert_eq!(c.auth_tokens[0].secret, "#s");
}

#[test]
fn jwt_public_key_reads_and_checks_the_pem_file() {
    for (file, algorithm) in [
        ("rsa.pub.pem", "RS256"),
        ("rsa.pkcs1.pub.pem", "RS256"),
        ("ec.pub.pem", "ES256"),
        ("ed.pub.pem", "EdDSA"),
    ] {
        let path = fixture_key(file);
        let config = parsed(&format!("jwt_public_key = {path}"));
        let key = config.jwt_public_key.as_ref().expect("a key");
        assert_eq!(key.algorithm(), algorithm, "{file}");
        assert_eq!(key.path(), std::path::Path::new(&path));
        assert_eq!(
            JwtPublicKey::read(&path).as_ref(),
            Ok(key),
            "read gives the same key"
        );
        // Printed as the path; it reads back the same.
        assert!(config
            .to_file_string()
            .contains(&format!("jwt_public_key = {path}\n")));
    }
    assert_eq!(parsed("jwt_public_key =").jwt_public_key, None);
    let refused = |file: &str| error(&format!("jwt_public_key = {}", fixture_key(file)));
    for (file, says) in [
        ("p384.pub.pem", "an EC key on a curve other than P-256"),
        (
            "rsa1024.pub.pem",
            "an RSA key of 1024 bits; RS256 needs 2048 to 8192",
        ),
        ("ec.key.pem", "holds a private key (PRIVATE KEY)"),
        ("README.md", "not a PEM file"),
        ("missing.pem", "cannot read"),
    ] {
        let e = refused(file);
        assert!(e.starts_with("gateway.conf:1: jwt_public_key: "), "{e}");
        assert!(e.contains(says), "{file}: {e}");
    }
    // Two blocks, a certificate-like tag, garbage inside a PEM block.
    let dir = std::env::temp_dir().join(format!("gateway-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ec = std::fs::read_to_string(fixture_key("ec.pub.pem")).unwrap();
    for (name, text, says) in [
        (
            "two.pem",
            format!("{ec}{ec}"),
            "expected one PEM block, found 2",
        ),
        (
            "cert.pem",
            ec.replace("PUBLIC KEY", "CERTIFICATE"),
            "holds a \"CERTIFICATE\" block",
        ),
        (
            "junk.pem",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_string(),
            "not a valid SubjectPublicKeyInfo",
        ),
        ("empty.pem", String::new(), "not a PEM file"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let e = JwtPublicKey::read(&path).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("jwt_public_key"));
        assert!(e.message.contains(says), "{name}: {e}");
    }
    let big = dir.join("big.pem");
    std::fs::write(&big, vec![b'A'; 70_000]).unwrap();
    assert!(JwtPublicKey::read(&big)
        .unwrap_err()
        .message
        .contains("larger than 65536 bytes"));
    std::fs::remove_dir_all(&dir).unwrap();
    // A path the file format could not hold back.
    assert!(set_error("jwt_public_key", "a #b").contains("a path must not contain"));
}

#[test]
fn jwt_secret_issuer_audience_and_leeway() {
    let secret = "k".repeat(32);
    let config = parsed(&format!(
        "jwt_secret = {secret}\njwt_issuer = https://id.example/\njwt_audience = gw\n\
         jwt_leeway_ms = 0"
    ));
    assert_eq!(config.jwt_secret.as_deref(), Some(secret.as_str()));
    assert_eq!(config.jwt_issuer.as_deref(), Some("https://id.example/"));
    assert_eq!(config.jwt_audience.as_deref(), Some("gw"));
    assert_eq!(config.jwt_leeway_ms, 0);
    assert!(config.to_file_string().contains("jwt_secret = ***\n"));
    assert!(!format!("{config:?}").contains(&secret));
    assert_eq!(Config::default().jwt_leeway_ms, 5000);
    let short = "k".repeat(31);
    let e = error(&format!("jwt_secret = {short}"));
    assert_eq!(
        e,
        "gateway.conf:1: jwt_secret: must have 32 to 4096 bytes (an HS256 key is at least \
         256 bits), has 31"
    );
    assert!(!set_error("jwt_secret", &format!("{short}x #y")).contains(&short));
    assert!(set_error("jwt_secret", "***").contains("the mask"));
    assert_eq!(parsed("jwt_secret =").jwt_secret, None);
    assert!(error(&format!("jwt_issuer = {}", "i".repeat(1025))).contains("1 to 1024 bytes"));
    assert!(set_error("jwt_audience", "a\u{7}b").contains("control characters"));
    assert!(error("jwt_leeway_ms = -1").contains("expected milliseconds"));
}
