//! The CSV of import and export: the columns, the template, the reader of streamed bytes (which
//! cuts over-long rows), the header, rows parsed into typed rows and written as COPY text, and
//! the export's rows. No tonic and no SQL: bytes in, rows and rejections out.

use std::collections::BTreeMap;
use std::io::Read;

use bytes::Bytes;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::domain::number::{Attributes, E164, Number, NumberSource, NumberType};
use crate::domain::validate::Violations;
use crate::error::{Error, Result};

/// Longest CSV line; a longer one is rejected as a row, and its bytes are never held.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Rows per batch the parser hands over.
const BATCH_ROWS: usize = 10_000;
/// COPY bytes per batch: with a few batches in flight, memory stays a few MiB whatever the rows.
const BATCH_BYTES: usize = 1 << 20;

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

/// The header and one sample row; its tags and labels show the escaping of [`write_tags`].
pub fn template() -> String {
    format!(
        "{}\n+13035550100,,geographic,purchased,Acme Carrier,trunk-1,BILL-42,Main line,sales|vip|24\\|7,team=west;floor=2;note=a\\;b,\n",
        COLUMNS.join(",")
    )
}

// Tags and labels each fill one CSV field: tags as `a|b`, labels as `k=v;k2=v2`. A `|` inside a
// tag, a `;` or `=` inside a label's key or value, and a `\` anywhere are written after a `\`
// (tag `24|7` is `24\|7`, label `note` = `a;b` is `note=a\;b`); so is whitespace at either end
// of a tag, key or value, which the reader otherwise trims for hand-written files. Simple
// values read as they are, and every value survives export and import unchanged.

/// What a `\` protects inside a tag.
const TAG_SEPARATORS: &[char] = &['|'];
/// What a `\` protects inside a label's key or value.
const LABEL_SEPARATORS: &[char] = &[';', '='];

/// Appends `value` with its separators, its backslashes and the whitespace at its ends escaped.
fn escape(out: &mut String, value: &str, separators: &[char]) {
    let start = value.len() - value.trim_start().len();
    let end = value.trim_end().len();
    for (i, c) in value.char_indices() {
        let at_an_end = c.is_whitespace() && (i < start || i >= end);
        if c == '\\' || separators.contains(&c) || at_an_end {
            out.push('\\');
        }
        out.push(c);
    }
}

/// One character of a field as read, and whether a `\` protected it.
type Escaped = Vec<(char, bool)>;

/// Cuts `field` at each `sep` no `\` protects, and resolves the escapes.
fn split_escaped(field: &str, sep: char) -> Vec<Escaped> {
    let mut parts = vec![Escaped::new()];
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        let part = match c {
            '\\' => (chars.next().unwrap_or('\\'), true),
            c if c == sep => {
                parts.push(Escaped::new());
                continue;
            }
            c => (c, false),
        };
        if let Some(last) = parts.last_mut() {
            last.push(part);
        }
    }
    parts
}

/// The text of a part, less the unprotected whitespace at its ends.
fn unescape(part: &[(char, bool)]) -> String {
    let kept = |(c, escaped): &(char, bool)| *escaped || !c.is_whitespace();
    let start = part.iter().position(kept).unwrap_or(part.len());
    let end = part.iter().rposition(kept).map_or(start, |i| i + 1);
    part[start..end].iter().map(|(c, _)| c).collect()
}

pub fn parse_tags(s: &str) -> Vec<String> {
    split_escaped(s, '|')
        .iter()
        .map(|t| unescape(t))
        .filter(|t| !t.is_empty())
        .collect()
}

pub fn write_tags(tags: &[String]) -> String {
    let mut out = String::new();
    for (i, t) in tags.iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        escape(&mut out, t, TAG_SEPARATORS);
    }
    out
}

