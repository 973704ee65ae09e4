//! TLS on the listener (PROTOCOL section 14), sans-IO: [`TlsServer`] is what new connections
//! are served with (a certificate chain, its key, and the CAs of client certificates when
//! those are required), and a [`TlsSession`] is one connection's TLS state, fed the
//! ciphertext the reactor read and drained of the ciphertext it is to write.
//!
//! A session is rustls's *unbuffered* connection (`UnbufferedServerConnection`) and two
//! buffers of its own: the received ciphertext not yet processed (the start of a record, at
//! most) and the ciphertext to write. rustls decrypts in place in the buffer it is given, so
//! a read is decrypted in the reactor's buffer and only a partial record is copied; each
//! buffer gives its memory back once emptied past 1 KiB. An idle
//! session holds rustls's state (keys, the handshake's outcome) and little else: the buffered
//! `ServerConnection` would keep a 4 KiB read buffer per connection for good.
//!
//! rustls is only ever called with the buffer it may still point into (the rest of the input
//! being processed, or the partial record kept), and after a failure only while it has records
//! queued for the peer (the alert): the unbuffered API asks both of its caller.
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
//!   which writes to the writer it is given;
//! - a session keeps at most 81 KiB of received ciphertext (a handshake message of 64 KiB
//!   joined across records, and the start of a record); beyond, it fails;
//! - a failed session processes nothing more: its alert, if any, is what is left to write.
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
    /// The peer sent close_notify: no more plaintext will come (what came before it is
    /// ready).
    Closed,
    /// The peer's bytes are not TLS, or the handshake failed (the reason, for the log): an
    /// alert may be queued to write, and the connection is to be closed.
    Failed(String),
}

#[cfg(feature = "tls")]
mod on {
    use std::io::{self, IoSlice, Write};
    use std::sync::Arc;

    use rustls::pki_types::{
        CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    };
    use rustls::server::{UnbufferedServerConnection, WebPkiClientVerifier};
    use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
    use rustls::{RootCertStore, ServerConfig};

    use crate::transport::tls::{Fed, TlsKeyFormat, CIPHERTEXT_LIMIT};

