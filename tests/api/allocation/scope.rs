//! Scope and roles: a caller moves and reads only numbers at or below its own account, and only
//! as its role allows; what is out of scope is refused alike, whether it exists or not.

use tonic::Code;

use super::stocked;
use crate::helpers::assert_error;
use crate::requests::{
    agent, allocate_named, allocate_quantity, assign, events, quantity, release, reserve, withdraw,
};

#[tokio::test]
async fn a_sub_account_cannot_allocate_from_its_parents_pool_withdraw_from_or_read_a_sibling() {
    let (app, t, numbers, _) = stocked(4).await;
    app.allocate(&t.provider, &t.b, 2).await;
    let mut a_admin = app.admin(&t.a).await;
    let before = app.snapshot().await;
    let denied = [
        a_admin
            .allocation
            .allocate_numbers(allocate_quantity(&t.provider, &t.a, 1))
            .await
            .map(|_| ()),
        a_admin
            .allocation
            .allocate_numbers(allocate_named(&t.a, &t.a1, &[&numbers[3]]))
            .await
            .map(|_| ()),
        a_admin
            .allocation
            .withdraw_numbers(withdraw(&t.b, quantity(1)))
            .await
            .map(|_| ()),
        a_admin
            .allocation
            .assign_number(assign(&numbers[3], agent("1", None)))
            .await
            .map(|_| ()),
        // A number that does not exist answers the same.
        a_admin
            .allocation
            .release_number(release("+19995550000"))
            .await
            .map(|_| ()),
    ];
    let in_b = &before
        .numbers
        .iter()
        .find(|r| r.holder == t.b.id)
        .unwrap()
        .e164;
    let history = a_admin
        .allocation
        .list_number_events(events(in_b))
        .await
        .map(|_| ());
    for result in denied.into_iter().chain([history]) {
        assert_error(result, Code::PermissionDenied);
    }
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn operators_cannot_allocate_and_viewers_cannot_assign() {
    let (app, t, numbers, _) = stocked(2).await;
    let mut operator = app.operator(&t.provider).await;
    let mut viewer = app.viewer(&t.provider).await;
    let before = app.snapshot().await;
    assert_error(
        operator
            .allocation
            .allocate_numbers(allocate_quantity(&t.provider, &t.a, 1))
            .await,
        Code::PermissionDenied,
    );
    assert_error(
        operator
            .allocation
            .release_number(release(&numbers[0]))
            .await,
        Code::PermissionDenied,
    );
    assert_error(
        viewer
            .allocation
            .assign_number(assign(&numbers[0], agent("1", None)))
            .await,
        Code::PermissionDenied,
    );
    assert_error(
        viewer
            .allocation
            .reserve_number(reserve(&numbers[0], "user:1"))
            .await,
        Code::PermissionDenied,
    );
    assert_eq!(app.snapshot().await, before);
}
