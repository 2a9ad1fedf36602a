//! PostgreSQL access: the connection pool, migrations, and the transaction every mutation runs
//! in, with request-id idempotency and validate-only handled once for all of them.

pub mod accounts;
pub mod allocation;
pub mod deadline;
pub mod errors;
pub mod events;
pub mod import;
pub mod inventory;
pub mod migrate;
pub mod numbers;
pub mod series;
pub mod tls;
pub mod together;
pub mod trunks;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Transaction};
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::principal::{Authority, Principal};
use crate::error::{Error, Result};

pub use deadline::Deadline;

pub use deadpool_postgres::GenericClient;

/// A typed parameter of [`Planned::query_planned`].
pub type TypedParam<'a> = (
    &'a (dyn tokio_postgres::types::ToSql + Sync),
    tokio_postgres::types::Type,
);

/// A client that runs a statement planned for its parameters' values: unnamed and typed, so
/// Parse, Bind and Execute go in one round trip and the database plans it for the values
/// every time, never with a cached generic plan. For the statements whose best plan depends on
/// the values (a page by prefix). Deadpool's `GenericClient` has no `query_typed`. A pooled
/// connection, outside any transaction: a subtree's page runs in a transaction of its own
/// (`numbers::list`), which would end a caller's.
pub trait Planned: GenericClient {
    fn query_planned<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [TypedParam<'a>],
    ) -> BoxFuture<'a, std::result::Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>>;
}

impl Planned for deadpool_postgres::Object {
    fn query_planned<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [TypedParam<'a>],
    ) -> BoxFuture<'a, std::result::Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>> {
        let client: &tokio_postgres::Client = self;
        Box::pin(client.query_typed(sql, params))
    }
}

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

/// The `application_name` of the service's connections when the database URL sets none.
pub const APPLICATION_NAME: &str = "numbering";

#[derive(Clone)]
pub struct Db {
    pool: Pool,
    /// For the one connection outside the pool: the watchers' LISTEN, encrypted as the pool's.
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// Started by the first watcher.
    wakeups: std::sync::Arc<std::sync::OnceLock<events::Wakeups>>,
}

/// What identifies one mutation for AIP-155 idempotency.
pub struct Mutation<'a> {
    /// The caller: request ids are per (account it acts for, subject), and a stored answer is
    /// replayed only to as much authority as the first caller had.
    pub principal: &'a Principal,
    /// The RPC: part of the key and of the fingerprint.
    pub method: &'static str,
    pub request_id: &'a str,
    /// The encoded request; a retry must send the same.
    pub request: Vec<u8>,
    /// Run the whole change, answer, then roll it back.
    pub validate_only: bool,
    /// The caller's deadline: the pool wait and every statement are bounded by it.
    pub deadline: Option<Deadline>,
}

/// Answers up to this size are kept whole for a retry. A larger answer made of numbers is kept
/// as their ids (16 bytes a number) and re-read on a replay.
pub const KEPT_WHOLE: usize = 64 * 1024;

/// What a mutation answers, and, when the answer is a list of numbers, their ids in its order:
/// what a large answer is kept as.
pub struct Answered<T> {
    pub answer: T,
    pub numbers: Option<Vec<Uuid>>,
}

impl<T> Answered<T> {
    /// An answer kept whole, whatever its size (one account, one number, a batch's results).
    pub fn whole(answer: T) -> Self {
        Self {
            answer,
            numbers: None,
        }
    }
}

/// How an answer is kept for its request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// The encoded answer.
    Whole(Vec<u8>),
    /// The numbers the answer carries, in its order.
    Numbers(Vec<Uuid>),
}

impl Db {
    pub fn new(config: tokio_postgres::Config, max_connections: usize) -> Result<Self> {
        Self::with_tls(config, &tls::PgTls::default(), max_connections)
    }

