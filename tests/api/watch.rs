//! WatchNumberEvents and account events: every committed event once, in commit order per
//! number, across servers and reconnections and out-of-order commits; scope; heartbeats; a
//! consumer that does not read is ended with a cursor to resume from.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use numbering::server::Fairness;
use numbering_client::Clients;
use numbering_client::v1 as pb;
use pb::watch_number_events_response::EventKind;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{
    As, TestApp, assert_error, assert_invalid, fresh_database, ok, spawn_app, spawn_app_with,
    spawn_binary_on, token,
};
use crate::requests;

type Watching = tonic::Streaming<pb::WatchNumberEventsResponse>;

/// Long enough for anything on a loaded machine; only there so a broken watch fails, not hangs.
const PATIENCE: Duration = Duration::from_secs(90);

fn watch(account: &pb::Account) -> pb::WatchNumberEventsRequest {
    pb::WatchNumberEventsRequest {
        account_id: account.id.clone(),
        ..Default::default()
    }
}

fn resume(account: &pb::Account, cursor: &str) -> pb::WatchNumberEventsRequest {
    pb::WatchNumberEventsRequest {
        cursor: cursor.into(),
        ..watch(account)
    }
}

/// The next message that carries an event (heartbeats skipped).
async fn next_event(stream: &mut Watching) -> pb::WatchNumberEventsResponse {
    loop {
        let message = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("an event within the patience")
            .expect("the watch goes on")
            .expect("the watch is not over");
        if message.event_kind.is_some() {
            return message;
        }
    }
}

fn number_event(m: &pb::WatchNumberEventsResponse) -> &pb::NumberEvent {
    match &m.event_kind {
        Some(EventKind::Event(e)) => e,
        other => panic!("a number event, not {other:?}"),
    }
}

/// Every event of a number's history, oldest first.
async fn history(c: &mut Clients, number: &str) -> Vec<pb::NumberEvent> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = ok(c
            .allocation
            .list_number_events(requests::events_page(number, 1000, &token))
            .await);
        all.extend(page.events);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

/// The sequences of each number's events, as the history lists them, less the ADDs (made
/// before the watches start).
async fn expected(c: &mut Clients, numbers: &[String]) -> BTreeMap<String, Vec<i64>> {
    let mut by_number = BTreeMap::new();
    for n in numbers {
        let seqs = history(c, n)
            .await
            .into_iter()
            .filter(|e| e.operation != pb::NumberOperation::Add as i32)
            .map(|e| e.sequence)
            .collect();
        by_number.insert(n.clone(), seqs);
    }
    by_number
}

