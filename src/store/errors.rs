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
        SqlState::UNIQUE_VIOLATION,
        "sip_trunks_name_unique",
        Meaning::Exists("sip trunk"),
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

/// What tokio-postgres says of a connection that failed or was lost. It gives its errors no
/// public kind; these texts, one per kind, are the only signal it offers.
const CONNECTION_FAILURES: &[&str] = &[
    "error connecting to server",
    "error communicating with the server",
    "connection closed",
    "timeout waiting for server",
    "error performing TLS handshake",
    "authentication error",
];

/// Whether a SQLSTATE means the database, not the statement, failed: the connection was lost or
/// refused, the server is shutting down or starting, out of connections, memory or disk, or the
/// database is gone. The caller should retry later: UNAVAILABLE. A table or schema that does
/// not exist counts too: the schema was checked at start-up, so at run time it means the
/// database was dropped or restored under the server (health turns NOT_SERVING on its next
/// check), not a bug of a statement that worked a moment ago.
fn database_unavailable(code: &SqlState) -> bool {
    let class = &code.code()[..2];
    // 08 connection exception, 28 invalid authorization (at connect), 53 insufficient
    // resources, 58 system error (I/O).
    matches!(class, "08" | "28" | "53" | "58")
        || [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::DATABASE_DROPPED,
            SqlState::IDLE_SESSION_TIMEOUT,
            SqlState::INVALID_CATALOG_NAME,
            SqlState::T_R_STATEMENT_COMPLETION_UNKNOWN,
            SqlState::UNDEFINED_TABLE,
            SqlState::INVALID_SCHEMA_NAME,
        ]
        .contains(code)
}

/// Whether `e` is a connection that failed or was lost, rather than a statement refused.
pub fn is_connection_failure(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        Some(code) => database_unavailable(code),
        None => e.is_closed() || CONNECTION_FAILURES.contains(&e.to_string().as_str()),
    }
}

/// The domain error for `e`; `subject` names what the statement was about (an E.164, a
/// prefix, `external_ref X`), for the answers that name it.
pub fn classify(e: tokio_postgres::Error, subject: &str) -> Error {
    crate::metrics::record_db_error(sqlstate_class(&e));
    if is_connection_failure(&e) {
        return Error::Unavailable(chain(&e));
    }
    let Some(code) = e.code() else {
        // Encoding a parameter, reading a column, a row count: our own mistake.
        return Error::Internal(chain(&e));
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

/// The SQLSTATE classes PostgreSQL answers (its appendix A), as the label of the error metric.
const SQLSTATE_CLASSES: &[&str] = &[
    "00", "01", "02", "03", "08", "09", "0A", "0B", "0F", "0L", "0P", "0Z", "20", "21", "22", "23",
    "24", "25", "26", "27", "28", "2B", "2D", "2F", "34", "38", "39", "3B", "3D", "3F", "40", "42",
    "44", "53", "54", "55", "57", "58", "72", "F0", "HV", "P0", "XX",
];

/// The class of `e`'s SQLSTATE (its first two characters); `connection` for a connection lost
/// without one, `client` for what failed on this side (encoding, decoding, a row count).
fn sqlstate_class(e: &tokio_postgres::Error) -> &'static str {
    match e.code() {
        Some(code) => {
            let class = code.code().get(..2).unwrap_or_default();
            SQLSTATE_CLASSES
                .iter()
                .find(|c| **c == class)
                .copied()
                .unwrap_or("other")
        }
        None if is_connection_failure(e) => "connection",
        None => "client",
    }
}

/// Whether `e` is a unique violation: two replicas creating the same catalog entry at once.
pub fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// The error with its causes, for the log: tokio-postgres's own text is only "db error", the
/// server's message, detail, hint, table and constraint are in its [`DbError`].
///
/// [`DbError`]: tokio_postgres::error::DbError
fn chain(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        return text;
    };
    let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    let parts = [
        ("detail", db.detail()),
        ("hint", db.hint()),
        ("table", db.table()),
        ("column", db.column()),
        ("constraint", db.constraint()),
        ("where", db.where_()),
    ];
    for (name, value) in parts {
        if let Some(value) = value {
            text.push_str(&format!("; {name}: {value}"));
        }
    }
    text
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        classify(e, "")
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    /// A connection the pool could not make is the database's failure whatever its cause
    /// (refused, timed out, authentication, the database missing): UNAVAILABLE; so are the
    /// pool's own timeouts and its closing.
    fn from(e: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        match e {
            PoolError::Backend(e) => match classify(e, "") {
                Error::Internal(cause) => Error::Unavailable(cause),
                other => other,
            },
            PoolError::NoRuntimeSpecified => Error::Internal(e.to_string()),
            other @ (PoolError::Timeout(_) | PoolError::Closed | PoolError::PostCreateHook(_)) => {
                Error::Unavailable(other.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A port where nothing listens.
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap()
    }

    fn config() -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(closed_port())
            .user("postgres")
            .dbname("none")
            .connect_timeout(Duration::from_millis(500));
        config
    }

    #[tokio::test]
    async fn a_refused_connection_is_unavailable_not_internal() {
        let e = config().connect(tokio_postgres::NoTls).await.err().unwrap();
        assert!(matches!(classify(e, ""), Error::Unavailable(_)));
    }

    #[tokio::test]
    async fn a_pool_that_cannot_connect_is_unavailable_not_internal() {
        let db = crate::store::Db::new(config(), 1).unwrap();
        assert!(matches!(
            db.client().await.err(),
            Some(Error::Unavailable(_))
        ));
    }

    #[test]
    fn a_server_shutting_down_starting_or_out_of_connections_is_unavailable() {
        for code in [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::CONNECTION_FAILURE,
            SqlState::INVALID_CATALOG_NAME,
            SqlState::UNDEFINED_TABLE,
        ] {
            assert!(database_unavailable(&code), "{code:?}");
        }
        for code in [
            SqlState::UNIQUE_VIOLATION,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::SYNTAX_ERROR,
        ] {
            assert!(!database_unavailable(&code), "{code:?}");
        }
    }
}
