//! Observability: one log line per call, in both formats, with its method, canonical code,
//! latency, caller, request id (`x-request-id`, honoured or generated, and answered) and trace
//! id (W3C `traceparent`), written by the real binary to a stdout that is not a terminal.

use std::time::Duration;

use numbering_client::v1 as pb;
use tonic::Code;

use crate::helpers::{As, BinaryServer, spawn_binary_logging_to, token};
use crate::requests::get_account;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A binary logging at INFO in `format` into a file, and that file.
async fn logging_server(format: &str) -> (BinaryServer, tempfile::NamedTempFile) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let server = spawn_binary_logging_to(
        &[
            ("NUMBERING_LOG", "info".into()),
            ("NUMBERING_LOG_FORMAT", format.into()),
        ],
        log.reopen().unwrap().into(),
    )
    .await;
    (server, log)
}

/// The log lines that contain `needle`, once at least `n` of them are there (or after a while).
async fn lines_with(log: &tempfile::NamedTempFile, needle: &str, n: usize) -> Vec<String> {
    let mut found = Vec::new();
    for _ in 0..100 {
        let text = std::fs::read_to_string(log.path()).unwrap();
        found = text
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect();
        if found.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    found
}

/// A GetAccount of `id` by the admin of `admin_of`, with `x-request-id` and `traceparent` when
/// given.
async fn get(
    server: &BinaryServer,
    admin_of: &str,
    id: &str,
    request_id: Option<&str>,
    traceparent: Option<&str>,
) -> Result<tonic::Response<pb::Account>, tonic::Status> {
    let mut c =
        numbering_client::connect(server.endpoint.clone(), Some(&token(As::Admin(admin_of))))
            .await
            .unwrap();
    let mut request = tonic::Request::new(get_account(id));
    if let Some(r) = request_id {
        request
            .metadata_mut()
            .insert("x-request-id", r.parse().unwrap());
    }
    if let Some(t) = traceparent {
        request
            .metadata_mut()
            .insert("traceparent", t.parse().unwrap());
    }
    c.tenancy.get_account(request).await
}

#[tokio::test]
async fn a_call_logs_one_json_line_with_method_code_latency_caller_and_ids() {
    let (mut server, log) = logging_server("json").await;
    let provider = server.provider("Logged").await;

    let answer = get(
        &server,
        &provider.id,
        &provider.id,
        Some("obs-req-1"),
        Some(TRACEPARENT),
    )
    .await
    .unwrap();
    assert_eq!(
        answer
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("obs-req-1"),
        "the caller's request id is answered"
    );
    // A refusal, without a request id: one is generated, answered with the error too.
    let refused = get(&server, &provider.id, "not-a-uuid", None, None)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let generated = refused
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("a generated request id on the error")
        .to_string();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");

    let ok = lines_with(&log, "obs-req-1", 1).await;
    let failed = lines_with(&log, &generated, 1).await;
    server.stop();
    assert_eq!(ok.len(), 1, "one line per call: {ok:#?}");
    assert_eq!(failed.len(), 1, "one line per call: {failed:#?}");
    let fields = |line: &str| {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        assert_eq!(v["target"], "numbering::call", "{line}");
        v["fields"].clone()
    };
    let ok = fields(&ok[0]);
    assert_eq!(ok["method"], "/numbering.v1.TenancyService/GetAccount");
    assert_eq!(ok["code"], "OK");
    assert!(ok["latency_ms"].as_f64().is_some_and(|l| l >= 0.0), "{ok}");
    assert_eq!(ok["subject"], format!("test:{}", provider.id));
    assert_eq!(ok["account"], provider.id);
    assert_eq!(ok["request_id"], "obs-req-1");
    assert_eq!(ok["trace_id"], TRACE_ID);
    let failed = fields(&failed[0]);
    assert_eq!(failed["code"], "INVALID_ARGUMENT");
    assert_eq!(failed["subject"], format!("test:{}", provider.id));
    let trace = failed["trace_id"].as_str().unwrap_or_default();
    assert!(
        trace.len() == 32 && trace != TRACE_ID,
        "a trace id is generated without a traceparent: {failed}"
    );
}

#[tokio::test]
async fn the_human_format_carries_the_same_fields_in_plain_text() {
    let (mut server, log) = logging_server("human").await;
    let provider = server.provider("Plain").await;
    get(
        &server,
        &provider.id,
        &provider.id,
        Some("obs-human-1"),
        Some(TRACEPARENT),
    )
    .await
    .unwrap();
    let lines = lines_with(&log, "obs-human-1", 1).await;
    let whole = std::fs::read_to_string(log.path()).unwrap();
    server.stop();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = &lines[0];
    for part in [
        "method=\"/numbering.v1.TenancyService/GetAccount\"",
        "code=\"OK\"",
        "latency_ms=",
        &format!("subject=\"test:{}\"", provider.id),
        &format!("account=\"{}\"", provider.id),
        "request_id=\"obs-human-1\"",
        &format!("trace_id=\"{TRACE_ID}\""),
    ] {
        assert!(line.contains(part), "{part} missing from {line}");
    }
    assert!(
        !whole.contains('\u{1b}'),
        "colour codes in a log that is not a terminal"
    );
}

/// `numbering health` against `endpoint` for `service`: its exit code.
async fn health_exit(endpoint: &str, service: &str) -> Option<i32> {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_numbering"))
        .args([
            "health",
            "--server",
            endpoint,
            "--service",
            service,
            "--timeout",
            "10",
        ])
        .output()
        .await
        .unwrap()
        .status
        .code()
}

#[tokio::test]
async fn the_health_command_exits_0_when_serving_and_1_otherwise() {
    let (server, _log) = logging_server("human").await;
    let endpoint = server.endpoint.clone();
    assert_eq!(health_exit(&endpoint, "").await, Some(0));
    assert_eq!(health_exit(&endpoint, "liveness").await, Some(0));
    // A service health does not know answers NOT_FOUND: not healthy.
    assert_eq!(health_exit(&endpoint, "no.such.Service").await, Some(1));
    server.stop();
    assert_eq!(health_exit(&endpoint, "").await, Some(1), "nothing listens");
}