/// Reads number events until `total` have come; answers the sequences per E.164, in the order
/// they came.
async fn read_numbers(stream: &mut Watching, total: usize) -> BTreeMap<String, Vec<i64>> {
    let mut by_number: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for _ in 0..total {
        let m = next_event(stream).await;
        let e = number_event(&m);
        by_number
            .entry(e.e164.clone())
            .or_default()
            .push(e.sequence);
    }
    by_number
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watcher_sees_every_committed_event_once_in_commit_order_while_three_servers_write() {
    let db = fresh_database().await;
    let mut first = spawn_binary_on(db.clone(), &[]).await;
    let provider = first.provider("Acme").await;
    let second = spawn_binary_on(db.clone(), &[]).await;
    let third = spawn_binary_on(db.clone(), &[]).await;
    let fourth = spawn_binary_on(db.clone(), &[]).await;
    let adds: Vec<pb::AddNumberRequest> = (0..12)
        .map(|i| requests::add_number(&provider, &format!("+1303555{:04}", 100 + i)))
        .collect();
    let added = ok(first
        .clients
        .number_pool
        .batch_add_numbers(requests::add_numbers(&provider, adds, true))
        .await);
    let numbers: Vec<String> = added
        .results
        .iter()
        .filter_map(|r| r.number.as_ref().map(|n| n.e164.clone()))
        .collect();

    let mut watcher = fourth.clients.clone();
    let mut stream = ok(watcher
        .allocation
        .watch_number_events(watch(&provider))
        .await);

    // Three servers, two writers each, racing on the same twelve numbers: reservations and
    // assignments made and ended, many refused because another writer got there first.
    let mut writers = Vec::new();
    for (s, server) in [&first, &second, &third].into_iter().enumerate() {
        for w in 0..2 {
            let mut c = server.clients.clone();
            let numbers = numbers.clone();
            writers.push(tokio::spawn(async move {
                for k in 0..25usize {
                    let n = &numbers[(s * 5 + w * 3 + k * 7) % numbers.len()];
                    let _ = if k % 2 == 0 {
                        let who = format!("user:{s}{w}");
                        c.allocation
                            .reserve_number(requests::reserve(n, &who))
                            .await
                            .map(drop)
                    } else {
                        c.allocation
                            .unreserve_number(requests::unreserve(n))
                            .await
                            .map(drop)
                    };
                    let agent = requests::agent(&format!("{s}{w}{k}"), None);
                    let _ = c.allocation.assign_number(requests::assign(n, agent)).await;
                    let _ = c.allocation.unassign_number(requests::unassign(n)).await;
                }
            }));
        }
    }
    for w in writers {
        w.await.expect("a writer");
    }

    let expected = expected(&mut first.clients, &numbers).await;
    let total: usize = expected.values().map(Vec::len).sum();
    assert!(total > 50, "the writers changed numbers: {total} events");
    let seen = read_numbers(&mut stream, total).await;
    assert_eq!(
        seen, expected,
        "each number's events, once, in commit order"
    );
    for s in [first, second, third, fourth] {
        s.stop();
    }
}

#[tokio::test]
async fn a_watch_resumed_from_the_last_cursor_misses_nothing_and_repeats_nothing() {
    let app = spawn_app().await;
    let tree = app.tree().await;
    let numbers = app.add_numbers(&tree.provider, 10).await;
    let mut admin = app.admin(&tree.provider).await;
    let mut stream = ok(admin
        .allocation
        .watch_number_events(watch(&tree.provider))
        .await);
    let named: Vec<&str> = numbers.iter().map(String::as_str).collect();
    app.allocate_named(&tree.provider, &tree.a, &named[..5])
        .await;

    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..3 {
        let m = next_event(&mut stream).await;
        seen.push(number_event(&m).sequence);
        cursor = m.cursor;
    }
    drop(stream);
    for n in &named[5..] {
        app.reserve(n, "role:reception").await;
    }

    let mut resumed = ok(admin
        .allocation
        .watch_number_events(resume(&tree.provider, &cursor))
        .await);
    for _ in 0..7 {
        seen.push(number_event(&next_event(&mut resumed).await).sequence);
    }
    let all: Vec<i64> = expected(&mut admin, &numbers)
        .await
        .into_values()
        .flatten()
        .collect();
    let mut sorted = seen.clone();
    sorted.sort();
    let mut expected_sorted = all.clone();
    expected_sorted.sort();
    assert_eq!(sorted, expected_sorted, "no gap, no duplicate");
    let distinct: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), seen.len());
}

