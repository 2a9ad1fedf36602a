//! The numbering service's generated gRPC client, with small conveniences: connect with a bearer
//! token (over TLS with a CA of your choice), a `request_id` filled in on every mutation so that a
//! retry is safe ([`RequestId`]), and the google.rpc error details of a refusal readable without
//! another dependency ([`StatusExt`], re-exported from `tonic-types`).
//!
//! ```no_run
//! use numbering_client::{RequestId, StatusExt, v1};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let mut clients = numbering_client::connect("http://127.0.0.1:50051", None).await?;
//! let request = v1::CreateAccountRequest {
//!     account: Some(v1::Account { display_name: "Acme".into(), ..Default::default() }),
//!     ..Default::default()
//! }
//! .with_request_id();
//! match clients.tenancy.create_account(request).await {
//!     Ok(account) => println!("created {}", account.into_inner().id),
//!     Err(status) => {
//!         let reason = status.get_details_error_info().map(|i| i.reason);
//!         println!("refused: {} ({reason:?})", status.message());
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! `examples/quickstart.rs` goes further: create, import, allocate and read an error detail.

#![deny(missing_docs)]

/// The generated messages and client stubs of the `numbering.v1` package (the protos' comments are
/// their docs).
#[allow(missing_docs)]
pub mod v1 {
    tonic::include_proto!("numbering.v1");
}

pub use v1::allocation_service_client::AllocationServiceClient;
pub use v1::number_pool_service_client::NumberPoolServiceClient;
pub use v1::tenancy_service_client::TenancyServiceClient;

/// `tonic`, re-exported: [`tonic::Status`], [`tonic::Code`], [`tonic::transport`].
pub use tonic;
/// The google.rpc error-detail types and the extension that reads them from a [`tonic::Status`]:
/// `status.get_details_error_info()`, `get_details_bad_request()`,
/// `get_details_precondition_failure()`, `get_details_quota_failure()`, ... Re-exported so that
/// reading a detail needs no other dependency.
pub use tonic_types::{self, ErrorDetails, StatusExt};

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
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
    /// The account tree: create, get, list, suspend, resume.
    pub tenancy: TenancyServiceClient<AuthChannel>,
    /// Numbers and series: add, import, export, search, inventory.
    pub number_pool: NumberPoolServiceClient<AuthChannel>,
    /// The life of a number: allocate, withdraw, transfer, assign, reserve, release, unbind,
    /// history.
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

/// How to reach a server: its address, a bearer token, the CA that signed its certificate.
///
/// ```no_run
/// # async fn example() -> Result<(), numbering_client::ConnectError> {
/// let pem = std::fs::read("ca.pem").expect("the CA file");
/// let clients = numbering_client::ConnectOptions::new("https://numbering.example:50051")
///     .token("eyJ...")
///     .ca_pem(pem)
///     .connect()
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    server: String,
    token: Option<String>,
    ca_pem: Option<Vec<u8>>,
    connect_timeout: Duration,
}

impl ConnectOptions {
    /// A server such as `http://127.0.0.1:50051`, or `https://...` for TLS (then set
    /// [`ca_pem`](Self::ca_pem): a public CA's bundle, such as
    /// `/etc/ssl/certs/ca-certificates.crt`, or your own CA).
    pub fn new(server: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            token: None,
            ca_pem: None,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// Sends `authorization: Bearer <token>` on every call.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Trusts the CA certificates of this PEM for an `https` server.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// How long to wait for the connection itself (10 s unless set).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Connects: the three clients on one channel.
    pub async fn connect(self) -> Result<Clients, ConnectError> {
        let mut endpoint = Endpoint::from_shared(self.server.clone())?
            .tcp_nodelay(true)
            .connect_timeout(self.connect_timeout);
        if self.server.starts_with("https://") || self.ca_pem.is_some() {
            let mut tls = ClientTlsConfig::new();
            if let Some(pem) = &self.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint.tls_config(tls)?;
        }
        let channel = endpoint.connect().await?;
        Ok(with_channel(channel, self.token.as_deref())?)
    }
}

/// Why [`connect`] failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The address is malformed, or the server cannot be reached (or its certificate is not
    /// trusted).
    Transport(tonic::transport::Error),
    /// The token cannot be sent as a header.
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

/// A fresh request id (a UUID v4) for a mutation's `request_id` field.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A mutation's `request_id`: the server answers a retry that carries the same id with the first
/// answer (and refuses the same id with another request), so a request that has one can be sent
/// again safely after a timeout or a lost connection.
///
/// ```
/// use numbering_client::{RequestId, v1};
///
/// let mut request = v1::ReleaseNumberRequest { number: "+13035550100".into(), ..Default::default() };
/// let id = request.ensure_request_id().to_string();
/// assert_eq!(request.ensure_request_id(), id, "an id already set is kept");
/// ```
pub trait RequestId {
    /// The request's `request_id` field.
    fn request_id_mut(&mut self) -> &mut String;

    /// Fills `request_id` with a fresh UUID when it is empty, and answers it.
    fn ensure_request_id(&mut self) -> &str {
        let id = self.request_id_mut();
        if id.is_empty() {
            *id = new_request_id();
        }
        id
    }

    /// The request with its `request_id` filled in (kept when already set).
    fn with_request_id(mut self) -> Self
    where
        Self: Sized,
    {
        self.ensure_request_id();
        self
    }
}

macro_rules! request_id {
    ($($t:ident),* $(,)?) => {
        $(
            impl RequestId for v1::$t {
                fn request_id_mut(&mut self) -> &mut String {
                    &mut self.request_id
                }
            }
        )*
    };
}

// Every mutation of the three services, and the import's options.
request_id!(
    CreateAccountRequest,
    UpdateAccountRequest,
    SuspendAccountRequest,
    ResumeAccountRequest,
    DeleteAccountRequest,
    AddNumberRequest,
    BatchAddNumbersRequest,
    UpdateNumberRequest,
    DeleteNumberRequest,
    CreateSeriesRequest,
    UpdateSeriesRequest,
    DeleteSeriesRequest,
    ImportOptions,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_request_id_is_filled_and_a_given_one_kept() {
        let filled = v1::AllocateNumbersRequest::default().with_request_id();
        assert!(uuid::Uuid::parse_str(&filled.request_id).is_ok());
        let other = v1::AllocateNumbersRequest::default().with_request_id();
        assert_ne!(
            filled.request_id, other.request_id,
            "each request its own id"
        );
        let kept = v1::ImportOptions {
            request_id: "retry-1".into(),
            ..Default::default()
        }
        .with_request_id();
        assert_eq!(kept.request_id, "retry-1");
    }
}
