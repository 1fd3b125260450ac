//! Configuration: layered raw TOML (compiled-in defaults → system file → user file →
//! `--config FILE` → `HEARTH__SECTION__KEY` environment → flags), checked against a raw schema
//! that refuses unknown keys, then validated into the typed [`Config`] every other crate takes.
//! This is the only crate that reads configuration files or the environment.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::{Table, Value};

/// The compiled-in defaults, also the reference documentation.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {origin}: {message}")]
    Invalid { origin: String, message: String },
}

fn invalid(origin: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.into(),
        message: message.into(),
    }
}

/// A setting written as text or as a bare number (`keep_alive = 300`, or
/// `HEARTH__MODELS__MEMORY_BUDGET=0`, which arrives as an integer).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Text {
    Str(String),
    Int(i64),
    Float(f64),
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Text::Str(s) => f.write_str(s),
            Text::Int(i) => write!(f, "{i}"),
            Text::Float(x) => write!(f, "{x}"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    home: String,
    server: RawServer,
    models: RawModels,
    engine: RawEngine,
    pull: RawPull,
    log: RawLog,
    database: RawDatabase,
    auth: RawAuth,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: String,
    max_body_bytes: u64,
    max_choices: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModels {
    default: String,
    keep_alive: Text,
    max_loaded: u32,
    memory_budget: Text,
    pull_default_on_serve: bool,
    import_dirs: DirList,
    max_blob_bytes: u64,
}

/// A list of directories: a TOML array, or (from the environment) one string of
/// `:`-separated paths.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DirList {
    List(Vec<String>),
    Joined(String),
}

impl DirList {
    fn paths(&self) -> Vec<String> {
        match self {
            DirList::List(v) => v.clone(),
            DirList::Joined(s) => s
                .split(':')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    threads: u32,
    context_length: u32,
    prefill_chunk: u32,
    max_queue: u32,
    max_active: u32,
    request_timeout: Text,
    prefix_cache_entries: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPull {
    python: String,
    hub_endpoint: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    mode: String,
    signup: String,
    session_idle: Text,
    session_lifetime: Text,
    mfa_required_for_admins: bool,
    setup_token_lifetime: Text,
    audit_retention: Text,
    throttle_free_failures: u32,
    throttle_window: Text,
    throttle_base_delay: Text,
    throttle_max_delay: Text,
    oidc: RawOidc,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    issuer: String,
    client_id: String,
    client_secret: String,
    redirect_url: String,
    new_user_role: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: String,
}

/// Validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where Hearth keeps its data.
    pub home: PathBuf,
    pub server: ServerConfig,
    pub models: ModelsConfig,
    pub engine: EngineConfig,
    pub pull: PullConfig,
    pub database: DatabaseConfig,
    pub log_level: String,
    pub auth: AuthConfig,
    /// The files that were read, in order (for `hearth config` and startup logs).
    pub sources: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    /// Most choices (`n`) one OpenAI generation request may ask for.
    pub max_choices: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelsConfig {
    pub default: String,
    /// `None`: keep loaded forever.
    pub keep_alive: Option<Duration>,
    pub max_loaded: usize,
    pub memory_budget: MemoryBudget,
    pub pull_default_on_serve: bool,
    /// Directories whose GGUF files `POST /api/create` may copy from (`from` a path); empty:
    /// none. Absolute paths.
    pub import_dirs: Vec<PathBuf>,
    /// Largest blob `POST /api/blobs/:digest` stores.
    pub max_blob_bytes: u64,
}

/// How much memory loaded models may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryBudget {
    /// Three quarters of the machine's memory (the caller measures it).
    Auto,
    Unlimited,
    Bytes(u64),
}

/// Parse "auto", "0", or a size in bytes with an optional KB/MB/GB/TB (or KiB/MiB/GiB) unit.
pub fn parse_memory_budget(text: &str) -> Result<MemoryBudget, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("auto") {
        return Ok(MemoryBudget::Auto);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size (try auto, 0, 800MB or 6GB)"))?;
    let scale = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KIB" => 1024.0,
        "MIB" => 1024.0 * 1024.0,
        "GIB" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "`{text}` has unknown unit `{other}` (use MB or GB)"
            ));
        }
    };
    let bytes = n * scale;
    if !bytes.is_finite() || bytes > 1e18 {
        return Err(format!("`{text}` is too large"));
    }
    Ok(if bytes < 1.0 {
        MemoryBudget::Unlimited
    } else {
        MemoryBudget::Bytes(bytes as u64)
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    pub threads: usize,
    pub context_length: usize,
    pub prefill_chunk: usize,
    pub max_queue: usize,
    pub max_active: usize,
    /// `None`: no limit.
    pub request_timeout: Option<std::time::Duration>,
    pub prefix_cache_entries: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PullConfig {
    pub python: String,
    pub hub_endpoint: String,
}

/// Where accounts, sessions and the audit log are kept.
#[derive(Clone, PartialEq)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/DATABASE`; an empty setting is
    /// resolved to `sqlite://HOME/hearth.db`.
    pub url: String,
}

impl DatabaseConfig {
    /// The URL with any password replaced by `…`, for logs and `hearth config`.
    pub fn redacted_url(&self) -> String {
        let url = &self.url;
        match (url.find("://"), url.rfind('@')) {
            (Some(s), Some(at)) if at > s => {
                let user = url[s + 3..at].split(':').next().unwrap_or("");
                format!("{}{user}:…{}", &url[..s + 3], &url[at..])
            }
            _ => url.clone(),
        }
    }
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.redacted_url())
            .finish()
    }
}

