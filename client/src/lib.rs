//! The numbering service's generated gRPC client, with small conveniences: connect with a bearer
//! token, and a fresh `request_id` for every mutation.

pub mod v1 {
    tonic::include_proto!("numbering.v1");
}

pub use v1::allocation_service_client::AllocationServiceClient;
pub use v1::number_pool_service_client::NumberPoolServiceClient;
pub use v1::tenancy_service_client::TenancyServiceClient;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl BearerToken {
    /// `None` sends no authorization header (a server running without keys).
    pub fn new(token: Option<&str>) -> Result<Self, tonic::metadata::errors::InvalidMetadataValue> {
        Ok(Self(
            token.map(|t| format!("Bearer {t}").parse()).transpose()?,
        ))
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel that carries a bearer token.
pub type AuthChannel = InterceptedService<Channel, BearerToken>;

/// The three clients on one connection.
#[derive(Clone)]
pub struct Clients {
    pub tenancy: TenancyServiceClient<AuthChannel>,
    pub number_pool: NumberPoolServiceClient<AuthChannel>,
    pub allocation: AllocationServiceClient<AuthChannel>,
}

/// Connects to `endpoint` (such as `http://127.0.0.1:50051`) with an optional bearer token.
pub async fn connect(
    endpoint: impl Into<String>,
    token: Option<&str>,
) -> Result<Clients, ConnectError> {
    let channel = Endpoint::from_shared(endpoint.into())?
        .tcp_nodelay(true)
        .connect()
        .await?;
    Ok(with_channel(channel, token)?)
}

/// Builds the three clients on an existing channel.
pub fn with_channel(
    channel: Channel,
    token: Option<&str>,
) -> Result<Clients, tonic::metadata::errors::InvalidMetadataValue> {
    let auth = BearerToken::new(token)?;
    Ok(Clients {
        tenancy: TenancyServiceClient::with_interceptor(channel.clone(), auth.clone()),
        number_pool: NumberPoolServiceClient::with_interceptor(channel.clone(), auth.clone()),
        allocation: AllocationServiceClient::with_interceptor(channel, auth),
    })
}

/// Why [`connect`] failed.
#[derive(Debug)]
pub enum ConnectError {
    Transport(tonic::transport::Error),
    Token(tonic::metadata::errors::InvalidMetadataValue),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "cannot connect: {e}"),
            Self::Token(e) => write!(f, "bad token: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl From<tonic::transport::Error> for ConnectError {
    fn from(e: tonic::transport::Error) -> Self {
        Self::Transport(e)
    }
}

impl From<tonic::metadata::errors::InvalidMetadataValue> for ConnectError {
    fn from(e: tonic::metadata::errors::InvalidMetadataValue) -> Self {
        Self::Token(e)
    }
}

/// A fresh request id (a UUID) for a mutation's `request_id` field.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
