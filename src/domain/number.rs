//! Numbers: E.164 parsing with libphonenumber data (in `e164`), statuses, assignees, reservations and the
//! operator's attributes.

use std::collections::BTreeMap;
use std::time::SystemTime;

use uuid::Uuid;

use super::validate::Violations;
use crate::error::{Error, Result};

mod e164;
#[cfg(test)]
mod fixture_tests;

pub use e164::{E164, ParsedNumber, valid_region};

/// An E.164 prefix of a series or a filter: `+` and 1 to 15 digits.
pub fn parse_prefix(field: &str, value: &str) -> Result<String> {
    let v = value.trim().replace([' ', '-'], "");
    E164::from_canonical(&v)
        .map(|e| e.as_str().to_owned())
        .ok_or_else(|| {
            Error::invalid(
                field,
                "an E.164 prefix: + and 1 to 15 digits, such as +1303",
            )
        })
}

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

text_enum!(
    /// Where a number stands inside the account that holds it.
    NumberStatus {
        Available = "available",
        Reserved = "reserved",
        Assigned = "assigned",
        Returned = "returned",
        Aging = "aging",
        Deleted = "deleted",
    }
);

text_enum!(NumberType {
    Unspecified = "unspecified",
    Geographic = "geographic",
    Mobile = "mobile",
    GeographicOrMobile = "geographic_or_mobile",
    TollFree = "toll_free",
    PremiumRate = "premium_rate",
    SharedCost = "shared_cost",
    Voip = "voip",
    Personal = "personal",
    Pager = "pager",
    Uan = "uan",
    Voicemail = "voicemail",
    Unknown = "unknown",
});

text_enum!(NumberSource {
    Unspecified = "unspecified",
    Purchased = "purchased",
    PortedIn = "ported_in",
    Byoc = "byoc",
});

text_enum!(AssigneeKind {
    User = "user",
    Agent = "agent",
    Device = "device",
    Service = "service",
    Trunk = "trunk",
    Other = "other",
});

/// The user, agent, device, service or trunk a number is assigned to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Assignee {
    pub kind: AssigneeKind,
    pub id: String,
    pub display_name: String,
    /// The assignee's account: the holder or one of its descendants.
    pub account_id: Option<uuid::Uuid>,
}

/// For whom a number is set aside.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reservation {
    pub reserved_for: String,
    pub tag: String,
    pub note: String,
    pub expire_time: Option<SystemTime>,
}

/// The attributes an operator sets on a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub number_type: NumberType,
    pub source: NumberSource,
    pub carrier: String,
    pub sip_trunk: String,
    pub billing_reference: String,
    pub service_info: String,
    pub tags: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

impl Default for Attributes {
    fn default() -> Self {
        Self {
            number_type: NumberType::Unspecified,
            source: NumberSource::Unspecified,
            carrier: String::new(),
            sip_trunk: String::new(),
            billing_reference: String::new(),
            service_info: String::new(),
            tags: Vec::new(),
            labels: BTreeMap::new(),
        }
    }
}

pub const MAX_TAGS: usize = 32;

/// The attribute fields UpdateNumber may name.
pub const UPDATABLE: &[&str] = &[
    "number_type",
    "source",
    "carrier",
    "sip_trunk",
    "billing_reference",
    "service_info",
    "tags",
    "labels",
];

/// The attributes that belong to the owner (the provider that added the number): only its
/// admins change them, not the admins of the account that holds it.
pub const OWNER_ONLY: &[&str] = &["source", "carrier", "billing_reference"];

impl Attributes {
    /// Checks every attribute; `prefix` names the fields (`number.`).
    pub fn validate(&self, v: &mut Violations, prefix: &str) {
        v.text(&format!("{prefix}carrier"), &self.carrier, false, 256);
        v.text(&format!("{prefix}sip_trunk"), &self.sip_trunk, false, 256);
        v.text(
            &format!("{prefix}billing_reference"),
            &self.billing_reference,
            false,
            256,
        );
        v.free_text(&format!("{prefix}service_info"), &self.service_info, 1024);
        if self.tags.len() > MAX_TAGS {
            v.add(format!("{prefix}tags"), format!("at most {MAX_TAGS} tags"));
        }
        for t in &self.tags {
            if t.trim().is_empty() {
                v.add(format!("{prefix}tags"), "tags must not be empty");
            }
            v.text(&format!("{prefix}tags"), t, false, 64);
        }
        v.labels(&format!("{prefix}labels"), &self.labels);
    }

    /// Tags as a set: sorted, without repeats.
    /// Takes from `incoming` the fields `paths` name (an update mask already checked).
    pub fn merge(&mut self, incoming: &Attributes, paths: &[String]) {
        for path in paths {
            match path.as_str() {
                "number_type" => self.number_type = incoming.number_type,
                "source" => self.source = incoming.source,
                "carrier" => self.carrier = incoming.carrier.clone(),
                "sip_trunk" => self.sip_trunk = incoming.sip_trunk.clone(),
                "billing_reference" => self.billing_reference = incoming.billing_reference.clone(),
                "service_info" => self.service_info = incoming.service_info.clone(),
                "tags" => self.tags = incoming.tags.clone(),
                "labels" => self.labels = incoming.labels.clone(),
                _ => {}
            }
        }
    }

