//! The command line (PROTOCOL section 9):
//! `gateway [--config PATH] [--set KEY=VALUE]... [--check] [--print-config] [--version] [--help]`.
//!
//! Contract of [`parse_args`]:
//! - `--config PATH` and `--config=PATH` name the configuration file, which must be readable.
//!   Without it, `./gateway.conf` (relative to the current directory) is read when it exists,
//!   else the defaults apply. `--config` may be given once.
//! - `--set KEY=VALUE` and `--set=KEY=VALUE` override one key after the file; they are applied
//!   in order, so the last one for a key wins, and one for a list key replaces the whole list.
//!   The value is taken as is (trimmed): no comment stripping.
//! - The configuration is then checked with [`Config::validate`]; every action that carries a
//!   `Config` carries a valid one. `Run` also carries its [`Source`], so that a reload
//!   (SIGHUP) reads the configuration the same way again.
//! - `--help` (`-h`) wins over everything, then `--version` (`-V`); neither reads the
//!   configuration, and other arguments are then not looked at.
//! - `--print-config` with `--check` is `PrintConfig`: printing implies the check passed.
//! - Any other argument is a usage error. A bad argument that contains `=` is echoed only up
//!   to its `=`, so a misplaced `KEY=SECRET` never reaches the terminal.
//!
//! The caller exits with status 2 on any [`CliError`].

use std::fmt;
use std::path::{Path, PathBuf};

use gateway::{Config, ConfigError};

/// The file read when `--config` is not given, relative to the current directory.
pub const DEFAULT_CONFIG_PATH: &str = "gateway.conf";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum CliAction {
    /// Run the gateway with this (valid) configuration, read from this source.
    Run(Config, Source),
    /// `--check`: the configuration is valid; exit 0.
    Check(Config),
    /// `--print-config`: print [`Config::to_file_string`] of this (valid) configuration; exit 0.
    PrintConfig(Config),
    /// `--version`: print [`version`]; exit 0.
    Version,
    /// `--help`: print [`usage`]; exit 0.
    Help,
}

/// Where the configuration comes from: the file and the `--set` overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    /// The file read: `--config`, or `./gateway.conf` when it existed; `None` when the
    /// defaults applied.
    pub path: Option<PathBuf>,
    /// The `--set` overrides, in order.
    pub sets: Vec<(String, String)>,
}

impl Source {
    /// The file (or the defaults), then every `--set` in order, then [`Config::validate`].
    pub fn read(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.path {
            Some(path) => Config::from_path(path)?,
            None => Config::default(),
        };
        for (key, value) in &self.sets {
            config.set(key, value)?;
        }
        config.validate()?;
        Ok(config)
    }

    /// What SIGHUP reloads: the file read again with the same `--set` overrides over it;
    /// an error that says there is nothing to reload when the gateway started without a
    /// file.
    pub fn reread(&self) -> Result<Config, ConfigError> {
        if self.path.is_none() {
            return Err(ConfigError {
                file: None,
                line: None,
                key: None,
                message: "SIGHUP has nothing to reload: the gateway was started without a \
                          configuration file"
                    .to_string(),
            });
        }
        self.read()
    }
}

/// Why the command line cannot be acted on; the gateway exits with status 2 for both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// A malformed command line: unknown option, missing or extra value.
    Usage(String),
    /// The configuration file, a `--set` or the validation failed.
    Config(ConfigError),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(message) => write!(f, "{message} (see `gateway --help`)"),
            CliError::Config(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for CliError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CliError::Usage(_) => None,
            CliError::Config(error) => Some(error),
        }
    }
}

impl From<ConfigError> for CliError {
    fn from(error: ConfigError) -> Self {
        CliError::Config(error)
    }
}

/// The `--version` text: `gateway VERSION`.
pub fn version() -> &'static str {
    concat!("gateway ", env!("CARGO_PKG_VERSION"))
}

/// The `--help` text, listing every option.
pub fn usage() -> &'static str {
    "\
Usage: gateway [--config PATH] [--set KEY=VALUE]... [--check] [--print-config] [--version] [--help]

A single-threaded WebSocket gateway between AI agents, tools and user interfaces.

