//! Command line and environment: every flag has a `NUMBERING_*` variable (or `DATABASE_URL`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "numbering",
    version,
    about = "The inventory of telephone numbers for nested accounts, over gRPC.",
    after_help = crate::cli::EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format.
    #[arg(long, env = "NUMBERING_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the gRPC server (migrating the database first).
    Serve(Box<ServeArgs>),
    /// Applies the database migrations and exits.
    Migrate(DatabaseArgs),
    /// The operator's command line: calls a server (--server, --token, --ca-file).
    #[command(flatten)]
    Client(Box<crate::cli::Command>),
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection string. Without it, a private cluster runs under --data-dir.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// PEM certificates of the authorities the database's certificate must chain to (as
    /// `sslrootcert` in DATABASE_URL, which wins); `system` for the machine's store.
    #[arg(long, env = "NUMBERING_DATABASE_CA_FILE")]
    pub database_ca_file: Option<PathBuf>,
    /// PEM client certificate presented to the database (as `sslcert` in DATABASE_URL, which
    /// wins), for `hostssl … cert` authentication; with --database-key-file.
    #[arg(
        long,
        env = "NUMBERING_DATABASE_CERT_FILE",
        requires = "database_key_file"
    )]
    pub database_cert_file: Option<PathBuf>,
    /// PEM private key of the database client certificate (as `sslkey` in DATABASE_URL).
    #[arg(
        long,
        env = "NUMBERING_DATABASE_KEY_FILE",
        requires = "database_cert_file"
    )]
    pub database_key_file: Option<PathBuf>,
    /// Where the private cluster lives [default: $XDG_DATA_HOME/numbering or ~/.local/share/numbering].
    #[arg(long, env = "NUMBERING_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Most database connections in the pool.
    #[arg(long, env = "NUMBERING_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: usize,
    /// Seconds any one statement may run when no caller's deadline bounds it (0: no limit);
    /// imports and migrations are exempt.
    #[arg(long, env = "NUMBERING_STATEMENT_TIMEOUT", value_parser = statement_secs, default_value = "30")]
    pub statement_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address of the gRPC listener.
    #[arg(long, env = "NUMBERING_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// HS256 secret that signs callers' tokens (at least 32 bytes).
    #[arg(long, env = "NUMBERING_JWT_HS256_SECRET", hide_env_values = true)]
    pub jwt_hs256_secret: Option<String>,
    /// PEM public key (RSA for RS256, EC P-256 for ES256) that verifies callers' tokens.
    #[arg(long, env = "NUMBERING_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// A JWKS file whose RS256 / ES256 keys verify callers' tokens (several at once, picked by
    /// `kid`); read again every --jwt-jwks-refresh and when a token names an unknown `kid`.
    #[arg(long, env = "NUMBERING_JWT_JWKS_FILE", conflicts_with = "jwt_jwks_url")]
    pub jwt_jwks_file: Option<PathBuf>,
    /// A JWKS URL (https://, or http:// for a local sidecar), as --jwt-jwks-file.
    #[arg(long, env = "NUMBERING_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,
    /// Seconds between two reads of the JWKS.
    #[arg(long, env = "NUMBERING_JWT_JWKS_REFRESH", value_parser = jwks_refresh_secs, default_value = "300")]
    pub jwt_jwks_refresh: Duration,
    /// OIDC issuer URL: its `/.well-known/openid-configuration` names the JWKS (`jwks_uri`)
    /// whose keys verify callers' tokens, read and refreshed as --jwt-jwks-url; tokens' `iss`
    /// must be this URL.
    #[arg(long, env = "NUMBERING_OIDC_ISSUER", conflicts_with_all = ["jwt_jwks_file", "jwt_jwks_url", "jwt_issuer"])]
    pub oidc_issuer: Option<String>,
    /// Required `iss` claim.
    #[arg(long, env = "NUMBERING_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim.
    #[arg(long, env = "NUMBERING_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Longest lifetime of a token (`exp - iat`, or `exp - now` without `iat`), in seconds.
    #[arg(long, env = "NUMBERING_JWT_MAX_LIFETIME", value_parser = lifetime_secs, default_value = "86400")]
    pub jwt_max_lifetime: Duration,
    /// PEM certificate chain: serve gRPC over TLS (with --tls-key-file).
    #[arg(long, env = "NUMBERING_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the certificate.
    #[arg(long, env = "NUMBERING_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// With TLS on, where health answers in plain text (gRPC probes speak no TLS).
    #[arg(
        long,
        env = "NUMBERING_HEALTH_LISTEN",
        default_value = "127.0.0.1:50052"
    )]
    pub health_listen: SocketAddr,
    /// Address of the Prometheus metrics endpoint (`GET /metrics`); `off` disables it.
    #[arg(
        long,
        env = "NUMBERING_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_listen: String,
    /// OTLP/HTTP collector that receives the calls' traces (as OTEL_EXPORTER_OTLP_ENDPOINT:
    /// `http://collector:4318`, `/v1/traces` is added); no export when unset.
    #[arg(long, env = "NUMBERING_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Key that signs page tokens; set the same on every replica [default: random per process].
    #[arg(long, env = "NUMBERING_PAGE_TOKEN_SECRET", hide_env_values = true)]
    pub page_token_secret: Option<String>,
    /// How often the database is checked for the health service.
    #[arg(long, env = "NUMBERING_HEALTH_INTERVAL", value_parser = humantime_secs, default_value = "2")]
    pub health_interval: Duration,
    /// How often expired reservations and finished aging periods are swept.
    #[arg(long, env = "NUMBERING_SWEEP_INTERVAL", value_parser = humantime_secs, default_value = "5")]
    pub sweep_interval: Duration,
    /// Seconds an answer to a request id is kept for retries (24 h, as Stripe); then it is
    /// pruned and a retry runs as a first call.
    #[arg(long, env = "NUMBERING_IDEMPOTENCY_RETENTION", value_parser = retention_secs, default_value = "86400")]
    pub idempotency_retention: Duration,
    /// Seconds a stream may wait on its peer (a message from it, or room to send it one)
    /// before it is ended with DEADLINE_EXCEEDED.
    #[arg(long, env = "NUMBERING_STREAM_IDLE_TIMEOUT", value_parser = humantime_secs, default_value = "30")]
    pub stream_idle_timeout: Duration,
    /// The most CSV one ImportNumbers may send, in bytes.
    #[arg(long, env = "NUMBERING_MAX_IMPORT_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_import_bytes: u64,
    /// Import and export streams one account may have open at once [default: half of
    /// --max-streams, at least 1].
    #[arg(long, env = "NUMBERING_MAX_STREAMS_PER_ACCOUNT", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_account: Option<u32>,
    /// Import and export streams all accounts together may have open at once [default: one
    /// per CPU, at least 2].
    #[arg(long, env = "NUMBERING_MAX_STREAMS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams: Option<u32>,
    /// Expensive calls (searches, large lists, large moves, batches) one account may have
    /// running at once.
    #[arg(long, env = "NUMBERING_MAX_EXPENSIVE_CALLS_PER_ACCOUNT", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_expensive_calls_per_account: u32,
    /// Seconds a watch (WatchNumberEvents) with nothing to send waits before it sends a
    /// heartbeat: a message with only the cursor.
    #[arg(long, env = "NUMBERING_WATCH_HEARTBEAT", value_parser = humantime_secs, default_value = "10")]
    pub watch_heartbeat: Duration,
    /// WatchNumberEvents streams one account may have open at once.
    #[arg(long, env = "NUMBERING_MAX_WATCHES_PER_ACCOUNT", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_watches_per_account: u32,
    /// Groups of quantity allocations in the database at once: concurrent allocations of up to
    /// 100 numbers share a transaction (one commit for many calls). 0 runs each alone.
    #[arg(long, env = "NUMBERING_ALLOCATION_GROUPS", default_value_t = 4)]
    pub allocation_groups: u32,
    /// Seconds a shutdown (SIGTERM, Ctrl-C) lets calls finish before it ends open streams.
    #[arg(long, env = "NUMBERING_SHUTDOWN_GRACE", value_parser = humantime_secs, default_value = "20")]
    pub shutdown_grace: Duration,
}

/// A statement timeout: whole seconds, 0 for none, at most a day.
fn statement_secs(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .ok()
        .filter(|v| *v <= 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| "seconds, between 0 (no limit) and 86400".to_string())
}

fn lifetime_secs(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .ok()
        .filter(|v| (60..=366 * 86400).contains(v))
        .map(Duration::from_secs)
        .ok_or_else(|| "seconds, between 60 and 31622400 (366 days)".to_string())
}

/// A JWKS refresh interval: seconds, from 1 to a day.
fn jwks_refresh_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| *v >= 1.0 && *v <= 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| "seconds, between 1 and 86400 (a day)".to_string())
}

fn humantime_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0 && *v < 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| "seconds, between 0 and 3600".to_string())
}

/// A retention: whole seconds, from one second to a year.
fn retention_secs(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .ok()
        .filter(|v| (1..=365 * 86_400).contains(v))
        .map(Duration::from_secs)
        .ok_or_else(|| "seconds, between 1 and 31536000 (a year)".to_string())
}
