//! The transaction of a group of calls run together ([`crate::flows::together`]): what
//! [`Db::mutate`] does for one call, for many at once, each call keeping its own request id,
//! fingerprint and answer. The request ids are claimed and recorded set-based: one statement
//! locks them all (in one order, so two groups cannot deadlock on them), one reads what was
//! recorded, one records the new answers.

use futures::future::BoxFuture;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{Answered, Db, Deadline, Fingerprint, Idempotency, KEPT_WHOLE, Kept, Mutation, Seen};
use super::{Transaction, deadline};
use crate::domain::principal::Authority;
use crate::error::{Error, Result};

/// What became of one call of a group.
#[derive(Debug)]
pub enum Outcome<T> {
    /// Done in the group's transaction (or answered from its request id's first answer).
    Done(T),
    /// Refused, as it would have been alone; it changed nothing.
    Refused(Error),
    /// Not judged in the group: run it alone, after the group.
    Alone,
}

/// The latest of the calls' deadlines, none if one call has none: the group's transaction may
/// run as long as its most patient caller waits (a caller that gave up earlier gets
/// DEADLINE_EXCEEDED, which promises nothing either way; its retry with the same request id
/// gets the answer).
fn latest(calls: &[Mutation<'_>]) -> Option<Deadline> {
    calls
        .iter()
        .map(|m| m.deadline)
        .try_fold(None, |latest: Option<Deadline>, d| {
            d.map(|d| Some(latest.map_or(d, |l| if d.0 > l.0 { d } else { l })))
        })
        .flatten()
}

impl Db {
    /// Runs the calls of a group in one transaction. A call whose request id was answered
    /// before is answered from that answer (or refused, as [`Db::mutate`] would); `change` is
    /// given the others, by index, and answers each. The group commits once; an error is the
    /// whole group's, and nothing of it was kept. Validate-only calls do not join groups.
    pub async fn mutate_together<T, F>(
        &self,
        calls: &[Mutation<'_>],
        change: F,
    ) -> Result<Vec<Outcome<T>>>
    where
        T: prost::Message + Default,
        F: for<'t> FnOnce(
            &'t Transaction<'t>,
            Vec<usize>,
        ) -> BoxFuture<'t, Result<Vec<Outcome<Answered<T>>>>>,
    {
        let guards: Vec<Idempotency> = calls
            .iter()
            .map(|m| Idempotency::new(m.principal, m.method, m.request_id, false))
            .collect();
        let fingerprints: Vec<Vec<u8>> = calls
            .iter()
            .map(|m| {
                let mut f = Fingerprint::new(m.method);
                f.update(&m.request);
                f.finish()
            })
            .collect();
        let deadline = latest(calls);
        let mut client = self.client_until(deadline).await?;
        let mut timed = crate::metrics::Transaction::start(calls.first().map_or("", |m| m.method));
        let tx = client.transaction().await?;
        deadline::bound(&tx, deadline).await?;

        let seen = claim_all(&tx, &guards).await?;
        let mut outcomes: Vec<Outcome<T>> = Vec::with_capacity(calls.len());
        let mut live = Vec::new();
        for (i, seen) in seen.into_iter().enumerate() {
            outcomes.push(match seen {
                None => {
                    live.push(i);
                    Outcome::Alone
                }
                Some(seen) => match seen.replay(calls[i].principal, &fingerprints[i]) {
                    Ok(Kept::Whole(response)) => Outcome::Done(
                        T::decode(response.as_slice())
                            .map_err(|e| Error::Internal(e.to_string()))?,
                    ),
                    // Re-read alone, as the first answer was kept.
                    Ok(Kept::Numbers(_)) => Outcome::Alone,
                    Err(e) => Outcome::Refused(e),
                },
            });
        }
        let answered = change(&tx, live.clone()).await?;
        let mut records: Vec<(usize, Kept)> = Vec::new();
        for (i, outcome) in live.into_iter().zip(answered) {
            outcomes[i] = match outcome {
                Outcome::Done(Answered { answer, numbers }) => {
                    let encoded = answer.encode_to_vec();
                    records.push((
                        i,
                        match numbers {
                            Some(ids) if encoded.len() > KEPT_WHOLE => Kept::Numbers(ids),
                            _ => Kept::Whole(encoded),
                        },
                    ));
                    Outcome::Done(answer)
                }
                Outcome::Refused(e) => Outcome::Refused(e),
                Outcome::Alone => Outcome::Alone,
            };
        }
        record_all(&tx, &guards, &fingerprints, &records).await?;
        tx.commit().await?;
        timed.end("commit");
        Ok(outcomes)
    }
}

impl Idempotency<'_> {
    /// The text whose hash is the request id's advisory lock, as [`Idempotency::claim`] takes it.
    fn lock_key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.account, self.actor, self.method, self.request_id
        )
    }
}

