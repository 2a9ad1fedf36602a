//! AllocationService: the life of a number across the account tree. Each handler parses, calls
//! one use case of [`crate::flows::allocation`], and converts; WatchNumberEvents streams from
//! [`watch`].

mod watch;

use super::proto::v1::allocation_service_server::AllocationService;
use futures::FutureExt;
use numbering_client::v1 as pb;
use prost::Message;
use tonic::{Request, Response, Status};

use super::convert::{event_to_proto, number_to_proto, numbers_to_proto, state_to_proto};
use super::status::rpc_status;
use super::{AppState, LARGE, Page, parse, principal};
use crate::domain::command::{Batch, OneChange};
use crate::domain::number::Number;
use crate::domain::validate::Violations;
use crate::error::{Error, Result};
use crate::flows::allocation as flows;

pub struct Allocation(pub AppState);

type Answer<T> = std::result::Result<Response<T>, Status>;

/// A batch's answer: per number as the request named it, the number as it is now or the error
/// it met, with the same details a failed single call would carry.
fn batch_answer(results: Vec<(String, Result<Number>)>) -> pb::BatchNumbersResponse {
    pb::BatchNumbersResponse {
        results: results
            .into_iter()
            .map(|(number, result)| match result {
                Ok(n) => pb::BatchNumberResult {
                    number,
                    result: Some(number_to_proto(n)),
                    error: None,
                },
                Err(e) => pb::BatchNumberResult {
                    number,
                    result: None,
                    error: Some(rpc_status(e)),
                },
            })
            .collect(),
    }
}

/// Whether a move names or asks for more than [`LARGE`] numbers: an expensive call.
fn large(selection: &Option<pb::NumberSelection>) -> bool {
    use pb::number_selection::Selection;
    match selection.as_ref().and_then(|s| s.selection.as_ref()) {
        Some(Selection::Numbers(list)) => list.numbers.len() as i64 > LARGE,
        Some(Selection::Quantity(q)) => q.count > LARGE,
        None => false,
    }
}

#[tonic::async_trait]
impl AllocationService for Allocation {
    async fn allocate_numbers(
        &self,
        request: Request<pb::AllocateNumbersRequest>,
    ) -> Answer<pb::AllocateNumbersResponse> {
        let answer = |n| pb::AllocateNumbersResponse {
            numbers: numbers_to_proto(n),
        };
        let _permit = self
            .0
            .expensive(&request, large(&request.get_ref().selection))?;
        if let Some(answer) = self.0.together(&request).await {
            return Ok(Response::new(answer?));
        }
        self.0
            .mutate_numbers(
                request,
                |tx, c, cmd| flows::allocate(tx, c, cmd).boxed(),
                answer,
            )
            .await
    }

    async fn withdraw_numbers(
        &self,
        request: Request<pb::WithdrawNumbersRequest>,
    ) -> Answer<pb::WithdrawNumbersResponse> {
        let answer = |n| pb::WithdrawNumbersResponse {
            numbers: numbers_to_proto(n),
        };
        let _permit = self
            .0
            .expensive(&request, large(&request.get_ref().selection))?;
        self.0
            .mutate_numbers(
                request,
                |tx, c, cmd| flows::withdraw(tx, c, cmd).boxed(),
                answer,
            )
            .await
    }

    async fn transfer_numbers(
        &self,
        request: Request<pb::TransferNumbersRequest>,
    ) -> Answer<pb::TransferNumbersResponse> {
        let answer = |n| pb::TransferNumbersResponse {
            numbers: numbers_to_proto(n),
        };
        let _permit = self
            .0
            .expensive(&request, large(&request.get_ref().selection))?;
        self.0
            .mutate_numbers(
                request,
                |tx, c, cmd| flows::transfer(tx, c, cmd).boxed(),
                answer,
            )
            .await
    }

    async fn assign_number(&self, request: Request<pb::AssignNumberRequest>) -> Answer<pb::Number> {
        self.change(request).await
    }

    async fn unassign_number(
        &self,
        request: Request<pb::UnassignNumberRequest>,
    ) -> Answer<pb::Number> {
        self.change(request).await
    }

    async fn reassign_number(
        &self,
        request: Request<pb::ReassignNumberRequest>,
    ) -> Answer<pb::Number> {
        self.change(request).await
    }

    async fn reserve_number(
        &self,
        request: Request<pb::ReserveNumberRequest>,
    ) -> Answer<pb::Number> {
        self.change(request).await
    }

