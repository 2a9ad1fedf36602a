//! NumberPoolService: numbers, series, import, export, search and inventory.

use futures::FutureExt;
use numbering_client::v1 as pb;
use prost::Message;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use super::convert::{
    number_to_proto, number_type_from_proto, source_from_proto, status_from_proto,
};
use super::proto::v1::number_pool_service_server::NumberPoolService;
use super::{
    AppState, actor, mutation, optional_id, principal, required_id, scoped_account, scoped_number,
};
use crate::domain::account::child_path;
use crate::domain::lifecycle;
use crate::domain::number::{
    Actor, Attributes, E164, NumberStatus, NumberType, Operation, UPDATABLE, parse_prefix,
    search_pattern,
};
use crate::domain::principal::{Principal, Role};
use crate::domain::validate::Violations;
use crate::domain::{check_etag, etag, parse_id};
use crate::error::{Error, Result};
use crate::store::accounts::Account;
use crate::store::numbers::{self, NewNumber, NumberQuery, Scope};
use crate::store::{GenericClient, inventory, series};

pub mod import;

pub struct NumberPool(pub AppState);

/// Most numbers in one BatchAddNumbers call.
pub const MAX_BATCH: usize = 1000;

pub fn attributes_from_proto(v: &mut Violations, prefix: &str, n: &pb::Number) -> Attributes {
    let mut a = Attributes {
        number_type: number_type_from_proto(v, &format!("{prefix}number_type"), n.number_type),
        source: source_from_proto(v, &format!("{prefix}source"), n.source),
        carrier: n.carrier.trim().to_string(),
        sip_trunk: n.sip_trunk.trim().to_string(),
        billing_reference: n.billing_reference.trim().to_string(),
        service_info: n.service_info.clone(),
        tags: n.tags.clone(),
        labels: n.labels.clone(),
    };
    a.normalise();
    a.validate(v, prefix);
    a
}

