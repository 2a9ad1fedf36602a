//! The typed commands the use cases take: what a request asks, parsed once at the edge
//! (`TryFrom<&pb::…Request>` in [`crate::grpc`]) so that nothing past it can be malformed.

use std::fmt;

use uuid::Uuid;

use super::account::{AccountFields, AccountState};
use super::number::{Assignee, Attributes, E164, Number, NumberStatus, Reservation};
use crate::error::Result;

/// A number as a caller names it: by id, or by its live E.164.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Id(Uuid),
    E164(E164),
}

impl Key {
    pub fn id(&self) -> Option<Uuid> {
        match self {
            Key::Id(id) => Some(*id),
            Key::E164(_) => None,
        }
    }

    pub fn e164(&self) -> Option<&E164> {
        match self {
            Key::E164(e) => Some(e),
            Key::Id(_) => None,
        }
    }

    /// Whether `n` is the number this key names.
    pub fn names(&self, n: &Number) -> bool {
        match self {
            Key::Id(id) => n.id == *id,
            Key::E164(e) => n.e164 == e.as_str() && n.status != NumberStatus::Deleted,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Id(id) => write!(f, "{id}"),
            Key::E164(e) => f.write_str(e.as_str()),
        }
    }
}

/// Which numbers a multi-number move takes.
#[derive(Debug, Clone)]
pub enum Selection {
    Named(Vec<Key>),
    Quantity {
        count: i64,
        series_id: Option<Uuid>,
        prefix: Option<String>,
    },
}

impl Selection {
    /// How many numbers it asks for: the numbers named, or the quantity.
    pub fn count(&self) -> i64 {
        match self {
            Selection::Named(keys) => keys.len() as i64,
            Selection::Quantity { count, .. } => *count,
        }
    }
}

/// Allocate or transfer: from one account to another.
#[derive(Debug, Clone)]
pub struct MoveNumbers {
    pub from: Uuid,
    pub to: Uuid,
    pub selection: Selection,
    /// Allocation only: attributes bound to every number moved.
    pub attributes: Option<SetAttributes>,
}

/// Attributes a move binds to the numbers it moves: those `paths` names, from `incoming`.
#[derive(Debug, Clone)]
pub struct SetAttributes {
    pub paths: Vec<String>,
    pub incoming: Attributes,
}

/// Withdraw: from an account back to its parent.
#[derive(Debug, Clone)]
pub struct Withdraw {
    pub account: Uuid,
    pub selection: Selection,
}

/// A change to one number.
#[derive(Debug, Clone)]
pub enum Change {
    Assign {
        assignee: Assignee,
        override_reservation: bool,
        attributes: Option<SetAttributes>,
    },
    Unassign,
    Reassign {
        assignee: Assignee,
    },
    Reserve(Reservation),
    Unreserve,
    Release,
    Unbind,
}

/// A change, the number it is for, and an optional etag.
#[derive(Debug, Clone)]
pub struct OneChange {
    pub number: Key,
    pub etag: String,
    pub change: Change,
}

/// Many changes at once, answered per item, or all-or-nothing.
#[derive(Debug, Clone)]
pub struct Batch<T> {
    /// Each item as parsed: a malformed item is its own failure, not the call's.
    pub items: Vec<Result<T>>,
    pub all_or_nothing: bool,
}

/// A number to add to its owner's inventory, optionally straight into a sub-account.
#[derive(Debug, Clone)]
pub struct NewNumber {
    pub e164: E164,
    pub attributes: Attributes,
    pub holder_id: Option<Uuid>,
}

/// AddNumber and each item of BatchAddNumbers.
#[derive(Debug, Clone)]
pub struct AddNumbers {
    pub owner_id: Uuid,
    pub numbers: Batch<NewNumber>,
}

/// UpdateNumber: the attributes the mask names.
#[derive(Debug, Clone)]
pub struct UpdateNumber {
    pub id: Uuid,
    pub etag: String,
    pub paths: Vec<String>,
    pub incoming: Attributes,
}

/// Delete a number, a series or an account: by id, with an optional etag.
#[derive(Debug, Clone)]
pub struct Delete {
    pub id: Uuid,
    pub etag: String,
}

#[derive(Debug, Clone)]
pub struct CreateSeries {
    pub provider_id: Uuid,
    pub prefix: String,
    pub display_name: String,
    pub description: String,
}

/// UpdateSeries: `None` keeps the field as it is.
#[derive(Debug, Clone)]
pub struct UpdateSeries {
    pub id: Uuid,
    pub etag: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
}

/// CreateSipTrunk.
#[derive(Debug, Clone)]
pub struct CreateSipTrunk {
    pub account_id: Uuid,
    pub name: String,
}

/// UpdateSipTrunk: a new name.
#[derive(Debug, Clone)]
pub struct RenameSipTrunk {
    pub id: Uuid,
    pub etag: String,
    pub name: String,
}

/// ListSeries' filters: `None` selects every series.
#[derive(Debug, Clone, Default)]
pub struct SeriesFilter {
    /// A substring of the display name, compared ignoring case.
    pub name_contains: Option<String>,
    /// Series whose prefix starts with this E.164 prefix.
    pub prefix: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CreateAccount {
    pub parent_id: Option<Uuid>,
    pub fields: AccountFields,
}

/// UpdateAccount: the fields the mask names.
#[derive(Debug, Clone)]
pub struct UpdateAccount {
    pub id: Uuid,
    pub etag: String,
    pub paths: Vec<String>,
    pub incoming: AccountFields,
}

/// Suspend (active → suspended) or resume (suspended → active).
#[derive(Debug, Clone)]
pub struct ChangeAccountState {
    pub id: Uuid,
    pub etag: String,
    pub from: AccountState,
    pub to: AccountState,
}

/// What List and Export select, before scope is applied.
#[derive(Debug, Clone, Default)]
pub struct NumberFilter {
    pub holder_id: Option<Uuid>,
    pub include_subtree: bool,
    pub owner_id: Option<Uuid>,
    pub series_id: Option<Uuid>,
    /// Empty means every status but deleted.
    pub statuses: Vec<NumberStatus>,
    /// An E.164 prefix (`+1303`).
    pub prefix: Option<String>,
    pub tag: Option<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub assignee_id: Option<String>,
    pub reservation_tag: Option<String>,
    pub reserved_for: Option<String>,
    pub sip_trunk: Option<String>,
}

/// SearchAvailableNumbers.
#[derive(Debug, Clone)]
pub struct SearchAvailable {
    pub holder_id: Uuid,
    /// A LIKE pattern on the E.164, from the caller's pattern.
    pub like: Option<String>,
    pub limit: i64,
    /// Runs of this many consecutive numbers; 0 or 1 for single numbers.
    pub consecutive: i32,
    /// With either, RESERVED numbers with this tag / for this person or role are searched.
    pub reservation_tag: Option<String>,
    pub reserved_for: Option<String>,
    pub sip_trunk: Option<String>,
}

/// What happens to an import's good rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// Check every row, add none.
    ValidateOnly,
    /// Add the rows only if none is rejected.
    AllOrNothing,
    /// Add the good rows.
    BestEffort,
}

/// ImportNumbers: where the numbers go and how the file is read; the CSV follows as a stream.
#[derive(Debug, Clone)]
pub struct ImportNumbers {
    pub owner_id: Uuid,
    pub mode: ImportMode,
    /// The region of numbers written without a country code (empty: none).
    pub region: String,
}
