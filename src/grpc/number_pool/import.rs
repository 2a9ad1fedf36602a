//! Import and export of numbers as CSV streams.
//!
//! Import: the CSV bytes go through a parser thread (libphonenumber parsing is CPU work) that
//! turns good rows into COPY text, streamed into a temporary staging table; then a few
//! set-based statements find duplicates, numbers already in the inventory and bad accounts,
//! and one INSERT ... SELECT adds the rest with their history events. Memory stays bounded:
//! rows are never all held, only batches of them and at most `MAX_REPORTED` rejected rows.

use std::collections::BTreeMap;
use std::io::Read;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use numbering_client::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Response, Status, Streaming};
use uuid::Uuid;

use crate::domain::command::NumberFilter;
use crate::domain::number::{Attributes, E164, NumberSource, NumberType};
use crate::domain::principal::Principal;
use crate::domain::validate::Violations;
use crate::error::{Error, Result};
use crate::flows::number_pool::{query as number_query, receiving_provider};
use crate::grpc::AppState;
use crate::grpc::convert::number_to_proto;
use crate::store::{Fingerprint, Idempotency, numbers};

/// The RPC, in the request id's fingerprint as every mutation's is.
const METHOD: &str = "ImportNumbers";

/// Longest CSV line; a longer one is rejected as a row, and its bytes are never held.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Rejected rows listed in the answer (all are counted).
pub const MAX_REPORTED: usize = 10_000;
/// Rows per COPY batch and between progress messages.
const BATCH_ROWS: usize = 10_000;
/// COPY bytes per batch: with a few batches in flight, memory stays a few MiB whatever the rows.
const BATCH_BYTES: usize = 1 << 20;
const PROGRESS_EVERY: i64 = 50_000;

/// The columns Import reads; `e164` is required.
pub const COLUMNS: &[&str] = &[
    "e164",
    "region",
    "number_type",
    "source",
    "carrier",
    "sip_trunk",
    "billing_reference",
    "service_info",
    "tags",
    "labels",
    "holder_id",
];
/// Columns Export adds and Import ignores, so an export can be imported again.
pub const EXPORT_ONLY: &[&str] = &[
    "status",
    "owner_id",
    "series_id",
    "assignee_kind",
    "assignee_id",
    "assignee_name",
    "reserved_for",
    "reservation_tag",
];

pub fn template() -> String {
    format!(
        "{}\n+13035550100,,geographic,purchased,Acme Carrier,trunk-1,BILL-42,Main line,sales|vip,team=west;floor=2,\n",
        COLUMNS.join(",")
    )
}

/// Tags are written `a|b`, labels `k=v;k2=v2`.
fn parse_tags(s: &str) -> Vec<String> {
    s.split('|')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}

fn parse_labels(s: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    s.split(';')
        .map(str::trim)
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("label {kv:?} is not key=value"))
        })
        .collect()
}

fn write_labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// A row the import refused.
#[derive(Debug, Clone)]
struct Rejected {
    line: i64,
    e164: String,
    reason: &'static str,
    message: String,
}

impl Rejected {
    fn to_proto(&self) -> pb::ImportRejectedRow {
        pb::ImportRejectedRow {
            line: self.line,
            e164: self.e164.clone(),
            reason: self.reason.into(),
            message: self.message.clone(),
        }
    }
}

/// A batch from the parser: COPY text for the good rows, and the bad ones.
struct Batch {
    copy: Vec<u8>,
    rows: i64,
    rejected: Vec<Rejected>,
}

/// Ends the last field of a row that was cut for being too long.
const TOO_LONG: &str = "\u{1}NUMBERING_ROW_TOO_LONG\u{1}";

