use super::*;
use crate::testkit::Rng;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse_str(text, "gateway.conf")
}

fn parsed(text: &str) -> Config {
    match parse(text) {
        Ok(config) => config,
        Err(e) => panic!("{text:?} should parse: {e}"),
    }
}

fn error(text: &str) -> String {
    match parse(text) {
        Ok(config) => panic!("{text:?} should not parse, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

fn set_error(key: &str, value: &str) -> String {
    match Config::default().set(key, value) {
        Ok(()) => panic!("--set {key}={value} should fail"),
        Err(e) => e.to_string(),
    }
}

fn invalid(config: &Config) -> String {
    match config.validate() {
        Ok(()) => panic!("{config:?} should not validate"),
        Err(e) => {
            assert_eq!((e.file.as_deref(), e.line), (None, None));
            e.to_string()
        }
    }
}

fn token(user: &str, secret: &str) -> AuthToken {
    AuthToken {
        user: user.to_string(),
        secret: secret.to_string(),
    }
}

/// A value for every key that differs from its default.
const NON_DEFAULTS: [(&str, &str); 28] = [
    ("host", "0.0.0.0"),
    ("port", "9000"),
    ("path", "/gateway"),
    ("max_connections", "5"),
    ("http_endpoints", "false"),
    ("auth_mode", "password"),
    ("auth_tokens", "alice:s1, bob:s2"),
    ("auth_password", "pw"),
    ("auth_timeout_ms", "1"),
    ("max_auth_failures", "0"),
    ("cors_origins", "*"),
    ("require_origin", "true"),
    ("handshake_timeout_ms", "0"),
    ("heartbeat_interval_ms", "0"),
    ("client_timeout_ms", "0"),
    ("close_timeout_ms", "7"),
    ("agent_ttl_ms", "8"),
    ("max_header_bytes", "4 KiB"),
    ("max_payload", "3MiB"),
    ("max_message_size", "2 MiB"),
    ("max_outbound_buffer", "2MiB"),
    ("max_clients_per_session", "2"),
    ("max_sessions_per_client", "3"),
    ("max_sessions", "4"),
    ("max_agents", "5"),
    ("rate_limit_per_sec", "20"),
    ("rate_limit_burst", "1"),
    ("log_level", "trace"),
];

#[test]
fn defaults_are_valid_and_documented_values() {
    let c = Config::default();
    assert_eq!(c.validate(), Ok(()));
    assert_eq!(
        (c.host.as_str(), c.port, c.path.as_str()),
        ("127.0.0.1", 18789, "/ws")
    );
    assert_eq!(c.auth_mode, AuthMode::Token);
    assert!(c.auth_tokens.is_empty() && c.auth_password.is_none());
    assert_eq!(c.max_payload, 10_485_760);
    assert_eq!(c.log_level, log::LevelFilter::Info);
}

#[test]
fn keys_are_unique_and_each_sets_its_own_field() {
    let mut keys = Config::KEYS.to_vec();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), Config::KEYS.len());
    assert_eq!(
        NON_DEFAULTS.map(|(k, _)| k),
        Config::KEYS,
        "NON_DEFAULTS follows KEYS"
    );
    let mut all = Config::default();
    let mut previous = Config::default();
    for (key, value) in NON_DEFAULTS {
        let mut one = Config::default();
        one.set(key, value).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(one, Config::default(), "{key} changed nothing");
        all.set(key, value).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(all, previous, "{key} changed nothing");
        previous = all.clone();
    }
    assert_eq!(all.validate(), Ok(()));
}

#[test]
fn empty_comment_and_blank_text_is_the_defaults() {
    for text in [
        "",
        "\n\n",
        "# only a comment\n",
        "   \t\n  # indented\r\n",
        "\u{feff}",
    ] {
        assert_eq!(parsed(text), Config::default(), "{text:?}");
    }
}

#[test]
fn every_key_from_a_file() {
    let text: String = NON_DEFAULTS
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
    let c = parsed(&text);
    assert_eq!(c.host, "0.0.0.0");
    assert_eq!(c.port, 9000);
    assert_eq!(c.path, "/gateway");
    assert_eq!(c.max_connections, 5);
    assert!(!c.http_endpoints && c.require_origin);
    assert_eq!(c.auth_mode, AuthMode::Password);
    assert_eq!(
        c.auth_tokens,
        vec![token("alice", "s1"), token("bob", "s2")]
    );
    assert_eq!(c.auth_password.as_deref(), Some("pw"));
    assert_eq!((c.auth_timeout_ms, c.max_auth_failures), (1, 0));
    assert_eq!(c.cors_origins, vec!["*"]);
    assert_eq!(
        [
            c.handshake_timeout_ms,
            c.heartbeat_interval_ms,
            c.client_timeout_ms,
            c.close_timeout_ms,
            c.agent_ttl_ms
        ],
        [0, 0, 0, 7, 8]
    );
    assert_eq!(
        [
            c.max_header_bytes,
            c.max_payload,
            c.max_message_size,
            c.max_outbound_buffer
        ],
        [4096, 3 << 20, 2 << 20, 2 << 20]
    );
    assert_eq!(
        [
            c.max_clients_per_session,
            c.max_sessions_per_client,
            c.max_sessions,
            c.max_agents
        ],
        [2, 3, 4, 5]
    );
    assert_eq!((c.rate_limit_per_sec, c.rate_limit_burst), (20, 1));
    assert_eq!(c.log_level, log::LevelFilter::Trace);
    assert_eq!(c.validate(), Ok(()));
}

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
    for mode in [AuthMode::Token, AuthMode::Password, AuthMode::None] {
        assert_eq!(
            parsed(&format!("auth_mode = {}", mode.as_str())).auth_mode,
            mode
        );
    }
    assert_eq!(
        error("auth_mode = Token"),
        "gateway.conf:1: auth_mode: expected token, password or none, got \"Token\""
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
fn comments() {
    assert_eq!(
        parsed("auth_password = secret#1").auth_password.as_deref(),
        Some("secret#1")
    );
    assert_eq!(
        parsed("auth_password = secret#1 # note")
            .auth_password
            .as_deref(),
        Some("secret#1")
    );
    assert_eq!(
        parsed("auth_password = a#b#c\t# note")
            .auth_password
            .as_deref(),
        Some("a#b#c")
    );
    assert_eq!(
        parsed("auth_tokens = dev:s#1, x:#y # two tokens").auth_tokens,
        vec![token("dev", "s#1"), token("x", "#y")]
    );
    assert_eq!(parsed("port = 1 # note").port, 1);
    assert_eq!(parsed("port = 2\t#note").port, 2);
    assert_eq!(parsed("#port = 3\n  # port = 4\n").port, 18789);
    // A `#` right after the value is part of it.
    assert_eq!(
        error("port = 1#2"),
        "gateway.conf:1: port: expected a number from 0 to 65535, got \"1#2\""
    );
    assert_eq!(
        error("port# = 1"),
        "gateway.conf:1: port#: unknown key (did you mean `port`?)"
    );
}

#[test]
fn bom_and_crlf() {
    let c = parsed("\u{feff}port = 1\r\nhost = ::1\r\n\r\nauth_password = x#y\r\n");
    assert_eq!((c.port, c.host.as_str()), (1, "::1"));
    assert_eq!(c.auth_password.as_deref(), Some("x#y"));
    assert_eq!(
        error("\u{feff}# a\r\n\r\nport = x\r\n"),
        "gateway.conf:3: port: expected a number from 0 to 65535, got \"x\""
    );
    // A BOM anywhere but at the very start is not white space.
    assert!(error("\n\u{feff}port = 1").starts_with("gateway.conf:2: \\u{feff}port: unknown key"));
}

#[test]
fn line_errors_name_file_line_and_key() {
    let text = "# listener\nhost = 127.0.0.1\n\nport = 1\nprot = 2\n";
    let e = parse(text).unwrap_err();
    assert_eq!(
        e,
        ConfigError {
            file: Some("gateway.conf".to_string()),
            line: Some(5),
            key: Some("prot".to_string()),
            message: "unknown key (did you mean `port`?)".to_string(),
        }
    );
    assert_eq!(
        error("port = 1\nhost = ::1\n\nport = 2"),
        "gateway.conf:4: port: repeated key (first set on line 1)"
    );
    assert_eq!(
        error("port = 1\nport = 1"),
        "gateway.conf:2: port: repeated key (first set on line 1)"
    );
    assert_eq!(
        error("frobnicate = 1"),
        "gateway.conf:1: frobnicate: unknown key"
    );
    assert_eq!(
        error("Port = 1"),
        "gateway.conf:1: Port: unknown key (did you mean `port`?)"
    );
    assert_eq!(
        error("\n\nport 8080"),
        "gateway.conf:3: port: missing `=`: expected `key = value`"
    );
    // The words of a line without `=` are not echoed unless they are a key.
    let e = error("hunter2");
    assert_eq!(e, "gateway.conf:1: missing `=`: expected `key = value`");
    // Nor is an unknown key that may hold a secret.
    assert_eq!(
        error("auth_password: hunter2 = x"),
        "gateway.conf:1: unknown key (a key has no white space or `:`)"
    );
    assert_eq!(
        set_error("dev:hunter2", "x"),
        "unknown key (a key has no white space or `:`) (from --set)"
    );
    assert_eq!(error("  = 5"), "gateway.conf:1: missing key before `=`");
    // The error stops at the first bad line.
    assert_eq!(
        error("port = x\nbogus = 1"),
        "gateway.conf:1: port: expected a number from 0 to 65535, got \"x\""
    );
    let e = Config::parse_str("port = x", "/etc/gw.conf").unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/gw.conf:1: port: expected a number from 0 to 65535, got \"x\""
    );
    // The value is split at the first `=` only.
    assert_eq!(
        parsed("auth_password = a=b").auth_password.as_deref(),
        Some("a=b")
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
fn error_display_forms() {
    let mut e = ConfigError {
        file: Some("f.conf".to_string()),
        line: Some(3),
        key: Some("port".to_string()),
        message: "bad".to_string(),
    };
    assert_eq!(e.to_string(), "f.conf:3: port: bad");
    e.key = None;
    assert_eq!(e.to_string(), "f.conf:3: bad");
    e.line = None;
    assert_eq!(e.to_string(), "f.conf: bad");
    e.file = None;
    assert_eq!(e.to_string(), "bad");
    e.key = Some("a\nb".to_string());
    assert_eq!(e.to_string(), "a\\nb: bad");
}

#[test]
fn set_overrides_and_reports_set() {
    let mut c = parsed("port = 1\ncors_origins = http://a, http://b\nauth_tokens = a:1");
    c.set("port", "2").unwrap();
    c.set(" port ", " 3 ").unwrap();
    c.set("cors_origins", "*").unwrap();
    c.set("auth_tokens", "b:2, c:3").unwrap();
    c.set("max_payload", "5 MiB").unwrap();
    assert_eq!(c.port, 3);
    assert_eq!(c.cors_origins, vec!["*"]);
    assert_eq!(c.auth_tokens, vec![token("b", "2"), token("c", "3")]);
    assert_eq!(c.max_payload, 5 << 20);
    // No comment stripping in --set values.
    c.set("auth_password", "a#b c").unwrap();
    assert_eq!(c.auth_password.as_deref(), Some("a#b c"));
    // What the file would read as a comment is refused, not cut.
    assert!(c.set("auth_password", "a #b").is_err());
    assert_eq!(c.auth_password.as_deref(), Some("a#b c"));
    c.set("auth_password", "").unwrap();
    assert_eq!(c.auth_password, None);

    assert_eq!(
        set_error("port", "abc"),
        "port: expected a number from 0 to 65535, got \"abc\" (from --set)"
    );
    assert_eq!(
        set_error("prot", "1"),
        "prot: unknown key (did you mean `port`?) (from --set)"
    );
    assert_eq!(set_error("", "1"), "missing key before `=` (from --set)");
    assert_eq!(
        set_error("port", "1 # x"),
        "port: expected a number from 0 to 65535, got \"1 # x\" (from --set)"
    );
    let e = Config::default()
        .set("auth_tokens", "a:hunter2,b:hunter2")
        .unwrap_err();
    assert_eq!(
        e,
        ConfigError {
            file: None,
            line: None,
            key: Some("auth_tokens".to_string()),
            message: "items 1 and 2 have the same SECRET (from --set)".to_string(),
        }
    );
    // A failed --set leaves the configuration as it was.
    let before = c.clone();
    assert!(c.set("max_payload", "lots").is_err());
    assert_eq!(c, before);
}

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
        message("max_outbound_buffer = 1000\nmax_message_size = 1001"),
        "max_outbound_buffer: must be at least max_message_size (1000 < 1001)"
    );
    assert_eq!(check("max_outbound_buffer = 1 MiB"), Ok(()));
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
}

#[test]
fn file_string_masks_secrets_and_round_trips() {
    let text: String = NON_DEFAULTS
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
    let mut c = parsed(&text);
    c.set("auth_tokens", "alice:top#secret, bob:s:2, carol:third one")
        .unwrap();
    c.set("auth_password", "hunter2#x").unwrap();
    let printed = c.to_file_string();
    for secret in ["top#secret", "s:2", "third one", "hunter2"] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    assert!(
        printed.contains("\nauth_tokens = alice:***, bob:***, carol:***\n"),
        "{printed}"
    );
    assert!(printed.contains("\nauth_password = ***\n"), "{printed}");
    for key in Config::KEYS {
        let lines = printed
            .lines()
            .filter(|l| l.starts_with(&format!("{key} =")))
            .count();
        assert_eq!(lines, 1, "{key}");
    }
    let restored = printed
        .replace("alice:***", "alice:top#secret")
        .replace("bob:***", "bob:s:2")
        .replace("carol:***", "carol:third one")
        .replace("auth_password = ***", "auth_password = hunter2#x");
    assert_eq!(parsed(&restored), c);

    // Without secrets the output parses back as is.
    for config in [Config::default(), {
        let mut d = Config::default();
        d.cors_origins.clear();
        d.host = "::".into();
        d.log_level = log::LevelFilter::Error;
        d
    }] {
        let printed = config.to_file_string();
        assert_eq!(parsed(&printed), config, "{printed}");
    }
    // Printed secrets are refused rather than taken as the secret `***`.
    assert!(parse(&printed).is_err());
}

#[test]
fn debug_hides_secrets() {
    let c = Config {
        auth_tokens: vec![token("alice", "hunter2")],
        auth_password: Some("swordfish".into()),
        ..Config::default()
    };
    let debug = format!("{c:?} {c:#?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("swordfish"),
        "{debug}"
    );
    assert!(debug.contains("alice") && debug.contains("***"), "{debug}");
    // An unset password prints as unset, not as a mask.
    assert!(format!("{:?}", Config::default())
        .lines()
        .any(|l| l.trim_end() == "auth_password ="));
}

fn scratch_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gateway-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn from_path_names_the_file() {
    let path = scratch_file("ok.conf", b"port = 4242\n");
    assert_eq!(Config::from_path(&path).unwrap().port, 4242);

    let path = scratch_file("bad.conf", b"port = 1\nport = x\n");
    let e = Config::from_path(&path).unwrap_err();
    assert_eq!(e.file.as_deref(), Some(path.display().to_string().as_str()));
    assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("port")));

    let path = scratch_file(
        "latin1.conf",
        b"# ok\nhost = 127.0.0.1\nauth_password = caf\xe9\n",
    );
    let e = Config::from_path(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}:3: the file is not valid UTF-8", path.display())
    );

    let missing = path.with_file_name("does-not-exist.conf");
    let e = Config::from_path(&missing).unwrap_err();
    assert_eq!((e.line, e.key.as_deref()), (None, None));
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot read the file: ", missing.display())),
        "{e}"
    );
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn shipped_gateway_conf() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.conf"));
    if !path.exists() {
        return;
    }
    let text = std::fs::read_to_string(path).unwrap();
    let config = Config::from_path(path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.validate(), Ok(()));
    assert_eq!(
        config,
        Config {
            auth_tokens: vec![token("dev", "dev-token-change-me")],
            ..Config::default()
        }
    );
    let lines: Vec<&str> = text.lines().collect();
    for key in Config::KEYS {
        let at: Vec<usize> = (0..lines.len())
            .filter(|&i| {
                !lines[i].starts_with('#')
                    && lines[i]
                        .split_once('=')
                        .is_some_and(|(k, _)| k.trim() == key)
            })
            .collect();
        assert_eq!(at.len(), 1, "{key} is set once in gateway.conf");
        let comments: Vec<&str> = lines[..at[0]]
            .iter()
            .rev()
            .take_while(|l| l.starts_with('#'))
            .copied()
            .collect();
        assert!(
            comments.iter().any(|l| l.contains("Default:")),
            "{key} has a comment with its default"
        );
    }
    assert_eq!(text.matches("auth_tokens =").count(), 1);
    assert!(text.contains("DEVELOPMENT ONLY"));
    // The sections, in order.
    let sections: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("# --- ")?.strip_suffix(" ---"))
        .collect();
    assert_eq!(
        sections,
        ["listener", "auth", "origins", "timers", "limits", "logging"]
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

/// The printed configuration with the real secrets written back.
fn restore_secrets(printed: &str, config: &Config) -> String {
    let tokens: Vec<String> = config
        .auth_tokens
        .iter()
        .map(|t| format!("{}:{}", t.user, t.secret))
        .collect();
    printed
        .lines()
        .map(|line| {
            if line.starts_with("auth_tokens =") {
                format!("auth_tokens = {}\n", tokens.join(", "))
            } else if line.starts_with("auth_password =") {
                format!(
                    "auth_password = {}\n",
                    config.auth_password.as_deref().unwrap_or("")
                )
            } else {
                format!("{line}\n")
            }
        })
        .collect()
}

#[test]
fn every_valid_configuration_round_trips() {
    let values = [
        "0",
        "1",
        "2",
        "7",
        "65535",
        "100000",
        "31536000000",
        "3 KiB",
        "2MiB",
        "true",
        "false",
        "token",
        "password",
        "none",
        "warn",
        "trace",
        "::1",
        "0.0.0.0",
        "/",
        "/a-b",
        "*",
        "http://a:*, https://b.example",
        "a:b",
        "a:b, c:d#e, f:#g, h:i:j",
        "u:s #t",
        "a:x, b:x",
        "#pw",
        "pw#1",
        "p w",
        "",
        "x y #z",
        "abc",
        "-1",
    ];
    let mut rng = Rng::new(42);
    let mut checked = 0;
    for _ in 0..3000 {
        let mut config = Config::default();
        for _ in 0..rng.below(12) {
            let key = Config::KEYS[rng.below(Config::KEYS.len())];
            let _ = config.set(key, values[rng.below(values.len())]);
        }
        if config.validate().is_err() {
            continue;
        }
        checked += 1;
        let printed = config.to_file_string();
        let restored = restore_secrets(&printed, &config);
        assert_eq!(parsed(&restored), config, "{restored}");
    }
    assert!(checked > 100, "{checked}");
}

#[test]
fn byte_soup_never_panics() {
    let pieces: Vec<&str> = Config::KEYS
        .iter()
        .copied()
        .chain([
            "=",
            " = ",
            " ",
            "\t",
            "#",
            " #",
            "\n",
            "\r\n",
            "\r",
            ",",
            ", ",
            ":",
            "0",
            "1",
            "65535",
            "65536",
            "99999999999999999999999",
            "KiB",
            "MiB",
            " MiB",
            "true",
            "false",
            "token",
            "password",
            "none",
            "info",
            "/",
            "/ws",
            "::1",
            "127.0.0.1",
            "*",
            "***",
            "\u{feff}",
            "é",
            "\u{0}",
            "\u{200b}",
            "user:secret",
            "-",
            "+",
        ])
        .collect();
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let mut parsed_ok = 0;
    for _ in 0..5000 {
        let mut text = String::new();
        for _ in 0..rng.below(40) {
            if rng.below(8) == 0 {
                let bytes: Vec<u8> = (0..rng.below(6)).map(|_| rng.next() as u8).collect();
                text.push_str(&String::from_utf8_lossy(&bytes));
            } else {
                text.push_str(pieces[rng.below(pieces.len())]);
            }
        }
        if let Ok(config) = Config::parse_str(&text, "soup.conf") {
            parsed_ok += 1;
            let _ = config.validate();
            let _ = Config::parse_str(&config.to_file_string(), "printed");
            let _ = format!("{config:?}");
        }
        let mut config = Config::default();
        let key = pieces[rng.below(pieces.len())];
        let _ = config.set(key, &text);
        let _ = config.validate();
        let _ = config.to_file_string();
    }
    assert!(parsed_ok > 0);
}
