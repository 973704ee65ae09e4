//! The TLS files of the listener (PROTOCOL section 14): `tls_cert` and `tls_client_ca` name PEM
//! files of certificates ([`TlsCertificates`]), `tls_key` one of a private key
//! ([`TlsPrivateKey`]). Each is read and checked when its key is set, so that a configuration
//! holds what the transport will serve and a reload reads the files afresh.
//!
//! Contract:
//! - a certificate file holds one or more `CERTIFICATE` blocks and nothing else but text
//!   around them; a key file exactly one `PRIVATE KEY` (PKCS#8), `RSA PRIVATE KEY` (PKCS#1) or
//!   `EC PRIVATE KEY` (SEC1) block. At most [`MAX_TLS_FILE_BYTES`] are read. Anything else is
//!   an error that says what was found, never the key's bytes;
//! - whether the key is the certificate's, and whether the crypto can use them, is checked
//!   by [`Config::validate`](super::Config::validate) (it builds the server);
//! - the path is kept as given and printed back by `--print-config`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::transport::tls::{TlsKeyFormat, TlsServer};

use super::x509;

/// The largest certificate or key file read, in bytes (a chain of a few certificates is a
/// few KiB; a bundle of CAs can be larger).
pub(crate) const MAX_TLS_FILE_BYTES: u64 = 1024 * 1024;

/// RSA keys larger than this get [`TlsCertificates::handshake_warning`].
const RSA_BITS_WARNED: usize = 2048;

/// The certificates of a PEM file: `tls_cert` (the chain, the server's own certificate
/// first) or `tls_client_ca` (the CAs client certificates must be signed by).
#[derive(Clone, PartialEq, Eq)]
pub struct TlsCertificates {
    path: PathBuf,
    ders: Vec<Vec<u8>>,
}

impl fmt::Debug for TlsCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TlsCertificates({}, {})",
            self.path.display(),
            self.ders.len()
        )
    }
}

/// A private key read from a PEM file (`tls_key`). Its `Debug` shows the path only.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsPrivateKey {
    path: PathBuf,
    format: TlsKeyFormat,
    der: Vec<u8>,
}

impl fmt::Debug for TlsPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TlsPrivateKey({}, {:?})",
            self.path.display(),
            self.format
        )
    }
}

/// The PEM blocks of the file at `path`, with the file's name in the error.
fn blocks(path: &Path) -> Result<Vec<pem::Pem>, String> {
    let shown = path.display().to_string();
    let bytes = super::file::read_regular(path, MAX_TLS_FILE_BYTES)
        .map_err(|e| format!("{shown:?}: {e}"))?;
    let blocks = pem::parse_many(&bytes).map_err(|e| format!("{shown:?}: not PEM: {e}"))?;
    if blocks.is_empty() {
        return Err(format!("{shown:?}: no PEM block in the file"));
    }
    Ok(blocks)
}

impl TlsCertificates {
    /// Read the PEM file at `path`: one or more `CERTIFICATE` blocks. The error is the
    /// message only, with the file's name.
    pub fn read(path: impl AsRef<Path>) -> Result<TlsCertificates, String> {
        let path = path.as_ref();
        let mut ders = Vec::new();
        for block in blocks(path)? {
            if block.tag() != "CERTIFICATE" {
                return Err(format!(
                    "{:?}: expected CERTIFICATE blocks, found {}",
                    path.display().to_string(),
                    block.tag()
                ));
            }
            ders.push(block.into_contents());
        }
        Ok(TlsCertificates {
            path: path.to_path_buf(),
            ders,
        })
    }

    /// The file it was read from, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The certificates as DER, in file order.
    pub fn ders(&self) -> &[Vec<u8>] {
        &self.ders
    }

