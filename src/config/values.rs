//! One value at a time: the syntaxes of the file format (numbers, sizes, milliseconds,
//! booleans, lists, tokens, modes, levels), the rules of one key, and the masked forms of the
//! secrets. The rows of [`KEY_TABLE`](super::keys::KEY_TABLE) are made of these.
//!
//! Contract:
//! - Every function takes or checks one value and returns the message alone; the caller adds
//!   the file, the line and the key.
//! - A bad value is shown through [`quote`]; a secret is never shown, only its position.
//! - The rules of one key ([`check_host`], [`check_tokens`], ...) are the ones parsing applies
//!   and [`Config::validate`](super::Config::validate) applies again.

use std::collections::HashMap;

use super::{AuthMode, AuthToken, JwtPublicKey, MAX_MS, MAX_SECRET_BYTES, SECRET_MASK};

/// `usize::MAX` as a `u64` (saturated where `usize` is wider).
pub(crate) const USIZE_MAX: u64 = if usize::BITS > 64 {
    u64::MAX
} else {
    usize::MAX as u64
};

/// `u32::MAX` as a `u64`.
pub(crate) const U32_MAX: u64 = u32::MAX as u64;

/// Sizes are at least one byte and at most what fits in `usize`.
pub(crate) const SIZE_MIN: u64 = 1;

/// The `log_level` spellings, in order of verbosity.
pub(crate) const LOG_LEVELS: [(&str, log::LevelFilter); 5] = [
    ("error", log::LevelFilter::Error),
    ("warn", log::LevelFilter::Warn),
    ("info", log::LevelFilter::Info),
    ("debug", log::LevelFilter::Debug),
    ("trace", log::LevelFilter::Trace),
];

/// A value for an error message: quoted, escaped, and cut after 64 characters.
pub(crate) fn quote(value: &str) -> String {
    const LIMIT: usize = 64;
    match value.char_indices().nth(LIMIT) {
        Some((at, _)) => format!("{:?}...", value.get(..at).unwrap_or("")),
        None => format!("{value:?}"),
    }
}

/// A number already checked against its key's range, narrowed to the field's type.
pub(crate) fn fit<T: TryFrom<u64>>(n: u64) -> Result<T, String> {
    T::try_from(n).map_err(|_| format!("{n} does not fit this platform"))
}

/// A field's number widened for range checks and printing.
pub(crate) fn wide<T>(n: T) -> u64
where
    u64: TryFrom<T>,
{
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Decimal digits only, in `min..=max`.
pub(crate) fn parse_number(value: &str, min: u64, max: u64) -> Result<u64, String> {
    digits(value)
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            format!(
                "expected a number from {min} to {max}, got {}",
                quote(value)
            )
        })
}

fn digits(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// Bytes, with an optional `KiB` or `MiB` suffix, at least [`SIZE_MIN`].
pub(crate) fn parse_size(value: &str) -> Result<u64, String> {
    let (number, unit) = if let Some(n) = value.strip_suffix("KiB") {
        (n.trim_end(), 1024)
    } else if let Some(n) = value.strip_suffix("MiB") {
        (n.trim_end(), 1024 * 1024)
    } else {
        (value, 1)
    };
    digits(number)
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| (SIZE_MIN..=USIZE_MAX).contains(n))
        .ok_or_else(|| {
            format!(
                "expected a size from {SIZE_MIN} to {USIZE_MAX} bytes (a KiB or MiB suffix \
                 is accepted), got {}",
                quote(value)
            )
        })
}

/// Milliseconds, from 0 (off) to [`MAX_MS`].
pub(crate) fn parse_millis(value: &str) -> Result<u64, String> {
    digits(value).filter(|n| *n <= MAX_MS).ok_or_else(|| {
        format!(
            "expected milliseconds from 0 to {MAX_MS} (0 = off), got {}",
            quote(value)
        )
    })
}

pub(crate) fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("expected true or false, got {}", quote(value))),
    }
}

