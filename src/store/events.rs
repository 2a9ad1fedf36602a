//! The event log beyond one number's history: account events, the watch's batches (events
//! between two database snapshots, see [`Cursor`]), and the LISTEN connection that wakes
//! watchers when a transaction that wrote events commits.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::{AsyncMessage, NoTls, Row};
use uuid::Uuid;

use super::GenericClient;
use super::allocation::event_from_row;
use crate::domain::account::Account;
use crate::domain::event::{AccountEvent, AccountOperation, Cursor, Event, Snapshot};
use crate::domain::number::{Actor, Operation};
use crate::error::{Error, Result};

/// The channel the events tables' triggers notify on commit (migration 0005).
const CHANNEL: &str = "numbering_events";

/// Records a change of an account in the caller's transaction. `before` is absent for a
/// creation, `after` for a deletion.
pub async fn record_account(
    db: &impl GenericClient,
    op: AccountOperation,
    before: Option<&Account>,
    after: Option<&Account>,
    actor: &Actor,
) -> Result<()> {
    let Some(account) = after.or(before) else {
        return Err(Error::Internal("an account event about no account".into()));
    };
    db.execute(
        &db.prepare_cached(
            "INSERT INTO account_events (provider_id, account_id, path, actor, actor_account_id,
                 request_id, operation, before, after)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await?,
        &[
            &account.provider_id,
            &account.id,
            &account.path,
            &actor.subject,
            &actor.account_id,
            &actor.request_id,
            &op.as_str(),
            &before.map(Json),
            &after.map(Json),
        ],
    )
    .await?;
    Ok(())
}

const ACCOUNT_EVENT_COLUMNS: &str =
    "seq, account_id, path, time, actor, actor_account_id, request_id, operation, before, after";

fn account_event_from_row(r: &Row) -> AccountEvent {
    // Written by this service only; an unreadable account shows as absent, not as an error.
    let account = |column: &str| {
        r.get::<_, Option<serde_json::Value>>(column)
            .and_then(|v| serde_json::from_value(v).ok())
    };
    AccountEvent {
        seq: r.get("seq"),
        account_id: r.get("account_id"),
        path: r.get("path"),
        time: r.get("time"),
        actor: r.get("actor"),
        actor_account_id: r.get("actor_account_id"),
        request_id: r.get("request_id"),
        operation: AccountOperation::parse(r.get("operation")),
        before: account("before"),
        after: account("after"),
    }
}

