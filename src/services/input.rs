//! Shared request shapes: paging, `{"any_": [...]}` filters, nullable patches.

use crate::services::{Error, Result};
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

pub const MAX_LIMIT: i64 = 200;

/// `{"any_": [...]}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnyOf<T> {
    pub any_: Vec<T>,
}

/// Validated paging: limit in 0..=200 (default 200), offset ≥ 0.
pub fn page(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64)> {
    let limit = limit.unwrap_or(MAX_LIMIT);
    let offset = offset.unwrap_or(0);
    if limit < 0 || offset < 0 {
        return Err(Error::validation("limit and offset must not be negative"));
    }
    Ok((limit.min(MAX_LIMIT), offset))
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
pub fn double_option<'de, T, D>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