/// Check a `database.url` setting; empty means the SQLite file `hearth.db` under `home`.
pub fn database_url(setting: &str, home: &Path) -> Result<String, String> {
    let url = setting.trim();
    if url.is_empty() {
        return Ok(format!("sqlite://{}", home.join("hearth.db").display()));
    }
    let known = ["sqlite:", "postgres://", "postgresql://"];
    if known.iter().any(|k| url.starts_with(k)) {
        Ok(url.to_owned())
    } else {
        let shown = DatabaseConfig {
            url: url.to_owned(),
        }
        .redacted_url();
        Err(format!(
            "`{shown}` is not a database URL (use sqlite:///path/to/hearth.db or postgres://user:password@host:5432/hearth)"
        ))
    }
}

/// Whether requests must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Required when listening beyond loopback, open on loopback.
    Auto,
    Required,
    /// The OpenAI and Ollama routes answer anyone (the account routes still need a session).
    Open,
}

impl AuthMode {
    /// Whether requests must authenticate when listening on `listen`.
    pub fn required(self, listen: SocketAddr) -> bool {
        match self {
            AuthMode::Required => true,
            AuthMode::Open => false,
            AuthMode::Auto => !listen.ip().is_loopback(),
        }
    }
}

/// Who may sign up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signup {
    Closed,
    Pending,
    Open,
}

/// `[auth]`: accounts, sessions, sign-in.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub signup: Signup,
    pub session_idle: Duration,
    pub session_lifetime: Duration,
    pub mfa_required_for_admins: bool,
    pub setup_token_lifetime: Duration,
    /// `None`: keep audit events forever.
    pub audit_retention: Option<Duration>,
    pub throttle_free_failures: u32,
    pub throttle_window: Duration,
    pub throttle_base_delay: Duration,
    pub throttle_max_delay: Duration,
    /// `HEARTH_ADMIN_USER` and `HEARTH_ADMIN_PASSWORD`, when both are set: the first admin.
    pub bootstrap_admin: Option<(String, String)>,
    pub oidc: Option<OidcConfig>,
}

/// `[auth.oidc]`, when `issuer` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_url: String,
    /// "user", "viewer" or "pending".
    pub new_user_role: String,
}

