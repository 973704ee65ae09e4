//! What `--check` says about a certificate: its subject, its names and when it expires, read
//! from the DER of an X.509 certificate by a small walker of DER's tag-length-value items.
//!
//! Contract: [`summarize`] never panics and reads nothing beyond its input; a certificate it
//! cannot follow gives `None` (the TLS library, not this, decides whether a certificate is
//! usable). Only the fields it reports are looked at: the subject's common name,
//! organisation and organisational unit, the `dNSName` and `iPAddress` entries of the
//! subject alternative name extension, `notAfter` (UTCTime or GeneralizedTime), and the
//! public key's algorithm (with an RSA modulus's size in bits).

use std::net::{Ipv4Addr, Ipv6Addr};

/// What [`summarize`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Summary {
    /// The subject's attributes it knows, e.g. `CN=localhost, O=example`.
    pub subject: String,
    /// The DNS names and IP addresses of the subject alternative names.
    pub names: Vec<String>,
    /// `notAfter`, as `YYYY-MM-DD HH:MM:SS UTC`.
    pub not_after: String,
    /// `notAfter` in seconds since 1970, when its digits make a date.
    pub not_after_unix: Option<i64>,
    /// The public key's algorithm, when it is one it knows.
    pub key: Option<KeyKind>,
}

/// The algorithm of a certificate's public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// RSA, with its modulus's size in bits.
    Rsa(usize),
    /// An elliptic-curve key (ECDSA).
    Ec,
    Ed25519,
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyKind::Rsa(bits) => write!(f, "RSA {bits} bits"),
            KeyKind::Ec => f.write_str("ECDSA"),
            KeyKind::Ed25519 => f.write_str("Ed25519"),
        }
    }
}

/// One DER item: its tag, its contents, and what follows it.
fn item(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (contents, after) = rest.split_at(len);
    Some((tag, contents, after))
}

/// The contents of the item at the front of `input` if its tag is `tag`, and what follows.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, contents, rest) = item(input)?;
    (t == tag).then_some((contents, rest))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
/// `[0]` of the version, `[3]` of the extensions (explicit, constructed).
const VERSION: u8 = 0xa0;
const EXTENSIONS: u8 = 0xa3;
/// `dNSName [2]` and `iPAddress [7]` of a GeneralName (implicit, primitive).
const DNS_NAME: u8 = 0x82;
const IP_ADDRESS: u8 = 0x87;
/// 2.5.29.17, subjectAltName.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
/// 1.2.840.113549.1.1.1 rsaEncryption, 1.2.840.10045.2.1 id-ecPublicKey, 1.3.101.112 Ed25519.
const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// Subject, names and expiry of the X.509 certificate `der` (see the module docs).
pub(crate) fn summarize(der: &[u8]) -> Option<Summary> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    if let Some((_, after)) = expect(rest, VERSION) {
        rest = after;
    }
    let (_, _serial, rest) = item(rest)?;
    let (_signature, rest) = expect(rest, SEQUENCE)?;
    let (_issuer, rest) = expect(rest, SEQUENCE)?;
    let (validity, rest) = expect(rest, SEQUENCE)?;
    let (subject, rest) = expect(rest, SEQUENCE)?;
    let (key_info, mut rest) = expect(rest, SEQUENCE)?;
    let (_not_before_tag, _, validity) = item(validity)?;
    let (tag, not_after, _) = item(validity)?;
    let (not_after, not_after_unix) = time(tag, not_after)?;
    let mut names = Vec::new();
    while let Some((tag, contents, after)) = item(rest) {
        if tag == EXTENSIONS {
            names = alt_names(contents).unwrap_or_default();
        }
        rest = after;
    }
    Some(Summary {
        subject: name(subject),
        names,
        not_after,
        not_after_unix,
        key: key_kind(key_info),
    })
}

/// The algorithm of a SubjectPublicKeyInfo's contents, and an RSA key's modulus size.
fn key_kind(key_info: &[u8]) -> Option<KeyKind> {
    let (algorithm, rest) = expect(key_info, SEQUENCE)?;
    let (oid, _) = expect(algorithm, OID)?;
    match oid {
        EC => Some(KeyKind::Ec),
        ED25519 => Some(KeyKind::Ed25519),
        RSA => {
            // A BIT STRING (its first byte counts unused bits) holding RSAPublicKey, a
            // SEQUENCE whose first INTEGER is the modulus.
            let (bits, _) = expect(rest, BIT_STRING)?;
            let (_unused, public_key) = bits.split_first()?;
            let (public_key, _) = expect(public_key, SEQUENCE)?;
            let (modulus, _) = expect(public_key, INTEGER)?;
            let start = modulus.iter().position(|&b| b != 0)?;
            let top = modulus[start];
            Some(KeyKind::Rsa(
                (modulus.len() - start) * 8 - top.leading_zeros() as usize,
            ))
        }
        _ => None,
    }
}

