//! ImportNumbers and ExportNumbers: CSV streamed in and out. Import: the bytes go through
//! parser threads (libphonenumber parsing is CPU work, spread over the cores) into a spool
//! file; then, in one transaction, the spooled rows' line, id, E.164 and holder are staged by
//! COPY BINARY, set-based checks reject rows, the quota admission every entry of numbers
//! passes rejects the rows of accounts that would overflow, the rest are copied (COPY BINARY)
//! straight into `numbers`, and their events are written in one INSERT ... SELECT. Memory
//! stays bounded: rows are never all held, only batches of them, the lines of the rejected
//! rows and at most [`MAX_REPORTED`] rejected rows listed.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::Caller;
use super::allocation::admit_each;
use super::number_pool::{query, receiving_provider};
use crate::domain::account::{Account, child_path};
use crate::domain::command::{ImportMode, ImportNumbers, NumberFilter};
use crate::domain::csv::{self, Batch, ChunkReader, ExportWriter, Reason, Rejected, SpooledRow};
use crate::domain::number::NumberState;
use crate::domain::principal::Principal;
use crate::error::{Error, Result};
use crate::store::import as store;
use crate::store::numbers::NumberQuery;
use crate::store::{Db, Fingerprint, Idempotency, KEPT_WHOLE, Kept, Lock, Tx, accounts, numbers};

/// The RPC, in the request id's fingerprint as every mutation's is.
pub const METHOD: &str = "ImportNumbers";
/// Rejected rows listed in the answer (all are counted).
pub const MAX_REPORTED: usize = 10_000;
/// Rows between progress messages.
const PROGRESS_EVERY: i64 = 50_000;
/// Numbers per export batch.
const EXPORT_BATCH: i64 = 1000;
/// Bytes read from the spool at a time.
const SPOOL_READ: usize = 256 * 1024;

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

/// Runs an import to its report, telling `progress` how it goes when it listens. `request` is
/// the options as sent: with the CSV, what a retry must send again.
///
/// No pooled connection is held while the caller sends: the CSV is parsed as it arrives and
/// its rows spooled to an anonymous temporary file (at most `max_bytes` of CSV, so disk and
/// memory stay bounded), and only once the last chunk is in does the import take a connection
/// and run its one transaction (COPY from the spool, the set-based checks, the insert). A
/// caller that goes quiet holds a file and a parser thread, never a share of the database.
pub async fn import(
    db: &Db,
    caller: &Caller,
    c: &ImportNumbers,
    request: &[u8],
    chunks: impl Stream<Item = Result<Bytes>> + Send + Unpin,
    progress: &(dyn Fn(Progress) + Sync),
    max_bytes: u64,
) -> Result<Report> {
    let (spool, fingerprint, mut report) = receive(c, request, chunks, progress, max_bytes).await?;
    store_import(db, caller, c, spool, &fingerprint, &mut report).await?;
    Ok(report)
}

