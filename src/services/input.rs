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

/// `{"any_": [uuid, …]}` (a type of its own: the generic [`AnyOf`] of `Uuid` would lose the uuid
/// format in its schema).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnyOfUuid {
    pub any_: Vec<uuid::Uuid>,
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

/// The schema of a body that is one `T` or a list of `min..=max` of them (the untagged
/// `Many(Vec<T>) | One(T)` bodies of grant upserts and invitations), which derive cannot bound;
/// `also` lists further accepted shapes.
pub fn one_or_many<T: utoipa::ToSchema>(
    min: usize,
    max: usize,
    also: &[utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>],
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ArrayBuilder, OneOfBuilder, Ref};
    use utoipa::openapi::RefOr;
    let item = RefOr::Ref(Ref::from_schema_name(T::name()));
    let mut b = OneOfBuilder::new()
        .item(
            ArrayBuilder::new()
                .items(item.clone())
                .min_items(Some(min))
                .max_items(Some(max)),
        )
        .item(item);
    for a in also {
        b = b.item(a.clone());
    }
    b.into()
}

/// `ToSchema` for a `Many(Vec<$item>) | One($item)` body (see [`one_or_many`]).
macro_rules! one_or_many_schema {
    ($ty:ty, $item:ty, $min:expr, $max:expr $(, $also:ty)*) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $crate::services::input::one_or_many::<$item>(
                    $min,
                    $max,
                    &[$(utoipa::openapi::RefOr::Ref(utoipa::openapi::schema::Ref::from_schema_name(<$also as utoipa::ToSchema>::name()))),*],
                )
            }
        }
        impl utoipa::ToSchema for $ty {
            fn schemas(
                s: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>,
            ) {
                s.push((<$item as utoipa::ToSchema>::name().into(), <$item as utoipa::PartialSchema>::schema()));
                <$item as utoipa::ToSchema>::schemas(s);
                $(
                    s.push((<$also as utoipa::ToSchema>::name().into(), <$also as utoipa::PartialSchema>::schema()));
                    <$also as utoipa::ToSchema>::schemas(s);
                )*
            }
        }
    };
}
pub(crate) use one_or_many_schema;
