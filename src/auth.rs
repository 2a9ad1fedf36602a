//! Authentication: a bearer JWT in `authorization` metadata becomes a [`Principal`] in the
//! request's extensions. Signed by the platform with an HS256 secret, or RS256 / ES256 keys:
//! one PEM public key, or a JWKS (a file or a URL) refreshed on an interval and on an unknown
//! `kid`, several keys valid at once.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
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
    verifier: Option<Arc<Verifier>>,
    max_lifetime: Duration,
}

// Built once and held behind an Arc: the size of a variant costs nothing per call.
#[allow(clippy::large_enum_variant)]
enum Verifier {
    /// One key (an HS256 secret or a PEM public key).
    Static(DecodingKey, Validation),
    /// The keys of a JWKS, replaced when it is fetched again.
    Jwks(Arc<Jwks>),
}

/// Where a JWKS is read from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    File(PathBuf),
    /// `https://` (or `http://`, for a sidecar on loopback).
    Url(String),
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Url(u) => f.write_str(u),
        }
    }
}

/// A token naming a `kid` the set does not hold fetches the set again at most this often: a
/// stream of forged `kid`s cannot turn into a stream of fetches.
pub const UNKNOWN_KID_REFRESH_MIN: Duration = Duration::from_secs(30);

/// How long one fetch of a JWKS URL may take.
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The most bytes of a JWKS document.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// One verification key of a JWKS.
struct JwksKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// The part of an OpenID Provider's configuration document the server uses.
#[derive(Deserialize)]
struct OidcConfiguration {
    issuer: String,
    jwks_uri: String,
}

/// The `jwks_uri` of `issuer`'s discovery document, once the document is read, not larger than
/// a JWKS may be, and names `issuer` itself.
async fn discover(issuer: &str) -> Result<String, String> {
    if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
        return Err(format!(
            "OIDC issuer {issuer:?}: an https:// (or http://) URL"
        ));
    }
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let http = reqwest::Client::builder()
        .timeout(JWKS_FETCH_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let body = http
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("cannot fetch {url}: {e}"))?
        .bytes()
        .await
        .map_err(|e| format!("cannot fetch {url}: {e}"))?;
    if body.len() > MAX_JWKS_BYTES {
        return Err(format!("{url}: larger than {MAX_JWKS_BYTES} bytes"));
    }
    let document: OidcConfiguration = serde_json::from_slice(&body)
        .map_err(|e| format!("{url}: not an OpenID configuration: {e}"))?;
    if document.issuer != issuer {
        return Err(format!(
            "{url} names the issuer {:?}, not {issuer:?}: refused (a document must name its own issuer)",
            document.issuer
        ));
    }
    Ok(document.jwks_uri)
}

