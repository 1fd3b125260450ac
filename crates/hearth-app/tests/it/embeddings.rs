//! Sentence embeddings end to end: `hearth_app::Background` serving the real embedding model
//! (the folder in `HEARTH_TEST_EMBED_MODEL`, as `scripts/test.sh` pulls it), driven over HTTP
//! and compared with the golden sentence-transformers vectors in `../shared/golden/minilm/`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use hearth_app::client;
use hearth_config::{Config, Sources};
use hearth_testkit::golden_rows;
use serde_json::{Value, json};

const MODEL: &str = "all-minilm:l6-v2";

struct Server {
    inner: hearth_app::Background,
}

/// The data folder holding the pulled model folder `dir` (`HOME/models/blobs/sha256-…`).
/// The catalog adopts only single GGUF files, so the test serves the home the model was pulled
/// into (read only: nothing here writes to the catalog) after checking that it lists `dir`.
fn home_of(dir: &Path) -> PathBuf {
    let dir = std::fs::canonicalize(dir).unwrap();
    let home = dir
        .ancestors()
        .nth(3)
        .unwrap_or_else(|| panic!("{} is not inside a Hearth home", dir.display()))
        .to_owned();
    let config = config(&home);
    let entry = hearth_app::open_catalog(&config)
        .unwrap()
        .get(MODEL)
        .unwrap_or_else(|e| panic!("{} holds no {MODEL}: {e}", home.display()));
    assert_eq!(
        std::fs::canonicalize(&entry.path).unwrap(),
        dir,
        "HEARTH_TEST_EMBED_MODEL is not {MODEL} of its home"
    );
    home
}

fn config(home: &Path) -> Config {
    Config::load(&Sources {
        hearth_home: Some(home.to_owned()),
        ..Sources::default()
    })
    .unwrap()
}

impl Server {
    fn start() -> Option<Self> {
        let Some(dir) = std::env::var_os("HEARTH_TEST_EMBED_MODEL") else {
            eprintln!("HEARTH_TEST_EMBED_MODEL is not set: skipping a test that needs the model");
            return None;
        };
        let home = home_of(Path::new(&dir));
        let inner = hearth_app::Background::start(config(&home)).unwrap();
        Some(Self { inner })
    }

    /// Status and JSON body.
    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, text) =
            match client::request(self.inner.addr, "POST", path, Some(&body.to_string())) {
                Ok(mut resp) => (resp.status, resp.text().unwrap()),
                Err(client::ClientError::Status { status, body }) => (status, body),
                Err(e) => panic!("POST {path}: {e}"),
            };
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (status, value)
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected numbers, found {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Standard base64 with padding, decoded (the inverse of what the server must send).
fn unbase64(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => u32::from(c - b'A'),
        b'a'..=b'z' => u32::from(c - b'a') + 26,
        b'0'..=b'9' => u32::from(c - b'0') + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes = s.as_bytes();
    assert_eq!(bytes.len() % 4, 0, "base64 comes in groups of four");
    let mut out = Vec::new();
    for group in bytes.chunks(4) {
        let pad = group.iter().filter(|&&c| c == b'=').count();
        let v = group
            .iter()
            .map(|&c| if c == b'=' { 0 } else { value(c) })
            .fold(0u32, |acc, x| (acc << 6) | x);
        out.extend_from_slice(&v.to_be_bytes()[1..4 - pad]);
    }
    out
}

fn le_f32s(bytes: &[u8]) -> Vec<f32> {
    assert_eq!(bytes.len() % 4, 0);
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|x| f64::from(*x)).collect()
}

/// The `f32`s a float-encoded embedding's (shortest round-trip) numbers stand for.
fn narrow(v: &[f64]) -> Vec<f32> {
    v.iter().map(|x| *x as f32).collect()
}

/// Every golden row the reference did not truncate (it cut two long ones at 256 tokens).
fn short_rows() -> Vec<Value> {
    golden_rows("minilm/embeddings.jsonl")
        .into_iter()
        .filter(|r| r["token_ids"].as_array().unwrap().len() < 256)
        .collect()
}

fn tokens(rows: &[Value]) -> u64 {
    rows.iter()
        .map(|r| r["token_ids"].as_array().unwrap().len() as u64)
        .sum()
}

fn check_rows(rows: &[Value], got: &[Vec<f64>], what: &str) {
    assert_eq!(got.len(), rows.len(), "{what}");
    for (row, v) in rows.iter().zip(got) {
        let c = cosine(v, &floats(&row["embedding"]));
        assert!(c >= 0.9999, "{what}: cosine {c} for {}", row["text"]);
    }
}

