//! The whole table of issue 12 in one command, `cargo bench --bench table [-- --quick]`: every
//! row the service's figure beside the database's own figure on the same cluster in the same
//! run, the ratio, and its target; a markdown table at the end with the date and the machine.
//!
//! - AllocateNumbers of one number, BENCH_CALLERS (32) gRPC callers, from a pool of BENCH_POOL
//!   (1,000,000), vs pgbench with the least SQL an allocation needs (the floor): one statement
//!   that UPDATEs one number row by primary key to its new holder and INSERTs its event, on the
//!   real tables as migrated (indexes, constraints and triggers: what the database must do for
//!   the same rows), as many clients as callers, from a pool of its own in the same table.
//! - AllocateNumbers of 100 numbers, the same callers, numbers/s, vs the same floor moving 100
//!   rows per statement (target: at least 20,000 numbers/s).
//! - ImportNumbers of BENCH_IMPORT_ROWS (1,000,000) rows vs psql's `\copy` of the same rows into
//!   a table LIKE numbers INCLUDING ALL plus their events into one LIKE number_events.
//! - ListNumbers, a page of 100 by prefix, one caller, p50 vs the bare query (all columns, 101
//!   rows) on the same connection-less path a client has.
//! - The server's peak resident memory over the whole run.
//!
//! pgbench runs before and after each allocation run and the service is compared with the mean
//! of both, so that others' work on a shared machine weighs on both sides. Sizes:
//! BENCH_POOL, BENCH_CALLERS, BENCH_ALLOCATIONS (quantity-1 calls, 50,000), BENCH_BATCHES
//! (quantity-100 calls, 1,000), BENCH_FLOOR_POOL (numbers pgbench may move, 1,500,000),
//! BENCH_PGBENCH_SECONDS (10), BENCH_IMPORT_ROWS, BENCH_LIST_CALLS (500). `--quick` (or
//! BENCH_QUICK=1) makes them small: well under a minute.

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use numbering::domain::account::child_path;
use numbering::domain::number::{NumberState, Operation};
use numbering_client::v1 as pb;
use uuid::Uuid;

use common::{
    Bench, BoxError, Latencies, create_account, env_u64, import_csv, list_page, machine, pgbench,
    prepare_bare_page, psql_copy, seed_numbers, sized, thousands,
};

struct Config {
    pool: u64,
    callers: u64,
    allocations: u64,
    batches: u64,
    floor_pool: u64,
    pgbench_seconds: u64,
    import_rows: u64,
    list_calls: u64,
}

impl Config {
    fn from_env() -> Self {
        Self {
            pool: env_u64("BENCH_POOL", sized(1_000_000, 50_000)),
            callers: env_u64("BENCH_CALLERS", sized(32, 8)).max(1),
            allocations: env_u64("BENCH_ALLOCATIONS", sized(50_000, 1_000)).max(1),
            batches: env_u64("BENCH_BATCHES", sized(1_000, 40)).max(1),
            floor_pool: env_u64("BENCH_FLOOR_POOL", sized(1_500_000, 250_000)),
            pgbench_seconds: env_u64("BENCH_PGBENCH_SECONDS", sized(10, 2)).max(1),
            import_rows: env_u64("BENCH_IMPORT_ROWS", sized(1_000_000, 20_000)).max(1),
            list_calls: env_u64("BENCH_LIST_CALLS", sized(500, 100)).max(1),
        }
    }
}

/// One row of the table.
struct Row {
    workload: String,
    service: String,
    database: String,
    ratio: f64,
    target: &'static str,
    met: bool,
}

/// The accounts an allocation moves numbers between.
struct Move {
    provider: pb::Account,
    child: pb::Account,
}

/// A provider and a child of it, through the API.
async fn accounts(c: &mut numbering_client::Clients, name: &str) -> Result<Move, BoxError> {
    let provider = create_account(c, None, name).await?;
    let child = create_account(c, Some(&provider), &format!("{name} customer")).await?;
    Ok(Move { provider, child })
}

/// The ids of the floor's own pool: the n-th number's id is a function of n, so that pgbench
/// finds its row by primary key without reading anything first.
const FLOOR_ID: &str = "00000000-0000-4000-8000-";

