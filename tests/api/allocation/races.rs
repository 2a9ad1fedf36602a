//! Races: many callers at once never take the same number twice, and the inventory counters
//! still agree with the numbers.

use std::collections::{BTreeMap, BTreeSet};

use super::stocked;
use numbering_client::v1 as pb;

use crate::helpers::{ok, violated_preconditions};
use crate::requests::{agent, allocate_quantity, assign};

#[tokio::test]
async fn concurrent_allocators_never_share_a_number_and_the_inventory_adds_up() {
    const POOL: u64 = 2000;
    const CALLERS: usize = 32;
    const CALLS: usize = 10;
    const EACH: i64 = 5;
    let (app, t, _, admin) = stocked(POOL).await;
    let tasks = (0..CALLERS).map(|i| {
        let mut c = admin.clone();
        let to = if i % 2 == 0 { t.a.clone() } else { t.b.clone() };
        let from = t.provider.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..CALLS {
                let moved = c
                    .allocation
                    .allocate_numbers(allocate_quantity(&from, &to, EACH))
                    .await
                    .expect("no allocation fails while the pool has numbers")
                    .into_inner()
                    .numbers;
                assert_eq!(moved.len() as i64, EACH);
                got.extend(moved.into_iter().map(|n| (n.e164, n.holder_id)));
            }
            got
        })
    });
    let mut handed_out: BTreeMap<String, String> = BTreeMap::new();
    for task in futures::future::join_all(tasks).await {
        for (e164, holder) in task.unwrap() {
            assert!(
                handed_out.insert(e164.clone(), holder).is_none(),
                "{e164} handed out twice"
            );
        }
    }
    assert_eq!(handed_out.len(), CALLERS * CALLS * EACH as usize);
    let now = app.snapshot().await;
    // Nothing lost: every number is still there, each where its answer said, with its `add`
    // event and, when it was handed out, one `allocate` event.
    assert_eq!(now.numbers.len(), POOL as usize);
    for r in &now.numbers {
        match handed_out.get(&r.e164) {
            Some(holder) => {
                assert_eq!(&r.holder, holder);
                assert_eq!(r.events, 2);
            }
            None => {
                assert_eq!(r.holder, t.provider.id);
                assert_eq!(r.events, 1);
            }
        }
    }
    // The striped counters agree with the rows.
    let real: BTreeSet<(String, String, i64)> = app.counted_by_holder().await.into_iter().collect();
    let counted: BTreeSet<(String, String, i64)> = now.inventory.into_iter().collect();
    assert_eq!(counted, real);
}

#[tokio::test]
async fn concurrent_assigns_of_one_number_let_exactly_one_win() {
    let (app, _, numbers, admin) = stocked(1).await;
    let tasks = (0..16).map(|i| {
        let mut c = admin.clone();
        let n = numbers[0].clone();
        tokio::spawn(async move {
            c.allocation
                .assign_number(assign(&n, agent(&i.to_string(), None)))
                .await
        })
    });
    let results = futures::future::join_all(tasks).await;
    let won = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    assert_eq!(won, 1);
    for r in results {
        if let Ok(Err(status)) = r {
            assert_eq!(violated_preconditions(&status), ["NUMBER_ASSIGNED"]);
        }
    }
    // Its `add` event, and the one assignment.
    assert_eq!(app.row(&numbers[0]).await.events, 2);
}

#[tokio::test]
async fn an_allocation_waits_for_numbers_another_transaction_locked_and_takes_them_when_it_rolls_back()
 {
    let (mut app, t, _, admin) = stocked(3).await;
    // A transaction that locks the whole pool and will roll back (a dry run, say).
    let holder = app.sql.transaction().await.expect("begin");
    let locked = holder
        .query(
            "SELECT id FROM numbers WHERE status = 'available' FOR UPDATE",
            &[],
        )
        .await
        .expect("lock the pool");
    assert_eq!(locked.len(), 3);

    let (from, to, mut c) = (t.provider.clone(), t.a.clone(), admin.clone());
    let call = tokio::spawn(async move {
        c.allocation
            .allocate_numbers(allocate_quantity(&from, &to, 2))
            .await
    });
    // Until the call answers or waits on the pool's locks.
    for _ in 0..400 {
        let waiting: i64 = holder
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .expect("read the locks")
            .get(0);
        if waiting > 0 || call.is_finished() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    holder.rollback().await.expect("roll back");

    let moved = ok(call.await.expect("the call ran")).numbers;
    assert_eq!(moved.len(), 2);
    assert!(moved.iter().all(|n| n.holder_id == t.a.id));
    assert_eq!(app.held(&t.a, "available").await, 2);
}

#[tokio::test]
async fn allocations_of_one_never_fail_beside_dry_runs_and_quota_refused_allocations_of_five() {
    const ALLOCATIONS: usize = 30;
    // Always at least 4 unused numbers left in the pool.
    let (app, t, _, admin) = stocked(ALLOCATIONS as u64 + 4).await;
    app.set_quota(&t.b, 1).await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let beside = |request: pb::AllocateNumbersRequest| {
        let (mut c, done) = (admin.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                // Refused or rolled back: they only lock rows for a while.
                let _ = c.allocation.allocate_numbers(request.clone()).await;
            }
        })
    };
    let dry_run = pb::AllocateNumbersRequest {
        validate_only: true,
        ..allocate_quantity(&t.provider, &t.a1, 5)
    };
    let refused = allocate_quantity(&t.provider, &t.b, 5);
    let others = vec![
        beside(dry_run.clone()),
        beside(dry_run),
        beside(refused.clone()),
        beside(refused),
    ];

    let mut c = admin.clone();
    let mut failed = Vec::new();
    for _ in 0..ALLOCATIONS {
        if let Err(status) = c
            .allocation
            .allocate_numbers(allocate_quantity(&t.provider, &t.a, 1))
            .await
        {
            failed.push(violated_preconditions(&status));
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    futures::future::join_all(others).await;
    eprintln!("{} of {ALLOCATIONS} allocations of 1 failed", failed.len());
    assert!(failed.is_empty(), "failed: {failed:?}");
    assert_eq!(app.held(&t.a, "available").await, ALLOCATIONS as i64);
}
