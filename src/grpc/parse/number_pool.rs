//! NumberPoolService requests parsed into commands.

use numbering_client::v1 as pb;

use super::{optional_id, required_id};
use crate::domain::command::{
    AddNumbers, Batch, CreateSeries, CreateSipTrunk, Delete, NewNumber, NumberFilter,
    RenameSipTrunk, SearchAvailable, SeriesFilter, SetAttributes, UpdateNumber, UpdateSeries,
};
use crate::domain::number::{
    Attributes, E164, NumberType, UPDATABLE, parse_prefix, search_pattern,
};
use crate::domain::trunk::validate_name;
use crate::domain::validate::Violations;
use crate::error::{Error, Result};
use crate::grpc::convert::{number_type_from_proto, source_from_proto, status_from_proto};

/// Most numbers in one BatchAddNumbers call.
pub const MAX_BATCH: usize = 1000;

/// The attributes a caller sets on a number, checked; `prefix` names the fields.
pub fn attributes(v: &mut Violations, prefix: &str, n: &pb::Number) -> Attributes {
    let mut a = Attributes {
        number_type: number_type_from_proto(v, &format!("{prefix}number_type"), n.number_type),
        source: source_from_proto(v, &format!("{prefix}source"), n.source),
        carrier: n.carrier.trim().to_string(),
        sip_trunk: n.sip_trunk.trim().to_string(),
        billing_reference: n.billing_reference.trim().to_string(),
        service_info: n.service_info.clone(),
        tags: n.tags.clone(),
        labels: n.labels.clone(),
    };
    a.normalise();
    a.validate(v, prefix);
    a
}

/// One number to add, its fields under `prefix` (`requests[3].` in a batch).
fn new_number(v: &mut Violations, prefix: &str, req: &pb::AddNumberRequest) -> Option<NewNumber> {
    let Some(number) = &req.number else {
        v.add(format!("{prefix}number"), "required");
        return None;
    };
    let parsed = v
        .take(
            E164::parse("number.e164", &number.e164, &req.region)
                .map_err(|e| e.with_field_prefix(prefix)),
        )
        .ok()
        .flatten();
    let mut attributes = attributes(v, &format!("{prefix}number."), number);
    let holder_id = optional_id(v, &format!("{prefix}holder_id"), &req.holder_id);
    let parsed = parsed?;
    if attributes.number_type == NumberType::Unspecified {
        attributes.number_type = parsed.number_type;
    }
    Some(NewNumber {
        e164: parsed.e164,
        attributes,
        holder_id,
    })
}

impl TryFrom<&pb::AddNumberRequest> for AddNumbers {
    type Error = Error;
    fn try_from(r: &pb::AddNumberRequest) -> Result<Self> {
        let mut v = Violations::new();
        let owner_id = required_id(&mut v, "owner_id", &r.owner_id);
        let number = new_number(&mut v, "", r);
        v.finish()?;
        let number = number.ok_or_else(|| Error::invalid("number", "required"))?;
        Ok(AddNumbers {
            owner_id,
            numbers: Batch {
                items: vec![Ok(number)],
                all_or_nothing: true,
            },
        })
    }
}

impl TryFrom<&pb::BatchAddNumbersRequest> for AddNumbers {
    type Error = Error;
    fn try_from(r: &pb::BatchAddNumbersRequest) -> Result<Self> {
        let mut v = Violations::new();
        let owner_id = required_id(&mut v, "owner_id", &r.owner_id);
        if r.requests.is_empty() || r.requests.len() > MAX_BATCH {
            v.add("requests", format!("1 to {MAX_BATCH} numbers"));
        }
        v.finish()?;
        // Each number is checked on its own: a bad one is its own result, not the call's.
        let items = r
            .requests
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let prefix = format!("requests[{i}].");
                let mut v = Violations::new();
                if !item.owner_id.is_empty() && item.owner_id != r.owner_id {
                    v.add(
                        format!("{prefix}owner_id"),
                        "must be empty or the batch's owner_id",
                    );
                }
                let number = new_number(&mut v, &prefix, item);
                v.finish()?;
                number.ok_or_else(|| Error::invalid(format!("{prefix}number"), "required"))
            })
            .collect();
        Ok(AddNumbers {
            owner_id,
            numbers: Batch {
                items,
                all_or_nothing: r.all_or_nothing,
            },
        })
    }
}

/// Most paths an update mask may name, and the longest path: more than any message has fields.
pub const MAX_MASK_PATHS: usize = 32;
pub const MAX_MASK_PATH_LEN: usize = 64;

/// The paths of an update mask; `None` mask, no path, too many or too long are recorded in `v`
/// (and the paths dropped, so no one looks further at them).
pub fn mask_paths(v: &mut Violations, mask: Option<&prost_types::FieldMask>) -> Vec<String> {
    let paths: Vec<String> = mask.map(|m| m.paths.clone()).unwrap_or_default();
    if paths.is_empty() {
        v.add("update_mask", "name at least one field");
    }
    if paths.len() > MAX_MASK_PATHS {
        v.add("update_mask", format!("at most {MAX_MASK_PATHS} paths"));
        return Vec::new();
    }
    if paths.iter().any(|p| p.len() > MAX_MASK_PATH_LEN) {
        v.add(
            "update_mask",
            format!("a path is at most {MAX_MASK_PATH_LEN} bytes"),
        );
        return Vec::new();
    }
    paths
}

