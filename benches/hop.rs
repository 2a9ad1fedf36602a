//! Where a call's time goes above its query, run with `cargo bench --bench hop`. One caller,
//! calls interleaved so that the machine's noise weighs on every side alike, p50 of each:
//! - an empty call (health Check) to the server, and to a bare tonic server on the same machine
//!   (no layers, nothing else): what the server's layers add to any call;
//! - GetAccount beside its bare query: what any call costs over its query;
//! - a page of 100 by prefix (ListNumbers) from the server, from the bare tonic server running
//!   the same query on one connection and converting the rows with the server's own code, and
//!   the bare query: what the server's flow adds, and what gRPC and the rows cost at all.
//!
//! The bare server is this bench's own binary, started again with `HOP_BARE_SERVER` set.

#[path = "common/mod.rs"]
mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use numbering_client::v1 as pb;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use uuid::Uuid;

use common::{BoxError, Latencies, create_account, env_u64, seed_numbers};

/// Set on the bare server's process: the database to read, and the port to serve on.
const BARE_SERVER: &str = "HOP_BARE_SERVER";
const BARE_PORT: &str = "HOP_BARE_PORT";

/// ListNumbers and nothing else, straight on tonic's unary machinery: the query on one
/// connection, the rows through the server's own conversions.
#[derive(Clone)]
struct BareList(Arc<(tokio_postgres::Client, tokio_postgres::Statement)>);

impl tonic::server::NamedService for BareList {
    const NAME: &'static str = "numbering.v1.NumberPoolService";
}

impl tonic::server::UnaryService<pb::ListNumbersRequest> for BareList {
    type Response = pb::ListNumbersResponse;
    type Future = BoxFuture<'static, Result<tonic::Response<Self::Response>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<pb::ListNumbersRequest>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let filter = request.into_inner().filter.unwrap_or_default();
            let owner = Uuid::parse_str(&filter.owner_id)
                .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
            let (sql, statement) = &*state;
            let rows = sql
                .query(
                    statement,
                    &[&owner, &filter.prefix, &format!("{}:", filter.prefix)],
                )
                .await
                .map_err(|e| tonic::Status::internal(e.to_string()))?;
            let more = rows.len() > 100;
            let numbers = rows
                .iter()
                .take(100)
                .map(|r| {
                    numbering::grpc::convert::number_to_proto(numbering::store::numbers::from_row(
                        r,
                    ))
                })
                .collect();
            Ok(tonic::Response::new(pb::ListNumbersResponse {
                numbers,
                next_page_token: if more { "more".into() } else { String::new() },
            }))
        })
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for BareList {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move {
            if request.uri().path() != "/numbering.v1.NumberPoolService/ListNumbers" {
                return Ok(tonic::Status::unimplemented("").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(service, request).await)
        })
    }
}

