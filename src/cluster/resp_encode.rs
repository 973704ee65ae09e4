//! Commands to Redis, encoded as RESP2 arrays of bulk strings.
//!
//! Contract: [`encode`] appends one command to the caller's buffer, reserving its exact size
//! once and allocating nothing else; the arguments are binary-safe (any byte, CR LF
//! included). [`Int`] formats an integer argument on the stack. [`Pipeline`] appends several
//! commands to one buffer and counts them: Redis answers a connection's commands in the order
//! it received them, one reply each.

/// Appends the command `args` (its name first) as `*N\r\n` followed by `$len\r\narg\r\n` for
/// each argument: `encode(&mut out, &[b"SET", key, value])`.
pub(crate) fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    let size = header_size(args.len())
        + args
            .iter()
            .map(|arg| header_size(arg.len()) + arg.len() + 2)
            .sum::<usize>();
    out.reserve(size);
    header(out, b'*', args.len());
    for arg in args {
        header(out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// `*N\r\n` or `$N\r\n`.
fn header(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    // usize has at most 64 bits: it fits in a u64, and the u64 in 20 digits.
    out.extend_from_slice(Digits::unsigned(n as u64).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The size of `*N\r\n`.
fn header_size(n: usize) -> usize {
    1 + Digits::unsigned(n as u64).len + 2
}

/// An integer argument, formatted in decimal on the stack: `&Int::new(5)` is `b"5"`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Int(Digits);

impl Int {
    /// `n` in decimal, with a `-` when negative.
    pub(crate) fn new(n: i64) -> Int {
        let mut digits = Digits::unsigned(n.unsigned_abs());
        if n < 0 {
            digits.start -= 1;
            digits.bytes[digits.start] = b'-';
            digits.len += 1;
        }
        Int(digits)
    }
}

impl std::ops::Deref for Int {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Up to 21 bytes of a decimal number, right-aligned.
#[derive(Clone, Copy, Debug)]
struct Digits {
    bytes: [u8; 21],
    start: usize,
    len: usize,
}

impl Digits {
    fn unsigned(mut n: u64) -> Digits {
        let mut bytes = [0u8; 21];
        let mut start = bytes.len();
        loop {
            start -= 1;
            // The remainder is below 10: the cast is lossless.
            bytes[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Digits {
            bytes,
            start,
            len: 21 - start,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

/// Several commands in one buffer, sent at once and answered in order.
#[derive(Debug, Default)]
pub(crate) struct Pipeline {
    bytes: Vec<u8>,
    commands: usize,
}

impl Pipeline {
    /// An empty pipeline.
    pub(crate) fn new() -> Pipeline {
        Pipeline::default()
    }

    /// Appends one command (see [`encode`]).
    pub(crate) fn command(&mut self, args: &[&[u8]]) -> &mut Pipeline {
        encode(&mut self.bytes, args);
        self.commands += 1;
        self
    }

    /// How many commands it holds, which is how many replies they will get.
    pub(crate) fn len(&self) -> usize {
        self.commands
    }

    /// True when it holds no command.
    pub(crate) fn is_empty(&self) -> bool {
        self.commands == 0
    }

    /// The encoded commands.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The encoded commands and their count; the pipeline is empty again (its buffer goes with
    /// the bytes).
    pub(crate) fn take(&mut self) -> (Vec<u8>, usize) {
        let commands = std::mem::take(&mut self.commands);
        (std::mem::take(&mut self.bytes), commands)
    }
}

#[cfg(test)]
mod tests;
