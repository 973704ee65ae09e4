//! Server-side WebSocket framing (RFC 6455) over the caller's buffers, without I/O.
//!
//! Contract:
//! - [`Decoder::decode`] takes whatever bytes arrived from one client, in order, and calls back
//!   once per complete message or control frame. Payloads are unmasked in place in the input;
//!   a complete unfragmented frame lying wholly in the input is handed out as a slice of it.
//! - Between calls a decoder holds at most an incomplete header (inline), the bytes of an
//!   unfinished data message and of an unfinished control frame (one `Vec`, freed as soon as
//!   the message is delivered). An idle decoder owns no heap memory.
//! - Every protocol violation is a [`CloseError`] carrying the close code to send: 1002 for
//!   framing errors, 1007 for invalid UTF-8 (detected as soon as it is certain), 1009 for a
//!   frame or message over [`CodecLimits::max_payload`] (checked on the header, before any
//!   allocation). Nothing a peer sends makes this module panic.
//! - [`encode`] and [`encode_close`] append unmasked, unfragmented server frames.

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
pub struct CodecLimits {
    /// The largest frame payload and the largest whole message, in bytes; more is close 1009.
    pub max_payload: usize,
}

/// A reason to close the connection: the code and reason of the close frame to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseError {
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
const INVALID_UTF8: CloseError = CloseError {
    code: 1007,
    reason: "Invalid UTF-8",
};
const TOO_BIG: CloseError = CloseError {
    code: 1009,
    reason: "Message too big",
};

/// One complete item decoded from a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
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
pub struct Decoder {
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
    /// Decode all of `input` (may be unmasked in place), calling `on` for each complete item in order.
    ///
    /// `on` returns true to continue, false to stop (the caller is closing; the rest of input
    /// is dropped). Bytes of an incomplete frame are retained so the next call continues where
    /// this one stopped. After an error the decoder must not be used again.
    pub fn decode(
        &mut self,
        input: &mut [u8],
        limits: &CodecLimits,
        on: &mut dyn FnMut(Incoming<'_>) -> bool,
    ) -> Result<(), CloseError> {
        let mut rest = input;
        loop {
            if self.frame == Frame::Header && !self.read_header(&mut rest, limits)? {
                return Ok(());
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
                Frame::Data => self.data(chunk, complete, limits, on)?,
                _ => self.control(frame, chunk, complete, on)?,
            };
            if !go_on || !complete {
                return Ok(());
            }
        }
    }

    /// True when no partial frame or message is held (no heap in use).
    pub fn is_idle(&self) -> bool {
        self.frame == Frame::Header && self.head_len == 0 && self.message == Message::None
    }

    /// Heap bytes currently held.
    pub fn heap_bytes(&self) -> usize {
        self.buf.capacity()
    }

    /// Reads the next header from the held bytes and `rest`, advancing `rest` past it.
    /// Returns false when the header is still incomplete (all of `rest` is then held).
    fn read_header(
        &mut self,
        rest: &mut &mut [u8],
        limits: &CodecLimits,
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
        self.start_frame(&header, len, limits)?;
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
            let room = if self.fin {
                self.frame_room(chunk)
            } else {
                limits.max_payload.saturating_sub(self.buf.len())
            };
            self.append(chunk, room);
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
        Ok(Some((header, len))) => Ok(Some((header, len, cursor.position() as usize))),
        Ok(None) => Ok(None),
        Err(_) => Err(RESERVED_OPCODE),
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
pub enum OutKind {
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
pub fn encode(out: &mut Vec<u8>, kind: OutKind, payload: &[u8]) {
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
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str) {
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
mod tests {
    use super::*;

    const LIMITS: CodecLimits = CodecLimits {
        max_payload: 1 << 20,
    };
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// An owned copy of an [`Incoming`].
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Item {
        Message(Vec<u8>, bool),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<u16>, String),
    }

    impl From<Incoming<'_>> for Item {
        fn from(item: Incoming<'_>) -> Self {
            match item {
                Incoming::Message { data, binary } => Item::Message(data.to_vec(), binary),
                Incoming::Ping(data) => Item::Ping(data.to_vec()),
                Incoming::Pong(data) => Item::Pong(data.to_vec()),
                Incoming::Close { code, reason } => Item::Close(code, reason.to_owned()),
            }
        }
    }

    fn text(s: &str) -> Item {
        Item::Message(s.as_bytes().to_vec(), false)
    }

    /// A client frame with the given first byte (FIN, RSV bits, opcode), masked when `mask` is set.
    fn frame_raw(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![first];
        let bit = if mask.is_some() { 0x80 } else { 0 };
        let len = payload.len();
        if len < 126 {
            out.push(bit | len as u8);
        } else if len < 65536 {
            out.push(bit | 126);
            out.extend((len as u16).to_be_bytes());
        } else {
            out.push(bit | 127);
            out.extend((len as u64).to_be_bytes());
        }
        match mask {
            Some(m) => {
                out.extend(m);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
            }
            None => out.extend(payload),
        }
        out
    }

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        frame_raw(if fin { 0x80 } else { 0 } | opcode, payload, Some(MASK))
    }

    fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend(reason);
        frame(true, 0x8, &payload)
    }

    /// Feeds `input` to `decoder` in pieces cut at the (ascending) offsets `cuts`.
    fn feed(
        decoder: &mut Decoder,
        input: &[u8],
        cuts: &[usize],
        limits: CodecLimits,
    ) -> Result<Vec<Item>, CloseError> {
        let mut items = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            let mut piece = input[start..cut].to_vec();
            decoder.decode(&mut piece, &limits, &mut |item| {
                items.push(Item::from(item));
                true
            })?;
            start = cut;
        }
        Ok(items)
    }

