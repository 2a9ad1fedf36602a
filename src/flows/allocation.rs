//! The life of a number across the account tree: allocate, withdraw, transfer, and the
//! changes of one number (assign, reserve, release, unbind...) alone or in batches; history.
//! The rules are [`crate::domain::lifecycle`]'s; here is scope, and the order of the steps.

use std::collections::BTreeMap;
use std::time::SystemTime;

use futures::FutureExt;
use uuid::Uuid;

use super::{
    Caller, each, in_scope, require_live_caller, require_unfrozen, scoped_account, scoped_number,
    unseen,
};
use crate::domain::account::{Account, parent_path, path_ids};
use crate::domain::check_etag;
use crate::domain::command::{Batch, Change, Key, MoveNumbers, OneChange, Selection, Withdraw};
use crate::domain::lifecycle::{self, Move, Target};
use crate::domain::number::{Number, NumberEvent};
use crate::domain::principal::{Principal, Reach, Role};
use crate::error::{Error, Result};
use crate::store::allocation::{self as store, Pool};
use crate::store::{GenericClient, Lock, Tx, accounts, numbers};

/// The accounts a number enters when it goes down from the account at `source_path` to `to`
/// (which is at or below it): every account strictly below the source, down to `to` itself.
async fn entered(db: &impl GenericClient, source_path: &str, to: &Account) -> Result<Vec<Account>> {
    let below: Vec<Uuid> = path_ids(&to.path)
        .into_iter()
        .skip(path_ids(source_path).len())
        .collect();
    match below.as_slice() {
        [] => Ok(Vec::new()),
        [only] if *only == to.id => Ok(vec![to.clone()]),
        ids => accounts::path(db, ids).await,
    }
}

/// Every account that `incoming` numbers enter must be active and stay within its quota.
async fn admit(db: &impl GenericClient, entered: &[Account], incoming: i64) -> Result<()> {
    admit_after(db, entered, incoming, &BTreeMap::new()).await
}

/// [`admit`], counting as held, in each account with a quota, the numbers `brought` says
/// earlier arrivals of the same change bring into it.
async fn admit_after(
    db: &impl GenericClient,
    entered: &[Account],
    incoming: i64,
    brought: &BTreeMap<Uuid, i64>,
) -> Result<()> {
    for a in entered {
        lifecycle::require_active(a.id, a.state)?;
    }
    for quota in store::lock_quota_accounts(db, &limited(entered)).await? {
        let held = store::subtree_count(db, quota.provider_id, &quota.path).await?
            + brought.get(&quota.id).copied().unwrap_or(0);
        lifecycle::require_quota(quota.id, quota.max_numbers, held, incoming)?;
    }
    Ok(())
}

/// The accounts among `entered` that have a quota.
fn limited(entered: &[Account]) -> Vec<Uuid> {
    entered
        .iter()
        .filter(|a| a.fields.max_numbers.is_some())
        .map(|a| a.id)
        .collect()
}