/// Reads the CSV bytes the gRPC stream delivers, on the parser thread. A row (quoted newlines
/// included) longer than `MAX_LINE_BYTES` is cut there and marked, and the rest of it is
/// dropped as it arrives, so no row is ever buffered past that size.
struct ChunkReader {
    chunks: mpsc::Receiver<Bytes>,
    current: Bytes,
    /// Bytes of the current row so far.
    row_len: usize,
    in_quotes: bool,
    /// Dropping the rest of an over-long row, up to its end.
    skipping: bool,
    pending: &'static [u8],
}

impl ChunkReader {
    fn new(chunks: mpsc::Receiver<Bytes>) -> Self {
        Self {
            chunks,
            current: Bytes::new(),
            row_len: 0,
            in_quotes: false,
            skipping: false,
            pending: b"",
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.len());
                buf[..n].copy_from_slice(&self.pending[..n]);
                self.pending = &self.pending[n..];
                return Ok(n);
            }
            if self.current.is_empty() {
                match self.chunks.blocking_recv() {
                    Some(c) => self.current = c,
                    None => return Ok(0),
                }
                continue;
            }
            let mut n = 0;
            let mut copied = 0;
            while n < self.current.len() && copied < buf.len() {
                let b = self.current[n];
                n += 1;
                match b {
                    b'"' => self.in_quotes = !self.in_quotes,
                    b'\n' if !self.in_quotes => {
                        self.row_len = 0;
                        self.skipping = false;
                    }
                    _ => {}
                }
                if self.skipping {
                    continue;
                }
                self.row_len += 1;
                if self.row_len > MAX_LINE_BYTES {
                    self.skipping = true;
                    // The marker closes an open quote for the parser; the quotes of what is
                    // dropped are still followed, to find where the row really ends.
                    self.pending = if self.in_quotes {
                        b"\x01NUMBERING_ROW_TOO_LONG\x01\""
                    } else {
                        b"\x01NUMBERING_ROW_TOO_LONG\x01"
                    };
                    break;
                }
                buf[copied] = b;
                copied += 1;
            }
            self.current = self.current.slice(n..);
            if copied > 0 {
                return Ok(copied);
            }
        }
    }
}

/// COPY text format: backslash, tab and newlines escaped; `\N` for NULL.
fn copy_field(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.extend_from_slice(b"\\N"),
        Some(v) => {
            for b in v.bytes() {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    _ => out.push(b),
                }
            }
        }
    }
}

/// Where each known column sits in the file's header.
struct Header {
    index: BTreeMap<&'static str, usize>,
    width: usize,
}

fn read_header(headers: &csv::StringRecord) -> Result<Header> {
    let mut index = BTreeMap::new();
    for (i, name) in headers.iter().enumerate() {
        let name = name
            .trim()
            .trim_start_matches('\u{feff}')
            .to_ascii_lowercase();
        if let Some(known) = COLUMNS.iter().find(|c| **c == name) {
            if index.insert(*known, i).is_some() {
                return Err(Error::invalid(
                    "csv",
                    format!("column {name:?} appears twice in the header"),
                ));
            }
        } else if !EXPORT_ONLY.contains(&name.as_str()) {
            return Err(Error::invalid(
                "csv",
                format!(
                    "unknown column {name:?} in the header; the columns are {}",
                    COLUMNS.join(", ")
                ),
            ));
        }
    }
    if !index.contains_key("e164") {
        return Err(Error::invalid("csv", "the header has no e164 column"));
    }
    Ok(Header {
        index,
        width: headers.len(),
    })
}

