//! Inventory: counts per account, series and status, read from the striped `inventory_counts`
//! rows that statement-level triggers on `numbers` keep exact in every transaction.
//!
//! Why this design: counting `numbers` on each call scans millions of rows; one counter row per
//! account would be a hot row every allocation queues on. Each (account, series, status) has up
//! to 16 slots and a change adds to its database backend's slot, so concurrent transactions
//! rarely touch the same row, and a read sums a handful of rows per account, whatever the
//! number of numbers. A subtree read sums those rows over the subtree's accounts, found by
//! materialised path.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::GenericClient;
use crate::domain::number::NumberStatus;
use crate::error::Result;

/// Counts by status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub available: i64,
    pub reserved: i64,
    pub assigned: i64,
    pub returned: i64,
    pub aging: i64,
    /// Held below the account (an account-alone read only).
    pub allocated_to_children: i64,
}

impl Counts {
    fn add(&mut self, status: NumberStatus, n: i64) {
        match status {
            NumberStatus::Available => self.available += n,
            NumberStatus::Reserved => self.reserved += n,
            NumberStatus::Assigned => self.assigned += n,
            NumberStatus::Returned => self.returned += n,
            NumberStatus::Aging => self.aging += n,
            NumberStatus::Deleted => {}
        }
    }

    /// The sum of two counts.
    pub fn plus(self, other: &Counts) -> Counts {
        Counts {
            available: self.available + other.available,
            reserved: self.reserved + other.reserved,
            assigned: self.assigned + other.assigned,
            returned: self.returned + other.returned,
            aging: self.aging + other.aging,
            allocated_to_children: self.allocated_to_children + other.allocated_to_children,
        }
    }

    /// Numbers held by the account itself.
    pub fn held(&self) -> i64 {
        self.available + self.reserved + self.assigned + self.returned + self.aging
    }

    pub fn total(&self) -> i64 {
        self.held() + self.allocated_to_children
    }
}

/// Counts per series (`None` for numbers in no series).
pub type BySeries = BTreeMap<Option<Uuid>, Counts>;

const NIL: Uuid = Uuid::nil();

async fn sums(
    db: &impl GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<BySeries> {
    let mut out = BySeries::new();
    for row in db.query(&db.prepare_cached(sql).await?, params).await? {
        let series: Uuid = row.get(0);
        let status: &str = row.get(1);
        let n: i64 = row.get(2);
        if let Some(status) = NumberStatus::parse(status) {
            out.entry((series != NIL).then_some(series))
                .or_default()
                .add(status, n);
        }
    }
    Ok(out)
}

/// The account's own counts, plus what its descendants hold as `allocated_to_children`.
pub async fn account(
    db: &impl GenericClient,
    provider_id: Uuid,
    account_id: Uuid,
    path: &str,
) -> Result<BySeries> {
    let mut own = sums(
        db,
        "SELECT series_id, status, sum(count)::bigint FROM inventory_counts
         WHERE account_id = $1 AND provider_id = $2 GROUP BY 1, 2",
        &[&account_id, &provider_id],
    )
    .await?;
    let below = subtree_sums(db, provider_id, path, Some(account_id)).await?;
    for (series, counts) in below {
        own.entry(series).or_default().allocated_to_children += counts.held();
    }
    Ok(own)
}

/// The counts of the whole subtree under `path`.
pub async fn subtree(db: &impl GenericClient, provider_id: Uuid, path: &str) -> Result<BySeries> {
    subtree_sums(db, provider_id, path, None).await
}

async fn subtree_sums(
    db: &impl GenericClient,
    provider_id: Uuid,
    path: &str,
    except: Option<Uuid>,
) -> Result<BySeries> {
    let like = format!("{path}%");
    sums(
        db,
        "SELECT c.series_id, c.status, sum(c.count)::bigint
         FROM accounts a JOIN inventory_counts c ON c.account_id = a.id AND c.provider_id = a.provider_id
         WHERE a.provider_id = $1 AND a.path LIKE $2 AND a.id IS DISTINCT FROM $3
         GROUP BY 1, 2",
        &[&provider_id, &like, &except],
    )
    .await
}

/// Most tags of each kind [`tags`] answers: tags are labels people pick from, not data.
pub const MAX_TAGS: i64 = 1000;

/// The tags in use in the subtree at `path`, each with how many numbers carry it, by tag:
/// reservation tags of RESERVED numbers, and number tags of every live number (RETURNED ones
/// left out with `hide_returned`). At most [`MAX_TAGS`] of each.
pub async fn tags(
    db: &impl GenericClient,
    provider_id: Uuid,
    path: &str,
    hide_returned: bool,
) -> Result<(Vec<(String, i64)>, Vec<(String, i64)>)> {
    let like = format!("{path}%");
    let pairs =
        |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let reservation = db
        .query(
            "SELECT reservation_tag, count(*) FROM numbers
             WHERE provider_id = $1 AND holder_path LIKE $2 AND status = 'reserved'
               AND coalesce(reservation_tag, '') <> ''
             GROUP BY 1 ORDER BY 1 LIMIT $3",
            &[&provider_id, &like, &MAX_TAGS],
        )
        .await?;
    let number = db
        .query(
            "SELECT t, count(*) FROM numbers, unnest(tags) AS t
             WHERE provider_id = $1 AND holder_path LIKE $2 AND status <> 'deleted'
               AND NOT ($4 AND status = 'returned')
             GROUP BY 1 ORDER BY 1 LIMIT $3",
            &[&provider_id, &like, &MAX_TAGS, &hide_returned],
        )
        .await?;
    Ok((pairs(reservation), pairs(number)))
}