    pub fn normalise(&mut self) {
        for t in &mut self.tags {
            *t = t.trim().to_string();
        }
        self.tags.sort();
        self.tags.dedup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn international_and_national_input_normalise_to_e164() {
        let a = E164::parse("e164", "+1 303-555-0100", "").unwrap();
        let b = E164::parse("e164", "(303) 555 0100", "us").unwrap();
        assert_eq!(a.e164.as_str(), "+13035550100");
        assert_eq!(a, b);
        let gb = E164::parse("e164", "020 7946 0018", "GB").unwrap();
        assert_eq!(gb.e164.as_str(), "+442079460018");
        assert_eq!(gb.number_type, NumberType::Geographic);
        let free = E164::parse("e164", "+1 800 356 9377", "").unwrap();
        assert_eq!(free.number_type, NumberType::TollFree);
    }

    #[test]
    fn a_national_number_without_a_region_is_refused_not_guessed() {
        let e = E164::parse("e164", "303 555 0100", "").unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument(ref v) if v[0].field == "e164"),
            "{e:?}"
        );
    }

    #[test]
    fn malformed_out_of_range_and_unknown_region_numbers_are_refused() {
        for (input, region) in [
            ("+1 303 555 01", ""),
            ("+1234567890123456", ""),
            ("hello", "US"),
            ("+999 1234", ""),
            ("+1 303 555 0100 ext 12", ""),
        ] {
            assert!(E164::parse("e164", input, region).is_err(), "{input}");
        }
        let e = E164::parse("e164", "303 555 0100", "XX").unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument(ref v) if v[0].field == "region"),
            "{e:?}"
        );
    }

    #[test]
    fn canonical_form_is_plus_and_up_to_fifteen_digits() {
        assert!(E164::from_canonical("+13035550100").is_some());
        assert!(E164::from_canonical("13035550100").is_none());
        assert!(E164::from_canonical("+0123").is_none());
        assert!(E164::from_canonical("+1234567890123456").is_none());
        assert_eq!(parse_prefix("prefix", "+1 303").unwrap(), "+1303");
        assert!(parse_prefix("prefix", "1303").is_err());
    }
}

text_enum!(
    /// What an event did to a number.
    Operation {
        Add = "add",
        Update = "update",
        Delete = "delete",
        Allocate = "allocate",
        Withdraw = "withdraw",
        Transfer = "transfer",
        Assign = "assign",
        Unassign = "unassign",
        Reassign = "reassign",
        Reserve = "reserve",
        Unreserve = "unreserve",
        ReservationExpire = "reservation_expire",
        Release = "release",
        Unbind = "unbind",
        AgingEnd = "aging_end",
    }
);

/// Where a number stands: what history records before and after each event. One number has
/// two types, no more: [`Number`], the row the rules of [`super::lifecycle`] read and return,
/// and this, the part of it an event shows (stored as JSON in the events).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NumberState {
    /// The nil id when the holder is hidden from the reader (see [`NumberEvent::redacted`]).
    pub holder_id: uuid::Uuid,
    pub status: NumberStatus,
    pub assignee: Option<Assignee>,
    pub reservation: Option<Reservation>,
}

impl NumberState {
    /// The state as a reader sees it whose scope does not cover the holder: the holder, and
    /// the assignee and reservation made in it, are hidden; the status stays.
    fn hidden_holder(self) -> Self {
        Self {
            holder_id: Uuid::nil(),
            assignee: None,
            reservation: None,
            ..self
        }
    }

    /// Where a number just added stands: unused in its holder.
    pub fn available(holder_id: uuid::Uuid) -> Self {
        Self {
            holder_id,
            status: NumberStatus::Available,
            assignee: None,
            reservation: None,
        }
    }
}

/// Who made a change: written on every event.
#[derive(Debug, Clone)]
pub struct Actor {
    pub subject: String,
    pub account_id: Option<uuid::Uuid>,
    pub request_id: String,
}

impl Actor {
    /// Background work (expiry, aging).
    pub fn system() -> Self {
        Self {
            subject: "system".into(),
            account_id: None,
            request_id: String::new(),
        }
    }
}

/// The phone keypad: vanity letters to digits.
fn keypad(c: char) -> Option<char> {
    Some(match c.to_ascii_uppercase() {
        'A' | 'B' | 'C' => '2',
        'D' | 'E' | 'F' => '3',
        'G' | 'H' | 'I' => '4',
        'J' | 'K' | 'L' => '5',
        'M' | 'N' | 'O' => '6',
        'P' | 'Q' | 'R' | 'S' => '7',
        'T' | 'U' | 'V' => '8',
        'W' | 'X' | 'Y' | 'Z' => '9',
        _ => return None,
    })
}

