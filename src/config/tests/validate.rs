//! `Config::validate`: the rules of one key on fields set directly, and the rules across keys.

use super::*;

#[test]
fn validate_rules_of_one_key() {
    let with = |f: &dyn Fn(&mut Config)| {
        let mut c = Config::default();
        f(&mut c);
        invalid(&c)
    };
    assert!(with(&|c| c.host = "example.com".into()).starts_with("host: expected an IP address"));
    assert!(with(&|c| c.path = "ws".into()).starts_with("path: must start with `/`"));
    assert_eq!(
        with(&|c| c.max_connections = 0),
        "max_connections: must be at least 1, is 0"
    );
    assert_eq!(
        with(&|c| c.max_header_bytes = 0),
        "max_header_bytes: must be at least 1, is 0"
    );
    assert_eq!(
        with(&|c| c.max_sessions = 0),
        "max_sessions: must be at least 1, is 0"
    );
    assert_eq!(
        with(&|c| c.max_agents = 0),
        "max_agents: must be at least 1, is 0"
    );
    assert_eq!(
        with(&|c| c.max_clients_per_session = 0),
        "max_clients_per_session: must be at least 1, is 0"
    );
    assert_eq!(
        with(&|c| c.max_sessions_per_client = 0),
        "max_sessions_per_client: must be at least 1, is 0"
    );
    assert_eq!(
        with(&|c| c.agent_ttl_ms = u64::MAX),
        format!("agent_ttl_ms: must be at most {MAX_MS}, is {}", u64::MAX)
    );
    assert_eq!(
        with(&|c| c.cors_origins = vec![String::new()]),
        "cors_origins: item 1 of the list is empty"
    );
    assert_eq!(
        with(&|c| c.auth_tokens = vec![token("", "s")]),
        "auth_tokens: item 1: USER is empty (expected USER:SECRET)"
    );
    assert_eq!(
        with(&|c| c.auth_tokens = vec![token("u", "")]),
        "auth_tokens: item 1: SECRET is empty (expected USER:SECRET)"
    );
    assert!(with(&|c| c.auth_tokens = vec![token("u:v", "s")])
        .starts_with("auth_tokens: item 1: USER must not contain"));
    assert!(with(&|c| c.auth_tokens = vec![token("u", "a,b")])
        .starts_with("auth_tokens: item 1: SECRET must not contain"));
    assert!(with(&|c| c.auth_tokens = vec![token("u", " s")])
        .starts_with("auth_tokens: item 1: SECRET must not contain"));
    assert_eq!(
        with(&|c| c.auth_password = Some(String::new())),
        "auth_password: is empty"
    );
    assert!(with(&|c| c.auth_password = Some("a\nb".into()))
        .starts_with("auth_password: must not contain"));
    assert_eq!(
        with(&|c| c.log_level = log::LevelFilter::Off),
        "log_level: must be one of error, warn, info, debug, trace"
    );
}

#[test]
fn validate_rules_across_keys() {
    let check = |text: &str| Config::parse_str(text, "t").unwrap().validate();
    let message = |text: &str| check(text).unwrap_err().to_string();
    assert_eq!(
        message("max_payload = 1 MiB\nmax_message_size = 2 MiB"),
        "max_message_size: must not exceed max_payload (2097152 > 1048576)"
    );
    assert_eq!(
        check("max_payload = 1 MiB\nmax_message_size = 1 MiB"),
        Ok(())
    );
    assert_eq!(
        message("max_outbound_buffer = 2000\nmax_message_size = 2001"),
        "max_outbound_buffer: must be at least max_message_size (2000 < 2001)"
    );
    assert_eq!(check("max_outbound_buffer = 1 MiB"), Ok(()));
    assert_eq!(
        message("max_message_size = 1273"),
        "max_message_size: must be at least 1274 with max_name_bytes = 256: the session_info \
         reply to a session_create without metadata, with 128-byte ids, must fit (is 1273)"
    );
    assert_eq!(check("max_message_size = 1274"), Ok(()));
    assert_eq!(
        check("max_message_size = 1274\nmax_name_bytes = 257")
            .unwrap_err()
            .key
            .as_deref(),
        Some("max_message_size")
    );
    assert_eq!(
        message("auth_mode = password"),
        "auth_password: is required when auth_mode = password"
    );
    assert_eq!(check("auth_mode = password\nauth_password = pw"), Ok(()));
    assert_eq!(
        message("rate_limit_per_sec = 10\nrate_limit_burst = 0"),
        "rate_limit_burst: must be at least 1 when rate_limit_per_sec is on"
    );
    assert_eq!(
        check("rate_limit_per_sec = 0\nrate_limit_burst = 0"),
        Ok(())
    );
    assert_eq!(
        message("heartbeat_interval_ms = 60000"),
        "heartbeat_interval_ms: must be less than client_timeout_ms when both are on \
             (60000 >= 60000)"
    );
    assert_eq!(
        check("heartbeat_interval_ms = 90000\nclient_timeout_ms = 0"),
        Ok(())
    );
    assert_eq!(
        check("heartbeat_interval_ms = 0\nclient_timeout_ms = 1"),
        Ok(())
    );
    // Token mode without tokens and password mode with tokens are allowed.
    assert_eq!(check("auth_mode = token\nauth_tokens ="), Ok(()));
    assert_eq!(check("auth_mode = none\nauth_password = x"), Ok(()));
    fn jwt(edit: impl FnOnce(&mut Config)) -> Config {
        let mut config = Config {
            auth_mode: AuthMode::Jwt,
            ..Config::default()
        };
        edit(&mut config);
        config
    }
    assert_eq!(
        invalid(&jwt(|_| {})),
        "jwt_secret: auth_mode = jwt needs jwt_secret or jwt_public_key"
    );
    assert_eq!(
        jwt(|c| c.jwt_secret = Some("s".repeat(32))).validate(),
        Ok(())
    );
    let key = || JwtPublicKey::read(fixture_key("ed.pub.pem")).unwrap();
    assert_eq!(jwt(|c| c.jwt_public_key = Some(key())).validate(), Ok(()));
    let both = jwt(|c| {
        c.jwt_secret = Some("s".repeat(32));
        c.jwt_public_key = Some(key());
    });
    assert!(invalid(&both).starts_with("jwt_public_key: cannot be set together with jwt_secret"));
    // Set directly, a field still meets its key's rule.
    assert!(invalid(&jwt(|c| c.jwt_secret = Some("short".into())))
        .starts_with("jwt_secret: must have 32"));
    assert!(invalid(&jwt(|c| {
        c.jwt_secret = Some("s".repeat(32));
        c.jwt_issuer = Some(String::new());
    }))
    .starts_with("jwt_issuer: expected 1 to 1024 bytes"));
}

