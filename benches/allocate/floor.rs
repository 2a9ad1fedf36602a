//! The database's floor for one allocation: the least SQL any service must run to hand out one
//! number and record it, on full-size copies of the real tables (their columns, defaults, checks
//! and indexes; no triggers, no foreign keys): UPDATE one number by primary key + INSERT one
//! event, one transaction each, run by pgbench. The service is compared with what PostgreSQL
//! itself does on the same cluster in the same run, not with the service's own SQL.

use std::path::PathBuf;

use crate::common::{BoxError, Cluster};

/// Copies `numbers` and `number_events` (with one real allocation's event as the model of the
/// floor's events), and writes pgbench's script; answers its path.
pub async fn prepare(cluster: &Cluster, child: &str) -> Result<PathBuf, BoxError> {
    cluster
        .sql
        .batch_execute(
            "DROP TABLE IF EXISTS floor_numbers, floor_events, floor_ids;
             CREATE TABLE floor_numbers (LIKE numbers INCLUDING ALL);
             INSERT INTO floor_numbers SELECT * FROM numbers;
             CREATE TABLE floor_events (LIKE number_events INCLUDING ALL);
             INSERT INTO floor_events OVERRIDING SYSTEM VALUE SELECT * FROM number_events;
             CREATE TABLE floor_ids (i bigint PRIMARY KEY, id uuid NOT NULL, e164 text NOT NULL);
             INSERT INTO floor_ids SELECT row_number() OVER (), id, e164 FROM floor_numbers;",
        )
        .await?;
    cluster
        .sql
        .batch_execute(
            "SELECT setval(pg_get_serial_sequence('floor_events', 'seq'),
                           (SELECT coalesce(max(seq), 0) + 1 FROM floor_events))",
        )
        .await?;
    cluster
        .sql
        .batch_execute("VACUUM ANALYZE floor_numbers, floor_events, floor_ids")
        .await?;
    let model = cluster
        .sql
        .query_one(
            "SELECT provider_id::text, holder_path, before::text, after::text, actor
             FROM number_events WHERE operation = 'allocate' ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .await?;
    let (provider, path, before, after, actor): (String, String, String, String, String) = (
        model.get(0),
        model.get(1),
        model.get(2),
        model.get(3),
        model.get(4),
    );
    let rows: i64 = cluster
        .sql
        .query_one("SELECT count(*) FROM floor_ids", &[])
        .await?
        .get(0);
    let quote = |s: &str| s.replace('\'', "''");
    let script = format!(
        "\\set r random(1, {rows})
BEGIN;
UPDATE floor_numbers SET holder_id = '{child}', holder_path = '{path}', version = version + 1, update_time = now() WHERE id = (SELECT id FROM floor_ids WHERE i = :r);
INSERT INTO floor_events (provider_id, number_id, e164, actor, request_id, operation, holder_path, before, after) SELECT '{provider}', id, e164, '{actor}', '', 'allocate', '{path}', '{before}', '{after}' FROM floor_ids WHERE i = :r;
END;
",
        path = quote(&path),
        actor = quote(&actor),
        before = quote(&before),
        after = quote(&after),
    );
    let file = cluster.dir.join("floor.sql");
    std::fs::write(&file, script)?;
    Ok(file)
}
