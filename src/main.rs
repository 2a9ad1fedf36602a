//! The `numbering` binary: parse configuration, start logging (and trace export), run the
//! command.

use std::io::IsTerminal;

use clap::Parser;
use numbering::config::{Cli, Command, LogFormat};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

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
    let log = tracing_subscriber::fmt::layer().with_ansi(std::io::stdout().is_terminal());
    let log = match cli.log_format {
        LogFormat::Human => log.boxed(),
        LogFormat::Json => log.json().boxed(),
    };
    // Traces take the spans at INFO and above (the call's span among them), whatever the log
    // filter: the libraries' debug spans stay out of the export.
    let otlp = match &command {
        Command::Serve(args) => args.otlp_endpoint.as_deref(),
        _ => None,
    };
    let traces = match otlp.map(numbering::telemetry::start).transpose() {
        Ok(layer) => layer.map(|l| l.with_filter(LevelFilter::INFO)),
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing_subscriber::registry()
        .with(traces)
        .with(log.with_filter(filter))
        .init();
    if let Some(endpoint) = otlp {
        tracing::info!(endpoint, "exporting traces over OTLP/HTTP");
    }
    let code = match numbering::run(command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::FAILURE
        }
    };
    let _ = tokio::task::spawn_blocking(numbering::telemetry::shutdown).await;
    code
}
