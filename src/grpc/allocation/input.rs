//! Reading AllocationService requests: every field checked, every violation named by its field
//! path (`requests[2].assignee.id` in a batch), and the request turned into what the flows take.

use std::fmt;
use std::time::SystemTime;

use numbering_client::v1 as pb;
use uuid::Uuid;

use super::super::{optional_id, required_id};
use crate::domain::lifecycle::{validate_assignee, validate_reservation};
use crate::domain::number::Number;
use crate::domain::number::{Assignee, AssigneeKind, E164, Reservation, parse_prefix};
use crate::domain::validate::Violations;
use crate::error::Result;

/// Most numbers one list, or one batch, may name.
pub const MAX_NUMBERS: usize = 1000;
/// Most numbers one quantity may ask for.
pub const MAX_QUANTITY: i64 = 10_000;

/// A number as a caller names it: by id, or by its live E.164.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Id(Uuid),
    E164(String),
}

impl Key {
    pub fn id(&self) -> Option<Uuid> {
        match self {
            Key::Id(id) => Some(*id),
            Key::E164(_) => None,
        }
    }

    pub fn e164(&self) -> Option<String> {
        match self {
            Key::E164(e) => Some(e.clone()),
            Key::Id(_) => None,
        }
    }

    /// Whether `n` is the number this key names.
    pub fn names(&self, n: &Number) -> bool {
        match self {
            Key::Id(id) => n.id == *id,
            Key::E164(e) => {
                n.e164 == *e && n.status != crate::domain::number::NumberStatus::Deleted
            }
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Id(id) => write!(f, "{id}"),
            Key::E164(e) => f.write_str(e),
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

/// A change to one number.
#[derive(Debug, Clone)]
pub enum Change {
    Assign {
        assignee: Assignee,
        override_reservation: bool,
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

/// A change, the number it is for (as named: id or E.164), and an optional etag.
#[derive(Debug, Clone)]
pub struct OneChange {
    pub number: String,
    pub etag: String,
    pub change: Change,
}

pub fn parse_key(v: &mut Violations, field: &str, raw: &str) -> Option<Key> {
    let raw = raw.trim();
    if raw.is_empty() {
        v.add(field, "required: a number id (UUID) or an E.164 number");
        return None;
    }
    if let Ok(id) = Uuid::parse_str(raw) {
        return Some(Key::Id(id));
    }
    match E164::from_canonical(raw) {
        Some(e) => Some(Key::E164(e.as_str().to_string())),
        None => {
            v.add(
                field,
                "a number id (UUID) or an E.164 number (+ and up to 15 digits)",
            );
            None
        }
    }
}

/// A number key in the form the store looks up.
pub fn number_key(v: &mut Violations, field: &str, raw: &str) -> String {
    parse_key(v, field, raw)
        .map(|k| k.to_string())
        .unwrap_or_default()
}

fn selection(v: &mut Violations, s: Option<&pb::NumberSelection>) -> Selection {
    use pb::number_selection::Selection as S;
    match s.and_then(|s| s.selection.as_ref()) {
        None => {
            v.add("selection", "required: a list of numbers or a quantity");
            Selection::Named(Vec::new())
        }
        Some(S::Numbers(list)) => {
            let field = "selection.numbers.numbers";
            if list.numbers.is_empty() {
                v.add(field, "name at least one number");
            }
            if list.numbers.len() > MAX_NUMBERS {
                v.add(field, format!("at most {MAX_NUMBERS} numbers"));
                return Selection::Named(Vec::new());
            }
            let mut keys: Vec<Key> = Vec::with_capacity(list.numbers.len());
            for (i, raw) in list.numbers.iter().enumerate() {
                let field = format!("{field}[{i}]");
                if let Some(key) = parse_key(v, &field, raw) {
                    if keys.contains(&key) {
                        v.add(field, "named twice");
                    } else {
                        keys.push(key);
                    }
                }
            }
            Selection::Named(keys)
        }
        Some(S::Quantity(q)) => {
            if !(1..=MAX_QUANTITY).contains(&q.count) {
                v.add(
                    "selection.quantity.count",
                    format!("between 1 and {MAX_QUANTITY}"),
                );
            }
            let prefix = (!q.prefix.trim().is_empty())
                .then(|| v.take(parse_prefix("selection.quantity.prefix", &q.prefix)))
                .and_then(|r| r.ok().flatten());
            Selection::Quantity {
                count: q.count,
                series_id: optional_id(v, "selection.quantity.series_id", &q.series_id),
                prefix,
            }
        }
    }
}

/// A move between two accounts (allocate, transfer): their ids and the selection.
pub fn between(
    from: &str,
    to: &str,
    s: Option<&pb::NumberSelection>,
    request_id: &str,
) -> Result<((Uuid, Uuid), Selection)> {
    let mut v = Violations::new();
    let from_id = required_id(&mut v, "from_account_id", from);
    let to_id = required_id(&mut v, "to_account_id", to);
    if !from_id.is_nil() && from_id == to_id {
        v.add("to_account_id", "must differ from from_account_id");
    }
    let selection = selection(&mut v, s);
    v.request_id(request_id);
    v.finish()?;
    Ok(((from_id, to_id), selection))
}

pub fn withdrawal(r: &pb::WithdrawNumbersRequest) -> Result<(Uuid, Selection)> {
    let mut v = Violations::new();
    let account = required_id(&mut v, "account_id", &r.account_id);
    let selection = selection(&mut v, r.selection.as_ref());
    v.request_id(&r.request_id);
    v.finish()?;
    Ok((account, selection))
}

/// A timestamp field; `None` when absent (recorded when `required`) or out of range.
pub fn time(
    v: &mut Violations,
    field: &str,
    t: Option<&prost_types::Timestamp>,
    required: bool,
) -> Option<SystemTime> {
    match t {
        None => {
            if required {
                v.add(field, "required");
            }
            None
        }
        Some(t) => match SystemTime::try_from(*t) {
            Ok(t) => Some(t),
            Err(_) => {
                v.add(field, "not a valid time");
                None
            }
        },
    }
}

fn assignee(v: &mut Violations, field: &str, a: Option<&pb::Assignee>) -> Assignee {
    let Some(a) = a else {
        v.add(field, "required");
        return Assignee {
            kind: String::new(),
            id: String::new(),
            display_name: String::new(),
            account_id: None,
        };
    };
    let kind = match pb::AssigneeKind::try_from(a.kind) {
        Ok(pb::AssigneeKind::User) => Some(AssigneeKind::User),
        Ok(pb::AssigneeKind::Agent) => Some(AssigneeKind::Agent),
        Ok(pb::AssigneeKind::Device) => Some(AssigneeKind::Device),
        Ok(pb::AssigneeKind::Service) => Some(AssigneeKind::Service),
        Ok(pb::AssigneeKind::Trunk) => Some(AssigneeKind::Trunk),
        Ok(pb::AssigneeKind::Other) => Some(AssigneeKind::Other),
        Ok(pb::AssigneeKind::Unspecified) | Err(_) => None,
    };
    let assignee = Assignee {
        kind: kind.map(|k| k.as_str().to_string()).unwrap_or_default(),
        id: a.id.trim().to_string(),
        display_name: a.display_name.trim().to_string(),
        account_id: optional_id(v, &format!("{field}.account_id"), &a.account_id),
    };
    validate_assignee(v, field, &assignee);
    assignee
}

fn reservation(
    v: &mut Violations,
    field: &str,
    r: Option<&pb::Reservation>,
    now: SystemTime,
) -> Reservation {
    let Some(r) = r else {
        v.add(field, "required");
        return Reservation {
            reserved_for: String::new(),
            tag: String::new(),
            note: String::new(),
            expire_time: None,
        };
    };
    let reservation = Reservation {
        reserved_for: r.reserved_for.trim().to_string(),
        tag: r.tag.trim().to_string(),
        note: r.note.clone(),
        expire_time: time(
            v,
            &format!("{field}.expire_time"),
            r.expire_time.as_ref(),
            false,
        ),
    };
    validate_reservation(v, field, &reservation, now);
    reservation
}

/// A change that names only its number and an etag.
pub fn plain(
    v: &mut Violations,
    prefix: &str,
    number: &str,
    etag: &str,
    change: Change,
) -> OneChange {
    OneChange {
        number: number_key(v, &format!("{prefix}number"), number),
        etag: etag.to_string(),
        change,
    }
}

pub fn assign(v: &mut Violations, prefix: &str, r: &pb::AssignNumberRequest) -> OneChange {
    let assignee = assignee(v, &format!("{prefix}assignee"), r.assignee.as_ref());
    plain(
        v,
        prefix,
        &r.number,
        &r.etag,
        Change::Assign {
            assignee,
            override_reservation: r.override_reservation,
        },
    )
}

pub fn reassign(v: &mut Violations, prefix: &str, r: &pb::ReassignNumberRequest) -> OneChange {
    let assignee = assignee(v, &format!("{prefix}assignee"), r.assignee.as_ref());
    plain(v, prefix, &r.number, &r.etag, Change::Reassign { assignee })
}

pub fn reserve(
    v: &mut Violations,
    prefix: &str,
    r: &pb::ReserveNumberRequest,
    now: SystemTime,
) -> OneChange {
    let reservation = reservation(
        v,
        &format!("{prefix}reservation"),
        r.reservation.as_ref(),
        now,
    );
    plain(v, prefix, &r.number, &r.etag, Change::Reserve(reservation))
}

/// A single-number request: its change, and its request id.
pub fn single(
    read: impl FnOnce(&mut Violations) -> OneChange,
    request_id: &str,
) -> Result<OneChange> {
    let mut v = Violations::new();
    let change = read(&mut v);
    v.request_id(request_id);
    v.finish()?;
    Ok(change)
}

/// The request id and validate_only of a batch are the batch's; its items must leave theirs
/// unset rather than have them silently ignored.
pub fn item(v: &mut Violations, prefix: &str, request_id: &str, validate_only: bool) {
    if !request_id.is_empty() {
        v.add(
            format!("{prefix}request_id"),
            "set request_id on the batch, not on its items",
        );
    }
    if validate_only {
        v.add(
            format!("{prefix}validate_only"),
            "set validate_only on the batch, not on its items",
        );
    }
}

/// The items of a batch, each read by `read` with its field prefix (`requests[i].`).
pub fn batch<R>(
    items: &[R],
    request_id: &str,
    read: impl Fn(&mut Violations, &str, &R) -> OneChange,
) -> Result<Vec<OneChange>> {
    let mut v = Violations::new();
    if items.is_empty() {
        v.add("requests", "name at least one number");
    }
    if items.len() > MAX_NUMBERS {
        v.add("requests", format!("at most {MAX_NUMBERS} requests"));
    }
    let changes = items
        .iter()
        .take(MAX_NUMBERS)
        .enumerate()
        .map(|(i, r)| read(&mut v, &format!("requests[{i}]."), r))
        .collect();
    v.request_id(request_id);
    v.finish()?;
    Ok(changes)
}
