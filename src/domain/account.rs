//! Accounts: the tree's materialised path, states, settings and their validation.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use uuid::Uuid;

use super::validate::Violations;
use crate::error::{Error, Precondition, Result};

/// Longest aging period a provider may set.
pub const MAX_AGING_PERIOD: Duration = Duration::from_secs(3650 * 24 * 3600);

/// Most levels below a provider (the provider is depth 0). Each level adds 33 bytes to the
/// materialised path, and PostgreSQL's btree refuses an `accounts_path` entry above 2,704
/// bytes: depth 81 failed. 32 leaves room, and more than any organisation chart needs.
pub const MAX_DEPTH: i32 = 32;

/// Whether `parent` may have children: not at [`MAX_DEPTH`].
pub fn require_room_below(parent: &Account) -> Result<()> {
    if parent.depth >= MAX_DEPTH {
        return Err(Error::precondition(
            "ACCOUNT_TREE_TOO_DEEP",
            format!("accounts/{}", parent.id),
            format!("an account tree is at most {MAX_DEPTH} levels below its provider"),
        ));
    }
    Ok(())
}

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

/// Whether the account at `path` is the account at `ancestor` or below it.
pub fn is_within(path: &str, ancestor: &str) -> bool {
    path.starts_with(ancestor)
}

/// The path of an account's parent; `None` for a provider.
pub fn parent_path(path: &str) -> Option<&str> {
    let trimmed = path.strip_suffix('/')?;
    let cut = trimmed.rfind('/')?;
    (cut > 0).then(|| &path[..=cut])
}

/// The path of the lowest account that both paths are at or below; `None` across trees.
pub fn common_ancestor(a: &str, b: &str) -> Option<String> {
    let mut common = String::from("/");
    for (x, y) in a
        .split('/')
        .filter(|s| !s.is_empty())
        .zip(b.split('/').filter(|s| !s.is_empty()))
    {
        if x != y {
            break;
        }
        common.push_str(x);
        common.push('/');
    }
    (common.len() > 1).then_some(common)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
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

impl AccountFields {
    /// Takes from `incoming` the fields `paths` name (an update mask already checked). Only a
    /// provider has an aging period.
    pub fn merge(
        &mut self,
        incoming: &AccountFields,
        paths: &[String],
        is_provider: bool,
    ) -> Result<()> {
        for path in paths {
            match path.as_str() {
                "display_name" => self.display_name = incoming.display_name.clone(),
                "kind" => self.kind = incoming.kind.clone(),
                "external_ref" => self.external_ref = incoming.external_ref.clone(),
                "labels" => self.labels = incoming.labels.clone(),
                "max_numbers" => self.max_numbers = incoming.max_numbers,
                "aging_period" if !is_provider => {
                    return Err(Error::invalid(
                        "account.aging_period",
                        "only a provider (an account without a parent) has an aging period",
                    ));
                }
                "aging_period" => self.aging_period = incoming.aging_period,
                _ => {}
            }
        }
        Ok(())
    }
}

/// An account is deleted only when nothing is in its way: no child accounts, no numbers held.
/// The error names everything that is.
pub fn require_empty(id: Uuid, children: i64, numbers: i64) -> Result<()> {
    let mut in_the_way = Vec::new();
    if children > 0 {
        in_the_way.push(Precondition {
            kind: "ACCOUNT_HAS_CHILDREN",
            subject: format!("accounts/{id}"),
            description: format!("the account has {children} child accounts"),
        });
    }
    if numbers > 0 {
        in_the_way.push(Precondition {
            kind: "ACCOUNT_HOLDS_NUMBERS",
            subject: format!("accounts/{id}"),
            description: format!("the account holds {numbers} numbers"),
        });
    }
    if in_the_way.is_empty() {
        Ok(())
    } else {
        Err(Error::FailedPrecondition(in_the_way))
    }
}

/// Most numbers a refusal to close an account names.
pub const NAMED_IN_THE_WAY: i64 = 10;

/// An account is closed only once its subtree holds no number: each one still there is in the
/// way (the first few named, and how many there are in all).
pub fn require_no_numbers(id: Uuid, total: i64, first: &[String]) -> Result<()> {
    if total == 0 {
        return Ok(());
    }
    let mut in_the_way = vec![Precondition {
        kind: "ACCOUNT_HOLDS_NUMBERS",
        subject: format!("accounts/{id}"),
        description: format!(
            "the account's subtree holds {total} numbers: withdraw them before closing it"
        ),
    }];
    in_the_way.extend(first.iter().map(|e164| Precondition {
        kind: "ACCOUNT_HOLDS_NUMBERS",
        subject: format!("numbers/{e164}"),
        description: "the number is still held in the account's subtree".to_string(),
    }));
    Err(Error::FailedPrecondition(in_the_way))
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

/// An account of the tree, as stored (and, in JSON, as its events show it before and after).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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