#[tokio::test]
async fn a_transaction_that_commits_after_a_later_sequence_still_reaches_a_resumed_watcher() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let early = app.add_number(&provider, "+13035550100").await;
    let late = app.add_number(&provider, "+13035550101").await;
    let mut admin = app.admin(&provider).await;
    let mut stream = ok(admin.allocation.watch_number_events(watch(&provider)).await);

    // A writer takes a sequence and holds its transaction open...
    let mut sql = app.connect_sql().await;
    let held = sql.transaction().await.expect("begin");
    let state = serde_json::json!({
        "holder_id": provider.id, "status": "available", "assignee": null, "reservation": null,
    });
    let path: String = held
        .query_one(
            "SELECT holder_path FROM numbers WHERE id = $1::text::uuid",
            &[&early.id],
        )
        .await
        .expect("the number")
        .get(0);
    let low: i64 = held
        .query_one(
            "INSERT INTO number_events (provider_id, number_id, e164, actor, operation,
                 holder_path, before, after)
             VALUES ($1::text::uuid, $2::text::uuid, $3, 'test:held', 'update', $4, $5, $5)
             RETURNING seq",
            &[&provider.id, &early.id, &early.e164, &path, &state],
        )
        .await
        .expect("an event in the held transaction")
        .get(0);
    // ...while another takes a later one and commits first.
    app.reserve(&late.e164, "role:reception").await;
    let first = next_event(&mut stream).await;
    assert!(number_event(&first).sequence > low);
    drop(stream);

    let mut resumed = ok(admin
        .allocation
        .watch_number_events(resume(&provider, &first.cursor))
        .await);
    held.commit().await.expect("commit the held transaction");
    let late_commit = next_event(&mut resumed).await;
    assert_eq!(number_event(&late_commit).sequence, low);
    assert_eq!(number_event(&late_commit).actor, "test:held");
}

#[tokio::test]
async fn a_siblings_events_never_appear_and_a_number_leaving_shows_only_what_the_watcher_sees() {
    let app = spawn_app().await;
    let tree = app.tree().await;
    let numbers = app.add_numbers(&tree.provider, 4).await;
    let mut a_admin = app.admin(&tree.a).await;
    let mut b_admin = app.admin(&tree.b).await;
    assert_error(
        b_admin.allocation.watch_number_events(watch(&tree.a)).await,
        Code::PermissionDenied,
    );
    let mut stream = ok(a_admin.allocation.watch_number_events(watch(&tree.a)).await);

    // The sibling's own business.
    app.allocate_named(&tree.provider, &tree.b, &[&numbers[0]])
        .await;
    app.assign(&numbers[0], requests::agent("b-7", None)).await;
    // Into the subtree, out of it to the sibling, and an account event below.
    app.allocate_named(&tree.provider, &tree.a, &[&numbers[1]])
        .await;
    let transfer = requests::transfer(&tree.a, &tree.b, requests::named(&[&numbers[1]]));
    ok(app.platform().allocation.transfer_numbers(transfer).await);
    app.suspend(&tree.b).await;
    app.set_quota(&tree.a1, 5).await;
    // The last one, so the test knows when everything before it has come.
    app.allocate_named(&tree.provider, &tree.a1, &[&numbers[2]])
        .await;

    let mut got = Vec::new();
    loop {
        let m = next_event(&mut stream).await;
        let last = matches!(&m.event_kind, Some(EventKind::Event(e)) if e.e164 == numbers[2]);
        got.push(m);
        if last {
            break;
        }
    }
    let text = format!("{got:?}");
    assert!(
        !text.contains(&tree.b.id),
        "the sibling is never named: {text}"
    );
    assert!(
        !text.contains(&numbers[0]),
        "the sibling's number never appears"
    );
    let ops: Vec<String> = got
        .iter()
        .map(|m| match &m.event_kind {
            Some(EventKind::Event(e)) => format!("{}:{}", e.e164, e.operation().as_str_name()),
            Some(EventKind::AccountEvent(e)) => {
                format!("{}:{}", e.account_id, e.operation().as_str_name())
            }
            None => unreachable!(),
        })
        .collect();
    assert_eq!(
        ops,
        [
            format!("{}:NUMBER_OPERATION_ALLOCATE", numbers[1]),
            format!("{}:NUMBER_OPERATION_TRANSFER", numbers[1]),
            format!("{}:ACCOUNT_OPERATION_CHANGE_QUOTA", tree.a1.id),
            format!("{}:NUMBER_OPERATION_ALLOCATE", numbers[2]),
        ]
    );
    let allocated = number_event(&got[0]);
    assert_eq!(
        allocated.before.as_ref().map(|s| s.holder_id.as_str()),
        Some("")
    );
    assert_eq!(
        allocated.after.as_ref().map(|s| s.holder_id.as_str()),
        Some(tree.a.id.as_str())
    );
    let moved_out = number_event(&got[1]);
    assert_eq!(
        moved_out.before.as_ref().map(|s| s.holder_id.as_str()),
        Some(tree.a.id.as_str())
    );
    let after = moved_out.after.as_ref().expect("the state after");
    assert_eq!(
        (after.holder_id.as_str(), after.status()),
        ("", pb::NumberStatus::Available)
    );
}

