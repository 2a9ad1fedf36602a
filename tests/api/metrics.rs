//! Metrics: the binary counts every call by method and code, and its latency and pool, on a
//! Prometheus port of its own, with a label set no caller can grow.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{free_port, spawn_binary};
use crate::requests::get_account;

async fn scrape(port: u16) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body
}

#[tokio::test]
async fn calls_are_counted_by_method_and_code_on_the_metrics_port() {
    let port = free_port();
    let mut server =
        spawn_binary(&[("NUMBERING_METRICS_LISTEN", format!("127.0.0.1:{port}"))]).await;
    server.provider("Metered").await;
    let _ = server
        .clients
        .tenancy
        .get_account(get_account("not-a-uuid"))
        .await;
    let body = scrape(port).await;
    server.stop();
    let counted = |method: &str, code: &str| {
        body.lines().any(|l| {
            l.starts_with("grpc_server_handled_total")
                && l.contains(&format!("method=\"/numbering.v1.TenancyService/{method}\""))
                && l.contains(&format!("code=\"{code}\""))
        })
    };
    assert!(counted("CreateAccount", "Ok"), "{body}");
    assert!(counted("GetAccount", "InvalidArgument"), "{body}");
    assert!(body.contains("grpc_server_handling_seconds"), "{body}");
    assert!(body.contains("db_pool_connections"), "{body}");
}

#[tokio::test]
async fn unknown_paths_share_one_label_so_callers_cannot_grow_the_metrics() {
    let port = free_port();
    let server = spawn_binary(&[("NUMBERING_METRICS_LISTEN", format!("127.0.0.1:{port}"))]).await;
    let channel = tonic::transport::Endpoint::from_shared(server.endpoint.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    for i in 0..2_000 {
        grpc.ready().await.unwrap();
        let path: http::uri::PathAndQuery = format!("/probe.Junk{i}/M{i}").parse().unwrap();
        let answer = grpc
            .unary(
                tonic::Request::new(()),
                path,
                tonic_prost::ProstCodec::<(), ()>::default(),
            )
            .await;
        assert_eq!(answer.unwrap_err().code(), tonic::Code::Unimplemented);
    }
    let body = scrape(port).await;
    server.stop();
    let series = body
        .lines()
        .filter(|l| l.starts_with("grpc_server_handled_total{"))
        .count();
    assert!(series < 10, "{series} series: {body}");
    assert!(
        !body.contains("probe.Junk"),
        "an unknown path became a label"
    );
    assert!(
        body.lines()
            .any(|l| l.starts_with("grpc_server_handled_total")
                && l.contains("method=\"unknown\"")
                && l.contains("code=\"Unimplemented\"")),
        "{body}"
    );
}
