//! Assign, reassign, unassign: a number goes into use by an agent, user or service of its
//! holder's subtree (or, an admin's move, of another sub-team of the tree), and comes out of
//! use again.

use numbering_client::v1 as pb;
use tonic::Code;

use super::{assert_refused, stocked};
use crate::helpers::{assert_error, ok};
use crate::requests::{agent, assign, reassign, unassign};

#[tokio::test]
async fn assign_from_the_parent_pool_to_an_agent_in_a_sub_team_allocates_it_down() {
    let (app, t, numbers, _) = stocked(3).await;
    // The agency flow: the parent's admin picks a number from its pool and an agent of a
    // sub-team (an allocation, so not an operator's call: see below).
    let mut admin = app.admin(&t.provider).await;
    let n = ok(admin
        .allocation
        .assign_number(assign(&numbers[0], agent("42", Some(&t.a1))))
        .await);
    assert_eq!(n.holder_id, t.a1.id);
    assert_eq!(n.owner_id, t.provider.id);
    assert_eq!(n.status, pb::NumberStatus::Assigned as i32);
    let assignee = n.assignee.unwrap();
    assert_eq!(assignee.id, "42");
    assert_eq!(assignee.account_id, t.a1.id);
    assert_eq!(app.operations(&numbers[0]).await, ["add", "assign"]);
    assert_eq!(app.held(&t.a1, "assigned").await, 1);
}

#[tokio::test]
async fn an_operator_assigns_only_within_the_holder_and_never_moves_a_number_down() {
    let (app, t, numbers, _) = stocked(2).await;
    app.allocate_named(&t.provider, &t.a, &[&numbers[0]]).await;
    let mut a_operator = app.operator(&t.a).await;
    let mut provider_operator = app.operator(&t.provider).await;
    let before = app.snapshot().await;
    // Into a sub-team, from the account's own pool or from the parent's: an allocation.
    for refused in [
        a_operator
            .allocation
            .assign_number(assign(&numbers[0], agent("1", Some(&t.a1))))
            .await,
        provider_operator
            .allocation
            .assign_number(assign(&numbers[1], agent("1", Some(&t.a))))
            .await,
    ] {
        assert_error(refused, Code::PermissionDenied);
        assert_eq!(
            app.snapshot().await,
            before,
            "a refused assignment moved a number"
        );
    }
    // Within the holder, the operator assigns; but reassigning down to a sub-team is refused.
    ok(a_operator
        .allocation
        .assign_number(assign(&numbers[0], agent("1", Some(&t.a))))
        .await);
    let before = app.snapshot().await;
    assert_error(
        a_operator
            .allocation
            .reassign_number(reassign(&numbers[0], agent("2", Some(&t.a1))))
            .await,
        Code::PermissionDenied,
    );
    assert_eq!(
        app.snapshot().await,
        before,
        "a refused reassignment moved a number"
    );
    assert_eq!(app.row(&numbers[0]).await.holder, t.a.id);
    // The account's admin may: the number goes down with its assignee.
    let mut a_admin = app.admin(&t.a).await;
    let moved = ok(a_admin
        .allocation
        .reassign_number(reassign(&numbers[0], agent("2", Some(&t.a1))))
        .await);
    assert_eq!(moved.holder_id, t.a1.id);
}

#[tokio::test]
async fn unassign_and_reassign_keep_the_number_in_its_holder() {
    let (app, t, numbers, _) = stocked(2).await;
    app.allocate_named(&t.provider, &t.a, &[&numbers[0]]).await;
    let mut operator = app.operator(&t.a).await;
    ok(operator
        .allocation
        .assign_number(assign(&numbers[0], agent("1", None)))
        .await);
    let moved = ok(operator
        .allocation
        .reassign_number(reassign(&numbers[0], agent("2", None)))
        .await);
    assert_eq!(moved.assignee.unwrap().id, "2");
    assert_eq!(moved.holder_id, t.a.id);
    let free = ok(operator
        .allocation
        .unassign_number(unassign(&numbers[0]))
        .await);
    assert_eq!(free.status, pb::NumberStatus::Available as i32);
    assert_eq!(free.assignee, None);
    assert_eq!(free.holder_id, t.a.id);
    assert_eq!(
        app.operations(&numbers[0]).await,
        ["add", "allocate", "assign", "reassign", "unassign"]
    );
}

#[tokio::test]
async fn an_assigned_number_cannot_be_assigned_again() {
    let (app, _, numbers, mut admin) = stocked(1).await;
    app.assign(&numbers[0], agent("1", None)).await;
    let before = app.snapshot().await;
    let refused = admin
        .allocation
        .assign_number(assign(&numbers[0], agent("2", None)))
        .await;
    assert_refused(&app, &before, refused, "NUMBER_ASSIGNED").await;
}

#[tokio::test]
async fn unassigning_or_reassigning_a_number_that_is_not_assigned_is_refused() {
    let (app, _, numbers, mut admin) = stocked(1).await;
    let before = app.snapshot().await;
    let refused = admin
        .allocation
        .unassign_number(unassign(&numbers[0]))
        .await;
    assert_refused(&app, &before, refused, "NUMBER_NOT_ASSIGNED").await;
    let refused = admin
        .allocation
        .reassign_number(reassign(&numbers[0], agent("2", None)))
        .await;
    assert_refused(&app, &before, refused, "NUMBER_NOT_ASSIGNED").await;
}

#[tokio::test]
async fn an_assignee_in_another_providers_tree_is_refused() {
    let (app, t, numbers, _) = stocked(1).await;
    app.allocate_named(&t.provider, &t.a, &[&numbers[0]]).await;
    let other = app.provider("Other").await;
    let before = app.snapshot().await;
    let refused = app
        .platform()
        .allocation
        .assign_number(assign(&numbers[0], agent("9", Some(&other))))
        .await;
    assert_refused(&app, &before, refused, "ACCOUNTS_IN_DIFFERENT_TREES").await;
}

