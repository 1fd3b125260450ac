//! Accounts in the composition root: `[auth]` → [`AccountsConfig`], the service over the opened
//! database, the first-start bootstrap, and the local admin commands (`hearth user|key|audit`),
//! which open the configured database directly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hearth_accounts::{
    Accounts, AccountsConfig, Bootstrap, Client, KeyRequest, NewAccount, OidcConfig, Principal,
    Role, SignupPolicy, ThrottlePolicy,
};
use hearth_config::{AuthConfig, Config, Signup};
use hearth_server::AuthSettings;
use hearth_store::Stores;

use crate::AppError;

/// The accounts service's settings from `[auth]`.
pub fn accounts_config(auth: &AuthConfig) -> AccountsConfig {
    AccountsConfig {
        signup: match auth.signup {
            Signup::Closed => SignupPolicy::Closed,
            Signup::Pending => SignupPolicy::Pending,
            Signup::Open => SignupPolicy::Open,
        },
        session_idle: auth.session_idle,
        session_lifetime: auth.session_lifetime,
        mfa_required_for_admins: auth.mfa_required_for_admins,
        throttle: ThrottlePolicy {
            window: auth.throttle_window,
            free_failures: auth.throttle_free_failures,
            base_delay: auth.throttle_base_delay,
            max_delay: auth.throttle_max_delay,
        },
        setup_token_lifetime: auth.setup_token_lifetime,
        audit_retention: auth.audit_retention,
        bootstrap_admin: auth.bootstrap_admin.clone(),
        oidc: auth.oidc.as_ref().map(|o| OidcConfig {
            issuer: o.issuer.clone(),
            client_id: o.client_id.clone(),
            client_secret: o.client_secret.clone(),
            redirect_url: o.redirect_url.clone(),
            new_user_role: Role::parse(&o.new_user_role).unwrap_or(Role::Pending),
        }),
        ..AccountsConfig::default()
    }
}

/// The server's auth settings for a server listening on `addr`.
pub fn auth_settings(config: &Config, accounts: Arc<Accounts>, addr: SocketAddr) -> AuthSettings {
    AuthSettings {
        accounts: Some(accounts),
        required: config.auth.mode.required(addr),
        // Plain http on loopback: see `AuthSettings::secure_cookie`.
        secure_cookie: !addr.ip().is_loopback(),
    }
}

/// The lines `hearth serve` prints about sign-in: the mode, and the setup link or the admin
/// created on first start.
pub fn describe(config: &Config, addr: SocketAddr, boot: &Bootstrap) -> Vec<String> {
    let mut lines = Vec::new();
    let mode = if config.auth.mode.required(addr) {
        "auth: required — the OpenAI and Ollama APIs need an API key (Authorization: Bearer hearth_…)"
    } else {
        "auth: open — the OpenAI and Ollama APIs answer without a key (loopback only or `auth.mode = \"open\"`); account routes still need a sign-in"
    };
    lines.push(mode.to_owned());
    let host = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    match boot {
        Bootstrap::Ready => {}
        Bootstrap::AdminCreated { username } => {
            lines.push(format!(
                "created the first admin `{username}` from HEARTH_ADMIN_USER"
            ));
        }
        Bootstrap::SetupToken { token, .. } => {
            lines.push(format!(
                "no accounts yet: create the first admin within {} at http://{host}/setup?token={token}",
                human_duration(config.auth.setup_token_lifetime)
            ));
            lines.push(
                "  (or POST {\"token\",\"username\",\"password\"} to /api/hearth/v1/auth/setup; the link works once)".to_owned(),
            );
        }
    }
    lines
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{} h", s / 3600)
    } else if s >= 60 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

/// Opens the accounts service over `stores` and runs the first-start bootstrap.
pub async fn start(
    config: &Config,
    stores: Stores,
) -> Result<(Arc<Accounts>, Bootstrap), AppError> {
    let accounts = Accounts::new(stores, accounts_config(&config.auth));
    let boot = accounts.bootstrap().await.map_err(accounts_error)?;
    if let Err(e) = accounts.apply_retention().await {
        tracing::warn!(error = %e, "audit retention failed");
    }
    Ok((accounts, boot))
}

