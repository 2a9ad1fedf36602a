//! Request ids (AIP-155) across callers: an answer is keyed by the account the caller acts for,
//! its subject, the RPC and the id, replayed only to as much authority as the first caller had,
//! kept for a retention and no larger than a reference to the numbers it carries.

use std::time::Duration;

use numbering_client::Clients;
use numbering_client::v1 as pb;
use prost::Message;
use tonic::Code;

use crate::helpers::{TestApp, assert_error, assert_invalid, e164s, now, ok, sign, spawn_app};
use crate::requests::{allocate_quantity, create_account, quantity};

/// Clients whose token has the subject `sub` and `role` on `account`: two tenants' tokens may
/// share a subject (one identity provider's user ids, say).
async fn with_subject(app: &TestApp, sub: &str, role: &str, account: &pb::Account) -> Clients {
    let token = sign(&serde_json::json!({
        "sub": sub,
        "roles": [role],
        "account": account.id,
        "exp": now() + 3600,
        "iss": "numbering-tests",
    }));
    app.clients_with_token(Some(&token)).await
}

fn create(parent: &pb::Account, name: &str, request_id: &str) -> pb::CreateAccountRequest {
    pb::CreateAccountRequest {
        request_id: request_id.into(),
        ..create_account(&parent.id, name)
    }
}

fn allocate(
    from: &pb::Account,
    to: &pb::Account,
    count: i64,
    request_id: &str,
) -> pb::AllocateNumbersRequest {
    pb::AllocateNumbersRequest {
        request_id: request_id.into(),
        ..allocate_quantity(from, to, count)
    }
}

/// Two providers, each with a child and `n` numbers of its own.
async fn two_tenants(n: u64) -> (TestApp, [(pb::Account, pb::Account); 2]) {
    let app = spawn_app().await;
    let one = app.provider("One").await;
    let two = app.provider("Two").await;
    app.add_range(&one, 13035550000, n).await;
    app.add_range(&two, 14155550000, n).await;
    let one_child = app.child(&one, "One's team").await;
    let two_child = app.child(&two, "Two's team").await;
    (app, [(one, one_child), (two, two_child)])
}

#[tokio::test]
async fn another_tenant_reusing_a_subject_and_request_id_runs_its_own_change() {
    let (app, [(one, one_child), (two, two_child)]) = two_tenants(5).await;
    let mut first = with_subject(&app, "user-42", "admin", &one).await;
    let mut second = with_subject(&app, "user-42", "admin", &two).await;

    let created = ok(first
        .tenancy
        .create_account(create(&one, "Sales", "req-1"))
        .await);
    let theirs = ok(second
        .tenancy
        .create_account(create(&two, "Support", "req-1"))
        .await);
    assert_ne!(theirs.id, created.id);
    assert_eq!(theirs.parent_id, two.id);
    assert_eq!(theirs.display_name, "Support");

    let moved = ok(first
        .allocation
        .allocate_numbers(allocate(&one, &one_child, 3, "req-2"))
        .await)
    .numbers;
    let theirs = ok(second
        .allocation
        .allocate_numbers(allocate(&two, &two_child, 2, "req-2"))
        .await)
    .numbers;
    assert_eq!(moved.len(), 3);
    assert_eq!(theirs.len(), 2);
    assert!(theirs.iter().all(|n| n.holder_id == two_child.id));
    assert_eq!(app.held(&two_child, "available").await, 2);
}

#[tokio::test]
async fn a_viewer_replaying_an_admins_request_id_is_refused_and_never_given_the_answer() {
    let (app, [(one, one_child), _]) = two_tenants(5).await;
    let mut admin = with_subject(&app, "user-42", "admin", &one).await;
    let mut viewer = with_subject(&app, "user-42", "viewer", &one).await;
    let request = allocate(&one, &one_child, 3, "req-1");
    ok(admin.allocation.allocate_numbers(request.clone()).await);

    assert_error(
        viewer.allocation.allocate_numbers(request.clone()).await,
        Code::PermissionDenied,
    );
    // Another body is refused alike: the viewer learns nothing of what the id was used for.
    assert_error(
        viewer
            .allocation
            .allocate_numbers(allocate(&one, &one_child, 4, "req-1"))
            .await,
        Code::PermissionDenied,
    );
    // The admin's retry still gets its answer.
    assert_eq!(
        ok(admin.allocation.allocate_numbers(request).await)
            .numbers
            .len(),
        3
    );
    assert_eq!(app.held(&one_child, "available").await, 3);
}