/// Checks one data row; on success appends its COPY line.
fn parse_row(
    h: &Header,
    rec: &csv::StringRecord,
    line: i64,
    region: &str,
    out: &mut Vec<u8>,
) -> std::result::Result<(), Rejected> {
    let get = |c: &str| {
        h.index
            .get(c)
            .and_then(|i| rec.get(*i))
            .map(str::trim)
            .unwrap_or("")
    };
    let reject = |reason: &'static str, message: String| Rejected {
        line,
        e164: get("e164").chars().take(64).collect(),
        reason,
        message,
    };
    if rec.iter().any(|f| f.ends_with(TOO_LONG)) {
        return Err(Rejected {
            line,
            e164: String::new(),
            reason: "LINE_TOO_LONG",
            message: format!("longer than {MAX_LINE_BYTES} bytes"),
        });
    }
    if rec.len() != h.width {
        return Err(reject(
            "WRONG_COLUMN_COUNT",
            format!("{} columns; the header has {}", rec.len(), h.width),
        ));
    }
    let row_region = if get("region").is_empty() {
        region
    } else {
        get("region")
    };
    let parsed = E164::parse("e164", get("e164"), row_region)
        .map_err(|e| reject("INVALID_NUMBER", e.to_string()))?;
    let mut v = Violations::new();
    let number_type = match get("number_type") {
        "" => parsed.number_type,
        t => NumberType::parse(&t.to_ascii_lowercase())
            .ok_or_else(|| reject("INVALID_ATTRIBUTE", format!("unknown number_type {t:?}")))?,
    };
    let source = match get("source") {
        "" => NumberSource::Unspecified,
        s => NumberSource::parse(&s.to_ascii_lowercase())
            .ok_or_else(|| reject("INVALID_ATTRIBUTE", format!("unknown source {s:?}")))?,
    };
    let labels = parse_labels(get("labels")).map_err(|m| reject("INVALID_ATTRIBUTE", m))?;
    let mut a = Attributes {
        number_type,
        source,
        carrier: get("carrier").into(),
        sip_trunk: get("sip_trunk").into(),
        billing_reference: get("billing_reference").into(),
        service_info: get("service_info").into(),
        tags: parse_tags(get("tags")),
        labels,
    };
    a.normalise();
    a.validate(&mut v, "");
    if let Err(e) = v.finish() {
        return Err(reject("INVALID_ATTRIBUTE", e.to_string()));
    }
    let holder = match get("holder_id") {
        "" => None,
        h => Some(
            Uuid::parse_str(h)
                .map_err(|_| reject("INVALID_ACCOUNT", format!("holder_id {h:?} is not a UUID")))?,
        ),
    };
    let tags = (!a.tags.is_empty()).then(|| a.tags.join("|"));
    let labels = serde_json::to_string(&a.labels).unwrap_or_else(|_| "{}".into());
    let holder = holder.map(|h| h.to_string());
    out.extend_from_slice(line.to_string().as_bytes());
    for value in [
        Some(parsed.e164.as_str()),
        Some(a.number_type.as_str()),
        Some(a.source.as_str()),
        Some(&a.carrier),
        Some(&a.sip_trunk),
        Some(&a.billing_reference),
        Some(&a.service_info),
        tags.as_deref(),
        Some(&labels),
        holder.as_deref(),
    ] {
        out.push(b'\t');
        copy_field(out, value);
    }
    out.push(b'\n');
    Ok(())
}

/// The parser thread: CSV in, batches out. A bad header ends the import.
fn parse(reader: ChunkReader, region: String, batches: mpsc::Sender<Result<Batch>>) {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(reader);
    let header = match csv
        .headers()
        .map_err(|e| Error::invalid("csv", format!("cannot read the header: {e}")))
        .and_then(read_header)
    {
        Ok(h) => h,
        Err(e) => {
            let _ = batches.blocking_send(Err(e));
            return;
        }
    };
    let mut batch = Batch {
        copy: Vec::with_capacity(1 << 20),
        rows: 0,
        rejected: Vec::new(),
    };
    let mut record = csv::StringRecord::new();
    loop {
        let line = csv.position().line() as i64 + 1;
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                // The line the record started on: where the parser is now, less the lines the
                // record spans (csv's own start position counts a skipped blank line).
                let spanned = record
                    .iter()
                    .map(|f| f.matches('\n').count())
                    .sum::<usize>() as i64;
                let line = csv.position().line() as i64 - 1 - spanned;
                // A line of nothing but separators is a blank line.
                if record.iter().all(|f| f.trim().is_empty()) {
                    continue;
                }
                batch.rows += 1;
                if let Err(r) = parse_row(&header, &record, line, &region, &mut batch.copy) {
                    batch.rejected.push(r);
                }
            }
            Err(e) => {
                batch.rows += 1;
                let line = e.position().map_or(line, |p| p.line() as i64);
                batch.rejected.push(Rejected {
                    line,
                    e164: String::new(),
                    reason: "MALFORMED_ROW",
                    message: e.to_string(),
                });
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
            }
        }
        if batch.rows as usize >= BATCH_ROWS || batch.copy.len() >= BATCH_BYTES {
            let full = std::mem::replace(
                &mut batch,
                Batch {
                    copy: Vec::with_capacity(1 << 20),
                    rows: 0,
                    rejected: Vec::new(),
                },
            );
            if batches.blocking_send(Ok(full)).is_err() {
                return;
            }
        }
    }
    let _ = batches.blocking_send(Ok(batch));
}

