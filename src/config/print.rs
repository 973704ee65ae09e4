//! Writing a [`Config`] in the file format, for `--print-config` and `Debug`.
//!
//! Contract: every key is printed once, in table order, under a `# group` heading, with the
//! value its row prints ([`Key::printed`](super::keys::Key::printed)); a key with an empty value is printed `key =`.
//! Secrets are masked by their rows, never here.

use super::keys::KEY_TABLE;
use super::Config;

impl Config {
    /// The effective configuration in the file format: every key, one per line, grouped as in
    /// the shipped `gateway.conf`, with every secret shown as `***` (token users are shown).
    ///
    /// Parsing the result with the secrets put back yields the same `Config`, for any
    /// configuration that passes [`Config::validate`].
    pub fn to_file_string(&self) -> String {
        let mut out = String::from("# gateway effective configuration (secrets shown as ***)\n");
        let mut group = "";
        for key in KEY_TABLE {
            if key.group != group {
                group = key.group;
                out.push_str("\n# ");
                out.push_str(group);
                out.push('\n');
            }
            let value = key.printed(self);
            out.push_str(key.name);
            out.push_str(" =");
            if !value.is_empty() {
                out.push(' ');
                out.push_str(&value);
            }
            out.push('\n');
        }
        out
    }
}
