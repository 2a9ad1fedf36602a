//! Suspension freezes a subtree: once an account is suspended, nothing new is allocated,
//! assigned, reserved or created in it or anywhere below it, and the refusal names the
//! suspended account; reads stay allowed, and the provider can still take numbers back up.

use tonic_types::StatusExt;

use super::{assert_refused, stocked};
use crate::helpers::ok;
use crate::requests::{
    agent, allocate_named, assign, create_account, events, get_e164, named, reserve, withdraw,
};

/// The account a refusal names.
fn named_account(status: &tonic::Status) -> String {
    status
        .get_details_precondition_failure()
        .and_then(|p| p.violations.into_iter().next())
        .map(|v| v.subject)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_suspended_account_freezes_its_whole_subtree_but_stays_readable() {
    let (app, t, numbers, mut provider) = stocked(5).await;
    let [n0, n1, n2, n3] = [&numbers[0], &numbers[1], &numbers[2], &numbers[3]];
    app.allocate_named(&t.provider, &t.a, &[n0, n1]).await;
    app.allocate_named(&t.provider, &t.a1, &[n2, n3]).await;
    app.suspend(&t.a).await;
    let frozen_by_a = format!("accounts/{}", t.a.id);
    let mut a_admin = app.admin(&t.a).await;
    let before = app.snapshot().await;

    // A's own numbers do not go down to A1, whoever asks.
    for c in [&mut a_admin, &mut provider] {
        let refused = c
            .allocation
            .allocate_numbers(allocate_named(&t.a, &t.a1, &[n0]))
            .await;
        let status = assert_refused(&app, &before, refused, "ACCOUNT_NOT_ACTIVE").await;
        assert_eq!(named_account(&status), frozen_by_a);
    }
    // Nor does the provider's pool flow into A1, below the suspension.
    let refused = provider
        .allocation
        .allocate_numbers(allocate_named(&t.provider, &t.a1, &[&numbers[4]]))
        .await;
    assert_refused(&app, &before, refused, "ACCOUNT_NOT_ACTIVE").await;
    // A1 is active itself, but sits below A: no assignment, no reservation, no new account.
    let refused = a_admin
        .allocation
        .assign_number(assign(n2, agent("7", Some(&t.a1))))
        .await;
    let status = assert_refused(&app, &before, refused, "ACCOUNT_NOT_ACTIVE").await;
    assert_eq!(named_account(&status), frozen_by_a);
    let refused = a_admin
        .allocation
        .reserve_number(reserve(n3, "role:reception"))
        .await;
    let status = assert_refused(&app, &before, refused, "ACCOUNT_NOT_ACTIVE").await;
    assert_eq!(named_account(&status), frozen_by_a);
    let accounts = app.count_accounts().await;
    let refused = provider
        .tenancy
        .create_account(create_account(&t.a1.id, "Late"))
        .await;
    let status = assert_refused(&app, &before, refused, "ACCOUNT_NOT_ACTIVE").await;
    assert_eq!(named_account(&status), frozen_by_a);
    assert_eq!(app.count_accounts().await, accounts);

    // Reads stay allowed.
    let mut a1_viewer = app.viewer(&t.a1).await;
    ok(a1_viewer.number_pool.get_number(get_e164(n2)).await);
    ok(a1_viewer.allocation.list_number_events(events(n2)).await);
    // The provider takes the numbers back up: A1 to A, then A to itself.
    ok(provider
        .allocation
        .withdraw_numbers(withdraw(&t.a1, named(&[n2])))
        .await);
    ok(provider
        .allocation
        .withdraw_numbers(withdraw(&t.a, named(&[n0, n2])))
        .await);
    assert_eq!(app.row(n2).await.holder, t.provider.id);
}
