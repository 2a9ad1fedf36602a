//! The import in PostgreSQL: a temporary staging table fed by COPY, the set-based checks that
//! reject rows, and the one INSERT ... SELECT that adds the rest with their events.

use bytes::Bytes;
use tokio_postgres::CopyInSink;
use tokio_postgres::types::Json;
use uuid::Uuid;

use super::Tx;
use crate::domain::csv::{Reason, Rejected};
use crate::domain::number::{Actor, NumberState, Operation};
use crate::error::Result;

/// Creates the staging tables, dropped with the transaction. Their columns are those
/// [`crate::domain::csv::ImportRow::write_copy`] writes.
pub async fn stage(tx: &Tx<'_>) -> Result<()> {
    Ok(tx
        .batch_execute(
            "CREATE TEMP TABLE import_rows (
                 line bigint NOT NULL, e164 text COLLATE \"C\" NOT NULL, number_type text NOT NULL,
                 source text NOT NULL, carrier text NOT NULL, sip_trunk text NOT NULL,
                 billing_reference text NOT NULL, service_info text NOT NULL, tags text,
                 labels jsonb NOT NULL, holder_id uuid) ON COMMIT DROP;
             CREATE TEMP TABLE import_rejects (line bigint PRIMARY KEY, e164 text, reason text, message text) ON COMMIT DROP",
        )
        .await?)
}

/// The sink the COPY text of good rows streams into.
pub async fn copy_in(tx: &Tx<'_>) -> Result<CopyInSink<Bytes>> {
    Ok(tx
        .copy_in(
            "COPY import_rows (line, e164, number_type, source, carrier, sip_trunk, \
             billing_reference, service_info, tags, labels, holder_id) FROM STDIN",
        )
        .await?)
}

/// Rejects, set-based, the rows the file itself or the inventory refuses: numbers already in
/// the inventory, numbers repeated in the file, holders that are not active accounts of the
/// owner's tree.
pub async fn reject_known(tx: &Tx<'_>, owner: Uuid) -> Result<()> {
    tx.execute(
        "INSERT INTO import_rejects
         SELECT s.line, s.e164, 'ALREADY_EXISTS', 'the number is already in the inventory'
         FROM import_rows s WHERE EXISTS (SELECT 1 FROM numbers n WHERE n.e164 = s.e164 AND n.status <> 'deleted')
         ON CONFLICT DO NOTHING",
        &[],
    )
    .await?;
    tx.execute(
        "INSERT INTO import_rejects
         SELECT line, e164, 'DUPLICATE_IN_FILE', 'the number appears earlier in the file, on line ' || first
         FROM (SELECT line, e164, first_value(line) OVER w AS first, row_number() OVER w AS rn
               FROM import_rows WINDOW w AS (PARTITION BY e164 ORDER BY line)) d
         WHERE rn > 1
         ON CONFLICT DO NOTHING",
        &[],
    )
    .await?;
    tx.execute(
        "INSERT INTO import_rejects
         SELECT s.line, s.e164, 'INVALID_ACCOUNT', 'holder_id is not an active account of the owner''s tree'
         FROM import_rows s LEFT JOIN accounts a
           ON a.id = s.holder_id AND a.provider_id = $1 AND a.delete_time IS NULL AND a.state = 'active'
         WHERE s.holder_id IS NOT NULL AND a.id IS NULL
         ON CONFLICT DO NOTHING",
        &[&owner],
    )
    .await?;
    Ok(())
}

/// The accounts the rows not yet rejected go into, below the owner, with how many each takes.
pub async fn targets(tx: &Tx<'_>) -> Result<Vec<(Uuid, i64)>> {
    Ok(tx
        .query(
            "SELECT s.holder_id, count(*) FROM import_rows s
             WHERE s.holder_id IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM import_rejects r WHERE r.line = s.line)
             GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Rejects every row that goes into `target`.
pub async fn reject_target(tx: &Tx<'_>, target: Uuid, reason: Reason, why: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO import_rejects SELECT line, e164, $2, $3
         FROM import_rows WHERE holder_id = $1 ON CONFLICT DO NOTHING",
        &[&target, &reason.as_str(), &why],
    )
    .await?;
    Ok(())
}

/// How many rows the checks rejected, and the first `limit` of them by line.
pub async fn rejects(tx: &Tx<'_>, limit: i64) -> Result<(i64, Vec<Rejected>)> {
    let count = tx
        .query_one("SELECT count(*) FROM import_rejects", &[])
        .await?
        .get(0);
    let listed = tx
        .query(
            "SELECT line, e164, reason, message FROM import_rejects ORDER BY line LIMIT $1",
            &[&limit],
        )
        .await?
        .iter()
        .map(|row| Rejected {
            line: row.get(0),
            e164: row.get(1),
            reason: reason(row.get(2)),
            message: row.get(3),
        })
        .collect();
    Ok((count, listed))
}

/// The reason the checks above wrote; they write only these words.
fn reason(s: &str) -> Reason {
    match s {
        "ALREADY_EXISTS" => Reason::AlreadyExists,
        "QUOTA_EXCEEDED" => Reason::QuotaExceeded,
        "DUPLICATE_IN_FILE" => Reason::DuplicateInFile,
        _ => Reason::InvalidAccount,
    }
}

/// Adds the rows not rejected, AVAILABLE in their holder (the owner when none is named), filed
/// in their series, each with its event. `states` maps every holder to the state its numbers'
/// events record, made by serde like every other event's ([`NumberState`]): a handful of
/// holders, joined in SQL, instead of a JSON value per row. Answers how many were added.
pub async fn insert(
    tx: &Tx<'_>,
    owner: Uuid,
    owner_path: &str,
    actor: &Actor,
    states: &[(Uuid, NumberState)],
) -> Result<i64> {
    tx.execute(
        "DELETE FROM import_rows s USING import_rejects r WHERE s.line = r.line",
        &[],
    )
    .await?;
    let holders: Vec<Uuid> = states.iter().map(|(h, _)| *h).collect();
    let afters: Vec<Json<&NumberState>> = states.iter().map(|(_, s)| Json(s)).collect();
    let added = tx
        .execute(
            "WITH added AS (
                 INSERT INTO numbers (id, provider_id, e164, holder_id, holder_path, status, series_id,
                     number_type, source, carrier, sip_trunk, billing_reference, service_info, tags, labels)
                 SELECT gen_random_uuid(), $1, s.e164, coalesce(s.holder_id, $1), coalesce(a.path, $2), 'available',
                        (SELECT series FROM series_of($1, s.e164) AS series),
                        s.number_type, s.source, s.carrier, s.sip_trunk, s.billing_reference, s.service_info,
                        -- Tags come joined by the unit separator (csv::TAG_JOIN).
                        coalesce(string_to_array(s.tags, chr(31)), '{}'), s.labels
                 FROM import_rows s LEFT JOIN accounts a ON a.id = s.holder_id
                 RETURNING id, e164, holder_id, holder_path)
             INSERT INTO number_events (provider_id, number_id, e164, actor, actor_account_id, request_id,
                 operation, holder_path, before, after)
             SELECT $1, n.id, n.e164, $3, $4, $5, $6, n.holder_path, NULL, st.after
             FROM added n JOIN unnest($7::uuid[], $8::jsonb[]) AS st(holder_id, after) USING (holder_id)",
            &[
                &owner,
                &owner_path,
                &actor.subject,
                &actor.account_id,
                &actor.request_id,
                &Operation::Add.as_str(),
                &holders,
                &afters,
            ],
        )
        .await?;
    Ok(added as i64)
}
