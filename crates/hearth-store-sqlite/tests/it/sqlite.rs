//! What only the SQLite backend does.

use std::path::{Path, PathBuf};

use hearth_store::{NewUser, Role, StoreError, Uuid};
use hearth_store_sqlite::{SqliteStore, open, path_of};

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("hearth-store-sqlite-own")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn urls_name_files() {
    let check = |url: &str, expect: Option<&str>| {
        assert_eq!(path_of(url).ok(), expect.map(PathBuf::from), "{url}");
    };
    check(
        "sqlite:///var/lib/hearth/hearth.db",
        Some("/var/lib/hearth/hearth.db"),
    );
    check("sqlite://rel/h.db", Some("rel/h.db"));
    check("sqlite:h.db", Some("h.db"));
    check("sqlite:h.db?mode=rwc", Some("h.db"));
    check("/plain/path.db", Some("/plain/path.db"));
    check("sqlite::memory:", None);
    check("sqlite://", None);
    check("", None);
}

#[cfg(unix)]
#[tokio::test]
async fn the_file_is_private_and_reopens_with_its_data() {
    use std::os::unix::fs::PermissionsExt;
    let d = dir("reopen");
    let path = d.join("sub/hearth.db");
    let id = Uuid::now_v7();
    {
        let stores = open(&format!("sqlite://{}", path.display())).await.unwrap();
        assert_eq!(stores.backend, "sqlite");
        let user = NewUser {
            id,
            username: "zoe".into(),
            display_name: "Zoe".into(),
            email: None,
            role: Role::Admin,
            password_hash: None,
            created_at: std::time::SystemTime::UNIX_EPOCH,
        };
        stores.users.create_user(&user).await.unwrap();
    }
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    // Migrations are not run twice; the data is there.
    let store = SqliteStore::open_path(&path).await.unwrap();
    let stores = hearth_store::Stores::from_one("sqlite", std::sync::Arc::new(store));
    let zoe = stores.users.user_by_username("ZOE").await.unwrap().unwrap();
    assert_eq!(zoe.id, id);
    for f in ["hearth.db-wal", "hearth.db-shm"] {
        if let Ok(m) = std::fs::metadata(d.join("sub").join(f)) {
            assert_eq!(m.permissions().mode() & 0o077, 0, "{f} is private too");
        }
    }
}

#[tokio::test]
async fn an_unusable_path_is_unavailable_and_named() {
    let d = dir("unusable");
    std::fs::create_dir_all(&d).unwrap();
    // A file where the folder should be.
    std::fs::write(d.join("file"), b"x").unwrap();
    let bad = d.join("file/hearth.db");
    let err = open(bad.to_str().unwrap()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("file/hearth.db"), "{err}");
    // Not a database at all.
    std::fs::write(d.join("junk.db"), vec![0x55u8; 4096]).unwrap();
    let err = open(d.join("junk.db").to_str().unwrap()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable(_) | StoreError::Internal(_)),
        "{err:?}"
    );
}
