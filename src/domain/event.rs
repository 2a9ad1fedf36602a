//! The change feed's vocabulary: account events, the events a watch carries, where a watch
//! stands in the event log (its cursor) and what it selects.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use super::account::Account;
use super::command::Key;
use super::number::{NumberEvent, Operation};
use crate::error::{Error, Result};

/// What an event did to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountOperation {
    Create,
    /// An update that left the quota as it was.
    Update,
    /// An update that changed `max_numbers`, whatever else it changed with it.
    ChangeQuota,
    Suspend,
    Resume,
    Delete,
    /// Closed for good (no number left in its subtree).
    Close,
}

impl AccountOperation {
    pub const ALL: &'static [AccountOperation] = &[
        Self::Create,
        Self::Update,
        Self::ChangeQuota,
        Self::Suspend,
        Self::Resume,
        Self::Delete,
        Self::Close,
    ];

    /// The word stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::ChangeQuota => "change_quota",
            Self::Suspend => "suspend",
            Self::Resume => "resume",
            Self::Delete => "delete",
            Self::Close => "close",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|op| op.as_str() == s)
    }
}

/// One change of an account, recorded in the transaction of the change.
#[derive(Debug, Clone)]
pub struct AccountEvent {
    pub seq: i64,
    pub account_id: Uuid,
    /// The account's materialised path: who may see the event.
    pub path: String,
    pub time: SystemTime,
    pub actor: String,
    pub actor_account_id: Option<Uuid>,
    pub request_id: String,
    pub operation: Option<AccountOperation>,
    /// None for a creation.
    pub before: Option<Account>,
    /// None for a deletion.
    pub after: Option<Account>,
}

impl AccountEvent {
    /// The event as a reader sees it whose scope covers only the accounts `in_scope` accepts:
    /// the actor's account is left out when it is outside (a parent that suspended the account).
    pub fn redacted(self, in_scope: impl Fn(Uuid) -> bool) -> Self {
        Self {
            actor_account_id: self.actor_account_id.filter(|id| in_scope(*id)),
            ..self
        }
    }
}

/// An event of the log: a number's or an account's.
#[derive(Debug, Clone)]
pub enum Event {
    Number(NumberEvent),
    Account(AccountEvent),
}

impl Event {
    /// Its position in the log (one sequence for both kinds).
    pub fn seq(&self) -> i64 {
        match self {
            Event::Number(e) => e.seq,
            Event::Account(e) => e.seq,
        }
    }
}

/// A database snapshot as PostgreSQL writes a `pg_snapshot`: `xmin:xmax:xip,xip,...`. A
/// transaction is visible in it when its id is below `xmin`, or below `xmax` and not in `xip`
/// (those still ran when it was taken).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub xmin: u64,
    pub xmax: u64,
    pub xip: Vec<u64>,
}

/// Most transactions in progress a snapshot of a cursor may name.
const MAX_IN_PROGRESS: usize = 4096;

impl Snapshot {
    /// A snapshot as PostgreSQL writes it; `None` when it is not one.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split(':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let xip = match parts.next()? {
            "" => Vec::new(),
            list => list
                .split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<Vec<u64>>>()?,
        };
        let ordered = xip.windows(2).all(|w| w[0] < w[1]);
        let inside = xip.iter().all(|x| (xmin..xmax).contains(x));
        (parts.next().is_none()
            && xmin <= xmax
            && ordered
            && inside
            && xip.len() <= MAX_IN_PROGRESS)
            .then_some(Self { xmin, xmax, xip })
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.xmin, self.xmax)?;
        for (i, x) in self.xip.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{x}")?;
        }
        Ok(())
    }
}

/// Where a watch stands in the log. The events are read in batches: a batch is every event
/// whose transaction is visible in the snapshot `upto` and was not in `base` (every event
/// visible in `upto` when there is no base), taken in sequence order; `after_seq` is the last
/// one of the batch already sent, `since` the time a watch started from (first batch only).
///
/// Why snapshots and not a sequence: a transaction may take sequence 10, another 11 and commit
/// first. A reader that saw 11 and remembered "after 11" would never see 10. Visibility in a
/// snapshot only grows, so a transaction that was not visible in `base` and is in `upto`
/// committed in between: each event is in exactly one batch whatever order transactions
/// commit in. And a change to a number (or account) that commits after another one to it
/// took its row lock after that one committed, so it is in the same batch with a higher
/// sequence, or in a later batch: the order of one number's events is the commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub base: Option<Snapshot>,
    pub upto: Snapshot,
    pub after_seq: i64,
    pub since: Option<SystemTime>,
}

/// Longest cursor a caller may send back.
pub const MAX_CURSOR_BYTES: usize = 64 * 1024;

impl Cursor {
    /// The next batch: everything visible in `now` that was not in this one's `upto`.
    pub fn next(&self, now: Snapshot) -> Self {
        Self {
            base: Some(self.upto.clone()),
            upto: now,
            after_seq: 0,
            since: None,
        }
    }

    /// The same batch after the event at `seq` was sent.
    pub fn after(&self, seq: i64) -> Self {
        Self {
            after_seq: seq,
            ..self.clone()
        }
    }

