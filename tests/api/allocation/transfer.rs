//! Transfer: numbers move sideways or up between two accounts of one tree, through their lowest
//! common ancestor, by the hand of someone above both.

use tonic::Code;

use super::stocked;
use crate::helpers::{assert_error, ok};
use crate::requests::{named, quantity, transfer};

#[tokio::test]
async fn transfer_moves_numbers_between_sub_teams_through_their_common_ancestor() {
    let (app, t, _, mut admin) = stocked(6).await;
    let moved = app.allocate(&t.provider, &t.a1, 4).await;
    let request = transfer(&t.a1, &t.b, named(&[&moved[0], &moved[1]]));
    // A's admin is below the common ancestor (the provider): out of its scope.
    let mut a_admin = app.admin(&t.a).await;
    let before = app.snapshot().await;
    assert_error(
        a_admin.allocation.transfer_numbers(request.clone()).await,
        Code::PermissionDenied,
    );
    assert_eq!(app.snapshot().await, before);
    let sent = ok(admin.allocation.transfer_numbers(request).await).numbers;
    assert!(sent.iter().all(|n| n.holder_id == t.b.id));
    assert_eq!(
        app.operations(&moved[0]).await,
        ["add", "allocate", "transfer"]
    );
    assert_eq!(app.held(&t.a1, "available").await, 2);
    // Up the tree by quantity is a transfer too.
    let up = ok(a_admin
        .allocation
        .transfer_numbers(transfer(&t.a1, &t.a, quantity(2)))
        .await)
    .numbers;
    assert!(up.iter().all(|n| n.holder_id == t.a.id));
}
