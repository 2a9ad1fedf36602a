//! Fairness: no caller can starve another. Streams hold no database connection while they
//! wait on their peer, idle streams end, each account has its own share of streams and
//! expensive calls, the caller's deadline reaches the database, and a drain ends.

use std::time::{Duration, Instant};

use futures::StreamExt;
use numbering::server::Fairness;
use numbering_client::Clients;
use numbering_client::v1 as pb;
use pb::import_numbers_request::Part;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{
    As, TestApp, assert_error, connect_config, ok, spawn_app_with, spawn_binary, token,
};
use crate::requests::{export, get_account, update_account};

/// The options of an import into `owner`, then silence.
async fn idle_import(
    c: &mut Clients,
    owner: &pb::Account,
) -> Result<tonic::Streaming<pb::ImportNumbersResponse>, tonic::Status> {
    let options = pb::ImportNumbersRequest {
        part: Some(Part::Options(pb::ImportOptions {
            owner_id: owner.id.clone(),
            mode: pb::ImportMode::BestEffort as i32,
            region: "US".into(),
            request_id: String::new(),
        })),
    };
    let messages = futures::stream::iter([options]).chain(futures::stream::pending());
    c.number_pool
        .import_numbers(messages)
        .await
        .map(|r| r.into_inner())
}

/// Imports `count` numbers into `holder`, in the pool of its provider `owner`.
async fn stock(app: &TestApp, owner: &pb::Account, holder: &pb::Account, count: u64) {
    stock_from(app, owner, holder, 2_000_000, count).await
}

/// [`stock`] from +1 303 `first` upwards.
async fn stock_from(
    app: &TestApp,
    owner: &pb::Account,
    holder: &pb::Account,
    first: u64,
    count: u64,
) {
    let csv = format!("e164,holder_id\n{}", rows(owner, holder, first, count));
    let mut messages = vec![pb::ImportNumbersRequest {
        part: Some(Part::Options(pb::ImportOptions {
            owner_id: owner.id.clone(),
            mode: pb::ImportMode::AllOrNothing as i32,
            region: "US".into(),
            request_id: String::new(),
        })),
    }];
    messages.extend(
        csv.as_bytes()
            .chunks(1 << 20)
            .map(|c| pb::ImportNumbersRequest {
                part: Some(Part::Chunk(c.to_vec())),
            }),
    );
    let mut answers = ok(app
        .platform()
        .number_pool
        .import_numbers(futures::stream::iter(messages))
        .await);
    while let Some(answer) = answers.message().await.expect("the import runs") {
        if let Some(pb::import_numbers_response::Part::Result(r)) = answer.part {
            assert_eq!(r.rows_imported, count as i64);
            return;
        }
    }
    panic!("the import ended without a result");
}

/// CSV rows of the numbers from +1 303 `first` upwards, held by `holder`.
fn rows(owner: &pb::Account, holder: &pb::Account, first: u64, count: u64) -> String {
    let holder = if holder.id == owner.id {
        ""
    } else {
        &holder.id
    };
    (0..count)
        .map(|i| format!("+1303{:07},{holder}\n", first + i))
        .collect()
}

/// Sessions on the server's database that have sat inside a transaction doing nothing for
/// more than 200 ms: a stream holding one. The sweeper's short transactions (every 100 ms in
/// tests) pass through that state for a moment between their statements and are not counted.
async fn idle_in_transaction(sql: &tokio_postgres::Client) -> i64 {
    sql.query_one(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND state = 'idle in transaction'
           AND state_change < clock_timestamp() - interval '200 milliseconds'",
        &[],
    )
    .await
    .expect("pg_stat_activity")
    .get(0)
}

/// Statements of other sessions still waiting on a lock.
async fn waiting_on_locks(sql: &tokio_postgres::Client) -> i64 {
    sql.query_one(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND wait_event_type = 'Lock'",
        &[],
    )
    .await
    .expect("pg_stat_activity")
    .get(0)
}

