//! The test harness: one private PostgreSQL cluster per test run, a migrated template database,
//! and per test a fresh database cloned from it and a real server on 127.0.0.1:0.
//!
//! [`seed`] sets the scene through the API; [`inspect`] reads what the API does not show.

mod inspect;
mod seed;

pub use inspect::Snapshot;
pub use seed::{Tree, e164s};

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header, encode};
use numbering::auth::{Authenticator, KeySource};
use numbering::embedded::EmbeddedPostgres;
use numbering::paging::PageTokens;
use numbering::server::{Fairness, Settings, serve};
use numbering::store::Db;
use numbering_client::Clients;
use numbering_client::v1 as pb;
use tokio::sync::oneshot;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

use crate::requests;

pub const SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

struct Cluster {
    pg: EmbeddedPostgres,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// Removes the clusters of earlier runs that are no longer running.
fn sweep_stale(root: &std::path::Path) {
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(pid) = name.strip_prefix("numbering-test-")
            && !PathBuf::from(format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Where the cluster logs every statement it runs, when `NUMBERING_STATEMENT_LOG` names a
/// directory: a CSV log per test run (`statements-<pid>.csv`), which `tests/routing.rs` reads to
/// check that each statement on a distributed table is routed by provider (see
/// deploy/citus.md). Bind values are left out: the check needs the text only.
pub const STATEMENT_LOG: &str = "NUMBERING_STATEMENT_LOG";

fn statement_log() -> Vec<(&'static str, String)> {
    let Some(dir) = std::env::var_os(STATEMENT_LOG).filter(|d| !d.is_empty()) else {
        return Vec::new();
    };
    let dir = std::path::absolute(PathBuf::from(dir)).expect("the statement log directory");
    std::fs::create_dir_all(&dir).expect("create the statement log directory");
    // PostgreSQL runs as `postgres` when the tests run as root: it must be able to write there.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777))
            .expect("open the statement log directory");
    }
    vec![
        ("logging_collector", "on".into()),
        ("log_destination", "csvlog".into()),
        ("log_directory", dir.display().to_string()),
        (
            "log_filename",
            format!("statements-{}.log", std::process::id()),
        ),
        ("log_file_mode", "0644".into()),
        ("log_rotation_age", "0".into()),
        ("log_rotation_size", "0".into()),
        ("log_statement", "all".into()),
        ("log_parameter_max_length", "0".into()),
    ]
}

fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        // Built on its own thread: tests call this from inside their own runtimes.
        std::thread::spawn(|| {
            let root = std::env::temp_dir();
            sweep_stale(&root);
            let dir = root.join(format!("numbering-test-{}", std::process::id()));
            let mut settings = vec![
                ("fsync", "off".to_string()),
                ("synchronous_commit", "off".to_string()),
                ("full_page_writes", "off".to_string()),
                ("max_connections", "300".to_string()),
            ];
            settings.extend(statement_log());
            let settings: Vec<(&str, &str)> =
                settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let pg = EmbeddedPostgres::start(&dir, &settings).expect("start the test PostgreSQL");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let admin = connect(&pg, "postgres").await;
                for sql in ["DROP DATABASE IF EXISTS tmpl", "CREATE DATABASE tmpl"] {
                    admin.batch_execute(sql).await.expect("create the template");
                }
                let db = Db::new(pg.config("tmpl"), 1).expect("pool");
                db.migrate().await.expect("migrate the template");
            });
            Cluster { pg }
        })
        .join()
        .expect("cluster thread")
    })
}

async fn connect(pg: &EmbeddedPostgres, dbname: &str) -> tokio_postgres::Client {
    let (client, conn) = pg
        .config(dbname)
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the test cluster");
    tokio::spawn(conn);
    client
}

/// A fresh database cloned from the migrated template.
pub async fn fresh_database() -> tokio_postgres::Config {
    let cluster = cluster();
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = connect(&cluster.pg, "postgres").await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE tmpl"))
        .await
        .expect("clone the template");
    cluster.pg.config(&name)
}

/// A running server on its own database.
pub struct TestApp {
    pub endpoint: String,
    /// The test's own connection to the server's database, to read what the API does not show.
    pub sql: tokio_postgres::Client,
    /// The server's database, for more connections of the test's own.
    pub database: tokio_postgres::Config,
    /// Clients acting as the platform, which may do anything: the scene's stagehand.
    platform: Clients,
    _stop: oneshot::Sender<()>,
}