    async fn unreserve_number(
        &self,
        request: Request<pb::UnreserveNumberRequest>,
    ) -> Answer<pb::Number> {
        self.change(request).await
    }

    async fn release_number(
        &self,
        request: Request<pb::ReleaseNumberRequest>,
    ) -> Answer<pb::Number> {
        self.change(request).await
    }

    async fn unbind_number(&self, request: Request<pb::UnbindNumberRequest>) -> Answer<pb::Number> {
        self.change(request).await
    }

    async fn batch_assign_numbers(
        &self,
        request: Request<pb::BatchAssignNumbersRequest>,
    ) -> Answer<pb::BatchNumbersResponse> {
        self.batch(request).await
    }

    async fn batch_unassign_numbers(
        &self,
        request: Request<pb::BatchUnassignNumbersRequest>,
    ) -> Answer<pb::BatchNumbersResponse> {
        self.batch(request).await
    }

    async fn batch_reserve_numbers(
        &self,
        request: Request<pb::BatchReserveNumbersRequest>,
    ) -> Answer<pb::BatchNumbersResponse> {
        self.batch(request).await
    }

    async fn batch_release_numbers(
        &self,
        request: Request<pb::BatchReleaseNumbersRequest>,
    ) -> Answer<pb::BatchNumbersResponse> {
        self.batch(request).await
    }

    async fn list_number_events(
        &self,
        request: Request<pb::ListNumberEventsRequest>,
    ) -> Answer<pb::ListNumberEventsResponse> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let key = parse::number(&mut v, "number", &req.number);
        let limit = v.page_size(req.page_size, 100, 1000);
        v.finish()?;
        let filter = pb::ListNumberEventsRequest {
            page_size: 0,
            page_token: String::new(),
            ..req.clone()
        };
        let (page, after) = Page::open(
            &self.0.page_tokens,
            filter.encode_to_vec(),
            &req.page_token,
            limit,
        )?;
        let client = self.0.db.client().await?;
        let events =
            flows::history(&client, &principal, &key, after.unwrap_or(0), page.fetch()).await?;
        let (events, next_page_token) = page.close(events, |e| e.seq);
        Ok(Response::new(pb::ListNumberEventsResponse {
            events: events.into_iter().map(event_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn get_number_state_at(
        &self,
        request: Request<pb::GetNumberStateAtRequest>,
    ) -> Answer<pb::GetNumberStateAtResponse> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let key = parse::number(&mut v, "number", &req.number);
        let time = parse::time(&mut v, "time", req.time.as_ref(), true);
        v.finish()?;
        let Some(time) = time else {
            return Err(Error::invalid("time", "required").into());
        };
        let event = flows::state_at(&self.0.db.client().await?, &principal, &key, time).await?;
        Ok(Response::new(pb::GetNumberStateAtResponse {
            number_id: event.number_id.to_string(),
            e164: event.e164.clone(),
            state: event.after.clone().map(state_to_proto),
            event: Some(event_to_proto(event)),
        }))
    }

    type WatchNumberEventsStream = futures::stream::BoxStream<
        'static,
        std::result::Result<pb::WatchNumberEventsResponse, Status>,
    >;

    async fn watch_number_events(
        &self,
        request: Request<pb::WatchNumberEventsRequest>,
    ) -> Answer<Self::WatchNumberEventsStream> {
        let principal = principal(&request)?;
        watch::start(self.0.clone(), principal, request.into_inner()).await
    }
}

impl Allocation {
    /// The seven single-number changes: parse, change the number, answer it as it is now.
    async fn change<R>(&self, request: Request<R>) -> Answer<pb::Number>
    where
        R: super::Mutating,
        OneChange: for<'r> TryFrom<&'r R, Error = Error>,
    {
        self.0
            .mutate(
                request,
                |tx, c, cmd| flows::change(tx, c, cmd).boxed(),
                number_to_proto,
            )
            .await
    }

    /// The four batch RPCs: parse, change each number, answer per number.
    async fn batch<R>(&self, request: Request<R>) -> Answer<pb::BatchNumbersResponse>
    where
        R: super::Mutating,
        Batch<OneChange>: for<'r> TryFrom<&'r R, Error = Error>,
    {
        let _permit = self.0.expensive(&request, true)?;
        self.0
            .mutate(
                request,
                |tx, c, cmd| flows::change_each(tx, c, cmd).boxed(),
                batch_answer,
            )
            .await
    }
}
