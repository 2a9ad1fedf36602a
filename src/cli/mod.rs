//! The operator command line: `numbering <group> <command>` talks gRPC to a server through the
//! client crate (`numbering-client`). One module per command group; `output` prints tables or
//! JSON, `failure` turns what went wrong into an exit code and a report on stderr.

mod accounts;
mod batch;
mod failure;
mod health;
mod moves;
mod numbers;
mod output;
mod progress;
mod series;
mod token;
mod transfer;
mod trunks;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use numbering_client::{Clients, ConnectOptions};

pub use failure::Failure;
pub use output::Output;

/// The exit codes, for `--help` and the README.
pub const EXIT_CODES: &str = "\
Exit codes of the client commands:
  0  done
  1  anything else (INTERNAL, UNKNOWN, ABORTED, a file that cannot be written, ...)
  2  bad input: INVALID_ARGUMENT, or a usage error
  3  not found: NOT_FOUND
  4  refused: FAILED_PRECONDITION, PERMISSION_DENIED, UNAUTHENTICATED, ALREADY_EXISTS
  5  unavailable: UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, or no connection
On failure, stderr holds the server's code, message, ErrorInfo reason, and every field or
precondition violation.";

/// The commands that call a server (and `token`, which mints a development token).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Accounts: create, list (as a tree), get, update, suspend, resume, delete.
    #[command(after_help = EXIT_CODES)]
    Accounts(Group<accounts::Command>),
    /// SIP trunks of an account: create, list, delete.
    #[command(after_help = EXIT_CODES)]
    Trunks(Group<trunks::Command>),
    /// Series of a provider's numbers: create, list.
    #[command(after_help = EXIT_CODES)]
    Series(Group<series::Command>),
    /// Numbers: add, import, export, search, list, inventory, history.
    #[command(after_help = EXIT_CODES)]
    Numbers(Group<numbers::Command>),
    /// Moves numbers from a holder down to one of its descendants (a list, or a quantity).
    #[command(after_help = EXIT_CODES)]
    Allocate(moves::Allocate),
    /// Moves unused numbers from an account back to its parent.
    #[command(after_help = EXIT_CODES)]
    Withdraw(moves::Withdraw),
    /// Moves unused numbers between two accounts of one tree.
    #[command(after_help = EXIT_CODES)]
    Transfer(moves::Transfer),
    /// Assigns a number to a user, agent, device, service or trunk.
    #[command(after_help = EXIT_CODES)]
    Assign(moves::Assign),
    /// Ends an assignment: the number is AVAILABLE again.
    #[command(after_help = EXIT_CODES)]
    Unassign(moves::One),
    /// Sets an AVAILABLE number aside for a person or a role.
    #[command(after_help = EXIT_CODES)]
    Reserve(moves::Reserve),
    /// Ends a reservation: the number is AVAILABLE again.
    #[command(after_help = EXIT_CODES)]
    Unreserve(moves::One),
    /// A sub-account gives an unused number back (RETURNED).
    #[command(after_help = EXIT_CODES)]
    Release(moves::One),
    /// The provider takes a RETURNED number back into its pool.
    #[command(after_help = EXIT_CODES)]
    Unbind(moves::One),
    /// Applies one change per row of a CSV file (assign, unassign, reserve, release), 1000
    /// rows a call, and prints each row's result.
    #[command(after_help = EXIT_CODES)]
    Batch(batch::BatchArgs),
    /// Asks a server's health service whether it serves: exit 0 when SERVING, 1 otherwise.
    Health(health::HealthArgs),
    /// Mints a development token signed with the server's HS256 secret, on stdout.
    #[command(after_help = EXIT_CODES)]
    Token(token::TokenArgs),
}

/// A command group: the connection, then the group's command.
#[derive(Debug, Args)]
pub struct Group<C: Subcommand> {
    #[command(flatten)]
    pub remote: Remote,
    #[command(subcommand)]
    pub command: C,
}

/// Where the server is, who calls it, and how answers are printed.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// The server: http://host:port, or https://host:port for TLS (with --ca-file).
    #[arg(
        long,
        env = "NUMBERING_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub server: String,
    /// Bearer token sent with every call (`numbering token` mints one for development).
    #[arg(long, env = "NUMBERING_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// PEM CA certificates that signed an https server's certificate (for a public CA, the
    /// system bundle such as /etc/ssl/certs/ca-certificates.crt).
    #[arg(long, env = "NUMBERING_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// `table` for people, `json` for scripts.
    #[arg(long, short = 'o', env = "NUMBERING_OUTPUT", value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

/// What every change takes: a request id (so a retry is safe) and a dry run.
#[derive(Debug, Clone, Args)]
pub struct Mutation {
    /// Makes a retry safe: the server answers a repeated id with its first answer
    /// [default: a new UUID, printed on failure].
    #[arg(long)]
    pub request_id: Option<String>,
    /// Checks every rule and answers as if done, changing nothing.
    #[arg(long)]
    pub validate_only: bool,
}

impl Mutation {
    /// The request id to send: the one given, or a fresh UUID.
    pub fn request_id(&self) -> String {
        self.request_id
            .clone()
            .unwrap_or_else(numbering_client::new_request_id)
    }
}

impl Remote {
    async fn connect(&self) -> Result<Clients, Failure> {
        if self.server.parse::<http::Uri>().is_err() {
            return Err(Failure::Input(format!(
                "--server {:?} is not an address such as http://127.0.0.1:50051",
                self.server
            )));
        }
        let mut options = ConnectOptions::new(self.server.clone());
        if let Some(token) = &self.token {
            options = options.token(token.trim());
        }
        if let Some(file) = &self.ca_file {
            let pem = std::fs::read(file)
                .map_err(|e| Failure::Input(format!("cannot read {}: {e}", file.display())))?;
            options = options.ca_pem(pem);
        }
        options.connect().await.map_err(Failure::from)
    }
}

/// Runs a client command; answers the process's exit code.
pub async fn run(command: Command) -> ExitCode {
    if let Command::Health(args) = command {
        return health::run(args).await;
    }
    match dispatch(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            failure.report();
            ExitCode::from(failure.exit_code())
        }
    }
}

async fn dispatch(command: Command) -> Result<(), Failure> {
    match command {
        Command::Token(args) => token::run(args),
        Command::Health(_) => Err(Failure::Input("health runs through cli::run".into())),
        Command::Accounts(g) => {
            accounts::run(g.remote.connect().await?, g.command, g.remote.output).await
        }
        Command::Trunks(g) => {
            trunks::run(g.remote.connect().await?, g.command, g.remote.output).await
        }
        Command::Series(g) => {
            series::run(g.remote.connect().await?, g.command, g.remote.output).await
        }
        Command::Numbers(g) => {
            numbers::run(g.remote.connect().await?, g.command, g.remote.output).await
        }
        Command::Allocate(a) => moves::allocate(a).await,
        Command::Withdraw(a) => moves::withdraw(a).await,
        Command::Transfer(a) => moves::transfer(a).await,
        Command::Assign(a) => moves::assign(a).await,
        Command::Unassign(a) => moves::one(moves::Move::Unassign, a).await,
        Command::Reserve(a) => moves::reserve(a).await,
        Command::Unreserve(a) => moves::one(moves::Move::Unreserve, a).await,
        Command::Release(a) => moves::one(moves::Move::Release, a).await,
        Command::Unbind(a) => moves::one(moves::Move::Unbind, a).await,
        Command::Batch(a) => batch::run(a).await,
    }
}

/// `key=value` for labels.
fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}
