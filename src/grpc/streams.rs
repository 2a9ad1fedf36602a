//! What every stream obeys: it waits on its peer (a message from it, or room to send it one)
//! for at most the idle timeout, and ends when the drain's grace period is over. The answers
//! go out through an [`Outbox`], whose failure always reaches the caller as the stream's
//! status, after whatever was already queued: an export cut short never looks complete.

use std::future::Future;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::error::{Error, Result};

/// The rules of every stream.
#[derive(Clone)]
pub struct Streams {
    /// How long a stream may wait on its peer.
    pub idle_timeout: Duration,
    /// The most CSV one import may send.
    pub max_import_bytes: u64,
    /// How long a watch with nothing to send waits before it sends a heartbeat.
    pub watch_heartbeat: Duration,
    /// Turns true when the drain's grace period is over: every stream then ends.
    pub stop: watch::Receiver<bool>,
}

impl Streams {
    /// Rules that never stop a stream for a drain (tests, tools).
    pub fn new(idle_timeout: Duration, max_import_bytes: u64) -> Self {
        // The sender gone, the receiver keeps its last value: never stopping.
        let (_, stop) = watch::channel(false);
        Self {
            idle_timeout,
            max_import_bytes,
            watch_heartbeat: Duration::from_secs(10),
            stop,
        }
    }

    /// Waits on the peer (`waiting` says for what, in the status) for at most the idle timeout.
    pub async fn peer<F: Future>(&self, rpc: &str, waiting: &str, f: F) -> Result<F::Output> {
        tokio::select! {
            biased;
            _ = stopped(self.stop.clone()) => Err(stopping()),
            done = tokio::time::timeout(self.idle_timeout, f) => done.map_err(|_| {
                Error::DeadlineExceeded(format!(
                    "{rpc} waited {} s {waiting} and was ended: an idle stream may not hold the \
                     server's resources (the stream idle timeout, NUMBERING_STREAM_IDLE_TIMEOUT)",
                    self.idle_timeout.as_secs_f64()
                ))
            }),
        }
    }

    /// The messages of a client stream, each waited for at most the idle timeout; the stream
    /// ends after the error that ends it.
    pub fn incoming<S, T>(
        &self,
        rpc: &'static str,
        messages: S,
    ) -> impl Stream<Item = Result<std::result::Result<T, Status>>> + Send + Unpin + use<S, T>
    where
        S: Stream<Item = std::result::Result<T, Status>> + Send + Unpin + 'static,
        T: Send + 'static,
    {
        let rules = self.clone();
        futures::stream::unfold(Some(messages), move |messages| {
            let rules = rules.clone();
            async move {
                let mut messages = messages?;
                match rules
                    .peer(rpc, "for the caller's next message", messages.next())
                    .await
                {
                    Ok(Some(m)) => Some((Ok(m), Some(messages))),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), None)),
                }
            }
        })
        .boxed()
    }
}

/// Resolves when the drain's grace period is over; never, if no drain can come.
async fn stopped(mut stop: watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The drain's grace period is over.
fn stopping() -> Error {
    Error::Unavailable("the server is shutting down; the stream was ended".into())
}

/// Where a stream's producer puts its answers.
pub struct Outbox<T> {
    rpc: &'static str,
    items: mpsc::Sender<T>,
    failure: oneshot::Sender<Error>,
    rules: Streams,
}

/// A stream's producer side, and the answer stream for tonic: the items as `convert` makes
/// them, then the failure if there is one.
pub fn outbox<T, P>(
    rpc: &'static str,
    rules: &Streams,
    convert: fn(T) -> P,
) -> (
    Outbox<T>,
    BoxStream<'static, std::result::Result<P, Status>>,
)
where
    T: Send + 'static,
    P: Send + 'static,
{
    let (items, rx) = mpsc::channel(4);
    let (failure, failed) = oneshot::channel();
    let answers = ReceiverStream::new(rx)
        .map(move |item| Ok(convert(item)))
        .chain(
            futures::stream::once(failed)
                .filter_map(|f| async move { f.ok().map(|e| Err(Status::from(e))) }),
        )
        .boxed();
    let outbox = Outbox {
        rpc,
        items,
        failure,
        rules: rules.clone(),
    };
    (outbox, answers)
}

impl<T> Outbox<T> {
    /// Sends one item, waiting for the caller to make room for at most the idle timeout.
    pub async fn send(&self, item: T) -> Result<()> {
        self.rules
            .peer(
                self.rpc,
                "for the caller to read what it was sent",
                self.items.send(item),
            )
            .await?
            // The caller went away: nobody to tell.
            .map_err(|_| Error::Unavailable("the caller left".into()))
    }

    /// Sends an item only if there is room now (progress, which is only news).
    pub fn offer(&self, item: T) {
        let _ = self.items.try_send(item);
    }

    /// Ends the stream with `error` as its status, after what is queued.
    pub fn fail(self, error: Error) {
        let _ = self.failure.send(error);
    }

    /// Ends the stream at the drain's end even while the producer is busy elsewhere.
    pub async fn unless_stopped<F: Future<Output = Result<R>>, R>(&self, f: F) -> Result<R> {
        tokio::select! {
            biased;
            _ = stopped(self.rules.stop.clone()) => Err(stopping()),
            done = f => done,
        }
    }
}
