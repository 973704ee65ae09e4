//! Locating a member of a JSON object as a byte span, without parsing its value.
//!
//! Contract: [`member`] is meant for text that `serde_json` accepts as an object with no
//! duplicate member names at the top level (a server's reply); for such text it returns the exact bytes
//! of the named member's value. On any other input it returns `None` or some span, never
//! panics, and never recurses (nesting depth costs no stack).

use std::borrow::Cow;

/// The value of the top-level member `name` of the object `text`.
pub(crate) fn member<'a>(text: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let mut i = skip_ws(text, 0);
    if text.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(text, i + 1);
    if text.get(i) == Some(&b'}') {
        return None;
    }
    loop {
        let key_start = i;
        let key_end = skip_string(text, i)?;
        let key = text.get(key_start..key_end)?;
        i = skip_ws(text, key_end);
        if text.get(i) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(text, i + 1);
        let value_end = skip_value(text, value_start)?;
        if key_matches(key, name) {
            return text.get(value_start..value_end);
        }
        i = skip_ws(text, value_end);
        match text.get(i) {
            Some(b',') => i = skip_ws(text, i + 1),
            _ => return None,
        }
    }
}

/// Whether the quoted JSON string `quoted` decodes to `name`.
fn key_matches(quoted: &[u8], name: &str) -> bool {
    let inner = &quoted[1..quoted.len() - 1];
    if !inner.contains(&b'\\') {
        return inner == name.as_bytes();
    }
    serde_json::from_slice::<Cow<'_, str>>(quoted).is_ok_and(|key| key == name)
}

fn skip_ws(text: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = text.get(i) {
        i += 1;
    }
    i
}

/// `i` is at a `"`; returns the index just past the closing quote.
fn skip_string(text: &[u8], i: usize) -> Option<usize> {
    if text.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        match text.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}

/// `i` is at the first byte of a value; returns the index just past it.
fn skip_value(text: &[u8], i: usize) -> Option<usize> {
    match text.get(i)? {
        b'"' => skip_string(text, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match text.get(j)? {
                    b'"' => {
                        j = skip_string(text, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while let Some(&b) = text.get(j) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn finds_members_of_every_shape() {
        let text = br#" { "a" : 1 , "b":"x\"}" ,"c":{"d":[1,{"e":"]"}]},"p\u0061yload" : [ ] , "z":null } "#;
        assert_eq!(member(text, "a"), Some(&b"1"[..]));
        assert_eq!(member(text, "b"), Some(&br#""x\"}""#[..]));
        assert_eq!(member(text, "c"), Some(&br#"{"d":[1,{"e":"]"}]}"#[..]));
        assert_eq!(member(text, "payload"), Some(&b"[ ]"[..]));
        assert_eq!(member(text, "z"), Some(&b"null"[..]));
        assert_eq!(member(text, "d"), None);
        assert_eq!(member(b"{}", "a"), None);
    }

    #[test]
    fn never_panics_on_broken_text() {
        for text in [
            &b""[..],
            b"{",
            b"{\"",
            b"{\"a\"",
            b"{\"a\":",
            b"{\"a\":\"",
            b"{\"a\":\"\\",
            b"{\"a\":[",
            b"{\"a\":]",
            b"{\"a\":}",
            b"{\"a\":1,",
            b"{\"a\" 1}",
            b"{1:2}",
        ] {
            let _ = member(text, "a");
            let _ = member(text, "b");
        }
    }

    #[test]
    fn agrees_with_serde_on_generated_objects() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        fn value(depth: u32, next: &mut dyn FnMut() -> u64) -> Value {
            match next() % if depth > 3 { 4 } else { 6 } {
                0 => Value::Null,
                1 => Value::from(next() % 1000),
                2 => Value::from(["a\"}", "\\", "]x[", "é", "\u{1}"][(next() % 5) as usize]),
                3 => Value::Bool(next() % 2 == 0),
                4 => Value::Array((0..next() % 4).map(|_| value(depth + 1, next)).collect()),
                _ => {
                    let mut map = serde_json::Map::new();
                    for k in 0..next() % 4 {
                        map.insert(format!("k{k}\"{{"), value(depth + 1, next));
                    }
                    Value::Object(map)
                }
            }
        }
        for _ in 0..2000 {
            let mut map = serde_json::Map::new();
            for k in 0..next() % 5 {
                map.insert(format!("m{k}"), value(0, &mut next));
            }
            let text = if next() % 2 == 0 {
                serde_json::to_string(&map).unwrap()
            } else {
                serde_json::to_string_pretty(&map).unwrap()
            };
            for (key, expected) in &map {
                let span = member(text.as_bytes(), key).expect("member found");
                let got: Value = serde_json::from_slice(span).unwrap();
                assert_eq!(&got, expected);
            }
            assert_eq!(member(text.as_bytes(), "absent"), None);
        }
    }
}
