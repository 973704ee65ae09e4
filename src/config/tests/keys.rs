//! The key table: defaults, one field per key, every key printed and read back, and the
//! shipped `gateway.conf`.

use std::path::Path;

use super::*;
use crate::config::keys::KEY_TABLE;

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
    // The two JWT keys exclude each other.
    assert_eq!(invalid(&all), "jwt_public_key: cannot be set together with jwt_secret: the key decides the one algorithm accepted");
    all.jwt_secret = None;
    if cfg!(not(feature = "tls")) {
        assert!(
            invalid(&all).contains("built without TLS"),
            "{}",
            invalid(&all)
        );
        (all.tls_cert, all.tls_key, all.tls_client_ca) = (None, None, None);
    }
    assert_eq!(all.validate(), Ok(()));
}

#[test]
fn every_key_round_trips_through_print_and_parse() {
    assert_eq!(KEY_TABLE.len(), NON_DEFAULTS.len());
    for (key, (name, value)) in KEY_TABLE.iter().zip(NON_DEFAULTS) {
        assert_eq!(key.name, name, "NON_DEFAULTS follows the key table");
        let mut config = Config::default();
        config.set(name, value).unwrap_or_else(|e| panic!("{e}"));
        let printed = config.to_file_string();
        let lines: Vec<&str> = printed
            .lines()
            .filter(|l| l.starts_with(&format!("{name} =")))
            .collect();
        assert_eq!(lines.len(), 1, "{name} is printed once:\n{printed}");
        if key.is_secret() {
            // The mask does not read back; the value put back in its place does.
            assert!(lines[0].contains(SECRET_MASK), "{}", lines[0]);
            let e = parse(&printed).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(name), "{e}");
            let restored = printed.replace(lines[0], &format!("{name} = {value}"));
            assert_eq!(parsed(&restored), config, "{restored}");
        } else {
            assert_eq!(parsed(&printed), config, "{printed}");
        }
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
        [
            "listener", "tls", "auth", "jwt", "access", "origins", "timers", "limits", "bounds",
            "cluster", "logging"
        ]
    );
}
