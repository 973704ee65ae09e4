//! Reading `gateway.conf` and `--set` overrides into a [`Config`]: the lines of the file, its
//! comments, and the errors that name the file, the line and the key. Each value goes to its
//! row of the key table ([`Key::apply`]).
//!
//! # File format
//!
//! - One `key = value` per line; the key is split from the value at the first `=`, and both
//!   are trimmed. Blank lines are ignored. A UTF-8 byte order mark and CRLF line ends are
//!   accepted.
//! - `#` starts a comment only at the start of a line or right after white space, so
//!   `auth_password = secret#1` keeps the `#` and `port = 1 # note` is `1`.
//! - Numbers are decimal digits only (no sign, no separators). Sizes are bytes, with an
//!   optional `KiB` or `MiB` suffix, with or without a space (`2MiB`, `2 MiB`). Keys ending in
//!   `_ms` are milliseconds, from 0 (timer off) to [`MAX_MS`](super::MAX_MS) (365 days).
//!   Booleans are `true` or `false`. `log_level` is `error`, `warn`, `info`, `debug` or
//!   `trace`; `auth_mode` is `token`, `password` or `none`. All of these are case-sensitive.
//! - Lists (`cors_origins`, `auth_tokens`) are comma-separated, items trimmed; an empty item
//!   is an error, an empty value is the empty list. An `auth_tokens` item is `USER:SECRET`,
//!   split at the first `:`; both parts are trimmed and must be non-empty, so a secret may
//!   contain `:` and `#` but not `,`. A value that the file format could not hold as it is
//!   (say a `--set` secret with white space before a `#`) is refused, so that
//!   [`Config::to_file_string`] output always reads back the same.
//! - `auth_password =` with an empty value means no password.
//! - An unknown key, a repeated key, a line without `=` or a bad value is a [`ConfigError`]
//!   naming the file, the line and the key.
//!
//! Contract: parsing starts from `Config::default()` and stops at the first bad line; a
//! failed [`Config::set`] leaves the configuration as it was. Only a known key is echoed in
//! an error: a line that is not one may be a misplaced secret.

use std::path::Path;

use super::file::{self, MAX_CONFIG_BYTES};
use super::keys::{Key, KEY_TABLE};
use super::{Config, ConfigError};

impl Config {
    /// Read a configuration file: the defaults, overridden by every key in the file.
    ///
    /// An unreadable file, one that is not a regular file (a FIFO or a device would block
    /// or never end: the file is read on the poll loop's thread at a reload), one larger than
    /// 4 MiB, or one that is not UTF-8, is an error naming it. Cross-key rules
    /// are not checked here; call [`Config::validate`] after any `--set`.
    pub fn from_path(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let bytes = file::read_regular(path, MAX_CONFIG_BYTES).map_err(|message| ConfigError {
            file: Some(name.clone()),
            line: None,
            key: None,
            message,
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => Config::parse_str(&text, &name),
            Err(e) => {
                let good = e.as_bytes().get(..e.utf8_error().valid_up_to());
                let line = 1 + good.map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count());
                Err(ConfigError {
                    file: Some(name),
                    line: Some(line),
                    key: None,
                    message: "the file is not valid UTF-8".to_string(),
                })
            }
        }
    }

    /// Parse the text of a configuration file: the defaults, overridden by every key in it.
    ///
    /// `file_name` is only used in error messages. Cross-key rules are not checked here; call
    /// [`Config::validate`] after any `--set`.
    pub fn parse_str(text: &str, file_name: &str) -> Result<Config, ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut config = Config::default();
        let mut seen: Vec<(&'static str, usize)> = Vec::new();
        for (index, raw) in text.split('\n').enumerate() {
            let line = index + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            let content = strip_comment(raw).trim();
            if content.is_empty() {
                continue;
            }
            let error = |key: Option<&str>, message: String| ConfigError {
                file: Some(file_name.to_string()),
                line: Some(line),
                key: key.map(str::to_string),
                message,
            };
            let Some((key, value)) = content.split_once('=') else {
                let first = content.split_whitespace().next().unwrap_or("");
                return Err(error(
                    Key::find(first).map(|key| key.name),
                    "missing `=`: expected `key = value`".to_string(),
                ));
            };
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty() {
                return Err(error(None, "missing key before `=`".to_string()));
            }
            let Some(key) = Key::find(key) else {
                return Err(error(shown_key(key), unknown_key_message(key)));
            };
            if let Some((_, first)) = seen.iter().find(|(name, _)| *name == key.name) {
                return Err(error(
                    Some(key.name),
                    format!("repeated key (first set on line {first})"),
                ));
            }
            seen.push((key.name, line));
            key.apply(&mut config, value)
                .map_err(|message| error(Some(key.name), message))?;
        }
        Ok(config)
    }

    /// Apply one `KEY=VALUE` (as from `--set`): same value syntax and rules as the file; key
    /// and value are trimmed, and no comment is stripped (`port=1 # x` is an error, and so is
    /// a secret the file would cut at a `#`). A list key gets the whole new list. On error the
    /// configuration is unchanged.
    ///
    /// The error names the key and says it came from `--set`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let error = |key: Option<&str>, message: String| ConfigError {
            file: None,
            line: None,
            key: key.map(str::to_string),
            message: format!("{message} (from --set)"),
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(error(None, "missing key before `=`".to_string()));
        }
        let Some(key) = Key::find(key) else {
            return Err(error(shown_key(key), unknown_key_message(key)));
        };
        key.apply(self, value.trim())
            .map_err(|message| error(Some(key.name), message))
    }
}

/// The line with its comment removed: from the first `#` that starts the line or follows
/// white space.
fn strip_comment(line: &str) -> &str {
    let mut after_space = true;
    for (at, c) in line.char_indices() {
        if c == '#' && after_space {
            return line.get(..at).unwrap_or("");
        }
        after_space = c.is_whitespace();
    }
    line
}

/// An unknown key as it may be shown: not when it holds white space or `:`, where it may be
/// a misplaced `USER:SECRET` or `key value` line.
fn shown_key(key: &str) -> Option<&str> {
    (!key.chars().any(|c| c.is_whitespace() || c == ':')).then_some(key)
}

/// "unknown key", with the closest known key when one is near.
fn unknown_key_message(key: &str) -> String {
    if shown_key(key).is_none() {
        return "unknown key (a key has no white space or `:`)".to_string();
    }
    let length = key.chars().count();
    let best = KEY_TABLE
        .iter()
        .filter(|known| known.name.len().abs_diff(length) <= 2)
        .map(|known| (edit_distance(key, known.name), known.name))
        .min();
    match best {
        Some((distance, near)) if distance <= 2 => {
            format!("unknown key (did you mean `{near}`?)")
        }
        _ => "unknown key".to_string(),
    }
}

/// Levenshtein distance over chars; long inputs are cut short since they match nothing.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(64).collect();
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}