    /// The opaque text a caller resumes with.
    pub fn encode(&self) -> String {
        let base = self.base.as_ref().map(ToString::to_string);
        let since = self
            .since
            .map(|t| match t.duration_since(UNIX_EPOCH) {
                Ok(d) => i128::try_from(d.as_micros()).unwrap_or(i128::MAX),
                Err(e) => -i128::try_from(e.duration().as_micros()).unwrap_or(i128::MAX),
            })
            .map(|m| m.to_string());
        let text = format!(
            "1;{};{};{};{}",
            base.unwrap_or_default(),
            self.upto,
            self.after_seq,
            since.unwrap_or_default()
        );
        URL_SAFE_NO_PAD.encode(text)
    }

    /// A cursor [`Self::encode`] made; `field` names it in the error.
    pub fn decode(field: &str, text: &str) -> Result<Self> {
        let bad = || Error::invalid(field, "not a cursor this service sent");
        if text.len() > MAX_CURSOR_BYTES {
            return Err(bad());
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let parts: Vec<&str> = text.split(';').collect();
        let ["1", base, upto, after, since] = parts.as_slice() else {
            return Err(bad());
        };
        let base = match *base {
            "" => None,
            b => Some(Snapshot::parse(b).ok_or_else(bad)?),
        };
        let since = match *since {
            "" => None,
            s => {
                let micros: i64 = s.parse().map_err(|_| bad())?;
                let offset = Duration::from_micros(micros.unsigned_abs());
                let t = if micros >= 0 {
                    UNIX_EPOCH.checked_add(offset)
                } else {
                    UNIX_EPOCH.checked_sub(offset)
                };
                Some(t.ok_or_else(bad)?)
            }
        };
        Ok(Self {
            base,
            upto: Snapshot::parse(upto).ok_or_else(bad)?,
            after_seq: after.parse().map_err(|_| bad())?,
            since,
        })
    }
}

/// Where a watch starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// With what commits from now on.
    Now,
    /// With the events after this sequence (and whatever commits from now on).
    AfterSequence(i64),
    /// With the events recorded at or after this time (and whatever commits from now on).
    Since(SystemTime),
    /// Where an earlier watch stopped.
    Resume(Cursor),
}

impl Start {
    /// The cursor of the first batch, given the snapshot taken as the watch starts.
    pub fn cursor(self, now: Snapshot) -> Cursor {
        let from = |after_seq, since| Cursor {
            base: None,
            upto: now.clone(),
            after_seq,
            since,
        };
        match self {
            Start::Now => Cursor {
                base: Some(now.clone()),
                upto: now.clone(),
                after_seq: 0,
                since: None,
            },
            Start::AfterSequence(seq) => from(seq, None),
            Start::Since(t) => from(0, Some(t)),
            Start::Resume(c) => c,
        }
    }
}

/// Which events a watch selects inside its account's subtree. `None` selects every one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// The operations of the number events selected.
    pub number_operations: Option<Vec<Operation>>,
    /// The operations of the account events selected.
    pub account_operations: Option<Vec<AccountOperation>>,
    /// Only these numbers' events (and no account events).
    pub numbers: Option<Vec<Key>>,
    /// Only the events about these accounts.
    pub accounts: Option<Vec<Uuid>>,
}

/// WatchNumberEvents: whose subtree, from where, which events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvents {
    pub account_id: Uuid,
    pub start: Start,
    pub filter: EventFilter,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(s: &str) -> Snapshot {
        Snapshot::parse(s).unwrap()
    }

    #[test]
    fn a_snapshot_reads_as_postgresql_writes_it() {
        assert_eq!(snapshot("10:20:12,15").xip, vec![12, 15]);
        assert_eq!(snapshot("10:20:12,15").to_string(), "10:20:12,15");
        assert_eq!(snapshot("7:7:").to_string(), "7:7:");
        for bad in ["", "1:2", "2:1:", "1:5:7", "1:5:3,2", "a:b:", "1:5::"] {
            assert!(Snapshot::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_cursor_comes_back_as_it_was_sent() {
        let c = Cursor {
            base: Some(snapshot("10:20:12,15")),
            upto: snapshot("11:30:15"),
            after_seq: 42,
            since: Some(UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456)),
        };
        assert_eq!(Cursor::decode("cursor", &c.encode()), Ok(c));
        let first = Start::AfterSequence(5).cursor(snapshot("3:9:4"));
        assert_eq!(Cursor::decode("cursor", &first.encode()), Ok(first));
        assert!(Cursor::decode("cursor", "not-a-cursor").is_err());
        assert!(Cursor::decode("cursor", &URL_SAFE_NO_PAD.encode("1;;x;0;")).is_err());
    }

    #[test]
    fn the_next_batch_starts_where_the_last_one_ended() {
        let c = Start::Since(UNIX_EPOCH).cursor(snapshot("3:9:4"));
        let next = c.after(17).next(snapshot("5:12:"));
        assert_eq!(next.base, Some(snapshot("3:9:4")));
        assert_eq!(next.after_seq, 0);
        assert_eq!(next.since, None);
    }
}