#[test]
fn tls_files_are_read_when_set_and_refused_when_they_are_not_the_pem_they_should_be() {
    let fixture = |name: &str| format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"));
    let config = parsed(&format!("tls_cert = {TLS_CERT}\ntls_key = {TLS_KEY}\n"));
    assert_eq!(config.tls_cert.as_ref().map(|c| c.ders().len()), Some(1));
    assert_eq!(
        config.tls_key.as_ref().map(TlsPrivateKey::format),
        Some(crate::transport::TlsKeyFormat::Pkcs8)
    );
    assert!(
        !format!("{config:?}").contains("MIG"),
        "no key bytes in Debug"
    );
    let summary = config
        .tls_cert
        .as_ref()
        .unwrap()
        .summary(std::time::SystemTime::now());
    assert!(
        summary.starts_with(
            "subject CN=localhost, O=gateway tests; names localhost, 127.0.0.1; expires 2126-"
        ),
        "{summary}"
    );
    // A key file holding a certificate, a certificate file holding a key, no PEM at all, no
    // file: errors that name the key and the file.
    let e = set_error("tls_key", TLS_CERT);
    assert!(
        e.contains("expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY, found CERTIFICATE"),
        "{e}"
    );
    let e = set_error("tls_cert", TLS_KEY);
    assert!(
        e.contains("expected CERTIFICATE blocks, found PRIVATE KEY"),
        "{e}"
    );
    let e = set_error("tls_client_ca", "/dev/null");
    assert!(e.contains("no PEM block"), "{e}");
    let e = set_error("tls_cert", &fixture("missing.pem"));
    assert!(e.contains("cannot read the file"), "{e}");
    let e = error(&format!("tls_cert = {}", fixture("README.md")));
    assert!(e.starts_with("gateway.conf:1: tls_cert: "), "{e}");
}

#[test]
fn tls_rules_across_keys() {
    let config = |keys: &[(&str, &str)]| {
        let mut c = Config::default();
        for (key, value) in keys {
            c.set(key, value).unwrap_or_else(|e| panic!("{e}"));
        }
        c
    };
    assert_eq!(
        invalid(&config(&[("tls_cert", TLS_CERT)])),
        "tls_key: tls_cert needs tls_key"
    );
    assert_eq!(
        invalid(&config(&[("tls_key", TLS_KEY)])),
        "tls_cert: tls_key needs tls_cert"
    );
    assert!(
        invalid(&config(&[("tls_client_ca", TLS_CA)])).starts_with("tls_client_ca: needs tls_cert")
    );
    let other_key = format!(
        "{}/tests/fixtures/tls/other.key.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let mismatched = config(&[("tls_cert", TLS_CERT), ("tls_key", &other_key)]);
    let pair = config(&[("tls_cert", TLS_CERT), ("tls_key", TLS_KEY)]);
    if cfg!(feature = "tls") {
        assert_eq!(
            invalid(&mismatched),
            "tls_key: the key is not the certificate's (tls_key does not match tls_cert)"
        );
        assert_eq!(pair.validate(), Ok(()));
        // A CA that is a certificate but not a CA still loads; one that is no X.509 does not.
        let with_ca = config(&[
            ("tls_cert", TLS_CERT),
            ("tls_key", TLS_KEY),
            ("tls_client_ca", TLS_CA),
        ]);
        assert_eq!(with_ca.validate(), Ok(()));
    } else {
        assert!(
            invalid(&pair).contains("built without TLS"),
            "{}",
            invalid(&pair)
        );
    }
}
