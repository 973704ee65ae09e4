use super::*;
use gateway::AuthMode;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory of its own per test, removed afterwards.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gateway-cli-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Where `./gateway.conf` would be.
    fn default_path(&self) -> PathBuf {
        self.0.join("gateway.conf")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(dir: &Scratch, args: &[&str]) -> Result<CliAction, CliError> {
    parse_args_in(args.iter().map(|a| a.to_string()), &dir.default_path())
}

fn config_of(action: Result<CliAction, CliError>) -> Config {
    match action {
        Ok(CliAction::Run(c, _) | CliAction::Check(c) | CliAction::PrintConfig(c)) => c,
        other => panic!("expected a configuration, got {other:?}"),
    }
}

fn usage_error(dir: &Scratch, args: &[&str]) -> String {
    match run(dir, args) {
        Err(CliError::Usage(message)) => message,
        other => panic!("{args:?}: expected a usage error, got {other:?}"),
    }
}

fn config_error(dir: &Scratch, args: &[&str]) -> ConfigError {
    match run(dir, args) {
        Err(CliError::Config(e)) => e,
        other => panic!("{args:?}: expected a configuration error, got {other:?}"),
    }
}

#[test]
fn no_arguments_and_no_file_runs_the_defaults() {
    let dir = Scratch::new();
    assert_eq!(
        run(&dir, &[]),
        Ok(CliAction::Run(Config::default(), Source::default()))
    );
}

#[test]
fn default_file_is_read_when_it_exists() {
    let dir = Scratch::new();
    dir.file("gateway.conf", "port = 1234\n");
    assert_eq!(config_of(run(&dir, &[])).port, 1234);
    dir.file("gateway.conf", "port = x\n");
    let e = config_error(&dir, &[]);
    assert_eq!(
        e.to_string(),
        format!(
            "{}:1: port: expected a number from 0 to 65535, got \"x\"",
            dir.default_path().display()
        )
    );
}

#[test]
fn default_path_that_is_a_directory_is_an_error() {
    let dir = Scratch::new();
    std::fs::create_dir(dir.default_path()).unwrap();
    let e = config_error(&dir, &[]);
    assert_eq!(e.message, "not a regular file", "{e}");
}

#[test]
fn config_option_both_spellings() {
    let dir = Scratch::new();
    dir.file("gateway.conf", "port = 1\n");
    let other = dir.file("other.conf", "port = 2\n");
    let other = other.to_str().unwrap();
    assert_eq!(config_of(run(&dir, &["--config", other])).port, 2);
    assert_eq!(
        config_of(run(&dir, &[&format!("--config={other}")])).port,
        2
    );
}

#[test]
fn missing_config_file_is_an_error_naming_it() {
    let dir = Scratch::new();
    let missing = dir.0.join("nope.conf");
    let missing = missing.to_str().unwrap();
    let e = config_error(&dir, &["--config", missing]);
    assert_eq!(e.file.as_deref(), Some(missing));
    assert!(e
        .to_string()
        .starts_with(&format!("{missing}: cannot read the file")));
}

#[test]
fn set_overrides_the_file_in_order() {
    let dir = Scratch::new();
    dir.file(
        "gateway.conf",
        "port = 1\nauth_tokens = a:one\nlog_level = warn\n",
    );
    let c = config_of(run(
        &dir,
        &[
            "--set",
            "port=2",
            "--set=port=3",
            "--set",
            "auth_tokens=b:two#2, c:x=y",
            "--set=auth_password=p#q w",
        ],
    ));
    assert_eq!(c.port, 3);
    assert_eq!(c.log_level, log::LevelFilter::Warn);
    assert_eq!(c.auth_tokens.len(), 2);
    assert_eq!(c.auth_tokens[0].user, "b");
    assert_eq!(c.auth_tokens[0].secret, "two#2");
    assert_eq!(c.auth_tokens[1].secret, "x=y");
    assert_eq!(c.auth_password.as_deref(), Some("p#q w"));
    // A --set can repair what validation would refuse in the file.
    dir.file("gateway.conf", "auth_mode = password\n");
    assert!(matches!(run(&dir, &[]), Err(CliError::Config(_))));
    let c = config_of(run(&dir, &["--set", "auth_password=pw"]));
    assert_eq!(c.auth_mode, AuthMode::Password);
}

#[test]
fn set_errors() {
    let dir = Scratch::new();
    let e = config_error(&dir, &["--set", "port=abc"]);
    assert_eq!(
        e.to_string(),
        "port: expected a number from 0 to 65535, got \"abc\" (from --set)"
    );
    let e = config_error(&dir, &["--set", "bogus=1"]);
    assert_eq!(e.to_string(), "bogus: unknown key (from --set)");
    let e = config_error(&dir, &["--set", "auth_tokens=a:hunter2,b:hunter2"]);
    assert!(!e.to_string().contains("hunter2"));
    assert_eq!(
        usage_error(&dir, &["--set", "port"]),
        "--set needs KEY=VALUE"
    );
    assert_eq!(usage_error(&dir, &["--set", "=1"]), "--set needs KEY=VALUE");
    assert_eq!(usage_error(&dir, &["--set"]), "--set needs KEY=VALUE");
    assert_eq!(
        usage_error(&dir, &["--set", "--check"]),
        "--set needs KEY=VALUE"
    );
    // The file is read before any --set is applied: its error comes first.
    dir.file("gateway.conf", "port = x\n");
    assert_eq!(config_error(&dir, &["--set", "port=1"]).line, Some(1));
}

#[test]
fn validation_runs_after_every_set() {
    let dir = Scratch::new();
    let e = config_error(&dir, &["--check", "--set", "max_message_size=20MiB"]);
    assert_eq!(
        e.to_string(),
        "max_message_size: must not exceed max_payload (20971520 > 10485760)"
    );
    let c = config_of(run(
        &dir,
        &[
            "--set",
            "max_message_size=20MiB",
            "--set",
            "max_payload=20MiB",
            "--set",
            "max_outbound_buffer=20MiB",
        ],
    ));
    assert_eq!(c.max_message_size, 20 << 20);
}

#[test]
fn action_matrix() {
    let dir = Scratch::new();
    dir.file("gateway.conf", "port = 5\n");
    let c = Config {
        port: 5,
        ..Config::default()
    };
    let cases: [(&[&str], CliAction); 9] = [
        (
            &[],
            CliAction::Run(
                c.clone(),
                Source {
                    path: Some(dir.default_path()),
                    sets: Vec::new(),
                },
            ),
        ),
        (&["--check"], CliAction::Check(c.clone())),
        (&["--print-config"], CliAction::PrintConfig(c.clone())),
        (
            &["--check", "--print-config"],
            CliAction::PrintConfig(c.clone()),
        ),
        (
            &["--print-config", "--check", "--check"],
            CliAction::PrintConfig(c.clone()),
        ),
        (&["--version"], CliAction::Version),
        (&["-V", "--check"], CliAction::Version),
        (&["--help"], CliAction::Help),
        (&["--version", "-h", "--print-config"], CliAction::Help),
    ];
    for (args, action) in cases {
        assert_eq!(run(&dir, args), Ok(action), "{args:?}");
    }
}

#[test]
fn help_and_version_do_not_read_the_configuration() {
    let dir = Scratch::new();
    dir.file("gateway.conf", "port = not a number\n");
    assert!(matches!(run(&dir, &["--check"]), Err(CliError::Config(_))));
    assert_eq!(run(&dir, &["--version"]), Ok(CliAction::Version));
    assert_eq!(run(&dir, &["--help", "--bogus"]), Ok(CliAction::Help));
    assert_eq!(
        run(&dir, &["--config", "/nonexistent", "-h"]),
        Ok(CliAction::Help)
    );
}

#[test]
fn usage_errors() {
    let dir = Scratch::new();
    assert_eq!(usage_error(&dir, &["--bogus"]), "unknown option `--bogus`");
    assert_eq!(usage_error(&dir, &["-x"]), "unknown option `-x`");
    assert_eq!(usage_error(&dir, &["run"]), "unexpected argument `run`");
    assert_eq!(usage_error(&dir, &["--"]), "unknown option `--`");
    assert_eq!(usage_error(&dir, &["--config"]), "--config needs PATH");
    assert_eq!(
        usage_error(&dir, &["--config", "--check"]),
        "--config needs PATH"
    );
    assert_eq!(
        usage_error(&dir, &["--config="]),
        "--config needs a non-empty PATH"
    );
    assert_eq!(
        usage_error(&dir, &["--config", "a", "--config=b"]),
        "--config given more than once"
    );
    assert_eq!(
        usage_error(&dir, &["--check=yes"]),
        "--check takes no value"
    );
    assert_eq!(
        usage_error(&dir, &["--print-config=1"]),
        "--print-config takes no value"
    );
    // The first problem is reported.
    assert_eq!(usage_error(&dir, &["--a", "--b"]), "unknown option `--a`");
    // Usage errors come before the configuration is read.
    dir.file("gateway.conf", "port = x\n");
    assert_eq!(
        usage_error(&dir, &["--check", "extra"]),
        "unexpected argument `extra`"
    );
}

#[test]
fn misplaced_secrets_are_not_echoed() {
    let dir = Scratch::new();
    for args in [
        &["auth_password=hunter2"][..],
        &["--auth_password=hunter2"],
        &["--set", "port=1", "auth_tokens=a:hunter2"],
    ] {
        let e = run(&dir, args).unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("=..."), "{e}");
    }
}