Options:
  --config PATH      read the configuration from PATH; without it ./gateway.conf is
                     read when it exists, else the built-in defaults apply
  --set KEY=VALUE    override one configuration key after the file (repeatable,
                     applied in order; the last one for a key wins)
  --check            validate the configuration, then exit: 0 if valid, 2 if not
  --print-config     print the effective configuration in the file format, secrets
                     shown as ***, then exit (implies --check)
  -V, --version      print the version and exit
  -h, --help         print this help and exit

--config=PATH and --set=KEY=VALUE are accepted too. Any error exits with status 2.
"
}

/// Parse the arguments (without `argv[0]`), read the configuration (`--config`, else
/// `./gateway.conf` when it exists relative to the current directory, else the defaults),
/// apply every `--set` in order, and validate.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<CliAction, CliError> {
    parse_args_in(args, Path::new(DEFAULT_CONFIG_PATH))
}

/// [`parse_args`] with `default_path` read instead of `./gateway.conf` when `--config` is
/// not given (when it does not exist, the defaults apply).
pub fn parse_args_in<I: IntoIterator<Item = String>>(
    args: I,
    default_path: &Path,
) -> Result<CliAction, CliError> {
    let options = scan(args);
    if options.help {
        return Ok(CliAction::Help);
    }
    if options.version {
        return Ok(CliAction::Version);
    }
    if let Some(message) = options.usage_error {
        return Err(CliError::Usage(message));
    }
    let path = match options.config {
        Some(path) => Some(path),
        None => match std::fs::metadata(default_path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            _ => Some(default_path.to_path_buf()),
        },
    };
    let source = Source {
        path,
        sets: options.sets,
    };
    let config = source.read()?;
    Ok(if options.print_config {
        CliAction::PrintConfig(config)
    } else if options.check {
        CliAction::Check(config)
    } else {
        CliAction::Run(config, source)
    })
}

/// The arguments, read without touching the file system.
#[derive(Default)]
struct Options {
    config: Option<PathBuf>,
    sets: Vec<(String, String)>,
    check: bool,
    print_config: bool,
    version: bool,
    help: bool,
    /// The first usage error; scanning goes on so that `--help` anywhere still wins.
    usage_error: Option<String>,
}

impl Options {
    fn fail(&mut self, message: String) {
        self.usage_error.get_or_insert(message);
    }
}

fn scan<I: IntoIterator<Item = String>>(args: I) -> Options {
    let mut options = Options::default();
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        match name {
            "--config" | "--set" => {
                let value = match inline {
                    Some(value) => Some(value),
                    // A following option is not taken as the value; `--config=--x` can be.
                    None => args.next_if(|next| !next.starts_with("--")),
                };
                let Some(value) = value else {
                    let what = if name == "--config" {
                        "PATH"
                    } else {
                        "KEY=VALUE"
                    };
                    options.fail(format!("{name} needs {what}"));
                    continue;
                };
                if name == "--config" {
                    if value.is_empty() {
                        options.fail("--config needs a non-empty PATH".to_string());
                    } else if options.config.is_some() {
                        options.fail("--config given more than once".to_string());
                    } else {
                        options.config = Some(PathBuf::from(value));
                    }
                } else {
                    match value.split_once('=') {
                        Some((key, value)) if !key.trim().is_empty() => {
                            options.sets.push((key.to_string(), value.to_string()));
                        }
                        _ => options.fail("--set needs KEY=VALUE".to_string()),
                    }
                }
            }
            "--check" | "--print-config" | "--version" | "-V" | "--help" | "-h"
                if inline.is_some() =>
            {
                options.fail(format!("{name} takes no value"));
            }
            "--check" => options.check = true,
            "--print-config" => options.print_config = true,
            "--version" | "-V" => options.version = true,
            "--help" | "-h" => options.help = true,
            _ => {
                let shown = arg.split_once('=').map_or(arg.as_str(), |(head, _)| head);
                let suffix = if arg.contains('=') { "=..." } else { "" };
                let kind = if arg.starts_with('-') {
                    "unknown option"
                } else {
                    "unexpected argument"
                };
                options.fail(format!("{kind} `{}{suffix}`", shown.escape_debug()));
            }
        }
    }
    options
}

#[cfg(test)]
mod tests;
