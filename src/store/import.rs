//! The import in PostgreSQL: a narrow temporary staging table (line, id, E.164, holder) fed
//! by COPY BINARY for the set-based checks that reject rows, then the rows that pass copied
//! (COPY BINARY) straight into `numbers`, and their events written in one INSERT ... SELECT
//! from the staged rows.

use std::pin::Pin;

use bytes::{BufMut, BytesMut};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{IsNull, Json, ToSql, Type, accepts, to_sql_checked};
use uuid::Uuid;

use super::Tx;
use crate::domain::csv::{Reason, Rejected, SpooledRow};
use crate::domain::number::{Actor, NumberState, Operation};
use crate::error::Result;

/// Creates the staging tables, dropped with the transaction. The staged rows carry what the
/// checks and the events need, not the attributes: those go to `numbers` only.
pub async fn stage(tx: &Tx<'_>) -> Result<()> {
    Ok(tx
        .batch_execute(
            "CREATE TEMP TABLE import_rows (
                 line bigint NOT NULL, id uuid NOT NULL, e164 text COLLATE \"C\" NOT NULL,
                 holder_id uuid) ON COMMIT DROP;
             CREATE TEMP TABLE import_rejects (line bigint PRIMARY KEY, e164 text, reason text, message text) ON COMMIT DROP",
        )
        .await?)
}

/// Where the staged rows are written, each with [`write_staged`].
pub async fn copy_staged(tx: &Tx<'_>) -> Result<BinaryCopyInWriter> {
    let sink = tx
        .copy_in("COPY import_rows (line, id, e164, holder_id) FROM STDIN BINARY")
        .await?;
    Ok(BinaryCopyInWriter::new(
        sink,
        &[Type::INT8, Type::UUID, Type::TEXT, Type::UUID],
    ))
}

/// Stages a row under the id its number will have.
pub async fn write_staged(
    w: Pin<&mut BinaryCopyInWriter>,
    row: &SpooledRow<'_>,
    id: Uuid,
) -> Result<()> {
    Ok(w.write(&[&row.line, &id, &row.e164, &row.holder_id])
        .await?)
}

/// Where the numbers that passed the checks are written, each with [`write_number`].
pub async fn copy_numbers(tx: &Tx<'_>) -> Result<BinaryCopyInWriter> {
    let sink = tx
        .copy_in(
            "COPY numbers (id, provider_id, e164, holder_id, holder_path, status, series_id,
                 number_type, source, carrier, sip_trunk, billing_reference, service_info, tags, labels,
                 pick)
             FROM STDIN BINARY",
        )
        .await?;
    Ok(BinaryCopyInWriter::new(
        sink,
        &[
            Type::UUID,
            Type::UUID,
            Type::TEXT,
            Type::UUID,
            Type::TEXT,
            Type::TEXT,
            Type::UUID,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT_ARRAY,
            Type::JSONB,
            Type::FLOAT8,
        ],
    ))
}

/// Where a number goes: its id (as staged), owner, holder and the holder's path, series.
pub struct Filing<'a> {
    pub id: Uuid,
    pub owner: Uuid,
    pub holder: Uuid,
    pub holder_path: &'a str,
    pub series: Option<Uuid>,
    /// Where quantity allocation finds it: shared by a run of rows (see flows::import).
    pub pick: f64,
}

/// Adds a number, AVAILABLE in its holder, with the row's attributes.
pub async fn write_number(
    w: Pin<&mut BinaryCopyInWriter>,
    row: &SpooledRow<'_>,
    f: &Filing<'_>,
) -> Result<()> {
    Ok(w.write(&[
        &f.id,
        &f.owner,
        &row.e164,
        &f.holder,
        &f.holder_path,
        &"available",
        &f.series,
        &row.number_type,
        &row.source,
        &row.carrier,
        &row.sip_trunk,
        &row.billing_reference,
        &row.service_info,
        &row.tags(),
        &JsonText(row.labels),
        &f.pick,
    ])
    .await?)
}

/// JSON already written as text (the parser wrote the labels), sent as it is.
#[derive(Debug)]
struct JsonText<'a>(&'a str);

impl ToSql for JsonText<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            // The jsonb binary format: a version byte, then the text.
            out.put_u8(1);
        }
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    accepts!(JSON, JSONB);
    to_sql_checked!();
}

/// A provider's series, each prefix with its id: the import files its numbers itself.
pub async fn series(tx: &Tx<'_>, owner: Uuid) -> Result<Vec<(String, Uuid)>> {
    Ok(tx
        .query(
            "SELECT prefix, id FROM series WHERE provider_id = $1",
            &[&owner],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// The lines of the rejected rows, in order.
pub async fn rejected_lines(tx: &Tx<'_>) -> Result<Vec<i64>> {
    Ok(tx
        .query("SELECT line FROM import_rejects ORDER BY line", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
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

/// Records the event of every number added: one per staged row not rejected, set-based.
/// `states` maps every holder to its path and the state its numbers' events record, made by
/// serde like every other event's ([`NumberState`]): a handful of holders, joined in SQL,
/// instead of a JSON value per row.
pub async fn record_events(
    tx: &Tx<'_>,
    owner: Uuid,
    actor: &Actor,
    states: &[(Uuid, String, NumberState)],
) -> Result<u64> {
    let holders: Vec<Uuid> = states.iter().map(|(h, _, _)| *h).collect();
    let paths: Vec<&str> = states.iter().map(|(_, p, _)| p.as_str()).collect();
    let afters: Vec<Json<&NumberState>> = states.iter().map(|(_, _, s)| Json(s)).collect();
    Ok(tx
        .execute(
            "INSERT INTO number_events (provider_id, number_id, e164, actor, actor_account_id, request_id,
                 operation, holder_path, before, after)
             SELECT $1, s.id, s.e164, $2, $3, $4, $5, st.path, NULL, st.after
             FROM import_rows s
             JOIN unnest($6::uuid[], $7::text[], $8::jsonb[]) AS st(holder_id, path, after)
               ON st.holder_id = coalesce(s.holder_id, $1)
             WHERE NOT EXISTS (SELECT 1 FROM import_rejects r WHERE r.line = s.line)",
            &[
                &owner,
                &actor.subject,
                &actor.account_id,
                &actor.request_id,
                &Operation::Add.as_str(),
                &holders,
                &paths,
                &afters,
            ],
        )
        .await?)
}