pub(crate) fn accounts_error(e: hearth_accounts::AccountsError) -> AppError {
    AppError::Message(e.to_string())
}

/// `hearth user …`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum UserCommand {
    /// Create a user; the password comes from HEARTH_NEW_PASSWORD or is read from stdin.
    Add {
        username: String,
        /// admin, user, viewer or pending.
        #[arg(long, default_value = "user")]
        role: String,
        /// The new password (set HEARTH_NEW_PASSWORD rather than typing it on a command line).
        #[arg(long, env = "HEARTH_NEW_PASSWORD", hide_env_values = true, hide = true)]
        password: Option<String>,
    },
    /// List users.
    List,
    /// Disable a user (ends their sessions; their keys stop working); --enable undoes it.
    Disable {
        username: String,
        #[arg(long)]
        enable: bool,
    },
    /// Change a user's role.
    Role { username: String, role: String },
}

/// `hearth key …`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeyCommand {
    /// Create an API key for a user; prints the key once.
    Create {
        username: String,
        #[arg(long, default_value = "cli")]
        name: String,
        /// Route families, comma-separated: openai, ollama, admin, account.
        #[arg(long, value_delimiter = ',', default_value = "openai,ollama")]
        routes: Vec<String>,
        /// Models, comma-separated: names or prefixes ending in `*`.
        #[arg(long, value_delimiter = ',', default_value = "*")]
        models: Vec<String>,
        /// Days until the key expires (default: never).
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// List a user's keys.
    List { username: String },
    /// Revoke a key by its id.
    Revoke { id: String },
}

/// `hearth audit …`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AuditCommand {
    /// Print the last events.
    Tail {
        #[arg(short, default_value_t = 20)]
        n: u32,
    },
    /// Check the hash chain; fails when an event was changed, deleted or inserted.
    Verify,
    /// Write every event as JSON lines to stdout.
    Export,
}

async fn open_local(config: &Config) -> Result<Arc<Accounts>, AppError> {
    let stores = crate::open_database(config).await?;
    Ok(Accounts::new(stores, accounts_config(&config.auth)))
}