/// Attributes a move binds (`attributes` and `attributes_mask`, under `prefix`): none without a
/// mask; a mask names the paths UpdateNumber takes.
pub fn bound_attributes(
    v: &mut Violations,
    prefix: &str,
    n: Option<&pb::Number>,
    mask: Option<&prost_types::FieldMask>,
) -> Option<SetAttributes> {
    let mask_field = format!("{prefix}attributes_mask");
    let Some(mask) = mask.filter(|m| !m.paths.is_empty()) else {
        if n.is_some() {
            v.add(mask_field, "name the attributes to set");
        }
        return None;
    };
    if mask.paths.len() > MAX_MASK_PATHS {
        v.add(mask_field, format!("at most {MAX_MASK_PATHS} paths"));
        return None;
    }
    for path in &mask.paths {
        if !UPDATABLE.contains(&path.as_str()) {
            v.add(
                format!(
                    "{mask_field}.{}",
                    path.chars().take(MAX_MASK_PATH_LEN).collect::<String>()
                ),
                "not an attribute that can be set",
            );
        }
    }
    let n = n.cloned().unwrap_or_default();
    let incoming = attributes(v, &format!("{prefix}attributes."), &n);
    Some(SetAttributes {
        paths: mask.paths.clone(),
        incoming,
    })
}

impl TryFrom<&pb::UpdateNumberRequest> for UpdateNumber {
    type Error = Error;
    fn try_from(r: &pb::UpdateNumberRequest) -> Result<Self> {
        let Some(number) = &r.number else {
            return Err(Error::invalid("number", "required"));
        };
        let mut v = Violations::new();
        let id = required_id(&mut v, "number.id", &number.id);
        let paths = mask_paths(&mut v, r.update_mask.as_ref());
        for path in &paths {
            if !UPDATABLE.contains(&path.as_str()) {
                v.add(
                    format!("update_mask.{path}"),
                    "not a field that can be updated",
                );
            }
        }
        let incoming = attributes(&mut v, "number.", number);
        v.finish()?;
        Ok(UpdateNumber {
            id,
            etag: number.etag.clone(),
            paths,
            incoming,
        })
    }
}

/// The deletes: an id and an etag.
macro_rules! delete {
    ($($request:ident),+) => {
        $(impl TryFrom<&pb::$request> for Delete {
            type Error = Error;
            fn try_from(r: &pb::$request) -> Result<Self> {
                let mut v = Violations::new();
                let id = required_id(&mut v, "id", &r.id);
                v.finish()?;
                Ok(Delete {
                    id,
                    etag: r.etag.clone(),
                })
            }
        })+
    };
}

delete!(
    DeleteNumberRequest,
    DeleteSeriesRequest,
    DeleteAccountRequest,
    CloseAccountRequest,
    DeleteSipTrunkRequest
);

impl TryFrom<&pb::CreateSeriesRequest> for CreateSeries {
    type Error = Error;
    fn try_from(r: &pb::CreateSeriesRequest) -> Result<Self> {
        let mut v = Violations::new();
        let provider_id = required_id(&mut v, "provider_id", &r.provider_id);
        let s = r.series.clone().unwrap_or_default();
        let prefix = v
            .take(parse_prefix("series.prefix", &s.prefix))
            .ok()
            .flatten();
        v.text("series.display_name", &s.display_name, true, 256);
        v.free_text("series.description", &s.description, 1024);
        v.finish()?;
        Ok(CreateSeries {
            provider_id,
            prefix: prefix.unwrap_or_default(),
            display_name: s.display_name.trim().to_string(),
            description: s.description,
        })
    }
}

impl TryFrom<&pb::UpdateSeriesRequest> for UpdateSeries {
    type Error = Error;
    fn try_from(r: &pb::UpdateSeriesRequest) -> Result<Self> {
        let mut v = Violations::new();
        let s = r.series.clone().unwrap_or_default();
        let id = required_id(&mut v, "series.id", &s.id);
        let paths = mask_paths(&mut v, r.update_mask.as_ref());
        let (mut display_name, mut description) = (None, None);
        for path in &paths {
            match path.as_str() {
                "display_name" => {
                    v.text("series.display_name", &s.display_name, true, 256);
                    display_name = Some(s.display_name.trim().to_string());
                }
                "description" => {
                    v.free_text("series.description", &s.description, 1024);
                    description = Some(s.description.clone());
                }
                other => v.add(
                    format!("update_mask.{other}"),
                    "not a field that can be updated",
                ),
            }
        }
        v.finish()?;
        Ok(UpdateSeries {
            id,
            etag: s.etag,
            display_name,
            description,
        })
    }
}

