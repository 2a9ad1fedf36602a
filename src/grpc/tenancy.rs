//! TenancyService: the account tree.

use std::time::Duration;

use futures::FutureExt;
use numbering_client::v1 as pb;
use prost::Message;
use tonic::{Request, Response, Status};

use super::proto::v1::tenancy_service_server::TenancyService;
use super::{AppState, mutation, optional_id, principal, required_id, scoped_account, timestamp};
use crate::domain::account::{self, AccountFields, AccountState, UPDATABLE, validate_fields};
use crate::domain::lifecycle;
use crate::domain::principal::Role;
use crate::domain::validate::Violations;
use crate::domain::{check_etag, etag, parse_id};
use crate::error::{Error, Result};
use crate::store::accounts::{self as store, Account, ListFilter};

pub struct Tenancy(pub AppState);

fn state_to_proto(s: AccountState) -> pb::AccountState {
    match s {
        AccountState::Active => pb::AccountState::Active,
        AccountState::Suspended => pb::AccountState::Suspended,
        AccountState::Closed => pb::AccountState::Closed,
    }
}

fn to_proto(a: Account) -> pb::Account {
    pb::Account {
        id: a.id.to_string(),
        parent_id: a.parent_id.map(|p| p.to_string()).unwrap_or_default(),
        provider_id: a.provider_id.to_string(),
        display_name: a.fields.display_name,
        kind: a.fields.kind,
        external_ref: a.fields.external_ref.unwrap_or_default(),
        state: state_to_proto(a.state).into(),
        labels: a.fields.labels,
        max_numbers: a.fields.max_numbers,
        aging_period: a.parent_id.is_none().then(|| prost_types::Duration {
            seconds: i64::try_from(a.fields.aging_period.as_secs()).unwrap_or(i64::MAX),
            nanos: 0,
        }),
        depth: a.depth,
        create_time: Some(timestamp(a.create_time)),
        update_time: Some(timestamp(a.update_time)),
        etag: etag(a.version),
    }
}

/// Reads the settable fields of a proto account, recording what is malformed.
fn fields_from_proto(v: &mut Violations, a: &pb::Account) -> AccountFields {
    let aging_period = match &a.aging_period {
        None => Duration::ZERO,
        Some(d) if d.seconds < 0 || d.nanos < 0 => {
            v.add("account.aging_period", "must not be negative");
            Duration::ZERO
        }
        Some(d) => Duration::new(d.seconds.unsigned_abs(), d.nanos.unsigned_abs()),
    };
    AccountFields {
        display_name: a.display_name.trim().to_string(),
        kind: a.kind.trim().to_string(),
        external_ref: Some(a.external_ref.trim().to_string()).filter(|s| !s.is_empty()),
        labels: a.labels.clone(),
        max_numbers: a.max_numbers,
        aging_period,
    }
}

fn parse_state(v: &mut Violations, field: &str, value: i32) -> Option<AccountState> {
    match pb::AccountState::try_from(value) {
        Ok(pb::AccountState::Unspecified) => None,
        Ok(pb::AccountState::Active) => Some(AccountState::Active),
        Ok(pb::AccountState::Suspended) => Some(AccountState::Suspended),
        Ok(pb::AccountState::Closed) => Some(AccountState::Closed),
        Err(_) => {
            v.add(field, "unknown state");
            None
        }
    }
}

/// Suspend and resume share everything but the states.
async fn change_state(
    state: &AppState,
    request: Request<(String, String, String, bool)>,
    method: &'static str,
    encoded: Vec<u8>,
    from: AccountState,
    to: AccountState,
) -> Result<pb::Account> {
    let principal = principal(&request)?;
    let (id, sent_etag, request_id, validate_only) = request.into_inner();
    let mut v = Violations::new();
    let id = required_id(&mut v, "id", &id);
    v.request_id(&request_id);
    v.finish()?;
    let m = crate::store::Mutation {
        actor: &principal.subject,
        method,
        request_id: &request_id,
        request: encoded,
        validate_only,
    };
    let p = principal.clone();
    state
        .db
        .mutate(m, move |tx| {
            async move {
                let account = scoped_account(tx, &p, id, Role::Admin, true, true).await?;
                check_etag(&sent_etag, account.version, "account", &id.to_string())?;
                if account.state == to {
                    return Ok(to_proto(account));
                }
                if account.state != from {
                    return Err(lifecycle::not_active(account.id, account.state));
                }
                Ok(to_proto(store::set_state(tx, id, to).await?))
            }
            .boxed()
        })
        .await
}

