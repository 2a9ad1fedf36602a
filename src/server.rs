//! The gRPC server: the three services behind authentication, health and reflection, graceful
//! shutdown, TCP_NODELAY on every connection.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::auth::{AuthInterceptor, Authenticator};
use crate::error::Error;
use crate::grpc::deadline::DeadlineLayer;
use crate::grpc::proto;
use crate::grpc::proto::v1::allocation_service_server::AllocationServiceServer;
use crate::grpc::proto::v1::number_pool_service_server::NumberPoolServiceServer;
use crate::grpc::proto::v1::tenancy_service_server::TenancyServiceServer;
use crate::grpc::streams::Streams;
use crate::grpc::{AppState, allocation::Allocation, number_pool::NumberPool, tenancy::Tenancy};
use crate::limits::Limits;
use crate::paging::PageTokens;
use crate::store::Db;

/// Largest message a caller may send (an import chunk is at most 4 MiB).
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// The services health reports on; "" is the whole server.
const SERVICES: &[&str] = &[
    "",
    "numbering.v1.TenancyService",
    "numbering.v1.NumberPoolService",
    "numbering.v1.AllocationService",
];

/// The health service name that answers SERVING as long as the process is up.
pub const LIVENESS: &str = "liveness";

/// TLS on the gRPC listener; health then answers in plain text on a listener of its own
/// (Kubernetes' gRPC probes speak no TLS).
pub struct Tls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub health_listener: TcpListener,
}

pub struct Settings {
    pub tls: Option<Tls>,
    pub auth: Authenticator,
    pub page_tokens: PageTokens,
    pub health_interval: Duration,
    /// How often expired reservations and finished aging periods are swept.
    pub sweep_interval: Duration,
    /// How long answers to request ids are kept for retries.
    pub idempotency_retention: Duration,
    /// What keeps one caller from starving the others, and the drain's grace period.
    pub fairness: Fairness,
}

/// The limits of shared resources per caller, and how long a drain waits.
#[derive(Debug, Clone)]
pub struct Fairness {
    /// How long a stream may wait on its peer before it is ended.
    pub stream_idle_timeout: Duration,
    /// The most CSV one import may send.
    pub max_import_bytes: u64,
    /// Import and export streams one account may have open at once.
    pub max_streams_per_account: usize,
    /// Import and export streams all accounts together may have open at once.
    pub max_streams: usize,
    /// Expensive calls one account may have running at once.
    pub max_expensive_per_account: usize,
    /// WatchNumberEvents streams one account may have open at once.
    pub max_watches_per_account: usize,
    /// How long a drain lets calls finish before it ends the streams still open.
    pub shutdown_grace: Duration,
    /// How long a watch with nothing to send waits before it sends a heartbeat.
    pub watch_heartbeat: Duration,
    /// Groups of quantity allocations in the database at once (0: each allocation alone).
    pub allocation_groups: usize,
}

/// Streams of all accounts at once, by default: one per core (at least two). An import parses
/// and an export encodes CSV, CPU work; capping them by cores leaves the others' calls theirs.
pub fn default_streams() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
}

/// Streams of one account at once, by default: half of all (at least one), so that one tenant
/// never holds every stream place, and its streams take at most half the cores.
pub fn default_streams_per_account() -> usize {
    (default_streams() / 2).max(1)
}

impl Default for Fairness {
    fn default() -> Self {
        Self {
            stream_idle_timeout: Duration::from_secs(30),
            max_import_bytes: 256 * 1024 * 1024,
            max_streams_per_account: default_streams_per_account(),
            max_streams: default_streams(),
            max_expensive_per_account: 8,
            max_watches_per_account: 4,
            shutdown_grace: Duration::from_secs(20),
            watch_heartbeat: Duration::from_secs(10),
            allocation_groups: 4,
        }
    }
}

/// After the grace period, how long the ended streams have to tell their callers so.
const STOP_LINGER: Duration = Duration::from_secs(2);

