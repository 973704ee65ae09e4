//! The `Origin` check of the WebSocket upgrade (PROTOCOL.md section 7).
//!
//! An [`OriginPolicy`] holds the configured `cors_origins` patterns and says whether the
//! `Origin` header of an upgrade request may pass. It is a pure function of its input.
//!
//! - A missing `Origin` is allowed unless `require_origin` is set.
//! - The pattern `*` allows every origin value, whatever its form.
//! - Every other pattern only ever matches a well-formed origin: `scheme://host` or
//!   `scheme://host:port`. The scheme is a letter followed by letters, digits, `+`, `-` or `.`;
//!   the host is letters, digits, `.` and `-`, or a bracketed IPv6 literal such as `[::1]`;
//!   the port is 1 to 65535 in decimal without a leading zero. Anything else is refused:
//!   `null`, an empty value, a path (even `/`), user info, a query, a fragment, an empty port
//!   (`http://localhost:`), port 0 or one out of range, percent-encoded or non-ASCII hosts.
//! - Scheme and host compare ignoring ASCII case; there is no default-port normalization
//!   (`http://a.com:80` is not `http://a.com`).
//! - A pattern without `*` must equal the origin (ignoring ASCII case).
//! - In a pattern with `*`, the scheme must match; each `*` in the host matches zero or more
//!   letters, digits, `.` and `-`; a port `:*` requires an explicit port, a numeric port requires
//!   that port, and no port requires the origin to have none.
//! - Patterns are trimmed of surrounding white space and empty ones are ignored. A pattern not of
//!   the forms above (a `*` in the scheme or in a port such as `:80*`, a path, no `://`) never
//!   matches; [`OriginPolicy::is_valid_pattern`] lets the configuration reject it up front.

/// Which origins may open a WebSocket connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginPolicy {
    patterns: Vec<Pattern>,
    require_origin: bool,
}

impl OriginPolicy {
    /// Builds a policy from the patterns as configured (`cors_origins`), e.g.
    /// `["http://localhost:*", "http://127.0.0.1:*"]`. With `require_origin`, a request without
    /// an `Origin` header is refused. Invalid patterns are kept out (they would never match).
    pub fn new(patterns: &[String], require_origin: bool) -> OriginPolicy {
        let patterns = patterns
            .iter()
            .filter_map(|text| Pattern::parse(text.trim()))
            .collect();
        OriginPolicy {
            patterns,
            require_origin,
        }
    }

    /// A policy that allows every origin and a missing one (used by the echo example).
    pub fn allow_all() -> OriginPolicy {
        OriginPolicy {
            patterns: vec![Pattern::Any],
            require_origin: false,
        }
    }

    /// Whether an upgrade with this `Origin` header may proceed; `None` means the request had
    /// no `Origin` header.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let Some(text) = origin else {
            return !self.require_origin;
        };
        if self.allows_any() {
            return true;
        }
        let Some(parsed) = Origin::parse(text) else {
            return false;
        };
        self.patterns
            .iter()
            .any(|pattern| pattern.matches(text, &parsed))
    }

    /// Whether any pattern is `*` (the gateway warns about that at start).
    pub fn allows_any(&self) -> bool {
        self.patterns
            .iter()
            .any(|pattern| matches!(pattern, Pattern::Any))
    }

    /// Whether `pattern` (surrounding white space ignored) is a pattern that can match
    /// something; for the configuration to reject a typo instead of silently ignoring it.
    pub fn is_valid_pattern(pattern: &str) -> bool {
        Pattern::parse(pattern.trim()).is_some()
    }
}

/// One parsed `cors_origins` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// `*`: every origin.
    Any,
    /// No `*`: the origin must equal this text, ignoring ASCII case.
    Exact(String),
    /// A `*` in the host or port.
    Wildcard {
        scheme: String,
        host: String,
        port: PortRule,
    },
}

/// What a wildcard pattern requires of the origin's port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortRule {
    /// The pattern has no port: the origin must have none.
    Absent,
    /// `:*`: any explicit port.
    Any,
    /// `:N`: exactly this port.
    Exact(u16),
}

