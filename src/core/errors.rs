//! The error codes of the protocol and the one way every table reports a refusal.
//!
//! Contract:
//! - [`ErrorCode`] is the closed set of codes sent as `error.payload.code`; [`ErrorCode::ALL`]
//!   lists them in the order of [`ErrorCode::index`], which the metrics count by.
//! - Every table whose operations can be refused (sessions, agents, routes) has an error type
//!   implementing [`Refusal`]: the code of the error reply, its message naming the subject (a
//!   session id, an agent id, a request id), and the field at fault when there is one. The
//!   request handlers turn a refusal into its reply with
//!   `Reject::refused` (in `outbound`); nothing else spells these
//!   messages.
//! - This module imports nothing from the rest of the core, so that the tables and the wire
//!   format can both use it.

use std::fmt;

/// The error codes of PROTOCOL sections 3-6, sent as `error.payload.code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `AUTH_REQUIRED`: not authenticated yet, or `auth` without a credential.
    AuthRequired,
    /// `AUTH_FAILED`: wrong credential.
    AuthFailed,
    /// `PARSE_ERROR`: not JSON, not UTF-8, or not an object.
    ParseError,
    /// `INVALID_MESSAGE`: a missing or malformed field.
    InvalidMessage,
    /// `MESSAGE_TOO_LARGE`: over `max_message_size`.
    MessageTooLarge,
    /// `UNKNOWN_TYPE`: neither built in nor handled by a registered handler.
    UnknownType,
    /// `SESSION_NOT_FOUND`.
    SessionNotFound,
    /// `SESSION_FULL`: `max_clients_per_session` reached.
    SessionFull,
    /// `NOT_A_MEMBER`: the sender is not in the session.
    NotAMember,
    /// `LIMIT_EXCEEDED`: a table or metadata limit.
    LimitExceeded,
    /// `RATE_LIMITED`: the connection's token bucket is empty.
    RateLimited,
    /// `AGENT_EXISTS`: the id belongs to another online client.
    AgentExists,
    /// `AGENT_NOT_FOUND`.
    AgentNotFound,
    /// `FORBIDDEN`: not the owner, or the agent is offline.
    Forbidden,
    /// `TARGET_NOT_FOUND`: no route to the target.
    TargetNotFound,
    /// `INTERNAL_ERROR`: the gateway (or an embedded handler) could not produce a reply.
    InternalError,
    /// `UNAVAILABLE`: the request needs the cluster, and its broker is unreachable or did
    /// not answer within `broker_timeout_ms` (PROTOCOL section 13).
    Unavailable,
}

impl ErrorCode {
    /// Every code, in a fixed order (the order of [`ErrorCode::index`]).
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::AuthRequired,
        ErrorCode::AuthFailed,
        ErrorCode::ParseError,
        ErrorCode::InvalidMessage,
        ErrorCode::MessageTooLarge,
        ErrorCode::UnknownType,
        ErrorCode::SessionNotFound,
        ErrorCode::SessionFull,
        ErrorCode::NotAMember,
        ErrorCode::LimitExceeded,
        ErrorCode::RateLimited,
        ErrorCode::AgentExists,
        ErrorCode::AgentNotFound,
        ErrorCode::Forbidden,
        ErrorCode::TargetNotFound,
        ErrorCode::InternalError,
        ErrorCode::Unavailable,
    ];

    /// The wire string, e.g. `SESSION_NOT_FOUND`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::AuthRequired => "AUTH_REQUIRED",
            ErrorCode::AuthFailed => "AUTH_FAILED",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::InvalidMessage => "INVALID_MESSAGE",
            ErrorCode::MessageTooLarge => "MESSAGE_TOO_LARGE",
            ErrorCode::UnknownType => "UNKNOWN_TYPE",
            ErrorCode::SessionNotFound => "SESSION_NOT_FOUND",
            ErrorCode::SessionFull => "SESSION_FULL",
            ErrorCode::NotAMember => "NOT_A_MEMBER",
            ErrorCode::LimitExceeded => "LIMIT_EXCEEDED",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::AgentExists => "AGENT_EXISTS",
            ErrorCode::AgentNotFound => "AGENT_NOT_FOUND",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::TargetNotFound => "TARGET_NOT_FOUND",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::Unavailable => "UNAVAILABLE",
        }
    }

    /// Position of this code in [`ErrorCode::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal by one of the tables, as the error reply it becomes.
pub(crate) trait Refusal {
    /// The protocol error code.
    fn code(&self) -> ErrorCode;

    /// A human-readable message naming `subject`, the id the request was about.
    fn message(&self, subject: &str) -> String;

    /// The field at fault, sent as `details.field`; `None` unless the refusal is about one
    /// field of the request.
    fn field(&self) -> Option<&'static str> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_have_their_wire_strings_in_index_order() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(code.index(), i);
        }
        assert_eq!(ErrorCode::NotAMember.as_str(), "NOT_A_MEMBER");
        assert_eq!(ErrorCode::TargetNotFound.to_string(), "TARGET_NOT_FOUND");
    }
}
