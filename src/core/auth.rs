//! Checking the credential of an `auth` message (PROTOCOL sections 3, 7 and 11).
//!
//! Contract:
//! - [`Verifier::check`] decides from the configured mode and secrets alone; it keeps no
//!   state (failure counting is the caller's). The verifier is built with the core, and
//!   rebuilt at a reload with the same key ([`Verifier::rebuilt`]).
//! - A credential (token or password) longer than [`MAX_CREDENTIAL_BYTES`] fails
//!   ([`AuthOutcome::Failed`], counted) without being compared or hashed.
//! - Cost per attempt: one keyed hash of the credential (at most [`MAX_CREDENTIAL_BYTES`]),
//!   one 64-bit comparison per configured token, and a full comparison only of the tokens
//!   whose hash matched; never a pass over the credential per token.
//! - Timing: every configured token is compared, with no early exit. The comparison of
//!   hashes leaks nothing about a secret: the hash is SipHash keyed with a random key drawn
//!   per process ([`RandomState`]) that never leaves this module, so a client cannot choose a
//!   credential whose hash is near a secret's, and which token hashes matched tells it only
//!   whether its credential was right (or, with probability 2^-64 per token, a collision).
//!   Where a hash matched, the secret is compared with [`ct_eq`], whose running time depends
//!   only on the length of the credential, never on the secret.
//! - In `auth_mode = jwt` the token is a JWT, verified by [`jwt`](crate::core::jwt) against
//!   the wall-clock time the caller passes; its length is bounded as above first.
//! - Nothing here logs, formats or returns a secret.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use crate::config::{AuthMode, AuthToken, Config};
use crate::core::jwt::JwtVerifier;
use crate::core::scopes::Scopes;

/// Longest credential (`token` or `password`) that is compared at all, in bytes.
pub(crate) const MAX_CREDENTIAL_BYTES: usize = crate::config::MAX_SECRET_BYTES;

/// User id of clients that authenticate without a name (auth mode `none`, or password mode
/// without a `clientId`).
pub(crate) const ANONYMOUS: &str = "anonymous";

/// The credential fields of an `auth` payload, already type-checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Credentials<'a> {
    /// `token`
    pub token: Option<&'a str>,
    /// `password`
    pub password: Option<&'a str>,
    /// `clientId`, the requested user id in password mode.
    pub client_id: Option<&'a str>,
}

/// How a connection proved who it is: what a reload checks it against (PROTOCOL section 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    /// `auth_mode = none`: nothing to prove.
    Open,
    /// The configured password.
    Password,
    /// A configured token, known by the keyed hash of its secret (the secret itself is not
    /// kept per connection); with the connection's `userId` it names the `USER:SECRET` pair.
    Token {
        /// The keyed hash of the secret, by the verifier's key.
        secret_hash: u64,
    },
    /// A JWT (PROTOCOL section 12), until its expiry.
    Jwt {
        /// The token's `exp`, in ms since the Unix epoch.
        expires_ms: u64,
        /// The token's `scopes` claim, when it had one (it then decides the scopes).
        scopes: Option<Scopes>,
        /// When the expiry check in flight for the connection fires, in wall-clock ms; 0
        /// before one is armed (`requests/connection.rs`).
        check_ms: u64,
    },
}

impl Via {
    /// The scopes the credential itself carries (a JWT's `scopes` claim), which then decide
    /// the connection's scopes; `None` when the configured lists decide them, at
    /// authentication and again at each reload. The one place of that rule.
    pub(crate) fn claimed_scopes(self) -> Option<Scopes> {
        match self {
            Via::Jwt { scopes, .. } => scopes,
            Via::Open | Via::Password | Via::Token { .. } => None,
        }
    }
}

/// A successful authentication: the user id and how it was proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Grant {
    /// The `userId`.
    pub user: String,
    /// How it was proved.
    pub via: Via,
}

/// What [`Verifier::check`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AuthOutcome {
    /// Authenticated.
    Success(Grant),
    /// The credential the mode needs is missing (or empty): `AUTH_REQUIRED`, not counted as
    /// a failure.
    Missing,
    /// The credential is wrong: `AUTH_FAILED`, counted.
    Failed,
}

/// A configured secret with its keyed hash (no `Debug`: it is never formatted).
struct Secret {
    hash: u64,
    text: String,
}