/// A JWKS and what it was read from.
pub struct Jwks {
    source: JwksSource,
    http: reqwest::Client,
    keys: RwLock<Arc<Vec<JwksKey>>>,
    /// When a token's unknown `kid` last made the set be fetched.
    unknown_kid_fetch: Mutex<Option<Instant>>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl Jwks {
    async fn fetch(&self) -> Result<Vec<JwksKey>, String> {
        let body = match &self.source {
            JwksSource::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            JwksSource::Url(url) => {
                let response = self
                    .http
                    .get(url)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| format!("cannot fetch {url}: {e}"))?;
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| format!("cannot fetch {url}: {e}"))?;
                body.to_vec()
            }
        };
        if body.len() > MAX_JWKS_BYTES {
            return Err(format!(
                "{}: the JWKS is larger than {MAX_JWKS_BYTES} bytes",
                self.source
            ));
        }
        parse_jwks(&body).map_err(|e| format!("{}: {e}", self.source))
    }

    /// Fetches the set and, when it reads, puts it in place of the old one.
    async fn refresh(&self) -> Result<usize, String> {
        let keys = self.fetch().await?;
        let n = keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(n)
    }

    fn current(&self) -> Arc<Vec<JwksKey>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether an unknown `kid` may fetch the set now (at most once per
    /// [`UNKNOWN_KID_REFRESH_MIN`]); claims the turn when it may.
    fn may_fetch_for_unknown_kid(&self) -> bool {
        let mut last = self
            .unknown_kid_fetch
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match *last {
            Some(t) if t.elapsed() < UNKNOWN_KID_REFRESH_MIN => false,
            _ => {
                *last = Some(Instant::now());
                true
            }
        }
    }

    /// Fetches the set for a token whose `kid` it lacks, waiting for the fetch where the
    /// runtime allows blocking this thread (multi-threaded), else in the background: the
    /// caller's retry then finds the key.
    fn refresh_for_unknown_kid(self: &Arc<Self>) {
        if !self.may_fetch_for_unknown_kid() {
            return;
        }
        let me = self.clone();
        let refresh = async move {
            match me.refresh().await {
                Ok(n) => {
                    tracing::info!(source = %me.source, keys = n, "JWKS fetched for an unknown kid")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "JWKS refresh for an unknown kid failed; the old keys stay")
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| h.block_on(refresh));
            }
            Ok(h) => {
                h.spawn(refresh);
            }
            Err(_) => {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(refresh);
                }
            }
        }
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        validation(algorithm, self.issuer.as_deref(), self.audience.as_deref())
    }
}

/// The RS256 and ES256 keys of a JWKS document; keys of other kinds (encryption keys, other
/// algorithms) are skipped.
fn parse_jwks(body: &[u8]) -> Result<Vec<JwksKey>, String> {
    let set: JwkSet =
        serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        if matches!(
            jwk.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        ) {
            continue;
        }
        let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                if ec.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => {
                tracing::warn!(kid = ?jwk.common.key_id, "JWKS key skipped: only RS256 and ES256 keys verify tokens");
                continue;
            }
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| {
            format!(
                "the key {:?} is not usable: {e}",
                jwk.common.key_id.as_deref().unwrap_or("(no kid)")
            )
        })?;
        keys.push(JwksKey {
            kid: jwk.common.key_id.clone(),
            algorithm,
            key,
        });
    }
    Ok(keys)
}

