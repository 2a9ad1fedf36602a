//! Batches: one call changes many numbers, answering per number, or all or nothing.

use numbering_client::v1 as pb;
use prost::Message;
use tonic::Code;

use super::{assert_refused, stocked};
use crate::helpers::{ok, violated_preconditions};
use crate::requests::{agent, assign, release, reserve, unassign};

/// The precondition kinds of a batch item's error.
fn item_preconditions(e: &tonic_types::pb::Status) -> Vec<String> {
    let status = tonic::Status::with_details(
        Code::from(e.code),
        e.message.clone(),
        e.encode_to_vec().into(),
    );
    violated_preconditions(&status)
}

#[tokio::test]
async fn batch_assign_answers_per_number_and_keeps_what_succeeded() {
    let (app, _, numbers, mut admin) = stocked(3).await;
    app.assign(&numbers[1], agent("x", None)).await;
    let results = ok(admin
        .allocation
        .batch_assign_numbers(pb::BatchAssignNumbersRequest {
            requests: numbers
                .iter()
                .enumerate()
                .map(|(i, n)| assign(n, agent(&i.to_string(), None)))
                .collect(),
            ..Default::default()
        })
        .await)
    .results;
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].number, numbers[0]);
    assert!(results[0].result.is_some() && results[2].result.is_some());
    let error = results[1].error.as_ref().unwrap();
    assert_eq!(error.code, Code::FailedPrecondition as i32);
    assert_eq!(item_preconditions(error), ["NUMBER_ASSIGNED"]);
    for (n, assignee) in numbers.iter().zip(["0", "x", "2"]) {
        assert_eq!(app.row(n).await.assignee.as_deref(), Some(assignee));
    }
}

#[tokio::test]
async fn an_all_or_nothing_batch_changes_nothing_when_one_number_fails() {
    let (app, t, numbers, _) = stocked(3).await;
    app.allocate(&t.provider, &t.a, 3).await;
    app.reserve(&numbers[2], "user:1").await;
    let mut a_admin = app.admin(&t.a).await;
    let release_all = |numbers: &[String]| pb::BatchReleaseNumbersRequest {
        requests: numbers.iter().map(|n| release(n)).collect(),
        all_or_nothing: true,
        ..Default::default()
    };
    let before = app.snapshot().await;
    let refused = a_admin
        .allocation
        .batch_release_numbers(release_all(&numbers))
        .await;
    let status = assert_refused(&app, &before, refused, "NUMBER_RESERVED").await;
    assert!(
        status.message().contains(&numbers[2]),
        "{}",
        status.message()
    );
    // Without the reserved one, the batch goes through whole.
    let results = ok(a_admin
        .allocation
        .batch_release_numbers(release_all(&numbers[..2]))
        .await)
    .results;
    assert!(results.iter().all(|r| r.error.is_none()));
    assert_eq!(app.held(&t.a, "returned").await, 2);
}

#[tokio::test]
async fn batch_reserve_and_batch_unassign_change_every_number_named() {
    let (app, _, numbers, mut admin) = stocked(4).await;
    let reserved = ok(admin
        .allocation
        .batch_reserve_numbers(pb::BatchReserveNumbersRequest {
            requests: numbers[..2]
                .iter()
                .map(|n| reserve(n, "role:sales"))
                .collect(),
            ..Default::default()
        })
        .await)
    .results;
    assert!(reserved.iter().all(|r| r.error.is_none()));
    for n in &numbers[2..] {
        app.assign(n, agent("1", None)).await;
    }
    let unassigned = ok(admin
        .allocation
        .batch_unassign_numbers(pb::BatchUnassignNumbersRequest {
            requests: numbers[2..].iter().map(|n| unassign(n)).collect(),
            all_or_nothing: true,
            ..Default::default()
        })
        .await)
    .results;
    assert!(unassigned.iter().all(|r| r.error.is_none()));
    let rows = app.snapshot().await.numbers;
    let statuses: Vec<&str> = rows.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(statuses, ["reserved", "reserved", "available", "available"]);
}
