//! Accounts: the tree's materialised path, states, settings and their validation.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use uuid::Uuid;

use super::validate::Violations;

/// Longest aging period a provider may set.
pub const MAX_AGING_PERIOD: Duration = Duration::from_secs(3650 * 24 * 3600);

/// The materialised path of a child: the parent's path and the child's id, `/`-separated, with a
/// trailing `/`, so that "A is B or an ancestor of B" is `B.path LIKE A.path || '%'`.
pub fn child_path(parent_path: &str, id: Uuid) -> String {
    let parent = if parent_path.is_empty() {
        "/"
    } else {
        parent_path
    };
    format!("{parent}{}/", id.simple())
}

/// The ids on a path, from the provider down.
pub fn path_ids(path: &str) -> Vec<Uuid> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .filter_map(|s| Uuid::parse_str(s).ok())
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountState {
    Active,
    Suspended,
    Closed,
}

impl AccountState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

/// The fields of an account a caller sets, already validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountFields {
    pub display_name: String,
    pub kind: String,
    pub external_ref: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub max_numbers: Option<i64>,
    pub aging_period: Duration,
}

/// Checks the settable fields of an account; `prefix` names them (`account.`).
pub fn validate_fields(v: &mut Violations, prefix: &str, f: &AccountFields, names: &[&str]) {
    for name in names {
        let field = format!("{prefix}{name}");
        match *name {
            "display_name" => v.text(&field, &f.display_name, true, 256),
            "kind" => v.text(&field, &f.kind, false, 64),
            "external_ref" => v.text(&field, f.external_ref.as_deref().unwrap_or(""), false, 256),
            "labels" => v.labels(&field, &f.labels),
            "max_numbers" => {
                if f.max_numbers.is_some_and(|m| m < 0) {
                    v.add(field, "must not be negative");
                }
            }
            "aging_period" => {
                if f.aging_period > MAX_AGING_PERIOD {
                    v.add(field, "at most 3650 days");
                }
            }
            other => v.add(
                format!("update_mask.{other}"),
                "not a field that can be updated",
            ),
        }
    }
}

/// The fields UpdateAccount may name.
pub const UPDATABLE: &[&str] = &[
    "display_name",
    "kind",
    "external_ref",
    "labels",
    "max_numbers",
    "aging_period",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_path_extends_its_parents() {
        let (p, c) = (Uuid::new_v4(), Uuid::new_v4());
        let pp = child_path("", p);
        let cp = child_path(&pp, c);
        assert!(cp.starts_with(&pp));
        assert_eq!(path_ids(&cp), vec![p, c]);
    }
}

/// An account of the tree, as stored.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: Uuid,
    pub provider_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub path: String,
    pub depth: i32,
    pub seq: i64,
    pub fields: AccountFields,
    pub state: AccountState,
    pub version: i64,
    pub create_time: SystemTime,
    pub update_time: SystemTime,
}
