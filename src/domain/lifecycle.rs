//! The life of a number: which move each status allows, where a move leaves the number, and the
//! account rules around moves (receiving accounts, quotas, the tree). Pure rules: the store loads
//! and saves, the adapters translate; nothing here touches SQL or gRPC.

use std::time::{Duration, SystemTime};

use uuid::Uuid;

use super::account::{Account, AccountState, is_within};
use super::number::{Assignee, Number, NumberStatus, Operation, Reservation};
use super::validate::Violations;
use crate::error::{Error, Result};

/// An account a move sends a number to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: Uuid,
    pub path: String,
}

impl Target {
    pub fn of(a: &Account) -> Self {
        Target {
            id: a.id,
            path: a.path.clone(),
        }
    }
}

/// One move in the life of a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    /// Down the tree, from the holder `from` to its descendant `to`. A reserved number keeps its
    /// reservation.
    Allocate {
        from: Uuid,
        to: Target,
    },
    /// An unused number from `from` back up to its immediate parent `to`.
    Withdraw {
        from: Uuid,
        to: Target,
    },
    /// An unused number from `from` to `to`, elsewhere in the same tree.
    Transfer {
        from: Uuid,
        to: Target,
    },
    /// In use by `assignee`, whose account `to` is the holder or below it (then the number moves
    /// down with the assignment).
    Assign {
        assignee: Assignee,
        to: Target,
        override_reservation: bool,
    },
    Unassign,
    /// From one assignee to another in one step; `to` as for `Assign`.
    Reassign {
        assignee: Assignee,
        to: Target,
    },
    Reserve(Reservation),
    Unreserve,
    /// A sub-account gives an unused number back to the provider: RETURNED.
    Release,
    /// The owner takes a RETURNED number back: AVAILABLE, or AGING for its aging period.
    Unbind {
        owner_path: String,
        aging_period: Duration,
        now: SystemTime,
    },
    /// The sweeper ends a reservation whose time is up.
    ExpireReservation {
        now: SystemTime,
    },
    /// The sweeper ends an aging period that is over.
    EndAging {
        now: SystemTime,
    },
}

impl Move {
    /// What history calls this move.
    pub fn operation(&self) -> Operation {
        match self {
            Move::Allocate { .. } => Operation::Allocate,
            Move::Withdraw { .. } => Operation::Withdraw,
            Move::Transfer { .. } => Operation::Transfer,
            Move::Assign { .. } => Operation::Assign,
            Move::Unassign => Operation::Unassign,
            Move::Reassign { .. } => Operation::Reassign,
            Move::Reserve(_) => Operation::Reserve,
            Move::Unreserve => Operation::Unreserve,
            Move::Release => Operation::Release,
            Move::Unbind { .. } => Operation::Unbind,
            Move::ExpireReservation { .. } => Operation::ReservationExpire,
            Move::EndAging { .. } => Operation::AgingEnd,
        }
    }
}

/// The statuses a move starts from.
#[derive(Clone, Copy)]
enum Needs {
    /// AVAILABLE: held and unused.
    Unused,
    /// AVAILABLE or RESERVED: a reservation travels with the number.
    UnusedOrReserved,
    Exactly(NumberStatus),
}

fn subject(s: &Number) -> String {
    format!("numbers/{}", s.e164)
}

fn broken(s: &Number, kind: &'static str, description: impl Into<String>) -> Error {
    Error::precondition(kind, subject(s), description)
}

