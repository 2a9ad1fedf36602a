//! The inventory: adding, changing and deleting numbers, series, the queries of list, search
//! and export, and the inventory counts.

use futures::FutureExt;
use uuid::Uuid;

use super::allocation::admit_into;
use super::{Caller, below_provider, each, scoped_account, scoped_number, unseen};
use crate::domain::account::{Account, child_path, path_ids};
use crate::domain::check_etag;
use crate::domain::command::{
    AddNumbers, CreateSeries, CreateSipTrunk, Delete, Key, NewNumber, NumberFilter, RenameSipTrunk,
    SearchAvailable, SeriesFilter, SetAttributes, UpdateNumber, UpdateSeries,
};
use crate::domain::lifecycle;
use crate::domain::number::{Attributes, Number, NumberStatus, OWNER_ONLY, Operation};
use crate::domain::principal::{Principal, Reach, Role};
use crate::domain::series::Series;
use crate::domain::trunk::{self, SipTrunk};
use crate::error::{Error, Result};
use crate::store::accounts::{self, Placement};
use crate::store::inventory::{self, BySeries, Counts};
use crate::store::numbers::{self, NumberQuery, Scope};
use crate::store::{GenericClient, Lock, Planned, Tx, series, trunks};

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
async fn add_one(
    tx: &Tx<'_>,
    caller: &Caller,
    owner: &Account,
    add: NewNumber,
    pick: f64,
) -> Result<Number> {
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
    require_trunk(tx, &holder, &add.attributes.sip_trunk).await?;
    numbers::insert(
        tx,
        numbers::Insert {
            owner_id: owner.id,
            e164: add.e164.as_str(),
            holder_id: holder.id,
            holder_path: &holder.path,
            attributes: &add.attributes,
            pick,
        },
        &caller.actor(),
    )
    .await
}

