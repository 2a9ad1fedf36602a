//! The domain the three services share: validated identifiers and values, principals and their
//! roles, and the rules of accounts. No tonic and no SQL here.

pub mod account;
pub mod command;
pub mod csv;
pub mod event;
pub mod lifecycle;
pub mod number;
pub mod principal;
pub mod series;
pub mod trunk;
pub mod validate;

use uuid::Uuid;

use crate::error::{Error, Result};

/// Parses a required UUID field, naming the field when it is missing or malformed.
pub fn parse_id(field: &str, value: &str) -> Result<Uuid> {
    if value.is_empty() {
        return Err(Error::invalid(field, "required"));
    }
    Uuid::parse_str(value).map_err(|_| Error::invalid(field, "must be a UUID"))
}

/// An etag as the service writes it: the row's version number.
pub fn etag(version: i64) -> String {
    version.to_string()
}

/// Checks an optional etag a caller sent against the current version.
pub fn check_etag(sent: &str, version: i64, resource_type: &'static str, name: &str) -> Result<()> {
    if sent.is_empty() || sent == etag(version) {
        Ok(())
    } else {
        Err(Error::EtagMismatch {
            resource_type,
            name: name.to_string(),
        })
    }
}