impl Pattern {
    fn parse(text: &str) -> Option<Pattern> {
        if text == "*" {
            return Some(Pattern::Any);
        }
        if !text.contains('*') {
            return Origin::parse(text).map(|_| Pattern::Exact(text.to_owned()));
        }
        let (scheme, host, port) = split_origin(text)?;
        if !is_scheme(scheme) || !is_host_pattern(host) {
            return None;
        }
        let port = match port {
            None => PortRule::Absent,
            Some("*") => PortRule::Any,
            Some(digits) => PortRule::Exact(parse_port(digits)?),
        };
        Some(Pattern::Wildcard {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            port,
        })
    }

    /// `text` is the origin as received, `origin` the same text parsed.
    fn matches(&self, text: &str, origin: &Origin) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(exact) => exact.eq_ignore_ascii_case(text),
            Pattern::Wildcard { scheme, host, port } => {
                let port_ok = match (port, origin.port) {
                    (PortRule::Absent, None) | (PortRule::Any, Some(_)) => true,
                    (PortRule::Exact(wanted), Some(got)) => *wanted == got,
                    _ => false,
                };
                port_ok
                    && scheme.eq_ignore_ascii_case(origin.scheme)
                    && host_matches(host, origin.host)
            }
        }
    }
}

/// A well-formed serialized origin, borrowed from the header value.
#[derive(Debug)]
struct Origin<'a> {
    scheme: &'a str,
    host: &'a str,
    port: Option<u16>,
}

impl<'a> Origin<'a> {
    fn parse(text: &'a str) -> Option<Origin<'a>> {
        let (scheme, host, port) = split_origin(text)?;
        if !is_scheme(scheme) || !is_host(host) {
            return None;
        }
        let port = match port {
            None => None,
            Some(digits) => Some(parse_port(digits)?),
        };
        Some(Origin { scheme, host, port })
    }
}

/// Splits `scheme://host[:port]` into its three parts, without judging their characters.
/// Refuses anything with a path, query, fragment or user info.
fn split_origin(text: &str) -> Option<(&str, &str, Option<&str>)> {
    let (scheme, authority) = text.split_once("://")?;
    if authority.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')? + 1;
        let (host, rest) = authority.split_at(end);
        if rest.is_empty() {
            (host, None)
        } else {
            (host, Some(rest.strip_prefix(':')?))
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some((scheme, host, port))
}

fn is_scheme(scheme: &str) -> bool {
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// The characters of a host name, and those a `*` in a host pattern may stand for.
fn is_host_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'.' || c == b'-'
}

fn is_host(host: &str) -> bool {
    match host.strip_prefix('[') {
        Some(literal) => is_ipv6_literal(literal),
        None => !host.is_empty() && host.bytes().all(is_host_char),
    }
}

/// The inside of `[...]` plus the closing bracket.
fn is_ipv6_literal(literal: &str) -> bool {
    match literal.strip_suffix(']') {
        Some(inner) => {
            !inner.is_empty()
                && inner
                    .bytes()
                    .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
        }
        None => false,
    }
}

fn is_host_pattern(host: &str) -> bool {
    if host.starts_with('[') {
        return is_host(host);
    }
    !host.is_empty() && host.bytes().all(|c| c == b'*' || is_host_char(c))
}

/// A port in canonical decimal: 1 to 65535, no sign, no leading zero.
fn parse_port(digits: &str) -> Option<u16> {
    if digits.starts_with('0') || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    match digits.parse::<u16>() {
        Ok(0) | Err(_) => None,
        Ok(port) => Some(port),
    }
}

/// Matches a host against a host pattern whose `*`s stand for runs of host characters,
/// ignoring ASCII case. Dynamic programming over the pattern: `row[j]` says whether the first
/// `j` pattern bytes match the host bytes consumed so far.
fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.as_bytes();
    let mut row = vec![true];
    for &p in pattern {
        let previous = row.last() == Some(&true);
        row.push(previous && p == b'*');
    }
    for &h in host.as_bytes() {
        let mut next = vec![false];
        for (&p, (&diagonal, &above)) in pattern.iter().zip(row.iter().zip(row.iter().skip(1))) {
            let matched = if p == b'*' {
                let star_empty = next.last() == Some(&true);
                star_empty || (above && is_host_char(h))
            } else {
                diagonal && p.eq_ignore_ascii_case(&h)
            };
            next.push(matched);
        }
        row = next;
    }
    row.last() == Some(&true)
}

#[cfg(test)]
mod tests;
