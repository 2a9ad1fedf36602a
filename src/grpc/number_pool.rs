//! NumberPoolService: numbers, series, import, export, search and inventory. Each handler
//! parses, calls one use case of [`crate::flows::number_pool`], and converts.

use super::proto::v1::number_pool_service_server::NumberPoolService;
use futures::FutureExt;
use numbering_client::v1 as pb;
use prost::Message;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use super::convert::{
    counts_to_proto, number_to_proto, numbers_to_proto, series_to_proto, trunk_to_proto,
};
use super::status::rpc_status;
use super::{AppState, LARGE, Page, parse, principal};
use crate::domain::command::Key;
use crate::domain::number::{E164, Number};
use crate::domain::parse_id;
use crate::domain::validate::Violations;
use crate::error::{Error, Result};
use crate::flows::number_pool as flows;

pub mod import;

pub struct NumberPool(pub AppState);

type Answer<T> = std::result::Result<Response<T>, Status>;

/// AddNumber answers its one number (all-or-nothing: its failure is the call's).
fn the_number(mut results: Vec<Result<Number>>) -> pb::Number {
    results
        .pop()
        .and_then(|r| r.ok())
        .map(number_to_proto)
        .unwrap_or_default()
}

fn added(results: Vec<Result<Number>>) -> pb::BatchAddNumbersResponse {
    pb::BatchAddNumbersResponse {
        results: results
            .into_iter()
            .map(|r| match r {
                Ok(n) => pb::AddNumberResult {
                    number: Some(number_to_proto(n)),
                    error: None,
                },
                Err(e) => pb::AddNumberResult {
                    number: None,
                    error: Some(rpc_status(e)),
                },
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl NumberPoolService for NumberPool {
    async fn add_number(&self, request: Request<pb::AddNumberRequest>) -> Answer<pb::Number> {
        self.0
            .mutate(
                request,
                |tx, c, cmd| flows::add(tx, c, cmd).boxed(),
                the_number,
            )
            .await
    }

    async fn batch_add_numbers(
        &self,
        request: Request<pb::BatchAddNumbersRequest>,
    ) -> Answer<pb::BatchAddNumbersResponse> {
        let _permit = self.0.expensive(&request, true)?;
        self.0
            .mutate(request, |tx, c, cmd| flows::add(tx, c, cmd).boxed(), added)
            .await
    }

    async fn get_number(&self, request: Request<pb::GetNumberRequest>) -> Answer<pb::Number> {
        let principal = principal(&request)?;
        let key = match &request.get_ref().key {
            Some(pb::get_number_request::Key::Id(id)) => Key::Id(parse_id("id", id)?),
            Some(pb::get_number_request::Key::E164(e)) => {
                Key::E164(E164::parse("e164", e, "")?.e164)
            }
            None => return Err(Error::invalid("key", "set id or e164").into()),
        };
        let number = flows::get(&self.0.db.client().await?, &principal, &key).await?;
        Ok(Response::new(number_to_proto(number)))
    }

    async fn update_number(&self, request: Request<pb::UpdateNumberRequest>) -> Answer<pb::Number> {
        self.0
            .mutate(
                request,
                |tx, c, cmd| flows::update(tx, c, cmd).boxed(),
                number_to_proto,
            )
            .await
    }

    async fn delete_number(&self, request: Request<pb::DeleteNumberRequest>) -> Answer<()> {
        self.0
            .mutate(
                request,
                |tx, c, cmd| flows::delete(tx, c, cmd).boxed(),
                |()| (),
            )
            .await
    }

    async fn list_numbers(
        &self,
        request: Request<pb::ListNumbersRequest>,
    ) -> Answer<pb::ListNumbersResponse> {
        let principal = principal(&request)?;
        let _permit = self
            .0
            .expensive(&request, i64::from(request.get_ref().page_size) > LARGE)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let limit = v.page_size(req.page_size, 100, 1000);
        v.finish()?;
        let proto_filter = req.filter.clone().unwrap_or_default();
        let filter = parse::filter(&proto_filter)?;
        let (page, after): (_, Option<(String, Uuid)>) = Page::open(
            &self.0.page_tokens,
            proto_filter.encode_to_vec(),
            &req.page_token,
            limit,
        )?;
        let client = self.0.db.client().await?;
        let rows = flows::list(&client, &principal, &filter, after.as_ref(), page.fetch()).await?;
        let (rows, next_page_token) = page.close(rows, |n| (n.e164.clone(), n.id));
        Ok(Response::new(pb::ListNumbersResponse {
            numbers: numbers_to_proto(rows),
            next_page_token,
        }))
    }

    async fn search_available_numbers(
        &self,
        request: Request<pb::SearchAvailableNumbersRequest>,
    ) -> Answer<pb::SearchAvailableNumbersResponse> {
        let principal = principal(&request)?;
        let _permit = self.0.expensive(&request, true)?;
        let search = parse::search(request.get_ref())?;
        let found = flows::search(&self.0.db.client().await?, &principal, &search).await?;
        Ok(Response::new(pb::SearchAvailableNumbersResponse {
            numbers: numbers_to_proto(found.numbers),
            ranges: found
                .ranges
                .into_iter()
                .map(|(first_e164, last_e164)| pb::NumberRange {
                    first_e164,
                    last_e164,
                })
                .collect(),
        }))
    }

    type ImportNumbersStream =
        futures::stream::BoxStream<'static, std::result::Result<pb::ImportNumbersResponse, Status>>;

    async fn import_numbers(
        &self,
        request: Request<Streaming<pb::ImportNumbersRequest>>,
    ) -> Answer<Self::ImportNumbersStream> {
        let principal = principal(&request)?;
        import::start(self.0.clone(), principal, request.into_inner()).await
    }

    async fn get_import_template(
        &self,
        _request: Request<pb::GetImportTemplateRequest>,
    ) -> Answer<pb::GetImportTemplateResponse> {
        Ok(Response::new(pb::GetImportTemplateResponse {
            csv: import::template(),
        }))
    }

    type ExportNumbersStream =
        futures::stream::BoxStream<'static, std::result::Result<pb::ExportNumbersResponse, Status>>;

    async fn export_numbers(
        &self,
        request: Request<pb::ExportNumbersRequest>,
    ) -> Answer<Self::ExportNumbersStream> {
        let principal = principal(&request)?;
        let filter = parse::filter(&request.into_inner().filter.unwrap_or_default())?;
        import::export(self.0.clone(), principal, filter).await
    }

    async fn get_inventory(
        &self,
        request: Request<pb::GetInventoryRequest>,
    ) -> Answer<pb::Inventory> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let id = parse_id("account_id", &req.account_id)?;
        let client = self.0.db.client().await?;
        let inventory = flows::inventory(&client, &principal, id, req.include_subtree).await?;
        Ok(Response::new(pb::Inventory {
            account_id: inventory.account.id.to_string(),
            include_subtree: req.include_subtree,
            totals: Some(counts_to_proto(&inventory.totals)),
            series: inventory
                .by_series
                .iter()
                .map(|(s, c)| pb::SeriesInventory {
                    series_id: s.map(|s| s.to_string()).unwrap_or_default(),
                    counts: Some(counts_to_proto(c)),
                })
                .collect(),
        }))
    }

    async fn list_tags(
        &self,
        request: Request<pb::ListTagsRequest>,
    ) -> Answer<pb::ListTagsResponse> {
        let principal = principal(&request)?;
        let id = parse_id("account_id", &request.get_ref().account_id)?;
        let client = self.0.db.client().await?;
        let (reservation, number) = flows::tags(&client, &principal, id).await?;
        let counts = |tags: Vec<(String, i64)>| {
            tags.into_iter()
                .map(|(tag, count)| pb::TagCount { tag, count })
                .collect()
        };
        Ok(Response::new(pb::ListTagsResponse {
            reservation_tags: counts(reservation),
            number_tags: counts(number),
        }))
    }

    async fn create_sip_trunk(
        &self,
        request: Request<pb::CreateSipTrunkRequest>,
    ) -> Answer<pb::SipTrunk> {
        self.0
            .mutate(
                request,
                |tx, c, cmd| flows::create_trunk(tx, c, cmd).boxed(),
                trunk_to_proto,
            )
            .await
    }

    async fn list_sip_trunks(
        &self,
        request: Request<pb::ListSipTrunksRequest>,
    ) -> Answer<pb::ListSipTrunksResponse> {
        let principal = principal(&request)?;
        let req = request.get_ref();
        let id = parse_id("account_id", &req.account_id)?;
        let client = self.0.db.client().await?;
        let trunks = flows::list_trunks(&client, &principal, id, req.include_inherited).await?;
        Ok(Response::new(pb::ListSipTrunksResponse {
            sip_trunks: trunks.into_iter().map(trunk_to_proto).collect(),
        }))
    }

    async fn update_sip_trunk(
        &self,
        request: Request<pb::UpdateSipTrunkRequest>,
    ) -> Answer<pb::SipTrunk> {
        self.0
            .mutate(
                request,
                |tx, c, cmd| flows::rename_trunk(tx, c, cmd).boxed(),
                trunk_to_proto,
            )
            .await
    }

    async fn delete_sip_trunk(&self, request: Request<pb::DeleteSipTrunkRequest>) -> Answer<()> {
        self.0
            .mutate(
                request,
                |tx, c, cmd| flows::delete_trunk(tx, c, cmd).boxed(),
                |()| (),
            )
            .await
    }

    async fn create_series(&self, request: Request<pb::CreateSeriesRequest>) -> Answer<pb::Series> {
        self.0
            .mutate(
                request,
                |tx, c, cmd| flows::create_series(tx, c, cmd).boxed(),
                series_to_proto,
            )
            .await
    }

    async fn get_series(&self, request: Request<pb::GetSeriesRequest>) -> Answer<pb::Series> {
        let principal = principal(&request)?;
        let id = parse_id("id", &request.get_ref().id)?;
        let series = flows::get_series(&self.0.db.client().await?, &principal, id).await?;
        Ok(Response::new(series_to_proto(series)))
    }

    async fn list_series(
        &self,
        request: Request<pb::ListSeriesRequest>,
    ) -> Answer<pb::ListSeriesResponse> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let provider_id = parse::required_id(&mut v, "provider_id", &req.provider_id);
        let limit = v.page_size(req.page_size, 100, 1000);
        let filter = parse::series_filter(&mut v, &req);
        v.finish()?;
        // The token is bound to the provider and the filters: a changed filter is refused.
        let bound = pb::ListSeriesRequest {
            page_size: 0,
            page_token: String::new(),
            ..req.clone()
        };
        let (page, after): (_, Option<String>) = Page::open(
            &self.0.page_tokens,
            bound.encode_to_vec(),
            &req.page_token,
            limit,
        )?;
        let client = self.0.db.client().await?;
        let rows = flows::list_series(
            &client,
            &principal,
            provider_id,
            &filter,
            after.as_deref(),
            page.fetch(),
        )
        .await?;
        let (rows, next_page_token) = page.close(rows, |s| s.prefix.clone());
        Ok(Response::new(pb::ListSeriesResponse {
            series: rows.into_iter().map(series_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_series(&self, request: Request<pb::UpdateSeriesRequest>) -> Answer<pb::Series> {
        self.0
            .mutate(
                request,
                |tx, c, cmd| flows::update_series(tx, c, cmd).boxed(),
                series_to_proto,
            )
            .await
    }

    async fn delete_series(&self, request: Request<pb::DeleteSeriesRequest>) -> Answer<()> {
        self.0
            .mutate(
                request,
                |tx, c, cmd| flows::delete_series(tx, c, cmd).boxed(),
                |()| (),
            )
            .await
    }
}
