//! Conversions between the domain's types and their proto messages, shared by the adapters.

use numbering_client::v1 as pb;

use std::time::SystemTime;

use crate::domain::account::{Account, AccountState};
use crate::domain::etag as domain_etag;
use crate::domain::event::{AccountEvent, AccountOperation, Cursor, Event};
use crate::domain::number::{
    Assignee, AssigneeKind, Number, NumberEvent, NumberSource, NumberState, NumberStatus,
    NumberType, Operation, Reservation,
};
use crate::domain::series::Series;
use crate::domain::trunk::SipTrunk;
use crate::domain::validate::Violations;
use crate::store::inventory::Counts;

pub fn status_to_proto(s: NumberStatus) -> pb::NumberStatus {
    match s {
        NumberStatus::Available => pb::NumberStatus::Available,
        NumberStatus::Reserved => pb::NumberStatus::Reserved,
        NumberStatus::Assigned => pb::NumberStatus::Assigned,
        NumberStatus::Returned => pb::NumberStatus::Returned,
        NumberStatus::Aging => pb::NumberStatus::Aging,
        NumberStatus::Deleted => pb::NumberStatus::Deleted,
    }
}

/// A status a caller named; `None` for UNSPECIFIED.
pub fn status_from_proto(v: &mut Violations, field: &str, value: i32) -> Option<NumberStatus> {
    match pb::NumberStatus::try_from(value) {
        Ok(pb::NumberStatus::Unspecified) => None,
        Ok(pb::NumberStatus::Available) => Some(NumberStatus::Available),
        Ok(pb::NumberStatus::Reserved) => Some(NumberStatus::Reserved),
        Ok(pb::NumberStatus::Assigned) => Some(NumberStatus::Assigned),
        Ok(pb::NumberStatus::Returned) => Some(NumberStatus::Returned),
        Ok(pb::NumberStatus::Aging) => Some(NumberStatus::Aging),
        Ok(pb::NumberStatus::Deleted) => Some(NumberStatus::Deleted),
        Err(_) => {
            v.add(field, "unknown status");
            None
        }
    }
}

pub fn number_type_to_proto(t: NumberType) -> pb::NumberType {
    match t {
        NumberType::Unspecified => pb::NumberType::Unspecified,
        NumberType::Geographic => pb::NumberType::Geographic,
        NumberType::Mobile => pb::NumberType::Mobile,
        NumberType::GeographicOrMobile => pb::NumberType::GeographicOrMobile,
        NumberType::TollFree => pb::NumberType::TollFree,
        NumberType::PremiumRate => pb::NumberType::PremiumRate,
        NumberType::SharedCost => pb::NumberType::SharedCost,
        NumberType::Voip => pb::NumberType::Voip,
        NumberType::Personal => pb::NumberType::Personal,
        NumberType::Pager => pb::NumberType::Pager,
        NumberType::Uan => pb::NumberType::Uan,
        NumberType::Voicemail => pb::NumberType::Voicemail,
        NumberType::Unknown => pb::NumberType::Unknown,
    }
}

pub fn number_type_from_proto(v: &mut Violations, field: &str, value: i32) -> NumberType {
    match pb::NumberType::try_from(value) {
        Ok(t) => NumberType::ALL
            .iter()
            .copied()
            .find(|d| number_type_to_proto(*d) == t)
            .unwrap_or(NumberType::Unspecified),
        Err(_) => {
            v.add(field, "unknown number type");
            NumberType::Unspecified
        }
    }
}

pub fn source_to_proto(s: NumberSource) -> pb::NumberSource {
    match s {
        NumberSource::Unspecified => pb::NumberSource::Unspecified,
        NumberSource::Purchased => pb::NumberSource::Purchased,
        NumberSource::PortedIn => pb::NumberSource::PortedIn,
        NumberSource::Byoc => pb::NumberSource::Byoc,
    }
}

