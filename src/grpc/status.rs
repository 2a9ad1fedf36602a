//! Domain errors as gRPC statuses with google.rpc details: exactly one ErrorInfo (reason,
//! domain `numbering`), plus BadRequest, PreconditionFailure, QuotaFailure or ResourceInfo as
//! they fit. The only translation of errors into statuses.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::{Error, bounded};

/// The `domain` of every ErrorInfo this service sends.
pub const DOMAIN: &str = "numbering";

/// Most bytes of a status message; the details hold the rest, themselves bounded
/// ([`Error::bounded`]).
pub const MAX_MESSAGE_BYTES: usize = 512;

/// How long a caller should wait before it retries an UNAVAILABLE call (google.rpc.RetryInfo).
pub const RETRY_DELAY: Duration = Duration::from_secs(1);

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let error = error.bounded();
        // What went wrong inside is for the log, never for the caller.
        let message = match &error {
            Error::Internal(_) => "internal error".to_string(),
            Error::Unavailable(_) => "the service is unavailable; retry".to_string(),
            other => bounded(&other.to_string(), MAX_MESSAGE_BYTES),
        };
        let metadata = match &error {
            Error::LimitExceeded { limit, .. } => {
                HashMap::from([("limit".to_string(), limit.to_string())])
            }
            Error::Interrupted { cursor, .. } => {
                HashMap::from([("cursor".to_string(), cursor.clone())])
            }
            _ => HashMap::new(),
        };
        let mut details = ErrorDetails::with_error_info(error.reason(), DOMAIN, metadata);
        // Exhaustive on purpose: a new variant does not compile until its code is decided.
        let code = match error {
            Error::InvalidArgument(violations) => {
                for v in violations {
                    details.add_bad_request_violation(v.field, v.description);
                }
                Code::InvalidArgument
            }
            Error::NotFound {
                resource_type,
                name,
            } => {
                details.set_resource_info(resource_type, name, "", "not found");
                Code::NotFound
            }
            Error::AlreadyExists {
                resource_type,
                name,
            } => {
                details.set_resource_info(resource_type, name, "", "already exists");
                Code::AlreadyExists
            }
            Error::FailedPrecondition(preconditions) => {
                for p in preconditions {
                    details.add_precondition_failure_violation(p.kind, p.subject, p.description);
                }
                Code::FailedPrecondition
            }
            Error::EtagMismatch {
                resource_type,
                name,
            } => {
                details.set_resource_info(resource_type, name, "", "etag mismatch");
                Code::Aborted
            }
            Error::RequestIdReused => {
                details.add_bad_request_violation(
                    "request_id",
                    "already used for a different request",
                );
                Code::InvalidArgument
            }
            Error::QuotaExceeded {
                subject,
                description,
            } => {
                details.add_quota_failure_violation(subject, description);
                Code::ResourceExhausted
            }
            Error::PermissionDenied => Code::PermissionDenied,
            Error::OwnerOnly { ref fields } => {
                let metadata = HashMap::from([("fields".to_string(), fields.join(","))]);
                details.set_error_info(error.reason(), DOMAIN, metadata);
                Code::PermissionDenied
            }
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::Conflict(_) => Code::Aborted,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::LimitExceeded {
                limit,
                description,
                retry_after,
            } => {
                details.add_quota_failure_violation(limit, description);
                if let Some(delay) = retry_after {
                    details.set_retry_info(Some(delay));
                }
                Code::ResourceExhausted
            }
            Error::Interrupted { .. } => {
                details.set_retry_info(Some(RETRY_DELAY));
                Code::Unavailable
            }
            Error::Unavailable(ref e) => {
                tracing::warn!(error = %e, "unavailable");
                details.set_retry_info(Some(RETRY_DELAY));
                Code::Unavailable
            }
            Error::Internal(ref e) => {
                // The call's span (method, request id) is on the line; `e` is the whole chain.
                tracing::error!(error = %e, "internal error");
                Code::Internal
            }
        };
        Status::with_error_details(code, message, details)
    }
}

/// An error as the google.rpc.Status a batch reports per item, with the same details a failed
/// call would carry.
pub fn rpc_status(error: Error) -> tonic_types::pb::Status {
    let status = Status::from(error);
    <tonic_types::pb::Status as prost::Message>::decode(status.details()).unwrap_or(
        tonic_types::pb::Status {
            code: status.code() as i32,
            message: status.message().to_string(),
            details: Vec::new(),
        },
    )
}
