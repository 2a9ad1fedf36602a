//! OpenTelemetry traces exported over OTLP/HTTP (protobuf) when `--otlp-endpoint` is set: the
//! span of every call (see `server::call_span`) becomes an OpenTelemetry span whose parent is the
//! caller's W3C `traceparent`, so the call joins the caller's trace. Off, none of this runs.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// How long one export may take before it is given up.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The provider, once export is on: what makes spans OpenTelemetry spans, and what is flushed
/// at exit.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether traces are exported (the per-call work is skipped when not).
pub fn enabled() -> bool {
    PROVIDER.get().is_some()
}

/// The OTLP/HTTP traces URL of a collector's base `endpoint` (as `OTEL_EXPORTER_OTLP_ENDPOINT`:
/// `/v1/traces` is added), or of a URL that already names it.
pub fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

/// Starts exporting to `endpoint` (in batches, from a thread of the SDK's own) and returns the
/// tracing layer that turns spans into OpenTelemetry spans. Call it inside the Tokio runtime:
/// the exports are sent from it.
pub fn start<S>(endpoint: &str) -> Result<impl tracing_subscriber::Layer<S>, String>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let url = traces_url(endpoint);
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("--otlp-endpoint {endpoint:?}: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!(
            "--otlp-endpoint {endpoint:?}: an http:// or https:// URL"
        ));
    }
    let client = OnRuntime {
        client: reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("the OTLP HTTP client: {e}"))?,
        runtime: tokio::runtime::Handle::try_current()
            .map_err(|_| "OTLP export needs the Tokio runtime".to_string())?,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .with_timeout(EXPORT_TIMEOUT)
        .with_http_client(client)
        .build()
        .map_err(|e| format!("the OTLP exporter: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("numbering").build())
        .build();
    let tracer = provider.tracer("numbering");
    PROVIDER
        .set(provider)
        .map_err(|_| "OTLP export started twice".to_string())?;
    Ok(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// Sends the spans still in the batch; the binary calls it before it exits.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(e) = provider.shutdown()
    {
        tracing::warn!(error = %e, "OTLP: the last spans were not sent");
    }
}

/// Makes `span` a child of the caller's `traceparent` in `headers`, when export is on and the
/// header is valid (otherwise the span starts a trace of its own).
pub fn adopt_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    if !enabled() {
        return;
    }
    let parent =
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The trace id of the current span's OpenTelemetry span, when export is on: the id a call
/// without a `traceparent` is logged with, so its log line and its trace meet.
pub fn current_trace_id() -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// The exporter's HTTP client: reqwest, run on the server's Tokio runtime, since the SDK's batch
/// thread that awaits an export has no runtime of its own.
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let request = reqwest::Request::try_from(request)?;
        let answer = self.runtime.spawn(async move {
            let response = client.execute(request).await?;
            let status = response.status();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        });
        let (status, body) = answer.await??;
        Ok(Response::builder().status(status).body(body)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_to_a_base_endpoint_once() {
        assert_eq!(
            traces_url("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/v1/traces"),
            "http://collector:4318/v1/traces"
        );
    }
}