/// AddNumber and BatchAddNumbers: each number answered on its own, or all-or-nothing.
///
/// A batch's numbers share one pick, as an import's run of as many rows does: added one after
/// the other, they lie side by side in the table, and an allocation that starts at the pick
/// takes them together instead of one page per number (at most 1,000 a batch, the import's run).
pub async fn add(tx: &Tx<'_>, caller: &Caller, c: AddNumbers) -> Result<Vec<Result<Number>>> {
    let owner = receiving_provider(tx, &caller.principal, c.owner_id).await?;
    let owner = &owner;
    let pick: f64 = rand::random();
    each(tx, c.numbers.items, c.numbers.all_or_nothing, |add| {
        add_one(tx, caller, owner, add, pick).boxed()
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
    require_owner_for(p, current.owner_id, &c.paths)?;
    check_etag(&c.etag, current.version, "number", &current.e164)?;
    lifecycle::require_live(&current)?;
    if c.paths.iter().any(|p| p == "sip_trunk")
        && c.incoming.sip_trunk != current.attributes.sip_trunk
    {
        let holder = crate::store::accounts::get(tx, current.holder_id, Lock::No).await?;
        require_trunk(tx, &holder, &c.incoming.sip_trunk).await?;
    }
    set_one(tx, caller, current, &c.paths, &c.incoming).await
}

/// The attributes that belong to the owner (OWNER_ONLY) are set only by the owner's admins.
fn require_owner_for(p: &Principal, owner_id: Uuid, paths: &[String]) -> Result<()> {
    let owners: Vec<String> = paths
        .iter()
        .filter(|path| OWNER_ONLY.contains(&path.as_str()))
        .cloned()
        .collect();
    if !owners.is_empty()
        && p.authorize(&child_path("", owner_id), Role::Admin, Reach::OwnOrBelow)
            .is_err()
    {
        return Err(Error::OwnerOnly { fields: owners });
    }
    Ok(())
}

/// Merges the attributes `paths` names into one number and records the UPDATE.
async fn set_one(
    tx: &Tx<'_>,
    caller: &Caller,
    current: Number,
    paths: &[String],
    incoming: &Attributes,
) -> Result<Number> {
    let mut attributes = current.attributes.clone();
    attributes.merge(incoming, paths);
    let updated = numbers::update_attributes(tx, current.id, &attributes).await?;
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

/// Binds attributes to numbers a move has just brought to `holder`, in the move's transaction
/// (allocation and assignment with attributes): who may set which is UpdateNumber's rule
/// (OWNER_ONLY for the owner's admins), a trunk must be one `holder` or an account above it
/// has, and each number records its UPDATE after the move's event.
pub async fn bind_attributes(
    tx: &Tx<'_>,
    caller: &Caller,
    moved: Vec<Number>,
    holder: &Account,
    set: &SetAttributes,
) -> Result<Vec<Number>> {
    let p = &caller.principal;
    require_owner_for(p, holder.provider_id, &set.paths)?;
    if set.paths.iter().any(|p| p == "sip_trunk") {
        require_trunk(tx, holder, &set.incoming.sip_trunk).await?;
    }
    let mut bound = Vec::with_capacity(moved.len());
    for n in moved {
        bound.push(set_one(tx, caller, n, &set.paths, &set.incoming).await?);
    }
    Ok(bound)
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

/// The account a filter is rooted at: its holder, or the caller's own account; `None` for the
/// platform without a holder (every number, or one owner's).
fn filter_root(p: &Principal, f: &NumberFilter) -> Result<Option<Uuid>> {
    match (f.holder_id, p.account_id) {
        (Some(h), _) => Ok(Some(h)),
        (None, _) if p.is_platform() => Ok(None),
        (None, Some(own)) => Ok(Some(own)),
        (None, None) => Err(Error::PermissionDenied),
    }
}

/// A filter made into a query, rooted at `root` (where it sits; the caller may see it).
fn rooted_query(p: &Principal, f: &NumberFilter, root: Option<&Placement>) -> NumberQuery {
    let (scope, hide_returned) = match root {
        None => (f.owner_id.map_or(Scope::All, Scope::Provider), false),
        Some(root) => (
            match (f.holder_id.is_some() && !f.include_subtree, root.depth) {
                (true, _) => Scope::Holder(root.id),
                (false, 0) => Scope::Provider(root.id),
                (false, _) => Scope::Subtree {
                    provider: root.provider_id,
                    path: root.path.clone(),
                },
            },
            below_provider(p, root.provider_id),
        ),
    };
    // A provider's scope already is its owner filter.
    let owner_id = f
        .owner_id
        .filter(|o| !matches!(scope, Scope::Provider(p) if p == *o));
    let mut q = NumberQuery::new(scope);
    q.hide_returned = hide_returned;
    q.owner_id = owner_id;
    q.statuses = f.statuses.clone();
    q.series_id = f.series_id;
    q.e164_like = f.prefix.as_ref().map(|p| format!("{p}%"));
    q.tag = f.tag.clone();
    q.labels = f.labels.clone();
    q.assignee_id = f.assignee_id.clone();
    q.reservation_tag = f.reservation_tag.clone();
    q.reserved_for = f.reserved_for.clone();
    q.sip_trunk = f.sip_trunk.clone();
    q
}

/// A filter made into a query the caller may run, its root read from the database: List (the
/// first time) and Export.
pub async fn query(
    db: &impl GenericClient,
    p: &Principal,
    f: &NumberFilter,
) -> Result<NumberQuery> {
    let root = match filter_root(p, f)? {
        Some(id) => {
            let account =
                scoped_account(db, p, id, Role::Viewer, Reach::OwnOrBelow, Lock::No).await?;
            Some(accounts::remember(&account))
        }
        None => None,
    };
    Ok(rooted_query(p, f, root.as_ref()))
}

/// A page of the numbers a filter selects, after the cursor `after`. A root whose placement is
/// kept is not read first: the page's statement checks that it still exists, and only an empty
/// page reads it, to tell "nothing" from "gone" (one round trip for a page, not two).
pub async fn list(
    db: &impl Planned,
    p: &Principal,
    f: &NumberFilter,
    after: Option<&(String, Uuid)>,
    limit: i64,
) -> Result<Vec<Number>> {
    let Some(root) = filter_root(p, f)?.and_then(accounts::placement) else {
        let q = query(db, p, f).await?;
        return numbers::list(db, &q, after, limit).await;
    };
    p.authorize(&root.path, Role::Viewer, Reach::OwnOrBelow)?;
    let mut q = rooted_query(p, f, Some(&root));
    q.live_account = Some(root.id);
    let page = numbers::list(db, &q, after, limit).await?;
    if page.is_empty() {
        scoped_account(db, p, root.id, Role::Viewer, Reach::OwnOrBelow, Lock::No).await?;
    }
    Ok(page)
}

/// What a search found: single numbers, or runs of consecutive numbers with their numbers.
pub struct Found {
    pub numbers: Vec<Number>,
    pub ranges: Vec<(String, String)>,
}

/// SearchAvailableNumbers: the holder's unused numbers by pattern, or runs of N consecutive.
pub async fn search(db: &impl Planned, p: &Principal, s: &SearchAvailable) -> Result<Found> {
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
    // Reservations are found by their tag or by whom they are for (the series seed's "reserve
    // for an individual or a role with a tag"); otherwise the unused numbers are searched.
    let reserved = s.reservation_tag.is_some() || s.reserved_for.is_some();
    q.statuses = vec![if reserved {
        NumberStatus::Reserved
    } else {
        NumberStatus::Available
    }];
    q.reservation_tag = s.reservation_tag.clone();
    q.reserved_for = s.reserved_for.clone();
    q.sip_trunk = s.sip_trunk.clone();
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
        found.extend(numbers::in_range(db, &q, first, last).await?);
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

/// The tags in use in an account's subtree (reservation tags, number tags) with their counts,
/// as the caller sees it: below the provider, RETURNED numbers are not the caller's any more.
pub async fn tags(
    db: &impl GenericClient,
    p: &Principal,
    account_id: Uuid,
) -> Result<(Vec<(String, i64)>, Vec<(String, i64)>)> {
    let account =
        scoped_account(db, p, account_id, Role::Viewer, Reach::OwnOrBelow, Lock::No).await?;
    let hide_returned = below_provider(p, account.provider_id);
    inventory::tags(db, account.provider_id, &account.path, hide_returned).await
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
    filter: &SeriesFilter,
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
    series::list(db, provider_id, filter, after, limit).await
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

/// A trunk the caller may act on with `role` over its account.
async fn scoped_trunk(
    db: &impl GenericClient,
    p: &Principal,
    id: Uuid,
    role: Role,
    lock: Lock,
) -> Result<(SipTrunk, Account)> {
    match trunks::get(db, id, lock).await {
        Ok(t) => {
            let account =
                scoped_account(db, p, t.account_id, role, Reach::OwnOrBelow, Lock::No).await?;
            Ok((t, account))
        }
        Err(Error::NotFound { .. }) => Err(unseen(p, "sip trunk", id.to_string())),
        Err(e) => Err(e),
    }
}

/// A trunk name resolves to one trunk on any path of the tree: none of the account's
/// ancestors or descendants may have a trunk of the same name (siblings may).
async fn require_free_name(
    db: &impl GenericClient,
    account: &Account,
    name: &str,
    except: Option<Uuid>,
) -> Result<()> {
    if trunks::name_on_path(db, account.provider_id, &account.path, name, true, except).await? {
        return Err(Error::AlreadyExists {
            resource_type: "sip trunk",
            name: name.to_string(),
        });
    }
    Ok(())
}

/// A number held at `holder` may name a trunk of the holder or of an account above it; an
/// empty name is no trunk.
pub async fn require_trunk(db: &impl GenericClient, holder: &Account, name: &str) -> Result<()> {
    if name.is_empty()
        || trunks::name_on_path(db, holder.provider_id, &holder.path, name, false, None).await?
    {
        return Ok(());
    }
    Err(trunk::unknown(name, holder.id))
}

/// CreateSipTrunk: the account's admins' call.
pub async fn create_trunk(tx: &Tx<'_>, caller: &Caller, c: CreateSipTrunk) -> Result<SipTrunk> {
    let account = scoped_account(
        tx,
        &caller.principal,
        c.account_id,
        Role::Admin,
        Reach::OwnOrBelow,
        Lock::ForUpdate,
    )
    .await?;
    require_free_name(tx, &account, &c.name, None).await?;
    trunks::insert(tx, account.provider_id, account.id, &c.name).await
}

/// The trunks of an account; with `inherited`, those of its ancestors the caller sees too.
pub async fn list_trunks(
    db: &impl GenericClient,
    p: &Principal,
    account_id: Uuid,
    inherited: bool,
) -> Result<Vec<SipTrunk>> {
    let account =
        scoped_account(db, p, account_id, Role::Viewer, Reach::OwnOrBelow, Lock::No).await?;
    let mut ids = vec![account.id];
    if inherited {
        ids = path_ids(&account.path);
        if let Some(own) = p.account_id.filter(|_| !p.is_platform())
            && let Some(pos) = ids.iter().position(|i| *i == own)
        {
            ids.drain(..pos);
        }
    }
    trunks::of_accounts(db, &ids).await
}

/// UpdateSipTrunk: a new name; the numbers that name the trunk follow it.
pub async fn rename_trunk(tx: &Tx<'_>, caller: &Caller, c: RenameSipTrunk) -> Result<SipTrunk> {
    let (current, account) =
        scoped_trunk(tx, &caller.principal, c.id, Role::Admin, Lock::ForUpdate).await?;
    check_etag(&c.etag, current.version, "sip trunk", &c.id.to_string())?;
    if current.name == c.name {
        return Ok(current);
    }
    require_free_name(tx, &account, &c.name, Some(current.id)).await?;
    trunks::rename(tx, &current, &account.path, &c.name).await
}

/// DeleteSipTrunk: only once no number of the account's subtree names it.
pub async fn delete_trunk(tx: &Tx<'_>, caller: &Caller, c: Delete) -> Result<()> {
    let (current, account) =
        scoped_trunk(tx, &caller.principal, c.id, Role::Admin, Lock::ForUpdate).await?;
    check_etag(&c.etag, current.version, "sip trunk", &c.id.to_string())?;
    let (total, first) =
        trunks::numbers_using(tx, &current, &account.path, trunk::NAMED_IN_USE).await?;
    trunk::require_unused(&current, total, &first)?;
    trunks::delete(tx, current.id).await
}
