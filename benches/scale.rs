//! Flat at scale (issue 12, item 4), `cargo bench --bench scale [-- --quick]`: BENCH_SCALE_ACCOUNTS
//! (100,000) accounts in trees of depth BENCH_SCALE_DEPTH (10) under BENCH_SCALE_PROVIDERS
//! (1,000) providers; the p50 and p99 of GetInventory, ListNumbers (by the provider's prefix,
//! under `+1`, which every provider's numbers share, and a sub-account's subtree: the first page
//! of the numbers its chain of accounts holds), SearchAvailableNumbers, AllocateNumbers and
//! GetNumberStateAt with BENCH_SCALE_SMALL (100,000) numbers, then the same
//! calls after the same bench has grown the data to BENCH_SCALE_NUMBERS (10,000,000); the ratio
//! of each (target: within 1.5x) and the server's resident memory throughout (target < 64 MiB).
//!
//! Seeding goes around the API (minutes, not hours): the accounts by COPY, the numbers by
//! INSERT ... SELECT with the columns an import writes (holder_path, the series, an `add` event
//! per number whose state is made by the service's own type), so the inventory triggers keep
//! the counters as the service would. Provider p owns the block +1 2pppnnnnnn: half of its
//! numbers held by itself, the others spread over its sub-accounts, so a provider's page by
//! prefix, its search and its subtree inventory are the same calls at both sizes over 100 times
//! the data. The calls go one at a time from one caller (BENCH_SCALE_CALLS per method and size,
//! 1,000), the calls interleaved, on targets that exist at both sizes.
//!
//! At each size the calls run twice: first right after seeding, each the first to read its
//! pages (some from disk: the seeding wrote more than the machine caches), then with the tables
//! and indexes read into memory once (`pg_prewarm`), as a server that has been running has
//! them when they fit. The warm pass gives the figures of record; the cold p99 is printed
//! beside them.
//!
//! `--quick` (or BENCH_QUICK=1) makes it 20 providers, 2,000 accounts and 10,000 then 200,000
//! numbers: about a minute. The full size needs a quiet machine and about 25 GB of disk.
//! BENCH_SCALE_EXPLAIN_MS=5 keeps the plans of statements slower than 5 ms in [`PLANS_LOG`].

#[path = "common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::time::{Instant, SystemTime};

use numbering::domain::account::child_path;
use numbering::domain::number::{NumberState, Operation};
use numbering_client::Clients;
use numbering_client::v1 as pb;
use uuid::Uuid;

use common::{Bench, BoxError, Latencies, copy_in, env_u64, machine, sized, thousands};

/// Where BENCH_SCALE_EXPLAIN_MS keeps the slow statements' plans.
const PLANS_LOG: &str = "target/scale-plans.log";

/// Each provider's block of E.164 numbers: +1 (2,000,000,000 + p × BLOCK + i).
const BLOCK: u64 = 1_000_000;

struct Config {
    providers: u64,
    /// Accounts per provider, the provider included.
    per_provider: u64,
    depth: u64,
    small: u64,
    large: u64,
    calls: u64,
}

impl Config {
    fn from_env() -> Result<Self, BoxError> {
        let providers = env_u64("BENCH_SCALE_PROVIDERS", sized(1_000, 20)).max(1);
        let accounts = env_u64("BENCH_SCALE_ACCOUNTS", sized(100_000, 2_000));
        let cfg = Self {
            providers,
            per_provider: (accounts / providers).max(2),
            depth: env_u64("BENCH_SCALE_DEPTH", 10).max(1),
            small: env_u64("BENCH_SCALE_SMALL", sized(100_000, 10_000)),
            large: env_u64("BENCH_SCALE_NUMBERS", sized(10_000_000, 200_000)),
            calls: env_u64("BENCH_SCALE_CALLS", sized(1_000, 200)).max(1),
        };
        if cfg.providers > 1_000 || cfg.large / cfg.providers > BLOCK {
            return Err(format!(
                "at most 1,000 providers of at most {BLOCK} numbers each (the E.164 blocks)"
            )
            .into());
        }
        if cfg.small / cfg.providers < 40 || cfg.large < cfg.small {
            return Err("BENCH_SCALE_SMALL must give each provider 40 numbers or more, and BENCH_SCALE_NUMBERS must not be smaller".into());
        }
        Ok(cfg)
    }

    /// Numbers per provider at `total` numbers.
    fn per(&self, total: u64) -> u64 {
        total / self.providers
    }
}

