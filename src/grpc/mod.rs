//! The gRPC adapters: proto in, one use case of [`crate::flows`], proto out. Requests are parsed
//! into typed commands ([`parse`]), every mutation goes through one runner
//! ([`AppState::mutate`]: request ids, validate_only, the transaction), every page through one
//! helper ([`Page`]), and every error through one conversion ([`status`]).

pub mod allocation;
pub mod codec;
pub mod convert;
pub mod deadline;
pub mod number_pool;
pub mod parse;
pub mod proto;
pub mod status;
pub mod streams;
pub mod tenancy;
pub mod together;

use futures::future::BoxFuture;
use serde::{Serialize, de::DeserializeOwned};
use tonic::{Request, Response, Status};

use crate::domain::number::Number;
use crate::domain::principal::Principal;
use crate::domain::validate::Violations;
use crate::error::{Error, Result};
use crate::flows;
use crate::flows::Caller;
use crate::limits::{Limits, Permit};
use crate::paging::PageTokens;
use crate::store::{Answered, Db, Deadline, Mutation, Tx};
use streams::Streams;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub page_tokens: PageTokens,
    /// Per-account limits on streams and expensive calls.
    pub limits: Limits,
    /// The idle timeout, the import size and the drain's end, for streams.
    pub streams: Streams,
    /// Quantity allocations run together, in groups; `None` runs each alone.
    pub together: Option<std::sync::Arc<together::Together>>,
}

/// The caller's deadline (`grpc-timeout`), as [`deadline::DeadlineLayer`] put it on the request.
pub fn deadline<T>(request: &Request<T>) -> Option<Deadline> {
    request.extensions().get::<Deadline>().copied()
}

/// The caller the auth interceptor put on the request.
pub fn principal<T>(request: &Request<T>) -> Result<Principal> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Error::Unauthenticated("no principal on the request".into()))
}

/// A request that changes something: it carries a request id (AIP-155) and validate_only
/// (AIP-163), and its RPC's name is its type's name less `Request`.
pub trait Mutating: prost::Message + Sized {
    fn request_id(&self) -> &str;
    fn validate_only(&self) -> bool;

    /// The RPC, part of the request id's fingerprint: `AllocateNumbers` for
    /// `AllocateNumbersRequest`.
    fn method() -> &'static str {
        let name = std::any::type_name::<Self>();
        let name = name.rsplit("::").next().unwrap_or(name);
        name.strip_suffix("Request").unwrap_or(name)
    }
}

macro_rules! mutating {
    ($($request:ident),+ $(,)?) => {
        $(impl Mutating for numbering_client::v1::$request {
            fn request_id(&self) -> &str {
                &self.request_id
            }
            fn validate_only(&self) -> bool {
                self.validate_only
            }
        })+
    };
}

mutating!(
    CreateAccountRequest,
    UpdateAccountRequest,
    SuspendAccountRequest,
    ResumeAccountRequest,
    DeleteAccountRequest,
    CloseAccountRequest,
    CreateSipTrunkRequest,
    UpdateSipTrunkRequest,
    DeleteSipTrunkRequest,
    AddNumberRequest,
    BatchAddNumbersRequest,
    UpdateNumberRequest,
    DeleteNumberRequest,
    CreateSeriesRequest,
    UpdateSeriesRequest,
    DeleteSeriesRequest,
    AllocateNumbersRequest,
    WithdrawNumbersRequest,
    TransferNumbersRequest,
    AssignNumberRequest,
    UnassignNumberRequest,
    ReassignNumberRequest,
    ReserveNumberRequest,
    UnreserveNumberRequest,
    ReleaseNumberRequest,
    UnbindNumberRequest,
    BatchAssignNumbersRequest,
    BatchUnassignNumbersRequest,
    BatchReserveNumbersRequest,
    BatchReleaseNumbersRequest,
);

