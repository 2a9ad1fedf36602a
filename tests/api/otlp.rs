//! OpenTelemetry export: with `--otlp-endpoint`, the real binary sends each call's span over
//! OTLP/HTTP to a collector (here a small one on loopback), as a child of the caller's W3C
//! `traceparent`; without a traceparent, the call's log line names the trace it started.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::helpers::{As, BinaryServer, spawn_binary_logging_to, token};
use crate::requests::get_account;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_ID: &str = "b7ad6b7169203331";

/// A collector on loopback: its endpoint, and the spans of every `POST /v1/traces` it is sent.
async fn collector() -> (String, mpsc::UnboundedReceiver<Vec<Span>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_exports(stream, tx.clone()));
        }
    });
    (endpoint, rx)
}

/// Answers the HTTP/1.1 requests of one connection with 200, passing on the spans of each.
async fn serve_exports(stream: tokio::net::TcpStream, spans: mpsc::UnboundedSender<Vec<Span>>) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push(line.trim_end().to_ascii_lowercase());
        }
        let length = head
            .iter()
            .find_map(|h| h.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        if head[0].starts_with("post /v1/traces ")
            && let Ok(export) = ExportTraceServiceRequest::decode(body.as_slice())
        {
            let _ = spans.send(
                export
                    .resource_spans
                    .into_iter()
                    .flat_map(|r| r.scope_spans)
                    .flat_map(|s| s.spans)
                    .collect(),
            );
        }
        let answer =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if stream.get_mut().write_all(answer).await.is_err() {
            return;
        }
    }
}

/// The first exported span `wanted` picks, waiting for exports as they come.
async fn exported(
    spans: &mut mpsc::UnboundedReceiver<Vec<Span>>,
    wanted: impl Fn(&Span) -> bool,
) -> Option<Span> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Ok(Some(batch)) = tokio::time::timeout_at(deadline, spans.recv()).await {
        if let Some(span) = batch.into_iter().find(&wanted) {
            return Some(span);
        }
    }
    None
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A binary exporting to `endpoint` in batches sent every 100 ms, logging JSON to a file.
async fn exporting_server(endpoint: &str) -> (BinaryServer, tempfile::NamedTempFile) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let server = spawn_binary_logging_to(
        &[
            ("NUMBERING_OTLP_ENDPOINT", endpoint.to_string()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
            ("NUMBERING_LOG", "info".into()),
            ("NUMBERING_LOG_FORMAT", "json".into()),
        ],
        log.reopen().unwrap().into(),
    )
    .await;
    (server, log)
}

#[tokio::test]
async fn a_call_is_exported_as_a_span_of_the_callers_trace() {
    let (endpoint, mut spans) = collector().await;
    let (mut server, _log) = exporting_server(&endpoint).await;
    let provider = server.provider("Traced").await;
    let mut c = numbering_client::connect(
        server.endpoint.clone(),
        Some(&token(As::Admin(&provider.id))),
    )
    .await
    .unwrap();
    let mut request = tonic::Request::new(get_account(&provider.id));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_ID}-01").parse().unwrap(),
    );
    c.tenancy.get_account(request).await.unwrap();

    let span = exported(&mut spans, |s| hex(&s.trace_id) == TRACE_ID).await;
    server.stop();
    let span = span.expect("a span of the caller's trace reaches the collector");
    assert_eq!(span.name, "call");
    assert_eq!(
        hex(&span.parent_span_id),
        PARENT_ID,
        "the caller's span is its parent"
    );
    let method = span
        .attributes
        .iter()
        .find(|a| a.key == "method")
        .and_then(|a| a.value.as_ref())
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    assert!(
        method.contains("/numbering.v1.TenancyService/GetAccount"),
        "{span:?}"
    );
}

#[tokio::test]
async fn a_call_without_traceparent_logs_the_trace_id_it_exports() {
    let (endpoint, mut spans) = collector().await;
    let (mut server, log) = exporting_server(&endpoint).await;
    let provider = server.provider("Rooted").await;
    let mut request = tonic::Request::new(get_account(&provider.id));
    request
        .metadata_mut()
        .insert("x-request-id", "otlp-root-1".parse().unwrap());
    server.clients.tenancy.get_account(request).await.unwrap();

    let mut logged = None;
    for _ in 0..100 {
        let text = std::fs::read_to_string(log.path()).unwrap();
        logged = text
            .lines()
            .find(|l| l.contains("otlp-root-1") && l.contains("numbering::call"))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap());
        if logged.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let trace_id = logged.expect("the call's log line")["fields"]["trace_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let span = exported(&mut spans, |s| hex(&s.trace_id) == trace_id).await;
    server.stop();
    let span = span.expect("the logged trace id is the exported span's");
    assert_eq!(span.name, "call");
    assert!(span.parent_span_id.is_empty(), "a root span: {span:?}");
}
