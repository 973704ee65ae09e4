//! The two facts about secrets that the value parsers share: how long one may be, and the
//! mask printed in its place.

/// The longest token or password: a client's credential longer than this fails unread
/// (PROTOCOL section 11), so a configured one could never match.
pub(crate) const MAX_SECRET_BYTES: usize = 4096;

/// What [`Config::to_file_string`](super::Config::to_file_string) prints in place of a
/// secret.
pub(crate) const SECRET_MASK: &str = "***";
