//! Versioned migrations from `migrations/`, applied at start-up under an advisory lock so that
//! several replicas can start at once.

use tokio_postgres::Client;

use crate::error::Result;

/// Every migration, in order. A migration is never edited once released: add a new one.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "accounts",
        include_str!("../../migrations/0001_accounts.sql"),
    ),
    (
        2,
        "numbers",
        include_str!("../../migrations/0002_numbers.sql"),
    ),
    (
        3,
        "series_of",
        include_str!("../../migrations/0003_series_of.sql"),
    ),
    (
        4,
        "idempotency_keys",
        include_str!("../../migrations/0004_idempotency_keys.sql"),
    ),
    (
        5,
        "sip_trunks",
        include_str!("../../migrations/0005_sip_trunks.sql"),
    ),
    (
        6,
        "events",
        include_str!("../../migrations/0006_events.sql"),
    ),
    (
        7,
        "set_based_checks",
        include_str!("../../migrations/0007_set_based_checks.sql"),
    ),
    (
        8,
        "live_e164_by_pattern",
        include_str!("../../migrations/0008_live_e164_by_pattern.sql"),
    ),
    (
        9,
        "deleted_by_provider",
        include_str!("../../migrations/0009_deleted_by_provider.sql"),
    ),
];

/// Any fixed key; it only has to be the same for every replica.
const LOCK_KEY: i64 = 0x6e75_6d62_6572;

/// Applies the migrations the database lacks; returns how many it applied.
pub async fn migrate(client: &mut Client) -> Result<usize> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .or_else(ignore_concurrent_create)?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = apply(client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await?;
    result
}

/// The schema version this build expects: the last migration's.
pub fn expected_version() -> i32 {
    MIGRATIONS.last().map_or(0, |(version, _, _)| *version)
}

/// The version the database's schema is at; an error when it has no migrations table.
pub async fn current_version(client: &Client) -> Result<i32> {
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Two replicas racing on CREATE TABLE IF NOT EXISTS can collide on the catalog's unique index.
fn ignore_concurrent_create(e: tokio_postgres::Error) -> Result<()> {
    if super::errors::is_unique_violation(&e) {
        Ok(())
    } else {
        Err(e.into())
    }
}

async fn apply(client: &mut Client) -> Result<usize> {
    let applied: Vec<i32> = client
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut count = 0;
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, name, "applied migration");
        count += 1;
    }
    Ok(count)
}