/// Where configuration comes from besides the compiled-in defaults.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Files read if they exist (system and user files).
    pub optional_files: Vec<PathBuf>,
    /// A file that must exist (`--config`).
    pub explicit_file: Option<PathBuf>,
    /// `(name, value)` pairs of the environment; only `HEARTH__…` ones are used.
    pub env: Vec<(String, String)>,
    /// Overrides from flags, as dotted keys (`server.listen`) and TOML-ish values.
    pub flags: Vec<(String, String)>,
    /// `$HEARTH_HOME`, `$XDG_DATA_HOME` and `$HOME`, used when `home` is empty.
    pub hearth_home: Option<PathBuf>,
    pub xdg_data_home: Option<PathBuf>,
    pub user_home: Option<PathBuf>,
}

impl Sources {
    /// The standard sources of this process: system and user files, the environment.
    pub fn from_process(explicit_file: Option<PathBuf>, flags: Vec<(String, String)>) -> Self {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let var = |k: &str| {
            env.iter()
                .find(|(n, v)| n == k && !v.is_empty())
                .map(|(_, v)| PathBuf::from(v))
        };
        let user_home = var("HOME");
        let config_home =
            var("XDG_CONFIG_HOME").or_else(|| user_home.as_ref().map(|h| h.join(".config")));
        let mut optional_files = vec![PathBuf::from("/etc/hearth/config.toml")];
        if let Some(c) = config_home {
            optional_files.push(c.join("hearth/config.toml"));
        }
        Self {
            optional_files,
            explicit_file,
            hearth_home: var("HEARTH_HOME"),
            xdg_data_home: var("XDG_DATA_HOME"),
            user_home,
            env,
            flags,
        }
    }
}

/// Merge `over` into `base`, table by table.
fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// A value given as text (environment or flag): TOML if it parses as a scalar, else a string.
fn scalar(text: &str) -> Value {
    match format!("v = {text}").parse::<Table>() {
        Ok(mut t) => match t.remove("v") {
            Some(v @ (Value::Integer(_) | Value::Float(_) | Value::Boolean(_))) => v,
            _ => Value::String(text.to_owned()),
        },
        Err(_) => Value::String(text.to_owned()),
    }
}

fn set_path(
    root: &mut Table,
    path: &[String],
    value: Value,
    origin: &str,
) -> Result<(), ConfigError> {
    let Some((last, parents)) = path.split_last() else {
        return Err(invalid(origin, "empty key"));
    };
    let mut table = root;
    for p in parents {
        let entry = table
            .entry(p.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        table = match entry {
            Value::Table(t) => t,
            _ => return Err(invalid(origin, format!("`{p}` is not a section"))),
        };
    }
    table.insert(last.clone(), value);
    Ok(())
}

/// Parse "5m", "30s", "1h", "250ms", "0", plain seconds, or "-1" (forever: `None`).
pub fn parse_duration(text: &str) -> Result<Option<Duration>, String> {
    let t = text.trim();
    if t.starts_with('-') {
        return Ok(None);
    }
    let (num, unit) = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((t, ""), |i| t.split_at(i));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 30s, 5m, 1h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "`{text}` has unknown unit `{unit}` (use ms, s, m or h)"
            ));
        }
    };
    if !secs.is_finite() || secs > 1e9 {
        return Err(format!("`{text}` is too long"));
    }
    Ok(Some(Duration::from_secs_f64(secs)))
}

impl Config {
    /// The compiled-in defaults alone (tests, and `hearth config --defaults`).
    pub fn defaults() -> Result<Self, ConfigError> {
        Self::load(&Sources::default())
    }

