//! Startup: opens the database (a URL, or the private embedded cluster), checks the
//! configuration, and runs a command until it finishes or a shutdown signal arrives.

use crate::auth::{Authenticator, JwksSource, KeySource};
use crate::config::{Command, DatabaseArgs, ServeArgs};
use crate::embedded::{self, EmbeddedPostgres};
use crate::paging::PageTokens;
use crate::store::Db;
use crate::store::tls::{self, PgTls};
use crate::{metrics, server};

/// Why the binary stopped with an error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The database a command runs against, and the private cluster behind it if it is embedded.
pub struct Database {
    pub config: tokio_postgres::Config,
    /// How connections are encrypted (`sslmode`, the CA file).
    pub tls: PgTls,
    pub embedded: Option<EmbeddedPostgres>,
}

/// The embedded cluster's database for the service.
const EMBEDDED_DB: &str = "numbering";

pub async fn open_database(args: &DatabaseArgs) -> Result<Database, BoxError> {
    if let Some(url) = &args.database_url {
        let (config, mut tls) = tls::parse_url(url).map_err(|e| format!("DATABASE_URL: {e}"))?;
        if tls.ca_file.is_none() {
            tls.ca_file = args.database_ca_file.clone();
        }
        if tls.cert_file.is_none() && tls.key_file.is_none() {
            tls.cert_file = args.database_cert_file.clone();
            tls.key_file = args.database_key_file.clone();
        }
        return Ok(Database {
            config,
            tls,
            embedded: None,
        });
    }
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(embedded::default_data_dir);
    tracing::info!(dir = %dir.display(), "no DATABASE_URL: running a private PostgreSQL");
    let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&dir, &[])).await??;
    let (client, connection) = pg.config("postgres").connect(tokio_postgres::NoTls).await?;
    let conn = tokio::spawn(connection);
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&EMBEDDED_DB],
        )
        .await?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE {EMBEDDED_DB}"))
            .await?;
    }
    drop(client);
    let _ = conn.await;
    Ok(Database {
        config: pg.config(EMBEDDED_DB),
        tls: PgTls::default(),
        embedded: Some(pg),
    })
}

