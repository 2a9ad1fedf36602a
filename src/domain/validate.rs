//! Collects every field violation of a request, so one answer names them all.

use std::collections::BTreeMap;

use crate::error::{Error, FieldViolation, Result};

pub const MAX_LABELS: usize = 32;
pub const MAX_LABEL_LEN: usize = 64;
pub const MAX_REQUEST_ID_LEN: usize = 128;

#[derive(Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Records the error of `result` when it is a field violation; passes other errors on.
    pub fn take<T>(&mut self, result: Result<T>) -> Result<Option<T>> {
        match result {
            Ok(v) => Ok(Some(v)),
            Err(Error::InvalidArgument(v)) => {
                self.0.extend(v);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// A string of at most `max` characters; required strings must not be blank.
    pub fn text(&mut self, field: &str, value: &str, required: bool, max: usize) {
        if required && value.trim().is_empty() {
            self.add(field, "required");
        } else if value.chars().count() > max {
            self.add(field, format!("at most {max} characters"));
        } else if value.chars().any(|c| c.is_control()) {
            self.add(field, "must not contain control characters");
        }
    }

    /// Free text: like [`Self::text`], but line breaks and tabs are allowed.
    pub fn free_text(&mut self, field: &str, value: &str, max: usize) {
        if value.chars().count() > max {
            self.add(field, format!("at most {max} characters"));
        } else if value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            self.add(field, "must not contain control characters");
        }
    }

    pub fn labels(&mut self, field: &str, labels: &BTreeMap<String, String>) {
        if labels.len() > MAX_LABELS {
            self.add(field, format!("at most {MAX_LABELS} labels"));
        }
        for (k, v) in labels {
            if k.is_empty() {
                self.add(field, "label keys must not be empty");
            }
            self.text(&format!("{field}[{k}]"), k, false, MAX_LABEL_LEN);
            self.text(&format!("{field}[{k}]"), v, false, MAX_LABEL_LEN);
        }
    }

    pub fn request_id(&mut self, value: &str) {
        self.text("request_id", value, false, MAX_REQUEST_ID_LEN);
    }

    /// The page size asked for, bounded: 0 means `default`, at most `max`.
    pub fn page_size(&mut self, value: i32, default: i64, max: i64) -> i64 {
        match value {
            0 => default,
            v if v < 0 => {
                self.add("page_size", "must not be negative");
                default
            }
            v => i64::from(v).min(max),
        }
    }

    pub fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(self.0))
        }
    }
}
