//! The inventory: adding, changing and deleting numbers, series, the queries of list, search
//! and export, and the inventory counts.

use futures::FutureExt;
use uuid::Uuid;

use super::allocation::admit_into;
use super::{Caller, below_provider, each, scoped_account, scoped_number, unseen};
use crate::domain::account::{Account, child_path};
use crate::domain::check_etag;
use crate::domain::command::{
    AddNumbers, CreateSeries, Delete, Key, NewNumber, NumberFilter, SearchAvailable, UpdateNumber,
    UpdateSeries,
};
use crate::domain::lifecycle;
use crate::domain::number::{Number, NumberStatus, OWNER_ONLY, Operation};
use crate::domain::principal::{Principal, Reach, Role};
use crate::domain::series::Series;
use crate::error::{Error, Result};
use crate::store::inventory::{self, BySeries, Counts};
use crate::store::numbers::{self, NumberQuery, Scope};
use crate::store::{GenericClient, Lock, Tx, series};

/// A provider the caller administers (numbers and series belong to providers).
pub async fn admin_provider(db: &impl GenericClient, p: &Principal, id: Uuid) -> Result<Account> {
    let owner = scoped_account(db, p, id, Role::Admin, Reach::OwnOrBelow, Lock::No).await?;
    lifecycle::require_provider(&owner)?;
    Ok(owner)
}

/// A provider the caller administers that may receive new numbers (it is active).
pub async fn receiving_provider(
    db: &impl GenericClient,
    p: &Principal,
    id: Uuid,
) -> Result<Account> {
    let owner = admin_provider(db, p, id).await?;
    lifecycle::require_active(owner.id, owner.state)?;
    Ok(owner)
}

/// Adds one number to `owner`, or straight into one of its sub-accounts, which must then admit
/// it like an allocation would.
async fn add_one(tx: &Tx<'_>, caller: &Caller, owner: &Account, add: NewNumber) -> Result<Number> {
    let holder = match add.holder_id {
        Some(h) if h != owner.id => {
            let p = &caller.principal;
            let holder = scoped_account(tx, p, h, Role::Admin, Reach::OwnOrBelow, Lock::No).await?;
            lifecycle::require_in_tree(owner, &holder)?;
            // The holder is among the accounts the number enters: admission checks its state.
            admit_into(tx, &owner.path, &holder, 1).await?;
            holder
        }
        _ => owner.clone(),
    };
    numbers::insert(
        tx,
        numbers::Insert {
            owner_id: owner.id,
            e164: add.e164.as_str(),
            holder_id: holder.id,
            holder_path: &holder.path,
            attributes: &add.attributes,
        },
        &caller.actor(),
    )
    .await
}

/// AddNumber and BatchAddNumbers: each number answered on its own, or all-or-nothing.
pub async fn add(tx: &Tx<'_>, caller: &Caller, c: AddNumbers) -> Result<Vec<Result<Number>>> {
    let owner = receiving_provider(tx, &caller.principal, c.owner_id).await?;
    let owner = &owner;
    each(tx, c.numbers.items, c.numbers.all_or_nothing, |add| {
        add_one(tx, caller, owner, add).boxed()
    })
    .await
}

pub async fn get(db: &impl GenericClient, p: &Principal, key: &Key) -> Result<Number> {
    scoped_number(db, p, key, Role::Viewer, Lock::No).await
}

/// UpdateNumber: the attributes the mask names; what belongs to the owner only the owner's
/// admins change.
pub async fn update(tx: &Tx<'_>, caller: &Caller, c: UpdateNumber) -> Result<Number> {
    let p = &caller.principal;
    let current = scoped_number(tx, p, &Key::Id(c.id), Role::Admin, Lock::ForUpdate).await?;
    let owners: Vec<String> = c
        .paths
        .iter()
        .filter(|path| OWNER_ONLY.contains(&path.as_str()))
        .cloned()
        .collect();
    if !owners.is_empty()
        && p.authorize(
            &child_path("", current.owner_id),
            Role::Admin,
            Reach::OwnOrBelow,
        )
        .is_err()
    {
        return Err(Error::OwnerOnly { fields: owners });
    }
    check_etag(&c.etag, current.version, "number", &current.e164)?;
    lifecycle::require_live(&current)?;
    let mut attributes = current.attributes.clone();
    attributes.merge(&c.incoming, &c.paths);
    let updated = numbers::update_attributes(tx, c.id, &attributes).await?;
    numbers::record(
        tx,
        Some(&current),
        &updated,
        Operation::Update,
        &caller.actor(),
    )
    .await?;
    Ok(updated)
}