/// The floor's pool: `count` AVAILABLE numbers of the provider, ids `FLOOR_ID` + n in hex.
async fn seed_floor(sql: &tokio_postgres::Client, m: &Move, count: u64) -> Result<(), BoxError> {
    let id = Uuid::parse_str(&m.provider.id)?;
    let path = child_path("", id);
    let (mut done, count) = (0i64, i64::try_from(count)?);
    while done < count {
        let n = (count - done).min(1_000_000);
        sql.execute(
            &format!(
                "INSERT INTO numbers (id, provider_id, e164, holder_id, holder_path, status)
                 SELECT ('{FLOOR_ID}' || lpad(to_hex(g), 12, '0'))::uuid, $1,
                        '+1' || (4000000000 + g)::text, $1, $2, 'available'
                 FROM generate_series($3::bigint, $4::bigint) g"
            ),
            &[&id, &path, &(done + 1), &(done + n)],
        )
        .await?;
        done += n;
    }
    Ok(())
}

/// The floor's script: one statement (one transaction, one round trip) that moves `quantity`
/// numbers, found by primary key, to the child and writes each its event, as an allocation must.
/// Each client takes the next block of its own (`k` counts its transactions), so no two
/// transactions touch the same row.
fn floor_script(m: &Move, quantity: u64) -> Result<String, BoxError> {
    let child = Uuid::parse_str(&m.child.id)?;
    let provider = Uuid::parse_str(&m.provider.id)?;
    let child_path = child_path(&child_path("", provider), child);
    // A space after each colon, so that pgbench reads no `:null` as a variable.
    let json = |holder| -> Result<String, BoxError> {
        Ok(serde_json::to_string(&NumberState::available(holder))?.replace("\":", "\": "))
    };
    let (before, after) = (json(provider)?, json(child)?);
    let allocate = Operation::Allocate.as_str();
    Ok(format!(
        "\\set n :base + (:k * :clients + :client_id) * {quantity} + 1
\\set k :k + 1
WITH moved AS (
    UPDATE numbers SET holder_id = '{child}', holder_path = '{child_path}',
        version = version + 1, update_time = now()
    WHERE id = ANY (ARRAY(SELECT ('{FLOOR_ID}' || lpad(to_hex(g), 12, '0'))::uuid
                          FROM generate_series((:n)::bigint, (:n)::bigint + {last}) g))
    RETURNING id, provider_id, e164, holder_path)
INSERT INTO number_events (provider_id, number_id, e164, actor, request_id, operation, holder_path, before, after)
SELECT provider_id, id, e164, 'pgbench', '', '{allocate}', holder_path, '{before}', '{after}' FROM moved;
",
        last = quantity - 1,
    ))
}

/// The distinct numbers pgbench has moved so far, and the highest n among them.
async fn floor_events(sql: &tokio_postgres::Client) -> Result<(i64, i64), BoxError> {
    let row = sql
        .query_one(
            &format!(
                "SELECT count(DISTINCT number_id), coalesce(max(('x' || right(number_id::text, 12))::bit(48)::bigint), 0)
                 FROM number_events WHERE actor = 'pgbench' AND number_id::text LIKE '{FLOOR_ID}%'"
            ),
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// pgbench's side of an allocation row, one run: answers numbers moved per second and the mean
/// latency. Checks that every transaction moved its `quantity` numbers (the floor's pool was
/// large enough), and moves `base` past the numbers used.
async fn floor_run(
    b: &Bench,
    script: &Path,
    cfg: &Config,
    quantity: u64,
    seconds: u64,
    base: &mut u64,
) -> Result<(f64, f64), BoxError> {
    let sql = &b.cluster.sql;
    let (before, _) = floor_events(sql).await?;
    let run = {
        let (url, script, clients, seconds) = (
            b.cluster.pg.url("bench"),
            script.to_path_buf(),
            cfg.callers,
            seconds,
        );
        let variables = [
            ("base", base.to_string()),
            ("k", "0".to_string()),
            ("clients", clients.to_string()),
        ];
        tokio::task::spawn_blocking(move || pgbench(&url, &script, clients, seconds, &variables))
            .await??
    };
    let (after, highest) = floor_events(sql).await?;
    let moved = u64::try_from(after - before)?;
    if moved != run.transactions * quantity {
        return Err(format!(
            "pgbench moved {moved} distinct numbers in {} transactions of {quantity}: BENCH_FLOOR_POOL ({}) is too small, or a number was moved twice",
            run.transactions, cfg.floor_pool
        )
        .into());
    }
    *base = u64::try_from(highest)?;
    println!(
        "  pgbench floor, quantity {quantity}, {} clients: {:.0} tps ({:.0} numbers/s), latency average {:.2} ms",
        cfg.callers,
        run.tps,
        run.tps * quantity as f64,
        run.latency_ms
    );
    Ok((run.tps * quantity as f64, run.latency_ms))
}

/// `total` AllocateNumbers calls of `quantity` each, shared by the callers (one gRPC connection
/// each); answers calls per second and their latencies.
async fn allocate(
    b: &Bench,
    m: &Move,
    callers: u64,
    total: u64,
    quantity: u64,
) -> Result<(f64, Latencies), BoxError> {
    let tickets = Arc::new(AtomicU64::new(0));
    let request = pb::AllocateNumbersRequest {
        from_account_id: m.provider.id.clone(),
        to_account_id: m.child.id.clone(),
        selection: Some(pb::NumberSelection {
            selection: Some(pb::number_selection::Selection::Quantity(
                pb::QuantitySelection {
                    count: i64::try_from(quantity)?,
                    ..Default::default()
                },
            )),
        }),
        ..Default::default()
    };
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let mut c = b.clients().await?;
        let (tickets, request) = (tickets.clone(), request.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            while tickets.fetch_add(1, Ordering::Relaxed) < total {
                let t = Instant::now();
                c.allocation.allocate_numbers(request.clone()).await?;
                latencies.record(t.elapsed());
            }
            Ok::<Latencies, tonic::Status>(latencies)
        }));
    }
    let started = Instant::now();
    let mut all = Latencies::default();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all.len() as f64 / started.elapsed().as_secs_f64(), all))
}

