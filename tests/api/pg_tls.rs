//! TLS to PostgreSQL: a private cluster that accepts TCP connections only over TLS (`hostssl`
//! in its pg_hba), with a certificate signed by a CA made for the run.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use numbering::embedded::EmbeddedPostgres;
use numbering::error::Error;
use numbering::store::Db;
use numbering::store::tls::parse_url;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::{free_port, health, spawn_binary};

struct TlsCluster {
    _pg: EmbeddedPostgres,
    port: u16,
    dir: PathBuf,
}

static CLUSTER: OnceLock<TlsCluster> = OnceLock::new();

/// The role (and its database) that may log in only with a client certificate naming it.
const CERTIFIED: &str = "certified";

/// A CA, written to `dir/name.crt`; its issuer signs server certificates.
fn ca(dir: &Path, name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("numbering test {name}"));
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), ca.pem()).unwrap();
    ca
}

fn cluster() -> &'static TlsCluster {
    CLUSTER.get_or_init(|| {
        std::thread::spawn(|| {
            let root = std::env::temp_dir();
            for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if let Some(pid) = name.strip_prefix("numbering-pgtls-")
                    && !PathBuf::from(format!("/proc/{pid}")).exists()
                {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
            let dir = root.join(format!("numbering-pgtls-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            ca(&dir, "other-ca");
            let ca = ca(&dir, "ca");
            let key = KeyPair::generate().unwrap();
            let server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            let file = |name: &str| dir.join(name).display().to_string();
            std::fs::write(file("server.crt"), server.pem()).unwrap();
            std::fs::write(file("server.key"), key.serialize_pem()).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(file("server.key"), std::fs::Permissions::from_mode(0o600))
                .unwrap();
            // A client certificate for the role `certified`, signed by the same CA.
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, CERTIFIED);
            let client_key = KeyPair::generate().unwrap();
            let client = params.signed_by(&client_key, &ca).unwrap();
            std::fs::write(file("client.crt"), client.pem()).unwrap();
            std::fs::write(file("client.key"), client_key.serialize_pem()).unwrap();
            // Over TCP, TLS or nothing; `certified` only with its client certificate.
            std::fs::write(
                file("pg_hba.conf"),
                format!(
                    "local all all trust\nhostssl all {CERTIFIED} 127.0.0.1/32 cert\n\
                     hostssl all all 127.0.0.1/32 trust\n"
                ),
            )
            .unwrap();
            let port = free_port();
            let pg = EmbeddedPostgres::start(
                &dir,
                &[
                    ("fsync", "off"),
                    ("ssl", "on"),
                    ("ssl_cert_file", &file("server.crt")),
                    ("ssl_key_file", &file("server.key")),
                    ("ssl_ca_file", &file("ca.crt")),
                    ("hba_file", &file("pg_hba.conf")),
                    ("listen_addresses", "127.0.0.1"),
                    ("port", &port.to_string()),
                ],
            )
            .expect("start the TLS-only PostgreSQL");
            let mut config = pg.config("postgres");
            config.port(port);
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
                    tokio::spawn(connection);
                    for statement in [
                        format!("CREATE ROLE {CERTIFIED} LOGIN"),
                        format!("CREATE DATABASE {CERTIFIED} OWNER {CERTIFIED}"),
                    ] {
                        client.batch_execute(&statement).await.unwrap();
                    }
                });
            TlsCluster { _pg: pg, port, dir }
        })
        .join()
        .expect("cluster thread")
    })
}

/// A connection string to the TLS cluster from 127.0.0.1, with `params` added.
fn url(params: &str) -> String {
    let c = cluster();
    format!(
        "postgresql://postgres@127.0.0.1:{}/postgres?{params}",
        c.port
    )
}

fn ca_file(name: &str) -> String {
    cluster()
        .dir
        .join(format!("{name}.crt"))
        .display()
        .to_string()
}

/// Whether the pool's connection is encrypted, or why none could be made.
async fn ssl_of(url: &str) -> Result<bool, Error> {
    let (config, tls) = parse_url(url).expect("a valid url");
    let db = Db::with_tls(config, &tls, 1)?;
    let client = db.client().await?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(Error::from)?;
    Ok(row.get(0))
}

#[tokio::test]
async fn sslmode_require_connects_over_tls() {
    assert!(ssl_of(&url("sslmode=require")).await.unwrap());
}

#[tokio::test]
async fn verify_full_with_the_servers_ca_connects_over_tls() {
    let u = url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        ca_file("ca")
    ));
    assert!(ssl_of(&u).await.unwrap());
    let u = url(&format!("sslmode=verify-ca&sslrootcert={}", ca_file("ca")));
    assert!(ssl_of(&u).await.unwrap());
}

#[tokio::test]
async fn verify_full_with_another_ca_is_refused_as_unavailable() {
    for mode in ["verify-full", "verify-ca", "require"] {
        let u = url(&format!(
            "sslmode={mode}&sslrootcert={}",
            ca_file("other-ca")
        ));
        match ssl_of(&u).await {
            Err(Error::Unavailable(why)) => {
                assert!(why.to_lowercase().contains("certificate"), "{mode}: {why}")
            }
            other => panic!("{mode}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn sslmode_disable_against_a_tls_only_server_is_refused_clearly() {
    match ssl_of(&url("sslmode=disable")).await {
        Err(Error::Unavailable(why)) => {
            assert!(
                why.contains("pg_hba.conf") && why.contains("no encryption"),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_binary_serves_on_a_tls_only_database_with_verify_full() {
    let server = spawn_binary(&[(
        "DATABASE_URL",
        url(&format!(
            "sslmode=verify-full&sslrootcert={}",
            ca_file("ca")
        )),
    )])
    .await;
    assert_eq!(
        health(&server.endpoint, "").await,
        ServingStatus::Serving as i32
    );
    server.stop();
}

/// A connection string for the role `certified` to its database, with `params` added.
fn certified_url(params: &str) -> String {
    format!(
        "postgresql://{CERTIFIED}@127.0.0.1:{}/{CERTIFIED}?sslmode=verify-full&sslrootcert={}&{params}",
        cluster().port,
        ca_file("ca")
    )
}

fn cluster_file(name: &str) -> String {
    cluster().dir.join(name).display().to_string()
}

#[tokio::test]
async fn a_client_certificate_from_the_url_logs_in_a_cert_only_role() {
    let u = certified_url(&format!(
        "sslcert={}&sslkey={}",
        cluster_file("client.crt"),
        cluster_file("client.key")
    ));
    let (config, tls) = parse_url(&u).unwrap();
    let db = Db::with_tls(config, &tls, 1).unwrap();
    let row = db
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT ssl, client_dn, current_user::text FROM pg_stat_ssl \
             WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    let dn: Option<String> = row.get(1);
    assert_eq!(dn.as_deref(), Some("/CN=certified"));
    assert_eq!(row.get::<_, String>(2), CERTIFIED);
}

#[tokio::test]
async fn a_cert_only_role_without_a_client_certificate_is_refused_as_unavailable() {
    match ssl_of(&certified_url("")).await {
        Err(Error::Unavailable(why)) => {
            assert!(why.contains("certificate"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_binary_serves_a_cert_only_role_with_the_certificate_flags() {
    let server = spawn_binary(&[
        ("DATABASE_URL", certified_url("")),
        ("NUMBERING_DATABASE_CERT_FILE", cluster_file("client.crt")),
        ("NUMBERING_DATABASE_KEY_FILE", cluster_file("client.key")),
    ])
    .await;
    assert_eq!(
        health(&server.endpoint, "").await,
        ServingStatus::Serving as i32
    );
    server.stop();
}