/// `/v1/embeddings` in both encodings gives the reference's vectors; base64 carries the same
/// f32 values as the float form.
#[test]
fn openai_embeddings_match_the_reference_in_both_encodings() {
    let Some(server) = Server::start() else {
        return;
    };
    let rows = short_rows();
    let texts: Vec<&str> = rows.iter().map(|r| r["text"].as_str().unwrap()).collect();
    let (status, float) = server.post("/v1/embeddings", &json!({"model": MODEL, "input": texts}));
    assert_eq!(status, 200, "{float}");
    assert_eq!(float["object"], "list");
    assert_eq!(float["model"], MODEL);
    assert_eq!(float["usage"]["prompt_tokens"], tokens(&rows));
    assert_eq!(float["usage"]["total_tokens"], tokens(&rows));
    let data = float["data"].as_array().unwrap();
    for (i, d) in data.iter().enumerate() {
        assert_eq!(
            (d["object"].as_str(), d["index"].as_u64()),
            (Some("embedding"), Some(i as u64))
        );
    }
    let float_vectors: Vec<Vec<f64>> = data.iter().map(|d| floats(&d["embedding"])).collect();
    check_rows(&rows, &float_vectors, "float");

    let (status, b64) = server.post(
        "/v1/embeddings",
        &json!({"model": MODEL, "input": texts, "encoding_format": "base64"}),
    );
    assert_eq!(status, 200, "{b64}");
    let b64_vectors: Vec<Vec<f32>> = b64["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| le_f32s(&unbase64(d["embedding"].as_str().unwrap())))
        .collect();
    let widened: Vec<Vec<f64>> = b64_vectors.iter().map(|v| widen(v)).collect();
    check_rows(&rows, &widened, "base64");
    for (b, f) in b64_vectors.iter().zip(&float_vectors) {
        assert!(*b == narrow(f), "both encodings carry the same f32 values");
    }

    // One text alone embeds as it does in a batch.
    let (_, one) = server.post(
        "/v1/embeddings",
        &json!({"model": MODEL, "input": texts[3]}),
    );
    let alone = floats(&one["data"][0]["embedding"]);
    assert!(cosine(&alone, &float_vectors[3]) > 0.999_999);

    // Shortened vectors are unit-length prefixes.
    let (status, short) = server.post(
        "/v1/embeddings",
        &json!({"model": MODEL, "input": texts[0], "dimensions": 64}),
    );
    assert_eq!(status, 200, "{short}");
    let v = floats(&short["data"][0]["embedding"]);
    assert_eq!(v.len(), 64);
    assert!((v.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-5);
    assert!(cosine(&v, &float_vectors[0][..64]) > 0.999_999);
    server.inner.shutdown().unwrap();
}

/// OpenAI refuses over-long input; Ollama's `/api/embed` truncates it by default, as the
/// reference did, and refuses it with `truncate: false`.
#[test]
fn long_inputs_are_refused_on_openai_and_truncated_on_ollama() {
    let Some(server) = Server::start() else {
        return;
    };
    let rows = golden_rows("minilm/embeddings.jsonl");
    let long = rows
        .iter()
        .find(|r| r["token_ids"].as_array().unwrap().len() == 256)
        .unwrap();
    let (status, err) = server.post(
        "/v1/embeddings",
        &json!({"model": MODEL, "input": ["fine", long["text"]]}),
    );
    assert_eq!(status, 400, "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("input 1 is "), "{message}");
    assert!(message.contains("at most 256"), "{message}");

    let texts: Vec<&str> = rows.iter().map(|r| r["text"].as_str().unwrap()).collect();
    let (status, reply) = server.post("/api/embed", &json!({"model": MODEL, "input": texts}));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["model"], MODEL);
    assert_eq!(reply["prompt_eval_count"], tokens(&rows));
    assert!(reply["total_duration"].as_u64().unwrap() > 0);
    assert!(reply["load_duration"].as_u64().is_some());
    let vectors: Vec<Vec<f64>> = reply["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(floats)
        .collect();
    check_rows(&rows, &vectors, "/api/embed");

    let (status, err) = server.post(
        "/api/embed",
        &json!({"model": MODEL, "input": long["text"], "truncate": false}),
    );
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"].as_str().unwrap().starts_with("input 0 is "),
        "{err}"
    );

    let (status, legacy) = server.post(
        "/api/embeddings",
        &json!({"model": MODEL, "prompt": rows[0]["text"]}),
    );
    assert_eq!(status, 200, "{legacy}");
    check_rows(
        &rows[..1],
        &[floats(&legacy["embedding"])],
        "/api/embeddings",
    );
    server.inner.shutdown().unwrap();
}

/// Not a check: prints embeddings per second over HTTP for batches of 32 short texts.
#[test]
fn embedding_throughput_over_http() {
    let Some(server) = Server::start() else {
        return;
    };
    let rows = short_rows();
    let batch: Vec<&str> = rows
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .cycle()
        .take(32)
        .collect();
    let body = json!({"model": MODEL, "input": batch});
    let (status, _) = server.post("/v1/embeddings", &body);
    assert_eq!(status, 200);
    let runs = 10;
    let t = Instant::now();
    for _ in 0..runs {
        let (status, reply) = server.post("/v1/embeddings", &body);
        assert_eq!(status, 200);
        assert_eq!(reply["data"].as_array().unwrap().len(), 32);
    }
    let per = t.elapsed().as_secs_f64() / f64::from(runs);
    eprintln!(
        "/v1/embeddings, batch of 32 short texts: {:.1} ms per request, {:.0} embeddings/s",
        per * 1e3,
        32.0 / per
    );
    server.inner.shutdown().unwrap();
}