/// Turns a search pattern into a LIKE pattern on E.164: `+1303` is a prefix; `?` is one digit
/// and `*` any digits, anchored at both ends; letters are vanity letters (`+1800FLOWERS`).
/// Spaces, dashes, dots and parentheses are ignored.
pub fn search_pattern(field: &str, pattern: &str) -> Result<String> {
    let mut out = String::new();
    let mut wildcard = false;
    let mut digits = 0;
    for (i, c) in pattern.trim().chars().enumerate() {
        match c {
            '+' if i == 0 => out.push('+'),
            '0'..='9' => {
                digits += 1;
                out.push(c);
            }
            '?' => {
                wildcard = true;
                digits += 1;
                out.push('_');
            }
            '*' => {
                wildcard = true;
                out.push('%');
            }
            ' ' | '-' | '.' | '(' | ')' => {}
            c if c.is_ascii_alphabetic() => {
                digits += 1;
                out.push(keypad(c).unwrap_or('0'));
            }
            _ => {
                return Err(Error::invalid(
                    field,
                    format!("{c:?} is not allowed: use digits, letters, ? and *"),
                ));
            }
        }
    }
    if out.is_empty() {
        return Ok("+%".into());
    }
    if !out.starts_with('+') {
        return Err(Error::invalid(field, "start with + and the country code"));
    }
    if digits > 15 || pattern.len() > 64 {
        return Err(Error::invalid(field, "longer than any E.164 number"));
    }
    if !wildcard {
        out.push('%');
    }
    Ok(out)
}

#[cfg(test)]
mod search_tests {
    use super::search_pattern;

    #[test]
    fn patterns_become_like_patterns() {
        assert_eq!(search_pattern("p", "+1303").unwrap(), "+1303%");
        assert_eq!(
            search_pattern("p", "+1 303-555-????").unwrap(),
            "+1303555____"
        );
        assert_eq!(search_pattern("p", "+1*0100").unwrap(), "+1%0100");
        assert_eq!(
            search_pattern("p", "+1800FLOWERS").unwrap(),
            "+18003569377%"
        );
        assert_eq!(search_pattern("p", "").unwrap(), "+%");
        assert!(search_pattern("p", "1303").is_err());
        assert!(search_pattern("p", "+1303%").is_err());
        assert!(search_pattern("p", "+1234567890123456").is_err());
    }
}

/// A number of the inventory, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Number {
    pub id: Uuid,
    /// The provider that added the number; never changes.
    pub owner_id: Uuid,
    pub e164: String,
    pub holder_id: Uuid,
    pub holder_path: String,
    pub status: NumberStatus,
    pub series_id: Option<Uuid>,
    pub attributes: Attributes,
    pub assignee: Option<Assignee>,
    pub reservation: Option<Reservation>,
    pub aging_end_time: Option<SystemTime>,
    pub version: i64,
    pub create_time: SystemTime,
    pub update_time: SystemTime,
}

impl Number {
    /// The path whose accounts see this number. A RETURNED number has left its holder's own
    /// view: only the owner's side sees it until it is unbound.
    pub fn visible_path(&self) -> String {
        if self.status == NumberStatus::Returned {
            super::account::child_path("", self.owner_id)
        } else {
            self.holder_path.clone()
        }
    }

    pub fn state(&self) -> NumberState {
        NumberState {
            holder_id: self.holder_id,
            status: self.status,
            assignee: self.assignee.clone(),
            reservation: self.reservation.clone(),
        }
    }
}

/// One event of a number's history.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberEvent {
    pub seq: i64,
    pub number_id: Uuid,
    pub e164: String,
    pub time: SystemTime,
    pub actor: String,
    pub actor_account_id: Option<Uuid>,
    pub request_id: String,
    pub operation: Option<Operation>,
    pub holder_path: String,
    pub before: Option<NumberState>,
    pub after: Option<NumberState>,
}

impl NumberEvent {
    /// The path whose accounts see this event, as [`Number::visible_path`] says for the number
    /// it left: an event that made the number RETURNED is seen only from the owner's side.
    pub fn visible_path(&self) -> String {
        let returned = self
            .after
            .as_ref()
            .is_some_and(|s| s.status == NumberStatus::Returned);
        match super::account::path_ids(&self.holder_path).first() {
            Some(owner) if returned => super::account::child_path("", *owner),
            _ => self.holder_path.clone(),
        }
    }

    /// The accounts the event names: the holders before and after, the actor's account.
    pub fn accounts_named(&self) -> Vec<Uuid> {
        let states = [&self.before, &self.after];
        let holders = states.into_iter().flatten().map(|s| s.holder_id);
        holders.chain(self.actor_account_id).collect()
    }

    /// The event as a reader sees it whose scope covers only the accounts `in_scope` accepts:
    /// an account outside it is never named. A state whose holder is outside (the sibling a
    /// TRANSFER came from, the parent an ALLOCATE came from) shows its status only, with an
    /// empty holder; the actor's account is left out when it is outside too.
    pub fn redacted(self, in_scope: impl Fn(Uuid) -> bool) -> Self {
        let state = |s: Option<NumberState>| {
            s.map(|s| {
                if in_scope(s.holder_id) {
                    s
                } else {
                    s.hidden_holder()
                }
            })
        };
        Self {
            actor_account_id: self.actor_account_id.filter(|id| in_scope(*id)),
            before: state(self.before),
            after: state(self.after),
            ..self
        }
    }
}
