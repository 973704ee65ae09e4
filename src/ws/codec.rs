//! Server-side WebSocket framing (RFC 6455) over the caller's buffers, without I/O.
//!
//! Contract:
//! - [`Decoder::decode_frames`] takes whatever bytes arrived from one client, in order, and calls back
//!   once per complete message or control frame. Payloads are unmasked in place in the input;
//!   a complete unfragmented frame lying wholly in the input is handed out as a slice of it.
//! - Between calls a decoder holds at most an incomplete header (inline), the bytes of an
//!   unfinished data message and of an unfinished control frame (one `Vec`, freed as soon as
//!   the message is delivered). An idle decoder owns no heap memory.
//! - Every protocol violation is a [`CloseError`] carrying the close code to send: 1002 for
//!   framing errors (a length not in its shortest encoding among them), 1007 for invalid UTF-8 (detected as soon as it is certain), 1009 for a
//!   frame or message over [`CodecLimits::max_payload`] (checked on the header, before any
//!   allocation), 1008 `Server busy` for payload bytes that would make the message in
//!   progress hold more than [`CodecLimits::max_held`] (checked as they arrive, so a header
//!   alone reserves nothing). Nothing a peer
//!   sends makes this module panic.
//! - The limits are read at every frame header, so `on` may change them for the frames that
//!   follow in the same input (the reactor raises a connection's limit when it authenticates).
//! - It also stops after a number of frames, so that a caller can bound the work of frames
//!   that yield nothing (empty continuation frames).
//! - [`encode`] and [`encode_close`] append unmasked, unfragmented server frames.

use std::cell::Cell;
use std::fmt;
use std::io::Cursor;

use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// The longest frame header: 2 bytes, an 8-byte length and a 4-byte mask.
const MAX_HEADER: usize = 14;
/// The largest payload of a control frame (RFC 6455 section 5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;
/// The largest close reason: a control payload less the 2-byte code.
const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// Limits the decoder enforces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CodecLimits {
    /// The largest frame payload and the largest whole message, in bytes; more is close 1009.
    pub max_payload: usize,
    /// The most bytes the message in progress may hold ([`Decoder::message_bytes`]); a data
    /// frame that would make it hold more is close 1008 `Server busy`. A message that arrives
    /// whole in one input is never held, so this does not apply to it.
    pub max_held: usize,
}

/// A reason to close the connection: the code and reason of the close frame to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CloseError {
    /// The close code: 1002 (protocol error), 1007 (invalid UTF-8) or 1009 (too big).
    pub code: u16,
    /// A short reason for the close frame.
    pub reason: &'static str,
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

impl std::error::Error for CloseError {}

const fn protocol_error(reason: &'static str) -> CloseError {
    CloseError { code: 1002, reason }
}

const RESERVED_BITS: CloseError = protocol_error("Reserved bits set");
const RESERVED_OPCODE: CloseError = protocol_error("Reserved opcode");
const UNMASKED: CloseError = protocol_error("Unmasked client frame");
const FRAGMENTED_CONTROL: CloseError = protocol_error("Fragmented control frame");
const CONTROL_TOO_LONG: CloseError = protocol_error("Control frame too long");
const STRAY_CONTINUATION: CloseError = protocol_error("Continuation without a message");
const NESTED_MESSAGE: CloseError = protocol_error("New message inside a fragmented one");
const SHORT_CLOSE: CloseError = protocol_error("Close payload of one byte");
const BAD_CLOSE_CODE: CloseError = protocol_error("Invalid close code");
const LONG_LENGTH: CloseError = protocol_error("Length not in its shortest encoding");
const LENGTH_TOP_BIT: CloseError = protocol_error("Length with its top bit set");
const INVALID_UTF8: CloseError = CloseError {
    code: 1007,
    reason: "Invalid UTF-8",
};
const TOO_BIG: CloseError = CloseError {
    code: 1009,
    reason: "Message too big",
};
const SERVER_BUSY: CloseError = CloseError {
    code: 1008,
    reason: "Server busy",
};