#[tokio::test]
async fn the_same_caller_reusing_a_request_id_with_another_body_is_invalid_but_not_for_another_rpc()
{
    let (app, [(one, one_child), _]) = two_tenants(5).await;
    let mut admin = with_subject(&app, "user-42", "admin", &one).await;
    ok(admin
        .allocation
        .allocate_numbers(allocate(&one, &one_child, 3, "req-1"))
        .await);
    assert_invalid(
        admin
            .allocation
            .allocate_numbers(pb::AllocateNumbersRequest {
                selection: quantity(4),
                ..allocate(&one, &one_child, 3, "req-1")
            })
            .await,
        &["request_id"],
    );
    // Another RPC with the same id is another request.
    let created = ok(admin
        .tenancy
        .create_account(create(&one, "Sales", "req-1"))
        .await);
    assert_eq!(created.parent_id, one.id);
    assert_eq!(app.held(&one_child, "available").await, 3);
}

/// The stored answers, by request id.
async fn stored(app: &TestApp) -> Vec<String> {
    app.sql
        .query(
            "SELECT request_id FROM idempotency ORDER BY request_id",
            &[],
        )
        .await
        .expect("read the stored answers")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn the_sweeper_prunes_answers_past_their_retention_and_a_late_retry_runs_again() {
    let (app, [(one, one_child), _]) = two_tenants(10).await;
    let mut admin = with_subject(&app, "user-42", "admin", &one).await;
    let old = allocate(&one, &one_child, 2, "old");
    ok(admin.allocation.allocate_numbers(old.clone()).await);
    ok(admin
        .allocation
        .allocate_numbers(allocate(&one, &one_child, 1, "recent"))
        .await);
    // 25 hours pass for the first answer: past the default retention of 24 hours.
    app.sql
        .execute(
            "UPDATE idempotency SET create_time = now() - interval '25 hours'
             WHERE request_id = 'old'",
            &[],
        )
        .await
        .expect("age the answer");

    let mut left = stored(&app).await;
    for _ in 0..200 {
        if left == ["recent"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = stored(&app).await;
    }
    assert_eq!(left, ["recent"], "the sweeper deletes only the old answer");
    // Past its retention, a retry is a first call: two more numbers move.
    ok(admin.allocation.allocate_numbers(old).await);
    assert_eq!(app.held(&one_child, "available").await, 5);
}

#[tokio::test]
async fn a_large_allocation_is_kept_as_its_numbers_and_replayed_as_first_answered() {
    const COUNT: u64 = 10_000;
    let (app, [(one, one_child), _]) = two_tenants(0).await;
    app.add_range(&one, 13035500000, COUNT).await;
    let mut admin = with_subject(&app, "user-42", "admin", &one).await;
    let request = allocate(&one, &one_child, COUNT as i64, "big");
    let first = ok(admin.allocation.allocate_numbers(request.clone()).await);
    let answer_bytes = first.encoded_len();
    let kept: i32 = app
        .sql
        .query_one(
            "SELECT pg_column_size(i.*) FROM idempotency i WHERE request_id = 'big'",
            &[],
        )
        .await
        .expect("read the stored answer")
        .get(0);
    eprintln!("allocation of {COUNT}: answer {answer_bytes} bytes, stored {kept} bytes");
    // 16 bytes a number and the row's own: under 170 KB where the answer is over 1.5 MB.
    assert!(kept < 170_000, "stored {kept} bytes");

    let again = ok(admin.allocation.allocate_numbers(request).await);
    assert_eq!(again, first);
    assert_eq!(e164s(&again.numbers).len(), COUNT as usize);
}
