//! TLS: with a certificate the services speak only TLS, and health answers in plain text on a
//! port of its own, for probes that carry no certificate.

use numbering::auth::Authenticator;
use numbering::server::{Settings, Tls, serve};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use crate::helpers::{fresh_database, ok, settings, wait_serving};
use crate::requests::{create_account, get_account};

const CA: &[u8] = include_bytes!("../fixtures/tls-test-ca.pem");
const CERT: &[u8] = include_bytes!("../fixtures/tls-test-cert.pem");
const KEY: &[u8] = include_bytes!("../fixtures/tls-test-key.pem");

#[tokio::test]
async fn with_tls_the_services_speak_tls_and_health_answers_in_plain_text_on_its_own_port() {
    let db = numbering::store::Db::new(fresh_database().await, 2).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, health_addr) = (
        listener.local_addr().unwrap(),
        health_listener.local_addr().unwrap(),
    );
    let settings = Settings {
        tls: Some(Tls {
            cert_pem: CERT.to_vec(),
            key_pem: KEY.to_vec(),
            health_listener,
        }),
        ..settings(Authenticator::disabled())
    };
    tokio::spawn(serve(listener, db, settings, std::future::pending()));

    // Health, in plain text on its own port, turns SERVING once the database is migrated.
    wait_serving(&format!("http://{health_addr}")).await;

    // The services answer over TLS to a client that trusts the certificate...
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(CA))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut clients = numbering_client::with_channel(channel, None).unwrap();
    let created = ok(clients
        .tenancy
        .create_account(create_account("", "Over TLS"))
        .await);
    assert_eq!(created.display_name, "Over TLS");

    // ...and not in plain text.
    let mut plain_clients = numbering_client::connect(format!("http://{addr}"), None)
        .await
        .unwrap();
    let refused = plain_clients
        .tenancy
        .get_account(get_account(&created.id))
        .await;
    assert!(refused.is_err());
}
