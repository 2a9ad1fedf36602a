//! Allocation throughput (DESIGN.md §7, issue 12): concurrent gRPC callers each allocating one
//! number at a time (quantity 1) from a provider's pool to a child, on a private PostgreSQL
//! cluster. Prints allocations/s for each successive window plus p50/p99 latency, and compares
//! with the database's floor on the same cluster: pgbench running the least SQL one allocation
//! needs (UPDATE one number by primary key + INSERT one event, one transaction each) on
//! full-size copies of the tables (see `allocate/floor.rs`). pgbench runs before and after the
//! service, and the service is compared with the mean of both, so that other work on a shared
//! machine weighs on both sides alike; it runs with as many clients as there are callers and as
//! the server has connections, and the better of the two counts. Target: at least 0.7x.
//!
//! `cargo bench --bench allocate [-- --quick]`, tuned by environment variables:
//! BENCH_POOL (numbers in the pool, 1000000), BENCH_ALLOCATIONS (total, 300000),
//! BENCH_WINDOW (allocations per line, 100000), BENCH_CALLERS (32), BENCH_CHANNELS (gRPC
//! connections the callers share, one each by default), BENCH_QUANTITY (numbers per call, 1),
//! BENCH_DB_CONNECTIONS (server pool, 16), BENCH_GROUPS (allocation groups in the database at
//! once, the server's default), BENCH_WARMUP (allocations that warm the server up, 2000),
//! BENCH_PGBENCH_SECONDS (each pgbench run, 10; 0 skips pgbench), BENCH_STATEMENTS (1 prints
//! PostgreSQL's time per statement after each phase). `--quick` (or BENCH_QUICK=1) makes every
//! default small, for a run of seconds that proves it works.

#[path = "common/mod.rs"]
mod common;

#[path = "allocate/floor.rs"]
mod floor;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use numbering::auth::Authenticator;
use numbering::paging::PageTokens;
use numbering::server::{Settings, serve};
use numbering::store::Db;
use numbering_client::v1 as pb;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use common::{BoxError, Cluster, create_account, env_u64, percentile, pg_program, seed_numbers};

struct Config {
    pool: u64,
    allocations: u64,
    window: u64,
    callers: u64,
    channels: u64,
    connections: u64,
    warmup: u64,
    pgbench_seconds: u64,
    statements: bool,
    quantity: i64,
    groups: Option<usize>,
}

impl Config {
    fn from_env() -> Self {
        let quick = std::env::args().any(|a| a == "--quick") || env_u64("BENCH_QUICK", 0) == 1;
        let default = |full: u64, small: u64| if quick { small } else { full };
        Self {
            pool: env_u64("BENCH_POOL", default(1_000_000, 100_000)),
            allocations: env_u64("BENCH_ALLOCATIONS", default(300_000, 5_000)),
            window: env_u64("BENCH_WINDOW", default(100_000, 1_000)).max(1),
            callers: env_u64("BENCH_CALLERS", default(32, 8)).max(1),
            channels: env_u64("BENCH_CHANNELS", 0),
            connections: env_u64("BENCH_DB_CONNECTIONS", default(16, 4)).max(1),
            warmup: env_u64("BENCH_WARMUP", default(2_000, 200)).max(1),
            pgbench_seconds: env_u64("BENCH_PGBENCH_SECONDS", default(10, 2)),
            statements: env_u64("BENCH_STATEMENTS", 0) == 1,
            quantity: i64::try_from(env_u64("BENCH_QUANTITY", 1).max(1)).unwrap_or(1),
            groups: std::env::var("BENCH_GROUPS")
                .ok()
                .and_then(|g| g.parse().ok()),
        }
    }

    /// pgbench's client counts: one per caller, and one per server connection.
    fn pgbench_clients(&self) -> Vec<u64> {
        let mut counts = vec![self.callers, self.connections];
        counts.dedup();
        counts
    }

