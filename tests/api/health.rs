use std::time::Duration;

use numbering::auth::Authenticator;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::spawn_app;

/// A server whose database is a socket directory where no PostgreSQL listens.
async fn health_of_a_server_without_database() -> HealthClient<tonic::transport::Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let mut config = tokio_postgres::Config::new();
    config
        .host_path("/nonexistent-numbering-socket-dir")
        .user("postgres")
        .dbname("none")
        .connect_timeout(Duration::from_millis(200));
    let db = numbering::store::Db::new(config, 1).unwrap();
    let settings = numbering::server::Settings {
        tls: None,
        auth: Authenticator::disabled(),
        page_tokens: numbering::paging::PageTokens::random(),
        health_interval: Duration::from_millis(50),
        sweep_interval: Duration::from_millis(50),
    };
    // The server runs until the test's runtime ends.
    tokio::spawn(numbering::server::serve(
        listener,
        db,
        settings,
        std::future::pending(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let channel = tonic::transport::Endpoint::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
}

async fn status(health: &mut HealthClient<tonic::transport::Channel>, service: &str) -> i32 {
    health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

#[tokio::test]
async fn health_is_serving_once_the_database_is_migrated() {
    let app = spawn_app().await;
    assert_eq!(app.health().await, ServingStatus::Serving as i32);
}

#[tokio::test]
async fn health_is_not_serving_while_the_database_is_unreachable() {
    let mut health = health_of_a_server_without_database().await;
    for service in [
        "",
        "numbering.v1.TenancyService",
        "numbering.v1.AllocationService",
    ] {
        assert_eq!(
            status(&mut health, service).await,
            ServingStatus::NotServing as i32,
            "service {service:?}"
        );
    }
}

#[tokio::test]
async fn liveness_stays_serving_while_the_database_is_unreachable() {
    let mut health = health_of_a_server_without_database().await;
    assert_eq!(
        status(&mut health, numbering::server::LIVENESS).await,
        ServingStatus::Serving as i32
    );
    assert_eq!(
        status(&mut health, "").await,
        ServingStatus::NotServing as i32
    );
}