    /// A buffer emptied whose capacity is above this is freed rather than kept: an idle
    /// session keeps no more than this of each.
    pub(super) const KEEP_CAPACITY: usize = 1024;

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
            let conn =
                UnbufferedServerConnection::new(self.config.clone()).map_err(|e| e.to_string())?;
            Ok(TlsSession {
                conn,
                incoming: Vec::new(),
                outgoing: Vec::new(),
                sent: 0,
                established: false,
                close_notify_sent: false,
                failed: false,
            })
        }
    }

    /// One connection's TLS state (see the module docs): rustls's unbuffered connection, and
    /// the two buffers this side owns, each empty (and small) while the connection is idle.
    pub(crate) struct TlsSession {
        conn: UnbufferedServerConnection,
        /// Ciphertext received and not yet processed (the start of a record).
        incoming: Vec<u8>,
        /// Ciphertext to write, from `sent` on.
        outgoing: Vec<u8>,
        sent: usize,
        /// The handshake is done: application data may be encrypted.
        established: bool,
        close_notify_sent: bool,
        /// The session failed; nothing more is processed.
        failed: bool,
    }

    impl std::fmt::Debug for TlsSession {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("TlsSession")
                .field("established", &self.established)
                .field("incoming", &self.incoming.len())
                .field("outgoing", &(self.outgoing.len() - self.sent))
                .finish()
        }
    }

    /// Append what `write` puts in a slice to `out`: it is given room for `size` bytes and
    /// returns how many it wrote, or the size it needs.
    fn append(
        out: &mut Vec<u8>,
        mut size: usize,
        mut write: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
    ) -> Result<(), ()> {
        let len = out.len();
        for _ in 0..2 {
            out.resize(len + size, 0);
            match write(&mut out[len..]) {
                Ok(n) => {
                    out.truncate(len + n);
                    return Ok(());
                }
                Err(Some(required)) => size = required,
                Err(None) => break,
            }
        }
        out.truncate(len);
        Err(())
    }

    /// Room for one handshake record.
    const RECORD_ROOM: usize = 16 * 1024 + 512;

    /// Received ciphertext a session keeps at most: a handshake message rustls joins across
    /// records (it refuses one above 64 KiB) and the start of the next record. A peer that
    /// splits a message into tiny records to make it take more fails the session instead.
    const MAX_KEPT: usize = 64 * 1024 + 17 * 1024;

    impl TlsSession {
        /// Process the ciphertext `input` (decrypted in place) with what was left from
        /// before, appending the plaintext it yields to `plain` and the handshake messages
        /// it calls for to the ciphertext to write.
        pub(crate) fn feed(&mut self, input: &mut [u8], plain: &mut Vec<u8>) -> Fed {
            if self.failed {
                return Fed::Failed("the session failed already".to_string());
            }
            let (used, fed) = if self.incoming.is_empty() {
                let (used, fed) = self.process(input, plain);
                self.incoming.extend_from_slice(&input[used..]);
                (0, fed)
            } else {
                let mut buf = std::mem::take(&mut self.incoming);
                buf.extend_from_slice(input);
                let (used, fed) = self.process(&mut buf, plain);
                self.incoming = buf;
                (used, fed)
            };
            self.incoming.drain(..used);
            if self.incoming.is_empty() && self.incoming.capacity() > KEEP_CAPACITY {
                self.incoming = Vec::new();
            }
            if self.incoming.len() > MAX_KEPT {
                self.failed = true;
                self.incoming = Vec::new();
                return Fed::Failed(format!("more than {MAX_KEPT} bytes of unfinished records"));
            }
            fed
        }

        /// Run the records of `buf` through the connection; returns how many bytes of it are
        /// done with.
        fn process(&mut self, buf: &mut [u8], plain: &mut Vec<u8>) -> (usize, Fed) {
            let mut start = 0;
            let mut peer_closed = false;
            loop {
                let status = self.conn.process_tls_records(&mut buf[start..]);
                let mut discard = status.discard;
                let state = match status.state {
                    Ok(state) => state,
                    Err(e) => {
                        start += discard;
                        self.fail(&mut buf[start..]);
                        return (start, Fed::Failed(e.to_string()));
                    }
                };
                match state {
                    ConnectionState::ReadTraffic(mut traffic) => {
                        self.established = true;
                        while let Some(record) = traffic.next_record() {
                            match record {
                                Ok(record) => {
                                    discard += record.discard;
                                    plain.extend_from_slice(record.payload);
                                }
                                Err(e) => {
                                    let message = e.to_string();
                                    drop(traffic);
                                    start += discard;
                                    self.fail(&mut buf[start..]);
                                    return (start, Fed::Failed(message));
                                }
                            }
                        }
                    }
                    ConnectionState::EncodeTlsData(mut encode) => {
                        let encoded = append(&mut self.outgoing, RECORD_ROOM, |out| {
                            encode.encode(out).map_err(|e| match e {
                                EncodeError::InsufficientSize(e) => Some(e.required_size),
                                _ => None,
                            })
                        });
                        if encoded.is_err() {
                            self.failed = true;
                            return (start + discard, Fed::Failed("encoding failed".into()));
                        }
                    }
                    ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                    ConnectionState::PeerClosed => peer_closed = true,
                    ConnectionState::WriteTraffic(_) => {
                        self.established = true;
                        start += discard;
                        break;
                    }
                    ConnectionState::BlockedHandshake | ConnectionState::Closed => {
                        start += discard;
                        break;
                    }
                    _ => {
                        // Early data is not enabled; nothing else is expected.
                        start += discard;
                        self.failed = true;
                        return (start, Fed::Failed("unexpected TLS state".into()));
                    }
                }
                start += discard;
            }
            (start, if peer_closed { Fed::Closed } else { Fed::Ok })
        }

        /// The session failed: encode what rustls still has queued for the peer (the alert,
        /// and the handshake records before it), if anything. `rest` is what is left of the
        /// buffer being processed (rustls may still point into it). rustls is called only
        /// while it has records queued: those come out before anything else is looked at,
        /// and nothing is processed after the failure.
        fn fail(&mut self, rest: &mut [u8]) {
            self.failed = true;
            for _ in 0..16 {
                if !self.conn.wants_write() {
                    break;
                }
                let status = self.conn.process_tls_records(rest);
                let Ok(ConnectionState::EncodeTlsData(mut encode)) = status.state else {
                    break;
                };
                let encoded = append(&mut self.outgoing, RECORD_ROOM, |out| {
                    encode.encode(out).map_err(|e| match e {
                        EncodeError::InsufficientSize(e) => Some(e.required_size),
                        _ => None,
                    })
                });
                if encoded.is_err() {
                    break;
                }
            }
        }

        /// The capacity of the buffer of received ciphertext, and the ciphertext waiting to
        /// be written.
        #[cfg(test)]
        pub(crate) fn held(&self) -> (usize, usize) {
            (self.incoming.capacity(), self.outgoing.len() - self.sent)
        }

        /// Whether ciphertext is waiting to be written.
        pub(crate) fn wants_write(&self) -> bool {
            self.sent < self.outgoing.len()
        }

        /// Whether the handshake is still under way: neither done nor failed.
        pub(crate) fn is_handshaking(&self) -> bool {
            !self.established && !self.failed
        }

        /// Write waiting ciphertext to `out`, once (what it did not take stays).
        pub(crate) fn write_tls(&mut self, out: &mut impl Write) -> io::Result<usize> {
            let n = out.write(&self.outgoing[self.sent..])?;
            self.sent += n;
            if self.sent == self.outgoing.len() {
                self.sent = 0;
                self.outgoing.clear();
                if self.outgoing.capacity() > KEEP_CAPACITY {
                    self.outgoing = Vec::new();
                }
            }
            Ok(n)
        }

        /// A writer that encrypts into the session, taking as much plaintext as the ciphertext
        /// limit leaves room for; `WouldBlock` when it takes none (write the ciphertext first,
        /// or the handshake is not done).
        pub(crate) fn encrypting(&mut self) -> Encrypting<'_> {
            Encrypting(self)
        }

        /// Encrypt `plain` (some of it) after the ciphertext to write; 0 when not now.
        fn encrypt(&mut self, plain: &[u8]) -> Result<usize, String> {
            let room = CIPHERTEXT_LIMIT.saturating_sub(self.outgoing.len() - self.sent);
            if !self.established || self.failed || self.close_notify_sent || room == 0 {
                return Ok(0);
            }
            let take = plain.len().min(room);
            // Records of at most 16 KiB, each with a header and a tag of a few dozen bytes.
            let size = take + 64 * (take / (16 * 1024) + 1);
            let encrypted =
                self.with_traffic(size, |traffic, out| traffic.encrypt(&plain[..take], out));
            match encrypted {
                None => Ok(0),
                Some(Ok(())) => Ok(take),
                Some(Err(())) => {
                    self.failed = true;
                    Err("encryption failed".to_string())
                }
            }
        }

        /// When the connection is ready for application data, append what `write` encrypts
        /// (given room for `size` bytes) to the ciphertext to write; `None` when it is not.
        /// The connection is given the buffer it may still point into: what is left of the
        /// last input.
        fn with_traffic(
            &mut self,
            size: usize,
            mut write: impl FnMut(
                &mut rustls::unbuffered::WriteTraffic<'_, rustls::server::ServerConnectionData>,
                &mut [u8],
            ) -> Result<usize, EncryptError>,
        ) -> Option<Result<(), ()>> {
            // Handshake records rustls still has to send (a key update) go first.
            for _ in 0..8 {
                let status = self.conn.process_tls_records(&mut self.incoming);
                let discard = status.discard;
                let result = match status.state {
                    Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                        Some(Some(append(&mut self.outgoing, size, |out| {
                            write(&mut traffic, out).map_err(|e| match e {
                                EncryptError::InsufficientSize(e) => Some(e.required_size),
                                _ => None,
                            })
                        })))
                    }
                    Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                        let encoded = append(&mut self.outgoing, RECORD_ROOM, |out| {
                            encode.encode(out).map_err(|e| match e {
                                EncodeError::InsufficientSize(e) => Some(e.required_size),
                                _ => None,
                            })
                        });
                        encoded.is_err().then_some(Some(Err(())))
                    }
                    Ok(ConnectionState::TransmitTlsData(transmit)) => {
                        transmit.done();
                        None
                    }
                    _ => Some(None),
                };
                self.incoming.drain(..discard);
                if let Some(result) = result {
                    return result;
                }
            }
            None
        }

        /// Queue close_notify, once, after the handshake. Returns whether it was queued now.
        pub(crate) fn close_notify(&mut self) -> bool {
            if self.close_notify_sent || !self.established || self.failed {
                return false;
            }
            self.close_notify_sent = true;
            let queued = self.with_traffic(64, |traffic, out| traffic.queue_close_notify(out));
            matches!(queued, Some(Ok(())))
        }
    }

    /// See [`TlsSession::encrypting`].
    pub(crate) struct Encrypting<'a>(&'a mut TlsSession);

    impl Write for Encrypting<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            match self.0.encrypt(buf) {
                Ok(0) if !buf.is_empty() => Err(io::ErrorKind::WouldBlock.into()),
                Ok(n) => Ok(n),
                Err(e) => Err(io::Error::other(e)),
            }
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            // One record per slice: the outbox gives at most two (its own bytes, then the
            // turn's frames).
            let mut total = 0;
            for buf in bufs.iter().filter(|b| !b.is_empty()) {
                match self.write(buf) {
                    Ok(n) => {
                        total += n;
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(e) if total == 0 => return Err(e),
                    Err(_) => break,
                }
            }
            Ok(total)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}