pub(crate) fn parse_auth_mode(value: &str) -> Result<AuthMode, String> {
    match value {
        "token" => Ok(AuthMode::Token),
        "password" => Ok(AuthMode::Password),
        "jwt" => Ok(AuthMode::Jwt),
        "none" => Ok(AuthMode::None),
        _ => Err(format!(
            "expected token, password, jwt or none, got {}",
            quote(value)
        )),
    }
}

pub(crate) fn parse_log_level(value: &str) -> Result<log::LevelFilter, String> {
    LOG_LEVELS
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, level)| *level)
        .ok_or_else(|| {
            format!(
                "expected one of error, warn, info, debug, trace, got {}",
                quote(value)
            )
        })
}

/// The spelling of `level`; `None` for `off`, which the file cannot set.
pub(crate) fn level_name(level: log::LevelFilter) -> Option<&'static str> {
    LOG_LEVELS
        .iter()
        .find(|(_, l)| *l == level)
        .map(|(name, _)| *name)
}

/// Comma-separated items, trimmed; an empty value is the empty list, an empty item an error.
fn split_list(value: &str) -> Result<Vec<&str>, String> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    match items.iter().position(|item| item.is_empty()) {
        Some(at) => Err(format!("item {} of the list is empty", at + 1)),
        None => Ok(items),
    }
}

pub(crate) fn parse_origins(value: &str) -> Result<Vec<String>, String> {
    let origins: Vec<String> = split_list(value)?.into_iter().map(str::to_string).collect();
    check_origins(&origins)?;
    Ok(origins)
}

/// `USER:SECRET` items, split at the first `:`, both parts trimmed.
pub(crate) fn parse_tokens(value: &str) -> Result<Vec<AuthToken>, String> {
    let mut tokens = Vec::new();
    for (index, item) in split_list(value)?.into_iter().enumerate() {
        let Some((user, secret)) = item.split_once(':') else {
            return Err(format!(
                "item {}: expected USER:SECRET, found no `:`",
                index + 1
            ));
        };
        tokens.push(AuthToken {
            user: user.trim().to_string(),
            secret: secret.trim().to_string(),
        });
    }
    check_tokens(&tokens)?;
    Ok(tokens)
}

/// A user list: comma-separated user ids, `*` for every user, empty for none.
pub(crate) fn parse_users(value: &str) -> Result<Vec<String>, String> {
    let users: Vec<String> = split_list(value)?.into_iter().map(str::to_string).collect();
    check_users(&users)?;
    Ok(users)
}

/// Each item is a user id as `auth_tokens` could name it (no white space, control
/// characters, `,`, `:` or `#`, at most 128 bytes) or `*`.
pub(crate) fn check_users(users: &[String]) -> Result<(), String> {
    for (index, user) in users.iter().enumerate() {
        if user.is_empty() {
            return Err(format!("item {} of the list is empty", index + 1));
        }
        if user.len() > 128
            || user
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ',' | '#' | ':'))
        {
            return Err(format!(
                "item {}: a user id has at most 128 bytes and no white space, control \
                 characters, `,`, `:` or `#`, got {}",
                index + 1,
                quote(user)
            ));
        }
    }
    Ok(())
}

/// An empty value is no password.
pub(crate) fn parse_password(value: &str) -> Result<Option<String>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    check_password(value)?;
    Ok(Some(value.to_string()))
}

/// Token users as they are, every secret as [`SECRET_MASK`].
pub(crate) fn masked_tokens(tokens: &[AuthToken]) -> String {
    let masked: Vec<String> = tokens
        .iter()
        .map(|t| format!("{}:{SECRET_MASK}", t.user))
        .collect();
    masked.join(", ")
}

/// The tokens as `auth_tokens` writes them, secrets included (for a reload's comparison
/// only: never printed).
pub(crate) fn revealed_tokens(tokens: &[AuthToken]) -> String {
    let items: Vec<String> = tokens
        .iter()
        .map(|t| format!("{}:{}", t.user, t.secret))
        .collect();
    items.join(", ")
}

