//! Withdraw: unused numbers go back from a sub-organisation to its immediate parent, by the
//! parent's hand; numbers in use stay where they are.

use tonic::Code;

use super::{assert_refused, stocked};
use crate::helpers::{assert_error, ok};
use crate::requests::{agent, named, quantity, withdraw};

#[tokio::test]
async fn withdraw_returns_unused_numbers_to_the_immediate_parent() {
    let (app, t, _, _) = stocked(6).await;
    app.allocate(&t.provider, &t.a1, 5).await;
    let mut a_admin = app.admin(&t.a).await;
    let back = ok(a_admin
        .allocation
        .withdraw_numbers(withdraw(&t.a1, quantity(3)))
        .await)
    .numbers;
    assert_eq!(back.len(), 3);
    assert!(back.iter().all(|n| n.holder_id == t.a.id));
    assert_eq!(app.held(&t.a1, "available").await, 2);
    assert_eq!(app.held(&t.a, "available").await, 3);
    assert_eq!(
        app.operations(&back[0].e164).await,
        ["add", "allocate", "withdraw"]
    );
    let listed = a_admin
        .allocation
        .withdraw_numbers(withdraw(&t.a, named(&[&back[0].e164])))
        .await;
    // Withdrawing from one's own account is the parent's call.
    assert_error(listed, Code::PermissionDenied);
}

#[tokio::test]
async fn withdraw_refuses_numbers_in_use_and_quantities_beyond_the_unused() {
    let (app, t, _, mut admin) = stocked(4).await;
    let moved = app.allocate(&t.provider, &t.a, 3).await;
    app.assign(&moved[0], agent("1", None)).await;
    app.reserve(&moved[1], "user:2").await;
    let before = app.snapshot().await;
    for (number, kind) in [
        (&moved[0], "NUMBER_ASSIGNED"),
        (&moved[1], "NUMBER_RESERVED"),
    ] {
        let refused = admin
            .allocation
            .withdraw_numbers(withdraw(&t.a, named(&[number])))
            .await;
        assert_refused(&app, &before, refused, kind).await;
    }
    let refused = admin
        .allocation
        .withdraw_numbers(withdraw(&t.a, quantity(2)))
        .await;
    let status = assert_refused(&app, &before, refused, "NOT_ENOUGH_NUMBERS").await;
    assert!(
        status.message().contains("1 unused"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_provider_has_no_parent_to_withdraw_to() {
    let (app, t, _, _) = stocked(2).await;
    let before = app.snapshot().await;
    let refused = app
        .platform()
        .allocation
        .withdraw_numbers(withdraw(&t.provider, quantity(1)))
        .await;
    assert_refused(&app, &before, refused, "ACCOUNT_HAS_NO_PARENT").await;
}