fn password_or_prompt(given: Option<String>) -> Result<String, AppError> {
    if let Some(p) = given.filter(|p| !p.is_empty()) {
        return Ok(p);
    }
    eprint!("password for the new user: ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn role(text: &str) -> Result<Role, AppError> {
    Role::parse(text).ok_or_else(|| {
        AppError::Message(format!(
            "unknown role {text:?}; use admin, user, viewer or pending"
        ))
    })
}

pub async fn user(config: &Config, cmd: UserCommand) -> Result<(), AppError> {
    let accounts = open_local(config).await?;
    let me = Principal::local();
    let client = Client::default();
    match cmd {
        UserCommand::Add {
            username,
            role: r,
            password,
        } => {
            let password = password_or_prompt(password)?;
            let u = accounts
                .create_user(
                    &me,
                    &NewAccount {
                        username,
                        password: Some(password),
                        role: role(&r)?,
                    },
                    &client,
                )
                .await
                .map_err(accounts_error)?;
            println!("created {} ({}, id {})", u.username, u.role, u.id);
        }
        UserCommand::List => {
            let users = accounts
                .list_users(&me, &client)
                .await
                .map_err(accounts_error)?;
            println!("{:<24} {:<8} {:<9} ID", "USERNAME", "ROLE", "STATUS");
            for u in users {
                let status = if u.disabled { "disabled" } else { "active" };
                println!("{:<24} {:<8} {:<9} {}", u.username, u.role, status, u.id);
            }
        }
        UserCommand::Disable { username, enable } => {
            let u = accounts
                .user_by_name(&me, &username)
                .await
                .map_err(accounts_error)?;
            accounts
                .set_disabled(&me, u.id, !enable, &client)
                .await
                .map_err(accounts_error)?;
            println!(
                "{} {}",
                u.username,
                if enable {
                    "enabled"
                } else {
                    "disabled; their sessions ended"
                }
            );
        }
        UserCommand::Role { username, role: r } => {
            let u = accounts
                .user_by_name(&me, &username)
                .await
                .map_err(accounts_error)?;
            let r = role(&r)?;
            accounts
                .set_role(&me, u.id, r, &client)
                .await
                .map_err(accounts_error)?;
            println!("{} is now {r}", u.username);
        }
    }
    Ok(())
}

pub async fn key(config: &Config, cmd: KeyCommand) -> Result<(), AppError> {
    let accounts = open_local(config).await?;
    let me = Principal::local();
    let client = Client::default();
    match cmd {
        KeyCommand::Create {
            username,
            name,
            routes,
            models,
            expires_days,
        } => {
            let u = accounts
                .user_by_name(&me, &username)
                .await
                .map_err(accounts_error)?;
            let k = accounts
                .create_key(
                    &me,
                    Some(u.id),
                    &KeyRequest {
                        name,
                        routes,
                        models,
                        expires_in: expires_days
                            .map(|d| Duration::from_secs(u64::from(d) * 86_400)),
                    },
                    &client,
                )
                .await
                .map_err(accounts_error)?;
            eprintln!(
                "API key {} for {} (routes {}; models {}); it is shown only now:",
                k.key.id,
                u.username,
                k.key.scopes.join(","),
                k.key.models.join(",")
            );
            println!("{}", k.secret);
        }
        KeyCommand::List { username } => {
            let u = accounts
                .user_by_name(&me, &username)
                .await
                .map_err(accounts_error)?;
            let keys = accounts
                .list_keys(&me, Some(u.id))
                .await
                .map_err(accounts_error)?;
            println!(
                "{:<36}  {:<16} {:<8} {:>6}  NAME",
                "ID", "PREFIX", "STATUS", "USES"
            );
            for k in keys {
                let status = if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{:<36}  {:<16} {:<8} {:>6}  {}",
                    k.id, k.prefix, status, k.use_count, k.name
                );
            }
        }
        KeyCommand::Revoke { id } => {
            let id = hearth_store::Uuid::parse_str(&id).map_err(|_| {
                AppError::Message(format!(
                    "{id:?} is not a key id (see `hearth key list USER`)"
                ))
            })?;
            accounts
                .revoke_key(&me, id, &client)
                .await
                .map_err(accounts_error)?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

pub async fn audit(config: &Config, cmd: AuditCommand) -> Result<(), AppError> {
    let accounts = open_local(config).await?;
    let me = Principal::local();
    match cmd {
        AuditCommand::Tail { n } => {
            for e in accounts.audit_tail(&me, n).await.map_err(accounts_error)? {
                println!(
                    "{:>6} {} {:<28} {:<8} actor={} target={} client={} {}",
                    e.seq,
                    e.time,
                    e.action,
                    e.outcome,
                    e.actor,
                    e.target,
                    e.client_address.as_deref().unwrap_or("-"),
                    e.detail
                );
            }
        }
        AuditCommand::Verify => {
            let r = accounts.audit_verify(&me).await.map_err(accounts_error)?;
            match (r.broken_at, &r.problem) {
                (None, _) => println!(
                    "audit chain intact: {} events verified (from seq {})",
                    r.checked, r.from_seq
                ),
                (Some(seq), problem) => {
                    return Err(AppError::Message(format!(
                        "audit chain broken at event {seq}: {}; the log was changed outside Hearth",
                        problem.as_deref().unwrap_or("mismatch")
                    )));
                }
            }
        }
        AuditCommand::Export => {
            let mut out = std::io::stdout();
            let n = accounts
                .audit_export(&me, &mut out)
                .await
                .map_err(accounts_error)?;
            eprintln!("exported {n} events");
        }
    }
    Ok(())
}