#[tonic::async_trait]
impl TenancyService for Tenancy {
    async fn create_account(
        &self,
        request: Request<pb::CreateAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let Some(account) = &req.account else {
            return Err(Error::invalid("account", "required").into());
        };
        let parent_id = optional_id(&mut v, "account.parent_id", &account.parent_id);
        let fields = fields_from_proto(&mut v, account);
        validate_fields(&mut v, "account.", &fields, UPDATABLE);
        if !account.parent_id.is_empty() && account.aging_period.is_some() {
            v.add(
                "account.aging_period",
                "only a provider (an account without a parent) has an aging period",
            );
        }
        v.request_id(&req.request_id);
        v.finish()?;
        let m = mutation(
            &principal,
            "CreateAccount",
            &req.request_id,
            req.validate_only,
            &req,
        );
        let p = principal.clone();
        let created = self
            .0
            .db
            .mutate(m, move |tx| {
                async move {
                    let parent = match parent_id {
                        Some(pid) => {
                            let parent =
                                scoped_account(tx, &p, pid, Role::Admin, false, true).await?;
                            lifecycle::require_active(parent.id, parent.state)?;
                            Some(parent)
                        }
                        None if p.is_platform() => None,
                        None => return Err(Error::PermissionDenied),
                    };
                    Ok(to_proto(store::insert(tx, parent.as_ref(), &fields).await?))
                }
                .boxed()
            })
            .await?;
        Ok(Response::new(created))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let principal = principal(&request)?;
        let id = parse_id("id", &request.get_ref().id)?;
        let client = self.0.db.client().await?;
        let account = scoped_account(&client, &principal, id, Role::Viewer, false, false).await?;
        Ok(Response::new(to_proto(account)))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let parent_id = required_id(&mut v, "parent_id", &req.parent_id);
        let state = parse_state(&mut v, "state", req.state);
        let limit = v.page_size(req.page_size, 100, 1000);
        v.text("kind", &req.kind, false, 64);
        v.text("external_ref", &req.external_ref, false, 256);
        v.labels("labels", &req.labels);
        v.finish()?;
        let filter_bytes = pb::ListAccountsRequest {
            page_size: 0,
            page_token: String::new(),
            ..req.clone()
        }
        .encode_to_vec();
        let after: Option<(i32, i64)> =
            self.0.page_tokens.decode(&req.page_token, &filter_bytes)?;
        let client = self.0.db.client().await?;
        let parent =
            scoped_account(&client, &principal, parent_id, Role::Viewer, false, false).await?;
        let filter = ListFilter {
            parent,
            recursive: req.recursive,
            state,
            kind: Some(req.kind).filter(|s| !s.is_empty()),
            external_ref: Some(req.external_ref).filter(|s| !s.is_empty()),
            labels: req.labels,
        };
        let mut rows = store::list(&client, &filter, after, limit + 1).await?;
        let next_page_token = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last()
                .map(|last| {
                    self.0
                        .page_tokens
                        .encode(&filter_bytes, &(last.depth, last.seq))
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListAccountsResponse {
            accounts: rows.into_iter().map(to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_account(
        &self,
        request: Request<pb::UpdateAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let Some(account) = &req.account else {
            return Err(Error::invalid("account", "required").into());
        };
        let id = required_id(&mut v, "account.id", &account.id);
        let paths: Vec<String> = req
            .update_mask
            .as_ref()
            .map(|m| m.paths.clone())
            .unwrap_or_default();
        if paths.is_empty() {
            v.add("update_mask", "name at least one field");
        }
        let incoming = fields_from_proto(&mut v, account);
        let names: Vec<&str> = paths.iter().map(String::as_str).collect();
        validate_fields(&mut v, "account.", &incoming, &names);
        v.request_id(&req.request_id);
        v.finish()?;
        let m = mutation(
            &principal,
            "UpdateAccount",
            &req.request_id,
            req.validate_only,
            &req,
        );
        let sent_etag = account.etag.clone();
        let p = principal.clone();
        let updated = self
            .0
            .db
            .mutate(m, move |tx| {
                async move {
                    // The quota is the parent's call, not the account's own.
                    let strict = paths.iter().any(|p| p == "max_numbers");
                    let current = scoped_account(tx, &p, id, Role::Admin, strict, true).await?;
                    check_etag(&sent_etag, current.version, "account", &id.to_string())?;
                    let mut fields = current.fields.clone();
                    for path in &paths {
                        match path.as_str() {
                            "display_name" => fields.display_name = incoming.display_name.clone(),
                            "kind" => fields.kind = incoming.kind.clone(),
                            "external_ref" => fields.external_ref = incoming.external_ref.clone(),
                            "labels" => fields.labels = incoming.labels.clone(),
                            "max_numbers" => fields.max_numbers = incoming.max_numbers,
                            "aging_period" if current.parent_id.is_some() => {
                                return Err(Error::invalid(
                                    "account.aging_period",
                                    "only a provider (an account without a parent) has an aging period",
                                ));
                            }
                            "aging_period" => fields.aging_period = incoming.aging_period,
                            _ => {}
                        }
                    }
                    Ok(to_proto(store::update(tx, id, &fields).await?))
                }
                .boxed()
            })
            .await?;
        Ok(Response::new(updated))
    }

    async fn suspend_account(
        &self,
        request: Request<pb::SuspendAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let encoded = request.get_ref().encode_to_vec();
        let request = request.map(|r| (r.id, r.etag, r.request_id, r.validate_only));
        let a = change_state(
            &self.0,
            request,
            "SuspendAccount",
            encoded,
            AccountState::Active,
            AccountState::Suspended,
        )
        .await?;
        Ok(Response::new(a))
    }

    async fn resume_account(
        &self,
        request: Request<pb::ResumeAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let encoded = request.get_ref().encode_to_vec();
        let request = request.map(|r| (r.id, r.etag, r.request_id, r.validate_only));
        let a = change_state(
            &self.0,
            request,
            "ResumeAccount",
            encoded,
            AccountState::Suspended,
            AccountState::Active,
        )
        .await?;
        Ok(Response::new(a))
    }

    async fn delete_account(
        &self,
        request: Request<pb::DeleteAccountRequest>,
    ) -> Result<Response<()>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = required_id(&mut v, "id", &req.id);
        v.request_id(&req.request_id);
        v.finish()?;
        let m = mutation(
            &principal,
            "DeleteAccount",
            &req.request_id,
            req.validate_only,
            &req,
        );
        let sent_etag = req.etag.clone();
        let p = principal.clone();
        self.0
            .db
            .mutate(m, move |tx| {
                async move {
                    let account = scoped_account(tx, &p, id, Role::Admin, true, true).await?;
                    check_etag(&sent_etag, account.version, "account", &id.to_string())?;
                    let mut in_the_way = Vec::new();
                    let children = store::count_children(tx, id).await?;
                    if children > 0 {
                        in_the_way.push(crate::error::Precondition {
                            kind: "ACCOUNT_HAS_CHILDREN",
                            subject: format!("accounts/{id}"),
                            description: format!("the account has {children} child accounts"),
                        });
                    }
                    let numbers = store::count_numbers_held(tx, id).await?;
                    if numbers > 0 {
                        in_the_way.push(crate::error::Precondition {
                            kind: "ACCOUNT_HOLDS_NUMBERS",
                            subject: format!("accounts/{id}"),
                            description: format!("the account holds {numbers} numbers"),
                        });
                    }
                    if !in_the_way.is_empty() {
                        return Err(Error::FailedPrecondition(in_the_way));
                    }
                    store::delete(tx, id).await
                }
                .boxed()
            })
            .await?;
        Ok(Response::new(()))
    }

    async fn get_account_path(
        &self,
        request: Request<pb::GetAccountPathRequest>,
    ) -> Result<Response<pb::GetAccountPathResponse>, Status> {
        let principal = principal(&request)?;
        let id = parse_id("id", &request.get_ref().id)?;
        let client = self.0.db.client().await?;
        let target = scoped_account(&client, &principal, id, Role::Viewer, false, false).await?;
        let mut ids = account::path_ids(&target.path);
        // A caller sees the path from its own account down, never its ancestors.
        if let Some(own) = principal.account_id.filter(|_| !principal.is_platform())
            && let Some(pos) = ids.iter().position(|i| *i == own)
        {
            ids.drain(..pos);
        }
        let accounts = store::path(&client, &ids).await?;
        Ok(Response::new(pb::GetAccountPathResponse {
            accounts: accounts.into_iter().map(to_proto).collect(),
        }))
    }
}
