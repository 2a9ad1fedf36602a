//! The life of a number through AllocationService, one file per move. Each move's success, and
//! each illegal move refused with its rule while nothing changes; then bad input, scope,
//! idempotency, batches, history and races.
//!
//! Every scenario starts from [`stocked`]: the tree of [`crate::helpers::Tree`] with numbers
//! added to the provider's pool through the API, +1 303 555 0100 upwards. Each number's history
//! therefore starts with its `add` event.

mod allocate;
mod assign;
mod bad_input;
mod batch;
mod history;
mod idempotency;
mod races;
mod release_unbind;
mod reserve;
mod scope;
mod suspended;
mod together;
mod transfer;
mod withdraw;

use numbering_client::Clients;

use crate::helpers::{Snapshot, TestApp, Tree, assert_violates, spawn_app};

/// A tree with `n` numbers in the provider's pool, and the clients of the provider's admin.
async fn stocked(n: u64) -> (TestApp, Tree, Vec<String>, Clients) {
    let app = spawn_app().await;
    let t = app.tree().await;
    let numbers = app.add_numbers(&t.provider, n).await;
    let admin = app.admin(&t.provider).await;
    (app, t, numbers, admin)
}

/// Checks that an illegal move was refused with the rule `kind`, and that nothing changed
/// since `before`.
async fn assert_refused<T: std::fmt::Debug>(
    app: &TestApp,
    before: &Snapshot,
    result: Result<T, tonic::Status>,
    kind: &str,
) -> tonic::Status {
    let status = assert_violates(result, kind);
    assert_eq!(
        &app.snapshot().await,
        before,
        "an illegal move changed something"
    );
    status
}
