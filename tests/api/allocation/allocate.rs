//! Allocate: a provider or a sub-organisation hands unused numbers down to an account below it,
//! by quantity (from a series, under a prefix) or by name; and every rule that refuses it.

use numbering_client::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

use super::{assert_refused, stocked};
use crate::helpers::{assert_error, assert_violates, e164s, ok, spawn_app};
use crate::requests::{
    agent, allocate, allocate_named, allocate_quantity, assign, from_series, get_e164, under_prefix,
};

#[tokio::test]
async fn allocate_a_quantity_from_a_series_moves_exactly_that_many_to_the_sub_organisation() {
    let app = spawn_app().await;
    let t = app.tree().await;
    app.add_numbers(&t.provider, 20).await;
    // +1303555011x is a block of ten: the series.
    let block = app.series(&t.provider, "+1303555011").await;
    let mut admin = app.admin(&t.provider).await;
    let request = allocate(&t.provider, &t.a, from_series(4, &block.id));
    let moved = ok(admin.allocation.allocate_numbers(request).await).numbers;
    assert_eq!(moved.len(), 4);
    for n in &moved {
        assert!(n.e164.starts_with("+1303555011"), "{}", n.e164);
        assert_eq!(n.holder_id, t.a.id);
        assert_eq!(n.owner_id, t.provider.id);
        assert_eq!(n.series_id, block.id);
        assert_eq!(n.status, pb::NumberStatus::Available as i32);
        assert_eq!(app.operations(&n.e164).await, ["add", "allocate"]);
    }
    assert_eq!(app.held(&t.a, "available").await, 4);
    assert_eq!(app.held(&t.provider, "available").await, 16);
}

#[tokio::test]
async fn allocate_by_prefix_takes_only_numbers_under_the_prefix() {
    let (app, t, _, mut admin) = stocked(30).await;
    let request = allocate(&t.provider, &t.a1, under_prefix(10, "+1 303 555 012"));
    let moved = e164s(&ok(admin.allocation.allocate_numbers(request).await).numbers);
    let expected: Vec<String> = (120..130).map(|i| format!("+13035550{i}")).collect();
    assert_eq!(moved, expected);
    assert_eq!(app.held(&t.a1, "available").await, 10);
}

#[tokio::test]
async fn allocate_a_list_named_by_e164_and_by_id() {
    let (app, t, numbers, mut admin) = stocked(5).await;
    let id = ok(admin.number_pool.get_number(get_e164(&numbers[1])).await).id;
    let request = allocate_named(&t.provider, &t.b, &[&numbers[0], &id]);
    let moved = e164s(&ok(admin.allocation.allocate_numbers(request).await).numbers);
    assert_eq!(moved, [numbers[0].clone(), numbers[1].clone()]);
    assert_eq!(app.row(&numbers[1]).await.holder, t.b.id);
    assert_eq!(app.row(&numbers[2]).await.holder, t.provider.id);
}

