//! Configuration: defaults, then a TOML file, then `ATRIUM_*` environment variables, then CLI
//! flags (clap reads the last two). Validated once at start-up.

use anyhow::{bail, Context};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Who may sign up without an invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SignupPolicy {
    Open,
    InviteOnly,
}

/// Who may create accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AccountCreation {
    SiteAdmins,
    Anyone,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: String,
    pub database_url: String,
    /// The URL users reach Atrium at, without a trailing slash. Links are built only from it.
    pub public_url: String,
    pub signup_policy: SignupPolicy,
    pub account_creation: AccountCreation,
    pub session_ttl_seconds: i64,
    /// Where local state lives (the default SQLite file, the audit signing key).
    pub data_dir: PathBuf,
    /// The Ed25519 key that signs audit checkpoints (hex seed). Generated on first start when
    /// missing. Every process sharing a PostgreSQL database must use the same file.
    pub audit_key_file: PathBuf,
    /// How often the server signs each audit chain's head.
    pub audit_checkpoint_seconds: u64,
    /// How often run retention deletes expired flow runs through the upstreams (0: never; run
    /// `atrium retention run` from cron instead).
    pub run_retention_seconds: u64,
    /// SMTP server for outgoing email (`smtp://host:port`, `smtps://user:pass@host`); `None`
    /// writes messages to the log instead.
    pub smtp_url: Option<String>,
    /// Sender of outgoing email.
    pub smtp_from: String,
    /// How long an invitation link stays valid.
    pub invitation_ttl_seconds: i64,
    /// The plan new accounts get.
    pub default_plan: crate::domain::plan::PlanType,
    /// Changes to the built-in plans (`[plans.pro]` tables in the configuration file).
    pub plans: std::collections::BTreeMap<
        crate::domain::plan::PlanType,
        crate::domain::plan::EntitlementsPatch,
    >,
    /// Reverse proxies whose `X-Forwarded-For` is believed: a request from one of these networks
    /// is attributed to the address it forwarded for (IP allowlist, audit records). Empty: the
    /// connection's peer address, always.
    pub trusted_proxies: Vec<crate::domain::ipnet::IpNetwork>,
    /// Networks (and ports) account Owners and Admins may bind workspace upstreams to. Empty:
    /// only site admins and the CLI bind upstreams. See `domain::upstream_policy`.
    pub upstream_networks: Vec<crate::domain::upstream_policy::UpstreamNetwork>,
    /// The DNS server that domain verification asks (`ATRIUM_DNS_RESOLVER=host:port`), for tests
    /// only; `None`: the system resolver.
    pub dns_resolver: Option<std::net::SocketAddr>,
    /// Redis shared by every server for cluster-wide rate limits (`redis://host:port/db`);
    /// `None`: each server limits alone (on PostgreSQL, with an equal share of the budget).
    pub redis_url: Option<String>,
    /// How long a stopping server lets in-flight calls and websockets finish after SIGTERM.
    pub shutdown_grace_seconds: u64,
    /// This server's name in logs, the node registry and job leadership (default: host name
    /// and a random suffix, new at every start).
    pub node_id: String,
}

pub const DEFAULT_BIND: &str = "127.0.0.1:4300";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./atrium-data/atrium.db";

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: DEFAULT_BIND.into(),
            database_url: DEFAULT_DATABASE_URL.into(),
            public_url: format!("http://{DEFAULT_BIND}"),
            signup_policy: SignupPolicy::InviteOnly,
            account_creation: AccountCreation::SiteAdmins,
            session_ttl_seconds: 14 * 24 * 3600,
            data_dir: PathBuf::from("./atrium-data"),
            audit_key_file: PathBuf::from("./atrium-data/audit-signing.key"),
            audit_checkpoint_seconds: 300,
            run_retention_seconds: 3600,
            default_plan: crate::domain::plan::PlanType::Enterprise,
            plans: Default::default(),
            smtp_url: None,
            smtp_from: "Atrium <atrium@localhost>".into(),
            invitation_ttl_seconds: 7 * 24 * 3600,
            trusted_proxies: Vec::new(),
            upstream_networks: Vec::new(),
            dns_resolver: None,
            redis_url: None,
            shutdown_grace_seconds: 30,
            node_id: default_node_id(),
        }
    }
}