/// [`SECRET_MASK`] for a password, nothing for none.
pub(crate) fn masked_password(password: Option<&str>) -> String {
    password.map_or(String::new(), |_| SECRET_MASK.to_string())
}

pub(crate) fn check_host(host: &str) -> Result<(), String> {
    host.parse::<std::net::IpAddr>().map(|_| ()).map_err(|_| {
        format!(
            "expected an IP address such as 127.0.0.1 or ::1, got {}",
            quote(host)
        )
    })
}

pub(crate) fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("must start with `/`, got {}", quote(path)));
    }
    if path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(format!(
            "must not contain white space, control characters, `?` or `#`, got {}",
            quote(path)
        ));
    }
    Ok(())
}

pub(crate) fn check_origins(origins: &[String]) -> Result<(), String> {
    for (index, origin) in origins.iter().enumerate() {
        if origin.is_empty() {
            return Err(format!("item {} of the list is empty", index + 1));
        }
        if origin
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',' || c == '#')
        {
            return Err(format!(
                "item {}: a pattern has no white space, control characters, `,` or `#` \
                 (items are separated by `,`), got {}",
                index + 1,
                quote(origin)
            ));
        }
    }
    Ok(())
}

/// Whether `s` has white space at either end.
fn padded(s: &str) -> bool {
    s.trim() != s
}

/// Whether `s` has white space followed by `#`, which the file format reads as a comment.
fn space_then_hash(s: &str) -> bool {
    s.chars()
        .zip(s.chars().skip(1))
        .any(|(a, b)| a.is_whitespace() && b == '#')
}

/// Whether `s`, written as a value of its own, would be cut by a comment.
fn comment_inside(s: &str) -> bool {
    s.starts_with('#') || space_then_hash(s)
}

/// The token rules; messages name entries by position and never quote a secret.
pub(crate) fn check_tokens(tokens: &[AuthToken]) -> Result<(), String> {
    let mut first_of: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    for (index, token) in tokens.iter().enumerate() {
        let n = index + 1;
        let user = &token.user;
        if user.is_empty() {
            return Err(format!("item {n}: USER is empty (expected USER:SECRET)"));
        }
        if padded(user)
            || comment_inside(user)
            || user.chars().any(|c| c == ':' || c == ',' || c.is_control())
        {
            return Err(format!(
                "item {n}: USER must not contain `:`, `,`, control characters or a `#` that \
                 would start a comment, nor begin or end with white space"
            ));
        }
        let secret = &token.secret;
        if secret.is_empty() {
            return Err(format!("item {n}: SECRET is empty (expected USER:SECRET)"));
        }
        if padded(secret)
            || space_then_hash(secret)
            || secret.chars().any(|c| c == ',' || c.is_control())
        {
            return Err(format!(
                "item {n}: SECRET must not contain `,`, control characters or white space \
                 followed by `#`, nor begin or end with white space"
            ));
        }
        if secret.len() > MAX_SECRET_BYTES {
            return Err(format!(
                "item {n}: SECRET is longer than {MAX_SECRET_BYTES} bytes, the longest credential \
                 a client may send"
            ));
        }
        if secret == SECRET_MASK {
            return Err(format!(
                "item {n}: SECRET is `***`, the mask that --print-config prints; put the \
                 real secret back"
            ));
        }
        // A hash lookup, not a pass over the earlier tokens: 10 000 tokens are checked in
        // a few milliseconds (a reload checks them while the loop waits).
        if let Some(first) = first_of.insert(secret.as_str(), index) {
            return Err(format!("items {} and {n} have the same SECRET", first + 1));
        }
    }
    Ok(())
}

