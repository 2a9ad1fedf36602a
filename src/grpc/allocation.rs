//! AllocationService: the life of a number across the account tree. Each handler reads and
//! checks its request, runs the move in one transaction ([`crate::store::Db::mutate`]: request
//! ids and validate_only) and answers. The rules are [`crate::domain::lifecycle`]'s, the SQL is
//! [`crate::store::allocation`]'s; what sits here is scope, and the order of the steps.

mod input;

use std::time::SystemTime;

use deadpool_postgres::Transaction;
use futures::FutureExt;
use numbering_client::v1 as pb;
use prost::Message;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use self::input::{Change, Key, OneChange, Selection};
use super::convert::{number_to_proto, operation_to_proto, state_to_proto};
use super::proto::v1::allocation_service_server::AllocationService;
use super::{AppState, actor, mutation, principal, scoped_account, scoped_number, timestamp};
use crate::domain::account::path_ids;
use crate::domain::check_etag;
use crate::domain::lifecycle::{self, Move, Standing, Target};
use crate::domain::number::{Actor, Assignee};
use crate::domain::principal::{Principal, Role};
use crate::domain::validate::Violations;
use crate::error::{Error, Result};
use crate::store::GenericClient;
use crate::store::accounts::{self, Account};
use crate::store::allocation::{self as store, NumberEvent, Pool, standing_at};
use crate::store::numbers::{self, Number};

pub struct Allocation(pub AppState);

fn target(a: &Account) -> Target {
    Target {
        id: a.id,
        path: a.path.clone(),
    }
}

/// What a caller learns about something it may not see, or that does not exist: the same
/// answer (AIP-211); only the platform is told NOT_FOUND.
fn unseen(p: &Principal, resource_type: &'static str, name: String) -> Error {
    if p.is_platform() {
        Error::NotFound {
            resource_type,
            name,
        }
    } else {
        Error::PermissionDenied
    }
}

/// The accounts a number enters when it goes down from the account at `source_path` to `to`
/// (which is at or below it): every account strictly below the source, down to `to` itself.
async fn entered(tx: &Transaction<'_>, source_path: &str, to: &Account) -> Result<Vec<Account>> {
    let below: Vec<Uuid> = path_ids(&to.path)
        .into_iter()
        .skip(path_ids(source_path).len())
        .collect();
    match below.as_slice() {
        [] => Ok(Vec::new()),
        [only] if *only == to.id => Ok(vec![to.clone()]),
        ids => accounts::path(tx, ids).await,
    }
}

/// Every account that `incoming` numbers enter must be active and stay within its quota.
pub async fn admit(tx: &impl GenericClient, entered: &[Account], incoming: i64) -> Result<()> {
    for a in entered {
        lifecycle::require_active(a.id, a.state)?;
    }
    let limited: Vec<Uuid> = entered
        .iter()
        .filter(|a| a.fields.max_numbers.is_some())
        .map(|a| a.id)
        .collect();
    for quota in store::lock_quota_accounts(tx, &limited).await? {
        let held = store::subtree_count(tx, quota.provider_id, &quota.path).await?;
        lifecycle::require_quota(quota.id, quota.max_numbers, held, incoming)?;
    }
    Ok(())
}