/// The configured mode and secrets, each secret hashed once (see the module contract).
pub(crate) struct Verifier {
    mode: AuthMode,
    /// Keyed with a random key drawn once per process.
    hasher: RandomState,
    /// The tokens in configuration order: the first that matches names the user.
    tokens: Vec<(Secret, String)>,
    password: Option<Secret>,
    /// The JWT key, in `auth_mode = jwt`.
    jwt: Option<JwtVerifier>,
}

impl Verifier {
    /// The verifier of `config`'s auth mode and secrets (and JWT key): everything it needs
    /// is in the configuration.
    pub(crate) fn new(config: &Config) -> Self {
        let mut verifier = Self::with(
            config.auth_mode,
            &config.auth_tokens,
            config.auth_password.as_deref(),
        );
        if config.auth_mode == AuthMode::Jwt {
            verifier.jwt = JwtVerifier::new(config);
        }
        verifier
    }

    fn with(mode: AuthMode, tokens: &[AuthToken], password: Option<&str>) -> Self {
        let hasher = RandomState::new();
        let secret = |text: &str| Secret {
            hash: hasher.hash_one(text.as_bytes()),
            text: text.to_owned(),
        };
        let tokens = tokens
            .iter()
            .map(|t| (secret(&t.secret), t.user.clone()))
            .collect();
        let password = password.map(secret);
        Verifier {
            mode,
            hasher,
            tokens,
            password,
            jwt: None,
        }
    }

    /// Check `creds` against the configured mode and secrets; `now_ms` (ms since the Unix
    /// epoch) is the time a JWT is checked at.
    pub(crate) fn check(&self, creds: Credentials<'_>, now_ms: u64) -> AuthOutcome {
        match self.mode {
            AuthMode::None => AuthOutcome::Success(Grant {
                user: ANONYMOUS.to_owned(),
                via: Via::Open,
            }),
            AuthMode::Token => {
                let Some(given) = creds.token.filter(|t| !t.is_empty()) else {
                    return AuthOutcome::Missing;
                };
                if given.len() > MAX_CREDENTIAL_BYTES {
                    return AuthOutcome::Failed;
                }
                let hash = self.hasher.hash_one(given.as_bytes());
                let mut user: Option<&str> = None;
                // Every token, no early exit: one u64 comparison each, the full one only
                // where the hash matched.
                for (secret, name) in &self.tokens {
                    if secret.matches(hash, given) && user.is_none() {
                        user = Some(name);
                    }
                }
                match user {
                    Some(user) => AuthOutcome::Success(Grant {
                        user: user.to_owned(),
                        via: Via::Token { secret_hash: hash },
                    }),
                    None => AuthOutcome::Failed,
                }
            }
            AuthMode::Jwt => {
                let Some(given) = creds.token.filter(|t| !t.is_empty()) else {
                    return AuthOutcome::Missing;
                };
                if given.len() > MAX_CREDENTIAL_BYTES {
                    return AuthOutcome::Failed;
                }
                let Some(jwt) = &self.jwt else {
                    return AuthOutcome::Failed;
                };
                match jwt.verify(given, now_ms) {
                    Ok(token) => AuthOutcome::Success(Grant {
                        user: token.sub,
                        via: Via::Jwt {
                            expires_ms: token.expires_ms,
                            scopes: token.scopes,
                            check_ms: 0,
                        },
                    }),
                    Err(refused) => {
                        log::debug!("JWT refused: {refused:?}");
                        AuthOutcome::Failed
                    }
                }
            }
            AuthMode::Password => {
                let Some(given) = creds.password.filter(|p| !p.is_empty()) else {
                    return AuthOutcome::Missing;
                };
                if given.len() > MAX_CREDENTIAL_BYTES {
                    return AuthOutcome::Failed;
                }
                let hash = self.hasher.hash_one(given.as_bytes());
                if self
                    .password
                    .as_ref()
                    .is_some_and(|s| s.matches(hash, given))
                {
                    let user = creds
                        .client_id
                        .filter(|c| !c.is_empty())
                        .unwrap_or(ANONYMOUS);
                    AuthOutcome::Success(Grant {
                        user: user.to_owned(),
                        via: Via::Password,
                    })
                } else {
                    AuthOutcome::Failed
                }
            }
        }
    }
}

