//! ImportNumbers and ExportNumbers over gRPC: stream messages in as the options and CSV chunks,
//! [`crate::flows::import`]'s steps and chunks out as stream messages.

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use numbering_client::v1 as pb;
use prost::Message;
use tonic::{Response, Status, Streaming};

use crate::domain::command::{ImportMode, ImportNumbers, NumberFilter};
use crate::domain::csv::Rejected;
use crate::domain::principal::Principal;
use crate::domain::validate::{MAX_REQUEST_ID_LEN, Violations};
use crate::error::{Error, Result};
use crate::flows::Caller;
use crate::flows::import::{self as flows, Progress, Report, Step};
use crate::grpc::AppState;
use crate::grpc::streams::outbox;

pub use crate::domain::csv::template;

type Answer<T> =
    std::result::Result<Response<BoxStream<'static, std::result::Result<T, Status>>>, Status>;

/// The options the first message must carry: the command, the request id, and the options as
/// sent (for the request id's fingerprint).
fn options(first: Option<pb::ImportNumbersRequest>) -> Result<(ImportNumbers, String, Vec<u8>)> {
    let Some(pb::ImportNumbersRequest {
        part: Some(pb::import_numbers_request::Part::Options(o)),
    }) = first
    else {
        return Err(Error::invalid(
            "options",
            "the first message must carry the options",
        ));
    };
    let mut v = Violations::new();
    let owner_id = v
        .take(crate::domain::parse_id("options.owner_id", &o.owner_id))
        .ok()
        .flatten()
        .unwrap_or_default();
    let mode = match pb::ImportMode::try_from(o.mode) {
        Ok(pb::ImportMode::ValidateOnly) => Some(ImportMode::ValidateOnly),
        Ok(pb::ImportMode::AllOrNothing) => Some(ImportMode::AllOrNothing),
        Ok(pb::ImportMode::BestEffort) => Some(ImportMode::BestEffort),
        Ok(pb::ImportMode::Unspecified) | Err(_) => {
            v.add(
                "options.mode",
                "VALIDATE_ONLY, ALL_OR_NOTHING or BEST_EFFORT",
            );
            None
        }
    };
    if !o.region.is_empty() && !crate::domain::number::valid_region(&o.region) {
        v.add("options.region", format!("unknown region {:?}", o.region));
    }
    v.text(
        "options.request_id",
        &o.request_id,
        false,
        MAX_REQUEST_ID_LEN,
    );
    v.finish()?;
    let request = o.encode_to_vec();
    let command = ImportNumbers {
        owner_id,
        mode: mode.unwrap_or(ImportMode::ValidateOnly),
        region: o.region,
    };
    Ok((command, o.request_id, request))
}

/// The messages after the options: CSV chunks only.
fn chunk(message: std::result::Result<pb::ImportNumbersRequest, Status>) -> Result<Bytes> {
    match message {
        Ok(pb::ImportNumbersRequest {
            part: Some(pb::import_numbers_request::Part::Chunk(bytes)),
        }) => Ok(Bytes::from(bytes)),
        Ok(_) => Err(Error::invalid(
            "options",
            "only the first message carries options",
        )),
        Err(s) => Err(Error::invalid("chunk", s.message().to_string())),
    }
}

fn rejected_to_proto(r: Rejected) -> pb::ImportRejectedRow {
    pb::ImportRejectedRow {
        line: r.line,
        e164: r.e164,
        reason: r.reason.as_str().into(),
        message: r.message,
    }
}

fn step_to_proto(step: Step) -> pb::ImportNumbersResponse {
    use pb::import_numbers_response::Part;
    let part = match step {
        Step::Progress(Progress {
            rows_read,
            rows_rejected,
        }) => Part::Progress(pb::ImportProgress {
            rows_read,
            rows_rejected,
        }),
        Step::Done(Report {
            rows_read,
            rows_imported,
            rows_rejected,
            rejected_rows,
        }) => Part::Result(pb::ImportResult {
            rows_read,
            rows_imported,
            rows_rejected,
            rejected_rows: rejected_rows.into_iter().map(rejected_to_proto).collect(),
        }),
    };
    pb::ImportNumbersResponse { part: Some(part) }
}

/// ImportNumbers: the options (waited for at most the idle timeout), the scope check, then
/// the import on a task of its own, counted against the account's streams until it ends.
pub async fn start(
    state: AppState,
    principal: Principal,
    input: Streaming<pb::ImportNumbersRequest>,
) -> Answer<pb::ImportNumbersResponse> {
    let permit = state.limits.streams.try_acquire(&principal)?;
    let mut messages = state.streams.incoming("ImportNumbers", input);
    let first = match messages.next().await {
        Some(first) => Some(first??),
        None => None,
    };
    let (command, request_id, request) = options(first)?;
    flows::check(&state.db, &principal, command.owner_id).await?;
    let caller = Caller {
        principal,
        request_id,
    };
    let (outbox, answers) = outbox("ImportNumbers", &state.streams, step_to_proto);
    tokio::spawn(async move {
        let _permit = permit;
        let chunks = messages.map(|m| m.and_then(chunk));
        let imported = outbox
            .unless_stopped(flows::import(
                &state.db,
                &caller,
                &command,
                &request,
                chunks,
                &|p| outbox.offer(Step::Progress(p)),
                state.streams.max_import_bytes,
            ))
            .await;
        let sent = match imported {
            Ok(report) => outbox.send(Step::Done(report)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            outbox.fail(e);
        }
    });
    Ok(Response::new(answers))
}

/// ExportNumbers: the filter checked, then one page at a time on a task of its own, counted
/// against the account's streams until it ends.
pub async fn export(
    state: AppState,
    principal: Principal,
    filter: NumberFilter,
) -> Answer<pb::ExportNumbersResponse> {
    let permit = state.limits.streams.try_acquire(&principal)?;
    let mut export = flows::Export::start(state.db.clone(), &principal, &filter).await?;
    let (outbox, answers) = outbox("ExportNumbers", &state.streams, |chunk| {
        pb::ExportNumbersResponse { chunk }
    });
    tokio::spawn(async move {
        let _permit = permit;
        let sent: Result<()> = async {
            while let Some(chunk) = outbox.unless_stopped(export.next_chunk()).await? {
                if !chunk.is_empty() {
                    outbox.send(chunk).await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = sent {
            outbox.fail(e);
        }
    });
    Ok(Response::new(answers))
}
