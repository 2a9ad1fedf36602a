//! The one place PostgreSQL errors become domain errors: a table keyed by (SQLSTATE,
//! constraint) for the rules the schema enforces, and the connection failures that mean
//! "retry". A constraint the table does not know is our bug: INTERNAL, its name only in the log.

use tokio_postgres::error::SqlState;

use crate::error::Error;

/// What a broken constraint tells the caller.
enum Meaning {
    /// A unique index: the thing the caller named already exists.
    Exists(&'static str),
    /// A rule of the life of a number that a concurrent change made the caller break.
    Broken(&'static str, &'static str),
    /// A consistency check that only a race can trip: retry.
    Raced,
}

/// Every constraint a caller can trip, by SQLSTATE and name.
const CONSTRAINTS: &[(SqlState, &str, Meaning)] = &[
    (
        SqlState::UNIQUE_VIOLATION,
        "accounts_external_ref",
        Meaning::Exists("account"),
    ),
    (
        SqlState::UNIQUE_VIOLATION,
        "series_prefix_unique",
        Meaning::Exists("series"),
    ),
    (
        SqlState::UNIQUE_VIOLATION,
        "numbers_live_e164",
        Meaning::Exists("number"),
    ),
    (
        SqlState::CHECK_VIOLATION,
        "numbers_delete_unused",
        Meaning::Broken(
            "NUMBER_IN_USE",
            "only an available or aging number its owner holds can be deleted",
        ),
    ),
    (
        SqlState::CHECK_VIOLATION,
        "numbers_assignee",
        Meaning::Raced,
    ),
    (
        SqlState::CHECK_VIOLATION,
        "numbers_reservation",
        Meaning::Raced,
    ),
    (SqlState::CHECK_VIOLATION, "numbers_aging", Meaning::Raced),
    (
        SqlState::CHECK_VIOLATION,
        "numbers_aging_with_owner",
        Meaning::Raced,
    ),
    (
        SqlState::CHECK_VIOLATION,
        "numbers_deleted_with_owner",
        Meaning::Raced,
    ),
    (
        SqlState::CHECK_VIOLATION,
        "numbers_returned_below_owner",
        Meaning::Raced,
    ),
];

/// The domain error for `e`; `subject` names what the statement was about (an E.164, a
/// prefix, `external_ref X`), for the answers that name it.
pub fn classify(e: tokio_postgres::Error, subject: &str) -> Error {
    let Some(code) = e.code() else {
        return if e.is_closed() {
            Error::Unavailable(chain(&e))
        } else {
            Error::Internal(chain(&e))
        };
    };
    // Only the statement timeout a caller's deadline set cancels our statements.
    if *code == SqlState::QUERY_CANCELED {
        return Error::DeadlineExceeded(
            "the call's deadline passed while the database was working on it; nothing was changed"
                .into(),
        );
    }
    if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED {
        return Error::Conflict(chain(&e));
    }
    if code.code().starts_with("08")
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
    {
        return Error::Unavailable(chain(&e));
    }
    let constraint = e.as_db_error().and_then(|d| d.constraint());
    let known = CONSTRAINTS
        .iter()
        .find(|(c, name, _)| c == code && Some(*name) == constraint);
    match known {
        Some((_, _, Meaning::Exists(resource_type))) => Error::AlreadyExists {
            resource_type,
            name: subject.to_string(),
        },
        Some((_, _, Meaning::Broken(kind, description))) => {
            Error::precondition(kind, format!("numbers/{subject}"), *description)
        }
        Some((_, _, Meaning::Raced)) => Error::Conflict(chain(&e)),
        None => Error::Internal(chain(&e)),
    }
}

/// Whether `e` is a unique violation: two replicas creating the same catalog entry at once.
pub fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// The error with its causes, for the log: tokio-postgres's own text is only "db error".
fn chain(e: &tokio_postgres::Error) -> String {
    let mut text = match e.as_db_error() {
        Some(db) => format!(
            "{}: {} ({})",
            db.code().code(),
            db.message(),
            db.constraint().unwrap_or("no constraint")
        ),
        None => e.to_string(),
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if e.as_db_error().is_none() {
            text.push_str(&format!(": {s}"));
        }
        source = s.source();
    }
    text
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        classify(e, "")
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