/// Most statuses a filter names: there are fewer statuses than that.
pub const MAX_FILTER_STATUSES: usize = 16;

/// A NumberFilter, checked; its fields are named `filter.…`.
pub fn filter(f: &pb::NumberFilter) -> Result<NumberFilter> {
    let mut v = Violations::new();
    let holder_id = optional_id(&mut v, "filter.holder_id", &f.holder_id);
    let owner_id = optional_id(&mut v, "filter.owner_id", &f.owner_id);
    let series_id = optional_id(&mut v, "filter.series_id", &f.series_id);
    if f.statuses.len() > MAX_FILTER_STATUSES {
        v.add(
            "filter.statuses",
            format!("at most {MAX_FILTER_STATUSES} statuses"),
        );
    }
    let statuses = f
        .statuses
        .iter()
        .filter_map(|s| status_from_proto(&mut v, "filter.statuses", *s))
        .collect();
    let prefix = if f.prefix.is_empty() {
        None
    } else {
        v.take(parse_prefix("filter.prefix", &f.prefix))
            .ok()
            .flatten()
    };
    v.text("filter.tag", &f.tag, false, 64);
    v.labels("filter.labels", &f.labels);
    v.text("filter.assignee_id", &f.assignee_id, false, 256);
    v.text("filter.reservation_tag", &f.reservation_tag, false, 64);
    v.text("filter.reserved_for", &f.reserved_for, false, 256);
    v.text("filter.sip_trunk", &f.sip_trunk, false, 256);
    v.finish()?;
    Ok(NumberFilter {
        holder_id,
        include_subtree: f.include_subtree,
        owner_id,
        series_id,
        statuses,
        prefix,
        tag: Some(f.tag.clone()).filter(|t| !t.is_empty()),
        labels: f.labels.clone(),
        assignee_id: Some(f.assignee_id.clone()).filter(|a| !a.is_empty()),
        reservation_tag: non_empty(&f.reservation_tag),
        reserved_for: non_empty(&f.reserved_for),
        sip_trunk: non_empty(&f.sip_trunk),
    })
}

/// An optional text field: trimmed, empty is `None`.
fn non_empty(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

/// ListSeries' filters, checked.
pub fn series_filter(v: &mut Violations, r: &pb::ListSeriesRequest) -> SeriesFilter {
    v.text("name_contains", &r.name_contains, false, 256);
    let prefix = if r.prefix.trim().is_empty() {
        None
    } else {
        v.take(parse_prefix("prefix", &r.prefix)).ok().flatten()
    };
    SeriesFilter {
        name_contains: Some(r.name_contains.trim().to_string()).filter(|n| !n.is_empty()),
        prefix,
    }
}

/// SearchAvailableNumbers, checked.
pub fn search(r: &pb::SearchAvailableNumbersRequest) -> Result<SearchAvailable> {
    let mut v = Violations::new();
    let holder_id = required_id(&mut v, "holder_id", &r.holder_id);
    let like = v.take(search_pattern("pattern", &r.pattern)).ok().flatten();
    let limit = v.page_size(r.page_size, 100, 1000);
    if !(0..=1000).contains(&r.consecutive) {
        v.add("consecutive", "0 to 1000");
    }
    v.text("reservation_tag", &r.reservation_tag, false, 64);
    v.text("reserved_for", &r.reserved_for, false, 256);
    v.text("sip_trunk", &r.sip_trunk, false, 256);
    v.finish()?;
    Ok(SearchAvailable {
        holder_id,
        like,
        limit,
        consecutive: r.consecutive,
        reservation_tag: non_empty(&r.reservation_tag),
        reserved_for: non_empty(&r.reserved_for),
        sip_trunk: non_empty(&r.sip_trunk),
    })
}

impl TryFrom<&pb::CreateSipTrunkRequest> for CreateSipTrunk {
    type Error = Error;
    fn try_from(r: &pb::CreateSipTrunkRequest) -> Result<Self> {
        let mut v = Violations::new();
        let t = r.sip_trunk.clone().unwrap_or_default();
        let account_id = required_id(&mut v, "sip_trunk.account_id", &t.account_id);
        validate_name(&mut v, "sip_trunk.name", &t.name);
        v.finish()?;
        Ok(CreateSipTrunk {
            account_id,
            name: t.name.trim().to_string(),
        })
    }
}

impl TryFrom<&pb::UpdateSipTrunkRequest> for RenameSipTrunk {
    type Error = Error;
    fn try_from(r: &pb::UpdateSipTrunkRequest) -> Result<Self> {
        let mut v = Violations::new();
        let t = r.sip_trunk.clone().unwrap_or_default();
        let id = required_id(&mut v, "sip_trunk.id", &t.id);
        validate_name(&mut v, "sip_trunk.name", &t.name);
        v.finish()?;
        Ok(RenameSipTrunk {
            id,
            etag: t.etag,
            name: t.name.trim().to_string(),
        })
    }
}
