//! Accounts in PostgreSQL: the tree by materialised path.

use std::collections::{BTreeMap, HashMap};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use tokio_postgres::Row;
use tokio_postgres::types::Json;
use uuid::Uuid;

use super::{GenericClient, Lock, errors};
use crate::domain::account::{Account, AccountFields, AccountState, child_path};
use crate::error::{Error, Result};

pub const COLUMNS: &str = "id, provider_id, parent_id, path, depth, seq, display_name, kind, external_ref, \
     state, labels, max_numbers, aging_period_seconds, version, create_time, update_time";

fn from_row(r: &Row) -> Account {
    let Json(labels): Json<BTreeMap<String, String>> = r.get("labels");
    let state: &str = r.get("state");
    let aging: i64 = r.get("aging_period_seconds");
    Account {
        id: r.get("id"),
        provider_id: r.get("provider_id"),
        parent_id: r.get("parent_id"),
        path: r.get("path"),
        depth: r.get("depth"),
        seq: r.get("seq"),
        fields: AccountFields {
            display_name: r.get("display_name"),
            kind: r.get("kind"),
            external_ref: r.get("external_ref"),
            labels,
            max_numbers: r.get("max_numbers"),
            aging_period: Duration::from_secs(aging.unsigned_abs()),
        },
        // The CHECK constraint allows only the three states.
        state: AccountState::parse(state).unwrap_or(AccountState::Closed),
        version: r.get("version"),
        create_time: r.get("create_time"),
        update_time: r.get("update_time"),
    }
}

fn not_found(id: Uuid) -> Error {
    Error::NotFound {
        resource_type: "account",
        name: id.to_string(),
    }
}

/// A live (not deleted) account; `lock` takes its row for the rest of the transaction.
pub async fn get(db: &impl GenericClient, id: Uuid, lock: Lock) -> Result<Account> {
    let sql = format!(
        "SELECT {COLUMNS} FROM accounts WHERE id = $1 AND delete_time IS NULL{}",
        lock.clause()
    );
    db.query_opt(&db.prepare_cached(&sql).await?, &[&id])
        .await?
        .map(|r| from_row(&r))
        .ok_or_else(|| not_found(id))
}

/// Where an account sits: its provider, path and depth. They are fixed for its life (an account
/// never moves, and an id is never reused), so once read they are kept, and a read-only call
/// that only needs them spares a round trip. Whether the account still exists is not fixed: a
/// statement built from a kept placement checks that itself ([`NumberQuery::live_account`]).
///
/// [`NumberQuery::live_account`]: super::numbers::NumberQuery
#[derive(Debug, Clone)]
pub struct Placement {
    pub id: Uuid,
    pub provider_id: Uuid,
    pub path: String,
    pub depth: i32,
}

/// At most this many placements are kept (about 2 MB at depth 10); past it they are dropped
/// and read again.
const PLACEMENTS_KEPT: usize = 5_000;

static PLACEMENTS: LazyLock<Mutex<HashMap<Uuid, Placement>>> = LazyLock::new(Default::default);

/// The placement of account `id`, if it was read before.
pub fn placement(id: Uuid) -> Option<Placement> {
    PLACEMENTS.lock().ok()?.get(&id).cloned()
}

/// Where `account` sits.
fn placement_of(account: &Account) -> Placement {
    Placement {
        id: account.id,
        provider_id: account.provider_id,
        path: account.path.clone(),
        depth: account.depth,
    }
}

/// Keeps where `account` sits, for [`placement`], and answers it.
pub fn remember(account: &Account) -> Placement {
    let placement = placement_of(account);
    if let Ok(mut kept) = PLACEMENTS.lock() {
        if kept.len() >= PLACEMENTS_KEPT {
            kept.clear();
        }
        kept.insert(account.id, placement.clone());
    }
    placement
}

