//! Keys that rotate: the server verifies with the keys a JWKS URL serves, picks up a new key when
//! a token names it, and stops honouring a key once the set no longer has it; no restart.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use numbering::auth::{Authenticator, JwksSource};
use numbering::server::serve;
use numbering::store::Db;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::helpers::{fresh_database, now, settings, wait_serving};
use crate::requests::get_account;

fn private(kid: &str) -> (EncodingKey, Algorithm) {
    match kid {
        "rsa" => (
            EncodingKey::from_rsa_pem(include_bytes!("../fixtures/rs256-test-private.pem"))
                .unwrap(),
            Algorithm::RS256,
        ),
        _ => (
            EncodingKey::from_ec_pem(include_bytes!("../fixtures/es256-test-private.pem")).unwrap(),
            Algorithm::ES256,
        ),
    }
}

fn jwks_of(kids: &[&str]) -> String {
    let keys = kids
        .iter()
        .map(|kid| {
            let (key, alg) = private(kid);
            let mut jwk = Jwk::from_encoding_key(&key, alg).unwrap();
            jwk.common.key_id = Some(kid.to_string());
            jwk
        })
        .collect();
    serde_json::to_string(&JwkSet { keys }).unwrap()
}

/// A platform token signed by the key `kid`.
fn token(kid: &str) -> String {
    token_of("numbering-tests", kid)
}

/// A platform token from the issuer `iss`, signed by the key `kid`.
fn token_of(iss: &str, kid: &str) -> String {
    let (key, alg) = private(kid);
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    let claims = json!({"sub": "ops", "roles": ["platform"], "iat": now(), "exp": now() + 600,
                        "iss": iss});
    encode(&header, &claims, &key).unwrap()
}

/// An HTTP server on loopback answering every request with the current `body`.
async fn jwks_server(body: Arc<Mutex<String>>) -> String {
    let base = http_server(move |_| Some(body.lock().unwrap().clone())).await;
    format!("{base}/.well-known/jwks.json")
}

/// An HTTP server on loopback (its base URL) answering each GET with `answer(path)`, or 404.
async fn http_server(answer: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&request);
                let path = head.split_whitespace().nth(1).unwrap_or_default();
                let (status, body) = match answer(path) {
                    Some(body) => ("200 OK", body),
                    None => ("404 Not Found", String::new()),
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    base
}

/// A server verifying with the JWKS at `url`, read again every `refresh`.
async fn spawn(url: String, refresh: Duration) -> (String, tokio::sync::oneshot::Sender<()>) {
    let auth = Authenticator::jwks(JwksSource::Url(url), Some("numbering-tests"), None, refresh)
        .await
        .expect("read the JWKS");
    spawn_with(auth).await
}

/// A server verifying callers' tokens with `auth`.
async fn spawn_with(auth: Authenticator) -> (String, tokio::sync::oneshot::Sender<()>) {
    let db = Db::new(fresh_database().await, 2).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, db, settings(auth), async move {
        let _ = stopped.await;
    }));
    wait_serving(&endpoint).await;
    (endpoint, stop)
}

/// The code a call with a token of `kid` gets: NOT_FOUND once authenticated (no such account).
async fn code_for(endpoint: &str, kid: &str) -> Code {
    code_with(endpoint, &token(kid)).await
}

/// The code a call with `token` gets.
async fn code_with(endpoint: &str, token: &str) -> Code {
    let mut c = numbering_client::connect(endpoint.to_string(), Some(token))
        .await
        .unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    match c.tenancy.get_account(get_account(&id)).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_a_new_key_is_accepted_once_the_jwks_serves_it_without_restart() {
    let body = Arc::new(Mutex::new(jwks_of(&["rsa"])));
    let url = jwks_server(body.clone()).await;
    // No interval refresh within the test: only the unknown kid reads the set again.
    let (endpoint, _stop) = spawn(url, Duration::from_secs(3600)).await;
    assert_eq!(code_for(&endpoint, "rsa").await, Code::NotFound);
    *body.lock().unwrap() = jwks_of(&["rsa", "ec"]);
    assert_eq!(code_for(&endpoint, "ec").await, Code::NotFound);
    assert_eq!(code_for(&endpoint, "rsa").await, Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_keys_tokens_are_refused_after_the_refresh() {
    let body = Arc::new(Mutex::new(jwks_of(&["rsa", "ec"])));
    let url = jwks_server(body.clone()).await;
    let (endpoint, _stop) = spawn(url, Duration::from_secs(1)).await;
    assert_eq!(code_for(&endpoint, "rsa").await, Code::NotFound);
    *body.lock().unwrap() = jwks_of(&["ec"]);
    // The next refresh (every second) drops the key; waited for generously.
    let mut code = Code::NotFound;
    for _ in 0..120 {
        code = code_for(&endpoint, "rsa").await;
        if code != Code::NotFound {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(code, Code::Unauthenticated);
    assert_eq!(code_for(&endpoint, "ec").await, Code::NotFound);
}

/// An OpenID provider on loopback: its issuer URL; its discovery document names `named_issuer`
/// (its own URL when `None`) and its JWKS (at `/keys`) serves `kids`.
async fn oidc_provider(named_issuer: Option<&str>, kids: &[&str]) -> String {
    let jwks = jwks_of(kids);
    let named = named_issuer.map(str::to_string);
    let base = Arc::new(OnceLock::<String>::new());
    let own = base.clone();
    let url = http_server(move |path| {
        let base = own.get()?;
        match path {
            "/.well-known/openid-configuration" => Some(
                json!({
                    "issuer": named.clone().unwrap_or_else(|| base.clone()),
                    "jwks_uri": format!("{base}/keys"),
                    "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                })
                .to_string(),
            ),
            "/keys" => Some(jwks.clone()),
            _ => None,
        }
    })
    .await;
    base.set(url.clone()).unwrap();
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oidc_issuer_is_discovered_and_only_its_tokens_verified() {
    let issuer = oidc_provider(None, &["rsa", "ec"]).await;
    let auth = Authenticator::oidc(&issuer, None, Duration::from_secs(3600))
        .await
        .expect("discover the issuer");
    let (endpoint, _stop) = spawn_with(auth).await;
    assert_eq!(
        code_with(&endpoint, &token_of(&issuer, "rsa")).await,
        Code::NotFound
    );
    assert_eq!(
        code_with(&endpoint, &token_of(&issuer, "ec")).await,
        Code::NotFound
    );
    // Signed by a key of the set, but from another issuer.
    assert_eq!(
        code_with(&endpoint, &token_of("https://elsewhere.example", "rsa")).await,
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_refused() {
    let issuer = oidc_provider(Some("https://impostor.example"), &["rsa"]).await;
    let refused = Authenticator::oidc(&issuer, None, Duration::from_secs(3600))
        .await
        .err()
        .expect("refused");
    assert!(refused.contains("impostor.example"), "{refused}");
}

#[tokio::test]
async fn an_issuer_without_a_discovery_document_is_refused() {
    let issuer = http_server(|_| None).await;
    let refused = Authenticator::oidc(&issuer, None, Duration::from_secs(3600))
        .await
        .err()
        .expect("refused");
    assert!(refused.contains("openid-configuration"), "{refused}");
}
