//! SIP trunks, and the numbers that name them.

use tokio_postgres::Row;
use uuid::Uuid;

use super::{GenericClient, Lock, errors};
use crate::domain::trunk::SipTrunk;
use crate::error::{Error, Result};

const COLUMNS: &str = "id, provider_id, account_id, name, version, create_time";

fn from_row(r: &Row) -> SipTrunk {
    SipTrunk {
        id: r.get("id"),
        provider_id: r.get("provider_id"),
        account_id: r.get("account_id"),
        name: r.get("name"),
        version: r.get("version"),
        create_time: r.get("create_time"),
    }
}

pub fn not_found(id: Uuid) -> Error {
    Error::NotFound {
        resource_type: "sip trunk",
        name: id.to_string(),
    }
}

pub async fn get(db: &impl GenericClient, id: Uuid, lock: Lock) -> Result<SipTrunk> {
    let sql = format!(
        "SELECT {COLUMNS} FROM sip_trunks WHERE id = $1{}",
        lock.clause()
    );
    db.query_opt(&sql, &[&id])
        .await?
        .map(|r| from_row(&r))
        .ok_or_else(|| not_found(id))
}

/// Whether a trunk of this name exists on the path of accounts from the provider down to the
/// account at `path` (`path_ids`), or below it (`below`, the path itself): a name resolves to
/// one trunk on any path.
pub async fn name_on_path(
    db: &impl GenericClient,
    provider_id: Uuid,
    path: &str,
    name: &str,
    below: bool,
    except: Option<Uuid>,
) -> Result<bool> {
    Ok(db
        .query_opt(
            "SELECT 1 FROM sip_trunks t JOIN accounts a ON a.id = t.account_id
             WHERE t.provider_id = $1 AND t.name = $2 AND t.id IS DISTINCT FROM $5
               AND (starts_with($3, a.path) OR ($4 AND starts_with(a.path, $3)))
             LIMIT 1",
            &[&provider_id, &name, &path, &below, &except],
        )
        .await?
        .is_some())
}

pub async fn insert(
    db: &impl GenericClient,
    provider_id: Uuid,
    account_id: Uuid,
    name: &str,
) -> Result<SipTrunk> {
    let sql = format!(
        "INSERT INTO sip_trunks (id, provider_id, account_id, name) VALUES ($1, $2, $3, $4)
         RETURNING {COLUMNS}"
    );
    let row = db
        .query_one(&sql, &[&Uuid::new_v4(), &provider_id, &account_id, &name])
        .await
        .map_err(|e| errors::classify(e, name))?;
    Ok(from_row(&row))
}

/// The trunks of these accounts, by depth of their account, then name.
pub async fn of_accounts(db: &impl GenericClient, ids: &[Uuid]) -> Result<Vec<SipTrunk>> {
    let sql = format!(
        "SELECT t.{} FROM sip_trunks t JOIN accounts a ON a.id = t.account_id
         WHERE t.account_id = ANY($1) ORDER BY a.depth, t.name",
        COLUMNS.replace(", ", ", t.")
    );
    Ok(db
        .query(&sql, &[&ids])
        .await?
        .iter()
        .map(from_row)
        .collect())
}

/// Renames a trunk, and the live numbers of the account's subtree that name it follow.
pub async fn rename(
    db: &impl GenericClient,
    trunk: &SipTrunk,
    account_path: &str,
    name: &str,
) -> Result<SipTrunk> {
    let sql = format!(
        "UPDATE sip_trunks SET name = $2, version = version + 1, update_time = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    let row = db
        .query_opt(&sql, &[&trunk.id, &name])
        .await
        .map_err(|e| errors::classify(e, name))?
        .ok_or_else(|| not_found(trunk.id))?;
    let like = format!("{account_path}%");
    db.execute(
        "UPDATE numbers SET sip_trunk = $3, version = version + 1, update_time = now()
         WHERE provider_id = $1 AND sip_trunk = $2 AND holder_path LIKE $4 AND status <> 'deleted'",
        &[&trunk.provider_id, &trunk.name, &name, &like],
    )
    .await?;
    Ok(from_row(&row))
}

/// The live numbers of the subtree at `path` that name the trunk: how many, and the first
/// `limit` E.164s.
pub async fn numbers_using(
    db: &impl GenericClient,
    trunk: &SipTrunk,
    path: &str,
    limit: i64,
) -> Result<(i64, Vec<String>)> {
    let like = format!("{path}%");
    let rows = db
        .query(
            "SELECT e164, count(*) OVER () FROM numbers
             WHERE provider_id = $1 AND sip_trunk = $2 AND holder_path LIKE $3
               AND status <> 'deleted'
             ORDER BY e164 LIMIT $4",
            &[&trunk.provider_id, &trunk.name, &like, &limit],
        )
        .await?;
    let total = rows.first().map_or(0, |r| r.get(1));
    Ok((total, rows.iter().map(|r| r.get(0)).collect()))
}

pub async fn delete(db: &impl GenericClient, id: Uuid) -> Result<()> {
    db.execute("DELETE FROM sip_trunks WHERE id = $1", &[&id])
        .await?;
    Ok(())
}