pub fn parse_labels(s: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    split_escaped(s, ';')
        .iter()
        .filter(|kv| !unescape(kv).is_empty())
        .map(|kv| {
            kv.iter()
                .position(|part| *part == ('=', false))
                .map(|eq| (unescape(&kv[..eq]), unescape(&kv[eq + 1..])))
                .ok_or_else(|| format!("label {:?} is not key=value", unescape(kv)))
        })
        .collect()
}

pub fn write_labels(labels: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        escape(&mut out, k, LABEL_SEPARATORS);
        out.push('=');
        escape(&mut out, v, LABEL_SEPARATORS);
    }
    out
}

/// Why a row was refused, in the answer's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    LineTooLong,
    MalformedRow,
    WrongColumnCount,
    InvalidNumber,
    InvalidAttribute,
    InvalidAccount,
    DuplicateInFile,
    AlreadyExists,
    QuotaExceeded,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::LineTooLong => "LINE_TOO_LONG",
            Reason::MalformedRow => "MALFORMED_ROW",
            Reason::WrongColumnCount => "WRONG_COLUMN_COUNT",
            Reason::InvalidNumber => "INVALID_NUMBER",
            Reason::InvalidAttribute => "INVALID_ATTRIBUTE",
            Reason::InvalidAccount => "INVALID_ACCOUNT",
            Reason::DuplicateInFile => "DUPLICATE_IN_FILE",
            Reason::AlreadyExists => "ALREADY_EXISTS",
            Reason::QuotaExceeded => "QUOTA_EXCEEDED",
        }
    }
}

/// A row the import refused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rejected {
    pub line: i64,
    pub e164: String,
    pub reason: Reason,
    pub message: String,
}

/// A batch from the parser: the good rows as the spool keeps them ([`ImportRow::write_spool`],
/// in line order), and the bad ones.
pub struct Batch {
    pub spool: Vec<u8>,
    pub rows: i64,
    pub rejected: Vec<Rejected>,
}

impl Batch {
    fn new() -> Self {
        Self {
            spool: Vec::with_capacity(BATCH_BYTES),
            rows: 0,
            rejected: Vec::new(),
        }
    }
}

/// Ends the last field of a row that was cut for being too long.
const TOO_LONG: &str = "\u{1}NUMBERING_ROW_TOO_LONG\u{1}";

/// Reads the CSV bytes the gRPC stream delivers, on the parser thread. A row (quoted newlines
/// included) longer than `MAX_LINE_BYTES` is cut there and marked, and the rest of it is
/// dropped as it arrives, so no row is ever buffered past that size.
pub struct ChunkReader {
    chunks: mpsc::Receiver<Bytes>,
    current: Bytes,
    /// Bytes of the current row so far.
    row_len: usize,
    in_quotes: bool,
    /// Dropping the rest of an over-long row, up to its end.
    skipping: bool,
    /// A carriage return outside quotes, waiting to see whether a line feed follows.
    cr_held: bool,
    /// At the start of a field, where a quote opens a quoted field.
    field_start: bool,
    /// Just after a quoted field's closing quote, where a quote is an escaped one.
    quote_closed: bool,
    pending: &'static [u8],
}