/// The agency flow: "numbers can be reassigned between agents or subteams: simply select a
/// new agent". The number is assigned in team A's sub-team A1; the provider's admin picks an
/// agent of team B.
#[tokio::test]
async fn reassigning_to_an_agent_of_a_sibling_sub_team_moves_the_number_through_the_common_ancestor_in_one_event()
 {
    let (app, t, numbers, mut admin) = stocked(2).await;
    app.allocate_named(&t.provider, &t.a1, &[&numbers[0]]).await;
    ok(admin
        .allocation
        .assign_number(assign(&numbers[0], agent("1", None)))
        .await);
    let events_before = app.operations(&numbers[0]).await.len();
    let moved = ok(admin
        .allocation
        .reassign_number(pb::ReassignNumberRequest {
            request_id: "move-to-b".into(),
            ..reassign(&numbers[0], agent("2", Some(&t.b)))
        })
        .await);
    assert_eq!(moved.holder_id, t.b.id);
    assert_eq!(moved.status, pb::NumberStatus::Assigned as i32);
    let assignee = moved.assignee.unwrap();
    assert_eq!(
        (assignee.id.as_str(), assignee.account_id.as_str()),
        ("2", t.b.id.as_str())
    );
    assert_eq!(app.held(&t.a1, "assigned").await, 0);
    assert_eq!(app.held(&t.b, "assigned").await, 1);
    // One event, under the request's id, from team A1's agent to team B's.
    let history = ok(admin
        .allocation
        .list_number_events(pb::ListNumberEventsRequest {
            number: numbers[0].clone(),
            ..Default::default()
        })
        .await)
    .events;
    assert_eq!(history.len(), events_before + 1);
    let last = history.last().unwrap();
    assert_eq!(last.operation, pb::NumberOperation::Reassign as i32);
    assert_eq!(last.request_id, "move-to-b");
    assert_eq!(last.before.as_ref().unwrap().holder_id, t.a1.id);
    assert_eq!(last.after.as_ref().unwrap().holder_id, t.b.id);

    // AssignNumber the same way: an unused number of team A straight to an agent of team B.
    app.allocate_named(&t.provider, &t.a, &[&numbers[1]]).await;
    let n = ok(admin
        .allocation
        .assign_number(assign(&numbers[1], agent("3", Some(&t.b))))
        .await);
    assert_eq!(n.holder_id, t.b.id);
    assert_eq!(
        app.operations(&numbers[1]).await,
        ["add", "allocate", "assign"]
    );
}

#[tokio::test]
async fn a_move_across_sub_teams_is_for_an_admin_whose_scope_covers_both() {
    let (app, t, numbers, mut admin) = stocked(1).await;
    app.allocate_named(&t.provider, &t.a1, &[&numbers[0]]).await;
    ok(admin
        .allocation
        .assign_number(assign(&numbers[0], agent("1", None)))
        .await);
    let before = app.snapshot().await;
    let mut a_admin = app.admin(&t.a).await;
    let mut provider_operator = app.operator(&t.provider).await;
    for refused in [
        a_admin
            .allocation
            .reassign_number(reassign(&numbers[0], agent("2", Some(&t.b))))
            .await,
        provider_operator
            .allocation
            .reassign_number(reassign(&numbers[0], agent("2", Some(&t.b))))
            .await,
    ] {
        assert_error(refused, Code::PermissionDenied);
    }
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn a_move_across_sub_teams_keeps_the_quota_and_the_freeze_of_where_the_number_enters() {
    let (app, t, numbers, mut admin) = stocked(1).await;
    app.allocate_named(&t.provider, &t.a1, &[&numbers[0]]).await;
    ok(admin
        .allocation
        .assign_number(assign(&numbers[0], agent("1", None)))
        .await);
    let b1 = app.child(&t.b, "Team B1").await;
    app.set_quota(&t.b, 0).await;
    let before = app.snapshot().await;
    let over = admin
        .allocation
        .reassign_number(reassign(&numbers[0], agent("2", Some(&b1))))
        .await;
    assert_error(over, Code::ResourceExhausted);
    assert_eq!(app.snapshot().await, before);
    app.set_quota(&t.b, 10).await;
    app.suspend(&t.b).await;
    let before = app.snapshot().await;
    let frozen = admin
        .allocation
        .reassign_number(reassign(&numbers[0], agent("2", Some(&b1))))
        .await;
    assert_refused(&app, &before, frozen, "ACCOUNT_NOT_ACTIVE").await;
}

#[tokio::test]
async fn a_reserved_number_is_assigned_only_to_whom_it_is_reserved_for_unless_overridden() {
    let (app, _, numbers, mut admin) = stocked(2).await;
    for n in &numbers {
        app.reserve(n, "agent:7").await;
    }
    let before = app.snapshot().await;
    let refused = admin
        .allocation
        .assign_number(assign(&numbers[0], agent("8", None)))
        .await;
    assert_refused(&app, &before, refused, "NUMBER_RESERVED_FOR_ANOTHER").await;
    let mine = ok(admin
        .allocation
        .assign_number(assign(&numbers[0], agent("7", None)))
        .await);
    assert_eq!(mine.status, pb::NumberStatus::Assigned as i32);
    assert_eq!(mine.reservation, None);
    let overriding = pb::AssignNumberRequest {
        override_reservation: true,
        ..assign(&numbers[1], agent("8", None))
    };
    let overridden = ok(admin.allocation.assign_number(overriding).await);
    assert_eq!(overridden.assignee.unwrap().id, "8");
}
