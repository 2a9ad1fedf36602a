//! Authentication: a bearer JWT in `authorization` metadata becomes a [`Principal`] in the
//! request's extensions. Signed by the platform with an HS256 secret, or RS256 / ES256 keys.

use std::sync::Arc;
use std::time::Duration;

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
    exp: u64,
    /// When the token was issued; without it, its lifetime counts from now.
    #[serde(default)]
    iat: Option<u64>,
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
    max_lifetime: Duration,
}

/// The longest a token may live (`exp - iat`) unless configured otherwise: a leaked token
/// cannot stay good for years.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Most bytes of a token's `sub`: it keys the caller's request ids.
pub const MAX_SUBJECT_BYTES: usize = 256;

/// Where the verification key comes from.
pub enum KeySource {
    Hs256Secret(Vec<u8>),
    /// A PEM public key: RSA (RS256) or EC P-256 (ES256).
    PublicKeyPem(Vec<u8>),
}

impl Authenticator {
    pub fn disabled() -> Self {
        Self {
            verifier: None,
            max_lifetime: DEFAULT_MAX_LIFETIME,
        }
    }

    /// Refuses tokens that live longer than `max` (`exp - iat`, or `exp - now` without `iat`).
    pub fn with_max_lifetime(self, max: Duration) -> Self {
        Self {
            max_lifetime: max,
            ..self
        }
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
        // A configured issuer or audience is required, not only checked when present.
        let mut required = vec!["exp", "sub"];
        required.extend(issuer.map(|_| "iss"));
        required.extend(audience.map(|_| "aud"));
        validation.set_required_spec_claims(&required);
        validation.validate_nbf = true;
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
            max_lifetime: DEFAULT_MAX_LIFETIME,
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
        let issued = claims
            .iat
            .unwrap_or_else(jsonwebtoken::get_current_timestamp);
        if claims.exp.saturating_sub(issued) > self.max_lifetime.as_secs() {
            return Err(unauthenticated(&format!(
                "the token lives longer than {} s (exp - iat)",
                self.max_lifetime.as_secs()
            )));
        }
        principal(claims)
    }
}

