//! Verifying the JWT of an `auth` in `auth_mode = jwt` (PROTOCOL section 12).
//!
//! Contract:
//! - [`JwtVerifier::new`] builds from a [`Config`] alone: the key was read and checked when
//!   the configuration was loaded (`jwt_public_key`), so nothing here reads a file.
//! - Exactly one algorithm is accepted, the configured key's: HS256 for `jwt_secret`,
//!   RS256, ES256 or EdDSA for the type of `jwt_public_key`. A token whose header names any
//!   other `alg` (`none` included, and HS256 against a public key) fails before any
//!   signature is computed. A header with `crit` fails too: no extension is understood
//!   here, and RFC 7515 (4.1.11) wants the token refused then.
//! - [`JwtVerifier::verify`] never reads the clock: the library's own time checks are off,
//!   and `exp` / `nbf` are checked here against the caller's wall-clock milliseconds, with
//!   `jwt_leeway_ms`. `exp` and `nbf` are NumericDates (seconds, fractions allowed): a token
//!   is expired from `exp + leeway` on, and not yet valid before `nbf - leeway`.
//! - Claims: `sub` is required, 1 to [`MAX_SUB_BYTES`] bytes; `exp` required; `nbf`
//!   optional; `iss` must equal `jwt_issuer` and `aud` be `jwt_audience` (or an array
//!   containing it) when those are set; `scopes`, when present, is an array of scope names
//!   (unknown names ignored). A registered claim of the wrong JSON type fails the token.
//! - The caller bounds the token's length (`MAX_CREDENTIAL_BYTES` in `auth.rs`), which
//!   bounds every allocation here. Nothing here logs or returns the token.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::config::{Config, KeyType};
use crate::core::scopes::Scopes;

/// The longest `sub` (the `userId`), in bytes.
pub(crate) const MAX_SUB_BYTES: usize = 128;

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verified {
    /// `sub`: the `userId`.
    pub sub: String,
    /// `exp` in ms since the Unix epoch (rounded down).
    pub expires_ms: u64,
    /// The `scopes` claim, when the token has one.
    pub scopes: Option<Scopes>,
}

/// Why a token was refused (for the debug log and the tests; the client sees `AUTH_FAILED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not a JWT, a header naming another algorithm, a bad signature, or claims that are
    /// not a JSON object of the right types.
    Invalid,
    /// `sub` missing, empty or too long.
    Subject,
    /// `exp` missing or not a number.
    NoExpiry,
    /// Past `exp` + leeway.
    Expired,
    /// Before `nbf` - leeway.
    NotYetValid,
    /// `iss` is not `jwt_issuer`.
    Issuer,
    /// `aud` does not name `jwt_audience`.
    Audience,
}

/// `aud`: one audience or several.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The header fields read here (the library reads `alg`).
#[derive(Deserialize)]
struct Head {
    crit: Option<IgnoredAny>,
}

/// Whether the header of `token` names critical extensions (or cannot be read at all).
fn has_crit(token: &str) -> bool {
    let Some((header, _)) = token.split_once('.') else {
        return true;
    };
    let Ok(json) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header) else {
        return true;
    };
    serde_json::from_slice::<Head>(&json).map_or(true, |head| head.crit.is_some())
}

/// The claims read; others are ignored.
#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    nbf: Option<f64>,
    iss: Option<String>,
    aud: Option<Audience>,
    #[serde(default, deserialize_with = "present")]
    scopes: Option<Vec<String>>,
}

/// An optional claim that, when present, must have its type: `null` is not "absent".
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// The latest expiry kept, in ms: 2^53 - 1, the largest integer a JSON number carries
/// exactly to every client (`expiresAt`). A later `exp` is taken as this.
const MAX_EXPIRY_MS: u64 = (1 << 53) - 1;

/// The configured key, its one algorithm, and the claim rules.
pub(crate) struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
    leeway_ms: u64,
}