/// One complete item decoded from a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Incoming<'a> {
    /// A complete message; text messages are guaranteed valid UTF-8.
    Message {
        /// The message payload, unmasked.
        data: &'a [u8],
        /// True for a binary message, false for a text message.
        binary: bool,
    },
    /// A ping frame with its payload (at most 125 bytes).
    Ping(&'a [u8]),
    /// A pong frame with its payload (at most 125 bytes).
    Pong(&'a [u8]),
    /// A valid close frame: code None when the payload was empty.
    Close {
        /// The close code, when the frame carried one.
        code: Option<u16>,
        /// The close reason (empty when absent).
        reason: &'a str,
    },
}

/// What the payload bytes of the current frame are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Frame {
    /// Between frames: the next bytes are a header.
    #[default]
    Header,
    /// A text, binary or continuation frame: its payload belongs to the current message.
    Data,
    /// A ping frame.
    Ping,
    /// A pong frame.
    Pong,
    /// A close frame.
    Close,
}

/// The data message in progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Message {
    /// No message started.
    #[default]
    None,
    /// A text message (validated as UTF-8 while it arrives).
    Text,
    /// A binary message.
    Binary,
}

/// A streaming decoder of client frames for one connection.
///
/// Holds no heap memory while idle; see the module documentation for what it holds otherwise.
#[derive(Default, Debug)]
pub(crate) struct Decoder {
    /// The unfinished message's payload so far, followed by the payload so far of an
    /// unfinished control frame (the last `control_len` bytes). Unallocated when idle.
    buf: Vec<u8>,
    /// Payload bytes of the current frame not yet received.
    left: u64,
    /// The bytes of an incomplete header.
    head: [u8; MAX_HEADER],
    /// How many bytes of `head` are held.
    head_len: u8,
    /// The current frame's mask, rotated so that it applies from the next payload byte.
    mask: [u8; 4],
    /// What the current frame is.
    frame: Frame,
    /// Whether the current data frame ends its message.
    fin: bool,
    /// The data message in progress.
    message: Message,
    /// How many bytes at the end of `buf` belong to an unfinished control frame.
    control_len: u8,
    /// How many bytes at the end of a text message start a UTF-8 sequence not yet complete.
    utf8_pending: u8,
}

impl Decoder {
    /// [`Decoder::decode_frames`] with no bound on frames.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn decode(
        &mut self,
        input: &mut [u8],
        limits: &Cell<CodecLimits>,
        on: &mut dyn FnMut(Incoming<'_>) -> bool,
    ) -> Result<usize, CloseError> {
        self.decode_frames(input, limits, usize::MAX, on)
    }

    /// Decode `input` (may be unmasked in place), calling `on` for each complete item in
    /// order; returns how many bytes of `input` it took.
    ///
    /// `on` returns true to continue, false to stop: then the bytes taken are those up to the
    /// end of the frame of the item it stopped at, and the rest of `input` is left untouched
    /// (still masked), for the caller to drop (it is closing) or to decode later (it handles
    /// the rest in a later turn). It stops the same way once `frames` frames (one at least)
    /// are complete with more of `input` after them: the caller bounds so the work of frames
    /// that make no item (empty or tiny continuation frames). Otherwise all of `input` is
    /// taken: bytes of an incomplete frame are retained so the next call continues where this
    /// one stopped. `limits` are read at every frame header: `on` may change them. After an
    /// error the decoder must not be used again.
    pub(crate) fn decode_frames(
        &mut self,
        input: &mut [u8],
        limits: &Cell<CodecLimits>,
        frames: usize,
        on: &mut dyn FnMut(Incoming<'_>) -> bool,
    ) -> Result<usize, CloseError> {
        let mut frames_left = frames;
        let total = input.len();
        let mut rest = input;
        loop {
            if self.frame == Frame::Header && !self.read_header(&mut rest, limits)? {
                return Ok(total);
            }
            let take = usize::try_from(self.left).map_or(rest.len(), |left| left.min(rest.len()));
            let (chunk, tail) = std::mem::take(&mut rest).split_at_mut(take);
            rest = tail;
            unmask(chunk, self.mask);
            self.mask.rotate_left(take % 4);
            self.left -= take as u64;
            let complete = self.left == 0;
            let frame = self.frame;
            if complete {
                self.frame = Frame::Header;
            }
            let go_on = match frame {
                Frame::Data => self.data(chunk, complete, &limits.get(), on)?,
                _ => self.control(frame, chunk, complete, on)?,
            };
            if !go_on {
                return Ok(total - rest.len());
            }
            if !complete {
                return Ok(total);
            }
            frames_left = frames_left.saturating_sub(1);
            if frames_left == 0 && !rest.is_empty() {
                return Ok(total - rest.len());
            }
        }
    }

    /// True when no partial frame or message is held (no heap in use).
    #[cfg(any(test, fuzzing))]
    pub(crate) fn is_idle(&self) -> bool {
        self.frame == Frame::Header && self.head_len == 0 && self.message == Message::None
    }

    /// Heap bytes currently held.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.buf.capacity()
    }