/// The rule a number's status breaks, named by what the number is (NUMBER_ASSIGNED) when the
/// move wants it unused, or by what it is not (NUMBER_NOT_RESERVED) when the move wants one
/// particular status.
fn require(s: &Number, needs: Needs) -> Result<()> {
    let ok = match needs {
        Needs::Unused => s.status == NumberStatus::Available,
        Needs::UnusedOrReserved => {
            matches!(s.status, NumberStatus::Available | NumberStatus::Reserved)
        }
        Needs::Exactly(status) => s.status == status,
    };
    if ok {
        return Ok(());
    }
    if let Needs::Exactly(wanted) = needs {
        let kind = match wanted {
            NumberStatus::Assigned => "NUMBER_NOT_ASSIGNED",
            NumberStatus::Reserved => "NUMBER_NOT_RESERVED",
            NumberStatus::Returned => "NUMBER_NOT_RETURNED",
            NumberStatus::Aging => "NUMBER_NOT_AGING",
            NumberStatus::Available => "NUMBER_NOT_AVAILABLE",
            NumberStatus::Deleted => "NUMBER_NOT_DELETED",
        };
        return Err(broken(
            s,
            kind,
            format!(
                "the number is {}, not {}",
                s.status.as_str(),
                wanted.as_str()
            ),
        ));
    }
    let (kind, description) = match s.status {
        NumberStatus::Assigned => (
            "NUMBER_ASSIGNED",
            format!(
                "the number is assigned to {}",
                s.assignee.as_ref().map_or_else(String::new, |a| format!(
                    "{} {}",
                    a.kind.as_str(),
                    a.id
                ))
            ),
        ),
        NumberStatus::Reserved => (
            "NUMBER_RESERVED",
            format!(
                "the number is reserved for {}",
                s.reservation
                    .as_ref()
                    .map_or("", |r| r.reserved_for.as_str())
            ),
        ),
        NumberStatus::Returned => (
            "NUMBER_RETURNED",
            "the number was released and waits for the provider to unbind it".to_string(),
        ),
        NumberStatus::Aging => (
            "NUMBER_AGING",
            "the number is aging and cannot be used until its aging period ends".to_string(),
        ),
        NumberStatus::Deleted => ("NUMBER_DELETED", "the number is deleted".to_string()),
        NumberStatus::Available => ("NUMBER_AVAILABLE", "the number is unused".to_string()),
    };
    Err(broken(s, kind, description))
}

fn require_holder(s: &Number, account: Uuid) -> Result<()> {
    if s.holder_id == account {
        Ok(())
    } else {
        Err(broken(
            s,
            "NUMBER_NOT_HELD_BY_ACCOUNT",
            format!("the number is not held by account {account}"),
        ))
    }
}

/// The account an assignee belongs to must be in the holder's tree, so the number can follow:
/// down from the holder, or through the lowest common ancestor of the two.
fn require_in_holders_tree(s: &Number, to: &Target) -> Result<()> {
    if entry_path(s, to).is_some() {
        Ok(())
    } else {
        Err(broken(
            s,
            "ACCOUNTS_IN_DIFFERENT_TREES",
            format!(
                "account {} is not in the tree of the account that holds the number",
                to.id
            ),
        ))
    }
}

/// Where a number going from its holder to `to` enters the accounts it was not in yet: the
/// holder itself when `to` is the holder or below it, otherwise the lowest common ancestor of
/// the two (the number goes up to it and down again). `None` when they share no tree.
pub fn entry_path(s: &Number, to: &Target) -> Option<String> {
    if is_within(&to.path, &s.holder_path) {
        return Some(s.holder_path.clone());
    }
    super::account::common_ancestor(&s.holder_path, &to.path)
}

/// Whether a reservation is for this assignee: its `reserved_for` names the assignee's id,
/// alone or as `kind:id` (`user:42`, `agent:7`).
pub fn reserved_for(reservation: &Reservation, a: &Assignee) -> bool {
    let r = reservation.reserved_for.as_str();
    r == a.id
        || r.strip_prefix(a.kind.as_str())
            .and_then(|rest| rest.strip_prefix(':'))
            == Some(a.id.as_str())
}

fn moved_to(s: &Number, to: &Target) -> Number {
    Number {
        holder_id: to.id,
        holder_path: to.path.clone(),
        ..s.clone()
    }
}

fn available(s: &Number) -> Number {
    Number {
        status: NumberStatus::Available,
        assignee: None,
        reservation: None,
        aging_end_time: None,
        ..s.clone()
    }
}

