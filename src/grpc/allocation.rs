//! AllocationService: the life of a number across the account tree.

use numbering_client::v1 as pb;
use pb::allocation_service_server::AllocationService;
use tonic::{Request, Response, Status};

use super::AppState;
use crate::error::Error;

pub struct Allocation(pub AppState);

#[tonic::async_trait]
impl AllocationService for Allocation {
    async fn allocate_numbers(
        &self,
        _request: Request<pb::AllocateNumbersRequest>,
    ) -> Result<Response<pb::AllocateNumbersResponse>, Status> {
        Err(Error::Unimplemented("AllocateNumbers").into())
    }

    async fn withdraw_numbers(
        &self,
        _request: Request<pb::WithdrawNumbersRequest>,
    ) -> Result<Response<pb::WithdrawNumbersResponse>, Status> {
        Err(Error::Unimplemented("WithdrawNumbers").into())
    }

    async fn transfer_numbers(
        &self,
        _request: Request<pb::TransferNumbersRequest>,
    ) -> Result<Response<pb::TransferNumbersResponse>, Status> {
        Err(Error::Unimplemented("TransferNumbers").into())
    }

    async fn assign_number(
        &self,
        _request: Request<pb::AssignNumberRequest>,
    ) -> Result<Response<pb::Number>, Status> {
        Err(Error::Unimplemented("AssignNumber").into())
    }

    async fn unassign_number(
        &self,
        _request: Request<pb::UnassignNumberRequest>,
    ) -> Result<Response<pb::Number>, Status> {
        Err(Error::Unimplemented("UnassignNumber").into())
    }

    async fn reassign_number(
        &self,
        _request: Request<pb::ReassignNumberRequest>,
    ) -> Result<Response<pb::Number>, Status> {
        Err(Error::Unimplemented("ReassignNumber").into())
    }

    async fn reserve_number(
        &self,
        _request: Request<pb::ReserveNumberRequest>,
    ) -> Result<Response<pb::Number>, Status> {
        Err(Error::Unimplemented("ReserveNumber").into())
    }

    async fn unreserve_number(
        &self,
        _request: Request<pb::UnreserveNumberRequest>,
    ) -> Result<Response<pb::Number>, Status> {
        Err(Error::Unimplemented("UnreserveNumber").into())
    }

    async fn release_number(
        &self,
        _request: Request<pb::ReleaseNumberRequest>,
    ) -> Result<Response<pb::Number>, Status> {
        Err(Error::Unimplemented("ReleaseNumber").into())
    }

    async fn unbind_number(
        &self,
        _request: Request<pb::UnbindNumberRequest>,
    ) -> Result<Response<pb::Number>, Status> {
        Err(Error::Unimplemented("UnbindNumber").into())
    }

    async fn batch_assign_numbers(
        &self,
        _request: Request<pb::BatchAssignNumbersRequest>,
    ) -> Result<Response<pb::BatchNumbersResponse>, Status> {
        Err(Error::Unimplemented("BatchAssignNumbers").into())
    }

    async fn batch_unassign_numbers(
        &self,
        _request: Request<pb::BatchUnassignNumbersRequest>,
    ) -> Result<Response<pb::BatchNumbersResponse>, Status> {
        Err(Error::Unimplemented("BatchUnassignNumbers").into())
    }

    async fn batch_reserve_numbers(
        &self,
        _request: Request<pb::BatchReserveNumbersRequest>,
    ) -> Result<Response<pb::BatchNumbersResponse>, Status> {
        Err(Error::Unimplemented("BatchReserveNumbers").into())
    }

    async fn batch_release_numbers(
        &self,
        _request: Request<pb::BatchReleaseNumbersRequest>,
    ) -> Result<Response<pb::BatchNumbersResponse>, Status> {
        Err(Error::Unimplemented("BatchReleaseNumbers").into())
    }

    async fn list_number_events(
        &self,
        _request: Request<pb::ListNumberEventsRequest>,
    ) -> Result<Response<pb::ListNumberEventsResponse>, Status> {
        Err(Error::Unimplemented("ListNumberEvents").into())
    }

    async fn get_number_state_at(
        &self,
        _request: Request<pb::GetNumberStateAtRequest>,
    ) -> Result<Response<pb::GetNumberStateAtResponse>, Status> {
        Err(Error::Unimplemented("GetNumberStateAt").into())
    }

    type WatchNumberEventsStream =
        futures::stream::BoxStream<'static, Result<pb::WatchNumberEventsResponse, Status>>;

    async fn watch_number_events(
        &self,
        _request: Request<pb::WatchNumberEventsRequest>,
    ) -> Result<Response<Self::WatchNumberEventsStream>, Status> {
        Err(Error::Unimplemented("WatchNumberEvents").into())
    }
}
