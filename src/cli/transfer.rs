//! `numbers import FILE` and `numbers export [FILE]`: CSV streamed in chunks with progress bars.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use numbering_client::v1::{import_numbers_request, import_numbers_response};
use numbering_client::{Clients, v1};
use serde_json::json;
use std::io::Write;

use tokio::io::AsyncReadExt;
use tokio_stream::wrappers::ReceiverStream;

use super::failure::with_id;
use super::numbers::Filter;
use super::output::{self, Output, table};
use super::{Failure, progress};

/// Bytes of CSV per message: well below the 4 MiB a gRPC message may carry.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Rejected rows printed when they are not written to a file.
const REJECTS_SHOWN: usize = 20;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Mode {
    /// Adds the good rows and reports the bad ones.
    BestEffort,
    /// Adds every row, or none if any row is bad.
    AllOrNothing,
    /// Checks every row; adds nothing.
    ValidateOnly,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The CSV file (`e164` column required; `numbering numbers export` writes one).
    pub file: PathBuf,
    /// The provider that owns the numbers imported.
    #[arg(long)]
    pub owner: String,
    #[arg(long, value_enum, default_value_t = Mode::BestEffort)]
    pub mode: Mode,
    /// ISO 3166 region for national numbers in the file.
    #[arg(long)]
    pub region: Option<String>,
    /// Writes the rejected rows (line, e164, reason, message) to this CSV file.
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    /// Makes a retry safe [default: a new UUID, printed with the summary].
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Where the CSV goes [default: stdout].
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub filter: Filter,
}