/// Reflection over every service the server answers: ours, health, and the `google.rpc` details
/// in errors. One list for both protocol versions.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    [
        proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_types::pb::FILE_DESCRIPTOR_SET,
    ]
    .into_iter()
    .fold(
        tonic_reflection::server::Builder::configure(),
        tonic_reflection::server::Builder::register_encoded_file_descriptor_set,
    )
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    for s in SERVICES {
        reporter.set_service_status(*s, status).await;
    }
}

/// Whether the database is reachable with the expected schema: what health reports, and what
/// lets calls through ([`Gate`]).
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }
}

/// In front of the three services: UNAVAILABLE (with RetryInfo) while the database is not
/// ready, before migrations finish or once its schema changed under us, rather than whatever
/// a missing table makes of a call; then authentication.
#[derive(Clone)]
struct Gate {
    ready: Readiness,
    auth: AuthInterceptor,
}

impl tonic::service::Interceptor for Gate {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if !self.ready.is_ready() {
            return Err(Error::Unavailable("the database is not ready".into()).into());
        }
        self.auth.call(request)
    }
}

/// Keeps health and [`Readiness`] in step with the database: NOT_SERVING until it is reachable
/// and migrated, and again whenever it is lost or its schema is not the one this build
/// migrated to (a database dropped and recreated under the server); NOT_SERVING for good once
/// draining starts.
async fn watch_database(
    db: Db,
    reporter: HealthReporter,
    readiness: Readiness,
    interval: Duration,
    mut draining: watch::Receiver<bool>,
) {
    let mut migrated = false;
    let mut serving = false;
    loop {
        crate::metrics::record_pool(db.pool_status());
        crate::metrics::record_process();
        let ok = if migrated {
            db.schema_is_current().await.unwrap_or(false)
        } else {
            match db.migrate().await {
                Ok(n) => {
                    tracing::info!(applied = n, "database migrated");
                    migrated = true;
                    true
                }
                Err(e) => {
                    tracing::warn!(error = %e, "database not ready");
                    false
                }
            }
        };
        if ok != serving {
            serving = ok;
            let status = if ok {
                tracing::info!("serving");
                ServingStatus::Serving
            } else {
                tracing::warn!("database lost or its schema changed: not serving");
                ServingStatus::NotServing
            };
            readiness.set(ok);
            set_health(&reporter, status).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = draining.changed() => break,
        }
    }
    set_health(&reporter, ServingStatus::NotServing).await;
}

/// The span of one call, entered while it runs, so that every line it logs (an INTERNAL's
/// cause among them) names its method, its request and trace ids (recorded by
/// [`ObserveLayer`](crate::observe::ObserveLayer)), its caller (recorded by the authentication)
/// and, once the mutation runner records it, the idempotency key of its body. At ERROR level:
/// it must be on the lines it exists for whatever the log filter.
fn call_span(request: &http::Request<()>) -> tracing::Span {
    let span = tracing::error_span!(
        "call",
        method = %crate::error::bounded(request.uri().path(), crate::error::MAX_ECHO_BYTES),
        request_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        subject = tracing::field::Empty,
        account = tracing::field::Empty,
        idempotency_key = tracing::field::Empty,
    );
    // Exported, the call's span is a child of the caller's span.
    crate::telemetry::adopt_parent(&span, request.headers());
    span
}

