//! Printing answers: human tables (comfy-table) by default, JSON for scripts. Prost messages have
//! no serde, so what is printed is converted here, with the protos' field names (snake_case) and
//! enum value names, and timestamps in RFC 3339.

use std::io::Write;

use clap::ValueEnum;
use comfy_table::{Table, presets};
use numbering_client::v1;
use serde_json::{Map, Value, json};

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

impl Output {
    /// Prints `value` as JSON, or the table `table` makes. A reader that went away (`| head`)
    /// is not an error worth a panic.
    pub fn print(self, value: Value, table: impl FnOnce() -> Table) {
        let mut stdout = std::io::stdout().lock();
        let _ = match self {
            Self::Json => writeln!(stdout, "{value:#}"),
            Self::Table => writeln!(stdout, "{}", table()),
        };
    }
}

/// A table with a header row.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED);
    t.set_header(header.iter().copied());
    t
}

fn ts(t: &Option<prost_types::Timestamp>) -> Value {
    t.as_ref()
        .map_or(Value::Null, |t| Value::String(t.to_string()))
}

/// An enum value's proto name (`NUMBER_STATUS_AVAILABLE`), or its number when unknown.
macro_rules! enum_name {
    ($t:ty, $v:expr) => {
        <$t>::try_from($v).map_or_else(|_| $v.to_string(), |e| e.as_str_name().to_string())
    };
}

/// The short form people read: `AVAILABLE` for `NUMBER_STATUS_AVAILABLE`.
fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_string()
}

pub fn status_name(status: i32) -> String {
    enum_name!(v1::NumberStatus, status)
}

pub fn status_short(status: i32) -> String {
    short(&status_name(status), "NUMBER_STATUS_")
}

fn labels(l: &std::collections::BTreeMap<String, String>) -> Value {
    Value::Object(
        l.iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect::<Map<_, _>>(),
    )
}

pub fn account(a: &v1::Account) -> Value {
    json!({
        "id": a.id,
        "parent_id": a.parent_id,
        "provider_id": a.provider_id,
        "display_name": a.display_name,
        "kind": a.kind,
        "external_ref": a.external_ref,
        "state": enum_name!(v1::AccountState, a.state),
        "labels": labels(&a.labels),
        "max_numbers": a.max_numbers,
        "aging_period_seconds": a.aging_period.as_ref().map(|d| d.seconds),
        "depth": a.depth,
        "create_time": ts(&a.create_time),
        "update_time": ts(&a.update_time),
        "etag": a.etag,
    })
}

pub fn account_state_short(state: i32) -> String {
    short(&enum_name!(v1::AccountState, state), "ACCOUNT_STATE_")
}

fn assignee(a: &Option<v1::Assignee>) -> Value {
    a.as_ref().map_or(Value::Null, |a| {
        json!({
            "kind": enum_name!(v1::AssigneeKind, a.kind),
            "id": a.id,
            "display_name": a.display_name,
            "account_id": a.account_id,
        })
    })
}

/// `agent:agent-17` for a table.
pub fn assignee_short(a: &Option<v1::Assignee>) -> String {
    a.as_ref().map_or(String::new(), |a| {
        let kind = short(&enum_name!(v1::AssigneeKind, a.kind), "ASSIGNEE_KIND_");
        format!("{}:{}", kind.to_lowercase(), a.id)
    })
}

fn reservation(r: &Option<v1::Reservation>) -> Value {
    r.as_ref().map_or(Value::Null, |r| {
        json!({
            "reserved_for": r.reserved_for,
            "tag": r.tag,
            "note": r.note,
            "expire_time": ts(&r.expire_time),
        })
    })
}

pub fn number(n: &v1::Number) -> Value {
    json!({
        "id": n.id,
        "e164": n.e164,
        "owner_id": n.owner_id,
        "holder_id": n.holder_id,
        "status": status_name(n.status),
        "series_id": n.series_id,
        "number_type": enum_name!(v1::NumberType, n.number_type),
        "source": enum_name!(v1::NumberSource, n.source),
        "carrier": n.carrier,
        "sip_trunk": n.sip_trunk,
        "billing_reference": n.billing_reference,
        "service_info": n.service_info,
        "tags": n.tags,
        "labels": labels(&n.labels),
        "assignee": assignee(&n.assignee),
        "reservation": reservation(&n.reservation),
        "aging_end_time": ts(&n.aging_end_time),
        "create_time": ts(&n.create_time),
        "update_time": ts(&n.update_time),
        "etag": n.etag,
    })
}

pub fn numbers_table(numbers: &[v1::Number]) -> Table {
    let mut t = table(&[
        "E164",
        "STATUS",
        "HOLDER",
        "ASSIGNEE",
        "RESERVED FOR",
        "SERIES",
    ]);
    for n in numbers {
        t.add_row(vec![
            n.e164.clone(),
            status_short(n.status),
            n.holder_id.clone(),
            assignee_short(&n.assignee),
            n.reservation
                .as_ref()
                .map(|r| r.reserved_for.clone())
                .unwrap_or_default(),
            n.series_id.clone(),
        ]);
    }
    t
}