/// DeleteNumber: only the owner, only while it holds the number unused.
pub async fn delete(tx: &Tx<'_>, caller: &Caller, c: Delete) -> Result<()> {
    let p = &caller.principal;
    let current = scoped_number(tx, p, &Key::Id(c.id), Role::Viewer, Lock::ForUpdate).await?;
    p.authorize(
        &child_path("", current.owner_id),
        Role::Admin,
        Reach::OwnOrBelow,
    )?;
    check_etag(&c.etag, current.version, "number", &current.e164)?;
    let after = lifecycle::deleted(&current)?;
    numbers::save_state(tx, &current, &after, Operation::Delete, &caller.actor()).await?;
    Ok(())
}

/// Resolves the scope of a number filter against what the caller may see.
async fn filter_scope(db: &impl GenericClient, p: &Principal, f: &NumberFilter) -> Result<Scope> {
    let root = match (f.holder_id, p.account_id) {
        (Some(h), _) => scoped_account(db, p, h, Role::Viewer, Reach::OwnOrBelow, Lock::No).await?,
        (None, _) if p.is_platform() => {
            return Ok(f.owner_id.map_or(Scope::All, Scope::Provider));
        }
        (None, Some(own)) => {
            scoped_account(db, p, own, Role::Viewer, Reach::OwnOrBelow, Lock::No).await?
        }
        (None, None) => return Err(Error::PermissionDenied),
    };
    Ok(
        match (f.holder_id.is_some() && !f.include_subtree, root.depth) {
            (true, _) => Scope::Holder(root.id),
            (false, 0) => Scope::Provider(root.id),
            (false, _) => Scope::Subtree(root.path),
        },
    )
}

/// A filter made into a query the caller may run: List and Export.
pub async fn query(
    db: &impl GenericClient,
    p: &Principal,
    f: &NumberFilter,
) -> Result<NumberQuery> {
    let scope = filter_scope(db, p, f).await?;
    // A provider's scope already is its owner filter.
    let owner_id = f
        .owner_id
        .filter(|o| !matches!(scope, Scope::Provider(p) if p == *o));
    let mut q = NumberQuery::new(scope);
    q.hide_returned = below_provider(db, p).await?;
    q.owner_id = owner_id;
    q.statuses = f.statuses.clone();
    q.series_id = f.series_id;
    q.e164_like = f.prefix.as_ref().map(|p| format!("{p}%"));
    q.tag = f.tag.clone();
    q.labels = f.labels.clone();
    q.assignee_id = f.assignee_id.clone();
    Ok(q)
}

/// A page of the numbers a filter selects, after the cursor `after`.
pub async fn list(
    db: &impl GenericClient,
    p: &Principal,
    f: &NumberFilter,
    after: Option<&(String, Uuid)>,
    limit: i64,
) -> Result<Vec<Number>> {
    let q = query(db, p, f).await?;
    numbers::list(db, &q, after, limit).await
}

/// What a search found: single numbers, or runs of consecutive numbers with their numbers.
pub struct Found {
    pub numbers: Vec<Number>,
    pub ranges: Vec<(String, String)>,
}