impl ChunkReader {
    pub fn new(chunks: mpsc::Receiver<Bytes>) -> Self {
        Self {
            chunks,
            current: Bytes::new(),
            row_len: 0,
            in_quotes: false,
            skipping: false,
            cr_held: false,
            field_start: true,
            quote_closed: false,
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
                    // The last row ends with a newline like every other, so that the parser
                    // counts its line alike.
                    None if self.in_quotes => {
                        // An unterminated quote takes the rest of the file, as the parser
                        // would read it; closed here so the row ends like the others.
                        self.in_quotes = false;
                        self.row_len = 0;
                        self.pending = b"\"\n";
                    }
                    None if self.cr_held || self.row_len > 0 => {
                        self.cr_held = false;
                        self.row_len = 0;
                        self.pending = b"\n";
                    }
                    None => return Ok(0),
                }
                continue;
            }
            let mut n = 0;
            let mut copied = 0;
            while n < self.current.len() && copied < buf.len() {
                let mut b = self.current[n];
                n += 1;
                // Rows end with a line feed only: CRLF and a lone CR (which the parser reads
                // as row ends too) become LF outside quotes, so that its line count (which
                // lags on CRLF) numbers every row as an editor does.
                if !self.in_quotes {
                    if self.cr_held {
                        self.cr_held = false;
                        if b != b'\n' {
                            n -= 1;
                            b = b'\n';
                        }
                    } else if b == b'\r' {
                        self.cr_held = true;
                        continue;
                    }
                }
                match b {
                    // Quotes as the parser reads them: a quote opens a quoted field only at
                    // the field's start (elsewhere it is a character), the next one closes it,
                    // and a quote right after that reopens it (`""` is an escaped quote).
                    b'"' if self.in_quotes => {
                        self.in_quotes = false;
                        self.quote_closed = true;
                        self.field_start = false;
                    }
                    b'"' if self.field_start || self.quote_closed => {
                        self.in_quotes = true;
                        self.quote_closed = false;
                        self.field_start = false;
                    }
                    b',' if !self.in_quotes => {
                        self.field_start = true;
                        self.quote_closed = false;
                    }
                    b'\n' if !self.in_quotes => {
                        self.row_len = 0;
                        self.skipping = false;
                        self.field_start = true;
                        self.quote_closed = false;
                    }
                    _ if !self.in_quotes => {
                        self.field_start = false;
                        self.quote_closed = false;
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

/// How the spool joins a row's tags.
pub const TAG_JOIN: &str = "\u{1f}";

/// Where each known column sits in the file's header.
struct Header {
    index: BTreeMap<&'static str, usize>,
    width: usize,
}

fn read_header(headers: &::csv::StringRecord) -> Result<Header> {
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

/// A good row of the file, as the staging table takes it.
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub line: i64,
    pub e164: E164,
    pub attributes: Attributes,
    pub holder_id: Option<Uuid>,
}

impl ImportRow {
    /// The row as the spool keeps it between the parser and the database: the line, the
    /// holder, then each text field after its length (tags joined by [`TAG_JOIN`], labels as
    /// JSON). Written here, on the parser threads, so that the import only streams it;
    /// [`SpooledRow::read`] reads it back.
    pub fn write_spool(&self, out: &mut Vec<u8>) {
        let a = &self.attributes;
        // Unit separators: validated tags hold no control characters, so the split is exact.
        let tags = a.tags.join(TAG_JOIN);
        let labels = serde_json::to_string(&a.labels).unwrap_or_else(|_| "{}".into());
        out.extend_from_slice(&self.line.to_le_bytes());
        match self.holder_id {
            Some(h) => {
                out.push(1);
                out.extend_from_slice(h.as_bytes());
            }
            None => out.push(0),
        }
        for value in [
            self.e164.as_str(),
            a.number_type.as_str(),
            a.source.as_str(),
            &a.carrier,
            &a.sip_trunk,
            &a.billing_reference,
            &a.service_info,
            &tags,
            &labels,
        ] {
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value.as_bytes());
        }
    }
}

/// A good row read back from the spool, borrowing its text from the spool's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledRow<'a> {
    pub line: i64,
    pub holder_id: Option<Uuid>,
    pub e164: &'a str,
    pub number_type: &'a str,
    pub source: &'a str,
    pub carrier: &'a str,
    pub sip_trunk: &'a str,
    pub billing_reference: &'a str,
    pub service_info: &'a str,
    /// Joined by [`TAG_JOIN`]; see [`SpooledRow::tags`].
    pub tags: &'a str,
    /// The labels as a JSON object.
    pub labels: &'a str,
}

impl<'a> SpooledRow<'a> {
    /// Takes the next row off the front of `bytes`; `None` at the end (or on bytes that
    /// [`ImportRow::write_spool`] did not write).
    pub fn read(bytes: &mut &'a [u8]) -> Option<Self> {
        fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, rest) = bytes.split_at_checked(n)?;
            *bytes = rest;
            Some(head)
        }
        fn text<'a>(bytes: &mut &'a [u8]) -> Option<&'a str> {
            let len = u32::from_le_bytes(take(bytes, 4)?.try_into().ok()?) as usize;
            std::str::from_utf8(take(bytes, len)?).ok()
        }
        let line = i64::from_le_bytes(take(bytes, 8)?.try_into().ok()?);
        let holder_id = match take(bytes, 1)? {
            [1] => Some(Uuid::from_slice(take(bytes, 16)?).ok()?),
            _ => None,
        };
        Some(Self {
            line,
            holder_id,
            e164: text(bytes)?,
            number_type: text(bytes)?,
            source: text(bytes)?,
            carrier: text(bytes)?,
            sip_trunk: text(bytes)?,
            billing_reference: text(bytes)?,
            service_info: text(bytes)?,
            tags: text(bytes)?,
            labels: text(bytes)?,
        })
    }

    pub fn tags(&self) -> Vec<&'a str> {
        if self.tags.is_empty() {
            Vec::new()
        } else {
            self.tags.split(TAG_JOIN).collect()
        }
    }
}

