//! Faults of the weather, not of the caller: PostgreSQL restarting under load. Calls caught in
//! it answer UNAVAILABLE (which clients retry), never INTERNAL; no acknowledged move is lost;
//! and a retry with the same request id after the outage answers what was done, once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use numbering::embedded::EmbeddedPostgres;
use numbering_client::v1 as pb;
use tokio::sync::Mutex;
use tonic::Code;

use crate::helpers::spawn_app_on;
use crate::requests;

/// What the allocating callers saw.
#[derive(Default)]
struct Seen {
    /// Numbers whose allocation was acknowledged.
    acknowledged: BTreeSet<String>,
    /// Requests answered UNAVAILABLE, to retry with the same id.
    unavailable: Vec<pb::AllocateNumbersRequest>,
    /// Anything else, with its message.
    other: Vec<(Code, String)>,
}

fn start(dir: std::path::PathBuf) -> EmbeddedPostgres {
    EmbeddedPostgres::start(&dir, &[("fsync", "off")]).expect("start the private PostgreSQL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_under_load_answers_unavailable_and_loses_no_acknowledged_move() {
    let dir = tempfile::tempdir().expect("a directory");
    let data = dir.path().to_path_buf();
    let pg = tokio::task::spawn_blocking({
        let data = data.clone();
        move || start(data)
    })
    .await
    .expect("started");
    let (admin, conn) = pg
        .config("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    admin
        .batch_execute("CREATE DATABASE t")
        .await
        .expect("create");
    let config = pg.config("t");
    numbering::store::Db::new(config.clone(), 1)
        .expect("pool")
        .migrate()
        .await
        .expect("migrate");
    let app = spawn_app_on(config.clone()).await;
    let provider = app.provider("Acme").await;
    let team = app.child(&provider, "Team").await;
    app.add_numbers(&provider, 5000).await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (mut c, seen, stop) = (app.platform(), seen.clone(), stop.clone());
            let (provider, team) = (provider.clone(), team.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let mut request = requests::allocate_quantity(&provider, &team, 1);
                    request.request_id = uuid::Uuid::new_v4().to_string();
                    let answer = c.allocation.allocate_numbers(request.clone()).await;
                    let mut seen = seen.lock().await;
                    match answer {
                        Ok(r) => seen
                            .acknowledged
                            .extend(r.into_inner().numbers.into_iter().map(|n| n.e164)),
                        Err(s) if s.code() == Code::Unavailable => seen.unavailable.push(request),
                        Err(s) => seen.other.push((s.code(), s.message().to_string())),
                    }
                    drop(seen);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();

    // Let the load run, then restart PostgreSQL under it.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = seen.lock().await.acknowledged.len();
    let pg = tokio::task::spawn_blocking(move || {
        let mut pg = pg;
        pg.stop();
        std::thread::sleep(Duration::from_millis(700));
        drop(pg);
        start(data)
    })
    .await
    .expect("restarted");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.await.expect("a caller");
    }

    let mut seen = Arc::try_unwrap(seen)
        .ok()
        .expect("callers done")
        .into_inner();
    assert!(before > 0, "nothing was allocated before the restart");
    assert!(
        seen.acknowledged.len() > before,
        "nothing was allocated after the restart: the server did not recover"
    );
    assert!(
        !seen.unavailable.is_empty(),
        "no call met the outage: the test proves nothing"
    );
    assert!(
        seen.other.is_empty(),
        "calls met by the outage must answer UNAVAILABLE: {} did not, such as {:?}",
        seen.other.len(),
        seen.other.iter().take(3).collect::<Vec<_>>()
    );

    // A retry with the same request id answers what was done (the first answer, if the move
    // committed before the connection broke), and never moves a second number.
    let mut c = app.platform();
    for request in std::mem::take(&mut seen.unavailable) {
        let answer = c
            .allocation
            .allocate_numbers(request)
            .await
            .expect("a retry after the outage");
        seen.acknowledged
            .extend(answer.into_inner().numbers.into_iter().map(|n| n.e164));
    }
    let (sql, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect after the restart");
    tokio::spawn(conn);
    let held: BTreeSet<String> = sql
        .query(
            "SELECT e164 FROM numbers WHERE holder_id = $1",
            &[&uuid::Uuid::parse_str(&team.id).expect("an id")],
        )
        .await
        .expect("read the team's numbers")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        held, seen.acknowledged,
        "the team holds exactly the numbers acknowledged to its callers"
    );
    drop(pg);
}
