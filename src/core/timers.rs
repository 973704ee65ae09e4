//! The `u64` timer tokens the core hands to [`crate::app::Actions::set_timer`], and their
//! decoding.
//!
//! Contract: a token with the top bit set is a deadline of one connection: the slab index in
//! the low 32 bits, the low 30 bits of the slot generation above it, and bit 62 telling its
//! auth deadline (clear) from its token expiry check (set, `auth_mode = jwt`). A token with
//! the top bit clear is the TTL of an offline agent: the registry's offline epoch (epochs are
//! unique per registry and far below 2^62), or, exactly 2^62, the cluster's tick. Tokens are never cancelled; the handler checks
//! that what a token names still holds when it fires.

use crate::app::ConnId;

const CONN_BIT: u64 = 1 << 63;
const EXPIRY_BIT: u64 = 1 << 62;
const GENERATION_MASK: u32 = 0x3fff_ffff;

/// What a token stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The auth deadline of the connection in slot `index` whose generation's low 30 bits are
    /// `generation_bits`.
    AuthTimeout {
        /// Slab index.
        index: u32,
        /// Low 30 bits of the generation.
        generation_bits: u32,
    },
    /// The check of the JWT expiry of the connection named as in [`Timer::AuthTimeout`].
    TokenExpiry {
        /// Slab index.
        index: u32,
        /// Low 30 bits of the generation.
        generation_bits: u32,
    },
    /// The cluster's tick (PROTOCOL section 13).
    ClusterTick,
    /// The TTL of the offline period `epoch` of an agent.
    AgentTtl {
        /// The registry's offline epoch.
        epoch: u64,
    },
}

/// The bits naming `conn` in a connection's token.
fn conn_bits(conn: ConnId) -> u64 {
    CONN_BIT | (u64::from(conn.generation & GENERATION_MASK) << 32) | u64::from(conn.index)
}

/// The token of `conn`'s auth deadline.
pub(crate) fn auth_timeout(conn: ConnId) -> u64 {
    conn_bits(conn)
}

/// The token of `conn`'s token expiry check.
pub(crate) fn token_expiry(conn: ConnId) -> u64 {
    conn_bits(conn) | EXPIRY_BIT
}

/// The token of an agent's offline TTL.
pub(crate) fn agent_ttl(epoch: u64) -> u64 {
    epoch & !CONN_BIT
}

/// The token of the cluster's tick: bit 62 alone, which no agent epoch reaches.
pub(crate) const CLUSTER_TICK: u64 = EXPIRY_BIT;

/// Decode a token made by this module.
pub(crate) fn decode(token: u64) -> Timer {
    if token == CLUSTER_TICK {
        return Timer::ClusterTick;
    }
    if token & CONN_BIT == 0 {
        return Timer::AgentTtl { epoch: token };
    }
    let index = token as u32;
    let generation_bits = ((token >> 32) as u32) & GENERATION_MASK;
    if token & EXPIRY_BIT != 0 {
        Timer::TokenExpiry {
            index,
            generation_bits,
        }
    } else {
        Timer::AuthTimeout {
            index,
            generation_bits,
        }
    }
}

/// Whether `conn` is the connection a [`Timer::AuthTimeout`] or [`Timer::TokenExpiry`] with
/// these bits names.
pub(crate) fn names(conn: ConnId, index: u32, generation_bits: u32) -> bool {
    conn.index == index && conn.generation & GENERATION_MASK == generation_bits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for conn in [
            ConnId {
                index: 0,
                generation: 0,
            },
            ConnId {
                index: u32::MAX,
                generation: u32::MAX,
            },
            ConnId {
                index: 17,
                generation: 3,
            },
        ] {
            match decode(auth_timeout(conn)) {
                Timer::AuthTimeout {
                    index,
                    generation_bits,
                } => assert!(names(conn, index, generation_bits)),
                other => panic!("{other:?}"),
            }
            match decode(token_expiry(conn)) {
                Timer::TokenExpiry {
                    index,
                    generation_bits,
                } => assert!(names(conn, index, generation_bits)),
                other => panic!("{other:?}"),
            }
            assert_ne!(auth_timeout(conn), token_expiry(conn));
        }
        assert_eq!(decode(agent_ttl(42)), Timer::AgentTtl { epoch: 42 });
        assert_ne!(
            auth_timeout(ConnId {
                index: 1,
                generation: 1
            }),
            auth_timeout(ConnId {
                index: 1,
                generation: 2
            })
        );
    }
}