/// Parses a mutation into its command: the command's own checks and the request id's, in one
/// INVALID_ARGUMENT that names every bad field.
fn command<R, C>(request: &R) -> Result<C>
where
    R: Mutating,
    C: for<'r> TryFrom<&'r R, Error = Error>,
{
    let mut v = Violations::new();
    v.request_id(request.request_id());
    match (C::try_from(request), v.finish()) {
        (Ok(c), Ok(())) => Ok(c),
        (Err(Error::InvalidArgument(mut a)), Err(Error::InvalidArgument(b))) => {
            a.extend(b);
            Err(Error::InvalidArgument(a))
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

impl AppState {
    /// The one runner of every mutation: who calls, the request parsed into its command, the
    /// use case `run` in one transaction with request-id idempotency and validate_only
    /// ([`Db::mutate`]), and the answer made by `answer` (inside the transaction, so a retry
    /// gets the very answer the first call got).
    pub async fn mutate<R, C, D, T, F, A>(
        &self,
        request: Request<R>,
        run: F,
        answer: A,
    ) -> std::result::Result<Response<T>, Status>
    where
        R: Mutating,
        C: for<'r> TryFrom<&'r R, Error = Error> + Send + 'static,
        D: Send,
        T: prost::Message + Default + 'static,
        F: for<'t> FnOnce(&'t Tx<'t>, &'t Caller, C) -> BoxFuture<'t, Result<D>> + Send + 'static,
        A: FnOnce(D) -> T + Send + 'static,
    {
        let keep = move |d| Answered::whole(answer(d));
        self.run(request, run, keep, None::<fn(Vec<Number>) -> T>)
            .await
    }

    /// [`Self::mutate`] for the moves of many numbers (allocate, withdraw, transfer), whose
    /// answer may be thousands of numbers. Above [`crate::store::KEPT_WHOLE`] it is kept as the ids of the
    /// numbers moved, and a retry answers those numbers, in the first answer's order, as they
    /// are when it comes: exactly the first answer unless a number changed since, and then its
    /// etag says so.
    pub async fn mutate_numbers<R, C, T, F, A>(
        &self,
        request: Request<R>,
        run: F,
        answer: A,
    ) -> std::result::Result<Response<T>, Status>
    where
        R: Mutating,
        C: for<'r> TryFrom<&'r R, Error = Error> + Send + 'static,
        T: prost::Message + Default + 'static,
        F: for<'t> FnOnce(&'t Tx<'t>, &'t Caller, C) -> BoxFuture<'t, Result<Vec<Number>>>
            + Send
            + 'static,
        A: Fn(Vec<Number>) -> T + Clone + Send + 'static,
    {
        let again = answer.clone();
        let keep = move |numbers: Vec<Number>| Answered {
            numbers: Some(numbers.iter().map(|n| n.id).collect()),
            answer: answer(numbers),
        };
        self.run(request, run, keep, Some(again)).await
    }

    /// What both runners share; `again` answers the numbers of an answer kept as their ids.
    async fn run<R, C, D, T, F, K, G>(
        &self,
        request: Request<R>,
        run: F,
        keep: K,
        again: Option<G>,
    ) -> std::result::Result<Response<T>, Status>
    where
        R: Mutating,
        C: for<'r> TryFrom<&'r R, Error = Error> + Send + 'static,
        D: Send,
        T: prost::Message + Default + 'static,
        F: for<'t> FnOnce(&'t Tx<'t>, &'t Caller, C) -> BoxFuture<'t, Result<D>> + Send + 'static,
        K: FnOnce(D) -> Answered<T> + Send + 'static,
        G: FnOnce(Vec<Number>) -> T + Send + 'static,
    {
        let principal = principal(&request)?;
        let deadline = deadline(&request);
        let request = request.into_inner();
        let command = command::<R, C>(&request)?;
        if !request.request_id().is_empty() {
            tracing::Span::current().record("idempotency_key", request.request_id());
        }
        let caller = Caller {
            principal,
            request_id: request.request_id().to_string(),
        };
        let who = caller.principal.clone();
        let key = Mutation {
            principal: &who,
            method: R::method(),
            request_id: request.request_id(),
            request: request.encode_to_vec(),
            validate_only: request.validate_only(),
            deadline,
        };
        let answer = self
            .db
            .mutate(
                key,
                move |tx| Box::pin(async move { Ok(keep(run(tx, &caller, command).await?)) }),
                move |tx, ids| {
                    Box::pin(async move {
                        let again = again.ok_or_else(|| {
                            Error::Internal("an answer kept whole has no numbers".into())
                        })?;
                        Ok(again(flows::allocation::moved(tx, &ids).await?))
                    })
                },
            )
            .await?;
        Ok(Response::new(answer))
    }
}