    /// The gRPC connections the callers share.
    fn channels(&self) -> u64 {
        if self.channels == 0 {
            self.callers
        } else {
            self.channels.min(self.callers)
        }
    }
}

/// The provider and the child the numbers go to.
struct Accounts {
    provider: pb::Account,
    child: pb::Account,
}

/// The server, in this process, on the cluster's `bench` database.
struct Server {
    endpoint: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), BoxError>>,
}

async fn start_server(cluster: &Cluster, cfg: &Config) -> Result<Server, BoxError> {
    let db = Db::new(
        cluster.pg.config("bench"),
        usize::try_from(cfg.connections)?,
    )?;
    db.migrate().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let settings = Settings {
        tls: None,
        auth: Authenticator::disabled(),
        page_tokens: PageTokens::random(),
        health_interval: Duration::from_secs(1),
        sweep_interval: Duration::from_secs(5),
        idempotency_retention: Duration::from_secs(86_400),
        fairness: numbering::server::Fairness {
            allocation_groups: cfg
                .groups
                .unwrap_or(numbering::server::Fairness::default().allocation_groups),
            ..Default::default()
        },
    };
    let shutdown = async move {
        let _ = stopped.await;
    };
    let task = tokio::spawn(async move {
        serve(listener, db, settings, shutdown)
            .await
            .map_err(BoxError::from)
    });
    Ok(Server {
        endpoint,
        stop,
        task,
    })
}

/// The two accounts, made through the API, and the pool of numbers.
async fn seed(cluster: &Cluster, server: &Server, cfg: &Config) -> Result<Accounts, BoxError> {
    let mut c = numbering_client::connect(server.endpoint.clone(), None).await?;
    // Calls answer UNAVAILABLE until the server has checked its schema: wait for that.
    let mut tries = 0;
    let provider = loop {
        match create_account(&mut c, None, "Provider").await {
            Err(e) if tries < 100 && format!("{e:?}").contains("Unavailable") => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => break other?,
        }
    };
    let child = create_account(&mut c, Some(&provider), "Customer").await?;
    let started = Instant::now();
    seed_numbers(&cluster.sql, &provider, 1, i64::try_from(cfg.pool)?).await?;
    println!(
        "seeded {} numbers in {:.1} s",
        cfg.pool,
        started.elapsed().as_secs_f64()
    );
    Ok(Accounts { provider, child })
}

/// Starts `total` allocations of one number each, shared by the callers; each latency (µs)
/// arrives on the receiver as its call completes.
async fn allocate(
    server: &Server,
    cfg: &Config,
    a: &Accounts,
    total: u64,
) -> Result<
    (
        Vec<JoinHandle<Result<(), tonic::Status>>>,
        mpsc::UnboundedReceiver<u32>,
    ),
    BoxError,
> {
    let tickets = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    let mut clients = Vec::new();
    for _ in 0..cfg.channels() {
        clients.push(numbering_client::connect(server.endpoint.clone(), None).await?);
    }
    let req = pb::AllocateNumbersRequest {
        from_account_id: a.provider.id.clone(),
        to_account_id: a.child.id.clone(),
        selection: Some(pb::NumberSelection {
            selection: Some(pb::number_selection::Selection::Quantity(
                pb::QuantitySelection {
                    count: cfg.quantity,
                    ..Default::default()
                },
            )),
        }),
        ..Default::default()
    };
    let mut callers = Vec::new();
    for i in 0..cfg.callers {
        let mut c = clients[usize::try_from(i % cfg.channels())?].clone();
        let (tickets, tx, req) = (tickets.clone(), tx.clone(), req.clone());
        callers.push(tokio::spawn(async move {
            while tickets.fetch_add(1, Ordering::Relaxed) < total {
                let t0 = Instant::now();
                c.allocation.allocate_numbers(req.clone()).await?;
                let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
                let _ = tx.send(us);
            }
            Ok(())
        }));
    }
    Ok((callers, rx))
}