/// [`Idempotency::claim`] for many request ids: locks them all, in one order, and answers, per
/// guard, what was recorded for it. The caller keeps two calls with one key out of a group.
async fn claim_all(tx: &Transaction<'_>, guards: &[Idempotency<'_>]) -> Result<Vec<Option<Seen>>> {
    let mut seen: Vec<Option<Seen>> = guards.iter().map(|_| None).collect();
    let keyed: Vec<usize> = (0..guards.len()).filter(|&i| guards[i].keyed).collect();
    if keyed.is_empty() {
        return Ok(seen);
    }
    let mut keys: Vec<String> = keyed.iter().map(|&i| guards[i].lock_key()).collect();
    keys.sort_unstable();
    let accounts: Vec<Uuid> = keyed.iter().map(|&i| guards[i].account).collect();
    let actors: Vec<&str> = keyed.iter().map(|&i| guards[i].actor).collect();
    let methods: Vec<&str> = keyed.iter().map(|&i| guards[i].method).collect();
    let request_ids: Vec<&str> = keyed.iter().map(|&i| guards[i].request_id).collect();
    let lock: [&(dyn ToSql + Sync); 1] = [&keys];
    let read: [&(dyn ToSql + Sync); 4] = [&accounts, &actors, &methods, &request_ids];
    let (_, found) = futures::try_join!(
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest($1::text[]) k",
            &lock,
        ),
        tx.query(
            "SELECT k.i, d.authority, d.fingerprint, d.response, d.numbers
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY
                  AS k(account_id, actor, method, request_id, i)
             JOIN idempotency d ON d.account_id = k.account_id AND d.actor = k.actor
                  AND d.method = k.method AND d.request_id = k.request_id",
            &read,
        ),
    )?;
    for row in found {
        let at = keyed[(row.get::<_, i64>(0) - 1) as usize];
        seen[at] = Some(Seen {
            authority: Authority::from_level(row.get(1)),
            fingerprint: row.get(2),
            kept: match row.get::<_, Option<Vec<u8>>>(3) {
                Some(response) => Kept::Whole(response),
                None => Kept::Numbers(row.get::<_, Option<Vec<Uuid>>>(4).unwrap_or_default()),
            },
        });
    }
    Ok(seen)
}

/// [`Idempotency::record`] for many answers: those kept whole in one statement, the rare ones
/// kept as numbers one by one.
async fn record_all(
    tx: &Transaction<'_>,
    guards: &[Idempotency<'_>],
    fingerprints: &[Vec<u8>],
    records: &[(usize, Kept)],
) -> Result<()> {
    let mut whole: Vec<(usize, &Vec<u8>)> = Vec::new();
    for (i, kept) in records {
        match kept {
            Kept::Whole(bytes) if guards[*i].keyed => whole.push((*i, bytes)),
            Kept::Whole(_) => {}
            numbers => guards[*i].record(tx, &fingerprints[*i], numbers).await?,
        }
    }
    if whole.is_empty() {
        return Ok(());
    }
    let g = |i: usize| &guards[i];
    let accounts: Vec<Uuid> = whole.iter().map(|(i, _)| g(*i).account).collect();
    let actors: Vec<&str> = whole.iter().map(|(i, _)| g(*i).actor).collect();
    let methods: Vec<&str> = whole.iter().map(|(i, _)| g(*i).method).collect();
    let request_ids: Vec<&str> = whole.iter().map(|(i, _)| g(*i).request_id).collect();
    let authorities: Vec<i16> = whole.iter().map(|(i, _)| g(*i).authority.level()).collect();
    let prints: Vec<&[u8]> = whole
        .iter()
        .map(|(i, _)| fingerprints[*i].as_slice())
        .collect();
    let responses: Vec<&[u8]> = whole.iter().map(|(_, r)| r.as_slice()).collect();
    let params: [&(dyn ToSql + Sync); 7] = [
        &accounts,
        &actors,
        &methods,
        &request_ids,
        &authorities,
        &prints,
        &responses,
    ];
    tx.execute(
        "INSERT INTO idempotency (account_id, actor, method, request_id, authority,
             fingerprint, response)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::smallint[],
                              $6::bytea[], $7::bytea[])",
        &params,
    )
    .await?;
    Ok(())
}
