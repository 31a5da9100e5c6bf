//! The `detour` binary: parse the command line, set up logging, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use detour::cli::{Cli, Command};
use detour::config::Config;
use detour::daemon::{self, RunError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check => match Config::load(&cli.config) {
            Ok(cfg) => {
                print!("{}", detour::cli::summary(&cfg));
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in errors.iter() {
                    eprintln!("error: {e}");
                }
                eprintln!("{} error(s); config not valid", errors.0.len());
                ExitCode::from(2)
            }
        },
        Command::Dnssec(ref cmd) => {
            let cfg = match Config::load(&cli.config) {
                Ok(c) => c,
                Err(errors) => {
                    for e in errors.iter() {
                        eprintln!("error: {e}");
                    }
                    return ExitCode::from(2);
                }
            };
            let out = match cmd {
                detour::cli::DnssecCmd::Ds { zone } => detour::cli::dnssec::ds(&cfg, zone),
                detour::cli::DnssecCmd::Status => detour::cli::dnssec::status(&cfg, cli.json),
                detour::cli::DnssecCmd::KskRoll { zone } => {
                    detour::cli::dnssec::ksk_roll(&cfg, zone)
                }
                detour::cli::DnssecCmd::KskDone { zone } => {
                    detour::cli::dnssec::ksk_done(&cfg, zone)
                }
            };
            match out {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Generate { ref what, ref out } => match detour::cli::generate(what, out) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot write into {}: {e}", out.display());
                ExitCode::from(1)
            }
        },
        Command::User(ref cmd) => {
            let out = detour::cli::user::run(&cli.config, cmd, cli.json);
            print!("{}", out.stdout);
            eprint!("{}", out.stderr);
            ExitCode::from(out.code)
        }
        Command::Status { .. }
        | Command::Override(_)
        | Command::Incident(_)
        | Command::Reload
        | Command::Notify(_)
        | Command::Announce
        | Command::Oncall { .. }
        | Command::Ack { .. }
        | Command::Subscribers(_)
        | Command::Report { .. }
        | Command::Simulate { .. }
        | Command::Drill(_)
        | Command::Explain { .. } => {
            let Some(rt) = runtime(tokio::runtime::Builder::new_current_thread()) else {
                return ExitCode::from(1);
            };
            let out = rt.block_on(detour::cli::commands::run(&cli));
            print!("{}", out.stdout);
            eprint!("{}", out.stderr);
            ExitCode::from(out.code)
        }
        Command::Run => {
            init_tracing();
            let Some(rt) = runtime(tokio::runtime::Builder::new_multi_thread()) else {
                return ExitCode::from(1);
            };
            match rt.block_on(daemon::run(&cli.config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(RunError::Config(errors)) => {
                    for e in errors.iter() {
                        eprintln!("error: {e}");
                    }
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// Builds a runtime, or says why not.
fn runtime(mut b: tokio::runtime::Builder) -> Option<tokio::runtime::Runtime> {
    b.enable_all()
        .build()
        .map_err(|e| eprintln!("error: cannot start the runtime: {e}"))
        .ok()
}

/// Logs to stderr; `RUST_LOG` overrides the default (per-query logging off).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hickory_server=warn"));
    tracing_subscriber::fmt()
        .fmt_fields(detour::text::LogFields)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