/// What the import was asked.
struct Options {
    owner: Uuid,
    mode: pb::ImportMode,
    region: String,
    request_id: String,
    /// The options as sent: with the CSV, what a retry must send again.
    request: Vec<u8>,
}

fn options(first: Option<pb::ImportNumbersRequest>) -> Result<Options> {
    let Some(pb::ImportNumbersRequest {
        part: Some(pb::import_numbers_request::Part::Options(o)),
    }) = first
    else {
        return Err(Error::invalid(
            "options",
            "the first message must carry the options",
        ));
    };
    let request = prost::Message::encode_to_vec(&o);
    let mut v = Violations::new();
    let owner = v
        .take(crate::domain::parse_id("options.owner_id", &o.owner_id))
        .ok()
        .flatten()
        .unwrap_or_default();
    let mode = match pb::ImportMode::try_from(o.mode) {
        Ok(pb::ImportMode::Unspecified) | Err(_) => {
            v.add(
                "options.mode",
                "VALIDATE_ONLY, ALL_OR_NOTHING or BEST_EFFORT",
            );
            pb::ImportMode::Unspecified
        }
        Ok(m) => m,
    };
    if !o.region.is_empty()
        && o.region
            .to_ascii_uppercase()
            .parse::<phonenumber::country::Id>()
            .is_err()
    {
        v.add("options.region", format!("unknown region {:?}", o.region));
    }
    v.text(
        "options.request_id",
        &o.request_id,
        false,
        crate::domain::validate::MAX_REQUEST_ID_LEN,
    );
    v.finish()?;
    Ok(Options {
        owner,
        mode,
        region: o.region,
        request_id: o.request_id,
        request,
    })
}

type Out = mpsc::Sender<std::result::Result<pb::ImportNumbersResponse, Status>>;

pub async fn start(
    state: AppState,
    principal: Principal,
    mut input: Streaming<pb::ImportNumbersRequest>,
) -> std::result::Result<
    Response<
        futures::stream::BoxStream<'static, std::result::Result<pb::ImportNumbersResponse, Status>>,
    >,
    Status,
> {
    let first = input.message().await?;
    let opts = options(first)?;
    {
        let client = state.db.client().await?;
        receiving_provider(&client, &principal, opts.owner).await?;
    }
    let (out, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let failed = out.clone();
        if let Err(e) = run(state, principal, opts, input, out).await {
            let _ = failed.send(Err(e.into())).await;
        }
    });
    Ok(Response::new(ReceiverStream::new(rx).boxed()))
}

/// Every rejected row is counted; the first `MAX_REPORTED` are listed.
#[derive(Default)]
struct Report {
    rows_read: i64,
    rejected: i64,
    listed: Vec<Rejected>,
}

impl Report {
    fn reject(&mut self, r: Rejected) {
        self.rejected += 1;
        if self.listed.len() < MAX_REPORTED {
            self.listed.push(r);
        }
    }
}