/// Checks one data row of the file; `region` reads numbers written without a country code.
fn parse_row(
    h: &Header,
    rec: &::csv::StringRecord,
    line: i64,
    region: &str,
) -> std::result::Result<ImportRow, Rejected> {
    // Fields as written: tags and labels trim what their escaping leaves unprotected, and free
    // text keeps its spaces; the other fields are trimmed whole.
    let raw = |c: &str| h.index.get(c).and_then(|i| rec.get(*i)).unwrap_or("");
    let get = |c: &str| raw(c).trim();
    let reject = |reason: Reason, message: String| Rejected {
        line,
        e164: get("e164").chars().take(64).collect(),
        reason,
        message,
    };
    if rec.iter().any(|f| f.ends_with(TOO_LONG)) {
        return Err(Rejected {
            line,
            e164: String::new(),
            reason: Reason::LineTooLong,
            message: format!("longer than {MAX_LINE_BYTES} bytes"),
        });
    }
    if rec.len() != h.width {
        return Err(reject(
            Reason::WrongColumnCount,
            format!("{} columns; the header has {}", rec.len(), h.width),
        ));
    }
    let row_region = if get("region").is_empty() {
        region
    } else {
        get("region")
    };
    let parsed = E164::parse("e164", get("e164"), row_region)
        .map_err(|e| reject(Reason::InvalidNumber, e.to_string()))?;
    let mut v = Violations::new();
    let number_type = match get("number_type") {
        "" => parsed.number_type,
        t => NumberType::parse(&t.to_ascii_lowercase()).ok_or_else(|| {
            reject(
                Reason::InvalidAttribute,
                format!("unknown number_type {t:?}"),
            )
        })?,
    };
    let source = match get("source") {
        "" => NumberSource::Unspecified,
        s => NumberSource::parse(&s.to_ascii_lowercase())
            .ok_or_else(|| reject(Reason::InvalidAttribute, format!("unknown source {s:?}")))?,
    };
    let labels = parse_labels(raw("labels")).map_err(|m| reject(Reason::InvalidAttribute, m))?;
    let mut a = Attributes {
        number_type,
        source,
        carrier: get("carrier").into(),
        sip_trunk: get("sip_trunk").into(),
        billing_reference: get("billing_reference").into(),
        service_info: raw("service_info").into(),
        tags: parse_tags(raw("tags")),
        labels,
    };
    a.normalise();
    a.validate(&mut v, "");
    if let Err(e) = v.finish() {
        return Err(reject(Reason::InvalidAttribute, e.to_string()));
    }
    let holder = match get("holder_id") {
        "" => None,
        h => Some(Uuid::parse_str(h).map_err(|_| {
            reject(
                Reason::InvalidAccount,
                format!("holder_id {h:?} is not a UUID"),
            )
        })?),
    };
    Ok(ImportRow {
        line,
        e164: parsed.e164,
        attributes: a,
        holder_id: holder,
    })
}

