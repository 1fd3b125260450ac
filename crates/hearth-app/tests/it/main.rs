//! End to end: `hearth_app::run` on 127.0.0.1:0 with the real default model, driven over HTTP.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

mod embeddings;
mod residency;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hearth_app::client;
use hearth_catalog::ImportMode;
use hearth_config::{Config, Sources};
use hearth_testkit::{golden_rows, test_model};
use serde_json::{Value, json};

struct Server {
    inner: hearth_app::Background,
    addr: SocketAddr,
    _home: tempfile::TempDir,
}

impl Server {
    /// Serve the model in `HEARTH_TEST_MODEL` as `smollm2:135m`, or `None` when it is unset.
    fn start() -> Option<Self> {
        let model = test_model()?;
        let home = tempfile::tempdir().unwrap();
        let config = Config::load(&Sources {
            hearth_home: Some(home.path().to_owned()),
            ..Sources::default()
        })
        .unwrap();
        let catalog = hearth_app::open_catalog(&config).unwrap();
        catalog
            .import(&model, "smollm2:135m", ImportMode::Adopt)
            .unwrap();
        let inner = hearth_app::Background::start(config).unwrap();
        Some(Self {
            addr: inner.addr,
            inner,
            _home: home,
        })
    }

    fn post(&self, path: &str, body: &Value) -> Value {
        let text = client::request(self.addr, "POST", path, Some(&body.to_string()))
            .unwrap()
            .text()
            .unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    fn get_text(&self, path: &str) -> String {
        client::request(self.addr, "GET", path, None)
            .unwrap()
            .text()
            .unwrap()
    }

    /// Stop the server and wait for `run` to return.
    fn shutdown(self) -> Result<(), hearth_app::AppError> {
        self.inner.shutdown()
    }
}

/// Free-running greedy text through the OpenAI completions route begins with the reference's
/// safe prefix (the text before its first near-tie) for at least as many prompts as llama.cpp
/// manages (17 or 18 of 26, per ../shared/golden/smollm2-135m/SOURCE.json).
#[test]
fn greedy_text_through_the_api_matches_the_reference() {
    let Some(server) = Server::start() else {
        return;
    };
    let rows = golden_rows("smollm2-135m/greedy.jsonl");
    let mut matched = 0;
    for row in &rows {
        let reply = server.post(
            "/v1/completions",
            &json!({"model": "smollm2:135m", "prompt": row["prompt"], "max_tokens": 64, "temperature": 0}),
        );
        let text = reply["choices"][0]["text"].as_str().unwrap();
        let safe = row["safe_prefix_text"].as_str().unwrap();
        // The reference's text shows the end-of-turn token; the API ends there instead.
        let ok = match safe.strip_suffix("<|im_end|>") {
            Some(whole) => text == whole && reply["choices"][0]["finish_reason"] == "stop",
            None => text.starts_with(safe),
        };
        if ok {
            matched += 1;
        } else {
            eprintln!(
                "differs: {:?}\n  want prefix {safe:?}\n  got {text:?}",
                row["prompt"]
            );
        }
    }
    eprintln!(
        "{matched}/{} prompts start with the reference's safe prefix",
        rows.len()
    );
    assert!(
        matched >= 18,
        "only {matched} of {} prompts matched",
        rows.len()
    );
    server.shutdown().unwrap();
}

fn queue_depth(server: &Server) -> f64 {
    server
        .get_text("/metrics")
        .lines()
        .find_map(|l| l.strip_prefix("hearth_queue_depth "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// A streaming client that disconnects stops its generation, and the server keeps serving.
#[test]
fn disconnecting_mid_stream_stops_the_generation() {
    let Some(server) = Server::start() else {
        return;
    };
    let body = json!({"model": "smollm2:135m", "stream": true, "max_tokens": 4000,
                      "messages": [{"role": "user", "content": "Count from 1 to 2000, one number per line."}]});
    let mut resp = client::request(
        server.addr,
        "POST",
        "/v1/chat/completions",
        Some(&body.to_string()),
    )
    .unwrap();
    let mut seen = 0;
    let _ = resp.for_each_line(|line| {
        if line.starts_with("data: {") {
            seen += 1;
        }
        if seen >= 3 {
            return Err(client::ClientError::Protocol("hang up".into()));
        }
        Ok(())
    });
    assert_eq!(seen, 3);
    assert_eq!(queue_depth(&server), 1.0, "the generation was running");
    drop(resp);
    let deadline = Instant::now() + Duration::from_secs(30);
    while queue_depth(&server) > 0.0 {
        assert!(
            Instant::now() < deadline,
            "the generation kept running after the client left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Still serving.
    let reply = server.post(
        "/api/chat",
        &json!({"model": "smollm2:135m", "stream": false, "options": {"temperature": 0, "num_predict": 8},
                "messages": [{"role": "user", "content": "What is the capital of France?"}]}),
    );
    assert!(
        reply["message"]["content"]
            .as_str()
            .unwrap()
            .contains("Paris"),
        "{reply}"
    );
    assert!(reply["eval_count"].as_u64().unwrap() <= 8, "{reply}");
    server.shutdown().unwrap();
}

/// Several clients at once each get their own complete answer.
#[test]
fn concurrent_streams_each_complete() {
    let Some(server) = Server::start() else {
        return;
    };
    let addr = server.addr;
    let handles: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let body = json!({"model": "smollm2:135m", "prompt": format!("Say the number {i}."),
                                  "options": {"num_predict": 12, "seed": i}});
                let mut resp =
                    client::request(addr, "POST", "/api/generate", Some(&body.to_string()))
                        .unwrap();
                let mut lines = Vec::new();
                resp.for_each_line(|l| {
                    lines.push(serde_json::from_str::<Value>(l).unwrap());
                    Ok(())
                })
                .unwrap();
                lines
            })
        })
        .collect();
    for h in handles {
        let lines = h.join().unwrap();
        let last = lines.last().unwrap();
        assert_eq!(last["done"], true, "{last}");
        let n = last["eval_count"].as_u64().unwrap();
        assert!((1..=12).contains(&n), "{last}");
        assert!(last["total_duration"].as_u64().unwrap() > 0);
        assert!(lines[..lines.len() - 1].iter().all(|l| l["done"] == false));
    }
    server.shutdown().unwrap();
}

/// A second conversation with the same system prompt reuses its computed tokens, and the OpenAI
/// usage says how many (`prompt_tokens_details.cached_tokens`).
#[test]
fn usage_reports_prompt_tokens_reused_from_the_prefix_cache() {
    let Some(server) = Server::start() else {
        return;
    };
    let ask = |question: &str| {
        server.post(
            "/v1/chat/completions",
            &json!({"model": "smollm2:135m", "max_tokens": 4, "temperature": 0,
                    "messages": [{"role": "system", "content": "You answer in one short sentence, always politely."},
                                 {"role": "user", "content": question}]}),
        )
    };
    let first = ask("What is the capital of France?");
    assert!(
        first["usage"].get("prompt_tokens_details").is_none(),
        "{first}"
    );
    let second = ask("What is the capital of Spain?");
    let cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    let prompt = second["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(
        cached >= 10 && cached < prompt,
        "cached {cached} of {prompt}: {second}"
    );
    server.shutdown().unwrap();
}
