use std::time::Duration;

use numbering::auth::Authenticator;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_is_serving_once_the_database_is_migrated() {
    let app = spawn_app().await;
    assert_eq!(app.health().await, ServingStatus::Serving as i32);
}

#[tokio::test]
async fn health_is_not_serving_while_the_database_is_unreachable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    // A socket directory where no PostgreSQL listens.
    let mut config = tokio_postgres::Config::new();
    config
        .host_path("/nonexistent-numbering-socket-dir")
        .user("postgres")
        .dbname("none")
        .connect_timeout(Duration::from_millis(200));
    let db = numbering::store::Db::new(config, 1).unwrap();
    let settings = numbering::server::Settings {
        auth: Authenticator::disabled(),
        page_tokens: numbering::paging::PageTokens::random(),
        health_interval: Duration::from_millis(50),
        sweep_interval: Duration::from_millis(50),
    };
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(numbering::server::serve(
        listener,
        db,
        settings,
        async move {
            let _ = stopped.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let channel = tonic::transport::Endpoint::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in ["", "numbering.v1.TenancyService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            ServingStatus::NotServing as i32,
            "service {service:?}"
        );
    }
}

#[tokio::test]
async fn liveness_stays_serving_while_the_database_is_unreachable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let mut config = tokio_postgres::Config::new();
    config
        .host_path("/nonexistent-numbering-socket-dir")
        .user("postgres")
        .dbname("none");
    let db = numbering::store::Db::new(config, 1).unwrap();
    let settings = numbering::server::Settings {
        auth: Authenticator::disabled(),
        page_tokens: numbering::paging::PageTokens::random(),
        health_interval: Duration::from_millis(50),
        sweep_interval: Duration::from_millis(50),
    };
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(numbering::server::serve(
        listener,
        db,
        settings,
        async move {
            let _ = stopped.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let channel = tonic::transport::Endpoint::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = |service: &str| tonic_health::pb::HealthCheckRequest {
        service: service.into(),
    };
    let live = health
        .check(status(numbering::server::LIVENESS))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(live.status, ServingStatus::Serving as i32);
    let ready = health.check(status("")).await.unwrap().into_inner();
    assert_eq!(ready.status, ServingStatus::NotServing as i32);
}