/// A record as the reader cut it, before the row is checked.
enum Cut {
    Record(i64, ::csv::StringRecord),
    Rejected(Rejected),
}

/// Checks `records` in order: the good rows spooled, the bad ones listed.
fn check(header: &Header, region: &str, records: &[Cut]) -> (Vec<u8>, Vec<Rejected>) {
    let mut spool = Vec::with_capacity(records.len() * 96);
    let mut rejected = Vec::new();
    for r in records {
        match r {
            Cut::Record(line, record) => match parse_row(header, record, *line, region) {
                Ok(row) => row.write_spool(&mut spool),
                Err(r) => rejected.push(r),
            },
            Cut::Rejected(r) => rejected.push(r.clone()),
        }
    }
    (spool, rejected)
}

/// Checks a batch of records on `workers` threads (this one and `workers - 1` more, each
/// started with `on_worker`), each a slice of the batch, joined back in line order.
/// Parsing a number is the import's CPU work (about 10 µs a row), and it is all independent.
fn check_batch(
    header: &Header,
    region: &str,
    records: &[Cut],
    workers: usize,
    on_worker: fn(),
) -> Result<Batch> {
    let slice = records.len().div_ceil(workers.max(1)).max(1);
    let mut parts = std::thread::scope(|s| {
        let mut slices = records.chunks(slice);
        let first = slices.next().unwrap_or(&[]);
        let others: Vec<_> = slices
            .map(|part| {
                s.spawn(move || {
                    on_worker();
                    check(header, region, part)
                })
            })
            .collect();
        let mut parts = vec![Ok(check(header, region, first))];
        parts.extend(others.into_iter().map(|h| h.join()));
        parts
    })
    .into_iter();
    let mut batch = Batch::new();
    batch.rows = records.len() as i64;
    for part in parts.by_ref() {
        let (spool, rejected) =
            part.map_err(|_| Error::Internal("a parser thread panicked".into()))?;
        batch.spool.extend_from_slice(&spool);
        batch.rejected.extend(rejected);
    }
    Ok(batch)
}

/// The parser thread: CSV in, batches out. A bad header ends the import. The CSV is cut into
/// records here, in order; each batch of records is checked on `workers` threads.
pub fn parse(
    reader: ChunkReader,
    region: String,
    batches: mpsc::Sender<Result<Batch>>,
    workers: usize,
    on_worker: fn(),
) {
    let mut csv = ::csv::ReaderBuilder::new()
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
    let mut records: Vec<Cut> = Vec::with_capacity(BATCH_ROWS);
    let mut bytes = 0;
    let mut record = ::csv::StringRecord::new();
    loop {
        let line = csv.position().line() as i64 + 1;
        let mut end = false;
        match csv.read_record(&mut record) {
            Ok(false) => end = true,
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
                bytes += record.as_byte_record().as_slice().len();
                records.push(Cut::Record(line, record.clone()));
            }
            Err(e) => {
                let line = e.position().map_or(line, |p| p.line() as i64);
                end = matches!(e.kind(), ::csv::ErrorKind::Io(_));
                records.push(Cut::Rejected(Rejected {
                    line,
                    e164: String::new(),
                    reason: Reason::MalformedRow,
                    message: e.to_string(),
                }));
            }
        }
        if end || records.len() >= BATCH_ROWS || bytes >= BATCH_BYTES {
            let batch = check_batch(&header, &region, &records, workers, on_worker);
            records.clear();
            bytes = 0;
            if batches.blocking_send(batch).is_err() || end {
                return;
            }
        }
    }
}
/// Writes numbers as the export's CSV: the import's columns (so an export can be imported
/// again) and then [`EXPORT_ONLY`]'s, chunk by chunk.
pub struct ExportWriter(::csv::Writer<Vec<u8>>);

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

