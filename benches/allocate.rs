//! Allocation throughput (DESIGN.md §7): concurrent gRPC callers each allocating one number at
//! a time (quantity 1) from a provider's pool to a child, on a private PostgreSQL cluster. Prints
//! allocations/s for each successive window plus p50/p99 latency, and compares with pgbench
//! running the same SQL on the same cluster (target: at least 70%). pgbench runs before and
//! after the service, and the service is compared with the mean of both, so that other work on
//! a shared machine weighs on both sides alike; it runs with as many clients as there are
//! callers and with as many as the server has connections, and the better of the two counts.
//!
//! `cargo bench --bench allocate`, tuned by environment variables:
//! BENCH_POOL (numbers in the pool, 1000000), BENCH_ALLOCATIONS (total, 300000),
//! BENCH_WINDOW (allocations per line, 100000), BENCH_CALLERS (32), BENCH_CHANNELS (gRPC
//! connections the callers share, one each by default),
//! BENCH_DB_CONNECTIONS (server pool, 16), BENCH_PGBENCH_SECONDS (each pgbench run, 10; 0 skips
//! pgbench), BENCH_STATEMENTS (1 prints PostgreSQL's time per statement after each phase).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use numbering::auth::Authenticator;
use numbering::domain::account::child_path;
use numbering::embedded::EmbeddedPostgres;
use numbering::paging::PageTokens;
use numbering::server::{Settings, serve};
use numbering::store::Db;
use numbering_client::v1 as pb;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

struct Config {
    pool: u64,
    allocations: u64,
    window: u64,
    callers: u64,
    channels: u64,
    connections: u64,
    pgbench_seconds: u64,
    statements: bool,
}

impl Config {
    /// pgbench's client counts: one per caller, and one per server connection.
    fn pgbench_clients(&self) -> Vec<u64> {
        let mut counts = vec![self.callers, self.connections];
        counts.dedup();
        counts
    }
}

/// The provider and the child the numbers go to.
struct Accounts {
    provider: Uuid,
    provider_path: String,
    child: Uuid,
}

async fn seed(pg: &EmbeddedPostgres, cfg: &Config) -> Result<Accounts, BoxError> {
    let (admin, conn) = pg.config("postgres").connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    admin.batch_execute("CREATE DATABASE bench").await?;
    Db::new(pg.config("bench"), 1)?.migrate().await?;
    let (sql, conn) = pg.config("bench").connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let provider = Uuid::new_v4();
    let child = Uuid::new_v4();
    let provider_path = child_path("", provider);
    let child_path = child_path(&provider_path, child);
    sql.execute(
        "INSERT INTO accounts (id, provider_id, parent_id, path, depth, display_name)
         VALUES ($1, $1, NULL, $2, 0, 'Provider'), ($3, $1, $1, $4, 1, 'Customer')",
        &[&provider, &provider_path, &child, &child_path],
    )
    .await?;
    let started = Instant::now();
    let pool = i64::try_from(cfg.pool)?;
    sql.execute(
        "INSERT INTO numbers (id, provider_id, e164, holder_id, holder_path, status)
         SELECT gen_random_uuid(), $1, '+1' || (2000000000 + g)::text, $1, $2, 'available'
         FROM generate_series(1, $3::bigint) g",
        &[&provider, &provider_path, &pool],
    )
    .await?;
    sql.batch_execute("VACUUM ANALYZE").await?;
    if cfg.statements {
        sql.batch_execute("CREATE EXTENSION pg_stat_statements")
            .await?;
    }
    println!(
        "seeded {} numbers in {:.1} s",
        cfg.pool,
        started.elapsed().as_secs_f64()
    );
    Ok(Accounts {
        provider,
        provider_path,
        child,
    })
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
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
                percentile(&window, 0.5),
                percentile(&window, 0.99)
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
        percentile(&all, 0.5),
        percentile(&all, 0.99)
    );
    rate
}