async fn finish(callers: Vec<JoinHandle<Result<(), tonic::Status>>>) -> Result<(), BoxError> {
    for c in callers {
        c.await??;
    }
    Ok(())
}

fn ms(us: u32) -> f64 {
    f64::from(us) / 1000.0
}

/// Prints one line per window of completed allocations; answers the overall rate.
async fn collect(mut latencies: mpsc::UnboundedReceiver<u32>, cfg: &Config) -> f64 {
    let started = Instant::now();
    let mut window_start = started;
    let mut window: Vec<u32> = Vec::new();
    let mut all: Vec<u32> = Vec::new();
    let mut done = 0u64;
    println!(
        "{:>17} {:>14} {:>9} {:>9}",
        "allocations", "allocations/s", "p50 ms", "p99 ms"
    );
    while let Some(us) = latencies.recv().await {
        done += 1;
        window.push(us);
        if done.is_multiple_of(cfg.window) || done == cfg.allocations {
            let secs = window_start.elapsed().as_secs_f64();
            window.sort_unstable();
            println!(
                "{:>17} {:>14.0} {:>9.2} {:>9.2}",
                format!("{}-{}", done - window.len() as u64, done),
                window.len() as f64 / secs,
                ms(percentile(&window, 0.5)),
                ms(percentile(&window, 0.99))
            );
            all.append(&mut window);
            window_start = Instant::now();
        }
    }
    let rate = done as f64 / started.elapsed().as_secs_f64();
    all.sort_unstable();
    println!(
        "{:>17} {:>14.0} {:>9.2} {:>9.2}",
        format!("all {done}"),
        rate,
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99))
    );
    rate
}

/// The measured run: callers allocating through the server; answers allocations/s.
async fn drive(server: &Server, cfg: &Config, a: &Accounts) -> Result<f64, BoxError> {
    let (callers, latencies) = allocate(server, cfg, a, cfg.allocations).await?;
    let rate = collect(latencies, cfg).await;
    finish(callers).await?;
    Ok(rate)
}

