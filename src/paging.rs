//! AIP-158 page tokens: opaque, tamper-evident (HMAC-SHA256), and bound to the request that
//! made them, so a changed filter with an old token is refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;
const MAC_LEN: usize = 32;

/// Longest page token this service makes (a cursor of an E.164 and a UUID, signed, is about
/// 200 bytes); anything longer is not one of ours and is refused before it is decoded.
pub const MAX_PAGE_TOKEN_BYTES: usize = 512;

#[derive(Clone)]
pub struct PageTokens {
    key: Vec<u8>,
}

#[derive(Serialize, serde::Deserialize)]
struct Payload<C> {
    /// Digest of the request, paging fields cleared.
    f: String,
    /// Where the next page starts.
    c: C,
}

impl PageTokens {
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Self { key: key.into() }
    }

    /// A fresh random key: tokens then work only with this process.
    pub fn random() -> Self {
        Self::new(rand::random::<[u8; 32]>().to_vec())
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length.
        HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!())
    }

    /// A token for the page after `cursor` of the request `filter` (encoded, paging cleared).
    pub fn encode<C: Serialize>(&self, filter: &[u8], cursor: &C) -> String {
        let payload = Payload {
            f: digest(filter),
            c: cursor,
        };
        let mut bytes = serde_json::to_vec(&payload).unwrap_or_default();
        let mut mac = self.mac();
        mac.update(&bytes);
        bytes.extend_from_slice(&mac.finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The cursor in `token`, if it was made by this service for the same request; `None` for
    /// the first page.
    pub fn decode<C: DeserializeOwned>(&self, token: &str, filter: &[u8]) -> Result<Option<C>> {
        if token.is_empty() {
            return Ok(None);
        }
        let bad = |why: &str| Error::invalid("page_token", why);
        if token.len() > MAX_PAGE_TOKEN_BYTES {
            return Err(Error::invalid(
                "page_token",
                format!("at most {MAX_PAGE_TOKEN_BYTES} bytes"),
            ));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| bad("not a page token of this service"))?;
        if bytes.len() < MAC_LEN {
            return Err(bad("not a page token of this service"));
        }
        let (body, tag) = bytes.split_at(bytes.len() - MAC_LEN);
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_slice(tag)
            .map_err(|_| bad("not a page token of this service"))?;
        let payload: Payload<C> =
            serde_json::from_slice(body).map_err(|_| bad("not a page token of this service"))?;
        if payload.f != digest(filter) {
            return Err(bad("the request changed since this page token was made"));
        }
        Ok(Some(payload.c))
    }
}

fn digest(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d[..12].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_for_the_same_request_only() {
        let tokens = PageTokens::random();
        let t = tokens.encode(b"filter-a", &(3, 42i64));
        assert_eq!(
            tokens.decode::<(i32, i64)>(&t, b"filter-a").unwrap(),
            Some((3, 42))
        );
        assert!(tokens.decode::<(i32, i64)>(&t, b"filter-b").is_err());
    }

    #[test]
    fn a_tampered_or_foreign_token_is_refused() {
        let tokens = PageTokens::random();
        let t = tokens.encode(b"f", &(1, 2i64));
        let mut bytes = URL_SAFE_NO_PAD.decode(&t).unwrap();
        bytes[5] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(bytes);
        assert!(tokens.decode::<(i32, i64)>(&tampered, b"f").is_err());
        assert!(PageTokens::random().decode::<(i32, i64)>(&t, b"f").is_err());
        assert!(tokens.decode::<(i32, i64)>("%%%", b"f").is_err());
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(5000))]

            /// Any string as a page token, or a real token damaged anywhere: refused as
            /// INVALID_ARGUMENT on `page_token`, never a panic, never a cursor.
            #[test]
            fn a_forged_or_damaged_token_is_refused(
                junk in prop_oneof![any::<String>(), "[A-Za-z0-9_-]{0,200}"],
                at in any::<prop::sample::Index>(),
                bit in 0u8..8,
            ) {
                let tokens = PageTokens::new(b"key".to_vec());
                let refused = |r: Result<Option<(i32, String)>>| match r {
                    Err(Error::InvalidArgument(v)) => v.len() == 1 && v[0].field == "page_token",
                    _ => false,
                };
                if !junk.is_empty() {
                    prop_assert!(refused(tokens.decode(&junk, b"f")), "{:?}", junk);
                }
                let real = tokens.encode(b"f", &(7, "x".to_string()));
                let mut bytes = URL_SAFE_NO_PAD.decode(&real).unwrap();
                let i = at.index(bytes.len());
                bytes[i] ^= 1 << bit;
                prop_assert!(refused(tokens.decode(&URL_SAFE_NO_PAD.encode(&bytes), b"f")));
            }
        }
    }
}