/// The server on 127.0.0.1:0 and callers allocating through it; answers allocations/s.
async fn drive(pg: &EmbeddedPostgres, cfg: &Config, a: &Accounts) -> Result<f64, BoxError> {
    let db = Db::new(pg.config("bench"), usize::try_from(cfg.connections)?)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let settings = Settings {
        tls: None,
        auth: Authenticator::disabled(),
        page_tokens: PageTokens::random(),
        health_interval: Duration::from_secs(1),
        sweep_interval: Duration::from_secs(5),
    };
    let server = tokio::spawn(serve(listener, db, settings, async move {
        let _ = stopped.await;
    }));
    let tickets = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    let channels = if cfg.channels == 0 {
        cfg.callers
    } else {
        cfg.channels.min(cfg.callers)
    };
    let mut clients = Vec::new();
    for _ in 0..channels {
        clients.push(numbering_client::connect(endpoint.clone(), None).await?);
    }
    let mut callers = Vec::new();
    for i in 0..cfg.callers {
        let mut c = clients[usize::try_from(i % channels)?].clone();
        let (tickets, tx, total) = (tickets.clone(), tx.clone(), cfg.allocations);
        let req = pb::AllocateNumbersRequest {
            from_account_id: a.provider.to_string(),
            to_account_id: a.child.to_string(),
            selection: Some(pb::NumberSelection {
                selection: Some(pb::number_selection::Selection::Quantity(
                    pb::QuantitySelection {
                        count: 1,
                        ..Default::default()
                    },
                )),
            }),
            ..Default::default()
        };
        callers.push(tokio::spawn(async move {
            while tickets.fetch_add(1, Ordering::Relaxed) < total {
                let t0 = Instant::now();
                c.allocation.allocate_numbers(req.clone()).await?;
                let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
                let _ = tx.send(us);
            }
            Ok::<(), tonic::Status>(())
        }));
    }
    drop(tx);
    let rate = collect(rx, cfg).await;
    for c in callers {
        c.await??;
    }
    let _ = stop.send(());
    server.await??;
    Ok(rate)
}

/// The SQL the server runs for one allocation of quantity 1, as a pgbench script: the plan
/// setting, the two account reads, the pick, and the move with its event, in one transaction.
fn pgbench_script(a: &Accounts) -> String {
    let columns = numbering::store::numbers::COLUMNS;
    let accounts = "id, provider_id, parent_id, path, depth, seq, display_name, kind, \
         external_ref, state, labels, max_numbers, aging_period_seconds, version, create_time, \
         update_time";
    let state = |holder: &str| {
        format!(
            "jsonb_build_object('holder_id', {holder}, 'status', 'available', 'assignee', NULL, \
             'reservation', NULL)"
        )
    };
    format!(
        "\\set r random(0, 999999999)
BEGIN;
SET LOCAL plan_cache_mode = force_generic_plan;
SELECT {accounts} FROM accounts WHERE id = :provider AND delete_time IS NULL;
SELECT {accounts} FROM accounts WHERE id = :child AND delete_time IS NULL;
SELECT {columns} FROM numbers WHERE holder_id = :provider AND status = 'available' AND pick >= :r::float8 / 1e9 ORDER BY pick LIMIT 1 FOR UPDATE SKIP LOCKED \\gset n_
WITH moved AS (UPDATE numbers n SET holder_id = u.holder_id, holder_path = u.holder_path, status = u.status, assignee_kind = u.assignee_kind, assignee_id = u.assignee_id, assignee_name = u.assignee_name, assignee_account_id = u.assignee_account_id, reserved_for = u.reserved_for, reservation_tag = u.reservation_tag, reservation_note = u.reservation_note, reservation_expire_time = u.reservation_expire_time, aging_end_time = u.aging_end_time, version = n.version + 1, update_time = now() FROM unnest(ARRAY[:n_id::uuid], ARRAY[:child]::uuid[], ARRAY[:childpath]::text[], ARRAY['available']::text[], ARRAY[NULL]::text[], ARRAY[NULL]::text[], ARRAY[NULL]::text[], ARRAY[NULL]::uuid[], ARRAY[NULL]::text[], ARRAY[NULL]::text[], ARRAY[NULL]::text[], ARRAY[NULL]::timestamptz[], ARRAY[NULL]::timestamptz[]) AS u(number_id, holder_id, holder_path, status, assignee_kind, assignee_id, assignee_name, assignee_account_id, reserved_for, reservation_tag, reservation_note, reservation_expire_time, aging_end_time) WHERE n.id = u.number_id RETURNING n.*), recorded AS (INSERT INTO number_events (provider_id, number_id, e164, actor, actor_account_id, request_id, operation, holder_path, before, after) SELECT e.provider_id, e.number_id, e.e164, 'anonymous', NULL::uuid, '', 'allocate', e.holder_path, e.before, e.after FROM unnest(ARRAY[:provider]::uuid[], ARRAY[:n_id::uuid], ARRAY[:n_e164::text], ARRAY[:childpath]::text[], ARRAY[{before}]::jsonb[], ARRAY[{after}]::jsonb[]) AS e(provider_id, number_id, e164, holder_path, before, after)) SELECT {columns} FROM moved ORDER BY e164;
COMMIT;
",
        before = state(":provider"),
        after = state(":child"),
    )
    .replace(":provider", &format!("'{}'", a.provider))
    .replace(":childpath", &format!("'{}'", child_path(&a.provider_path, a.child)))
    .replace(":child", &format!("'{}'", a.child))
}

