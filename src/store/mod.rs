//! PostgreSQL access: the connection pool, migrations, and the transaction every mutation runs
//! in, with request-id idempotency and validate-only handled once for all of them.

pub mod accounts;
pub mod allocation;
pub mod errors;
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
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let keyed = !m.request_id.is_empty() && !m.validate_only;
        let fingerprint = Sha256::new()
            .chain_update(m.method.as_bytes())
            .chain_update([0])
            .chain_update(&m.request)
            .finalize()
            .to_vec();
        if keyed
            && let Some((seen, response)) = idempotency_claim(&tx, m.actor, m.request_id).await?
        {
            if seen != fingerprint {
                return Err(Error::RequestIdReused);
            }
            return T::decode(response.as_slice()).map_err(|e| Error::Internal(e.to_string()));
        }
        let answer = change(&tx).await?;
        if m.validate_only {
            tx.rollback().await?;
            return Ok(answer);
        }
        if keyed {
            idempotency_record(
                &tx,
                m.actor,
                m.request_id,
                m.method,
                &fingerprint,
                &answer.encode_to_vec(),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(answer)
    }
}

/// Takes the lock of one request id for the rest of the transaction (so two retries at once
/// cannot both run), and answers the fingerprint and response recorded for it, if any.
pub async fn idempotency_claim(
    tx: &Transaction<'_>,
    actor: &str,
    request_id: &str,
) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))",
        &[&actor, &request_id],
    )
    .await?;
    Ok(tx
        .query_opt(
            "SELECT fingerprint, response FROM idempotency WHERE actor = $1 AND request_id = $2",
            &[&actor, &request_id],
        )
        .await?
        .map(|row| (row.get(0), row.get(1))))
}

/// Records the first answer to a request id, in the transaction of the change it answers.
pub async fn idempotency_record(
    tx: &Transaction<'_>,
    actor: &str,
    request_id: &str,
    method: &str,
    fingerprint: &[u8],
    response: &[u8],
) -> Result<()> {
    tx.execute(
        "INSERT INTO idempotency (actor, request_id, method, fingerprint, response)
         VALUES ($1, $2, $3, $4, $5)",
        &[&actor, &request_id, &method, &fingerprint, &response],
    )
    .await?;
    Ok(())
}
