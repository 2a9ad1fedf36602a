//! The life of a number in PostgreSQL: picking unused numbers from a pool, locking named ones,
//! saving many moves in one statement (one event per number), quotas, history, and the
//! sweeper's batches.
//!
//! The statements on the allocation path are prepared once per connection: re-planning them on
//! every call would cost the database more than running them.

use std::time::SystemTime;

use tokio_postgres::Row;
use tokio_postgres::types::Json;
use uuid::Uuid;

use super::GenericClient;
use super::numbers::{COLUMNS, from_row};
use crate::domain::command::Key;
use crate::domain::number::{Actor, NumberState, Operation};
use crate::domain::number::{Number, NumberEvent};
use crate::error::{Error, Result};

/// The unused numbers of one holder a quantity selection may take.
#[derive(Debug, Clone)]
pub struct Pool {
    pub holder_id: Uuid,
    pub series_id: Option<Uuid>,
    /// An E.164 prefix (`+1303`).
    pub prefix: Option<String>,
}

impl Pool {
    /// The WHERE clause after `holder_id = $1 AND status = 'available'`, with parameters from $2.
    fn filter(&self) -> (String, Vec<&(dyn tokio_postgres::types::ToSql + Sync)>) {
        let mut sql = String::new();
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&self.holder_id];
        if let Some(series) = &self.series_id {
            params.push(series);
            sql.push_str(&format!(" AND series_id = ${}", params.len()));
        }
        if let Some(prefix) = &self.prefix {
            params.push(prefix);
            sql.push_str(&format!(" AND starts_with(e164, ${})", params.len()));
        }
        (sql, params)
    }

    /// How a shortage is described: "in series X", "under +1303".
    pub fn describe(&self) -> String {
        let mut s = String::new();
        if let Some(series) = self.series_id {
            s.push_str(&format!(" in series {series}"));
        }
        if let Some(prefix) = &self.prefix {
            s.push_str(&format!(" under {prefix}"));
        }
        s
    }
}

/// Takes (locks) `n` unused numbers of the pool, or as many as it has once every transaction
/// holding some of them has finished.
///
/// The fast path waits for no one: `SKIP LOCKED` from a random point of the `pick` key, wrapping
/// around, so concurrent allocators start far apart and none crawls over the dead index entries
/// that earlier allocations leave at the head of a pool. Imported rows share a pick in runs (see
/// flows::import), so the numbers taken lie side by side. It runs behind a
/// savepoint sent in the same round trip.
///
/// When it comes up short, the rows it skipped may belong to a transaction that will roll back
/// (a validate_only allocation, one refused by a quota): an allocation never fails because
/// another locked a row it did not end up taking. So the slow path gives back what the fast
/// path took (rolling back to the savepoint), then locks `n` again waiting on their holders, in
/// id order: the order every wait on named numbers takes ([`lock_named`]), so two waiters cannot
/// deadlock, and, holding none of the pool while it waits, it cannot close a cycle with a fast
/// path that holds some. A row whose holder changed it no longer qualifies and the scan moves
/// on; what it cannot take after that, the pool really lacks.
pub async fn pick(db: &impl GenericClient, pool: &Pool, n: i64) -> Result<Vec<Number>> {
    let start: f64 = rand::random();
    let ((), mut taken) = futures::try_join!(
        async { Ok(db.batch_execute("SAVEPOINT pick").await?) },
        pick_from(db, pool, ">=", start, n),
    )?;
    let short = n - taken.len() as i64;
    if short > 0 {
        taken.extend(pick_from(db, pool, "<", start, short).await?);
    }
    if (taken.len() as i64) == n {
        return Ok(taken);
    }
    db.batch_execute("ROLLBACK TO SAVEPOINT pick").await?;
    pick_waiting(db, pool, n).await
}

/// Locks up to `n` unused numbers of the pool in id order, waiting for rows other transactions
/// hold.
async fn pick_waiting(db: &impl GenericClient, pool: &Pool, n: i64) -> Result<Vec<Number>> {
    let (filter, mut params) = pool.filter();
    let sql = format!(
        "SELECT {COLUMNS} FROM numbers
         WHERE holder_id = $1 AND status = 'available'{filter}
         ORDER BY id LIMIT ${}
         FOR UPDATE",
        params.len() + 1
    );
    params.push(&n);
    Ok(db
        .query(&sql, &params)
        .await?
        .iter()
        .map(from_row)
        .collect())
}