    fn decode_all(input: &[u8]) -> Result<Vec<Item>, CloseError> {
        feed(&mut Decoder::default(), input, &[], LIMITS)
    }

    fn error_code(input: &[u8]) -> u16 {
        decode_all(input).expect_err("an error").code
    }

    #[test]
    fn decoder_is_small() {
        let size = std::mem::size_of::<Decoder>();
        println!("size_of::<Decoder>() = {size}");
        assert!(size <= 64, "Decoder is {size} bytes");
        assert_eq!(Decoder::default().heap_bytes(), 0);
    }

    #[test]
    fn decodes_each_kind() {
        let mut input = frame(true, 0x1, b"hello");
        input.extend(frame(true, 0x2, &[0, 255, 7]));
        input.extend(frame(true, 0x9, b"ping"));
        input.extend(frame(true, 0xA, b""));
        input.extend(frame(true, 0x8, b""));
        input.extend(close_frame(1000, "bye €".as_bytes()));
        assert_eq!(
            decode_all(&input),
            Ok(vec![
                text("hello"),
                Item::Message(vec![0, 255, 7], true),
                Item::Ping(b"ping".to_vec()),
                Item::Pong(vec![]),
                Item::Close(None, String::new()),
                Item::Close(Some(1000), "bye €".to_owned()),
            ])
        );
    }

