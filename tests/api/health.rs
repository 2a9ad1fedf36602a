//! Health: the server is SERVING once its database is migrated, NOT_SERVING while the database
//! is unreachable, and alive (liveness) all the while.

use std::time::Duration;

use numbering::auth::Authenticator;
use numbering::server::LIVENESS;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::{health, settings, spawn_app};

/// A server whose database is a socket directory where no PostgreSQL listens; answers its
/// endpoint.
async fn server_without_database() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let mut config = tokio_postgres::Config::new();
    config
        .host_path("/nonexistent-numbering-socket-dir")
        .user("postgres")
        .dbname("none")
        .connect_timeout(Duration::from_millis(200));
    let db = numbering::store::Db::new(config, 1).unwrap();
    // The server runs until the test's runtime ends.
    tokio::spawn(numbering::server::serve(
        listener,
        db,
        settings(Authenticator::disabled()),
        std::future::pending(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    endpoint
}

#[tokio::test]
async fn health_is_serving_once_the_database_is_migrated() {
    let app = spawn_app().await;
    assert_eq!(app.health().await, ServingStatus::Serving as i32);
}

#[tokio::test]
async fn health_is_not_serving_while_the_database_is_unreachable() {
    let endpoint = server_without_database().await;
    for service in [
        "",
        "numbering.v1.TenancyService",
        "numbering.v1.AllocationService",
    ] {
        assert_eq!(
            health(&endpoint, service).await,
            ServingStatus::NotServing as i32,
            "service {service:?}"
        );
    }
}

#[tokio::test]
async fn liveness_stays_serving_while_the_database_is_unreachable() {
    let endpoint = server_without_database().await;
    assert_eq!(
        health(&endpoint, LIVENESS).await,
        ServingStatus::Serving as i32
    );
    assert_eq!(
        health(&endpoint, "").await,
        ServingStatus::NotServing as i32
    );
}
