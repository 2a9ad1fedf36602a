//! What every benchmark needs: a private PostgreSQL cluster with a `bench` database, the
//! PostgreSQL programs that go with it, accounts and numbers in bulk, the real server binary, and
//! the sums of a report. Shared by the bench targets with `#[path]`.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use numbering::domain::account::child_path;
use numbering::embedded::EmbeddedPostgres;
use numbering_client::Clients;
use numbering_client::v1 as pb;
use uuid::Uuid;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A private cluster in a fresh directory, with an empty database `bench`.
pub struct Cluster {
    pub pg: EmbeddedPostgres,
    pub dir: PathBuf,
    /// A connection to `bench`.
    pub sql: tokio_postgres::Client,
}

impl Cluster {
    /// Starts a cluster with these server settings under a directory named after the bench.
    pub async fn start(name: &str, settings: &[(&str, &str)]) -> Result<Self, BoxError> {
        let dir =
            std::env::temp_dir().join(format!("numbering-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pg = {
            let (dir, settings) = (dir.clone(), owned(settings));
            tokio::task::spawn_blocking(move || {
                let settings: Vec<(&str, &str)> = settings
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                EmbeddedPostgres::start(&dir, &settings)
            })
            .await??
        };
        connect(&pg, "postgres")
            .await?
            .batch_execute("CREATE DATABASE bench")
            .await?;
        let sql = connect(&pg, "bench").await?;
        Ok(Self { pg, dir, sql })
    }

    pub fn stop(mut self) {
        self.pg.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn owned(settings: &[(&str, &str)]) -> Vec<(String, String)> {
    settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub async fn connect(
    pg: &EmbeddedPostgres,
    dbname: &str,
) -> Result<tokio_postgres::Client, BoxError> {
    let (client, conn) = pg.config(dbname).connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

fn pg_config(arg: &str) -> Option<PathBuf> {
    let out = Command::new("pg_config").arg(arg).output().ok()?;
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && dir.is_dir()).then_some(dir)
}

/// A PostgreSQL program (`psql`, `pgbench`) of the same installation as the cluster's server.
pub fn pg_program(name: &str) -> PathBuf {
    numbering::embedded::bin_dir()
        .ok()
        .map(|d| d.join(name))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Whether the installation has the pg_stat_statements module, to preload in the cluster.
pub fn has_pg_stat_statements() -> bool {
    let beside = numbering::embedded::bin_dir()
        .ok()
        .and_then(|b| b.parent().map(|p| p.join("lib")));
    [beside, pg_config("--pkglibdir")]
        .into_iter()
        .flatten()
        .any(|lib| lib.join("pg_stat_statements.so").is_file())
}

/// Creates an account through the API: a provider, or a child of `parent`.
pub async fn create_account(
    c: &mut Clients,
    parent: Option<&pb::Account>,
    name: &str,
) -> Result<pb::Account, BoxError> {
    let request = pb::CreateAccountRequest {
        account: Some(pb::Account {
            parent_id: parent.map(|p| p.id.clone()).unwrap_or_default(),
            display_name: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(c.tenancy.create_account(request).await?.into_inner())
}

/// Puts `count` AVAILABLE numbers in the provider's pool, +1 (2000000000 + `from`) upwards, a
/// million per statement. Straight into the table: the API would take minutes for what a
/// benchmark only needs to exist.
pub async fn seed_numbers(
    sql: &tokio_postgres::Client,
    provider: &pb::Account,
    from: i64,
    count: i64,
) -> Result<(), BoxError> {
    let id = Uuid::parse_str(&provider.id)?;
    let path = child_path("", id);
    let mut done = 0;
    while done < count {
        let n = (count - done).min(1_000_000);
        sql.execute(
            "INSERT INTO numbers (id, provider_id, e164, holder_id, holder_path, status)
             SELECT gen_random_uuid(), $1, '+1' || (2000000000 + g)::text, $1, $2, 'available'
             FROM generate_series($3::bigint, $4::bigint) g",
            &[&id, &path, &(from + done), &(from + done + n - 1)],
        )
        .await?;
        done += n;
    }
    sql.batch_execute("VACUUM ANALYZE").await?;
    Ok(())
}

/// The cluster and the release server binary on it, with authentication off (loopback).
pub struct Bench {
    pub cluster: Cluster,
    pub server: Child,
    pub endpoint: String,
}

/// Starts a cluster with `settings` and the server binary on it; waits until it has migrated.
pub async fn start(name: &str, settings: &[(&str, &str)]) -> Result<Bench, BoxError> {
    let cluster = Cluster::start(name, settings).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!(
        "host={} user=postgres dbname=bench",
        cluster.dir.join("run").display()
    );
    let server = Command::new(env!("CARGO_BIN_EXE_numbering"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", &url)
        .env("NUMBERING_LOG", "warn")
        .env("NUMBERING_DB_MAX_CONNECTIONS", "40")
        .spawn()?;
    let bench = Bench {
        cluster,
        server,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    // Wait for the schema (the server migrates at start).
    for _ in 0..300 {
        let ready = bench
            .cluster
            .sql
            .query_opt("SELECT 1 FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)", &[])
            .await
            .map(|r| r.is_some())
            .unwrap_or(false);
        // Migrated is not yet serving: the server opens its readiness gate just after, so a
        // call is what says it answers.
        if ready && bench.answers().await {
            return Ok(bench);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("the server did not start".into())
}

impl Bench {
    pub async fn clients(&self) -> Result<Clients, BoxError> {
        Ok(numbering_client::connect(self.endpoint.clone(), None).await?)
    }

    /// Whether the server answers calls (anything but UNAVAILABLE).
    async fn answers(&self) -> bool {
        let Ok(mut c) = self.clients().await else {
            return false;
        };
        let probe = c
            .number_pool
            .get_inventory(pb::GetInventoryRequest {
                account_id: Uuid::nil().to_string(),
                include_subtree: false,
            })
            .await;
        !matches!(probe, Err(s) if s.code() == tonic::Code::Unavailable)
    }

    /// The server's resident memory now and at its peak, in MiB.
    pub fn server_memory_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.server.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub fn stop(mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        self.cluster.stop();
    }
}

/// Environment variable as a number (`1_000_000` reads too), with a default.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile of sorted samples (the default when there are none).
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
