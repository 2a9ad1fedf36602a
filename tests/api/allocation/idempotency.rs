//! Retries, dry runs and etags: a request id makes a retry harmless, `validate_only` checks
//! every rule and changes nothing, and a stale etag changes nothing.

use numbering_client::v1 as pb;
use tonic::Code;

use super::{assert_refused, stocked};
use crate::helpers::{assert_error, assert_invalid, e164s, ok};
use crate::requests::{agent, allocate_quantity, assign, quantity, reserve, unreserve};

#[tokio::test]
async fn a_retry_with_the_same_request_id_returns_the_first_answer_and_moves_nothing_twice() {
    let (app, t, _, mut admin) = stocked(10).await;
    let request = pb::AllocateNumbersRequest {
        request_id: "allocate-once".into(),
        ..allocate_quantity(&t.provider, &t.a, 3)
    };
    let first = e164s(&ok(admin.allocation.allocate_numbers(request.clone()).await).numbers);
    let second = e164s(&ok(admin.allocation.allocate_numbers(request.clone()).await).numbers);
    assert_eq!(first, second);
    assert_eq!(app.held(&t.a, "available").await, 3);
    assert_invalid(
        admin
            .allocation
            .allocate_numbers(pb::AllocateNumbersRequest {
                selection: quantity(4),
                ..request
            })
            .await,
        &["request_id"],
    );
    assert_eq!(app.held(&t.a, "available").await, 3);

    // The same for a change of one number: one assignment, one event.
    let assign_once = pb::AssignNumberRequest {
        request_id: "assign-once".into(),
        ..assign(&first[0], agent("1", None))
    };
    let once = ok(admin.allocation.assign_number(assign_once.clone()).await);
    let again = ok(admin.allocation.assign_number(assign_once).await);
    assert_eq!(once, again);
    assert_eq!(
        app.operations(&first[0]).await,
        ["add", "allocate", "assign"]
    );
}

#[tokio::test]
async fn validate_only_answers_without_changing_anything() {
    let (app, t, numbers, mut admin) = stocked(5).await;
    let before = app.snapshot().await;
    let dry_run = |count| pb::AllocateNumbersRequest {
        validate_only: true,
        ..allocate_quantity(&t.provider, &t.a, count)
    };
    let dry = ok(admin.allocation.allocate_numbers(dry_run(2)).await).numbers;
    assert_eq!(dry.len(), 2);
    let assigned = ok(admin
        .allocation
        .assign_number(pb::AssignNumberRequest {
            validate_only: true,
            ..assign(&numbers[0], agent("1", Some(&t.a)))
        })
        .await);
    assert_eq!(assigned.holder_id, t.a.id);
    assert_eq!(app.snapshot().await, before);
    // A dry run still checks every rule.
    let refused = admin.allocation.allocate_numbers(dry_run(6)).await;
    assert_refused(&app, &before, refused, "NOT_ENOUGH_NUMBERS").await;
}

#[tokio::test]
async fn a_stale_etag_is_aborted_and_changes_nothing() {
    let (app, _, numbers, mut admin) = stocked(1).await;
    let reserved = ok(admin
        .allocation
        .reserve_number(reserve(&numbers[0], "user:1"))
        .await);
    let with_etag = |etag: &str| pb::UnreserveNumberRequest {
        etag: etag.into(),
        ..unreserve(&numbers[0])
    };
    assert_ne!(reserved.etag, "1");
    let before = app.snapshot().await;
    assert_error(
        admin.allocation.unreserve_number(with_etag("1")).await,
        Code::Aborted,
    );
    assert_eq!(app.snapshot().await, before);
    ok(admin
        .allocation
        .unreserve_number(with_etag(&reserved.etag))
        .await);
}