/// Locks the numbers a multi-number move takes from `source`: the named ones (each must be one
/// the caller may see), or a quantity of its unused ones (all of them, or an error that says
/// how many there are).
async fn select(
    tx: &Transaction<'_>,
    p: &Principal,
    source: &Account,
    selection: &Selection,
) -> Result<Vec<Number>> {
    match selection {
        Selection::Named(keys) => {
            let ids: Vec<Uuid> = keys.iter().filter_map(Key::id).collect();
            let e164s: Vec<String> = keys.iter().filter_map(Key::e164).collect();
            let found = store::lock_named(tx, &ids, &e164s).await?;
            for key in keys {
                let n = found
                    .iter()
                    .find(|n| key.names(n))
                    .ok_or_else(|| unseen(p, "number", key.to_string()))?;
                p.authorize(&n.holder_path, Role::Viewer, false)?;
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
    tx: &Transaction<'_>,
    p: &Principal,
    source: &Account,
    selection: &Selection,
    m: &Move,
    entering: &[Account],
    actor: &Actor,
) -> Result<Vec<Number>> {
    let numbers = select(tx, p, source, selection).await?;
    let standings: Vec<Standing> = numbers.iter().map(Standing::from).collect();
    let after = lifecycle::next_all(&standings, m)?;
    admit(tx, entering, numbers.len() as i64).await?;
    let moves: Vec<(Number, Standing)> = numbers.into_iter().zip(after).collect();
    store::save_moves(tx, &moves, m.operation(), actor).await
}

/// Keeps the cached plans of this transaction's statements. PostgreSQL would otherwise plan
/// the pick and the save afresh on every call: their generic plans look costly to it for a
/// LIMIT and array lengths it cannot see, so it prefers custom plans, and planning them cost
/// more than running them. The generic plans are the right ones (the pick's index scan, one
/// index probe per saved number).
async fn keep_cached_plans(tx: &Transaction<'_>) -> Result<()> {
    Ok(tx
        .batch_execute("SET LOCAL plan_cache_mode = force_generic_plan")
        .await?)
}

/// The two accounts of a move between accounts, both in the caller's admin scope. The reads
/// (and the plan setting) are pipelined on the connection: one round trip, not three.
async fn both_accounts(
    tx: &Transaction<'_>,
    p: &Principal,
    from: Uuid,
    to: Uuid,
) -> Result<(Account, Account)> {
    let ((), from, to) = futures::try_join!(
        keep_cached_plans(tx),
        scoped_account(tx, p, from, Role::Admin, false, false),
        scoped_account(tx, p, to, Role::Admin, false, false),
    )?;
    Ok((from, to))
}

async fn allocate(
    tx: &Transaction<'_>,
    p: &Principal,
    (from, to): (Uuid, Uuid),
    selection: &Selection,
    actor: &Actor,
) -> Result<Vec<Number>> {
    let (from, to) = both_accounts(tx, p, from, to).await?;
    lifecycle::require_descendant(&target(&from), &target(&to))?;
    let entering = entered(tx, &from.path, &to).await?;
    let m = Move::Allocate {
        from: from.id,
        to: target(&to),
    };
    move_selection(tx, p, &from, selection, &m, &entering, actor).await
}

/// Withdrawing is the parent's call: the caller must be above the account.
async fn withdraw(
    tx: &Transaction<'_>,
    p: &Principal,
    account: Uuid,
    selection: &Selection,
    actor: &Actor,
) -> Result<Vec<Number>> {
    let ((), account) = futures::try_join!(
        keep_cached_plans(tx),
        scoped_account(tx, p, account, Role::Admin, true, false),
    )?;
    let (Some(parent_id), Some(parent_path)) =
        (account.parent_id, lifecycle::parent_path(&account.path))
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
    move_selection(tx, p, &account, selection, &m, &[], actor).await
}

/// A transfer goes up to the lowest common ancestor and down again; a caller with scope over
/// both accounts has it over that ancestor.
async fn transfer(
    tx: &Transaction<'_>,
    p: &Principal,
    (from, to): (Uuid, Uuid),
    selection: &Selection,
    actor: &Actor,
) -> Result<Vec<Number>> {
    let (from, to) = both_accounts(tx, p, from, to).await?;
    let Some(ancestor) = lifecycle::common_ancestor(&from.path, &to.path) else {
        return Err(Error::precondition(
            "ACCOUNTS_IN_DIFFERENT_TREES",
            format!("accounts/{}", to.id),
            format!("the account is not in the tree of account {}", from.id),
        ));
    };
    let entering = entered(tx, &ancestor, &to).await?;
    let m = Move::Transfer {
        from: from.id,
        to: target(&to),
    };
    move_selection(tx, p, &from, selection, &m, &entering, actor).await
}

/// The account an assignee belongs to: the holder when none is named.
async fn assignee_account(
    tx: &Transaction<'_>,
    p: &Principal,
    n: &Number,
    assignee: &Assignee,
) -> Result<Account> {
    match assignee.account_id {
        None => accounts::get(tx, n.holder_id, false).await,
        Some(id) => scoped_account(tx, p, id, Role::Operator, false, false).await,
    }
}

/// Changes one number: the single-number RPCs and every item of a batch.
async fn change_one(
    tx: &Transaction<'_>,
    p: &Principal,
    c: &OneChange,
    actor: &Actor,
) -> Result<Number> {
    let role = match c.change {
        Change::Release | Change::Unbind => Role::Admin,
        _ => Role::Operator,
    };
    let n = scoped_number(tx, p, &c.number, role, true).await?;
    check_etag(&c.etag, n.version, "number", &n.e164)?;
    // Assignments name the account they land in, which must then take the number.
    let (m, receiving) = match &c.change {
        Change::Assign {
            assignee,
            override_reservation,
        } => {
            let account = assignee_account(tx, p, &n, assignee).await?;
            let m = Move::Assign {
                assignee: assignee.clone(),
                to: target(&account),
                override_reservation: *override_reservation,
            };
            (m, Some(account))
        }
        Change::Reassign { assignee } => {
            let account = assignee_account(tx, p, &n, assignee).await?;
            let m = Move::Reassign {
                assignee: assignee.clone(),
                to: target(&account),
            };
            (m, Some(account))
        }
        Change::Unassign => (Move::Unassign, None),
        Change::Reserve(r) => (Move::Reserve(r.clone()), None),
        Change::Unreserve => (Move::Unreserve, None),
        Change::Release => (Move::Release, None),
        Change::Unbind => {
            // Back into the owner's pool: the owner's call, with the owner's aging period.
            let owner = accounts::get(tx, n.owner_id, false).await?;
            p.authorize(&owner.path, Role::Admin, false)?;
            let m = Move::Unbind {
                owner_path: owner.path,
                aging_period: owner.fields.aging_period,
                now: SystemTime::now(),
            };
            (m, None)
        }
    };
    let after = lifecycle::next(&Standing::from(&n), &m)?;
    if let Some(account) = receiving {
        lifecycle::require_active(account.id, account.state)?;
        let entering = entered(tx, &n.holder_path, &account).await?;
        admit(tx, &entering, 1).await?;
    }
    numbers::save_state(tx, &n, &standing_at(&n, &after), m.operation(), actor).await
}

/// One error for an all-or-nothing batch: every broken rule when rules were all that failed,
/// else the first failure.
fn merged(failures: Vec<Error>) -> Error {
    if failures
        .iter()
        .all(|e| matches!(e, Error::FailedPrecondition(_)))
    {
        let mut all = Vec::new();
        for e in failures {
            if let Error::FailedPrecondition(v) = e {
                all.extend(v);
            }
        }
        return Error::FailedPrecondition(all);
    }
    failures
        .into_iter()
        .find(|e| !matches!(e, Error::FailedPrecondition(_)))
        .unwrap_or(Error::Internal("a batch failed without an error".into()))
}

/// An error as the google.rpc.Status a batch reports per number, with the same details a
/// failed call would carry.
fn rpc_status(e: Error) -> tonic_types::pb::Status {
    let status = Status::from(e);
    tonic_types::pb::Status::decode(status.details()).unwrap_or_else(|_| tonic_types::pb::Status {
        code: status.code() as i32,
        message: status.message().to_string(),
        details: Vec::new(),
    })
}

/// What a mutation handler needs besides its own request.
struct Call<'a> {
    state: &'a AppState,
    principal: Principal,
    method: &'static str,
    request_id: &'a str,
    validate_only: bool,
}

impl Call<'_> {
    /// Runs a multi-number move in one transaction and answers the numbers it moved, wrapped
    /// in the RPC's response.
    async fn move_numbers<M, R, F>(
        &self,
        request: &M,
        wrap: fn(Vec<pb::Number>) -> R,
        run: F,
    ) -> Result<R>
    where
        M: Message,
        R: Message + Default + 'static,
        F: for<'t> FnOnce(
                &'t Transaction<'t>,
                &'t Principal,
                &'t Actor,
            ) -> futures::future::BoxFuture<'t, Result<Vec<Number>>>
            + Send
            + 'static,
    {
        let m = mutation(
            &self.principal,
            self.method,
            self.request_id,
            self.validate_only,
            request,
        );
        let p = self.principal.clone();
        let actor = actor(&self.principal, self.request_id);
        self.state
            .db
            .mutate(m, move |tx| {
                async move {
                    let numbers = run(tx, &p, &actor).await?;
                    Ok(wrap(numbers.into_iter().map(number_to_proto).collect()))
                }
                .boxed()
            })
            .await
    }

    async fn one<M: Message>(&self, request: &M, c: OneChange) -> Result<pb::Number> {
        let m = mutation(
            &self.principal,
            self.method,
            self.request_id,
            self.validate_only,
            request,
        );
        let p = self.principal.clone();
        let actor = actor(&self.principal, self.request_id);
        self.state
            .db
            .mutate(m, move |tx| {
                async move { Ok(number_to_proto(change_one(tx, &p, &c, &actor).await?)) }.boxed()
            })
            .await
    }

    /// Runs every change of a batch in one transaction, each behind a savepoint so that one
    /// failure undoes only itself; all-or-nothing undoes everything when anything failed.
    async fn batch<M: Message>(
        &self,
        request: &M,
        items: Vec<OneChange>,
        all_or_nothing: bool,
    ) -> Result<pb::BatchNumbersResponse> {
        let m = mutation(
            &self.principal,
            self.method,
            self.request_id,
            self.validate_only,
            request,
        );
        let p = self.principal.clone();
        let actor = actor(&self.principal, self.request_id);
        self.state
            .db
            .mutate(m, move |tx| {
                async move {
                    let mut results = Vec::with_capacity(items.len());
                    let mut failures = Vec::new();
                    for c in &items {
                        tx.batch_execute("SAVEPOINT item").await?;
                        let (result, error) = match change_one(tx, &p, c, &actor).await {
                            Ok(n) => {
                                tx.batch_execute("RELEASE SAVEPOINT item").await?;
                                (Some(number_to_proto(n)), None)
                            }
                            Err(e) => {
                                tx.batch_execute(
                                    "ROLLBACK TO SAVEPOINT item; RELEASE SAVEPOINT item",
                                )
                                .await?;
                                failures.push(e.clone());
                                (None, Some(rpc_status(e)))
                            }
                        };
                        results.push(pb::BatchNumberResult {
                            number: c.number.clone(),
                            result,
                            error,
                        });
                    }
                    if all_or_nothing && !failures.is_empty() {
                        return Err(merged(failures));
                    }
                    Ok(pb::BatchNumbersResponse { results })
                }
                .boxed()
            })
            .await
    }
}