    #[test]
    fn protocol_errors_close_with_1002() {
        let mut cases: Vec<(&str, Vec<u8>)> = vec![
            ("rsv1", frame_raw(0x80 | 0x40 | 0x1, b"a", Some(MASK))),
            ("rsv2", frame_raw(0x80 | 0x20 | 0x1, b"a", Some(MASK))),
            ("rsv3", frame_raw(0x80 | 0x10 | 0x2, b"a", Some(MASK))),
            ("rsv on ping", frame_raw(0x80 | 0x40 | 0x9, b"", Some(MASK))),
            ("unmasked", frame_raw(0x81, b"hi", None)),
            ("unmasked ping", frame_raw(0x89, b"", None)),
            ("fragmented ping", frame(false, 0x9, b"")),
            ("fragmented close", frame(false, 0x8, b"")),
            ("long ping", frame(true, 0x9, &[0; 126])),
            ("long pong", frame(true, 0xA, &[0; 65536])),
            ("long close", close_frame(1000, &[b'a'; 124])),
            ("stray continuation", frame(true, 0x0, b"x")),
            ("stray non-final continuation", frame(false, 0x0, b"x")),
            ("close of one byte", frame(true, 0x8, &[3])),
            (
                "nested text",
                [frame(false, 0x1, b"a"), frame(true, 0x1, b"b")].concat(),
            ),
            (
                "nested binary",
                [frame(false, 0x2, b"a"), frame(true, 0x2, b"b")].concat(),
            ),
            (
                "nested mixed",
                [frame(false, 0x1, b"a"), frame(false, 0x2, b"b")].concat(),
            ),
        ];
        for opcode in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            cases.push(("reserved opcode", frame(true, opcode, b"")));
        }
        for code in [
            0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            cases.push(("invalid close code", close_frame(code, b"")));
        }
        for (name, input) in cases {
            assert_eq!(error_code(&input), 1002, "{name}");
        }
    }

    #[test]
    fn valid_close_codes_are_delivered() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            let expected = Item::Close(Some(code), "ok".to_owned());
            assert_eq!(
                decode_all(&close_frame(code, b"ok")),
                Ok(vec![expected]),
                "{code}"
            );
        }
    }

    #[test]
    fn close_code_rule_matches_the_rfc_ranges() {
        for code in 0..=u16::MAX {
            let rfc = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(close_code_is_valid(code), rfc, "{code}");
        }
    }

    #[test]
    fn invalid_utf8_closes_with_1007() {
        assert_eq!(error_code(&frame(true, 0x1, b"ok \xff")), 1007);
        assert_eq!(
            error_code(&frame(true, 0x1, b"\xed\xa0\x80")),
            1007,
            "surrogate"
        );
        assert_eq!(
            error_code(&frame(true, 0x1, b"abc\xe2\x82")),
            1007,
            "truncated at the end"
        );
        let fragmented = [frame(false, 0x1, b"abc"), frame(true, 0x0, b"\xe2\x82")].concat();
        assert_eq!(
            error_code(&fragmented),
            1007,
            "truncated at the end of fragments"
        );
        assert_eq!(
            error_code(&close_frame(1000, b"\xc0\xaf")),
            1007,
            "close reason"
        );
        // A binary message need not be UTF-8.
        assert_eq!(
            decode_all(&frame(true, 0x2, b"\xff")),
            Ok(vec![Item::Message(vec![0xff], true)])
        );
    }

    #[test]
    fn too_big_closes_with_1009() {
        let limits = CodecLimits { max_payload: 100 };
        let run = |input: &[u8]| feed(&mut Decoder::default(), input, &[], limits);
        assert_eq!(
            run(&frame(true, 0x2, &[1; 100])).map(|items| items.len()),
            Ok(1)
        );
        assert_eq!(run(&frame(true, 0x2, &[1; 101])).unwrap_err().code, 1009);
        let exact = [
            frame(false, 0x1, &[b'a'; 60]),
            frame(true, 0x0, &[b'b'; 40]),
        ]
        .concat();
        assert_eq!(run(&exact).map(|items| items.len()), Ok(1));
        let over = [
            frame(false, 0x1, &[b'a'; 60]),
            frame(false, 0x0, &[b'b'; 40]),
            frame(true, 0x0, b"c"),
        ]
        .concat();
        assert_eq!(run(&over).unwrap_err().code, 1009);
    }

    #[test]
    fn huge_length_is_refused_before_any_allocation() {
        for len in [1u64 << 63, u64::MAX, (1 << 20) + 1] {
            let mut input = vec![0x82, 0x80 | 127];
            input.extend(len.to_be_bytes());
            input.extend(MASK);
            let mut decoder = Decoder::default();
            let result = decoder.decode(&mut input, &LIMITS, &mut |_| true);
            assert_eq!(result.unwrap_err().code, 1009, "{len}");
            assert_eq!(decoder.heap_bytes(), 0);
        }
    }

    #[test]
    fn fragmented_text_with_control_frames_between() {
        let input = [
            frame(false, 0x1, b"Hel"),
            frame(true, 0x9, b"p1"),
            frame(false, 0x0, b"lo "),
            frame(true, 0xA, b"p2"),
            frame(false, 0x0, b""),
            frame(true, 0x9, b""),
            frame(true, 0x0, b"world"),
            frame(true, 0x1, b"next"),
        ]
        .concat();
        let expected = vec![
            Item::Ping(b"p1".to_vec()),
            Item::Pong(b"p2".to_vec()),
            Item::Ping(vec![]),
            text("Hello world"),
            text("next"),
        ];
        assert_eq!(decode_all(&input), Ok(expected));
    }

    #[test]
    fn close_between_fragments_is_delivered_at_once() {
        let input = [frame(false, 0x2, b"ab"), close_frame(1001, b"")].concat();
        assert_eq!(
            decode_all(&input),
            Ok(vec![Item::Close(Some(1001), String::new())])
        );
    }

    /// A stream with every length format, zero-copy and buffered paths, fragments with control
    /// frames between them and UTF-8 split across fragments.
    fn sample_stream() -> (Vec<u8>, Vec<Item>) {
        let big: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        let input = [
            frame(true, 0x1, b"hello"),
            frame(false, 0x1, &"a\u{20ac}".as_bytes()[..2]),
            frame(true, 0x9, b"ping!"),
            frame(false, 0x0, &"a\u{20ac}".as_bytes()[2..]),
            frame(true, 0x0, "b\u{1f600}".as_bytes()),
            frame(true, 0x2, &big),
            frame(false, 0x2, &big[..130]),
            frame(true, 0xA, &[9; 125]),
            frame(true, 0x0, &big[130..]),
            frame(true, 0x1, b""),
            close_frame(1000, b"bye"),
        ]
        .concat();
        let expected = vec![
            text("hello"),
            Item::Ping(b"ping!".to_vec()),
            text("a\u{20ac}b\u{1f600}"),
            Item::Message(big.clone(), true),
            Item::Pong(vec![9; 125]),
            Item::Message(big, true),
            text(""),
            Item::Close(Some(1000), "bye".to_owned()),
        ];
        (input, expected)
    }

    #[test]
    fn any_split_gives_the_same_items() {
        let (input, expected) = sample_stream();
        assert_eq!(decode_all(&input).as_ref(), Ok(&expected));
        for cut in 0..=input.len() {
            let mut decoder = Decoder::default();
            assert_eq!(
                feed(&mut decoder, &input, &[cut], LIMITS).as_ref(),
                Ok(&expected),
                "cut at {cut}"
            );
            assert!(decoder.is_idle());
            assert_eq!(decoder.heap_bytes(), 0);
        }
        for first in (0..input.len()).step_by(7) {
            for second in first..=input.len() {
                let items = feed(&mut Decoder::default(), &input, &[first, second], LIMITS);
                assert_eq!(
                    items.as_ref(),
                    Ok(&expected),
                    "cuts at {first} and {second}"
                );
            }
        }
    }

    #[test]
    fn byte_by_byte_gives_the_same_items() {
        let (mut input, mut expected) = sample_stream();
        let large: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        input.extend(frame(true, 0x2, &large));
        expected.push(Item::Message(large, true));
        let cuts: Vec<usize> = (1..input.len()).collect();
        let mut decoder = Decoder::default();
        assert_eq!(feed(&mut decoder, &input, &cuts, LIMITS), Ok(expected));
        assert!(decoder.is_idle());
        assert_eq!(decoder.heap_bytes(), 0);
    }

    #[test]
    fn whole_frames_are_handed_out_without_copy() {
        let mut input = [
            frame(true, 0x1, b"zero copy"),
            frame(true, 0x9, b"p"),
            frame(true, 0x2, &[5; 1000]),
        ]
        .concat();
        let range = input.as_ptr_range();
        let mut decoder = Decoder::default();
        let mut seen = 0;
        let result = decoder.decode(&mut input, &LIMITS, &mut |item| {
            let data = match item {
                Incoming::Message { data, .. } | Incoming::Ping(data) => data,
                other => panic!("unexpected {other:?}"),
            };
            assert!(range.contains(&data.as_ptr()), "not a slice of the input");
            seen += 1;
            true
        });
        assert_eq!(result, Ok(()));
        assert_eq!(seen, 3);
        assert_eq!(decoder.heap_bytes(), 0);
        // Unmasked in place.
        assert_eq!(&input[6..15], b"zero copy");
    }

    #[test]
    fn a_header_split_across_reads_still_gives_a_slice_of_the_input() {
        let input = frame(true, 0x1, &[b'x'; 200]);
        let mut decoder = Decoder::default();
        let mut head = input[..3].to_vec();
        decoder
            .decode(&mut head, &LIMITS, &mut |_| panic!("nothing yet"))
            .unwrap();
        assert!(!decoder.is_idle());
        assert_eq!(decoder.heap_bytes(), 0);
        let mut rest = input[3..].to_vec();
        let range = rest.as_ptr_range();
        let mut seen = 0;
        decoder
            .decode(&mut rest, &LIMITS, &mut |item| {
                let Incoming::Message {
                    data,
                    binary: false,
                } = item
                else {
                    panic!("{item:?}")
                };
                assert!(range.contains(&data.as_ptr()));
                assert_eq!(data, &[b'x'; 200][..]);
                seen += 1;
                true
            })
            .unwrap();
        assert_eq!(seen, 1);
        assert!(decoder.is_idle());
    }

    #[test]
    fn heap_is_held_only_while_a_message_is_in_flight() {
        let mut decoder = Decoder::default();
        let first = frame(false, 0x1, b"part one, ");
        assert_eq!(feed(&mut decoder, &first, &[], LIMITS), Ok(vec![]));
        assert!(!decoder.is_idle());
        assert!(decoder.heap_bytes() > 0);
        let ping = frame(true, 0x9, b"x");
        assert_eq!(
            feed(&mut decoder, &ping, &[3], LIMITS),
            Ok(vec![Item::Ping(b"x".to_vec())])
        );
        assert!(!decoder.is_idle());
        let last = frame(true, 0x0, b"part two");
        assert_eq!(
            feed(&mut decoder, &last, &[], LIMITS),
            Ok(vec![text("part one, part two")])
        );
        assert!(decoder.is_idle());
        assert_eq!(decoder.heap_bytes(), 0);

        // A control frame split across reads, outside any message.
        let ping = frame(true, 0x9, &[1; 100]);
        assert_eq!(
            feed(&mut decoder, &ping, &[50], LIMITS),
            Ok(vec![Item::Ping(vec![1; 100])])
        );
        assert!(decoder.is_idle());
        assert_eq!(decoder.heap_bytes(), 0);

        // An empty first fragment, a control frame split across reads, then a last fragment
        // handed out from the input.
        let input = [
            frame(false, 0x2, b""),
            frame(true, 0x9, b"split ping"),
            frame(true, 0x0, b"end"),
        ]
        .concat();
        let items = feed(&mut decoder, &input, &[15], LIMITS);
        assert_eq!(
            items,
            Ok(vec![
                Item::Ping(b"split ping".to_vec()),
                Item::Message(b"end".to_vec(), true)
            ])
        );
        assert!(decoder.is_idle());
        assert_eq!(decoder.heap_bytes(), 0);

        // A single frame split across reads: the buffer never outgrows the frame.
        let long = frame(true, 0x2, &[2; 50_000]);
        let cuts: Vec<usize> = (1..long.len() / 1000).map(|i| i * 1000).collect();
        assert_eq!(
            feed(&mut decoder, &long[..long.len() - 1], &cuts, LIMITS),
            Ok(vec![])
        );
        assert!(decoder.heap_bytes() <= 50_000);
        let mut last = [long[long.len() - 1]];
        let mut items = Vec::new();
        decoder
            .decode(&mut last, &LIMITS, &mut |item| {
                items.push(Item::from(item));
                true
            })
            .unwrap();
        assert_eq!(items, vec![Item::Message(vec![2; 50_000], true)]);
        assert!(decoder.is_idle());
        assert_eq!(decoder.heap_bytes(), 0);
    }

    #[test]
    fn utf8_split_inside_a_sequence_across_fragments_is_valid() {
        let euro = "\u{20ac}".as_bytes();
        let input = [
            frame(false, 0x1, &[b"a", &euro[..1]].concat()),
            frame(false, 0x0, &euro[1..2]),
            frame(false, 0x0, b""),
            frame(true, 0x0, &[&euro[2..], b"b"].concat()),
        ]
        .concat();
        assert_eq!(decode_all(&input), Ok(vec![text("a\u{20ac}b")]));
    }

    #[test]
    fn invalid_utf8_is_caught_on_the_fragment_that_makes_it_certain() {
        let mut decoder = Decoder::default();
        // "κόσμε" then 0xF4, the start of a four-byte sequence: not yet invalid.
        let first = frame(false, 0x1, &["κόσμε".as_bytes(), &[0xf4]].concat());
        assert_eq!(feed(&mut decoder, &first, &[], LIMITS), Ok(vec![]));
        // 0x90 after 0xF4 would encode a code point above U+10FFFF.
        let second = frame(false, 0x0, &[0x90, 0x80, 0x80]);
        assert_eq!(
            feed(&mut decoder, &second, &[], LIMITS).unwrap_err().code,
            1007
        );

        // Inside one frame: the error comes with the read holding the bad byte, before the
        // frame is complete.
        let payload = [b"valid text ".as_slice(), &[0xff], &[b'z'; 100]].concat();
        let input = frame(true, 0x1, &payload);
        let mut decoder = Decoder::default();
        let mut head = input[..10].to_vec();
        assert_eq!(decoder.decode(&mut head, &LIMITS, &mut |_| true), Ok(()));
        let mut bad = input[10..20].to_vec();
        assert_eq!(
            decoder
                .decode(&mut bad, &LIMITS, &mut |_| true)
                .unwrap_err()
                .code,
            1007
        );
    }

    #[test]
    fn returning_false_stops_decoding() {
        let mut input = [frame(true, 0x1, b"one"), frame(true, 0x1, b"two")].concat();
        let mut items = Vec::new();
        let result = Decoder::default().decode(&mut input, &LIMITS, &mut |item| {
            items.push(Item::from(item));
            false
        });
        assert_eq!(result, Ok(()));
        assert_eq!(items, vec![text("one")]);
    }

    #[test]
    fn unmask_matches_the_bytewise_rule() {
        let data: Vec<u8> = (0..100u8).collect();
        for len in 0..data.len() {
            for phase in 0..4 {
                let mut mask = MASK;
                mask.rotate_left(phase);
                let mut got = data[..len].to_vec();
                unmask(&mut got, mask);
                let expected: Vec<u8> = data[..len]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ MASK[(i + phase) % 4])
                    .collect();
                assert_eq!(got, expected);
            }
        }
    }

    /// Turns an unmasked server frame into the masked client frame with the same content.
    fn as_client_frame(server: &[u8]) -> Vec<u8> {
        let mut cursor = Cursor::new(server);
        let (mut header, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        assert!(header.mask.is_none(), "server frames are not masked");
        assert!(header.is_final);
        let payload = &server[cursor.position() as usize..];
        assert_eq!(payload.len() as u64, len);
        header.mask = Some(MASK);
        let mut out = Vec::new();
        header.format(len, &mut out).unwrap();
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        out
    }

    #[test]
    fn encoded_frames_round_trip() {
        for len in [0, 1, 125, 126, 65535, 65536, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let header_len = match len {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            };
            for (kind, binary) in [(OutKind::Text, false), (OutKind::Binary, true)] {
                let mut out = vec![0xEE];
                encode(&mut out, kind, &payload);
                assert_eq!(out.len(), 1 + header_len + len, "{len}");
                let items = decode_all(&as_client_frame(&out[1..]));
                assert_eq!(items, Ok(vec![Item::Message(payload.clone(), binary)]));
            }
        }
        let mut out = Vec::new();
        encode(&mut out, OutKind::Ping, b"abc");
        assert_eq!(out, b"\x89\x03abc");
        let mut out = Vec::new();
        encode(&mut out, OutKind::Pong, &[7; 200]);
        assert_eq!(
            decode_all(&as_client_frame(&out)),
            Ok(vec![Item::Pong(vec![7; 125])])
        );
    }

    #[test]
    fn encoded_close_round_trips_and_truncates_on_a_char_boundary() {
        let mut out = Vec::new();
        encode_close(&mut out, 1001, "Server shutting down");
        assert_eq!(&out[..4], b"\x88\x16\x03\xe9");
        let items = decode_all(&as_client_frame(&out));
        assert_eq!(
            items,
            Ok(vec![Item::Close(
                Some(1001),
                "Server shutting down".to_owned()
            )])
        );

        let long = "é".repeat(100);
        let mut out = Vec::new();
        encode_close(&mut out, 1008, &long);
        assert_eq!(out.len(), 2 + 2 + 122);
        let items = decode_all(&as_client_frame(&out));
        assert_eq!(items, Ok(vec![Item::Close(Some(1008), "é".repeat(61))]));

        let exact = "x".repeat(123);
        let mut out = Vec::new();
        encode_close(&mut out, 1000, &(exact.clone() + "yz"));
        assert_eq!(
            decode_all(&as_client_frame(&out)),
            Ok(vec![Item::Close(Some(1000), exact)])
        );
    }

    /// xorshift64*: a small deterministic generator for the fuzz-style test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A frame that is valid or nearly so: random flags, opcode, mask, length format and content.
    fn random_frame(rng: &mut Rng) -> Vec<u8> {
        let opcode = [0u8, 1, 2, 8, 9, 10, 3, 0xB][rng.below(8) as usize];
        let mut first = opcode | if rng.below(4) == 0 { 0 } else { 0x80 };
        if rng.below(16) == 0 {
            first |= 0x10 << rng.below(3);
        }
        let len = match rng.below(40) {
            0 => rng.below(70_000) as usize,
            1..=4 => 126 + rng.below(300) as usize,
            _ => rng.below(20) as usize,
        };
        // Random bytes at the start, one repeated byte after them (cheap for long payloads).
        let mut payload = vec![rng.next() as u8; len];
        for byte in payload.iter_mut().take(400) {
            *byte = rng.next() as u8;
        }
        if rng.below(2) == 0 {
            for byte in payload.iter_mut() {
                *byte &= 0x7f;
            }
        }
        if opcode == 8 && payload.len() >= 2 && rng.below(2) == 0 {
            payload[..2].copy_from_slice(&1000u16.to_be_bytes());
        }
        let mask = (rng.below(20) != 0).then(|| (rng.next() as u32).to_ne_bytes());
        let mut out = frame_raw(first, &payload, mask);
        if rng.below(30) == 0 {
            // A forged length: anything from a short count to 2^64 - 1.
            out[1] = (out[1] & 0x80) | 127;
            out.splice(2..2, rng.next().to_be_bytes());
        }
        out
    }

    #[test]
    fn byte_soup_never_panics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..6000 {
            let input: Vec<u8> = if round % 3 == 0 {
                (0..rng.below(200)).map(|_| rng.next() as u8).collect()
            } else {
                (0..1 + rng.below(6))
                    .flat_map(|_| random_frame(&mut rng))
                    .collect()
            };
            let mut cuts: Vec<usize> = (0..rng.below(6))
                .map(|_| rng.below(input.len() as u64 + 1) as usize)
                .collect();
            cuts.sort_unstable();
            let limits = CodecLimits {
                max_payload: [10, 1000, 1 << 20][rng.below(3) as usize],
            };
            let stop_after = rng.below(10);
            let mut decoder = Decoder::default();
            let mut start = 0;
            let mut delivered = 0;
            for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
                let mut piece = input[start..cut].to_vec();
                start = cut;
                let result = decoder.decode(&mut piece, &limits, &mut |item| {
                    if let Incoming::Message {
                        data,
                        binary: false,
                    } = item
                    {
                        assert!(std::str::from_utf8(data).is_ok());
                    }
                    delivered += 1;
                    delivered < stop_after
                });
                if result.is_err() || delivered >= stop_after {
                    break;
                }
                if decoder.is_idle() {
                    assert_eq!(decoder.heap_bytes(), 0);
                }
                assert!(decoder.heap_bytes() <= limits.max_payload + MAX_CONTROL_PAYLOAD);
            }
        }
    }
}
