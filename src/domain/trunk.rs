//! SIP trunks: named routes that an account's numbers point at (`Number.sip_trunk` holds the
//! name). A name resolves along the holder's path: the holder's own trunks and its ancestors'.

use std::time::SystemTime;

use uuid::Uuid;

use super::validate::Violations;
use crate::error::{Error, Precondition, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipTrunk {
    pub id: Uuid,
    pub provider_id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub version: i64,
    pub create_time: SystemTime,
}

/// Most numbers a refusal to delete a trunk in use names.
pub const NAMED_IN_USE: i64 = 10;

/// A trunk name: 1 to 256 characters, trimmed.
pub fn validate_name(v: &mut Violations, field: &str, name: &str) {
    v.text(field, name, true, 256);
}

/// A number names a trunk that neither its holder nor an ancestor of it has.
pub fn unknown(name: &str, holder: Uuid) -> Error {
    Error::precondition(
        "SIP_TRUNK_NOT_FOUND",
        format!("sipTrunks/{name}"),
        format!("neither account {holder} nor an account above it has a SIP trunk of this name"),
    )
}

/// A trunk is deleted only once no number names it: the first few in the way are named, with
/// how many there are in all.
pub fn require_unused(trunk: &SipTrunk, total: i64, first: &[String]) -> Result<()> {
    if total == 0 {
        return Ok(());
    }
    let mut in_use = vec![Precondition {
        kind: "SIP_TRUNK_IN_USE",
        subject: format!("sipTrunks/{}", trunk.id),
        description: format!(
            "{total} numbers are routed by the trunk {}: point them elsewhere first",
            trunk.name
        ),
    }];
    in_use.extend(first.iter().map(|e164| Precondition {
        kind: "SIP_TRUNK_IN_USE",
        subject: format!("numbers/{e164}"),
        description: format!("the number is routed by the trunk {}", trunk.name),
    }));
    Err(Error::FailedPrecondition(in_use))
}
