//! Release and unbind: a sub-account gives a number back (RETURNED), the provider unbinds it
//! into its free pool, where it may age before it is used again.

use numbering_client::v1 as pb;
use tonic::Code;

use super::{assert_refused, stocked};
use crate::helpers::{assert_error, ok};
use crate::requests::{agent, allocate_named, assign, get_number, release, unbind};

#[tokio::test]
async fn release_returns_a_number_and_the_provider_unbinds_it_into_its_pool() {
    let (app, t, numbers, mut admin) = stocked(2).await;
    app.allocate_named(&t.provider, &t.a1, &[&numbers[0]]).await;
    let mut a1_admin = app.admin(&t.a1).await;
    let returned = ok(a1_admin
        .allocation
        .release_number(release(&numbers[0]))
        .await);
    assert_eq!(returned.status, pb::NumberStatus::Returned as i32);
    assert_eq!(returned.holder_id, t.a1.id);
    // It has left the sub-account's own view; the provider still sees it, waiting to unbind.
    let listed = ok(a1_admin
        .number_pool
        .list_numbers(pb::ListNumbersRequest::default())
        .await);
    assert!(listed.numbers.iter().all(|n| n.id != returned.id));
    assert_error(
        a1_admin
            .number_pool
            .get_number(get_number(&returned.id))
            .await,
        Code::PermissionDenied,
    );
    let seen = ok(admin.number_pool.get_number(get_number(&returned.id)).await);
    assert_eq!(seen.status, pb::NumberStatus::Returned as i32);
    // The sub-account cannot take it back into the provider's pool itself.
    let before = app.snapshot().await;
    assert_error(
        a1_admin.allocation.unbind_number(unbind(&numbers[0])).await,
        Code::PermissionDenied,
    );
    assert_eq!(app.snapshot().await, before);
    let home = ok(admin.allocation.unbind_number(unbind(&numbers[0])).await);
    assert_eq!(home.status, pb::NumberStatus::Available as i32);
    assert_eq!(home.holder_id, t.provider.id);
    assert_eq!(
        app.operations(&numbers[0]).await,
        ["add", "allocate", "release", "unbind"]
    );
}

#[tokio::test]
async fn the_provider_cannot_release_to_itself() {
    let (app, _, numbers, mut admin) = stocked(1).await;
    let before = app.snapshot().await;
    let refused = admin.allocation.release_number(release(&numbers[0])).await;
    assert_refused(&app, &before, refused, "NUMBER_HELD_BY_OWNER").await;
}

#[tokio::test]
async fn release_refuses_assigned_and_reserved_numbers() {
    let (app, t, numbers, _) = stocked(2).await;
    app.allocate(&t.provider, &t.a, 2).await;
    app.assign(&numbers[0], agent("1", None)).await;
    app.reserve(&numbers[1], "user:1").await;
    let mut a_admin = app.admin(&t.a).await;
    let before = app.snapshot().await;
    for (n, kind) in [
        (&numbers[0], "NUMBER_ASSIGNED"),
        (&numbers[1], "NUMBER_RESERVED"),
    ] {
        let refused = a_admin.allocation.release_number(release(n)).await;
        assert_refused(&app, &before, refused, kind).await;
    }
}

#[tokio::test]
async fn unbind_refuses_a_number_that_was_not_returned() {
    let (app, t, numbers, mut admin) = stocked(1).await;
    app.allocate(&t.provider, &t.a, 1).await;
    let before = app.snapshot().await;
    let refused = admin.allocation.unbind_number(unbind(&numbers[0])).await;
    assert_refused(&app, &before, refused, "NUMBER_NOT_RETURNED").await;
}

#[tokio::test]
async fn an_aging_number_cannot_be_used_until_its_aging_period_ends() {
    let (app, t, numbers, mut admin) = stocked(1).await;
    app.set_aging_period(&t.provider, 1).await;
    app.allocate(&t.provider, &t.a, 1).await;
    let mut a_admin = app.admin(&t.a).await;
    ok(a_admin
        .allocation
        .release_number(release(&numbers[0]))
        .await);
    let aging = ok(admin.allocation.unbind_number(unbind(&numbers[0])).await);
    assert_eq!(aging.status, pb::NumberStatus::Aging as i32);
    assert!(aging.aging_end_time.is_some());
    let before = app.snapshot().await;
    let refused = admin
        .allocation
        .allocate_numbers(allocate_named(&t.provider, &t.a, &[&numbers[0]]))
        .await;
    assert_refused(&app, &before, refused, "NUMBER_AGING").await;
    let refused = admin
        .allocation
        .assign_number(assign(&numbers[0], agent("1", None)))
        .await;
    assert_refused(&app, &before, refused, "NUMBER_AGING").await;
    app.wait_for_status(&numbers[0], "available").await;
    assert_eq!(
        app.operations(&numbers[0]).await,
        ["add", "allocate", "release", "unbind", "aging_end"]
    );
    app.allocate(&t.provider, &t.a, 1).await;
}
