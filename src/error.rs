//! The one error vocabulary of the service, shared by every floor. It knows nothing of gRPC:
//! [`crate::grpc::status`] turns it into statuses, [`crate::store::errors`] makes it from
//! PostgreSQL's.

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
    /// The caller's deadline passed, or a stream stayed idle too long: the text says which.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A limit of the service's shared resources (`limit` names its setting); with
    /// `retry_after` when waiting helps.
    #[error("{description}")]
    LimitExceeded {
        limit: &'static str,
        description: String,
        retry_after: Option<std::time::Duration>,
    },
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
            Self::DeadlineExceeded(_) => "DEADLINE_EXCEEDED",
            Self::LimitExceeded { .. } => "LIMIT_EXCEEDED",
            Self::Internal(_) => "INTERNAL",
        }
    }
}

impl Error {
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

/// The one answer of an all-or-nothing batch that failed, whatever the batch: every broken
/// rule when rules were all that failed (one PreconditionFailure naming each number), else the
/// first other failure (ALREADY_EXISTS, QUOTA_EXCEEDED, INVALID_ARGUMENT...) as it is.
pub fn all_or_nothing(failures: Vec<Error>) -> Error {
    if failures
        .iter()
        .all(|e| matches!(e, Error::FailedPrecondition(_)))
    {
        let mut all = Vec::new();
        for e in failures {
            if let Error::FailedPrecondition(v) = e {
                all.extend(v);
            }
        }
        return Error::FailedPrecondition(all);
    }
    failures
        .into_iter()
        .find(|e| !matches!(e, Error::FailedPrecondition(_)))
        .unwrap_or(Error::Internal("a batch failed without an error".into()))
}
