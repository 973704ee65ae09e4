//! Checking the credential of an `auth` message (PROTOCOL sections 3 and 7).
//!
//! Contract:
//! - [`check`] decides from the configured mode and secrets alone; it keeps no state (failure
//!   counting is the caller's).
//! - Secrets are compared with [`ct_eq`], whose running time depends only on the length of the
//!   credential the client sent, never on the secret; in token mode every configured token is
//!   compared, with no early exit.
//! - Nothing here logs, formats or returns a secret.

use crate::config::{AuthMode, AuthToken};

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

/// What [`check`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AuthOutcome {
    /// Authenticated as this user id.
    Success(String),
    /// The credential the mode needs is missing (or empty): `AUTH_REQUIRED`, not counted as
    /// a failure.
    Missing,
    /// The credential is wrong: `AUTH_FAILED`, counted.
    Failed,
}

/// Check `creds` against the configured mode and secrets.
pub(crate) fn check(
    mode: AuthMode,
    tokens: &[AuthToken],
    password: Option<&str>,
    creds: Credentials<'_>,
) -> AuthOutcome {
    match mode {
        AuthMode::None => AuthOutcome::Success(ANONYMOUS.to_owned()),
        AuthMode::Token => {
            let Some(given) = creds.token.filter(|t| !t.is_empty()) else {
                return AuthOutcome::Missing;
            };
            let mut user: Option<&str> = None;
            for token in tokens {
                if ct_eq(given.as_bytes(), token.secret.as_bytes()) && user.is_none() {
                    user = Some(&token.user);
                }
            }
            match user {
                Some(user) => AuthOutcome::Success(user.to_owned()),
                None => AuthOutcome::Failed,
            }
        }
        AuthMode::Password => {
            let Some(given) = creds.password.filter(|p| !p.is_empty()) else {
                return AuthOutcome::Missing;
            };
            let matched = password.is_some_and(|secret| ct_eq(given.as_bytes(), secret.as_bytes()));
            if matched {
                let user = creds
                    .client_id
                    .filter(|c| !c.is_empty())
                    .unwrap_or(ANONYMOUS);
                AuthOutcome::Success(user.to_owned())
            } else {
                AuthOutcome::Failed
            }
        }
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
        let check = |c| check(AuthMode::Token, &t, None, c);
        assert_eq!(check(token("hunter2")), AuthOutcome::Success("bob".into()));
        assert_eq!(check(token("s3cret")), AuthOutcome::Success("alice".into()));
        assert_eq!(check(token("nope")), AuthOutcome::Failed);
        assert_eq!(check(token("")), AuthOutcome::Missing);
        assert_eq!(check(Credentials::default()), AuthOutcome::Missing);
        let pw = Credentials {
            password: Some("s3cret"),
            ..Credentials::default()
        };
        assert_eq!(check(pw), AuthOutcome::Missing);
        assert_eq!(
            super::check(AuthMode::Token, &[], None, token("x")),
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
        let check = |c| check(AuthMode::Password, &[], Some("pw"), c);
        assert_eq!(
            check(pw("pw", Some("carol"))),
            AuthOutcome::Success("carol".into())
        );
        assert_eq!(
            check(pw("pw", None)),
            AuthOutcome::Success(ANONYMOUS.into())
        );
        assert_eq!(
            check(pw("pw", Some(""))),
            AuthOutcome::Success(ANONYMOUS.into())
        );
        assert_eq!(check(pw("bad", None)), AuthOutcome::Failed);
        assert_eq!(check(token("pw")), AuthOutcome::Missing);
        assert_eq!(
            super::check(AuthMode::Password, &[], None, pw("pw", None)),
            AuthOutcome::Failed
        );
    }

    #[test]
    fn none_mode_is_anonymous() {
        assert_eq!(
            check(AuthMode::None, &[], None, Credentials::default()),
            AuthOutcome::Success(ANONYMOUS.into())
        );
    }
}
