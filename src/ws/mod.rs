//! The server side of WebSocket, sans-IO: the HTTP upgrade ([`handshake`]), `Origin`
//! matching ([`origin`]) and framing ([`codec`]). Functions of bytes in and bytes out; nothing
//! here names a socket or reads the clock.

pub(crate) mod codec;
pub(crate) mod handshake;
pub(crate) mod origin;
