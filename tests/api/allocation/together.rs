//! Allocations run together: concurrent quantity allocations share one transaction, and each
//! is still judged, answered and recorded as if it had run alone.
//!
//! The scenes hold the first group in the database (the test takes the advisory lock of the
//! first call's request id), so that the calls sent meanwhile queue up and form the next
//! group together; then let it go.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use numbering_client::Clients;
use numbering_client::v1 as pb;
use tonic::Code;

use numbering::server::Fairness;

use crate::helpers::{
    TestApp, Tree, assert_error, assert_violates, spawn_app_with, violated_preconditions,
};
use crate::requests::{allocate_quantity, from_series};

/// A server that runs one group at a time, with `n` numbers in the provider's pool.
async fn one_group_at_a_time(n: u64) -> (TestApp, Tree, Clients) {
    let app = spawn_app_with(
        8,
        Fairness {
            allocation_groups: 1,
            ..Fairness::default()
        },
    )
    .await;
    let t = app.tree().await;
    app.add_numbers(&t.provider, n).await;
    let admin = app.admin(&t.provider).await;
    (app, t, admin)
}

/// Holds the first group in the database: the test's own transaction takes the advisory lock
/// the provider admin's request id `request_id` takes, and a call with it starts the first
/// group, which waits there. Answers the test's connection, whose COMMIT lets the group go.
async fn hold_first_group(
    app: &TestApp,
    t: &Tree,
    admin: &Clients,
    request_id: &str,
) -> (
    tokio_postgres::Client,
    tokio::task::JoinHandle<Result<tonic::Response<pb::AllocateNumbersResponse>, tonic::Status>>,
) {
    let (holder, conn) = app
        .database
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let key = format!(
        "{}/test:{}/AllocateNumbers/{request_id}",
        t.provider.id, t.provider.id
    );
    holder
        .batch_execute("BEGIN")
        .await
        .expect("begin the holding transaction");
    holder
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&key],
        )
        .await
        .expect("take the first call's lock");
    let mut c = admin.clone();
    let mut first = allocate_quantity(&t.provider, &t.a, 1);
    first.request_id = request_id.into();
    let first = tokio::spawn(async move { c.allocation.allocate_numbers(first).await });
    // The first group has taken its call and waits on the lock.
    tokio::time::sleep(Duration::from_millis(300)).await;
    (holder, first)
}