    /// Whether a data message has begun and not yet ended.
    pub(crate) fn message_in_progress(&self) -> bool {
        self.message != Message::None
    }

    /// The heap bytes the data message in progress holds: its buffer's capacity (0 when none
    /// is in progress, whatever a frame header announced). [`CodecLimits::max_held`] bounds
    /// its payload as bytes arrive, and its buffer never grows past it (a control frame
    /// interleaved in the message may add at most its 125 bytes).
    pub(crate) fn message_bytes(&self) -> usize {
        if self.message_in_progress() {
            self.buf.capacity()
        } else {
            0
        }
    }

    /// Reads the next header from the held bytes and `rest`, advancing `rest` past it.
    /// Returns false when the header is still incomplete (all of `rest` is then held).
    fn read_header(
        &mut self,
        rest: &mut &mut [u8],
        limits: &Cell<CodecLimits>,
    ) -> Result<bool, CloseError> {
        let held = usize::from(self.head_len);
        let parsed = if held == 0 {
            let parsed = parse_header(rest)?;
            if parsed.is_none() {
                let keep = rest.len().min(MAX_HEADER);
                self.head[..keep].copy_from_slice(&rest[..keep]);
                self.head_len = keep as u8;
            }
            parsed
        } else {
            let copy = (MAX_HEADER - held).min(rest.len());
            self.head[held..held + copy].copy_from_slice(&rest[..copy]);
            self.head_len = (held + copy) as u8;
            parse_header(&self.head[..held + copy])?
                .map(|(header, len, used)| (header, len, used.saturating_sub(held)))
        };
        let Some((header, len, used)) = parsed else {
            *rest = &mut [];
            return Ok(false);
        };
        self.head_len = 0;
        *rest = &mut std::mem::take(rest)[used..];
        self.start_frame(&header, len, &limits.get())?;
        Ok(true)
    }