/// An allocation row: pgbench's floor before, the service, the floor after.
async fn allocation_row(
    b: &Bench,
    cfg: &Config,
    service: &Move,
    floor: &Move,
    quantity: u64,
    calls: u64,
    base: &mut u64,
) -> Result<(f64, f64, Latencies, f64), BoxError> {
    let script = b.cluster.dir.join(format!("floor-{quantity}.sql"));
    std::fs::write(&script, floor_script(floor, quantity)?)?;
    // A second of pgbench first, not counted: its connections, plans and the pool's pages.
    floor_run(b, &script, cfg, quantity, 1, base).await?;
    let (first, _) = floor_run(b, &script, cfg, quantity, cfg.pgbench_seconds, base).await?;
    let (rate, mut latencies) = allocate(b, service, cfg.callers, calls, quantity).await?;
    println!(
        "  the service, quantity {quantity}, {} callers: {:.0} calls/s ({:.0} numbers/s), p50 {:.2} ms, p99 {:.2} ms",
        cfg.callers,
        rate,
        rate * quantity as f64,
        latencies.ms(0.5),
        latencies.ms(0.99)
    );
    let (second, _) = floor_run(b, &script, cfg, quantity, cfg.pgbench_seconds, base).await?;
    Ok((
        rate * quantity as f64,
        (first + second) / 2.0,
        latencies,
        second / first,
    ))
}

/// ImportNumbers vs `\copy` of the same rows and their events: answers the row.
async fn import_row(
    b: &Bench,
    c: &mut numbering_client::Clients,
    rows: u64,
) -> Result<Row, BoxError> {
    let importer = create_account(c, None, "Importer").await?;
    let mut csv = String::from("e164,carrier\n");
    for i in 0..rows {
        csv.push_str(&format!("+1303{},Acme\n", 2_000_000 + i));
    }
    let (result, import_time) = import_csv(c, &importer, &csv).await?;
    drop(csv);
    println!(
        "  ImportNumbers: {} rows read, {} imported, {} rejected in {:.2} s",
        result.rows_read,
        result.rows_imported,
        result.rows_rejected,
        import_time.as_secs_f64()
    );
    // The same rows (the columns the import writes for them) and their events, in files.
    let owner = Uuid::parse_str(&importer.id)?;
    let path = child_path("", owner);
    let after = serde_json::to_string(&NumberState::available(owner))?;
    let add = Operation::Add.as_str();
    let (mut numbers, mut events) = (String::new(), String::new());
    for i in 0..rows {
        let id = Uuid::new_v4();
        let e164 = format!("+1303{}", 2_000_000 + i);
        numbers.push_str(&format!(
            "{id}\t{owner}\t{e164}\t{owner}\t{path}\tavailable\tAcme\n"
        ));
        events.push_str(&format!(
            "{owner}\t{id}\t{e164}\tbench\t\t{add}\t{path}\t{after}\n"
        ));
    }
    let (numbers_file, events_file) = (
        b.cluster.dir.join("copy-numbers.tsv"),
        b.cluster.dir.join("copy-events.tsv"),
    );
    std::fs::write(&numbers_file, numbers)?;
    std::fs::write(&events_file, events)?;
    b.cluster
        .sql
        .batch_execute(
            "CREATE TABLE copy_numbers (LIKE numbers INCLUDING ALL);
             CREATE TABLE copy_events (LIKE number_events INCLUDING ALL)",
        )
        .await?;
    let url = b.cluster.pg.url("bench");
    let numbers_time = psql_copy(
        &url,
        "copy_numbers (id, provider_id, e164, holder_id, holder_path, status, carrier)",
        &numbers_file,
    )?;
    let events_time = psql_copy(
        &url,
        "copy_events (provider_id, number_id, e164, actor, request_id, operation, holder_path, after)",
        &events_file,
    )?;
    let _ = std::fs::remove_file(numbers_file);
    let _ = std::fs::remove_file(events_file);
    b.cluster
        .sql
        .batch_execute("DROP TABLE copy_numbers; DROP TABLE copy_events")
        .await?;
    let copy_time = numbers_time + events_time;
    let ratio = import_time.as_secs_f64() / copy_time.as_secs_f64();
    Ok(Row {
        workload: format!("ImportNumbers {} rows", thousands(rows)),
        service: format!(
            "{:.1} s ({} rows/s)",
            import_time.as_secs_f64(),
            thousands((result.rows_imported as f64 / import_time.as_secs_f64()) as u64)
        ),
        database: format!(
            "{:.1} s: `\\copy` of the same rows into a table LIKE numbers INCLUDING ALL ({:.1} s) + the events into one LIKE number_events ({:.1} s)",
            copy_time.as_secs_f64(),
            numbers_time.as_secs_f64(),
            events_time.as_secs_f64()
        ),
        ratio,
        target: "≤ 1.5x",
        met: ratio <= 1.5 && result.rows_imported == i64::try_from(rows)?,
    })
}

