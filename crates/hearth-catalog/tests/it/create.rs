//! Copy, blob upload and create: the operations behind Ollama's `/api/copy`, `/api/blobs` and
//! `/api/create`.

use std::fs;

use hearth_catalog::{CatalogError, CreateFrom, ModelExtras, ModelSource};

use crate::support::{Env, Pip, gguf, sha256_hex};

/// Manifests and blobs by file name, to show a failure changed nothing.
fn store_files(env: &Env) -> Vec<(String, Vec<u8>)> {
    let root = env.home.join("models");
    let mut out = Vec::new();
    for sub in ["manifests", "blobs"] {
        for e in fs::read_dir(root.join(sub)).unwrap() {
            let p = e.unwrap().path();
            out.push((
                format!("{sub}/{}", p.file_name().unwrap().to_string_lossy()),
                fs::read(&p).unwrap(),
            ));
        }
    }
    out.sort();
    out
}

fn extras(template: &str, system: &str) -> ModelExtras {
    let mut parameters = serde_json::Map::new();
    parameters.insert("temperature".to_owned(), 0.25.into());
    ModelExtras {
        template: Some(template.to_owned()),
        system: Some(system.to_owned()),
        license: None,
        parameters,
    }
}

#[test]
fn copy_shares_the_blob_and_refuses_bad_names() {
    let env = Env::new(Pip::Scripted);
    let cat = env.catalog();
    let orig = cat.pull("tiny:q1", &|_| {}).unwrap();
    let copy = cat.copy("tiny:q1", "mine").unwrap();
    assert_eq!(copy.name, "mine:latest");
    assert_eq!(copy.path, orig.path, "same blob file");
    assert_eq!(copy.digest, orig.digest);
    let blobs = fs::read_dir(cat.root().join("blobs")).unwrap().count();
    assert_eq!(blobs, 1, "no second copy of the weights");
    // Removing the original keeps the blob the copy uses.
    cat.remove("tiny:q1").unwrap();
    assert!(cat.path_of("mine").unwrap().is_file());

    let before = store_files(&env);
    for (src, dst, want_not_found) in [
        ("nothere:1", "x", true),
        ("mine", "../../etc/passwd", false),
        ("mine", "hf.co/a/b:c.gguf", false),
        ("mine", "", false),
    ] {
        let err = cat.copy(src, dst).unwrap_err();
        assert_eq!(
            matches!(err, CatalogError::NotFound { .. }),
            want_not_found,
            "{src} -> {dst}: {err}"
        );
        assert_eq!(
            store_files(&env),
            before,
            "{src} -> {dst} changed the store"
        );
    }
}

#[test]
fn blobs_are_checked_against_their_digest_and_size_limit() {
    let env = Env::new(Pip::Scripted);
    let cat = env.catalog();
    let bytes = gguf(1000);
    let digest = format!("sha256:{}", sha256_hex(&bytes));
    assert!(!cat.has_blob(&digest).unwrap());
    // Wrong content for the digest: refused, nothing kept.
    let wrong = format!("sha256:{}", sha256_hex(b"other"));
    let err = cat.put_blob(&wrong, &mut &bytes[..], 1 << 20).unwrap_err();
    assert!(matches!(err, CatalogError::Checksum { .. }), "{err}");
    // Over the limit: refused.
    let err = cat.put_blob(&digest, &mut &bytes[..], 100).unwrap_err();
    assert!(matches!(err, CatalogError::Invalid { .. }), "{err}");
    assert!(!cat.has_blob(&digest).unwrap());
    assert_eq!(store_files(&env), Vec::new());
    let tmp = fs::read_dir(cat.root().join("tmp")).unwrap().count();
    assert_eq!(tmp, 0, "no work left behind");
    // Malformed digests are refused before anything is read.
    for bad in [
        "sha256:ABC",
        &digest.to_uppercase(),
        &digest.replace("sha256:", "sha256-"),
        &format!("{digest}0"),
        "sha256:../../../../etc/passwd",
    ] {
        assert!(cat.has_blob(bad).is_err(), "{bad}");
        assert!(
            cat.put_blob(bad, &mut &bytes[..], 1 << 20).is_err(),
            "{bad}"
        );
    }
    assert_eq!(
        cat.put_blob(&digest, &mut &bytes[..], 1 << 20).unwrap(),
        bytes.len() as u64
    );
    assert!(cat.has_blob(&digest).unwrap());
    // A blob is not a model until one is created from it.
    assert!(cat.list().unwrap().is_empty());
}

