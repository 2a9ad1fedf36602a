//! Per-account concurrency limits: how many streams (import, export) and how many expensive
//! calls one account may have running at once. A limit is a counting semaphore per account,
//! only ever tried (never waited on): a call over it is refused at once with RESOURCE_EXHAUSTED
//! and a RetryInfo, so one tenant's load queues at its own door, not in the shared pool.
//! An account's entry exists only while it has calls running: the map holds at most as many
//! entries as there are calls in flight. A limit may also cap the calls of all accounts
//! together (streams: their CSV work is CPU the other tenants' calls need), so that any number
//! of tenants streaming at once leave the machine's other cores to everyone else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::domain::principal::Principal;
use crate::error::{Error, Result};

/// How long a refused caller is told to wait before trying again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Whose share a call counts against: the account the caller acts for, or for a platform
/// caller without one, its subject.
pub fn share(p: &Principal) -> String {
    match p.account_id {
        Some(a) => a.to_string(),
        None => format!("subject:{}", p.subject),
    }
}

/// Calls running under one limit: per account, and in all.
#[derive(Default)]
struct Running {
    per_account: HashMap<String, usize>,
    total: usize,
}

/// One limit: at most `max` calls per account at once, and at most `total` of all accounts'.
#[derive(Clone)]
pub struct Limiter {
    /// The setting that sets it, named in the refusal.
    name: &'static str,
    what: &'static str,
    max: usize,
    /// The cap on all accounts together, and the setting that sets it.
    total: Option<(&'static str, usize)>,
    running: Arc<Mutex<Running>>,
}

/// A place taken under a limit, given back when dropped.
pub struct Permit {
    key: String,
    running: Arc<Mutex<Running>>,
}

impl Limiter {
    pub fn new(name: &'static str, what: &'static str, max: usize) -> Self {
        Self {
            name,
            what,
            max,
            total: None,
            running: Arc::default(),
        }
    }

    /// The same limit, with all accounts' calls together capped at `total` too.
    pub fn with_total(self, name: &'static str, total: usize) -> Self {
        Self {
            total: Some((name, total)),
            ..self
        }
    }

    /// A place for `p`'s account, or the refusal when all its places (or all places) are taken.
    pub fn try_acquire(&self, p: &Principal) -> Result<Permit> {
        let key = share(p);
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((name, total)) = self.total
            && running.total >= total
        {
            crate::metrics::record_limit_refusal(name);
            return Err(Error::LimitExceeded {
                limit: name,
                description: format!(
                    "the service already runs {total} {} at once, the most it allows ({name}); \
                     retry in a moment",
                    self.what
                ),
                retry_after: Some(RETRY_AFTER),
            });
        }
        let n = running.per_account.entry(key.clone()).or_insert(0);
        if *n >= self.max {
            if *n == 0 {
                running.per_account.remove(&key);
            }
            crate::metrics::record_limit_refusal(self.name);
            return Err(Error::LimitExceeded {
                limit: self.name,
                description: format!(
                    "this account already has {} {} running, the most allowed at once ({}); \
                     retry when one has finished",
                    self.max, self.what, self.name
                ),
                retry_after: Some(RETRY_AFTER),
            });
        }
        *n += 1;
        running.total += 1;
        Ok(Permit {
            key,
            running: self.running.clone(),
        })
    }

    /// Accounts with calls running under this limit.
    pub fn accounts(&self) -> usize {
        self.running
            .lock()
            .map(|r| r.per_account.len())
            .unwrap_or(0)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.total = running.total.saturating_sub(1);
        if let Some(n) = running.per_account.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                running.per_account.remove(&self.key);
            }
        }
    }
}

/// The limits every handler shares.
#[derive(Clone)]
pub struct Limits {
    /// ImportNumbers and ExportNumbers.
    pub streams: Limiter,
    /// SearchAvailableNumbers, ListNumbers past the default page, quantity moves, batches.
    pub expensive: Limiter,
    /// WatchNumberEvents: long-lived and mostly idle, so counted apart from the CPU-heavy
    /// streams (a watch never takes an import's or an export's place).
    pub watches: Limiter,
}

impl Limits {
    pub fn new(streams: usize, all_streams: usize, expensive: usize, watches: usize) -> Self {
        Self {
            streams: Limiter::new(
                "max-streams-per-account",
                "import or export streams",
                streams,
            )
            .with_total("max-streams", all_streams),
            expensive: Limiter::new(
                "max-expensive-calls-per-account",
                "expensive calls (searches, large lists, quantity moves, batches)",
                expensive,
            ),
            watches: Limiter::new(
                "max-watches-per-account",
                "WatchNumberEvents streams",
                watches,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn caller(account: Uuid) -> Principal {
        Principal {
            subject: "s".into(),
            account_id: Some(account),
            role: None,
            platform: false,
        }
    }

    #[test]
    fn an_account_past_its_limit_is_refused_while_another_is_not() {
        let limiter = Limiter::new("max-test", "tests", 2);
        let (a, b) = (caller(Uuid::new_v4()), caller(Uuid::new_v4()));
        let _one = limiter.try_acquire(&a).unwrap();
        let two = limiter.try_acquire(&a).unwrap();
        let refused = limiter.try_acquire(&a).err().unwrap();
        assert!(matches!(
            refused,
            Error::LimitExceeded {
                limit: "max-test",
                retry_after: Some(_),
                ..
            }
        ));
        assert!(limiter.try_acquire(&b).is_ok());
        drop(two);
        assert!(limiter.try_acquire(&a).is_ok());
    }

    #[test]
    fn all_accounts_together_stop_at_the_total() {
        let limiter = Limiter::new("max-test", "tests", 2).with_total("max-all", 3);
        let (a, b, c) = (
            caller(Uuid::new_v4()),
            caller(Uuid::new_v4()),
            caller(Uuid::new_v4()),
        );
        let _a = (
            limiter.try_acquire(&a).unwrap(),
            limiter.try_acquire(&a).unwrap(),
        );
        let b1 = limiter.try_acquire(&b).unwrap();
        let refused = limiter.try_acquire(&c).err().unwrap();
        assert!(matches!(
            refused,
            Error::LimitExceeded {
                limit: "max-all",
                retry_after: Some(_),
                ..
            }
        ));
        drop(b1);
        assert!(limiter.try_acquire(&c).is_ok());
    }

    #[test]
    fn an_account_with_nothing_running_leaves_no_entry() {
        let limiter = Limiter::new("max-test", "tests", 1);
        let permits: Vec<_> = (0..100)
            .map(|_| limiter.try_acquire(&caller(Uuid::new_v4())).unwrap())
            .collect();
        assert_eq!(limiter.accounts(), 100);
        drop(permits);
        assert_eq!(limiter.accounts(), 0);
    }
}