/// The CSV in, parsed on threads as it comes (libphonenumber parsing is CPU work): the good
/// rows spooled to a temporary file (frames of [`csv::SpooledRow`]s, each after its length),
/// the rows the parser refused counted in the report, the fingerprint of the whole request.
async fn receive(
    c: &ImportNumbers,
    request: &[u8],
    mut chunks: impl Stream<Item = Result<Bytes>> + Send + Unpin,
    progress: &(dyn Fn(Progress) + Sync),
    max_bytes: u64,
) -> Result<(tokio::fs::File, Vec<u8>, Report)> {
    let (chunk_tx, chunk_rx) = mpsc::channel::<Bytes>(8);
    let (batch_tx, mut batch_rx) = mpsc::channel::<Result<Batch>>(4);
    let region = c.region.clone();
    // Parsing is bulk CPU work: on threads of their own (one per core), at a lower
    // scheduling priority, so that when the cores are busy the other tenants' calls go first
    // and an import takes what they leave (all of it on an idle machine).
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (parsed_tx, parser) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("import-parse".into())
        .spawn(move || {
            crate::niceness::lower_this_thread();
            let reader = ChunkReader::new(chunk_rx);
            csv::parse(
                reader,
                region,
                batch_tx,
                workers,
                crate::niceness::lower_this_thread,
            );
            let _ = parsed_tx.send(());
        })
        .map_err(|e| Error::Internal(format!("cannot start the parser: {e}")))?;
    let mut fingerprint = Fingerprint::new(METHOD);
    fingerprint.update(request);
    let feed = async move {
        let mut received = 0u64;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            received += chunk.len() as u64;
            if received > max_bytes {
                crate::metrics::record_limit_refusal("max-import-bytes");
                return Err(Error::LimitExceeded {
                    limit: "max-import-bytes",
                    description: format!(
                        "the import is larger than the most one import may send ({max_bytes} bytes of CSV); split the file and import the parts"
                    ),
                    retry_after: None,
                });
            }
            fingerprint.update(&chunk);
            if chunk_tx.send(chunk).await.is_err() {
                break;
            }
        }
        drop(chunk_tx);
        Ok::<_, Error>(fingerprint.finish())
    };

    let spooled = tempfile::tempfile().map_err(|e| Error::Internal(format!("spool: {e}")))?;
    let mut spool = tokio::fs::File::from_std(spooled);
    let mut report = Report::default();
    let collect = async {
        let mut last_progress = 0;
        while let Some(batch) = batch_rx.recv().await {
            let batch = batch?;
            report.rows_read += batch.rows;
            for r in batch.rejected {
                report.reject(r);
            }
            let frame = (batch.spool.len() as u32).to_le_bytes();
            spool
                .write_all(&frame)
                .await
                .and(spool.write_all(&batch.spool).await)
                .map_err(spool_error)?;
            if report.rows_read - last_progress >= PROGRESS_EVERY {
                last_progress = report.rows_read;
                // Progress is only news: a caller that does not read it does not hold us up.
                progress(report.progress());
            }
        }
        Ok::<_, Error>(())
    };
    let (fingerprint, collected) = tokio::join!(feed, collect);
    let _ = parser.await;
    let fingerprint = fingerprint?;
    collected?;
    spool
        .flush()
        .await
        .and(spool.rewind().await)
        .map_err(|e| Error::Internal(format!("spool: {e}")))?;
    Ok((spool, fingerprint, report))
}

