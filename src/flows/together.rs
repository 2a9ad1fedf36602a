//! Allocations run together: the quantity allocations that arrive while others are in the
//! database share one transaction (one commit, one fsync), with set-based statements: one read
//! of the accounts they name, one pick per pool, one save of every number moved with each
//! call's own event. Each call is judged as it would be alone, in the order the calls came:
//! one call's refusal is that call's answer and leaves the others untouched.
//!
//! A call the group cannot judge exactly as [`super::allocation::allocate`] would (one whose
//! numbers enter an account with a quota, or one the pool came up short for, whose answer
//! depends on what the calls before it left) is sent back to run alone, after the group, where
//! the solo path gives the exact answer.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::{Caller, unseen};
use crate::domain::account::{Account, path_ids};
use crate::domain::command::{MoveNumbers, Selection};
use crate::domain::lifecycle::{self, Move, Target};
use crate::domain::number::{Actor, Number, Operation};
use crate::domain::principal::{Reach, Role};
use crate::error::{Error, Result};
use crate::store::allocation::{self as store, Pool, Saved};
use crate::store::{Tx, accounts};

pub use crate::store::together::Outcome;

/// Whether a call may join a group: a quantity allocation binding no attributes, small enough
/// that its answer is kept whole. Anything else runs alone.
pub fn joins(c: &MoveNumbers) -> bool {
    matches!(c.selection, Selection::Quantity { count, .. } if (1..=GROUP_QUANTITY).contains(&count))
        && c.attributes.is_none()
}

/// The largest quantity a grouped call may ask for.
pub const GROUP_QUANTITY: i64 = 100;

/// One call, judged up to the pick: its accounts, and what it asks of which pool.
struct Admitted<'a> {
    from: &'a Account,
    to: &'a Account,
    count: i64,
    pool: PoolKey,
}

/// A pool a group picks from: (holder, series, prefix).
type PoolKey = (Uuid, Option<Uuid>, Option<String>);

