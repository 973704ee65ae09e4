//! The pushes of a subscribed RESP2 connection: messages, subscription confirmations and
//! pongs, which Redis sends as arrays.
//!
//! Contract: [`push`] recognizes the shapes Redis 7 sends on a connection in subscribed mode
//! (the kind as a lowercase bulk string first, then its fields) and borrows their fields from
//! the reply; anything else is `None`. On a command connection an array reply may look the
//! same, so it is for the subscriber connection only.

use super::resp::Reply;

/// One push of a subscribed connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Push<'a> {
    /// `message`: a PUBLISH to a subscribed channel.
    Message {
        /// The channel it was published to.
        channel: &'a [u8],
        /// What was published.
        payload: &'a [u8],
    },
    /// `pmessage`: a PUBLISH to a channel that a subscribed pattern matches.
    PatternMessage {
        /// The pattern that matched.
        pattern: &'a [u8],
        /// The channel it was published to.
        channel: &'a [u8],
        /// What was published.
        payload: &'a [u8],
    },
    /// `subscribe` or `psubscribe`: a subscription is in place.
    Subscribed {
        /// True for a pattern (`psubscribe`).
        pattern: bool,
        /// The channel or pattern.
        name: &'a [u8],
        /// How many subscriptions the connection now has.
        count: i64,
    },
    /// `unsubscribe` or `punsubscribe`: a subscription is gone.
    Unsubscribed {
        /// True for a pattern (`punsubscribe`).
        pattern: bool,
        /// The channel or pattern; `None` when the connection had none to remove.
        name: Option<&'a [u8]>,
        /// How many subscriptions the connection still has.
        count: i64,
    },
    /// `pong`: the answer to a PING sent while subscribed, with its argument (empty without).
    Pong(&'a [u8]),
}

/// The push `reply` is, when it is one.
pub(crate) fn push(reply: &Reply) -> Option<Push<'_>> {
    let (kind, fields) = reply.as_array()?.split_first()?;
    let kind = bulk(kind)?;
    match (kind, fields) {
        (b"message", [channel, payload]) => Some(Push::Message {
            channel: bulk(channel)?,
            payload: bulk(payload)?,
        }),
        (b"pmessage", [pattern, channel, payload]) => Some(Push::PatternMessage {
            pattern: bulk(pattern)?,
            channel: bulk(channel)?,
            payload: bulk(payload)?,
        }),
        (b"subscribe" | b"psubscribe", [name, count]) => Some(Push::Subscribed {
            pattern: kind == b"psubscribe",
            name: bulk(name)?,
            count: int(count)?,
        }),
        (b"unsubscribe" | b"punsubscribe", [name, count]) => Some(Push::Unsubscribed {
            pattern: kind == b"punsubscribe",
            name: match name {
                Reply::Bulk(None) => None,
                other => Some(bulk(other)?),
            },
            count: int(count)?,
        }),
        (b"pong", [data]) => Some(Push::Pong(bulk(data)?)),
        _ => None,
    }
}

fn bulk(field: &Reply) -> Option<&[u8]> {
    match field {
        Reply::Bulk(Some(bytes)) => Some(bytes),
        _ => None,
    }
}

fn int(field: &Reply) -> Option<i64> {
    match field {
        Reply::Integer(n) => Some(*n),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