impl ExportWriter {
    /// A writer whose first chunk starts with the header.
    pub fn new() -> Result<Self> {
        let mut csv = ::csv::Writer::from_writer(Vec::new());
        csv.write_record(COLUMNS.iter().chain(EXPORT_ONLY))
            .map_err(internal)?;
        Ok(Self(csv))
    }

    pub fn write(&mut self, n: &Number) -> Result<()> {
        let a = &n.attributes;
        let assignee = n.assignee.as_ref();
        let reservation = n.reservation.as_ref();
        // The owner's own numbers have no holder column: importing them again puts them back.
        let holder = if n.holder_id == n.owner_id {
            String::new()
        } else {
            n.holder_id.to_string()
        };
        self.0
            .write_record([
                n.e164.as_str(),
                "",
                a.number_type.as_str(),
                a.source.as_str(),
                &a.carrier,
                &a.sip_trunk,
                &a.billing_reference,
                &a.service_info,
                &write_tags(&a.tags),
                &write_labels(&a.labels),
                &holder,
                n.status.as_str(),
                &n.owner_id.to_string(),
                &n.series_id.map(|s| s.to_string()).unwrap_or_default(),
                assignee.map_or("", |a| a.kind.as_str()),
                assignee.map_or("", |a| a.id.as_str()),
                assignee.map_or("", |a| a.display_name.as_str()),
                reservation.map_or("", |r| r.reserved_for.as_str()),
                reservation.map_or("", |r| r.tag.as_str()),
            ])
            .map_err(internal)
    }

    /// What was written since the last chunk.
    pub fn chunk(&mut self) -> Result<Vec<u8>> {
        std::mem::replace(&mut self.0, ::csv::Writer::from_writer(Vec::new()))
            .into_inner()
            .map_err(internal)
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use proptest::prelude::*;

    use super::*;
    use crate::domain::number::NumberStatus;

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
        std::thread::spawn(move || {
            parse(ChunkReader::new(chunk_rx), "US".into(), batch_tx, 3, || {})
        })
        .join()
        .map_err(|_| Error::Internal("parser panicked".into()))?;
        let (mut rows, mut rejected, mut copy) = (0, Vec::new(), String::new());
        while let Ok(batch) = batch_rx.try_recv() {
            let batch = batch?;
            rows += batch.rows;
            rejected.extend(batch.rejected.iter().map(|r| (r.line, r.reason.as_str())));
            copy.push_str(&copy_text(&batch.spool));
        }
        Ok((rows, rejected, copy))
    }

