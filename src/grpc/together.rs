//! Allocations coalesced: concurrent quantity allocations are run together, one transaction and
//! one commit for a group of calls, by [`crate::flows::together`].
//!
//! There is no batching window, so a lone call waits for nobody. A call joins a queue and, if
//! fewer than `groups` groups are in the database, starts one; a group takes every call queued
//! (up to [`MAX_GROUP`]) and, when done, the calls that queued meanwhile. Under load, the calls
//! that arrive while groups are in the database form the next groups; idle, a group is one
//! call. A call the group sends back ([`Outcome::Alone`]) runs the ordinary way, alone.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use numbering_client::v1 as pb;
use tokio::sync::oneshot;

use super::convert::numbers_to_proto;
use crate::domain::command::MoveNumbers;
use crate::domain::principal::Principal;
use crate::error::Result;
use crate::flows::Caller;
use crate::flows::together::{self, Outcome};
use crate::store::{Answered, Db, Deadline, Mutation};

/// The most calls one group takes.
pub const MAX_GROUP: usize = 64;

/// The most numbers one group moves (past the first call): a group of large quantities holds
/// its rows and its callers no longer than a few hundred single allocations would.
pub const MAX_GROUP_NUMBERS: i64 = 1_000;

/// One allocation waiting for its group.
pub struct Pending {
    pub principal: Principal,
    pub request_id: String,
    /// The encoded request, for its request id's fingerprint.
    pub request: Vec<u8>,
    pub deadline: Option<Deadline>,
    pub command: MoveNumbers,
    /// The answer; `None`: run the call alone.
    reply: oneshot::Sender<Option<Result<pb::AllocateNumbersResponse>>>,
}

/// The queue of allocations and the groups running them.
pub struct Together {
    db: Db,
    groups: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    running: usize,
}

impl Together {
    /// At most `groups` groups in the database at once.
    pub fn new(db: Db, groups: usize) -> Arc<Self> {
        Arc::new(Self {
            db,
            groups: groups.max(1),
            state: Mutex::default(),
        })
    }

    /// Whether an allocation may be run in a group.
    pub fn joins(command: &MoveNumbers, validate_only: bool) -> bool {
        !validate_only && together::joins(command)
    }

    /// Runs the allocation in a group: its answer, or `None` when it must run alone.
    pub async fn allocate(
        self: &Arc<Self>,
        principal: Principal,
        request_id: String,
        request: Vec<u8>,
        deadline: Option<Deadline>,
        command: MoveNumbers,
    ) -> Option<Result<pb::AllocateNumbersResponse>> {
        let (reply, answer) = oneshot::channel();
        let lead = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.queue.push_back(Pending {
                principal,
                request_id,
                request,
                deadline,
                command,
                reply,
            });
            let lead = s.running < self.groups;
            if lead {
                s.running += 1;
            }
            lead
        };
        if lead {
            // Its own task: the group goes on, and answers the others, if this caller leaves.
            tokio::spawn(Arc::clone(self).lead());
        }
        // A group that failed to answer (it panicked) changed nothing: run alone.
        answer.await.ok().flatten()
    }

    /// Runs groups while calls are queued.
    async fn lead(self: Arc<Self>) {
        let mut running = Running(&self);
        while let Some(group) = running.next() {
            run(&self.db, group).await;
        }
    }
}

/// A group's place among the running ones, given back when it ends (even by a panic).
struct Running<'a>(&'a Together);

impl Running<'_> {
    /// The next group: every call queued, up to [`MAX_GROUP`] calls and [`MAX_GROUP_NUMBERS`]
    /// numbers; none when the queue is empty,
    /// and then this group's place is given back.
    fn next(&mut self) -> Option<Vec<Pending>> {
        let mut s = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.queue.is_empty() {
            return None;
        }
        let mut numbers = 0;
        let n = s
            .queue
            .iter()
            .take(MAX_GROUP)
            .take_while(|p| {
                numbers += p.command.selection.count();
                numbers <= MAX_GROUP_NUMBERS
            })
            .count()
            .max(1);
        Some(s.queue.drain(..n).collect())
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        s.running -= 1;
    }
}

/// Runs one group and answers each call.
async fn run(db: &Db, mut group: Vec<Pending>) {
    // Two calls with one request id: the second waits for the first's answer, alone.
    let mut keys = HashSet::new();
    let (mut group, again): (Vec<Pending>, Vec<Pending>) = group.drain(..).partition(|p| {
        p.request_id.is_empty()
            || keys.insert((
                p.principal.acting_account(),
                p.principal.subject.clone(),
                p.request_id.clone(),
            ))
    });
    for p in again {
        let _ = p.reply.send(None);
    }
    let callers: Vec<Caller> = group
        .iter()
        .map(|p| Caller {
            principal: p.principal.clone(),
            request_id: p.request_id.clone(),
        })
        .collect();
    let requests: Vec<Vec<u8>> = group
        .iter_mut()
        .map(|p| std::mem::take(&mut p.request))
        .collect();
    let commands: Vec<MoveNumbers> = group.iter().map(|p| p.command.clone()).collect();
    let mutations: Vec<Mutation> = group
        .iter()
        .zip(requests)
        .map(|(p, request)| Mutation {
            principal: &p.principal,
            method: "AllocateNumbers",
            request_id: &p.request_id,
            request,
            validate_only: false,
            deadline: p.deadline,
        })
        .collect();
    let outcomes = db
        .mutate_together(&mutations, move |tx, live| {
            Box::pin(async move {
                let calls: Vec<(&Caller, &MoveNumbers)> =
                    live.iter().map(|&i| (&callers[i], &commands[i])).collect();
                let done = together::allocate_together(tx, &calls).await?;
                Ok(done
                    .into_iter()
                    .map(|o| match o {
                        Outcome::Done(numbers) => Outcome::Done(Answered {
                            numbers: Some(numbers.iter().map(|n| n.id).collect()),
                            answer: pb::AllocateNumbersResponse {
                                numbers: numbers_to_proto(numbers),
                            },
                        }),
                        Outcome::Refused(e) => Outcome::Refused(e),
                        Outcome::Alone => Outcome::Alone,
                    })
                    .collect())
            })
        })
        .await;
    drop(mutations);
    match outcomes {
        Ok(outcomes) => {
            for (p, o) in group.into_iter().zip(outcomes) {
                let _ = p.reply.send(match o {
                    Outcome::Done(answer) => Some(Ok(answer)),
                    Outcome::Refused(e) => Some(Err(e)),
                    Outcome::Alone => None,
                });
            }
        }
        Err(e) => {
            // Nothing of the group was kept. Each call runs alone and meets the cause itself
            // (a lost database answers each UNAVAILABLE; a deadlock between groups is gone).
            tracing::debug!(error = %e, calls = group.len(), "a group failed; its calls run alone");
            for p in group {
                let _ = p.reply.send(None);
            }
        }
    }
}