fn principal(claims: Claims) -> Result<Principal, Error> {
    if claims.sub.trim().is_empty() {
        return Err(Error::Unauthenticated("the token's sub is empty".into()));
    }
    if claims.sub.len() > MAX_SUBJECT_BYTES || claims.sub.chars().any(char::is_control) {
        return Err(Error::Unauthenticated(format!(
            "the token's sub must be printable, at most {MAX_SUBJECT_BYTES} bytes"
        )));
    }
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
        let account = principal.account_id;
        if let Some(slot) = request.extensions().get::<crate::observe::CallerSlot>() {
            slot.set(&principal.subject, account);
        }
        let span = tracing::Span::current();
        span.record("subject", principal.subject.as_str());
        if let Some(a) = account {
            span.record("account", tracing::field::display(a));
        }
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;

    fn claims(account: Uuid) -> serde_json::Value {
        let exp = jsonwebtoken::get_current_timestamp() + 60;
        json!({"sub": "svc", "account": account.to_string(), "roles": ["operator"], "exp": exp, "aud": "numbering"})
    }

    fn check(public: &[u8], algorithm: Algorithm, private: EncodingKey) {
        let auth = Authenticator::new(
            KeySource::PublicKeyPem(public.to_vec()),
            None,
            Some("numbering"),
        )
        .unwrap();
        let account = Uuid::new_v4();
        let token = encode(&Header::new(algorithm), &claims(account), &private).unwrap();
        let p = auth.authenticate(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(p.account_id, Some(account));
        assert_eq!(p.role, Some(Role::Operator));
        assert!(!p.platform);
        // Another account's claims under the first token's signature.
        let other = encode(&Header::new(algorithm), &claims(Uuid::new_v4()), &private).unwrap();
        let (signature, payload) = (
            token.rsplit('.').next().unwrap(),
            other.split('.').nth(1).unwrap(),
        );
        let forged = format!("{}.{payload}.{signature}", token.split('.').next().unwrap());
        assert!(matches!(
            auth.authenticate(Some(&format!("Bearer {forged}"))),
            Err(Error::Unauthenticated(_))
        ));
        let mut wrong_audience = claims(account);
        wrong_audience["aud"] = "someone-else".into();
        let token = encode(&Header::new(algorithm), &wrong_audience, &private).unwrap();
        assert!(matches!(
            auth.authenticate(Some(&format!("Bearer {token}"))),
            Err(Error::Unauthenticated(_))
        ));
    }

    #[test]
    fn rs256_tokens_verify_with_the_public_key_file() {
        check(
            include_bytes!("../tests/fixtures/rs256-test-public.pem"),
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(include_bytes!("../tests/fixtures/rs256-test-private.pem"))
                .unwrap(),
        );
    }

    #[test]
    fn es256_tokens_verify_with_the_public_key_file() {
        check(
            include_bytes!("../tests/fixtures/es256-test-public.pem"),
            Algorithm::ES256,
            EncodingKey::from_ec_pem(include_bytes!("../tests/fixtures/es256-test-private.pem"))
                .unwrap(),
        );
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn hs256(issuer: Option<&str>, audience: Option<&str>) -> Authenticator {
        Authenticator::new(KeySource::Hs256Secret(SECRET.to_vec()), issuer, audience).unwrap()
    }

    /// What `auth` answers for a token of `claims`: the refusal's message, or "ok".
    fn answer(auth: &Authenticator, claims: &serde_json::Value) -> String {
        let token = encode(
            &Header::default(),
            claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        match auth.authenticate(Some(&format!("Bearer {token}"))) {
            Ok(_) => "ok".into(),
            Err(Error::Unauthenticated(why)) => why,
            Err(other) => panic!("not UNAUTHENTICATED: {other:?}"),
        }
    }

    fn good() -> serde_json::Value {
        let now = jsonwebtoken::get_current_timestamp();
        json!({"sub": "svc", "roles": ["platform"], "iat": now, "exp": now + 600,
               "iss": "issuer", "aud": "numbering"})
    }

    #[test]
    fn a_configured_issuer_or_audience_must_be_in_the_token() {
        let auth = hs256(Some("issuer"), Some("numbering"));
        assert_eq!(answer(&auth, &good()), "ok");
        for claim in ["iss", "aud"] {
            let mut claims = good();
            claims.as_object_mut().unwrap().remove(claim);
            assert!(answer(&auth, &claims).contains(claim), "{claim}");
        }
    }

    #[test]
    fn a_token_not_yet_valid_is_refused() {
        let auth = hs256(None, None);
        let mut claims = good();
        claims["nbf"] = (jsonwebtoken::get_current_timestamp() + 300).into();
        assert!(answer(&auth, &claims).contains("ImmatureSignature"));
    }

    #[test]
    fn a_subject_must_be_non_empty_and_printable() {
        let auth = hs256(None, None);
        for sub in ["", "  ", "a\0b", "line\nbreak", "\u{7f}"] {
            let mut claims = good();
            claims["sub"] = sub.into();
            assert!(answer(&auth, &claims).contains("sub"), "{sub:?}");
        }
        let mut claims = good();
        claims["sub"] = "x".repeat(MAX_SUBJECT_BYTES + 1).into();
        assert!(answer(&auth, &claims).contains("sub"));
    }

    #[test]
    fn a_token_living_longer_than_the_maximum_is_refused() {
        let auth = hs256(None, None).with_max_lifetime(Duration::from_secs(3600));
        let now = jsonwebtoken::get_current_timestamp();
        let mut claims = good();
        claims["exp"] = (now + 3600 * 24 * 365).into();
        assert!(answer(&auth, &claims).contains("lives longer"));
        claims.as_object_mut().unwrap().remove("iat");
        assert!(answer(&auth, &claims).contains("lives longer"));
        claims["exp"] = (now + 1800).into();
        assert_eq!(answer(&auth, &claims), "ok");
    }

    #[test]
    fn a_short_hs256_secret_or_a_bad_key_file_is_refused_at_start() {
        assert!(Authenticator::new(KeySource::Hs256Secret(b"short".to_vec()), None, None).is_err());
        assert!(
            Authenticator::new(KeySource::PublicKeyPem(b"not a key".to_vec()), None, None).is_err()
        );
    }
}