/// Checks of every token: `exp`, `sub`, a configured issuer and audience required.
fn validation(algorithm: Algorithm, issuer: Option<&str>, audience: Option<&str>) -> Validation {
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
    validation
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
        Ok(Self {
            verifier: Some(Arc::new(Verifier::Static(
                key,
                validation(algorithm, issuer, audience),
            ))),
            max_lifetime: DEFAULT_MAX_LIFETIME,
        })
    }

    /// Verifies with the keys of a JWKS, read now (an error if it cannot be) and again every
    /// `refresh` and when a token names a `kid` it does not hold. A failed refresh keeps the
    /// keys read before. Must be called inside a Tokio runtime (the refresh runs on it).
    pub async fn jwks(
        source: JwksSource,
        issuer: Option<&str>,
        audience: Option<&str>,
        refresh: Duration,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(JWKS_FETCH_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        let jwks = Arc::new(Jwks {
            source,
            http,
            keys: RwLock::new(Arc::new(Vec::new())),
            unknown_kid_fetch: Mutex::new(None),
            issuer: issuer.map(str::to_string),
            audience: audience.map(str::to_string),
        });
        let n = jwks.refresh().await?;
        if n == 0 {
            return Err(format!(
                "{}: the JWKS holds no RS256 or ES256 key",
                jwks.source
            ));
        }
        tracing::info!(source = %jwks.source, keys = n, "JWKS read");
        tokio::spawn(refresh_every(Arc::downgrade(&jwks), refresh));
        Ok(Self {
            verifier: Some(Arc::new(Verifier::Jwks(jwks))),
            max_lifetime: DEFAULT_MAX_LIFETIME,
        })
    }

    /// OIDC issuer discovery: reads `issuer`'s `/.well-known/openid-configuration`, checks that
    /// it names the same issuer (OpenID Connect Discovery 1.0, section 4.3), and verifies with
    /// the keys at its `jwks_uri` as [`Authenticator::jwks`] does, tokens' `iss` checked against
    /// `issuer`. The document is read once, at start; the keys rotate as the JWKS does.
    pub async fn oidc(
        issuer: &str,
        audience: Option<&str>,
        refresh: Duration,
    ) -> Result<Self, String> {
        let jwks_uri = discover(issuer).await?;
        tracing::info!(issuer, jwks_uri, "OIDC issuer discovered");
        Self::jwks(JwksSource::Url(jwks_uri), Some(issuer), audience, refresh).await
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
        let token = token.trim();
        let invalid =
            |e: jsonwebtoken::errors::Error| Error::Unauthenticated(format!("invalid token: {e}"));
        let claims = match verifier.as_ref() {
            Verifier::Static(key, validation) => {
                decode::<Claims>(token, key, validation).map_err(invalid)
            }
            Verifier::Jwks(jwks) => {
                let header = decode_header(token).map_err(invalid)?;
                // A token without a `kid` is tried with every key of its algorithm.
                let fits = |k: &JwksKey| {
                    k.algorithm == header.alg && (header.kid.is_none() || k.kid == header.kid)
                };
                let mut keys = jwks.current();
                if header.kid.is_some() && !keys.iter().any(fits) {
                    jwks.refresh_for_unknown_kid();
                    keys = jwks.current();
                }
                let validation = jwks.validation(header.alg);
                let mut answer = Err(unauthenticated(&format!(
                    "invalid token: no {:?} key with kid {:?} in the key set",
                    header.alg,
                    header.kid.as_deref().unwrap_or("")
                )));
                for k in keys.iter().filter(|k| fits(k)) {
                    answer = decode::<Claims>(token, &k.key, &validation).map_err(invalid);
                    if answer.is_ok() {
                        break;
                    }
                }
                answer
            }
        }?
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

/// Fetches the set every `interval` while the authenticator lives.
async fn refresh_every(jwks: Weak<Jwks>, interval: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(jwks) = jwks.upgrade() else { return };
        match jwks.refresh().await {
            Ok(n) => tracing::debug!(source = %jwks.source, keys = n, "JWKS refreshed"),
            Err(e) => tracing::warn!(error = %e, "JWKS refresh failed; the old keys stay"),
        }
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

    /// A JWKS of the fixture keys named: `rsa` (RS256) and `ec` (ES256), each under its kid.
    pub(crate) fn jwks_of(kids: &[&str]) -> String {
        let keys: Vec<_> = kids
            .iter()
            .map(|kid| {
                let (key, alg) = private(kid);
                let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, alg).unwrap();
                jwk.common.key_id = Some(kid.to_string());
                jwk
            })
            .collect();
        serde_json::to_string(&JwkSet { keys }).unwrap()
    }

    fn private(kid: &str) -> (EncodingKey, Algorithm) {
        match kid {
            "rsa" => (
                EncodingKey::from_rsa_pem(include_bytes!(
                    "../tests/fixtures/rs256-test-private.pem"
                ))
                .unwrap(),
                Algorithm::RS256,
            ),
            "ec" => (
                EncodingKey::from_ec_pem(include_bytes!(
                    "../tests/fixtures/es256-test-private.pem"
                ))
                .unwrap(),
                Algorithm::ES256,
            ),
            other => panic!("no fixture key {other}"),
        }
    }

    /// A platform token signed by the fixture key `key`, naming `kid` (or none).
    fn signed(key: &str, kid: Option<&str>) -> String {
        let (private, alg) = private(key);
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        let now = jsonwebtoken::get_current_timestamp();
        let claims = json!({"sub": "svc", "roles": ["platform"], "iat": now, "exp": now + 600});
        format!("Bearer {}", encode(&header, &claims, &private).unwrap())
    }

    async fn jwks_file(kids: &[&str]) -> (tempfile::TempDir, PathBuf, Authenticator) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwks.json");
        std::fs::write(&file, jwks_of(kids)).unwrap();
        let auth = Authenticator::jwks(
            JwksSource::File(file.clone()),
            None,
            None,
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
        (dir, file, auth)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_key_of_the_jwks_verifies_its_own_tokens() {
        let (_dir, _file, auth) = jwks_file(&["rsa", "ec"]).await;
        for key in ["rsa", "ec"] {
            assert!(
                auth.authenticate(Some(&signed(key, Some(key)))).is_ok(),
                "{key}"
            );
            // Without a kid, the keys of the token's algorithm are tried.
            assert!(auth.authenticate(Some(&signed(key, None))).is_ok(), "{key}");
        }
        // A kid the set holds, but another key's signature.
        assert!(matches!(
            auth.authenticate(Some(&signed("rsa", Some("ec")))),
            Err(Error::Unauthenticated(_))
        ));
        // An HS256 token has no key in a JWKS of public keys.
        assert!(matches!(
            auth.authenticate(Some(&format!(
                "Bearer {}",
                encode(
                    &Header::default(),
                    &good(),
                    &EncodingKey::from_secret(SECRET)
                )
                .unwrap()
            ))),
            Err(Error::Unauthenticated(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unknown_kid_reads_the_jwks_again_at_most_once_per_interval() {
        let (_dir, file, auth) = jwks_file(&["rsa"]).await;
        // The new key appears: its first token reads the set again, and is accepted.
        std::fs::write(&file, jwks_of(&["rsa", "ec"])).unwrap();
        assert!(auth.authenticate(Some(&signed("ec", Some("ec")))).is_ok());
        // Another unknown kid within UNKNOWN_KID_REFRESH_MIN: refused without reading the set,
        // even though the file now holds it.
        assert!(
            auth.authenticate(Some(&signed("rsa", Some("rsa-2"))))
                .is_err()
        );
        let mut renamed: serde_json::Value =
            serde_json::from_str(&jwks_of(&["rsa", "ec"])).unwrap();
        renamed["keys"][0]["kid"] = "rsa-2".into();
        std::fs::write(&file, renamed.to_string()).unwrap();
        let refused = auth.authenticate(Some(&signed("rsa", Some("rsa-2"))));
        assert!(
            matches!(&refused, Err(Error::Unauthenticated(why)) if why.contains("rsa-2")),
            "{refused:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_removed_from_the_jwks_is_refused_after_the_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwks.json");
        std::fs::write(&file, jwks_of(&["rsa", "ec"])).unwrap();
        let auth = Authenticator::jwks(
            JwksSource::File(file.clone()),
            None,
            None,
            Duration::from_millis(100),
        )
        .await
        .unwrap();
        assert!(auth.authenticate(Some(&signed("rsa", Some("rsa")))).is_ok());
        std::fs::write(&file, jwks_of(&["ec"])).unwrap();
        // Waits for the refresh (every 100 ms), however slow the machine.
        let mut refused = false;
        for _ in 0..600 {
            if auth.authenticate(Some(&signed("rsa", None))).is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(refused, "the removed key still verifies after 30 s");
        assert!(auth.authenticate(Some(&signed("ec", Some("ec")))).is_ok());
        // A set that no longer reads keeps the keys read before.
        std::fs::write(&file, "not json").unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(auth.authenticate(Some(&signed("ec", Some("ec")))).is_ok());
    }

    #[tokio::test]
    async fn a_jwks_that_cannot_be_read_or_holds_no_usable_key_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let empty = dir.path().join("empty.json");
        std::fs::write(&empty, r#"{"keys": []}"#).unwrap();
        for (file, why) in [(missing, "cannot read"), (empty, "no RS256 or ES256 key")] {
            let err =
                Authenticator::jwks(JwksSource::File(file), None, None, Duration::from_secs(60))
                    .await
                    .err()
                    .unwrap();
            assert!(err.contains(why), "{err}");
        }
    }
}