#[cfg(not(feature = "tls"))]
mod off {
    use std::io::{self, Write};

    use crate::transport::tls::{Fed, TlsKeyFormat};

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
        pub(crate) fn feed(&mut self, _input: &mut [u8], _plain: &mut Vec<u8>) -> Fed {
            match *self {}
        }
        pub(crate) fn wants_write(&self) -> bool {
            match *self {}
        }
        pub(crate) fn is_handshaking(&self) -> bool {
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

#[cfg(test)]
mod tests {
    /// The sessions against a rustls client, in memory.
    #[cfg(feature = "tls")]
    mod with_tls {
        use std::io::{Read, Write};
        use std::sync::Arc;

        use rustls::pki_types::{CertificateDer, ServerName};
        use rustls::{ClientConfig, ClientConnection, RootCertStore};

        use crate::testkit::Rng;
        use crate::transport::tls::{Fed, TlsKeyFormat, TlsServer, TlsSession};

        fn fixture(name: &str) -> Vec<u8> {
            let path = format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"));
            pem::parse(std::fs::read(path).unwrap())
                .unwrap()
                .into_contents()
        }

        fn server() -> TlsServer {
            TlsServer::new(
                &[fixture("cert.pem")],
                &fixture("key.pem"),
                TlsKeyFormat::Pkcs8,
                &[],
            )
            .unwrap()
        }

        fn client(versions: &[&'static rustls::SupportedProtocolVersion]) -> ClientConnection {
            let mut roots = RootCertStore::empty();
            roots.add(CertificateDer::from(fixture("ca.pem"))).unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
                .unwrap()
        }

        /// Move the client's bytes to the session in pieces of random sizes (corrupting one
        /// byte when `corrupt`), and the session's to the client. Returns the plaintext the
        /// session yielded, or None once it failed.
        fn to_server(
            client: &mut ClientConnection,
            session: &mut TlsSession,
            rng: &mut Rng,
            corrupt: bool,
        ) -> Option<Vec<u8>> {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            if corrupt && !wire.is_empty() {
                let at = rng.below(wire.len());
                wire[at] ^= 1 << rng.below(8);
            }
            let mut plain = Vec::new();
            let mut rest = &mut wire[..];
            while !rest.is_empty() {
                let n = 1 + rng.below(rest.len());
                let (chunk, after) = rest.split_at_mut(n);
                if let Fed::Failed(_) = session.feed(chunk, &mut plain) {
                    return None;
                }
                rest = after;
            }
            Some(plain)
        }

        /// Move the session's bytes to the client; returns the plaintext the client read.
        fn to_client(
            session: &mut TlsSession,
            client: &mut ClientConnection,
        ) -> Result<Vec<u8>, String> {
            let mut wire = Vec::new();
            while session.wants_write() {
                session.write_tls(&mut wire).unwrap();
            }
            let mut input = &wire[..];
            let mut plain = Vec::new();
            while !input.is_empty() {
                client.read_tls(&mut input).map_err(|e| e.to_string())?;
                client.process_new_packets().map_err(|e| e.to_string())?;
                let mut buf = [0; 4096];
                while let Ok(n @ 1..) = client.reader().read(&mut buf) {
                    plain.extend_from_slice(&buf[..n]);
                }
            }
            Ok(plain)
        }

        #[test]
        fn a_session_serves_a_client_through_any_chunking_in_both_versions() {
            let server = server();
            let mut rng = Rng::new(7);
            for round in 0..40 {
                let versions: &[_] = if round % 2 == 0 {
                    &[&rustls::version::TLS13]
                } else {
                    &[&rustls::version::TLS12]
                };
                let mut client = client(versions);
                let mut session = server.session().unwrap();
                while client.is_handshaking() {
                    to_server(&mut client, &mut session, &mut rng, false).expect("handshake");
                    to_client(&mut session, &mut client).expect("handshake");
                }
                // Both ways, with messages larger than a record now and then.
                let size = if rng.one_in(4) {
                    40_000
                } else {
                    1 + rng.below(300)
                };
                let sent: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
                client.writer().write_all(&sent).unwrap();
                let mut got = Vec::new();
                while got.len() < sent.len() {
                    got.extend(to_server(&mut client, &mut session, &mut rng, false).unwrap());
                    to_client(&mut session, &mut client).unwrap();
                }
                assert_eq!(got, sent);
                let (mut written, mut back) = (0, Vec::new());
                while written < sent.len() {
                    match session.encrypting().write(&sent[written..]) {
                        Ok(n) => written += n,
                        Err(_) => back.extend(to_client(&mut session, &mut client).unwrap()),
                    }
                    assert!(session.held().1 <= crate::transport::tls::CIPHERTEXT_LIMIT + 512);
                }
                back.extend(to_client(&mut session, &mut client).unwrap());
                assert_eq!(back, sent);
                // close_notify both ways.
                assert!(session.close_notify());
                assert!(!session.close_notify(), "once");
                to_client(&mut session, &mut client).unwrap();
                assert_eq!(client.reader().read(&mut [0; 8]).unwrap(), 0);
                client.send_close_notify();
                let mut wire = Vec::new();
                client.write_tls(&mut wire).unwrap();
                assert!(matches!(
                    session.feed(&mut wire, &mut Vec::new()),
                    Fed::Closed
                ));
                assert!(session.held().0 <= crate::transport::tls::on::KEEP_CAPACITY);
            }
        }

        #[test]
        fn a_handshake_message_in_tiny_records_cannot_make_a_session_keep_much() {
            let mut session = server().session().unwrap();
            // A ClientHello announcing 60 000 bytes, sent one byte per record.
            let mut body = vec![1u8, 0x00, 0xea, 0x60];
            body.resize(4 + 60_000, 0);
            let mut failed = None;
            for (i, byte) in body.iter().enumerate() {
                let mut record = vec![0x16, 0x03, 0x01, 0x00, 0x01, *byte];
                if let Fed::Failed(e) = session.feed(&mut record, &mut Vec::new()) {
                    failed = Some((i, e));
                    break;
                }
                assert!(session.held().0 <= 128 * 1024, "{}", session.held().0);
            }
            let (at, e) = failed.expect("the session fails");
            assert!(e.contains("bytes of unfinished records"), "{e}");
            assert!((10_000..20_000).contains(&at), "failed after {at} records");
        }

        #[test]
        fn corrupted_bytes_fail_the_session_without_a_panic() {
            let server = server();
            let mut rng = Rng::new(11);
            let mut failed = 0;
            for round in 0..300 {
                let versions: &[_] = if round % 2 == 0 {
                    &[&rustls::version::TLS13]
                } else {
                    &[&rustls::version::TLS12]
                };
                let mut client = client(versions);
                let mut session = server.session().unwrap();
                // Corrupt one flight: the handshake's first, a later one, or application data.
                let target = rng.below(4);
                let mut step = 0;
                let mut alive = true;
                while alive && step < 6 {
                    if !client.is_handshaking() {
                        client
                            .writer()
                            .write_all(b"GET / HTTP/1.1\r\n\r\n")
                            .unwrap();
                    }
                    match to_server(&mut client, &mut session, &mut rng, step == target) {
                        None => alive = false,
                        Some(_) => alive = to_client(&mut session, &mut client).is_ok(),
                    }
                    step += 1;
                }
                failed += usize::from(!alive);
                // A failed session takes nothing more and does not panic.
                let mut junk = *b"\x16\x03\x01\x00\x05hello";
                let _ = session.feed(&mut junk, &mut Vec::new());
                let _ = session.encrypting().write(b"x");
                let _ = session.close_notify();
            }
            assert!(failed > 200, "{failed}");
        }
    }
}