impl JwtVerifier {
    /// The verifier of `config`'s JWT keys; `None` when neither `jwt_secret` nor
    /// `jwt_public_key` is set (every token then fails).
    pub(crate) fn new(config: &Config) -> Option<JwtVerifier> {
        let (algorithm, key) = if let Some(secret) = &config.jwt_secret {
            (
                Algorithm::HS256,
                DecodingKey::from_secret(secret.as_bytes()),
            )
        } else {
            let public = config.jwt_public_key.as_ref()?;
            let bytes = public.key_bytes();
            match public.kind() {
                KeyType::Rsa => (Algorithm::RS256, DecodingKey::from_rsa_der(bytes)),
                KeyType::P256 => (Algorithm::ES256, DecodingKey::from_ec_der(bytes)),
                KeyType::Ed25519 => (Algorithm::EdDSA, DecodingKey::from_ed_der(bytes)),
            }
        };
        let mut validation = Validation::new(algorithm);
        // Only the signature and the one algorithm are the library's; time and claims are
        // checked in `verify`, against the core's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        Some(JwtVerifier {
            key,
            validation,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            leeway_ms: config.jwt_leeway_ms,
        })
    }

    /// Verify `token` at `now_ms` (ms since the Unix epoch).
    pub(crate) fn verify(&self, token: &str, now_ms: u64) -> Result<Verified, Refused> {
        if has_crit(token) {
            return Err(Refused::Invalid);
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|_| Refused::Invalid)?
            .claims;
        let sub = claims
            .sub
            .filter(|s| !s.is_empty() && s.len() <= MAX_SUB_BYTES)
            .ok_or(Refused::Subject)?;
        let expires_ms = claims.exp.and_then(floor_ms).ok_or(Refused::NoExpiry)?;
        if now_ms >= expires_ms.saturating_add(self.leeway_ms) {
            return Err(Refused::Expired);
        }
        if let Some(nbf) = claims.nbf {
            let not_before = ceil_ms(nbf).ok_or(Refused::Invalid)?;
            if now_ms.saturating_add(self.leeway_ms) < not_before {
                return Err(Refused::NotYetValid);
            }
        }
        if let Some(issuer) = &self.issuer {
            if claims.iss.as_deref() != Some(issuer.as_str()) {
                return Err(Refused::Issuer);
            }
        }
        if let Some(audience) = &self.audience {
            let names = match &claims.aud {
                Some(Audience::One(aud)) => aud == audience,
                Some(Audience::Many(auds)) => auds.iter().any(|a| a == audience),
                None => false,
            };
            if !names {
                return Err(Refused::Audience);
            }
        }
        let scopes = claims
            .scopes
            .map(|names| Scopes::from_names(names.iter().map(String::as_str)));
        Ok(Verified {
            sub,
            expires_ms,
            scopes,
        })
    }
}

/// A NumericDate in ms, rounded down; `None` when not finite. Before the epoch is 0.
fn floor_ms(seconds: f64) -> Option<u64> {
    // `as` saturates: far-future dates become u64::MAX, negative ones 0.
    seconds
        .is_finite()
        .then(|| ((seconds * 1000.0).floor() as u64).min(MAX_EXPIRY_MS))
}