/// Serves on `listener` until `shutdown` completes, then stops accepting, finishes in-flight
/// calls and returns.
pub async fn serve(
    listener: TcpListener,
    db: Db,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    set_health(&reporter, ServingStatus::NotServing).await;
    // For liveness probes: SERVING while the process runs, whatever the database does, so a
    // database outage makes pods unready, not restarted.
    reporter
        .set_service_status(LIVENESS, ServingStatus::Serving)
        .await;
    let (drain_tx, drain_rx) = watch::channel(false);
    let sweeper = tokio::spawn(crate::sweeper::run(
        db.clone(),
        settings.sweep_interval,
        settings.idempotency_retention,
        drain_rx.clone(),
    ));
    let drain_rx_health = drain_rx.clone();
    let readiness = Readiness::default();
    let mut drain_rx_grace = drain_rx.clone();
    let watcher = tokio::spawn(watch_database(
        db.clone(),
        reporter,
        readiness.clone(),
        settings.health_interval,
        drain_rx,
    ));

    let reflection_v1 = reflection().build_v1().inspect_err(|e| {
        tracing::error!(error = %e, "reflection v1 off");
    });
    let reflection_v1alpha = reflection().build_v1alpha().inspect_err(|e| {
        tracing::error!(error = %e, "reflection v1alpha off");
    });

    let fairness = settings.fairness;
    let (stop_tx, stop_rx) = watch::channel(false);
    let together = (fairness.allocation_groups > 0)
        .then(|| crate::grpc::together::Together::new(db.clone(), fairness.allocation_groups));
    let state = AppState {
        db,
        together,
        page_tokens: settings.page_tokens,
        limits: Limits::new(
            fairness.max_streams_per_account,
            fairness.max_streams,
            fairness.max_expensive_per_account,
            fairness.max_watches_per_account,
        ),
        streams: Streams {
            idle_timeout: fairness.stream_idle_timeout,
            max_import_bytes: fairness.max_import_bytes,
            watch_heartbeat: fairness.watch_heartbeat,
            stop: stop_rx,
        },
    };
    let auth = Gate {
        ready: readiness,
        auth: AuthInterceptor(settings.auth),
    };
    let tenancy = TenancyServiceServer::new(Tenancy(state.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let number_pool = NumberPoolServiceServer::new(NumberPool(state.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let allocation = AllocationServiceServer::new(Allocation(state))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);

    let shutdown = async move {
        shutdown.await;
        tracing::info!("draining: no new connections, finishing in-flight calls");
        let _ = drain_tx.send(true);
    };
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = Server::builder().trace_fn(call_span);
    let mut plain_health = None;
    if let Some(tls) = settings.tls {
        builder = builder.tls_config(
            ServerTlsConfig::new().identity(Identity::from_pem(tls.cert_pem, tls.key_pem)),
        )?;
        let mut drained = drain_rx_health;
        let health_only = Server::builder()
            .add_service(health.clone())
            .serve_with_incoming_shutdown(
                TcpIncoming::from(tls.health_listener).with_nodelay(Some(true)),
                async move {
                    let _ = drained.wait_for(|d| *d).await;
                },
            );
        plain_health = Some(tokio::spawn(health_only));
    }
    // The first layer is the outermost: the log line and the metrics see every answer, the
    // deadline's too.
    let mut builder = builder
        .layer(crate::observe::ObserveLayer::new(crate::metrics::methods(
            &[
                proto::FILE_DESCRIPTOR_SET,
                tonic_health::pb::FILE_DESCRIPTOR_SET,
            ]
            .into_iter()
            .chain([
                tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            ])
            .collect::<Vec<_>>(),
        )))
        .layer(DeadlineLayer);
    let router = builder
        .add_service(health)
        .add_service(tonic::service::interceptor::InterceptedService::new(
            tenancy,
            auth.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            number_pool,
            auth.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            allocation, auth,
        ));
    let serving = router
        .add_optional_service(reflection_v1.ok())
        .add_optional_service(reflection_v1alpha.ok())
        .serve_with_incoming_shutdown(incoming, shutdown);
    // The drain lets calls finish for the grace period; then the streams still open (an idle
    // import, an export nobody reads) are ended, and after a moment to say so, the server
    // stops whatever is left.
    let grace = fairness.shutdown_grace;
    let deadline = async move {
        if drain_rx_grace.wait_for(|d| *d).await.is_err() {
            return std::future::pending().await;
        }
        tokio::time::sleep(grace).await;
        tracing::warn!(
            grace_s = grace.as_secs_f64(),
            "grace period over: ending open streams"
        );
        let _ = stop_tx.send(true);
        tokio::time::sleep(STOP_LINGER).await;
        tracing::warn!("calls still open after the grace period are dropped");
    };
    let result = tokio::select! {
        result = serving => result,
        () = deadline => Ok(()),
    };
    let _ = watcher.await;
    let _ = sweeper.await;
    if let Some(h) = plain_health {
        let _ = h.await;
    }
    result
}
