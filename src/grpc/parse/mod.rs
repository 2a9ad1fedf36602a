//! Requests parsed into the typed commands of [`crate::domain::command`], once, at the edge:
//! `TryFrom<&pb::…Request>` per request, every violation named by its field path.

mod allocation;
mod number_pool;
mod tenancy;

#[cfg(test)]
mod fuzz_tests;

pub use allocation::{MAX_NUMBERS, MAX_QUANTITY};
pub use number_pool::{MAX_BATCH, attributes, bound_attributes, filter, search, series_filter};
pub use tenancy::state as account_state;

use std::time::SystemTime;

use uuid::Uuid;

use crate::domain::command::Key;
use crate::domain::number::E164;
use crate::domain::parse_id;
use crate::domain::validate::Violations;

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

/// A number named by id or E.164. When it is neither, the violation is recorded in `v` and
/// the nil id stands in until `v.finish()` refuses the request.
pub fn number(v: &mut Violations, field: &str, raw: &str) -> Key {
    let raw = raw.trim();
    if raw.is_empty() {
        v.add(field, "required: a number id (UUID) or an E.164 number");
        return Key::Id(Uuid::nil());
    }
    if let Ok(id) = Uuid::parse_str(raw) {
        return Key::Id(id);
    }
    match E164::from_canonical(raw) {
        Some(e) => Key::E164(e),
        None => {
            v.add(
                field,
                "a number id (UUID) or an E.164 number (+ and up to 15 digits)",
            );
            Key::Id(Uuid::nil())
        }
    }
}

/// The seconds a google.protobuf.Timestamp may hold: 0001-01-01T00:00:00Z to
/// 9999-12-31T23:59:59Z. PostgreSQL's timestamptz holds more (4713 BC to 294276 AD), so a time
/// in this range is stored as it was sent, never wrapped.
pub const TIMESTAMP_SECONDS: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

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
        Some(t)
            if !TIMESTAMP_SECONDS.contains(&t.seconds)
                || !(0..1_000_000_000).contains(&t.nanos) =>
        {
            v.add(
                field,
                "a time between 0001-01-01 and 9999-12-31 UTC, nanos 0 to 999,999,999",
            );
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
