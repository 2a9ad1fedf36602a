//! Background work: expired reservations and finished aging periods return numbers to
//! AVAILABLE, and stored answers to request ids are deleted once past their retention. Each
//! batch locks its rows with SKIP LOCKED in its own transaction, so several replicas sweep side
//! by side without ending anything twice or waiting on each other.

use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::domain::lifecycle::{self, Move};
use crate::domain::number::Actor;
use crate::error::Result;
use crate::store::Db;
use crate::store::allocation::{self as store, Due};

/// Numbers per transaction: small enough that a batch never holds many locks for long.
pub const BATCH: i64 = 500;

/// Sweeps every `interval` until draining starts; answers to request ids are kept `retention`.
pub async fn run(
    db: Db,
    interval: Duration,
    retention: Duration,
    mut draining: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = draining.changed() => break,
        }
        // The database may be down or not migrated yet; the next round tries again.
        let swept = sweep(&db).await;
        crate::metrics::record_sweep(swept.as_ref().ok().copied());
        match swept {
            Ok(0) => {}
            Ok(n) => tracing::info!(numbers = n, "swept expired reservations and aging"),
            Err(e) => tracing::warn!(error = %e, "sweep failed"),
        }
        match prune_answers(&db, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(answers = n, "pruned answers past their retention"),
            Err(e) => tracing::warn!(error = %e, "pruning answers failed"),
        }
    }
}

/// Deletes every stored answer to a request id older than `retention`, a batch at a time;
/// answers how many it deleted. A retry after that runs as a first call.
pub async fn prune_answers(db: &Db, retention: Duration) -> Result<u64> {
    let mut total = 0;
    loop {
        let n = db.prune_answers(retention, BATCH).await?;
        total += n;
        if (n as i64) < BATCH {
            return Ok(total);
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
    let mut timed = crate::metrics::Transaction::start("Sweep");
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
    timed.end("commit");
    Ok(moves.len())
}