fn event_to_proto(e: NumberEvent) -> pb::NumberEvent {
    pb::NumberEvent {
        sequence: e.seq,
        number_id: e.number_id.to_string(),
        e164: e.e164,
        time: Some(timestamp(e.time)),
        actor: e.actor,
        actor_account_id: e
            .actor_account_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        request_id: e.request_id,
        operation: e
            .operation
            .map_or(pb::NumberOperation::Unspecified, operation_to_proto)
            .into(),
        before: e.before.map(state_to_proto),
        after: e.after.map(state_to_proto),
    }
}

impl Allocation {
    fn call<'a>(
        &'a self,
        principal: Principal,
        method: &'static str,
        request_id: &'a str,
        validate_only: bool,
    ) -> Call<'a> {
        Call {
            state: &self.0,
            principal,
            method,
            request_id,
            validate_only,
        }
    }
}

#[tonic::async_trait]
impl AllocationService for Allocation {
    async fn allocate_numbers(
        &self,
        request: Request<pb::AllocateNumbersRequest>,
    ) -> Result<Response<pb::AllocateNumbersResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let (accounts, selection) = input::between(
            &req.from_account_id,
            &req.to_account_id,
            req.selection.as_ref(),
            &req.request_id,
        )?;
        let call = self.call(
            principal,
            "AllocateNumbers",
            &req.request_id,
            req.validate_only,
        );
        let answer = call
            .move_numbers(
                &req,
                |numbers| pb::AllocateNumbersResponse { numbers },
                move |tx, p, actor| {
                    async move { allocate(tx, p, accounts, &selection, actor).await }.boxed()
                },
            )
            .await?;
        Ok(Response::new(answer))
    }

    async fn withdraw_numbers(
        &self,
        request: Request<pb::WithdrawNumbersRequest>,
    ) -> Result<Response<pb::WithdrawNumbersResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let (account, selection) = input::withdrawal(&req)?;
        let call = self.call(
            principal,
            "WithdrawNumbers",
            &req.request_id,
            req.validate_only,
        );
        let answer = call
            .move_numbers(
                &req,
                |numbers| pb::WithdrawNumbersResponse { numbers },
                move |tx, p, actor| {
                    async move { withdraw(tx, p, account, &selection, actor).await }.boxed()
                },
            )
            .await?;
        Ok(Response::new(answer))
    }

    async fn transfer_numbers(
        &self,
        request: Request<pb::TransferNumbersRequest>,
    ) -> Result<Response<pb::TransferNumbersResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let (accounts, selection) = input::between(
            &req.from_account_id,
            &req.to_account_id,
            req.selection.as_ref(),
            &req.request_id,
        )?;
        let call = self.call(
            principal,
            "TransferNumbers",
            &req.request_id,
            req.validate_only,
        );
        let answer = call
            .move_numbers(
                &req,
                |numbers| pb::TransferNumbersResponse { numbers },
                move |tx, p, actor| {
                    async move { transfer(tx, p, accounts, &selection, actor).await }.boxed()
                },
            )
            .await?;
        Ok(Response::new(answer))
    }

    async fn assign_number(
        &self,
        request: Request<pb::AssignNumberRequest>,
    ) -> Result<Response<pb::Number>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let c = input::single(|v| input::assign(v, "", &req), &req.request_id)?;
        let call = self.call(
            principal,
            "AssignNumber",
            &req.request_id,
            req.validate_only,
        );
        Ok(Response::new(call.one(&req, c).await?))
    }

    async fn unassign_number(
        &self,
        request: Request<pb::UnassignNumberRequest>,
    ) -> Result<Response<pb::Number>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let c = input::single(
            |v| input::plain(v, "", &req.number, &req.etag, Change::Unassign),
            &req.request_id,
        )?;
        let call = self.call(
            principal,
            "UnassignNumber",
            &req.request_id,
            req.validate_only,
        );
        Ok(Response::new(call.one(&req, c).await?))
    }

    async fn reassign_number(
        &self,
        request: Request<pb::ReassignNumberRequest>,
    ) -> Result<Response<pb::Number>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let c = input::single(|v| input::reassign(v, "", &req), &req.request_id)?;
        let call = self.call(
            principal,
            "ReassignNumber",
            &req.request_id,
            req.validate_only,
        );
        Ok(Response::new(call.one(&req, c).await?))
    }

    async fn reserve_number(
        &self,
        request: Request<pb::ReserveNumberRequest>,
    ) -> Result<Response<pb::Number>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let now = SystemTime::now();
        let c = input::single(|v| input::reserve(v, "", &req, now), &req.request_id)?;
        let call = self.call(
            principal,
            "ReserveNumber",
            &req.request_id,
            req.validate_only,
        );
        Ok(Response::new(call.one(&req, c).await?))
    }

    async fn unreserve_number(
        &self,
        request: Request<pb::UnreserveNumberRequest>,
    ) -> Result<Response<pb::Number>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let c = input::single(
            |v| input::plain(v, "", &req.number, &req.etag, Change::Unreserve),
            &req.request_id,
        )?;
        let call = self.call(
            principal,
            "UnreserveNumber",
            &req.request_id,
            req.validate_only,
        );
        Ok(Response::new(call.one(&req, c).await?))
    }

    async fn release_number(
        &self,
        request: Request<pb::ReleaseNumberRequest>,
    ) -> Result<Response<pb::Number>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let c = input::single(
            |v| input::plain(v, "", &req.number, &req.etag, Change::Release),
            &req.request_id,
        )?;
        let call = self.call(
            principal,
            "ReleaseNumber",
            &req.request_id,
            req.validate_only,
        );
        Ok(Response::new(call.one(&req, c).await?))
    }

    async fn unbind_number(
        &self,
        request: Request<pb::UnbindNumberRequest>,
    ) -> Result<Response<pb::Number>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let c = input::single(
            |v| input::plain(v, "", &req.number, &req.etag, Change::Unbind),
            &req.request_id,
        )?;
        let call = self.call(
            principal,
            "UnbindNumber",
            &req.request_id,
            req.validate_only,
        );
        Ok(Response::new(call.one(&req, c).await?))
    }

    async fn batch_assign_numbers(
        &self,
        request: Request<pb::BatchAssignNumbersRequest>,
    ) -> Result<Response<pb::BatchNumbersResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let items = input::batch(&req.requests, &req.request_id, |v, prefix, r| {
            input::item(v, prefix, &r.request_id, r.validate_only);
            input::assign(v, prefix, r)
        })?;
        let call = self.call(
            principal,
            "BatchAssignNumbers",
            &req.request_id,
            req.validate_only,
        );
        Ok(Response::new(
            call.batch(&req, items, req.all_or_nothing).await?,
        ))
    }

    async fn batch_unassign_numbers(
        &self,
        request: Request<pb::BatchUnassignNumbersRequest>,
    ) -> Result<Response<pb::BatchNumbersResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let items = input::batch(&req.requests, &req.request_id, |v, prefix, r| {
            input::item(v, prefix, &r.request_id, r.validate_only);
            input::plain(v, prefix, &r.number, &r.etag, Change::Unassign)
        })?;
        let call = self.call(
            principal,
            "BatchUnassignNumbers",
            &req.request_id,
            req.validate_only,
        );
        Ok(Response::new(
            call.batch(&req, items, req.all_or_nothing).await?,
        ))
    }

    async fn batch_reserve_numbers(
        &self,
        request: Request<pb::BatchReserveNumbersRequest>,
    ) -> Result<Response<pb::BatchNumbersResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let now = SystemTime::now();
        let items = input::batch(&req.requests, &req.request_id, |v, prefix, r| {
            input::item(v, prefix, &r.request_id, r.validate_only);
            input::reserve(v, prefix, r, now)
        })?;
        let call = self.call(
            principal,
            "BatchReserveNumbers",
            &req.request_id,
            req.validate_only,
        );
        Ok(Response::new(
            call.batch(&req, items, req.all_or_nothing).await?,
        ))
    }

    async fn batch_release_numbers(
        &self,
        request: Request<pb::BatchReleaseNumbersRequest>,
    ) -> Result<Response<pb::BatchNumbersResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let items = input::batch(&req.requests, &req.request_id, |v, prefix, r| {
            input::item(v, prefix, &r.request_id, r.validate_only);
            input::plain(v, prefix, &r.number, &r.etag, Change::Release)
        })?;
        let call = self.call(
            principal,
            "BatchReleaseNumbers",
            &req.request_id,
            req.validate_only,
        );
        Ok(Response::new(
            call.batch(&req, items, req.all_or_nothing).await?,
        ))
    }

    async fn list_number_events(
        &self,
        request: Request<pb::ListNumberEventsRequest>,
    ) -> Result<Response<pb::ListNumberEventsResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let key = input::number_key(&mut v, "number", &req.number);
        let limit = v.page_size(req.page_size, 100, 1000);
        v.finish()?;
        let filter_bytes = pb::ListNumberEventsRequest {
            page_size: 0,
            page_token: String::new(),
            ..req.clone()
        }
        .encode_to_vec();
        let after: Option<i64> = self.0.page_tokens.decode(&req.page_token, &filter_bytes)?;
        let client = self.0.db.client().await?;
        let number = scoped_number(&client, &principal, &key, Role::Viewer, false).await?;
        // A caller sees the events that left the number inside its own subtree, never where the
        // number was before it came (a sibling's assignees, say).
        let scope = principal.account_id.filter(|_| !principal.is_platform());
        let mut events =
            store::events(&client, number.id, scope, after.unwrap_or(0), limit + 1).await?;
        let next_page_token = if events.len() as i64 > limit {
            events.truncate(limit as usize);
            events
                .last()
                .map(|last| self.0.page_tokens.encode(&filter_bytes, &last.seq))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListNumberEventsResponse {
            events: events.into_iter().map(event_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn get_number_state_at(
        &self,
        request: Request<pb::GetNumberStateAtRequest>,
    ) -> Result<Response<pb::GetNumberStateAtResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let key = input::parse_key(&mut v, "number", &req.number);
        let time = input::time(&mut v, "time", req.time.as_ref(), true);
        v.finish()?;
        let (Some(key), Some(time)) = (key, time) else {
            return Err(Error::invalid("number", "required").into());
        };
        let client = self.0.db.client().await?;
        let id = match &key {
            Key::Id(id) => Some(*id),
            Key::E164(e164) => store::live_at(&client, e164, time).await?,
        };
        let event = match id {
            Some(id) => store::event_at(&client, id, time).await?,
            None => None,
        };
        let event = event.ok_or_else(|| unseen(&principal, "number", key.to_string()))?;
        // Whoever held the number at that time may see where it stood then.
        principal.authorize(&event.holder_path, Role::Viewer, false)?;
        Ok(Response::new(pb::GetNumberStateAtResponse {
            number_id: event.number_id.to_string(),
            e164: event.e164.clone(),
            state: event.after.clone().map(state_to_proto),
            event: Some(event_to_proto(event)),
        }))
    }

    type WatchNumberEventsStream =
        futures::stream::BoxStream<'static, Result<pb::WatchNumberEventsResponse, Status>>;

    async fn watch_number_events(
        &self,
        _request: Request<pb::WatchNumberEventsRequest>,
    ) -> Result<Response<Self::WatchNumberEventsStream>, Status> {
        Err(Error::Unimplemented("WatchNumberEvents").into())
    }
}