/// ListNumbers, a page of 100 by prefix, vs the bare query: answers the row.
async fn list_row(
    b: &Bench,
    c: &mut numbering_client::Clients,
    provider: &pb::Account,
    pool: u64,
    calls: u64,
) -> Result<Row, BoxError> {
    let provider_id = Uuid::parse_str(&provider.id)?;
    // "+1" and the first 7 digits of a seeded number (2000000000 + g): 1,000 numbers each.
    let span = pool.saturating_sub(1_000).max(1);
    let prefixes: Vec<String> = (0..calls)
        .map(|i| format!("+1{}", 2_000_000_000 + (i * 7_919_993) % span)[..9].to_string())
        .collect();
    let statement = prepare_bare_page(&b.cluster.sql).await?;
    let (mut rpc, mut bare) = (Latencies::default(), Latencies::default());
    // The hop on its own: a call that reads one row (GetAccount), beside its bare query.
    let (mut hop, mut hop_bare) = (Latencies::default(), Latencies::default());
    let account = common::prepare_bare_account(&b.cluster.sql).await?;
    // The first few of each warm caches and connections, and are not counted.
    for (i, p) in prefixes.iter().enumerate() {
        let t = Instant::now();
        c.tenancy
            .get_account(pb::GetAccountRequest {
                id: provider.id.clone(),
            })
            .await?;
        let got = t.elapsed();
        let t = Instant::now();
        b.cluster.sql.query_one(&account, &[&provider_id]).await?;
        let read = t.elapsed();
        if i >= 10 {
            hop.record(got);
            hop_bare.record(read);
        }
        let t = Instant::now();
        let page = list_page(c, &provider.id, p).await?;
        let listed = t.elapsed();
        let t = Instant::now();
        let rows = b
            .cluster
            .sql
            .query(&statement, &[&provider_id, p, &format!("{p}:")])
            .await?;
        let queried = t.elapsed();
        if page.numbers.len() != 100 || rows.len() != 101 {
            return Err(format!(
                "prefix {p}: {} listed, {} queried; BENCH_POOL is too small",
                page.numbers.len(),
                rows.len()
            )
            .into());
        }
        if i >= 10 {
            rpc.record(listed);
            bare.record(queried);
        }
    }
    let (r50, s50) = (rpc.ms(0.5), bare.ms(0.5));
    let ratio = r50 / s50;
    let (h50, hb50) = (hop.ms(0.5), hop_bare.ms(0.5));
    println!(
        "  the hop: GetAccount p50 {h50:.2} ms vs its bare query {hb50:.2} ms; ListNumbers p50 {r50:.2} ms vs {s50:.2} ms"
    );
    Ok(Row {
        workload: "ListNumbers, page of 100 by prefix, 1 caller".into(),
        service: format!(
            "p50 {r50:.2} ms (p99 {:.2} ms); a one-row call (GetAccount) p50 {h50:.2} ms against its bare query's {hb50:.2} ms",
            rpc.ms(0.99)
        ),
        database: format!(
            "p50 {s50:.2} ms: the bare query, all columns, 101 rows (p99 {:.2} ms)",
            bare.ms(0.99)
        ),
        ratio,
        target: "≤ 1.5x",
        met: ratio <= 1.5,
    })
}

