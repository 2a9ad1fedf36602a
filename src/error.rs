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
    /// The caller may change the resource, but not these fields: they are the owner's.
    #[error("only the owner's admins change {}", .fields.join(", "))]
    OwnerOnly { fields: Vec<String> },
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
    /// A watch ended before its caller was done with it (the caller did not read what it was
    /// sent, the server is stopping, the database went away): resume from `cursor`.
    #[error("{description}")]
    Interrupted { cursor: String, description: String },
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Most bytes of one value (a field path, a subject, a name) an error echoes back.
pub const MAX_ECHO_BYTES: usize = 128;
/// Most bytes of one description an error carries.
pub const MAX_DESCRIPTION_BYTES: usize = 256;
/// Most bytes all the violations of one error carry together; the rest are counted, not named.
pub const MAX_VIOLATION_BYTES: usize = 2048;

/// `s` cut to at most `max` bytes (on a character boundary) plus an ellipsis when it is longer:
/// an error must never echo a caller's megabyte back (C-core clients drop statuses whose
/// metadata exceeds their limit, details and all).
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The first items of `items` that fit in [`MAX_VIOLATION_BYTES`] (at least one), and how many
/// were left out.
fn within_budget<T>(items: Vec<T>, size: impl Fn(&T) -> usize) -> (Vec<T>, usize) {
    let total = items.len();
    let mut spent = 0;
    let mut kept = Vec::new();
    for item in items {
        spent += size(&item);
        if !kept.is_empty() && spent > MAX_VIOLATION_BYTES {
            break;
        }
        kept.push(item);
    }
    let left_out = total - kept.len();
    (kept, left_out)
}

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
            Self::OwnerOnly { .. } => "OWNER_ONLY_FIELD",
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Conflict(_) => "CONCURRENT_CHANGE",
            Self::Unimplemented(_) => "NOT_IMPLEMENTED",
            Self::Unavailable(_) => "DATABASE_UNAVAILABLE",
            Self::DeadlineExceeded(_) => "DEADLINE_EXCEEDED",
            Self::LimitExceeded { .. } => "LIMIT_EXCEEDED",
            Self::Interrupted { .. } => "WATCH_INTERRUPTED",
            Self::Internal(_) => "INTERNAL",
        }
    }
}

impl Error {
    /// The same error with every value it echoes bounded ([`bounded`]) and its lists of
    /// violations cut to [`MAX_VIOLATION_BYTES`], the rest counted in a last entry (`and 12
    /// more`): what a caller may be sent whatever it sent.
    pub fn bounded(self) -> Self {
        let echo = |s: &str| bounded(s, MAX_ECHO_BYTES);
        let describe = |s: &str| bounded(s, MAX_DESCRIPTION_BYTES);
        match self {
            Self::InvalidArgument(v) => {
                let v = v
                    .into_iter()
                    .map(|f| FieldViolation {
                        field: echo(&f.field),
                        description: describe(&f.description),
                    })
                    .collect();
                let (mut kept, left_out) =
                    within_budget(v, |f: &FieldViolation| f.field.len() + f.description.len());
                if left_out > 0 {
                    kept.push(FieldViolation {
                        field: "…".into(),
                        description: format!("and {left_out} more"),
                    });
                }
                Self::InvalidArgument(kept)
            }
            Self::FailedPrecondition(v) => {
                let v = v
                    .into_iter()
                    .map(|p| Precondition {
                        kind: p.kind,
                        subject: echo(&p.subject),
                        description: describe(&p.description),
                    })
                    .collect();
                let (mut kept, left_out) = within_budget(v, |p: &Precondition| {
                    p.kind.len() + p.subject.len() + p.description.len()
                });
                if left_out > 0
                    && let Some(last) = kept.last()
                {
                    let kind = last.kind;
                    kept.push(Precondition {
                        kind,
                        subject: "…".into(),
                        description: format!("and {left_out} more"),
                    });
                }
                Self::FailedPrecondition(kept)
            }
            Self::NotFound {
                resource_type,
                name,
            } => Self::NotFound {
                resource_type,
                name: echo(&name),
            },
            Self::AlreadyExists {
                resource_type,
                name,
            } => Self::AlreadyExists {
                resource_type,
                name: echo(&name),
            },
            Self::EtagMismatch {
                resource_type,
                name,
            } => Self::EtagMismatch {
                resource_type,
                name: echo(&name),
            },
            Self::QuotaExceeded {
                subject,
                description,
            } => Self::QuotaExceeded {
                subject: echo(&subject),
                description: describe(&description),
            },
            Self::Unauthenticated(m) => Self::Unauthenticated(describe(&m)),
            Self::Conflict(m) => Self::Conflict(describe(&m)),
            Self::DeadlineExceeded(m) => Self::DeadlineExceeded(describe(&m)),
            Self::LimitExceeded {
                limit,
                description,
                retry_after,
            } => Self::LimitExceeded {
                limit,
                description: describe(&description),
                retry_after,
            },
            // The cursor is the server's own, and must come back whole to be of use.
            Self::Interrupted {
                cursor,
                description,
            } => Self::Interrupted {
                cursor,
                description: describe(&description),
            },
            // The owner's fields are named by the server's own list, never by the caller.
            other @ (Self::RequestIdReused
            | Self::OwnerOnly { .. }
            | Self::PermissionDenied
            | Self::Unimplemented(_)
            | Self::Unavailable(_)
            | Self::Internal(_)) => other,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_value_is_cut_on_a_character_boundary_with_an_ellipsis() {
        let cut = bounded(&"é".repeat(100), 9);
        assert_eq!(cut, "éééé…");
        assert_eq!(bounded("short", 9), "short");
    }

    #[test]
    fn a_megabyte_field_comes_back_bounded() {
        let huge = "k".repeat(1 << 20);
        let e = Error::invalid(format!("labels[{huge}]"), format!("bad key {huge}")).bounded();
        let Error::InvalidArgument(v) = e else {
            panic!("still INVALID_ARGUMENT")
        };
        assert!(v[0].field.len() <= MAX_ECHO_BYTES + 3);
        assert!(v[0].description.len() <= MAX_DESCRIPTION_BYTES + 3);
    }

    #[test]
    fn many_violations_are_named_up_to_a_budget_then_counted() {
        let many = (0..1000)
            .map(|i| FieldViolation {
                field: format!("requests[{i}].number"),
                description: "x".repeat(100),
            })
            .collect();
        let Error::InvalidArgument(v) = Error::InvalidArgument(many).bounded() else {
            panic!("still INVALID_ARGUMENT")
        };
        let size: usize = v.iter().map(|f| f.field.len() + f.description.len()).sum();
        assert!(size <= MAX_VIOLATION_BYTES + 200, "{size}");
        let last = v.last().unwrap();
        assert_eq!(
            last.description,
            format!("and {} more", 1000 - (v.len() - 1))
        );
    }
}