fn assigned(s: &Number, assignee: &Assignee, to: &Target) -> Number {
    Number {
        status: NumberStatus::Assigned,
        assignee: Some(Assignee {
            account_id: Some(to.id),
            ..assignee.clone()
        }),
        reservation: None,
        ..moved_to(s, to)
    }
}

/// Where `m` leaves the number `s`, or the rule it breaks.
pub fn next(s: &Number, m: &Move) -> Result<Number> {
    match m {
        Move::Allocate { from, to } => {
            require_holder(s, *from)?;
            require(s, Needs::UnusedOrReserved)?;
            Ok(moved_to(s, to))
        }
        Move::Withdraw { from, to } | Move::Transfer { from, to } => {
            require_holder(s, *from)?;
            require(s, Needs::Unused)?;
            Ok(moved_to(s, to))
        }
        Move::Assign {
            assignee,
            to,
            override_reservation,
        } => {
            require(s, Needs::UnusedOrReserved)?;
            require_in_holders_tree(s, to)?;
            if let Some(r) = &s.reservation
                && s.status == NumberStatus::Reserved
                && !override_reservation
                && !reserved_for(r, assignee)
            {
                return Err(broken(
                    s,
                    "NUMBER_RESERVED_FOR_ANOTHER",
                    format!(
                        "the number is reserved for {}; set override_reservation to assign it to {}:{}",
                        r.reserved_for,
                        assignee.kind.as_str(),
                        assignee.id
                    ),
                ));
            }
            Ok(assigned(s, assignee, to))
        }
        Move::Unassign => {
            require(s, Needs::Exactly(NumberStatus::Assigned))?;
            Ok(available(s))
        }
        Move::Reassign { assignee, to } => {
            require(s, Needs::Exactly(NumberStatus::Assigned))?;
            require_in_holders_tree(s, to)?;
            Ok(assigned(s, assignee, to))
        }
        Move::Reserve(reservation) => {
            require(s, Needs::Unused)?;
            Ok(Number {
                status: NumberStatus::Reserved,
                reservation: Some(reservation.clone()),
                ..s.clone()
            })
        }
        Move::Unreserve => {
            require(s, Needs::Exactly(NumberStatus::Reserved))?;
            Ok(available(s))
        }
        Move::Release => {
            if s.holder_id == s.owner_id {
                return Err(broken(
                    s,
                    "NUMBER_HELD_BY_OWNER",
                    "the provider holds the number itself: there is no one to release it to",
                ));
            }
            require(s, Needs::Unused)?;
            Ok(Number {
                status: NumberStatus::Returned,
                ..s.clone()
            })
        }
        Move::Unbind {
            owner_path,
            aging_period,
            now,
        } => {
            require(s, Needs::Exactly(NumberStatus::Returned))?;
            let home = Target {
                id: s.owner_id,
                path: owner_path.clone(),
            };
            let back = available(&moved_to(s, &home));
            if aging_period.is_zero() {
                return Ok(back);
            }
            Ok(Number {
                status: NumberStatus::Aging,
                aging_end_time: Some(*now + *aging_period),
                ..back
            })
        }
        Move::ExpireReservation { now } => {
            require(s, Needs::Exactly(NumberStatus::Reserved))?;
            let expired = s
                .reservation
                .as_ref()
                .and_then(|r| r.expire_time)
                .is_some_and(|t| t <= *now);
            if !expired {
                return Err(broken(
                    s,
                    "RESERVATION_NOT_EXPIRED",
                    "the reservation has not expired",
                ));
            }
            Ok(available(s))
        }
        Move::EndAging { now } => {
            require(s, Needs::Exactly(NumberStatus::Aging))?;
            if s.aging_end_time.is_some_and(|t| t > *now) {
                return Err(broken(s, "AGING_NOT_OVER", "the aging period is not over"));
            }
            Ok(available(s))
        }
    }
}

