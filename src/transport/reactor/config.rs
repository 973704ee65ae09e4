//! [`TransportConfig`]: the transport's settings, each with its default.

use std::net::SocketAddr;
use std::time::Duration;

use crate::ws::origin::OriginPolicy;

/// The transport's settings (taken from [`crate::config::Config`] by `Gateway`).
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Address to listen on.
    pub addr: SocketAddr,
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
    /// Unsent bytes per connection at most (1008 `Slow consumer` beyond).
    pub max_outbound_buffer: usize,
    /// Capacity of the host's event queue.
    pub event_queue: usize,
}

impl TransportConfig {
    /// Settings for `addr` with the protocol's defaults (path `/ws`, local origins).
    #[must_use]
    pub fn new(addr: SocketAddr) -> TransportConfig {
        TransportConfig {
            addr,
            path: "/ws".to_string(),
            max_connections: 10_000,
            max_header_bytes: 8192,
            origins: OriginPolicy::allow_all(),
            handshake_timeout: Some(Duration::from_secs(5)),
            heartbeat_interval: Some(Duration::from_secs(30)),
            client_timeout: Some(Duration::from_secs(60)),
            close_timeout: Some(Duration::from_secs(5)),
            max_payload: 10 * 1024 * 1024,
            max_outbound_buffer: 4 * 1024 * 1024,
            event_queue: 4096,
        }
    }
}