async fn run(cfg: Config) -> Result<(), BoxError> {
    let b = common::start(
        "table",
        &[
            (
                "shared_buffers",
                if common::quick() { "256MB" } else { "1GB" },
            ),
            ("max_wal_size", "8GB"),
            ("max_connections", "200"),
        ],
    )
    .await?;
    let mut c = b.clients().await?;
    let machine = machine(&b.cluster.sql).await?;
    println!("{machine}");
    let mut rows = Vec::new();

    println!("import:");
    rows.push(import_row(&b, &mut c, cfg.import_rows).await?);

    let service = accounts(&mut c, "Provider").await?;
    let floor = accounts(&mut c, "Floor").await?;
    let started = Instant::now();
    seed_floor(&b.cluster.sql, &floor, cfg.floor_pool).await?;
    seed_numbers(
        &b.cluster.sql,
        &service.provider,
        1,
        i64::try_from(cfg.pool)?,
    )
    .await?;
    println!(
        "seeded {} numbers for the service and {} for pgbench in {:.1} s",
        cfg.pool,
        cfg.floor_pool,
        started.elapsed().as_secs_f64()
    );
    // The warm-up: connections, caches and cached plans, not counted.
    allocate(&b, &service, cfg.callers, cfg.callers * 10, 1).await?;

    println!("allocation of one number:");
    let mut base = 0;
    let (rate, floor1, mut lat, drift) =
        allocation_row(&b, &cfg, &service, &floor, 1, cfg.allocations, &mut base).await?;
    let (p50, p99) = (lat.ms(0.5), lat.ms(0.99));
    let ratio = rate / floor1;
    rows.push(Row {
        workload: format!(
            "AllocateNumbers quantity 1, {} callers, {} pool",
            cfg.callers,
            thousands(cfg.pool)
        ),
        service: format!(
            "{} allocations/s, p50 {p50:.1} ms, p99 {p99:.1} ms",
            thousands(rate as u64)
        ),
        database: format!(
            "{} tps: one statement, UPDATE one number by primary key + INSERT its event, on the real tables as migrated (indexes, triggers), {} pgbench clients (mean of before and after: {drift:.2}x apart)",
            thousands(floor1 as u64),
            cfg.callers
        ),
        ratio,
        target: "≥ 0.7x, p99 ≤ 50 ms",
        met: ratio >= 0.7 && p99 <= 50.0,
    });

    println!("allocation of 100 numbers:");
    let (numbers, floor100, mut lat, drift) =
        allocation_row(&b, &cfg, &service, &floor, 100, cfg.batches, &mut base).await?;
    rows.push(Row {
        workload: format!("AllocateNumbers quantity 100, {} callers", cfg.callers),
        service: format!(
            "{} numbers/s, p50 {:.1} ms, p99 {:.1} ms",
            thousands(numbers as u64),
            lat.ms(0.5),
            lat.ms(0.99)
        ),
        database: format!(
            "{} numbers/s: the same statement moving 100 numbers (mean of before and after: {drift:.2}x apart)",
            thousands(floor100 as u64)
        ),
        ratio: numbers / floor100,
        target: "≥ 20,000 numbers/s",
        met: numbers >= 20_000.0,
    });

    println!("list:");
    rows.push(list_row(&b, &mut c, &service.provider, cfg.pool, cfg.list_calls).await?);

    let (_, peak) = b.server_memory_mib();
    rows.push(Row {
        workload: "Server RSS peak, whole run".into(),
        service: format!("{peak:.1} MiB"),
        database: "—".into(),
        ratio: peak / 64.0,
        target: "< 64 MiB",
        met: peak < 64.0,
    });
    b.stop();

    println!();
    println!(
        "Measured {machine}{}.",
        if common::quick() {
            "; a quick run (small sizes), not the figures of record"
        } else {
            ""
        }
    );
    println!();
    println!(
        "| workload | the service | the database's own figure, same cluster, same run | ratio | target | met |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.2}x | {} | {} |",
            r.workload,
            r.service,
            r.database,
            r.ratio,
            r.target,
            if r.met { "yes" } else { "no" }
        );
    }
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let cfg = Config::from_env();
    let needed = cfg.callers * 10 + cfg.allocations + cfg.batches * 100;
    if needed > cfg.pool {
        return Err(format!(
            "BENCH_POOL ({}) must hold the warm-up, BENCH_ALLOCATIONS and 100 x BENCH_BATCHES: {needed}",
            cfg.pool
        )
        .into());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cfg))
}
