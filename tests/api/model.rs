//! A model of DESIGN.md's rules, run beside the server. Random sequences of moves, made by
//! callers of every role at every level of a small tree (a provider, two teams, a sub-team),
//! go to the server and to a small in-memory model of the rules; after every step both must
//! agree on the answer (allowed, or refused with the right code: PERMISSION_DENIED whenever the
//! caller is outside its scope, since such a caller learns nothing) and on every number's
//! holder, status, assignee and reservation, and on every account's inventory.
//!
//! The model is written from DESIGN.md, not from the server's code: where they disagree, one
//! of them is wrong, and the failure prints the whole sequence that led there.

use numbering_client::Clients;
use numbering_client::v1 as pb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{TestApp, ok, spawn_app};
use crate::requests;

/// The accounts of the tree: the provider, team A, team A's sub-team A1, team B.
const P: usize = 0;
const A: usize = 1;
const A1: usize = 2;
const B: usize = 3;
const PARENT: [Option<usize>; 4] = [None, Some(P), Some(A), Some(P)];
const NAMES: [&str; 4] = ["P", "A", "A1", "B"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Viewer,
    Operator,
    Admin,
}

/// The callers: an account and a role.
const CALLERS: [(usize, Role); 8] = [
    (P, Role::Admin),
    (A, Role::Admin),
    (A, Role::Operator),
    (A, Role::Viewer),
    (A1, Role::Admin),
    (A1, Role::Operator),
    (B, Role::Admin),
    (B, Role::Operator),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Available,
    Reserved,
    Assigned,
    Returned,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Number {
    holder: usize,
    status: Status,
    /// The assignee's id and account.
    assignee: Option<(String, usize)>,
    /// Whom the reservation is for.
    reserved_for: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Model {
    suspended: [bool; 4],
    numbers: Vec<Number>,
}

#[derive(Debug, Clone)]
enum Op {
    Allocate {
        n: usize,
        from: usize,
        to: usize,
    },
    Withdraw {
        n: usize,
        from: usize,
    },
    Transfer {
        n: usize,
        from: usize,
        to: usize,
    },
    Assign {
        n: usize,
        agent: String,
        account: Option<usize>,
        override_reservation: bool,
    },
    Unassign {
        n: usize,
    },
    Reserve {
        n: usize,
        agent: String,
    },
    Unreserve {
        n: usize,
    },
    Release {
        n: usize,
    },
    Unbind {
        n: usize,
    },
    Suspend {
        account: usize,
    },
    Resume {
        account: usize,
    },
}

/// What the rules say of one step.
#[derive(Debug)]
struct Verdict {
    /// Where the step leaves the model when it is allowed.
    after: Model,
    /// The codes of every rule the step breaks; empty when it is allowed.
    refusals: Vec<Code>,
    /// Whether DESIGN.md leaves the answer open (the step may be allowed or refused).
    open: bool,
    /// Whether the caller may not see the number: then no refusal may say anything about it.
    unseen: bool,
    /// Whether the step names an account outside the caller's scope: then the answer is
    /// PERMISSION_DENIED, whatever else is wrong, so the caller learns nothing. (A number out
    /// of sight may come second to a rule about the accounts named, which tells nothing of it.)
    hidden: bool,
}

impl Op {
    /// The number the step is about, if any.
    fn number(&self) -> Option<usize> {
        match *self {
            Op::Allocate { n, .. }
            | Op::Withdraw { n, .. }
            | Op::Transfer { n, .. }
            | Op::Assign { n, .. }
            | Op::Unassign { n }
            | Op::Reserve { n, .. }
            | Op::Unreserve { n }
            | Op::Release { n }
            | Op::Unbind { n } => Some(n),
            Op::Suspend { .. } | Op::Resume { .. } => None,
        }
    }
}

fn path(mut a: usize) -> Vec<usize> {
    let mut p = vec![a];
    while let Some(parent) = PARENT[a] {
        p.push(parent);
        a = parent;
    }
    p
}

/// Whether `x` is `c` or below it.
fn covers(c: usize, x: usize) -> bool {
    path(x).contains(&c)
}

impl Model {
    fn new(numbers: usize) -> Self {
        Model {
            suspended: [false; 4],
            numbers: vec![
                Number {
                    holder: P,
                    status: Status::Available,
                    assignee: None,
                    reserved_for: None,
                };
                numbers
            ],
        }
    }

    /// Nothing new goes into an account that is suspended, or below a suspended one.
    fn frozen(&self, a: usize) -> bool {
        path(a).iter().any(|x| self.suspended[*x])
    }

    /// Where a caller finds the number: a RETURNED number has left the releasing account's
    /// view and waits with its owner.
    fn seen_at(&self, n: usize) -> usize {
        let number = &self.numbers[n];
        if number.status == Status::Returned {
            P
        } else {
            number.holder
        }
    }

    fn judge(&self, (by, role): (usize, Role), op: &Op) -> Verdict {
        let mut after = self.clone();
        let mut refusals = Vec::new();
        let mut open = false;
        let unseen = op.number().is_some_and(|n| !covers(by, self.seen_at(n)));
        let hidden = match *op {
            Op::Allocate { from, to, .. } | Op::Transfer { from, to, .. } => {
                !covers(by, from) || !covers(by, to)
            }
            Op::Withdraw { from, .. } => !covers(by, from),
            Op::Assign {
                account: Some(a), ..
            }
            | Op::Suspend { account: a }
            | Op::Resume { account: a } => !covers(by, a),
            _ => false,
        };
        let scope = |ok: bool, refusals: &mut Vec<Code>| {
            if !ok {
                refusals.push(Code::PermissionDenied);
            }
        };
        let rule = |ok: bool, refusals: &mut Vec<Code>| {
            if !ok {
                refusals.push(Code::FailedPrecondition);
            }
        };
        // A request that contradicts itself is bad input, whoever sends it.
        if let Op::Allocate { from, to, .. } | Op::Transfer { from, to, .. } = *op
            && from == to
        {
            return Verdict {
                after,
                refusals: vec![Code::InvalidArgument],
                open,
                unseen: false,
                hidden: false,
            };
        }
        match op.clone() {
            Op::Allocate { n, from, to } => {
                scope(
                    role == Role::Admin && covers(by, from) && covers(by, to),
                    &mut refusals,
                );
                scope(covers(by, self.seen_at(n)), &mut refusals);
                let s = &self.numbers[n];
                rule(to != from && covers(from, to), &mut refusals);
                rule(s.holder == from, &mut refusals);
                rule(
                    matches!(s.status, Status::Available | Status::Reserved),
                    &mut refusals,
                );
                rule(!self.frozen(to), &mut refusals);
                after.numbers[n].holder = to;
            }
            Op::Withdraw { n, from } => {
                scope(
                    role == Role::Admin && covers(by, from) && by != from,
                    &mut refusals,
                );
                scope(covers(by, self.seen_at(n)), &mut refusals);
                let s = &self.numbers[n];
                rule(
                    s.holder == from && s.status == Status::Available,
                    &mut refusals,
                );
                // Withdrawing gives back, it does not bring anything new; whether a suspended
                // parent takes its numbers back DESIGN.md does not say.
                open = refusals.is_empty() && PARENT[from].is_some_and(|p| self.frozen(p));
                after.numbers[n].holder = PARENT[from].unwrap_or(from);
            }
            Op::Transfer { n, from, to } => {
                scope(
                    role == Role::Admin && covers(by, from) && covers(by, to),
                    &mut refusals,
                );
                scope(covers(by, self.seen_at(n)), &mut refusals);
                let s = &self.numbers[n];
                rule(
                    s.holder == from && s.status == Status::Available,
                    &mut refusals,
                );
                rule(!self.frozen(to), &mut refusals);
                after.numbers[n].holder = to;
            }
            Op::Assign {
                n,
                agent,
                account,
                override_reservation,
            } => {
                let s = &self.numbers[n];
                let to = account.unwrap_or(s.holder);
                scope(
                    role >= Role::Operator && covers(by, self.seen_at(n)),
                    &mut refusals,
                );
                scope(covers(by, to), &mut refusals);
                // An operator uses the numbers its accounts hold; moving one down is an
                // allocation, an admin's.
                scope(role == Role::Admin || to == s.holder, &mut refusals);
                rule(
                    matches!(s.status, Status::Available | Status::Reserved),
                    &mut refusals,
                );
                // An assignee anywhere in the tree: the number goes there through the lowest
                // common ancestor of its holder and the assignee's account (an admin's move,
                // whose scope covers both: see above).
                rule(
                    override_reservation
                        || s.status != Status::Reserved
                        || s.reserved_for.as_deref() == Some(agent.as_str()),
                    &mut refusals,
                );
                rule(!self.frozen(to), &mut refusals);
                after.numbers[n] = Number {
                    holder: to,
                    status: Status::Assigned,
                    assignee: Some((agent, to)),
                    reserved_for: None,
                };
            }
            Op::Unassign { n } => {
                scope(
                    role >= Role::Operator && covers(by, self.seen_at(n)),
                    &mut refusals,
                );
                rule(self.numbers[n].status == Status::Assigned, &mut refusals);
                after.numbers[n].status = Status::Available;
                after.numbers[n].assignee = None;
            }
            Op::Reserve { n, agent } => {
                scope(
                    role >= Role::Operator && covers(by, self.seen_at(n)),
                    &mut refusals,
                );
                rule(self.numbers[n].status == Status::Available, &mut refusals);
                // DESIGN.md freezes allocation, assignment and creation; whether a reservation
                // is "new" there it does not say.
                open = refusals.is_empty() && self.frozen(self.numbers[n].holder);
                after.numbers[n].status = Status::Reserved;
                after.numbers[n].reserved_for = Some(agent);
            }
            Op::Unreserve { n } => {
                scope(
                    role >= Role::Operator && covers(by, self.seen_at(n)),
                    &mut refusals,
                );
                rule(self.numbers[n].status == Status::Reserved, &mut refusals);
                after.numbers[n].status = Status::Available;
                after.numbers[n].reserved_for = None;
            }
            Op::Release { n } => {
                scope(
                    role == Role::Admin && covers(by, self.seen_at(n)),
                    &mut refusals,
                );
                let s = &self.numbers[n];
                rule(
                    s.holder != P && s.status == Status::Available,
                    &mut refusals,
                );
                after.numbers[n].status = Status::Returned;
            }
            Op::Unbind { n } => {
                scope(
                    role == Role::Admin && covers(by, P) && covers(by, self.seen_at(n)),
                    &mut refusals,
                );
                rule(self.numbers[n].status == Status::Returned, &mut refusals);
                after.numbers[n].holder = P;
                after.numbers[n].status = Status::Available;
            }
            Op::Suspend { account } => {
                scope(
                    role == Role::Admin && covers(by, account) && by != account,
                    &mut refusals,
                );
                // Asking for the state the account is in already answers it as it is.
                after.suspended[account] = true;
            }
            Op::Resume { account } => {
                scope(
                    role == Role::Admin && covers(by, account) && by != account,
                    &mut refusals,
                );
                after.suspended[account] = false;
            }
        }
        Verdict {
            after,
            refusals,
            open,
            unseen,
            hidden,
        }
    }

    /// Counts per account alone, as GetInventory gives them: available, reserved, assigned.
    fn inventory(&self, account: usize) -> [i64; 3] {
        let mut c = [0; 3];
        for n in self.numbers.iter().filter(|n| n.holder == account) {
            match n.status {
                Status::Available => c[0] += 1,
                Status::Reserved => c[1] += 1,
                Status::Assigned => c[2] += 1,
                Status::Returned => {}
            }
        }
        c
    }
}

/// A step for the caller at `by`: mostly about accounts in its scope and numbers it can see, so
/// that sequences reach deep states; sometimes about anything, to try the scope.
fn random_op(rng: &mut StdRng, model: &Model, by: usize) -> Op {
    let numbers = model.numbers.len();
    let mine: Vec<usize> = (0..numbers)
        .filter(|n| covers(by, model.seen_at(*n)))
        .collect();
    let n = if !mine.is_empty() && rng.random_bool(0.8) {
        mine[rng.random_range(0..mine.len())]
    } else {
        rng.random_range(0..numbers)
    };
    let scope: Vec<usize> = (0..4).filter(|a| covers(by, *a)).collect();
    let account = |rng: &mut StdRng| {
        if rng.random_bool(0.8) {
            scope[rng.random_range(0..scope.len())]
        } else {
            rng.random_range(0..4)
        }
    };
    let agent = |rng: &mut StdRng| ["ann", "bob"][rng.random_range(0..2)].to_string();
    // Half the time, a move the number's status allows; else any.
    let useful: &[u32] = match model.numbers[n].status {
        Status::Available => &[0, 2, 3, 4, 7, 9],
        Status::Reserved => &[0, 4, 8],
        Status::Assigned => &[6],
        Status::Returned => &[10],
    };
    let kind = if rng.random_bool(0.5) {
        useful[rng.random_range(0..useful.len())]
    } else {
        rng.random_range(0..12)
    };
    match kind {
        0 | 1 => Op::Allocate {
            n,
            from: account(rng),
            to: account(rng),
        },
        2 => Op::Withdraw {
            n,
            from: account(rng),
        },
        3 => {
            let from = if rng.random_bool(0.6) {
                model.numbers[n].holder
            } else {
                account(rng)
            };
            Op::Transfer {
                n,
                from,
                to: (from + rng.random_range(1..4)) % 4,
            }
        }
        4 | 5 => Op::Assign {
            n,
            agent: agent(rng),
            account: rng.random_bool(0.5).then(|| account(rng)),
            override_reservation: rng.random_bool(0.3),
        },
        6 => Op::Unassign { n },
        7 => Op::Reserve {
            n,
            agent: agent(rng),
        },
        8 => Op::Unreserve { n },
        9 => Op::Release { n },
        10 => Op::Unbind { n },
        _ if rng.random_bool(0.5) => Op::Suspend {
            account: account(rng),
        },
        _ => Op::Resume {
            account: account(rng),
        },
    }
}

struct World {
    app: TestApp,
    ids: Vec<String>,
    e164s: Vec<String>,
    callers: Vec<Clients>,
}

impl World {
    async fn new(numbers: usize) -> World {
        let app = spawn_app().await;
        let tree = app.tree().await;
        app.set_aging_period(&tree.provider, 0).await;
        let accounts = [tree.provider, tree.a, tree.a1, tree.b];
        let e164s = app.add_numbers(&accounts[P], numbers as u64).await;
        let mut callers = Vec::new();
        for (account, role) in CALLERS {
            let a = &accounts[account];
            callers.push(match role {
                Role::Admin => app.admin(a).await,
                Role::Operator => app.operator(a).await,
                Role::Viewer => app.viewer(a).await,
            });
        }
        let ids = accounts.iter().map(|a| a.id.clone()).collect();
        World {
            app,
            ids,
            e164s,
            callers,
        }
    }

    fn account(&self, i: usize) -> pb::Account {
        pb::Account {
            id: self.ids[i].clone(),
            ..Default::default()
        }
    }

    async fn send(&self, caller: usize, op: &Op) -> Result<(), tonic::Status> {
        let mut c = self.callers[caller].clone();
        let number = |n: usize| self.e164s[n].clone();
        let named = |n: usize| requests::named(&[self.e164s[n].as_str()]);
        let agent = |id: &str, account: Option<usize>| {
            requests::agent(id, account.map(|a| self.account(a)).as_ref())
        };
        match op.clone() {
            Op::Allocate { n, from, to } => c
                .allocation
                .allocate_numbers(requests::allocate(
                    &self.account(from),
                    &self.account(to),
                    named(n),
                ))
                .await
                .map(drop),
            Op::Withdraw { n, from } => c
                .allocation
                .withdraw_numbers(requests::withdraw(&self.account(from), named(n)))
                .await
                .map(drop),
            Op::Transfer { n, from, to } => c
                .allocation
                .transfer_numbers(requests::transfer(
                    &self.account(from),
                    &self.account(to),
                    named(n),
                ))
                .await
                .map(drop),
            Op::Assign {
                n,
                agent: who,
                account,
                override_reservation,
            } => {
                let mut r = requests::assign(&number(n), agent(&who, account));
                r.override_reservation = override_reservation;
                c.allocation.assign_number(r).await.map(drop)
            }
            Op::Unassign { n } => c
                .allocation
                .unassign_number(requests::unassign(&number(n)))
                .await
                .map(drop),
            Op::Reserve { n, agent: who } => c
                .allocation
                .reserve_number(requests::reserve(&number(n), &format!("agent:{who}")))
                .await
                .map(drop),
            Op::Unreserve { n } => c
                .allocation
                .unreserve_number(requests::unreserve(&number(n)))
                .await
                .map(drop),
            Op::Release { n } => c
                .allocation
                .release_number(requests::release(&number(n)))
                .await
                .map(drop),
            Op::Unbind { n } => c
                .allocation
                .unbind_number(requests::unbind(&number(n)))
                .await
                .map(drop),
            Op::Suspend { account } => c
                .tenancy
                .suspend_account(requests::suspend(&self.ids[account]))
                .await
                .map(drop),
            Op::Resume { account } => c
                .tenancy
                .resume_account(requests::resume(&self.ids[account]))
                .await
                .map(drop),
        }
    }

    /// The server's state, read as the platform, in the model's terms.
    async fn observe(&self) -> (Model, Vec<[i64; 3]>) {
        let mut platform = self.app.platform();
        let mut filter = pb::NumberFilter {
            owner_id: self.ids[P].clone(),
            ..Default::default()
        };
        filter.include_subtree = true;
        let listed = ok(platform
            .number_pool
            .list_numbers(requests::list_numbers(filter))
            .await);
        let account = |id: &str| self.ids.iter().position(|x| x == id).unwrap_or(usize::MAX);
        let mut numbers = Vec::new();
        for e164 in &self.e164s {
            let n = listed
                .numbers
                .iter()
                .find(|n| &n.e164 == e164)
                .expect("every number is listed");
            let status = match pb::NumberStatus::try_from(n.status) {
                Ok(pb::NumberStatus::Available) => Status::Available,
                Ok(pb::NumberStatus::Reserved) => Status::Reserved,
                Ok(pb::NumberStatus::Assigned) => Status::Assigned,
                Ok(pb::NumberStatus::Returned) => Status::Returned,
                other => panic!("{e164} is {other:?}"),
            };
            numbers.push(Number {
                holder: account(&n.holder_id),
                status,
                assignee: n
                    .assignee
                    .as_ref()
                    .map(|a| (a.id.clone(), account(&a.account_id))),
                reserved_for: n
                    .reservation
                    .as_ref()
                    .map(|r| r.reserved_for.trim_start_matches("agent:").to_string()),
            });
        }
        let mut suspended = [false; 4];
        let mut inventories = Vec::new();
        for (i, id) in self.ids.iter().enumerate() {
            let a = ok(platform
                .tenancy
                .get_account(requests::get_account(id))
                .await);
            suspended[i] = a.state == pb::AccountState::Suspended as i32;
            let inv = ok(platform
                .number_pool
                .get_inventory(requests::inventory(id, false))
                .await);
            let t = inv.totals.unwrap_or_default();
            inventories.push([t.available, t.reserved, t.assigned]);
        }
        (Model { suspended, numbers }, inventories)
    }
}

fn history(seed: u64, step: usize, log: &[String]) -> String {
    format!("seed {seed}, step {step}:\n  {}", log.join("\n  "))
}

fn describe(caller: usize, op: &Op) -> String {
    let (account, role) = CALLERS[caller];
    format!("{role:?} of {}: {op:?}", NAMES[account])
}

async fn run(seed: u64, steps: usize) {
    const NUMBERS: usize = 5;
    let world = World::new(NUMBERS).await;
    let mut model = Model::new(NUMBERS);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut log = Vec::new();
    let (mut allowed, mut refused) = (0, 0);
    for step in 0..steps {
        // The provider's admin a quarter of the time: it brings the numbers down.
        let caller = if rng.random_bool(0.25) {
            0
        } else {
            rng.random_range(0..CALLERS.len())
        };
        let op = random_op(&mut rng, &model, CALLERS[caller].0);
        log.push(describe(caller, &op));
        let verdict = model.judge(CALLERS[caller], &op);
        let answer = world.send(caller, &op).await;
        match answer {
            Ok(()) => {
                assert!(
                    verdict.refusals.is_empty(),
                    "the server allowed what the rules refuse ({:?})\n{}",
                    verdict.refusals,
                    history(seed, step, &log)
                );
                model = verdict.after;
                allowed += 1;
            }
            Err(status) => {
                let code = status.code();
                if verdict.hidden {
                    assert_eq!(
                        code,
                        Code::PermissionDenied,
                        "outside its scope the caller must learn nothing: {}\n{}",
                        status.message(),
                        history(seed, step, &log)
                    );
                }
                if verdict.unseen {
                    let named: Vec<String> = status
                        .get_details_precondition_failure()
                        .map(|p| p.violations.into_iter().map(|v| v.subject).collect())
                        .unwrap_or_default();
                    assert!(
                        !named.iter().any(|s| s.starts_with("numbers/")),
                        "a caller that may not see the number was told about it: {named:?}\n{}",
                        history(seed, step, &log)
                    );
                }
                {
                    assert!(
                        verdict.refusals.contains(&code) || verdict.open,
                        "the server refused with {code:?} ({}), the rules say {:?}\n{}",
                        status.message(),
                        verdict.refusals,
                        history(seed, step, &log)
                    );
                }
                if let Some(last) = log.last_mut() {
                    last.push_str(&format!(" -> {code:?}"));
                }
                refused += 1;
            }
        }
        let (seen, inventories) = world.observe().await;
        assert_eq!(
            seen,
            model,
            "the server and the rules disagree after\n{}",
            history(seed, step, &log)
        );
        for (a, inventory) in inventories.iter().enumerate() {
            assert_eq!(
                *inventory,
                model.inventory(a),
                "inventory of {} (available, reserved, assigned)\n{}",
                NAMES[a],
                history(seed, step, &log)
            );
        }
    }
    // The sequences must exercise both sides of the rules to prove anything.
    assert!(
        allowed > steps / 10,
        "seed {seed}: only {allowed} of {steps} steps were allowed\n{}",
        history(seed, steps, &log)
    );
    assert!(
        refused > steps / 10,
        "seed {seed}: only {refused} of {steps} steps were refused"
    );
}

#[tokio::test]
async fn random_moves_by_every_role_agree_with_the_rules() {
    for seed in 1..=4 {
        run(seed, 150).await;
    }
}