    /// Checks a parsed header against the protocol and the limits, and sets up its payload.
    fn start_frame(
        &mut self,
        header: &FrameHeader,
        len: u64,
        limits: &CodecLimits,
    ) -> Result<(), CloseError> {
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(RESERVED_BITS);
        }
        let Some(mask) = header.mask else {
            return Err(UNMASKED);
        };
        self.frame = match header.opcode {
            OpCode::Control(control) => {
                if !header.is_final {
                    return Err(FRAGMENTED_CONTROL);
                }
                if len > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(CONTROL_TOO_LONG);
                }
                match control {
                    Control::Ping => Frame::Ping,
                    Control::Pong => Frame::Pong,
                    Control::Close => Frame::Close,
                    Control::Reserved(_) => return Err(RESERVED_OPCODE),
                }
            }
            OpCode::Data(data) => {
                self.message = match (data, self.message) {
                    (Data::Continue, Message::None) => return Err(STRAY_CONTINUATION),
                    (Data::Continue, message) => message,
                    (Data::Text | Data::Binary, Message::Text | Message::Binary) => {
                        return Err(NESTED_MESSAGE)
                    }
                    (Data::Text, Message::None) => Message::Text,
                    (Data::Binary, Message::None) => Message::Binary,
                    (Data::Reserved(_), _) => return Err(RESERVED_OPCODE),
                };
                let total = (self.buf.len() as u64).saturating_add(len);
                if total > limits.max_payload as u64 {
                    return Err(TOO_BIG);
                }
                // `max_held` is checked as bytes arrive (`data`), not against what the header
                // announces: announcing costs the peer nothing.
                self.fin = header.is_final;
                Frame::Data
            }
        };
        self.left = len;
        self.mask = mask;
        Ok(())
    }

    /// Takes the next unmasked `chunk` of a data frame; `complete` when it ends the frame.
    fn data(
        &mut self,
        chunk: &[u8],
        complete: bool,
        limits: &CodecLimits,
        on: &mut dyn FnMut(Incoming<'_>) -> bool,
    ) -> Result<bool, CloseError> {
        let done = complete && self.fin;
        let text = self.message == Message::Text;
        if done && self.buf.is_empty() {
            // The whole message is this chunk: hand it out without copying.
            if text && std::str::from_utf8(chunk).is_err() {
                return Err(INVALID_UTF8);
            }
            self.message = Message::None;
            self.buf = Vec::new();
            return Ok(on(Incoming::Message {
                data: chunk,
                binary: !text,
            }));
        }
        if !chunk.is_empty() {
            if self.buf.len().saturating_add(chunk.len()) > limits.max_held {
                return Err(SERVER_BUSY);
            }
            let room = if self.fin {
                self.frame_room(chunk)
            } else {
                limits.max_payload.saturating_sub(self.buf.len())
            };
            // The buffer never grows past `max_held`: what it holds is what is counted.
            self.append(chunk, room.min(limits.max_held - self.buf.len()));
            if text {
                self.check_utf8(chunk.len())?;
            }
        }
        if !done {
            return Ok(true);
        }
        if text && self.utf8_pending != 0 {
            return Err(INVALID_UTF8);
        }
        let data = std::mem::take(&mut self.buf);
        self.message = Message::None;
        self.utf8_pending = 0;
        Ok(on(Incoming::Message {
            data: &data,
            binary: !text,
        }))
    }

    /// Takes the next unmasked `chunk` of a control frame; `complete` when it ends the frame.
    fn control(
        &mut self,
        frame: Frame,
        chunk: &[u8],
        complete: bool,
        on: &mut dyn FnMut(Incoming<'_>) -> bool,
    ) -> Result<bool, CloseError> {
        if complete && self.control_len == 0 {
            return deliver_control(frame, chunk, on);
        }
        if !chunk.is_empty() {
            self.append(chunk, self.frame_room(chunk));
            self.control_len = self.control_len.saturating_add(chunk.len() as u8);
        }
        if !complete {
            return Ok(true);
        }
        let start = self.buf.len().saturating_sub(usize::from(self.control_len));
        let result = deliver_control(frame, &self.buf[start..], on);
        self.control_len = 0;
        if self.message == Message::None {
            self.buf = Vec::new();
        } else {
            self.buf.truncate(start);
        }
        result
    }

    /// How many more bytes the current frame brings, `chunk` included.
    fn frame_room(&self, chunk: &[u8]) -> usize {
        chunk
            .len()
            .saturating_add(usize::try_from(self.left).unwrap_or(usize::MAX))
    }

    /// Appends payload bytes to `buf`, growing it geometrically but never beyond `room` more
    /// bytes: all that its current contents can still grow by.
    fn append(&mut self, chunk: &[u8], room: usize) {
        if self.buf.capacity() - self.buf.len() < chunk.len() {
            let extra = chunk.len().max(self.buf.capacity()).min(room);
            self.buf.reserve_exact(extra.max(chunk.len()));
        }
        self.buf.extend_from_slice(chunk);
    }

    /// Validates the text message's last `added` bytes, together with the incomplete
    /// sequence held before them.
    fn check_utf8(&mut self, added: usize) -> Result<(), CloseError> {
        let from = self
            .buf
            .len()
            .saturating_sub(added + usize::from(self.utf8_pending));
        let tail = &self.buf[from..];
        self.utf8_pending = match std::str::from_utf8(tail) {
            Ok(_) => 0,
            Err(e) if e.error_len().is_none() => (tail.len() - e.valid_up_to()) as u8,
            Err(_) => return Err(INVALID_UTF8),
        };
        Ok(())
    }
}

/// Parses a frame header at the start of `bytes`: the header, its payload length and the
/// header's size, or None when `bytes` holds only part of it.
fn parse_header(bytes: &[u8]) -> Result<Option<(FrameHeader, u64, usize)>, CloseError> {
    let mut cursor = Cursor::new(bytes);
    match FrameHeader::parse(&mut cursor) {
        Ok(Some((header, len))) => {
            check_length_encoding(bytes[1], len)?;
            Ok(Some((header, len, cursor.position() as usize)))
        }
        Ok(None) => Ok(None),
        Err(_) => Err(RESERVED_OPCODE),
    }
}

/// Checks that a header's length, `len`, was sent as RFC 6455 section 5.2 requires, given the
/// header's second byte: in the fewest bytes (a 16-bit length is 126 or more, a 64-bit one
/// 65 536 or more), and a 64-bit length with its most significant bit clear.
fn check_length_encoding(second: u8, len: u64) -> Result<(), CloseError> {
    match second & 0x7F {
        126 if len < 126 => Err(LONG_LENGTH),
        127 if len >> 63 != 0 => Err(LENGTH_TOP_BIT),
        127 if len < 65_536 => Err(LONG_LENGTH),
        _ => Ok(()),
    }
}

/// Checks a complete control frame's payload and hands it to `on`.
fn deliver_control(
    frame: Frame,
    payload: &[u8],
    on: &mut dyn FnMut(Incoming<'_>) -> bool,
) -> Result<bool, CloseError> {
    let item = match frame {
        Frame::Ping => Incoming::Ping(payload),
        Frame::Pong => Incoming::Pong(payload),
        _ => parse_close(payload)?,
    };
    Ok(on(item))
}

/// Parses a close frame's payload: empty, or a valid code and a UTF-8 reason.
fn parse_close(payload: &[u8]) -> Result<Incoming<'_>, CloseError> {
    match payload {
        [] => Ok(Incoming::Close {
            code: None,
            reason: "",
        }),
        [_] => Err(SHORT_CLOSE),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !close_code_is_valid(code) {
                return Err(BAD_CLOSE_CODE);
            }
            let reason = std::str::from_utf8(reason).map_err(|_| INVALID_UTF8)?;
            Ok(Incoming::Close {
                code: Some(code),
                reason,
            })
        }
    }
}

