//! What only the PostgreSQL backend does.

use hearth_store::StoreError;
use hearth_store_postgres::{PostgresStore, open};

#[tokio::test]
async fn bad_urls_are_named_and_classified() {
    let err = open("mysql://127.0.0.1/nope").await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("postgres://"), "{err}");
    // Nothing listens on port 1 of loopback: unavailable, and the password is not repeated.
    let err = open("postgres://u:hunter2@127.0.0.1:1/db")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    let err = PostgresStore::connect("postgres://u@127.0.0.1:1/db", Some("Bad; DROP"))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, StoreError::Invalid { what: "schema", .. }),
        "{err:?}"
    );
}
