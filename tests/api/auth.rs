use numbering_client::v1 as pb;
use serde_json::json;
use tonic::Code;

use crate::helpers::{As, assert_error, now, sign, spawn_app};

fn get(id: &str) -> pb::GetAccountRequest {
    pb::GetAccountRequest { id: id.into() }
}

#[tokio::test]
async fn a_call_without_a_token_is_unauthenticated() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.clients_with_token(None).await;
    assert_error(
        c.tenancy.get_account(get(&provider.id)).await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn an_expired_token_is_unauthenticated() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let token = sign(&json!({
        "sub": "u", "account": provider.id, "roles": ["admin"],
        "exp": now() - 3600, "iss": "numbering-tests",
    }));
    let mut c = app.clients_with_token(Some(&token)).await;
    assert_error(
        c.tenancy.get_account(get(&provider.id)).await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn a_token_signed_with_another_key_is_unauthenticated() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "u", "account": provider.id, "roles": ["admin"], "exp": now() + 60, "iss": "numbering-tests"}),
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-another-secret-another-secret"),
    )
    .unwrap();
    let mut c = app.clients_with_token(Some(&token)).await;
    assert_error(
        c.tenancy.get_account(get(&provider.id)).await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn an_unsigned_token_is_unauthenticated() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    // alg "none": header.payload. with an empty signature.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64.encode(
        json!({"sub": "u", "account": provider.id, "roles": ["platform"], "exp": now() + 60, "iss": "numbering-tests"})
            .to_string(),
    );
    let token = format!("{header}.{payload}.");
    let mut c = app.clients_with_token(Some(&token)).await;
    assert_error(
        c.tenancy.get_account(get(&provider.id)).await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn a_token_from_another_issuer_is_unauthenticated() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let token = sign(&json!({
        "sub": "u", "account": provider.id, "roles": ["admin"],
        "exp": now() + 60, "iss": "someone-else",
    }));
    let mut c = app.clients_with_token(Some(&token)).await;
    assert_error(
        c.tenancy.get_account(get(&provider.id)).await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn a_token_without_an_account_or_role_is_unauthenticated() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    for claims in [
        json!({"sub": "u", "roles": ["admin"], "exp": now() + 60, "iss": "numbering-tests"}),
        json!({"sub": "u", "account": provider.id, "roles": [], "exp": now() + 60, "iss": "numbering-tests"}),
        json!({"sub": "u", "account": "not-a-uuid", "roles": ["admin"], "exp": now() + 60, "iss": "numbering-tests"}),
    ] {
        let mut c = app.clients_with_token(Some(&sign(&claims))).await;
        assert_error(
            c.tenancy.get_account(get(&provider.id)).await,
            Code::Unauthenticated,
        );
    }
}

#[tokio::test]
async fn a_valid_token_acts_for_its_account() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.clients(As::Viewer(&provider.id)).await;
    let got = c
        .tenancy
        .get_account(get(&provider.id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.display_name, "Acme");
}

#[test]
fn a_non_loopback_listener_without_keys_refuses_to_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_numbering"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env_remove("NUMBERING_JWT_HS256_SECRET")
        .env_remove("NUMBERING_JWT_PUBLIC_KEY_FILE")
        .env("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
    assert!(stderr.contains("without authentication"), "{stderr}");
}