/// A number asked about at a time before it was added to the inventory.
pub fn not_yet_added(n: &Number) -> Error {
    broken(
        n,
        "NUMBER_NOT_YET_ADDED",
        "the number was added to the inventory after the time asked: it had no state then",
    )
}

/// Applies `m` to every number and answers every rule broken, so one error names them all.
pub fn next_all(numbers: &[Number], m: &Move) -> Result<Vec<Number>> {
    let mut after = Vec::with_capacity(numbers.len());
    let mut broken = Vec::new();
    for s in numbers {
        match next(s, m) {
            Ok(a) => after.push(a),
            Err(Error::FailedPrecondition(v)) => broken.extend(v),
            Err(e) => return Err(e),
        }
    }
    if broken.is_empty() {
        Ok(after)
    } else {
        Err(Error::FailedPrecondition(broken))
    }
}

/// Numbers and series belong to providers (accounts without a parent).
pub fn require_provider(a: &Account) -> Result<()> {
    if a.parent_id.is_none() {
        return Ok(());
    }
    Err(Error::precondition(
        "NOT_A_PROVIDER",
        format!("accounts/{}", a.id),
        "numbers and series belong to providers (accounts without a parent)",
    ))
}

/// A number goes only to accounts of its owner's tree.
pub fn require_in_tree(owner: &Account, holder: &Account) -> Result<()> {
    if holder.provider_id == owner.id {
        return Ok(());
    }
    Err(Error::precondition(
        "OUTSIDE_OWNER_TREE",
        format!("accounts/{}", holder.id),
        "the account is not in the owner's tree",
    ))
}

/// A deleted number keeps its history but changes no more.
pub fn require_live(n: &Number) -> Result<()> {
    if n.status != NumberStatus::Deleted {
        return Ok(());
    }
    Err(broken(n, "NUMBER_DELETED", "the number is deleted"))
}

/// Where deleting leaves a number: only its owner deletes it, only while the owner itself
/// holds it and it is available or aging.
pub fn deleted(n: &Number) -> Result<Number> {
    if n.holder_id != n.owner_id {
        return Err(broken(
            n,
            "NUMBER_HELD_BY_SUB_ACCOUNT",
            "the number is held by a sub-account: withdraw it first",
        ));
    }
    match n.status {
        NumberStatus::Available | NumberStatus::Aging => Ok(Number {
            status: NumberStatus::Deleted,
            assignee: None,
            reservation: None,
            aging_end_time: None,
            ..n.clone()
        }),
        NumberStatus::Deleted => Err(broken(n, "NUMBER_DELETED", "the number is already deleted")),
        other => Err(broken(
            n,
            "NUMBER_IN_USE",
            format!(
                "the number is {}: only available or aging numbers can be deleted",
                other.as_str()
            ),
        )),
    }
}

/// An account that receives numbers (directly, or below it) must be active: a suspended or
/// closed account keeps what it has but gets nothing new.
pub fn require_active(id: Uuid, state: AccountState) -> Result<()> {
    if state == AccountState::Active {
        Ok(())
    } else {
        Err(not_active(id, state))
    }
}

/// A suspended or closed account freezes its whole subtree: nothing new goes into it or
/// anywhere below it. `inactive` is the first account on the path, from the provider down,
/// that is not active; the refusal names it.
pub fn require_unfrozen(inactive: Option<(Uuid, AccountState)>) -> Result<()> {
    match inactive {
        Some((id, state)) => Err(not_active(id, state)),
        None => Ok(()),
    }
}

/// The account is suspended or closed: nothing new goes into it.
pub fn not_active(id: Uuid, state: AccountState) -> Error {
    Error::precondition(
        "ACCOUNT_NOT_ACTIVE",
        format!("accounts/{id}"),
        format!("the account is {}", state.as_str()),
    )
}

/// Numbers go down from an account only to its descendants.
pub fn require_descendant(from: &Target, to: &Target) -> Result<()> {
    if to.id != from.id && is_within(&to.path, &from.path) {
        Ok(())
    } else {
        Err(Error::precondition(
            "ACCOUNT_NOT_A_DESCENDANT",
            format!("accounts/{}", to.id),
            format!("the account is not below account {}", from.id),
        ))
    }
}