/// Runs pgbench with the captured script and `clients` clients; answers its tps.
fn pgbench(
    cluster: &Cluster,
    script: &std::path::Path,
    cfg: &Config,
    clients: u64,
) -> Result<f64, BoxError> {
    let out = Command::new(pg_program("pgbench"))
        .args(["-n", "-M", "prepared", "-j", "2"])
        .arg("-c")
        .arg(clients.to_string())
        .arg("-T")
        .arg(cfg.pgbench_seconds.to_string())
        .arg("-f")
        .arg(script)
        .arg(cluster.pg.url("bench"))
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tps = stdout
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|t| t.parse::<f64>().ok())
        .ok_or_else(|| {
            format!(
                "pgbench gave no tps:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let latency = stdout
        .lines()
        .find(|l| l.starts_with("latency average"))
        .unwrap_or_default();
    println!("pgbench, {clients} clients: {tps:.0} tps, {latency}");
    Ok(tps)
}

/// pgbench at each client count: one side of the service run.
async fn pgbench_round(
    cluster: &Cluster,
    script: &std::path::Path,
    cfg: &Config,
) -> Result<Vec<f64>, BoxError> {
    let mut rates = Vec::new();
    for clients in cfg.pgbench_clients() {
        rates.push(pgbench(cluster, script, cfg, clients)?);
    }
    statements(cluster, cfg, "pgbench").await?;
    Ok(rates)
}

/// With BENCH_STATEMENTS, PostgreSQL's own account of the phase that just ended: calls, and
/// execution and planning time per call, of its busiest statements.
async fn statements(cluster: &Cluster, cfg: &Config, phase: &str) -> Result<(), BoxError> {
    if !cfg.statements {
        return Ok(());
    }
    println!("statements of the {phase} phase (calls, exec ms/call, plan ms/call):");
    let rows = cluster
        .sql
        .query(
            "SELECT calls, (total_exec_time / calls)::float8, (total_plan_time / calls)::float8,
                    left(regexp_replace(query, '\\s+', ' ', 'g'), 80)
             FROM pg_stat_statements WHERE calls >= 10 ORDER BY total_exec_time DESC LIMIT 10",
            &[],
        )
        .await?;
    for r in rows {
        let (calls, exec, plan, query): (i64, f64, f64, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        println!("{calls:>9} {exec:>8.3} {plan:>8.3}  {query}");
    }
    cluster
        .sql
        .batch_execute("SELECT pg_stat_statements_reset()")
        .await?;
    Ok(())
}

/// The warm-up: allocations through the server that warm its caches (and give the floor a
/// real event to copy).
async fn warm_up(server: &Server, cfg: &Config, a: &Accounts) -> Result<(), BoxError> {
    let (callers, mut latencies) = allocate(server, cfg, a, cfg.warmup).await?;
    while latencies.recv().await.is_some() {}
    finish(callers).await
}

/// The cluster settings: pg_stat_statements preloaded when BENCH_STATEMENTS asks for it.
fn statement_settings(statements: bool) -> Vec<(&'static str, &'static str)> {
    if !statements || !common::has_pg_stat_statements() {
        return Vec::new();
    }
    vec![
        ("shared_preload_libraries", "pg_stat_statements"),
        ("pg_stat_statements.track_planning", "on"),
        ("pg_stat_statements.track", "all"),
    ]
}

async fn run(cfg: Config) -> Result<(), BoxError> {
    let mut settings = vec![("max_connections", "200"), ("shared_buffers", "256MB")];
    settings.extend(statement_settings(cfg.statements));
    let cluster = Cluster::start("allocate", &settings).await?;
    if cfg.statements {
        cluster
            .sql
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await?;
    }
    let server = start_server(&cluster, &cfg).await?;
    let accounts = seed(&cluster, &server, &cfg).await?;
    println!(
        "{} callers on {} gRPC connections, {} allocations of {} number(s), server pool of {} connections, {} allocation groups",
        cfg.callers,
        cfg.channels(),
        cfg.allocations,
        cfg.quantity,
        cfg.connections,
        cfg.groups
            .unwrap_or(numbering::server::Fairness::default().allocation_groups)
    );
    warm_up(&server, &cfg, &accounts).await?;
    let script = match cfg.pgbench_seconds {
        0 => None,
        _ => Some(floor::prepare(&cluster, &accounts.child.id).await?),
    };
    let before = match &script {
        Some(script) => pgbench_round(&cluster, script, &cfg).await?,
        None => Vec::new(),
    };
    let rate = drive(&server, &cfg, &accounts).await?;
    statements(&cluster, &cfg, "service").await?;
    if let Some(script) = &script {
        let after = pgbench_round(&cluster, script, &cfg).await?;
        let (clients, best) = cfg
            .pgbench_clients()
            .into_iter()
            .zip(before.iter().zip(&after).map(|(b, a)| (b + a) / 2.0))
            .fold((0, 0.0), |best, c| if c.1 > best.1 { c } else { best });
        let numbers = rate * cfg.quantity as f64;
        println!(
            "the service: {rate:.0} allocations/s ({numbers:.0} numbers/s); the floor (UPDATE one number by primary key + INSERT one event), at its best ({clients} clients): {best:.0} tps (mean of before and after); ratio {:.2}x (target >= 0.7x)",
            rate / best
        );
    }
    let _ = server.stop.send(());
    server.task.await??;
    cluster.stop();
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let cfg = Config::from_env();
    if (cfg.warmup + cfg.allocations) * cfg.quantity as u64 > cfg.pool {
        return Err(
            "BENCH_POOL must hold the numbers of BENCH_WARMUP and BENCH_ALLOCATIONS".into(),
        );
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cfg))
}
