//! The test harness: one private PostgreSQL cluster per test run, a migrated template database,
//! and per test a fresh database cloned from it and a real server on 127.0.0.1:0.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header, encode};
use numbering::auth::{Authenticator, KeySource};
use numbering::embedded::EmbeddedPostgres;
use numbering::paging::PageTokens;
use numbering::server::{Settings, serve};
use numbering::store::Db;
use numbering_client::Clients;
use numbering_client::v1 as pb;
use tokio::sync::oneshot;
use tonic::Code;
use tonic_types::StatusExt;

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

fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        // Built on its own thread: tests call this from inside their own runtimes.
        std::thread::spawn(|| {
            let root = std::env::temp_dir();
            sweep_stale(&root);
            let dir = root.join(format!("numbering-test-{}", std::process::id()));
            let pg = EmbeddedPostgres::start(
                &dir,
                &[
                    ("fsync", "off"),
                    ("synchronous_commit", "off"),
                    ("full_page_writes", "off"),
                    ("max_connections", "300"),
                ],
            )
            .expect("start the test PostgreSQL");
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
    pub sql: tokio_postgres::Client,
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
    let config = fresh_database().await;
    let auth = Authenticator::new(
        KeySource::Hs256Secret(SECRET.as_bytes().to_vec()),
        Some("numbering-tests"),
        None,
    )
    .expect("authenticator");
    spawn_with(config, auth).await
}

pub async fn spawn_with(config: tokio_postgres::Config, auth: Authenticator) -> TestApp {
    let db = Db::new(config.clone(), 8).expect("pool");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    let settings = Settings {
        tls: None,
        auth,
        page_tokens: PageTokens::random(),
        health_interval: Duration::from_millis(100),
        sweep_interval: Duration::from_millis(100),
    };
    tokio::spawn(serve(listener, db, settings, async move {
        let _ = stopped.await;
    }));
    let (sql, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let app = TestApp {
        endpoint,
        sql,
        _stop: stop,
    };
    app.wait_serving().await;
    app
}

impl TestApp {
    pub async fn health(&self) -> i32 {
        let channel = tonic::transport::Endpoint::from_shared(self.endpoint.clone())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status)
            .unwrap_or(-1)
    }

    async fn wait_serving(&self) {
        for _ in 0..100 {
            if self.health().await
                == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server never became SERVING");
    }

    /// Clients whose calls carry a token for `who`.
    pub async fn clients(&self, who: As<'_>) -> Clients {
        self.clients_with_token(Some(&token(who))).await
    }

    pub async fn clients_with_token(&self, token: Option<&str>) -> Clients {
        numbering_client::connect(self.endpoint.clone(), token)
            .await
            .expect("connect")
    }

    /// Creates a provider as the platform.
    pub async fn provider(&self, name: &str) -> pb::Account {
        let mut c = self.clients(As::Platform).await;
        c.tenancy
            .create_account(pb::CreateAccountRequest {
                account: Some(pb::Account {
                    display_name: name.into(),
                    kind: "provider".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("create provider")
            .into_inner()
    }

    /// Creates a child of `parent` as the platform.
    pub async fn child(&self, parent: &pb::Account, name: &str) -> pb::Account {
        let mut c = self.clients(As::Platform).await;
        c.tenancy
            .create_account(pb::CreateAccountRequest {
                account: Some(pb::Account {
                    parent_id: parent.id.clone(),
                    display_name: name.into(),
                    kind: "customer".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("create child")
            .into_inner()
    }
}

/// A provider with two children, `a` and `b`, and a grandchild `a1` under `a`.
pub struct Tree {
    pub provider: pb::Account,
    pub a: pb::Account,
    pub b: pb::Account,
    pub a1: pb::Account,
}

pub async fn tree(app: &TestApp) -> Tree {
    let provider = app.provider("Acme").await;
    let a = app.child(&provider, "Team A").await;
    let b = app.child(&provider, "Team B").await;
    let a1 = app.child(&a, "Team A1").await;
    Tree { provider, a, b, a1 }
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

/// The real `numbering` binary serving a fresh database, in its own process.
pub struct BinaryServer {
    pub process: std::process::Child,
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
                .create_account(pb::CreateAccountRequest {
                    account: Some(pb::Account {
                        display_name: name.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
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
    let db = fresh_database().await;
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
        .spawn()
        .expect("start the binary");
    let endpoint = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if let Ok(clients) =
            numbering_client::connect(endpoint.clone(), Some(&token(As::Platform))).await
        {
            return BinaryServer {
                process,
                clients,
                endpoint,
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = process.kill();
    let _ = process.wait();
    panic!("the binary never listened");
}