/// The password rules; messages never quote it.
pub(crate) fn check_password(password: &str) -> Result<(), String> {
    if password.is_empty() {
        return Err("is empty".to_string());
    }
    if padded(password) || comment_inside(password) || password.chars().any(char::is_control) {
        return Err(
            "must not contain control characters or a `#` that would start a comment, \
                    nor begin or end with white space"
                .to_string(),
        );
    }
    if password.len() > MAX_SECRET_BYTES {
        return Err(format!(
            "is longer than {MAX_SECRET_BYTES} bytes, the longest credential a client may send"
        ));
    }
    if password == SECRET_MASK {
        return Err(
            "is `***`, the mask that --print-config prints; put the real password back".to_string(),
        );
    }
    Ok(())
}

/// The shortest `jwt_secret`: RFC 7518 (3.2) wants an HS256 key of at least the hash's 256
/// bits.
pub(crate) const MIN_JWT_SECRET_BYTES: usize = 32;

/// The longest `jwt_issuer` or `jwt_audience`.
pub(crate) const MAX_CLAIM_VALUE_BYTES: usize = 1024;

/// An empty value is no secret.
pub(crate) fn parse_jwt_secret(value: &str) -> Result<Option<String>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    check_jwt_secret(value)?;
    Ok(Some(value.to_string()))
}

/// The `jwt_secret` rules; messages never quote it.
pub(crate) fn check_jwt_secret(secret: &str) -> Result<(), String> {
    if padded(secret) || comment_inside(secret) || secret.chars().any(char::is_control) {
        return Err(
            "must not contain control characters or a `#` that would start a comment, \
             nor begin or end with white space"
                .to_string(),
        );
    }
    if secret == SECRET_MASK {
        return Err(
            "is `***`, the mask that --print-config prints; put the real secret back".to_string(),
        );
    }
    if secret.len() < MIN_JWT_SECRET_BYTES || secret.len() > MAX_SECRET_BYTES {
        return Err(format!(
            "must have {MIN_JWT_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes (an HS256 key is at \
             least 256 bits), has {}",
            secret.len()
        ));
    }
    Ok(())
}

/// An empty value is no key; otherwise the PEM file is read and checked at once.
pub(crate) fn parse_jwt_public_key(value: &str) -> Result<Option<JwtPublicKey>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    check_file_value(value)?;
    super::jwt::read(std::path::Path::new(value)).map(Some)
}

/// The path as the file format prints it.
pub(crate) fn print_jwt_public_key(key: Option<&JwtPublicKey>) -> String {
    key.map_or(String::new(), |k| k.path().display().to_string())
}

/// A path the file format can hold as it is.
pub(crate) fn check_file_value(path: &str) -> Result<(), String> {
    if padded(path) || comment_inside(path) || path.chars().any(char::is_control) {
        return Err(format!(
            "a path must not contain control characters or a `#` that would start a \
             comment, nor begin or end with white space, got {}",
            quote(path)
        ));
    }
    Ok(())
}

/// An empty value is none.
pub(crate) fn parse_claim_value(value: &str) -> Result<Option<String>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    check_claim_value(value)?;
    Ok(Some(value.to_string()))
}

/// `jwt_issuer` and `jwt_audience`: at most [`MAX_CLAIM_VALUE_BYTES`], without control
/// characters, white space at the ends or a `#` that would start a comment.
pub(crate) fn check_claim_value(value: &str) -> Result<(), String> {
    if value.is_empty()
        || value.len() > MAX_CLAIM_VALUE_BYTES
        || padded(value)
        || comment_inside(value)
        || value.chars().any(char::is_control)
    {
        return Err(format!(
            "expected 1 to {MAX_CLAIM_VALUE_BYTES} bytes without control characters, white \
             space at the ends or a `#` that would start a comment, got {}",
            quote(value)
        ));
    }
    Ok(())
}

/// `off` is refused: the file has no spelling for it.
pub(crate) fn check_log_level(level: log::LevelFilter) -> Result<(), String> {
    match level_name(level) {
        Some(_) => Ok(()),
        None => Err("must be one of error, warn, info, debug, trace".to_string()),
    }
}
