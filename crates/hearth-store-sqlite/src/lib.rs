//! hearth-store on SQLite: one file (created 0600), WAL, foreign keys on, a busy timeout, one
//! writer connection (writes are serialised in this process; `BEGIN IMMEDIATE` orders them
//! against other processes) and a pool of readers. Migrations are compiled in.
//!
//! The SQL in `store.rs` is shared in shape with `hearth-store-postgres` (`$N` placeholders work
//! in both); what differs between the two is at the top of each crate's `lib.rs`.
#![forbid(unsafe_code)]

mod store;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hearth_store::{StoreError, Stores};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

type Db = sqlx::Sqlite;
type Pool = sqlx::SqlitePool;
type Row = sqlx::sqlite::SqliteRow;
type Store = SqliteStore;

/// Readers besides the one writer.
const READERS: u32 = 4;

/// The migrations, in order: (version, description, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "accounts",
    include_str!("../migrations/0001_accounts.sql"),
)];

/// Statements that differ between the backends (see `store.rs`).
mod dialect {
    /// Lock the active admins' rows for the rest of the transaction (SQLite: the writer
    /// connection and `BEGIN IMMEDIATE` already serialise; this only reads).
    pub const ACTIVE_ADMINS_LOCKED: &str =
        "SELECT id FROM users WHERE role = 'admin' AND NOT disabled";
    /// The chain's head, locked for the transaction.
    pub const AUDIT_HEAD_LOCKED: &str = "SELECT last_seq, last_hash FROM audit_head WHERE id = 1";
}

/// An opened SQLite database implementing every store trait.
pub struct SqliteStore {
    write: Pool,
    read: Pool,
}

impl SqliteStore {
    fn w(&self) -> &Pool {
        &self.write
    }

    fn r(&self) -> &Pool {
        &self.read
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
        self.write
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| store::db_error(e, "transaction"))
    }

    /// Open (creating with mode 0600 when missing) the database file at `path` and bring its
    /// schema up to date.
    pub async fn open_path(path: &Path) -> Result<Self, StoreError> {
        create_private(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let unavailable = |e: sqlx::Error| {
            StoreError::Unavailable(format!(
                "cannot open SQLite database {}: {e}",
                path.display()
            ))
        };
        let write = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(unavailable)?;
        migrate(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        Ok(Self { write, read })
    }

    /// Close both pools, finishing the WAL.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// Open the database a `sqlite:` URL (`sqlite:///abs/path.db`, `sqlite://rel/path.db`,
/// `sqlite:path.db`) or a plain file path names.
pub async fn open(url: &str) -> Result<Stores, StoreError> {
    let path = path_of(url)?;
    let store = SqliteStore::open_path(&path).await?;
    Ok(Stores::from_one("sqlite", Arc::new(store)))
}

/// The file a `sqlite:` URL or plain path names.
pub fn path_of(url: &str) -> Result<PathBuf, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let rest = rest.split('?').next().unwrap_or(rest);
    if rest.is_empty() || rest.starts_with(":memory:") {
        return Err(StoreError::Invalid {
            what: "database URL",
            why: format!("`{url}` names no file (e.g. sqlite:///var/lib/hearth/hearth.db)"),
        });
    }
    Ok(PathBuf::from(rest))
}

/// Create `path` readable and writable by its owner only, unless it exists; create its folder.
fn create_private(path: &Path) -> Result<(), StoreError> {
    let fail = |e: std::io::Error| {
        StoreError::Unavailable(format!(
            "cannot create database file {}: {e}",
            path.display()
        ))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    match o.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(fail(e)),
    }
}

/// The compiled-in migrations as sqlx's migration source.
#[derive(Debug)]
struct Embedded;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let migrator = Migrator::new(Embedded)
        .await
        .map_err(|e| StoreError::Internal(format!("migrations: {e}")))?;
    migrator.run(pool).await.map_err(|e| {
        StoreError::Internal(format!(
            "cannot bring the database schema up to date: {e} (is this database from a newer Hearth?)"
        ))
    })
}
