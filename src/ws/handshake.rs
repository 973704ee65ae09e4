//! The HTTP/1.1 upgrade request, parsed with `httparse`, and the responses to it
//! (PROTOCOL.md section 1).
//!
//! [`parse_request`] looks at the bytes read so far on a new connection and answers read more,
//! upgrade, serve a plain GET, or refuse. It is a pure function of `(bytes, rules)`: feeding any
//! prefix of a request gives [`Outcome::Partial`] or the outcome of the whole request, never a
//! different one. The checks run in the order of the table in PROTOCOL.md section 1:
//!
//! 1. 431 when the head does not fit in `max_header_bytes` (only the first `max_header_bytes`
//!    bytes are ever parsed, so a buffer that reaches that size without a complete head is
//!    refused), or when it has more than [`MAX_HEADERS`] header fields.
//! 2. 400 when the head is not parseable, is not HTTP/1.1, or announces a body
//!    (`Transfer-Encoding`, or `Content-Length` other than `0`); 405 for a well-formed method
//!    other than `GET` (methods are case-sensitive: `get` is another method).
//! 3. A `GET` whose path (the request target up to the first `?`, compared byte for byte) is not
//!    `rules.path` is [`Outcome::Plain`], whatever its upgrade headers.
//! 4. 426 unless there is exactly one `Sec-WebSocket-Version` and it is `13`.
//! 5. 400 unless `Upgrade` has a `websocket` token, `Connection` has an `upgrade` token (both
//!    comma-separated lists, any case; repeated fields are read as one list), and there is
//!    exactly one `Sec-WebSocket-Key` that is the standard base64 of 16 bytes (24 characters
//!    ending in `==`, canonical padding bits).
//! 6. 403 `Origin not allowed` when the origin policy refuses the `Origin` value, which must be
//!    a single UTF-8 field (a repeated `Origin` is refused), or its absence.
//!
//! `Host` is not checked. Requested extensions and subprotocols are ignored: the 101 response
//! never advertises any. Bytes after the head belong to the WebSocket stream.

use crate::ws::origin::OriginPolicy;

/// The most header fields a request may have; more is refused with 431.
pub(crate) const MAX_HEADERS: usize = 64;

/// What a request must look like to be upgraded.
#[derive(Clone, Debug)]
pub(crate) struct UpgradeRules {
    /// The WebSocket endpoint, e.g. `/ws`.
    pub path: String,
    /// The largest request head accepted, in bytes (431 beyond it).
    pub max_header_bytes: usize,
    /// The `Origin` check.
    pub origins: OriginPolicy,
}

/// What to do with the bytes read so far on a connection still in its HTTP handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The head is not complete yet (and is still within max_header_bytes): read more.
    Partial,
    /// A valid WebSocket upgrade for `path` that passed the origin check. `head_len` is the
    /// length of the request head; bytes after it already belong to the WebSocket stream.
    Upgrade {
        /// The `Sec-WebSocket-Accept` value for the 101 response.
        accept_key: String,
        /// Length of the request head in bytes.
        head_len: usize,
    },
    /// A well-formed GET (HTTP/1.1) for a path other than `rules.path` (query string stripped),
    /// with or without upgrade headers. The reactor asks the application whether it serves it
    /// (/health, /metrics) and answers 404 otherwise.
    Plain {
        /// The request path without its query string.
        path: String,
        /// Length of the request head in bytes.
        head_len: usize,
    },
    /// Refuse with this status and short text body.
    Refuse(Refusal),
}

/// An HTTP refusal: a status and a short text body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The HTTP status code.
    pub status: u16,
    /// The text body (without a trailing newline).
    pub body: &'static str,
}

