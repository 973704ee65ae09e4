//! The client side of WebSocket framing: masked client frames out, server frame headers in,
//! and the random mask and handshake keys.

pub(crate) const OP_CONT: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;

/// xorshift64*: mask keys and handshake keys (not for secrets).
pub(crate) fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

pub(crate) fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (t ^ (u64::from(std::process::id()) << 32)) | 1
}

fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let m = u32::from_ne_bytes(mask);
    let mut chunks = data.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let v = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ m;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

/// Append one masked client frame.
pub(crate) fn push_frame(buf: &mut Vec<u8>, opcode: u8, payload: &[u8], rng: &mut u64) {
    buf.push(0x80 | opcode);
    let n = payload.len();
    if n < 126 {
        buf.push(0x80 | n as u8);
    } else if n <= 0xffff {
        buf.push(0x80 | 126);
        buf.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        buf.push(0x80 | 127);
        buf.extend_from_slice(&(n as u64).to_be_bytes());
    }
    let mask = (next_random(rng) as u32).to_ne_bytes();
    buf.extend_from_slice(&mask);
    let start = buf.len();
    buf.extend_from_slice(payload);
    apply_mask(&mut buf[start..], mask);
}

/// A server frame header: (fin, opcode, header length, payload length), or None if incomplete.
pub(crate) fn parse_header(b: &[u8]) -> Result<Option<(bool, u8, usize, usize)>, String> {
    if b.len() < 2 {
        return Ok(None);
    }
    if b[0] & 0x70 != 0 {
        return Err("server frame with reserved bits set".into());
    }
    if b[1] & 0x80 != 0 {
        return Err("masked server frame".into());
    }
    let fin = b[0] & 0x80 != 0;
    let op = b[0] & 0x0f;
    let (len, header) = match b[1] & 0x7f {
        126 => {
            if b.len() < 4 {
                return Ok(None);
            }
            (usize::from(u16::from_be_bytes([b[2], b[3]])), 4)
        }
        127 => {
            if b.len() < 10 {
                return Ok(None);
            }
            let mut n = [0u8; 8];
            n.copy_from_slice(&b[2..10]);
            let n = u64::from_be_bytes(n);
            (usize::try_from(n).map_err(|_| "frame too large")?, 10)
        }
        n => (usize::from(n), 2),
    };
    Ok(Some((fin, op, header, len)))
}

pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_of_16_bytes() {
        assert_eq!(base64(b"0123456789abcdef"), "MDEyMzQ1Njc4OWFiY2RlZg==");
    }
}