/// Runs pgbench with the same SQL and `clients` clients; answers its tps.
fn pgbench(
    pg: &EmbeddedPostgres,
    dir: &std::path::Path,
    cfg: &Config,
    a: &Accounts,
    clients: u64,
) -> Result<f64, BoxError> {
    let script = dir.join("allocate.sql");
    std::fs::write(&script, pgbench_script(a))?;
    let bin = PathBuf::from("/usr/lib/postgresql/15/bin/pgbench");
    let bin = if bin.exists() {
        bin
    } else {
        PathBuf::from("pgbench")
    };
    let out = Command::new(bin)
        .args(["-n", "-M", "prepared", "-j", "2"])
        .arg("-c")
        .arg(clients.to_string())
        .arg("-T")
        .arg(cfg.pgbench_seconds.to_string())
        .arg("-f")
        .arg(&script)
        .arg(pg.url("bench"))
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
    pg: &EmbeddedPostgres,
    dir: &std::path::Path,
    cfg: &Config,
    a: &Accounts,
) -> Result<Vec<f64>, BoxError> {
    let mut rates = Vec::new();
    for clients in cfg.pgbench_clients() {
        rates.push(pgbench(pg, dir, cfg, a, clients)?);
    }
    statements(pg, cfg, "pgbench").await?;
    Ok(rates)
}

/// With BENCH_STATEMENTS, PostgreSQL's own account of the phase that just ended: calls, and
/// execution and planning time per call, of its busiest statements.
async fn statements(pg: &EmbeddedPostgres, cfg: &Config, phase: &str) -> Result<(), BoxError> {
    if !cfg.statements {
        return Ok(());
    }
    let (sql, conn) = pg.config("bench").connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    println!("statements of the {phase} phase (calls, exec ms/call, plan ms/call):");
    let rows = sql
        .query(
            "SELECT calls, (total_exec_time / calls)::float8, (total_plan_time / calls)::float8,
                    left(regexp_replace(query, '\\s+', ' ', 'g'), 80)
             FROM pg_stat_statements WHERE calls >= 1000 ORDER BY total_exec_time DESC LIMIT 8",
            &[],
        )
        .await?;
    for r in rows {
        let (calls, exec, plan, query): (i64, f64, f64, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        println!("{calls:>9} {exec:>8.3} {plan:>8.3}  {query}");
    }
    sql.batch_execute("SELECT pg_stat_statements_reset()")
        .await?;
    Ok(())
}

async fn run(cfg: Config) -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().to_path_buf();
    let mut settings = vec![("max_connections", "200"), ("shared_buffers", "256MB")];
    if cfg.statements {
        settings.push(("shared_preload_libraries", "pg_stat_statements"));
        settings.push(("pg_stat_statements.track_planning", "on"));
    }
    let pg =
        tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&data, &settings)).await??;
    let accounts = seed(&pg, &cfg).await?;
    println!(
        "{} callers on {} gRPC connections, {} allocations of one number, server pool of {} connections",
        cfg.callers,
        if cfg.channels == 0 {
            cfg.callers
        } else {
            cfg.channels.min(cfg.callers)
        },
        cfg.allocations,
        cfg.connections
    );
    if cfg.pgbench_seconds == 0 {
        drive(&pg, &cfg, &accounts).await?;
        return statements(&pg, &cfg, "service").await;
    }
    let before = pgbench_round(&pg, dir.path(), &cfg, &accounts).await?;
    let rate = drive(&pg, &cfg, &accounts).await?;
    statements(&pg, &cfg, "service").await?;
    let after = pgbench_round(&pg, dir.path(), &cfg, &accounts).await?;
    let (clients, best) = cfg
        .pgbench_clients()
        .into_iter()
        .zip(before.iter().zip(&after).map(|(b, a)| (b + a) / 2.0))
        .fold((0, 0.0), |best, c| if c.1 > best.1 { c } else { best });
    println!(
        "the service: {rate:.0} allocations/s; pgbench, same SQL, at its best ({clients} clients): {best:.0} tps (mean of before and after); the service reaches {:.0}% of it",
        100.0 * rate / best
    );
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let cfg = Config {
        pool: setting("BENCH_POOL", 1_000_000),
        allocations: setting("BENCH_ALLOCATIONS", 300_000),
        window: setting("BENCH_WINDOW", 100_000).max(1),
        callers: setting("BENCH_CALLERS", 32).max(1),
        channels: setting("BENCH_CHANNELS", 0),
        connections: setting("BENCH_DB_CONNECTIONS", 16).max(1),
        pgbench_seconds: setting("BENCH_PGBENCH_SECONDS", 10),
        statements: setting("BENCH_STATEMENTS", 0) == 1,
    };
    // pgbench takes numbers from the pool too, at most a few thousand a second.
    let runs = 2 * cfg.pgbench_clients().len() as u64;
    let pgbench_budget = runs * cfg.pgbench_seconds * 4_000;
    if cfg.allocations + pgbench_budget > cfg.pool {
        return Err(format!(
            "BENCH_POOL must hold BENCH_ALLOCATIONS plus {pgbench_budget} numbers for pgbench"
        )
        .into());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cfg))
}
