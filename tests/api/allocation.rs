//! The life of a number through AllocationService: every move's success, every illegal move
//! (refused with its rule, and nothing changed), bad input, scope, idempotency, races, expiry
//! and aging.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use numbering_client::Clients;
use numbering_client::v1 as pb;
use prost::Message;
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::helpers::{
    As, TestApp, Tree, assert_error, spawn_app, violated_fields, violated_preconditions,
};

// ---------------------------------------------------------------------------------------------
// Seeding and reading the database directly.

/// Adds `count` AVAILABLE numbers, +1303555xxxx from `first`, held by `holder` and owned by its
/// provider (there is no AddNumber yet on this branch). Answers them in order.
async fn seed(app: &TestApp, holder: &pb::Account, first: i32, count: i32) -> Vec<String> {
    let holder = Uuid::parse_str(&holder.id).unwrap();
    let rows = app
        .sql
        .query(
            "INSERT INTO numbers (id, provider_id, e164, holder_id, holder_path, status)
             SELECT gen_random_uuid(), a.provider_id, '+1303555' || lpad(g::text, 4, '0'), a.id,
                    a.path, 'available'
             FROM accounts a, generate_series($2::int, $2::int + $3::int - 1) g
             WHERE a.id = $1
             RETURNING e164",
            &[&holder, &first, &count],
        )
        .await
        .unwrap();
    let mut numbers: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    numbers.sort();
    numbers
}

/// A series of the provider with `prefix`, and its numbers filed in it.
async fn series(app: &TestApp, provider: &pb::Account, prefix: &str) -> String {
    let provider = Uuid::parse_str(&provider.id).unwrap();
    let id = Uuid::new_v4();
    app.sql
        .execute(
            "INSERT INTO series (id, provider_id, prefix, display_name) VALUES ($1, $2, $3, $3)",
            &[&id, &provider, &prefix],
        )
        .await
        .unwrap();
    app.sql
        .execute(
            "UPDATE numbers SET series_id = $1 WHERE provider_id = $2 AND starts_with(e164, $3)",
            &[&id, &provider, &prefix],
        )
        .await
        .unwrap();
    id.to_string()
}

/// Where one number stands, as the database has it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    e164: String,
    holder: String,
    status: String,
    assignee: Option<String>,
    reserved_for: Option<String>,
    version: i64,
    events: i64,
}

/// Everything an illegal move must leave alone: every number with its event count, and the
/// inventory counters per (account, status).
#[derive(Debug, PartialEq)]
struct Snapshot {
    numbers: Vec<Row>,
    inventory: Vec<(String, String, i64)>,
}

