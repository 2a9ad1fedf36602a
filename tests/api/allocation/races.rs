//! Races: many callers at once never take the same number twice, and the inventory counters
//! still agree with the numbers.

use std::collections::{BTreeMap, BTreeSet};

use super::stocked;
use crate::helpers::violated_preconditions;
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
