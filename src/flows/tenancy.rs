//! The account tree: creating, changing, suspending, resuming and deleting accounts; reading
//! them, their children and their path.

use uuid::Uuid;

use super::{Caller, in_scope, require_unfrozen, scoped_account};
use crate::domain::account::{self, Account, AccountState, path_ids};
use crate::domain::check_etag;
use crate::domain::command::{ChangeAccountState, CreateAccount, Delete, UpdateAccount};
use crate::domain::event::{AccountEvent, AccountOperation};
use crate::domain::lifecycle;
use crate::domain::principal::{Principal, Reach, Role};
use crate::error::{Error, Result};
use crate::store::accounts::{self as store, ListFilter};
use crate::store::events::{account_events, record_account};
use crate::store::{GenericClient, Lock, Tx};

/// A provider (no parent) is the platform's to create; any other account is its parent's
/// admins', under a parent that is active and has no suspended ancestor.
pub async fn create(tx: &Tx<'_>, caller: &Caller, c: CreateAccount) -> Result<Account> {
    let p = &caller.principal;
    let parent = match c.parent_id {
        Some(pid) => {
            let parent =
                scoped_account(tx, p, pid, Role::Admin, Reach::OwnOrBelow, Lock::ForUpdate).await?;
            require_unfrozen(tx, parent.id).await?;
            account::require_room_below(&parent)?;
            Some(parent)
        }
        None if p.is_platform() => None,
        None => return Err(Error::PermissionDenied),
    };
    let created = store::insert(tx, parent.as_ref(), &c.fields).await?;
    let op = AccountOperation::Create;
    record_account(tx, op, None, Some(&created), &caller.actor()).await?;
    Ok(created)
}

pub async fn get(db: &impl GenericClient, p: &Principal, id: Uuid) -> Result<Account> {
    scoped_account(db, p, id, Role::Viewer, Reach::OwnOrBelow, Lock::No).await
}

/// A page of the children (or the whole subtree) of an account the caller may see.
pub async fn list(
    db: &impl GenericClient,
    p: &Principal,
    parent_id: Uuid,
    filter: impl FnOnce(Account) -> ListFilter,
    after: Option<(i32, i64)>,
    limit: i64,
) -> Result<Vec<Account>> {
    let parent = get(db, p, parent_id).await?;
    store::list(db, &filter(parent), after, limit).await
}

/// The account a change is about, locked, in the caller's admin scope (`reach`), at the
/// version the caller saw if it sent an etag.
async fn to_change(
    tx: &Tx<'_>,
    caller: &Caller,
    id: Uuid,
    reach: Reach,
    etag: &str,
) -> Result<Account> {
    let account = scoped_account(
        tx,
        &caller.principal,
        id,
        Role::Admin,
        reach,
        Lock::ForUpdate,
    )
    .await?;
    check_etag(etag, account.version, "account", &id.to_string())?;
    Ok(account)
}

/// UpdateAccount: the fields the mask names. The quota is the parent's call, not the
/// account's own.
pub async fn update(tx: &Tx<'_>, caller: &Caller, c: UpdateAccount) -> Result<Account> {
    let reach = if c.paths.iter().any(|p| p == "max_numbers") {
        Reach::Below
    } else {
        Reach::OwnOrBelow
    };
    let current = to_change(tx, caller, c.id, reach, &c.etag).await?;
    let mut fields = current.fields.clone();
    fields.merge(&c.incoming, &c.paths, current.parent_id.is_none())?;
    let updated = store::update(tx, c.id, &fields).await?;
    let op = if updated.fields.max_numbers == current.fields.max_numbers {
        AccountOperation::Update
    } else {
        AccountOperation::ChangeQuota
    };
    record_account(tx, op, Some(&current), Some(&updated), &caller.actor()).await?;
    Ok(updated)
}

