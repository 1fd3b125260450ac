//! The hearth-store contract suite against PostgreSQL, when `HEARTH_TEST_PG_URL` names a
//! database this user may create schemas in (`.ci/run` sets one up). Each test gets a fresh
//! schema of its own, so the tests run in parallel; without the variable each says it skips.
#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::sync::Arc;

use hearth_store::Stores;
use hearth_store_postgres::PostgresStore;

fn url() -> Option<String> {
    std::env::var("HEARTH_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

async fn fresh(name: &str) -> Option<Stores> {
    let Some(url) = url() else {
        eprintln!("HEARTH_TEST_PG_URL is not set: skipping the PostgreSQL contract test {name}");
        return None;
    };
    // One schema per test, by name: a rerun starts from an empty one, and leftovers stay bounded.
    let schema = format!("t_{name}");
    drop_schema(&url, &schema).await;
    let store = PostgresStore::connect(&url, Some(&schema)).await.unwrap();
    Some(Stores::from_one("postgres", Arc::new(store)))
}

/// Drop the schema a previous run left.
async fn drop_schema(url: &str, schema: &str) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

hearth_store::contract_tests!(fresh);

mod postgres;
