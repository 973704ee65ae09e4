//! TLS on the listener (PROTOCOL section 14), sans-IO: [`TlsServer`] is what new connections
//! are served with (a certificate chain, its key, and the CAs of client certificates when
//! those are required), and a [`TlsSession`] is one connection's `rustls::ServerConnection`,
//! fed the ciphertext the reactor read and drained of the ciphertext it is to write.
//!
//! Contract:
//! - TLS 1.2 and 1.3 only, on the `ring` provider; ALPN `http/1.1` (a client offering no ALPN
//!   is served, one offering only other protocols is refused in the handshake);
//! - with client CAs, a client without a certificate signed by one of them is refused in the
//!   handshake;
//! - a session never holds more than [`CIPHERTEXT_LIMIT`] bytes of ciphertext to write plus
//!   one record: its encrypting writer takes less plaintext (or none) beyond it, and the rest
//!   stays in the caller's outbox, where `max_outbound_buffer` counts it;
//! - a session never reads a socket or writes one itself except in [`TlsSession::write_tls`],
//!   which writes to the writer it is given.
//!
//! Built without the `tls` feature, [`TlsServer::new`] refuses and both types are empty enums:
//! no value exists, and the reactor's TLS paths are dead code.

/// Ciphertext a session may hold before it takes no more plaintext to encrypt.
pub const CIPHERTEXT_LIMIT: usize = 16 * 1024;

/// The format of a private key's DER, as its PEM label says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsKeyFormat {
    /// `PRIVATE KEY`: PKCS#8.
    Pkcs8,
    /// `RSA PRIVATE KEY`: PKCS#1.
    Pkcs1,
    /// `EC PRIVATE KEY`: SEC1.
    Sec1,
}

/// What feeding ciphertext to a session found.
#[derive(Debug)]
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) enum Fed {
    /// The bytes were taken; plaintext may be ready.
    Ok,
    /// The peer's bytes are not TLS, or the handshake failed (the reason, for the log): an
    /// alert may be queued to write, and the connection is to be closed.
    Failed(String),
}

/// What reading plaintext from a session gave.
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) enum Plain {
    /// This many bytes of plaintext.
    Data(usize),
    /// None now.
    Empty,
    /// The peer sent close_notify: no more plaintext will come.
    Closed,
}

#[cfg(feature = "tls")]
mod on {
    use std::io::{self, IoSlice, Read, Write};
    use std::sync::Arc;

    use rustls::pki_types::{
        CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    };
    use rustls::server::WebPkiClientVerifier;
    use rustls::{RootCertStore, ServerConfig, ServerConnection};

    use crate::transport::tls::{Fed, Plain, TlsKeyFormat, CIPHERTEXT_LIMIT};

    /// What new TLS connections are served with (see the module docs). Cheap to clone.
    #[derive(Clone)]
    pub struct TlsServer {
        config: Arc<ServerConfig>,
    }

