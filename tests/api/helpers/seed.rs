//! Setting the scene through the API, as the platform: the accounts, series and numbers a
//! scenario starts from are made the way an operator makes them, so every rule the server keeps
//! (longest-prefix series, inventory counters, one event per change) holds for them as well.

use numbering_client::v1 as pb;

use super::{TestApp, ok};
use crate::requests;

/// A provider with two children, `a` and `b`, and a grandchild `a1` under `a`.
pub struct Tree {
    pub provider: pb::Account,
    pub a: pb::Account,
    pub b: pb::Account,
    pub a1: pb::Account,
}

/// The first number [`TestApp::add_numbers`] adds: +1 303 555 0100.
const FIRST: u64 = 13035550100;

/// How many numbers one BatchAddNumbers call may carry.
const BATCH: usize = 1000;

/// The E.164s of `numbers`, sorted.
pub fn e164s(numbers: &[pb::Number]) -> Vec<String> {
    let mut v: Vec<String> = numbers.iter().map(|n| n.e164.clone()).collect();
    v.sort();
    v
}

impl TestApp {
    /// A new provider: a tree of its own, with its own numbers.
    pub async fn provider(&self, name: &str) -> pb::Account {
        let mut request = requests::create_account("", name);
        if let Some(a) = request.account.as_mut() {
            a.kind = "provider".into();
        }
        ok(self.platform().tenancy.create_account(request).await)
    }

    /// A new customer account under `parent`.
    pub async fn child(&self, parent: &pb::Account, name: &str) -> pb::Account {
        let mut request = requests::create_account(&parent.id, name);
        if let Some(a) = request.account.as_mut() {
            a.kind = "customer".into();
        }
        ok(self.platform().tenancy.create_account(request).await)
    }

    /// "Acme" with "Team A" (and its "Team A1") and "Team B".
    pub async fn tree(&self) -> Tree {
        let provider = self.provider("Acme").await;
        let a = self.child(&provider, "Team A").await;
        let b = self.child(&provider, "Team B").await;
        let a1 = self.child(&a, "Team A1").await;
        Tree { provider, a, b, a1 }
    }

    /// A series of the provider's numbers under `prefix`, named after it; the server files the
    /// numbers in it.
    pub async fn series(&self, provider: &pb::Account, prefix: &str) -> pb::Series {
        let request = requests::create_series(provider, prefix, prefix);
        ok(self.platform().number_pool.create_series(request).await)
    }

    /// Adds one number to the owner's pool.
    pub async fn add_number(&self, owner: &pb::Account, e164: &str) -> pb::Number {
        let request = requests::add_number(owner, e164);
        ok(self.platform().number_pool.add_number(request).await)
    }

    /// Adds `count` numbers to the owner's pool, +1 303 555 0100 upwards; answers their E.164s
    /// in order.
    pub async fn add_numbers(&self, owner: &pb::Account, count: u64) -> Vec<String> {
        e164s(&self.add_range(owner, FIRST, count).await)
    }

    /// Adds the numbers from `+{first}` to `+{first + count - 1}` to the owner's pool, a batch
    /// of a thousand at a time.
    pub async fn add_range(&self, owner: &pb::Account, first: u64, count: u64) -> Vec<pb::Number> {
        let all: Vec<pb::AddNumberRequest> = (first..first + count)
            .map(|n| requests::add_number(owner, &format!("+{n}")))
            .collect();
        let mut added = Vec::new();
        for batch in all.chunks(BATCH) {
            let request = requests::add_numbers(owner, batch.to_vec(), true);
            let answer = ok(self.platform().number_pool.batch_add_numbers(request).await);
            for result in answer.results {
                added.push(
                    result
                        .number
                        .expect("an all-or-nothing batch adds every number"),
                );
            }
        }
        added
    }

    /// Allocates `count` unused numbers; answers their E.164s, sorted.
    pub async fn allocate(&self, from: &pb::Account, to: &pb::Account, count: i64) -> Vec<String> {
        let request = requests::allocate_quantity(from, to, count);
        e164s(&ok(self.platform().allocation.allocate_numbers(request).await).numbers)
    }

    /// Allocates these numbers; answers their E.164s, sorted.
    pub async fn allocate_named(
        &self,
        from: &pb::Account,
        to: &pb::Account,
        numbers: &[&str],
    ) -> Vec<String> {
        let request = requests::allocate_named(from, to, numbers);
        e164s(&ok(self.platform().allocation.allocate_numbers(request).await).numbers)
    }

    pub async fn assign(&self, number: &str, assignee: Option<pb::Assignee>) -> pb::Number {
        let request = requests::assign(number, assignee);
        ok(self.platform().allocation.assign_number(request).await)
    }

    pub async fn reserve(&self, number: &str, reserved_for: &str) -> pb::Number {
        let request = requests::reserve(number, reserved_for);
        ok(self.platform().allocation.reserve_number(request).await)
    }

    /// At most `max_numbers` numbers in the account's subtree.
    pub async fn set_quota(&self, account: &pb::Account, max_numbers: i64) -> pb::Account {
        let request = requests::set_quota(&account.id, max_numbers);
        ok(self.platform().tenancy.update_account(request).await)
    }

    /// How long the provider's unbound numbers wait before they may be used again.
    pub async fn set_aging_period(&self, provider: &pb::Account, seconds: i64) -> pb::Account {
        let request = requests::set_aging_period(&provider.id, seconds);
        ok(self.platform().tenancy.update_account(request).await)
    }

    /// The live number of this E.164, as the platform sees it.
    pub async fn get(&self, e164: &str) -> pb::Number {
        let request = requests::get_e164(e164);
        ok(self.platform().number_pool.get_number(request).await)
    }

    /// A SIP trunk of `account`, named `name`.
    pub async fn trunk(&self, account: &pb::Account, name: &str) -> pb::SipTrunk {
        let request = pb::CreateSipTrunkRequest {
            sip_trunk: Some(pb::SipTrunk {
                account_id: account.id.clone(),
                name: name.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        ok(self.platform().number_pool.create_sip_trunk(request).await)
    }

    pub async fn suspend(&self, account: &pb::Account) -> pb::Account {
        let request = requests::suspend(&account.id);
        ok(self.platform().tenancy.suspend_account(request).await)
    }
}
