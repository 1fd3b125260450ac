//! Model management over real HTTP in front of the real model service and a real catalog in a
//! temporary folder: pull, delete, copy, blobs, create. Expected lines follow Ollama's API
//! documentation (`docs/api.md`: "Pull a Model", "Create a Model", "Push a Blob").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hearth_catalog::{Catalog, CatalogConfig, ImportMode};
use hearth_llm::{LocalConfig, LocalModels};
use hearth_server::{AppState, ServerConfig, router};
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio::net::TcpListener;

use crate::http::{Reply, send};

struct Local {
    addr: SocketAddr,
    catalog: Catalog,
    /// The directory `create` may copy GGUF files from.
    imports: PathBuf,
    _home: tempfile::TempDir,
}

async fn serve_local() -> Local {
    let home = tempfile::tempdir().unwrap();
    let imports = home.path().join("imports");
    std::fs::create_dir(&imports).unwrap();
    let catalog = Catalog::open(CatalogConfig::new(home.path())).unwrap();
    let config = LocalConfig {
        engine: hearth_engine::EngineConfig {
            threads: 1,
            context_length: 512,
            ..hearth_engine::EngineConfig::default()
        },
        keep_alive: None,
        max_loaded: 2,
        request_timeout: None,
        memory_budget: None,
    };
    let models = LocalModels::new(catalog.clone(), config)
        .with_import_dirs(std::slice::from_ref(&imports))
        .with_max_blob_bytes(1 << 30);
    let state = AppState::new(Arc::new(models), ServerConfig::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    Local {
        addr,
        catalog,
        imports,
        _home: home,
    }
}

fn sha256_of(bytes: &[u8]) -> String {
    let d = sha2::Sha256::digest(bytes);
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

async fn call(addr: SocketAddr, method: &str, path: &str, body: Value) -> Reply {
    send(addr, method, path, Some(body.to_string().as_bytes())).await
}

fn lines(r: &Reply) -> Vec<Value> {
    r.body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn json_body(r: &Reply) -> Value {
    serde_json::from_str(&r.body).unwrap_or(Value::Null)
}

fn names(catalog: &Catalog) -> Vec<String> {
    catalog
        .list()
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect()
}

fn blob_count(catalog: &Catalog) -> usize {
    std::fs::read_dir(catalog.root().join("blobs"))
        .unwrap()
        .count()
}

/// Manifests and blob names, to show a failure changed nothing.
fn store_state(catalog: &Catalog) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["manifests", "blobs"] {
        for e in std::fs::read_dir(catalog.root().join(sub)).unwrap() {
            let p = e.unwrap().path();
            let body = if sub == "manifests" {
                std::fs::read_to_string(&p).unwrap()
            } else {
                String::new()
            };
            out.push(format!("{}{body}", p.display()));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn pull_of_a_name_not_in_the_registry_streams_the_error_object() {
    let s = serve_local().await;
    let r = call(s.addr, "POST", "/api/pull", json!({"model": "nosuch:1"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let got = lines(&r);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], json!({"status": "pulling manifest"}));
    let error = got[1]["error"].as_str().unwrap();
    assert!(
        error.contains("nosuch:1") && error.contains("registry"),
        "{error}"
    );
    assert_eq!(got[1].as_object().unwrap().len(), 1, "only `error`");

    // Not streamed: the error with its status, as Ollama answers a failed pull.
    let r = call(
        s.addr,
        "POST",
        "/api/pull",
        json!({"name": "nosuch:1", "stream": false}),
    )
    .await;
    assert_eq!(r.status, 404);
    assert!(
        json_body(&r)["error"]
            .as_str()
            .unwrap()
            .contains("nosuch:1")
    );

    // A name the catalog refuses is a bad request before anything streams.
    for bad in ["../../etc/passwd", "/etc/passwd", "a b"] {
        let r = call(s.addr, "POST", "/api/pull", json!({"model": bad})).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(json_body(&r)["error"].is_string(), "{bad}");
    }
    let r = call(s.addr, "POST", "/api/pull", json!({})).await;
    assert_eq!(r.status, 400);
    assert!(names(&s.catalog).is_empty());
}

#[tokio::test]
async fn pull_of_an_installed_model_reports_every_step() {
    let Some(model) = hearth_testkit::test_model() else {
        return;
    };
    let s = serve_local().await;
    let bytes = std::fs::read(&model).unwrap();
    let digest = sha256_of(&bytes);
    s.catalog
        .import(&model, "smollm2:135m", ImportMode::Copy)
        .unwrap();
    let r = call(
        s.addr,
        "POST",
        "/api/pull",
        json!({"model": "smollm2:135m"}),
    )
    .await;
    assert_eq!(r.status, 200);
    let size = bytes.len() as u64;
    let expect = vec![
        json!({"status": "pulling manifest"}),
        json!({"status": format!("pulling {}", &digest[7..19]), "digest": digest,
               "total": size, "completed": size}),
        json!({"status": "verifying sha256 digest"}),
        json!({"status": "writing manifest"}),
        json!({"status": "success"}),
    ];
    assert_eq!(lines(&r), expect);
    let r = call(
        s.addr,
        "POST",
        "/api/pull",
        json!({"model": "smollm2:135m", "stream": false}),
    )
    .await;
    assert_eq!(
        (r.status, json_body(&r)),
        (200, json!({"status": "success"}))
    );
}

#[tokio::test]
async fn copy_shares_the_blob_and_delete_unloads_and_removes() {
    let Some(model) = hearth_testkit::test_model() else {
        return;
    };
    let s = serve_local().await;
    s.catalog
        .import(&model, "smollm2:135m", ImportMode::Copy)
        .unwrap();
    let copy = json!({"source": "smollm2:135m", "destination": "mine:v1"});
    let r = call(s.addr, "POST", "/api/copy", copy).await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert_eq!(names(&s.catalog), ["mine:v1", "smollm2:135m"]);
    assert_eq!(blob_count(&s.catalog), 1, "no second copy of the weights");
    let tags = json_body(&send(s.addr, "GET", "/api/tags", None).await);
    let listed: Vec<&str> = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["mine:v1", "smollm2:135m"]);
    assert_eq!(tags["models"][0]["digest"], tags["models"][1]["digest"]);

    // Failures change nothing: a missing source is 404, a bad destination 400.
    let before = store_state(&s.catalog);
    for (body, status) in [
        (json!({"source": "nosuch:1", "destination": "x"}), 404),
        (
            json!({"source": "mine:v1", "destination": "../../etc/passwd"}),
            400,
        ),
        (json!({"source": "mine:v1", "destination": "/tmp/x"}), 400),
        (json!({"source": "mine:v1", "destination": ""}), 400),
    ] {
        let r = call(s.addr, "POST", "/api/copy", body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(json_body(&r)["error"].is_string(), "{body}");
        assert_eq!(store_state(&s.catalog), before, "{body}");
    }

    // Load the copy, then delete it: it is unloaded and gone, the original keeps the blob.
    let r = call(s.addr, "POST", "/api/generate", json!({"model": "mine:v1"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ps = json_body(&send(s.addr, "GET", "/api/ps", None).await);
    assert_eq!(ps["models"][0]["name"], "mine:v1");
    let r = call(s.addr, "DELETE", "/api/delete", json!({"model": "mine:v1"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ps = json_body(&send(s.addr, "GET", "/api/ps", None).await);
    assert_eq!(ps["models"], json!([]));
    assert_eq!(names(&s.catalog), ["smollm2:135m"]);
    assert_eq!(blob_count(&s.catalog), 1);

    let r = call(s.addr, "DELETE", "/api/delete", json!({"model": "mine:v1"})).await;
    assert_eq!(r.status, 404);
    let error = json_body(&r)["error"].as_str().unwrap().to_owned();
    assert!(error.contains("mine:v1"), "{error}");
    let r = call(
        s.addr,
        "DELETE",
        "/api/delete",
        json!({"name": "smollm2:135m"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(names(&s.catalog).is_empty());
    assert_eq!(
        blob_count(&s.catalog),
        0,
        "the last user of the blob is gone"
    );
}

#[tokio::test]
async fn blobs_are_checked_and_bad_digests_refused() {
    let s = serve_local().await;
    let data = b"not a model, just bytes".to_vec();
    let digest = sha256_of(&data);
    let path = format!("/api/blobs/{digest}");
    assert_eq!(send(s.addr, "HEAD", &path, None).await.status, 404);
    // Content that does not hash to the digest is refused and not kept.
    let other = format!("/api/blobs/{}", sha256_of(b"other"));
    let r = send(s.addr, "POST", &other, Some(&data)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        json_body(&r)["error"]
            .as_str()
            .unwrap()
            .contains("checksum")
    );
    for bad in [
        "sha256:abc".to_owned(),
        digest.to_uppercase(),
        digest.replace(':', "-"),
        format!("{digest}00"),
        "sha256:..%2F..%2Fetc%2Fpasswd".to_owned(),
    ] {
        let p = format!("/api/blobs/{bad}");
        assert_eq!(send(s.addr, "HEAD", &p, None).await.status, 400, "{bad}");
        let r = send(s.addr, "POST", &p, Some(&data)).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    assert_eq!(blob_count(&s.catalog), 0);
    let r = send(s.addr, "POST", &path, Some(&data)).await;
    assert_eq!((r.status, r.body.as_str()), (201, ""));
    assert_eq!(send(s.addr, "HEAD", &path, None).await.status, 200);
    // Not a GGUF: creating a model from it fails and leaves the store as it was.
    let before = store_state(&s.catalog);
    let body = json!({"model": "bad", "files": {"bad.gguf": digest}});
    let r = call(s.addr, "POST", "/api/create", body).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(json_body(&r)["error"].as_str().unwrap().contains("GGUF"));
    assert_eq!(store_state(&s.catalog), before);
}

#[tokio::test]
async fn create_from_an_uploaded_gguf_and_from_a_model() {
    let Some(model) = hearth_testkit::test_model() else {
        return;
    };
    let s = serve_local().await;
    let bytes = std::fs::read(&model).unwrap();
    let digest = sha256_of(&bytes);
    let r = send(
        s.addr,
        "POST",
        &format!("/api/blobs/{digest}"),
        Some(&bytes),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let body = json!({
        "model": "up:1",
        "files": {"smol.gguf": digest},
        "template": "{{ .Prompt }}",
        "system": "Answer in one word.",
        "parameters": {"temperature": 0.5, "stop": ["<a>", "<b>"]},
        "license": ["L1", "L2"],
    });
    let r = call(s.addr, "POST", "/api/create", body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        lines(&r),
        vec![
            json!({"status": "parsing GGUF"}),
            json!({"status": format!("using existing layer {digest}")}),
            json!({"status": "writing manifest"}),
            json!({"status": "success"}),
        ]
    );
    assert_eq!(blob_count(&s.catalog), 1, "the upload is the model's blob");
    let show = json_body(&call(s.addr, "POST", "/api/show", json!({"model": "up:1"})).await);
    assert_eq!(show["template"], "{{ .Prompt }}");
    assert_eq!(show["system"], "Answer in one word.");
    assert_eq!(show["license"], "L1\n\nL2");
    let params: Vec<&str> = show["parameters"].as_str().unwrap().lines().collect();
    let want = [
        format!("{:<30} \"<a>\"", "stop"),
        format!("{:<30} \"<b>\"", "stop"),
        format!("{:<30} 0.5", "temperature"),
    ];
    assert_eq!(params, want);
    assert_eq!(show["details"]["family"], "llama");

    // Derived from it: shares the weights, overrides the system prompt, keeps the rest.
    let body = json!({"model": "terse", "from": "up:1", "system": "Be terse.", "stream": false});
    let r = call(s.addr, "POST", "/api/create", body).await;
    assert_eq!(
        (r.status, json_body(&r)),
        (200, json!({"status": "success"}))
    );
    let show = json_body(&call(s.addr, "POST", "/api/show", json!({"model": "terse"})).await);
    assert_eq!(show["system"], "Be terse.");
    assert_eq!(show["template"], "{{ .Prompt }}");
    assert_eq!(blob_count(&s.catalog), 1);
    assert_eq!(names(&s.catalog), ["terse:latest", "up:1"]);

    // Refusals change nothing.
    let before = store_state(&s.catalog);
    for (body, status) in [
        (json!({"model": "x", "from": "nosuch:1"}), 404),
        (json!({"model": "x"}), 400),
        (
            json!({"model": "x", "from": "up:1", "quantize": "q4_K_M"}),
            400,
        ),
        (
            json!({"model": "x", "files": {"a.safetensors": digest}}),
            400,
        ),
        (
            json!({"model": "x", "files": {"a.gguf": sha256_of(b"none")}}),
            404,
        ),
        (json!({"model": "../x", "from": "up:1"}), 400),
    ] {
        let r = call(s.addr, "POST", "/api/create", body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert_eq!(store_state(&s.catalog), before, "{body}");
    }
}

/// Every path that is not a GGUF file inside an import directory gets the very same answer,
/// whether or not it exists.
#[tokio::test]
async fn create_from_a_path_only_inside_import_dirs() {
    let s = serve_local().await;
    let outside = s.imports.parent().unwrap().join("outside.gguf");
    std::fs::write(&outside, b"GGUF").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, s.imports.join("link.gguf")).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("/etc", s.imports.join("etc")).unwrap();
    let imports = s.imports.display().to_string();
    let attempts = [
        outside.display().to_string(),
        format!("{imports}/../outside.gguf"),
        format!("{imports}/missing.gguf"),
        format!("{imports}/link.gguf"),
        format!("{imports}/etc/passwd"),
        format!("{imports}/etc/hostname"),
        "/etc/passwd".to_owned(),
        "/etc/does-not-exist".to_owned(),
        "../../etc/passwd".to_owned(),
        "./outside.gguf".to_owned(),
        "imports/../outside.gguf".to_owned(),
        imports.clone(),
    ];
    let mut answers = Vec::new();
    for from in &attempts {
        let r = call(
            s.addr,
            "POST",
            "/api/create",
            json!({"model": "x", "from": from}),
        )
        .await;
        answers.push((r.status, r.body));
    }
    let first = answers[0].clone();
    assert_eq!(first.0, 400, "{}", first.1);
    assert!(first.1.contains("import_dirs"), "{}", first.1);
    for (from, answer) in attempts.iter().zip(&answers) {
        assert_eq!(answer, &first, "{from}");
    }
    assert!(names(&s.catalog).is_empty());

    let Some(model) = hearth_testkit::test_model() else {
        return;
    };
    let inside: &Path = &s.imports.join("smol.gguf");
    std::fs::copy(&model, inside).unwrap();
    let body = json!({"model": "imported", "from": inside.display().to_string(), "stream": false});
    let r = call(s.addr, "POST", "/api/create", body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let entry = s.catalog.get("imported").unwrap();
    assert!(!entry.adopted, "copied into the store");
    assert_eq!(
        entry.digest.unwrap(),
        sha256_of(&std::fs::read(&model).unwrap())
    );
}

/// An upload cut off by the client leaves no blob and no temporary file.
#[tokio::test]
async fn an_interrupted_upload_leaves_nothing() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let s = serve_local().await;
    let data = vec![7u8; 3 << 20];
    let digest = sha256_of(&data);
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /api/blobs/{digest} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        data.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&data[..1 << 20]).await.unwrap();
    stream.shutdown().await.unwrap();
    // The server answers once the store has given the upload up.
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let path = format!("/api/blobs/{digest}");
    assert_eq!(send(s.addr, "HEAD", &path, None).await.status, 404);
    let tmp = s.catalog.root().join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(blob_count(&s.catalog), 0);
    // The whole body then stores it.
    let r = send(s.addr, "POST", &path, Some(&data)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(send(s.addr, "HEAD", &path, None).await.status, 200);
}