#[test]
fn create_from_blob_and_from_model() {
    let env = Env::new(Pip::Scripted);
    let cat = env.catalog();
    let bytes = gguf(1000);
    let digest = format!("sha256:{}", sha256_hex(&bytes));
    cat.put_blob(&digest, &mut &bytes[..], 1 << 20).unwrap();
    let made = cat
        .create(
            "up:1",
            CreateFrom::Blob(digest.clone()),
            ModelExtras::default(),
        )
        .unwrap();
    assert_eq!(made.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(made.size, bytes.len() as u64);
    assert_eq!(fs::read(&made.path).unwrap(), bytes);
    assert!(matches!(made.source, ModelSource::Upload { .. }));

    let x = extras("{{ .Prompt }}", "Be brief.");
    let derived = cat
        .create("brief", CreateFrom::Model("up:1".to_owned()), x.clone())
        .unwrap();
    assert_eq!(derived.name, "brief:latest");
    assert_eq!(derived.path, made.path, "shares the weights");
    assert_eq!(cat.get("brief").unwrap().extras, x);
    // A model derived from the derived one keeps what it does not override.
    let over = ModelExtras {
        system: Some("Be verbose.".to_owned()),
        ..ModelExtras::default()
    };
    let d2 = cat
        .create("verbose", CreateFrom::Model("brief".to_owned()), over)
        .unwrap();
    assert_eq!(d2.extras.template.as_deref(), Some("{{ .Prompt }}"));
    assert_eq!(d2.extras.system.as_deref(), Some("Be verbose."));
    assert_eq!(d2.extras.parameters.get("temperature"), Some(&0.25.into()));
}

#[test]
fn failed_creates_leave_the_store_unchanged() {
    let env = Env::new(Pip::Scripted);
    let cat = env.catalog();
    let not_gguf = b"definitely not a gguf file".to_vec();
    let bad_digest = format!("sha256:{}", sha256_hex(&not_gguf));
    cat.put_blob(&bad_digest, &mut &not_gguf[..], 1 << 20)
        .unwrap();
    cat.pull("tiny:q1", &|_| {}).unwrap();
    let before = store_files(&env);
    let huge = ModelExtras {
        system: Some("x".repeat(hearth_catalog::MAX_EXTRAS_BYTES + 1)),
        ..ModelExtras::default()
    };
    let cases: Vec<(&str, CreateFrom, ModelExtras)> = vec![
        (
            "a",
            CreateFrom::Blob(bad_digest.clone()),
            ModelExtras::default(),
        ),
        (
            "a",
            CreateFrom::Blob(format!("sha256:{}", "0".repeat(64))),
            ModelExtras::default(),
        ),
        (
            "a",
            CreateFrom::Blob("sha256:nope".to_owned()),
            ModelExtras::default(),
        ),
        (
            "a",
            CreateFrom::Model("missing:1".to_owned()),
            ModelExtras::default(),
        ),
        ("a", CreateFrom::Model("tiny:q1".to_owned()), huge),
        (
            "../x",
            CreateFrom::Model("tiny:q1".to_owned()),
            ModelExtras::default(),
        ),
        (
            "hf.co/o/r:f.gguf",
            CreateFrom::Model("tiny:q1".to_owned()),
            ModelExtras::default(),
        ),
        (
            "a",
            CreateFrom::File(env.home.join("missing.gguf")),
            ModelExtras::default(),
        ),
    ];
    for (name, from, x) in cases {
        let what = format!("{name} from {from:?}");
        assert!(cat.create(name, from, x).is_err(), "{what}");
        assert_eq!(store_files(&env), before, "{what} changed the store");
    }
}