/// Whether a peer may send this close code: 1000-1003, 1007-1014 and 3000-4999.
fn close_code_is_valid(code: u16) -> bool {
    // tungstenite does not know 1014 (Bad Gateway, registered with IANA) and counts it as bad.
    code == 1014 || CloseCode::from(code).is_allowed()
}

/// XORs `data` with `mask`, repeated from its first byte.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let word = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut words = data.chunks_exact_mut(8);
    for chunk in &mut words {
        let bytes: &mut [u8; 8] = chunk
            .try_into()
            .expect("Bug: chunks_exact_mut(8) gives 8 bytes");
        *bytes = (u64::from_ne_bytes(*bytes) ^ word).to_ne_bytes();
    }
    for (byte, m) in words.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *byte ^= m;
    }
}

/// The kind of a frame [`encode`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutKind {
    /// A text message (the caller guarantees UTF-8).
    Text,
    /// A binary message.
    Binary,
    /// A ping (payload truncated to 125 bytes).
    Ping,
    /// A pong (payload truncated to 125 bytes).
    Pong,
}

/// Append one unmasked server frame (FIN set).
///
/// Ping and pong payloads longer than 125 bytes are truncated to 125, the most a control frame
/// may carry.
pub(crate) fn encode(out: &mut Vec<u8>, kind: OutKind, payload: &[u8]) {
    let (opcode, payload) = match kind {
        OutKind::Text => (OpCode::Data(Data::Text), payload),
        OutKind::Binary => (OpCode::Data(Data::Binary), payload),
        OutKind::Ping => (OpCode::Control(Control::Ping), control_payload(payload)),
        OutKind::Pong => (OpCode::Control(Control::Pong), control_payload(payload)),
    };
    write_header(out, opcode, payload.len());
    out.extend_from_slice(payload);
}

/// Append a close frame with code and reason (reason truncated to 123 bytes on a char boundary).
pub(crate) fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    write_header(out, OpCode::Control(Control::Close), 2 + reason.len());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason);
}

fn control_payload(payload: &[u8]) -> &[u8] {
    &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)]
}

/// Appends an unmasked header with FIN set, reserving room for the payload too.
fn write_header(out: &mut Vec<u8>, opcode: OpCode, len: usize) {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    let len64 = len as u64;
    out.reserve(header.len(len64).saturating_add(len));
    header
        .format(len64, out)
        .expect("Bug: writing into a Vec cannot fail");
}

#[cfg(test)]
mod tests;
