//! The use cases: what each RPC does, step by step, on the domain's types. A use case takes the
//! caller, a typed command and a transaction (mutations) or the database (reads), checks scope,
//! applies the rules of [`crate::domain`] and calls [`crate::store`]. No tonic, no SQL here.

pub mod allocation;
pub mod import;
pub mod number_pool;
pub mod tenancy;
pub mod together;
pub mod watch;

use futures::future::BoxFuture;
use uuid::Uuid;

use crate::domain::account::Account;
use crate::domain::command::Key;
use crate::domain::lifecycle;
use crate::domain::number::{Actor, Number};
use crate::domain::principal::{Principal, Reach, Role};
use crate::error::{self, Error, Result};
use crate::store::{self, GenericClient, Lock, Tx};

/// Who is calling, and under which request id: what every mutation is given.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub request_id: String,
}

impl Caller {
    /// The actor written on the events of this call.
    pub fn actor(&self) -> Actor {
        Actor {
            subject: self.principal.subject.clone(),
            account_id: self.principal.account_id,
            request_id: self.request_id.clone(),
        }
    }
}

/// What a caller learns about something it may not see, or that does not exist: the same
/// answer (AIP-211); only the platform is told NOT_FOUND.
pub fn unseen(p: &Principal, resource_type: &'static str, name: String) -> Error {
    if p.is_platform() {
        Error::NotFound {
            resource_type,
            name,
        }
    } else {
        Error::PermissionDenied
    }
}

/// Loads an account the caller may act on with `role`. An account outside the caller's scope
/// and one that does not exist answer alike (PERMISSION_DENIED), so nothing leaks.
pub async fn scoped_account(
    db: &impl GenericClient,
    p: &Principal,
    id: Uuid,
    role: Role,
    reach: Reach,
    lock: Lock,
) -> Result<Account> {
    match store::accounts::get(db, id, lock).await {
        Ok(account) => {
            p.authorize(&account.path, role, reach)?;
            Ok(account)
        }
        Err(Error::NotFound { .. }) => Err(unseen(p, "account", id.to_string())),
        Err(e) => Err(e),
    }
}

/// Loads a number whose holder the caller may act on with `role`; like [`scoped_account`], a
/// number outside the scope and a missing one answer alike.
pub async fn scoped_number(
    db: &impl GenericClient,
    p: &Principal,
    key: &Key,
    role: Role,
    lock: Lock,
) -> Result<Number> {
    match store::numbers::find(db, key, lock).await {
        Ok(number) => {
            p.authorize(&number.visible_path(), role, Reach::OwnOrBelow)?;
            Ok(number)
        }
        Err(Error::NotFound { .. }) => Err(unseen(p, "number", key.to_string())),
        Err(e) => Err(e),
    }
}

/// Nothing new goes into a suspended or closed account, nor anywhere below one: account `id`
/// and each of its ancestors must be active. Reads, withdrawals and releases stay allowed.
pub async fn require_unfrozen(db: &impl GenericClient, id: Uuid) -> Result<()> {
    lifecycle::require_unfrozen(store::accounts::first_inactive_on_path(db, id).await?)
}

/// A caller whose own account was deleted acts on nothing and reads nothing, history included:
/// its token outlived its account (PERMISSION_DENIED, as for any account out of scope).
pub async fn require_live_caller(db: &impl GenericClient, p: &Principal) -> Result<()> {
    match p.account_id.filter(|_| !p.is_platform()) {
        Some(own) => match store::accounts::get(db, own, Lock::No).await {
            Ok(_) => Ok(()),
            Err(Error::NotFound { .. }) => Err(Error::PermissionDenied),
            Err(e) => Err(e),
        },
        None => Ok(()),
    }
}

/// Whether the caller sits below the provider, where RETURNED numbers have left its view. Any
/// account in the caller's scope tells it, by its provider: no read of the caller's own.
pub fn below_provider(p: &Principal, provider_of_one_in_scope: Uuid) -> bool {
    p.acting_account()
        .is_some_and(|own| own != provider_of_one_in_scope)
}

/// Which of the accounts `named` (in events) the caller may see: one query for their paths;
/// accounts deleted since count by the path they had. The platform sees them all.
pub async fn in_scope(
    db: &impl GenericClient,
    p: &Principal,
    mut named: Vec<Uuid>,
) -> Result<Box<dyn Fn(Uuid) -> bool + Send + Sync>> {
    named.sort();
    named.dedup();
    let paths = if p.is_platform() {
        Default::default()
    } else {
        store::accounts::paths_of(db, &named).await?
    };
    let p = p.clone();
    Ok(Box::new(move |id: Uuid| {
        p.is_platform()
            || paths
                .get(&id)
                .is_some_and(|path| p.authorize(path, Role::Viewer, Reach::OwnOrBelow).is_ok())
    }))
}

/// Runs every item of a batch in one transaction, each behind a savepoint so that one failure
/// undoes only itself; all-or-nothing undoes everything when anything failed, with the one
/// answer [`error::all_or_nothing`] gives for every kind of batch.
pub async fn each<'a, I, T>(
    tx: &'a Tx<'a>,
    items: Vec<Result<I>>,
    all_or_nothing: bool,
    run: impl Fn(I) -> BoxFuture<'a, Result<T>>,
) -> Result<Vec<Result<T>>> {
    let mut results = Vec::with_capacity(items.len());
    let mut failures = Vec::new();
    for item in items {
        store::savepoint(tx).await?;
        let outcome = match item {
            Ok(item) => run(item).await,
            Err(e) => Err(e),
        };
        match &outcome {
            Ok(_) => store::release_savepoint(tx).await?,
            Err(e) => {
                store::rollback_to_savepoint(tx).await?;
                failures.push(e.clone());
            }
        }
        results.push(outcome);
    }
    if all_or_nothing && !failures.is_empty() {
        return Err(error::all_or_nothing(failures));
    }
    Ok(results)
}
