//! The caller's gRPC deadline (`grpc-timeout`), read once for every call: put on the request as
//! a [`Deadline`] for the database (pool wait, statement timeout), and enforced on the answer,
//! which is DEADLINE_EXCEEDED when it passes.
//!
//! tonic enforces `grpc-timeout` too, outside every layer, answering CANCELLED; this layer's
//! timer is set a little earlier (and is polled first), so the caller reads DEADLINE_EXCEEDED.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::Status;

use crate::error::Error;
use crate::store::Deadline;

/// How much earlier than tonic's own timer this layer answers.
const AHEAD: Duration = Duration::from_millis(5);

/// `grpc-timeout` as the gRPC over HTTP/2 spec writes it: up to 8 digits and a unit.
pub fn parse_timeout(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n * 3600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[derive(Clone, Default)]
pub struct DeadlineLayer;

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadlined<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadlined(inner)
    }
}

#[derive(Clone)]
pub struct Deadlined<S>(S);

impl<S, B, R> tower::Service<http::Request<B>> for Deadlined<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let timeout = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_timeout);
        let Some(timeout) = timeout else {
            return Box::pin(self.0.call(request));
        };
        let start = Instant::now();
        request.extensions_mut().insert(Deadline(start + timeout));
        let call = self.0.call(request);
        let answer_by = start + timeout.saturating_sub(AHEAD.min(timeout / 2));
        Box::pin(async move {
            match tokio::time::timeout_at(answer_by.into(), call).await {
                Ok(answer) => answer,
                Err(_) => Ok(Status::from(Error::DeadlineExceeded(format!(
                    "the call's deadline (grpc-timeout {} ms) passed before it could finish; \
                     whatever it had started in the database was cancelled",
                    timeout.as_millis()
                )))
                .into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_are_read_in_every_unit() {
        assert_eq!(parse_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("10u"), Some(Duration::from_micros(10)));
        assert_eq!(parse_timeout("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "m", "123456789m", "12x", "-1S", "1.5S"] {
            assert_eq!(parse_timeout(bad), None, "{bad}");
        }
    }
}