/// The attributes of a Name it knows, as `CN=..., O=..., OU=...`.
fn name(mut rdns: &[u8]) -> String {
    let mut parts = Vec::new();
    while let Some((SET, mut set, after)) = item(rdns) {
        while let Some((SEQUENCE, attribute, next)) = item(set) {
            if let Some((oid, value)) = expect(attribute, OID) {
                let label = match oid {
                    [0x55, 0x04, 0x03] => Some("CN"),
                    [0x55, 0x04, 0x0a] => Some("O"),
                    [0x55, 0x04, 0x0b] => Some("OU"),
                    _ => None,
                };
                if let (Some(label), Some((_, text, _))) = (label, item(value)) {
                    parts.push(format!("{label}={}", String::from_utf8_lossy(text)));
                }
            }
            set = next;
        }
        rdns = after;
    }
    if parts.is_empty() {
        "(empty)".to_string()
    } else {
        parts.join(", ")
    }
}

/// The DNS names and IP addresses of the subjectAltName extension in `extensions` (`[3]`).
fn alt_names(extensions: &[u8]) -> Option<Vec<String>> {
    let (mut list, _) = expect(extensions, SEQUENCE)?;
    while let Some((extension, after)) = expect(list, SEQUENCE) {
        let (oid, mut rest) = expect(extension, OID)?;
        if oid == SUBJECT_ALT_NAME {
            if let Some((0x01, _, after)) = item(rest) {
                rest = after; // critical
            }
            let (value, _) = expect(rest, OCTET_STRING)?;
            let (mut general, _) = expect(value, SEQUENCE)?;
            let mut names = Vec::new();
            while let Some((tag, contents, after)) = item(general) {
                match (tag, contents.len()) {
                    (DNS_NAME, _) => names.push(String::from_utf8_lossy(contents).into_owned()),
                    (IP_ADDRESS, 4) => {
                        let octets: [u8; 4] = contents.try_into().ok()?;
                        names.push(Ipv4Addr::from(octets).to_string());
                    }
                    (IP_ADDRESS, 16) => {
                        let octets: [u8; 16] = contents.try_into().ok()?;
                        names.push(Ipv6Addr::from(octets).to_string());
                    }
                    _ => {}
                }
                general = after;
            }
            return Some(names);
        }
        list = after;
    }
    Some(Vec::new())
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as text and as seconds
/// since 1970.
fn time(tag: u8, text: &[u8]) -> Option<(String, Option<i64>)> {
    let digits = text.strip_suffix(b"Z")?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        std::str::from_utf8(digits.get(range)?).ok()?.parse().ok()
    };
    let (year, rest) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy = number(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (GENERALIZED_TIME, 14) => (number(0..4)?, 4),
        _ => return None,
    };
    let [month, day, hour, minute, second] =
        [0, 2, 4, 6, 8].map(|at| number(rest + at..rest + at + 2));
    let (month, day, hour, minute, second) = (month?, day?, hour?, minute?, second?);
    let text = format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02} UTC");
    let valid = (1..=12).contains(&month) && (1..=31).contains(&day) && hour < 24 && minute < 60;
    let unix = valid
        .then(|| days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second);
    Some((text, unix))
}

/// Days since 1970-01-01 of a date of the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12; // March is 0
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read(path).unwrap();
        pem::parse(text).unwrap().into_contents()
    }

    #[test]
    fn the_test_certificate_is_summarized() {
        let summary = summarize(&fixture("cert.pem")).expect("a summary");
        assert_eq!(summary.subject, "CN=localhost, O=gateway tests");
        assert_eq!(summary.names, ["localhost", "127.0.0.1"]);
        assert!(summary.not_after.starts_with("2126-"), "{summary:?}");
        assert_eq!(summary.key, Some(KeyKind::Ec));
        let ca = summarize(&fixture("ca.pem")).expect("a summary");
        assert_eq!(ca.subject, "CN=gateway test CA");
        assert!(ca.names.is_empty());
    }

    #[test]
    fn times_in_both_forms() {
        assert_eq!(
            time(UTC_TIME, b"700101000000Z"),
            Some(("1970-01-01 00:00:00 UTC".to_string(), Some(0)))
        );
        assert_eq!(
            time(GENERALIZED_TIME, b"20000301000000Z").unwrap().1,
            Some(951_868_800)
        );
        assert_eq!(
            time(UTC_TIME, b"491231235959Z").unwrap().0,
            "2049-12-31 23:59:59 UTC"
        );
        assert_eq!(time(UTC_TIME, b"7001010000Z"), None);
        assert_eq!(time(GENERALIZED_TIME, b"2000030100000+Z"), None);
    }

    #[test]
    fn every_cut_and_every_flipped_byte_is_refused_or_read_without_panic() {
        let der = fixture("cert.pem");
        for len in 0..der.len() {
            let _ = summarize(&der[..len]);
        }
        for at in 0..der.len() {
            let mut bad = der.clone();
            bad[at] ^= 0xff;
            let _ = summarize(&bad);
        }
        assert_eq!(summarize(&[]), None);
        assert_eq!(summarize(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