async fn run(
    state: AppState,
    principal: Principal,
    opts: Options,
    mut input: Streaming<pb::ImportNumbersRequest>,
    out: Out,
) -> Result<()> {
    let mut client = state.db.client().await?;
    let tx = client.transaction().await?;
    let guard = Idempotency::new(
        &principal.subject,
        METHOD,
        &opts.request_id,
        opts.mode == pb::ImportMode::ValidateOnly,
    );
    let previous = guard.claim(&tx).await?;

    // The CSV goes from the gRPC stream to the parser thread, hashed on the way for AIP-155.
    let (chunk_tx, chunk_rx) = mpsc::channel::<Bytes>(8);
    let (batch_tx, mut batch_rx) = mpsc::channel::<Result<Batch>>(4);
    let region = opts.region.clone();
    let parser = tokio::task::spawn_blocking(move || {
        let reader = ChunkReader::new(chunk_rx);
        parse(reader, region, batch_tx)
    });
    let mut hasher = Fingerprint::new(METHOD);
    hasher.update(&opts.request);
    let feed = async move {
        while let Some(msg) = input
            .message()
            .await
            .map_err(|s| Error::invalid("chunk", s.message().to_string()))?
        {
            match msg.part {
                Some(pb::import_numbers_request::Part::Chunk(bytes)) => {
                    hasher.update(&bytes);
                    if chunk_tx.send(Bytes::from(bytes)).await.is_err() {
                        break;
                    }
                }
                _ => {
                    return Err(Error::invalid(
                        "options",
                        "only the first message carries options",
                    ));
                }
            }
        }
        drop(chunk_tx);
        Ok::<_, Error>(hasher.finish())
    };

    tx.batch_execute(
        "CREATE TEMP TABLE import_rows (
             line bigint NOT NULL, e164 text COLLATE \"C\" NOT NULL, number_type text NOT NULL,
             source text NOT NULL, carrier text NOT NULL, sip_trunk text NOT NULL,
             billing_reference text NOT NULL, service_info text NOT NULL, tags text,
             labels jsonb NOT NULL, holder_id uuid) ON COMMIT DROP;
         CREATE TEMP TABLE import_rejects (line bigint PRIMARY KEY, e164 text, reason text, message text) ON COMMIT DROP",
    )
    .await?;
    let mut report = Report::default();
    let copy = async {
        let sink = tx.copy_in::<_, Bytes>("COPY import_rows (line, e164, number_type, source, carrier, sip_trunk, billing_reference, service_info, tags, labels, holder_id) FROM STDIN").await?;
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
                let progress = pb::ImportProgress {
                    rows_read: report.rows_read,
                    rows_rejected: report.rejected,
                };
                let _ = out
                    .send(Ok(pb::ImportNumbersResponse {
                        part: Some(pb::import_numbers_response::Part::Progress(progress)),
                    }))
                    .await;
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
        let response = seen.replay(&fingerprint)?;
        let result = <pb::ImportResult as prost::Message>::decode(response.as_slice())
            .map_err(|e| Error::Internal(e.to_string()))?;
        let _ = out
            .send(Ok(pb::ImportNumbersResponse {
                part: Some(pb::import_numbers_response::Part::Result(result)),
            }))
            .await;
        return Ok(());
    }

    // Set-based checks against the file itself and the inventory.
    tx.execute(
        "INSERT INTO import_rejects
         SELECT s.line, s.e164, 'ALREADY_EXISTS', 'the number is already in the inventory'
         FROM import_rows s WHERE EXISTS (SELECT 1 FROM numbers n WHERE n.e164 = s.e164 AND n.status <> 'deleted')
         ON CONFLICT DO NOTHING",
        &[],
    )
    .await?;
    tx.execute(
        "INSERT INTO import_rejects
         SELECT line, e164, 'DUPLICATE_IN_FILE', 'the number appears earlier in the file, on line ' || first
         FROM (SELECT line, e164, first_value(line) OVER w AS first, row_number() OVER w AS rn
               FROM import_rows WINDOW w AS (PARTITION BY e164 ORDER BY line)) d
         WHERE rn > 1
         ON CONFLICT DO NOTHING",
        &[],
    )
    .await?;
    tx.execute(
        "INSERT INTO import_rejects
         SELECT s.line, s.e164, 'INVALID_ACCOUNT', 'holder_id is not an active account of the owner''s tree'
         FROM import_rows s LEFT JOIN accounts a
           ON a.id = s.holder_id AND a.provider_id = $1 AND a.delete_time IS NULL AND a.state = 'active'
         WHERE s.holder_id IS NOT NULL AND a.id IS NULL
         ON CONFLICT DO NOTHING",
        &[&opts.owner],
    )
    .await?;
    reject_over_quota(&tx, opts.owner).await?;
    let sql_rejects: i64 = tx
        .query_one("SELECT count(*) FROM import_rejects", &[])
        .await?
        .get(0);
    let room = MAX_REPORTED.saturating_sub(report.listed.len()) as i64;
    for row in tx
        .query(
            "SELECT line, e164, reason, message FROM import_rejects ORDER BY line LIMIT $1",
            &[&room],
        )
        .await?
    {
        report.listed.push(Rejected {
            line: row.get(0),
            e164: row.get(1),
            reason: "",
            message: row.get(3),
        });
        if let Some(last) = report.listed.last_mut() {
            last.reason = match row.get::<_, &str>(2) {
                "ALREADY_EXISTS" => "ALREADY_EXISTS",
                "QUOTA_EXCEEDED" => "QUOTA_EXCEEDED",
                "DUPLICATE_IN_FILE" => "DUPLICATE_IN_FILE",
                _ => "INVALID_ACCOUNT",
            };
        }
    }
    report.rejected += sql_rejects;
    report.listed.sort_by_key(|r| r.line);

    let insert = match opts.mode {
        pb::ImportMode::BestEffort => true,
        pb::ImportMode::AllOrNothing => report.rejected == 0,
        _ => false,
    };
    let mut imported = 0;
    if insert {
        tx.execute(
            "DELETE FROM import_rows s USING import_rejects r WHERE s.line = r.line",
            &[],
        )
        .await?;
        let owner_path = crate::domain::account::child_path("", opts.owner);
        imported = tx
            .execute(
                "WITH added AS (
                     INSERT INTO numbers (id, provider_id, e164, holder_id, holder_path, status, series_id,
                         number_type, source, carrier, sip_trunk, billing_reference, service_info, tags, labels)
                     SELECT gen_random_uuid(), $1, s.e164, coalesce(s.holder_id, $1), coalesce(a.path, $2), 'available',
                            (SELECT series FROM series_of($1, s.e164) AS series),
                            s.number_type, s.source, s.carrier, s.sip_trunk, s.billing_reference, s.service_info,
                            coalesce(string_to_array(s.tags, '|'), '{}'), s.labels
                     FROM import_rows s LEFT JOIN accounts a ON a.id = s.holder_id
                     RETURNING id, e164, holder_id, holder_path)
                 INSERT INTO number_events (provider_id, number_id, e164, actor, actor_account_id, request_id,
                     operation, holder_path, before, after)
                 SELECT $1, id, e164, $3, $4, $5, 'add', holder_path, NULL,
                        jsonb_build_object('holder_id', holder_id, 'status', 'available', 'assignee', NULL, 'reservation', NULL)
                 FROM added",
                &[&opts.owner, &owner_path, &principal.subject, &principal.account_id, &opts.request_id],
            )
            .await? as i64;
    }
    let result = pb::ImportResult {
        rows_read: report.rows_read,
        rows_imported: imported,
        rows_rejected: report.rejected,
        rejected_rows: report.listed.iter().map(Rejected::to_proto).collect(),
    };
    guard
        .record(&tx, &fingerprint, &prost::Message::encode_to_vec(&result))
        .await?;
    if insert {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    let _ = out
        .send(Ok(pb::ImportNumbersResponse {
            part: Some(pb::import_numbers_response::Part::Result(result)),
        }))
        .await;
    Ok(())
}

