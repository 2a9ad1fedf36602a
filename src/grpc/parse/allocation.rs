//! AllocationService requests parsed into commands: every field checked, every violation named
//! by its field path (`requests[2].assignee.id` in a batch).

use std::time::SystemTime;

use numbering_client::v1 as pb;

use super::{optional_id, required_id, time};
use uuid::Uuid;

use crate::domain::command::{Batch, Change, Key, MoveNumbers, OneChange, Selection, Withdraw};
use crate::domain::event::{AccountOperation, Cursor, EventFilter, Start, WatchEvents};
use crate::domain::lifecycle::{validate_assignee, validate_reservation};
use crate::domain::number::{Assignee, AssigneeKind, Operation, Reservation, parse_prefix};
use crate::domain::validate::Violations;
use crate::error::{Error, Result};
use crate::grpc::convert;

/// Most numbers one list, or one batch, may name.
pub const MAX_NUMBERS: usize = 1000;
/// Most numbers one quantity may ask for.
pub const MAX_QUANTITY: i64 = 10_000;

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
                let key = super::number(v, &field, raw);
                // A bad key is already recorded; only good ones can be named twice.
                if key != Key::Id(Uuid::nil()) && keys.contains(&key) {
                    v.add(field, "named twice");
                } else {
                    keys.push(key);
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

fn assignee(v: &mut Violations, field: &str, a: Option<&pb::Assignee>) -> Assignee {
    let Some(a) = a else {
        v.add(field, "required");
        return Assignee {
            kind: AssigneeKind::Other,
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
    if kind.is_none() {
        v.add(
            format!("{field}.kind"),
            "required: user, agent, device, service, trunk or other",
        );
    }
    let assignee = Assignee {
        // A missing kind is recorded in `v`: the stand-in never reaches a use case.
        kind: kind.unwrap_or(AssigneeKind::Other),
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
fn plain(v: &mut Violations, prefix: &str, number: &str, etag: &str, change: Change) -> OneChange {
    OneChange {
        number: super::number(v, &format!("{prefix}number"), number),
        etag: etag.to_string(),
        change,
    }
}

fn assign(v: &mut Violations, prefix: &str, r: &pb::AssignNumberRequest) -> OneChange {
    let assignee = assignee(v, &format!("{prefix}assignee"), r.assignee.as_ref());
    let attributes =
        super::bound_attributes(v, prefix, r.attributes.as_ref(), r.attributes_mask.as_ref());
    let change = Change::Assign {
        assignee,
        override_reservation: r.override_reservation,
        attributes,
    };
    plain(v, prefix, &r.number, &r.etag, change)
}

fn reassign(v: &mut Violations, prefix: &str, r: &pb::ReassignNumberRequest) -> OneChange {
    let assignee = assignee(v, &format!("{prefix}assignee"), r.assignee.as_ref());
    plain(v, prefix, &r.number, &r.etag, Change::Reassign { assignee })
}

fn reserve(v: &mut Violations, prefix: &str, r: &pb::ReserveNumberRequest) -> OneChange {
    let field = format!("{prefix}reservation");
    let reservation = reservation(v, &field, r.reservation.as_ref(), SystemTime::now());
    plain(v, prefix, &r.number, &r.etag, Change::Reserve(reservation))
}

/// Reads a request with `read` and answers what it read, or every violation it recorded.
fn checked<T>(read: impl FnOnce(&mut Violations) -> T) -> Result<T> {
    let mut v = Violations::new();
    let t = read(&mut v);
    v.finish()?;
    Ok(t)
}

/// A move between two accounts (allocate, transfer).
fn between(from: &str, to: &str, s: Option<&pb::NumberSelection>) -> Result<MoveNumbers> {
    bind_between(from, to, s, |_| None)
}

/// [`between`], with the attributes `bind` reads (an allocation's).
fn bind_between(
    from: &str,
    to: &str,
    s: Option<&pb::NumberSelection>,
    bind: impl FnOnce(&mut Violations) -> Option<crate::domain::command::SetAttributes>,
) -> Result<MoveNumbers> {
    checked(|v| {
        let from_id = required_id(v, "from_account_id", from);
        let to_id = required_id(v, "to_account_id", to);
        if !from_id.is_nil() && from_id == to_id {
            v.add("to_account_id", "must differ from from_account_id");
        }
        MoveNumbers {
            from: from_id,
            to: to_id,
            selection: selection(v, s),
            attributes: bind(v),
        }
    })
}

impl TryFrom<&pb::AllocateNumbersRequest> for MoveNumbers {
    type Error = Error;
    fn try_from(r: &pb::AllocateNumbersRequest) -> Result<Self> {
        bind_between(
            &r.from_account_id,
            &r.to_account_id,
            r.selection.as_ref(),
            |v| super::bound_attributes(v, "", r.attributes.as_ref(), r.attributes_mask.as_ref()),
        )
    }
}

impl TryFrom<&pb::TransferNumbersRequest> for MoveNumbers {
    type Error = Error;
    fn try_from(r: &pb::TransferNumbersRequest) -> Result<Self> {
        between(&r.from_account_id, &r.to_account_id, r.selection.as_ref())
    }
}

impl TryFrom<&pb::WithdrawNumbersRequest> for Withdraw {
    type Error = Error;
    fn try_from(r: &pb::WithdrawNumbersRequest) -> Result<Self> {
        checked(|v| Withdraw {
            account: required_id(v, "account_id", &r.account_id),
            selection: selection(v, r.selection.as_ref()),
        })
    }
}

/// The single-number changes: each request read by its function with no field prefix.
macro_rules! one_change {
    ($($request:ident => $read:expr),+ $(,)?) => {
        $(impl TryFrom<&pb::$request> for OneChange {
            type Error = Error;
            fn try_from(r: &pb::$request) -> Result<Self> {
                checked(|v| $read(v, "", r))
            }
        })+
    };
}

one_change!(
    AssignNumberRequest => assign,
    ReassignNumberRequest => reassign,
    ReserveNumberRequest => reserve,
    UnassignNumberRequest => |v: &mut Violations, p: &str, r: &pb::UnassignNumberRequest| {
        plain(v, p, &r.number, &r.etag, Change::Unassign)
    },
    UnreserveNumberRequest => |v: &mut Violations, p: &str, r: &pb::UnreserveNumberRequest| {
        plain(v, p, &r.number, &r.etag, Change::Unreserve)
    },
    ReleaseNumberRequest => |v: &mut Violations, p: &str, r: &pb::ReleaseNumberRequest| {
        plain(v, p, &r.number, &r.etag, Change::Release)
    },
    UnbindNumberRequest => |v: &mut Violations, p: &str, r: &pb::UnbindNumberRequest| {
        plain(v, p, &r.number, &r.etag, Change::Unbind)
    },
);

/// The request id and validate_only of a batch are the batch's; its items must leave theirs
/// unset rather than have them silently ignored.
fn item(v: &mut Violations, prefix: &str, request_id: &str, validate_only: bool) {
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

/// The items of a batch, each read by `read` with its field prefix (`requests[i].`); a bad
/// item fails the whole call.
fn batch<R>(
    items: &[R],
    all_or_nothing: bool,
    read: impl Fn(&mut Violations, &str, &R) -> OneChange,
) -> Result<Batch<OneChange>> {
    checked(|v| {
        if items.is_empty() {
            v.add("requests", "name at least one number");
        }
        if items.len() > MAX_NUMBERS {
            v.add("requests", format!("at most {MAX_NUMBERS} requests"));
        }
        let items = items
            .iter()
            .take(MAX_NUMBERS)
            .enumerate()
            .map(|(i, r)| Ok(read(v, &format!("requests[{i}]."), r)))
            .collect();
        Batch {
            items,
            all_or_nothing,
        }
    })
}

/// The batch forms: each item read like its single-number request.
macro_rules! batch_change {
    ($($request:ident => $read:expr),+ $(,)?) => {
        $(impl TryFrom<&pb::$request> for Batch<OneChange> {
            type Error = Error;
            fn try_from(r: &pb::$request) -> Result<Self> {
                batch(&r.requests, r.all_or_nothing, |v, prefix, item_request| {
                    item(v, prefix, &item_request.request_id, item_request.validate_only);
                    $read(v, prefix, item_request)
                })
            }
        })+
    };
}

batch_change!(
    BatchAssignNumbersRequest => assign,
    BatchReserveNumbersRequest => reserve,
    BatchUnassignNumbersRequest => |v: &mut Violations, p: &str, r: &pb::UnassignNumberRequest| {
        plain(v, p, &r.number, &r.etag, Change::Unassign)
    },
    BatchReleaseNumbersRequest => |v: &mut Violations, p: &str, r: &pb::ReleaseNumberRequest| {
        plain(v, p, &r.number, &r.etag, Change::Release)
    },
);

/// Most numbers, and most accounts, a watch may be narrowed to.
pub const MAX_WATCHED: usize = 100;

/// A list of enum values: each one known and specified (an empty list is `None`: every one).
fn operations<T: Copy>(
    v: &mut Violations,
    field: &str,
    values: &[i32],
    all: &[T],
    to_proto: fn(T) -> i32,
) -> Option<Vec<T>> {
    if values.is_empty() {
        return None;
    }
    let mut ops = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        match all.iter().copied().find(|op| to_proto(*op) == *value) {
            Some(op) => ops.push(op),
            None => v.add(format!("{field}[{i}]"), "not a known operation"),
        }
    }
    Some(ops)
}

impl TryFrom<&pb::WatchNumberEventsRequest> for WatchEvents {
    type Error = Error;

    fn try_from(r: &pb::WatchNumberEventsRequest) -> Result<Self> {
        let mut v = Violations::new();
        let account_id = required_id(&mut v, "account_id", &r.account_id);
        let start_time = time(&mut v, "start_time", r.start_time.as_ref(), false);
        let starts = [
            r.after_sequence != 0,
            r.start_time.is_some(),
            !r.cursor.is_empty(),
        ];
        if starts.iter().filter(|s| **s).count() > 1 {
            v.add(
                "cursor",
                "at most one of after_sequence, start_time and cursor",
            );
        }
        if r.after_sequence < 0 {
            v.add("after_sequence", "must not be negative");
        }
        let start = if !r.cursor.is_empty() {
            v.take(Cursor::decode("cursor", &r.cursor))
                .ok()
                .flatten()
                .map_or(Start::Now, Start::Resume)
        } else if let Some(t) = start_time {
            Start::Since(t)
        } else if r.after_sequence > 0 {
            Start::AfterSequence(r.after_sequence)
        } else {
            Start::Now
        };
        let to_number = |op| convert::operation_to_proto(op) as i32;
        let to_account = |op| convert::account_operation_to_proto(op) as i32;
        let number_operations = operations(
            &mut v,
            "operations",
            &r.operations,
            Operation::ALL,
            to_number,
        );
        let account_operations = operations(
            &mut v,
            "account_operations",
            &r.account_operations,
            AccountOperation::ALL,
            to_account,
        );
        // When either list is set, an event passes only if its own list names its operation.
        let (number_operations, account_operations) = match (number_operations, account_operations)
        {
            (None, None) => (None, None),
            (n, a) => (Some(n.unwrap_or_default()), Some(a.unwrap_or_default())),
        };
        for (field, len) in [
            ("numbers", r.numbers.len()),
            ("account_ids", r.account_ids.len()),
        ] {
            if len > MAX_WATCHED {
                v.add(field, format!("at most {MAX_WATCHED}"));
            }
        }
        let numbers = (!r.numbers.is_empty()).then(|| {
            let named = r.numbers.iter().take(MAX_WATCHED).enumerate();
            named
                .map(|(i, n)| super::number(&mut v, &format!("numbers[{i}]"), n))
                .collect()
        });
        let accounts = (!r.account_ids.is_empty()).then(|| {
            let named = r.account_ids.iter().take(MAX_WATCHED).enumerate();
            named
                .map(|(i, a)| required_id(&mut v, &format!("account_ids[{i}]"), a))
                .collect()
        });
        v.finish()?;
        Ok(WatchEvents {
            account_id,
            start,
            filter: EventFilter {
                number_operations,
                account_operations,
                numbers,
                accounts,
            },
        })
    }
}
