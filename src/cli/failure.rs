//! What went wrong, as an exit code and a report on stderr: the server's code, message, ErrorInfo
//! reason and every violation it names.

use numbering_client::tonic::{Code, Status};
use numbering_client::{ConnectError, StatusExt};

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// The server refused or failed the call; the request id of a change, to retry it safely.
    Status {
        status: Box<Status>,
        request_id: Option<String>,
    },
    /// The server cannot be reached.
    Unreachable(String),
    /// Bad input caught before any call: a file that cannot be read, a malformed value.
    Input(String),
    /// Anything else (a file that cannot be written, an answer that cannot be printed).
    Other(String),
    /// Already told on stderr (the failed items of a batch, say): exit with this code.
    Reported(u8),
}

impl From<Status> for Failure {
    fn from(status: Status) -> Self {
        Self::Status {
            status: Box::new(status),
            request_id: None,
        }
    }
}

impl From<ConnectError> for Failure {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Transport(e) => Self::Unreachable(format!("{e}: {e:?}")),
            ConnectError::Token(_) => {
                Self::Input("the token cannot be sent as a header (a stray character?)".into())
            }
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self::Other(e.to_string())
    }
}

/// Attaches a change's request id to its failure, so that the report can name it.
pub fn with_id<T>(request_id: &str, result: Result<T, Status>) -> Result<T, Failure> {
    result.map_err(|status| Failure::Status {
        status: Box::new(status),
        request_id: Some(request_id.to_string()),
    })
}

/// The exit code of a gRPC code: 2 bad input, 3 not found, 4 refused, 5 unavailable, 1 else.
pub fn exit_code_of(code: Code) -> u8 {
    match code {
        Code::Ok => 0,
        Code::InvalidArgument => 2,
        Code::NotFound => 3,
        Code::FailedPrecondition
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::AlreadyExists => 4,
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => 5,
        _ => 1,
    }
}

/// The canonical name of a gRPC code (`FAILED_PRECONDITION`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The lines that describe a refusal: code and message, then the reason and each violation.
pub fn describe(status: &Status) -> Vec<String> {
    let mut lines = vec![format!(
        "{}: {}",
        code_name(status.code()),
        status.message()
    )];
    let details = status.get_error_details();
    if let Some(info) = details.error_info() {
        lines.push(format!("  reason: {}", info.reason));
    }
    if let Some(bad) = details.bad_request() {
        for v in &bad.field_violations {
            lines.push(format!("  field {}: {}", v.field, v.description));
        }
    }
    if let Some(pre) = details.precondition_failure() {
        for v in &pre.violations {
            lines.push(format!(
                "  rule {} on {}: {}",
                v.r#type, v.subject, v.description
            ));
        }
    }
    if let Some(quota) = details.quota_failure() {
        for v in &quota.violations {
            lines.push(format!("  quota on {}: {}", v.subject, v.description));
        }
    }
    if let Some(resource) = details.resource_info() {
        lines.push(format!(
            "  resource {} {}: {}",
            resource.resource_type, resource.resource_name, resource.description
        ));
    }
    lines
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Status { status, .. } => exit_code_of(status.code()),
            Self::Unreachable(_) => 5,
            Self::Input(_) => 2,
            Self::Other(_) => 1,
            Self::Reported(code) => *code,
        }
    }

    /// The report on stderr.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Self::Status { status, request_id } => {
                let mut lines = describe(status);
                lines[0] = format!("error: {}", lines[0]);
                // When the change may or may not have been made, its id makes the retry safe.
                if let Some(id) = request_id
                    .as_ref()
                    .filter(|_| matches!(self.exit_code(), 1 | 5))
                {
                    lines.push(format!(
                        "  request id: {id} (a retry with --request-id {id} is safe)"
                    ));
                }
                lines
            }
            Self::Unreachable(why) => vec![format!(
                "error: UNAVAILABLE: the server cannot be reached: {why}"
            )],
            Self::Input(why) => vec![format!("error: {why}")],
            Self::Other(why) => vec![format!("error: {why}")],
            Self::Reported(_) => vec![],
        }
    }

    pub fn report(&self) {
        for line in self.lines() {
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use numbering_client::tonic_types::{ErrorDetails, FieldViolation, PreconditionViolation};

    use super::*;

    #[test]
    fn exit_codes_tell_bad_input_not_found_refused_and_unavailable_apart() {
        assert_eq!(exit_code_of(Code::InvalidArgument), 2);
        assert_eq!(exit_code_of(Code::NotFound), 3);
        for refused in [
            Code::FailedPrecondition,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::AlreadyExists,
        ] {
            assert_eq!(exit_code_of(refused), 4, "{refused:?}");
        }
        for unavailable in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
        ] {
            assert_eq!(exit_code_of(unavailable), 5, "{unavailable:?}");
        }
        assert_eq!(exit_code_of(Code::Internal), 1);
        assert_eq!(Failure::Unreachable("refused".into()).exit_code(), 5);
        assert_eq!(Failure::Input("bad".into()).exit_code(), 2);
    }

    #[test]
    fn the_report_names_the_code_reason_violations_and_the_request_id_to_retry() {
        let mut details = ErrorDetails::with_error_info(
            "NUMBER_ASSIGNED",
            "numbering",
            std::collections::HashMap::new(),
        );
        details.set_precondition_failure(vec![PreconditionViolation::new(
            "NUMBER_ASSIGNED",
            "numbers/+13035550100",
            "the number is assigned",
        )]);
        details.set_bad_request(vec![FieldViolation::new("number", "not E.164")]);
        let status = Status::with_error_details(Code::FailedPrecondition, "no", details);
        let lines = with_id::<()>("r-1", Err(status)).unwrap_err().lines();
        assert_eq!(lines[0], "error: FAILED_PRECONDITION: no");
        assert!(
            !lines.iter().any(|l| l.contains("r-1")),
            "a refusal is final: {lines:?}"
        );
        assert!(
            lines.contains(&"  reason: NUMBER_ASSIGNED".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"  field number: not E.164".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(
                &"  rule NUMBER_ASSIGNED on numbers/+13035550100: the number is assigned"
                    .to_string()
            ),
            "{lines:?}"
        );
        let lost = with_id::<()>("r-1", Err(Status::unavailable("gone")))
            .unwrap_err()
            .lines();
        assert!(
            lost.last().unwrap().contains("--request-id r-1"),
            "{lost:?}"
        );
    }
}