/// Rows that would take an account of the owner's tree past its quota are rejected, all the rows
/// of one target account together: targets are admitted one after the other, each counting what
/// the earlier ones brought into the accounts with a quota above it.
async fn reject_over_quota(tx: &deadpool_postgres::Transaction<'_>, owner: Uuid) -> Result<()> {
    let targets = tx
        .query(
            "SELECT s.holder_id, count(*) FROM import_rows s
             WHERE s.holder_id IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM import_rejects r WHERE r.line = s.line)
             GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await?;
    let mut brought: BTreeMap<Uuid, i64> = BTreeMap::new();
    for row in targets {
        let (target, incoming): (Uuid, i64) = (row.get(0), row.get(1));
        let Ok(account) = crate::store::accounts::get(tx, target, crate::store::Lock::No).await
        else {
            continue;
        };
        let below: Vec<Uuid> = crate::domain::account::path_ids(&account.path)
            .into_iter()
            .filter(|id| *id != owner)
            .collect();
        let limited: Vec<Uuid> = crate::store::accounts::path(tx, &below)
            .await?
            .into_iter()
            .filter(|a| a.fields.max_numbers.is_some())
            .map(|a| a.id)
            .collect();
        let mut refused = None;
        for quota in crate::store::allocation::lock_quota_accounts(tx, &limited).await? {
            let held = crate::store::allocation::subtree_count(tx, quota.provider_id, &quota.path)
                .await?
                + brought.get(&quota.id).copied().unwrap_or(0);
            if let Err(e) =
                crate::domain::lifecycle::require_quota(quota.id, quota.max_numbers, held, incoming)
            {
                refused = Some(e.to_string());
                break;
            }
        }
        match refused {
            Some(why) => {
                tx.execute(
                    "INSERT INTO import_rejects SELECT line, e164, 'QUOTA_EXCEEDED', $2
                     FROM import_rows WHERE holder_id = $1 ON CONFLICT DO NOTHING",
                    &[&target, &why],
                )
                .await?;
            }
            None => {
                for id in &limited {
                    *brought.entry(*id).or_default() += incoming;
                }
            }
        }
    }
    Ok(())
}

