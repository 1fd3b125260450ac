//! hearth-store on PostgreSQL: one connection pool; the atomic operations take row locks
//! (`FOR UPDATE` on the active admins, on the audit chain's head), so they hold across
//! processes and machines. Migrations (PostgreSQL dialect, same schema as SQLite's) are
//! compiled in.
//!
//! `store.rs` is hearth-store-sqlite's file, compiled here too; what differs between
//! the two backends is at the top of each crate's `lib.rs`.
#![forbid(unsafe_code)]

// One body of queries for both backends (`$N` placeholders work in both): the file lives in
// hearth-store-sqlite and is compiled here against this crate's pool type and statements.
#[path = "../../hearth-store-sqlite/src/store.rs"]
mod store;

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hearth_store::{StoreError, Stores};
use sqlx::Connection as _;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};

type Db = sqlx::Postgres;
type Pool = sqlx::PgPool;
type Row = sqlx::postgres::PgRow;
type Store = PostgresStore;

const CONNECTIONS: u32 = 8;

/// The migrations, in order: (version, description, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "accounts",
    include_str!("../migrations/0001_accounts.sql"),
)];

/// Statements that differ between the backends (see `store.rs`).
mod dialect {
    /// Lock the active admins' rows for the rest of the transaction. A concurrent change to
    /// an admin waits, then sees the committed result (READ COMMITTED re-checks the WHERE).
    pub const ACTIVE_ADMINS_LOCKED: &str =
        "SELECT id FROM users WHERE role = 'admin' AND NOT disabled ORDER BY id FOR UPDATE";
    /// The chain's head, locked for the transaction: appends and retention take turns.
    pub const AUDIT_HEAD_LOCKED: &str =
        "SELECT last_seq, last_hash FROM audit_head WHERE id = 1 FOR UPDATE";
}

/// A PostgreSQL database implementing every store trait.
pub struct PostgresStore {
    pool: Pool,
}

impl PostgresStore {
    fn w(&self) -> &Pool {
        &self.pool
    }

    fn r(&self) -> &Pool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
        self.pool
            .begin()
            .await
            .map_err(|e| store::db_error(e, "transaction"))
    }

    /// Connect to `url` (`postgres://user:password@host:port/database`) and bring the schema
    /// up to date. With `schema`, every table lives in that schema (created when missing).
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let invalid = |why: String| StoreError::Invalid {
            what: "database URL",
            why: format!("{why} (expected postgres://USER:PASSWORD@HOST:PORT/DATABASE)"),
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid(format!(
                "`{}` is not a PostgreSQL URL",
                redacted(url)
            )));
        }
        let mut options = PgConnectOptions::from_str(url).map_err(|e| invalid(e.to_string()))?;
        if let Some(schema) = schema
            && (schema.is_empty()
                || !schema
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        {
            return Err(StoreError::Invalid {
                what: "schema",
                why: format!("`{schema}`: use lowercase letters, digits and _"),
            });
        }
        // One connection first: a wrong address or password fails at once, not after the
        // pool's retries.
        let mut first = PgConnection::connect_with(&options)
            .await
            .map_err(|e| unavailable(url, &e))?;
        if let Some(schema) = schema {
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .execute(&mut first)
                .await
                .map_err(|e| store::db_error(e, "schema"))?;
            options = options.options([("search_path", schema)]);
        }
        let _ = first.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|e| unavailable(url, &e))?;
        migrate(&pool).await?;
        Ok(Self { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The URL without its password, for messages.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:…{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn unavailable(url: &str, e: &sqlx::Error) -> StoreError {
    StoreError::Unavailable(format!(
        "cannot connect to {}: {e} (is PostgreSQL running there, and are the user and password right?)",
        redacted(url)
    ))
}

/// Open the database a `postgres://` (or `postgresql://`) URL names.
pub async fn open(url: &str) -> Result<Stores, StoreError> {
    let store = PostgresStore::connect(url, None).await?;
    Ok(Stores::from_one("postgres", Arc::new(store)))
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

#[cfg(test)]
mod tests;