/// The accounts by COPY: each provider with its sub-accounts in chains `depth` deep (sub-account
/// j at depth 1 + (j-1) mod depth, under j-1 or the provider). `scale_accounts` keeps each one's
/// place (p, j) for the numbers' seeding and the calls.
async fn seed_accounts(sql: &tokio_postgres::Client, cfg: &Config) -> Result<(), BoxError> {
    let (mut accounts, mut places) = (String::new(), String::new());
    for p in 0..cfg.providers {
        let provider = Uuid::new_v4();
        let mut parent = (provider, child_path("", provider));
        writeln!(
            accounts,
            "{provider}\t{provider}\t\\N\t{}\t0\tProvider {p}",
            parent.1
        )?;
        writeln!(places, "{p}\t0\t{provider}\t{}", parent.1)?;
        for j in 1..cfg.per_provider {
            let depth = (j - 1) % cfg.depth + 1;
            if depth == 1 {
                parent = (provider, child_path("", provider));
            }
            let id = Uuid::new_v4();
            let path = child_path(&parent.1, id);
            writeln!(
                accounts,
                "{id}\t{provider}\t{}\t{path}\t{depth}\tAccount {p}.{j}",
                parent.0
            )?;
            writeln!(places, "{p}\t{j}\t{id}\t{path}")?;
            parent = (id, path);
        }
    }
    copy_in(
        sql,
        "COPY accounts (id, provider_id, parent_id, path, depth, display_name) FROM STDIN",
        accounts,
    )
    .await?;
    sql.batch_execute(
        "CREATE UNLOGGED TABLE scale_accounts (p int, j int, id uuid NOT NULL, path text NOT NULL, PRIMARY KEY (p, j))",
    )
    .await?;
    copy_in(
        sql,
        "COPY scale_accounts (p, j, id, path) FROM STDIN",
        places,
    )
    .await?;
    Ok(())
}

/// Grows every provider's pool from `from` to `to` numbers, as an import would write them:
/// AVAILABLE in their holder (even ones in the provider, odd ones spread over its
/// sub-accounts), filed in their series, each with its `add` event.
async fn grow(
    sql: &tokio_postgres::Client,
    cfg: &Config,
    from: u64,
    to: u64,
) -> Result<(), BoxError> {
    let added = serde_json::to_value(NumberState::available(Uuid::nil()))?;
    let statement = sql
        .prepare(
            "WITH added AS (
                 INSERT INTO numbers (id, provider_id, e164, holder_id, holder_path, status, series_id, carrier)
                 SELECT gen_random_uuid(), g.provider, g.e164, h.id, h.path, 'available',
                        (SELECT s FROM series_of(g.provider, g.e164) AS s), 'Acme'
                 FROM (SELECT o.id AS provider, o.p, i, '+1' || (2000000000 + o.p::bigint * $6 + i)::text AS e164
                       FROM scale_accounts o CROSS JOIN generate_series($1::bigint, $2::bigint - 1) i
                       WHERE o.j = 0 AND o.p >= $3 AND o.p < $4) g
                 JOIN scale_accounts h ON h.p = g.p
                     AND h.j = CASE WHEN g.i % 2 = 0 THEN 0 ELSE 1 + (g.i / 2) % ($5::bigint - 1) END
                 RETURNING id, provider_id, e164, holder_id, holder_path)
             INSERT INTO number_events (provider_id, number_id, e164, actor, request_id, operation, holder_path, before, after)
             SELECT provider_id, id, e164, 'bench', '', $7, holder_path, NULL,
                    $8::jsonb || jsonb_build_object('holder_id', holder_id)
             FROM added",
        )
        .await?;
    // About a million rows per statement.
    let step = (1_000_000 / (to - from).max(1)).max(1);
    let mut p = 0;
    while p < cfg.providers {
        let until = (p + step).min(cfg.providers);
        sql.execute(
            &statement,
            &[
                &i64::try_from(from)?,
                &i64::try_from(to)?,
                &i32::try_from(p)?,
                &i32::try_from(until)?,
                &i64::try_from(cfg.per_provider)?,
                &i64::try_from(BLOCK)?,
                &Operation::Add.as_str(),
                &added,
            ],
        )
        .await?;
        p = until;
    }
    // Measured from a clean start: the seeding's gigabytes of WAL and dirty pages written out
    // now, not by a checkpoint in the middle of the calls.
    sql.batch_execute("VACUUM ANALYZE").await?;
    sql.batch_execute("CHECKPOINT").await?;
    Ok(())
}

