//! TenancyService requests parsed into commands.

use std::time::Duration;

use numbering_client::v1 as pb;

use super::{optional_id, required_id};
use crate::domain::account::{AccountFields, AccountState, UPDATABLE, validate_fields};
use crate::domain::command::{ChangeAccountState, CreateAccount, UpdateAccount};
use crate::domain::validate::Violations;
use crate::error::{Error, Result};
use crate::flows::tenancy::{RESUME, SUSPEND};

/// Reads the settable fields of a proto account, recording what is malformed.
fn fields(v: &mut Violations, a: &pb::Account) -> AccountFields {
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

/// An account state a caller filters by; `None` for UNSPECIFIED.
pub fn state(v: &mut Violations, field: &str, value: i32) -> Option<AccountState> {
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

impl TryFrom<&pb::CreateAccountRequest> for CreateAccount {
    type Error = Error;
    fn try_from(r: &pb::CreateAccountRequest) -> Result<Self> {
        let Some(account) = &r.account else {
            return Err(Error::invalid("account", "required"));
        };
        let mut v = Violations::new();
        let parent_id = optional_id(&mut v, "account.parent_id", &account.parent_id);
        let fields = fields(&mut v, account);
        validate_fields(&mut v, "account.", &fields, UPDATABLE);
        if !account.parent_id.is_empty() && account.aging_period.is_some() {
            v.add(
                "account.aging_period",
                "only a provider (an account without a parent) has an aging period",
            );
        }
        v.finish()?;
        Ok(CreateAccount { parent_id, fields })
    }
}

impl TryFrom<&pb::UpdateAccountRequest> for UpdateAccount {
    type Error = Error;
    fn try_from(r: &pb::UpdateAccountRequest) -> Result<Self> {
        let Some(account) = &r.account else {
            return Err(Error::invalid("account", "required"));
        };
        let mut v = Violations::new();
        let id = required_id(&mut v, "account.id", &account.id);
        let paths = super::number_pool::mask_paths(&mut v, r.update_mask.as_ref());
        let incoming = fields(&mut v, account);
        let names: Vec<&str> = paths.iter().map(String::as_str).collect();
        validate_fields(&mut v, "account.", &incoming, &names);
        v.finish()?;
        Ok(UpdateAccount {
            id,
            etag: account.etag.clone(),
            paths,
            incoming,
        })
    }
}

/// Suspend and resume: an id, an etag, and the states they move between.
macro_rules! change_state {
    ($($request:ident => $states:expr),+) => {
        $(impl TryFrom<&pb::$request> for ChangeAccountState {
            type Error = Error;
            fn try_from(r: &pb::$request) -> Result<Self> {
                let mut v = Violations::new();
                let id = required_id(&mut v, "id", &r.id);
                v.finish()?;
                let (from, to) = $states;
                Ok(ChangeAccountState {
                    id,
                    etag: r.etag.clone(),
                    from,
                    to,
                })
            }
        })+
    };
}

change_state!(SuspendAccountRequest => SUSPEND, ResumeAccountRequest => RESUME);