/// Values that may come from the TOML file (every key optional; unknown keys are an error).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub bind: Option<String>,
    pub database_url: Option<String>,
    pub public_url: Option<String>,
    pub signup_policy: Option<SignupPolicy>,
    pub account_creation: Option<AccountCreation>,
    pub session_ttl_seconds: Option<i64>,
    pub data_dir: Option<PathBuf>,
    pub audit_key_file: Option<PathBuf>,
    pub audit_checkpoint_seconds: Option<u64>,
    pub run_retention_seconds: Option<u64>,
    pub default_plan: Option<crate::domain::plan::PlanType>,
    pub smtp_url: Option<String>,
    pub smtp_from: Option<String>,
    pub invitation_ttl_seconds: Option<i64>,
    pub trusted_proxies: Option<Vec<String>>,
    pub upstream_networks: Option<Vec<String>>,
    pub redis_url: Option<String>,
    pub shutdown_grace_seconds: Option<u64>,
    pub node_id: Option<String>,
    #[serde(default)]
    pub plans: std::collections::BTreeMap<
        crate::domain::plan::PlanType,
        crate::domain::plan::EntitlementsPatch,
    >,
}

/// Values from the environment and flags (clap fills these).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// TOML configuration file.
    #[arg(long, global = true, env = "ATRIUM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database URL: sqlite://PATH (default ./atrium-data/atrium.db) or postgres://…
    #[arg(long, global = true, env = "ATRIUM_DATABASE_URL")]
    pub database_url: Option<String>,
    /// File holding the database URL (for secrets managers).
    #[arg(long, global = true, env = "ATRIUM_DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,
    /// Public URL users reach Atrium at (default http://BIND).
    #[arg(long, global = true, env = "ATRIUM_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Who may sign up without an invitation.
    #[arg(long, global = true, env = "ATRIUM_SIGNUP_POLICY", value_enum)]
    pub signup_policy: Option<SignupPolicy>,
    /// Who may create accounts.
    #[arg(long, global = true, env = "ATRIUM_ACCOUNT_CREATION", value_enum)]
    pub account_creation: Option<AccountCreation>,
    /// Directory for local state (default ./atrium-data).
    #[arg(long, global = true, env = "ATRIUM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The audit checkpoint signing key (default DATA_DIR/audit-signing.key).
    #[arg(long, global = true, env = "ATRIUM_AUDIT_KEY_FILE")]
    pub audit_key_file: Option<PathBuf>,
    /// Plan of new accounts: hobby, starter, team, pro or enterprise (default enterprise).
    #[arg(long, global = true, env = "ATRIUM_DEFAULT_PLAN", value_parser = parse_plan)]
    pub default_plan: Option<crate::domain::plan::PlanType>,
    /// SMTP server URL (smtp://host:port or smtps://user:pass@host); unset = email to the log.
    #[arg(long, global = true, env = "ATRIUM_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// Sender address of outgoing email.
    #[arg(long, global = true, env = "ATRIUM_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// Reverse proxies (CIDR, comma-separated) whose X-Forwarded-For is believed.
    #[arg(
        long,
        global = true,
        env = "ATRIUM_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Option<Vec<String>>,
    /// Networks and ports account Owners and Admins may bind upstreams to (comma-separated:
    /// 10.0.0.0/8:4200-4299, [fd00::/8]:4200); unset = only site admins and the CLI bind.
    #[arg(
        long,
        global = true,
        env = "ATRIUM_UPSTREAM_NETWORKS",
        value_delimiter = ','
    )]
    pub upstream_networks: Option<Vec<String>>,
    /// Redis for rate limits shared by every server (redis://host:port/db); unset = per server.
    #[arg(long, global = true, env = "ATRIUM_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Seconds a stopping server lets in-flight calls and websockets finish (default 30).
    #[arg(long, global = true, env = "ATRIUM_SHUTDOWN_GRACE_SECONDS")]
    pub shutdown_grace_seconds: Option<u64>,
    /// This server's name in logs and the node registry (default: host name + random suffix).
    #[arg(long, global = true, env = "ATRIUM_NODE_ID")]
    pub node_id: Option<String>,
}

