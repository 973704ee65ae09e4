//! What a reload does to the configuration (PROTOCOL section 12): the configuration read
//! afresh is compared with the running one key by key; a key whose row is `live` takes its
//! new value, any other keeps its old one and is reported, so that the caller can warn.
//!
//! The TLS files are live (new connections get the pair read at the reload), but whether the
//! listener speaks TLS is not: a reload that would set `tls_cert` where it was empty, or empty
//! it, keeps the three TLS keys as they were and reports them as kept.
//!
//! Contract: [`Config::reload`] returns an error, and the running configuration stays as it
//! is, when the new configuration is invalid or when carrying the old values over makes it
//! invalid (a rule across a live key and one that is not). What it reports are key names,
//! never a value.

use super::keys::KEY_TABLE;
use super::{Config, ConfigError};

/// The outcome of [`Config::reload`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Reload {
    /// The configuration to run with: the live keys from the new configuration, the others
    /// as they were.
    pub config: Config,
    /// Live keys whose value changed, in table order.
    pub changed: Vec<&'static str>,
    /// Keys that cannot change while running whose new value differs: they keep the old
    /// one. In table order.
    pub kept: Vec<&'static str>,
}

impl Config {
    /// The configuration a reload to `new` runs with, and what it changes (see the module
    /// docs).
    pub(crate) fn reload(&self, new: Config) -> Result<Reload, ConfigError> {
        new.validate()?;
        let mut config = new;
        let (mut changed, mut kept) = (Vec::new(), Vec::new());
        for key in KEY_TABLE {
            let old = key.value(self);
            if key.value(&config) == old {
                continue;
            }
            if key.live {
                changed.push(key.name);
            } else {
                key.apply(&mut config, &old)
                    .map_err(|message| ConfigError {
                        file: None,
                        line: None,
                        key: Some(key.name.to_string()),
                        message,
                    })?;
                kept.push(key.name);
            }
        }
        if self.tls_cert.is_some() != config.tls_cert.is_some() {
            // Whether the listener speaks TLS was decided when it was bound.
            for key in ["tls_cert", "tls_key", "tls_client_ca"] {
                let row = KEY_TABLE.iter().find(|row| row.name == key);
                let row = row.expect("Bug: the TLS keys are in the table");
                let old = row.value(self);
                if row.value(&config) != old {
                    row.apply(&mut config, &old)
                        .map_err(|message| ConfigError {
                            file: None,
                            line: None,
                            key: Some(key.to_string()),
                            message,
                        })?;
                    changed.retain(|name| *name != key);
                    kept.push(key);
                }
            }
        }
        config.validate()?;
        Ok(Reload {
            config,
            changed,
            kept,
        })
    }
}