/// SearchAvailableNumbers: the holder's unused numbers by pattern, or runs of N consecutive.
pub async fn search(db: &impl GenericClient, p: &Principal, s: &SearchAvailable) -> Result<Found> {
    let holder = scoped_account(
        db,
        p,
        s.holder_id,
        Role::Viewer,
        Reach::OwnOrBelow,
        Lock::No,
    )
    .await?;
    let mut q = NumberQuery::new(Scope::Holder(holder.id));
    q.statuses = vec![NumberStatus::Available];
    q.e164_like = s.like.clone();
    if s.consecutive <= 1 {
        let numbers = numbers::list(db, &q, None, s.limit).await?;
        return Ok(Found {
            numbers,
            ranges: Vec::new(),
        });
    }
    // A page holds at most `limit` numbers, the runs' numbers included: as many whole runs as
    // fit (at least one, cut at the page's size when a single run is longer).
    let run = i64::from(s.consecutive);
    let runs = (s.limit / run).max(1);
    let ranges = numbers::consecutive_runs(db, &q, run, runs).await?;
    let mut found = Vec::new();
    for (first, last) in &ranges {
        found.extend(numbers::available_range(db, holder.id, first, last).await?);
    }
    found.truncate(s.limit as usize);
    Ok(Found {
        numbers: found,
        ranges,
    })
}

/// The inventory of an account (alone, or with its subtree): totals and counts per series.
pub struct Inventory {
    pub account: Account,
    pub totals: Counts,
    pub by_series: BySeries,
}

pub async fn inventory(
    db: &impl GenericClient,
    p: &Principal,
    account_id: Uuid,
    include_subtree: bool,
) -> Result<Inventory> {
    let account =
        scoped_account(db, p, account_id, Role::Viewer, Reach::OwnOrBelow, Lock::No).await?;
    let by_series = if include_subtree {
        inventory::subtree(db, account.provider_id, &account.path).await?
    } else {
        inventory::account(db, account.provider_id, account.id, &account.path).await?
    };
    let totals = by_series
        .values()
        .fold(Counts::default(), |sum, c| sum.plus(c));
    Ok(Inventory {
        account,
        totals,
        by_series,
    })
}

/// A series the caller may act on with `role` (it administers or views the provider).
async fn scoped_series(
    db: &impl GenericClient,
    p: &Principal,
    id: Uuid,
    role: Role,
    lock: Lock,
) -> Result<Series> {
    match series::get(db, id, lock).await {
        Ok(s) => {
            p.authorize(&child_path("", s.provider_id), role, Reach::OwnOrBelow)?;
            Ok(s)
        }
        Err(Error::NotFound { .. }) => Err(unseen(p, "series", id.to_string())),
        Err(e) => Err(e),
    }
}

pub async fn create_series(tx: &Tx<'_>, caller: &Caller, c: CreateSeries) -> Result<Series> {
    let provider = admin_provider(tx, &caller.principal, c.provider_id).await?;
    series::insert(tx, provider.id, &c.prefix, &c.display_name, &c.description).await
}

pub async fn get_series(db: &impl GenericClient, p: &Principal, id: Uuid) -> Result<Series> {
    scoped_series(db, p, id, Role::Viewer, Lock::No).await
}

/// A page of a provider's series, in prefix order after `after`.
pub async fn list_series(
    db: &impl GenericClient,
    p: &Principal,
    provider_id: Uuid,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Series>> {
    scoped_account(
        db,
        p,
        provider_id,
        Role::Viewer,
        Reach::OwnOrBelow,
        Lock::No,
    )
    .await?;
    series::list(db, provider_id, after, limit).await
}

pub async fn update_series(tx: &Tx<'_>, caller: &Caller, c: UpdateSeries) -> Result<Series> {
    let current = scoped_series(tx, &caller.principal, c.id, Role::Admin, Lock::ForUpdate).await?;
    check_etag(&c.etag, current.version, "series", &c.id.to_string())?;
    let name = c.display_name.unwrap_or(current.display_name);
    let description = c.description.unwrap_or(current.description);
    series::update(tx, c.id, &name, &description).await
}

pub async fn delete_series(tx: &Tx<'_>, caller: &Caller, c: Delete) -> Result<()> {
    let current = scoped_series(tx, &caller.principal, c.id, Role::Admin, Lock::ForUpdate).await?;
    check_etag(&c.etag, current.version, "series", &c.id.to_string())?;
    series::delete(tx, &current).await
}