async fn pick_from(
    db: &impl GenericClient,
    pool: &Pool,
    side: &str,
    start: f64,
    n: i64,
) -> Result<Vec<Number>> {
    let (filter, mut params) = pool.filter();
    let sql = format!(
        "SELECT {COLUMNS} FROM numbers
         WHERE holder_id = $1 AND status = 'available'{filter} AND pick {side} ${}
         ORDER BY pick LIMIT ${}
         FOR UPDATE SKIP LOCKED",
        params.len() + 1,
        params.len() + 2
    );
    params.push(&start);
    params.push(&n);
    let statement = db.prepare_cached(&sql).await?;
    Ok(db
        .query(&statement, &params)
        .await?
        .iter()
        .map(from_row)
        .collect())
}

/// How many unused numbers the pool has: what a refused quantity is told.
pub async fn count_unused(db: &impl GenericClient, pool: &Pool) -> Result<i64> {
    let (filter, params) = pool.filter();
    let sql = format!(
        "SELECT count(*) FROM numbers WHERE holder_id = $1 AND status = 'available'{filter}"
    );
    Ok(db.query_one(&sql, &params).await?.get(0))
}

/// Whether the provider has this series.
pub async fn series_exists(db: &impl GenericClient, provider: Uuid, id: Uuid) -> Result<bool> {
    Ok(db
        .query_opt(
            "SELECT 1 FROM series WHERE id = $1 AND provider_id = $2",
            &[&id, &provider],
        )
        .await?
        .is_some())
}

/// Numbers named by id or live E.164, locked in id order so that two lists cannot deadlock.
pub async fn lock_named(db: &impl GenericClient, keys: &[Key]) -> Result<Vec<Number>> {
    let ids: Vec<Uuid> = keys.iter().filter_map(Key::id).collect();
    let e164s: Vec<&str> = keys
        .iter()
        .filter_map(Key::e164)
        .map(|e| e.as_str())
        .collect();
    let sql = format!(
        "SELECT {COLUMNS} FROM numbers
         WHERE id = ANY($1) OR (e164 = ANY($2) AND status <> 'deleted')
         ORDER BY id FOR UPDATE"
    );
    let statement = db.prepare_cached(&sql).await?;
    Ok(db
        .query(&statement, &[&ids, &e164s])
        .await?
        .iter()
        .map(from_row)
        .collect())
}

/// Saves many moves of one operation in one statement and records one event per number, like
/// [`super::numbers::save_state`] does for one. Answers the numbers as saved, by E.164.
pub async fn save_moves(
    db: &impl GenericClient,
    moves: &[(Number, Number)],
    op: Operation,
    actor: &Actor,
) -> Result<Vec<Number>> {
    let each: Vec<Saved<'_>> = moves
        .iter()
        .map(|(before, after)| Saved {
            before,
            after,
            op,
            actor,
        })
        .collect();
    save_each(db, &each).await
}

/// One move to save: the number before and after, and the event's operation and actor.
pub struct Saved<'a> {
    pub before: &'a Number,
    pub after: &'a Number,
    pub op: Operation,
    pub actor: &'a Actor,
}