    /// The spooled rows as lines of COPY text (line, e164, then the other fields, tab-separated
    /// with their control characters escaped): what the tests read.
    fn copy_text(mut spool: &[u8]) -> String {
        let escape = |v: &str| {
            v.replace('\\', "\\\\")
                .replace('\t', "\\t")
                .replace('\n', "\\n")
                .replace('\r', "\\r")
        };
        let mut out = String::new();
        while let Some(r) = SpooledRow::read(&mut spool) {
            let holder = r.holder_id.map(|h| h.to_string()).unwrap_or_default();
            let fields = [
                r.e164,
                r.number_type,
                r.source,
                r.carrier,
                r.sip_trunk,
                r.billing_reference,
                r.service_info,
                r.tags,
                r.labels,
                &holder,
            ];
            out.push_str(&r.line.to_string());
            for f in fields {
                out.push('\t');
                out.push_str(&escape(f));
            }
            out.push('\n');
        }
        assert!(spool.is_empty(), "the spool reads back whole");
        out
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
    fn crlf_files_and_a_last_row_without_newline_keep_their_line_numbers() {
        // Found by the fuzzer: on CRLF files every rejected row was reported one line early.
        for csv in [
            "e164,service_info\r\n+1,x\r\n\r\n+13035550101,\"two\r\nlines\"\r\n+2,y\r\n",
            "e164,service_info\n+1,x\n\n+13035550101,\"two\r\nlines\"\n+2,y",
            "e164,service_info\r+1,x\r\r+13035550101,\"two\r\nlines\"\r+2,y\r",
        ] {
            for chunk in [1, 2, 3, 1000] {
                let (rows, rejected, copy) = parse_all(csv.as_bytes(), chunk).unwrap();
                assert_eq!(rows, 3, "{csv:?}");
                let lines: Vec<i64> = rejected.iter().map(|r| r.0).collect();
                assert_eq!(lines, [2, 6], "{csv:?} in {chunk}-byte chunks");
                assert!(
                    copy.contains("two\\r\\nlines"),
                    "a quoted CRLF is kept: {copy}"
                );
            }
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

    /// The rows an import reads from `csv`, as [`parse`] reads them, without the thread.
    fn import_rows(csv: &[u8]) -> Vec<std::result::Result<ImportRow, Rejected>> {
        let mut reader = ::csv::ReaderBuilder::new().flexible(true).from_reader(csv);
        let header = read_header(reader.headers().unwrap()).unwrap();
        reader
            .records()
            .enumerate()
            .map(|(i, r)| parse_row(&header, &r.unwrap(), i as i64 + 2, ""))
            .collect()
    }

    /// What an export writes of `n`.
    fn exported(n: &Number) -> Vec<u8> {
        let mut w = ExportWriter::new().unwrap();
        w.write(n).unwrap();
        w.chunk().unwrap()
    }

    fn number(e164: &str, attributes: Attributes, held_below: bool) -> Number {
        let owner_id = Uuid::new_v4();
        Number {
            id: Uuid::new_v4(),
            owner_id,
            e164: e164.into(),
            holder_id: if held_below { Uuid::new_v4() } else { owner_id },
            holder_path: String::new(),
            status: NumberStatus::Available,
            series_id: None,
            attributes,
            assignee: None,
            reservation: None,
            aging_end_time: None,
            version: 1,
            create_time: SystemTime::now(),
            update_time: SystemTime::now(),
        }
    }

    /// Characters that break naive codecs, and any other character a value may hold.
    fn nasty_char() -> impl Strategy<Value = char> {
        prop_oneof![
            prop::sample::select(vec![
                '|', ';', '=', '\\', ',', '"', '\'', ' ', '\u{a0}', '\u{3000}', 'é', '日', '🙂',
                'a',
            ]),
            any::<char>().prop_filter("no control characters", |c| !c.is_control()),
        ]
    }

    fn text(max: usize) -> impl Strategy<Value = String> {
        prop::collection::vec(nasty_char(), 0..max).prop_map(|v| v.into_iter().collect())
    }

    /// Free text: line breaks and tabs too.
    fn free_text() -> impl Strategy<Value = String> {
        let c = prop_oneof![nasty_char(), prop::sample::select(vec!['\n', '\r', '\t'])];
        prop::collection::vec(c, 0..24).prop_map(|v| v.into_iter().collect())
    }

    /// Attributes as the API stores them: valid, the trimmed fields trimmed, tags a set.
    fn attributes() -> impl Strategy<Value = Attributes> {
        (
            prop::sample::select(NumberType::ALL.to_vec()),
            prop::sample::select(NumberSource::ALL.to_vec()),
            (text(12), text(12), text(12)),
            free_text(),
            prop::collection::vec(text(10), 0..5),
            prop::collection::btree_map(text(8), text(8), 0..5),
        )
            .prop_map(
                |(
                    number_type,
                    source,
                    (carrier, sip_trunk, billing),
                    service_info,
                    tags,
                    labels,
                )| {
                    let mut a = Attributes {
                        number_type,
                        source,
                        carrier: carrier.trim().into(),
                        sip_trunk: sip_trunk.trim().into(),
                        billing_reference: billing.trim().into(),
                        service_info,
                        tags: tags.into_iter().filter(|t| !t.trim().is_empty()).collect(),
                        labels: labels.into_iter().filter(|(k, _)| !k.is_empty()).collect(),
                    };
                    a.normalise();
                    a
                },
            )
    }

    /// CSV-ish bytes: a real header, then rows of numbers, separators, quotes, escapes,
    /// newlines, NUL and invalid UTF-8.
    fn csv_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"+13035550100".to_vec()),
            Just(b"303 555 0101".to_vec()),
            Just(b",".to_vec()),
            Just(b"\"".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\\|".to_vec()),
            Just(b"a=b;c".to_vec()),
            Just(vec![0u8]),
            Just(vec![0xff, 0xfe]),
            Just(b"geographic".to_vec()),
            prop::collection::vec(any::<u8>(), 0..8),
        ];
        let header = prop::sample::select(vec![
            &b"e164,carrier,tags,labels,number_type\n"[..],
            &b"e164,sip_trunk,service_info,holder_id\n"[..],
            &b"carrier,e164\n"[..],
            &b""[..],
        ]);
        (header, prop::collection::vec(piece, 0..60)).prop_map(|(h, body)| {
            let mut out = h.to_vec();
            out.extend(body.concat());
            out
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Whatever bytes arrive, in whatever chunks, the importer answers: every row read is
        /// either written or rejected with a line number and a reason, and a bad header is
        /// refused as INVALID_ARGUMENT, never a panic.
        #[test]
        fn any_bytes_import_without_a_panic(csv in csv_bytes(), chunk in 1usize..64) {
            match parse_all(&csv, chunk) {
                Ok((rows, rejected, copy)) => {
                    let written = copy.lines().count() as i64;
                    prop_assert_eq!(rows, written + rejected.len() as i64, "{:?}", String::from_utf8_lossy(&csv));
                    prop_assert!(rejected.iter().all(|(line, _)| *line >= 2), "{:?}", rejected);
                }
                Err(Error::InvalidArgument(v)) => prop_assert!(!v.is_empty()),
                Err(other) => prop_assert!(false, "{:?}", other),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Export then import is the identity for every field a number carries into a file.
        #[test]
        fn export_then_import_is_the_identity(
            e164 in prop::sample::select(vec!["+13035550100", "+442079460018", "+18003569377"]),
            a in attributes(),
            held_below in any::<bool>(),
        ) {
            let mut v = Violations::new();
            a.validate(&mut v, "");
            prop_assume!(v.finish().is_ok());
            let n = number(e164, a, held_below);
            let rows = import_rows(&exported(&n));
            prop_assert_eq!(rows.len(), 1);
            let row = rows.into_iter().next().unwrap().unwrap();
            prop_assert_eq!(row.e164.as_str(), n.e164.as_str());
            prop_assert_eq!(&row.attributes, &n.attributes);
            prop_assert_eq!(row.holder_id, held_below.then_some(n.holder_id));
        }
    }

    #[test]
    fn simple_tags_and_labels_read_as_written_and_separators_are_escaped() {
        let tags = vec![
            "sales".to_string(),
            "vip".into(),
            "24|7".into(),
            " a\\b ".into(),
        ];
        assert_eq!(write_tags(&tags), "sales|vip|24\\|7|\\ a\\\\b\\ ");
        assert_eq!(parse_tags(&write_tags(&tags)), tags);
        assert_eq!(parse_tags(" sales | vip "), ["sales", "vip"]);
        let labels = BTreeMap::from([
            ("team".to_string(), "west".to_string()),
            ("k=1;".into(), "a;b=c".into()),
        ]);
        assert_eq!(write_labels(&labels), "k\\=1\\;=a\\;b\\=c;team=west");
        assert_eq!(parse_labels(&write_labels(&labels)).unwrap(), labels);
        assert_eq!(
            parse_labels("team = west; floor=2").unwrap(),
            BTreeMap::from([("team".into(), "west".into()), ("floor".into(), "2".into())])
        );
        assert!(parse_labels("team").is_err());
        let template = import_rows(template().as_bytes());
        let row = template[0].as_ref().unwrap();
        assert_eq!(row.attributes.tags, ["24|7", "sales", "vip"]);
        assert_eq!(row.attributes.labels["note"], "a;b");
    }
}
