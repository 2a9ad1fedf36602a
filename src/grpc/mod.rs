//! The gRPC adapters: proto in, domain call, proto out. Each service lives in its own module.

pub mod allocation;
pub mod convert;
pub mod number_pool;
pub mod proto;
pub mod tenancy;

use std::time::SystemTime;

use tonic::Request;
use uuid::Uuid;

use crate::domain::parse_id;
use crate::domain::principal::{Principal, Role};
use crate::domain::validate::Violations;
use crate::error::{Error, Result};
use crate::paging::PageTokens;
use crate::store::{Db, GenericClient, Mutation, accounts};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub page_tokens: PageTokens,
}

/// The caller the auth interceptor put on the request.
pub fn principal<T>(request: &Request<T>) -> Result<Principal> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Error::Unauthenticated("no principal on the request".into()))
}

/// A mutation's idempotency key from its request.
pub fn mutation<'a, M: prost::Message>(
    principal: &'a Principal,
    method: &'static str,
    request_id: &'a str,
    validate_only: bool,
    request: &M,
) -> Mutation<'a> {
    Mutation {
        actor: &principal.subject,
        method,
        request_id,
        request: request.encode_to_vec(),
        validate_only,
    }
}

/// Loads an account the caller may act on with `role`. An account outside the caller's scope
/// and one that does not exist answer alike (PERMISSION_DENIED), so nothing leaks (AIP-211);
/// only a platform caller learns NOT_FOUND.
pub async fn scoped_account(
    db: &impl GenericClient,
    principal: &Principal,
    id: Uuid,
    role: Role,
    strict: bool,
    lock: bool,
) -> Result<accounts::Account> {
    match accounts::get(db, id, lock).await {
        Ok(account) => {
            principal.authorize(&account.path, role, strict)?;
            Ok(account)
        }
        Err(Error::NotFound { .. }) if !principal.is_platform() => Err(Error::PermissionDenied),
        Err(e) => Err(e),
    }
}

pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    t.into()
}

/// Loads a number (by id or E.164) whose holder the caller may act on with `role`; like
/// [`scoped_account`], a number outside the scope and a missing one answer alike.
pub async fn scoped_number(
    db: &impl GenericClient,
    principal: &Principal,
    key: &str,
    role: Role,
    lock: bool,
) -> Result<crate::store::numbers::Number> {
    match crate::store::numbers::find(db, key, lock).await {
        Ok(number) => {
            // A RETURNED number has left its holder's own view: only the owner's side sees it.
            let path = if number.status == crate::domain::number::NumberStatus::Returned {
                crate::domain::account::child_path("", number.owner_id)
            } else {
                number.holder_path.clone()
            };
            principal.authorize(&path, role, false)?;
            Ok(number)
        }
        Err(Error::NotFound { .. }) if !principal.is_platform() => Err(Error::PermissionDenied),
        Err(e) => Err(e),
    }
}

/// The actor written on events: the caller and its request id.
pub fn actor(principal: &Principal, request_id: &str) -> crate::domain::number::Actor {
    crate::domain::number::Actor {
        subject: principal.subject.clone(),
        account_id: principal.account_id,
        request_id: request_id.to_string(),
    }
}

/// An optional UUID field: empty is `None`; a malformed one is recorded in `v`.
pub fn optional_id(v: &mut Violations, field: &str, value: &str) -> Option<Uuid> {
    if value.is_empty() {
        return None;
    }
    v.take(parse_id(field, value)).ok().flatten()
}

/// A required UUID field; when missing or malformed it is recorded in `v` (and the nil UUID
/// stands in until `v.finish()` refuses the request).
pub fn required_id(v: &mut Violations, field: &str, value: &str) -> Uuid {
    v.take(parse_id(field, value))
        .ok()
        .flatten()
        .unwrap_or_default()
}