/// Streams the numbers a filter selects as CSV, in E.164 order, batch by batch.
pub async fn export(
    state: AppState,
    principal: Principal,
    filter: NumberFilter,
) -> std::result::Result<
    Response<
        futures::stream::BoxStream<'static, std::result::Result<pb::ExportNumbersResponse, Status>>,
    >,
    Status,
> {
    let q = {
        let client = state.db.client().await?;
        number_query(&client, &principal, &filter).await?
    };
    let (out, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let failed = out.clone();
        let result: Result<()> = async {
            let mut client = state.db.client().await?;
            let tx = client.transaction().await?;
            let portal = numbers::open_cursor(&tx, &q).await?;
            let mut header: Vec<&str> = COLUMNS.to_vec();
            header.extend_from_slice(EXPORT_ONLY);
            let mut csv = csv::Writer::from_writer(Vec::new());
            csv.write_record(&header)
                .map_err(|e| Error::Internal(e.to_string()))?;
            loop {
                let batch = numbers::next_batch(&tx, &portal, 1000).await?;
                let done = batch.len() < 1000;
                for n in batch {
                    let p = number_to_proto(n.clone());
                    let a = &n.attributes;
                    let assignee = n.assignee.as_ref();
                    let reservation = n.reservation.as_ref();
                    csv.write_record([
                        n.e164.as_str(),
                        "",
                        a.number_type.as_str(),
                        a.source.as_str(),
                        &a.carrier,
                        &a.sip_trunk,
                        &a.billing_reference,
                        &a.service_info,
                        &a.tags.join("|"),
                        &write_labels(&a.labels),
                        &if n.holder_id == n.owner_id {
                            String::new()
                        } else {
                            p.holder_id.clone()
                        },
                        n.status.as_str(),
                        &p.owner_id,
                        &p.series_id,
                        assignee.map_or("", |a| a.kind.as_str()),
                        assignee.map_or("", |a| a.id.as_str()),
                        assignee.map_or("", |a| a.display_name.as_str()),
                        reservation.map_or("", |r| r.reserved_for.as_str()),
                        reservation.map_or("", |r| r.tag.as_str()),
                    ])
                    .map_err(|e| Error::Internal(e.to_string()))?;
                }
                let chunk = std::mem::replace(&mut csv, csv::Writer::from_writer(Vec::new()))
                    .into_inner()
                    .map_err(|e| Error::Internal(e.to_string()))?;
                if !chunk.is_empty()
                    && out
                        .send(Ok(pb::ExportNumbersResponse { chunk }))
                        .await
                        .is_err()
                {
                    return Ok(());
                }
                if done {
                    return Ok(());
                }
            }
        }
        .await;
        if let Err(e) = result {
            let _ = failed.send(Err(e.into())).await;
        }
    });
    Ok(Response::new(ReceiverStream::new(rx).boxed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows read, (line, reason) of each rejected row, and the COPY text of the good ones.
    type Parsed = (i64, Vec<(i64, &'static str)>, String);

    /// Runs the parser over `csv` delivered in `chunk`-byte pieces.
    fn parse_all(csv: &[u8], chunk: usize) -> Result<Parsed> {
        let (chunk_tx, chunk_rx) = mpsc::channel(1 << 16);
        for piece in csv.chunks(chunk) {
            chunk_tx
                .try_send(Bytes::copy_from_slice(piece))
                .map_err(|e| Error::Internal(e.to_string()))?;
        }
        drop(chunk_tx);
        let (batch_tx, mut batch_rx) = mpsc::channel(1 << 16);
        std::thread::spawn(move || parse(ChunkReader::new(chunk_rx), "US".into(), batch_tx))
            .join()
            .map_err(|_| Error::Internal("parser panicked".into()))?;
        let (mut rows, mut rejected, mut copy) = (0, Vec::new(), Vec::new());
        while let Ok(batch) = batch_rx.try_recv() {
            let batch = batch?;
            rows += batch.rows;
            rejected.extend(batch.rejected.iter().map(|r| (r.line, r.reason)));
            copy.extend(batch.copy);
        }
        Ok((rows, rejected, String::from_utf8_lossy(&copy).into_owned()))
    }

    #[test]
    fn an_over_long_quoted_row_is_cut_and_the_next_rows_keep_their_lines() {
        let long = "x".repeat(MAX_LINE_BYTES * 3);
        let csv =
            format!("e164,service_info,carrier\n+13035550100,\"{long}\",a\n\n+13035550101,,b\n");
        for chunk in [7, 4096, 1 << 20] {
            let (rows, rejected, copy) = parse_all(csv.as_bytes(), chunk).unwrap();
            assert_eq!(rows, 2, "chunk {chunk}");
            assert_eq!(rejected, [(2, "LINE_TOO_LONG")], "chunk {chunk}");
            assert!(
                copy.starts_with("4\t+13035550101\t"),
                "chunk {chunk}: {copy}"
            );
        }
    }

    #[test]
    fn rows_keep_their_line_numbers_across_blank_and_quoted_multi_line_rows() {
        let csv = "e164,service_info\n\n+13035550100,\"two\nlines\"\n+1,\n\n\n+13035550101,x,y\n";
        let (rows, rejected, copy) = parse_all(csv.as_bytes(), 3).unwrap();
        assert_eq!(rows, 3);
        assert_eq!(rejected, [(5, "INVALID_NUMBER"), (8, "WRONG_COLUMN_COUNT")]);
        assert!(copy.starts_with("3\t+13035550100\t"), "{copy}");
        assert!(copy.contains("two\\nlines"), "{copy}");
    }
}
