//! [`TransportConfig`]: the transport's settings, each with its default.

use std::net::SocketAddr;
use std::time::Duration;

use crate::app::TransportLimits;
use crate::transport::tls::TlsServer;
use crate::ws::origin::OriginPolicy;

/// The transport's settings (taken from [`crate::config::Config`] by `Gateway`). Those of
/// [`TransportLimits`] may change while the loop runs (an app's
/// [`Actions::set_limits`](crate::app::Actions::set_limits)); the others are read at
/// [`Reactor::bind`](super::Reactor::bind) or when the connection or timer they concern
/// starts.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// Bind the listener with `SO_REUSEPORT` (Unix), so that several processes or loops
    /// listen on the same `addr` and the kernel spreads new connections between them. Off
    /// by default: a second bind to a port in use fails with `AddrInUse`.
    pub reuse_port: bool,
    /// WebSocket endpoint path.
    pub path: String,
    /// Open WebSocket connections at most (503 beyond).
    pub max_connections: usize,
    /// Largest HTTP request head (431 beyond).
    pub max_header_bytes: usize,
    /// Origin policy for upgrades (403 when refused).
    pub origins: OriginPolicy,
    /// Drop a socket whose upgrade is not complete by then.
    pub handshake_timeout: Option<Duration>,
    /// Send a Ping frame this often.
    pub heartbeat_interval: Option<Duration>,
    /// Close with 1001 after this long without any inbound byte.
    pub client_timeout: Option<Duration>,
    /// Wait this long for the peer's close frame (and for draining) before dropping.
    pub close_timeout: Option<Duration>,
    /// Largest frame or message (1009 beyond).
    pub max_payload: usize,
    /// Largest frame or message, or frames of one in progress, of a connection until the app
    /// raises its limit to `max_payload` ([`Actions::raise_limit`](crate::app::Actions::raise_limit)):
    /// 1009 beyond. `None` (the default): `max_payload` from the start. The gateway sets
    /// `max_preauth_message_size` here when auth is on.
    pub initial_max_payload: Option<usize>,
    /// Sockets accepted and not yet upgraded (or refused and lingering) at most; a socket
    /// accepted beyond it is closed at once, without a response.
    pub max_pending_handshakes: usize,
    /// Bytes of partly received messages over all connections at most; a data frame that
    /// would pass it closes its own connection with 1008 `Server busy`.
    pub max_inflight_bytes: usize,
    /// A message whose first frame arrived must be complete within this, else close 1008
    /// `Message timeout`.
    pub message_timeout: Option<Duration>,
    /// Unsent bytes per connection at most (1008 `Slow consumer` beyond).
    pub max_outbound_buffer: usize,
    /// How long the writes of one loop turn may take before the connections not yet written
    /// wait for the next turn, first in line there (1 ms; one connection at least each turn,
    /// and the connections that owe a small write first: see the reactor's step 6).
    pub write_share: Duration,
    /// Capacity of the host's event queue, in events.
    pub event_queue: usize,
    /// Capacity of the host's event queue, in bytes ([`App::event_bytes`](crate::app::App::event_bytes)).
    pub event_queue_bytes: usize,
    /// TLS on the listener: every accepted socket speaks TLS with this server's certificate
    /// (`None`, the default: plain). Whether the listener speaks TLS is decided at bind; a
    /// new server given through [`TransportLimits`] serves the connections accepted after it.
    pub tls: Option<TlsServer>,
}

impl TransportConfig {
    /// The default `write_share`.
    pub const WRITE_SHARE: Duration = Duration::from_millis(1);

    /// Settings for `addr` with the protocol's defaults (path `/ws`, local origins).
    #[must_use]
    pub fn new(addr: SocketAddr) -> TransportConfig {
        TransportConfig {
            addr,
            reuse_port: false,
            path: "/ws".to_string(),
            max_connections: 10_000,
            max_header_bytes: 8192,
            origins: OriginPolicy::allow_all(),
            handshake_timeout: Some(Duration::from_secs(5)),
            heartbeat_interval: Some(Duration::from_secs(30)),
            client_timeout: Some(Duration::from_secs(60)),
            close_timeout: Some(Duration::from_secs(5)),
            max_payload: 10 * 1024 * 1024,
            initial_max_payload: None,
            max_pending_handshakes: 1024,
            max_inflight_bytes: 256 * 1024 * 1024,
            message_timeout: Some(Duration::from_secs(30)),
            max_outbound_buffer: 4 * 1024 * 1024,
            write_share: TransportConfig::WRITE_SHARE,
            event_queue: 4096,
            event_queue_bytes: 4 * 1024 * 1024,
            tls: None,
        }
    }
}

impl TransportConfig {
    /// Take `limits` in place of the current ones.
    pub fn set_limits(&mut self, limits: TransportLimits) {
        let TransportLimits {
            origins,
            max_header_bytes,
            max_payload,
            initial_max_payload,
            max_inflight_bytes,
            tls,
        } = limits;
        self.origins = origins;
        self.max_header_bytes = max_header_bytes;
        self.max_payload = max_payload;
        self.initial_max_payload = initial_max_payload;
        self.max_inflight_bytes = max_inflight_bytes;
        if tls.is_some() == self.tls.is_some() {
            self.tls = tls;
        } else {
            log::warn!("TLS cannot be turned on or off while running: the listener stays as it is");
        }
    }
}
