//! One structured log line and the call metrics per call, from a tower layer around every
//! service: method, canonical gRPC code, latency, the caller's subject and account, the request
//! id (`x-request-id`, honoured or generated, and returned in the response metadata) and the
//! trace id (W3C `traceparent`, honoured or generated).
//!
//! A call ends when its response body ends (its trailers carry the code of a successful call or
//! a stream's), or when the body is dropped before (the caller went away: CANCELLED), so the
//! line, the latency and the in-flight count cover a whole stream, not only its headers.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http::HeaderValue;
use http_body::{Body, Frame, SizeHint};
use uuid::Uuid;

use crate::metrics::UNKNOWN_METHOD;

/// The request-id header, read and answered.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The longest `x-request-id` honoured; a longer (or unprintable) one is replaced.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// The canonical name of a gRPC code, as the gRPC spec and other servers write it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The caller's `x-request-id` when it is printable ASCII of at most
/// [`MAX_REQUEST_ID_BYTES`]; otherwise a new UUID.
pub fn request_id(header: Option<&HeaderValue>) -> String {
    header
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_REQUEST_ID_BYTES
                && v.bytes().all(|b| b.is_ascii_graphic())
        })
        .map_or_else(|| Uuid::new_v4().to_string(), str::to_string)
}

/// The trace id of a valid W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, neither id all
/// zeros); otherwise a new random one.
pub fn trace_id(header: Option<&HeaderValue>) -> String {
    caller_trace_id(header).unwrap_or_else(new_trace_id)
}

fn caller_trace_id(header: Option<&HeaderValue>) -> Option<String> {
    header
        .and_then(|v| v.to_str().ok())
        .and_then(parse_traceparent)
}

fn new_trace_id() -> String {
    Uuid::new_v4().simple().to_string()
}

fn parse_traceparent(value: &str) -> Option<String> {
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    // Version 00 has exactly four parts; a later version may add more after them.
    if (version == "00" && parts.next().is_some()) || version == "ff" {
        return None;
    }
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    (hex(version, 2) && hex(trace, 32) && hex(parent, 16) && hex(flags, 2))
        .then_some(())
        .filter(|()| !zero(trace) && !zero(parent))
        .map(|()| trace.to_string())
}

/// Where the authentication interceptor, deep inside the service, leaves the caller for the
/// layer's log line: the request's extensions reach the interceptor, not back out.
#[derive(Clone, Default)]
pub struct CallerSlot(Arc<OnceLock<(String, Option<Uuid>)>>);

impl CallerSlot {
    /// Sets the caller's subject and account (the first time only).
    pub fn set(&self, subject: &str, account: Option<Uuid>) {
        let _ = self.0.set((subject.to_string(), account));
    }

    fn get(&self) -> (String, String) {
        match self.0.get() {
            Some((subject, account)) => (
                subject.clone(),
                account.map(|a| a.to_string()).unwrap_or_default(),
            ),
            None => (String::new(), String::new()),
        }
    }
}

/// The request id and trace id of a call, in its request's extensions.
#[derive(Clone, Debug)]
pub struct CallIds {
    pub request_id: String,
    pub trace_id: String,
}

/// The layer: one log line and the call metrics per call. `known` are the served methods'
/// paths; any other path is counted as [`UNKNOWN_METHOD`].
#[derive(Clone, Default)]
pub struct ObserveLayer {
    known: Arc<HashSet<String>>,
}

impl ObserveLayer {
    pub fn new(known: HashSet<String>) -> Self {
        Self {
            known: Arc::new(known),
        }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observed(inner, self.known.clone())
    }
}

#[derive(Clone)]
pub struct Observed<S>(S, Arc<HashSet<String>>);

