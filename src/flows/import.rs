//! ImportNumbers and ExportNumbers: CSV streamed in and out. Import: the bytes go through a
//! parser thread (libphonenumber parsing is CPU work) into COPY text, streamed into a staging
//! table; set-based checks reject rows, the quota admission every entry of numbers passes
//! rejects the rows of accounts that would overflow, and one INSERT ... SELECT adds the rest
//! with their events. Memory stays bounded: rows are never all held, only batches of them and
//! at most [`MAX_REPORTED`] rejected rows.

use bytes::Bytes;
use futures::{SinkExt, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::Caller;
use super::allocation::admit_each;
use super::number_pool::{query, receiving_provider};
use crate::domain::account::child_path;
use crate::domain::command::{ImportMode, ImportNumbers, NumberFilter};
use crate::domain::csv::{self, Batch, ChunkReader, ExportWriter, Reason, Rejected};
use crate::domain::number::NumberState;
use crate::domain::principal::Principal;
use crate::error::{Error, Result};
use crate::store::import as store;
use crate::store::{Db, Fingerprint, Idempotency, KEPT_WHOLE, Kept, Lock, Tx, accounts, numbers};

/// The RPC, in the request id's fingerprint as every mutation's is.
pub const METHOD: &str = "ImportNumbers";
/// Rejected rows listed in the answer (all are counted).
pub const MAX_REPORTED: usize = 10_000;
/// Rows between progress messages.
const PROGRESS_EVERY: i64 = 50_000;
/// Numbers per export batch.
const EXPORT_BATCH: i32 = 1000;

/// How far an import has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub rows_read: i64,
    pub rows_rejected: i64,
}

/// What an import did: every rejected row counted, the first [`MAX_REPORTED`] listed by line.
/// Recorded as the answer to its request id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub rows_read: i64,
    pub rows_imported: i64,
    pub rows_rejected: i64,
    pub rejected_rows: Vec<Rejected>,
}

impl Report {
    fn reject(&mut self, r: Rejected) {
        self.rows_rejected += 1;
        if self.rejected_rows.len() < MAX_REPORTED {
            self.rejected_rows.push(r);
        }
    }

    fn progress(&self) -> Progress {
        Progress {
            rows_read: self.rows_read,
            rows_rejected: self.rows_rejected,
        }
    }
}

/// What the caller is told while an import runs: progress, then the report or the error.
#[derive(Debug, Clone)]
pub enum Step {
    Progress(Progress),
    Done(Report),
}

/// Whether the caller may import into `owner`: asked before the CSV is read, so a refusal is
/// the call's answer.
pub async fn check(db: &Db, p: &Principal, owner: Uuid) -> Result<()> {
    receiving_provider(&db.client().await?, p, owner).await?;
    Ok(())
}

/// Runs an import and tells `steps` how it goes, ending with its report or its error.
/// `request` is the options as sent: with the CSV, what a retry must send again.
pub async fn import(
    db: Db,
    caller: Caller,
    c: ImportNumbers,
    request: Vec<u8>,
    chunks: impl Stream<Item = Result<Bytes>> + Send + Unpin,
    steps: mpsc::Sender<Result<Step>>,
) {
    let last = match run(&db, &caller, &c, &request, chunks, &steps).await {
        Ok(report) => Ok(Step::Done(report)),
        Err(e) => Err(e),
    };
    let _ = steps.send(last).await;
}

