//! Fuzzes the configuration parser: `Config::parse_str` on the input (lossy UTF-8), and
//! `Config::set` of one key (picked by the first byte) to the rest of the input.
//!
//! Checks: no panic; for every configuration that passes `validate`, the printed file
//! (`to_file_string`) parses back to the same configuration, as is when it holds no secret
//! and with the real secrets written back in place of `***` otherwise.

use crate::config::Config;

/// The printed configuration with the real secrets written back in place of `***` (the
/// config tests use it too).
pub(crate) fn restore_secrets(printed: &str, config: &Config) -> String {
    let tokens: Vec<String> = config
        .auth_tokens
        .iter()
        .map(|t| format!("{}:{}", t.user, t.secret))
        .collect();
    let password = config.auth_password.as_deref().unwrap_or("");
    printed
        .lines()
        .map(|line| {
            if line.starts_with("auth_tokens =") {
                format!("auth_tokens = {}\n", tokens.join(", "))
            } else if line.starts_with("auth_password =") {
                format!("auth_password = {password}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect()
}

fn check_round_trip(config: &Config) {
    let _ = format!("{config:?}");
    let printed = config.to_file_string();
    if config.validate().is_err() {
        let _ = Config::parse_str(&printed, "printed.conf");
        return;
    }
    let has_secrets = !config.auth_tokens.is_empty() || config.auth_password.is_some();
    let text = if has_secrets {
        restore_secrets(&printed, config)
    } else {
        printed
    };
    match Config::parse_str(&text, "printed.conf") {
        Ok(again) => assert!(
            again == *config,
            "{config:?} printed as\n{text}\nread back as {again:?}"
        ),
        Err(e) => panic!("{config:?} printed as\n{text}\nfails to parse: {e}"),
    }
}

/// Runs one input: returns when it holds, panics when a check fails.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(config) = Config::parse_str(&text, "fuzz.conf") {
        check_round_trip(&config);
    }
    let key = Config::KEYS[usize::from(data.first().copied().unwrap_or(0)) % Config::KEYS.len()];
    let value = String::from_utf8_lossy(data.get(1..).unwrap_or_default());
    let mut config = Config::default();
    if config.set(key, &value).is_ok() {
        check_round_trip(&config);
    } else {
        assert!(
            config == Config::default(),
            "a failed set changed the configuration"
        );
    }
}