impl AppState {
    /// An allocation run in a group ([`together`]): its answer, or `None` when it runs alone
    /// (groups are off, the call cannot join one, or its group sent it back).
    pub async fn together(
        &self,
        request: &Request<numbering_client::v1::AllocateNumbersRequest>,
    ) -> Option<Result<numbering_client::v1::AllocateNumbersResponse>> {
        let groups = self.together.as_ref()?;
        let principal = principal(request).ok()?;
        let r = request.get_ref();
        let command: crate::domain::command::MoveNumbers = command(r).ok()?;
        if !together::Together::joins(&command, r.validate_only) {
            return None;
        }
        if !r.request_id.is_empty() {
            tracing::Span::current().record("idempotency_key", r.request_id.as_str());
        }
        groups
            .allocate(
                principal,
                r.request_id.clone(),
                prost::Message::encode_to_vec(r),
                deadline(request),
                command,
            )
            .await
    }
}

/// Past this many numbers (a page, a quantity, a list), a call counts as expensive.
pub const LARGE: i64 = 100;

impl AppState {
    /// A place among the expensive calls of the caller's account, held until dropped; `None`
    /// when the call is not `expensive`.
    pub fn expensive<T>(&self, request: &Request<T>, expensive: bool) -> Result<Option<Permit>> {
        if !expensive {
            return Ok(None);
        }
        Ok(Some(
            self.limits.expensive.try_acquire(&principal(request)?)?,
        ))
    }
}

/// One page of a list (AIP-158): where it starts, from the page token, and how the next page's
/// token is made. The token is bound to the request's filter.
pub struct Page<'a> {
    tokens: &'a PageTokens,
    filter: Vec<u8>,
    pub limit: i64,
}

impl<'a> Page<'a> {
    /// The page a request asks for, and the cursor it starts after (`None` for the first).
    pub fn open<C: DeserializeOwned>(
        tokens: &'a PageTokens,
        filter: Vec<u8>,
        token: &str,
        limit: i64,
    ) -> Result<(Self, Option<C>)> {
        let after = tokens.decode(token, &filter)?;
        Ok((
            Self {
                tokens,
                filter,
                limit,
            },
            after,
        ))
    }

    /// Rows to fetch: one more than the page, to know whether another follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// The page's rows and the next page's token (empty on the last page).
    pub fn close<T, C: Serialize>(
        &self,
        mut rows: Vec<T>,
        cursor: impl Fn(&T) -> C,
    ) -> (Vec<T>, String) {
        if rows.len() as i64 <= self.limit {
            return (rows, String::new());
        }
        rows.truncate(self.limit as usize);
        let token = rows
            .last()
            .map(|last| self.tokens.encode(&self.filter, &cursor(last)))
            .unwrap_or_default();
        (rows, token)
    }
}

#[cfg(test)]
mod tests {
    use numbering_client::v1 as pb;

    use super::Mutating;

    #[test]
    fn a_mutation_is_named_after_its_request_type() {
        assert_eq!(pb::AllocateNumbersRequest::method(), "AllocateNumbers");
        assert_eq!(pb::BatchAddNumbersRequest::method(), "BatchAddNumbers");
        assert_eq!(pb::DeleteAccountRequest::method(), "DeleteAccount");
    }
}