pub fn source_from_proto(v: &mut Violations, field: &str, value: i32) -> NumberSource {
    match pb::NumberSource::try_from(value) {
        Ok(s) => NumberSource::ALL
            .iter()
            .copied()
            .find(|d| source_to_proto(*d) == s)
            .unwrap_or(NumberSource::Unspecified),
        Err(_) => {
            v.add(field, "unknown source");
            NumberSource::Unspecified
        }
    }
}

pub fn assignee_kind_to_proto(kind: AssigneeKind) -> pb::AssigneeKind {
    match kind {
        AssigneeKind::User => pb::AssigneeKind::User,
        AssigneeKind::Agent => pb::AssigneeKind::Agent,
        AssigneeKind::Device => pb::AssigneeKind::Device,
        AssigneeKind::Service => pb::AssigneeKind::Service,
        AssigneeKind::Trunk => pb::AssigneeKind::Trunk,
        AssigneeKind::Other => pb::AssigneeKind::Other,
    }
}

pub fn assignee_to_proto(a: Assignee) -> pb::Assignee {
    pb::Assignee {
        kind: assignee_kind_to_proto(a.kind).into(),
        id: a.id,
        display_name: a.display_name,
        account_id: a.account_id.map(|id| id.to_string()).unwrap_or_default(),
    }
}

pub fn reservation_to_proto(r: Reservation) -> pb::Reservation {
    pb::Reservation {
        reserved_for: r.reserved_for,
        tag: r.tag,
        note: r.note,
        expire_time: r.expire_time.map(timestamp),
    }
}

pub fn number_to_proto(n: Number) -> pb::Number {
    pb::Number {
        id: n.id.to_string(),
        e164: n.e164,
        owner_id: n.owner_id.to_string(),
        holder_id: n.holder_id.to_string(),
        status: status_to_proto(n.status).into(),
        series_id: n.series_id.map(|s| s.to_string()).unwrap_or_default(),
        number_type: number_type_to_proto(n.attributes.number_type).into(),
        source: source_to_proto(n.attributes.source).into(),
        carrier: n.attributes.carrier,
        sip_trunk: n.attributes.sip_trunk,
        billing_reference: n.attributes.billing_reference,
        service_info: n.attributes.service_info,
        tags: n.attributes.tags,
        labels: n.attributes.labels,
        assignee: n.assignee.map(assignee_to_proto),
        reservation: n.reservation.map(reservation_to_proto),
        aging_end_time: n.aging_end_time.map(timestamp),
        create_time: Some(timestamp(n.create_time)),
        update_time: Some(timestamp(n.update_time)),
        etag: domain_etag(n.version),
    }
}

pub fn state_to_proto(s: NumberState) -> pb::NumberState {
    pb::NumberState {
        // A holder hidden from the reader (the nil id) is sent empty.
        holder_id: Some(s.holder_id)
            .filter(|id| !id.is_nil())
            .map(|id| id.to_string())
            .unwrap_or_default(),
        status: status_to_proto(s.status).into(),
        assignee: s.assignee.map(assignee_to_proto),
        reservation: s.reservation.map(reservation_to_proto),
    }
}

pub fn operation_to_proto(op: Operation) -> pb::NumberOperation {
    match op {
        Operation::Add => pb::NumberOperation::Add,
        Operation::Update => pb::NumberOperation::Update,
        Operation::Delete => pb::NumberOperation::Delete,
        Operation::Allocate => pb::NumberOperation::Allocate,
        Operation::Withdraw => pb::NumberOperation::Withdraw,
        Operation::Transfer => pb::NumberOperation::Transfer,
        Operation::Assign => pb::NumberOperation::Assign,
        Operation::Unassign => pb::NumberOperation::Unassign,
        Operation::Reassign => pb::NumberOperation::Reassign,
        Operation::Reserve => pb::NumberOperation::Reserve,
        Operation::Unreserve => pb::NumberOperation::Unreserve,
        Operation::ReservationExpire => pb::NumberOperation::ReservationExpire,
        Operation::Release => pb::NumberOperation::Release,
        Operation::Unbind => pb::NumberOperation::Unbind,
        Operation::AgingEnd => pb::NumberOperation::AgingEnd,
    }
}

pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    t.into()
}

pub fn numbers_to_proto(numbers: Vec<Number>) -> Vec<pb::Number> {
    numbers.into_iter().map(number_to_proto).collect()
}

pub fn event_to_proto(e: NumberEvent) -> pb::NumberEvent {
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

pub fn account_operation_to_proto(op: AccountOperation) -> pb::AccountOperation {
    match op {
        AccountOperation::Create => pb::AccountOperation::Create,
        AccountOperation::Update => pb::AccountOperation::Update,
        AccountOperation::ChangeQuota => pb::AccountOperation::ChangeQuota,
        AccountOperation::Suspend => pb::AccountOperation::Suspend,
        AccountOperation::Resume => pb::AccountOperation::Resume,
        AccountOperation::Delete => pb::AccountOperation::Delete,
        AccountOperation::Close => pb::AccountOperation::Close,
    }
}

pub fn account_event_to_proto(e: AccountEvent) -> pb::AccountEvent {
    pb::AccountEvent {
        sequence: e.seq,
        account_id: e.account_id.to_string(),
        time: Some(timestamp(e.time)),
        actor: e.actor,
        actor_account_id: e
            .actor_account_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        request_id: e.request_id,
        operation: e
            .operation
            .map_or(
                pb::AccountOperation::Unspecified,
                account_operation_to_proto,
            )
            .into(),
        before: e.before.map(account_to_proto),
        after: e.after.map(account_to_proto),
    }
}

/// One message of a watch: an event and the cursor after it, or a heartbeat (no event).
pub fn watch_to_proto((event, cursor): (Option<Event>, Cursor)) -> pb::WatchNumberEventsResponse {
    use pb::watch_number_events_response::EventKind;
    pb::WatchNumberEventsResponse {
        event_kind: event.map(|e| match e {
            Event::Number(n) => EventKind::Event(event_to_proto(n)),
            Event::Account(a) => EventKind::AccountEvent(account_event_to_proto(a)),
        }),
        cursor: cursor.encode(),
    }
}

fn account_state_to_proto(s: AccountState) -> pb::AccountState {
    match s {
        AccountState::Active => pb::AccountState::Active,
        AccountState::Suspended => pb::AccountState::Suspended,
        AccountState::Closed => pb::AccountState::Closed,
    }
}

pub fn account_to_proto(a: Account) -> pb::Account {
    pb::Account {
        id: a.id.to_string(),
        parent_id: a.parent_id.map(|p| p.to_string()).unwrap_or_default(),
        provider_id: a.provider_id.to_string(),
        display_name: a.fields.display_name,
        kind: a.fields.kind,
        external_ref: a.fields.external_ref.unwrap_or_default(),
        state: account_state_to_proto(a.state).into(),
        labels: a.fields.labels,
        max_numbers: a.fields.max_numbers,
        aging_period: a.parent_id.is_none().then(|| prost_types::Duration {
            seconds: i64::try_from(a.fields.aging_period.as_secs()).unwrap_or(i64::MAX),
            nanos: 0,
        }),
        depth: a.depth,
        create_time: Some(timestamp(a.create_time)),
        update_time: Some(timestamp(a.update_time)),
        etag: domain_etag(a.version),
    }
}

pub fn series_to_proto(s: Series) -> pb::Series {
    pb::Series {
        id: s.id.to_string(),
        provider_id: s.provider_id.to_string(),
        prefix: s.prefix,
        display_name: s.display_name,
        description: s.description,
        etag: domain_etag(s.version),
    }
}

pub fn trunk_to_proto(t: SipTrunk) -> pb::SipTrunk {
    pb::SipTrunk {
        id: t.id.to_string(),
        account_id: t.account_id.to_string(),
        name: t.name,
        etag: domain_etag(t.version),
    }
}

pub fn counts_to_proto(c: &Counts) -> pb::InventoryCounts {
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