/// A quota counts the numbers of the account's whole subtree.
pub fn require_quota(id: Uuid, max: i64, held: i64, incoming: i64) -> Result<()> {
    if held + incoming <= max {
        Ok(())
    } else {
        Err(Error::QuotaExceeded {
            subject: format!("accounts/{id}"),
            description: format!(
                "the account may hold {max} numbers (its sub-accounts included); it holds {held} and {incoming} more were asked"
            ),
        })
    }
}

/// Asked for more unused numbers than there are: nothing moves, and the answer says how many.
pub fn not_enough(account: Uuid, asked: i64, unused: i64, within: &str) -> Error {
    Error::precondition(
        "NOT_ENOUGH_NUMBERS",
        format!("accounts/{account}"),
        format!("asked for {asked} numbers{within}; the account has {unused} unused"),
    )
}

pub const MAX_TEXT: usize = 256;
pub const MAX_TAG: usize = 64;
pub const MAX_NOTE: usize = 1024;

/// Checks an assignee a caller sent; `field` names it (`assignee`). Its kind is typed: the
/// edge that reads it refuses a missing one.
pub fn validate_assignee(v: &mut Violations, field: &str, a: &Assignee) {
    v.text(&format!("{field}.id"), &a.id, true, MAX_TEXT);
    v.text(
        &format!("{field}.display_name"),
        &a.display_name,
        false,
        MAX_TEXT,
    );
}