#[tokio::test]
async fn account_events_are_listed_with_actor_request_id_before_and_after_and_scoped() {
    let app = spawn_app().await;
    let tree = app.tree().await;
    let mut admin = app.admin(&tree.provider).await;
    let mut create = requests::create_account(&tree.a.id, "Night shift");
    create.request_id = "r-create".into();
    let shift = ok(admin.tenancy.create_account(create).await);
    let mut rename = requests::update_account(
        pb::Account {
            id: shift.id.clone(),
            display_name: "Late shift".into(),
            ..Default::default()
        },
        &["display_name"],
    );
    rename.request_id = "r-update".into();
    ok(admin.tenancy.update_account(rename).await);
    let mut quota = requests::set_quota(&shift.id, 7);
    quota.request_id = "r-quota".into();
    ok(admin.tenancy.update_account(quota).await);
    let mut suspend = requests::suspend(&shift.id);
    suspend.request_id = "r-suspend".into();
    ok(admin.tenancy.suspend_account(suspend).await);
    let mut resume = requests::resume(&shift.id);
    resume.request_id = "r-resume".into();
    ok(admin.tenancy.resume_account(resume).await);
    let delete = pb::DeleteAccountRequest {
        id: shift.id.clone(),
        request_id: "r-delete".into(),
        ..Default::default()
    };
    ok(admin.tenancy.delete_account(delete).await);

    let list = |account: &pb::Account, page_size, page_token: &str| pb::ListAccountEventsRequest {
        account_id: account.id.clone(),
        recursive: true,
        page_size,
        page_token: page_token.into(),
    };
    let mut viewer = app.viewer(&tree.a).await;
    let first = ok(viewer
        .tenancy
        .list_account_events(list(&tree.a, 4, ""))
        .await);
    let rest = ok(viewer
        .tenancy
        .list_account_events(list(&tree.a, 4, &first.next_page_token))
        .await);
    assert!(rest.next_page_token.is_empty());
    let events: Vec<pb::AccountEvent> = first
        .events
        .into_iter()
        .chain(rest.events)
        .filter(|e| e.account_id == shift.id)
        .collect();
    let summary: Vec<(pb::AccountOperation, &str)> = events
        .iter()
        .map(|e| (e.operation(), e.request_id.as_str()))
        .collect();
    use pb::AccountOperation as Op;
    assert_eq!(
        summary,
        [
            (Op::Create, "r-create"),
            (Op::Update, "r-update"),
            (Op::ChangeQuota, "r-quota"),
            (Op::Suspend, "r-suspend"),
            (Op::Resume, "r-resume"),
            (Op::Delete, "r-delete"),
        ]
    );
    let name = |a: &Option<pb::Account>| a.as_ref().map(|a| a.display_name.clone());
    let quota_of = |a: &Option<pb::Account>| a.as_ref().and_then(|a| a.max_numbers);
    let state = |a: &Option<pb::Account>| a.as_ref().map(|a| a.state());
    assert_eq!(
        (name(&events[0].before), name(&events[0].after)),
        (None, Some("Night shift".into()))
    );
    assert_eq!(name(&events[1].before), Some("Night shift".into()));
    assert_eq!(name(&events[1].after), Some("Late shift".into()));
    assert_eq!(
        (quota_of(&events[2].before), quota_of(&events[2].after)),
        (None, Some(7))
    );
    assert_eq!(state(&events[3].after), Some(pb::AccountState::Suspended));
    assert_eq!(state(&events[4].after), Some(pb::AccountState::Active));
    assert_eq!(
        (
            state(&events[5].before).is_some(),
            events[5].after.is_none()
        ),
        (true, true)
    );
    for e in &events {
        assert_eq!(e.actor, format!("test:{}", tree.provider.id));
        // The provider acted, above the viewer's scope: not named to it.
        assert_eq!(e.actor_account_id, "");
        assert!(e.time.is_some());
    }
    // The provider's admin sees who acted; a sibling sees nothing of it.
    let own = ok(admin
        .tenancy
        .list_account_events(list(&tree.a, 100, ""))
        .await);
    let own: Vec<&pb::AccountEvent> = own
        .events
        .iter()
        .filter(|e| e.account_id == shift.id)
        .collect();
    assert_eq!(own.len(), 6);
    assert!(own.iter().all(|e| e.actor_account_id == tree.provider.id));
    let mut sibling = app.admin(&tree.b).await;
    assert_error(
        sibling
            .tenancy
            .list_account_events(list(&tree.a, 100, ""))
            .await,
        Code::PermissionDenied,
    );
}

