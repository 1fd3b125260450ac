//! The composition root: builds every part from [`Config`] and owns the background tasks.
//! The `hearth` binary only parses its command line and calls [`commands`].
#![forbid(unsafe_code)]

pub mod accounts;
pub mod bench;
pub mod client;
pub mod commands;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hearth_catalog::{Catalog, CatalogConfig, CatalogError};
use hearth_config::{Config, ConfigError, MemoryBudget};
use hearth_llm::{LlmError, LocalConfig, LocalModels};
use hearth_server::{AppState, Metrics, ServerConfig};

/// Hearth's version, as `hearth version` and `/api/version` report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What can go wrong at the top; each variant carries its crate's message.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error(transparent)]
    Client(#[from] client::ClientError),
    #[error(
        "cannot open the database: {source} (setting `database.url`, or `hearth serve --database URL`)"
    )]
    Store {
        /// Without its password.
        url: String,
        source: hearth_store::StoreError,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Message(String),
}

/// Start logging to stderr with `filter` unless `RUST_LOG` says otherwise.
pub fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// The model store under the configured home.
pub fn open_catalog(config: &Config) -> Result<Catalog, AppError> {
    let mut c = CatalogConfig::new(&config.home);
    c.pip.python = config.pull.python.clone().into();
    c.hub.endpoint = config.pull.hub_endpoint.clone();
    Ok(Catalog::open(c)?)
}

/// The embedded-engine model service.
pub fn local_models(config: &Config, catalog: Catalog) -> LocalModels {
    let context_length = match config.engine.context_length {
        0 => 8192,
        n => n,
    };
    LocalModels::new(
        catalog,
        LocalConfig {
            engine: hearth_engine::EngineConfig {
                threads: config.engine.threads,
                context_length,
                prefill_chunk: config.engine.prefill_chunk,
                max_queue: config.engine.max_queue,
                max_active: config.engine.max_active,
                prefix_cache_entries: config.engine.prefix_cache_entries,
            },
            keep_alive: config.models.keep_alive,
            max_loaded: config.models.max_loaded,
            request_timeout: config.engine.request_timeout,
            memory_budget: match config.models.memory_budget {
                MemoryBudget::Unlimited => None,
                MemoryBudget::Bytes(b) => Some(b),
                MemoryBudget::Auto => total_memory().map(|t| t / 4 * 3),
            },
        },
    )
    .with_import_dirs(&config.models.import_dirs)
    .with_max_blob_bytes(config.models.max_blob_bytes)
}

/// A `kB` figure from a Linux `/proc` file (`MemTotal` of `/proc/meminfo`, `VmHWM` of
/// `/proc/self/status`), in bytes, if known.
pub(crate) fn proc_kb(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// This machine's memory in bytes, if known.
fn total_memory() -> Option<u64> {
    proc_kb("/proc/meminfo", "MemTotal")
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
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
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Serve the HTTP API on `listener` until `shutdown` resolves; then stop accepting, let
/// in-flight responses finish, and stop the background tasks. Opens (and migrates) the
/// database `config.database` names first.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    let stores = store::open_store(&config.database).await?;
    run_with(config, stores, listener, shutdown).await
}

/// The accounts database `config` names, opened and migrated.
pub async fn open_database(config: &Config) -> Result<hearth_store::Stores, AppError> {
    store::open_store(&config.database).await
}

/// [`run`] with the database already open: starts the accounts service (first-start bootstrap
/// logged) and serves.
pub async fn run_with(
    config: Config,
    stores: hearth_store::Stores,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    tracing::info!(
        backend = stores.backend,
        url = %config.database.redacted_url(),
        "database open"
    );
    let (accounts, boot) = accounts::start(&config, stores).await?;
    let addr = listener.local_addr()?;
    for line in accounts::describe(&config, addr, &boot) {
        tracing::info!("{line}");
    }
    run_with_accounts(config, accounts, listener, shutdown).await
}

/// [`run`] with the accounts service already started (`hearth serve` prints its bootstrap).
pub async fn run_with_accounts(
    config: Config,
    accounts: Arc<hearth_accounts::Accounts>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    let addr = listener.local_addr()?;
    let auth = accounts::auth_settings(&config, accounts.clone(), addr);
    let catalog = open_catalog(&config)?;
    let models = Arc::new(local_models(&config, catalog));
    let state = AppState {
        models: models.clone(),
        metrics: Arc::new(Metrics::default()),
        config: ServerConfig {
            max_body_bytes: config.server.max_body_bytes,
            version: VERSION.to_owned(),
            system_fingerprint: None,
            max_choices: config.server.max_choices,
        },
        auth,
    };
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let reaper = {
        let models = models.clone();
        let mut stop = stop_tx.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => models.unload_idle(),
                    _ = stop.changed() => break,
                }
            }
        })
    };
    // Hourly: API-key use summaries into the audit log, audit retention, expired sessions.
    let housekeeping = {
        let mut stop = stop_tx.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = accounts.audit_key_use_summary().await {
                            tracing::warn!(error = %e, "API key use summary failed");
                        }
                        if let Err(e) = accounts.apply_retention().await {
                            tracing::warn!(error = %e, "audit retention failed");
                        }
                    }
                    _ = stop.changed() => break,
                }
            }
            // A last summary, so uses since the previous one are not lost at shutdown.
            let _ = accounts.audit_key_use_summary().await;
        })
    };
    let app = hearth_server::router(state);
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
    let _ = stop_rx.changed().await;
    let _ = reaper.await;
    let _ = housekeeping.await;
    served.map_err(AppError::Io)
}

/// A server running on its own thread and runtime (benchmarks, tests); stopped on drop.
pub struct Background {
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), AppError>>>,
}

impl Background {
    /// Serve `config` on 127.0.0.1 at a free port.
    pub fn start(config: Config) -> Result<Self, AppError> {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let _ = addr_tx.send(listener.local_addr()?);
                run(config, listener, async move {
                    let _ = stop_rx.await;
                })
                .await
            })
        });
        match addr_rx.recv() {
            Ok(addr) => Ok(Self {
                addr,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Err(_) => Err(thread
                .join()
                .map_err(|_| AppError::Message("the server thread panicked".into()))?
                .err()
                .unwrap_or_else(|| AppError::Message("the server did not start".into()))),
        }
    }

    /// Stop serving and wait for `run` to return its result.
    pub fn shutdown(mut self) -> Result<(), AppError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), AppError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| AppError::Message("the server thread panicked".into()))?,
            None => Ok(()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}
