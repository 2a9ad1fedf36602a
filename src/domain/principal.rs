//! Who is calling, and the single rule of scope: a caller may act on its own account and its
//! descendants, with what its roles allow.

use uuid::Uuid;

use crate::error::{Error, Result};

/// What a caller may do, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads.
    Viewer,
    /// Reads, and assign, unassign, reserve, unreserve.
    Operator,
    /// Everything inside its subtree.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Self::Viewer),
            "operator" => Some(Self::Operator),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// How much a caller may do, as one ordered level: a stored answer is replayed only to a caller
/// with at least the authority of the one who asked first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Authority {
    None,
    Viewer,
    Operator,
    Admin,
    Platform,
}

impl Authority {
    /// The level as stored.
    pub fn level(self) -> i16 {
        self as i16
    }

    /// A stored level; an unknown one is taken as the highest, so it is never replayed to less.
    pub fn from_level(level: i16) -> Self {
        match level {
            0 => Self::None,
            1 => Self::Viewer,
            2 => Self::Operator,
            3 => Self::Admin,
            _ => Self::Platform,
        }
    }
}

/// The caller, as its token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's subject; written as the actor of every event.
    pub subject: String,
    /// The account the caller acts for; `None` for a platform caller without an account.
    pub account_id: Option<Uuid>,
    /// The highest account role the token carries.
    pub role: Option<Role>,
    /// May create providers, and acts on every account.
    pub platform: bool,
}

/// How far from its own account a caller's scope reaches for one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The caller's own account and every account below it.
    OwnOrBelow,
    /// Only the accounts strictly below the caller's own: the parent's call.
    Below,
}

impl Principal {
    /// The caller when authentication is off (loopback only): the platform itself.
    pub fn unauthenticated_platform() -> Self {
        Self {
            subject: "anonymous".into(),
            account_id: None,
            role: Some(Role::Admin),
            platform: true,
        }
    }

    /// Whether the caller has at least `role` (a platform caller has every role).
    pub fn has_role(&self, role: Role) -> bool {
        self.platform || self.role.is_some_and(|r| r >= role)
    }

    /// The single scope check: the caller may act with `role` on an account whose materialised
    /// path is `target_path` (its ancestors' ids and its own, see [`crate::domain::account`]).
    /// [`Reach::Below`] asks for a strict ancestor: the account itself is not enough
    /// (suspending, deleting or setting the quota of one's own account is the parent's call).
    pub fn authorize(&self, target_path: &str, role: Role, reach: Reach) -> Result<()> {
        let strict = reach == Reach::Below;
        if self.platform {
            return Ok(());
        }
        let Some(own) = self.account_id else {
            return Err(Error::PermissionDenied);
        };
        let own = own.simple().to_string();
        let mut ids = target_path.split('/').filter(|s| !s.is_empty());
        let target = target_path.rsplit('/').find(|s| !s.is_empty());
        let in_scope = ids.any(|id| id == own) && !(strict && target == Some(own.as_str()));
        if in_scope && self.has_role(role) {
            Ok(())
        } else {
            Err(Error::PermissionDenied)
        }
    }

    /// Whether the caller acts as the platform (every account in scope).
    pub fn is_platform(&self) -> bool {
        self.platform
    }

    /// The account the caller acts for: its own, or `None` for the platform (whose scope is
    /// every account, whatever account its token names).
    pub fn acting_account(&self) -> Option<Uuid> {
        self.account_id.filter(|_| !self.platform)
    }

    /// The caller's level of authority: the platform's, or its highest role's.
    pub fn authority(&self) -> Authority {
        match (self.platform, self.role) {
            (true, _) => Authority::Platform,
            (false, Some(Role::Admin)) => Authority::Admin,
            (false, Some(Role::Operator)) => Authority::Operator,
            (false, Some(Role::Viewer)) => Authority::Viewer,
            (false, None) => Authority::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::account::child_path;

    fn caller(account: Uuid, role: Role) -> Principal {
        Principal {
            subject: "t".into(),
            account_id: Some(account),
            role: Some(role),
            platform: false,
        }
    }

    #[test]
    fn scope_is_own_account_and_descendants_only() {
        let (root, a, b, a1) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let root_p = child_path("", root);
        let a_p = child_path(&root_p, a);
        let b_p = child_path(&root_p, b);
        let a1_p = child_path(&a_p, a1);
        let p = caller(a, Role::Admin);
        assert!(p.authorize(&a_p, Role::Admin, Reach::OwnOrBelow).is_ok());
        assert!(p.authorize(&a1_p, Role::Admin, Reach::Below).is_ok());
        assert_eq!(
            p.authorize(&a_p, Role::Admin, Reach::Below),
            Err(Error::PermissionDenied)
        );
        assert_eq!(
            p.authorize(&root_p, Role::Viewer, Reach::OwnOrBelow),
            Err(Error::PermissionDenied)
        );
        assert_eq!(
            p.authorize(&b_p, Role::Viewer, Reach::OwnOrBelow),
            Err(Error::PermissionDenied)
        );
    }

    #[test]
    fn roles_are_ordered_viewer_operator_admin() {
        let a = Uuid::new_v4();
        let path = child_path("", a);
        let viewer = caller(a, Role::Viewer);
        assert!(
            viewer
                .authorize(&path, Role::Viewer, Reach::OwnOrBelow)
                .is_ok()
        );
        assert_eq!(
            viewer.authorize(&path, Role::Operator, Reach::OwnOrBelow),
            Err(Error::PermissionDenied)
        );
        let operator = caller(a, Role::Operator);
        assert!(
            operator
                .authorize(&path, Role::Operator, Reach::OwnOrBelow)
                .is_ok()
        );
        assert_eq!(
            operator.authorize(&path, Role::Admin, Reach::OwnOrBelow),
            Err(Error::PermissionDenied)
        );
    }
}