/// The admission of numbers that go down from `source_path` into several accounts in one
/// change (an import): each target in turn, as [`admit_into`] would admit it, counting what the
/// targets admitted before it bring into the accounts above it. Answers, per target, whether it
/// is admitted or the rule it breaks; a failing database is the call's error.
pub async fn admit_each(
    db: &impl GenericClient,
    source_path: &str,
    targets: &[(Account, i64)],
) -> Result<Vec<Result<()>>> {
    let mut brought: BTreeMap<Uuid, i64> = BTreeMap::new();
    let mut answers = Vec::with_capacity(targets.len());
    for (to, incoming) in targets {
        let entering = entered(db, source_path, to).await?;
        match admit_after(db, &entering, *incoming, &brought).await {
            Ok(()) => {
                for id in limited(&entering) {
                    *brought.entry(id).or_default() += incoming;
                }
                answers.push(Ok(()));
            }
            Err(e @ (Error::QuotaExceeded { .. } | Error::FailedPrecondition(_))) => {
                answers.push(Err(e))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(answers)
}

/// The admission of `incoming` numbers that go down from `source_path` into `to`: every account
/// they enter is active and stays within its quota. Allocation, assignment below the holder,
/// adding a number straight into a sub-account and import all pass through here.
pub async fn admit_into(
    db: &impl GenericClient,
    source_path: &str,
    to: &Account,
    incoming: i64,
) -> Result<()> {
    let entering = entered(db, source_path, to).await?;
    admit(db, &entering, incoming).await
}

/// Locks the numbers a multi-number move takes from `source`: the named ones (each must be one
/// the caller may see), or a quantity of its unused ones (all of them, or an error that says
/// how many there are).
async fn select(
    tx: &Tx<'_>,
    p: &Principal,
    source: &Account,
    selection: &Selection,
) -> Result<Vec<Number>> {
    match selection {
        Selection::Named(keys) => {
            let found = store::lock_named(tx, keys).await?;
            for key in keys {
                let n = found
                    .iter()
                    .find(|n| key.names(n))
                    .ok_or_else(|| unseen(p, "number", key.to_string()))?;
                p.authorize(&n.visible_path(), Role::Viewer, Reach::OwnOrBelow)?;
            }
            Ok(found)
        }
        Selection::Quantity {
            count,
            series_id,
            prefix,
        } => {
            if let Some(series) = series_id
                && !store::series_exists(tx, source.provider_id, *series).await?
            {
                return Err(Error::NotFound {
                    resource_type: "series",
                    name: series.to_string(),
                });
            }
            let pool = Pool {
                holder_id: source.id,
                series_id: *series_id,
                prefix: prefix.clone(),
            };
            let taken = store::pick(tx, &pool, *count).await?;
            if (taken.len() as i64) < *count {
                let unused = store::count_unused(tx, &pool).await?;
                return Err(lifecycle::not_enough(
                    source.id,
                    *count,
                    unused,
                    &pool.describe(),
                ));
            }
            Ok(taken)
        }
    }
}

/// The steps every multi-number move shares: take the numbers, apply the rule to each (all or
/// nothing), admit them where they enter, save them with one event each.
async fn move_selection(
    tx: &Tx<'_>,
    caller: &Caller,
    source: &Account,
    selection: &Selection,
    m: &Move,
    entering: &[Account],
) -> Result<Vec<Number>> {
    let numbers = select(tx, &caller.principal, source, selection).await?;
    let after = lifecycle::next_all(&numbers, m)?;
    admit(tx, entering, numbers.len() as i64).await?;
    let moves: Vec<(Number, Number)> = numbers.into_iter().zip(after).collect();
    store::save_moves(tx, &moves, m.operation(), &caller.actor()).await
}

/// The two accounts of a move between accounts, both in the caller's admin scope, and the
/// receiving one not frozen by a suspension on its path. The reads (and the plan setting) are
/// pipelined on the connection: one round trip, not four. The suspension is judged only after
/// the scope, so a caller out of scope learns nothing of it.
async fn both_accounts(
    tx: &Tx<'_>,
    p: &Principal,
    from: Uuid,
    to: Uuid,
) -> Result<(Account, Account)> {
    let ((), from, to, inactive) = futures::try_join!(
        store::keep_cached_plans(tx),
        scoped_account(tx, p, from, Role::Admin, Reach::OwnOrBelow, Lock::No),
        scoped_account(tx, p, to, Role::Admin, Reach::OwnOrBelow, Lock::No),
        accounts::first_inactive_on_path(tx, to),
    )?;
    lifecycle::require_unfrozen(inactive)?;
    Ok((from, to))
}

/// The numbers a move answered, by id, as they are now and in the order a move answers them:
/// how a retry of a large move is answered.
pub async fn moved(db: &impl GenericClient, ids: &[Uuid]) -> Result<Vec<Number>> {
    numbers::by_ids(db, ids).await
}

/// Allocate: numbers go down from a holder to one of its descendants.
pub async fn allocate(tx: &Tx<'_>, caller: &Caller, c: MoveNumbers) -> Result<Vec<Number>> {
    let (from, to) = both_accounts(tx, &caller.principal, c.from, c.to).await?;
    lifecycle::require_descendant(&Target::of(&from), &Target::of(&to))?;
    let entering = entered(tx, &from.path, &to).await?;
    let m = Move::Allocate {
        from: from.id,
        to: Target::of(&to),
    };
    let moved = move_selection(tx, caller, &from, &c.selection, &m, &entering).await?;
    match &c.attributes {
        Some(set) => super::number_pool::bind_attributes(tx, caller, moved, &to, set).await,
        None => Ok(moved),
    }
}

/// Withdraw: unused numbers go back up to the parent. The parent's call: the caller must be
/// above the account.
pub async fn withdraw(tx: &Tx<'_>, caller: &Caller, c: Withdraw) -> Result<Vec<Number>> {
    let ((), account) = futures::try_join!(
        store::keep_cached_plans(tx),
        scoped_account(
            tx,
            &caller.principal,
            c.account,
            Role::Admin,
            Reach::Below,
            Lock::No
        ),
    )?;
    let (Some(parent_id), Some(parent_path)) = (account.parent_id, parent_path(&account.path))
    else {
        return Err(Error::precondition(
            "ACCOUNT_HAS_NO_PARENT",
            format!("accounts/{}", account.id),
            "a provider has no parent to withdraw numbers to",
        ));
    };
    let m = Move::Withdraw {
        from: account.id,
        to: Target {
            id: parent_id,
            path: parent_path.to_string(),
        },
    };
    move_selection(tx, caller, &account, &c.selection, &m, &[]).await
}

/// Transfer: up to the lowest common ancestor and down again, in one step. A caller with scope
/// over both accounts has it over that ancestor.
pub async fn transfer(tx: &Tx<'_>, caller: &Caller, c: MoveNumbers) -> Result<Vec<Number>> {
    let (from, to) = both_accounts(tx, &caller.principal, c.from, c.to).await?;
    let Some(ancestor) = crate::domain::account::common_ancestor(&from.path, &to.path) else {
        return Err(Error::precondition(
            "ACCOUNTS_IN_DIFFERENT_TREES",
            format!("accounts/{}", to.id),
            format!("the account is not in the tree of account {}", from.id),
        ));
    };
    let entering = entered(tx, &ancestor, &to).await?;
    let m = Move::Transfer {
        from: from.id,
        to: Target::of(&to),
    };
    move_selection(tx, caller, &from, &c.selection, &m, &entering).await
}

/// The account an assignee belongs to: the holder when none is named. An assignee elsewhere
/// takes the number with it (down, or through the lowest common ancestor to a sibling
/// sub-team): an allocation or a transfer, so the caller needs the admin rights those need,
/// over the holder and over the assignee's account; an operator assigns only within the
/// account that holds the number.
async fn assignee_account(
    tx: &Tx<'_>,
    p: &Principal,
    n: &Number,
    account_id: Option<Uuid>,
) -> Result<Account> {
    match account_id {
        None => accounts::get(tx, n.holder_id, Lock::No).await,
        Some(id) => {
            let account =
                scoped_account(tx, p, id, Role::Operator, Reach::OwnOrBelow, Lock::No).await?;
            if account.id != n.holder_id {
                p.authorize(&n.holder_path, Role::Admin, Reach::OwnOrBelow)?;
                p.authorize(&account.path, Role::Admin, Reach::OwnOrBelow)?;
            }
            Ok(account)
        }
    }
}

/// Changes one number: the single-number RPCs and every item of a batch.
pub async fn change(tx: &Tx<'_>, caller: &Caller, c: OneChange) -> Result<Number> {
    let p = &caller.principal;
    let role = match c.change {
        Change::Release | Change::Unbind => Role::Admin,
        _ => Role::Operator,
    };
    let n = scoped_number(tx, p, &c.number, role, Lock::ForUpdate).await?;
    check_etag(&c.etag, n.version, "number", &n.e164)?;
    let mut binding = None;
    // Assignments name the account they land in, which must then take the number.
    let (m, receiving) = match c.change {
        Change::Assign {
            assignee,
            override_reservation,
            attributes,
        } => {
            binding = attributes;
            let account = assignee_account(tx, p, &n, assignee.account_id).await?;
            let m = Move::Assign {
                assignee,
                to: Target::of(&account),
                override_reservation,
            };
            (m, Some(account))
        }
        Change::Reassign { assignee } => {
            let account = assignee_account(tx, p, &n, assignee.account_id).await?;
            let m = Move::Reassign {
                assignee,
                to: Target::of(&account),
            };
            (m, Some(account))
        }
        Change::Unassign => (Move::Unassign, None),
        Change::Reserve(r) => (Move::Reserve(r), None),
        Change::Unreserve => (Move::Unreserve, None),
        Change::Release => (Move::Release, None),
        Change::Unbind => {
            // Back into the owner's pool: the owner's call, with the owner's aging period.
            let owner = accounts::get(tx, n.owner_id, Lock::No).await?;
            p.authorize(&owner.path, Role::Admin, Reach::OwnOrBelow)?;
            let m = Move::Unbind {
                owner_path: owner.path,
                aging_period: owner.fields.aging_period,
                now: SystemTime::now(),
            };
            (m, None)
        }
    };
    let after = lifecycle::next(&n, &m)?;
    // A suspension anywhere above freezes the account: no assignment lands in it, no
    // reservation is made in it.
    match (&receiving, &m) {
        (Some(account), _) => require_unfrozen(tx, account.id).await?,
        (None, Move::Reserve(_)) => require_unfrozen(tx, n.holder_id).await?,
        _ => {}
    }
    if let Some(account) = &receiving {
        // The accounts the number enters: below the holder, or below the common ancestor.
        let source = lifecycle::entry_path(&n, &Target::of(account))
            .unwrap_or_else(|| n.holder_path.clone());
        admit_into(tx, &source, account, 1).await?;
    }
    let saved = numbers::save_state(tx, &n, &after, m.operation(), &caller.actor()).await?;
    match (binding, receiving) {
        (Some(set), Some(holder)) => {
            let mut bound =
                super::number_pool::bind_attributes(tx, caller, vec![saved], &holder, &set).await?;
            bound
                .pop()
                .ok_or_else(|| Error::Internal("a bound number was lost".into()))
        }
        _ => Ok(saved),
    }
}

/// The changes of a batch, each answered on its own (or all-or-nothing), by the number as the
/// request named it.
pub async fn change_each(
    tx: &Tx<'_>,
    caller: &Caller,
    batch: Batch<OneChange>,
) -> Result<Vec<(String, Result<Number>)>> {
    let named: Vec<String> = batch
        .items
        .iter()
        .map(|item| {
            item.as_ref()
                .map(|c| c.number.to_string())
                .unwrap_or_default()
        })
        .collect();
    let results = each(tx, batch.items, batch.all_or_nothing, |c| {
        change(tx, caller, c).boxed()
    })
    .await?;
    Ok(named.into_iter().zip(results).collect())
}

/// A page of a number's history after event `after`. A caller sees the events that left the
/// number inside its own subtree and view, never where the number was before it came (a
/// sibling's assignees, say), and no account outside its scope is named in them.
pub async fn history(
    db: &impl GenericClient,
    p: &Principal,
    key: &Key,
    after: i64,
    limit: i64,
) -> Result<Vec<NumberEvent>> {
    let number = scoped_number(db, p, key, Role::Viewer, Lock::No).await?;
    let scope = p.account_id.filter(|_| !p.is_platform());
    let events = store::events(db, number.id, scope, after, limit).await?;
    within_scope(db, p, events).await
}

/// The events as the caller may see them: every account id outside its scope left out (a
/// TRANSFER's `before` names no sibling, an ALLOCATE's no parent). One query for the paths of
/// the accounts the events name; accounts deleted since count by the path they had.
pub(crate) async fn within_scope(
    db: &impl GenericClient,
    p: &Principal,
    events: Vec<NumberEvent>,
) -> Result<Vec<NumberEvent>> {
    if p.is_platform() {
        return Ok(events);
    }
    let named: Vec<Uuid> = events
        .iter()
        .flat_map(NumberEvent::accounts_named)
        .collect();
    let in_scope = in_scope(db, p, named).await?;
    Ok(events.into_iter().map(|e| e.redacted(&in_scope)).collect())
}

/// Why a number has no state at `time`: a number the caller sees now that was added after
/// `time` says so (NUMBER_NOT_YET_ADDED); anything else is unseen, as a number the caller may
/// not see is.
async fn not_yet_added(
    db: &impl GenericClient,
    p: &Principal,
    key: &Key,
    time: SystemTime,
) -> Error {
    match scoped_number(db, p, key, Role::Viewer, Lock::No).await {
        Ok(n) if n.create_time > time => lifecycle::not_yet_added(&n),
        Ok(_) | Err(Error::NotFound { .. } | Error::PermissionDenied) => {
            unseen(p, "number", key.to_string())
        }
        Err(e) => e,
    }
}

/// Where a number stood at `time`: the last event at or before it. Whoever could see the number
/// then may see it (a RETURNED number only from the owner's side), as long as the caller's own
/// account still exists; accounts outside the caller's scope are not named.
pub async fn state_at(
    db: &impl GenericClient,
    p: &Principal,
    key: &Key,
    time: SystemTime,
) -> Result<NumberEvent> {
    require_live_caller(db, p).await?;
    let id = match key {
        Key::Id(id) => Some(*id),
        Key::E164(e164) => store::live_at(db, e164.as_str(), time).await?,
    };
    let event = match id {
        Some(id) => store::event_at(db, id, time).await?,
        None => None,
    };
    let Some(event) = event else {
        return Err(not_yet_added(db, p, key, time).await);
    };
    p.authorize(&event.visible_path(), Role::Viewer, Reach::OwnOrBelow)?;
    let mut seen = within_scope(db, p, vec![event]).await?;
    seen.pop()
        .ok_or_else(|| Error::Internal("an event was lost while redacted".into()))
}