async fn run(
    db: &Db,
    caller: &Caller,
    c: &ImportNumbers,
    request: &[u8],
    mut chunks: impl Stream<Item = Result<Bytes>> + Send + Unpin,
    steps: &mpsc::Sender<Result<Step>>,
) -> Result<Report> {
    let mut client = db.client().await?;
    let tx = client.transaction().await?;
    let validate_only = c.mode == ImportMode::ValidateOnly;
    let guard = Idempotency::new(&caller.principal, METHOD, &caller.request_id, validate_only);
    let previous = guard.claim(&tx).await?;

    // The CSV goes from the stream to the parser thread, fingerprinted on the way.
    let (chunk_tx, chunk_rx) = mpsc::channel::<Bytes>(8);
    let (batch_tx, mut batch_rx) = mpsc::channel::<Result<Batch>>(4);
    let region = c.region.clone();
    let parser = tokio::task::spawn_blocking(move || {
        csv::parse(ChunkReader::new(chunk_rx), region, batch_tx)
    });
    let mut fingerprint = Fingerprint::new(METHOD);
    fingerprint.update(request);
    let feed = async move {
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            fingerprint.update(&chunk);
            if chunk_tx.send(chunk).await.is_err() {
                break;
            }
        }
        drop(chunk_tx);
        Ok::<_, Error>(fingerprint.finish())
    };

    store::stage(&tx).await?;
    let mut report = Report::default();
    let copy = async {
        let sink = store::copy_in(&tx).await?;
        futures::pin_mut!(sink);
        let mut last_progress = 0;
        while let Some(batch) = batch_rx.recv().await {
            let batch = batch?;
            report.rows_read += batch.rows;
            for r in batch.rejected {
                report.reject(r);
            }
            if !batch.copy.is_empty() {
                sink.send(Bytes::from(batch.copy)).await?;
            }
            if report.rows_read - last_progress >= PROGRESS_EVERY {
                last_progress = report.rows_read;
                let _ = steps.send(Ok(Step::Progress(report.progress()))).await;
            }
        }
        sink.as_mut().finish().await?;
        Ok::<_, Error>(())
    };
    let (fingerprint, copied) = tokio::join!(feed, copy);
    let _ = parser.await;
    let fingerprint = fingerprint?;
    copied?;

    if let Some(seen) = previous {
        let Kept::Whole(response) = seen.replay(&caller.principal, &fingerprint)? else {
            return Err(Error::Internal("an import's report is kept whole".into()));
        };
        return serde_json::from_slice(&response).map_err(|e| Error::Internal(e.to_string()));
    }

    store::reject_known(&tx, c.owner_id).await?;
    let holders = reject_over_quota(&tx, c.owner_id).await?;
    let room = MAX_REPORTED.saturating_sub(report.rejected_rows.len()) as i64;
    let (rejected, listed) = store::rejects(&tx, room).await?;
    report.rows_rejected += rejected;
    report.rejected_rows.extend(listed);
    report.rejected_rows.sort_by_key(|r| r.line);

    let insert = match c.mode {
        ImportMode::BestEffort => true,
        ImportMode::AllOrNothing => report.rows_rejected == 0,
        ImportMode::ValidateOnly => false,
    };
    if insert {
        let states: Vec<(Uuid, NumberState)> = std::iter::once(c.owner_id)
            .chain(holders)
            .map(|h| (h, NumberState::available(h)))
            .collect();
        let owner_path = child_path("", c.owner_id);
        report.rows_imported =
            store::insert(&tx, c.owner_id, &owner_path, &caller.actor(), &states).await?;
    }
    guard.record(&tx, &fingerprint, &kept(&report)?).await?;
    if insert {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(report)
}

/// The report as kept for a retry: whole up to [`KEPT_WHOLE`] bytes; above, with every count
/// but only as many of the first rejected rows as fit (the staged rows a larger list was made
/// of are gone after the import).
fn kept(report: &Report) -> Result<Kept> {
    let encode = |r: &Report| serde_json::to_vec(r).map_err(|e| Error::Internal(e.to_string()));
    let mut answer = encode(report)?;
    let mut listed = report.rejected_rows.len();
    while answer.len() > KEPT_WHOLE && listed > 0 {
        listed /= 2;
        answer = encode(&Report {
            rejected_rows: report.rejected_rows[..listed].to_vec(),
            ..report.clone()
        })?;
    }
    Ok(Kept::Whole(answer))
}

/// Rows that the admission of numbers refuses (an account of the owner's tree past its quota,
/// or not active) are rejected, all the rows of one target account together, through the
/// admission every entry of numbers passes. Answers the targets that remain.
async fn reject_over_quota(tx: &Tx<'_>, owner: Uuid) -> Result<Vec<Uuid>> {
    let mut targets = Vec::new();
    for (id, incoming) in store::targets(tx).await? {
        match accounts::get(tx, id, Lock::No).await {
            Ok(account) => targets.push((account, incoming)),
            // Rejected already as an unknown holder.
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let answers = admit_each(tx, &child_path("", owner), &targets).await?;
    let mut admitted = Vec::with_capacity(targets.len());
    for ((account, _), answer) in targets.into_iter().zip(answers) {
        match answer {
            Ok(()) => admitted.push(account.id),
            Err(e) => {
                let reason = match e {
                    Error::QuotaExceeded { .. } => Reason::QuotaExceeded,
                    _ => Reason::InvalidAccount,
                };
                store::reject_target(tx, account.id, reason, &e.to_string()).await?;
            }
        }
    }
    Ok(admitted)
}

/// The CSV of the numbers a filter selects, in E.164 order, chunk by chunk on the receiver.
/// The filter is checked before anything is sent; a later failure ends the chunks.
pub async fn export(
    db: Db,
    p: &Principal,
    filter: &NumberFilter,
) -> Result<mpsc::Receiver<Result<Vec<u8>>>> {
    let q = query(&db.client().await?, p, filter).await?;
    let (out, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let failed = out.clone();
        let result: Result<()> = async {
            let mut client = db.client().await?;
            let tx = client.transaction().await?;
            let portal = numbers::open_cursor(&tx, &q).await?;
            let mut csv = ExportWriter::new()?;
            loop {
                let batch = numbers::next_batch(&tx, &portal, EXPORT_BATCH).await?;
                let done = batch.len() < EXPORT_BATCH as usize;
                for n in &batch {
                    csv.write(n)?;
                }
                let chunk = csv.chunk()?;
                if !chunk.is_empty() && out.send(Ok(chunk)).await.is_err() {
                    return Ok(());
                }
                if done {
                    return Ok(());
                }
            }
        }
        .await;
        if let Err(e) = result {
            let _ = failed.send(Err(e)).await;
        }
    });
    Ok(rx)
}
