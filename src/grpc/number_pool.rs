//! NumberPoolService: numbers, series, import, export, search and inventory.

use numbering_client::v1 as pb;
use pb::number_pool_service_server::NumberPoolService;
use tonic::{Request, Response, Status, Streaming};

use super::AppState;
use crate::error::Error;

pub struct NumberPool(pub AppState);

#[tonic::async_trait]
impl NumberPoolService for NumberPool {
    async fn add_number(
        &self,
        _request: Request<pb::AddNumberRequest>,
    ) -> Result<Response<pb::Number>, Status> {
        Err(Error::Unimplemented("AddNumber").into())
    }

    async fn batch_add_numbers(
        &self,
        _request: Request<pb::BatchAddNumbersRequest>,
    ) -> Result<Response<pb::BatchAddNumbersResponse>, Status> {
        Err(Error::Unimplemented("BatchAddNumbers").into())
    }

    async fn get_number(
        &self,
        _request: Request<pb::GetNumberRequest>,
    ) -> Result<Response<pb::Number>, Status> {
        Err(Error::Unimplemented("GetNumber").into())
    }

    async fn update_number(
        &self,
        _request: Request<pb::UpdateNumberRequest>,
    ) -> Result<Response<pb::Number>, Status> {
        Err(Error::Unimplemented("UpdateNumber").into())
    }

    async fn delete_number(
        &self,
        _request: Request<pb::DeleteNumberRequest>,
    ) -> Result<Response<()>, Status> {
        Err(Error::Unimplemented("DeleteNumber").into())
    }

    async fn list_numbers(
        &self,
        _request: Request<pb::ListNumbersRequest>,
    ) -> Result<Response<pb::ListNumbersResponse>, Status> {
        Err(Error::Unimplemented("ListNumbers").into())
    }

    async fn search_available_numbers(
        &self,
        _request: Request<pb::SearchAvailableNumbersRequest>,
    ) -> Result<Response<pb::SearchAvailableNumbersResponse>, Status> {
        Err(Error::Unimplemented("SearchAvailableNumbers").into())
    }

    type ImportNumbersStream =
        futures::stream::BoxStream<'static, Result<pb::ImportNumbersResponse, Status>>;

    async fn import_numbers(
        &self,
        _request: Request<Streaming<pb::ImportNumbersRequest>>,
    ) -> Result<Response<Self::ImportNumbersStream>, Status> {
        Err(Error::Unimplemented("ImportNumbers").into())
    }

    async fn get_import_template(
        &self,
        _request: Request<pb::GetImportTemplateRequest>,
    ) -> Result<Response<pb::GetImportTemplateResponse>, Status> {
        Err(Error::Unimplemented("GetImportTemplate").into())
    }

    type ExportNumbersStream =
        futures::stream::BoxStream<'static, Result<pb::ExportNumbersResponse, Status>>;

    async fn export_numbers(
        &self,
        _request: Request<pb::ExportNumbersRequest>,
    ) -> Result<Response<Self::ExportNumbersStream>, Status> {
        Err(Error::Unimplemented("ExportNumbers").into())
    }

    async fn get_inventory(
        &self,
        _request: Request<pb::GetInventoryRequest>,
    ) -> Result<Response<pb::Inventory>, Status> {
        Err(Error::Unimplemented("GetInventory").into())
    }

    async fn create_series(
        &self,
        _request: Request<pb::CreateSeriesRequest>,
    ) -> Result<Response<pb::Series>, Status> {
        Err(Error::Unimplemented("CreateSeries").into())
    }

    async fn get_series(
        &self,
        _request: Request<pb::GetSeriesRequest>,
    ) -> Result<Response<pb::Series>, Status> {
        Err(Error::Unimplemented("GetSeries").into())
    }

    async fn list_series(
        &self,
        _request: Request<pb::ListSeriesRequest>,
    ) -> Result<Response<pb::ListSeriesResponse>, Status> {
        Err(Error::Unimplemented("ListSeries").into())
    }

    async fn update_series(
        &self,
        _request: Request<pb::UpdateSeriesRequest>,
    ) -> Result<Response<pb::Series>, Status> {
        Err(Error::Unimplemented("UpdateSeries").into())
    }

    async fn delete_series(
        &self,
        _request: Request<pb::DeleteSeriesRequest>,
    ) -> Result<Response<()>, Status> {
        Err(Error::Unimplemented("DeleteSeries").into())
    }
}