impl Refusal {
    /// 431: the head is larger than `max_header_bytes`.
    pub(crate) const HEADERS_TOO_LARGE: Refusal = Refusal {
        status: 431,
        body: "Request header fields too large",
    };
    /// 431: more than [`MAX_HEADERS`] header fields.
    pub(crate) const TOO_MANY_HEADERS: Refusal = Refusal {
        status: 431,
        body: "Too many header fields",
    };
    /// 400: the head is not a parseable HTTP request.
    pub(crate) const MALFORMED: Refusal = Refusal {
        status: 400,
        body: "Malformed request",
    };
    /// 400: the request is not HTTP/1.1.
    pub(crate) const HTTP_VERSION: Refusal = Refusal {
        status: 400,
        body: "HTTP/1.1 required",
    };
    /// 405: a method other than GET (sent with `Allow: GET`).
    pub(crate) const METHOD_NOT_ALLOWED: Refusal = Refusal {
        status: 405,
        body: "Method not allowed",
    };
    /// 400: the request announces a body.
    pub(crate) const BODY_NOT_ALLOWED: Refusal = Refusal {
        status: 400,
        body: "Request body not allowed",
    };
    /// 426: `Sec-WebSocket-Version` missing or not 13 (sent with `Sec-WebSocket-Version: 13`).
    pub(crate) const UNSUPPORTED_VERSION: Refusal = Refusal {
        status: 426,
        body: "Unsupported WebSocket version",
    };
    /// 400: no `websocket` token in `Upgrade`.
    pub(crate) const NOT_WEBSOCKET: Refusal = Refusal {
        status: 400,
        body: "Expected Upgrade: websocket",
    };
    /// 400: no `upgrade` token in `Connection`.
    pub(crate) const NOT_CONNECTION_UPGRADE: Refusal = Refusal {
        status: 400,
        body: "Expected Connection: upgrade",
    };
    /// 400: `Sec-WebSocket-Key` missing, repeated, or not base64 of 16 bytes.
    pub(crate) const BAD_KEY: Refusal = Refusal {
        status: 400,
        body: "Invalid Sec-WebSocket-Key",
    };
    /// 403: the origin check failed.
    pub(crate) const ORIGIN_NOT_ALLOWED: Refusal = Refusal {
        status: 403,
        body: "Origin not allowed",
    };
    /// 503: for the reactor, when `max_connections` WebSocket connections are open.
    pub(crate) const AT_CAPACITY: Refusal = Refusal {
        status: 503,
        body: "Too many connections",
    };
}

/// Decides what to do with `buf`, the bytes read so far on a connection in its handshake.
pub(crate) fn parse_request(buf: &[u8], rules: &UpgradeRules) -> Outcome {
    let window = buf.get(..rules.max_header_bytes).unwrap_or(buf);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(window) {
        Ok(httparse::Status::Complete(head_len)) => check_request(&request, head_len, rules),
        Ok(httparse::Status::Partial) if buf.len() >= rules.max_header_bytes => {
            Outcome::Refuse(Refusal::HEADERS_TOO_LARGE)
        }
        Ok(httparse::Status::Partial) => Outcome::Partial,
        Err(httparse::Error::TooManyHeaders) => Outcome::Refuse(Refusal::TOO_MANY_HEADERS),
        Err(_) => Outcome::Refuse(Refusal::MALFORMED),
    }
}

/// Rows 2 to 6 of the table, on a complete head.
fn check_request(request: &httparse::Request, head_len: usize, rules: &UpgradeRules) -> Outcome {
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Outcome::Refuse(Refusal::MALFORMED);
    };
    let headers: &[httparse::Header] = request.headers;
    if version != 1 {
        return Outcome::Refuse(Refusal::HTTP_VERSION);
    }
    if method != "GET" {
        return Outcome::Refuse(Refusal::METHOD_NOT_ALLOWED);
    }
    if announces_body(headers) {
        return Outcome::Refuse(Refusal::BODY_NOT_ALLOWED);
    }
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    if path != rules.path {
        return Outcome::Plain {
            path: path.to_owned(),
            head_len,
        };
    }
    if single(headers, "Sec-WebSocket-Version") != Field::One(b"13") {
        return Outcome::Refuse(Refusal::UNSUPPORTED_VERSION);
    }
    if !has_token(headers, "Upgrade", "websocket") {
        return Outcome::Refuse(Refusal::NOT_WEBSOCKET);
    }
    if !has_token(headers, "Connection", "upgrade") {
        return Outcome::Refuse(Refusal::NOT_CONNECTION_UPGRADE);
    }
    let key = match single(headers, "Sec-WebSocket-Key") {
        Field::One(key) if is_base64_of_16_bytes(key) => key,
        _ => return Outcome::Refuse(Refusal::BAD_KEY),
    };
    let origin_allowed = match single(headers, "Origin") {
        Field::Missing => rules.origins.allows(None),
        Field::One(value) => std::str::from_utf8(value)
            .map(|origin| rules.origins.allows(Some(origin)))
            .unwrap_or(false),
        Field::Repeated => false,
    };
    if !origin_allowed {
        return Outcome::Refuse(Refusal::ORIGIN_NOT_ALLOWED);
    }
    Outcome::Upgrade {
        accept_key: tungstenite::handshake::derive_accept_key(key),
        head_len,
    }
}