/// Saves moves, each with its own operation and actor (the calls of a coalesced group), in one
/// statement, with one event per number. Answers the numbers as saved, by E.164.
pub async fn save_each(db: &impl GenericClient, moves: &[Saved<'_>]) -> Result<Vec<Number>> {
    if moves.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "WITH moved AS (
             UPDATE numbers n SET holder_id = u.holder_id, holder_path = u.holder_path,
                 status = u.status, assignee_kind = u.assignee_kind, assignee_id = u.assignee_id,
                 assignee_name = u.assignee_name, assignee_account_id = u.assignee_account_id,
                 reserved_for = u.reserved_for, reservation_tag = u.reservation_tag,
                 reservation_note = u.reservation_note,
                 reservation_expire_time = u.reservation_expire_time,
                 aging_end_time = u.aging_end_time, version = n.version + 1, update_time = now()
             FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::uuid[], $9::text[], $10::text[], $11::text[],
                         $12::timestamptz[], $13::timestamptz[])
                  AS u(number_id, holder_id, holder_path, status, assignee_kind, assignee_id,
                       assignee_name, assignee_account_id, reserved_for, reservation_tag,
                       reservation_note, reservation_expire_time, aging_end_time)
             WHERE n.id = u.number_id
             RETURNING n.*
         ), recorded AS (
             INSERT INTO number_events (provider_id, number_id, e164, actor, actor_account_id,
                 request_id, operation, holder_path, before, after)
             SELECT e.provider_id, e.number_id, e.e164, e.actor, e.actor_account_id,
                 e.request_id, e.operation, e.holder_path, e.before, e.after
             FROM unnest($18::uuid[], $1::uuid[], $19::text[], $14::text[], $15::uuid[],
                         $16::text[], $17::text[], $3::text[], $20::jsonb[], $21::jsonb[])
                  AS e(provider_id, number_id, e164, actor, actor_account_id, request_id,
                       operation, holder_path, before, after)
         )
         SELECT {COLUMNS} FROM moved ORDER BY e164"
    );
    let after: Vec<&Number> = moves.iter().map(|m| m.after).collect();
    let ids: Vec<Uuid> = moves.iter().map(|m| m.before.id).collect();
    let holders: Vec<Uuid> = after.iter().map(|s| s.holder_id).collect();
    let paths: Vec<&str> = after.iter().map(|s| s.holder_path.as_str()).collect();
    let statuses: Vec<&str> = after.iter().map(|s| s.status.as_str()).collect();
    let a = |f: fn(&crate::domain::number::Assignee) -> &str| -> Vec<Option<&str>> {
        after.iter().map(|s| s.assignee.as_ref().map(f)).collect()
    };
    let r = |f: fn(&crate::domain::number::Reservation) -> &str| -> Vec<Option<&str>> {
        after
            .iter()
            .map(|s| s.reservation.as_ref().map(f))
            .collect()
    };
    let assignee_accounts: Vec<Option<Uuid>> = after
        .iter()
        .map(|s| s.assignee.as_ref().and_then(|a| a.account_id))
        .collect();
    let expiries: Vec<Option<SystemTime>> = after
        .iter()
        .map(|s| s.reservation.as_ref().and_then(|r| r.expire_time))
        .collect();
    let aging: Vec<Option<SystemTime>> = after.iter().map(|s| s.aging_end_time).collect();
    let subjects: Vec<&str> = moves.iter().map(|m| m.actor.subject.as_str()).collect();
    let actor_accounts: Vec<Option<Uuid>> = moves.iter().map(|m| m.actor.account_id).collect();
    let request_ids: Vec<&str> = moves.iter().map(|m| m.actor.request_id.as_str()).collect();
    let operations: Vec<&str> = moves.iter().map(|m| m.op.as_str()).collect();
    let owners: Vec<Uuid> = moves.iter().map(|m| m.before.owner_id).collect();
    let e164s: Vec<&str> = moves.iter().map(|m| m.before.e164.as_str()).collect();
    let befores: Vec<Json<NumberState>> = moves.iter().map(|m| Json(m.before.state())).collect();
    let afters: Vec<Json<NumberState>> = after.iter().map(|s| Json(s.state())).collect();
    let statement = db.prepare_cached(&sql).await?;
    let rows = db
        .query(
            &statement,
            &[
                &ids,
                &holders,
                &paths,
                &statuses,
                &a(|a| a.kind.as_str()),
                &a(|a| &a.id),
                &a(|a| &a.display_name),
                &assignee_accounts,
                &r(|r| &r.reserved_for),
                &r(|r| &r.tag),
                &r(|r| &r.note),
                &expiries,
                &aging,
                &subjects,
                &actor_accounts,
                &request_ids,
                &operations,
                &owners,
                &e164s,
                &befores,
                &afters,
            ],
        )
        .await?;
    if rows.len() != moves.len() {
        // The rows were locked by this transaction, so they cannot have gone.
        return Err(Error::Internal(format!(
            "saved {} of {} numbers",
            rows.len(),
            moves.len()
        )));
    }
    Ok(rows.iter().map(from_row).collect())
}

/// Keeps the cached plans of this transaction's statements. PostgreSQL would otherwise plan
/// the pick and the save afresh on every call: their generic plans look costly to it for a
/// LIMIT and array lengths it cannot see, so it prefers custom plans, and planning them cost
/// more than running them. The generic plans are the right ones (the pick's index scan, one
/// index probe per saved number).
pub async fn keep_cached_plans(db: &impl GenericClient) -> Result<()> {
    Ok(db
        .batch_execute("SET LOCAL plan_cache_mode = force_generic_plan")
        .await?)
}

/// An account's quota, read under its lock.
#[derive(Debug, Clone)]
pub struct Quota {
    pub id: Uuid,
    pub provider_id: Uuid,
    pub path: String,
    pub max_numbers: i64,
}

/// Locks the accounts whose quota a move tests, in tree order, so that concurrent moves into
/// one subtree count one after the other; answers their quotas as they are now. Accounts
/// without a quota are never locked.
pub async fn lock_quota_accounts(db: &impl GenericClient, ids: &[Uuid]) -> Result<Vec<Quota>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(db
        .query(
            "SELECT id, provider_id, path, max_numbers FROM accounts
             WHERE id = ANY($1) AND max_numbers IS NOT NULL
             ORDER BY depth FOR NO KEY UPDATE",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| Quota {
            id: r.get(0),
            provider_id: r.get(1),
            path: r.get(2),
            max_numbers: r.get(3),
        })
        .collect())
}

