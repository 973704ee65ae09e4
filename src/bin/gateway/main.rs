//! The `gateway` binary: reads the configuration and the command line, sets up logging, runs
//! the gateway until SIGTERM or SIGINT, and exits 0 (2 for a bad configuration or usage, 1
//! when it cannot listen or its loop fails).

use std::process::ExitCode;

mod cli;

use cli::CliAction;
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
            println!("configuration OK");
            println!("{}", MemoryBound::of(&config));
            ExitCode::SUCCESS
        }
        CliAction::PrintConfig(config) => {
            print!("{}", config.to_file_string());
            ExitCode::SUCCESS
        }
        CliAction::Run(config) => run(config),
    }
}

fn run(config: Config) -> ExitCode {
    init_logging(config.log_level);
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
    if let Err(e) = gateway.shutdown_on_signals() {
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

fn init_logging(level: log::LevelFilter) {
    let config = simplelog::ConfigBuilder::new()
        .set_target_level(log::LevelFilter::Off)
        .set_thread_level(log::LevelFilter::Off)
        .build();
    let _ = simplelog::TermLogger::init(
        level,
        config,
        simplelog::TerminalMode::Stderr,
        simplelog::ColorChoice::Never,
    );
}