/// A header field that must appear at most once.
#[derive(Debug, PartialEq, Eq)]
enum Field<'a> {
    Missing,
    One(&'a [u8]),
    Repeated,
}

/// Looks up a header that may appear only once (httparse has trimmed its value).
fn single<'a>(headers: &[httparse::Header<'a>], name: &str) -> Field<'a> {
    let mut values = values(headers, name);
    match (values.next(), values.next()) {
        (None, _) => Field::Missing,
        (Some(value), None) => Field::One(value),
        (Some(_), Some(_)) => Field::Repeated,
    }
}

/// The values of every field called `name` (any case), in order.
fn values<'h, 'a>(
    headers: &'h [httparse::Header<'a>],
    name: &'h str,
) -> impl Iterator<Item = &'a [u8]> + 'h {
    headers
        .iter()
        .filter(move |header| header.name.eq_ignore_ascii_case(name))
        .map(|header| header.value)
}

/// Whether the comma-separated lists of every field called `name` contain `token` (any case).
fn has_token(headers: &[httparse::Header], name: &str, token: &str) -> bool {
    values(headers, name)
        .flat_map(|value| value.split(|&b| b == b','))
        .any(|item| trim_ows(item).eq_ignore_ascii_case(token.as_bytes()))
}

fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

fn announces_body(headers: &[httparse::Header]) -> bool {
    values(headers, "Transfer-Encoding").next().is_some()
        || values(headers, "Content-Length").any(|value| value != b"0")
}

/// Whether `key` is the standard base64 encoding of exactly 16 bytes: 22 alphabet characters,
/// the last of which carries only 2 bits (so its low 4 bits are zero), then `==`.
fn is_base64_of_16_bytes(key: &[u8]) -> bool {
    let Some(data) = key.strip_suffix(b"==") else {
        return false;
    };
    let Some((last, first)) = data.split_last() else {
        return false;
    };
    let is_alphabet = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    data.len() == 22 && first.iter().all(is_alphabet) && matches!(last, b'A' | b'Q' | b'g' | b'w')
}

/// Appends the 101 Switching Protocols response for an [`Outcome::Upgrade`]'s `accept_key`.
/// It advertises no extension and no subprotocol.
pub(crate) fn write_accept(out: &mut Vec<u8>, accept_key: &str) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\n\
          Upgrade: websocket\r\n\
          Connection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(header_value(accept_key).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// Appends a refusal: the status line with its standard reason phrase, `Content-Type:
/// text/plain; charset=utf-8`, `Content-Length`, `Connection: close`, plus
/// `Sec-WebSocket-Version: 13` for 426 and `Allow: GET` for 405; the body is the refusal's
/// text and a newline.
pub(crate) fn write_refusal(out: &mut Vec<u8>, refusal: Refusal) {
    let extra = match refusal.status {
        405 => "Allow: GET\r\n",
        426 => "Sec-WebSocket-Version: 13\r\n",
        _ => "",
    };
    let body = format!("{}\n", refusal.body);
    write_head(
        out,
        refusal.status,
        "text/plain; charset=utf-8",
        body.len(),
        extra,
    );
    out.extend_from_slice(body.as_bytes());
}

/// Appends a plain HTTP response (used for /health, /metrics, 404) with `Content-Type`,
/// `Content-Length` and `Connection: close`. A status outside 100..=599 is sent as 500;
/// control characters in `content_type` are dropped.
pub(crate) fn write_response(out: &mut Vec<u8>, status: u16, content_type: &str, body: &[u8]) {
    write_head(out, status, content_type, body.len(), "");
    out.extend_from_slice(body);
}

fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    content_length: usize,
    extra_headers: &str,
) {
    let status = if (100..=599).contains(&status) {
        status
    } else {
        500
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\n\
         Content-Type: {content_type}\r\n\
         Content-Length: {content_length}\r\n\
         Connection: close\r\n\
         {extra_headers}\r\n",
        reason = reason_phrase(status),
        content_type = header_value(content_type),
    );
    out.extend_from_slice(head.as_bytes());
}

/// `text` without control characters, so it cannot break the response head.
fn header_value(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

/// The standard reason phrase, or the name of the status class for codes without one.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => match status / 100 {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        },
    }
}

#[cfg(test)]
mod tests;