/// A watch client whose HTTP/2 windows are as small as HTTP/2 allows, so that a watch it
/// does not read stalls after a few dozen events.
async fn small_window_clients(app: &TestApp, who: As<'_>) -> Clients {
    let channel = tonic::transport::Endpoint::from_shared(app.endpoint.clone())
        .expect("endpoint")
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .expect("connect");
    numbering_client::with_channel(channel, Some(&token(who))).expect("clients")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_never_reads_is_ended_with_a_cursor_to_resume_from_and_holds_no_connection()
{
    // One pooled connection: a stalled watch that kept it would starve every other call past
    // the pool's wait (10 s), before its idle timeout (12 s) ends it.
    let app = spawn_app_with(
        1,
        Fairness {
            stream_idle_timeout: Duration::from_secs(12),
            watch_heartbeat: Duration::from_millis(200),
            max_watches_per_account: 1,
            ..Fairness::default()
        },
    )
    .await;
    let tree = app.tree().await;
    app.add_numbers(&tree.provider, 2000).await;
    let mut slow = small_window_clients(&app, As::Admin(&tree.provider.id)).await;
    let mut stream = ok(slow
        .allocation
        .watch_number_events(watch(&tree.provider))
        .await);
    app.allocate(&tree.provider, &tree.a, 2000).await;

    // The watch stalls on a full window; every other call is served meanwhile.
    let mut other = app.viewer(&tree.b).await;
    for _ in 0..20 {
        ok(other
            .tenancy
            .get_account(requests::get_account(&tree.b.id))
            .await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The watch is ended when its idle timeout passes: its place among the account's watches
    // (one) is free again.
    let probe = loop {
        match slow.allocation.watch_number_events(watch(&tree.b)).await {
            Ok(probe) => break probe,
            Err(s) if s.code() == Code::ResourceExhausted => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(s) => panic!("the probe watch starts: {s:?}"),
        }
    };
    drop(probe);

    // Read late: what was queued, then the status that ends the watch, with a cursor.
    let mut seen = BTreeSet::new();
    let mut last_cursor = String::new();
    let started = Instant::now();
    let status = loop {
        assert!(
            started.elapsed() < PATIENCE,
            "the stalled watch was never ended: {} events read",
            seen.len()
        );
        match tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("an answer")
        {
            Ok(Some(m)) => {
                if let Some(EventKind::Event(e)) = &m.event_kind {
                    assert!(seen.insert(e.sequence), "no duplicate");
                }
                last_cursor = m.cursor;
            }
            Ok(None) => panic!("a watch nobody reads is ended with a status, not completed"),
            Err(status) => break status,
        }
    };
    assert!(
        seen.len() < 2000,
        "the watch stalled: {} events came",
        seen.len()
    );
    let status = assert_error(Err::<(), _>(status), Code::Unavailable);
    let info = status.get_details_error_info().expect("an ErrorInfo");
    assert_eq!(info.reason, "WATCH_INTERRUPTED");
    assert_eq!(
        info.metadata["cursor"], last_cursor,
        "resume after the last message read"
    );
    assert!(status.get_details_retry_info().is_some());

    // Resumed from it, the rest comes, once.
    let mut resumed = loop {
        match slow
            .allocation
            .watch_number_events(resume(&tree.provider, &info.metadata["cursor"]))
            .await
        {
            Ok(s) => break s.into_inner(),
            // The probe's place is freed at its next heartbeat, which finds nobody listening.
            Err(s) if s.code() == Code::ResourceExhausted => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(s) => panic!("the watch resumes: {s:?}"),
        }
    };
    while seen.len() < 2000 {
        let m = next_event(&mut resumed).await;
        assert!(seen.insert(number_event(&m).sequence), "no duplicate");
    }
}

#[tokio::test]
async fn an_idle_watch_sends_heartbeats_whose_cursor_resumes() {
    let app = spawn_app_with(
        4,
        Fairness {
            watch_heartbeat: Duration::from_millis(300),
            ..Fairness::default()
        },
    )
    .await;
    let provider = app.provider("Acme").await;
    let number = app.add_number(&provider, "+13035550100").await;
    let mut admin = app.admin(&provider).await;
    let mut stream = ok(admin.allocation.watch_number_events(watch(&provider)).await);
    let heartbeat = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("a heartbeat")
        .expect("the watch goes on")
        .expect("a message");
    assert_eq!(heartbeat.event_kind, None);
    assert!(!heartbeat.cursor.is_empty());
    drop(stream);

    app.reserve(&number.e164, "role:reception").await;
    let mut resumed = ok(admin
        .allocation
        .watch_number_events(resume(&provider, &heartbeat.cursor))
        .await);
    let m = next_event(&mut resumed).await;
    assert_eq!(number_event(&m).operation(), pb::NumberOperation::Reserve);
}

#[tokio::test]
async fn a_watch_refuses_a_cursor_it_did_not_send_and_two_starting_points() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut admin = app.admin(&provider).await;
    assert_invalid(
        admin
            .allocation
            .watch_number_events(resume(&provider, "bm90IGEgY3Vyc29y"))
            .await,
        &["cursor"],
    );
    let both = pb::WatchNumberEventsRequest {
        after_sequence: 3,
        start_time: requests::a_day_ago(),
        operations: vec![99],
        ..watch(&provider)
    };
    assert_invalid(
        admin.allocation.watch_number_events(both).await,
        &["cursor", "operations[0]"],
    );
}

#[tokio::test]
async fn a_watch_from_a_sequence_or_a_time_starts_with_the_history_after_it() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let numbers = app.add_numbers(&provider, 3).await;
    let mut admin = app.admin(&provider).await;
    let adds = expected_adds(&mut admin, &numbers).await;
    let from_second = pb::WatchNumberEventsRequest {
        after_sequence: adds[0],
        operations: vec![pb::NumberOperation::Add as i32],
        ..watch(&provider)
    };
    let mut stream = ok(admin.allocation.watch_number_events(from_second).await);
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(number_event(&next_event(&mut stream).await).sequence);
    }
    assert_eq!(seen, adds[1..]);
    let since = pb::WatchNumberEventsRequest {
        start_time: requests::a_day_ago(),
        numbers: vec![numbers[2].clone()],
        ..watch(&provider)
    };
    let mut stream = ok(admin.allocation.watch_number_events(since).await);
    let added = history(&mut admin, &numbers[2]).await[0].sequence;
    assert_eq!(number_event(&next_event(&mut stream).await).sequence, added);
}

/// The sequences of the ADD events of these numbers, in order.
async fn expected_adds(c: &mut Clients, numbers: &[String]) -> Vec<i64> {
    let mut adds = Vec::new();
    for n in numbers {
        adds.extend(history(c, n).await.iter().map(|e| e.sequence));
    }
    adds.sort();
    adds
}