/// The host name and a random suffix: unique per start, readable in logs.
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "atrium".into());
    format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

fn parse_plan(s: &str) -> Result<crate::domain::plan::PlanType, String> {
    crate::domain::plan::PlanType::parse(s)
        .ok_or_else(|| "use hobby, starter, team, pro or enterprise".to_string())
}

/// `ATRIUM_WORKER_THREADS`: how many threads run requests, both the main runtime's workers and
/// the server's connection threads (default, `None`: one per core). Read from the environment
/// because the runtime exists before the configuration is loaded.
pub fn worker_threads() -> Result<Option<usize>, &'static str> {
    match std::env::var("ATRIUM_WORKER_THREADS")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| v.parse::<usize>())
    {
        None => Ok(None),
        Some(Ok(n)) if (1..=1024).contains(&n) => Ok(Some(n)),
        Some(_) => Err("ATRIUM_WORKER_THREADS must be a whole number from 1 to 1024"),
    }
}

impl Config {
    /// Layers defaults, the TOML file, then environment and flags; `bind` comes from `serve` only.
    pub fn load(o: &Overrides, bind: Option<&str>) -> anyhow::Result<Config> {
        let file = match &o.config {
            Some(p) => read_file_config(p)?,
            None => FileConfig::default(),
        };
        let mut c = Config::default();
        let file_bind = file.bind.clone();
        if let Some(v) = bind.map(str::to_string).or(file_bind) {
            c.bind = v;
        }
        c.public_url = format!("http://{}", c.bind);
        if let Some(v) = file.database_url {
            c.database_url = v;
        }
        if let Some(v) = file.public_url {
            c.public_url = v;
        }
        if let Some(v) = file.signup_policy {
            c.signup_policy = v;
        }
        if let Some(v) = file.account_creation {
            c.account_creation = v;
        }
        if let Some(v) = file.session_ttl_seconds {
            c.session_ttl_seconds = v;
        }
        if let Some(v) = file.run_retention_seconds {
            c.run_retention_seconds = v;
        }
        if let Some(v) = file.audit_checkpoint_seconds {
            c.audit_checkpoint_seconds = v;
        }
        if let Some(v) = o.default_plan.or(file.default_plan) {
            c.default_plan = v;
        }
        for (plan, patch) in &file.plans {
            patch
                .validate()
                .map_err(|e| anyhow::anyhow!("[plans.{}]: {e}", plan.code()))?;
        }
        c.plans = file.plans;
        if let Some(v) = o.smtp_url.clone().or(file.smtp_url) {
            c.smtp_url = Some(v);
        }
        if let Some(v) = o.smtp_from.clone().or(file.smtp_from) {
            c.smtp_from = v;
        }
        if let Some(v) = file.invitation_ttl_seconds {
            c.invitation_ttl_seconds = v;
        }
        if let Some(v) = o.data_dir.clone().or(file.data_dir) {
            c.data_dir = v;
        }
        c.audit_key_file = o
            .audit_key_file
            .clone()
            .or(file.audit_key_file)
            .unwrap_or_else(|| c.data_dir.join("audit-signing.key"));
        if let Some(p) = &o.database_url_file {
            c.database_url = std::fs::read_to_string(p)
                .with_context(|| format!("reading {}", p.display()))?
                .trim()
                .to_string();
        }
        if let Some(v) = &o.database_url {
            c.database_url = v.clone();
        }
        if let Some(v) = &o.public_url {
            c.public_url = v.clone();
        }
        if let Some(v) = o.signup_policy {
            c.signup_policy = v;
        }
        if let Some(v) = o.account_creation {
            c.account_creation = v;
        }
        if let Some(list) = o.trusted_proxies.clone().or(file.trusted_proxies) {
            c.trusted_proxies = parse_list("trusted_proxies", &list, |n| {
                crate::domain::ipnet::IpNetwork::parse(n)
            })?;
        }
        if let Ok(v) = std::env::var("ATRIUM_DNS_RESOLVER") {
            c.dns_resolver = Some(v.parse().map_err(|_| {
                anyhow::anyhow!(
                    "ATRIUM_DNS_RESOLVER must be an address and port, such as 127.0.0.1:5353"
                )
            })?);
        }
        if let Some(list) = o.upstream_networks.clone().or(file.upstream_networks) {
            c.upstream_networks = parse_list("upstream_networks", &list, |n| {
                crate::domain::upstream_policy::UpstreamNetwork::parse(n)
            })?;
        }
        if let Some(v) = o.redis_url.clone().or(file.redis_url) {
            c.redis_url = Some(v).filter(|v| !v.is_empty());
        }
        if let Some(v) = o.shutdown_grace_seconds.or(file.shutdown_grace_seconds) {
            c.shutdown_grace_seconds = v;
        }
        if let Some(v) = o.node_id.clone().or(file.node_id) {
            c.node_id = v;
        }
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&mut self) -> anyhow::Result<()> {
        self.public_url = self.public_url.trim_end_matches('/').to_string();
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) {
            bail!("public URL must start with http:// or https://");
        }
        crate::store::Engine::from_url(&self.database_url)?;
        if self.session_ttl_seconds < 60 {
            bail!("session_ttl_seconds must be at least 60");
        }
        if self.invitation_ttl_seconds < 60 {
            bail!("invitation_ttl_seconds must be at least 60");
        }
        if self.smtp_from.parse::<lettre::message::Mailbox>().is_err() {
            bail!("smtp_from must be an address such as \"Atrium <atrium@example.com>\"");
        }
        if let Some(r) = &self.redis_url {
            if !(r.starts_with("redis://") || r.starts_with("rediss://")) {
                bail!("redis_url must start with redis:// or rediss://");
            }
        }
        if self.node_id.is_empty()
            || self.node_id.len() > 100
            || !self
                .node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            bail!("node_id must be 1 to 100 letters, digits or - _ . :");
        }
        if self.audit_checkpoint_seconds < 1 {
            bail!("audit_checkpoint_seconds must be at least 1");
        }
        Ok(())
    }

    /// Cookies get `Secure` and the `__Host-` prefix when users reach us over https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

