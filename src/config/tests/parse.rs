//! The file format, `--set`, error messages and `from_path`.

use super::*;

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
    let mut c = parsed(&text);
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
    assert_eq!(
        (
            c.jwt_issuer.as_deref(),
            c.jwt_audience.as_deref(),
            c.jwt_leeway_ms
        ),
        (Some("https://issuer.example"), Some("gateway"), 250)
    );
    assert_eq!(
        c.jwt_public_key.as_ref().map(|k| k.algorithm()),
        Some("ES256")
    );
    // The two JWT keys exclude each other; each alone is valid.
    assert_eq!(
        c.validate().unwrap_err().key.as_deref(),
        Some("jwt_public_key")
    );
    c.jwt_secret = None;
    if cfg!(not(feature = "tls")) {
        (c.tls_cert, c.tls_key, c.tls_client_ca) = (None, None, None);
    }
    assert_eq!(c.validate(), Ok(()));
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
    // Not a regular file: refused without blocking (a FIFO with no writer) or reading
    // without end (a device).
    let fifo = path.with_file_name("fifo.conf");
    let c_path = std::ffi::CString::new(fifo.display().to_string()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let e = Config::from_path(&fifo).unwrap_err();
    assert!(e.to_string().ends_with(": not a regular file"), "{e}");
    let e = Config::from_path(std::path::Path::new("/dev/zero")).unwrap_err();
    assert!(e.to_string().ends_with(": not a regular file"), "{e}");
    let null = Config::from_path(std::path::Path::new("/dev/null")).unwrap();
    assert_eq!(null, Config::default());
    let big = path.with_file_name("big.conf");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(crate::config::file::MAX_CONFIG_BYTES + 1)
        .unwrap();
    let e = Config::from_path(&big).unwrap_err();
    assert!(e.to_string().contains("larger than 4194304 bytes"), "{e}");
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
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
