//! Metrics: the binary counts every call by method and code, and its latency and pool, on a
//! Prometheus port of its own, with a label set no caller can grow.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use numbering_client::v1 as pb;

use crate::helpers::{free_port, spawn_binary};
use crate::requests::{add_number, get_account};

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
    assert!(counted("CreateAccount", "OK"), "{body}");
    assert!(counted("GetAccount", "INVALID_ARGUMENT"), "{body}");
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
                && l.contains("code=\"UNIMPLEMENTED\"")),
        "{body}"
    );
}

/// The value of the sample line that starts with `series` (name and labels), if any.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

fn import_request(part: pb::import_numbers_request::Part) -> pb::ImportNumbersRequest {
    pb::ImportNumbersRequest { part: Some(part) }
}

#[tokio::test]
async fn metrics_on_all_interfaces_are_described_and_count_streams_pool_process_and_imports() {
    use pb::import_numbers_request::Part;
    let port = free_port();
    // All interfaces, as a container declares it; scraped here through loopback.
    let mut server = spawn_binary(&[("NUMBERING_METRICS_LISTEN", format!("0.0.0.0:{port}"))]).await;
    let provider = server.provider("Scraped").await;
    let options = |mode: pb::ImportMode| {
        import_request(Part::Options(pb::ImportOptions {
            owner_id: provider.id.clone(),
            mode: mode as i32,
            region: "US".into(),
            request_id: String::new(),
        }))
    };
    // An import: one good row, one bad.
    let mut answers = server
        .clients
        .number_pool
        .import_numbers(futures::stream::iter([
            options(pb::ImportMode::BestEffort),
            import_request(Part::Chunk(b"e164\n+13035550100\nnot a number\n".to_vec())),
        ]))
        .await
        .unwrap()
        .into_inner();
    while answers.message().await.unwrap().is_some() {}
    // An import left open: in flight until it ends.
    let mut open = server.clients.number_pool.clone();
    let first = options(pb::ImportMode::BestEffort);
    let held = tokio::spawn(async move {
        let messages =
            futures::StreamExt::chain(futures::stream::iter([first]), futures::stream::pending());
        let _ = open.import_numbers(messages).await;
    });
    let import = "{method=\"/numbering.v1.NumberPoolService/ImportNumbers\"}";
    let mut body = String::new();
    for _ in 0..100 {
        body = scrape(port).await;
        if sample(&body, &format!("grpc_server_in_flight{import}")) == Some(1.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    held.abort();
    server.stop();
    assert_eq!(
        sample(&body, &format!("grpc_server_in_flight{import}")),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, &format!("grpc_server_started_total{import}")),
        Some(2.0),
        "{body}"
    );
    for described in [
        "# HELP grpc_server_started_total",
        "# TYPE grpc_server_started_total counter",
        "# HELP grpc_server_handled_total",
        "# TYPE grpc_server_in_flight gauge",
        "# TYPE grpc_server_handling_seconds histogram",
        "# HELP db_pool_available",
        "# TYPE process_cpu_seconds_total counter",
        "# HELP numbering_import_rows_total",
    ] {
        assert!(body.contains(described), "{described} missing: {body}");
    }
    let create = "method=\"/numbering.v1.TenancyService/CreateAccount\"";
    assert!(
        body.contains(&format!(
            "grpc_server_handling_seconds_bucket{{{create},le=\"0.001\"}}"
        )) && body.contains(&format!(
            "grpc_server_handling_seconds_bucket{{{create},le=\"10\"}}"
        )),
        "a millisecond to ten seconds: {body}"
    );
    for positive in [
        "db_pool_max_connections",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_threads",
        "process_start_time_seconds",
    ] {
        assert!(
            sample(&body, positive).is_some_and(|v| v > 0.0),
            "{positive}: {body}"
        );
    }
    assert_eq!(
        sample(&body, "numbering_import_rows_total{outcome=\"imported\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "numbering_import_rows_total{outcome=\"rejected\"}"),
        Some(1.0),
        "{body}"
    );
}

/// The value of the one sample of `metric` whose labels include every one of `labels`.
fn labelled(body: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn database_transactions_errors_and_pool_waits_are_measured() {
    let port = free_port();
    let mut server =
        spawn_binary(&[("NUMBERING_METRICS_LISTEN", format!("127.0.0.1:{port}"))]).await;
    let provider = server.provider("Queried").await;
    let pool = &mut server.clients.number_pool;
    pool.add_number(add_number(&provider, "+13035550142"))
        .await
        .unwrap();
    // The same number again: refused by the database's unique constraint (SQLSTATE 23505).
    let refused = pool
        .add_number(add_number(&provider, "+13035550142"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::AlreadyExists);
    // Validated only: rolled back.
    let mut checked = add_number(&provider, "+13035550143");
    checked.validate_only = true;
    pool.add_number(checked).await.unwrap();
    // A retried request id: answered from the stored answer.
    let mut once = add_number(&provider, "+13035550144");
    once.request_id = uuid::Uuid::new_v4().to_string();
    pool.add_number(once.clone()).await.unwrap();
    pool.add_number(once).await.unwrap();

    let body = scrape(port).await;
    server.stop();
    let transactions = |outcome: &str| {
        labelled(
            &body,
            "db_transaction_seconds_count",
            &["method=\"AddNumber\"", &format!("outcome=\"{outcome}\"")],
        )
    };
    assert_eq!(transactions("commit"), Some(2.0), "{body}");
    assert_eq!(transactions("error"), Some(1.0), "{body}");
    assert_eq!(transactions("rollback"), Some(1.0), "{body}");
    assert_eq!(transactions("replay"), Some(1.0), "{body}");
    assert!(
        labelled(
            &body,
            "db_transaction_seconds_count",
            &["method=\"CreateAccount\""]
        )
        .is_some_and(|n| n >= 1.0),
        "{body}"
    );
    assert_eq!(
        labelled(&body, "db_errors_total", &["class=\"23\""]),
        Some(1.0),
        "{body}"
    );
    assert!(
        sample(&body, "db_pool_wait_seconds_count").is_some_and(|n| n >= 6.0),
        "every call waited for a connection: {body}"
    );
    assert!(
        body.contains("db_pool_wait_seconds_bucket{le=\"0.0001\"}"),
        "pool waits have buckets below a millisecond: {body}"
    );
    for described in [
        "# HELP db_transaction_seconds",
        "# TYPE db_transaction_seconds histogram",
        "# HELP db_pool_wait_seconds",
        "# TYPE db_pool_wait_seconds histogram",
        "# HELP db_errors_total",
        "# TYPE db_errors_total counter",
    ] {
        assert!(body.contains(described), "{described} missing: {body}");
    }
}