/// The import's one transaction, once the whole CSV is in: a retried request id answers the
/// first report; else COPY from the spool, the checks, and the insert.
async fn store_import(
    db: &Db,
    caller: &Caller,
    c: &ImportNumbers,
    mut spool: tokio::fs::File,
    fingerprint: &[u8],
    report: &mut Report,
) -> Result<()> {
    let mut client = db.client().await?;
    let mut timed = crate::metrics::Transaction::start(METHOD);
    let tx = client.transaction().await?;
    // The import's statements grow with its rows: the pool's statement backstop is not theirs.
    crate::store::deadline::unbounded(&tx).await?;
    let validate_only = c.mode == ImportMode::ValidateOnly;
    let guard = Idempotency::new(&caller.principal, METHOD, &caller.request_id, validate_only);
    if let Some(seen) = guard.claim(&tx).await? {
        let Kept::Whole(response) = seen.replay(&caller.principal, fingerprint)? else {
            return Err(Error::Internal("an import's report is kept whole".into()));
        };
        *report = serde_json::from_slice(&response).map_err(|e| Error::Internal(e.to_string()))?;
        timed.end("replay");
        return Ok(());
    }

    let started = Instant::now();
    store::stage(&tx).await?;
    // Each row's number id is drawn when it is staged and drawn again, in the same order, when
    // it is copied into numbers: the ids are held by neither side, only the seed.
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let drawn = Ids::new(rand::random(), millis);
    let mut ids = drawn.clone();
    let mut reader = Spool::new(&mut spool);
    {
        let staged = store::copy_staged(&tx).await?;
        futures::pin_mut!(staged);
        while reader.next_frame().await? {
            let mut rows = reader.frame();
            while let Some(row) = SpooledRow::read(&mut rows) {
                store::write_staged(staged.as_mut(), &row, ids.next()).await?;
            }
        }
        staged.as_mut().finish().await?;
    }
    let staged = started.elapsed();

    store::reject_known(&tx, c.owner_id).await?;
    let holders = reject_over_quota(&tx, c.owner_id).await?;
    let room = MAX_REPORTED.saturating_sub(report.rejected_rows.len()) as i64;
    let (rejected, listed) = store::rejects(&tx, room).await?;
    report.rows_rejected += rejected;
    report.rejected_rows.extend(listed);
    report.rejected_rows.sort_by_key(|r| r.line);
    let checked = started.elapsed();

    let insert = match c.mode {
        ImportMode::BestEffort => true,
        ImportMode::AllOrNothing => report.rows_rejected == 0,
        ImportMode::ValidateOnly => false,
    };
    if insert {
        // Every holder the rows may name, with its path: the owner, and the accounts admitted.
        let paths: BTreeMap<Uuid, String> =
            std::iter::once((c.owner_id, child_path("", c.owner_id)))
                .chain(holders.into_iter().map(|a| (a.id, a.path)))
                .collect();
        let skip = store::rejected_lines(&tx).await?;
        let series = SeriesIndex::new(store::series(&tx, c.owner_id).await?);
        let mut ids = drawn.clone();
        reader.rewind().await?;
        let copy = store::copy_numbers(&tx).await?;
        futures::pin_mut!(copy);
        let mut picks = Picks::default();
        while reader.next_frame().await? {
            let mut rows = reader.frame();
            while let Some(row) = SpooledRow::read(&mut rows) {
                let id = ids.next();
                if skip.binary_search(&row.line).is_ok() {
                    continue;
                }
                let holder = row.holder_id.unwrap_or(c.owner_id);
                let Some(holder_path) = paths.get(&holder) else {
                    return Err(Error::Internal(format!(
                        "line {}: holder {holder} neither rejected nor admitted",
                        row.line
                    )));
                };
                let filing = store::Filing {
                    id,
                    owner: c.owner_id,
                    holder,
                    holder_path,
                    series: series.file(row.e164),
                    pick: picks.next(),
                };
                store::write_number(copy.as_mut(), &row, &filing).await?;
            }
        }
        report.rows_imported = copy.as_mut().finish().await? as i64;
        let copied = started.elapsed();
        let states: Vec<(Uuid, String, NumberState)> = paths
            .into_iter()
            .map(|(h, path)| (h, path, NumberState::available(h)))
            .collect();
        let events = store::record_events(&tx, c.owner_id, &caller.actor(), &states).await?;
        if events != report.rows_imported as u64 {
            return Err(Error::Internal(format!(
                "{} numbers imported but {events} events recorded",
                report.rows_imported
            )));
        }
        tracing::info!(
            rows = report.rows_imported,
            stage_ms = staged.as_millis() as u64,
            checks_ms = (checked - staged).as_millis() as u64,
            copy_ms = (copied - checked).as_millis() as u64,
            events_ms = (started.elapsed() - copied).as_millis() as u64,
            "import stored"
        );
    }
    guard.record(&tx, fingerprint, &kept(report)?).await?;
    if insert {
        tx.commit().await?;
        timed.end("commit");
    } else {
        tx.rollback().await?;
        timed.end("rollback");
    }
    crate::metrics::record_import(report.rows_read, report.rows_imported, report.rows_rejected);
    Ok(())
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

fn spool_error(e: std::io::Error) -> Error {
    Error::Internal(format!("spool: {e}"))
}

/// The spool read back, frame by frame (a frame is a parser batch's rows).
struct Spool<'a> {
    file: BufReader<&'a mut tokio::fs::File>,
    frame: Vec<u8>,
}

impl<'a> Spool<'a> {
    fn new(file: &'a mut tokio::fs::File) -> Self {
        Self {
            file: BufReader::with_capacity(SPOOL_READ, file),
            frame: Vec::new(),
        }
    }