/// The first account, from the provider down, on the path of account `id` (itself included)
/// that is not active, with its state: one query over the stored path, not a walk.
pub async fn first_inactive_on_path(
    db: &impl GenericClient,
    id: Uuid,
) -> Result<Option<(Uuid, AccountState)>> {
    let sql = "SELECT a.id, a.state FROM accounts t JOIN accounts a
                 ON a.id = ANY(string_to_array(trim(both '/' from t.path), '/')::uuid[])
                AND a.provider_id = t.provider_id
             WHERE t.id = $1 AND a.state <> 'active'
             ORDER BY a.depth LIMIT 1";
    Ok(db
        .query_opt(&db.prepare_cached(sql).await?, &[&id])
        .await?
        .map(|r| {
            let state: &str = r.get(1);
            (
                r.get(0),
                AccountState::parse(state).unwrap_or(AccountState::Closed),
            )
        }))
}

/// A clash on the unique index of sibling external references names the reference.
fn external_ref_taken(e: tokio_postgres::Error, f: &AccountFields) -> Error {
    let name = format!(
        "external_ref {}",
        f.external_ref.as_deref().unwrap_or_default()
    );
    errors::classify(e, &name)
}

pub async fn insert(
    db: &impl GenericClient,
    parent: Option<&Account>,
    f: &AccountFields,
) -> Result<Account> {
    let id = Uuid::new_v4();
    let (provider_id, parent_id, path, depth) = match parent {
        Some(p) => (
            p.provider_id,
            Some(p.id),
            child_path(&p.path, id),
            p.depth + 1,
        ),
        None => (id, None, child_path("", id), 0),
    };
    let sql = format!(
        "INSERT INTO accounts (id, provider_id, parent_id, path, depth, display_name, kind,
             external_ref, labels, max_numbers, aging_period_seconds)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         RETURNING {COLUMNS}"
    );
    let aging = seconds(f.aging_period);
    let row = db
        .query_one(
            &db.prepare_cached(&sql).await?,
            &[
                &id,
                &provider_id,
                &parent_id,
                &path,
                &depth,
                &f.display_name,
                &f.kind,
                &f.external_ref,
                &Json(&f.labels),
                &f.max_numbers,
                &aging,
            ],
        )
        .await
        .map_err(|e| external_ref_taken(e, f))?;
    Ok(from_row(&row))
}

fn seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Writes every settable field and bumps the version.
pub async fn update(db: &impl GenericClient, id: Uuid, f: &AccountFields) -> Result<Account> {
    let sql = format!(
        "UPDATE accounts SET display_name = $2, kind = $3, external_ref = $4, labels = $5,
             max_numbers = $6, aging_period_seconds = $7, version = version + 1, update_time = now()
         WHERE id = $1 AND delete_time IS NULL
         RETURNING {COLUMNS}"
    );
    let aging = seconds(f.aging_period);
    db.query_opt(
        &db.prepare_cached(&sql).await?,
        &[
            &id,
            &f.display_name,
            &f.kind,
            &f.external_ref,
            &Json(&f.labels),
            &f.max_numbers,
            &aging,
        ],
    )
    .await
    .map_err(|e| external_ref_taken(e, f))?
    .map(|r| from_row(&r))
    .ok_or_else(|| not_found(id))
}

pub async fn set_state(db: &impl GenericClient, id: Uuid, state: AccountState) -> Result<Account> {
    let sql = format!(
        "UPDATE accounts SET state = $2, version = version + 1, update_time = now()
         WHERE id = $1 AND delete_time IS NULL RETURNING {COLUMNS}"
    );
    db.query_opt(&db.prepare_cached(&sql).await?, &[&id, &state.as_str()])
        .await?
        .map(|r| from_row(&r))
        .ok_or_else(|| not_found(id))
}

/// Live children of an account.
pub async fn count_children(db: &impl GenericClient, id: Uuid) -> Result<i64> {
    Ok(db
        .query_one(
            "SELECT count(*) FROM accounts WHERE parent_id = $1 AND delete_time IS NULL",
            &[&id],
        )
        .await?
        .get(0))
}

/// Soft delete: events and numbers' history keep referring to the account.
pub async fn delete(db: &impl GenericClient, id: Uuid) -> Result<()> {
    let n = db
        .execute(
            "UPDATE accounts SET delete_time = now(), version = version + 1, external_ref = NULL
             WHERE id = $1 AND delete_time IS NULL",
            &[&id],
        )
        .await?;
    if n == 0 {
        return Err(not_found(id));
    }
    Ok(())
}