/// Sends every call at once, gives them time to queue behind the held group, lets it go, and
/// answers each call's result in order.
async fn queued_behind(
    holder: tokio_postgres::Client,
    calls: Vec<(Clients, pb::AllocateNumbersRequest)>,
) -> Vec<Result<pb::AllocateNumbersResponse, tonic::Status>> {
    let tasks: Vec<_> = calls
        .into_iter()
        .map(|(mut c, r)| {
            tokio::spawn(async move {
                c.allocation
                    .allocate_numbers(r)
                    .await
                    .map(|r| r.into_inner())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    holder
        .batch_execute("COMMIT")
        .await
        .expect("let the first group go");
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("call task"));
    }
    answers
}

/// The transactions that last wrote these numbers (their `xmin`), by E.164.
async fn writers(app: &TestApp, e164s: &[String]) -> BTreeMap<String, String> {
    app.sql
        .query(
            "SELECT e164, xmin::text FROM numbers WHERE e164 = ANY($1)",
            &[&e164s],
        )
        .await
        .expect("read xmin")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn calls_queued_together_share_one_transaction_and_each_keeps_its_own_event() {
    const CALLS: usize = 24;
    let (app, t, admin) = one_group_at_a_time(100).await;
    let (holder, first) = hold_first_group(&app, &t, &admin, "first").await;
    let calls = (0..CALLS)
        .map(|i| {
            let mut r = allocate_quantity(&t.provider, &t.a, 1);
            r.request_id = format!("call-{i}");
            (admin.clone(), r)
        })
        .collect();
    let answers = queued_behind(holder, calls).await;
    first.await.unwrap().expect("the first call");

    let mut got: BTreeMap<String, String> = BTreeMap::new();
    for (i, a) in answers.into_iter().enumerate() {
        let numbers = a.expect("every call is served").numbers;
        assert_eq!(numbers.len(), 1, "call {i} asked for one number");
        assert_eq!(numbers[0].holder_id, t.a.id);
        assert!(
            got.insert(numbers[0].e164.clone(), format!("call-{i}"))
                .is_none(),
            "a number handed out twice"
        );
    }
    let e164s: Vec<String> = got.keys().cloned().collect();
    let transactions: BTreeSet<String> = writers(&app, &e164s).await.into_values().collect();
    assert_eq!(
        transactions.len(),
        1,
        "the {CALLS} calls queued behind the first group were one transaction"
    );
    // Each number's allocation is recorded with the request id of the call that got it.
    let events = app
        .sql
        .query(
            "SELECT e164, request_id, actor FROM number_events
             WHERE operation = 'allocate' AND e164 = ANY($1)",
            &[&e164s],
        )
        .await
        .unwrap();
    assert_eq!(events.len(), CALLS);
    for e in events {
        let e164: String = e.get(0);
        assert_eq!(e.get::<_, String>(1), got[&e164]);
        assert_eq!(e.get::<_, String>(2), format!("test:{}", t.provider.id));
    }
    // A retry of one of them answers its first answer and moves nothing more.
    let mut c = admin.clone();
    let mut retry = allocate_quantity(&t.provider, &t.a, 1);
    retry.request_id = "call-7".into();
    let again = c
        .allocation
        .allocate_numbers(retry)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got[&again.numbers[0].e164], "call-7");
    let held: i64 = app
        .sql
        .query_one(
            "SELECT count(*) FROM numbers WHERE holder_id::text = $1",
            &[&t.a.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, CALLS as i64 + 1);
}

#[tokio::test]
async fn in_a_group_each_call_is_refused_or_served_as_it_would_be_alone() {
    let (app, t, admin) = one_group_at_a_time(100).await;
    app.suspend(&t.b).await;
    let a_admin = app.admin(&t.a).await;
    let (holder, first) = hold_first_group(&app, &t, &admin, "first").await;
    let mut calls = Vec::new();
    for i in 0..4 {
        // Served.
        calls.push((admin.clone(), allocate_quantity(&t.provider, &t.a1, 1)));
        // Into a suspended account.
        calls.push((admin.clone(), allocate_quantity(&t.provider, &t.b, 1)));
        // From a pool the caller may not touch.
        calls.push((a_admin.clone(), allocate_quantity(&t.provider, &t.a1, 1)));
        // From a series the provider does not have.
        let mut r = allocate_quantity(&t.provider, &t.a, 1);
        r.selection = from_series(1, &uuid::Uuid::new_v4().to_string());
        calls.push((admin.clone(), r));
        // The same request id twice: one allocation, answered to both.
        for _ in 0..2 {
            let mut r = allocate_quantity(&t.provider, &t.a, 1);
            r.request_id = format!("twice-{i}");
            calls.push((admin.clone(), r));
        }
    }
    let answers = queued_behind(holder, calls).await;
    first.await.unwrap().expect("the first call");

    let (mut served, mut into_a1) = (Vec::new(), Vec::new());
    for (i, a) in answers.into_iter().enumerate() {
        match i % 6 {
            0 => {
                let e164 = a.expect("served").numbers[0].e164.clone();
                into_a1.push(e164.clone());
                served.push(e164);
            }
            1 => {
                assert_violates(a, "ACCOUNT_NOT_ACTIVE");
            }
            2 => {
                assert_error(a, Code::PermissionDenied);
            }
            3 => {
                assert_error(a, Code::NotFound);
            }
            _ => served.push(a.expect("a request id's call").numbers[0].e164.clone()),
        }
    }
    // The calls with one request id got one number between them.
    let distinct: BTreeSet<&String> = served.iter().collect();
    assert_eq!(distinct.len(), 4 + 4);
    let held = |account: &pb::Account| {
        let id = account.id.clone();
        let sql = &app.sql;
        async move {
            sql.query_one(
                "SELECT count(*) FROM numbers WHERE holder_id::text = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
        }
    };
    assert_eq!(
        held(&t.b).await,
        0,
        "nothing went into the suspended account"
    );
    assert_eq!(held(&t.a1).await, 4);
    assert_eq!(held(&t.a).await, 1 + 4);
    // The refusals did not split the group: the calls into A1 were written together. (Of two
    // calls with one request id, the one sent back to run alone may win the request id and
    // allocate in its own transaction; the other is then answered its answer.)
    let transactions: BTreeSet<String> = writers(&app, &into_a1).await.into_values().collect();
    assert_eq!(transactions.len(), 1);
}

#[tokio::test]
async fn when_a_group_runs_short_each_call_gets_what_it_would_have_got_alone() {
    let (app, t, admin) = one_group_at_a_time(10).await;
    let (holder, first) = hold_first_group(&app, &t, &admin, "first").await;
    let calls = (0..12)
        .map(|_| (admin.clone(), allocate_quantity(&t.provider, &t.a, 1)))
        .collect();
    let answers = queued_behind(holder, calls).await;
    first.await.unwrap().expect("the first call");
    let (served, refused): (Vec<_>, Vec<_>) = answers.into_iter().partition(|a| a.is_ok());
    assert_eq!(served.len(), 9, "the pool had 9 numbers left for them");
    for r in refused {
        let status = r.expect_err("refused");
        assert_eq!(violated_preconditions(&status), ["NOT_ENOUGH_NUMBERS"]);
        assert!(
            status.message().contains("has 0 unused"),
            "{}",
            status.message()
        );
    }
}