async fn authenticator(args: &ServeArgs) -> Result<Authenticator, BoxError> {
    let jwks = match (&args.jwt_jwks_file, &args.jwt_jwks_url) {
        (Some(file), _) => Some(JwksSource::File(file.clone())),
        (None, Some(url)) => Some(JwksSource::Url(url.clone())),
        (None, None) => None,
    };
    let configured = [
        args.jwt_hs256_secret.is_some(),
        args.jwt_public_key_file.is_some(),
        jwks.is_some(),
        args.oidc_issuer.is_some(),
    ];
    if configured.iter().filter(|c| **c).count() > 1 {
        return Err(
            "set one of an HS256 secret, a public key file, a JWKS (file or URL) or an OIDC \
             issuer, not several"
                .into(),
        );
    }
    if let Some(issuer) = &args.oidc_issuer {
        return Ok(Authenticator::oidc(
            issuer,
            args.jwt_audience.as_deref(),
            args.jwt_jwks_refresh,
        )
        .await
        .map_err(|e| format!("OIDC: {e}"))?
        .with_max_lifetime(args.jwt_max_lifetime));
    }
    if let Some(source) = jwks {
        return Ok(Authenticator::jwks(
            source,
            args.jwt_issuer.as_deref(),
            args.jwt_audience.as_deref(),
            args.jwt_jwks_refresh,
        )
        .await
        .map_err(|e| format!("JWKS: {e}"))?
        .with_max_lifetime(args.jwt_max_lifetime));
    }
    let key = match (&args.jwt_hs256_secret, &args.jwt_public_key_file) {
        (Some(secret), _) => Some(KeySource::Hs256Secret(secret.as_bytes().to_vec())),
        (None, Some(file)) => Some(KeySource::PublicKeyPem(
            std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?,
        )),
        (None, None) => None,
    };
    match key {
        Some(key) => Ok(Authenticator::new(
            key,
            args.jwt_issuer.as_deref(),
            args.jwt_audience.as_deref(),
        )?
        .with_max_lifetime(args.jwt_max_lifetime)),
        None if args.listen.ip().is_loopback() => {
            tracing::warn!(
                "AUTHENTICATION IS OFF: no JWT key is configured, every caller acts as the platform. \
                 Listening on loopback only."
            );
            Ok(Authenticator::disabled())
        }
        None => Err(format!(
            "refusing to listen on {} without authentication: set NUMBERING_JWT_HS256_SECRET, \
             NUMBERING_JWT_PUBLIC_KEY_FILE, NUMBERING_JWT_JWKS_FILE, NUMBERING_JWT_JWKS_URL or NUMBERING_OIDC_ISSUER, or listen on a loopback address",
            args.listen
        )
        .into()),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub async fn run(command: Command) -> Result<(), BoxError> {
    match command {
        // Their exit codes say more than an error: main runs them through `cli::run`.
        Command::Client(_) => Err("the client commands run through numbering::cli::run".into()),
        Command::Migrate(args) => {
            let database = open_database(&args).await?;
            let db = Db::with_tls(database.config.clone(), &database.tls, 2)?;
            let n = db.migrate().await?;
            tracing::info!(applied = n, "migrations done");
            Ok(())
        }
        Command::Serve(args) => {
            let auth = authenticator(&args).await?;
            let page_tokens = match &args.page_token_secret {
                Some(s) if s.len() < 32 => {
                    return Err("NUMBERING_PAGE_TOKEN_SECRET must be at least 32 bytes".into());
                }
                Some(s) => PageTokens::new(s.as_bytes().to_vec()),
                None => PageTokens::random(),
            };
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
            if args.metrics_listen != "off" {
                let addr = args.metrics_listen.parse().map_err(|_| {
                    format!(
                        "NUMBERING_METRICS_LISTEN: {:?} is not an address",
                        args.metrics_listen
                    )
                })?;
                metrics::install(addr)?;
                tracing::info!(address = %addr, "metrics on /metrics");
            }
            let database = open_database(&args.database).await?;
            let mut config = database.config.clone();
            crate::store::deadline::backstop(&mut config, args.database.statement_timeout);
            let db = Db::with_tls(config, &database.tls, args.database.db_max_connections)?;
            tracing::info!(address = %listener.local_addr()?, "listening");
            let tls = match (&args.tls_cert_file, &args.tls_key_file) {
                (Some(cert), Some(key)) => {
                    let read = |f: &std::path::PathBuf| {
                        std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display()))
                    };
                    let health_listener =
                        tokio::net::TcpListener::bind(args.health_listen)
                            .await
                            .map_err(|e| format!("cannot listen on {}: {e}", args.health_listen))?;
                    tracing::info!(address = %args.health_listen, "TLS on; plain-text health here");
                    Some(server::Tls {
                        cert_pem: read(cert)?,
                        key_pem: read(key)?,
                        health_listener,
                    })
                }
                _ => None,
            };
            let settings = server::Settings {
                tls,
                auth,
                page_tokens,
                health_interval: args.health_interval,
                sweep_interval: args.sweep_interval,
                idempotency_retention: args.idempotency_retention,
                fairness: server::Fairness {
                    stream_idle_timeout: args.stream_idle_timeout,
                    max_import_bytes: args.max_import_bytes,
                    max_streams_per_account: args
                        .max_streams_per_account
                        .map_or_else(server::default_streams_per_account, |n| n as usize),
                    max_streams: args
                        .max_streams
                        .map_or_else(server::default_streams, |n| n as usize),
                    max_expensive_per_account: args.max_expensive_calls_per_account as usize,
                    max_watches_per_account: args.max_watches_per_account as usize,
                    shutdown_grace: args.shutdown_grace,
                    watch_heartbeat: args.watch_heartbeat,
                    allocation_groups: args.allocation_groups as usize,
                },
            };
            server::serve(listener, db, settings, shutdown_signal()).await?;
            if let Some(mut pg) = database.embedded {
                tokio::task::spawn_blocking(move || pg.stop()).await?;
            }
            tracing::info!("stopped");
            Ok(())
        }
    }
}
