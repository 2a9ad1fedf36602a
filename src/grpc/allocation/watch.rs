//! WatchNumberEvents over gRPC: the request checked, then, on a task of its own counted among
//! the account's streams, pages of events read ([`crate::flows::watch`]) and sent one message
//! each with the cursor after it; a heartbeat (the cursor alone) when nothing was sent for a
//! while. New events are waited for on the LISTEN wake-ups (and at the latest until the next
//! heartbeat), never with a connection held.
//!
//! The stream's idle timeout bounds the *send* side only: a caller that does not read what it
//! was sent is ended, with the cursor to resume from; a watch with nothing to send is not idle.

use std::time::Duration;

use futures::stream::BoxStream;
use numbering_client::v1 as pb;
use tokio::sync::watch as signal;
use tokio::time::Instant;
use tonic::{Response, Status};

use crate::domain::event::{Cursor, Event, WatchEvents};
use crate::domain::principal::Principal;
use crate::error::{Error, Result};
use crate::flows::watch::Watch;
use crate::grpc::AppState;
use crate::grpc::convert::watch_to_proto;
use crate::grpc::streams::{Outbox, outbox};

type Answer = std::result::Result<
    Response<BoxStream<'static, std::result::Result<pb::WatchNumberEventsResponse, Status>>>,
    Status,
>;

/// One message: an event and the cursor after it, or a heartbeat's cursor alone.
type Message = (Option<Event>, Cursor);

/// WatchNumberEvents: the command, the caller's stream permit, the watch's start (scope,
/// snapshot), then the stream.
pub async fn start(
    state: AppState,
    principal: Principal,
    request: pb::WatchNumberEventsRequest,
) -> Answer {
    let command = WatchEvents::try_from(&request)?;
    let permit = state.limits.watches.try_acquire(&principal)?;
    // Subscribed before the start's snapshot: a commit after it wakes the first wait.
    let mut wakeups = state.db.wakeups();
    let watch = Watch::start(state.db.clone(), &principal, command).await?;
    let (outbox, answers) = outbox("WatchNumberEvents", &state.streams, watch_to_proto);
    let heartbeat = state.streams.watch_heartbeat;
    tokio::spawn(async move {
        let _permit = permit;
        let mut sent = watch.cursor().clone();
        if let Err(e) = run(watch, &outbox, &mut wakeups, heartbeat, &mut sent).await {
            outbox.fail(interrupted(e, &sent));
        }
    });
    Ok(Response::new(answers))
}

/// Reads and sends until something ends the watch; `sent` is the cursor of the last message
/// the caller was given.
async fn run(
    mut watch: Watch,
    outbox: &Outbox<Message>,
    wakeups: &mut signal::Receiver<u64>,
    heartbeat: Duration,
    sent: &mut Cursor,
) -> Result<()> {
    let mut last = Instant::now();
    loop {
        let page = outbox.unless_stopped(watch.next_page()).await?;
        if !page.is_empty() {
            for (event, cursor) in page {
                outbox.send((Some(event), cursor.clone())).await?;
                *sent = cursor;
            }
            last = Instant::now();
            continue;
        }
        if last.elapsed() >= heartbeat {
            let cursor = watch.cursor().clone();
            outbox.send((None, cursor.clone())).await?;
            *sent = cursor;
            last = Instant::now();
        }
        let due = last + heartbeat;
        outbox
            .unless_stopped(async {
                // Woken by a commit, or at the heartbeat: a lost LISTEN costs latency, not events.
                if let Ok(Err(_)) = tokio::time::timeout_at(due, wakeups.changed()).await {
                    tokio::time::sleep_until(due).await;
                }
                Ok(())
            })
            .await?;
    }
}

/// How a watch that could go on ends: with the cursor of the last message the caller was
/// given, so that it resumes there.
fn interrupted(e: Error, sent: &Cursor) -> Error {
    let description = match e {
        Error::DeadlineExceeded(why) => why,
        Error::Unavailable(why) => {
            tracing::warn!(error = %why, "a watch was interrupted");
            "the watch was interrupted (the server is stopping, or lost its database)".into()
        }
        other => return other,
    };
    Error::Interrupted {
        cursor: sent.encode(),
        description: format!("{description}; resume with the cursor of the ErrorInfo metadata"),
    }
}