#[test]
fn error_display() {
    let usage = CliError::Usage("unknown option `--x`".to_string());
    assert_eq!(
        usage.to_string(),
        "unknown option `--x` (see `gateway --help`)"
    );
    let config = CliError::from(ConfigError {
        file: Some("g.conf".to_string()),
        line: Some(2),
        key: Some("port".to_string()),
        message: "bad".to_string(),
    });
    assert_eq!(config.to_string(), "g.conf:2: port: bad");
    assert!(std::error::Error::source(&config).is_some());
}

#[test]
fn usage_lists_every_option() {
    let text = usage();
    for option in [
        "--config PATH",
        "--set KEY=VALUE",
        "--check",
        "--print-config",
        "--version",
        "--help",
        "--config=PATH",
        "--set=KEY=VALUE",
    ] {
        assert!(text.contains(option), "{option}");
    }
    assert!(version().starts_with("gateway "));
    assert_eq!(version(), format!("gateway {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn print_config_round_trip_through_the_cli() {
    let dir = Scratch::new();
    dir.file(
        "gateway.conf",
        "auth_tokens = dev:s3cret#1\nauth_mode = password\nauth_password = pw#2\nport = 0\n",
    );
    let CliAction::PrintConfig(c) = run(&dir, &["--print-config"]).unwrap() else {
        panic!("expected PrintConfig");
    };
    let printed = c.to_file_string();
    assert!(
        !printed.contains("s3cret") && !printed.contains("pw#2"),
        "{printed}"
    );
    let restored = printed
        .replace("dev:***", "dev:s3cret#1")
        .replace("auth_password = ***", "auth_password = pw#2");
    let again = dir.file("printed.conf", &restored);
    let again = config_of(run(&dir, &["--config", again.to_str().unwrap(), "--check"]));
    assert_eq!(again, c);
}

#[test]
fn parse_args_reads_the_current_directory() {
    // The crate root is the test's current directory; its gateway.conf, when there is one,
    // must be accepted as shipped.
    let result = parse_args(Vec::<String>::new());
    let path = Path::new(DEFAULT_CONFIG_PATH);
    if path.exists() {
        let expected = Config::from_path(path).unwrap();
        let source = Source {
            path: Some(path.to_path_buf()),
            sets: Vec::new(),
        };
        assert_eq!(result, Ok(CliAction::Run(expected, source)));
    } else {
        assert_eq!(
            result,
            Ok(CliAction::Run(Config::default(), Source::default()))
        );
    }
}

#[test]
fn the_source_reads_the_file_again_with_the_same_overrides() {
    let dir = Scratch::new();
    let file = dir.file("a.conf", "port = 5\nmax_list_items = 7\n");
    let args = [
        "--config",
        file.to_str().unwrap(),
        "--set",
        "max_list_items=9",
    ];
    let Ok(CliAction::Run(config, source)) = run(&dir, &args) else {
        panic!("runs");
    };
    assert_eq!((config.port, config.max_list_items), (5, 9));
    assert_eq!(source.path.as_deref(), Some(file.as_path()));
    dir.file(
        "a.conf",
        "port = 6\nmax_list_items = 8\nrequire_origin = true\n",
    );
    let again = source.reread().expect("the file is valid");
    assert_eq!(
        (again.port, again.max_list_items),
        (6, 9),
        "--set wins again"
    );
    assert!(again.require_origin);
    dir.file("a.conf", "port = 6\nmax_list_items = lots\n");
    let e = source.reread().expect_err("a bad value");
    assert_eq!(e.line, Some(2));
    assert_eq!(e.key.as_deref(), Some("max_list_items"));
    assert!(e.to_string().contains("a.conf:2: max_list_items:"), "{e}");
    let none = Source::default();
    let e = none.reread().expect_err("no file");
    assert!(e.to_string().contains("nothing to reload"), "{e}");
}
