//! History: every change of a number is an event; its events page in order, the state at any
//! time is answered, and each account sees only the part of the history it held the number in.

use numbering_client::v1 as pb;
use pb::NumberOperation as Op;
use tonic::Code;

use super::stocked;
use crate::helpers::{assert_error, assert_invalid, assert_violates, ok};
use crate::requests::{
    a_day_ago, agent, assign, delete_account, events, events_page, named, release, state_at,
    transfer, unassign, unbind, withdraw,
};

/// Now, as the time of a GetNumberStateAt.
fn now() -> Option<prost_types::Timestamp> {
    Some(std::time::SystemTime::now().into())
}

#[tokio::test]
async fn history_lists_every_event_in_pages_and_answers_the_state_at_a_time() {
    let (app, t, numbers, mut admin) = stocked(2).await;
    let n = &numbers[0];
    app.allocate_named(&t.provider, &t.a, &[n]).await;
    ok(admin
        .allocation
        .assign_number(assign(n, agent("7", Some(&t.a1))))
        .await);
    ok(admin.allocation.unassign_number(unassign(n)).await);
    let mut viewer = app.viewer(&t.provider).await;
    let mut events = Vec::new();
    let mut token = String::new();
    loop {
        let page = ok(viewer
            .allocation
            .list_number_events(events_page(n, 2, &token))
            .await);
        assert!(page.events.len() <= 2);
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let ops: Vec<i32> = events.iter().map(|e| e.operation).collect();
    assert_eq!(
        ops,
        [
            Op::Add as i32,
            Op::Allocate as i32,
            Op::Assign as i32,
            Op::Unassign as i32
        ]
    );
    let assign = &events[2];
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
    let first = ok(viewer
        .allocation
        .list_number_events(events_page(n, 1, ""))
        .await);
    let other_number = events_page(&numbers[1], 1, &first.next_page_token);
    assert_invalid(
        viewer.allocation.list_number_events(other_number).await,
        &["page_token"],
    );

    // Who held it, and who had it, at the time of the assignment.
    let at = ok(viewer
        .allocation
        .get_number_state_at(state_at(n, assign.time))
        .await);
    let state = at.state.unwrap();
    assert_eq!(state.holder_id, t.a1.id);
    assert_eq!(state.status, pb::NumberStatus::Assigned as i32);
    assert_eq!(state.assignee.unwrap().id, "7");
    assert_eq!(at.event.unwrap().sequence, assign.sequence);
    // Before its first event the number was not in the inventory, and the answer says so.
    assert_violates(
        app.platform()
            .allocation
            .get_number_state_at(state_at(n, a_day_ago()))
            .await,
        "NUMBER_NOT_YET_ADDED",
    );
}

#[tokio::test]
async fn a_sub_account_sees_only_its_part_of_a_numbers_history_and_a_sibling_nothing() {
    let (app, t, numbers, mut admin) = stocked(1).await;
    let n = &numbers[0];
    // The number spends time in B, assigned to B's agent, then goes to A.
    app.assign(n, agent("b-secret", Some(&t.b))).await;
    ok(admin.allocation.unassign_number(unassign(n)).await);
    ok(admin
        .allocation
        .withdraw_numbers(withdraw(&t.b, named(&[n])))
        .await);
    app.allocate_named(&t.provider, &t.a, &[n]).await;
    let mut a_viewer = app.viewer(&t.a).await;
    let seen = ok(a_viewer.allocation.list_number_events(events(n)).await).events;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].operation, Op::Allocate as i32);
    let all = ok(admin.allocation.list_number_events(events(n)).await).events;
    assert_eq!(all.len(), 5);
    // B held it once, but holds it no more: it sees nothing, as if it did not exist.
    let mut b_viewer = app.viewer(&t.b).await;
    assert_error(
        b_viewer.allocation.list_number_events(events(n)).await,
        Code::PermissionDenied,
    );
    // What stood at a time outside one's scope is refused; inside it, answered.
    let in_b_since = all
        .iter()
        .find(|e| e.operation == Op::Assign as i32)
        .unwrap()
        .time;
    assert_error(
        a_viewer
            .allocation
            .get_number_state_at(state_at(n, in_b_since))
            .await,
        Code::PermissionDenied,
    );
    let in_b = ok(b_viewer
        .allocation
        .get_number_state_at(state_at(n, in_b_since))
        .await);
    assert_eq!(in_b.state.unwrap().holder_id, t.b.id);
}

#[tokio::test]
async fn a_token_whose_account_was_deleted_reads_no_state_at_any_time() {
    let (app, t, numbers, mut admin) = stocked(1).await;
    let n = &numbers[0];
    app.allocate_named(&t.provider, &t.b, &[n]).await;
    let in_b = ok(admin.allocation.list_number_events(events(n)).await).events[1].time;
    let mut b_viewer = app.viewer(&t.b).await;
    ok(b_viewer
        .allocation
        .get_number_state_at(state_at(n, in_b))
        .await);
    ok(admin
        .allocation
        .withdraw_numbers(withdraw(&t.b, named(&[n])))
        .await);
    ok(admin.tenancy.delete_account(delete_account(&t.b.id)).await);
    assert_error(
        b_viewer
            .allocation
            .get_number_state_at(state_at(n, in_b))
            .await,
        Code::PermissionDenied,
    );
}