    /// A pool whose connections are encrypted as `tls` says (`sslmode`, the CA file).
    pub fn with_tls(
        mut config: tokio_postgres::Config,
        tls: &tls::PgTls,
        max_connections: usize,
    ) -> Result<Self> {
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        // The service's connections say who they are (pg_stat_activity, the statement log
        // the routing check reads), unless the database URL names them otherwise.
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION_NAME);
        }
        // No JIT compilation: it is for long analytic queries, and a statement whose plan the
        // planner costs above `jit_above_cost` (a wide subtree's page, read holder by holder,
        // is costed per account) spent 12 ms compiling to run in 15. Before the URL's own
        // options, which win.
        let options = match config.get_options() {
            Some(o) if !o.trim().is_empty() => format!("-c jit=off {o}"),
            _ => "-c jit=off".to_string(),
        };
        config.options(&options);
        // Over a Unix socket there is nothing to encrypt: libpq ignores sslmode there too.
        let local = config
            .get_hosts()
            .iter()
            .all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
        if local {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        // The watchers' LISTEN connection, outside the pool.
        let listen = config.clone();
        let connector = if local {
            None
        } else {
            Some(tls.connector().map_err(Error::Internal)?)
        };
        let manager = match connector.clone() {
            None => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
            Some(connector) => Manager::from_config(config, connector, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(max_connections)
            .queue_mode(deadpool_postgres::QueueMode::Lifo)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Self {
            pool,
            config: listen,
            tls: connector,
            wakeups: Default::default(),
        })
    }

    /// What a watcher waits on: it changes after every commit of events (and whenever the
    /// LISTEN connection had to be made again). The first call starts that connection.
    pub fn wakeups(&self) -> tokio::sync::watch::Receiver<u64> {
        self.wakeups
            .get_or_init(|| events::Wakeups::listen(self.config.clone(), self.tls.clone()))
            .subscribe()
    }

    pub async fn client(&self) -> Result<deadpool_postgres::Object> {
        let _wait = crate::metrics::PoolWait::start();
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

    /// Whether the database answers with the schema this build expects: not when it was
    /// dropped and recreated, or migrated by another version, under a running server.
    pub async fn schema_is_current(&self) -> Result<bool> {
        let client = self.client().await?;
        let version = match migrate::current_version(&client).await {
            Ok(v) => v,
            Err(Error::Unavailable(e)) => return Err(Error::Unavailable(e)),
            Err(e) => {
                tracing::warn!(error = %e, "no schema version");
                return Ok(false);
            }
        };
        if version != migrate::expected_version() {
            tracing::warn!(
                version,
                expected = migrate::expected_version(),
                "the schema is not the expected one"
            );
        }
        Ok(version == migrate::expected_version())
    }

    pub async fn migrate(&self) -> Result<usize> {
        let mut client = self.client().await?;
        migrate::migrate(&mut client).await
    }

    /// Runs `change` in one transaction. A request id seen before with the same request returns
    /// the first answer without running it again (re-read by `reread` when it was kept as
    /// numbers); with a different request it is refused. Validate-only runs the change whole
    /// (every rule the database checks included) and rolls it back.
    pub async fn mutate<T, F, R>(&self, m: Mutation<'_>, change: F, reread: R) -> Result<T>
    where
        T: prost::Message + Default,
        F: for<'t> FnOnce(&'t Transaction<'t>) -> BoxFuture<'t, Result<Answered<T>>>,
        R: for<'t> FnOnce(&'t Transaction<'t>, Vec<Uuid>) -> BoxFuture<'t, Result<T>>,
    {
        let mut client = self.client_until(m.deadline).await?;
        let mut timed = crate::metrics::Transaction::start(m.method);
        let tx = client.transaction().await?;
        deadline::bound(&tx, m.deadline).await?;
        let guard = Idempotency::new(m.principal, m.method, m.request_id, m.validate_only);
        let mut fingerprint = Fingerprint::new(m.method);
        fingerprint.update(&m.request);
        let fingerprint = fingerprint.finish();
        if let Some(seen) = guard.claim(&tx).await? {
            timed.end("replay");
            return match seen.replay(m.principal, &fingerprint)? {
                Kept::Whole(response) => {
                    T::decode(response.as_slice()).map_err(|e| Error::Internal(e.to_string()))
                }
                Kept::Numbers(ids) => reread(&tx, ids).await,
            };
        }
        let Answered { answer, numbers } = change(&tx).await?;
        if m.validate_only {
            tx.rollback().await?;
            timed.end("rollback");
            return Ok(answer);
        }
        let encoded = answer.encode_to_vec();
        let kept = match numbers {
            Some(ids) if encoded.len() > KEPT_WHOLE => Kept::Numbers(ids),
            _ => Kept::Whole(encoded),
        };
        guard.record(&tx, &fingerprint, &kept).await?;
        tx.commit().await?;
        timed.end("commit");
        Ok(answer)
    }

    /// Deletes up to `limit` stored answers older than `retention`, oldest first, skipping rows
    /// another replica's sweeper is deleting; answers how many it deleted.
    pub async fn prune_answers(&self, retention: Duration, limit: i64) -> Result<u64> {
        let client = self.client().await?;
        let older_than = std::time::SystemTime::now()
            .checked_sub(retention)
            .unwrap_or(std::time::UNIX_EPOCH);
        Ok(client
            .execute(
                "DELETE FROM idempotency WHERE ctid = ANY(ARRAY(
                     SELECT ctid FROM idempotency WHERE create_time < $1
                     ORDER BY create_time LIMIT $2 FOR UPDATE SKIP LOCKED))",
                &[&older_than, &limit],
            )
            .await?)
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
/// mutation, unary or streamed, claims and records through this one type. The key is (account
/// the caller acts for, subject, method, request id): another tenant's token with the same
/// subject, or another RPC, is another key, so a claim finds only the caller's own requests.
pub struct Idempotency<'a> {
    /// The nil UUID for the platform.
    account: Uuid,
    actor: &'a str,
    authority: Authority,
    method: &'a str,
    request_id: &'a str,
    /// No request id, or validate-only (which records nothing): nothing to claim or record.
    keyed: bool,
}

/// A request id already answered: who may see its answer, the fingerprint of its request, and
/// its answer.
pub struct Seen {
    authority: Authority,
    fingerprint: Vec<u8>,
    kept: Kept,
}

impl Seen {
    /// The first answer, if the caller may see it and the retry carries the same request; a
    /// request id is never reused for another request.
    ///
    /// Authority first: the key already pins the caller's account and subject, so its scope is
    /// the first caller's; what can differ is the role its token carries now. Replaying only to
    /// at least the first caller's authority (a viewer never gets an admin's answer) is the same
    /// authorisation the first call passed, without running the use case's checks against a
    /// world the first call changed. A lesser caller is refused as a first call of its own
    /// would be refused: PERMISSION_DENIED, learning nothing of the stored request.
    pub fn replay(self, p: &Principal, fingerprint: &[u8]) -> Result<Kept> {
        if p.authority() < self.authority {
            Err(Error::PermissionDenied)
        } else if self.fingerprint == fingerprint {
            Ok(self.kept)
        } else {
            Err(Error::RequestIdReused)
        }
    }
}

impl<'a> Idempotency<'a> {
    pub fn new(
        p: &'a Principal,
        method: &'a str,
        request_id: &'a str,
        validate_only: bool,
    ) -> Self {
        Self {
            account: p.acting_account().unwrap_or(Uuid::nil()),
            actor: &p.subject,
            authority: p.authority(),
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
        let account = self.account.to_string();
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(
                 $1 || '/' || $2 || '/' || $3 || '/' || $4, 0))",
            &[&account, &self.actor, &self.method, &self.request_id],
        )
        .await?;
        Ok(tx
            .query_opt(
                "SELECT authority, fingerprint, response, numbers FROM idempotency
                 WHERE account_id = $1 AND actor = $2 AND method = $3 AND request_id = $4",
                &[&self.account, &self.actor, &self.method, &self.request_id],
            )
            .await?
            .map(|row| Seen {
                authority: Authority::from_level(row.get(0)),
                fingerprint: row.get(1),
                kept: match row.get::<_, Option<Vec<u8>>>(2) {
                    Some(response) => Kept::Whole(response),
                    None => Kept::Numbers(row.get::<_, Option<Vec<Uuid>>>(3).unwrap_or_default()),
                },
            }))
    }

    /// Records the first answer, in the transaction of the change it answers.
    pub async fn record(
        &self,
        tx: &Transaction<'_>,
        fingerprint: &[u8],
        kept: &Kept,
    ) -> Result<()> {
        if !self.keyed {
            return Ok(());
        }
        let (response, numbers) = match kept {
            Kept::Whole(bytes) => (Some(bytes), None),
            Kept::Numbers(ids) => (None, Some(ids)),
        };
        tx.execute(
            "INSERT INTO idempotency (account_id, actor, method, request_id, authority,
                 fingerprint, response, numbers)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &self.account,
                &self.actor,
                &self.method,
                &self.request_id,
                &self.authority.level(),
                &fingerprint,
                &response,
                &numbers,
            ],
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::{Kept, Seen};
    use crate::domain::principal::{Authority, Principal, Role};
    use crate::error::Error;

    fn caller(role: Role) -> Principal {
        Principal {
            subject: "user-42".into(),
            account_id: Some(Uuid::new_v4()),
            role: Some(role),
            platform: false,
        }
    }

    fn seen_by(authority: Authority) -> Seen {
        Seen {
            authority,
            fingerprint: vec![1],
            kept: Kept::Whole(vec![2]),
        }
    }

    #[test]
    fn an_answer_is_replayed_only_to_as_much_authority_and_the_same_request() {
        let admins = || seen_by(Authority::Admin);
        assert_eq!(
            admins().replay(&caller(Role::Admin), &[1]),
            Ok(Kept::Whole(vec![2]))
        );
        assert_eq!(
            admins().replay(&caller(Role::Admin), &[9]),
            Err(Error::RequestIdReused)
        );
        // A lesser caller learns nothing, not even whether its request matches.
        for fingerprint in [[1], [9]] {
            assert_eq!(
                admins().replay(&caller(Role::Viewer), &fingerprint),
                Err(Error::PermissionDenied)
            );
        }
        assert!(
            seen_by(Authority::Operator)
                .replay(&caller(Role::Admin), &[1])
                .is_ok()
        );
    }
}