    /// Read every layer and validate.
    pub fn load(src: &Sources) -> Result<Self, ConfigError> {
        let mut root: Table = DEFAULT_TOML
            .parse()
            .map_err(|e: toml::de::Error| invalid("defaults", e.to_string()))?;
        let mut sources = vec!["defaults".to_owned()];
        let read = |path: &Path| -> Result<Table, ConfigError> {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            text.parse::<Table>()
                .map_err(|e| invalid(path.display().to_string(), e.to_string()))
        };
        for f in &src.optional_files {
            if f.is_file() {
                merge(&mut root, read(f)?);
                sources.push(f.display().to_string());
            }
        }
        if let Some(f) = &src.explicit_file {
            merge(&mut root, read(f)?);
            sources.push(f.display().to_string());
        }
        for (name, value) in &src.env {
            let Some(rest) = name.strip_prefix("HEARTH__") else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            set_path(&mut root, &path, scalar(value), name)?;
            sources.push(format!("env {name}"));
        }
        for (key, value) in &src.flags {
            let path: Vec<String> = key.split('.').map(str::to_owned).collect();
            set_path(&mut root, &path, scalar(value), key)?;
        }
        let raw: Raw = Value::Table(root)
            .try_into()
            .map_err(|e: toml::de::Error| {
                let message = e
                    .to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                invalid(format!("(layers: {})", sources.join(" → ")), message)
            })?;
        Self::validate(raw, src, sources)
    }

    fn validate(raw: Raw, src: &Sources, sources: Vec<String>) -> Result<Self, ConfigError> {
        let home = if !raw.home.is_empty() {
            PathBuf::from(&raw.home)
        } else if let Some(h) = &src.hearth_home {
            h.clone()
        } else if let Some(x) = &src.xdg_data_home {
            x.join("hearth")
        } else if let Some(h) = &src.user_home {
            h.join(".local/share/hearth")
        } else {
            return Err(invalid(
                "home",
                "no data folder: set HEARTH_HOME, or `home` in the config, or HOME",
            ));
        };
        let listen: SocketAddr = raw.server.listen.parse().map_err(|_| {
            invalid(
                "server.listen",
                format!(
                    "`{}` is not HOST:PORT (e.g. 127.0.0.1:11435)",
                    raw.server.listen
                ),
            )
        })?;
        let max_body_bytes = usize::try_from(raw.server.max_body_bytes)
            .ok()
            .filter(|&b| b >= 1024)
            .ok_or_else(|| invalid("server.max_body_bytes", "must be at least 1024"))?;
        if !(1..=128).contains(&raw.server.max_choices) {
            return Err(invalid("server.max_choices", "must be between 1 and 128"));
        }
        let keep_alive = parse_duration(&raw.models.keep_alive.to_string())
            .map_err(|e| invalid("models.keep_alive", e))?;
        if raw.models.default.trim().is_empty() {
            return Err(invalid("models.default", "must name a model"));
        }
        let memory_budget = parse_memory_budget(&raw.models.memory_budget.to_string())
            .map_err(|e| invalid("models.memory_budget", e))?;
        let import_dirs: Vec<PathBuf> = raw
            .models
            .import_dirs
            .paths()
            .into_iter()
            .map(PathBuf::from)
            .collect();
        if let Some(d) = import_dirs.iter().find(|d| !d.is_absolute()) {
            return Err(invalid(
                "models.import_dirs",
                format!("`{}` is not an absolute path", d.display()),
            ));
        }
        if raw.models.max_blob_bytes == 0 {
            return Err(invalid("models.max_blob_bytes", "must be at least 1"));
        }
        if raw.models.max_loaded == 0 {
            return Err(invalid("models.max_loaded", "must be at least 1"));
        }
        if raw.engine.prefill_chunk == 0 {
            return Err(invalid("engine.prefill_chunk", "must be at least 1"));
        }
        if raw.engine.max_queue == 0 || raw.engine.max_active == 0 {
            return Err(invalid(
                "engine.max_queue / engine.max_active",
                "must be at least 1",
            ));
        }
        let database = DatabaseConfig {
            url: database_url(&raw.database.url, &home).map_err(|e| invalid("database.url", e))?,
        };
        let auth = validate_auth(raw.auth, src)?;
        let request_timeout = parse_duration(&raw.engine.request_timeout.to_string())
            .map_err(|e| invalid("engine.request_timeout", e))?
            .filter(|d| !d.is_zero());
        Ok(Self {
            home,
            server: ServerConfig {
                listen,
                max_body_bytes,
                max_choices: raw.server.max_choices,
            },
            models: ModelsConfig {
                default: raw.models.default,
                keep_alive,
                max_loaded: raw.models.max_loaded as usize,
                memory_budget,
                pull_default_on_serve: raw.models.pull_default_on_serve,
                import_dirs,
                max_blob_bytes: raw.models.max_blob_bytes,
            },
            engine: EngineConfig {
                threads: raw.engine.threads as usize,
                context_length: raw.engine.context_length as usize,
                prefill_chunk: raw.engine.prefill_chunk as usize,
                max_queue: raw.engine.max_queue as usize,
                max_active: raw.engine.max_active as usize,
                request_timeout,
                prefix_cache_entries: raw.engine.prefix_cache_entries as usize,
            },
            pull: PullConfig {
                python: raw.pull.python,
                hub_endpoint: raw.pull.hub_endpoint,
            },
            database,
            log_level: raw.log.level,
            auth,
            sources,
        })
    }
}