/// A page of the events of account `root` (of its whole subtree when `recursive`, deleted
/// accounts included) after sequence `after_seq`, oldest first.
pub async fn account_events(
    db: &impl GenericClient,
    root: &Account,
    recursive: bool,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<AccountEvent>> {
    let sql = format!(
        "SELECT {ACCOUNT_EVENT_COLUMNS} FROM account_events
         WHERE provider_id = $1
           AND CASE WHEN $2 THEN path LIKE $3 ELSE account_id = $4 END
           AND seq > $5
         ORDER BY seq LIMIT $6"
    );
    let prefix = format!("{}%", root.path);
    Ok(db
        .query(
            &sql,
            &[
                &root.provider_id,
                &recursive,
                &prefix,
                &root.id,
                &after_seq,
                &limit,
            ],
        )
        .await?
        .iter()
        .map(account_event_from_row)
        .collect())
}

/// The database's snapshot now: which transactions have committed.
pub async fn snapshot(db: &impl GenericClient) -> Result<Snapshot> {
    let text: String = db
        .query_one("SELECT pg_current_snapshot()::text", &[])
        .await?
        .get(0);
    Snapshot::parse(&text).ok_or_else(|| Error::Internal(format!("unreadable snapshot {text}")))
}

/// What a watch reads: the events of one subtree, narrowed by a filter. A `Some` list
/// selects only what it names (an empty one, nothing).
#[derive(Debug, Clone)]
pub struct WatchQuery {
    pub provider_id: Uuid,
    /// The materialised path of the watched account.
    pub path: String,
    pub number_operations: Option<Vec<Operation>>,
    pub account_operations: Option<Vec<AccountOperation>>,
    pub number_ids: Option<Vec<Uuid>>,
    pub e164s: Option<Vec<String>>,
    /// Only events about these accounts.
    pub accounts: Option<Vec<Uuid>>,
}

type Param = Box<dyn ToSql + Sync + Send>;

/// Parameters and the placeholders that bind them.
struct Params(Vec<Param>);

impl Params {
    fn bind(&mut self, p: Param) -> String {
        self.0.push(p);
        format!("${}", self.0.len())
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// The clause of a table's events (alias `e`) in the batch `c` after `c.after_seq`: visible
/// in `upto` and not in `base`. The bounds on `xid` are what the visibility implies, spelled
/// out so the index on `xid` serves them.
fn batch_clause(p: &mut Params, c: &Cursor) -> String {
    let upto = p.bind(Box::new(c.upto.to_string()));
    let xmax = p.bind(Box::new(c.upto.xmax.to_string()));
    let after = p.bind(Box::new(c.after_seq));
    let mut sql = format!(
        "e.seq > {after} AND e.xid < {xmax}::text::xid8
         AND pg_visible_in_snapshot(e.xid, {upto}::text::pg_snapshot)"
    );
    if let Some(base) = &c.base {
        let xmin = p.bind(Box::new(base.xmin.to_string()));
        let base = p.bind(Box::new(base.to_string()));
        sql.push_str(&format!(
            " AND e.xid >= {xmin}::text::xid8
              AND NOT pg_visible_in_snapshot(e.xid, {base}::text::pg_snapshot)"
        ));
    }
    if let Some(since) = c.since {
        let since = p.bind(Box::new(since));
        sql.push_str(&format!(" AND e.time >= {since}"));
    }
    sql
}

fn words<T: Copy>(list: &[T], word: fn(T) -> &'static str) -> Vec<String> {
    list.iter().map(|x| word(*x).to_string()).collect()
}

/// The number events of the page: those that leave a number in the subtree, or take one out
/// of it (the holder before the change in the subtree). A RETURNED number is seen from the
/// owner's side only, as in its history.
async fn number_page(
    db: &impl GenericClient,
    q: &WatchQuery,
    c: &Cursor,
    limit: i64,
) -> Result<Vec<Event>> {
    if q.number_operations.as_ref().is_some_and(Vec::is_empty) {
        return Ok(Vec::new());
    }
    let mut p = Params(Vec::new());
    let mut sql = batch_clause(&mut p, c);
    let provider = p.bind(Box::new(q.provider_id));
    let like = p.bind(Box::new(format!("{}%", q.path)));
    sql.push_str(&format!(
        " AND e.provider_id = {provider}
          AND ((CASE WHEN e.after->>'status' = 'returned'
                     THEN '/' || replace(e.provider_id::text, '-', '') || '/'
                     ELSE e.holder_path END) LIKE {like}
               OR (e.before->>'status' <> 'returned' AND EXISTS (
                   SELECT 1 FROM accounts b
                   WHERE b.id = (e.before->>'holder_id')::uuid AND b.path LIKE {like})))"
    ));
    if let Some(ops) = &q.number_operations {
        let ops = p.bind(Box::new(words(ops, Operation::as_str)));
        sql.push_str(&format!(" AND e.operation = ANY({ops})"));
    }
    if q.number_ids.is_some() || q.e164s.is_some() {
        let ids = p.bind(Box::new(q.number_ids.clone().unwrap_or_default()));
        let e164s = p.bind(Box::new(q.e164s.clone().unwrap_or_default()));
        sql.push_str(&format!(
            " AND (e.number_id = ANY({ids}) OR e.e164 = ANY({e164s}))"
        ));
    }
    if let Some(accounts) = &q.accounts {
        let accounts = p.bind(Box::new(accounts.clone()));
        sql.push_str(&format!(
            " AND ((e.after->>'holder_id')::uuid = ANY({accounts})
                   OR (e.before->>'holder_id')::uuid = ANY({accounts}))"
        ));
    }
    let limit = p.bind(Box::new(limit));
    let sql = format!(
        "SELECT e.seq, e.number_id, e.e164, e.time, e.actor, e.actor_account_id, e.request_id,
                e.operation, e.holder_path, e.before, e.after
         FROM number_events e WHERE {sql} ORDER BY e.seq LIMIT {limit}"
    );
    Ok(db
        .query(&sql, &p.refs())
        .await?
        .iter()
        .map(|r| Event::Number(event_from_row(r)))
        .collect())
}

/// The account events of the page: those of the watched account and its descendants.
async fn account_page(
    db: &impl GenericClient,
    q: &WatchQuery,
    c: &Cursor,
    limit: i64,
) -> Result<Vec<Event>> {
    let none = q.account_operations.as_ref().is_some_and(Vec::is_empty);
    if none || q.number_ids.is_some() || q.e164s.is_some() {
        return Ok(Vec::new());
    }
    let mut p = Params(Vec::new());
    let mut sql = batch_clause(&mut p, c);
    let provider = p.bind(Box::new(q.provider_id));
    let like = p.bind(Box::new(format!("{}%", q.path)));
    sql.push_str(&format!(
        " AND e.provider_id = {provider} AND e.path LIKE {like}"
    ));
    if let Some(ops) = &q.account_operations {
        let ops = p.bind(Box::new(words(ops, AccountOperation::as_str)));
        sql.push_str(&format!(" AND e.operation = ANY({ops})"));
    }
    if let Some(accounts) = &q.accounts {
        let accounts = p.bind(Box::new(accounts.clone()));
        sql.push_str(&format!(" AND e.account_id = ANY({accounts})"));
    }
    let limit = p.bind(Box::new(limit));
    let sql = format!(
        "SELECT {ACCOUNT_EVENT_COLUMNS} FROM account_events e
         WHERE {sql} ORDER BY e.seq LIMIT {limit}"
    );
    Ok(db
        .query(&sql, &p.refs())
        .await?
        .iter()
        .map(|r| Event::Account(account_event_from_row(r)))
        .collect())
}

/// Up to `limit` events of the cursor's batch after its `after_seq`, in sequence order: both
/// tables read in one round trip and merged.
pub async fn page(
    db: &impl GenericClient,
    q: &WatchQuery,
    c: &Cursor,
    limit: i64,
) -> Result<Vec<Event>> {
    let (numbers, accounts) =
        futures::try_join!(number_page(db, q, c, limit), account_page(db, q, c, limit))?;
    let mut all: Vec<Event> = numbers.into_iter().chain(accounts).collect();
    all.sort_by_key(Event::seq);
    all.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(all)
}

/// Wakes the watchers of this process when a transaction that wrote events commits: one
/// dedicated connection (never a pooled one) LISTENs for the whole process, and bumps a
/// counter every watcher waits on. A notification carries nothing: watchers read the tables.
/// When the connection is lost it is made again, and the watchers are woken in case they
/// missed something meanwhile.
#[derive(Clone)]
pub struct Wakeups(watch::Receiver<u64>);

/// How long a lost LISTEN connection waits before it is made again.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);

impl Wakeups {
    /// Starts listening, on a task of its own, for as long as the runtime runs.
    pub fn listen(
        config: tokio_postgres::Config,
        tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    ) -> Self {
        let (wake, woken) = watch::channel(0u64);
        tokio::spawn(async move {
            loop {
                let listened = match tls.clone() {
                    None => listen_once(&config, NoTls, &wake).await,
                    Some(tls) => listen_once(&config, tls, &wake).await,
                };
                if let Err(e) = listened {
                    tracing::warn!(error = %e, "the LISTEN connection for watchers was lost");
                }
                wake.send_modify(|n| *n = n.wrapping_add(1));
                tokio::time::sleep(RELISTEN_DELAY).await;
            }
        });
        Self(woken)
    }

    /// What one watcher waits on: `changed()` resolves after a commit of events.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.clone()
    }
}

/// LISTENs until the connection ends, bumping `wake` at every notification (and once the
/// LISTEN is in place).
async fn listen_once<T>(
    config: &tokio_postgres::Config,
    tls: T,
    wake: &watch::Sender<u64>,
) -> Result<()>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Unpin,
{
    let bump = || wake.send_modify(|n| *n = n.wrapping_add(1));
    let (client, mut connection) = config
        .connect(tls)
        .await
        .map_err(|e| Error::Unavailable(format!("connect for LISTEN: {e}")))?;
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    let listen = format!("LISTEN {CHANNEL}");
    let listening = client.batch_execute(&listen);
    tokio::pin!(listening);
    let mut listened = false;
    loop {
        tokio::select! {
            done = &mut listening, if !listened => {
                done?;
                listened = true;
                bump();
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(_))) => bump(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
        }
    }
}
