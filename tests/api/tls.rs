use std::time::Duration;

use numbering::auth::Authenticator;
use numbering::server::{Settings, Tls, serve};
use numbering_client::v1 as pb;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::fresh_database;

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
        auth: Authenticator::disabled(),
        page_tokens: numbering::paging::PageTokens::random(),
        health_interval: Duration::from_millis(50),
        sweep_interval: Duration::from_secs(60),
    };
    tokio::spawn(serve(listener, db, settings, std::future::pending()));

    // Health, in plain text on its own port, turns SERVING once the database is migrated.
    let plain = Endpoint::from_shared(format!("http://{health_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(plain);
    let mut serving = false;
    for _ in 0..100 {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        if status == ServingStatus::Serving as i32 {
            serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(serving);

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
    let created = clients
        .tenancy
        .create_account(pb::CreateAccountRequest {
            account: Some(pb::Account {
                display_name: "Over TLS".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.display_name, "Over TLS");

    // ...and not in plain text.
    let mut plain_clients = numbering_client::connect(format!("http://{addr}"), None)
        .await
        .unwrap();
    let refused = plain_clients
        .tenancy
        .get_account(pb::GetAccountRequest { id: created.id })
        .await;
    assert!(refused.is_err());
}