    /// Reads the next frame; false at the end.
    async fn next_frame(&mut self) -> Result<bool> {
        let mut len = [0u8; 4];
        match self.file.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(spool_error(e)),
        }
        self.frame.resize(u32::from_le_bytes(len) as usize, 0);
        self.file
            .read_exact(&mut self.frame)
            .await
            .map_err(spool_error)?;
        Ok(true)
    }

    fn frame(&self) -> &[u8] {
        &self.frame
    }

    async fn rewind(&mut self) -> Result<()> {
        self.file.rewind().await.map_err(spool_error)?;
        Ok(())
    }
}

/// Number ids drawn from a seed, the same seed drawing the same ids: time-ordered (version 7,
/// RFC 9562): the import's start in milliseconds, a counter, then random bits. Ids in row order
/// fill the primary key's index at its end and the event check reads it in order, where random
/// ids would touch a page of it at random for every row.
#[derive(Clone)]
struct Ids {
    random: StdRng,
    millis: u64,
    count: u64,
}

impl Ids {
    fn new(seed: [u8; 32], millis: u64) -> Self {
        Self {
            random: StdRng::from_seed(seed),
            millis,
            count: 0,
        }
    }

    fn next(&mut self) -> Uuid {
        let c = self.count;
        self.count += 1;
        let tail: [u8; 4] = self.random.random();
        let mut b = [0u8; 16];
        b[..6].copy_from_slice(&self.millis.to_be_bytes()[2..]);
        // 42 bits of counter around the version (4 bits) and the variant (2 bits).
        b[6] = 0x70 | ((c >> 38) & 0x0f) as u8;
        b[7] = (c >> 30) as u8;
        b[8] = 0x80 | ((c >> 24) & 0x3f) as u8;
        b[9] = (c >> 16) as u8;
        b[10] = (c >> 8) as u8;
        b[11] = c as u8;
        b[12..].copy_from_slice(&tail);
        Uuid::from_bytes(b)
    }
}

/// Where quantity allocation finds each number (`numbers.pick`): one random value for each run
/// of [`Picks::RUN`] rows. Equal keys are ordered by the row's place in the table, so an
/// allocation that starts at a random point takes a run of rows that lie side by side in the
/// table and its indexes (what the rows share, pages and index leaves, is written once), while
/// concurrent allocations still start far apart. A random value per row scatters a hundred
/// numbers over a hundred pages: measured, 15,000 against 23,600 numbers/s at quantity 100.
#[derive(Default)]
struct Picks {
    value: f64,
    left: u32,
}

impl Picks {
    const RUN: u32 = 1000;

    fn next(&mut self) -> f64 {
        if self.left == 0 {
            (self.value, self.left) = (rand::random(), Self::RUN);
        }
        self.left -= 1;
        self.value
    }
}

/// A provider's series by prefix: a number is filed in the series with the longest prefix
/// that starts it, as `series_of` files the numbers added one by one.
struct SeriesIndex {
    by_prefix: HashMap<String, Uuid>,
    longest: usize,
}

impl SeriesIndex {
    fn new(series: Vec<(String, Uuid)>) -> Self {
        let longest = series.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
        Self {
            by_prefix: series.into_iter().collect(),
            longest,
        }
    }

    fn file(&self, e164: &str) -> Option<Uuid> {
        (1..=self.longest.min(e164.len()))
            .rev()
            .find_map(|n| self.by_prefix.get(e164.get(..n)?).copied())
    }
}

