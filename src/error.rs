//! The one error vocabulary of the service, and its single translation into gRPC statuses with
//! google.rpc details (ErrorInfo always, plus BadRequest, PreconditionFailure, QuotaFailure or
//! ResourceInfo as they fit).

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `domain` of every ErrorInfo this service sends.
pub const DOMAIN: &str = "numbering";

/// One bad field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// One rule an illegal move broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Precondition {
    /// UPPER_SNAKE name of the rule, such as `ACCOUNT_HAS_CHILDREN`.
    pub kind: &'static str,
    /// What the rule is about, such as `accounts/<id>` or `numbers/+13035550100`.
    pub subject: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {}", describe_violations(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{resource_type} {name} not found")]
    NotFound {
        resource_type: &'static str,
        name: String,
    },
    #[error("{resource_type} {name} already exists")]
    AlreadyExists {
        resource_type: &'static str,
        name: String,
    },
    #[error("{}", describe_preconditions(.0))]
    FailedPrecondition(Vec<Precondition>),
    #[error("etag mismatch: {resource_type} {name} has changed")]
    EtagMismatch {
        resource_type: &'static str,
        name: String,
    },
    #[error("the request id was used before for a different request")]
    RequestIdReused,
    #[error("quota exceeded: {subject}: {description}")]
    QuotaExceeded {
        subject: String,
        description: String,
    },
    #[error("the caller may not do this, or the resource does not exist")]
    PermissionDenied,
    #[error("{0}")]
    Unauthenticated(String),
    #[error("concurrent change, retry: {0}")]
    Conflict(String),
    #[error("not implemented yet: {0}")]
    Unimplemented(&'static str),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn describe_violations(v: &[FieldViolation]) -> String {
    v.iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

fn describe_preconditions(v: &[Precondition]) -> String {
    v.iter()
        .map(|p| format!("{} ({})", p.description, p.subject))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation {
            field: field.into(),
            description: description.into(),
        }])
    }

    pub fn precondition(
        kind: &'static str,
        subject: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self::FailedPrecondition(vec![Precondition {
            kind,
            subject: subject.into(),
            description: description.into(),
        }])
    }

    /// The UPPER_SNAKE reason of the ErrorInfo.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "INVALID_ARGUMENT",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::AlreadyExists { .. } => "ALREADY_EXISTS",
            Self::FailedPrecondition(v) => v.first().map_or("FAILED_PRECONDITION", |p| p.kind),
            Self::EtagMismatch { .. } => "ETAG_MISMATCH",
            Self::RequestIdReused => "REQUEST_ID_REUSED",
            Self::QuotaExceeded { .. } => "QUOTA_EXCEEDED",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Conflict(_) => "CONCURRENT_CHANGE",
            Self::Unimplemented(_) => "NOT_IMPLEMENTED",
            Self::Unavailable(_) => "DATABASE_UNAVAILABLE",
            Self::Internal(_) => "INTERNAL",
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let message = error.to_string();
        let mut details =
            ErrorDetails::with_error_info(error.reason(), DOMAIN, HashMap::<String, String>::new());
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
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::Conflict(_) => Code::Aborted,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Internal(ref e) => {
                tracing::error!(error = %e, "internal error");
                Code::Internal
            }
        };
        Status::with_error_details(code, message, details)
    }
}

impl From<tokio_postgres::Error> for Error {
    /// The one place PostgreSQL errors become domain errors. Constraint names tell which rule
    /// broke; the store maps the ones it expects before they reach here.
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        match e.code() {
            Some(c)
                if *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED =>
            {
                Error::Conflict(e.to_string())
            }
            Some(c) if *c == SqlState::UNIQUE_VIOLATION => Error::AlreadyExists {
                resource_type: "resource",
                name: e
                    .as_db_error()
                    .and_then(|d| d.constraint())
                    .unwrap_or_default()
                    .to_string(),
            },
            Some(c)
                if c.code().starts_with("08")
                    || *c == SqlState::ADMIN_SHUTDOWN
                    || *c == SqlState::CANNOT_CONNECT_NOW =>
            {
                Error::Unavailable(e.to_string())
            }
            None if e.is_closed() => Error::Unavailable(e.to_string()),
            _ => Error::Internal(e.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => Error::Unavailable(other.to_string()),
        }
    }
}

impl Error {
    /// The google.rpc.Status of this error, for per-item results of batch answers.
    pub fn into_rpc_status(self) -> tonic_types::pb::Status {
        let status = Status::from(self);
        <tonic_types::pb::Status as prost::Message>::decode(status.details()).unwrap_or(
            tonic_types::pb::Status {
                code: status.code() as i32,
                message: status.message().to_string(),
                details: Vec::new(),
            },
        )
    }

    /// The same error with its field names under `prefix` (`requests[3].`).
    pub fn with_field_prefix(self, prefix: &str) -> Self {
        match self {
            Error::InvalidArgument(v) => Error::InvalidArgument(
                v.into_iter()
                    .map(|f| FieldViolation {
                        field: format!("{prefix}{}", f.field),
                        description: f.description,
                    })
                    .collect(),
            ),
            other => other,
        }
    }
}