async fn snapshot(app: &TestApp) -> Snapshot {
    let numbers = app
        .sql
        .query(
            "SELECT e164, holder_id::text, status, assignee_id, reserved_for, version,
                    (SELECT count(*) FROM number_events e WHERE e.number_id = n.id)
             FROM numbers n ORDER BY e164",
            &[],
        )
        .await
        .unwrap()
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
    let inventory = app
        .sql
        .query(
            "SELECT account_id::text, status, sum(count)::bigint FROM inventory_counts
             GROUP BY 1, 2 HAVING sum(count) <> 0 ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    Snapshot { numbers, inventory }
}

async fn row(app: &TestApp, e164: &str) -> Row {
    snapshot(app)
        .await
        .numbers
        .into_iter()
        .find(|r| r.e164 == e164)
        .unwrap()
}

/// The numbers each account holds, by status.
async fn held(app: &TestApp, account: &pb::Account, status: &str) -> i64 {
    let id = Uuid::parse_str(&account.id).unwrap();
    app.sql
        .query_one(
            "SELECT count(*) FROM numbers WHERE holder_id = $1 AND status = $2",
            &[&id, &status],
        )
        .await
        .unwrap()
        .get(0)
}

async fn operations(app: &TestApp, e164: &str) -> Vec<String> {
    app.sql
        .query(
            "SELECT operation FROM number_events WHERE e164 = $1 ORDER BY seq",
            &[&e164],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Checks that an illegal move was refused with `kind`, and that nothing changed.
async fn assert_refused<T: std::fmt::Debug>(
    app: &TestApp,
    before: &Snapshot,
    result: Result<T, tonic::Status>,
    kind: &str,
) -> tonic::Status {
    let status = assert_error(result, Code::FailedPrecondition);
    assert_eq!(violated_preconditions(&status), vec![kind.to_string()]);
    assert_eq!(
        &snapshot(app).await,
        before,
        "an illegal move changed something"
    );
    status
}

// ---------------------------------------------------------------------------------------------
// Requests.

fn quantity(count: i64) -> Option<pb::NumberSelection> {
    Some(pb::NumberSelection {
        selection: Some(pb::number_selection::Selection::Quantity(
            pb::QuantitySelection {
                count,
                ..Default::default()
            },
        )),
    })
}

fn from_series(count: i64, series_id: &str) -> Option<pb::NumberSelection> {
    Some(pb::NumberSelection {
        selection: Some(pb::number_selection::Selection::Quantity(
            pb::QuantitySelection {
                count,
                series_id: series_id.into(),
                prefix: String::new(),
            },
        )),
    })
}

fn named(numbers: &[&str]) -> Option<pb::NumberSelection> {
    Some(pb::NumberSelection {
        selection: Some(pb::number_selection::Selection::Numbers(pb::NumberList {
            numbers: numbers.iter().map(|n| n.to_string()).collect(),
        })),
    })
}

fn allocation(
    from: &pb::Account,
    to: &pb::Account,
    selection: Option<pb::NumberSelection>,
) -> pb::AllocateNumbersRequest {
    pb::AllocateNumbersRequest {
        from_account_id: from.id.clone(),
        to_account_id: to.id.clone(),
        selection,
        ..Default::default()
    }
}

fn withdrawal(
    account: &pb::Account,
    selection: Option<pb::NumberSelection>,
) -> pb::WithdrawNumbersRequest {
    pb::WithdrawNumbersRequest {
        account_id: account.id.clone(),
        selection,
        ..Default::default()
    }
}

fn agent(id: &str, account: Option<&pb::Account>) -> Option<pb::Assignee> {
    Some(pb::Assignee {
        kind: pb::AssigneeKind::Agent as i32,
        id: id.into(),
        display_name: format!("Agent {id}"),
        account_id: account.map(|a| a.id.clone()).unwrap_or_default(),
    })
}

fn assignment(number: &str, assignee: Option<pb::Assignee>) -> pb::AssignNumberRequest {
    pb::AssignNumberRequest {
        number: number.into(),
        assignee,
        ..Default::default()
    }
}

fn reservation(number: &str, reserved_for: &str) -> pb::ReserveNumberRequest {
    pb::ReserveNumberRequest {
        number: number.into(),
        reservation: Some(pb::Reservation {
            reserved_for: reserved_for.into(),
            tag: "front-desk".into(),
            note: "kept for the new reception".into(),
            expire_time: None,
        }),
        ..Default::default()
    }
}

fn release(number: &str) -> pb::ReleaseNumberRequest {
    pb::ReleaseNumberRequest {
        number: number.into(),
        ..Default::default()
    }
}

fn unbind(number: &str) -> pb::UnbindNumberRequest {
    pb::UnbindNumberRequest {
        number: number.into(),
        ..Default::default()
    }
}

fn unassign(number: &str) -> pb::UnassignNumberRequest {
    pb::UnassignNumberRequest {
        number: number.into(),
        ..Default::default()
    }
}

fn e164s(numbers: &[pb::Number]) -> Vec<String> {
    let mut v: Vec<String> = numbers.iter().map(|n| n.e164.clone()).collect();
    v.sort();
    v
}

/// A tree with `n` numbers in the provider's pool, and the provider admin's clients.
async fn stocked(n: i32) -> (TestApp, Tree, Vec<String>, Clients) {
    let app = spawn_app().await;
    let t = app.tree().await;
    let numbers = seed(&app, &t.provider, 100, n).await;
    let admin = app.clients(As::Admin(&t.provider.id)).await;
    (app, t, numbers, admin)
}

async fn allocate(c: &mut Clients, req: pb::AllocateNumbersRequest) -> Vec<String> {
    e164s(
        &c.allocation
            .allocate_numbers(req)
            .await
            .unwrap()
            .into_inner()
            .numbers,
    )
}

// ---------------------------------------------------------------------------------------------
// Allocate.

#[tokio::test]
async fn allocate_a_quantity_from_a_series_moves_exactly_that_many_to_the_sub_organisation() {
    let app = spawn_app().await;
    let t = app.tree().await;
    seed(&app, &t.provider, 100, 20).await;
    // +1303555011x is a block of ten: the series.
    let block = series(&app, &t.provider, "+130355501").await;
    let mut admin = app.clients(As::Admin(&t.provider.id)).await;
    let moved = admin
        .allocation
        .allocate_numbers(allocation(&t.provider, &t.a, from_series(4, &block)))
        .await
        .unwrap()
        .into_inner()
        .numbers;
    assert_eq!(moved.len(), 4);
    for n in &moved {
        assert!(n.e164.starts_with("+130355501"), "{}", n.e164);
        assert_eq!(n.holder_id, t.a.id);
        assert_eq!(n.owner_id, t.provider.id);
        assert_eq!(n.series_id, block);
        assert_eq!(n.status, pb::NumberStatus::Available as i32);
        assert_eq!(operations(&app, &n.e164).await, ["allocate"]);
    }
    assert_eq!(held(&app, &t.a, "available").await, 4);
    assert_eq!(held(&app, &t.provider, "available").await, 16);
}

#[tokio::test]
async fn allocate_by_prefix_takes_only_numbers_under_the_prefix() {
    let (app, t, _, mut admin) = stocked(30).await;
    let req = pb::AllocateNumbersRequest {
        selection: Some(pb::NumberSelection {
            selection: Some(pb::number_selection::Selection::Quantity(
                pb::QuantitySelection {
                    count: 10,
                    prefix: "+1 303 555 012".into(),
                    ..Default::default()
                },
            )),
        }),
        ..allocation(&t.provider, &t.a1, None)
    };
    let moved = allocate(&mut admin, req).await;
    let expected: Vec<String> = (120..130).map(|i| format!("+13035550{i}")).collect();
    assert_eq!(moved, expected);
    assert_eq!(held(&app, &t.a1, "available").await, 10);
}

#[tokio::test]
async fn allocate_a_list_named_by_e164_and_by_id() {
    let (app, t, numbers, mut admin) = stocked(5).await;
    let id: String = app
        .sql
        .query_one(
            "SELECT id::text FROM numbers WHERE e164 = $1",
            &[&numbers[1]],
        )
        .await
        .unwrap()
        .get(0);
    let moved = allocate(
        &mut admin,
        allocation(&t.provider, &t.b, named(&[&numbers[0], &id])),
    )
    .await;
    assert_eq!(moved, [numbers[0].clone(), numbers[1].clone()]);
    assert_eq!(row(&app, &numbers[1]).await.holder, t.b.id);
    assert_eq!(row(&app, &numbers[2]).await.holder, t.provider.id);
}

#[tokio::test]
async fn asking_for_more_than_the_unused_numbers_moves_nothing_and_says_how_many_there_are() {
    let (app, t, _, mut admin) = stocked(7).await;
    let before = snapshot(&app).await;
    let status = assert_refused(
        &app,
        &before,
        admin
            .allocation
            .allocate_numbers(allocation(&t.provider, &t.a, quantity(8)))
            .await,
        "NOT_ENOUGH_NUMBERS",
    )
    .await;
    assert!(
        status.message().contains("7 unused"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_reserved_number_is_allocated_with_its_reservation() {
    let (_app, t, numbers, mut admin) = stocked(3).await;
    admin
        .allocation
        .reserve_number(reservation(&numbers[0], "role:reception"))
        .await
        .unwrap();
    let moved = admin
        .allocation
        .allocate_numbers(allocation(&t.provider, &t.a, named(&[&numbers[0]])))
        .await
        .unwrap()
        .into_inner()
        .numbers;
    assert_eq!(moved[0].status, pb::NumberStatus::Reserved as i32);
    assert_eq!(
        moved[0].reservation.as_ref().unwrap().reserved_for,
        "role:reception"
    );
    // A quantity never picks a reserved number: it was set aside for someone.
    let status = assert_error(
        admin
            .allocation
            .allocate_numbers(allocation(&t.provider, &t.a, quantity(3)))
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(violated_preconditions(&status), ["NOT_ENOUGH_NUMBERS"]);
}

#[tokio::test]
async fn allocating_to_an_account_outside_the_holders_subtree_is_refused() {
    let (app, t, numbers, mut admin) = stocked(4).await;
    allocate(
        &mut admin,
        allocation(&t.provider, &t.a, named(&[&numbers[0]])),
    )
    .await;
    let before = snapshot(&app).await;
    // From a team to its sibling, and from a team up to its parent: not below the holder.
    for (from, to) in [(&t.a, &t.b), (&t.a, &t.provider), (&t.a1, &t.a)] {
        assert_refused(
            &app,
            &before,
            admin
                .allocation
                .allocate_numbers(allocation(from, to, quantity(1)))
                .await,
            "ACCOUNT_NOT_A_DESCENDANT",
        )
        .await;
    }
}

#[tokio::test]
async fn allocating_a_number_in_use_or_held_elsewhere_is_refused() {
    let (app, t, numbers, mut admin) = stocked(4).await;
    admin
        .allocation
        .assign_number(assignment(&numbers[0], agent("7", None)))
        .await
        .unwrap();
    allocate(
        &mut admin,
        allocation(&t.provider, &t.b, named(&[&numbers[1]])),
    )
    .await;
    let before = snapshot(&app).await;
    assert_refused(
        &app,
        &before,
        admin
            .allocation
            .allocate_numbers(allocation(
                &t.provider,
                &t.a,
                named(&[&numbers[0], &numbers[2]]),
            ))
            .await,
        "NUMBER_ASSIGNED",
    )
    .await;
    assert_refused(
        &app,
        &before,
        admin
            .allocation
            .allocate_numbers(allocation(&t.provider, &t.a, named(&[&numbers[1]])))
            .await,
        "NUMBER_NOT_HELD_BY_ACCOUNT",
    )
    .await;
}

#[tokio::test]
async fn nothing_is_allocated_or_assigned_into_a_suspended_account() {
    let (app, t, numbers, mut admin) = stocked(4).await;
    admin
        .tenancy
        .suspend_account(pb::SuspendAccountRequest {
            id: t.a.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let before = snapshot(&app).await;
    assert_refused(
        &app,
        &before,
        admin
            .allocation
            .allocate_numbers(allocation(&t.provider, &t.a, quantity(1)))
            .await,
        "ACCOUNT_NOT_ACTIVE",
    )
    .await;
    // Below a suspended account counts too: the numbers would enter its subtree.
    assert_refused(
        &app,
        &before,
        admin
            .allocation
            .allocate_numbers(allocation(&t.provider, &t.a1, quantity(1)))
            .await,
        "ACCOUNT_NOT_ACTIVE",
    )
    .await;
    assert_refused(
        &app,
        &before,
        admin
            .allocation
            .assign_number(assignment(&numbers[0], agent("7", Some(&t.a))))
            .await,
        "ACCOUNT_NOT_ACTIVE",
    )
    .await;
}

#[tokio::test]
async fn a_quota_counts_the_whole_subtree_and_refuses_with_a_quota_failure() {
    let (app, t, _, mut admin) = stocked(10).await;
    admin
        .tenancy
        .update_account(pb::UpdateAccountRequest {
            account: Some(pb::Account {
                id: t.a.id.clone(),
                max_numbers: Some(3),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["max_numbers".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    allocate(&mut admin, allocation(&t.provider, &t.a, quantity(2))).await;
    allocate(&mut admin, allocation(&t.provider, &t.a1, quantity(1))).await;
    let before = snapshot(&app).await;
    let in_pool = &before
        .numbers
        .iter()
        .find(|r| r.holder == t.provider.id)
        .unwrap()
        .e164;
    let assign_down = admin
        .allocation
        .assign_number(assignment(in_pool, agent("7", Some(&t.a1))))
        .await
        .map(|_| ());
    let allocate_down = admin
        .allocation
        .allocate_numbers(allocation(&t.provider, &t.a1, quantity(1)))
        .await
        .map(|_| ());
    for result in [assign_down, allocate_down] {
        let status = assert_error(result, Code::ResourceExhausted);
        let quota = status.get_details_quota_failure().unwrap();
        assert_eq!(quota.violations[0].subject, format!("accounts/{}", t.a.id));
    }
    assert_eq!(snapshot(&app).await, before);
    // Moves inside the subtree do not count twice.
    let from_a = e164s(
        &admin
            .allocation
            .allocate_numbers(allocation(&t.a, &t.a1, quantity(2)))
            .await
            .unwrap()
            .into_inner()
            .numbers,
    );
    assert_eq!(from_a.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Withdraw and transfer.

#[tokio::test]
async fn withdraw_returns_unused_numbers_to_the_immediate_parent() {
    let (app, t, _, mut admin) = stocked(6).await;
    allocate(&mut admin, allocation(&t.provider, &t.a1, quantity(5))).await;
    let mut a_admin = app.clients(As::Admin(&t.a.id)).await;
    let back = a_admin
        .allocation
        .withdraw_numbers(withdrawal(&t.a1, quantity(3)))
        .await
        .unwrap()
        .into_inner()
        .numbers;
    assert_eq!(back.len(), 3);
    assert!(back.iter().all(|n| n.holder_id == t.a.id));
    assert_eq!(held(&app, &t.a1, "available").await, 2);
    assert_eq!(held(&app, &t.a, "available").await, 3);
    assert_eq!(
        operations(&app, &back[0].e164).await,
        ["allocate", "withdraw"]
    );
    let listed = a_admin
        .allocation
        .withdraw_numbers(withdrawal(&t.a, named(&[&back[0].e164])))
        .await;
    // Withdrawing from one's own account is the parent's call.
    assert_error(listed, Code::PermissionDenied);
}

#[tokio::test]
async fn withdraw_refuses_numbers_in_use_and_quantities_beyond_the_unused() {
    let (app, t, _, mut admin) = stocked(4).await;
    let moved = allocate(&mut admin, allocation(&t.provider, &t.a, quantity(3))).await;
    admin
        .allocation
        .assign_number(assignment(&moved[0], agent("1", None)))
        .await
        .unwrap();
    admin
        .allocation
        .reserve_number(reservation(&moved[1], "user:2"))
        .await
        .unwrap();
    let before = snapshot(&app).await;
    for (number, kind) in [
        (&moved[0], "NUMBER_ASSIGNED"),
        (&moved[1], "NUMBER_RESERVED"),
    ] {
        assert_refused(
            &app,
            &before,
            admin
                .allocation
                .withdraw_numbers(withdrawal(&t.a, named(&[number])))
                .await,
            kind,
        )
        .await;
    }
    let status = assert_refused(
        &app,
        &before,
        admin
            .allocation
            .withdraw_numbers(withdrawal(&t.a, quantity(2)))
            .await,
        "NOT_ENOUGH_NUMBERS",
    )
    .await;
    assert!(
        status.message().contains("1 unused"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_provider_has_no_parent_to_withdraw_to() {
    let (app, t, _, _) = stocked(2).await;
    let mut platform = app.clients(As::Platform).await;
    let before = snapshot(&app).await;
    assert_refused(
        &app,
        &before,
        platform
            .allocation
            .withdraw_numbers(withdrawal(&t.provider, quantity(1)))
            .await,
        "ACCOUNT_HAS_NO_PARENT",
    )
    .await;
}

#[tokio::test]
async fn transfer_moves_numbers_between_sub_teams_through_their_common_ancestor() {
    let (app, t, _, mut admin) = stocked(6).await;
    let moved = allocate(&mut admin, allocation(&t.provider, &t.a1, quantity(4))).await;
    let req = pb::TransferNumbersRequest {
        from_account_id: t.a1.id.clone(),
        to_account_id: t.b.id.clone(),
        selection: named(&[&moved[0], &moved[1]]),
        ..Default::default()
    };
    // A's admin is below the common ancestor (the provider): out of its scope.
    let mut a_admin = app.clients(As::Admin(&t.a.id)).await;
    let before = snapshot(&app).await;
    assert_error(
        a_admin.allocation.transfer_numbers(req.clone()).await,
        Code::PermissionDenied,
    );
    assert_eq!(snapshot(&app).await, before);
    let sent = admin
        .allocation
        .transfer_numbers(req)
        .await
        .unwrap()
        .into_inner()
        .numbers;
    assert!(sent.iter().all(|n| n.holder_id == t.b.id));
    assert_eq!(operations(&app, &moved[0]).await, ["allocate", "transfer"]);
    assert_eq!(held(&app, &t.a1, "available").await, 2);
    // Up the tree by quantity is a transfer too.
    let up = a_admin
        .allocation
        .transfer_numbers(pb::TransferNumbersRequest {
            from_account_id: t.a1.id.clone(),
            to_account_id: t.a.id.clone(),
            selection: quantity(2),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .numbers;
    assert!(up.iter().all(|n| n.holder_id == t.a.id));
}

// ---------------------------------------------------------------------------------------------
// Assign, unassign, reassign.

#[tokio::test]
async fn assign_from_the_parent_pool_to_an_agent_in_a_sub_team_allocates_it_down() {
    let (app, t, numbers, _) = stocked(3).await;
    // The agency flow: the parent's operator picks a number from its pool and an agent of a
    // sub-team.
    let mut operator = app.clients(As::Operator(&t.provider.id)).await;
    let n = operator
        .allocation
        .assign_number(assignment(&numbers[0], agent("42", Some(&t.a1))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(n.holder_id, t.a1.id);
    assert_eq!(n.owner_id, t.provider.id);
    assert_eq!(n.status, pb::NumberStatus::Assigned as i32);
    let assignee = n.assignee.unwrap();
    assert_eq!(assignee.id, "42");
    assert_eq!(assignee.account_id, t.a1.id);
    assert_eq!(operations(&app, &numbers[0]).await, ["assign"]);
    assert_eq!(held(&app, &t.a1, "assigned").await, 1);
}

#[tokio::test]
async fn unassign_and_reassign_keep_the_number_in_its_holder() {
    let (app, t, numbers, mut admin) = stocked(2).await;
    allocate(
        &mut admin,
        allocation(&t.provider, &t.a, named(&[&numbers[0]])),
    )
    .await;
    let mut operator = app.clients(As::Operator(&t.a.id)).await;
    operator
        .allocation
        .assign_number(assignment(&numbers[0], agent("1", None)))
        .await
        .unwrap();
    let moved = operator
        .allocation
        .reassign_number(pb::ReassignNumberRequest {
            number: numbers[0].clone(),
            assignee: agent("2", None),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.assignee.unwrap().id, "2");
    assert_eq!(moved.holder_id, t.a.id);
    let free = operator
        .allocation
        .unassign_number(unassign(&numbers[0]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(free.status, pb::NumberStatus::Available as i32);
    assert_eq!(free.assignee, None);
    assert_eq!(free.holder_id, t.a.id);
    assert_eq!(
        operations(&app, &numbers[0]).await,
        ["allocate", "assign", "reassign", "unassign"]
    );
}

#[tokio::test]
async fn an_assigned_number_cannot_be_assigned_again() {
    let (app, _, numbers, mut admin) = stocked(1).await;
    admin
        .allocation
        .assign_number(assignment(&numbers[0], agent("1", None)))
        .await
        .unwrap();
    let before = snapshot(&app).await;
    assert_refused(
        &app,
        &before,
        admin
            .allocation
            .assign_number(assignment(&numbers[0], agent("2", None)))
            .await,
        "NUMBER_ASSIGNED",
    )
    .await;
}

#[tokio::test]
async fn unassigning_or_reassigning_a_number_that_is_not_assigned_is_refused() {
    let (app, _, numbers, mut admin) = stocked(1).await;
    let before = snapshot(&app).await;
    assert_refused(
        &app,
        &before,
        admin
            .allocation
            .unassign_number(unassign(&numbers[0]))
            .await,
        "NUMBER_NOT_ASSIGNED",
    )
    .await;
    assert_refused(
        &app,
        &before,
        admin
            .allocation
            .reassign_number(pb::ReassignNumberRequest {
                number: numbers[0].clone(),
                assignee: agent("2", None),
                ..Default::default()
            })
            .await,
        "NUMBER_NOT_ASSIGNED",
    )
    .await;
}

#[tokio::test]
async fn an_assignee_outside_the_holders_subtree_is_refused() {
    let (app, t, numbers, mut admin) = stocked(1).await;
    allocate(
        &mut admin,
        allocation(&t.provider, &t.a, named(&[&numbers[0]])),
    )
    .await;
    let before = snapshot(&app).await;
    for account in [&t.b, &t.provider] {
        assert_refused(
            &app,
            &before,
            admin
                .allocation
                .assign_number(assignment(&numbers[0], agent("9", Some(account))))
                .await,
            "ASSIGNEE_ACCOUNT_OUTSIDE_HOLDER",
        )
        .await;
    }
}

#[tokio::test]
async fn a_reserved_number_is_assigned_only_to_whom_it_is_reserved_for_unless_overridden() {
    let (app, _, numbers, mut admin) = stocked(2).await;
    for n in &numbers {
        admin
            .allocation
            .reserve_number(reservation(n, "agent:7"))
            .await
            .unwrap();
    }
    let before = snapshot(&app).await;
    assert_refused(
        &app,
        &before,
        admin
            .allocation
            .assign_number(assignment(&numbers[0], agent("8", None)))
            .await,
        "NUMBER_RESERVED_FOR_ANOTHER",
    )
    .await;
    let mine = admin
        .allocation
        .assign_number(assignment(&numbers[0], agent("7", None)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.status, pb::NumberStatus::Assigned as i32);
    assert_eq!(mine.reservation, None);
    let overridden = admin
        .allocation
        .assign_number(pb::AssignNumberRequest {
            override_reservation: true,
            ..assignment(&numbers[1], agent("8", None))
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overridden.assignee.unwrap().id, "8");
}

// ---------------------------------------------------------------------------------------------
// Reserve, release, unbind, expiry and aging.

#[tokio::test]
async fn reserve_and_unreserve_for_a_role_with_a_tag() {
    let (app, _, numbers, _) = stocked(1).await;
    let t_provider = row(&app, &numbers[0]).await.holder;
    let mut operator = app.clients(As::Operator(&t_provider)).await;
    let reserved = operator
        .allocation
        .reserve_number(reservation(&numbers[0], "role:reception"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reserved.status, pb::NumberStatus::Reserved as i32);
    let r = reserved.reservation.unwrap();
    assert_eq!(
        (r.reserved_for.as_str(), r.tag.as_str()),
        ("role:reception", "front-desk")
    );
    let before = snapshot(&app).await;
    assert_refused(
        &app,
        &before,
        operator
            .allocation
            .reserve_number(reservation(&numbers[0], "role:sales"))
            .await,
        "NUMBER_RESERVED",
    )
    .await;
    let free = operator
        .allocation
        .unreserve_number(pb::UnreserveNumberRequest {
            number: numbers[0].clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(free.status, pb::NumberStatus::Available as i32);
    let before = snapshot(&app).await;
    assert_refused(
        &app,
        &before,
        operator
            .allocation
            .unreserve_number(pb::UnreserveNumberRequest {
                number: numbers[0].clone(),
                ..Default::default()
            })
            .await,
        "NUMBER_NOT_RESERVED",
    )
    .await;
}

#[tokio::test]
async fn release_returns_a_number_and_the_provider_unbinds_it_into_its_pool() {
    let (app, t, numbers, mut admin) = stocked(2).await;
    allocate(
        &mut admin,
        allocation(&t.provider, &t.a1, named(&[&numbers[0]])),
    )
    .await;
    let mut a1_admin = app.clients(As::Admin(&t.a1.id)).await;
    let returned = a1_admin
        .allocation
        .release_number(release(&numbers[0]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(returned.status, pb::NumberStatus::Returned as i32);
    assert_eq!(returned.holder_id, t.a1.id);
    // It has left the sub-account's own view; the provider still sees it, waiting to unbind.
    let listed = a1_admin
        .number_pool
        .list_numbers(pb::ListNumbersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.numbers.iter().all(|n| n.id != returned.id));
    let get = |id: &str| pb::GetNumberRequest {
        key: Some(pb::get_number_request::Key::Id(id.into())),
    };
    assert_error(
        a1_admin.number_pool.get_number(get(&returned.id)).await,
        Code::PermissionDenied,
    );
    let seen = admin
        .number_pool
        .get_number(get(&returned.id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.status, pb::NumberStatus::Returned as i32);
    // The sub-account cannot take it back into the provider's pool itself.
    let before = snapshot(&app).await;
    assert_error(
        a1_admin.allocation.unbind_number(unbind(&numbers[0])).await,
        Code::PermissionDenied,
    );
    assert_eq!(snapshot(&app).await, before);
    let home = admin
        .allocation
        .unbind_number(unbind(&numbers[0]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(home.status, pb::NumberStatus::Available as i32);
    assert_eq!(home.holder_id, t.provider.id);
    assert_eq!(
        operations(&app, &numbers[0]).await,
        ["allocate", "release", "unbind"]
    );
}

#[tokio::test]
async fn the_provider_cannot_release_to_itself() {
    let (app, _, numbers, mut admin) = stocked(1).await;
    let before = snapshot(&app).await;
    assert_refused(
        &app,
        &before,
        admin.allocation.release_number(release(&numbers[0])).await,
        "NUMBER_HELD_BY_OWNER",
    )
    .await;
}

#[tokio::test]
async fn release_refuses_assigned_and_reserved_numbers() {
    let (app, t, numbers, mut admin) = stocked(2).await;
    allocate(&mut admin, allocation(&t.provider, &t.a, quantity(2))).await;
    admin
        .allocation
        .assign_number(assignment(&numbers[0], agent("1", None)))
        .await
        .unwrap();
    admin
        .allocation
        .reserve_number(reservation(&numbers[1], "user:1"))
        .await
        .unwrap();
    let mut a_admin = app.clients(As::Admin(&t.a.id)).await;
    let before = snapshot(&app).await;
    for (n, kind) in [
        (&numbers[0], "NUMBER_ASSIGNED"),
        (&numbers[1], "NUMBER_RESERVED"),
    ] {
        assert_refused(
            &app,
            &before,
            a_admin.allocation.release_number(release(n)).await,
            kind,
        )
        .await;
    }
}

#[tokio::test]
async fn unbind_refuses_a_number_that_was_not_returned() {
    let (app, t, numbers, mut admin) = stocked(1).await;
    allocate(&mut admin, allocation(&t.provider, &t.a, quantity(1))).await;
    let before = snapshot(&app).await;
    assert_refused(
        &app,
        &before,
        admin.allocation.unbind_number(unbind(&numbers[0])).await,
        "NUMBER_NOT_RETURNED",
    )
    .await;
}

/// Polls until `e164` has `status`, for the sweeper's work.
async fn wait_for_status(app: &TestApp, e164: &str, status: &str) {
    for _ in 0..100 {
        if row(app, e164).await.status == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{e164} never became {status}");
}

#[tokio::test]
async fn an_expired_reservation_returns_to_available_by_itself() {
    let (app, _, numbers, mut admin) = stocked(2).await;
    let mut req = reservation(&numbers[0], "user:1");
    if let Some(r) = req.reservation.as_mut() {
        r.expire_time = Some((SystemTime::now() + Duration::from_secs(1)).into());
    }
    admin.allocation.reserve_number(req).await.unwrap();
    admin
        .allocation
        .reserve_number(reservation(&numbers[1], "user:2"))
        .await
        .unwrap();
    assert_eq!(row(&app, &numbers[0]).await.status, "reserved");
    wait_for_status(&app, &numbers[0], "available").await;
    assert_eq!(
        operations(&app, &numbers[0]).await,
        ["reserve", "reservation_expire"]
    );
    let actor: String = app
        .sql
        .query_one(
            "SELECT actor FROM number_events WHERE e164 = $1 ORDER BY seq DESC LIMIT 1",
            &[&numbers[0]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(actor, "system");
    // A reservation without an expiry stays.
    assert_eq!(row(&app, &numbers[1]).await.status, "reserved");
}

#[tokio::test]
async fn an_aging_number_cannot_be_used_until_its_aging_period_ends() {
    let (app, t, numbers, mut admin) = stocked(1).await;
    admin
        .tenancy
        .update_account(pb::UpdateAccountRequest {
            account: Some(pb::Account {
                id: t.provider.id.clone(),
                aging_period: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["aging_period".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    allocate(&mut admin, allocation(&t.provider, &t.a, quantity(1))).await;
    let mut a_admin = app.clients(As::Admin(&t.a.id)).await;
    a_admin
        .allocation
        .release_number(release(&numbers[0]))
        .await
        .unwrap();
    let aging = admin
        .allocation
        .unbind_number(unbind(&numbers[0]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(aging.status, pb::NumberStatus::Aging as i32);
    assert!(aging.aging_end_time.is_some());
    let before = snapshot(&app).await;
    assert_refused(
        &app,
        &before,
        admin
            .allocation
            .allocate_numbers(allocation(&t.provider, &t.a, named(&[&numbers[0]])))
            .await,
        "NUMBER_AGING",
    )
    .await;
    assert_refused(
        &app,
        &before,
        admin
            .allocation
            .assign_number(assignment(&numbers[0], agent("1", None)))
            .await,
        "NUMBER_AGING",
    )
    .await;
    wait_for_status(&app, &numbers[0], "available").await;
    assert_eq!(
        operations(&app, &numbers[0]).await,
        ["allocate", "release", "unbind", "aging_end"]
    );
    allocate(&mut admin, allocation(&t.provider, &t.a, quantity(1))).await;
}

// ---------------------------------------------------------------------------------------------
// Batches.

/// The precondition kinds of a batch item's error.
fn item_preconditions(e: &tonic_types::pb::Status) -> Vec<String> {
    let status = tonic::Status::with_details(
        Code::from(e.code),
        e.message.clone(),
        e.encode_to_vec().into(),
    );
    violated_preconditions(&status)
}

#[tokio::test]
async fn batch_assign_answers_per_number_and_keeps_what_succeeded() {
    let (app, _, numbers, mut admin) = stocked(3).await;
    admin
        .allocation
        .assign_number(assignment(&numbers[1], agent("x", None)))
        .await
        .unwrap();
    let results = admin
        .allocation
        .batch_assign_numbers(pb::BatchAssignNumbersRequest {
            requests: numbers
                .iter()
                .enumerate()
                .map(|(i, n)| assignment(n, agent(&i.to_string(), None)))
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].number, numbers[0]);
    assert!(results[0].result.is_some() && results[2].result.is_some());
    let error = results[1].error.as_ref().unwrap();
    assert_eq!(error.code, Code::FailedPrecondition as i32);
    assert_eq!(item_preconditions(error), ["NUMBER_ASSIGNED"]);
    assert_eq!(row(&app, &numbers[0]).await.assignee.as_deref(), Some("0"));
    assert_eq!(row(&app, &numbers[1]).await.assignee.as_deref(), Some("x"));
    assert_eq!(row(&app, &numbers[2]).await.assignee.as_deref(), Some("2"));
}

#[tokio::test]
async fn an_all_or_nothing_batch_changes_nothing_when_one_number_fails() {
    let (app, t, numbers, mut admin) = stocked(3).await;
    allocate(&mut admin, allocation(&t.provider, &t.a, quantity(3))).await;
    admin
        .allocation
        .reserve_number(reservation(&numbers[2], "user:1"))
        .await
        .unwrap();
    let mut a_admin = app.clients(As::Admin(&t.a.id)).await;
    let before = snapshot(&app).await;
    let status = assert_refused(
        &app,
        &before,
        a_admin
            .allocation
            .batch_release_numbers(pb::BatchReleaseNumbersRequest {
                requests: numbers.iter().map(|n| release(n)).collect(),
                all_or_nothing: true,
                ..Default::default()
            })
            .await,
        "NUMBER_RESERVED",
    )
    .await;
    assert!(
        status.message().contains(&numbers[2]),
        "{}",
        status.message()
    );
    // Without the reserved one, the batch goes through whole.
    let results = a_admin
        .allocation
        .batch_release_numbers(pb::BatchReleaseNumbersRequest {
            requests: numbers[..2].iter().map(|n| release(n)).collect(),
            all_or_nothing: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(results.iter().all(|r| r.error.is_none()));
    assert_eq!(held(&app, &t.a, "returned").await, 2);
}

#[tokio::test]
async fn batch_reserve_and_batch_unassign_change_every_number_named() {
    let (app, _, numbers, mut admin) = stocked(4).await;
    let reserved = admin
        .allocation
        .batch_reserve_numbers(pb::BatchReserveNumbersRequest {
            requests: numbers[..2]
                .iter()
                .map(|n| reservation(n, "role:sales"))
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(reserved.iter().all(|r| r.error.is_none()));
    for n in &numbers[2..] {
        admin
            .allocation
            .assign_number(assignment(n, agent("1", None)))
            .await
            .unwrap();
    }
    let unassigned = admin
        .allocation
        .batch_unassign_numbers(pb::BatchUnassignNumbersRequest {
            requests: numbers[2..].iter().map(|n| unassign(n)).collect(),
            all_or_nothing: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(unassigned.iter().all(|r| r.error.is_none()));
    let rows = snapshot(&app).await.numbers;
    let statuses: Vec<&str> = rows.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(statuses, ["reserved", "reserved", "available", "available"]);
}

// ---------------------------------------------------------------------------------------------
// History.

/// Another number of the provider's pool, for a request about a different number.
async fn numbers_other(app: &TestApp) -> String {
    app.sql
        .query_one("SELECT e164 FROM numbers ORDER BY e164 DESC LIMIT 1", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn history_lists_every_event_in_pages_and_answers_the_state_at_a_time() {
    let (app, t, numbers, mut admin) = stocked(2).await;
    let n = &numbers[0];
    allocate(&mut admin, allocation(&t.provider, &t.a, named(&[n]))).await;
    admin
        .allocation
        .assign_number(assignment(n, agent("7", Some(&t.a1))))
        .await
        .unwrap();
    admin.allocation.unassign_number(unassign(n)).await.unwrap();
    let mut viewer = app.clients(As::Viewer(&t.provider.id)).await;
    let mut events = Vec::new();
    let mut token = String::new();
    loop {
        let page = viewer
            .allocation
            .list_number_events(pb::ListNumberEventsRequest {
                number: n.clone(),
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.events.len() <= 2);
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let ops: Vec<i32> = events.iter().map(|e| e.operation).collect();
    use pb::NumberOperation as Op;
    assert_eq!(
        ops,
        [Op::Allocate as i32, Op::Assign as i32, Op::Unassign as i32]
    );
    let assign = &events[1];
    assert_eq!(assign.actor, format!("test:{}", t.provider.id));
    assert_eq!(assign.actor_account_id, t.provider.id);
    assert_eq!(assign.before.as_ref().unwrap().holder_id, t.a.id);
    assert_eq!(assign.after.as_ref().unwrap().holder_id, t.a1.id);
    assert_eq!(
        assign.after.as_ref().unwrap().assignee.as_ref().unwrap().id,
        "7"
    );
    assert!(events.windows(2).all(|w| w[0].sequence < w[1].sequence));
    // A page token is bound to its number.
    let first = viewer
        .allocation
        .list_number_events(pb::ListNumberEventsRequest {
            number: n.clone(),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let status = assert_error(
        viewer
            .allocation
            .list_number_events(pb::ListNumberEventsRequest {
                number: numbers_other(&app).await,
                page_size: 1,
                page_token: first.next_page_token,
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["page_token"]);

    // Who held it, and who had it, at the time of the assignment.
    let at = viewer
        .allocation
        .get_number_state_at(pb::GetNumberStateAtRequest {
            number: n.clone(),
            time: assign.time,
        })
        .await
        .unwrap()
        .into_inner();
    let state = at.state.unwrap();
    assert_eq!(state.holder_id, t.a1.id);
    assert_eq!(state.status, pb::NumberStatus::Assigned as i32);
    assert_eq!(state.assignee.unwrap().id, "7");
    assert_eq!(at.event.unwrap().sequence, assign.sequence);
    // Before its first event the number was not in the inventory.
    let long_ago = SystemTime::now() - Duration::from_secs(86400);
    assert_error(
        app.clients(As::Platform)
            .await
            .allocation
            .get_number_state_at(pb::GetNumberStateAtRequest {
                number: n.clone(),
                time: Some(long_ago.into()),
            })
            .await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn a_sub_account_sees_only_its_part_of_a_numbers_history_and_a_sibling_nothing() {
    let (app, t, numbers, mut admin) = stocked(1).await;
    let n = &numbers[0];
    // The number spends time in B, assigned to B's agent, then goes to A.
    admin
        .allocation
        .assign_number(assignment(n, agent("b-secret", Some(&t.b))))
        .await
        .unwrap();
    admin.allocation.unassign_number(unassign(n)).await.unwrap();
    admin
        .allocation
        .withdraw_numbers(withdrawal(&t.b, named(&[n])))
        .await
        .unwrap();
    allocate(&mut admin, allocation(&t.provider, &t.a, named(&[n]))).await;
    let list = |number: &str| pb::ListNumberEventsRequest {
        number: number.into(),
        ..Default::default()
    };
    let mut a_viewer = app.clients(As::Viewer(&t.a.id)).await;
    let seen = a_viewer
        .allocation
        .list_number_events(list(n))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].operation, pb::NumberOperation::Allocate as i32);
    let all = admin
        .allocation
        .list_number_events(list(n))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(all.len(), 4);
    // B held it once, but holds it no more: it sees nothing, as if it did not exist.
    let mut b_viewer = app.clients(As::Viewer(&t.b.id)).await;
    assert_error(
        b_viewer.allocation.list_number_events(list(n)).await,
        Code::PermissionDenied,
    );
    // What stood at a time outside one's scope is refused; inside it, answered.
    let when = all[0].time;
    assert_error(
        a_viewer
            .allocation
            .get_number_state_at(pb::GetNumberStateAtRequest {
                number: n.clone(),
                time: when,
            })
            .await,
        Code::PermissionDenied,
    );
    let in_b = b_viewer
        .allocation
        .get_number_state_at(pb::GetNumberStateAtRequest {
            number: n.clone(),
            time: when,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(in_b.state.unwrap().holder_id, t.b.id);
}

// ---------------------------------------------------------------------------------------------
// Bad input, scope, roles.

#[tokio::test]
async fn bad_input_is_refused_with_every_field_named() {
    let (app, t, numbers, mut admin) = stocked(1).await;
    let before = snapshot(&app).await;
    let cases: Vec<(tonic::Status, Vec<&str>)> = vec![
        (
            admin
                .allocation
                .allocate_numbers(pb::AllocateNumbersRequest {
                    from_account_id: "nope".into(),
                    to_account_id: String::new(),
                    selection: None,
                    request_id: "r".repeat(200),
                    validate_only: false,
                })
                .await
                .unwrap_err(),
            vec![
                "from_account_id",
                "to_account_id",
                "selection",
                "request_id",
            ],
        ),
        (
            admin
                .allocation
                .allocate_numbers(allocation(&t.provider, &t.provider, quantity(0)))
                .await
                .unwrap_err(),
            vec!["to_account_id", "selection.quantity.count"],
        ),
        (
            admin
                .allocation
                .allocate_numbers(allocation(
                    &t.provider,
                    &t.a,
                    named(&["+1303", "303 555 0100", "+1303"]),
                ))
                .await
                .unwrap_err(),
            vec![
                "selection.numbers.numbers[1]",
                "selection.numbers.numbers[2]",
            ],
        ),
        (
            admin
                .allocation
                .withdraw_numbers(pb::WithdrawNumbersRequest {
                    account_id: t.a.id.clone(),
                    selection: Some(pb::NumberSelection {
                        selection: Some(pb::number_selection::Selection::Quantity(
                            pb::QuantitySelection {
                                count: 1,
                                series_id: "x".into(),
                                prefix: "1303".into(),
                            },
                        )),
                    }),
                    ..Default::default()
                })
                .await
                .unwrap_err(),
            vec!["selection.quantity.series_id", "selection.quantity.prefix"],
        ),
        (
            admin
                .allocation
                .assign_number(assignment(
                    "",
                    Some(pb::Assignee {
                        kind: 0,
                        id: " ".into(),
                        display_name: "x".repeat(300),
                        account_id: "bad".into(),
                    }),
                ))
                .await
                .unwrap_err(),
            vec![
                "number",
                "assignee.kind",
                "assignee.id",
                "assignee.display_name",
                "assignee.account_id",
            ],
        ),
        (
            admin
                .allocation
                .reserve_number(pb::ReserveNumberRequest {
                    number: numbers[0].clone(),
                    reservation: Some(pb::Reservation {
                        reserved_for: String::new(),
                        tag: "t".repeat(65),
                        note: String::new(),
                        expire_time: Some((SystemTime::now() - Duration::from_secs(60)).into()),
                    }),
                    ..Default::default()
                })
                .await
                .unwrap_err(),
            vec![
                "reservation.reserved_for",
                "reservation.tag",
                "reservation.expire_time",
            ],
        ),
        (
            admin
                .allocation
                .batch_assign_numbers(pb::BatchAssignNumbersRequest {
                    requests: vec![pb::AssignNumberRequest {
                        request_id: "inner".into(),
                        ..assignment(&numbers[0], None)
                    }],
                    ..Default::default()
                })
                .await
                .unwrap_err(),
            vec!["requests[0].request_id", "requests[0].assignee"],
        ),
        (
            admin
                .allocation
                .batch_release_numbers(pb::BatchReleaseNumbersRequest::default())
                .await
                .unwrap_err(),
            vec!["requests"],
        ),
        (
            admin
                .allocation
                .get_number_state_at(pb::GetNumberStateAtRequest {
                    number: "x".into(),
                    time: None,
                })
                .await
                .unwrap_err(),
            vec!["number", "time"],
        ),
        (
            admin
                .allocation
                .list_number_events(pb::ListNumberEventsRequest {
                    number: numbers[0].clone(),
                    page_size: -1,
                    page_token: String::new(),
                })
                .await
                .unwrap_err(),
            vec!["page_size"],
        ),
    ];
    for (status, fields) in cases {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let named = violated_fields(&status);
        for f in &fields {
            assert!(named.iter().any(|n| n == f), "{f} missing from {named:?}");
        }
    }
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn a_sub_account_cannot_allocate_from_its_parents_pool_withdraw_from_or_read_a_sibling() {
    let (app, t, numbers, mut admin) = stocked(4).await;
    allocate(&mut admin, allocation(&t.provider, &t.b, quantity(2))).await;
    let mut a_admin = app.clients(As::Admin(&t.a.id)).await;
    let before = snapshot(&app).await;
    let denied = [
        a_admin
            .allocation
            .allocate_numbers(allocation(&t.provider, &t.a, quantity(1)))
            .await
            .map(|_| ()),
        a_admin
            .allocation
            .allocate_numbers(allocation(&t.a, &t.a1, named(&[&numbers[3]])))
            .await
            .map(|_| ()),
        a_admin
            .allocation
            .withdraw_numbers(withdrawal(&t.b, quantity(1)))
            .await
            .map(|_| ()),
        a_admin
            .allocation
            .assign_number(assignment(&numbers[3], agent("1", None)))
            .await
            .map(|_| ()),
        // A number that does not exist answers the same.
        a_admin
            .allocation
            .release_number(release("+19995550000"))
            .await
            .map(|_| ()),
    ];
    let in_b = before
        .numbers
        .iter()
        .find(|r| r.holder == t.b.id)
        .unwrap()
        .e164
        .clone();
    let history = a_admin
        .allocation
        .list_number_events(pb::ListNumberEventsRequest {
            number: in_b,
            ..Default::default()
        })
        .await
        .map(|_| ());
    for result in denied.into_iter().chain([history]) {
        assert_error(result, Code::PermissionDenied);
    }
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn operators_cannot_allocate_and_viewers_cannot_assign() {
    let (app, t, numbers, _) = stocked(2).await;
    let mut operator = app.clients(As::Operator(&t.provider.id)).await;
    let mut viewer = app.clients(As::Viewer(&t.provider.id)).await;
    let before = snapshot(&app).await;
    assert_error(
        operator
            .allocation
            .allocate_numbers(allocation(&t.provider, &t.a, quantity(1)))
            .await,
        Code::PermissionDenied,
    );
    assert_error(
        operator
            .allocation
            .release_number(release(&numbers[0]))
            .await,
        Code::PermissionDenied,
    );
    assert_error(
        viewer
            .allocation
            .assign_number(assignment(&numbers[0], agent("1", None)))
            .await,
        Code::PermissionDenied,
    );
    assert_error(
        viewer
            .allocation
            .reserve_number(reservation(&numbers[0], "user:1"))
            .await,
        Code::PermissionDenied,
    );
    assert_eq!(snapshot(&app).await, before);
}

// ---------------------------------------------------------------------------------------------
// Idempotency, validate_only, etags.

#[tokio::test]
async fn a_retry_with_the_same_request_id_returns_the_first_answer_and_moves_nothing_twice() {
    let (app, t, _, mut admin) = stocked(10).await;
    let req = pb::AllocateNumbersRequest {
        request_id: "allocate-once".into(),
        ..allocation(&t.provider, &t.a, quantity(3))
    };
    let first = allocate(&mut admin, req.clone()).await;
    let second = allocate(&mut admin, req.clone()).await;
    assert_eq!(first, second);
    assert_eq!(held(&app, &t.a, "available").await, 3);
    let status = assert_error(
        admin
            .allocation
            .allocate_numbers(pb::AllocateNumbersRequest {
                selection: quantity(4),
                ..req
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["request_id"]);
    assert_eq!(held(&app, &t.a, "available").await, 3);

    // The same for a change of one number: one assignment, one event.
    let assign = pb::AssignNumberRequest {
        request_id: "assign-once".into(),
        ..assignment(&first[0], agent("1", None))
    };
    let once = admin
        .allocation
        .assign_number(assign.clone())
        .await
        .unwrap();
    let again = admin.allocation.assign_number(assign).await.unwrap();
    assert_eq!(once.into_inner(), again.into_inner());
    assert_eq!(operations(&app, &first[0]).await, ["allocate", "assign"]);
}

#[tokio::test]
async fn validate_only_answers_without_changing_anything() {
    let (app, t, numbers, mut admin) = stocked(5).await;
    let before = snapshot(&app).await;
    let dry = allocate(
        &mut admin,
        pb::AllocateNumbersRequest {
            validate_only: true,
            ..allocation(&t.provider, &t.a, quantity(2))
        },
    )
    .await;
    assert_eq!(dry.len(), 2);
    let assigned = admin
        .allocation
        .assign_number(pb::AssignNumberRequest {
            validate_only: true,
            ..assignment(&numbers[0], agent("1", Some(&t.a)))
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(assigned.holder_id, t.a.id);
    assert_eq!(snapshot(&app).await, before);
    // A dry run still checks every rule.
    assert_refused(
        &app,
        &before,
        admin
            .allocation
            .allocate_numbers(pb::AllocateNumbersRequest {
                validate_only: true,
                ..allocation(&t.provider, &t.a, quantity(6))
            })
            .await,
        "NOT_ENOUGH_NUMBERS",
    )
    .await;
}

#[tokio::test]
async fn a_stale_etag_is_aborted_and_changes_nothing() {
    let (app, _, numbers, mut admin) = stocked(1).await;
    let reserved = admin
        .allocation
        .reserve_number(reservation(&numbers[0], "user:1"))
        .await
        .unwrap()
        .into_inner();
    let stale = pb::UnreserveNumberRequest {
        number: numbers[0].clone(),
        etag: "1".into(),
        ..Default::default()
    };
    assert_ne!(reserved.etag, "1");
    let before = snapshot(&app).await;
    assert_error(
        admin.allocation.unreserve_number(stale).await,
        Code::Aborted,
    );
    assert_eq!(snapshot(&app).await, before);
    admin
        .allocation
        .unreserve_number(pb::UnreserveNumberRequest {
            number: numbers[0].clone(),
            etag: reserved.etag,
            ..Default::default()
        })
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Races.

#[tokio::test]
async fn concurrent_allocators_never_share_a_number_and_the_inventory_adds_up() {
    const POOL: i32 = 2000;
    const CALLERS: usize = 32;
    const CALLS: usize = 10;
    const EACH: i64 = 5;
    let (app, t, _, admin) = stocked(POOL).await;
    let tasks = (0..CALLERS).map(|i| {
        let mut c = admin.clone();
        let to = if i % 2 == 0 { t.a.clone() } else { t.b.clone() };
        let from = t.provider.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..CALLS {
                let moved = c
                    .allocation
                    .allocate_numbers(allocation(&from, &to, quantity(EACH)))
                    .await
                    .expect("no allocation fails while the pool has numbers")
                    .into_inner()
                    .numbers;
                assert_eq!(moved.len() as i64, EACH);
                got.extend(moved.into_iter().map(|n| (n.e164, n.holder_id)));
            }
            got
        })
    });
    let mut handed_out: BTreeMap<String, String> = BTreeMap::new();
    for task in futures::future::join_all(tasks).await {
        for (e164, holder) in task.unwrap() {
            assert!(
                handed_out.insert(e164.clone(), holder).is_none(),
                "{e164} handed out twice"
            );
        }
    }
    assert_eq!(handed_out.len(), CALLERS * CALLS * EACH as usize);
    let now = snapshot(&app).await;
    // Nothing lost: every number is still there, each where its answer said.
    assert_eq!(now.numbers.len(), POOL as usize);
    for r in &now.numbers {
        match handed_out.get(&r.e164) {
            Some(holder) => {
                assert_eq!(&r.holder, holder);
                assert_eq!(r.events, 1);
            }
            None => {
                assert_eq!(r.holder, t.provider.id);
                assert_eq!(r.events, 0);
            }
        }
    }
    // The striped counters agree with the rows.
    let real: BTreeSet<(String, String, i64)> = app
        .sql
        .query(
            "SELECT holder_id::text, status, count(*) FROM numbers GROUP BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let counted: BTreeSet<(String, String, i64)> = now.inventory.into_iter().collect();
    assert_eq!(counted, real);
}

#[tokio::test]
async fn concurrent_assigns_of_one_number_let_exactly_one_win() {
    let (app, _, numbers, admin) = stocked(1).await;
    let tasks = (0..16).map(|i| {
        let mut c = admin.clone();
        let n = numbers[0].clone();
        tokio::spawn(async move {
            c.allocation
                .assign_number(assignment(&n, agent(&i.to_string(), None)))
                .await
        })
    });
    let results = futures::future::join_all(tasks).await;
    let won = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    assert_eq!(won, 1);
    for r in results {
        if let Ok(Err(status)) = r {
            assert_eq!(violated_preconditions(&status), ["NUMBER_ASSIGNED"]);
        }
    }
    assert_eq!(row(&app, &numbers[0]).await.events, 1);
}