/// A duration setting that must be finite and positive.
fn positive(key: &str, t: &Text) -> Result<Duration, ConfigError> {
    parse_duration(&t.to_string())
        .map_err(|e| invalid(key, e))?
        .filter(|d| !d.is_zero())
        .ok_or_else(|| invalid(key, "must be a positive duration such as 30s, 15m or 12h"))
}

fn validate_auth(raw: RawAuth, src: &Sources) -> Result<AuthConfig, ConfigError> {
    let mode = match raw.mode.as_str() {
        "auto" => AuthMode::Auto,
        "required" => AuthMode::Required,
        "open" => AuthMode::Open,
        other => {
            return Err(invalid(
                "auth.mode",
                format!("`{other}` is not a mode; use auto, required or open"),
            ));
        }
    };
    let signup = match raw.signup.as_str() {
        "closed" => Signup::Closed,
        "pending" => Signup::Pending,
        "open" => Signup::Open,
        other => {
            return Err(invalid(
                "auth.signup",
                format!("`{other}` is not a sign-up policy; use closed, pending or open"),
            ));
        }
    };
    let env = |k: &str| {
        src.env
            .iter()
            .find(|(n, v)| n == k && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let bootstrap_admin = match (env("HEARTH_ADMIN_USER"), env("HEARTH_ADMIN_PASSWORD")) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => None,
        _ => {
            return Err(invalid(
                "HEARTH_ADMIN_USER / HEARTH_ADMIN_PASSWORD",
                "set both (the first admin's name and password) or neither",
            ));
        }
    };
    let o = raw.oidc;
    let oidc = if o.issuer.is_empty() {
        None
    } else {
        if o.client_id.is_empty() || o.redirect_url.is_empty() {
            return Err(invalid(
                "auth.oidc",
                "with an issuer, set client_id and redirect_url too",
            ));
        }
        if !matches!(o.new_user_role.as_str(), "user" | "viewer" | "pending") {
            return Err(invalid(
                "auth.oidc.new_user_role",
                "use user, viewer or pending",
            ));
        }
        Some(OidcConfig {
            issuer: o.issuer,
            client_id: o.client_id,
            client_secret: o.client_secret,
            redirect_url: o.redirect_url,
            new_user_role: o.new_user_role,
        })
    };
    Ok(AuthConfig {
        mode,
        signup,
        session_idle: positive("auth.session_idle", &raw.session_idle)?,
        session_lifetime: positive("auth.session_lifetime", &raw.session_lifetime)?,
        mfa_required_for_admins: raw.mfa_required_for_admins,
        setup_token_lifetime: positive("auth.setup_token_lifetime", &raw.setup_token_lifetime)?,
        audit_retention: parse_duration(&raw.audit_retention.to_string())
            .map_err(|e| invalid("auth.audit_retention", e))?
            .filter(|d| !d.is_zero()),
        throttle_free_failures: raw.throttle_free_failures,
        throttle_window: positive("auth.throttle_window", &raw.throttle_window)?,
        throttle_base_delay: positive("auth.throttle_base_delay", &raw.throttle_base_delay)?,
        throttle_max_delay: positive("auth.throttle_max_delay", &raw.throttle_max_delay)?,
        bootstrap_admin,
        oidc,
    })
}

#[cfg(test)]
mod tests;
