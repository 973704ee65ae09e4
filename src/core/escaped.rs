//! [`Escaped`]: a string a peer chose, as it may appear in a log line (PROTOCOL section 11,
//! "Logs").
//!
//! Contract:
//! - Formatting `Escaped(text)` writes at most the first 128 bytes of `text` (cut on a
//!   character boundary, as [`short`] cuts the strings echoed in error messages), followed by
//!   `…` when it was cut. Control characters, and the invisible characters that move or hide
//!   text (line and paragraph separators, bidirectional marks, embeddings, overrides and
//!   isolates, zero-width characters, the byte order mark), are written as `\u{..}` (hex, as
//!   Rust's `char::escape_unicode` writes them) and a backslash as `\\`, so that a peer can
//!   neither start a new log line, nor make one read otherwise than it is written, nor write
//!   an escape that reads as one of ours.
//! - It is a `Display` wrapper: nothing is formatted, and nothing allocated, unless the log
//!   line is written; even then it writes straight to the formatter.
//! - Use it at every log call site that prints a string that came from a peer (agent ids,
//!   session ids, user ids a client chose, message types, ...).

use std::fmt;

use crate::core::outbound::short;

/// A peer's string, escaped and cut for a log line (see the module contract).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kept = short(self.0);
        let mut plain = 0;
        for (at, c) in kept.char_indices() {
            if c.is_control() || moves_text(c) || c == '\\' {
                f.write_str(&kept[plain..at])?;
                if c == '\\' {
                    f.write_str("\\\\")?;
                } else {
                    write!(f, "\\u{{{:x}}}", u32::from(c))?;
                }
                plain = at + c.len_utf8();
            }
        }
        f.write_str(&kept[plain..])?;
        if kept.len() < self.0.len() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

/// A character that is not a control character but changes how the text around it reads:
/// line and paragraph separators, bidirectional marks and controls, zero-width characters and
/// the byte order mark (Unicode format characters of the General Punctuation block and their
/// kin).
fn moves_text(c: char) -> bool {
    matches!(
        c,
        '\u{61c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(text: &str) -> String {
        Escaped(text).to_string()
    }

    #[test]
    fn plain_text_is_written_as_is() {
        assert_eq!(shown(""), "");
        assert_eq!(shown("agent-1 é ü 日本"), "agent-1 é ü 日本");
    }

    #[test]
    fn control_characters_and_backslashes_are_escaped() {
        assert_eq!(
            shown("a\nINFO forged\r\tb"),
            "a\\u{a}INFO forged\\u{d}\\u{9}b"
        );
        assert_eq!(
            shown("\u{0}\u{1b}[31m\u{7f}\u{85}"),
            "\\u{0}\\u{1b}[31m\\u{7f}\\u{85}"
        );
        assert_eq!(shown("\\u{a}"), "\\\\u{a}");
        assert_eq!(
            shown("a\u{2028}b\u{202e}c\u{200b}d\u{2066}e\u{feff}"),
            "a\\u{2028}b\\u{202e}c\\u{200b}d\\u{2066}e\\u{feff}"
        );
        assert!(!shown("x\ny").contains('\n'));
    }

    #[test]
    fn long_text_is_cut_at_128_bytes_on_a_char_boundary() {
        assert_eq!(shown(&"x".repeat(128)), "x".repeat(128));
        assert_eq!(shown(&"x".repeat(129)), format!("{}…", "x".repeat(128)));
        // 'é' is two bytes: 64 of them fill 128 bytes, a 65th is cut.
        assert_eq!(shown(&"é".repeat(65)), format!("{}…", "é".repeat(64)));
        // A three-byte char straddling byte 128 is left out whole.
        let text = format!("{}日", "x".repeat(126));
        assert_eq!(shown(&text), format!("{}…", "x".repeat(126)));
        // Escaping happens after the cut: only the kept bytes are written.
        let text = "\n".repeat(1000);
        assert_eq!(shown(&text), format!("{}…", "\\u{a}".repeat(128)));
    }
}
