//! The `numbering` binary: parse configuration, start logging, run the command.

use std::io::IsTerminal;

use clap::Parser;
use numbering::config::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The client commands print their answers on stdout and their failures on stderr: no log.
    let command = match cli.command {
        Command::Client(command) => return numbering::cli::run(*command).await,
        other => other,
    };
    let filter =
        EnvFilter::try_from_env("NUMBERING_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal: a file or a log collector gets plain text.
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    match cli.log_format {
        LogFormat::Human => subscriber.init(),
        LogFormat::Json => subscriber.json().init(),
    }
    match numbering::run(command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
