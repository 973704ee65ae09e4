//! The public key of `auth_mode = jwt` (PROTOCOL section 12): `jwt_public_key` names a PEM
//! file, read and checked when the key is set, so that a configuration that holds a
//! [`JwtPublicKey`] holds a usable key and the protocol core never reads a file.
//!
//! Contract:
//! - [`read`] (behind `JwtPublicKey::read`) reads at most [`MAX_PEM_BYTES`] of the file and accepts exactly
//!   one PEM block: `PUBLIC KEY` (SPKI) of an RSA key, a P-256 key or an Ed25519 key, or
//!   `RSA PUBLIC KEY` (PKCS#1). RSA moduli must have 2048 to 8192 bits (what RS256
//!   verification accepts). Anything else is an error that says what was found.
//! - The key's type decides the one algorithm tokens may use: RS256, ES256 or EdDSA.
//! - The path is kept as given (relative paths are relative to the current directory) and
//!   printed back by `--print-config`; it must be a value the file format can hold.

use std::path::{Path, PathBuf};

/// The largest key file read, in bytes (an RSA 8192 public key PEM is about 1.5 KiB).
pub(crate) const MAX_PEM_BYTES: u64 = 64 * 1024;

/// The type of a configured public key; each allows one algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyType {
    /// RSA: RS256.
    Rsa,
    /// ECDSA on P-256: ES256.
    P256,
    /// Ed25519: EdDSA.
    Ed25519,
}

impl KeyType {
    /// The JWS `alg` this key type allows.
    pub(crate) fn algorithm(self) -> &'static str {
        match self {
            KeyType::Rsa => "RS256",
            KeyType::P256 => "ES256",
            KeyType::Ed25519 => "EdDSA",
        }
    }
}

/// A JWT verification key read from a PEM file, for `auth_mode = jwt` (the
/// `jwt_public_key` key). Made only by `JwtPublicKey::read`, so it always holds a key of a
/// supported type.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtPublicKey {
    path: PathBuf,
    kind: KeyType,
    /// What the verifier takes: the PKCS#1 `RSAPublicKey` DER, the uncompressed P-256 point,
    /// or the 32 bytes of the Ed25519 key.
    key: Vec<u8>,
}

impl std::fmt::Debug for JwtPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "JwtPublicKey({}, {})",
            self.path.display(),
            self.kind.algorithm()
        )
    }
}

/// Read and check the PEM file at `path` (see the module contract for what is accepted);
/// the error is the message only.
pub(crate) fn read(path: &Path) -> Result<JwtPublicKey, String> {
    let shown = path.display().to_string();
    let bytes = super::file::read_regular(path, MAX_PEM_BYTES)
        .map_err(|e| format!("{shown:?}: {e}: not a public key PEM"))?;
    let (kind, key) = parse_pem(&bytes).map_err(|e| format!("{shown:?}: {e}"))?;
    Ok(JwtPublicKey {
        path: path.to_path_buf(),
        kind,
        key,
    })
}

impl JwtPublicKey {
    /// The file it was read from, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The one JWS algorithm tokens may use with this key: `RS256`, `ES256` or `EdDSA`.
    pub fn algorithm(&self) -> &'static str {
        self.kind.algorithm()
    }

    /// The key's type.
    pub(crate) fn kind(&self) -> KeyType {
        self.kind
    }

    /// The key bytes the verifier takes (see the field).
    pub(crate) fn key_bytes(&self) -> &[u8] {
        &self.key
    }
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;

/// The key type and key bytes of a PEM text.
pub(crate) fn parse_pem(bytes: &[u8]) -> Result<(KeyType, Vec<u8>), String> {
    let not_pem = || "not a PEM file (no -----BEGIN PUBLIC KEY----- block)".to_string();
    let blocks = pem::parse_many(bytes).map_err(|_| not_pem())?;
    if blocks.is_empty() {
        return Err(not_pem());
    }
    let [block] = blocks.as_slice() else {
        return Err(format!(
            "expected one PEM block, found {} (the file holds only the public key)",
            blocks.len()
        ));
    };
    match block.tag() {
        "PUBLIC KEY" => spki(block.contents()),
        "RSA PUBLIC KEY" => rsa(block.contents()).map(|key| (KeyType::Rsa, key)),
        tag if tag.contains("PRIVATE") => Err(format!(
            "holds a private key ({tag}); give the public key \
             (`openssl pkey -in KEY -pubout`)"
        )),
        tag => Err(format!(
            "holds a {tag:?} block; expected PUBLIC KEY (or RSA PUBLIC KEY)"
        )),
    }
}

/// A SubjectPublicKeyInfo: `SEQUENCE { SEQUENCE { OID, params }, BIT STRING }`.
fn spki(der: &[u8]) -> Result<(KeyType, Vec<u8>), String> {
    let bad = || "not a valid SubjectPublicKeyInfo".to_string();
    let (body, rest) = element(der, SEQUENCE).ok_or_else(bad)?;
    if !rest.is_empty() {
        return Err(bad());
    }
    let (algorithm, rest) = element(body, SEQUENCE).ok_or_else(bad)?;
    let (bits, rest) = element(rest, BIT_STRING).ok_or_else(bad)?;
    if !rest.is_empty() {
        return Err(bad());
    }
    // The first byte of a BIT STRING counts the unused bits: a key has none.
    let key = match bits.split_first() {
        Some((0, key)) => key,
        _ => return Err(bad()),
    };
    let (oid, params) = element(algorithm, OID).ok_or_else(bad)?;
    if oid == OID_RSA {
        return rsa(key).map(|key| (KeyType::Rsa, key));
    }
    if oid == OID_EC {
        let curve = element(params, OID).map(|(curve, _)| curve);
        if curve != Some(OID_P256) {
            return Err("an EC key on a curve other than P-256 (ES256 needs P-256)".to_string());
        }
        if key.len() != 65 || key[0] != 0x04 {
            return Err("a P-256 key that is not an uncompressed point".to_string());
        }
        return Ok((KeyType::P256, key.to_vec()));
    }
    if oid == OID_ED25519 {
        if key.len() != 32 {
            return Err("an Ed25519 key that is not 32 bytes".to_string());
        }
        return Ok((KeyType::Ed25519, key.to_vec()));
    }
    Err("a key of a type other than RSA, P-256 (EC) or Ed25519".to_string())
}

/// A PKCS#1 `RSAPublicKey`: `SEQUENCE { INTEGER n, INTEGER e }`, with 2048 to 8192 bits.
fn rsa(der: &[u8]) -> Result<Vec<u8>, String> {
    let bad = || "not a valid RSA public key".to_string();
    let (body, rest) = element(der, SEQUENCE).ok_or_else(bad)?;
    let (n, after_n) = element(body, INTEGER).ok_or_else(bad)?;
    let (_e, after_e) = element(after_n, INTEGER).ok_or_else(bad)?;
    if !rest.is_empty() || !after_e.is_empty() {
        return Err(bad());
    }
    let n = match n.iter().position(|&b| b != 0) {
        Some(at) => &n[at..],
        None => return Err(bad()),
    };
    let bits = n.len() * 8 - n[0].leading_zeros() as usize;
    if !(2048..=8192).contains(&bits) {
        return Err(format!(
            "an RSA key of {bits} bits; RS256 needs 2048 to 8192"
        ));
    }
    Ok(der.to_vec())
}

/// The content of the DER element of type `tag` at the start of `input`, and what follows.
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
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
        bytes.iter().fold(0, |len, &b| (len << 8) | usize::from(b))
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}
