//! Series: a provider's numbers under a country code or an E.164 prefix. A number belongs to
//! the series with the longest matching prefix; creating or deleting a series re-files the
//! numbers it gains or loses in the same transaction.

use tokio_postgres::Row;
use uuid::Uuid;

use super::{GenericClient, Lock, errors};
use crate::domain::command::SeriesFilter;
use crate::domain::series::Series;
use crate::error::{Error, Result};

const COLUMNS: &str = "id, provider_id, prefix, display_name, description, version, create_time";

fn from_row(r: &Row) -> Series {
    Series {
        id: r.get("id"),
        provider_id: r.get("provider_id"),
        prefix: r.get("prefix"),
        display_name: r.get("display_name"),
        description: r.get("description"),
        version: r.get("version"),
        create_time: r.get("create_time"),
    }
}

fn not_found(id: Uuid) -> Error {
    Error::NotFound {
        resource_type: "series",
        name: id.to_string(),
    }
}

pub async fn get(db: &impl GenericClient, id: Uuid, lock: Lock) -> Result<Series> {
    let sql = format!(
        "SELECT {COLUMNS} FROM series WHERE id = $1{}",
        lock.clause()
    );
    db.query_opt(&db.prepare_cached(&sql).await?, &[&id])
        .await?
        .map(|r| from_row(&r))
        .ok_or_else(|| not_found(id))
}

/// The SQL that re-files the live numbers of provider $1 under prefix $2: each gets the series
/// with the longest prefix that matches it, or none.
const REFILE: &str = "UPDATE numbers n SET series_id =
         (SELECT series FROM series_of(n.provider_id, n.e164) AS series)
     WHERE n.provider_id = $1 AND n.status <> 'deleted' AND n.e164 LIKE $2 || '%'";

pub async fn insert(
    db: &impl GenericClient,
    provider_id: Uuid,
    prefix: &str,
    display_name: &str,
    description: &str,
) -> Result<Series> {
    let sql = format!(
        "INSERT INTO series (id, provider_id, prefix, display_name, description)
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    );
    let row = db
        .query_one(
            &db.prepare_cached(&sql).await?,
            &[
                &Uuid::new_v4(),
                &provider_id,
                &prefix,
                &display_name,
                &description,
            ],
        )
        .await
        .map_err(|e| errors::classify(e, prefix))?;
    db.execute(&db.prepare_cached(REFILE).await?, &[&provider_id, &prefix])
        .await?;
    Ok(from_row(&row))
}

pub async fn update(
    db: &impl GenericClient,
    id: Uuid,
    display_name: &str,
    description: &str,
) -> Result<Series> {
    let sql = format!(
        "UPDATE series SET display_name = $2, description = $3, version = version + 1,
             update_time = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    db.query_opt(
        &db.prepare_cached(&sql).await?,
        &[&id, &display_name, &description],
    )
    .await?
    .map(|r| from_row(&r))
    .ok_or_else(|| not_found(id))
}

/// Deletes a series; its numbers fall to the next longest prefix at once.
pub async fn delete(db: &impl GenericClient, series: &Series) -> Result<()> {
    db.execute(
        &db.prepare_cached("DELETE FROM series WHERE id = $1")
            .await?,
        &[&series.id],
    )
    .await?;
    db.execute(
        &db.prepare_cached(REFILE).await?,
        &[&series.provider_id, &series.prefix],
    )
    .await?;
    Ok(())
}

/// A provider's series in prefix order, after `after`, that the filter selects. The name is
/// matched as a case-insensitive substring (LIKE's wildcards in it are taken literally).
pub async fn list(
    db: &impl GenericClient,
    provider_id: Uuid,
    filter: &SeriesFilter,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Series>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM series WHERE provider_id = $1 AND prefix > $2
           AND ($4::text IS NULL OR strpos(lower(display_name), lower($4)) > 0)
           AND ($5::text IS NULL OR starts_with(prefix, $5))
         ORDER BY prefix LIMIT $3"
    );
    Ok(db
        .query(
            &db.prepare_cached(&sql).await?,
            &[
                &provider_id,
                &after.unwrap_or(""),
                &limit,
                &filter.name_contains,
                &filter.prefix,
            ],
        )
        .await?
        .iter()
        .map(from_row)
        .collect())
}
