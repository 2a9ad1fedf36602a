//! The caller's deadline inside the database: no longer wait for a pooled connection than the
//! caller waits for the answer, and no statement of its transaction runs past it.

use std::time::{Duration, Instant};

use super::{Db, Tx};
use crate::error::{Error, Result};

/// When the caller stops waiting for the answer (its gRPC deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Instant);

impl Deadline {
    pub fn after(timeout: Duration) -> Self {
        Self(Instant::now() + timeout)
    }

    /// Time left, or the refusal to start anything once it has passed.
    pub fn remaining(&self) -> Result<Duration> {
        self.0
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| Error::DeadlineExceeded(expired()))
    }
}

fn expired() -> String {
    "the call's deadline (grpc-timeout) passed before it could finish; nothing was changed".into()
}

impl Db {
    /// A pooled connection, waited for no longer than the pool's own wait nor the deadline.
    pub async fn client_until(
        &self,
        deadline: Option<Deadline>,
    ) -> Result<deadpool_postgres::Object> {
        let Some(deadline) = deadline else {
            return self.client().await;
        };
        let left = deadline.remaining()?;
        let _wait = crate::metrics::PoolWait::start();
        let mut timeouts = self.pool.timeouts();
        if timeouts.wait.is_none_or(|w| w > left) {
            timeouts.wait = Some(left);
            return match self.pool.timeout_get(&timeouts).await {
                Err(deadpool_postgres::PoolError::Timeout(_)) => {
                    Err(Error::DeadlineExceeded(expired()))
                }
                other => Ok(other?),
            };
        }
        Ok(self.pool.timeout_get(&timeouts).await?)
    }
}

/// Bounds every statement of the transaction by the time the caller has left
/// (`SET LOCAL statement_timeout`): a statement still running then (say, waiting on a row lock)
/// is cancelled by PostgreSQL itself and the transaction rolls back, so nothing keeps running
/// for a caller that has gone.
pub async fn bound(tx: &Tx<'_>, deadline: Option<Deadline>) -> Result<()> {
    let Some(deadline) = deadline else {
        return Ok(());
    };
    let ms = deadline.remaining()?.as_millis().max(1);
    tx.batch_execute(&format!("SET LOCAL statement_timeout = {ms}"))
        .await?;
    Ok(())
}

/// A backstop for what no caller's deadline bounds (a read whose caller gave up, a call sent
/// without a deadline): every statement on the pool's connections stops after `timeout`, set as
/// the sessions' `statement_timeout` (the connection's startup options, kept with any the
/// connection string has). The import's and the migrations' transactions lift it for
/// themselves ([`unbounded`]): their statements are as long as the data.
pub fn backstop(config: &mut tokio_postgres::Config, timeout: Duration) {
    if timeout.is_zero() {
        return;
    }
    let ms = timeout.as_millis();
    let options = match config.get_options() {
        Some(o) if !o.trim().is_empty() => format!("{o} -c statement_timeout={ms}"),
        _ => format!("-c statement_timeout={ms}"),
    };
    config.options(&options);
}

/// Lifts the backstop for one transaction whose statements grow with the data (an import of
/// millions of rows, a migration).
pub async fn unbounded(tx: &Tx<'_>) -> Result<()> {
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    Ok(())
}
