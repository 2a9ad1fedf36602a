//! Background work: expired reservations and finished aging periods return numbers to
//! AVAILABLE. Each batch locks its rows with SKIP LOCKED in its own transaction, so several
//! replicas sweep side by side without ending anything twice or waiting on each other.

use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::domain::lifecycle::{self, Move};
use crate::domain::number::Actor;
use crate::error::Result;
use crate::store::Db;
use crate::store::allocation::{self as store, Due};

/// Numbers per transaction: small enough that a batch never holds many locks for long.
pub const BATCH: i64 = 500;

/// Sweeps every `interval` until draining starts.
pub async fn run(db: Db, interval: Duration, mut draining: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = draining.changed() => break,
        }
        match sweep(&db).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(numbers = n, "swept expired reservations and aging"),
            // The database may be down or not migrated yet; the next round tries again.
            Err(e) => tracing::warn!(error = %e, "sweep failed"),
        }
    }
}

/// Ends every reservation and aging period that is over now; answers how many numbers it freed.
pub async fn sweep(db: &Db) -> Result<usize> {
    let mut total = 0;
    for due in [Due::Reservations, Due::Aging] {
        loop {
            let n = sweep_batch(db, due).await?;
            total += n;
            if (n as i64) < BATCH {
                break;
            }
        }
    }
    Ok(total)
}

async fn sweep_batch(db: &Db, due: Due) -> Result<usize> {
    let mut client = db.client().await?;
    let tx = client.transaction().await?;
    let now = SystemTime::now();
    let m = match due {
        Due::Reservations => Move::ExpireReservation { now },
        Due::Aging => Move::EndAging { now },
    };
    let moves: Vec<_> = store::lock_due(&tx, due, now, BATCH)
        .await?
        .into_iter()
        .filter_map(|n| {
            let after = lifecycle::next(&n, &m).ok()?;
            Some((n, after))
        })
        .collect();
    store::save_moves(&tx, &moves, m.operation(), &Actor::system()).await?;
    tx.commit().await?;
    Ok(moves.len())
}