/// Allocates for every call of a group in the transaction `tx`; answers, in the calls' order,
/// the numbers each moved, its refusal, or that it must run alone. An error is the database's,
/// and the whole group's.
pub async fn allocate_together(
    tx: &Tx<'_>,
    calls: &[(&Caller, &MoveNumbers)],
) -> Result<Vec<Outcome<Vec<Number>>>> {
    let mut named: Vec<Uuid> = calls.iter().flat_map(|(_, c)| [c.from, c.to]).collect();
    named.sort_unstable();
    named.dedup();
    let mut targets: Vec<Uuid> = calls.iter().map(|(_, c)| c.to).collect();
    targets.sort_unstable();
    targets.dedup();
    let ((), found) = futures::try_join!(
        store::keep_cached_plans(tx),
        accounts::with_paths(tx, &named, &targets),
    )?;
    let by_id: HashMap<Uuid, Account> = found.into_iter().map(|a| (a.id, a)).collect();

    let mut outcomes: Vec<Outcome<Vec<Number>>> = Vec::with_capacity(calls.len());
    let mut admitted: Vec<(usize, Admitted)> = Vec::new();
    for (i, (caller, c)) in calls.iter().enumerate() {
        match admit(caller, c, &by_id) {
            Ok(Some(a)) => {
                admitted.push((i, a));
                outcomes.push(Outcome::Alone);
            }
            Ok(None) => outcomes.push(Outcome::Alone),
            Err(e) => outcomes.push(Outcome::Refused(e)),
        }
    }

    // A series must be the provider's: one check per series named.
    let mut series: BTreeMap<(Uuid, Uuid), bool> = BTreeMap::new();
    for (_, a) in &admitted {
        if let Some(s) = a.pool.1 {
            series.insert((a.from.provider_id, s), false);
        }
    }
    let checks = futures::future::try_join_all(
        series
            .keys()
            .map(|(provider, s)| store::series_exists(tx, *provider, *s)),
    )
    .await?;
    for (exists, known) in checks.into_iter().zip(series.values_mut()) {
        *known = exists;
    }

    // One pick per pool, for all its calls; shared out in the calls' order.
    let mut asked: BTreeMap<&PoolKey, i64> = BTreeMap::new();
    for (i, a) in &admitted {
        match a.pool.1 {
            Some(s) if !series[&(a.from.provider_id, s)] => {
                outcomes[*i] = Outcome::Refused(Error::NotFound {
                    resource_type: "series",
                    name: s.to_string(),
                });
            }
            _ => *asked.entry(&a.pool).or_default() += a.count,
        }
    }
    let mut picked: BTreeMap<&PoolKey, std::vec::IntoIter<Number>> = BTreeMap::new();
    for (key, n) in asked {
        let pool = Pool {
            holder_id: key.0,
            series_id: key.1,
            prefix: key.2.clone(),
        };
        picked.insert(key, store::pick(tx, &pool, n).await?.into_iter());
    }

    let actors: Vec<Actor> = calls.iter().map(|(c, _)| c.actor()).collect();
    let mut moves: Vec<(usize, Number, Number)> = Vec::new();
    for (i, a) in &admitted {
        if matches!(outcomes[*i], Outcome::Refused(_)) {
            continue;
        }
        let Some(left) = picked.get_mut(&a.pool) else {
            continue;
        };
        if (left.len() as i64) < a.count {
            // The pool came up short: what this call is told depends on what the calls
            // before it left, and on rows other transactions hold; alone, it waits for them.
            continue;
        }
        let numbers: Vec<Number> = left.by_ref().take(a.count as usize).collect();
        let m = Move::Allocate {
            from: a.from.id,
            to: Target::of(a.to),
        };
        match lifecycle::next_all(&numbers, &m) {
            Ok(after) => moves.extend(numbers.into_iter().zip(after).map(|(b, s)| (*i, b, s))),
            Err(e) => outcomes[*i] = Outcome::Refused(e),
        }
    }

    let saves: Vec<Saved> = moves
        .iter()
        .map(|(i, before, after)| Saved {
            before,
            after,
            op: Operation::Allocate,
            actor: &actors[*i],
        })
        .collect();
    let saved = store::save_each(tx, &saves).await?;
    let mut owner: HashMap<Uuid, usize> = moves.iter().map(|(i, n, _)| (n.id, *i)).collect();
    let mut done: BTreeMap<usize, Vec<Number>> = BTreeMap::new();
    // Saved in E.164 order, so each call's numbers are too, as a call alone answers them.
    for n in saved {
        if let Some(i) = owner.remove(&n.id) {
            done.entry(i).or_default().push(n);
        }
    }
    for (i, numbers) in done {
        outcomes[i] = Outcome::Done(numbers);
    }
    Ok(outcomes)
}

/// Judges one call as [`super::allocation::allocate`] would up to its pick, in the same order:
/// both accounts in the caller's admin scope, the receiving one not frozen, a descendant of the
/// giving one, every account entered active. `None` when it must run alone (an account it
/// enters has a quota, or was not read).
fn admit<'a>(
    caller: &Caller,
    c: &MoveNumbers,
    by_id: &'a HashMap<Uuid, Account>,
) -> Result<Option<Admitted<'a>>> {
    let p = &caller.principal;
    let scoped = |id: Uuid| -> Result<&'a Account> {
        let a = by_id
            .get(&id)
            .ok_or_else(|| unseen(p, "account", id.to_string()))?;
        p.authorize(&a.path, Role::Admin, Reach::OwnOrBelow)?;
        Ok(a)
    };
    let from = scoped(c.from)?;
    let to = scoped(c.to)?;
    // The first account on the receiving one's path that is not active, from the provider down.
    let mut path = Vec::new();
    for id in path_ids(&to.path) {
        match by_id.get(&id) {
            Some(a) => path.push(a),
            None => return Ok(None),
        }
    }
    let inactive = path
        .iter()
        .find(|a| a.state != crate::domain::account::AccountState::Active)
        .map(|a| (a.id, a.state));
    lifecycle::require_unfrozen(inactive)?;
    lifecycle::require_descendant(&Target::of(from), &Target::of(to))?;
    let entering = &path[path_ids(&from.path).len()..];
    for a in entering {
        lifecycle::require_active(a.id, a.state)?;
    }
    if entering.iter().any(|a| a.fields.max_numbers.is_some()) {
        return Ok(None);
    }
    let Selection::Quantity {
        count,
        series_id,
        prefix,
    } = &c.selection
    else {
        return Ok(None);
    };
    Ok(Some(Admitted {
        from,
        to,
        count: *count,
        pool: (from.id, *series_id, prefix.clone()),
    }))
}
