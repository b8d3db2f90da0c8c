//! The command line: `serve`, `migrate`, and operator commands that go through the same
//! services as the API.

use crate::app::{App, SystemClock};
use crate::config::{Config, Overrides};
use crate::services::{self, auth::Signup};
use crate::store::{self, Store};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "atrium",
    version,
    about = "Accounts, workspaces and RBAC for Prefect"
)]
struct Cli {
    #[command(flatten)]
    overrides: Overrides,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (migrations are applied first).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "ATRIUM_BIND")]
        bind: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// List the servers sharing the database (seen within the last 15 s), oldest first.
    Nodes,
    /// SQLite: write a consistent copy of the database to a new file while the server runs
    /// (`VACUUM INTO`). PostgreSQL: use `pg_dump` (docs/operations.md).
    Backup {
        /// The new file (must not exist).
        #[arg(long)]
        to: std::path::PathBuf,
    },
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage accounts.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Verify, export and checkpoint the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Workspace gateway settings.
    #[command(subcommand)]
    Workspaces(WorkspacesCommand),
    /// Flow-run retention through the workspaces' upstream Prefect servers.
    #[command(subcommand)]
    Retention(RetentionCommand),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute hash chains and check signed checkpoints; names the first broken event. With
    /// --file, verifies an export offline against --public-key (no database needed).
    Verify {
        /// Account handle (default: every chain, including the system chain).
        #[arg(long)]
        account: Option<String>,
        /// An export file (JSON Lines) to verify instead of the database.
        #[arg(long, requires = "public_key")]
        file: Option<std::path::PathBuf>,
        /// Hex Ed25519 public key (GET /api/audit/public_key).
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Write an account's events and checkpoints as JSON Lines to standard output (or --output).
    Export {
        /// Account handle; `system` for user-level events.
        #[arg(long)]
        account: String,
        /// Only events from this instant (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
    /// Sign the head of every chain (or one account's) now.
    Checkpoint {
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create a user; the password is read from standard input.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        handle: Option<String>,
        #[arg(long)]
        first_name: Option<String>,
        #[arg(long)]
        last_name: Option<String>,
        /// Make the user a site admin (may create accounts).
        #[arg(long)]
        site_admin: bool,
    },
    /// Create a personal API key and print it (and nothing else) on standard output.
    ApiKey {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Lifetime such as 30d, 12h, 90m (default: never expires).
        #[arg(long)]
        expires_in: Option<String>,
    },
}

#[derive(Subcommand)]
enum WorkspacesCommand {
    /// Bind a workspace to its upstream Prefect server (the URL a Prefect user would put in
    /// PREFECT_API_URL, e.g. http://127.0.0.1:4200/api).
    SetUpstream {
        /// Account handle.
        #[arg(long)]
        account: String,
        /// Workspace handle.
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        url: String,
        /// File holding the upstream's PREFECT_SERVER_API_AUTH_STRING (never on the command line).
        #[arg(long)]
        auth_string_file: Option<std::path::PathBuf>,
        /// https upstreams: PEM CA bundle trusted instead of the system's roots.
        #[arg(long)]
        ca_file: Option<std::path::PathBuf>,
        /// https upstreams requiring mutual TLS: PEM client certificate chain…
        #[arg(long, requires = "client_key_file")]
        client_cert_file: Option<std::path::PathBuf>,
        /// …and its PEM private key (stored encrypted).
        #[arg(long, requires = "client_cert_file")]
        client_key_file: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Delete an account's flow runs that ended longer ago than its retention.
    Run {
        /// Account handle.
        #[arg(long)]
        account: String,
        /// Only count what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Create an account owned by an existing user.
    Create {
        #[arg(long)]
        handle: String,
        #[arg(long)]
        name: String,
        /// Email of the user who becomes its Owner.
        #[arg(long)]
        owner_email: String,
    },
    /// Set an account's plan, optionally with per-account overrides ("unlimited" for no limit).
    SetPlan {
        /// Account handle.
        #[arg(long)]
        account: String,
        /// hobby, starter, team, pro or enterprise.
        #[arg(long)]
        plan: String,
        #[arg(long)]
        user_limit: Option<String>,
        #[arg(long)]
        workspace_limit: Option<String>,
        /// Comma-separated feature list replacing the plan's.
        #[arg(long)]
        features: Option<String>,
        #[arg(long)]
        run_retention_days: Option<i64>,
        #[arg(long)]
        audit_log_retention_days: Option<i64>,
        #[arg(long)]
        api_rate_limit: Option<i64>,
        #[arg(long)]
        logs_rate_limit: Option<i64>,
    },
    /// Add an existing user to an account (invitations are the usual way in).
    AddMember {
        /// Account handle.
        #[arg(long)]
        account: String,
        #[arg(long)]
        email: String,
        /// owner, admin or member.
        #[arg(long, default_value = "member")]
        role: String,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ATRIUM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    match crate::config::worker_threads() {
        Ok(None) => {}
        Ok(Some(n)) => {
            builder.worker_threads(n);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(OPENED.scope(Default::default(), async {
        let result = run(cli).await;
        // Refusals are written by a task; a command's own refusals reach the audit log before
        // the process exits.
        let opened = OPENED.with(|o| std::mem::take(&mut *o.borrow_mut()));
        for app in opened {
            services::audit::flush_refusals(&app).await;
        }
        result
    })) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

tokio::task_local! {
    /// The apps a command opened, for flushing their refusals at its end.
    static OPENED: std::cell::RefCell<Vec<App>>;
}

async fn open(config: Config) -> anyhow::Result<App> {
    let store = Store::connect(&config.database_url, None).await?;
    store.migrate().await?;
    let app = App::new(config, store, Arc::new(SystemClock)).await?;
    let _ = OPENED.try_with(|o| o.borrow_mut().push(app.clone()));
    Ok(app)
}

/// Parses `30d`, `12h`, `90m`, `45s`.
pub fn parse_duration(s: &str) -> anyhow::Result<chrono::Duration> {
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = num
        .parse()
        .with_context(|| format!("invalid duration {s:?}"))?;
    anyhow::ensure!(n > 0, "duration must be positive");
    Ok(match unit {
        "d" => chrono::Duration::days(n),
        "h" => chrono::Duration::hours(n),
        "m" => chrono::Duration::minutes(n),
        "s" => chrono::Duration::seconds(n),
        _ => anyhow::bail!("invalid duration {s:?}: use a number followed by d, h, m or s"),
    })
}

async fn chain_of(app: &App, handle: &str) -> anyhow::Result<uuid::Uuid> {
    if handle == "system" {
        return Ok(crate::domain::audit::SYSTEM_CHAIN);
    }
    Ok(services::accounts::find_by_handle(app, handle).await?.id.0)
}

async fn run_audit(cli: &Cli, cmd: &AuditCommand) -> anyhow::Result<()> {
    if let AuditCommand::Verify {
        file: Some(file),
        public_key,
        ..
    } = cmd
    {
        let key = public_key
            .as_deref()
            .and_then(crate::domain::audit::parse_public_key)
            .context("--public-key must be 64 hex characters")?;
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let (chains, events) = services::audit::verify_export(&text, &key)
            .map_err(|e| anyhow::anyhow!("verification failed: {e}"))?;
        eprintln!("ok: {events} events in {chains} chain(s) verified");
        return Ok(());
    }
    let app = open(Config::load(&cli.overrides, None)?).await?;
    match cmd {
        AuditCommand::Verify { account, .. } => {
            let only = match account {
                Some(h) => Some(chain_of(&app, h).await?),
                None => None,
            };
            let reports = services::audit::verify_all(&app, only).await?;
            let mut failed = false;
            for r in &reports {
                match &r.error {
                    None => eprintln!(
                        "ok: chain {} — {} events, {} checkpoints",
                        r.account, r.events, r.checkpoints
                    ),
                    Some(e) => {
                        failed = true;
                        eprintln!("BROKEN: chain {} — {e}", r.account);
                    }
                }
            }
            anyhow::ensure!(!failed, "audit verification failed");
            Ok(())
        }
        AuditCommand::Export {
            account,
            since,
            output,
        } => {
            let chain = chain_of(&app, account).await?;
            let since = since
                .as_deref()
                .map(|s| chrono::DateTime::parse_from_rfc3339(s).map(|t| t.timestamp_micros()))
                .transpose()
                .context("--since must be an RFC 3339 time")?;
            let n = match output {
                Some(path) => {
                    let mut f = std::io::BufWriter::new(
                        std::fs::File::create(path)
                            .with_context(|| format!("creating {}", path.display()))?,
                    );
                    let n = services::audit::export(&app, chain, since, &mut f).await?;
                    std::io::Write::flush(&mut f)?;
                    n
                }
                None => {
                    let mut out = std::io::stdout().lock();
                    services::audit::export(&app, chain, since, &mut out).await?
                }
            };
            eprintln!("exported {n} events");
            Ok(())
        }
        AuditCommand::Checkpoint { account } => {
            match account {
                Some(h) => {
                    let chain = chain_of(&app, h).await?;
                    services::audit::checkpoint(&app, chain).await?;
                }
                None => {
                    services::audit::checkpoint_all(&app).await?;
                }
            }
            eprintln!("checkpointed");
            Ok(())
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Audit(ref cmd) => run_audit(&cli, cmd).await,
        Command::Workspaces(WorkspacesCommand::SetUpstream {
            ref account,
            ref workspace,
            ref url,
            ref auth_string_file,
            ref ca_file,
            ref client_cert_file,
            ref client_key_file,
        }) => {
            let read = |f: &Option<std::path::PathBuf>| -> anyhow::Result<Option<Option<String>>> {
                f.as_ref()
                    .map(|f| {
                        std::fs::read_to_string(f)
                            .with_context(|| format!("reading {}", f.display()))
                            .map(Some)
                    })
                    .transpose()
            };
            let app = open(Config::load(&cli.overrides, None)?).await?;
            let (account_id, principal) = account_owner(&app, account).await?;
            let ws = {
                let mut c = app.store.reader().await?;
                store::workspaces::find_all_workspaces(&mut c, account_id)
                    .await?
                    .into_iter()
                    .find(|w| w.handle == *workspace)
                    .with_context(|| format!("no workspace {workspace:?} in account {account:?}"))?
            };
            let auth_string = match auth_string_file {
                Some(f) => Some(Some(
                    std::fs::read_to_string(f)
                        .with_context(|| format!("reading {}", f.display()))?
                        .trim_end_matches(['\r', '\n'])
                        .to_string(),
                )),
                None => None,
            };
            let view = services::upstreams::set_upstream(
                &app,
                &principal,
                account_id,
                ws.id,
                services::upstreams::SetUpstream {
                    url: url.clone(),
                    auth_string,
                    ca_certificates: read(ca_file)?,
                    client_certificate: read(client_cert_file)?,
                    client_key: read(client_key_file)?,
                },
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&view)?);
            Ok(())
        }
        Command::Retention(RetentionCommand::Run {
            ref account,
            dry_run,
        }) => {
            let app = open(Config::load(&cli.overrides, None)?).await?;
            let (account_id, principal) = account_owner(&app, account).await?;
            let report =
                services::retention::apply(&app, Some(&principal), account_id, dry_run).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Serve { bind } => {
            let config = Config::load(&cli.overrides, bind.as_deref())?;
            serve(config).await
        }
        Command::Migrate => {
            let config = Config::load(&cli.overrides, None)?;
            let store = Store::connect(&config.database_url, None).await?;
            store.migrate().await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Backup { ref to } => {
            let config = Config::load(&cli.overrides, None)?;
            let store = Store::connect(&config.database_url, None).await?;
            anyhow::ensure!(
                store.engine == crate::store::Engine::Sqlite,
                "atrium backup copies SQLite databases; back up PostgreSQL with pg_dump (docs/operations.md)"
            );
            anyhow::ensure!(!to.exists(), "{} exists already", to.display());
            let target = to.to_str().context("the backup path must be valid UTF-8")?;
            store.backup_sqlite(target).await?;
            store.close().await;
            eprintln!("backed up to {}", to.display());
            Ok(())
        }
        Command::Nodes => {
            let app = open(Config::load(&cli.overrides, None)?).await?;
            let nodes = services::node::live_nodes(&app).await?;
            if nodes.is_empty() {
                println!("no live servers");
            }
            for n in nodes {
                println!(
                    "{}\tversion {}\tstarted {}\tseen {}",
                    n.id,
                    n.version,
                    n.started_at.to_rfc3339(),
                    n.seen_at.to_rfc3339()
                );
            }
            Ok(())
        }
        Command::Users(UsersCommand::Create {
            email,
            handle,
            first_name,
            last_name,
            site_admin,
        }) => {
            let app = open(Config::load(&cli.overrides, None)?).await?;
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']).to_string();
            let user = services::auth::create_user(
                &app,
                Signup {
                    email,
                    password,
                    handle,
                    first_name,
                    last_name,
                },
                site_admin,
            )
            .await?;
            eprintln!(
                "created user {} ({}) with id {}",
                user.email, user.handle, user.id
            );
            Ok(())
        }
        Command::Users(UsersCommand::ApiKey {
            email,
            name,
            expires_in,
        }) => {
            let app = open(Config::load(&cli.overrides, None)?).await?;
            let expiration = expires_in
                .as_deref()
                .map(parse_duration)
                .transpose()?
                .map(|d| app.now() + d);
            let user = {
                let mut c = app.store.reader().await?;
                store::users::find_user_by_email(&mut c, &email)
                    .await?
                    .with_context(|| format!("no user with email {email}"))?
            };
            let operator = crate::authz::Principal::cli(user.id, user.email.clone());
            let key =
                services::users::issue_api_key(&app, Some(&operator), user.id, &name, expiration)
                    .await?;
            println!("{}", key.key);
            Ok(())
        }
        Command::Accounts(AccountsCommand::Create {
            handle,
            name,
            owner_email,
        }) => {
            let app = open(Config::load(&cli.overrides, None)?).await?;
            let owner = {
                let mut c = app.store.reader().await?;
                store::users::find_user_by_email(&mut c, &owner_email)
                    .await?
                    .with_context(|| format!("no user with email {owner_email}"))?
            };
            let principal = crate::authz::Principal::cli(owner.id, owner.email.clone());
            let account = services::accounts::create_account(
                &app,
                &principal,
                services::accounts::CreateAccount {
                    name,
                    handle,
                    location: None,
                    link: None,
                    billing_email: None,
                },
            )
            .await?;
            println!("{}", account.id);
            Ok(())
        }
        Command::Accounts(AccountsCommand::SetPlan {
            account,
            plan,
            user_limit,
            workspace_limit,
            features,
            run_retention_days,
            audit_log_retention_days,
            api_rate_limit,
            logs_rate_limit,
        }) => {
            let app = open(Config::load(&cli.overrides, None)?).await?;
            let plan = crate::domain::plan::PlanType::parse(&plan)
                .context("plan must be hobby, starter, team, pro or enterprise")?;
            let limit = |v: Option<String>| -> anyhow::Result<Option<Option<i64>>> {
                v.map(|s| {
                    if s == "unlimited" {
                        Ok(None)
                    } else {
                        s.parse::<i64>()
                            .map(Some)
                            .context("a limit is a number or \"unlimited\"")
                    }
                })
                .transpose()
            };
            let overrides = crate::domain::plan::EntitlementsPatch {
                user_limit: limit(user_limit)?,
                workspace_limit: limit(workspace_limit)?,
                features: features.map(|f| {
                    f.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                }),
                run_retention_days,
                audit_log_retention_days,
                api_rate_limit,
                logs_rate_limit,
            };
            let (account_id, principal) = account_owner(&app, &account).await?;
            let view = services::plans::set_plan(
                &app,
                &principal,
                account_id,
                services::plans::SetPlan {
                    plan_type: plan,
                    overrides,
                },
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&view)?);
            Ok(())
        }
        Command::Accounts(AccountsCommand::AddMember {
            account,
            email,
            role,
        }) => {
            let app = open(Config::load(&cli.overrides, None)?).await?;
            let role = crate::domain::role::AccountRole::from_code(&role)
                .context("role must be owner, admin or member")?;
            let (account_id, principal) = account_owner(&app, &account).await?;
            let user = {
                let mut c = app.store.reader().await?;
                store::users::find_user_by_email(&mut c, &email)
                    .await?
                    .with_context(|| format!("no user with email {email}"))?
            };
            let m = services::memberships::add_member(&app, &principal, account_id, user.id, role)
                .await?;
            println!("{}", m.id);
            Ok(())
        }
    }
}

/// The operator acting on an account: its first active Owner, so the change is made (and later
/// audited) through the same permission checks as an API call.
async fn account_owner(
    app: &App,
    handle: &str,
) -> anyhow::Result<(crate::domain::AccountId, crate::authz::Principal)> {
    let account = services::accounts::find_by_handle(app, handle).await?;
    let mut c = app.store.reader().await?;
    let owners = store::memberships::find_memberships(
        &mut c,
        account.id,
        &store::memberships::MembershipFilter {
            active: Some(true),
            ..Default::default()
        },
        200,
        0,
    )
    .await?;
    let owner = owners
        .into_iter()
        .find(|m| m.account_role_name == "Owner")
        .context("the account has no active Owner")?;
    Ok((
        account.id,
        crate::authz::Principal::cli(owner.user_id, owner.email),
    ))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let bind = config.bind.clone();
    let app = open(config).await?;
    let listener = crate::http::server::listen(&bind)
        .await
        .with_context(|| format!("binding {bind}"))?;
    let users = {
        let mut c = app.store.reader().await?;
        store::users::count_users(&mut c).await?
    };
    // One line per start, for operators and log search.
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        database = app.store.engine.name(),
        node_id = %app.config.node_id,
        listen = %listener.local_addr()?,
        rate_limits = if app.config.redis_url.is_some() { "redis" } else { "per-server" },
        "atrium started"
    );
    tell(format_args!(
        "Atrium is listening on http://{} (public URL {})",
        listener.local_addr()?,
        app.config.public_url
    ));
    tell(format_args!(
        "API: {}/api  ·  OpenAPI: {}/api/openapi.json",
        app.config.public_url, app.config.public_url
    ));
    if users == 0 {
        if let Some(token) = crate::services::setup::SetupToken::issue(&app).await? {
            tell(format_args!(
                "No users yet. Open this one-time link to create the first (site admin) user and account:\n  \
                 {}/setup?token={token}\n\
                 or from a shell:\n  \
                 echo 'a-long-password' | cargo run --release -- users create --email you@example.com --site-admin",
                app.config.public_url
            ));
        }
    }
    let store = app.store.clone();
    let jobs = crate::jobs::spawn(&app);
    let last = app.clone();
    crate::http::server::serve(listener, app, shutdown_signal())
        .await
        .context("serving")?;
    for job in jobs {
        job.abort();
    }
    if let Err(e) = services::node::leave(&last).await {
        tracing::warn!(error = %e, "leaving the node registry failed");
    }
    tracing::info!(node_id = %last.config.node_id, "atrium stopped");
    // Refusals answered before the shutdown are in the audit log before the database closes.
    services::audit::flush_refusals(&last).await;
    store.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Writes a line for the operator on standard error. A standard error nobody reads any more (a
/// supervisor that closed the pipe) must not stop the server, as `eprintln!` would by panicking.
fn tell(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}
