//! Opening the database `database.url` names: the one place that knows both backends, so
//! hearth-store itself stays free of them.

use hearth_config::DatabaseConfig;
use hearth_store::Stores;

use crate::AppError;

/// Open (creating and migrating as needed) the configured database.
pub async fn open_store(config: &DatabaseConfig) -> Result<Stores, AppError> {
    let url = config.url.as_str();
    let opened = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        hearth_store_postgres::open(url).await
    } else {
        hearth_store_sqlite::open(url).await
    };
    opened.map_err(|source| AppError::Store {
        url: config.redacted_url(),
        source,
    })
}
