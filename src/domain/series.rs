//! Series: a provider's numbers under a country code or an E.164 prefix.

use std::time::SystemTime;

use uuid::Uuid;

/// A series as stored. A number belongs to the series with the longest matching prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub id: Uuid,
    pub provider_id: Uuid,
    pub prefix: String,
    pub display_name: String,
    pub description: String,
    pub version: i64,
    pub create_time: SystemTime,
}
