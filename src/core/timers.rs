//! The `u64` timer tokens the core hands to [`crate::app::Actions::set_timer`], and their
//! decoding.
//!
//! Contract: a token with the top bit set is an auth deadline for one connection: the slab
//! index in the low 32 bits and the low 31 bits of the slot generation above it. A token with
//! the top bit clear is the TTL of an offline agent: the registry's offline epoch (epochs are
//! unique per registry and far below 2^63). Tokens are never cancelled; the handler checks
//! that what a token names still holds when it fires.

use crate::app::ConnId;

const AUTH_BIT: u64 = 1 << 63;
const GENERATION_MASK: u32 = 0x7fff_ffff;

/// What a token stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The auth deadline of the connection in slot `index` whose generation's low 31 bits are
    /// `generation_bits`.
    AuthTimeout {
        /// Slab index.
        index: u32,
        /// Low 31 bits of the generation.
        generation_bits: u32,
    },
    /// The TTL of the offline period `epoch` of an agent.
    AgentTtl {
        /// The registry's offline epoch.
        epoch: u64,
    },
}

/// The token of `conn`'s auth deadline.
pub(crate) fn auth_timeout(conn: ConnId) -> u64 {
    AUTH_BIT | (u64::from(conn.generation & GENERATION_MASK) << 32) | u64::from(conn.index)
}

/// The token of an agent's offline TTL.
pub(crate) fn agent_ttl(epoch: u64) -> u64 {
    epoch & !AUTH_BIT
}

/// Decode a token made by this module.
pub(crate) fn decode(token: u64) -> Timer {
    if token & AUTH_BIT != 0 {
        Timer::AuthTimeout {
            index: token as u32,
            generation_bits: ((token >> 32) as u32) & GENERATION_MASK,
        }
    } else {
        Timer::AgentTtl { epoch: token }
    }
}

/// Whether `conn` is the connection an [`Timer::AuthTimeout`] with these bits names.
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