    /// One line about the first certificate for `--check`: subject, names, expiry (how long
    /// from `now`, or that it has expired), and how many certificates the file holds.
    pub fn summary(&self, now: SystemTime) -> String {
        let count = match self.ders.len() {
            1 => "1 certificate".to_string(),
            n => format!("{n} certificates"),
        };
        let Some(first) = self.ders.first().and_then(|der| x509::summarize(der)) else {
            return format!("{count}, the first not readable as X.509");
        };
        let names = if first.names.is_empty() {
            "(none)".to_string()
        } else {
            first.names.join(", ")
        };
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let left = match first.not_after_unix {
            Some(at) if at <= now => " (EXPIRED)".to_string(),
            Some(at) => format!(" (in {} days)", (at - now) / 86_400),
            None => String::new(),
        };
        let key = first
            .key
            .map_or_else(|| "not known".to_string(), |k| k.to_string());
        format!(
            "subject {}; names {names}; expires {}{left}; key {key}; {count}",
            first.subject, first.not_after
        )
    }

    /// A warning when the first certificate's key makes every TLS handshake costly for the
    /// loop: an RSA key over 2048 bits (PROTOCOL section 14's decisions give the figures).
    pub fn handshake_warning(&self) -> Option<String> {
        let first = self.ders.first().and_then(|der| x509::summarize(der))?;
        match first.key? {
            x509::KeyKind::Rsa(bits) if bits > RSA_BITS_WARNED => Some(format!(
                "tls_cert {}: an RSA key of {bits} bits makes each TLS handshake cost the loop \
                 several milliseconds (about 5 ms at 4096 bits on the development machine, 1 ms \
                 at 2048, 0.35 ms for ECDSA P-256): prefer an ECDSA P-256 or a 2048-bit RSA key",
                self.path.display()
            )),
            _ => None,
        }
    }
}

impl TlsPrivateKey {
    /// Read the PEM file at `path`: exactly one private key block (see the module docs).
    /// The error is the message only, with the file's name.
    pub fn read(path: impl AsRef<Path>) -> Result<TlsPrivateKey, String> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let mut blocks = blocks(path)?;
        if blocks.len() != 1 {
            return Err(format!(
                "{shown:?}: expected one private key block, found {}",
                blocks.len()
            ));
        }
        let block = blocks.remove(0);
        let format = match block.tag() {
            "PRIVATE KEY" => TlsKeyFormat::Pkcs8,
            "RSA PRIVATE KEY" => TlsKeyFormat::Pkcs1,
            "EC PRIVATE KEY" => TlsKeyFormat::Sec1,
            other => {
                return Err(format!(
                "{shown:?}: expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY, found {other}"
            ))
            }
        };
        Ok(TlsPrivateKey {
            path: path.to_path_buf(),
            format,
            der: block.into_contents(),
        })
    }

    /// The file it was read from, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format its PEM label names.
    pub fn format(&self) -> TlsKeyFormat {
        self.format
    }

    /// The key as DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }
}

/// An empty value is no file; otherwise `read` reads it at once.
pub(crate) fn parse_file<T>(
    value: &str,
    read: fn(&Path) -> Result<T, String>,
) -> Result<Option<T>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    super::values::check_file_value(value)?;
    read(Path::new(value)).map(Some)
}

/// The TLS server of `tls_cert`, `tls_key` and `tls_client_ca` (see
/// [`Config::tls_server`](super::Config::tls_server)).
pub(crate) fn server(
    cert: Option<&TlsCertificates>,
    key: Option<&TlsPrivateKey>,
    client_ca: Option<&TlsCertificates>,
) -> Result<Option<TlsServer>, (&'static str, String)> {
    match (cert, key) {
        (None, None) if client_ca.is_some() => Err((
            "tls_client_ca",
            "needs tls_cert and tls_key: client certificates are asked for in the TLS handshake"
                .to_string(),
        )),
        (None, None) => Ok(None),
        (Some(_), None) => Err(("tls_key", "tls_cert needs tls_key".to_string())),
        (None, Some(_)) => Err(("tls_cert", "tls_key needs tls_cert".to_string())),
        (Some(cert), Some(key)) => {
            let cas = client_ca.map_or(&[][..], TlsCertificates::ders);
            TlsServer::new(cert.ders(), key.der(), key.format(), cas)
                .map(Some)
                .map_err(|e| {
                    let key = if e.contains("client CA") {
                        "tls_client_ca"
                    } else if cfg!(not(feature = "tls")) {
                        "tls_cert"
                    } else {
                        "tls_key"
                    };
                    (key, e)
                })
        }
    }
}
