//! Reading the top-level fields of a server's JSON replies without a full parse (the member
//! scanner, [`scan`]); writing numbers.

mod scan;

/// The raw text of the top-level field `key` of the JSON object `obj` (strings keep their
/// quotes; nested objects are returned whole), found by the scanner.
pub fn json_field<'a>(obj: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let key = std::str::from_utf8(key).ok()?;
    scan::member(obj, key)
}

/// The contents (still escaped) of the top-level string field `key`.
pub fn json_str<'a>(obj: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let v = json_field(obj, key)?;
    (v.len() >= 2 && v[0] == b'"').then(|| &v[1..v.len() - 1])
}

/// The top-level field `key` as an unsigned integer.
pub fn json_u64(obj: &[u8], key: &[u8]) -> Option<u64> {
    let v = json_field(obj, key)?;
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Append `n` in decimal.
pub fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_reads_top_level_fields() {
        let m = br#"{"type":"pong","id":"g-1","payload":{"clientId":"c","type":"x"},"timestamp":17,"replyTo":"p1"}"#;
        assert_eq!(json_str(m, b"type"), Some(&b"pong"[..]));
        assert_eq!(json_str(m, b"replyTo"), Some(&b"p1"[..]));
        assert_eq!(json_u64(m, b"timestamp"), Some(17));
        let p = json_field(m, b"payload").unwrap();
        assert_eq!(json_str(p, b"clientId"), Some(&b"c"[..]));
        let spaced = br#"{ "type" : "a\"b", "n": [1, {"x": "}"}], "k": 5 }"#;
        assert_eq!(json_u64(spaced, b"k"), Some(5));
        assert_eq!(json_str(spaced, b"type"), Some(&br#"a\"b"#[..]));
    }
}
