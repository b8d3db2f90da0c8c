//! Plans and entitlements: the catalogue (Hobby, Starter, Team, Pro, Enterprise), plan features,
//! per-account overrides. Pure: the catalogue can be edited by configuration, never by requests.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! features {
    ($($variant:ident = $name:literal),* $(,)?) => {
        /// A plan feature that gates part of the product.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Feature { $($variant),* }

        impl Feature {
            pub const ALL: &'static [Feature] = &[$(Feature::$variant),*];
            pub const fn name(self) -> &'static str {
                match self { $(Feature::$variant => $name),* }
            }
            pub fn parse(s: &str) -> Option<Feature> {
                match s { $($name => Some(Feature::$variant),)* _ => None }
            }
        }
    };
}

features! {
    ServiceAccounts = "service_accounts",
    WorkspaceRbac = "workspace_rbac",
    CustomRoles = "custom_roles",
    Teams = "teams",
    AuditLog = "audit_log",
    Sso = "sso",
    Scim = "scim",
    IpAllowlist = "ip_allowlist",
    ObjectAcls = "object_acls",
}

/// A set of features as a bitset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeatureSet(u16);

impl FeatureSet {
    pub fn all() -> FeatureSet {
        Feature::ALL.iter().copied().collect()
    }
    pub const fn contains(self, f: Feature) -> bool {
        self.0 & (1 << f as u8) != 0
    }
    pub fn insert(&mut self, f: Feature) {
        self.0 |= 1 << f as u8;
    }
    pub fn remove(&mut self, f: Feature) {
        self.0 &= !(1 << f as u8);
    }
    pub fn names(self) -> Vec<&'static str> {
        Feature::ALL
            .iter()
            .filter(|f| self.contains(**f))
            .map(|f| f.name())
            .collect()
    }
}

impl FromIterator<Feature> for FeatureSet {
    fn from_iter<T: IntoIterator<Item = Feature>>(iter: T) -> Self {
        let mut s = FeatureSet::default();
        for f in iter {
            s.insert(f);
        }
        s
    }
}

/// The plans of the reference, in ascending order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PlanType {
    Hobby,
    Starter,
    Team,
    Pro,
    Enterprise,
}

impl PlanType {
    pub const ALL: [PlanType; 5] = [
        PlanType::Hobby,
        PlanType::Starter,
        PlanType::Team,
        PlanType::Pro,
        PlanType::Enterprise,
    ];
    pub const fn code(self) -> &'static str {
        match self {
            PlanType::Hobby => "hobby",
            PlanType::Starter => "starter",
            PlanType::Team => "team",
            PlanType::Pro => "pro",
            PlanType::Enterprise => "enterprise",
        }
    }
    pub const fn display(self) -> &'static str {
        match self {
            PlanType::Hobby => "Hobby",
            PlanType::Starter => "Starter",
            PlanType::Team => "Team",
            PlanType::Pro => "Pro",
            PlanType::Enterprise => "Enterprise",
        }
    }
    pub fn parse(s: &str) -> Option<PlanType> {
        Self::ALL
            .into_iter()
            .find(|p| p.code() == s.to_ascii_lowercase())
    }
}

/// What an account may use. `None` limits are unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitlements {
    pub plan: PlanType,
    /// Seats: active user members plus pending invitations.
    pub user_limit: Option<i64>,
    pub workspace_limit: Option<i64>,
    pub features: FeatureSet,
    pub run_retention_days: i64,
    pub audit_log_retention_days: i64,
    /// Orchestration API requests per minute.
    pub api_rate_limit: i64,
    /// Log lines plus events per minute.
    pub logs_rate_limit: i64,
}

/// Changes to a plan's entitlements: from the configuration file (per plan) or from a site admin
/// (per account). Absent fields keep the plan's value; `Some(None)` limits mean unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntitlementsPatch {
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub user_limit: Option<Option<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub workspace_limit: Option<Option<i64>>,
    /// Replaces the plan's feature list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = feature_list)]
    pub features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub run_retention_days: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub audit_log_retention_days: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub api_rate_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub logs_rate_limit: Option<i64>,
}

/// The schema of a feature list: names from [`Feature::ALL`], or null.
fn feature_list() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(Feature::ALL.iter().map(|f| f.name()))),
        )
        .build()
}

/// Serde helper: distinguishes a missing field from an explicit null.
mod nullable {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Option<i64>>, s: S) -> Result<S::Ok, S::Error> {
        v.flatten().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
        Option::<i64>::deserialize(d).map(Some)
    }
}