/// Who a token speaks for.
#[derive(Clone, Copy)]
pub enum As<'a> {
    Platform,
    Admin(&'a str),
    Operator(&'a str),
    Viewer(&'a str),
}

pub fn token(who: As<'_>) -> String {
    let (account, roles): (Option<&str>, Vec<&str>) = match who {
        As::Platform => (None, vec!["platform"]),
        As::Admin(a) => (Some(a), vec!["admin"]),
        As::Operator(a) => (Some(a), vec!["operator"]),
        As::Viewer(a) => (Some(a), vec!["viewer"]),
    };
    let mut claims = serde_json::json!({
        "sub": format!("test:{}", account.unwrap_or("platform")),
        "roles": roles,
        "exp": now() + 3600,
        "iss": "numbering-tests",
    });
    if let Some(a) = account {
        claims["account"] = a.into();
    }
    sign(&claims)
}

pub fn sign(claims: &serde_json::Value) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(8, Fairness::default()).await
}

/// A server with a pool of `connections` and these limits.
pub async fn spawn_app_with(connections: usize, fairness: Fairness) -> TestApp {
    let config = fresh_database().await;
    let auth = Authenticator::new(
        KeySource::Hs256Secret(SECRET.as_bytes().to_vec()),
        Some("numbering-tests"),
        None,
    )
    .expect("authenticator");
    let settings = Settings {
        fairness,
        ..settings(auth)
    };
    spawn_with(config, connections, settings).await
}

/// A server on a database of the test's choosing (a cluster it can stop and start), already
/// migrated.
pub async fn spawn_app_on(config: tokio_postgres::Config) -> TestApp {
    let auth = Authenticator::new(
        KeySource::Hs256Secret(SECRET.as_bytes().to_vec()),
        Some("numbering-tests"),
        None,
    )
    .expect("authenticator");
    spawn_with(config, 8, settings(auth)).await
}

/// The server's settings in tests: no TLS, and its background work (health, sweeper) often.
pub fn settings(auth: Authenticator) -> Settings {
    Settings {
        tls: None,
        auth,
        page_tokens: PageTokens::random(),
        health_interval: Duration::from_millis(50),
        sweep_interval: Duration::from_millis(100),
        idempotency_retention: Duration::from_secs(86_400),
        fairness: Fairness::default(),
    }
}

async fn spawn_with(
    config: tokio_postgres::Config,
    connections: usize,
    settings: Settings,
) -> TestApp {
    let db = Db::new(config.clone(), connections).expect("pool");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, db, settings, async move {
        let _ = stopped.await;
    }));
    let (sql, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    wait_serving(&endpoint).await;
    let platform = connect_as(&endpoint, Some(&token(As::Platform))).await;
    TestApp {
        endpoint,
        sql,
        database: config,
        platform,
        _stop: stop,
    }
}

/// The health status the server at `endpoint` answers for `service` ("" for the whole server),
/// or -1 when it does not answer.
pub async fn health(endpoint: &str, service: &str) -> i32 {
    let Ok(channel) = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .expect("endpoint")
        .connect()
        .await
    else {
        return -1;
    };
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status)
        .unwrap_or(-1)
}

