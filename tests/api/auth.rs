//! Authentication: only a token signed with the server's key, from its issuer, not expired, and
//! naming an account and a role, acts for anyone; the binary refuses to serve the network without
//! one.

use numbering_client::v1 as pb;
use serde_json::json;
use tonic::Code;

use crate::helpers::{TestApp, assert_error, now, ok, sign, spawn_app};
use crate::requests::get_account;

/// Checks that a call carrying `token` (or none) is refused as unauthenticated.
async fn assert_unauthenticated(app: &TestApp, token: Option<&str>, provider: &pb::Account) {
    let mut c = app.clients_with_token(token).await;
    assert_error(
        c.tenancy.get_account(get_account(&provider.id)).await,
        Code::Unauthenticated,
    );
}

/// An admin's claims for `account`, expiring at `exp`, from `iss`.
fn admin_claims(account: &str, exp: u64, iss: &str) -> serde_json::Value {
    json!({"sub": "u", "account": account, "roles": ["admin"], "exp": exp, "iss": iss})
}

#[tokio::test]
async fn a_call_without_a_token_is_unauthenticated() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    assert_unauthenticated(&app, None, &provider).await;
}

#[tokio::test]
async fn an_expired_token_is_unauthenticated() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let token = sign(&admin_claims(&provider.id, now() - 3600, "numbering-tests"));
    assert_unauthenticated(&app, Some(&token), &provider).await;
}

#[tokio::test]
async fn a_token_signed_with_another_key_is_unauthenticated() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &admin_claims(&provider.id, now() + 60, "numbering-tests"),
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-another-secret-another-secret"),
    )
    .unwrap();
    assert_unauthenticated(&app, Some(&token), &provider).await;
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
    assert_unauthenticated(&app, Some(&token), &provider).await;
}

#[tokio::test]
async fn a_token_from_another_issuer_is_unauthenticated() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let token = sign(&admin_claims(&provider.id, now() + 60, "someone-else"));
    assert_unauthenticated(&app, Some(&token), &provider).await;
}

#[tokio::test]
async fn a_token_without_an_account_or_role_is_unauthenticated() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    for claims in [
        json!({"sub": "u", "roles": ["admin"], "exp": now() + 60, "iss": "numbering-tests"}),
        json!({"sub": "u", "account": provider.id, "roles": [], "exp": now() + 60, "iss": "numbering-tests"}),
        admin_claims("not-a-uuid", now() + 60, "numbering-tests"),
    ] {
        assert_unauthenticated(&app, Some(&sign(&claims)), &provider).await;
    }
}

#[tokio::test]
async fn a_valid_token_acts_for_its_account() {
    let app = spawn_app().await;
    let provider = app.provider("Acme").await;
    let mut c = app.viewer(&provider).await;
    let got = ok(c.tenancy.get_account(get_account(&provider.id)).await);
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
