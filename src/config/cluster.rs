//! The values of the cluster keys (PROTOCOL section 13): the Redis address of
//! `cluster_redis` and the names `cluster_prefix` and `node_id`.
//!
//! Contract:
//! - `redis://HOST:PORT[/DB]`, optionally `redis://:PASSWORD@HOST:PORT[/DB]`; HOST is an IP
//!   address or a name, resolved once when the gateway starts (never in the poll loop, where a
//!   lookup could block it).
//! - A password is a secret: printed as `***`, never logged, compared and read back only by a
//!   reload.
//! - Names (`cluster_prefix`, `node_id`) are 1 to 64 letters, digits, `-` and `_`, so that
//!   they fit in a Redis key and a log line as they are.

use std::fmt;

use super::secret::{MAX_SECRET_BYTES, SECRET_MASK};
use super::values::quote;

/// The longest `cluster_prefix` and `node_id`, in bytes.
pub(crate) const MAX_NAME_BYTES: usize = 64;

/// The Redis server of `cluster_redis`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// An IP address or a host name.
    pub host: String,
    /// The TCP port.
    pub port: u16,
    /// The database number (`SELECT`), 0 when the URL names none.
    pub db: u32,
    /// The password of `AUTH`, when the URL has one.
    pub password: Option<String>,
}

impl RedisUrl {
    /// Read `redis://[:PASSWORD@]HOST:PORT[/DB]`.
    ///
    /// ```
    /// use gateway::RedisUrl;
    /// let url = RedisUrl::parse("redis://:s3cret@10.0.0.5:6379/2").unwrap();
    /// assert_eq!((url.host.as_str(), url.port, url.db), ("10.0.0.5", 6379, 2));
    /// assert_eq!(url.password.as_deref(), Some("s3cret"));
    /// assert_eq!(url.to_string(), "redis://:***@10.0.0.5:6379/2");
    /// ```
    pub fn parse(value: &str) -> Result<RedisUrl, String> {
        let shape =
            || "expected redis://HOST:PORT[/DB] or redis://:PASSWORD@HOST:PORT[/DB]".to_string();
        let rest = value.strip_prefix("redis://").ok_or_else(shape)?;
        let (password, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => {
                let password = auth.strip_prefix(':').ok_or_else(|| {
                    "the part before `@` must be `:PASSWORD` (Redis 5 has no user names)"
                        .to_string()
                })?;
                check_password(password)?;
                (Some(password.to_string()), rest)
            }
            None => (None, rest),
        };
        let (address, db) = match rest.split_once('/') {
            Some((address, "")) => (address, 0),
            Some((address, db)) => (
                address,
                db.parse::<u32>()
                    .map_err(|_| format!("the database must be a number, got {}", quote(db)))?,
            ),
            None => (rest, 0),
        };
        let (host, port) = split_host_port(address).ok_or_else(shape)?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("expected a port from 1 to 65535, got {}", quote(port)))?;
        check_host_name(host)?;
        Ok(RedisUrl {
            host: host.to_string(),
            port,
            db,
            password,
        })
    }

    /// The URL as the file writes it, the password included: for a reload's comparison only.
    pub(crate) fn revealed(&self) -> String {
        self.written(self.password.as_deref())
    }

    fn written(&self, password: Option<&str>) -> String {
        let auth = password.map_or(String::new(), |p| format!(":{p}@"));
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let db = if self.db == 0 {
            String::new()
        } else {
            format!("/{}", self.db)
        };
        format!("redis://{auth}{host}:{}{db}", self.port)
    }
}

impl fmt::Display for RedisUrl {
    /// The URL with its password as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written(self.password.as_ref().map(|_| SECRET_MASK)))
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// `HOST:PORT` or `[V6]:PORT`.
fn split_host_port(address: &str) -> Option<(&str, &str)> {
    if let Some(rest) = address.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        return Some((host, port));
    }
    address.rsplit_once(':')
}

/// An IP address, or a DNS name of letters, digits, `-` and `.`.
fn check_host_name(host: &str) -> Result<(), String> {
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if name_ok || host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    Err(format!(
        "expected an IP address or a host name, got {}",
        quote(host)
    ))
}

fn check_password(password: &str) -> Result<(), String> {
    if password.is_empty() || password.len() > MAX_SECRET_BYTES {
        return Err(format!(
            "the password must have 1 to {MAX_SECRET_BYTES} bytes"
        ));
    }
    if password == SECRET_MASK {
        return Err(format!(
            "the password must not be `{SECRET_MASK}`, the mask that --print-config prints"
        ));
    }
    if password
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '#' || c == '@' || c == '/')
    {
        return Err(
            "the password must not contain white space, control characters, `#`, `@` or `/`"
                .to_string(),
        );
    }
    Ok(())
}

/// `cluster_redis`: empty is none.
pub(crate) fn parse_redis(value: &str) -> Result<Option<RedisUrl>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    RedisUrl::parse(value).map(Some)
}

/// `cluster_prefix` and `node_id`: 1 to [`MAX_NAME_BYTES`] letters, digits, `-`, `_`.
pub(crate) fn check_cluster_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected 1 to {MAX_NAME_BYTES} letters, digits, `-` or `_`, got {}",
            quote(name)
        ))
    }
}

/// `node_id`: empty is none (a random one is made at start).
pub(crate) fn parse_node_id(value: &str) -> Result<Option<String>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    check_cluster_name(value)?;
    Ok(Some(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_with_their_parts() {
        let url = RedisUrl::parse("redis://127.0.0.1:6379").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.db, url.password),
            ("127.0.0.1", 6379, 0, None)
        );
        let url = RedisUrl::parse("redis://redis.internal:7000/3").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.db),
            ("redis.internal", 7000, 3)
        );
        let url = RedisUrl::parse("redis://:pw@[::1]:6379/").unwrap();
        assert_eq!(
            (url.host.as_str(), url.password.as_deref()),
            ("::1", Some("pw"))
        );
        assert_eq!(url.to_string(), "redis://:***@[::1]:6379");
        assert_eq!(url.revealed(), "redis://:pw@[::1]:6379");
    }

    #[test]
    fn bad_urls_say_what_was_expected_without_the_password() {
        for (bad, says) in [
            ("http://127.0.0.1:6379", "expected redis://"),
            ("redis://127.0.0.1", "expected redis://"),
            ("redis://127.0.0.1:0", "port from 1 to 65535"),
            ("redis://127.0.0.1:99999", "port from 1 to 65535"),
            ("redis://127.0.0.1:6379/x", "database must be a number"),
            ("redis://user:pw@127.0.0.1:6379", "`:PASSWORD`"),
            ("redis://:@127.0.0.1:6379", "1 to 4096 bytes"),
            ("redis://bad host:6379", "IP address or a host name"),
        ] {
            let err = RedisUrl::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let err = RedisUrl::parse("redis://:hunter2 x@h:1").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn names_are_short_and_plain() {
        assert!(check_cluster_name("gw").is_ok());
        assert!(check_cluster_name("node-1_a").is_ok());
        assert!(check_cluster_name(&"a".repeat(64)).is_ok());
        for bad in ["", "a b", "a:b", "ä", &"a".repeat(65)] {
            assert!(check_cluster_name(bad).is_err(), "{bad:?}");
        }
    }
}
