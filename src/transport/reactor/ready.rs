//! What reading keeps across connections: the size of the one read buffer they share, and
//! the ready queue of connections with something to read, each in it at most once
//! (`in_ready`). Pumping the queue is `read.rs`.

use std::collections::VecDeque;
use std::time::Duration;

use crate::transport::connection::Connection;

use super::slots::key_of;

/// Size of the read buffer shared by every connection.
pub(super) const READ_BUF: usize = 64 * 1024;
/// Ciphertext read from a TLS socket at once (`tls.rs`): one TLS record at most, and its
/// header.
pub(super) const TLS_READ_BUF: usize = 16 * 1024 + 512;
/// The plaintext buffer of TLS reads gives back its memory above this.
pub(super) const TLS_PLAIN_KEEP: usize = 256 * 1024;
/// The time a turn spends on TLS handshakes (`tls.rs`) past which the connections still in
/// theirs wait for the next turn (`read.rs`): one handshake at least is fed in each turn.
pub(super) const HANDSHAKE_SHARE: Duration = Duration::from_millis(1);
/// Put `conn` in the ready queue to be pumped (once).
pub(super) fn queue_ready(ready: &mut VecDeque<usize>, conn: &mut Connection) {
    if !conn.in_ready {
        conn.in_ready = true;
        ready.push_back(key_of(conn.id));
    }
}
