//! PostgreSQL access: the connection pool, migrations, and the transaction every mutation runs
//! in, with request-id idempotency and validate-only handled once for all of them.

pub mod accounts;
pub mod allocation;
pub mod deadline;
pub mod errors;
pub mod import;
pub mod inventory;
pub mod migrate;
pub mod numbers;
pub mod series;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Transaction};
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio_postgres::NoTls;

use crate::error::{Error, Result};

pub use deadline::Deadline;

pub use deadpool_postgres::GenericClient;

/// The transaction a mutation runs in.
pub type Tx<'a> = Transaction<'a>;

/// Whether a read takes the rows it returns for the rest of the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    No,
    ForUpdate,
}

impl Lock {
    fn clause(self) -> &'static str {
        match self {
            Lock::No => "",
            Lock::ForUpdate => " FOR UPDATE",
        }
    }
}

/// The savepoint each item of a batch runs behind.
pub async fn savepoint(tx: &Tx<'_>) -> Result<()> {
    Ok(tx.batch_execute("SAVEPOINT item").await?)
}

/// Keeps what the item did.
pub async fn release_savepoint(tx: &Tx<'_>) -> Result<()> {
    Ok(tx.batch_execute("RELEASE SAVEPOINT item").await?)
}

/// Undoes only what the item did.
pub async fn rollback_to_savepoint(tx: &Tx<'_>) -> Result<()> {
    Ok(tx
        .batch_execute("ROLLBACK TO SAVEPOINT item; RELEASE SAVEPOINT item")
        .await?)
}

#[derive(Clone)]
pub struct Db {
    pool: Pool,
}

/// What identifies one mutation for AIP-155 idempotency.
pub struct Mutation<'a> {
    /// The caller's subject: request ids are per caller.
    pub actor: &'a str,
    /// The RPC, part of the fingerprint.
    pub method: &'static str,
    pub request_id: &'a str,
    /// The encoded request; a retry must send the same.
    pub request: Vec<u8>,
    /// Run the whole change, answer, then roll it back.
    pub validate_only: bool,
    /// The caller's deadline: the pool wait and every statement are bounded by it.
    pub deadline: Option<Deadline>,
}

impl Db {
    pub fn new(config: tokio_postgres::Config, max_connections: usize) -> Result<Self> {
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Self { pool })
    }

    pub async fn client(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }

    /// The pool's size, idle connections and waiters.
    pub fn pool_status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        self.client().await?.simple_query("SELECT 1").await?;
        Ok(())
    }

    pub async fn migrate(&self) -> Result<usize> {
        let mut client = self.client().await?;
        migrate::migrate(&mut client).await
    }

    /// Runs `change` in one transaction. A request id seen before with the same request returns
    /// the first answer without running it again; with a different request it is refused.
    /// Validate-only runs the change whole (every rule the database checks included) and rolls
    /// it back.
    pub async fn mutate<T, F>(&self, m: Mutation<'_>, change: F) -> Result<T>
    where
        T: prost::Message + Default,
        F: for<'t> FnOnce(&'t Transaction<'t>) -> BoxFuture<'t, Result<T>>,
    {
        let mut client = self.client_until(m.deadline).await?;
        let tx = client.transaction().await?;
        deadline::bound(&tx, m.deadline).await?;
        let guard = Idempotency::new(m.actor, m.method, m.request_id, m.validate_only);
        let mut fingerprint = Fingerprint::new(m.method);
        fingerprint.update(&m.request);
        let fingerprint = fingerprint.finish();
        if let Some(seen) = guard.claim(&tx).await? {
            let response = seen.replay(&fingerprint)?;
            return T::decode(response.as_slice()).map_err(|e| Error::Internal(e.to_string()));
        }
        let answer = change(&tx).await?;
        if m.validate_only {
            tx.rollback().await?;
            return Ok(answer);
        }
        guard
            .record(&tx, &fingerprint, &answer.encode_to_vec())
            .await?;
        tx.commit().await?;
        Ok(answer)
    }
}

/// What a request is recognised by on a retry (AIP-155): its RPC and its bytes, hashed as they
/// come, so a streamed request (an import's CSV) is fingerprinted like a unary one.
pub struct Fingerprint(Sha256);

impl Fingerprint {
    pub fn new(method: &str) -> Self {
        Self(
            Sha256::new()
                .chain_update(method.as_bytes())
                .chain_update([0]),
        )
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> Vec<u8> {
        self.0.finalize().to_vec()
    }
}

/// The request id of one mutation (AIP-155), guarded for the length of its transaction: every
/// mutation, unary or streamed, claims and records through this one type.
pub struct Idempotency<'a> {
    actor: &'a str,
    method: &'a str,
    request_id: &'a str,
    /// No request id, or validate-only (which records nothing): nothing to claim or record.
    keyed: bool,
}

/// A request id already answered: the fingerprint of its request and its answer.
pub struct Seen {
    fingerprint: Vec<u8>,
    response: Vec<u8>,
}

impl Seen {
    /// The first answer, if the retry carries the same request; a request id is never reused
    /// for another request.
    pub fn replay(self, fingerprint: &[u8]) -> Result<Vec<u8>> {
        if self.fingerprint == fingerprint {
            Ok(self.response)
        } else {
            Err(Error::RequestIdReused)
        }
    }
}

impl<'a> Idempotency<'a> {
    pub fn new(actor: &'a str, method: &'a str, request_id: &'a str, validate_only: bool) -> Self {
        Self {
            actor,
            method,
            request_id,
            keyed: !request_id.is_empty() && !validate_only,
        }
    }

    /// Takes the lock of the request id for the rest of the transaction (so two retries at once
    /// cannot both run), and answers what was recorded for it, if anything.
    pub async fn claim(&self, tx: &Transaction<'_>) -> Result<Option<Seen>> {
        if !self.keyed {
            return Ok(None);
        }
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))",
            &[&self.actor, &self.request_id],
        )
        .await?;
        Ok(tx
            .query_opt(
                "SELECT fingerprint, response FROM idempotency WHERE actor = $1 AND request_id = $2",
                &[&self.actor, &self.request_id],
            )
            .await?
            .map(|row| Seen {
                fingerprint: row.get(0),
                response: row.get(1),
            }))
    }

    /// Records the first answer, in the transaction of the change it answers.
    pub async fn record(
        &self,
        tx: &Transaction<'_>,
        fingerprint: &[u8],
        response: &[u8],
    ) -> Result<()> {
        if !self.keyed {
            return Ok(());
        }
        tx.execute(
            "INSERT INTO idempotency (actor, request_id, method, fingerprint, response)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &self.actor,
                &self.request_id,
                &self.method,
                &fingerprint,
                &response,
            ],
        )
        .await?;
        Ok(())
    }
}
