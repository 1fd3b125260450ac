//! The hearth-store contract suite against SQLite (a fresh database file per test), and what
//! is SQLite's own: file permissions, reopening, bad paths.
#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::sync::Arc;

use hearth_store::Stores;
use hearth_store_sqlite::SqliteStore;

/// Each test's database: a fresh folder of its own under the build's temporary folder (so runs
/// leave nothing behind in /tmp and a failed test's database can be looked at).
async fn fresh(name: &str) -> Option<Stores> {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("hearth-store-sqlite")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let store = SqliteStore::open_path(&dir.join("hearth.db"))
        .await
        .unwrap();
    Some(Stores::from_one("sqlite", Arc::new(store)))
}

hearth_store::contract_tests!(fresh);

mod sqlite;