/// Parses every non-blank entry of a list setting; the first bad one is named with the setting.
fn parse_list<T>(
    setting: &str,
    list: &[String],
    parse: impl Fn(&str) -> Result<T, String>,
) -> anyhow::Result<Vec<T>> {
    list.iter()
        .filter(|n| !n.trim().is_empty())
        .map(|n| parse(n).map_err(|e| anyhow::anyhow!("{setting}: {e}")))
        .collect()
}

fn read_file_config(p: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_environment_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("atrium.toml");
        std::fs::write(
            &file,
            "bind = \"127.0.0.1:5000\"\npublic_url = \"https://atrium.example.com/\"\n\
             signup_policy = \"open\"\ndatabase_url = \"sqlite://./from-file.db\"\n",
        )
        .expect("write");
        let o = Overrides {
            config: Some(file.clone()),
            database_url: Some("postgres://db/atrium".into()),
            ..Default::default()
        };
        let c = Config::load(&o, None).expect("config");
        assert_eq!(c.bind, "127.0.0.1:5000");
        assert_eq!(
            c.public_url, "https://atrium.example.com",
            "trailing slash trimmed"
        );
        assert!(c.secure_cookies());
        assert_eq!(c.signup_policy, SignupPolicy::Open);
        assert_eq!(
            c.database_url, "postgres://db/atrium",
            "flag/env beats the file"
        );
        assert_eq!(
            c.account_creation,
            AccountCreation::SiteAdmins,
            "default kept"
        );
        let c = Config::load(&o, Some("0.0.0.0:1")).expect("config");
        assert_eq!(c.bind, "0.0.0.0:1", "--bind beats the file");
    }

    #[test]
    fn bad_files_and_values_are_refused_at_start_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("atrium.toml");
        std::fs::write(&file, "bnid = \"x\"\n").expect("write");
        let o = Overrides {
            config: Some(file),
            ..Default::default()
        };
        assert!(Config::load(&o, None).is_err(), "unknown keys are errors");
        let o = Overrides {
            database_url: Some("mysql://x".into()),
            ..Default::default()
        };
        assert!(Config::load(&o, None).is_err());
        let o = Overrides {
            public_url: Some("atrium.example.com".into()),
            ..Default::default()
        };
        assert!(Config::load(&o, None).is_err());
    }
}