impl EntitlementsPatch {
    /// Checks values: limits and retention ≥ 0 (retention and rates ≥ 1), known features.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("user_limit", self.user_limit.flatten()),
            ("workspace_limit", self.workspace_limit.flatten()),
        ] {
            if matches!(v, Some(n) if n < 0) {
                return Err(format!("{name} must not be negative"));
            }
        }
        for (name, v) in [
            ("run_retention_days", self.run_retention_days),
            ("audit_log_retention_days", self.audit_log_retention_days),
            ("api_rate_limit", self.api_rate_limit),
            ("logs_rate_limit", self.logs_rate_limit),
        ] {
            if matches!(v, Some(n) if !(1..=1_000_000_000).contains(&n)) {
                return Err(format!("{name} must be between 1 and 1000000000"));
            }
        }
        if let Some(fs) = &self.features {
            if let Some(bad) = fs.iter().find(|f| Feature::parse(f).is_none()) {
                return Err(format!("unknown feature {bad:?}"));
            }
        }
        Ok(())
    }

    /// Applies the patch (validated beforehand) to `e`.
    pub fn apply(&self, e: &mut Entitlements) {
        if let Some(v) = self.user_limit {
            e.user_limit = v;
        }
        if let Some(v) = self.workspace_limit {
            e.workspace_limit = v;
        }
        if let Some(fs) = &self.features {
            e.features = fs.iter().filter_map(|f| Feature::parse(f)).collect();
        }
        if let Some(v) = self.run_retention_days {
            e.run_retention_days = v;
        }
        if let Some(v) = self.audit_log_retention_days {
            e.audit_log_retention_days = v;
        }
        if let Some(v) = self.api_rate_limit {
            e.api_rate_limit = v;
        }
        if let Some(v) = self.logs_rate_limit {
            e.logs_rate_limit = v;
        }
    }
}

/// The built-in catalogue. Rate limits are the reference's (§4.1); seat and workspace limits and
/// audit retention are not published by Prefect and are our choice (docs/plans.md).
pub fn builtin(plan: PlanType) -> Entitlements {
    use Feature::*;
    let (users, workspaces, features, run, audit, api, logs): (
        Option<i64>,
        Option<i64>,
        &[Feature],
        i64,
        i64,
        i64,
        i64,
    ) = match plan {
        PlanType::Hobby => (Some(2), Some(1), &[], 7, 7, 625, 2_000),
        PlanType::Starter => (Some(3), Some(1), &[], 7, 7, 1_250, 2_800),
        PlanType::Team => (Some(8), Some(3), &[ServiceAccounts], 14, 14, 2_500, 8_000),
        PlanType::Pro => (
            Some(25),
            Some(10),
            &[ServiceAccounts, WorkspaceRbac, AuditLog, IpAllowlist],
            30,
            90,
            5_000,
            40_000,
        ),
        PlanType::Enterprise => (None, None, Feature::ALL, 365, 365, 20_000, 200_000),
    };
    Entitlements {
        plan,
        user_limit: users,
        workspace_limit: workspaces,
        features: features.iter().copied().collect(),
        run_retention_days: run,
        audit_log_retention_days: audit,
        api_rate_limit: api,
        logs_rate_limit: logs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_grow_from_hobby_to_enterprise() {
        let mut prev: Option<Entitlements> = None;
        for p in PlanType::ALL {
            let e = builtin(p);
            if let Some(q) = prev {
                assert!(
                    e.api_rate_limit > q.api_rate_limit && e.logs_rate_limit > q.logs_rate_limit
                );
                assert!(e.run_retention_days >= q.run_retention_days);
                for f in Feature::ALL {
                    assert!(
                        !q.features.contains(*f) || e.features.contains(*f),
                        "{p:?} loses {f:?}"
                    );
                }
            }
            prev = Some(e);
        }
        assert_eq!(builtin(PlanType::Enterprise).features, FeatureSet::all());
        assert_eq!(builtin(PlanType::Hobby).api_rate_limit, 625);
        assert_eq!(builtin(PlanType::Pro).logs_rate_limit, 40_000);
    }

    #[test]
    fn patches_distinguish_absent_from_unlimited_and_validate() {
        let p: EntitlementsPatch =
            serde_json::from_str(r#"{"user_limit": null, "features": ["teams"]}"#).expect("json");
        assert_eq!(p.user_limit, Some(None));
        assert_eq!(p.workspace_limit, None);
        let mut e = builtin(PlanType::Pro);
        p.apply(&mut e);
        assert_eq!(e.user_limit, None);
        assert_eq!(e.workspace_limit, Some(10));
        assert_eq!(e.features.names(), vec!["teams"]);
        let bad: EntitlementsPatch =
            serde_json::from_str(r#"{"features": ["warp_drive"]}"#).expect("json");
        assert!(bad.validate().is_err());
        let bad: EntitlementsPatch = serde_json::from_str(r#"{"user_limit": -1}"#).expect("json");
        assert!(bad.validate().is_err());
        assert!(
            serde_json::from_str::<EntitlementsPatch>(r#"{"seats": 3}"#).is_err(),
            "unknown keys refused"
        );
    }
}