/// What a reload needs of the verifier (PROTOCOL section 12).
impl Verifier {
    /// The verifier of `config`, keyed with this verifier's key, so that the `secret_hash`
    /// of a connection authenticated before ([`Via::Token`]) compares with the new tokens.
    pub(crate) fn rebuilt(&self, config: &Config) -> Verifier {
        let mut next = Verifier::new(config);
        next.hasher = self.hasher.clone();
        let Verifier {
            hasher,
            tokens,
            password,
            ..
        } = &mut next;
        for secret in tokens.iter_mut().map(|(s, _)| s).chain(password.as_mut()) {
            secret.hash = hasher.hash_one(secret.text.as_bytes());
        }
        next
    }

    /// Every configured token as the keyed hash of its secret and its user.
    pub(crate) fn token_pairs(&self) -> impl Iterator<Item = (u64, &str)> {
        self.tokens
            .iter()
            .map(|(secret, user)| (secret.hash, user.as_str()))
    }
}

impl Secret {
    /// Whether `given`, whose keyed hash is `hash`, is this secret.
    fn matches(&self, hash: u64, given: &str) -> bool {
        std::hint::black_box(self.hash ^ hash) == 0 && ct_eq(given.as_bytes(), self.text.as_bytes())
    }
}

/// Whether `given` equals `secret`, in time that depends only on `given.len()`.
pub(crate) fn ct_eq(given: &[u8], secret: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != secret.len());
    if secret.is_empty() {
        return given.is_empty();
    }
    for (i, &b) in given.iter().enumerate() {
        diff |= b ^ secret[i % secret.len()];
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The user of a success, or the outcome.
    fn user(outcome: AuthOutcome) -> Result<String, AuthOutcome> {
        match outcome {
            AuthOutcome::Success(grant) => Ok(grant.user),
            other => Err(other),
        }
    }

    fn tokens() -> Vec<AuthToken> {
        vec![
            AuthToken {
                user: "alice".into(),
                secret: "s3cret".into(),
            },
            AuthToken {
                user: "bob".into(),
                secret: "hunter2".into(),
            },
        ]
    }

    fn token(t: &str) -> Credentials<'_> {
        Credentials {
            token: Some(t),
            ..Credentials::default()
        }
    }

    #[test]
    fn constant_time_compare_is_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"ab", b"abc"));
        assert!(!ct_eq(b"abcabc", b"abc"));
        assert!(!ct_eq(b"", b"abc"));
        assert!(ct_eq(b"", b""));
        assert!(!ct_eq(b"a", b""));
    }

    #[test]
    fn token_mode_names_the_matching_user() {
        let t = tokens();
        let verifier = Verifier::with(AuthMode::Token, &t, None);
        let check = |c| verifier.check(c, 0);
        assert_eq!(user(check(token("hunter2"))), Ok("bob".into()));
        assert_eq!(user(check(token("s3cret"))), Ok("alice".into()));
        assert_eq!(check(token("nope")), AuthOutcome::Failed);
        assert_eq!(check(token("")), AuthOutcome::Missing);
        assert_eq!(check(Credentials::default()), AuthOutcome::Missing);
        let pw = Credentials {
            password: Some("s3cret"),
            ..Credentials::default()
        };
        assert_eq!(check(pw), AuthOutcome::Missing);
        assert_eq!(
            Verifier::with(AuthMode::Token, &[], None).check(token("x"), 0),
            AuthOutcome::Failed
        );
    }

    #[test]
    fn password_mode_takes_the_client_id_as_user() {
        let pw = |p, c| Credentials {
            password: Some(p),
            client_id: c,
            token: None,
        };
        let verifier = Verifier::with(AuthMode::Password, &[], Some("pw"));
        let check = |c| verifier.check(c, 0);
        assert_eq!(user(check(pw("pw", Some("carol")))), Ok("carol".into()));
        assert_eq!(user(check(pw("pw", None))), Ok(ANONYMOUS.into()));
        assert_eq!(user(check(pw("pw", Some("")))), Ok(ANONYMOUS.into()));
        assert_eq!(check(pw("bad", None)), AuthOutcome::Failed);
        assert_eq!(check(token("pw")), AuthOutcome::Missing);
        assert_eq!(
            Verifier::with(AuthMode::Password, &[], None).check(pw("pw", None), 0),
            AuthOutcome::Failed
        );
    }

    #[test]
    fn none_mode_is_anonymous() {
        assert_eq!(
            user(Verifier::with(AuthMode::None, &[], None).check(Credentials::default(), 0)),
            Ok(ANONYMOUS.into())
        );
    }

    #[test]
    fn a_credential_over_the_bound_fails_even_when_it_is_the_secret() {
        let long = "k".repeat(MAX_CREDENTIAL_BYTES + 1);
        let at_bound = "k".repeat(MAX_CREDENTIAL_BYTES);
        let configured = [long.as_str(), at_bound.as_str()].map(|secret| AuthToken {
            user: secret.len().to_string(),
            secret: secret.into(),
        });
        let verifier = Verifier::with(AuthMode::Token, &configured, None);
        assert_eq!(verifier.check(token(&long), 0), AuthOutcome::Failed);
        assert_eq!(
            user(verifier.check(token(&at_bound), 0)),
            Ok(MAX_CREDENTIAL_BYTES.to_string())
        );
        let password = Verifier::with(AuthMode::Password, &[], Some(&long));
        let creds = Credentials {
            password: Some(&long),
            ..Credentials::default()
        };
        assert_eq!(password.check(creds, 0), AuthOutcome::Failed);
    }

    #[test]
    fn the_first_matching_token_names_the_user_among_many() {
        let mut configured: Vec<AuthToken> = (0..64)
            .map(|i| AuthToken {
                user: format!("u{i}"),
                secret: format!("secret-{i}"),
            })
            .collect();
        configured.push(AuthToken {
            user: "twin".into(),
            secret: "secret-7".into(),
        });
        let verifier = Verifier::with(AuthMode::Token, &configured, None);
        assert_eq!(user(verifier.check(token("secret-7"), 0)), Ok("u7".into()));
        assert_eq!(
            user(verifier.check(token("secret-63"), 0)),
            Ok("u63".into())
        );
        assert_eq!(verifier.check(token("secret-64"), 0), AuthOutcome::Failed);
        // Two verifiers draw different keys, and each is stable.
        let other = Verifier::with(AuthMode::Token, &configured, None);
        assert_eq!(user(other.check(token("secret-0"), 0)), Ok("u0".into()));
        assert_ne!(
            verifier.hasher.hash_one(b"x".as_slice()),
            other.hasher.hash_one(b"x".as_slice())
        );
    }

    #[test]
    fn jwt_mode_checks_the_token_at_the_given_time() {
        let config = Config {
            auth_mode: AuthMode::Jwt,
            jwt_secret: Some("k".repeat(32)),
            jwt_leeway_ms: 0,
            ..Config::default()
        };
        let verifier = Verifier::new(&config);
        let key = jsonwebtoken::EncodingKey::from_secret("k".repeat(32).as_bytes());
        let claims = serde_json::json!({"sub": "carol", "exp": 1000, "scopes": ["route"]});
        let jwt = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
        assert_eq!(
            verifier.check(token(&jwt), 999_999),
            AuthOutcome::Success(Grant {
                user: "carol".into(),
                via: Via::Jwt {
                    expires_ms: 1_000_000,
                    scopes: Some(Scopes::from_names(["route"])),
                    check_ms: 0,
                },
            })
        );
        assert_eq!(verifier.check(token(&jwt), 1_000_000), AuthOutcome::Failed);
        assert_eq!(verifier.check(token(""), 0), AuthOutcome::Missing);
        let pw = Credentials {
            password: Some("x"),
            ..Credentials::default()
        };
        assert_eq!(verifier.check(pw, 0), AuthOutcome::Missing);
        let long = format!("{jwt}{}", " ".repeat(MAX_CREDENTIAL_BYTES));
        assert_eq!(verifier.check(token(&long), 0), AuthOutcome::Failed);
    }

    #[test]
    fn a_rebuilt_verifier_keeps_the_key_so_old_hashes_compare() {
        let old = Verifier::with(AuthMode::Token, &tokens(), None);
        let Ok(AuthOutcome::Success(Grant {
            via: Via::Token { secret_hash },
            ..
        })) = Ok::<_, ()>(old.check(token("hunter2"), 0))
        else {
            panic!("bob authenticates");
        };
        let mut config = Config {
            auth_tokens: tokens(),
            ..Config::default()
        };
        config.auth_tokens.remove(0);
        let rebuilt = old.rebuilt(&config);
        let pairs: Vec<(u64, &str)> = rebuilt.token_pairs().collect();
        assert_eq!(pairs, [(secret_hash, "bob")]);
        assert_eq!(user(rebuilt.check(token("hunter2"), 0)), Ok("bob".into()));
        assert_eq!(rebuilt.check(token("s3cret"), 0), AuthOutcome::Failed);
        // A verifier built afresh draws another key: the old hash means nothing to it.
        let fresh = Verifier::new(&config);
        assert!(fresh.token_pairs().all(|(hash, _)| hash != secret_hash));
    }
}
