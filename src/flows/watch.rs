//! WatchNumberEvents' use case: the events of a subtree, page by page, from a cursor.
//!
//! The guarantee: every event that commits is delivered once, and a watch resumed from any
//! cursor it sent misses none and repeats none, whatever order concurrent transactions commit
//! in (a transaction that took a lower sequence may commit after one that took a higher one).
//! The cursor is a pair of database snapshots ([`Cursor`]): a batch is every event whose
//! transaction became visible between them, sent in sequence order. Events of one number
//! (or account) come in the order their changes committed: a later change to a row waited for
//! the earlier one's commit, so it is in a later batch, or in the same one with a higher
//! sequence.
//!
//! A page is read on a pooled connection that goes back to the pool before anything is sent:
//! a watcher waiting on a slow network holds no connection.

use uuid::Uuid;

use super::{in_scope, require_live_caller, scoped_account};
use crate::domain::command::Key;
use crate::domain::event::{Cursor, Event, WatchEvents};
use crate::domain::principal::{Principal, Reach, Role};
use crate::error::Result;
use crate::store::events::{self, WatchQuery};
use crate::store::{Db, GenericClient, Lock};

/// The most events one read takes.
pub const PAGE: i64 = 256;

/// One watch: who watches, what, and how far it has read.
pub struct Watch {
    db: Db,
    principal: Principal,
    query: WatchQuery,
    cursor: Cursor,
}

impl Watch {
    /// A watch of an account the caller may see (viewer), starting where the command says.
    pub async fn start(db: Db, p: &Principal, c: WatchEvents) -> Result<Self> {
        let client = db.client().await?;
        require_live_caller(&client, p).await?;
        let root = scoped_account(
            &client,
            p,
            c.account_id,
            Role::Viewer,
            Reach::OwnOrBelow,
            Lock::No,
        )
        .await?;
        let now = events::snapshot(&client).await?;
        drop(client);
        let f = c.filter;
        let numbers = f.numbers.as_deref();
        let query = WatchQuery {
            provider_id: root.provider_id,
            path: root.path,
            number_operations: f.number_operations,
            account_operations: f.account_operations,
            number_ids: numbers.map(|keys| keys.iter().filter_map(Key::id).collect()),
            e164s: numbers.map(|keys| {
                let e164s = keys.iter().filter_map(Key::e164);
                e164s.map(|e| e.as_str().to_string()).collect()
            }),
            accounts: f.accounts,
        };
        Ok(Self {
            db,
            principal: p.clone(),
            query,
            cursor: c.start.cursor(now),
        })
    }

    /// Where the watch stands: what a heartbeat carries.
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    /// The next events, each with the cursor that resumes after it, as the caller may see
    /// them; empty when nothing new has committed. When the current batch is over, the next
    /// one starts at a new snapshot (and the cursor moves on even if nothing is in it).
    pub async fn next_page(&mut self) -> Result<Vec<(Event, Cursor)>> {
        let client = self.db.client().await?;
        let mut page = events::page(&client, &self.query, &self.cursor, PAGE).await?;
        if page.is_empty() {
            let now = events::snapshot(&client).await?;
            if now == self.cursor.upto {
                return Ok(Vec::new());
            }
            self.cursor = self.cursor.next(now);
            page = events::page(&client, &self.query, &self.cursor, PAGE).await?;
        }
        let page = visible(&client, &self.principal, page).await?;
        drop(client);
        Ok(page
            .into_iter()
            .map(|e| {
                self.cursor = self.cursor.after(e.seq());
                (e, self.cursor.clone())
            })
            .collect())
    }
}

/// The events as the caller may see them: no account outside its scope named (the sibling a
/// number went to shows as an empty holder, with its status only).
async fn visible(db: &impl GenericClient, p: &Principal, events: Vec<Event>) -> Result<Vec<Event>> {
    let named: Vec<Uuid> = events
        .iter()
        .flat_map(|e| match e {
            Event::Number(n) => n.accounts_named(),
            Event::Account(a) => a.actor_account_id.into_iter().collect(),
        })
        .collect();
    let in_scope = in_scope(db, p, named).await?;
    Ok(events
        .into_iter()
        .map(|e| match e {
            Event::Number(n) => Event::Number(n.redacted(&in_scope)),
            Event::Account(a) => Event::Account(a.redacted(&in_scope)),
        })
        .collect())
}