/// Polls `count` until it is zero, for at most `within`; answers the last count.
async fn settles<F, Fut>(within: Duration, mut count: F) -> i64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let start = Instant::now();
    loop {
        let n = count().await;
        if n == 0 || start.elapsed() > within {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn fast(idle: Duration) -> Fairness {
    Fairness {
        stream_idle_timeout: idle,
        ..Fairness::default()
    }
}

#[tokio::test]
async fn idle_streams_of_two_tenants_leave_a_third_tenants_calls_fast() {
    // A pool of 8: on the old code, 8 idle streams were enough to take it all.
    let app = spawn_app_with(8, Fairness::default()).await;
    let first = app.provider("First").await;
    let sub = app.child(&first, "Sub").await;
    // Larger than HTTP/2's windows and the server's buffers: an export nobody reads stalls.
    stock(&app, &first, &sub, 30_000).await;
    let second = app.provider("Second").await;
    let third = app.provider("Third").await;

    let mut viewer = app.viewer(&sub).await;
    let mut exports = Vec::new();
    for _ in 0..16 {
        exports.push(viewer.number_pool.export_numbers(export()).await);
    }
    let mut admin = app.admin(&second).await;
    let mut imports = Vec::new();
    for _ in 0..16 {
        imports.push(idle_import(&mut admin, &second).await);
    }

    let mut third_admin = app.admin(&third).await;
    let mut latencies = Vec::new();
    for _ in 0..100 {
        let start = Instant::now();
        let answer = third_admin
            .tenancy
            .get_account(get_account(&third.id))
            .await;
        latencies.push(start.elapsed());
        assert_eq!(ok(answer).id, third.id);
    }
    latencies.sort();
    let p99 = latencies[98];
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");
    drop((exports, imports));
}

#[tokio::test]
async fn an_account_past_its_stream_limit_is_told_when_to_retry() {
    let app = spawn_app_with(8, Fairness::default()).await;
    let first = app.provider("First").await;
    let other = app.provider("Other").await;
    let mut admin = app.admin(&first).await;
    let mut open = Vec::new();
    for _ in 0..Fairness::default().max_streams_per_account {
        open.push(
            idle_import(&mut admin, &first)
                .await
                .expect("within the limit"),
        );
    }

    let refused = assert_error(
        admin.number_pool.export_numbers(export()).await,
        Code::ResourceExhausted,
    );
    let retry = refused.get_details_retry_info().expect("a RetryInfo");
    assert!(retry.retry_delay.is_some_and(|d| d > Duration::ZERO));
    let quota = refused.get_details_quota_failure().expect("a QuotaFailure");
    assert_eq!(quota.violations[0].subject, "max-streams-per-account");
    let info = refused.get_details_error_info().expect("an ErrorInfo");
    assert_eq!(info.reason, "LIMIT_EXCEEDED");
    assert_eq!(info.metadata["limit"], "max-streams-per-account");

    // Another account's share is its own.
    let mut other_admin = app.admin(&other).await;
    ok(other_admin.number_pool.export_numbers(export()).await);
    drop(open);
}

#[tokio::test]
async fn an_account_past_its_expensive_call_limit_is_refused_while_others_are_served() {
    let app = spawn_app_with(
        8,
        Fairness {
            max_expensive_per_account: 1,
            ..Fairness::default()
        },
    )
    .await;
    let first = app.provider("First").await;
    let other = app.provider("Other").await;
    let target = app.child(&first, "Team").await;
    app.set_quota(&target, 10_000).await;
    stock(&app, &first, &first, 600).await;
    // A large move that waits on the lock of its target's quota stays in flight, holding the
    // account's one place.
    let lock = app.connect_sql().await;
    lock.batch_execute(&format!(
        "BEGIN; SELECT 1 FROM accounts WHERE id = '{}' FOR UPDATE",
        target.id
    ))
    .await
    .unwrap();
    let mut admin = app.admin(&first).await;
    let mut mover = admin.clone();
    let (from, to) = (first.clone(), target.clone());
    let in_flight = tokio::spawn(async move {
        mover
            .allocation
            .allocate_numbers(crate::requests::allocate_quantity(&from, &to, 500))
            .await
    });
    let waiting = settles(Duration::from_secs(10), || async {
        1 - waiting_on_locks(&app.sql).await.min(1)
    })
    .await;
    assert_eq!(waiting, 0, "the move never waited on the lock");
    let refused = admin
        .number_pool
        .search_available_numbers(pb::SearchAvailableNumbersRequest {
            holder_id: first.id.clone(),
            ..Default::default()
        })
        .await;
    let refused = assert_error(refused, Code::ResourceExhausted);
    assert!(refused.get_details_retry_info().is_some());
    assert_eq!(
        refused.get_details_quota_failure().unwrap().violations[0].subject,
        "max-expensive-calls-per-account"
    );
    let mut other_admin = app.admin(&other).await;
    ok(other_admin
        .number_pool
        .search_available_numbers(pb::SearchAvailableNumbersRequest {
            holder_id: other.id.clone(),
            ..Default::default()
        })
        .await);
    lock.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(ok(in_flight.await.unwrap()).numbers.len(), 500);
}

#[tokio::test]
async fn an_import_that_goes_quiet_is_ended_and_holds_nothing() {
    let app = spawn_app_with(2, fast(Duration::from_secs(1))).await;
    let provider = app.provider("Acme").await;
    let mut admin = app.admin(&provider).await;
    let mut answers = idle_import(&mut admin, &provider).await.expect("open");

    let ended = tokio::time::timeout(Duration::from_secs(20), answers.message())
        .await
        .expect("the idle import is ended by the server");
    let status = assert_error(ended, Code::DeadlineExceeded);
    assert!(
        status.message().contains("ImportNumbers waited 1 s"),
        "{}",
        status.message()
    );
    assert_eq!(idle_in_transaction(&app.sql).await, 0);
    // Both connections of the pool are there for the next caller.
    for _ in 0..4 {
        ok(admin.tenancy.get_account(get_account(&provider.id)).await);
    }
}

#[tokio::test]
async fn an_export_nobody_reads_is_ended_and_never_looks_complete() {
    let app = spawn_app_with(2, fast(Duration::from_secs(1))).await;
    let provider = app.provider("Acme").await;
    let sub = app.child(&provider, "Sub").await;
    stock(&app, &provider, &sub, 30_000).await;
    let mut viewer = app.viewer(&sub).await;
    let mut stream = ok(viewer.number_pool.export_numbers(export()).await);
    // While the caller does not read, the export holds no connection.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(idle_in_transaction(&app.sql).await, 0);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut rows = 0;
    let end = loop {
        match stream.message().await {
            Ok(Some(part)) => rows += part.chunk.iter().filter(|b| **b == b'\n').count(),
            Ok(None) => break Ok(()),
            Err(s) => break Err(s),
        }
    };
    let status = assert_error(end, Code::DeadlineExceeded);
    assert!(status.message().contains("ExportNumbers waited 1 s"));
    assert!(rows < 30_000, "{rows} rows");
}

#[tokio::test]
async fn the_callers_deadline_cancels_its_statements_in_the_database() {
    let app = spawn_app_with(4, Fairness::default()).await;
    let provider = app.provider("Acme").await;
    let lock = app.connect_sql().await;
    lock.batch_execute(&format!(
        "BEGIN; SELECT 1 FROM accounts WHERE id = '{}' FOR UPDATE",
        provider.id
    ))
    .await
    .unwrap();

    let mut renamed = provider.clone();
    renamed.display_name = "Renamed".into();
    let mut request = tonic::Request::new(update_account(renamed, &["display_name"]));
    request.set_timeout(Duration::from_millis(300));
    let mut admin = app.admin(&provider).await;
    let answer = admin.tenancy.update_account(request).await;
    let status = assert_error(answer, Code::DeadlineExceeded);
    assert!(
        status.message().contains("deadline"),
        "{}",
        status.message()
    );

    // PostgreSQL itself cancelled the statement waiting on the lock.
    let left = settles(Duration::from_secs(5), || waiting_on_locks(&app.sql)).await;
    assert_eq!(
        left, 0,
        "a statement still waits for a caller that has gone"
    );
    lock.batch_execute("ROLLBACK").await.unwrap();
    let now = ok(admin.tenancy.get_account(get_account(&provider.id)).await);
    assert_eq!(now.display_name, provider.display_name);
}

#[tokio::test]
async fn a_statement_no_deadline_bounds_stops_at_the_servers_statement_timeout() {
    let mut server = spawn_binary(&[("NUMBERING_STATEMENT_TIMEOUT", "1".into())]).await;
    let provider = server.provider("Acme").await;
    let lock = connect_config(&server.database).await;
    lock.batch_execute(&format!(
        "BEGIN; SELECT 1 FROM accounts WHERE id = '{}' FOR UPDATE",
        provider.id
    ))
    .await
    .unwrap();

    // No grpc-timeout: only the server's backstop ends the wait on the lock.
    let mut renamed = provider.clone();
    renamed.display_name = "Renamed".into();
    let started = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        server
            .clients
            .tenancy
            .update_account(update_account(renamed, &["display_name"])),
    )
    .await
    .expect("the call ends on its own");
    assert_error(answer, Code::DeadlineExceeded);
    assert!(started.elapsed() < Duration::from_secs(15));
    let sql = connect_config(&server.database).await;
    assert_eq!(waiting_on_locks(&sql).await, 0);
    lock.batch_execute("ROLLBACK").await.unwrap();
    let _ = server.process.kill();
    let _ = server.process.wait();
}

#[tokio::test]
async fn sigterm_finishes_a_call_in_flight_then_ends_an_idle_import_after_the_grace() {
    let grace = Duration::from_secs(2);
    let mut server = spawn_binary(&[
        ("NUMBERING_SHUTDOWN_GRACE", "2".into()),
        ("NUMBERING_STREAM_IDLE_TIMEOUT", "120".into()),
    ])
    .await;
    let provider = server.provider("Acme").await;
    let mut admin = numbering_client::connect(
        server.endpoint.clone(),
        Some(&token(As::Admin(&provider.id))),
    )
    .await
    .expect("connect");
    let mut import = idle_import(&mut admin, &provider).await.expect("open");

    // A unary call in flight: it waits on a row lock the test holds.
    let lock = connect_config(&server.database).await;
    lock.batch_execute(&format!(
        "BEGIN; SELECT 1 FROM accounts WHERE id = '{}' FOR UPDATE",
        provider.id
    ))
    .await
    .unwrap();
    let mut renamed = provider.clone();
    renamed.display_name = "Renamed".into();
    let mut caller = admin.clone();
    let in_flight = tokio::spawn(async move {
        caller
            .tenancy
            .update_account(update_account(renamed, &["display_name"]))
            .await
    });
    let sql = connect_config(&server.database).await;
    for _ in 0..100 {
        if waiting_on_locks(&sql).await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let pid = server.process.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let sent = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.batch_execute("ROLLBACK").await.unwrap();
    let finished = in_flight.await.expect("task");
    assert_eq!(ok(finished).display_name, "Renamed");

    let ended = tokio::time::timeout(Duration::from_secs(30), import.message())
        .await
        .expect("the import is ended at the end of the grace period");
    assert_error(ended, Code::Unavailable);

    let mut exited = None;
    while sent.elapsed() < grace + Duration::from_secs(10) {
        if let Some(status) = server.process.try_wait().expect("wait") {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = sent.elapsed();
    let exited = exited.unwrap_or_else(|| {
        let _ = server.process.kill();
        panic!("still running {took:?} after SIGTERM");
    });
    assert!(exited.success(), "{exited:?}");
    assert!(took >= grace, "the grace period was not given: {took:?}");
}

/// Reads a stream to its end; false when it was refused for the account's stream limit.
async fn read_all<T>(call: Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>) -> bool {
    match call {
        Ok(answers) => {
            let mut answers = answers.into_inner();
            while let Ok(Some(_)) = answers.message().await {}
            true
        }
        Err(s) => {
            assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
            false
        }
    }
}

/// Allocations of one number at a time from `from` to `to` by 8 callers for `period`.
async fn allocations(c: &Clients, from: &pb::Account, to: &pb::Account, period: Duration) -> u64 {
    let start = Instant::now();
    let workers = (0..8).map(|_| {
        let (mut c, from, to) = (c.clone(), from.clone(), to.clone());
        tokio::spawn(async move {
            let mut done = 0;
            while start.elapsed() < period {
                let moved = c
                    .allocation
                    .allocate_numbers(crate::requests::allocate_quantity(&from, &to, 1))
                    .await;
                done += u64::from(moved.is_ok());
            }
            done
        })
    });
    futures::future::join_all(workers)
        .await
        .into_iter()
        .map(|n| n.unwrap_or(0))
        .sum()
}

/// The load test, run by hand (see the README): one tenant keeps 64 exports and imports going
/// while another allocates; the second keeps at least 70% of the pace it has alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn load_a_tenants_allocations_keep_their_pace_while_another_runs_64_streams() {
    let period = Duration::from_secs(
        std::env::var("LOAD_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10),
    );
    let streams = std::env::var("LOAD_STREAMS_PER_ACCOUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(Fairness::default().max_streams_per_account);
    let app = spawn_app_with(
        16,
        Fairness {
            max_streams_per_account: streams,
            ..Fairness::default()
        },
    )
    .await;
    let victim = app.provider("Victim").await;
    let team = app.child(&victim, "Team").await;
    stock_from(&app, &victim, &victim, 2_000_000, 50_000).await;
    let abuser = app.provider("Abuser").await;
    stock_from(&app, &abuser, &abuser, 3_000_000, 5_000).await;
    let victim_admin = app.admin(&victim).await;

    let alone = allocations(&victim_admin, &victim, &team, period).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let abuser_admin = app.admin(&abuser).await;
    let csv = format!(
        "e164,holder_id\n{}",
        rows(&abuser, &abuser, 4_000_000, 2_000)
    );
    let abuse = (0..64).map(|i| {
        let (mut c, stop, abuser, csv) = (
            abuser_admin.clone(),
            stop.clone(),
            abuser.clone(),
            csv.clone(),
        );
        tokio::spawn(async move {
            let (mut ran, mut refused) = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let result = if i % 2 == 0 {
                    read_all(c.number_pool.export_numbers(export()).await).await
                } else {
                    let messages = [
                        pb::ImportNumbersRequest {
                            part: Some(Part::Options(pb::ImportOptions {
                                owner_id: abuser.id.clone(),
                                mode: pb::ImportMode::ValidateOnly as i32,
                                region: "US".into(),
                                request_id: String::new(),
                            })),
                        },
                        pb::ImportNumbersRequest {
                            part: Some(Part::Chunk(csv.clone().into_bytes())),
                        },
                    ];
                    let call = c
                        .number_pool
                        .import_numbers(futures::stream::iter(messages));
                    read_all(call.await).await
                };
                if result {
                    ran += 1;
                } else {
                    {
                        refused += 1;
                        // Told to retry in a second; an abuser retries sooner.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (ran, refused)
        })
    });
    let abuse: Vec<_> = abuse.collect();
    let under = allocations(&victim_admin, &victim, &team, period).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ran, mut refused) = (0, 0);
    for a in futures::future::join_all(abuse).await {
        let (r, f) = a.unwrap_or((0, 0));
        ran += r;
        refused += f;
    }
    let ratio = under as f64 / alone.max(1) as f64;
    println!(
        "allocations in {period:?}: alone {alone} ({:.0}/s), under 64 abusive streams {under} \
         ({:.0}/s): {:.0}%; the abuser's streams: {ran} ran, {refused} refused",
        alone as f64 / period.as_secs_f64(),
        under as f64 / period.as_secs_f64(),
        ratio * 100.0
    );
    assert!(ratio >= 0.7, "{:.0}% of the pace alone", ratio * 100.0);
}