/// Waits until the server at `endpoint` is SERVING: its database migrated.
pub async fn wait_serving(endpoint: &str) {
    for _ in 0..100 {
        if health(endpoint, "").await == ServingStatus::Serving as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server never became SERVING");
}

pub async fn connect_config(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

async fn connect_as(endpoint: &str, token: Option<&str>) -> Clients {
    numbering_client::connect(endpoint.to_string(), token)
        .await
        .expect("connect")
}

impl TestApp {
    /// Another connection of the test's own to the server's database.
    pub async fn connect_sql(&self) -> tokio_postgres::Client {
        connect_config(&self.database).await
    }

    pub async fn health(&self) -> i32 {
        health(&self.endpoint, "").await
    }

    /// Clients whose calls carry a token for `who`.
    pub async fn clients(&self, who: As<'_>) -> Clients {
        self.clients_with_token(Some(&token(who))).await
    }

    pub async fn clients_with_token(&self, token: Option<&str>) -> Clients {
        connect_as(&self.endpoint, token).await
    }

    /// Clients of the platform, the operator of the whole service.
    pub fn platform(&self) -> Clients {
        self.platform.clone()
    }

    /// Clients of an admin of `account`.
    pub async fn admin(&self, account: &pb::Account) -> Clients {
        self.clients(As::Admin(&account.id)).await
    }

    /// Clients of an operator of `account`: day-to-day changes of single numbers.
    pub async fn operator(&self, account: &pb::Account) -> Clients {
        self.clients(As::Operator(&account.id)).await
    }

    /// Clients of a viewer of `account`: reads only.
    pub async fn viewer(&self, account: &pb::Account) -> Clients {
        self.clients(As::Viewer(&account.id)).await
    }
}

/// The answer of a call that must succeed.
pub fn ok<T>(result: Result<tonic::Response<T>, tonic::Status>) -> T {
    match result {
        Ok(answer) => answer.into_inner(),
        Err(status) => panic!("the call should have succeeded: {status:?}"),
    }
}

/// The whole CSV an export streams.
pub async fn export_csv(c: &mut Clients, request: pb::ExportNumbersRequest) -> String {
    let mut stream = ok(c.number_pool.export_numbers(request).await);
    let mut bytes = Vec::new();
    while let Some(part) = stream.message().await.expect("the export streams") {
        bytes.extend(part.chunk);
    }
    String::from_utf8(bytes).expect("the export is UTF-8")
}

/// The ErrorInfo reason of a failed call, after checking its code.
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
) -> tonic::Status {
    let status = result.expect_err("the call should have failed");
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    let info = status
        .get_details_error_info()
        .expect("every error carries an ErrorInfo");
    assert_eq!(info.domain, "numbering");
    assert!(
        info.reason
            .chars()
            .all(|c| c.is_ascii_uppercase() || c == '_'),
        "reason is UPPER_SNAKE: {}",
        info.reason
    );
    status
}

/// The fields named by a BadRequest detail.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// The rule kinds named by a PreconditionFailure detail.
pub fn violated_preconditions(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_precondition_failure()
        .map(|p| p.violations.into_iter().map(|v| v.r#type).collect())
        .unwrap_or_default()
}

/// Checks that a call was refused as INVALID_ARGUMENT naming exactly `fields`, in order.
pub fn assert_invalid<T: std::fmt::Debug>(result: Result<T, tonic::Status>, fields: &[&str]) {
    let status = assert_error(result, Code::InvalidArgument);
    assert_eq!(violated_fields(&status), fields);
}

/// Checks that a call was refused as FAILED_PRECONDITION by the one rule `kind`.
pub fn assert_violates<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    kind: &str,
) -> tonic::Status {
    let status = assert_error(result, Code::FailedPrecondition);
    assert_eq!(violated_preconditions(&status), [kind]);
    status
}

/// The real `numbering` binary serving a fresh database, in its own process.
pub struct BinaryServer {
    pub process: std::process::Child,
    /// The binary's database.
    pub database: tokio_postgres::Config,
    pub clients: Clients,
    pub endpoint: String,
}

impl BinaryServer {
    /// Creates a provider, waiting until the database is migrated.
    pub async fn provider(&mut self, name: &str) -> pb::Account {
        for _ in 0..100 {
            let created = self
                .clients
                .tenancy
                .create_account(requests::create_account("", name))
                .await;
            if let Ok(p) = created {
                return p.into_inner();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the server never migrated its database");
    }

    pub fn stop(mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts the binary on a fresh database with the test secret and `env` added; the clients act
/// as the platform.
pub async fn spawn_binary(env: &[(&str, String)]) -> BinaryServer {
    spawn_binary_with(fresh_database().await, env, std::process::Stdio::inherit()).await
}

/// Starts the binary on the database `db` (several may share one) with the test secret and
/// `env` added; the clients act as the platform.
pub async fn spawn_binary_on(db: tokio_postgres::Config, env: &[(&str, String)]) -> BinaryServer {
    spawn_binary_with(db, env, std::process::Stdio::inherit()).await
}

/// [`spawn_binary`], with the binary's stdout (its log) going to `stdout`.
pub async fn spawn_binary_logging_to(
    env: &[(&str, String)],
    stdout: std::process::Stdio,
) -> BinaryServer {
    spawn_binary_with(fresh_database().await, env, stdout).await
}

async fn spawn_binary_with(
    db: tokio_postgres::Config,
    env: &[(&str, String)],
    stdout: std::process::Stdio,
) -> BinaryServer {
    let host = db
        .get_hosts()
        .iter()
        .find_map(|h| match h {
            tokio_postgres::config::Host::Unix(p) => Some(p.display().to_string()),
            _ => None,
        })
        .expect("the test cluster listens on a socket");
    let url = format!(
        "host={host} user=postgres dbname={}",
        db.get_dbname().unwrap_or_default()
    );
    let port = free_port();
    let mut process = std::process::Command::new(env!("CARGO_BIN_EXE_numbering"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", url)
        .env("NUMBERING_JWT_HS256_SECRET", SECRET)
        .env("NUMBERING_JWT_ISSUER", "numbering-tests")
        .env("NUMBERING_LOG", "warn")
        .env("NUMBERING_METRICS_LISTEN", "off")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(stdout)
        .spawn()
        .expect("start the binary");
    let endpoint = format!("http://127.0.0.1:{port}");
    // Over TLS, health answers on its own plain port: the TLS tests wait for it themselves.
    let tls = env.iter().any(|(k, _)| *k == "NUMBERING_TLS_CERT_FILE");
    for _ in 0..200 {
        if let Ok(clients) =
            numbering_client::connect(endpoint.clone(), Some(&token(As::Platform))).await
            && (tls || health(&endpoint, "").await == ServingStatus::Serving as i32)
        {
            return BinaryServer {
                process,
                database: db,
                clients,
                endpoint,
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = process.kill();
    let _ = process.wait();
    panic!("the binary never became SERVING");
}