/// The accounts on a path, from the provider down.
pub async fn path(db: &impl GenericClient, ids: &[Uuid]) -> Result<Vec<Account>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM accounts WHERE id = ANY($1) AND delete_time IS NULL ORDER BY depth"
    );
    Ok(db
        .query(&db.prepare_cached(&sql).await?, &[&ids])
        .await?
        .iter()
        .map(from_row)
        .collect())
}

/// The live accounts `ids` names and every account on the path of each of `targets` (from the
/// provider down to the target itself), in one query: what a group of moves into `targets`
/// needs to judge scope, suspension and the accounts the numbers enter. One `= ANY` of one
/// array, so the primary key serves it: an `OR` with the subquery would read every account.
pub async fn with_paths(
    db: &impl GenericClient,
    ids: &[Uuid],
    targets: &[Uuid],
) -> Result<Vec<Account>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM accounts
         WHERE delete_time IS NULL AND id = ANY($1::uuid[] || ARRAY(
             SELECT unnest(string_to_array(trim(both '/' from t.path), '/')::uuid[])
             FROM accounts t WHERE t.id = ANY($2)))"
    );
    Ok(db
        .query(&db.prepare_cached(&sql).await?, &[&ids, &targets])
        .await?
        .iter()
        .map(from_row)
        .collect())
}

/// The paths of these accounts, deleted ones included (history still names them).
pub async fn paths_of(db: &impl GenericClient, ids: &[Uuid]) -> Result<BTreeMap<Uuid, String>> {
    Ok(db
        .query(
            &db.prepare_cached("SELECT id, path FROM accounts WHERE id = ANY($1)")
                .await?,
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// What ListAccounts selects.
pub struct ListFilter {
    pub parent: Account,
    pub recursive: bool,
    pub state: Option<AccountState>,
    pub kind: Option<String>,
    pub external_ref: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// One page in (depth, seq) order after `after`.
pub async fn list(
    db: &impl GenericClient,
    f: &ListFilter,
    after: Option<(i32, i64)>,
    limit: i64,
) -> Result<Vec<Account>> {
    let (after_depth, after_seq) = after.unwrap_or((-1, 0));
    let prefix = format!("{}%", f.parent.path);
    let sql = format!(
        "SELECT {COLUMNS} FROM accounts
         WHERE delete_time IS NULL
           AND provider_id = $1
           AND CASE WHEN $2 THEN path LIKE $3 AND id <> $4 ELSE parent_id = $4 END
           AND ($5::text IS NULL OR state = $5)
           AND ($6::text IS NULL OR kind = $6)
           AND ($7::text IS NULL OR external_ref = $7)
           AND labels @> $8
           AND (depth, seq) > ($9, $10)
         ORDER BY depth, seq
         LIMIT $11"
    );
    let rows = db
        .query(
            &db.prepare_cached(&sql).await?,
            &[
                &f.parent.provider_id,
                &f.recursive,
                &prefix,
                &f.parent.id,
                &f.state.map(AccountState::as_str),
                &f.kind,
                &f.external_ref,
                &Json(&f.labels),
                &after_depth,
                &after_seq,
                &limit,
            ],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Live numbers the account holds itself.
/// The numbers held anywhere in the subtree at `path`: how many, and the first `limit` E.164s.
pub async fn numbers_in_subtree(
    db: &impl GenericClient,
    provider_id: Uuid,
    path: &str,
    limit: i64,
) -> Result<(i64, Vec<String>)> {
    let like = format!("{path}%");
    let rows = db
        .query(
            "SELECT e164, count(*) OVER () FROM numbers
             WHERE provider_id = $1 AND holder_path LIKE $2 AND status <> 'deleted'
             ORDER BY e164 LIMIT $3",
            &[&provider_id, &like, &limit],
        )
        .await?;
    let total = rows.first().map_or(0, |r| r.get(1));
    Ok((total, rows.iter().map(|r| r.get(0)).collect()))
}

pub async fn count_numbers_held(db: &impl GenericClient, id: Uuid) -> Result<i64> {
    Ok(db
        .query_one(
            "SELECT count(*) FROM numbers WHERE holder_id = $1 AND status <> 'deleted'",
            &[&id],
        )
        .await?
        .get(0))
}