/// The numbers an account's subtree holds, from the inventory counters (never a scan of
/// numbers). Returned numbers are on their way out and do not count.
pub async fn subtree_count(db: &impl GenericClient, provider: Uuid, path: &str) -> Result<i64> {
    let like = format!("{path}%");
    Ok(db
        .query_one(
            "SELECT coalesce(sum(c.count), 0)::bigint
             FROM accounts a JOIN inventory_counts c ON c.account_id = a.id AND c.provider_id = a.provider_id
             WHERE a.provider_id = $1 AND a.path LIKE $2 AND c.status <> 'returned'",
            &[&provider, &like],
        )
        .await?
        .get(0))
}

const EVENT_COLUMNS: &str = "seq, number_id, e164, time, actor, actor_account_id, request_id, \
     operation, holder_path, before, after";

pub fn event_from_row(r: &Row) -> NumberEvent {
    // Written by this service only; an unreadable state shows as absent, not as an error.
    let state = |column: &str| {
        r.get::<_, Option<serde_json::Value>>(column)
            .and_then(|v| serde_json::from_value(v).ok())
    };
    NumberEvent {
        seq: r.get("seq"),
        number_id: r.get("number_id"),
        e164: r.get("e164"),
        time: r.get("time"),
        actor: r.get("actor"),
        actor_account_id: r.get("actor_account_id"),
        request_id: r.get("request_id"),
        operation: Operation::parse(r.get("operation")),
        holder_path: r.get("holder_path"),
        before: state("before"),
        after: state("after"),
    }
}

/// A page of a number's events after `after_seq`, oldest first. With `scope` (a caller's own
/// account id), only the events that left the number inside that account's subtree, and in its
/// view: one that made the number RETURNED is the owner's only (as
/// [`NumberEvent::visible_path`] says).
pub async fn events(
    db: &impl GenericClient,
    number_id: Uuid,
    scope: Option<Uuid>,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<NumberEvent>> {
    let segment = scope.map(|id| format!("/{}/", id.simple()));
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM number_events
         WHERE number_id = $1 AND seq > $2
           AND ($3::text IS NULL OR strpos(
                 CASE WHEN after->>'status' = 'returned'
                      THEN '/' || replace(provider_id::text, '-', '') || '/'
                      ELSE holder_path END, $3) > 0)
         ORDER BY seq LIMIT $4"
    );
    Ok(db
        .query(&sql, &[&number_id, &after_seq, &segment, &limit])
        .await?
        .iter()
        .map(event_from_row)
        .collect())
}

/// The last event of a number at or before `time`: where it stood then.
pub async fn event_at(
    db: &impl GenericClient,
    number_id: Uuid,
    time: SystemTime,
) -> Result<Option<NumberEvent>> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM number_events
         WHERE number_id = $1 AND time <= $2 ORDER BY seq DESC LIMIT 1"
    );
    Ok(db
        .query_opt(&sql, &[&number_id, &time])
        .await?
        .as_ref()
        .map(event_from_row))
}

/// The number that carried `e164` at `time` (an E.164 may be deleted and added again): the
/// live one (numbers_live_e164) or one deleted since (numbers_deleted_e164).
pub async fn live_at(
    db: &impl GenericClient,
    e164: &str,
    time: SystemTime,
) -> Result<Option<Uuid>> {
    Ok(db
        .query_opt(
            "SELECT id, create_time FROM numbers
             WHERE e164 = $1 AND status <> 'deleted' AND create_time <= $2
               AND (delete_time IS NULL OR delete_time > $2)
             UNION ALL
             SELECT id, create_time FROM numbers
             WHERE e164 = $1 AND status = 'deleted' AND create_time <= $2 AND delete_time > $2
             ORDER BY create_time DESC LIMIT 1",
            &[&e164, &time],
        )
        .await?
        .map(|r| r.get(0)))
}

/// What the sweeper ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Reservations whose expiry has passed.
    Reservations,
    /// Aging periods that are over.
    Aging,
}

/// Locks up to `limit` numbers whose reservation or aging is over at `now`, skipping rows
/// another replica's sweeper (or a caller) holds.
pub async fn lock_due(
    db: &impl GenericClient,
    due: Due,
    now: SystemTime,
    limit: i64,
) -> Result<Vec<Number>> {
    let (status, column) = match due {
        Due::Reservations => ("reserved", "reservation_expire_time"),
        Due::Aging => ("aging", "aging_end_time"),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM numbers
         WHERE status = '{status}' AND {column} <= $1
         ORDER BY {column} LIMIT $2
         FOR UPDATE SKIP LOCKED"
    );
    Ok(db
        .query(&sql, &[&now, &limit])
        .await?
        .iter()
        .map(from_row)
        .collect())
}