/// A provider the caller administers (numbers and series belong to providers).
pub async fn admin_provider(db: &impl GenericClient, p: &Principal, id: Uuid) -> Result<Account> {
    let owner = scoped_account(db, p, id, Role::Admin, false, false).await?;
    if owner.parent_id.is_some() {
        return Err(Error::precondition(
            "NOT_A_PROVIDER",
            format!("accounts/{id}"),
            "numbers and series belong to providers (accounts without a parent)",
        ));
    }
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

/// An account of the owner's tree that may receive numbers.
pub async fn receiving_account(
    db: &impl GenericClient,
    p: &Principal,
    owner: &Account,
    id: Uuid,
) -> Result<Account> {
    let holder = scoped_account(db, p, id, Role::Admin, false, false).await?;
    if holder.provider_id != owner.id {
        return Err(Error::precondition(
            "OUTSIDE_OWNER_TREE",
            format!("accounts/{id}"),
            "the account is not in the owner's tree",
        ));
    }
    if holder.state != crate::domain::account::AccountState::Active {
        return Err(lifecycle::not_active(holder.id, holder.state));
    }
    Ok(holder)
}

/// One AddNumber, checked and parsed.
struct ValidAdd {
    e164: String,
    attributes: Attributes,
    holder_id: Option<Uuid>,
}

fn validate_add(
    v: &mut Violations,
    prefix: &str,
    req: &pb::AddNumberRequest,
    region: &str,
) -> Option<ValidAdd> {
    let Some(number) = &req.number else {
        v.add(format!("{prefix}number"), "required");
        return None;
    };
    let region = if req.region.is_empty() {
        region
    } else {
        &req.region
    };
    let parsed = v
        .take(
            E164::parse("number.e164", &number.e164, region)
                .map_err(|e| e.with_field_prefix(prefix)),
        )
        .ok()
        .flatten();
    let mut attributes = attributes_from_proto(v, &format!("{prefix}number."), number);
    let holder_id = optional_id(v, &format!("{prefix}holder_id"), &req.holder_id);
    let parsed = parsed?;
    if attributes.number_type == NumberType::Unspecified {
        attributes.number_type = parsed.number_type;
    }
    Some(ValidAdd {
        e164: parsed.e164.as_str().to_string(),
        attributes,
        holder_id,
    })
}

async fn add_one(
    tx: &impl GenericClient,
    p: &Principal,
    owner: &Account,
    add: &ValidAdd,
    actor: &Actor,
) -> Result<numbers::Number> {
    let holder = match add.holder_id {
        Some(h) if h != owner.id => {
            let holder = receiving_account(tx, p, owner, h).await?;
            // Every account the number enters below the owner must admit it (state, quota).
            let below: Vec<Uuid> = crate::domain::account::path_ids(&holder.path)
                .into_iter()
                .filter(|id| *id != owner.id)
                .collect();
            let entered = crate::store::accounts::path(tx, &below).await?;
            crate::grpc::allocation::admit(tx, &entered, 1).await?;
            holder
        }
        _ => owner.clone(),
    };
    numbers::insert(
        tx,
        NewNumber {
            owner_id: owner.id,
            e164: &add.e164,
            holder_id: holder.id,
            holder_path: &holder.path,
            attributes: &add.attributes,
        },
        actor,
    )
    .await
}

/// Resolves the scope of a number filter against what the caller may see.
async fn filter_scope(
    db: &impl GenericClient,
    p: &Principal,
    holder_id: Option<Uuid>,
    include_subtree: bool,
    owner_id: Option<Uuid>,
) -> Result<Scope> {
    let root = match (holder_id, p.account_id) {
        (Some(h), _) => scoped_account(db, p, h, Role::Viewer, false, false).await?,
        (None, _) if p.is_platform() => {
            return Ok(owner_id.map_or(Scope::All, Scope::Provider));
        }
        (None, Some(own)) => scoped_account(db, p, own, Role::Viewer, false, false).await?,
        (None, None) => return Err(Error::PermissionDenied),
    };
    Ok(
        match (holder_id.is_some() && !include_subtree, root.depth) {
            (true, _) => Scope::Holder(root.id),
            (false, 0) => Scope::Provider(root.id),
            (false, _) => Scope::Subtree(root.path),
        },
    )
}

/// A NumberFilter made into a query the caller may run.
pub async fn number_query(
    db: &impl GenericClient,
    p: &Principal,
    f: &pb::NumberFilter,
) -> Result<NumberQuery> {
    let mut v = Violations::new();
    let holder_id = optional_id(&mut v, "filter.holder_id", &f.holder_id);
    let owner_id = optional_id(&mut v, "filter.owner_id", &f.owner_id);
    let series_id = optional_id(&mut v, "filter.series_id", &f.series_id);
    let statuses: Vec<NumberStatus> = f
        .statuses
        .iter()
        .filter_map(|s| status_from_proto(&mut v, "filter.statuses", *s))
        .collect();
    let prefix = if f.prefix.is_empty() {
        None
    } else {
        v.take(parse_prefix("filter.prefix", &f.prefix))
            .ok()
            .flatten()
    };
    v.text("filter.tag", &f.tag, false, 64);
    v.labels("filter.labels", &f.labels);
    v.text("filter.assignee_id", &f.assignee_id, false, 256);
    v.finish()?;
    let scope = filter_scope(db, p, holder_id, f.include_subtree, owner_id).await?;
    // A provider's scope already is its owner filter.
    let owner_id = owner_id.filter(|o| !matches!(scope, Scope::Provider(p) if p == *o));
    let mut q = NumberQuery::new(scope);
    // Below the provider, RETURNED numbers have left the caller's view.
    q.hide_returned = match p.account_id.filter(|_| !p.is_platform()) {
        Some(own) => crate::store::accounts::get(db, own, false)
            .await?
            .parent_id
            .is_some(),
        None => false,
    };
    q.owner_id = owner_id;
    q.statuses = statuses;
    q.series_id = series_id;
    q.e164_like = prefix.map(|p| format!("{p}%"));
    q.tag = Some(f.tag.clone()).filter(|t| !t.is_empty());
    q.labels = f.labels.clone();
    q.assignee_id = Some(f.assignee_id.clone()).filter(|a| !a.is_empty());
    Ok(q)
}

fn series_to_proto(s: series::Series) -> pb::Series {
    pb::Series {
        id: s.id.to_string(),
        provider_id: s.provider_id.to_string(),
        prefix: s.prefix,
        display_name: s.display_name,
        description: s.description,
        etag: etag(s.version),
    }
}

fn counts_to_proto(c: &inventory::Counts) -> pb::InventoryCounts {
    pb::InventoryCounts {
        total: c.total(),
        available: c.available,
        reserved: c.reserved,
        assigned: c.assigned,
        allocated_to_children: c.allocated_to_children,
        returned: c.returned,
        aging: c.aging,
    }
}

/// A series the caller may act on with `role` (it administers or views the provider).
async fn scoped_series(
    db: &impl GenericClient,
    p: &Principal,
    id: Uuid,
    role: Role,
    lock: bool,
) -> Result<series::Series> {
    match series::get(db, id, lock).await {
        Ok(s) => {
            p.authorize(&child_path("", s.provider_id), role, false)?;
            Ok(s)
        }
        Err(Error::NotFound { .. }) if !p.is_platform() => Err(Error::PermissionDenied),
        Err(e) => Err(e),
    }
}

#[tonic::async_trait]
impl NumberPoolService for NumberPool {
    async fn add_number(
        &self,
        request: Request<pb::AddNumberRequest>,
    ) -> Result<Response<pb::Number>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let owner_id = required_id(&mut v, "owner_id", &req.owner_id);
        let add = validate_add(&mut v, "", &req, "");
        v.request_id(&req.request_id);
        v.finish()?;
        let Some(add) = add else {
            return Err(Error::invalid("number", "required").into());
        };
        let m = mutation(
            &principal,
            "AddNumber",
            &req.request_id,
            req.validate_only,
            &req,
        );
        let actor = actor(&principal, &req.request_id);
        let p = principal.clone();
        let number = self
            .0
            .db
            .mutate(m, move |tx| {
                async move {
                    let owner = receiving_provider(tx, &p, owner_id).await?;
                    Ok(number_to_proto(
                        add_one(tx, &p, &owner, &add, &actor).await?,
                    ))
                }
                .boxed()
            })
            .await?;
        Ok(Response::new(number))
    }

    async fn batch_add_numbers(
        &self,
        request: Request<pb::BatchAddNumbersRequest>,
    ) -> Result<Response<pb::BatchAddNumbersResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let owner_id = required_id(&mut v, "owner_id", &req.owner_id);
        if req.requests.is_empty() || req.requests.len() > MAX_BATCH {
            v.add("requests", format!("1 to {MAX_BATCH} numbers"));
        }
        v.request_id(&req.request_id);
        v.finish()?;
        // Each number is checked on its own: a bad one is its own result, not the call's.
        let items: Vec<Result<ValidAdd>> = req
            .requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let prefix = format!("requests[{i}].");
                let mut v = Violations::new();
                if !r.owner_id.is_empty() && r.owner_id != req.owner_id {
                    v.add(
                        format!("{prefix}owner_id"),
                        "must be empty or the batch's owner_id",
                    );
                }
                let add = validate_add(&mut v, &prefix, r, "");
                v.finish()?;
                add.ok_or_else(|| Error::invalid(format!("{prefix}number"), "required"))
            })
            .collect();
        let m = mutation(
            &principal,
            "BatchAddNumbers",
            &req.request_id,
            req.validate_only,
            &req,
        );
        let actor = actor(&principal, &req.request_id);
        let all_or_nothing = req.all_or_nothing;
        let p = principal.clone();
        let answer = self
            .0
            .db
            .mutate(m, move |tx| {
                async move {
                    let owner = receiving_provider(tx, &p, owner_id).await?;
                    let mut results = Vec::with_capacity(items.len());
                    for (i, item) in items.into_iter().enumerate() {
                        // A savepoint per number: one failure undoes only itself.
                        tx.batch_execute("SAVEPOINT batch_item").await?;
                        let outcome = match item {
                            Ok(add) => add_one(tx, &p, &owner, &add, &actor).await,
                            Err(e) => Err(e),
                        };
                        match outcome {
                            Ok(n) => {
                                tx.batch_execute("RELEASE SAVEPOINT batch_item").await?;
                                results.push(pb::AddNumberResult {
                                    number: Some(number_to_proto(n)),
                                    error: None,
                                });
                            }
                            Err(e) if all_or_nothing => {
                                return Err(match e {
                                    Error::InvalidArgument(_) => e,
                                    other => Error::precondition(
                                        "BATCH_ITEM_FAILED",
                                        format!("requests[{i}]"),
                                        format!("nothing was added: {other}"),
                                    ),
                                });
                            }
                            Err(e) => {
                                tx.batch_execute("ROLLBACK TO SAVEPOINT batch_item").await?;
                                results.push(pb::AddNumberResult {
                                    number: None,
                                    error: Some(e.into_rpc_status()),
                                });
                            }
                        }
                    }
                    Ok(pb::BatchAddNumbersResponse { results })
                }
                .boxed()
            })
            .await?;
        Ok(Response::new(answer))
    }

    async fn get_number(
        &self,
        request: Request<pb::GetNumberRequest>,
    ) -> Result<Response<pb::Number>, Status> {
        let principal = principal(&request)?;
        let key = match &request.get_ref().key {
            Some(pb::get_number_request::Key::Id(id)) => parse_id("id", id)?.to_string(),
            Some(pb::get_number_request::Key::E164(e)) => {
                E164::parse("e164", e, "")?.e164.as_str().to_string()
            }
            None => return Err(Error::invalid("key", "set id or e164").into()),
        };
        let client = self.0.db.client().await?;
        let number = scoped_number(&client, &principal, &key, Role::Viewer, false).await?;
        Ok(Response::new(number_to_proto(number)))
    }

    async fn update_number(
        &self,
        request: Request<pb::UpdateNumberRequest>,
    ) -> Result<Response<pb::Number>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let Some(number) = &req.number else {
            return Err(Error::invalid("number", "required").into());
        };
        let id = required_id(&mut v, "number.id", &number.id);
        let paths: Vec<String> = req
            .update_mask
            .as_ref()
            .map(|m| m.paths.clone())
            .unwrap_or_default();
        if paths.is_empty() {
            v.add("update_mask", "name at least one field");
        }
        for path in &paths {
            if !UPDATABLE.contains(&path.as_str()) {
                v.add(
                    format!("update_mask.{path}"),
                    "not a field that can be updated",
                );
            }
        }
        let incoming = attributes_from_proto(&mut v, "number.", number);
        v.request_id(&req.request_id);
        v.finish()?;
        let m = mutation(
            &principal,
            "UpdateNumber",
            &req.request_id,
            req.validate_only,
            &req,
        );
        let actor = actor(&principal, &req.request_id);
        let sent_etag = number.etag.clone();
        let p = principal.clone();
        let updated = self
            .0
            .db
            .mutate(m, move |tx| {
                async move {
                    let current = scoped_number(tx, &p, &id.to_string(), Role::Admin, true).await?;
                    check_etag(&sent_etag, current.version, "number", &current.e164)?;
                    if current.status == NumberStatus::Deleted {
                        return Err(Error::precondition(
                            "NUMBER_DELETED",
                            format!("numbers/{}", current.e164),
                            "the number is deleted",
                        ));
                    }
                    let mut a = current.attributes.clone();
                    for path in &paths {
                        match path.as_str() {
                            "number_type" => a.number_type = incoming.number_type,
                            "source" => a.source = incoming.source,
                            "carrier" => a.carrier = incoming.carrier.clone(),
                            "sip_trunk" => a.sip_trunk = incoming.sip_trunk.clone(),
                            "billing_reference" => {
                                a.billing_reference = incoming.billing_reference.clone()
                            }
                            "service_info" => a.service_info = incoming.service_info.clone(),
                            "tags" => a.tags = incoming.tags.clone(),
                            "labels" => a.labels = incoming.labels.clone(),
                            _ => {}
                        }
                    }
                    let updated = numbers::update_attributes(tx, id, &a).await?;
                    numbers::record(tx, Some(&current), &updated, Operation::Update, &actor)
                        .await?;
                    Ok(number_to_proto(updated))
                }
                .boxed()
            })
            .await?;
        Ok(Response::new(updated))
    }

    async fn delete_number(
        &self,
        request: Request<pb::DeleteNumberRequest>,
    ) -> Result<Response<()>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = required_id(&mut v, "id", &req.id);
        v.request_id(&req.request_id);
        v.finish()?;
        let m = mutation(
            &principal,
            "DeleteNumber",
            &req.request_id,
            req.validate_only,
            &req,
        );
        let actor = actor(&principal, &req.request_id);
        let sent_etag = req.etag.clone();
        let p = principal.clone();
        self.0
            .db
            .mutate(m, move |tx| {
                async move {
                    let current = scoped_number(tx, &p, &id.to_string(), Role::Viewer, true).await?;
                    // Only the owner deletes: an admin of the provider itself.
                    p.authorize(&child_path("", current.owner_id), Role::Admin, false)?;
                    check_etag(&sent_etag, current.version, "number", &current.e164)?;
                    let subject = format!("numbers/{}", current.e164);
                    if current.holder_id != current.owner_id {
                        return Err(Error::precondition(
                            "NUMBER_HELD_BY_SUB_ACCOUNT",
                            subject,
                            "the number is held by a sub-account: withdraw it first",
                        ));
                    }
                    match current.status {
                        NumberStatus::Available | NumberStatus::Aging => {}
                        NumberStatus::Deleted => {
                            return Err(Error::precondition("NUMBER_DELETED", subject, "the number is already deleted"));
                        }
                        other => {
                            return Err(Error::precondition(
                                "NUMBER_IN_USE",
                                subject,
                                format!("the number is {}: only available or aging numbers can be deleted", other.as_str()),
                            ));
                        }
                    }
                    let mut after = current.clone();
                    after.status = NumberStatus::Deleted;
                    after.assignee = None;
                    after.reservation = None;
                    after.aging_end_time = None;
                    numbers::save_state(tx, &current, &after, Operation::Delete, &actor).await?;
                    Ok(())
                }
                .boxed()
            })
            .await?;
        Ok(Response::new(()))
    }

    async fn list_numbers(
        &self,
        request: Request<pb::ListNumbersRequest>,
    ) -> Result<Response<pb::ListNumbersResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let limit = v.page_size(req.page_size, 100, 1000);
        v.finish()?;
        let filter = req.filter.clone().unwrap_or_default();
        let filter_bytes = filter.encode_to_vec();
        let after: Option<(String, Uuid)> =
            self.0.page_tokens.decode(&req.page_token, &filter_bytes)?;
        let client = self.0.db.client().await?;
        let q = number_query(&client, &principal, &filter).await?;
        let mut rows = numbers::list(&client, &q, after.as_ref(), limit + 1).await?;
        let next_page_token = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last()
                .map(|n| {
                    self.0
                        .page_tokens
                        .encode(&filter_bytes, &(n.e164.clone(), n.id))
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListNumbersResponse {
            numbers: rows.into_iter().map(number_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn search_available_numbers(
        &self,
        request: Request<pb::SearchAvailableNumbersRequest>,
    ) -> Result<Response<pb::SearchAvailableNumbersResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let holder_id = required_id(&mut v, "holder_id", &req.holder_id);
        let like = v
            .take(search_pattern("pattern", &req.pattern))
            .ok()
            .flatten();
        let limit = v.page_size(req.page_size, 100, 1000);
        if !(0..=1000).contains(&req.consecutive) {
            v.add("consecutive", "0 to 1000");
        }
        v.finish()?;
        let client = self.0.db.client().await?;
        let holder =
            scoped_account(&client, &principal, holder_id, Role::Viewer, false, false).await?;
        let mut q = NumberQuery::new(Scope::Holder(holder.id));
        q.statuses = vec![NumberStatus::Available];
        q.e164_like = like;
        if req.consecutive <= 1 {
            let found = numbers::list(&client, &q, None, limit).await?;
            return Ok(Response::new(pb::SearchAvailableNumbersResponse {
                numbers: found.into_iter().map(number_to_proto).collect(),
                ranges: Vec::new(),
            }));
        }
        let run = i64::from(req.consecutive);
        let runs = numbers::consecutive_runs(&client, &q, run, limit).await?;
        let mut found = Vec::new();
        for (first, last) in &runs {
            found.extend(numbers::available_range(&client, holder.id, first, last).await?);
        }
        Ok(Response::new(pb::SearchAvailableNumbersResponse {
            numbers: found.into_iter().map(number_to_proto).collect(),
            ranges: runs
                .into_iter()
                .map(|(first_e164, last_e164)| pb::NumberRange {
                    first_e164,
                    last_e164,
                })
                .collect(),
        }))
    }

    type ImportNumbersStream =
        futures::stream::BoxStream<'static, Result<pb::ImportNumbersResponse, Status>>;

    async fn import_numbers(
        &self,
        request: Request<Streaming<pb::ImportNumbersRequest>>,
    ) -> Result<Response<Self::ImportNumbersStream>, Status> {
        let principal = principal(&request)?;
        import::start(self.0.clone(), principal, request.into_inner()).await
    }

    async fn get_import_template(
        &self,
        _request: Request<pb::GetImportTemplateRequest>,
    ) -> Result<Response<pb::GetImportTemplateResponse>, Status> {
        Ok(Response::new(pb::GetImportTemplateResponse {
            csv: import::template(),
        }))
    }

    type ExportNumbersStream =
        futures::stream::BoxStream<'static, Result<pb::ExportNumbersResponse, Status>>;

    async fn export_numbers(
        &self,
        request: Request<pb::ExportNumbersRequest>,
    ) -> Result<Response<Self::ExportNumbersStream>, Status> {
        let principal = principal(&request)?;
        let filter = request.into_inner().filter.unwrap_or_default();
        import::export(self.0.clone(), principal, filter).await
    }

    async fn get_inventory(
        &self,
        request: Request<pb::GetInventoryRequest>,
    ) -> Result<Response<pb::Inventory>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let id = parse_id("account_id", &req.account_id)?;
        let client = self.0.db.client().await?;
        let account = scoped_account(&client, &principal, id, Role::Viewer, false, false).await?;
        let by_series = if req.include_subtree {
            inventory::subtree(&client, account.provider_id, &account.path).await?
        } else {
            inventory::account(&client, account.provider_id, account.id, &account.path).await?
        };
        let mut totals = inventory::Counts::default();
        for c in by_series.values() {
            totals.available += c.available;
            totals.reserved += c.reserved;
            totals.assigned += c.assigned;
            totals.returned += c.returned;
            totals.aging += c.aging;
            totals.allocated_to_children += c.allocated_to_children;
        }
        Ok(Response::new(pb::Inventory {
            account_id: account.id.to_string(),
            include_subtree: req.include_subtree,
            totals: Some(counts_to_proto(&totals)),
            series: by_series
                .iter()
                .map(|(s, c)| pb::SeriesInventory {
                    series_id: s.map(|s| s.to_string()).unwrap_or_default(),
                    counts: Some(counts_to_proto(c)),
                })
                .collect(),
        }))
    }

    async fn create_series(
        &self,
        request: Request<pb::CreateSeriesRequest>,
    ) -> Result<Response<pb::Series>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let provider_id = required_id(&mut v, "provider_id", &req.provider_id);
        let s = req.series.clone().unwrap_or_default();
        let prefix = v
            .take(parse_prefix("series.prefix", &s.prefix))
            .ok()
            .flatten();
        v.text("series.display_name", &s.display_name, true, 256);
        v.free_text("series.description", &s.description, 1024);
        v.request_id(&req.request_id);
        v.finish()?;
        let prefix = prefix.unwrap_or_default();
        let m = mutation(
            &principal,
            "CreateSeries",
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
                    let provider = admin_provider(tx, &p, provider_id).await?;
                    let created = series::insert(
                        tx,
                        provider.id,
                        &prefix,
                        s.display_name.trim(),
                        &s.description,
                    )
                    .await?;
                    Ok(series_to_proto(created))
                }
                .boxed()
            })
            .await?;
        Ok(Response::new(created))
    }

    async fn get_series(
        &self,
        request: Request<pb::GetSeriesRequest>,
    ) -> Result<Response<pb::Series>, Status> {
        let principal = principal(&request)?;
        let id = parse_id("id", &request.get_ref().id)?;
        let client = self.0.db.client().await?;
        let s = scoped_series(&client, &principal, id, Role::Viewer, false).await?;
        Ok(Response::new(series_to_proto(s)))
    }

    async fn list_series(
        &self,
        request: Request<pb::ListSeriesRequest>,
    ) -> Result<Response<pb::ListSeriesResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let provider_id = required_id(&mut v, "provider_id", &req.provider_id);
        let limit = v.page_size(req.page_size, 100, 1000);
        v.finish()?;
        let filter_bytes = provider_id.as_bytes().to_vec();
        let after: Option<String> = self.0.page_tokens.decode(&req.page_token, &filter_bytes)?;
        let client = self.0.db.client().await?;
        scoped_account(&client, &principal, provider_id, Role::Viewer, false, false).await?;
        let mut rows = series::list(&client, provider_id, after.as_deref(), limit + 1).await?;
        let next_page_token = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last()
                .map(|s| self.0.page_tokens.encode(&filter_bytes, &s.prefix))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListSeriesResponse {
            series: rows.into_iter().map(series_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_series(
        &self,
        request: Request<pb::UpdateSeriesRequest>,
    ) -> Result<Response<pb::Series>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let s = req.series.clone().unwrap_or_default();
        let id = required_id(&mut v, "series.id", &s.id);
        let paths: Vec<String> = req
            .update_mask
            .as_ref()
            .map(|m| m.paths.clone())
            .unwrap_or_default();
        if paths.is_empty() {
            v.add("update_mask", "name at least one field");
        }
        for path in &paths {
            match path.as_str() {
                "display_name" => v.text("series.display_name", &s.display_name, true, 256),
                "description" => v.free_text("series.description", &s.description, 1024),
                other => v.add(
                    format!("update_mask.{other}"),
                    "not a field that can be updated",
                ),
            }
        }
        v.request_id(&req.request_id);
        v.finish()?;
        let m = mutation(
            &principal,
            "UpdateSeries",
            &req.request_id,
            req.validate_only,
            &req,
        );
        let p = principal.clone();
        let updated = self
            .0
            .db
            .mutate(m, move |tx| {
                async move {
                    let current = scoped_series(tx, &p, id, Role::Admin, true).await?;
                    check_etag(&s.etag, current.version, "series", &id.to_string())?;
                    let name = if paths.iter().any(|p| p == "display_name") {
                        s.display_name.trim().to_string()
                    } else {
                        current.display_name
                    };
                    let description = if paths.iter().any(|p| p == "description") {
                        s.description
                    } else {
                        current.description
                    };
                    Ok(series_to_proto(
                        series::update(tx, id, &name, &description).await?,
                    ))
                }
                .boxed()
            })
            .await?;
        Ok(Response::new(updated))
    }

    async fn delete_series(
        &self,
        request: Request<pb::DeleteSeriesRequest>,
    ) -> Result<Response<()>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = required_id(&mut v, "id", &req.id);
        v.request_id(&req.request_id);
        v.finish()?;
        let m = mutation(
            &principal,
            "DeleteSeries",
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
                    let current = scoped_series(tx, &p, id, Role::Admin, true).await?;
                    check_etag(&sent_etag, current.version, "series", &id.to_string())?;
                    series::delete(tx, &current).await
                }
                .boxed()
            })
            .await?;
        Ok(Response::new(()))
    }
}