/// A NumericDate in ms, rounded up; `None` when not finite.
fn ceil_ms(seconds: f64) -> Option<u64> {
    seconds
        .is_finite()
        .then(|| (seconds * 1000.0).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::scopes::Scope;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{json, Value};

    const SECRET: &str = "an-hs256-test-key-of-32-bytes-ok";
    const NOW_MS: u64 = 1_764_201_600_000;
    const NOW: u64 = NOW_MS / 1000;

    fn verifier(edit: impl FnOnce(&mut Config)) -> JwtVerifier {
        let mut config = Config {
            jwt_secret: Some(SECRET.to_string()),
            ..Config::default()
        };
        edit(&mut config);
        JwtVerifier::new(&config).expect("a key is configured")
    }

    fn token(claims: &Value) -> String {
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
    }

    /// An HS256 token with this exact header JSON.
    fn hs256_with_header(header: &str, claims: &Value) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let message = format!("{}.{}", b64.encode(header), b64.encode(claims.to_string()));
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256);
        format!("{message}.{}", signature.unwrap())
    }

    fn check(v: &JwtVerifier, claims: Value) -> Result<Verified, Refused> {
        v.verify(&token(&claims), NOW_MS)
    }

    #[test]
    fn a_valid_token_gives_sub_expiry_and_scopes() {
        let v = verifier(|_| {});
        let got = check(&v, json!({"sub": "alice", "exp": NOW + 60})).unwrap();
        assert_eq!(got.sub, "alice");
        assert_eq!(got.expires_ms, (NOW + 60) * 1000);
        assert_eq!(got.scopes, None);
        let got = check(
            &v,
            json!({"sub": "a", "exp": NOW + 1, "scopes": ["route", "nope", "admin"]}),
        )
        .unwrap();
        assert_eq!(
            got.scopes,
            Some(Scopes::NONE.with(Scope::Route).with(Scope::Admin))
        );
        let empty = check(&v, json!({"sub": "a", "exp": NOW + 1, "scopes": []})).unwrap();
        assert_eq!(empty.scopes, Some(Scopes::NONE));
    }

    #[test]
    fn expiry_and_not_before_use_the_given_clock_and_the_leeway() {
        let v = verifier(|c| c.jwt_leeway_ms = 2000);
        let at = |exp: f64| check(&v, json!({"sub": "a", "exp": exp}));
        // Expired from exp + leeway on.
        assert!(at(NOW as f64 - 1.999).is_ok());
        assert_eq!(at(NOW as f64 - 2.0), Err(Refused::Expired));
        assert_eq!(at(1.5).unwrap_err(), Refused::Expired);
        assert_eq!(
            at(NOW as f64 + 0.25).unwrap().expires_ms,
            NOW_MS + 250,
            "fractional NumericDate"
        );
        let nbf = |nbf: f64| check(&v, json!({"sub": "a", "exp": NOW + 60, "nbf": nbf}));
        assert!(nbf(NOW as f64 + 2.0).is_ok());
        assert_eq!(nbf(NOW as f64 + 2.001), Err(Refused::NotYetValid));
        let strict = verifier(|c| c.jwt_leeway_ms = 0);
        let token = token(&json!({"sub": "a", "exp": NOW}));
        assert_eq!(strict.verify(&token, NOW_MS), Err(Refused::Expired));
        assert!(strict.verify(&token, NOW_MS - 1).is_ok());
        let far = check(&v, json!({"sub": "a", "exp": 1e300})).unwrap();
        assert_eq!(far.expires_ms, MAX_EXPIRY_MS);
        // An optional claim present as null is of the wrong type.
        assert!(check(&v, json!({"sub": "a", "exp": NOW + 1, "scopes": null})).is_err());
        assert!(check(&v, json!({"sub": "a", "exp": NOW + 1, "nbf": null})).is_err());
    }

    #[test]
    fn required_claims_and_their_types() {
        let v = verifier(|_| {});
        let exp = NOW + 60;
        for (claims, refused) in [
            (json!({"exp": exp}), Refused::Subject),
            (json!({"sub": "", "exp": exp}), Refused::Subject),
            (
                json!({"sub": "x".repeat(129), "exp": exp}),
                Refused::Subject,
            ),
            (json!({"sub": "a"}), Refused::NoExpiry),
            (json!({"sub": "a", "exp": null}), Refused::NoExpiry),
            (json!({"sub": 7, "exp": exp}), Refused::Invalid),
            (json!({"sub": "a", "exp": "soon"}), Refused::Invalid),
            (
                json!({"sub": "a", "exp": exp, "scopes": "admin"}),
                Refused::Invalid,
            ),
            (json!({"sub": "a", "exp": exp, "iss": 1}), Refused::Invalid),
            (json!(["sub", "a"]), Refused::Invalid),
        ] {
            assert_eq!(check(&v, claims.clone()), Err(refused), "{claims}");
        }
        assert!(check(&v, json!({"sub": "x".repeat(128), "exp": exp})).is_ok());
    }

    #[test]
    fn issuer_and_audience_must_match_when_configured() {
        let exp = NOW + 60;
        let open = verifier(|_| {});
        assert!(check(
            &open,
            json!({"sub": "a", "exp": exp, "iss": "x", "aud": "y"})
        )
        .is_ok());
        let v = verifier(|c| {
            c.jwt_issuer = Some("https://issuer".into());
            c.jwt_audience = Some("gateway".into());
        });
        let with = |iss: Value, aud: Value| {
            check(&v, json!({"sub": "a", "exp": exp, "iss": iss, "aud": aud}))
        };
        assert!(with(json!("https://issuer"), json!("gateway")).is_ok());
        assert!(with(json!("https://issuer"), json!(["other", "gateway"])).is_ok());
        assert_eq!(
            with(json!("https://other"), json!("gateway")),
            Err(Refused::Issuer)
        );
        assert_eq!(
            with(json!("https://issuer"), json!("other")),
            Err(Refused::Audience)
        );
        assert_eq!(
            with(json!("https://issuer"), json!(["other"])),
            Err(Refused::Audience)
        );
        assert_eq!(
            check(&v, json!({"sub": "a", "exp": exp, "aud": "gateway"})),
            Err(Refused::Issuer)
        );
        assert_eq!(
            check(&v, json!({"sub": "a", "exp": exp, "iss": "https://issuer"})),
            Err(Refused::Audience)
        );
    }

    #[test]
    fn signature_and_algorithm() {
        let v = verifier(|_| {});
        let claims = json!({"sub": "a", "exp": NOW + 60});
        let good = token(&claims);
        assert!(v.verify(&good, NOW_MS).is_ok());
        let other_key = EncodingKey::from_secret(b"another-key-of-thirty-two-bytes!");
        let forged = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &other_key);
        assert_eq!(v.verify(&forged.unwrap(), NOW_MS), Err(Refused::Invalid));
        let hs384 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        );
        assert_eq!(v.verify(&hs384.unwrap(), NOW_MS), Err(Refused::Invalid));
        // alg none: header {"alg":"none"}, the claims, an empty signature.
        let (_, rest) = good.split_once('.').unwrap();
        let (payload, _) = rest.split_once('.').unwrap();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        assert_eq!(v.verify(&none, NOW_MS), Err(Refused::Invalid));
        // A critical extension, correctly signed: refused.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let signed = |header: &Header| {
            jsonwebtoken::encode(
                header,
                &claims,
                &EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .unwrap()
        };
        assert!(v.verify(&signed(&header), NOW_MS).is_ok(), "kid is fine");
        let crit = hs256_with_header(r#"{"alg":"HS256","crit":["exp"],"exp":1}"#, &claims);
        assert_eq!(v.verify(&crit, NOW_MS), Err(Refused::Invalid));
        let plain = hs256_with_header(r#"{"alg":"HS256"}"#, &claims);
        assert!(v.verify(&plain, NOW_MS).is_ok());
        for junk in [
            "",
            ".",
            "..",
            "a.b.c",
            "a.b.c.d",
            &good[1..],
            &format!("{good}x"),
        ] {
            assert_eq!(v.verify(junk, NOW_MS), Err(Refused::Invalid), "{junk:?}");
        }
        assert!(JwtVerifier::new(&Config::default()).is_none());
    }
}
