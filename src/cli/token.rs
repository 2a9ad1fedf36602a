//! `numbering token`: a development token signed with the server's HS256 secret, carrying the
//! claims the server reads (`sub`, `account`, `roles`, `exp`; `iss` and `aud` when configured).

use std::io::Write;
use std::time::Duration;

use clap::{Args, ValueEnum};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

use super::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
    Platform,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The server's HS256 secret (at least 32 bytes).
    #[arg(long, env = "NUMBERING_JWT_HS256_SECRET", hide_env_values = true)]
    pub secret: String,
    /// The account the caller acts for (required but for the platform role).
    #[arg(long)]
    pub account: Option<String>,
    /// What the caller may do in that account and below.
    #[arg(long, value_enum, default_value_t = Role::Admin)]
    pub role: Role,
    /// The subject, written as the actor of every change [default: cli:$USER].
    #[arg(long)]
    pub sub: Option<String>,
    /// How long the token is valid: 3600, 90s, 30m, 12h, 7d.
    #[arg(long, value_parser = ttl, default_value = "1h")]
    pub ttl: Duration,
    /// The `iss` claim (the server's --jwt-issuer).
    #[arg(long, env = "NUMBERING_JWT_ISSUER")]
    pub issuer: Option<String>,
    /// The `aud` claim (the server's --jwt-audience).
    #[arg(long, env = "NUMBERING_JWT_AUDIENCE")]
    pub audience: Option<String>,
}

/// `3600`, `90s`, `30m`, `12h` or `7d`.
fn ttl(s: &str) -> Result<Duration, String> {
    let (digits, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: a number of seconds, or with s, m, h or d"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?}: the unit is s, m, h or d")),
    };
    match n.checked_mul(unit) {
        Some(0) | None => Err(format!("{s:?}: between 1 s and a few years")),
        Some(secs) => Ok(Duration::from_secs(secs)),
    }
}

pub fn run(args: TokenArgs) -> Result<(), Failure> {
    let token = mint(&args, jsonwebtoken::get_current_timestamp())?;
    let _ = writeln!(std::io::stdout(), "{token}");
    Ok(())
}

/// The signed token, issued at `now` (seconds since the epoch).
fn mint(args: &TokenArgs, now: u64) -> Result<String, Failure> {
    if args.secret.len() < 32 {
        return Err(Failure::Input(
            "the HS256 secret must be at least 32 bytes (the server refuses shorter ones)".into(),
        ));
    }
    let role = args
        .role
        .to_possible_value()
        .map(|v| v.get_name().to_string());
    let mut claims = json!({
        "sub": args.sub.clone().unwrap_or_else(|| {
            format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "operator".into()))
        }),
        "roles": [role],
        "iat": now,
        "exp": now + args.ttl.as_secs(),
    });
    match (&args.account, args.role) {
        (Some(account), _) => {
            uuid::Uuid::parse_str(account)
                .map_err(|_| Failure::Input(format!("--account {account:?} is not a UUID")))?;
            claims["account"] = account.clone().into();
        }
        (None, Role::Platform) => {}
        (None, _) => {
            return Err(Failure::Input(
                "--account is required but for --role platform".into(),
            ));
        }
    }
    if let Some(iss) = &args.issuer {
        claims["iss"] = iss.clone().into();
    }
    if let Some(aud) = &args.audience {
        claims["aud"] = aud.clone().into();
    }
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(args.secret.as_bytes()),
    )
    .map_err(|e| Failure::Other(format!("cannot sign the token: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Authenticator, KeySource};

    const SECRET: &str = "a-development-secret-of-32-bytes-at-least";

    fn args(role: Role, account: Option<&str>) -> TokenArgs {
        TokenArgs {
            secret: SECRET.into(),
            account: account.map(String::from),
            role,
            sub: Some("cli:test".into()),
            ttl: Duration::from_secs(60),
            issuer: Some("numbering-tests".into()),
            audience: None,
        }
    }

    #[test]
    fn the_token_carries_the_claims_the_server_reads() {
        let auth = Authenticator::new(
            KeySource::Hs256Secret(SECRET.as_bytes().to_vec()),
            Some("numbering-tests"),
            None,
        )
        .unwrap();
        let account = uuid::Uuid::new_v4();
        let token = mint(
            &args(Role::Operator, Some(&account.to_string())),
            jsonwebtoken::get_current_timestamp(),
        )
        .unwrap();
        let p = auth.authenticate(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(p.subject, "cli:test");
        assert_eq!(p.account_id, Some(account));
        assert_eq!(p.role, Some(crate::domain::principal::Role::Operator));
        assert!(!p.platform);
        let platform = mint(
            &args(Role::Platform, None),
            jsonwebtoken::get_current_timestamp(),
        )
        .unwrap();
        assert!(
            auth.authenticate(Some(&format!("Bearer {platform}")))
                .unwrap()
                .platform
        );
        // Expired a while ago (past the leeway): refused.
        let old = mint(
            &args(Role::Platform, None),
            jsonwebtoken::get_current_timestamp() - 600,
        )
        .unwrap();
        assert!(auth.authenticate(Some(&format!("Bearer {old}"))).is_err());
    }

    #[test]
    fn a_role_without_an_account_or_a_short_secret_is_bad_input() {
        assert_eq!(
            mint(&args(Role::Admin, None), 0).unwrap_err().exit_code(),
            2
        );
        assert_eq!(
            mint(&args(Role::Admin, Some("not-a-uuid")), 0)
                .unwrap_err()
                .exit_code(),
            2
        );
        let short = TokenArgs {
            secret: "short".into(),
            ..args(Role::Platform, None)
        };
        assert_eq!(mint(&short, 0).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn ttl_takes_seconds_or_a_unit() {
        assert_eq!(ttl("3600"), Ok(Duration::from_secs(3600)));
        assert_eq!(ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(ttl("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(ttl("12h"), Ok(Duration::from_secs(43200)));
        assert_eq!(ttl("7d"), Ok(Duration::from_secs(604800)));
        assert!(ttl("0").is_err());
        assert!(ttl("5w").is_err());
        assert!(ttl("h").is_err());
    }
}
