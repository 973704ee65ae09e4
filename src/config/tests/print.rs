//! `to_file_string` and `Debug`: the printed format, masked secrets, and read-back.

use super::*;

#[test]
fn defaults_print_byte_for_byte() {
    let expected = concat!(
        "# gateway effective configuration (secrets shown as ***)\n",
        "\n",
        "# listener\n",
        "host = 127.0.0.1\n",
        "port = 18789\n",
        "path = /ws\n",
        "max_connections = 10000\n",
        "http_endpoints = true\n",
        "\n",
        "# tls\n",
        "tls_cert =\n",
        "tls_key =\n",
        "tls_client_ca =\n",
        "\n",
        "# auth\n",
        "auth_mode = token\n",
        "auth_tokens =\n",
        "auth_password =\n",
        "auth_timeout_ms = 10000\n",
        "max_auth_failures = 3\n",
        "\n",
        "# jwt\n",
        "jwt_secret =\n",
        "jwt_public_key =\n",
        "jwt_issuer =\n",
        "jwt_audience =\n",
        "jwt_leeway_ms = 5000\n",
        "\n",
        "# access\n",
        "allow_sessions = *\n",
        "allow_agents = *\n",
        "allow_route = *\n",
        "admin_users =\n",
        "\n",
        "# origins\n",
        "cors_origins = http://localhost:*, http://127.0.0.1:*, https://localhost:*, https://127.0.0.1:*\n",
        "require_origin = false\n",
        "\n",
        "# timers\n",
        "handshake_timeout_ms = 5000\n",
        "heartbeat_interval_ms = 30000\n",
        "client_timeout_ms = 60000\n",
        "close_timeout_ms = 5000\n",
        "agent_ttl_ms = 300000\n",
        "\n",
        "# limits\n",
        "max_header_bytes = 8192\n",
        "max_payload = 10485760\n",
        "max_message_size = 1048576\n",
        "max_outbound_buffer = 4194304\n",
        "max_clients_per_session = 10\n",
        "max_sessions_per_client = 64\n",
        "max_sessions = 100000\n",
        "max_agents = 10000\n",
        "rate_limit_per_sec = 0\n",
        "rate_limit_burst = 100\n",
        "\n",
        "# bounds\n",
        "max_preauth_message_size = 65536\n",
        "max_name_bytes = 256\n",
        "max_agent_bytes = 65536\n",
        "max_capabilities = 256\n",
        "max_agents_per_user = 100\n",
        "max_connections_per_user = 1000\n",
        "max_memberships_per_user = 4096\n",
        "max_pending_routes_per_user = 4096\n",
        "max_pending_handshakes = 1024\n",
        "max_inflight_bytes = 268435456\n",
        "message_timeout_ms = 30000\n",
        "max_list_items = 100\n",
        "\n",
        "# cluster\n",
        "cluster_redis =\n",
        "cluster_prefix = gw\n",
        "node_id =\n",
        "reuse_port = false\n",
        "broker_timeout_ms = 2000\n",
        "node_heartbeat_ms = 2000\n",
        "node_dead_ms = 10000\n",
        "\n",
        "# logging\n",
        "log_level = info\n",
    );
    assert_eq!(Config::default().to_file_string(), expected);
    assert_eq!(format!("{:?}", Config::default()), expected);
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
    for secret in ["top#secret", "s:2", "third one", "hunter2", "thirty-two"] {
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
        .replace("auth_password = ***", "auth_password = hunter2#x")
        .replace(
            "jwt_secret = ***",
            "jwt_secret = an-hs256-key-of-thirty-two-bytes#1",
        )
        .replace(":***@127.0.0.1:6390", ":pw-1@127.0.0.1:6390");
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
        let restored = crate::fuzzing::config::restore_secrets(&printed, &config);
        assert_eq!(parsed(&restored), config, "{restored}");
    }
    assert!(checked > 100, "{checked}");
}