    impl std::fmt::Debug for TlsServer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("TlsServer")
        }
    }

    /// Two servers are equal when they are the same one (clones of one [`TlsServer::new`]).
    impl PartialEq for TlsServer {
        fn eq(&self, other: &TlsServer) -> bool {
            Arc::ptr_eq(&self.config, &other.config)
        }
    }

    impl TlsServer {
        /// A server with the certificate chain `chain` (DER, the end-entity certificate
        /// first), its private key `key` (DER in `format`), and, when `client_cas` is not
        /// empty, client certificates required and checked against those CAs (DER). The
        /// error says what is wrong: no certificate, a key that cannot be used or is not the
        /// certificate's, a CA that is not a certificate.
        pub fn new(
            chain: &[Vec<u8>],
            key: &[u8],
            format: TlsKeyFormat,
            client_cas: &[Vec<u8>],
        ) -> Result<TlsServer, String> {
            if chain.is_empty() {
                return Err("no certificate".to_string());
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let chain: Vec<CertificateDer<'static>> = chain
                .iter()
                .map(|der| CertificateDer::from(der.clone()))
                .collect();
            let key: PrivateKeyDer<'static> = match format {
                TlsKeyFormat::Pkcs8 => PrivatePkcs8KeyDer::from(key.to_vec()).into(),
                TlsKeyFormat::Pkcs1 => PrivatePkcs1KeyDer::from(key.to_vec()).into(),
                TlsKeyFormat::Sec1 => PrivateSec1KeyDer::from(key.to_vec()).into(),
            };
            let builder = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(|e| format!("TLS versions: {e}"))?;
            let builder = if client_cas.is_empty() {
                builder.with_no_client_auth()
            } else {
                let mut roots = RootCertStore::empty();
                for der in client_cas {
                    roots
                        .add(CertificateDer::from(der.clone()))
                        .map_err(|e| format!("a client CA cannot be used: {e}"))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| format!("the client CAs cannot be used: {e}"))?;
                builder.with_client_cert_verifier(verifier)
            };
            let mut config = builder.with_single_cert(chain, key).map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => {
                    "the key is not the certificate's (tls_key does not match tls_cert)".to_string()
                }
                e => format!("the certificate and key cannot be used: {e}"),
            })?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(TlsServer {
                config: Arc::new(config),
            })
        }

        /// A session for a newly accepted socket.
        pub(crate) fn session(&self) -> Result<TlsSession, String> {
            let mut conn = ServerConnection::new(self.config.clone()).map_err(|e| e.to_string())?;
            conn.set_buffer_limit(Some(CIPHERTEXT_LIMIT));
            Ok(TlsSession {
                conn,
                close_notify_sent: false,
            })
        }
    }

    /// See [`TlsSession::encrypting`].
    pub(crate) struct Encrypting<'a>(&'a mut ServerConnection);

    impl Write for Encrypting<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.0.is_handshaking() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            match self.0.writer().write_vectored(bufs)? {
                0 if bufs.iter().any(|b| !b.is_empty()) => Err(io::ErrorKind::WouldBlock.into()),
                n => Ok(n),
            }
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// One connection's TLS state (see the module docs).
    pub(crate) struct TlsSession {
        conn: ServerConnection,
        close_notify_sent: bool,
    }

    impl std::fmt::Debug for TlsSession {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("TlsSession")
                .field("handshaking", &self.conn.is_handshaking())
                .finish()
        }
    }

    impl TlsSession {
        /// Take ciphertext from the front of `input` (some of it: call again while it is not
        /// empty) and process the records it completes.
        pub(crate) fn feed(&mut self, input: &mut &[u8]) -> Fed {
            if let Err(e) = self.conn.read_tls(input) {
                return Fed::Failed(e.to_string());
            }
            match self.conn.process_new_packets() {
                Ok(_) => Fed::Ok,
                Err(e) => Fed::Failed(e.to_string()),
            }
        }

        /// Move decrypted plaintext into `buf`.
        pub(crate) fn read_plain(&mut self, buf: &mut [u8]) -> Plain {
            match self.conn.reader().read(buf) {
                Ok(0) => Plain::Closed,
                Ok(n) => Plain::Data(n),
                Err(_) => Plain::Empty, // WouldBlock: nothing yet
            }
        }

        /// Whether ciphertext is waiting to be written.
        pub(crate) fn wants_write(&self) -> bool {
            self.conn.wants_write()
        }

        /// Write waiting ciphertext to `out`, once (what it did not take stays).
        pub(crate) fn write_tls(&mut self, out: &mut impl Write) -> io::Result<usize> {
            self.conn.write_tls(out)
        }

        /// A writer that encrypts into the session, taking as much plaintext as the ciphertext
        /// limit leaves room for; `WouldBlock` when it takes none (write the ciphertext first,
        /// or the handshake is not done).
        pub(crate) fn encrypting(&mut self) -> Encrypting<'_> {
            Encrypting(&mut self.conn)
        }

        /// Queue close_notify, once. Returns whether it was queued now.
        pub(crate) fn close_notify(&mut self) -> bool {
            if self.close_notify_sent || self.conn.is_handshaking() {
                return false;
            }
            self.close_notify_sent = true;
            self.conn.send_close_notify();
            true
        }
    }
}

#[cfg(not(feature = "tls"))]
mod off {
    use std::io::{self, Write};

    use crate::transport::tls::{Fed, Plain, TlsKeyFormat};

    /// What new TLS connections are served with; this build has no TLS, and no value of it.
    #[derive(Clone, Debug, PartialEq)]
    pub enum TlsServer {}

    impl TlsServer {
        /// Always an error: this build has no TLS.
        pub fn new(
            _chain: &[Vec<u8>],
            _key: &[u8],
            _format: TlsKeyFormat,
            _client_cas: &[Vec<u8>],
        ) -> Result<TlsServer, String> {
            Err("this gateway was built without TLS (the `tls` cargo feature)".to_string())
        }

        pub(crate) fn session(&self) -> Result<TlsSession, String> {
            match *self {}
        }
    }

    /// One connection's TLS state; none exists in this build.
    #[derive(Debug)]
    pub(crate) enum TlsSession {}

    #[allow(clippy::unused_self)]
    impl TlsSession {
        pub(crate) fn feed(&mut self, _input: &mut &[u8]) -> Fed {
            match *self {}
        }
        pub(crate) fn read_plain(&mut self, _buf: &mut [u8]) -> Plain {
            match *self {}
        }
        pub(crate) fn wants_write(&self) -> bool {
            match *self {}
        }
        pub(crate) fn write_tls(&mut self, _out: &mut impl Write) -> io::Result<usize> {
            match *self {}
        }
        pub(crate) fn encrypting(&mut self) -> io::Sink {
            match *self {}
        }
        pub(crate) fn close_notify(&mut self) -> bool {
            match *self {}
        }
    }
}

#[cfg(not(feature = "tls"))]
pub use off::TlsServer;
#[cfg(not(feature = "tls"))]
pub(crate) use off::TlsSession;
#[cfg(feature = "tls")]
pub use on::TlsServer;
#[cfg(feature = "tls")]
pub(crate) use on::TlsSession;