impl<S, B, R> tower::Service<http::Request<B>> for Observed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<ObservedBody<R>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let label = if self.1.contains(path) {
            path.to_string()
        } else {
            UNKNOWN_METHOD.to_string()
        };
        let method = crate::error::bounded(path, crate::error::MAX_ECHO_BYTES);
        let given = caller_trace_id(request.headers().get("traceparent"));
        let traced = given.is_some();
        let ids = CallIds {
            request_id: request_id(request.headers().get(REQUEST_ID_HEADER)),
            trace_id: given.unwrap_or_else(new_trace_id),
        };
        let caller = CallerSlot::default();
        request.extensions_mut().insert(caller.clone());
        let mut call = Call {
            method,
            label,
            ids,
            caller,
            start: Instant::now(),
            code: None,
            done: false,
        };
        call.started();
        // The service readied is this one; a clone takes its place for the next call. The
        // inner call is made in the returned future, so it runs inside the call's span (tonic
        // enters it when it polls the future), where the interceptor records the caller.
        let clone = self.0.clone();
        let mut inner = std::mem::replace(&mut self.0, clone);
        Box::pin(async move {
            let span = tracing::Span::current();
            // Without a caller's trace, an exported call starts one: the line names that trace.
            if !traced && let Some(exported) = crate::telemetry::current_trace_id() {
                call.ids.trace_id = exported;
            }
            request.extensions_mut().insert(call.ids.clone());
            span.record("request_id", call.ids.request_id.as_str());
            span.record("trace_id", call.ids.trace_id.as_str());
            let value = HeaderValue::from_str(&call.ids.request_id).ok();
            match inner.call(request).await {
                Ok(response) => {
                    let (mut parts, body) = response.into_parts();
                    if let Some(v) = value {
                        parts.headers.insert(REQUEST_ID_HEADER, v);
                    }
                    // A failed call answers with its status in the headers (trailers-only).
                    call.code = status_of(&parts.headers);
                    Ok(http::Response::from_parts(
                        parts,
                        ObservedBody {
                            inner: Box::pin(body),
                            call,
                        },
                    ))
                }
                Err(e) => {
                    call.code = Some(tonic::Code::Unknown);
                    call.finish();
                    Err(e)
                }
            }
        })
    }
}

fn status_of(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from)
}

/// One call being answered: logged and counted once, when it ends.
struct Call {
    method: String,
    label: String,
    ids: CallIds,
    caller: CallerSlot,
    start: Instant,
    code: Option<tonic::Code>,
    done: bool,
}

impl Call {
    fn started(&self) {
        metrics::counter!("grpc_server_started_total", "method" => self.label.clone()).increment(1);
        metrics::gauge!("grpc_server_in_flight", "method" => self.label.clone()).increment(1);
    }

    fn finish(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let code = self.code.unwrap_or(tonic::Code::Cancelled);
        let name = code_name(code);
        let elapsed = self.start.elapsed();
        let label = self.label.clone();
        metrics::gauge!("grpc_server_in_flight", "method" => label.clone()).decrement(1);
        metrics::counter!("grpc_server_handled_total", "method" => label.clone(), "code" => name)
            .increment(1);
        metrics::histogram!("grpc_server_handling_seconds", "method" => label)
            .record(elapsed.as_secs_f64());
        let (subject, account) = self.caller.get();
        let latency_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
        let (method, request_id, trace_id) = (
            self.method.as_str(),
            self.ids.request_id.as_str(),
            self.ids.trace_id.as_str(),
        );
        // The server's own failures stand out; what a caller did wrong is an ordinary answer.
        use tonic::Code::*;
        if matches!(code, Unknown | Internal | DataLoss | Unavailable) {
            tracing::warn!(target: "numbering::call", parent: None, method, code = name,
                latency_ms, subject, account, request_id, trace_id, "call");
        } else {
            tracing::info!(target: "numbering::call", parent: None, method, code = name,
                latency_ms, subject, account, request_id, trace_id, "call");
        }
    }
}

/// The response body, watched for its trailers and its end.
pub struct ObservedBody<B> {
    inner: Pin<Box<B>>,
    call: Call,
}

impl<B: Body> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_of) {
                    this.call.code = Some(code);
                    this.call.finish();
                }
            }
            Poll::Ready(Some(Err(_))) => {
                this.call.code.get_or_insert(tonic::Code::Unknown);
                this.call.finish();
            }
            Poll::Ready(None) => this.call.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for ObservedBody<B> {
    fn drop(&mut self) {
        self.call.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_printable_bounded_request_id_is_kept_any_other_replaced() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(request_id(Some(&v("abc-123"))), "abc-123");
        for bad in ["", "has space", &"x".repeat(MAX_REQUEST_ID_BYTES + 1)] {
            let id = request_id(Some(&v(bad)));
            assert!(Uuid::parse_str(&id).is_ok(), "{bad:?} -> {id}");
        }
        assert!(Uuid::parse_str(&request_id(None)).is_ok());
    }

    #[test]
    fn a_valid_traceparent_gives_its_trace_id_an_invalid_one_a_new_id() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id(Some(&v(good))), "4bf92f3577b34da6a3ce929d0e0e4736");
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            let id = trace_id(Some(&v(bad)));
            assert_eq!(id.len(), 32, "{bad}");
            assert_ne!(id, "4bf92f3577b34da6a3ce929d0e0e4736", "{bad}");
        }
    }

    #[test]
    fn code_names_are_the_canonical_ones() {
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(code_name(tonic::Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(tonic::Code::Unauthenticated), "UNAUTHENTICATED");
    }
}
