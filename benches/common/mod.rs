//! What every benchmark needs: a private PostgreSQL, the real server binary beside it, and a
//! client. Shared by the bench targets with `#[path]`.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use numbering::embedded::EmbeddedPostgres;
use numbering_client::Clients;

pub struct Bench {
    pub pg: EmbeddedPostgres,
    pub server: Child,
    pub endpoint: String,
    pub sql: tokio_postgres::Client,
    pub dir: PathBuf,
}

/// Starts a cluster in a fresh directory and the release server binary on it, with
/// authentication off (loopback).
pub async fn start(name: &str) -> Bench {
    let dir = std::env::temp_dir().join(format!("numbering-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pg = EmbeddedPostgres::start(
        &dir,
        &[
            ("shared_buffers", "1GB"),
            ("max_wal_size", "8GB"),
            ("synchronous_commit", "off"),
            ("max_connections", "200"),
        ],
    )
    .expect("start PostgreSQL");
    let (admin, conn) = pg
        .config("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    admin
        .batch_execute("CREATE DATABASE bench")
        .await
        .expect("create database");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!(
        "host={} user=postgres dbname=bench",
        dir.join("run").display()
    );
    let server = Command::new(env!("CARGO_BIN_EXE_numbering"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", &url)
        .env("NUMBERING_LOG", "warn")
        .env("NUMBERING_DB_MAX_CONNECTIONS", "40")
        .spawn()
        .expect("start the server");
    let (sql, conn) = pg
        .config("bench")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let bench = Bench {
        pg,
        server,
        endpoint: format!("http://127.0.0.1:{port}"),
        sql,
        dir,
    };
    // Wait for the schema (the server migrates at start).
    for _ in 0..300 {
        let ready = bench
            .sql
            .query_opt("SELECT 1 FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)", &[])
            .await
            .map(|r| r.is_some())
            .unwrap_or(false);
        if ready && bench.clients().await.is_some() {
            return bench;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server did not start");
}

impl Bench {
    pub async fn clients(&self) -> Option<Clients> {
        numbering_client::connect(self.endpoint.clone(), None)
            .await
            .ok()
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
        self.pg.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Environment variable as a number, with a default.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
