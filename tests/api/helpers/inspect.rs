//! Reading the server's database directly, for what the API does not show: the event log of
//! each number, the inventory counters, and whether a refused call left everything as it was.

use std::time::Duration;

use numbering_client::v1 as pb;
use uuid::Uuid;

use super::TestApp;

/// Where one number stands, as the database has it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub e164: String,
    pub holder: String,
    pub status: String,
    pub assignee: Option<String>,
    pub reserved_for: Option<String>,
    pub version: i64,
    pub events: i64,
}

/// Everything an illegal move must leave alone: every number with its event count, and the
/// inventory counters per (account, status).
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub numbers: Vec<Row>,
    pub inventory: Vec<(String, String, i64)>,
}

fn uuid(id: &str) -> Uuid {
    Uuid::parse_str(id).expect("the server answers ids as UUIDs")
}

impl TestApp {
    pub async fn snapshot(&self) -> Snapshot {
        let numbers = self
            .sql
            .query(
                "SELECT e164, holder_id::text, status, assignee_id, reserved_for, version,
                        (SELECT count(*) FROM number_events e WHERE e.number_id = n.id)
                 FROM numbers n ORDER BY e164",
                &[],
            )
            .await
            .expect("read the numbers")
            .iter()
            .map(|r| Row {
                e164: r.get(0),
                holder: r.get(1),
                status: r.get(2),
                assignee: r.get(3),
                reserved_for: r.get(4),
                version: r.get(5),
                events: r.get(6),
            })
            .collect();
        let inventory = self
            .sql
            .query(
                "SELECT account_id::text, status, sum(count)::bigint FROM inventory_counts
                 GROUP BY 1, 2 HAVING sum(count) <> 0 ORDER BY 1, 2",
                &[],
            )
            .await
            .expect("read the inventory counters")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        Snapshot { numbers, inventory }
    }

    /// Where the number `e164` stands.
    pub async fn row(&self, e164: &str) -> Row {
        self.snapshot()
            .await
            .numbers
            .into_iter()
            .find(|r| r.e164 == e164)
            .unwrap_or_else(|| panic!("{e164} is not in the database"))
    }

    /// How many numbers the account holds with this status.
    pub async fn held(&self, account: &pb::Account, status: &str) -> i64 {
        self.sql
            .query_one(
                "SELECT count(*) FROM numbers WHERE holder_id = $1 AND status = $2",
                &[&uuid(&account.id), &status],
            )
            .await
            .expect("count the numbers held")
            .get(0)
    }

    /// The operations of the number's events, oldest first.
    pub async fn operations(&self, e164: &str) -> Vec<String> {
        self.sql
            .query(
                "SELECT operation FROM number_events WHERE e164 = $1 ORDER BY seq",
                &[&e164],
            )
            .await
            .expect("read the events")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// The numbers counted row by row, per (holder, status): what the inventory counters must
    /// agree with.
    pub async fn counted_by_holder(&self) -> Vec<(String, String, i64)> {
        self.sql
            .query(
                "SELECT holder_id::text, status, count(*) FROM numbers GROUP BY 1, 2 ORDER BY 1, 2",
                &[],
            )
            .await
            .expect("count the numbers")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }

    /// Who made the number's last change.
    pub async fn last_actor(&self, e164: &str) -> String {
        self.sql
            .query_one(
                "SELECT actor FROM number_events WHERE e164 = $1 ORDER BY seq DESC LIMIT 1",
                &[&e164],
            )
            .await
            .expect("read the last event")
            .get(0)
    }

    /// How many events the number with this id has.
    pub async fn events_of(&self, number_id: &str) -> i64 {
        self.sql
            .query_one(
                "SELECT count(*) FROM number_events WHERE number_id = $1",
                &[&uuid(number_id)],
            )
            .await
            .expect("count the events")
            .get(0)
    }

    /// The E.164s of the numbers not deleted, in order.
    pub async fn live_numbers(&self) -> Vec<String> {
        self.sql
            .query(
                "SELECT e164 FROM numbers WHERE status <> 'deleted' ORDER BY e164",
                &[],
            )
            .await
            .expect("read the live numbers")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// How many accounts are not deleted.
    pub async fn count_accounts(&self) -> i64 {
        self.sql
            .query_one(
                "SELECT count(*) FROM accounts WHERE delete_time IS NULL",
                &[],
            )
            .await
            .expect("count the accounts")
            .get(0)
    }

    /// Waits until the number has `status`: for the sweeper's work.
    pub async fn wait_for_status(&self, e164: &str, status: &str) {
        for _ in 0..100 {
            if self.row(e164).await.status == status {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{e164} never became {status}");
    }
}