pub fn series(s: &v1::Series) -> Value {
    json!({
        "id": s.id,
        "provider_id": s.provider_id,
        "prefix": s.prefix,
        "display_name": s.display_name,
        "description": s.description,
        "etag": s.etag,
    })
}

pub fn series_table(series: &[v1::Series]) -> Table {
    let mut t = table(&["PREFIX", "NAME", "ID", "DESCRIPTION"]);
    for s in series {
        t.add_row(vec![
            s.prefix.clone(),
            s.display_name.clone(),
            s.id.clone(),
            s.description.clone(),
        ]);
    }
    t
}

fn counts(c: &Option<v1::InventoryCounts>) -> Value {
    let c = (*c).unwrap_or_default();
    json!({
        "total": c.total,
        "available": c.available,
        "reserved": c.reserved,
        "assigned": c.assigned,
        "allocated_to_children": c.allocated_to_children,
        "returned": c.returned,
        "aging": c.aging,
    })
}

pub fn inventory(i: &v1::Inventory) -> Value {
    json!({
        "account_id": i.account_id,
        "include_subtree": i.include_subtree,
        "totals": counts(&i.totals),
        "series": i.series.iter().map(|s| json!({
            "series_id": s.series_id,
            "counts": counts(&s.counts),
        })).collect::<Vec<_>>(),
    })
}

pub fn inventory_table(i: &v1::Inventory) -> Table {
    let mut t = table(&[
        "SERIES",
        "TOTAL",
        "AVAILABLE",
        "RESERVED",
        "ASSIGNED",
        "IN CHILDREN",
        "RETURNED",
        "AGING",
    ]);
    let row = |name: String, c: &Option<v1::InventoryCounts>| {
        let c = (*c).unwrap_or_default();
        vec![
            name,
            c.total.to_string(),
            c.available.to_string(),
            c.reserved.to_string(),
            c.assigned.to_string(),
            c.allocated_to_children.to_string(),
            c.returned.to_string(),
            c.aging.to_string(),
        ]
    };
    for s in &i.series {
        let name = if s.series_id.is_empty() {
            "(no series)".to_string()
        } else {
            s.series_id.clone()
        };
        t.add_row(row(name, &s.counts));
    }
    t.add_row(row("total".into(), &i.totals));
    t
}

fn state(s: &Option<v1::NumberState>) -> Value {
    s.as_ref().map_or(Value::Null, |s| {
        json!({
            "holder_id": s.holder_id,
            "status": status_name(s.status),
            "assignee": assignee(&s.assignee),
            "reservation": reservation(&s.reservation),
        })
    })
}

pub fn event(e: &v1::NumberEvent) -> Value {
    json!({
        "sequence": e.sequence,
        "number_id": e.number_id,
        "e164": e.e164,
        "time": ts(&e.time),
        "actor": e.actor,
        "actor_account_id": e.actor_account_id,
        "request_id": e.request_id,
        "operation": enum_name!(v1::NumberOperation, e.operation),
        "before": state(&e.before),
        "after": state(&e.after),
    })
}

pub fn events_table(events: &[v1::NumberEvent]) -> Table {
    let mut t = table(&["SEQ", "TIME", "OPERATION", "BEFORE", "AFTER", "ACTOR"]);
    let place = |s: &Option<v1::NumberState>| {
        s.as_ref().map_or(String::new(), |s| {
            let who = assignee_short(&s.assignee);
            format!("{} {} {who}", s.holder_id, status_short(s.status))
                .trim_end()
                .to_string()
        })
    };
    for e in events {
        t.add_row(vec![
            e.sequence.to_string(),
            e.time.as_ref().map(|t| t.to_string()).unwrap_or_default(),
            short(
                &enum_name!(v1::NumberOperation, e.operation),
                "NUMBER_OPERATION_",
            ),
            place(&e.before),
            place(&e.after),
            e.actor.clone(),
        ]);
    }
    t
}

pub fn rejected_row(r: &v1::ImportRejectedRow) -> Value {
    json!({"line": r.line, "e164": r.e164, "reason": r.reason, "message": r.message})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_enums_by_their_proto_names_and_times_in_rfc3339() {
        let n = v1::Number {
            e164: "+13035550100".into(),
            status: v1::NumberStatus::Assigned.into(),
            assignee: Some(v1::Assignee {
                kind: v1::AssigneeKind::Agent.into(),
                id: "agent-17".into(),
                ..Default::default()
            }),
            create_time: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: 0,
            }),
            ..Default::default()
        };
        let v = number(&n);
        assert_eq!(v["status"], "NUMBER_STATUS_ASSIGNED");
        assert_eq!(v["assignee"]["kind"], "ASSIGNEE_KIND_AGENT");
        assert_eq!(v["create_time"], "1970-01-01T00:00:00Z");
        assert_eq!(v["reservation"], Value::Null);
        assert_eq!(assignee_short(&n.assignee), "agent:agent-17");
        assert_eq!(status_short(n.status), "ASSIGNED");
    }
}
