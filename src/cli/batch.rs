//! `numbering batch assign|unassign|reserve|release FILE`: one change per CSV row, sent as the
//! Batch*Numbers calls (at most 1000 rows a call), each row's result printed.
//!
//! Columns (a header names them, in any order): `number` always; for assign `kind` (user,
//! agent, device, service, trunk, other) and `id`, optionally `name` and `account`; for reserve
//! `reserved_for`, optionally `tag` and `note`; `etag` optionally for every action.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use numbering_client::tonic::Code;
use numbering_client::{StatusExt, v1};
use serde_json::{Value, json};

use super::failure::{code_name, describe, exit_code_of, with_id};
use super::moves::Kind;
use super::numbers::item_status;
use super::output::{self, table};
use super::{Failure, Mutation, Remote};

/// Rows sent in one Batch*Numbers call (the server's most).
pub const ROWS_PER_CALL: usize = 1000;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Action {
    Assign,
    Unassign,
    Reserve,
    Release,
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// The change each row asks for.
    #[arg(value_enum)]
    pub action: Action,
    /// The CSV file: a header, then one number a row.
    pub file: PathBuf,
    /// Within each call of 1000 rows: change all or none (a refused row leaves the others
    /// unchanged).
    #[arg(long)]
    pub all_or_nothing: bool,
    #[command(flatten)]
    pub mutation: Mutation,
    #[command(flatten)]
    pub remote: Remote,
}

/// One CSV row, read by column name.
struct Row<'a> {
    header: &'a csv::StringRecord,
    record: csv::StringRecord,
    line: u64,
}

impl Row<'_> {
    fn get(&self, column: &str) -> String {
        self.header
            .iter()
            .position(|h| h.trim() == column)
            .and_then(|i| self.record.get(i))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    }

    fn required(&self, column: &str) -> Result<String, Failure> {
        let value = self.get(column);
        if value.is_empty() {
            return Err(Failure::Input(format!(
                "line {}: the column {column:?} is empty or missing",
                self.line
            )));
        }
        Ok(value)
    }
}

/// The rows of one call, as the requests of the action's batch.
enum Requests {
    Assign(Vec<v1::AssignNumberRequest>),
    Unassign(Vec<v1::UnassignNumberRequest>),
    Reserve(Vec<v1::ReserveNumberRequest>),
    Release(Vec<v1::ReleaseNumberRequest>),
}