/// The bare server's process: health and [`BareList`], nothing in front of them.
async fn serve_bare(url: String, port: u16) -> Result<(), BoxError> {
    let (sql, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let statement = common::prepare_bare_page(&sql).await?;
    let (_, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    Server::builder()
        .add_service(health)
        .add_service(BareList(Arc::new((sql, statement))))
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await?;
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let runtime = tokio::runtime::Runtime::new()?;
    if let Ok(url) = std::env::var(BARE_SERVER) {
        let port = std::env::var(BARE_PORT)?.parse()?;
        return runtime.block_on(serve_bare(url, port));
    }
    runtime.block_on(measure())
}

/// What a page's rows cost in CPU on each side, in process: the server's decoding of the
/// database's rows, its conversion to messages and their encoding, and the caller's decoding.
fn row_costs(rows: &[tokio_postgres::Row]) -> Result<(), BoxError> {
    use numbering::grpc::convert::number_to_proto;
    use numbering::store::numbers::from_row;
    use prost::Message;
    const TIMES: u32 = 2_000;
    let rows = &rows[..rows.len().min(100)];
    let each = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        for _ in 0..TIMES {
            f();
        }
        t.elapsed() / TIMES
    };
    let decoded = each(&mut || {
        std::hint::black_box(rows.iter().map(from_row).collect::<Vec<_>>());
    });
    let numbers: Vec<_> = rows.iter().map(from_row).collect();
    let converted = each(&mut || {
        std::hint::black_box(
            numbers
                .iter()
                .cloned()
                .map(number_to_proto)
                .collect::<Vec<_>>(),
        );
    });
    let cloned = each(&mut || {
        std::hint::black_box(numbers.to_vec());
    });
    let page = pb::ListNumbersResponse {
        numbers: numbers.iter().cloned().map(number_to_proto).collect(),
        next_page_token: "more".into(),
    };
    let encoded = each(&mut || {
        std::hint::black_box(page.encode_to_vec());
    });
    let bytes = page.encode_to_vec();
    let mut failed = None;
    let read = each(&mut || {
        if let Err(e) = pb::ListNumbersResponse::decode(&bytes[..]) {
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    println!(
        "a page's {} rows in CPU: the server decodes them from the database in {:.1} µs, converts them in {:.1} µs (of which {:.1} µs copying), encodes {} bytes in {:.1} µs; the caller decodes them in {:.1} µs",
        rows.len(),
        decoded.as_secs_f64() * 1e6,
        converted.as_secs_f64() * 1e6,
        cloned.as_secs_f64() * 1e6,
        bytes.len(),
        encoded.as_secs_f64() * 1e6,
        read.as_secs_f64() * 1e6,
    );
    Ok(())
}

async fn measure() -> Result<(), BoxError> {
    let calls = env_u64("BENCH_HOP_CALLS", 3_000);
    let statements = common::has_pg_stat_statements();
    let mut settings = vec![("shared_buffers", "256MB")];
    if statements {
        settings.push(("shared_preload_libraries", "pg_stat_statements"));
    }
    let b = common::start("hop", &settings).await?;
    if statements {
        b.cluster
            .sql
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await?;
    }
    let mut c = b.clients().await?;
    let provider = create_account(&mut c, None, "Hop").await?;
    seed_numbers(&b.cluster.sql, &provider, 0, 200_000).await?;
    let provider_id = Uuid::parse_str(&provider.id)?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!(
        "host={} user=postgres dbname=bench",
        b.cluster.dir.join("run").display()
    );
    let _bare = common::Server::spawn(
        std::process::Command::new(std::env::current_exe()?)
            .env(BARE_SERVER, &url)
            .env(BARE_PORT, port.to_string()),
    )?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let channel = loop {
        if let Ok(channel) = tonic::transport::Endpoint::from_shared(endpoint.clone())?
            .connect()
            .await
        {
            break channel;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut bare_health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let mut bare_pool =
        numbering_client::v1::number_pool_service_client::NumberPoolServiceClient::new(channel);
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        tonic::transport::Endpoint::from_shared(b.endpoint.clone())?
            .connect()
            .await?,
    );

    let page = common::prepare_bare_page(&b.cluster.sql).await?;
    let account = common::prepare_bare_account(&b.cluster.sql).await?;
    let names = [
        "empty call, bare tonic server",
        "empty call, the server",
        "GetAccount",
        "its bare query",
        "ListNumbers, the server",
        "ListNumbers, bare tonic server",
        "the page's bare query",
    ];
    let mut times: Vec<Latencies> = names.iter().map(|_| Latencies::default()).collect();
    let check = tonic_health::pb::HealthCheckRequest::default();
    for i in 0..calls {
        let prefix = format!("+1{}", 2_000_000_000 + (i * 7_919) % 199_000)[..9].to_string();
        let mut took = Vec::with_capacity(names.len());
        let t = Instant::now();
        bare_health.check(check.clone()).await?;
        took.push(t.elapsed());
        let t = Instant::now();
        health.check(check.clone()).await?;
        took.push(t.elapsed());
        let t = Instant::now();
        c.tenancy
            .get_account(pb::GetAccountRequest {
                id: provider.id.clone(),
            })
            .await?;
        took.push(t.elapsed());
        let t = Instant::now();
        b.cluster.sql.query_one(&account, &[&provider_id]).await?;
        took.push(t.elapsed());
        let t = Instant::now();
        let listed = common::list_page(&mut c, &provider.id, &prefix).await?;
        took.push(t.elapsed());
        let t = Instant::now();
        let request = pb::ListNumbersRequest {
            filter: Some(pb::NumberFilter {
                owner_id: provider.id.clone(),
                prefix: prefix.clone(),
                ..Default::default()
            }),
            page_size: 100,
            page_token: String::new(),
        };
        let bare_listed = bare_pool.list_numbers(request).await?.into_inner();
        took.push(t.elapsed());
        let t = Instant::now();
        let rows = b
            .cluster
            .sql
            .query(&page, &[&provider_id, &prefix, &format!("{prefix}:")])
            .await?;
        took.push(t.elapsed());
        if listed.numbers.len() != 100 || bare_listed.numbers != listed.numbers || rows.len() != 101
        {
            return Err(format!("prefix {prefix}: the pages differ").into());
        }
        // The first few warm caches and connections, and are not counted.
        if i >= 20 {
            for (l, t) in times.iter_mut().zip(took) {
                l.record(t);
            }
        }
    }
    let rows = b
        .cluster
        .sql
        .query(&page, &[&provider_id, &"+12000001", &"+12000001:"])
        .await?;
    row_costs(&rows)?;
    println!("{calls} rounds, one caller, p50 (p99):");
    for (name, l) in names.iter().zip(times.iter_mut()) {
        println!("  {name:<32} {:>6.3} ms ({:.3} ms)", l.ms(0.5), l.ms(0.99));
    }
    if statements {
        println!("the database's time per statement on numbers (mean, ms):");
        for r in b
            .cluster
            .sql
            .query(
                "SELECT calls, mean_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 400) FROM pg_stat_statements WHERE query ILIKE '%FROM numbers%' AND calls >= 100 ORDER BY calls DESC",
                &[],
            )
            .await?
        {
            println!("  {:>6} calls {:>7.3} ms  {}", r.get::<_, i64>(0), r.get::<_, f64>(1), r.get::<_, String>(2));
        }
    }
    b.stop();
    Ok(())
}