#[tokio::test]
async fn asking_for_more_than_the_unused_numbers_moves_nothing_and_says_how_many_there_are() {
    let (app, t, _, mut admin) = stocked(7).await;
    let before = app.snapshot().await;
    let refused = admin
        .allocation
        .allocate_numbers(allocate_quantity(&t.provider, &t.a, 8))
        .await;
    let status = assert_refused(&app, &before, refused, "NOT_ENOUGH_NUMBERS").await;
    assert!(
        status.message().contains("7 unused"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_reserved_number_is_allocated_with_its_reservation() {
    let (app, t, numbers, mut admin) = stocked(3).await;
    app.reserve(&numbers[0], "role:reception").await;
    let request = allocate_named(&t.provider, &t.a, &[&numbers[0]]);
    let moved = ok(admin.allocation.allocate_numbers(request).await).numbers;
    assert_eq!(moved[0].status, pb::NumberStatus::Reserved as i32);
    assert_eq!(
        moved[0].reservation.as_ref().unwrap().reserved_for,
        "role:reception"
    );
    // A quantity never picks a reserved number: it was set aside for someone.
    assert_violates(
        admin
            .allocation
            .allocate_numbers(allocate_quantity(&t.provider, &t.a, 3))
            .await,
        "NOT_ENOUGH_NUMBERS",
    );
}

#[tokio::test]
async fn allocating_to_an_account_outside_the_holders_subtree_is_refused() {
    let (app, t, numbers, mut admin) = stocked(4).await;
    app.allocate_named(&t.provider, &t.a, &[&numbers[0]]).await;
    let before = app.snapshot().await;
    // From a team to its sibling, and from a team up to its parent: not below the holder.
    for (from, to) in [(&t.a, &t.b), (&t.a, &t.provider), (&t.a1, &t.a)] {
        let refused = admin
            .allocation
            .allocate_numbers(allocate_quantity(from, to, 1))
            .await;
        assert_refused(&app, &before, refused, "ACCOUNT_NOT_A_DESCENDANT").await;
    }
}

#[tokio::test]
async fn allocating_a_number_in_use_or_held_elsewhere_is_refused() {
    let (app, t, numbers, mut admin) = stocked(4).await;
    app.assign(&numbers[0], agent("7", None)).await;
    app.allocate_named(&t.provider, &t.b, &[&numbers[1]]).await;
    let before = app.snapshot().await;
    for (listed, kind) in [
        (vec![numbers[0].as_str(), &numbers[2]], "NUMBER_ASSIGNED"),
        (vec![numbers[1].as_str()], "NUMBER_NOT_HELD_BY_ACCOUNT"),
    ] {
        let refused = admin
            .allocation
            .allocate_numbers(allocate_named(&t.provider, &t.a, &listed))
            .await;
        assert_refused(&app, &before, refused, kind).await;
    }
}

#[tokio::test]
async fn nothing_is_allocated_or_assigned_into_a_suspended_account() {
    let (app, t, numbers, mut admin) = stocked(4).await;
    app.suspend(&t.a).await;
    let before = app.snapshot().await;
    // Below a suspended account counts too: the numbers would enter its subtree.
    for to in [&t.a, &t.a1] {
        let refused = admin
            .allocation
            .allocate_numbers(allocate_quantity(&t.provider, to, 1))
            .await;
        assert_refused(&app, &before, refused, "ACCOUNT_NOT_ACTIVE").await;
    }
    let refused = admin
        .allocation
        .assign_number(assign(&numbers[0], agent("7", Some(&t.a))))
        .await;
    assert_refused(&app, &before, refused, "ACCOUNT_NOT_ACTIVE").await;
}

#[tokio::test]
async fn a_quota_counts_the_whole_subtree_and_refuses_with_a_quota_failure() {
    let (app, t, _, mut admin) = stocked(10).await;
    app.set_quota(&t.a, 3).await;
    app.allocate(&t.provider, &t.a, 2).await;
    app.allocate(&t.provider, &t.a1, 1).await;
    let before = app.snapshot().await;
    let in_pool = &before
        .numbers
        .iter()
        .find(|r| r.holder == t.provider.id)
        .unwrap()
        .e164;
    let assign_down = admin
        .allocation
        .assign_number(assign(in_pool, agent("7", Some(&t.a1))))
        .await
        .map(|_| ());
    let allocate_down = admin
        .allocation
        .allocate_numbers(allocate_quantity(&t.provider, &t.a1, 1))
        .await
        .map(|_| ());
    for result in [assign_down, allocate_down] {
        let status = assert_error(result, Code::ResourceExhausted);
        let quota = status.get_details_quota_failure().unwrap();
        assert_eq!(quota.violations[0].subject, format!("accounts/{}", t.a.id));
    }
    assert_eq!(app.snapshot().await, before);
    // Moves inside the subtree do not count twice.
    let request = allocate_quantity(&t.a, &t.a1, 2);
    let from_a = ok(admin.allocation.allocate_numbers(request).await).numbers;
    assert_eq!(from_a.len(), 2);
}