/// Suspend or resume: the parent's call. Asking for the state the account is in already
/// answers it as it is.
pub async fn change_state(tx: &Tx<'_>, caller: &Caller, c: ChangeAccountState) -> Result<Account> {
    let account = to_change(tx, caller, c.id, Reach::Below, &c.etag).await?;
    if account.state == c.to {
        return Ok(account);
    }
    if account.state != c.from {
        return Err(lifecycle::not_active(account.id, account.state));
    }
    let changed = store::set_state(tx, c.id, c.to).await?;
    let op = match c.to {
        AccountState::Active => AccountOperation::Resume,
        AccountState::Suspended => AccountOperation::Suspend,
        AccountState::Closed => AccountOperation::Close,
    };
    record_account(tx, op, Some(&account), Some(&changed), &caller.actor()).await?;
    Ok(changed)
}

/// Close: the parent's call, for good. The account (active or suspended) must hold no number in
/// its subtree any more; closing a closed account answers it as it is. A closed account is never
/// resumed or suspended again ([`change_state`] refuses it), and like a suspended one it freezes
/// its subtree; it stays readable, with its history.
pub async fn close(tx: &Tx<'_>, caller: &Caller, c: Delete) -> Result<Account> {
    let account = to_change(tx, caller, c.id, Reach::Below, &c.etag).await?;
    if account.state == AccountState::Closed {
        return Ok(account);
    }
    let (total, first) = store::numbers_in_subtree(
        tx,
        account.provider_id,
        &account.path,
        account::NAMED_IN_THE_WAY,
    )
    .await?;
    account::require_no_numbers(account.id, total, &first)?;
    let closed = store::set_state(tx, c.id, AccountState::Closed).await?;
    let op = AccountOperation::Close;
    record_account(tx, op, Some(&account), Some(&closed), &caller.actor()).await?;
    Ok(closed)
}

/// Delete: the parent's call, only when the account has no children and holds no numbers.
pub async fn delete(tx: &Tx<'_>, caller: &Caller, c: Delete) -> Result<()> {
    let account = to_change(tx, caller, c.id, Reach::Below, &c.etag).await?;
    let children = store::count_children(tx, c.id).await?;
    let numbers = store::count_numbers_held(tx, c.id).await?;
    account::require_empty(c.id, children, numbers)?;
    store::delete(tx, c.id).await?;
    let op = AccountOperation::Delete;
    record_account(tx, op, Some(&account), None, &caller.actor()).await
}

/// A page of the events of an account the caller may see (of its subtree when `recursive`),
/// after sequence `after`; the actor's account is not named when it is outside the caller's
/// scope (the parent that suspended it).
pub async fn history(
    db: &impl GenericClient,
    p: &Principal,
    id: Uuid,
    recursive: bool,
    after: i64,
    limit: i64,
) -> Result<Vec<AccountEvent>> {
    let root = get(db, p, id).await?;
    let events = account_events(db, &root, recursive, after, limit).await?;
    let named = events.iter().filter_map(|e| e.actor_account_id).collect();
    let in_scope = in_scope(db, p, named).await?;
    Ok(events.into_iter().map(|e| e.redacted(&in_scope)).collect())
}

/// The accounts from the caller's own account (or the provider, for the platform) down to
/// `id`: a caller never sees its ancestors.
pub async fn path(db: &impl GenericClient, p: &Principal, id: Uuid) -> Result<Vec<Account>> {
    let target = get(db, p, id).await?;
    let mut ids = path_ids(&target.path);
    if let Some(own) = p.account_id.filter(|_| !p.is_platform())
        && let Some(pos) = ids.iter().position(|i| *i == own)
    {
        ids.drain(..pos);
    }
    store::path(db, &ids).await
}

/// The states suspend and resume move between.
pub const SUSPEND: (AccountState, AccountState) = (AccountState::Active, AccountState::Suspended);
pub const RESUME: (AccountState, AccountState) = (AccountState::Suspended, AccountState::Active);
