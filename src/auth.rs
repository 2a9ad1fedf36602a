//! Authentication: a bearer JWT in `authorization` metadata becomes a [`Principal`] in the
//! request's extensions. Signed by the platform with an HS256 secret, or RS256 / ES256 keys.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;
use tonic::{Request, Status};
use uuid::Uuid;

use crate::domain::principal::{Principal, Role};
use crate::error::Error;

/// The claims the service reads.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    /// The account the caller acts for.
    #[serde(default)]
    account: Option<String>,
    /// Any of `viewer`, `operator`, `admin`, `platform`.
    #[serde(default)]
    roles: Vec<String>,
}

/// How tokens are checked; `None` turns authentication off (loopback only).
#[derive(Clone)]
pub struct Authenticator {
    verifier: Option<Arc<(DecodingKey, Validation)>>,
}

/// Where the verification key comes from.
pub enum KeySource {
    Hs256Secret(Vec<u8>),
    /// A PEM public key: RSA (RS256) or EC P-256 (ES256).
    PublicKeyPem(Vec<u8>),
}

impl Authenticator {
    pub fn disabled() -> Self {
        Self { verifier: None }
    }

    pub fn new(
        key: KeySource,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<Self, String> {
        let (key, algorithm) = match key {
            KeySource::Hs256Secret(secret) => {
                if secret.len() < 32 {
                    return Err("the HS256 secret must be at least 32 bytes".into());
                }
                (DecodingKey::from_secret(&secret), Algorithm::HS256)
            }
            KeySource::PublicKeyPem(pem) => match DecodingKey::from_rsa_pem(&pem) {
                Ok(k) => (k, Algorithm::RS256),
                Err(_) => (
                    DecodingKey::from_ec_pem(&pem)
                        .map_err(|e| format!("the public key is neither RSA nor EC PEM: {e}"))?,
                    Algorithm::ES256,
                ),
            },
        };
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        if let Some(iss) = issuer {
            validation.set_issuer(&[iss]);
        }
        match audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(Self {
            verifier: Some(Arc::new((key, validation))),
        })
    }

    pub fn enabled(&self) -> bool {
        self.verifier.is_some()
    }

    /// The principal an `authorization` header value stands for.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, Error> {
        let Some(verifier) = &self.verifier else {
            return Ok(Principal::unauthenticated_platform());
        };
        let unauthenticated = |why: &str| Error::Unauthenticated(why.to_string());
        let header = header.ok_or_else(|| unauthenticated("missing bearer token"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| unauthenticated("authorization must be `Bearer <token>`"))?;
        let claims = decode::<Claims>(token.trim(), &verifier.0, &verifier.1)
            .map_err(|e| Error::Unauthenticated(format!("invalid token: {e}")))?
            .claims;
        principal(claims)
    }
}

fn principal(claims: Claims) -> Result<Principal, Error> {
    let platform = claims.roles.iter().any(|r| r == "platform");
    let role = claims.roles.iter().filter_map(|r| Role::parse(r)).max();
    let account_id = match claims.account.as_deref() {
        Some(a) => Some(
            Uuid::parse_str(a)
                .map_err(|_| Error::Unauthenticated("the account claim is not a UUID".into()))?,
        ),
        None if platform => None,
        None => return Err(Error::Unauthenticated("the token names no account".into())),
    };
    if role.is_none() && !platform {
        return Err(Error::Unauthenticated("the token carries no role".into()));
    }
    Ok(Principal {
        subject: claims.sub,
        account_id,
        role,
        platform,
    })
}

/// The tonic interceptor that authenticates every call of the three services.
#[derive(Clone)]
pub struct AuthInterceptor(pub Authenticator);

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let principal = self.0.authenticate(header)?;
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}
