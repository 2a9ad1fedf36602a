//! Prometheus metrics on their own HTTP port: per-method call counts by gRPC code and call
//! latency, recorded by a tower layer around every service, and the database pool's state.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusBuilder;

/// Starts the exporter's HTTP listener (`GET /metrics`) and installs the global recorder.
pub fn install(listen: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(listen)
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
        ])
        .map_err(|e| e.to_string())?
        .install()
        .map_err(|e| format!("cannot serve metrics on {listen}: {e}"))
}

/// The label every path outside the served methods shares: a caller cannot add series (and
/// memory) by calling paths that do not exist.
pub const UNKNOWN_METHOD: &str = "unknown";

/// The paths (`/package.Service/Method`) of every method in the encoded descriptor sets.
pub fn methods(descriptor_sets: &[&[u8]]) -> HashSet<String> {
    let mut paths = HashSet::new();
    for bytes in descriptor_sets {
        let Ok(set) = <prost_types::FileDescriptorSet as prost::Message>::decode(*bytes) else {
            continue;
        };
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    paths.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    paths
}

/// Records every call: `grpc_server_handled_total{method, code}` and
/// `grpc_server_handling_seconds{method}`, `method` being one of the served methods or
/// [`UNKNOWN_METHOD`].
#[derive(Clone, Default)]
pub struct MetricsLayer {
    known: Arc<HashSet<String>>,
}

impl MetricsLayer {
    pub fn new(known: HashSet<String>) -> Self {
        Self {
            known: Arc::new(known),
        }
    }
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metered(inner, self.known.clone())
    }
}

#[derive(Clone)]
pub struct Metered<S>(S, Arc<HashSet<String>>);

impl<S, B, R> tower::Service<http::Request<B>> for Metered<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let method = if self.1.contains(path) {
            path.to_string()
        } else {
            UNKNOWN_METHOD.to_string()
        };
        let start = Instant::now();
        let call = self.0.call(request);
        Box::pin(async move {
            let response = call.await;
            // A failed call answers with its status in the headers (trailers-only); a
            // successful one has none there.
            let code = match &response {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map(|c| format!("{:?}", tonic::Code::from(c)))
                    .unwrap_or_else(|| "Ok".into()),
                Err(_) => "Transport".into(),
            };
            metrics::counter!("grpc_server_handled_total", "method" => method.clone(), "code" => code)
                .increment(1);
            metrics::histogram!("grpc_server_handling_seconds", "method" => method)
                .record(start.elapsed().as_secs_f64());
            response
        })
    }
}

/// The pool's size and idle connections, sampled with each health check.
pub fn record_pool(status: deadpool_postgres::Status) {
    metrics::gauge!("db_pool_connections").set(status.size as f64);
    metrics::gauge!("db_pool_available").set(status.available as f64);
    metrics::gauge!("db_pool_waiting").set(status.waiting as f64);
}
