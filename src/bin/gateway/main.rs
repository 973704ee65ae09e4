//! The `gateway` binary: reads the configuration and the command line, sets up logging, raises
//! its open-file limit (`fds.rs`), runs the gateway until SIGTERM or SIGINT (SIGHUP reads the
//! configuration file again, with the `--set` overrides over it, and reloads it), and exits
//! 0 (2 for a bad configuration or usage, 1 when it cannot listen or its loop fails). `--check`
//! warns on stderr when the configuration's sockets would not fit in the open-file limit the
//! gateway would run with.

use std::process::ExitCode;

mod cli;
mod fds;

use cli::{CliAction, Source};
use gateway::{Config, Gateway, MemoryBound};

fn main() -> ExitCode {
    let action = match cli::parse_args(
        std::env::args_os()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned()),
    ) {
        Ok(action) => action,
        Err(e) => {
            eprintln!("gateway: {e}");
            return ExitCode::from(2);
        }
    };
    match action {
        CliAction::Help => {
            print!("{}", cli::usage());
            ExitCode::SUCCESS
        }
        CliAction::Version => {
            println!("{}", cli::version());
            ExitCode::SUCCESS
        }
        CliAction::Check(config) => {
            // The limit it would run with: the hard one, which `run` raises the soft one to.
            let hard = fds::current().ok().and_then(|limits| limits.hard);
            if let Some(warning) = fds::shortfall(&config, hard) {
                eprintln!("gateway: warning: {warning}");
            }
            if let Some(warning) = config.tls_cert.as_ref().and_then(|c| c.handshake_warning()) {
                eprintln!("gateway: warning: {warning}");
            }
            println!("configuration OK");
            println!("{}", MemoryBound::of(&config));
            let now = std::time::SystemTime::now();
            if let Some(cert) = &config.tls_cert {
                println!("tls_cert: {}", cert.summary(now));
            }
            if let Some(ca) = &config.tls_client_ca {
                println!("tls_client_ca: {}", ca.summary(now));
            }
            ExitCode::SUCCESS
        }
        CliAction::PrintConfig(config) => {
            print!("{}", config.to_file_string());
            ExitCode::SUCCESS
        }
        CliAction::Run(config, source) => run(config, source),
    }
}

fn run(config: Config, source: Source) -> ExitCode {
    init_logging(config.log_level);
    raise_fd_limit(&config);
    if let Some(warning) = config.tls_cert.as_ref().and_then(|c| c.handshake_warning()) {
        log::warn!("{warning}");
    }
    let mut gateway = match Gateway::bind(config) {
        Ok(gateway) => gateway,
        Err(gateway::Error::Config(e)) => {
            eprintln!("gateway: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("gateway: {e}");
            return ExitCode::from(1);
        }
    };
    let watched = gateway
        .shutdown_on_signals()
        .and_then(|()| gateway.reload_on_sighup(move || source.reread()));
    if let Err(e) = watched {
        eprintln!("gateway: cannot watch for signals: {e}");
        return ExitCode::from(1);
    }
    // Never filtered: scripts and people wait for this line to learn the real port.
    eprintln!("gateway: listening on {}", gateway.url());
    match gateway.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e}");
            ExitCode::from(1)
        }
    }
}

/// Raise the open-file limit to the hard limit, log the result, and warn when the sockets the
/// configuration allows do not fit in it.
fn raise_fd_limit(config: &Config) {
    let limit = match fds::raise_limit() {
        Ok((before, after)) => {
            log::info!(
                "open-file limit: {} (was {}, hard limit {})",
                fds::show(after.soft),
                fds::show(before.soft),
                fds::show(after.hard)
            );
            after.soft
        }
        Err(e) => {
            log::warn!("could not raise the open-file limit: {e}");
            fds::current().ok().and_then(|limits| limits.soft)
        }
    };
    if let Some(warning) = fds::shortfall(config, limit) {
        log::warn!("{warning}");
    }
}

/// Log to stderr at `level`. The logger itself passes every level and `log`'s max level does
/// the filtering, so that a reload can change it (`log::set_max_level`).
fn init_logging(level: log::LevelFilter) {
    let config = simplelog::ConfigBuilder::new()
        .set_target_level(log::LevelFilter::Off)
        .set_thread_level(log::LevelFilter::Off)
        .build();
    let _ = simplelog::TermLogger::init(
        log::LevelFilter::Trace,
        config,
        simplelog::TerminalMode::Stderr,
        simplelog::ColorChoice::Never,
    );
    log::set_max_level(level);
}