fn requests(action: Action, rows: &[Row<'_>]) -> Result<Requests, Failure> {
    Ok(match action {
        Action::Assign => Requests::Assign(
            rows.iter()
                .map(|r| {
                    let kind = Kind::from_str(&r.required("kind")?, true)
                        .map_err(|e| Failure::Input(format!("line {}: kind: {e}", r.line)))?;
                    Ok(v1::AssignNumberRequest {
                        number: r.required("number")?,
                        assignee: Some(v1::Assignee {
                            kind: v1::AssigneeKind::from(kind).into(),
                            id: r.required("id")?,
                            display_name: r.get("name"),
                            account_id: r.get("account"),
                        }),
                        etag: r.get("etag"),
                        ..Default::default()
                    })
                })
                .collect::<Result<_, Failure>>()?,
        ),
        Action::Unassign => Requests::Unassign(
            rows.iter()
                .map(|r| {
                    Ok(v1::UnassignNumberRequest {
                        number: r.required("number")?,
                        etag: r.get("etag"),
                        ..Default::default()
                    })
                })
                .collect::<Result<_, Failure>>()?,
        ),
        Action::Reserve => Requests::Reserve(
            rows.iter()
                .map(|r| {
                    Ok(v1::ReserveNumberRequest {
                        number: r.required("number")?,
                        reservation: Some(v1::Reservation {
                            reserved_for: r.required("reserved_for")?,
                            tag: r.get("tag"),
                            note: r.get("note"),
                            expire_time: None,
                        }),
                        etag: r.get("etag"),
                        ..Default::default()
                    })
                })
                .collect::<Result<_, Failure>>()?,
        ),
        Action::Release => Requests::Release(
            rows.iter()
                .map(|r| {
                    Ok(v1::ReleaseNumberRequest {
                        number: r.required("number")?,
                        etag: r.get("etag"),
                        ..Default::default()
                    })
                })
                .collect::<Result<_, Failure>>()?,
        ),
    })
}

pub async fn run(a: BatchArgs) -> Result<(), Failure> {
    let mut reader = csv::Reader::from_path(&a.file)
        .map_err(|e| Failure::Input(format!("cannot read {}: {e}", a.file.display())))?;
    let header = reader
        .headers()
        .map_err(|e| Failure::Input(format!("{}: {e}", a.file.display())))?
        .clone();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| Failure::Input(format!("{}: {e}", a.file.display())))?;
        let line = record.position().map_or(0, |p| p.line());
        rows.push(Row {
            header: &header,
            record,
            line,
        });
    }
    if rows.is_empty() {
        return Err(Failure::Input(format!("{}: no rows", a.file.display())));
    }
    // Every row is checked before the first call: a bad file changes nothing.
    let calls = rows
        .chunks(ROWS_PER_CALL)
        .map(|chunk| requests(a.action, chunk))
        .collect::<Result<Vec<_>, _>>()?;
    let mut c = a.remote.connect().await?;
    let base_id = a.mutation.request_id();
    let mut results = Vec::with_capacity(rows.len());
    for (i, call) in calls.into_iter().enumerate() {
        // One request id per call, derived from the run's, so that re-running the same command
        // with --request-id retries every call safely.
        let request_id = if i == 0 {
            base_id.clone()
        } else {
            format!("{base_id}.{i}")
        };
        let (id, validate_only, all) = (
            request_id.clone(),
            a.mutation.validate_only,
            a.all_or_nothing,
        );
        let answer = match call {
            Requests::Assign(requests) => {
                c.allocation
                    .batch_assign_numbers(v1::BatchAssignNumbersRequest {
                        requests,
                        all_or_nothing: all,
                        request_id: id,
                        validate_only,
                    })
                    .await
            }
            Requests::Unassign(requests) => {
                c.allocation
                    .batch_unassign_numbers(v1::BatchUnassignNumbersRequest {
                        requests,
                        all_or_nothing: all,
                        request_id: id,
                        validate_only,
                    })
                    .await
            }
            Requests::Reserve(requests) => {
                c.allocation
                    .batch_reserve_numbers(v1::BatchReserveNumbersRequest {
                        requests,
                        all_or_nothing: all,
                        request_id: id,
                        validate_only,
                    })
                    .await
            }
            Requests::Release(requests) => {
                c.allocation
                    .batch_release_numbers(v1::BatchReleaseNumbersRequest {
                        requests,
                        all_or_nothing: all,
                        request_id: id,
                        validate_only,
                    })
                    .await
            }
        };
        results.extend(with_id(&request_id, answer)?.into_inner().results);
    }
    report(a.remote.output, &results)
}

/// Prints each row's result; a row refused makes the exit code its code's, after every refused
/// row is described on stderr.
fn report(out: super::Output, results: &[v1::BatchNumberResult]) -> Result<(), Failure> {
    let value = Value::Array(
        results
            .iter()
            .map(|r| match (&r.result, &r.error) {
                (Some(n), _) => json!({"number": r.number, "result": output::number(n)}),
                (None, Some(e)) => json!({"number": r.number, "error": {
                    "code": code_name(Code::from(e.code)),
                    "message": e.message,
                    "reason": item_status(e).get_details_error_info().map(|i| i.reason),
                }}),
                (None, None) => json!({"number": r.number}),
            })
            .collect(),
    );
    out.print(value, || {
        let mut t = table(&["NUMBER", "RESULT", "STATUS"]);
        for r in results {
            let (result, status) = match (&r.result, &r.error) {
                (Some(n), _) => ("OK".to_string(), output::status_short(n.status)),
                (None, e) => (
                    e.as_ref()
                        .map(|e| code_name(Code::from(e.code)).to_string())
                        .unwrap_or_default(),
                    String::new(),
                ),
            };
            t.add_row(vec![r.number.clone(), result, status]);
        }
        t
    });
    let failed: Vec<_> = results
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| (&r.number, item_status(e))))
        .collect();
    let Some((_, first)) = failed.first() else {
        return Ok(());
    };
    for (number, status) in &failed {
        for (i, line) in describe(status).iter().enumerate() {
            match i {
                0 => eprintln!("error: {number}: {line}"),
                _ => eprintln!("  {line}"),
            }
        }
    }
    Err(Failure::Reported(exit_code_of(first.code())))
}