#[tokio::test]
async fn after_a_release_the_returned_number_is_seen_only_from_the_owners_side() {
    let (app, t, numbers, _) = stocked(1).await;
    let n = &numbers[0];
    app.allocate_named(&t.provider, &t.a, &[n]).await;
    ok(app
        .admin(&t.a)
        .await
        .allocation
        .release_number(release(n))
        .await);
    let mut a_viewer = app.viewer(&t.a).await;
    assert_error(
        a_viewer
            .allocation
            .get_number_state_at(state_at(n, now()))
            .await,
        Code::PermissionDenied,
    );
    // Nor its history: the number has left A's view.
    assert_error(
        a_viewer.allocation.list_number_events(events(n)).await,
        Code::PermissionDenied,
    );
    let owner = ok(app
        .viewer(&t.provider)
        .await
        .allocation
        .get_number_state_at(state_at(n, now()))
        .await);
    let state = owner.state.unwrap();
    assert_eq!(state.status, pb::NumberStatus::Returned as i32);
    assert_eq!(state.holder_id, t.a.id);
    // Unbound and allocated to A again: A's history shows what it saw, never the RETURNED.
    ok(app.platform().allocation.unbind_number(unbind(n)).await);
    app.allocate_named(&t.provider, &t.a, &[n]).await;
    let seen = ok(a_viewer.allocation.list_number_events(events(n)).await).events;
    let ops: Vec<i32> = seen.iter().map(|e| e.operation).collect();
    assert_eq!(ops, [Op::Allocate as i32, Op::Allocate as i32]);
}

#[tokio::test]
async fn history_names_no_account_outside_the_readers_scope() {
    let (app, t, numbers, mut admin) = stocked(1).await;
    let n = &numbers[0];
    app.allocate_named(&t.provider, &t.b, &[n]).await;
    ok(admin
        .allocation
        .transfer_numbers(transfer(&t.b, &t.a, named(&[n])))
        .await);
    // The provider sees where the number came from, and who moved it.
    let all = ok(admin.allocation.list_number_events(events(n)).await).events;
    let moved = all.last().unwrap();
    assert_eq!(moved.operation, Op::Transfer as i32);
    assert_eq!(moved.before.as_ref().unwrap().holder_id, t.b.id);
    assert_eq!(moved.actor_account_id, t.provider.id);
    // A sees that it came, not from which sibling, nor which ancestor moved it.
    let mut a_viewer = app.viewer(&t.a).await;
    let seen = ok(a_viewer.allocation.list_number_events(events(n)).await).events;
    assert_eq!(seen.len(), 1);
    let came = &seen[0];
    assert_eq!(came.operation, Op::Transfer as i32);
    let before = came.before.as_ref().unwrap();
    assert_eq!(before.holder_id, "");
    assert_eq!(before.status, pb::NumberStatus::Available as i32);
    assert_eq!(came.after.as_ref().unwrap().holder_id, t.a.id);
    assert_eq!(came.actor_account_id, "");
    // GetNumberStateAt answers the same event the same way.
    let at = ok(a_viewer
        .allocation
        .get_number_state_at(state_at(n, came.time))
        .await);
    let event = at.event.unwrap();
    assert_eq!(event.before.unwrap().holder_id, "");
    assert_eq!(event.actor_account_id, "");
    assert_eq!(at.state.unwrap().holder_id, t.a.id);
}

#[tokio::test]
async fn an_e164_deleted_and_added_again_answers_for_the_number_that_carried_it_then() {
    let app = crate::helpers::spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut admin = app.admin(&provider).await;
    let first = app.add_number(&provider, "+13035550100").await;
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(20));
    pause().await;
    let while_first = now();
    ok(admin
        .number_pool
        .delete_number(crate::requests::delete_number(&first.id))
        .await);
    pause().await;
    let between = now();
    pause().await;
    let second = app.add_number(&provider, "+13035550100").await;
    assert_ne!(second.id, first.id);
    pause().await;

    let at = |time| state_at("+13035550100", time);
    let then = ok(admin.allocation.get_number_state_at(at(while_first)).await);
    assert_eq!(then.event.unwrap().number_id, first.id);
    assert_eq!(
        then.state.unwrap().status,
        pb::NumberStatus::Available as i32
    );
    let latest = ok(admin.allocation.get_number_state_at(at(now())).await);
    assert_eq!(latest.event.unwrap().number_id, second.id);
    // Between the two, no number carried it: the one carrying it now was not yet added.
    assert_violates(
        admin.allocation.get_number_state_at(at(between)).await,
        "NUMBER_NOT_YET_ADDED",
    );
}