pub async fn import(c: &mut Clients, args: ImportArgs, out: Output) -> Result<(), Failure> {
    let mut file = tokio::fs::File::open(&args.file)
        .await
        .map_err(|e| Failure::Input(format!("cannot read {}: {e}", args.file.display())))?;
    let total = file.metadata().await?.len();
    let request_id = args
        .request_id
        .clone()
        .unwrap_or_else(numbering_client::new_request_id);
    let options = v1::ImportOptions {
        owner_id: args.owner.clone(),
        mode: match args.mode {
            Mode::BestEffort => v1::ImportMode::BestEffort,
            Mode::AllOrNothing => v1::ImportMode::AllOrNothing,
            Mode::ValidateOnly => v1::ImportMode::ValidateOnly,
        }
        .into(),
        region: args.region.clone().unwrap_or_default(),
        request_id: request_id.clone(),
    };
    let bar = progress::bytes(total);
    // A few chunks in flight: the bar counts what the server is taking, and memory stays small.
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let part = |p| v1::ImportNumbersRequest { part: Some(p) };
    let _ = tx
        .send(part(import_numbers_request::Part::Options(options)))
        .await;
    let sent = bar.clone();
    let reader = tokio::spawn(async move {
        loop {
            let mut chunk = vec![0u8; CHUNK_BYTES];
            let mut filled = 0;
            while filled < CHUNK_BYTES {
                let n = file.read(&mut chunk[filled..]).await?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                return Ok::<_, std::io::Error>(());
            }
            chunk.truncate(filled);
            if tx
                .send(part(import_numbers_request::Part::Chunk(chunk)))
                .await
                .is_err()
            {
                // The call ended early; its answer says why.
                return Ok(());
            }
            sent.inc(filled as u64);
        }
    });
    let started = Instant::now();
    let answers = c.number_pool.import_numbers(ReceiverStream::new(rx)).await;
    let mut answers = with_id(&request_id, answers)?.into_inner();
    let mut result = None;
    while let Some(answer) = with_id(&request_id, answers.message().await)? {
        match answer.part {
            Some(import_numbers_response::Part::Progress(p)) => {
                let rate = p.rows_read as f64 / started.elapsed().as_secs_f64().max(0.001);
                bar.set_message(format!(
                    "{} rows, {} rejected, {rate:.0} rows/s",
                    p.rows_read, p.rows_rejected
                ));
            }
            Some(import_numbers_response::Part::Result(r)) => result = Some(r),
            None => {}
        }
    }
    bar.finish_and_clear();
    reader
        .await
        .map_err(|e| Failure::Other(e.to_string()))?
        .map_err(|e| Failure::Input(format!("cannot read {}: {e}", args.file.display())))?;
    let result = result
        .ok_or_else(|| Failure::Other("the server ended the import without a result".into()))?;
    if let Some(path) = &args.rejects {
        write_rejects(path, &result.rejected_rows)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let value = json!({
        "request_id": request_id,
        "rows_read": result.rows_read,
        "rows_imported": result.rows_imported,
        "rows_rejected": result.rows_rejected,
        "rejected_rows": result.rejected_rows.iter().map(output::rejected_row).collect::<Vec<_>>(),
        "rejects_file": args.rejects.as_ref().map(|p| p.display().to_string()),
        "seconds": seconds,
    });
    out.print(value, || {
        let mut t = table(&["READ", "IMPORTED", "REJECTED", "ROWS/S", "REQUEST ID"]);
        t.add_row(vec![
            result.rows_read.to_string(),
            result.rows_imported.to_string(),
            result.rows_rejected.to_string(),
            format!("{:.0}", result.rows_read as f64 / seconds.max(0.001)),
            request_id.clone(),
        ]);
        t
    });
    if result.rows_rejected > 0 {
        match &args.rejects {
            Some(path) => eprintln!(
                "{} rejected rows written to {}",
                result.rejected_rows.len(),
                path.display()
            ),
            None => {
                let mut t = table(&["LINE", "E164", "REASON", "MESSAGE"]);
                for r in result.rejected_rows.iter().take(REJECTS_SHOWN) {
                    t.add_row(vec![
                        r.line.to_string(),
                        r.e164.clone(),
                        r.reason.clone(),
                        r.message.clone(),
                    ]);
                }
                eprintln!("{t}");
                eprintln!("(--rejects FILE writes every rejected row)");
            }
        }
    }
    // Nothing was imported because of bad rows: bad input.
    match args.mode {
        Mode::BestEffort => Ok(()),
        _ if result.rows_rejected > 0 => Err(Failure::Reported(2)),
        _ => Ok(()),
    }
}

fn write_rejects(path: &PathBuf, rows: &[v1::ImportRejectedRow]) -> Result<(), Failure> {
    let fail =
        |e: &dyn std::fmt::Display| Failure::Other(format!("cannot write {}: {e}", path.display()));
    let mut w = csv::Writer::from_path(path).map_err(|e| fail(&e))?;
    w.write_record(["line", "e164", "reason", "message"])
        .map_err(|e| fail(&e))?;
    for r in rows {
        w.write_record([
            r.line.to_string(),
            r.e164.clone(),
            r.reason.clone(),
            r.message.clone(),
        ])
        .map_err(|e| fail(&e))?;
    }
    w.flush().map_err(|e| fail(&e))
}

pub async fn export(c: &mut Clients, args: ExportArgs, out: Output) -> Result<(), Failure> {
    // Plain blocking writes: the command does nothing else meanwhile.
    let mut sink: Box<dyn Write> = match &args.file {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| Failure::Other(format!("cannot write {}: {e}", path.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut stream = c
        .number_pool
        .export_numbers(v1::ExportNumbersRequest {
            filter: Some(args.filter.into()),
        })
        .await?
        .into_inner();
    let bar = progress::spinner();
    let mut lines = 0u64;
    let mut bytes = 0u64;
    while let Some(part) = stream.message().await? {
        lines += part.chunk.iter().filter(|b| **b == b'\n').count() as u64;
        bytes += part.chunk.len() as u64;
        sink.write_all(&part.chunk)?;
        bar.inc(part.chunk.len() as u64);
        bar.set_message(format!("{} numbers", lines.saturating_sub(1)));
    }
    sink.flush()?;
    drop(sink);
    bar.finish_and_clear();
    let numbers = lines.saturating_sub(1);
    if let Some(path) = &args.file {
        out.print(
            json!({"file": path.display().to_string(), "numbers": numbers, "bytes": bytes}),
            || {
                let mut t = table(&["FILE", "NUMBERS", "BYTES"]);
                t.add_row(vec![
                    path.display().to_string(),
                    numbers.to_string(),
                    bytes.to_string(),
                ]);
                t
            },
        );
    } else {
        eprintln!("exported {numbers} numbers");
    }
    Ok(())
}
