//! The `hull` command line (layer L5): a thin front end over the engine crates. It owns the
//! terminal — argument parsing (`cli`), one module per verb (`commands`), tables, JSON and Go
//! templates (`output`), progress rendering (`progress`) — and nothing else: every decision
//! about images is the engine's (`hull-image`, `hull-distribution`).
//!
//! Must not be depended on by any crate, and holds no engine logic that another front end
//! (`hull serve`, the Engine API) would need: such logic belongs in the libraries.
//!
//! Data goes to stdout, progress and diagnostics to stderr. Failures print one `Error:` line
//! with the whole cause chain, then `hint:` lines; the exit status is 1, or 125 when the
//! command line does not parse (Docker's convention).
//!
//! Differences from ARCHITECTURE.md: tables are aligned by a small tabwriter of our own rather
//! than `comfy-table`, because Docker's layout (no borders, columns padded by three spaces to
//! at least ten) is what scripts and users expect and `comfy-table` does not draw it.

mod cli;
mod commands;
mod config;
mod error;
mod output;
mod progress;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, LogLevel};
use crate::error::{EXIT_USAGE, error_line, exit_code, hints, is_broken_pipe, usage_line};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    // `hull` or `hull image` alone shows the help, as Docker does.
                    let _ = e.print();
                    ExitCode::SUCCESS
                }
                _ => {
                    eprintln!("{}", usage_line(&e));
                    ExitCode::from(EXIT_USAGE)
                }
            };
        }
    };
    init_logging(cli.global.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(commands::run(cli));
    // Blocking work (stdin readers) must not keep the process alive.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::from(exit_code(&e))
        }
    }
}

fn report(e: &anyhow::Error) {
    if e.chain().any(|c| c.is::<error::Reported>()) {
        return;
    }
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let line = error_line(e);
    if color {
        let rest = line.strip_prefix("Error:").unwrap_or(&line);
        eprintln!("\x1b[1;31mError:\x1b[0m{rest}");
    } else {
        eprintln!("{line}");
    }
    for h in hints(e) {
        if color {
            eprintln!("\x1b[1;36mhint:\x1b[0m {h}");
        } else {
            eprintln!("hint: {h}");
        }
    }
}

/// Diagnostics from the libraries (`tracing`) on stderr, at `--log-level` (default: warn).
fn init_logging(level: Option<LogLevel>) {
    let filter = match level {
        Some(LogLevel::Debug) => "debug",
        Some(LogLevel::Info) => "info",
        None | Some(LogLevel::Warn) => "warn",
        Some(LogLevel::Error) | Some(LogLevel::Fatal) => "error",
    };
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}