/// The rounds of calls at the start of each pass that warm caches and are not counted.
const WARM_UP: u64 = 20;

/// The calls' latencies at one size.
#[derive(Default)]
struct Sample {
    inventory: Latencies,
    list: Latencies,
    shared: Latencies,
    subtree: Latencies,
    search: Latencies,
    allocate: Latencies,
    state_at: Latencies,
}

impl Sample {
    fn methods(&mut self) -> [(&'static str, &mut Latencies); 7] {
        [
            ("GetInventory (provider's subtree)", &mut self.inventory),
            ("ListNumbers (page by prefix)", &mut self.list),
            (
                "ListNumbers (page under +1, every provider's)",
                &mut self.shared,
            ),
            ("ListNumbers (a sub-account's subtree)", &mut self.subtree),
            ("SearchAvailableNumbers", &mut self.search),
            ("AllocateNumbers (quantity 1)", &mut self.allocate),
            ("GetNumberStateAt", &mut self.state_at),
        ]
    }
}

/// Where the calls go: the provider `p`'s id, its first child's, and the provider's prefix.
async fn place(sql: &tokio_postgres::Client, p: u64) -> Result<(String, String, String), BoxError> {
    let row = sql
        .query_one(
            "SELECT o.id, c.id FROM scale_accounts o JOIN scale_accounts c ON c.p = o.p AND c.j = 1
             WHERE o.p = $1 AND o.j = 0",
            &[&i32::try_from(p)?],
        )
        .await?;
    let (provider, child): (Uuid, Uuid) = (row.get(0), row.get(1));
    Ok((
        provider.to_string(),
        child.to_string(),
        format!("+1{}", 2_000 + p),
    ))
}

async fn timed<T, F: std::future::Future<Output = Result<T, tonic::Status>>>(
    into: &mut Latencies,
    record: bool,
    call: F,
) -> Result<T, BoxError> {
    let t = Instant::now();
    let answer = call.await?;
    if record {
        into.record(t.elapsed());
    }
    Ok(answer)
}

/// The calls at the present size, one at a time, on numbers and accounts that exist at both
/// sizes. The first rounds warm caches and are not counted.
async fn measure(b: &Bench, c: &mut Clients, cfg: &Config) -> Result<Sample, BoxError> {
    let per = cfg.per(cfg.small);
    let mut s = Sample::default();
    for r in 0..cfg.calls + WARM_UP {
        let record = r >= WARM_UP;
        let p = (r * 7_919) % cfg.providers;
        let (provider, child, prefix) = place(&b.cluster.sql, p).await?;
        timed(
            &mut s.inventory,
            record,
            c.number_pool.get_inventory(pb::GetInventoryRequest {
                account_id: provider.clone(),
                include_subtree: true,
            }),
        )
        .await?;
        let page = timed(
            &mut s.list,
            record,
            c.number_pool.list_numbers(pb::ListNumbersRequest {
                filter: Some(pb::NumberFilter {
                    owner_id: provider.clone(),
                    prefix: prefix.clone(),
                    ..Default::default()
                }),
                page_size: per.min(100) as i32,
                page_token: String::new(),
            }),
        )
        .await?
        .into_inner();
        // The same page under a prefix every provider's numbers share: the provider's block
        // is one among many under it, anywhere in E.164 order.
        let shared = timed(
            &mut s.shared,
            record,
            c.number_pool.list_numbers(pb::ListNumbersRequest {
                filter: Some(pb::NumberFilter {
                    owner_id: provider.clone(),
                    prefix: "+1".into(),
                    ..Default::default()
                }),
                page_size: per.min(100) as i32,
                page_token: String::new(),
            }),
        )
        .await?
        .into_inner();
        if shared.numbers != page.numbers {
            return Err(
                format!("provider {p}: its page under +1 is not its page under {prefix}").into(),
            );
        }
        // The first page of the numbers held in the provider's first sub-account's subtree
        // (the chain of `depth` accounts under it), read holder by holder: a page that subtree
        // fills at the small size too (it holds about a tenth of the provider's odd numbers),
        // so that both sizes answer as many.
        let subtree_page = (per / 25).max(1);
        let subtree = timed(
            &mut s.subtree,
            record,
            c.number_pool.list_numbers(pb::ListNumbersRequest {
                filter: Some(pb::NumberFilter {
                    holder_id: child.clone(),
                    include_subtree: true,
                    ..Default::default()
                }),
                page_size: subtree_page as i32,
                page_token: String::new(),
            }),
        )
        .await?
        .into_inner();
        let e164s: Vec<&String> = subtree.numbers.iter().map(|n| &n.e164).collect();
        if e164s.len() as u64 != subtree_page || !e164s.is_sorted() {
            return Err(format!("provider {p}: its sub-account's subtree page {e164s:?}").into());
        }
        let found = timed(
            &mut s.search,
            record,
            c.number_pool
                .search_available_numbers(pb::SearchAvailableNumbersRequest {
                    holder_id: provider.clone(),
                    pattern: prefix.clone(),
                    page_size: 10,
                    ..Default::default()
                }),
        )
        .await?
        .into_inner();
        if page.numbers.len() as u64 != per.min(100) || found.numbers.len() != 10 {
            return Err(format!(
                "provider {p}: {} listed, {} found",
                page.numbers.len(),
                found.numbers.len()
            )
            .into());
        }
        timed(
            &mut s.allocate,
            record,
            c.allocation.allocate_numbers(pb::AllocateNumbersRequest {
                from_account_id: provider.clone(),
                to_account_id: child,
                selection: Some(pb::NumberSelection {
                    selection: Some(pb::number_selection::Selection::Quantity(
                        pb::QuantitySelection {
                            count: 1,
                            ..Default::default()
                        },
                    )),
                }),
                ..Default::default()
            }),
        )
        .await?;
        let number = format!("+1{}", 2_000_000_000 + p * BLOCK + (r * 31) % per);
        timed(
            &mut s.state_at,
            record,
            c.allocation
                .get_number_state_at(pb::GetNumberStateAtRequest {
                    number,
                    time: Some(prost_types::Timestamp::from(SystemTime::now())),
                }),
        )
        .await?;
    }
    Ok(s)
}

/// The WAL written since the cluster started: records, full-page images and bytes. The calls
/// that write are the allocations; a page's first change after a checkpoint is written whole.
async fn wal_written(sql: &tokio_postgres::Client) -> Result<(i64, i64, i64), BoxError> {
    let row = sql
        .query_one(
            "SELECT wal_records, wal_fpi, wal_bytes::bigint FROM pg_stat_wal",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// Reads the tables the calls touch, and their indexes, into memory (the operating system's
/// cache, with `pg_prewarm` when the installation has it, else by scanning them); answers how
/// much was read.
async fn warm(sql: &tokio_postgres::Client) -> Result<String, BoxError> {
    let relations = "SELECT c.oid FROM pg_class c WHERE c.relname IN ('numbers', 'number_events', 'accounts', 'inventory_counts', 'series')
         UNION SELECT i.indexrelid FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
         WHERE t.relname IN ('numbers', 'number_events', 'accounts', 'inventory_counts', 'series')";
    let bytes: i64 = sql
        .query_one(
            &format!("SELECT sum(pg_relation_size(oid))::bigint FROM ({relations}) r"),
            &[],
        )
        .await?
        .get(0);
    if sql
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        .await
        .is_ok()
    {
        sql.batch_execute(&format!(
            "SELECT pg_prewarm(r.oid, 'read') FROM ({relations}) r"
        ))
        .await?;
    } else {
        sql.batch_execute(
            "SELECT count(*) FROM numbers; SELECT count(*) FROM number_events; SELECT count(*) FROM accounts",
        )
        .await?;
    }
    Ok(format!("{:.1} GB", bytes as f64 / 1e9))
}

/// Prints the server's memory now and at its peak; answers the peak.
fn memory(b: &Bench, when: &str) -> f64 {
    let (now, peak) = b.server_memory_mib();
    println!("  server memory {when}: {now:.1} MiB resident, {peak:.1} MiB peak so far");
    peak
}

async fn run(cfg: Config) -> Result<(), BoxError> {
    let mut settings = vec![
        (
            "shared_buffers",
            if common::quick() { "256MB" } else { "2GB" },
        ),
        ("max_wal_size", "16GB"),
        ("max_connections", "200"),
    ];
    // BENCH_SCALE_EXPLAIN_MS: the plan of every statement slower than that, with its timings
    // and buffers, into the cluster's log, kept as PLANS_LOG.
    let explain = std::env::var("BENCH_SCALE_EXPLAIN_MS").ok();
    if let Some(ms) = &explain {
        settings.extend([
            ("session_preload_libraries", "auto_explain"),
            ("auto_explain.log_min_duration", ms.as_str()),
            ("auto_explain.log_analyze", "on"),
            ("auto_explain.log_buffers", "on"),
        ]);
    }
    let b = common::start("scale", &settings).await?;
    let mut c = b.clients().await?;
    let machine = machine(&b.cluster.sql).await?;
    println!("{machine}");
    let started = Instant::now();
    seed_accounts(&b.cluster.sql, &cfg).await?;
    println!(
        "{} accounts under {} providers (depth {}) in {:.1} s",
        cfg.per_provider * cfg.providers,
        cfg.providers,
        cfg.depth,
        started.elapsed().as_secs_f64()
    );

    let mut samples = Vec::new();
    let mut peak = 0.0f64;
    let mut seeded = 0;
    for total in [cfg.small, cfg.large] {
        let started = Instant::now();
        grow(&b.cluster.sql, &cfg, cfg.per(seeded), cfg.per(total)).await?;
        seeded = total;
        println!(
            "grew to {} numbers in {:.1} s",
            thousands(cfg.per(total) * cfg.providers),
            started.elapsed().as_secs_f64()
        );
        peak = peak.max(memory(&b, "after seeding"));
        // First as the seeding left the caches: each call the first to read its pages, some
        // from disk. Then with the tables and their indexes read into memory once, as a server
        // that has been running has them when they fit: the figures of record.
        let mut passes = Vec::new();
        for pass in ["cold, right after seeding", "warm"] {
            if pass == "warm" {
                let started = Instant::now();
                let read = warm(&b.cluster.sql).await?;
                println!(
                    "  read {read} into memory in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
            let (started, wal) = (Instant::now(), wal_written(&b.cluster.sql).await?);
            let mut sample = measure(&b, &mut c, &cfg).await?;
            let (records, images, bytes) = wal_written(&b.cluster.sql).await?;
            let rounds = (cfg.calls + WARM_UP) as f64;
            println!(
                "  {pass}: {} calls of each method in {:.1} s; WAL a round of calls (one allocation): {:.0} records, {:.1} full-page images, {:.1} kB",
                cfg.calls,
                started.elapsed().as_secs_f64(),
                (records - wal.0) as f64 / rounds,
                (images - wal.1) as f64 / rounds,
                (bytes - wal.2) as f64 / rounds / 1024.0,
            );
            for (name, l) in sample.methods() {
                println!(
                    "    {name}: p50 {:.2} ms, p99 {:.2} ms",
                    l.ms(0.5),
                    l.ms(0.99)
                );
            }
            peak = peak.max(memory(&b, "after the calls"));
            passes.push(sample);
        }
        samples.push(passes);
    }
    if explain.is_some() {
        std::fs::copy(b.cluster.dir.join("postgres.log"), PLANS_LOG)?;
        println!("the slow statements' plans: {PLANS_LOG}");
    }
    b.stop();

    let (small, large) = (
        thousands(cfg.per(cfg.small) * cfg.providers),
        thousands(cfg.per(cfg.large) * cfg.providers),
    );
    println!();
    println!(
        "Measured {machine}; {} accounts in trees of depth {} under {} providers{}.",
        thousands(cfg.per_provider * cfg.providers),
        cfg.depth,
        thousands(cfg.providers),
        if common::quick() {
            "; a quick run (small sizes), not the figures of record"
        } else {
            ""
        }
    );
    println!();
    println!(
        "| call, one caller | at {small} numbers | at {large} numbers | ratio of p99 | target | met |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let [[_, mut at_small], [mut cold, mut at_large]]: [[Sample; 2]; 2] = samples
        .into_iter()
        .map(|p| p.try_into().map_err(|_| "two passes were measured"))
        .collect::<Result<Vec<_>, _>>()?
        .try_into()
        .map_err(|_| "two sizes were measured")?;
    for (((name, s), (_, l)), (_, c)) in at_small
        .methods()
        .into_iter()
        .zip(at_large.methods())
        .zip(cold.methods())
    {
        let ratio = l.ms(0.99) / s.ms(0.99);
        println!(
            "| {name} | p50 {:.2} ms, p99 {:.2} ms | p50 {:.2} ms, p99 {:.2} ms (cold: p99 {:.2} ms) | {ratio:.2}x | ≤ 1.5x | {} |",
            s.ms(0.5),
            s.ms(0.99),
            l.ms(0.5),
            l.ms(0.99),
            c.ms(0.99),
            if ratio <= 1.5 { "yes" } else { "no" }
        );
    }
    println!(
        "| Server RSS peak, throughout | | {peak:.1} MiB | | < 64 MiB | {} |",
        if peak < 64.0 { "yes" } else { "no" }
    );
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let cfg = Config::from_env()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cfg))
}