/// Checks a reservation a caller sent; an expiry must lie ahead of `now`.
pub fn validate_reservation(v: &mut Violations, field: &str, r: &Reservation, now: SystemTime) {
    v.text(
        &format!("{field}.reserved_for"),
        &r.reserved_for,
        true,
        MAX_TEXT,
    );
    v.text(&format!("{field}.tag"), &r.tag, false, MAX_TAG);
    v.text(&format!("{field}.note"), &r.note, false, MAX_NOTE);
    if r.expire_time.is_some_and(|t| t <= now) {
        v.add(format!("{field}.expire_time"), "must lie in the future");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::account::child_path;
    use crate::domain::account::{common_ancestor, parent_path};
    use crate::domain::number::AssigneeKind;

    struct Tree {
        provider: Target,
        a: Target,
        a1: Target,
        b: Target,
    }

    fn target(parent: Option<&Target>) -> Target {
        let id = Uuid::new_v4();
        Target {
            id,
            path: child_path(parent.map_or("", |p| p.path.as_str()), id),
        }
    }

    fn tree() -> Tree {
        let provider = target(None);
        let a = target(Some(&provider));
        let a1 = target(Some(&a));
        let b = target(Some(&provider));
        Tree { provider, a, a1, b }
    }

    fn held_by(t: &Target, owner: &Target, status: NumberStatus) -> Number {
        Number {
            id: Uuid::new_v4(),
            e164: "+13035550100".into(),
            owner_id: owner.id,
            holder_id: t.id,
            holder_path: t.path.clone(),
            status,
            series_id: None,
            attributes: Default::default(),
            assignee: None,
            reservation: None,
            aging_end_time: None,
            version: 1,
            create_time: SystemTime::UNIX_EPOCH,
            update_time: SystemTime::UNIX_EPOCH,
        }
    }

    fn agent(id: &str) -> Assignee {
        Assignee {
            kind: AssigneeKind::Agent,
            id: id.into(),
            display_name: String::new(),
            account_id: None,
        }
    }

    fn reservation(for_whom: &str, expire_time: Option<SystemTime>) -> Reservation {
        Reservation {
            reserved_for: for_whom.into(),
            tag: "vip".into(),
            note: String::new(),
            expire_time,
        }
    }

    fn kind(r: Result<Number>) -> &'static str {
        match r {
            Err(Error::FailedPrecondition(v)) => v[0].kind,
            other => panic!("expected a broken rule, got {other:?}"),
        }
    }

    #[test]
    fn allocate_moves_the_holder_and_keeps_status_and_reservation() {
        let t = tree();
        let mut s = held_by(&t.provider, &t.provider, NumberStatus::Reserved);
        s.reservation = Some(reservation("role:reception", None));
        let m = Move::Allocate {
            from: t.provider.id,
            to: t.a1.clone(),
        };
        let after = next(&s, &m).unwrap();
        assert_eq!(after.holder_id, t.a1.id);
        assert_eq!(after.holder_path, t.a1.path);
        assert_eq!(after.status, NumberStatus::Reserved);
        assert_eq!(after.reservation, s.reservation);
        assert_eq!(m.operation(), Operation::Allocate);
    }

    #[test]
    fn only_unused_numbers_of_the_source_are_allocated_withdrawn_or_transferred() {
        let t = tree();
        let allocate = Move::Allocate {
            from: t.provider.id,
            to: t.a.clone(),
        };
        let withdraw = Move::Withdraw {
            from: t.a.id,
            to: t.provider.clone(),
        };
        let transfer = Move::Transfer {
            from: t.a.id,
            to: t.b.clone(),
        };
        let elsewhere = held_by(&t.b, &t.provider, NumberStatus::Available);
        assert_eq!(
            kind(next(&elsewhere, &allocate)),
            "NUMBER_NOT_HELD_BY_ACCOUNT"
        );
        assert_eq!(
            kind(next(&elsewhere, &withdraw)),
            "NUMBER_NOT_HELD_BY_ACCOUNT"
        );
        for (status, expected) in [
            (NumberStatus::Assigned, "NUMBER_ASSIGNED"),
            (NumberStatus::Returned, "NUMBER_RETURNED"),
            (NumberStatus::Aging, "NUMBER_AGING"),
            (NumberStatus::Deleted, "NUMBER_DELETED"),
        ] {
            let s = held_by(&t.provider, &t.provider, status);
            assert_eq!(kind(next(&s, &allocate)), expected);
            let s = held_by(&t.a, &t.provider, status);
            assert_eq!(kind(next(&s, &withdraw)), expected);
            assert_eq!(kind(next(&s, &transfer)), expected);
        }
        // A reservation travels down with an allocation, but pins the number where it is
        // against withdraw and transfer.
        let reserved = held_by(&t.a, &t.provider, NumberStatus::Reserved);
        assert_eq!(kind(next(&reserved, &withdraw)), "NUMBER_RESERVED");
        assert_eq!(kind(next(&reserved, &transfer)), "NUMBER_RESERVED");
    }

    #[test]
    fn assign_below_the_holder_moves_the_number_down_with_the_assignment() {
        let t = tree();
        let s = held_by(&t.provider, &t.provider, NumberStatus::Available);
        let after = next(
            &s,
            &Move::Assign {
                assignee: agent("7"),
                to: t.a1.clone(),
                override_reservation: false,
            },
        )
        .unwrap();
        assert_eq!(after.holder_id, t.a1.id);
        assert_eq!(after.status, NumberStatus::Assigned);
        assert_eq!(after.assignee.unwrap().account_id, Some(t.a1.id));
    }

    #[test]
    fn an_assignee_elsewhere_in_the_tree_takes_the_number_through_the_common_ancestor() {
        let t = tree();
        let s = held_by(&t.a1, &t.provider, NumberStatus::Available);
        for to in [&t.b, &t.provider, &t.a] {
            let m = Move::Assign {
                assignee: agent("7"),
                to: to.clone(),
                override_reservation: false,
            };
            let after = next(&s, &m).unwrap();
            assert_eq!(after.holder_id, to.id);
            assert_eq!(after.status, NumberStatus::Assigned);
        }
        assert_eq!(entry_path(&s, &t.b), Some(t.provider.path.clone()));
        assert_eq!(entry_path(&s, &t.a1), Some(t.a1.path.clone()));
    }

    #[test]
    fn an_assignee_in_another_tree_is_refused() {
        let t = tree();
        let other = target(None);
        let s = held_by(&t.a, &t.provider, NumberStatus::Assigned);
        let m = Move::Reassign {
            assignee: agent("7"),
            to: other,
        };
        assert_eq!(kind(next(&s, &m)), "ACCOUNTS_IN_DIFFERENT_TREES");
    }

    #[test]
    fn a_reserved_number_goes_only_to_whom_it_is_reserved_for_unless_overridden() {
        let t = tree();
        let mut s = held_by(&t.a, &t.provider, NumberStatus::Reserved);
        s.reservation = Some(reservation("agent:7", None));
        let assign = |id: &str, override_reservation| Move::Assign {
            assignee: agent(id),
            to: t.a.clone(),
            override_reservation,
        };
        assert_eq!(
            kind(next(&s, &assign("8", false))),
            "NUMBER_RESERVED_FOR_ANOTHER"
        );
        let after = next(&s, &assign("7", false)).unwrap();
        assert_eq!(after.status, NumberStatus::Assigned);
        assert_eq!(after.reservation, None);
        assert!(next(&s, &assign("8", true)).is_ok());
        s.reservation = Some(reservation("7", None));
        assert!(next(&s, &assign("7", false)).is_ok());
        let user_7 = Assignee {
            kind: AssigneeKind::User,
            ..agent("7")
        };
        assert!(!reserved_for(&reservation("agent:7", None), &user_7));
    }

    #[test]
    fn unassign_reassign_reserve_and_unreserve_need_their_status() {
        let t = tree();
        let free = held_by(&t.a, &t.provider, NumberStatus::Available);
        assert_eq!(kind(next(&free, &Move::Unassign)), "NUMBER_NOT_ASSIGNED");
        assert_eq!(
            kind(next(
                &free,
                &Move::Reassign {
                    assignee: agent("1"),
                    to: t.a.clone()
                }
            )),
            "NUMBER_NOT_ASSIGNED"
        );
        assert_eq!(kind(next(&free, &Move::Unreserve)), "NUMBER_NOT_RESERVED");
        let reserved = next(&free, &Move::Reserve(reservation("user:1", None))).unwrap();
        assert_eq!(reserved.status, NumberStatus::Reserved);
        assert_eq!(
            kind(next(&reserved, &Move::Reserve(reservation("user:2", None)))),
            "NUMBER_RESERVED"
        );
        assert_eq!(next(&reserved, &Move::Unreserve).unwrap(), free);
    }

    #[test]
    fn release_needs_an_unused_number_below_its_owner() {
        let t = tree();
        let own = held_by(&t.provider, &t.provider, NumberStatus::Available);
        assert_eq!(kind(next(&own, &Move::Release)), "NUMBER_HELD_BY_OWNER");
        for (status, expected) in [
            (NumberStatus::Assigned, "NUMBER_ASSIGNED"),
            (NumberStatus::Reserved, "NUMBER_RESERVED"),
            (NumberStatus::Returned, "NUMBER_RETURNED"),
        ] {
            let s = held_by(&t.a1, &t.provider, status);
            assert_eq!(kind(next(&s, &Move::Release)), expected);
        }
        let s = held_by(&t.a1, &t.provider, NumberStatus::Available);
        let after = next(&s, &Move::Release).unwrap();
        assert_eq!(after.status, NumberStatus::Returned);
        assert_eq!(after.holder_id, t.a1.id);
    }

    #[test]
    fn unbind_brings_a_returned_number_home_available_or_aging() {
        let t = tree();
        let now = SystemTime::now();
        let unbind = |days: u64| Move::Unbind {
            owner_path: t.provider.path.clone(),
            aging_period: Duration::from_secs(days * 86400),
            now,
        };
        let unused = held_by(&t.a1, &t.provider, NumberStatus::Available);
        assert_eq!(kind(next(&unused, &unbind(0))), "NUMBER_NOT_RETURNED");
        let returned = held_by(&t.a1, &t.provider, NumberStatus::Returned);
        let back = next(&returned, &unbind(0)).unwrap();
        assert_eq!(back.holder_id, t.provider.id);
        assert_eq!(back.holder_path, t.provider.path);
        assert_eq!(back.status, NumberStatus::Available);
        let aging = next(&returned, &unbind(45)).unwrap();
        assert_eq!(aging.status, NumberStatus::Aging);
        assert_eq!(
            aging.aging_end_time,
            Some(now + Duration::from_secs(45 * 86400))
        );
    }

    #[test]
    fn the_sweeper_ends_only_reservations_and_aging_whose_time_is_up() {
        let t = tree();
        let now = SystemTime::now();
        let mut reserved = held_by(&t.a, &t.provider, NumberStatus::Reserved);
        reserved.reservation = Some(reservation("x", Some(now + Duration::from_secs(60))));
        let expire = |now| Move::ExpireReservation { now };
        assert_eq!(
            kind(next(&reserved, &expire(now))),
            "RESERVATION_NOT_EXPIRED"
        );
        let freed = next(&reserved, &expire(now + Duration::from_secs(61))).unwrap();
        assert_eq!(freed.status, NumberStatus::Available);
        assert_eq!(freed.reservation, None);

        let mut aging = held_by(&t.provider, &t.provider, NumberStatus::Aging);
        aging.aging_end_time = Some(now + Duration::from_secs(60));
        assert_eq!(
            kind(next(&aging, &Move::EndAging { now })),
            "AGING_NOT_OVER"
        );
        let later = now + Duration::from_secs(60);
        let aged = next(&aging, &Move::EndAging { now: later }).unwrap();
        assert_eq!(aged.status, NumberStatus::Available);
        assert_eq!(aged.aging_end_time, None);
    }

    #[test]
    fn every_broken_rule_of_a_list_is_named() {
        let t = tree();
        let numbers = [
            held_by(&t.provider, &t.provider, NumberStatus::Available),
            held_by(&t.provider, &t.provider, NumberStatus::Assigned),
            held_by(&t.b, &t.provider, NumberStatus::Available),
        ];
        let m = Move::Allocate {
            from: t.provider.id,
            to: t.a.clone(),
        };
        match next_all(&numbers, &m) {
            Err(Error::FailedPrecondition(v)) => {
                let kinds: Vec<_> = v.iter().map(|p| p.kind).collect();
                assert_eq!(kinds, ["NUMBER_ASSIGNED", "NUMBER_NOT_HELD_BY_ACCOUNT"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(next_all(&numbers[..1], &m).unwrap().len(), 1);
    }

    #[test]
    fn the_common_ancestor_is_the_deepest_shared_account() {
        let t = tree();
        assert_eq!(
            common_ancestor(&t.a1.path, &t.b.path),
            Some(t.provider.path.clone())
        );
        assert_eq!(
            common_ancestor(&t.a1.path, &t.a.path),
            Some(t.a.path.clone())
        );
        assert_eq!(parent_path(&t.a1.path), Some(t.a.path.as_str()));
        assert_eq!(parent_path(&t.provider.path), None);
        let other = target(None);
        assert_eq!(common_ancestor(&t.a.path, &other.path), None);
        assert!(require_descendant(&t.provider, &t.a1).is_ok());
        assert!(require_descendant(&t.a, &t.b).is_err());
        assert!(require_descendant(&t.a, &t.a).is_err());
        assert!(require_descendant(&t.a1, &t.a).is_err());
    }

    #[test]
    fn a_quota_counts_what_is_held_and_what_comes() {
        let id = Uuid::new_v4();
        assert!(require_quota(id, 10, 7, 3).is_ok());
        assert!(matches!(
            require_quota(id, 10, 8, 3),
            Err(Error::QuotaExceeded { .. })
        ));
        assert!(require_active(id, AccountState::Active).is_ok());
        assert!(require_active(id, AccountState::Suspended).is_err());
    }
}
