//! TenancyService: the account tree. Each handler parses, calls one use case of
//! [`crate::flows::tenancy`], and converts.

use super::proto::v1::tenancy_service_server::TenancyService;
use futures::FutureExt;
use numbering_client::v1 as pb;
use prost::Message;
use tonic::{Request, Response, Status};

use super::convert::{account_event_to_proto, account_to_proto};
use super::{AppState, Page, parse, principal};
use crate::domain::parse_id;
use crate::domain::validate::Violations;
use crate::flows::tenancy as flows;
use crate::store::accounts::ListFilter;

pub struct Tenancy(pub AppState);

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl TenancyService for Tenancy {
    async fn create_account(
        &self,
        request: Request<pb::CreateAccountRequest>,
    ) -> Answer<pb::Account> {
        self.0
            .mutate(
                request,
                |tx, c, cmd| flows::create(tx, c, cmd).boxed(),
                account_to_proto,
            )
            .await
    }

    async fn get_account(&self, request: Request<pb::GetAccountRequest>) -> Answer<pb::Account> {
        let principal = principal(&request)?;
        let id = parse_id("id", &request.get_ref().id)?;
        let account = flows::get(&self.0.db.client().await?, &principal, id).await?;
        Ok(Response::new(account_to_proto(account)))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Answer<pb::ListAccountsResponse> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let parent_id = parse::required_id(&mut v, "parent_id", &req.parent_id);
        let state = parse::account_state(&mut v, "state", req.state);
        let limit = v.page_size(req.page_size, 100, 1000);
        v.text("kind", &req.kind, false, 64);
        v.text("external_ref", &req.external_ref, false, 256);
        v.labels("labels", &req.labels);
        v.finish()?;
        let filter = pb::ListAccountsRequest {
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
        let list_filter = |parent| ListFilter {
            parent,
            recursive: req.recursive,
            state,
            kind: Some(req.kind.clone()).filter(|s| !s.is_empty()),
            external_ref: Some(req.external_ref.clone()).filter(|s| !s.is_empty()),
            labels: req.labels.clone(),
        };
        let rows = flows::list(
            &client,
            &principal,
            parent_id,
            list_filter,
            after,
            page.fetch(),
        )
        .await?;
        let (rows, next_page_token) = page.close(rows, |a| (a.depth, a.seq));
        Ok(Response::new(pb::ListAccountsResponse {
            accounts: rows.into_iter().map(account_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_account(
        &self,
        request: Request<pb::UpdateAccountRequest>,
    ) -> Answer<pb::Account> {
        self.0
            .mutate(
                request,
                |tx, c, cmd| flows::update(tx, c, cmd).boxed(),
                account_to_proto,
            )
            .await
    }

    async fn suspend_account(
        &self,
        request: Request<pb::SuspendAccountRequest>,
    ) -> Answer<pb::Account> {
        self.0
            .mutate(
                request,
                |tx, c, cmd| flows::change_state(tx, c, cmd).boxed(),
                account_to_proto,
            )
            .await
    }

    async fn resume_account(
        &self,
        request: Request<pb::ResumeAccountRequest>,
    ) -> Answer<pb::Account> {
        self.0
            .mutate(
                request,
                |tx, c, cmd| flows::change_state(tx, c, cmd).boxed(),
                account_to_proto,
            )
            .await
    }

    async fn delete_account(&self, request: Request<pb::DeleteAccountRequest>) -> Answer<()> {
        self.0
            .mutate(
                request,
                |tx, c, cmd| flows::delete(tx, c, cmd).boxed(),
                |()| (),
            )
            .await
    }

    async fn close_account(
        &self,
        request: Request<pb::CloseAccountRequest>,
    ) -> Answer<pb::Account> {
        self.0
            .mutate(
                request,
                |tx, c, cmd| flows::close(tx, c, cmd).boxed(),
                account_to_proto,
            )
            .await
    }

    async fn get_account_path(
        &self,
        request: Request<pb::GetAccountPathRequest>,
    ) -> Answer<pb::GetAccountPathResponse> {
        let principal = principal(&request)?;
        let id = parse_id("id", &request.get_ref().id)?;
        let accounts = flows::path(&self.0.db.client().await?, &principal, id).await?;
        Ok(Response::new(pb::GetAccountPathResponse {
            accounts: accounts.into_iter().map(account_to_proto).collect(),
        }))
    }

    async fn list_account_events(
        &self,
        request: Request<pb::ListAccountEventsRequest>,
    ) -> Answer<pb::ListAccountEventsResponse> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let account_id = parse::required_id(&mut v, "account_id", &req.account_id);
        let limit = v.page_size(req.page_size, 100, 1000);
        v.finish()?;
        let filter = pb::ListAccountEventsRequest {
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
        let events = flows::history(
            &client,
            &principal,
            account_id,
            req.recursive,
            after.unwrap_or(0),
            page.fetch(),
        )
        .await?;
        let (events, next_page_token) = page.close(events, |e| e.seq);
        Ok(Response::new(pb::ListAccountEventsResponse {
            events: events.into_iter().map(account_event_to_proto).collect(),
            next_page_token,
        }))
    }
}
