//! NumberPool benchmarks against DESIGN.md §7, run with `cargo bench --bench number_pool`:
//! - import of BENCH_IMPORT_ROWS (1,000,000) rows through the import RPC vs `\copy` of the same
//!   number of rows into the same table and of their events into the events table;
//! - a page of 100 numbers by prefix out of BENCH_NUMBERS (10,000,000) vs the bare SQL query;
//! - inventory of an account at 100,000 and at BENCH_NUMBERS numbers;
//! - the server's resident memory.

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use numbering::domain::account::child_path;
use numbering_client::v1 as pb;

use common::{BoxError, create_account, env_u64, percentile, pg_program, seed_numbers};

async fn time_inventory(
    c: &mut numbering_client::Clients,
    account: &str,
    calls: usize,
) -> Duration {
    let mut times = Vec::new();
    for _ in 0..calls {
        let t = Instant::now();
        c.number_pool
            .get_inventory(pb::GetInventoryRequest {
                account_id: account.into(),
                include_subtree: true,
            })
            .await
            .expect("inventory");
        times.push(t.elapsed());
    }
    times.sort();
    percentile(&times, 0.5)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let import_rows = env_u64("BENCH_IMPORT_ROWS", 1_000_000);
    let numbers = env_u64("BENCH_NUMBERS", 10_000_000) as i64;
    let b = common::start(
        "pool",
        &[
            ("shared_buffers", "1GB"),
            ("max_wal_size", "8GB"),
            ("synchronous_commit", "off"),
            ("max_connections", "200"),
        ],
    )
    .await?;
    let mut c = b.clients().await?;

    // Import through the RPC vs \copy of as many rows.
    let importer = create_account(&mut c, None, "Importer").await?;
    let mut csv = String::from("e164,carrier\n");
    for i in 0..import_rows {
        csv.push_str(&format!("+1303{},Acme\n", 2_000_000 + i));
    }
    let (result, import_time) = common::import_csv(&mut c, &importer, &csv).await?;
    let (_, import_peak) = b.server_memory_mib();

    let copy_file = b.cluster.dir.join("copy.tsv");
    let owner = uuid::Uuid::parse_str(&importer.id)?;
    let path = child_path("", owner);
    let events_file = b.cluster.dir.join("events.tsv");
    let (mut rows, mut events) = (String::new(), String::new());
    let after = format!(r#"{{"status": "available", "holder_id": "{owner}"}}"#);
    for i in 0..result.rows_imported.max(1) {
        let id = uuid::Uuid::new_v4();
        let e164 = format!("+1720{}", 2_000_000 + i);
        rows.push_str(&format!(
            "{id}\t{owner}\t{e164}\t{owner}\t{path}\tavailable\n"
        ));
        events.push_str(&format!(
            "{owner}\t{id}\t{e164}\tbench\tADD\t{path}\t{after}\n"
        ));
    }
    std::fs::write(&copy_file, rows)?;
    std::fs::write(&events_file, events)?;
    // What the database itself does for an import: \copy of the same rows into numbers, then
    // of their events into number_events.
    let psql_copy = |copy: String| -> Result<Duration, BoxError> {
        let t = Instant::now();
        let status = std::process::Command::new(pg_program("psql"))
            .args([
                "-q",
                "-h",
                &b.cluster.dir.join("run").display().to_string(),
                "-U",
                "postgres",
                "-d",
                "bench",
                "-c",
            ])
            .arg(copy)
            .status()?;
        assert!(status.success());
        Ok(t.elapsed())
    };
    let copy_rows = psql_copy(format!(
        "\\copy numbers (id, provider_id, e164, holder_id, holder_path, status) FROM '{}'",
        copy_file.display()
    ))?;
    let copy_events = psql_copy(format!(
        "\\copy number_events (provider_id, number_id, e164, actor, operation, holder_path, after) FROM '{}'",
        events_file.display()
    ))?;
    let copy_time = copy_rows + copy_events;
    println!(
        "import: {} rows read, {} imported, {} rejected in {:.2} s ({:.0} rows/s); \\copy of {} rows: {:.2} s + their events: {:.2} s; ratio {:.2}x (target <= 1.5x); server peak {:.1} MiB",
        result.rows_read,
        result.rows_imported,
        result.rows_rejected,
        import_time.as_secs_f64(),
        result.rows_imported as f64 / import_time.as_secs_f64(),
        result.rows_imported,
        copy_rows.as_secs_f64(),
        copy_events.as_secs_f64(),
        import_time.as_secs_f64() / copy_time.as_secs_f64(),
        import_peak,
    );

    // Inventory at 100,000 and at `numbers`; list by prefix at `numbers`.
    let pool = create_account(&mut c, None, "Pool").await?;
    seed_numbers(&b.cluster.sql, &pool, 0, 100_000).await?;
    let small = time_inventory(&mut c, &pool.id, 200).await;
    seed_numbers(&b.cluster.sql, &pool, 100_000, numbers - 100_000).await?;
    let large = time_inventory(&mut c, &pool.id, 200).await;
    println!(
        "inventory (subtree) p50: {:.3} ms at 100,000 numbers, {:.3} ms at {} numbers; ratio {:.2}x (target <= 2x)",
        small.as_secs_f64() * 1e3,
        large.as_secs_f64() * 1e3,
        numbers,
        large.as_secs_f64() / small.as_secs_f64()
    );

    let pool_id = uuid::Uuid::parse_str(&pool.id)?;
    // "+1" and the first 7 digits of a seeded number: 1,000 numbers share each prefix.
    let prefixes: Vec<String> = (0..200)
        .map(|i| {
            let g = (i as i64 * 7_919_993) % (numbers - 1_000);
            format!("+1{}", 2_000_000_000 + g)[..9].to_string()
        })
        .collect();
    // BENCH_LIST_CALLS pages of each side (200), cycling over the prefixes.
    let calls = env_u64("BENCH_LIST_CALLS", 200) as usize;
    let prefixes: Vec<String> = prefixes.iter().cycle().take(calls).cloned().collect();
    println!("listing {calls} pages");
    let mut rpc = Vec::new();
    for p in &prefixes {
        let t = Instant::now();
        let page = common::list_page(&mut c, &pool.id, p).await?;
        rpc.push(t.elapsed());
        assert_eq!(page.numbers.len(), 100);
    }
    let statement = common::prepare_bare_page(&b.cluster.sql).await?;
    let mut bare = Vec::new();
    for p in &prefixes {
        let t = Instant::now();
        let rows = b
            .cluster
            .sql
            .query(&statement, &[&pool_id, p, &format!("{p}:")])
            .await?;
        bare.push(t.elapsed());
        assert_eq!(rows.len(), 101);
    }
    rpc.sort();
    bare.sort();
    let (r50, s50) = (percentile(&rpc, 0.5), percentile(&bare, 0.5));
    println!(
        "list 100 by prefix out of {numbers}: ListNumbers p50 {:.3} ms, p99 {:.3} ms; bare SQL p50 {:.3} ms; ratio {:.2}x (target <= 1.5x)",
        r50.as_secs_f64() * 1e3,
        percentile(&rpc, 0.99).as_secs_f64() * 1e3,
        s50.as_secs_f64() * 1e3,
        r50.as_secs_f64() / s50.as_secs_f64()
    );
    let (rss, peak) = b.server_memory_mib();
    println!("server memory: {rss:.1} MiB resident now, {peak:.1} MiB peak (target < 64 MiB)");
    b.stop();
    Ok(())
}
