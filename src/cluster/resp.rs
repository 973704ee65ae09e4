//! RESP2's values and the decoder's bounds and errors, shared by the encoder, the decoder and
//! the push recognizer.
//!
//! Contract: a [`Reply`] is one RESP2 reply as Redis sent it, owned; [`RespLimits`] bounds
//! what the decoder accepts before it has seen a reply's end; a [`RespError`] means the byte
//! stream is not RESP2 within those limits, so the connection it came from is out of step and
//! must be dropped.

use std::fmt;

/// One RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `+OK\r\n`: a simple string (no CR or LF inside).
    Simple(Vec<u8>),
    /// `-ERR unknown command\r\n`: an error reply, its text without the `-`.
    Error(Vec<u8>),
    /// `:42\r\n`: a signed 64-bit integer.
    Integer(i64),
    /// `$5\r\nhello\r\n`: a binary-safe bulk string; `None` is the null bulk `$-1\r\n`.
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n...`: an array of replies, nested or not; `None` is the null array `*-1\r\n`.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// A bulk string holding `bytes`.
    pub(crate) fn bulk(bytes: &[u8]) -> Reply {
        Reply::Bulk(Some(bytes.to_vec()))
    }

    /// The bytes of a simple string or a non-null bulk string.
    pub(crate) fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Simple(bytes) | Reply::Bulk(Some(bytes)) => Some(bytes),
            _ => None,
        }
    }

    /// The elements of a non-null array.
    pub(crate) fn as_array(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(Some(items)) => Some(items),
            _ => None,
        }
    }
}

/// What the decoder accepts. Every bound is checked as soon as the bytes that break it have
/// arrived (a declared length is checked when its header line has), so a peer cannot make the
/// decoder, or the read buffer in front of it, wait for more than `max_reply` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RespLimits {
    /// The longest bulk string, in bytes.
    pub(crate) max_bulk: usize,
    /// The most bytes one reply may take on the wire, nested elements and line ends included.
    pub(crate) max_reply: usize,
    /// The most elements of one array.
    pub(crate) max_array: usize,
    /// The deepest nesting of arrays: 1 allows an array of scalars, 0 no array at all. Keep
    /// it small: dropping or comparing a reply recurses once per level.
    pub(crate) max_depth: usize,
}

impl RespLimits {
    /// Limits for replies of up to `max_reply` bytes: bulk strings up to that size, arrays
    /// of up to 1 Mi elements (`max_reply` caps them sooner), nested at most 8 deep (the
    /// cluster's scripts return at most 2 levels).
    pub(crate) fn new(max_reply: usize) -> RespLimits {
        RespLimits {
            max_bulk: max_reply,
            max_reply,
            max_array: 1 << 20,
            max_depth: 8,
        }
    }
}

/// Why a byte stream is not RESP2 within the limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RespError {
    /// A reply began with a byte that is not one of `+ - : $ *`.
    UnknownType(u8),
    /// A line did not end in exactly CR LF (a lone CR or LF), or a bulk string's body was not
    /// followed by CR LF.
    BadLineEnd,
    /// An integer, or a length, that is not a decimal i64 (empty, a stray sign or byte,
    /// leading `+`, or beyond 64 bits).
    BadInteger,
    /// A bulk or array length below -1.
    BadLength(i64),
    /// A bulk string longer than `max_bulk`.
    BulkTooLong {
        /// The declared length.
        len: i64,
        /// The limit.
        max: usize,
    },
    /// An array longer than `max_array`.
    ArrayTooLong {
        /// The declared length.
        len: i64,
        /// The limit.
        max: usize,
    },
    /// Arrays nested deeper than `max_depth`.
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// A reply larger than `max_reply` bytes on the wire.
    ReplyTooLarge {
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::UnknownType(byte) => write!(f, "unknown RESP type byte 0x{byte:02x}"),
            RespError::BadLineEnd => f.write_str("a RESP line not ended by exactly CR LF"),
            RespError::BadInteger => f.write_str("a RESP integer that is not a decimal i64"),
            RespError::BadLength(len) => write!(f, "a RESP length of {len}"),
            RespError::BulkTooLong { len, max } => {
                write!(f, "a bulk string of {len} bytes, above the limit of {max}")
            }
            RespError::ArrayTooLong { len, max } => {
                write!(f, "an array of {len} elements, above the limit of {max}")
            }
            RespError::TooDeep { max } => write!(f, "arrays nested deeper than {max}"),
            RespError::ReplyTooLarge { max } => {
                write!(f, "a reply larger than the limit of {max} bytes")
            }
        }
    }
}

impl std::error::Error for RespError {}