/// Rows that the admission of numbers refuses (an account of the owner's tree past its quota,
/// or not active) are rejected, all the rows of one target account together, through the
/// admission every entry of numbers passes. Answers the targets that remain.
async fn reject_over_quota(tx: &Tx<'_>, owner: Uuid) -> Result<Vec<Account>> {
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
            Ok(()) => admitted.push(account),
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

/// The CSV of the numbers a filter selects, in E.164 order, chunk by chunk.
///
/// Each chunk is one keyset page (in E.164 order, after the last one sent), read on a
/// pooled connection taken for that page only and given back before the chunk goes to the
/// caller, so a caller that reads slowly, or not at all, holds no share of the database.
/// The export is therefore not one snapshot: under concurrent changes each number is exported
/// at most once, as it was when its page was read, and a number added behind the cursor
/// during the export is not in it. For an inventory listing that is the useful definition
/// (the alternative, one transaction for the whole stream, lets any caller pin a connection
/// and hold back vacuum for as long as it likes).
pub struct Export {
    db: Db,
    query: NumberQuery,
    after: Option<(String, Uuid)>,
    csv: ExportWriter,
    done: bool,
}

impl Export {
    /// Checks the filter against the caller's scope before anything is sent.
    pub async fn start(db: Db, p: &Principal, filter: &NumberFilter) -> Result<Self> {
        let mut query = query(&db.client().await?, p, filter).await?;
        query.whole = true;
        Ok(Self {
            db,
            query,
            after: None,
            csv: ExportWriter::new()?,
            done: false,
        })
    }

    /// The next chunk of CSV (the header comes with the first), or `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        let page = {
            let client = self.db.client().await?;
            numbers::list(&client, &self.query, self.after.as_ref(), EXPORT_BATCH).await?
        };
        self.done = page.len() < EXPORT_BATCH as usize;
        if let Some(last) = page.last() {
            self.after = Some((last.e164.clone(), last.id));
        }
        for n in &page {
            self.csv.write(n)?;
        }
        Ok(Some(self.csv.chunk()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_filed_in_the_series_with_the_longest_prefix_that_starts_it() {
        let (us, denver, uk) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let index = SeriesIndex::new(vec![
            ("+1".into(), us),
            ("+1303555".into(), denver),
            ("+44".into(), uk),
        ]);
        assert_eq!(index.file("+13035550100"), Some(denver));
        assert_eq!(index.file("+13035560100"), Some(us));
        assert_eq!(index.file("+442079460018"), Some(uk));
        assert_eq!(index.file("+33123456789"), None);
        assert_eq!(SeriesIndex::new(Vec::new()).file("+13035550100"), None);
    }

    #[test]
    fn rows_share_a_pick_in_runs_and_each_run_draws_its_own() {
        let mut picks = Picks::default();
        let drawn: Vec<f64> = (0..3 * Picks::RUN).map(|_| picks.next()).collect();
        let runs: Vec<&[f64]> = drawn.chunks(Picks::RUN as usize).collect();
        assert!(runs.iter().all(|run| run.iter().all(|p| *p == run[0])));
        assert!(runs.iter().all(|run| (0.0..1.0).contains(&run[0])));
        assert!(runs[0][0] != runs[1][0] && runs[1][0] != runs[2][0]);
    }

    #[test]
    fn the_same_seed_draws_the_same_ids_in_increasing_order() {
        let (seed, millis) = ([7; 32], 1_790_000_000_000);
        let (mut a, mut b) = (Ids::new(seed, millis), Ids::new(seed, millis));
        let drawn: Vec<Uuid> = (0..300).map(|_| a.next()).collect();
        assert_eq!(drawn, (0..300).map(|_| b.next()).collect::<Vec<_>>());
        assert!(drawn.iter().all(|id| id.get_version_num() == 7));
        assert!(
            drawn
                .iter()
                .all(|id| id.get_variant() == uuid::Variant::RFC4122)
        );
        assert!(drawn.windows(2).all(|w| w[0] < w[1]));
        let (seconds, _) = drawn[0].get_timestamp().unwrap().to_unix();
        assert_eq!(seconds, millis / 1000);
        // Past the counter's low bits, still in order and still version 7.
        let mut far = Ids::new(seed, millis);
        far.count = (1 << 30) - 1;
        let (x, y) = (far.next(), far.next());
        assert!(x < y && y.get_version_num() == 7);
        assert_ne!(
            Ids::new([8; 32], millis).next(),
            Ids::new(seed, millis).next()
        );
    }
}
