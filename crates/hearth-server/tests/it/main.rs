//! Wire-format tests: the router served on 127.0.0.1:0 over real HTTP, in front of
//! [`scripted::ScriptedModels`]. Expected bodies are written from the OpenAI and Ollama API
//! documentation's examples, not from this server's output.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a failed expectation is a test failure"
)]

mod accounts;
mod http;
mod manage;
mod oidc;
mod openapi;
mod scripted;

use std::time::Duration;

use hearth_llm::{GenerationOptions, LlmError, Message, OutputFormat};
use serde_json::{Value, json};

use crate::http::{LIMIT, Reply, open_stream, send, serve};
use crate::scripted::{EMBED, HF, SMOL, TOOLY};

/// What a case expects of the body.
enum Expect {
    /// One JSON value.
    Json(Value),
    /// SSE `data:` events, each JSON, then `data: [DONE]`.
    Sse(Vec<Value>),
    /// SSE `data:` events without the `[DONE]` terminator (a stream that failed).
    SseNoDone(Vec<Value>),
    /// NDJSON lines.
    Ndjson(Vec<Value>),
    Text(&'static str),
}

struct Case {
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    status: u16,
    content_type: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: Expect,
}

fn post(path: &'static str, body: Value) -> Case {
    Case {
        method: "POST",
        path,
        body: Some(body),
        status: 200,
        content_type: "application/json",
        headers: &[],
        expect: Expect::Text(""),
    }
}

fn get(path: &'static str) -> Case {
    Case {
        method: "GET",
        body: None,
        ..post(path, Value::Null)
    }
}

impl Case {
    fn status(self, status: u16) -> Self {
        Case { status, ..self }
    }
    fn headers(self, headers: &'static [(&'static str, &'static str)]) -> Self {
        Case { headers, ..self }
    }
    fn json(self, v: Value) -> Self {
        Case {
            expect: Expect::Json(v),
            ..self
        }
    }
    fn sse(self, events: Vec<Value>) -> Self {
        Case {
            expect: Expect::Sse(events),
            content_type: "text/event-stream",
            ..self
        }
    }
    fn sse_no_done(self, events: Vec<Value>) -> Self {
        Case {
            expect: Expect::SseNoDone(events),
            content_type: "text/event-stream",
            ..self
        }
    }
    fn ndjson(self, lines: Vec<Value>) -> Self {
        Case {
            expect: Expect::Ndjson(lines),
            content_type: "application/x-ndjson",
            ..self
        }
    }
    fn text(self, t: &'static str, content_type: &'static str) -> Self {
        Case {
            expect: Expect::Text(t),
            content_type,
            ..self
        }
    }
}

/// Checks an RFC 3339 UTC timestamp's shape: `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && s.ends_with('Z')
        && (b.len() == 20 || (b[19] == b'.' && digits(20..b.len() - 1)))
}

/// Replaces what changes per request by placeholders, after checking its shape: response ids
/// become `<prefix>-<id>`, `created` near now `<now>`, `created_at` `<now>`.
fn normalize(v: &mut Value) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match (k.as_str(), &*v) {
                    ("id", Value::String(id))
                        if id.starts_with("chatcmpl-") || id.starts_with("cmpl-") =>
                    {
                        let (prefix, hex) = id.split_once('-').unwrap();
                        assert!(
                            hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()),
                            "{id}"
                        );
                        *v = Value::String(format!("{prefix}-<id>"));
                    }
                    ("created", Value::Number(n))
                        if n.as_u64().is_some_and(|t| t.abs_diff(now) < 86_400) =>
                    {
                        *v = Value::String("<now>".into());
                    }
                    ("created_at", Value::String(t)) => {
                        assert!(is_rfc3339(t), "created_at {t:?}");
                        *v = Value::String("<now>".into());
                    }
                    _ => normalize(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

/// `expect` matches `got` exactly, except that an expected string ending in `*` is a prefix.
fn matches(expect: &Value, got: &Value) -> bool {
    match (expect, got) {
        (Value::String(e), Value::String(g)) => match e.strip_suffix('*') {
            Some(prefix) => g.starts_with(prefix),
            None => e == g,
        },
        (Value::Object(e), Value::Object(g)) => {
            e.len() == g.len()
                && e.iter()
                    .all(|(k, ev)| g.get(k).is_some_and(|gv| matches(ev, gv)))
        }
        (Value::Array(e), Value::Array(g)) => {
            e.len() == g.len() && e.iter().zip(g).all(|(e, g)| matches(e, g))
        }
        _ => expect == got,
    }
}

fn assert_matches(expect: &Value, mut got: Value, what: &str) {
    normalize(&mut got);
    assert!(
        matches(expect, &got),
        "{what}\nexpected: {}\n     got: {}",
        serde_json::to_string_pretty(expect).unwrap(),
        serde_json::to_string_pretty(&got).unwrap()
    );
}

async fn run(server: &http::Server, case: &Case) -> Reply {
    let body = case.body.as_ref().map(|b| serde_json::to_vec(b).unwrap());
    send(server.addr, case.method, case.path, body.as_deref()).await
}

async fn check(case: Case) -> Reply {
    let server = serve().await;
    check_on(&server, case).await
}

async fn check_on(server: &http::Server, case: Case) -> Reply {
    let reply = run(server, &case).await;
    let what = format!(
        "{} {} → {} {}",
        case.method, case.path, reply.status, reply.body
    );
    assert_eq!(reply.status, case.status, "{what}");
    assert_eq!(
        reply.header("content-type"),
        Some(case.content_type),
        "{what}"
    );
    for (name, value) in case.headers {
        assert_eq!(reply.header(name), Some(*value), "header {name}: {what}");
    }
    match &case.expect {
        Expect::Json(v) => {
            assert_matches(v, serde_json::from_str(&reply.body).expect(&what), &what);
        }
        Expect::Sse(events) | Expect::SseNoDone(events) => {
            let done = matches!(case.expect, Expect::Sse(_));
            assert!(reply.body.ends_with("\n\n"), "{what}");
            let frames: Vec<&str> = reply.body[..reply.body.len() - 2].split("\n\n").collect();
            let data: Vec<&str> = frames
                .iter()
                .map(|f| f.strip_prefix("data: ").expect("data: frame"))
                .collect();
            let (json_frames, last) = if done {
                assert_eq!(data.last(), Some(&"[DONE]"), "{what}");
                (&data[..data.len() - 1], 1)
            } else {
                (&data[..], 0)
            };
            assert_eq!(json_frames.len() + last, frames.len());
            assert_eq!(json_frames.len(), events.len(), "{what}");
            let ids: std::collections::BTreeSet<String> = json_frames
                .iter()
                .filter_map(|f| {
                    serde_json::from_str::<Value>(f)
                        .ok()?
                        .get("id")?
                        .as_str()
                        .map(str::to_owned)
                })
                .collect();
            assert!(ids.len() <= 1, "one id per stream: {ids:?}");
            for (frame, expect) in json_frames.iter().zip(events) {
                assert!(!frame.contains('\n'), "an event is one line: {frame}");
                assert_matches(expect, serde_json::from_str(frame).expect(frame), &what);
            }
        }
        Expect::Ndjson(lines) => {
            assert!(reply.body.ends_with('\n'), "{what}");
            let got: Vec<&str> = reply.body.trim_end_matches('\n').split('\n').collect();
            assert_eq!(got.len(), lines.len(), "{what}");
            for (line, expect) in got.iter().zip(lines) {
                assert_matches(expect, serde_json::from_str(line).expect(line), &what);
            }
        }
        Expect::Text(t) => assert_eq!(reply.body, *t, "{what}"),
    }
    reply
}

fn user(content: &str) -> Value {
    json!([{"role": "user", "content": content}])
}

// ---------- OpenAI generation ----------

fn usage() -> Value {
    json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10})
}

fn chat_chunk(delta: Value, finish: Value) -> Value {
    json!({
        "id": "chatcmpl-<id>", "object": "chat.completion.chunk", "created": "<now>",
        "model": SMOL,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
    })
}

fn with_usage(mut chunk: Value, usage: Value) -> Value {
    chunk["usage"] = usage;
    chunk
}

#[tokio::test]
async fn openai_chat_non_streaming() {
    check(
        post(
            "/v1/chat/completions",
            json!({"model": SMOL, "messages": user("hi")}),
        )
        .json(json!({
            "id": "chatcmpl-<id>", "object": "chat.completion", "created": "<now>", "model": SMOL,
            "choices": [{
                "index": 0, "message": {"role": "assistant", "content": "Hello world"},
                "logprobs": null, "finish_reason": "stop"
            }],
            "usage": usage()
        })),
    )
    .await;
}

#[tokio::test]
async fn openai_chat_streaming() {
    let events = vec![
        chat_chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chat_chunk(json!({"content": "Hel"}), Value::Null),
        chat_chunk(json!({"content": "lo"}), Value::Null),
        chat_chunk(json!({"content": " world"}), Value::Null),
        chat_chunk(json!({}), json!("stop")),
    ];
    let body = json!({"model": SMOL, "messages": user("hi"), "stream": true});
    check(post("/v1/chat/completions", body).sse(events.clone())).await;

    // include_usage: `usage: null` on every chunk, then a final chunk with empty choices.
    let mut with = events
        .into_iter()
        .map(|e| with_usage(e, Value::Null))
        .collect::<Vec<_>>();
    let mut last = with_usage(chat_chunk(json!({}), Value::Null), usage());
    last["choices"] = json!([]);
    with.push(last);
    let body = json!({"model": SMOL, "messages": user("hi"), "stream": true,
                      "stream_options": {"include_usage": true}});
    check(post("/v1/chat/completions", body).sse(with)).await;
}

/// A scripted token in OpenAI's chat shape: `(text, bytes, logprob)` and its alternatives.
fn lp(token: &str, bytes: &[u8], logprob: f32, top: &[(&str, f32)]) -> Value {
    let top: Vec<Value> = top
        .iter()
        .map(|&(t, l)| {
            let b = if t == token {
                bytes.to_vec()
            } else {
                t.as_bytes().to_vec()
            };
            json!({"token": t, "logprob": l, "bytes": b})
        })
        .collect();
    json!({"token": token, "logprob": logprob, "bytes": bytes, "top_logprobs": top})
}

fn chat_chunk_lp(delta: Value, content: Vec<Value>) -> Value {
    let mut c = chat_chunk(delta, Value::Null);
    c["choices"][0]["logprobs"] = json!({ "content": content });
    c
}

/// `logprobs: true` (+ `top_logprobs`) in OpenAI's shape, written from OpenAI's API reference:
/// every token with its text, log-probability, UTF-8 bytes and alternatives; a streamed chunk
/// carries the tokens of its own text (a token that completed no text rides with the next
/// chunk; one whose text a stop string removed comes in an empty chunk before the last).
#[tokio::test]
async fn openai_chat_logprobs() {
    let tokens = [
        lp("Hel", b"Hel", -0.25, &[("Hel", -0.25), ("alt1", -2.0)]),
        lp("lo", b"lo", -0.5, &[("lo", -0.5), ("alt1", -2.0)]),
        lp(
            "\u{fffd}",
            &[0xe2],
            -0.75,
            &[("\u{fffd}", -0.75), ("alt1", -2.0)],
        ),
        lp(
            " world",
            b" world",
            -1.0,
            &[(" world", -1.0), ("alt1", -2.0)],
        ),
        lp("!", b"!", -1.25, &[("!", -1.25), ("alt1", -2.0)]),
    ];
    let body = json!({"model": SMOL, "messages": user("hi"), "logprobs": true, "top_logprobs": 2});
    check(post("/v1/chat/completions", body.clone()).json(json!({
        "id": "chatcmpl-<id>", "object": "chat.completion", "created": "<now>", "model": SMOL,
        "choices": [{
            "index": 0, "message": {"role": "assistant", "content": "Hello world"},
            "logprobs": {"content": tokens.to_vec()}, "finish_reason": "stop"
        }],
        "usage": usage()
    })))
    .await;

    let mut streaming = body;
    streaming["stream"] = json!(true);
    let events = vec![
        chat_chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chat_chunk_lp(json!({"content": "Hel"}), vec![tokens[0].clone()]),
        chat_chunk_lp(json!({"content": "lo"}), vec![tokens[1].clone()]),
        chat_chunk_lp(json!({"content": " world"}), tokens[2..4].to_vec()),
        chat_chunk_lp(json!({"content": ""}), vec![tokens[4].clone()]),
        chat_chunk(json!({}), json!("stop")),
    ];
    check(post("/v1/chat/completions", streaming).sse(events)).await;

    // `logprobs: true` alone: no alternatives.
    let bare: Vec<Value> = tokens
        .iter()
        .map(|t| {
            let mut t = t.clone();
            t["top_logprobs"] = json!([]);
            t
        })
        .collect();
    let body = json!({"model": SMOL, "messages": user("hi"), "logprobs": true});
    check(post("/v1/chat/completions", body).json(json!({
        "id": "chatcmpl-<id>", "object": "chat.completion", "created": "<now>", "model": SMOL,
        "choices": [{
            "index": 0, "message": {"role": "assistant", "content": "Hello world"},
            "logprobs": {"content": bare}, "finish_reason": "stop"
        }],
        "usage": usage()
    })))
    .await;
}

/// Legacy `/v1/completions` with `logprobs: 2`, in the shape of OpenAI's reference: parallel
/// `tokens`, `token_logprobs`, `top_logprobs` (`{token: logprob}`) and `text_offset`
/// (characters before each token; an unfinished character is not counted yet, a broken one
/// counts as U+FFFD).
#[tokio::test]
async fn openai_completions_logprobs() {
    let lps = |range: std::ops::Range<usize>| {
        let tokens = ["Hel", "lo", "\u{fffd}", " world", "!"];
        let logprobs = [-0.25, -0.5, -0.75, -1.0, -1.25];
        let offsets = [0, 3, 5, 5, 12];
        let top: Vec<Value> = range
            .clone()
            .map(|i| json!({tokens[i]: logprobs[i], "alt1": -2.0}))
            .collect();
        json!({
            "tokens": tokens[range.clone()],
            "token_logprobs": logprobs[range.clone()],
            "top_logprobs": top,
            "text_offset": offsets[range],
        })
    };
    let with = |mut chunk: Value, lp: Value| {
        chunk["choices"][0]["logprobs"] = lp;
        chunk
    };
    let body = json!({"model": SMOL, "prompt": "hi", "logprobs": 2});
    let mut whole = with(text_chunk("Hello world", json!("stop")), lps(0..5));
    whole["usage"] = usage();
    check(post("/v1/completions", body.clone()).json(whole)).await;
    let mut streaming = body;
    streaming["stream"] = json!(true);
    check(post("/v1/completions", streaming).sse(vec![
        with(text_chunk("Hel", Value::Null), lps(0..1)),
        with(text_chunk("lo", Value::Null), lps(1..2)),
        with(text_chunk(" world", Value::Null), lps(2..4)),
        with(text_chunk("", Value::Null), lps(4..5)),
        text_chunk("", json!("stop")),
    ]))
    .await;
    for n in [-1, 6] {
        check(
            post(
                "/v1/completions",
                json!({"model": SMOL, "prompt": "hi", "logprobs": n}),
            )
            .status(400)
            .json(openai_error(
                &format!("logprobs: must be between 0 and 5 (got {n})"),
                "invalid_request_error",
                json!("logprobs"),
                Value::Null,
            )),
        )
        .await;
    }
}

#[tokio::test]
async fn openai_logprobs_options_map_and_bad_ones_are_400() {
    let base = json!({"model": SMOL, "messages": user("hi")});
    let with = |extra: Value| {
        let mut b = base.clone();
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    for (extra, top) in [
        (json!({"logprobs": true}), Some(0)),
        (json!({"logprobs": true, "top_logprobs": 20}), Some(20)),
        (json!({"logprobs": false}), None),
        (json!({"logprobs": null, "top_logprobs": null}), None),
    ] {
        let expect = GenerationOptions {
            top_logprobs: top,
            ..openai_defaults()
        };
        check_chat_options(with(extra), expect).await;
    }
    for (extra, message) in [
        (
            json!({"logprobs": true, "top_logprobs": 21}),
            "top_logprobs: must be between 0 and 20 (got 21)",
        ),
        (
            json!({"logprobs": true, "top_logprobs": -1}),
            "top_logprobs: must be between 0 and 20 (got -1)",
        ),
        (
            json!({"top_logprobs": 3}),
            "top_logprobs: set logprobs to true to use top_logprobs",
        ),
        (
            json!({"logprobs": false, "top_logprobs": 0}),
            "top_logprobs: set logprobs to true to use top_logprobs",
        ),
    ] {
        check(
            post("/v1/chat/completions", with(extra))
                .status(400)
                .json(openai_error(
                    message,
                    "invalid_request_error",
                    json!("top_logprobs"),
                    Value::Null,
                )),
        )
        .await;
    }
}

fn text_chunk(text: &str, finish: Value) -> Value {
    json!({
        "id": "cmpl-<id>", "object": "text_completion", "created": "<now>", "model": SMOL,
        "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}]
    })
}

#[tokio::test]
async fn openai_completions_non_streaming_and_streaming() {
    check(
        post("/v1/completions", json!({"model": SMOL, "prompt": "Once"})).json(with_usage(
            text_chunk("Hello world", json!("stop")),
            usage(),
        )),
    )
    .await;
    let events = vec![
        text_chunk("Hel", Value::Null),
        text_chunk("lo", Value::Null),
        text_chunk(" world", Value::Null),
        text_chunk("", json!("stop")),
    ];
    check(
        post(
            "/v1/completions",
            json!({"model": SMOL, "prompt": ["Once"], "stream": true}),
        )
        .sse(events.clone()),
    )
    .await;
    let mut with = events
        .into_iter()
        .map(|e| with_usage(e, Value::Null))
        .collect::<Vec<_>>();
    let mut last = with_usage(text_chunk("", Value::Null), usage());
    last["choices"] = json!([]);
    with.push(last);
    let body = json!({"model": SMOL, "prompt": "Once", "stream": true, "stream_options": {"include_usage": true}});
    check(post("/v1/completions", body).sse(with)).await;
}

#[tokio::test]
async fn openai_stream_that_fails_midway_ends_with_an_error_event() {
    let body = json!({"model": "midway", "messages": user("hi"), "stream": true});
    let mut first = chat_chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    first["model"] = json!("midway");
    let mut second = chat_chunk(json!({"content": "Hel"}), Value::Null);
    second["model"] = json!("midway");
    let reply = check(post("/v1/chat/completions", body).sse_no_done(vec![
        first,
        second,
        json!({"error": {"message": "internal error; the server log has the details",
                         "type": "server_error", "param": null, "code": null}}),
    ]))
    .await;
    assert!(!reply.body.contains("deadbeef"));
}

// ---------- OpenAI request mapping ----------

async fn check_chat_options(body: Value, expect: GenerationOptions) {
    let server = serve().await;
    let reply = send(
        server.addr,
        "POST",
        "/v1/chat/completions",
        Some(body.to_string().as_bytes()),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let got = server.models.last_chat.lock().unwrap().clone().unwrap();
    assert_eq!(got.options, expect, "{body}");
}

/// What an OpenAI request without sampling fields means (OpenAI's documented defaults).
fn openai_defaults() -> GenerationOptions {
    GenerationOptions {
        temperature: Some(1.0),
        top_p: Some(1.0),
        top_k: Some(0),
        min_p: Some(0.0),
        repeat_penalty: Some(1.0),
        repeat_last_n: Some(64),
        presence_penalty: Some(0.0),
        frequency_penalty: Some(0.0),
        ..GenerationOptions::default()
    }
}

#[tokio::test]
async fn openai_options_map_to_generation_options() {
    let base = json!({"model": SMOL, "messages": user("hi")});
    let with = |extra: Value| {
        let mut b = base.clone();
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    check_chat_options(base.clone(), openai_defaults()).await;
    check_chat_options(
        with(json!({"max_tokens": 5, "temperature": 0.5, "top_p": 0.9, "seed": 42, "stop": "\n",
                    "presence_penalty": 0.25, "frequency_penalty": -0.5, "n": 1, "user": "ignored"})),
        GenerationOptions {
            max_tokens: Some(5),
            temperature: Some(0.5),
            top_p: Some(0.9),
            seed: Some(42),
            stop: vec!["\n".into()],
            presence_penalty: Some(0.25),
            frequency_penalty: Some(-0.5),
            ..openai_defaults()
        },
    )
    .await;
    check_chat_options(
        with(json!({"max_tokens": 5, "max_completion_tokens": 9, "stop": ["a", "b"]})),
        GenerationOptions {
            max_tokens: Some(9),
            stop: vec!["a".into(), "b".into()],
            ..openai_defaults()
        },
    )
    .await;
}

#[tokio::test]
async fn openai_messages_map_to_chat_messages() {
    let server = serve().await;
    let body = json!({"model": SMOL, "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": null}
    ]});
    let reply = send(
        server.addr,
        "POST",
        "/v1/chat/completions",
        Some(body.to_string().as_bytes()),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let got = server.models.last_chat.lock().unwrap().clone().unwrap();
    let m = |role: &str, content: &str| Message::text(role, content);
    assert_eq!(
        got.messages,
        vec![m("system", "be brief"), m("user", "ab"), m("assistant", "")]
    );
}

// ---------- tools ----------

#[tokio::test]
async fn openai_tool_calls_non_streaming() {
    check(
        post(
            "/v1/chat/completions",
            json!({"model": TOOLY, "messages": user("weather?")}),
        )
        .json(json!({
            "id": "chatcmpl-<id>", "object": "chat.completion", "created": "<now>", "model": TOOLY,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_a", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\",\"days\":2}"}},
                    {"id": "call_b", "type": "function",
                     "function": {"name": "get_time", "arguments": "{}"}}
                ]},
                "logprobs": null, "finish_reason": "tool_calls"
            }],
            "usage": usage()
        })),
    )
    .await;
}

#[tokio::test]
async fn openai_tool_calls_stream_as_the_spec_shapes_them() {
    let call = |v: Value| chat_chunk(json!({"tool_calls": [v]}), Value::Null);
    let mut events = vec![
        chat_chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        call(json!({"index": 0, "id": "call_a", "type": "function",
                    "function": {"name": "get_weather", "arguments": ""}})),
        call(json!({"index": 0, "function": {"arguments": "{\"city\":\"Oslo\",\"days\":2}"}})),
        call(json!({"index": 1, "id": "call_b", "type": "function",
                    "function": {"name": "get_time", "arguments": ""}})),
        call(json!({"index": 1, "function": {"arguments": "{}"}})),
        chat_chunk(json!({}), json!("tool_calls")),
    ];
    for e in &mut events {
        e["model"] = json!(TOOLY);
    }
    let body = json!({"model": TOOLY, "messages": user("weather?"), "stream": true});
    check(post("/v1/chat/completions", body).sse(events)).await;
}

#[tokio::test]
async fn ollama_tool_calls_streaming_and_not() {
    let calls = json!([
        {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Oslo", "days": 2}}},
        {"function": {"index": 1, "name": "get_time", "arguments": {}}}
    ]);
    let mut whole = ollama_final_metrics(chat_final(""));
    whole["model"] = json!(TOOLY);
    whole["message"]["tool_calls"] = calls.clone();
    let body = json!({"model": TOOLY, "messages": user("weather?"), "stream": false});
    check(post("/api/chat", body).json(whole)).await;

    let mut line = chat_line("");
    line["model"] = json!(TOOLY);
    line["message"]["tool_calls"] = calls;
    let mut last = ollama_final_metrics(chat_final(""));
    last["model"] = json!(TOOLY);
    let body = json!({"model": TOOLY, "messages": user("weather?")});
    check(post("/api/chat", body).ndjson(vec![line, last])).await;
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})
}

#[tokio::test]
async fn openai_tools_and_tool_messages_map_to_the_chat_request() {
    let server = serve().await;
    let last = async |body: Value| {
        let reply = send(
            server.addr,
            "POST",
            "/v1/chat/completions",
            Some(body.to_string().as_bytes()),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        server.models.last_chat.lock().unwrap().clone().unwrap()
    };
    let messages = json!([
        {"role": "user", "content": "weather in Oslo?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "3 C"}
    ]);
    let got = last(
        json!({"model": SMOL, "messages": messages, "tools": [weather_tool()],
                          "tool_choice": "required", "parallel_tool_calls": false}),
    )
    .await;
    assert_eq!(
        got.tools,
        vec![hearth_llm::Tool {
            name: "get_weather".into(),
            description: Some("Weather".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        }]
    );
    assert_eq!(got.tool_choice, hearth_llm::ToolChoice::Required);
    assert!(got.single_tool_call);
    assert_eq!(
        got.messages[1].tool_calls,
        vec![hearth_llm::ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "Oslo"}),
        }]
    );
    assert_eq!(got.messages[2].tool_call_id.as_deref(), Some("call_1"));
    assert_eq!(got.messages[2].content, "3 C");

    let choice = |c: Value| json!({"model": SMOL, "messages": user("hi"), "tools": [weather_tool()], "tool_choice": c});
    for (c, want) in [
        (json!("none"), hearth_llm::ToolChoice::None),
        (json!("auto"), hearth_llm::ToolChoice::Auto),
        (
            json!({"type": "function", "function": {"name": "get_weather"}}),
            hearth_llm::ToolChoice::Function("get_weather".into()),
        ),
    ] {
        let got = last(choice(c)).await;
        assert_eq!(got.tool_choice, want);
        assert!(!got.single_tool_call);
    }
    let got = last(json!({"model": SMOL, "messages": user("hi"), "tools": [weather_tool()]})).await;
    assert_eq!(got.tool_choice, hearth_llm::ToolChoice::Auto);
}

#[tokio::test]
async fn bad_tool_requests_are_400_naming_the_field() {
    let bad = |body: Value, param: &str, message: &str| {
        post("/v1/chat/completions", body)
            .status(400)
            .json(openai_error(
                message,
                "invalid_request_error",
                json!(param),
                Value::Null,
            ))
    };
    check(bad(
        json!({"model": SMOL, "messages": user("hi"), "tools": [weather_tool()],
               "tool_choice": "sometimes"}),
        "tool_choice",
        "tool_choice: `sometimes` is not one of*",
    ))
    .await;
    check(bad(
        json!({"model": SMOL, "messages": user("hi"),
               "tools": [{"type": "retrieval", "function": {"name": "x"}}]}),
        "tools",
        "tools[0].type: only `function` tools are supported*",
    ))
    .await;
    check(bad(
        json!({"model": SMOL, "messages": [{"role": "assistant", "content": null, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]}),
        "messages",
        "messages[0].tool_calls[0].function.arguments: not JSON*",
    ))
    .await;
}

// ---------- Ollama generation ----------

fn ollama_final_metrics(mut v: Value) -> Value {
    let m = json!({"total_duration": 10_000_000, "load_duration": 1_000_000, "prompt_eval_count": 7,
                   "prompt_eval_duration": 2_000_000, "eval_count": 3, "eval_duration": 3_000_000});
    v.as_object_mut()
        .unwrap()
        .extend(m.as_object().unwrap().clone());
    v
}

fn chat_line(content: &str) -> Value {
    json!({"model": SMOL, "created_at": "<now>", "message": {"role": "assistant", "content": content}, "done": false})
}

fn chat_final(content: &str) -> Value {
    ollama_final_metrics(json!({"model": SMOL, "created_at": "<now>",
        "message": {"role": "assistant", "content": content}, "done": true, "done_reason": "stop"}))
}

#[tokio::test]
async fn ollama_chat_streams_ndjson_by_default() {
    check(
        post("/api/chat", json!({"model": SMOL, "messages": user("hi")})).ndjson(vec![
            chat_line("Hel"),
            chat_line("lo"),
            chat_line(" world"),
            chat_final(""),
        ]),
    )
    .await;
}

#[tokio::test]
async fn ollama_chat_non_streaming() {
    check(
        post(
            "/api/chat",
            json!({"model": SMOL, "messages": user("hi"), "stream": false}),
        )
        .json(chat_final("Hello world")),
    )
    .await;
}

/// A scripted token in Ollama's shape (api/types.go `Logprob`): `top_logprobs` and empty
/// `bytes` left out.
fn ol_lp(token: &str, bytes: &[u8], logprob: f32, top: &[(&str, f32)]) -> Value {
    let mut v = json!({"token": token, "logprob": logprob, "bytes": bytes});
    if !top.is_empty() {
        let top: Vec<Value> = top
            .iter()
            .map(|&(t, l)| {
                let b = if t == token {
                    bytes.to_vec()
                } else {
                    t.as_bytes().to_vec()
                };
                json!({"token": t, "logprob": l, "bytes": b})
            })
            .collect();
        v["top_logprobs"] = json!(top);
    }
    v
}

fn with_logprobs(mut v: Value, tokens: &[Value]) -> Value {
    v["logprobs"] = json!(tokens);
    v
}

/// `logprobs: true` on `/api/chat` and `/api/generate`: each streamed line carries its tokens
/// (a token without text rides with the next line, one whose text a stop string removed gets
/// a line of its own), the whole answer all of them; `top_logprobs` adds alternatives.
#[tokio::test]
async fn ollama_logprobs() {
    fn top(t: &str, l: f32) -> [(&str, f32); 2] {
        [(t, l), ("alt1", -2.0)]
    }
    let with_top = [
        ol_lp("Hel", b"Hel", -0.25, &top("Hel", -0.25)),
        ol_lp("lo", b"lo", -0.5, &top("lo", -0.5)),
        ol_lp("\u{fffd}", &[0xe2], -0.75, &top("\u{fffd}", -0.75)),
        ol_lp(" world", b" world", -1.0, &top(" world", -1.0)),
        ol_lp("!", b"!", -1.25, &top("!", -1.25)),
    ];
    let chat = json!({"model": SMOL, "messages": user("hi"), "logprobs": true, "top_logprobs": 2});
    check(post("/api/chat", chat.clone()).ndjson(vec![
        with_logprobs(chat_line("Hel"), &with_top[0..1]),
        with_logprobs(chat_line("lo"), &with_top[1..2]),
        with_logprobs(chat_line(" world"), &with_top[2..4]),
        with_logprobs(chat_line(""), &with_top[4..5]),
        chat_final(""),
    ]))
    .await;
    let mut whole = chat;
    whole["stream"] = json!(false);
    check(post("/api/chat", whole).json(with_logprobs(chat_final("Hello world"), &with_top))).await;

    let bare = [
        ol_lp("Hel", b"Hel", -0.25, &[]),
        ol_lp("lo", b"lo", -0.5, &[]),
        ol_lp("\u{fffd}", &[0xe2], -0.75, &[]),
        ol_lp(" world", b" world", -1.0, &[]),
        ol_lp("!", b"!", -1.25, &[]),
    ];
    for raw in [false, true] {
        let gen_body = json!({"model": SMOL, "prompt": "hi", "raw": raw, "logprobs": true});
        check(post("/api/generate", gen_body.clone()).ndjson(vec![
            with_logprobs(gen_line("Hel"), &bare[0..1]),
            with_logprobs(gen_line("lo"), &bare[1..2]),
            with_logprobs(gen_line(" world"), &bare[2..4]),
            with_logprobs(gen_line(""), &bare[4..5]),
            gen_final(""),
        ]))
        .await;
        let mut whole = gen_body;
        whole["stream"] = json!(false);
        check(post("/api/generate", whole).json(with_logprobs(gen_final("Hello world"), &bare)))
            .await;
    }

    // `top_logprobs` alone asks for nothing; out of range is refused.
    check(
        post(
            "/api/generate",
            json!({"model": SMOL, "prompt": "hi", "stream": false, "top_logprobs": 3}),
        )
        .json(gen_final("Hello world")),
    )
    .await;
    for path in ["/api/chat", "/api/generate"] {
        let body = json!({"model": SMOL, "prompt": "hi", "messages": user("hi"), "logprobs": true, "top_logprobs": 21});
        check(
            post(path, body)
                .status(400)
                .json(json!({"error": "top_logprobs must be between 0 and 20 (got 21)"})),
        )
        .await;
    }
}

fn gen_line(response: &str) -> Value {
    json!({"model": SMOL, "created_at": "<now>", "response": response, "done": false})
}

fn gen_final(response: &str) -> Value {
    ollama_final_metrics(
        json!({"model": SMOL, "created_at": "<now>", "response": response,
                                "done": true, "done_reason": "stop"}),
    )
}

#[tokio::test]
async fn ollama_generate_streaming_and_not() {
    check(
        post("/api/generate", json!({"model": SMOL, "prompt": "hi"})).ndjson(vec![
            gen_line("Hel"),
            gen_line("lo"),
            gen_line(" world"),
            gen_final(""),
        ]),
    )
    .await;
    check(
        post(
            "/api/generate",
            json!({"model": SMOL, "prompt": "hi", "stream": false}),
        )
        .json(gen_final("Hello world")),
    )
    .await;
}

#[tokio::test]
async fn ollama_generate_raw_is_a_completion_and_otherwise_a_chat() {
    let server = serve().await;
    let body = json!({"model": SMOL, "prompt": "<|im_start|>x", "raw": true, "stream": false});
    check_on(
        &server,
        post("/api/generate", body).json(gen_final("Hello world")),
    )
    .await;
    let got = server
        .models
        .last_completion
        .lock()
        .unwrap()
        .clone()
        .unwrap();
    assert_eq!(got.prompt, "<|im_start|>x");

    let body = json!({"model": SMOL, "prompt": "hi", "system": "be brief", "stream": false,
                      "keep_alive": "5m", "options": {"num_predict": 4, "top_k": 40, "min_p": 0.05,
                      "repeat_penalty": 1.1, "repeat_last_n": -1, "seed": 3, "stop": ["\n"],
                      "num_ctx": 4096, "mirostat": 0}});
    check_on(
        &server,
        post("/api/generate", body).json(gen_final("Hello world")),
    )
    .await;
    let got = server.models.last_chat.lock().unwrap().clone().unwrap();
    let m = |role: &str, content: &str| Message::text(role, content);
    assert_eq!(got.messages, vec![m("system", "be brief"), m("user", "hi")]);
    assert_eq!(got.keep_alive, Some(Duration::from_secs(300)));
    assert_eq!(
        got.options,
        GenerationOptions {
            max_tokens: Some(4),
            top_k: Some(40),
            min_p: Some(0.05),
            repeat_penalty: Some(1.1),
            repeat_last_n: Some(u32::MAX),
            seed: Some(3),
            stop: vec!["\n".into()],
            ..Default::default()
        }
    );

    // Ollama's "no limit" and "random seed" spellings are the defaults; a number keep_alive is seconds.
    let body = json!({"model": SMOL, "messages": user("hi"), "stream": false, "keep_alive": 60,
                      "options": {"num_predict": -1, "seed": -1}});
    check_on(
        &server,
        post("/api/chat", body).json(chat_final("Hello world")),
    )
    .await;
    let got = server.models.last_chat.lock().unwrap().clone().unwrap();
    assert_eq!(got.keep_alive, Some(Duration::from_secs(60)));
    assert_eq!(got.options, GenerationOptions::default());
}

#[tokio::test]
async fn ollama_empty_requests_only_load() {
    check(post("/api/generate", json!({"model": SMOL})).json(json!({
        "model": SMOL, "created_at": "<now>", "response": "", "done": true, "done_reason": "load"
    })))
    .await;
    check(
        post("/api/chat", json!({"model": SMOL, "messages": []})).json(json!({
            "model": SMOL, "created_at": "<now>", "message": {"role": "assistant", "content": ""},
            "done": true, "done_reason": "load"
        })),
    )
    .await;
    check(
        post("/api/generate", json!({"model": "nope"}))
            .status(404)
            .json(json!({"error": "model `nope` not found*"})),
    )
    .await;
}

// ---------- errors ----------

fn openai_error(message: &str, kind: &str, param: Value, code: Value) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

#[tokio::test]
async fn unknown_model_is_404_naming_it() {
    let not_found = LlmError::ModelNotFound("no-such:model".into()).to_string();
    let body = json!({"model": "no-such:model", "messages": user("hi")});
    check(
        post("/v1/chat/completions", body.clone())
            .status(404)
            .json(openai_error(
                &not_found,
                "invalid_request_error",
                json!("model"),
                json!("model_not_found"),
            )),
    )
    .await;
    check(
        post(
            "/v1/completions",
            json!({"model": "no-such:model", "prompt": "x", "stream": true}),
        )
        .status(404)
        .json(openai_error(
            &not_found,
            "invalid_request_error",
            json!("model"),
            json!("model_not_found"),
        )),
    )
    .await;
    check(
        post("/api/chat", body)
            .status(404)
            .json(json!({"error": not_found})),
    )
    .await;
    check(
        post("/api/show", json!({"name": "no-such:model"}))
            .status(404)
            .json(json!({"error": not_found})),
    )
    .await;
    check(
        get("/v1/models/no-such:model")
            .status(404)
            .json(openai_error(
                &not_found,
                "invalid_request_error",
                json!("model"),
                json!("model_not_found"),
            )),
    )
    .await;
}

#[tokio::test]
async fn malformed_json_is_400_naming_the_field() {
    let mistyped = json!({"model": SMOL, "messages": user("hi"), "max_tokens": "ten"});
    check(
        post("/v1/chat/completions", mistyped)
            .status(400)
            .json(openai_error(
                "invalid JSON body: max_tokens: invalid type: string \"ten\", expected u32*",
                "invalid_request_error",
                json!("max_tokens"),
                Value::Null,
            )),
    )
    .await;
    let missing_role = json!({"model": SMOL, "messages": [{"content": "hi"}]});
    check(
        post("/v1/chat/completions", missing_role)
            .status(400)
            .json(openai_error(
                "invalid JSON body: messages[0]: missing field `role`*",
                "invalid_request_error",
                json!("messages[0]"),
                Value::Null,
            )),
    )
    .await;
    let bad_option = json!({"model": SMOL, "prompt": "hi", "options": {"temperature": "hot"}});
    check(post("/api/generate", bad_option).status(400).json(json!({
        "error": "invalid JSON body: options.temperature: invalid type: string \"hot\"*"
    })))
    .await;
    check(
        post(
            "/api/chat",
            json!({"model": SMOL, "messages": user("hi"), "keep_alive": "soon"}),
        )
        .status(400)
        .json(json!({"error": "keep_alive: cannot read \"soon\" as a duration*"})),
    )
    .await;
}

#[tokio::test]
async fn broken_json_syntax_is_400() {
    let server = serve().await;
    for path in ["/v1/chat/completions", "/api/chat"] {
        let reply = send(server.addr, "POST", path, Some(b"{\"model\": ")).await;
        assert_eq!(reply.status, 400, "{path}");
        assert!(
            reply.body.contains("invalid JSON body: EOF while parsing"),
            "{}",
            reply.body
        );
    }
}

#[tokio::test]
async fn unknown_routes_are_404_in_their_family_shape() {
    check(get("/v1/nothing").status(404).json(openai_error(
        "no API route for GET /v1/nothing*",
        "invalid_request_error",
        Value::Null,
        json!("unknown_url"),
    )))
    .await;
    check(
        post("/api/nothing", json!({}))
            .status(404)
            .json(json!({"error": "no API route for POST /api/nothing*"})),
    )
    .await;
}

#[tokio::test]
async fn n_out_of_range_is_400_naming_it() {
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": SMOL, "messages": user("hi"), "n": 9}),
        ),
        (
            "/v1/completions",
            json!({"model": SMOL, "prompt": "x", "n": 0}),
        ),
    ] {
        let n = body["n"].clone();
        check(post(path, body).status(400).json(openai_error(
            &format!("n: must be between 1 and 8 (got {n})"),
            "invalid_request_error",
            json!("n"),
            Value::Null,
        )))
        .await;
    }
}

/// `n` choices: one generation each, seeds `seed + i`, indices in order, the prompt counted
/// once and completion tokens summed.
#[tokio::test]
async fn n_choices_answer_one_choice_per_generation() {
    let server = serve().await;
    let choice = |i: u32| {
        json!({"index": i, "message": {"role": "assistant", "content": "Hello world"},
               "logprobs": null, "finish_reason": "stop"})
    };
    check_on(
        &server,
        post(
            "/v1/chat/completions",
            json!({"model": SMOL, "messages": user("hi"), "n": 3, "seed": 5}),
        )
        .json(json!({
            "id": "chatcmpl-<id>", "object": "chat.completion", "created": "<now>", "model": SMOL,
            "choices": [choice(0), choice(1), choice(2)],
            "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}
        })),
    )
    .await;
    let seeds: Vec<Option<u64>> = server
        .models
        .chats
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.options.seed)
        .collect();
    let mut sorted = seeds.clone();
    sorted.sort();
    assert_eq!(sorted, [Some(5), Some(6), Some(7)]);
    // Without a seed none is made up (each choice draws its own).
    check_on(
        &server,
        post(
            "/v1/chat/completions",
            json!({"model": SMOL, "messages": user("hi"), "n": 2}),
        )
        .json(json!({
            "id": "chatcmpl-<id>", "object": "chat.completion", "created": "<now>", "model": SMOL,
            "choices": [choice(0), choice(1)],
            "usage": {"prompt_tokens": 7, "completion_tokens": 6, "total_tokens": 13}
        })),
    )
    .await;
    assert_eq!(server.models.chats.lock().unwrap()[3].options.seed, None);
    let text = |i: u32| json!({"text": "Hello world", "index": i, "logprobs": null, "finish_reason": "stop"});
    check_on(
        &server,
        post(
            "/v1/completions",
            json!({"model": SMOL, "prompt": "x", "n": 2}),
        )
        .json(json!({
            "id": "cmpl-<id>", "object": "text_completion", "created": "<now>", "model": SMOL,
            "choices": [text(0), text(1)],
            "usage": {"prompt_tokens": 7, "completion_tokens": 6, "total_tokens": 13}
        })),
    )
    .await;
}

/// The `data:` events of an SSE body, `[DONE]` as a string.
fn sse_events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_owned())))
        .collect()
}

/// Streamed `n` choices interleave; each choice's chunks carry its index and add up to its
/// text; usage comes once, after every choice finished.
#[tokio::test]
async fn n_choices_stream_interleaved_by_index() {
    let server = serve().await;
    for (path, body, text_of) in [
        (
            "/v1/chat/completions",
            json!({"model": SMOL, "messages": user("hi"), "n": 3, "stream": true,
                   "stream_options": {"include_usage": true}}),
            "/delta/content",
        ),
        (
            "/v1/completions",
            json!({"model": SMOL, "prompt": "x", "n": 3, "stream": true,
                   "stream_options": {"include_usage": true}}),
            "/text",
        ),
    ] {
        let reply = send(server.addr, "POST", path, Some(body.to_string().as_bytes())).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let events = sse_events(&reply.body);
        let (last, rest) = events.split_last().unwrap();
        assert_eq!(*last, json!("[DONE]"));
        let (usage_chunk, chunks) = rest.split_last().unwrap();
        assert_eq!(usage_chunk["choices"], json!([]));
        assert_eq!(
            usage_chunk["usage"],
            json!({"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16})
        );
        let mut texts = vec![String::new(); 3];
        let mut finishes = vec![Vec::new(); 3];
        for c in chunks {
            assert_eq!(c["usage"], Value::Null, "{c}");
            let [choice] = c["choices"].as_array().unwrap().as_slice() else {
                panic!("one choice per chunk: {c}");
            };
            let i = choice["index"].as_u64().unwrap() as usize;
            texts[i].push_str(
                choice
                    .pointer(text_of)
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            );
            if !choice["finish_reason"].is_null() {
                finishes[i].push(choice["finish_reason"].clone());
            }
        }
        assert_eq!(texts, ["Hello world"; 3], "{path}");
        assert_eq!(finishes, vec![vec![json!("stop")]; 3], "{path}");
    }
}

/// `logit_bias` keys are token ids, values `-100..=100`; anything else is refused naming it.
#[tokio::test]
async fn logit_bias_maps_and_bad_entries_are_400() {
    let base = json!({"model": SMOL, "messages": user("hi")});
    let with = |extra: Value| {
        let mut b = base.clone();
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    check_chat_options(
        with(json!({"logit_bias": {"50256": -100, "7": 2.5}})),
        GenerationOptions {
            logit_bias: vec![(7, 2.5), (50256, -100.0)],
            ..openai_defaults()
        },
    )
    .await;
    for (bias, message) in [
        (
            json!({"x": 1}),
            r#"logit_bias: "x" is not a token id (a non-negative integer)"#,
        ),
        (
            json!({"-1": 1}),
            r#"logit_bias: "-1" is not a token id (a non-negative integer)"#,
        ),
        (
            json!({"5": 101}),
            "logit_bias: the bias of token 5 must be between -100 and 100 (got 101)",
        ),
        (
            json!({"5": -100.5}),
            "logit_bias: the bias of token 5 must be between -100 and 100 (got -100.5)",
        ),
    ] {
        check(
            post(
                "/v1/completions",
                json!({"model": SMOL, "prompt": "x", "logit_bias": bias}),
            )
            .status(400)
            .json(openai_error(
                message,
                "invalid_request_error",
                json!("logit_bias"),
                Value::Null,
            )),
        )
        .await;
    }
}

/// Truncation is opt-in: vLLM's `truncate_prompt_tokens` on OpenAI routes, `truncate` on
/// Ollama's; without them an over-long prompt is the model service's 400.
#[tokio::test]
async fn truncation_is_opt_in_on_both_families() {
    use hearth_llm::Truncation;
    check_chat_options(
        json!({"model": SMOL, "messages": user("hi"), "truncate_prompt_tokens": 64}),
        GenerationOptions {
            truncate: Truncation::KeepLastTokens(64),
            ..openai_defaults()
        },
    )
    .await;
    check(
        post(
            "/v1/completions",
            json!({"model": SMOL, "prompt": "x", "truncate_prompt_tokens": 0}),
        )
        .status(400)
        .json(openai_error(
            "truncate_prompt_tokens: must be at least 1 (got 0)",
            "invalid_request_error",
            json!("truncate_prompt_tokens"),
            Value::Null,
        )),
    )
    .await;
    let server = serve().await;
    for (truncate, want) in [
        (json!(true), Truncation::Fit),
        (json!(false), Truncation::Refuse),
        (Value::Null, Truncation::Refuse),
    ] {
        for path in ["/api/chat", "/api/generate"] {
            let body = json!({"model": SMOL, "messages": user("hi"), "prompt": "hi",
                              "stream": false, "truncate": truncate});
            let reply = send(server.addr, "POST", path, Some(body.to_string().as_bytes())).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            let got = server.models.last_chat.lock().unwrap().clone().unwrap();
            assert_eq!(got.options.truncate, want, "{path} {truncate}");
        }
    }
}

#[tokio::test]
async fn response_formats_map_to_output_formats() {
    let server = serve().await;
    let send_ok = async |path: &'static str, body: Value| {
        let reply = send(server.addr, "POST", path, Some(body.to_string().as_bytes())).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    };
    let chat_format = || {
        let got = server.models.last_chat.lock().unwrap().clone().unwrap();
        got.options.format
    };
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    for (format, want) in [
        (json!({"type": "text"}), None),
        (
            json!({"type": "json_object"}),
            Some(OutputFormat::JsonObject),
        ),
        (
            json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": true}}),
            Some(OutputFormat::JsonSchema(schema.clone())),
        ),
    ] {
        let body = json!({"model": SMOL, "messages": user("hi"), "response_format": format});
        send_ok("/v1/chat/completions", body).await;
        assert_eq!(chat_format(), want);
    }
    for (format, want) in [
        (json!(""), None),
        (Value::Null, None),
        (json!("json"), Some(OutputFormat::JsonObject)),
        (
            schema.clone(),
            Some(OutputFormat::JsonSchema(schema.clone())),
        ),
    ] {
        let body =
            json!({"model": SMOL, "messages": user("hi"), "format": format, "stream": false});
        send_ok("/api/chat", body).await;
        assert_eq!(chat_format(), want);
        let body = json!({"model": SMOL, "prompt": "hi", "format": format, "stream": false});
        send_ok("/api/generate", body).await;
        assert_eq!(chat_format(), want);
    }
}

#[tokio::test]
async fn bad_response_formats_are_400_naming_the_field() {
    let openai = |format: Value, message: &str| {
        post(
            "/v1/chat/completions",
            json!({"model": SMOL, "messages": user("hi"), "response_format": format}),
        )
        .status(400)
        .json(openai_error(
            message,
            "invalid_request_error",
            json!("response_format"),
            Value::Null,
        ))
    };
    check(openai(
        json!({"type": "yaml"}),
        "response_format: `yaml` is not one of*",
    ))
    .await;
    check(openai(
        json!({"type": "json_schema", "json_schema": {"name": "x"}}),
        "response_format: `json_schema` needs `json_schema.schema`",
    ))
    .await;
    check(
        post(
            "/api/chat",
            json!({"model": SMOL, "messages": user("hi"), "format": "yaml"}),
        )
        .status(400)
        .json(json!({"error": "format: must be \"json\" or a JSON schema object (got \"yaml\")"})),
    )
    .await;
}

#[tokio::test]
async fn oversized_body_is_413() {
    let server = serve().await;
    let big = json!({"model": SMOL, "messages": user(&"x".repeat(LIMIT))}).to_string();
    let reply = send(
        server.addr,
        "POST",
        "/v1/chat/completions",
        Some(big.as_bytes()),
    )
    .await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        body,
        openai_error(
            &format!("request body is larger than the limit of {LIMIT} bytes"),
            "invalid_request_error",
            Value::Null,
            json!("request_too_large"),
        )
    );
    let reply = send(server.addr, "POST", "/api/generate", Some(big.as_bytes())).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(
        serde_json::from_str::<Value>(&reply.body).unwrap(),
        json!({"error": format!("request body is larger than the limit of {LIMIT} bytes")})
    );
}

#[tokio::test]
async fn busy_is_429_on_openai_and_503_on_ollama_with_retry_after() {
    let busy = LlmError::Busy("2 requests are queued".into()).to_string();
    let body = json!({"model": "busy", "messages": user("hi")});
    check(
        post("/v1/chat/completions", body.clone())
            .status(429)
            .headers(&[("retry-after", "1")])
            .json(openai_error(
                &busy,
                "server_busy_error",
                Value::Null,
                json!("server_busy"),
            )),
    )
    .await;
    check(
        post("/api/chat", body)
            .status(503)
            .headers(&[("retry-after", "1")])
            .json(json!({"error": busy})),
    )
    .await;
    check(
        post("/api/generate", json!({"model": "busy", "prompt": "x"}))
            .status(503)
            .headers(&[("retry-after", "1")])
            .json(json!({"error": busy})),
    )
    .await;
}

#[tokio::test]
async fn internal_errors_hide_their_details() {
    let body = json!({"model": "broken", "messages": user("hi")});
    let reply = check(
        post("/v1/chat/completions", body.clone())
            .status(500)
            .json(openai_error(
                "internal error; the server log has the details",
                "server_error",
                Value::Null,
                Value::Null,
            )),
    )
    .await;
    assert!(!reply.body.contains("deadbeef"));
    check(
        post("/api/chat", body)
            .status(500)
            .json(json!({"error": "internal error; the server log has the details"})),
    )
    .await;
}

// ---------- disconnects ----------

async fn check_disconnect_cancels(path: &str, body: Value, needle: &str) {
    let server = serve().await;
    let cancelled = server.models.cancelled.clone();
    let stream = open_stream(server.addr, path, body.to_string().as_bytes(), needle).await;
    drop(stream);
    // A guard against hanging forever, not a timing expectation.
    tokio::time::timeout(Duration::from_secs(60), cancelled.notified())
        .await
        .unwrap_or_else(|_| {
            panic!("{path}: the generation was not cancelled after the client left")
        });
    let metrics = send(server.addr, "GET", "/metrics", None).await;
    assert!(
        metrics.body.contains("\nhearth_queue_depth 0\n"),
        "{}",
        metrics.body
    );
}

#[tokio::test]
async fn client_disconnect_cancels_generation() {
    let chat = json!({"model": "endless", "messages": user("hi"), "stream": true});
    check_disconnect_cancels("/v1/chat/completions", chat.clone(), "tick").await;
    check_disconnect_cancels("/api/chat", chat, "tick").await;
    check_disconnect_cancels(
        "/api/generate",
        json!({"model": "endless", "prompt": "hi"}),
        "tick",
    )
    .await;
    check_disconnect_cancels(
        "/v1/completions",
        json!({"model": "endless", "prompt": "hi", "stream": true}),
        "tick",
    )
    .await;
}

/// A client that leaves while a non-streaming answer is being collected cancels it too (hyper
/// closes a connection whose client has closed its side, dropping the handler).
async fn check_disconnect_cancels_collect(path: &str, body: Value) {
    let server = serve().await;
    let (started, cancelled) = (
        server.models.started.clone(),
        server.models.cancelled.clone(),
    );
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let bytes = http::request_bytes(server.addr, "POST", path, Some(body.to_string().as_bytes()));
    tokio::io::AsyncWriteExt::write_all(&mut stream, &bytes)
        .await
        .unwrap();
    started.notified().await;
    drop(stream);
    tokio::time::timeout(Duration::from_secs(60), cancelled.notified())
        .await
        .unwrap_or_else(|_| {
            panic!("{path}: the generation was not cancelled after the client left")
        });
}

#[tokio::test]
async fn client_disconnect_cancels_non_streaming_generation() {
    let chat = json!({"model": "endless", "messages": user("hi"), "stream": false});
    check_disconnect_cancels_collect("/v1/chat/completions", chat.clone()).await;
    check_disconnect_cancels_collect("/api/chat", chat).await;
}

// ---------- model listings ----------

fn details() -> Value {
    json!({"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
           "parameter_size": "135M", "quantization_level": "Q4_1"})
}

#[tokio::test]
async fn model_listings() {
    let digest = "ab".repeat(32);
    let openai_model = |id: &str| json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "hearth"});
    check(
        get("/v1/models")
            .json(json!({"object": "list", "data": [openai_model(SMOL), openai_model(HF)]})),
    )
    .await;
    check(get("/v1/models/hf.co/org/repo:Q4_1").json(openai_model(HF))).await;
    check(get("/v1/models/smollm2:135m").json(openai_model(SMOL))).await;
    let tag = |name: &str| {
        json!({"name": name, "model": name, "modified_at": "2023-11-14T22:13:20Z", "size": 100_000,
               "digest": digest, "details": details()})
    };
    check(get("/api/tags").json(json!({"models": [tag(SMOL), tag(HF)]}))).await;
    check(get("/api/ps").json(json!({"models": [{
        "name": SMOL, "model": SMOL, "size": 120_000_000, "digest": digest, "details": details(),
        "expires_at": "2027-01-15T08:00:00Z", "size_vram": 0, "context_length": 8192
    }]})))
    .await;
    let show = json!({
        "license": "apache-2.0",
        "modelfile": "# Modelfile generated by Hearth\nFROM smollm2:135m\n*",
        "parameters": "",
        "template": "{% for m in messages %}{{ m.content }}{% endfor %}",
        "details": details(),
        "model_info": {"general.architecture": "llama", "general.name": "SmolLM2 135M",
                       "llama.context_length": 8192, "llama.rope.freq_base": 100000.5},
        "capabilities": ["completion"],
        "modified_at": "2023-11-14T22:13:20Z"
    });
    check(post("/api/show", json!({"model": SMOL})).json(show.clone())).await;
    check(post("/api/show", json!({"name": SMOL})).json(show)).await;
    check(
        post("/api/show", json!({}))
            .status(400)
            .json(json!({"error": "model: a model name is required"})),
    )
    .await;
    check(get("/api/version").json(json!({"version": "0.0.0-test"}))).await;
    check(get("/healthz").text("ok", "text/plain; charset=utf-8")).await;
}

// ---------- metrics ----------

fn is_metric_line(line: &str) -> bool {
    if let Some(rest) = line.strip_prefix("# HELP ") {
        return rest
            .split_once(' ')
            .is_some_and(|(name, help)| name.starts_with("hearth_") && !help.is_empty());
    }
    if let Some(rest) = line.strip_prefix("# TYPE ") {
        return rest.split_once(' ').is_some_and(|(name, t)| {
            name.starts_with("hearth_") && ["counter", "gauge", "histogram"].contains(&t)
        });
    }
    let Some((series, value)) = line.rsplit_once(' ') else {
        return false;
    };
    let value_ok = value.parse::<f64>().is_ok() || value == "+Inf";
    let name_end = series.find('{').unwrap_or(series.len());
    let name = &series[..name_end];
    let labels = &series[name_end..];
    let labels_ok = labels.is_empty()
        || (labels.starts_with('{')
            && labels.ends_with('}')
            && labels[1..labels.len() - 1].split(',').all(|kv| {
                kv.split_once('=').is_some_and(|(k, v)| {
                    !k.is_empty()
                        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && v.len() >= 2
                        && v.starts_with('"')
                        && v.ends_with('"')
                })
            }));
    value_ok
        && labels_ok
        && name.starts_with("hearth_")
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[tokio::test]
async fn metrics_text_parses_and_counts() {
    let server = serve().await;
    let chat = json!({"model": SMOL, "messages": user("hi")}).to_string();
    send(
        server.addr,
        "POST",
        "/v1/chat/completions",
        Some(chat.as_bytes()),
    )
    .await;
    send(server.addr, "POST", "/api/chat", Some(chat.as_bytes())).await;
    send(server.addr, "GET", "/v1/models/hf.co/org/repo:Q4_1", None).await;
    send(server.addr, "GET", "/nowhere", None).await;
    let reply = send(server.addr, "GET", "/metrics", None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    for line in reply.body.lines() {
        assert!(is_metric_line(line), "not a metric line: {line:?}");
    }
    for expect in [
        "hearth_http_requests_total{route=\"/v1/chat/completions\",method=\"POST\",status=\"200\"} 1",
        "hearth_http_requests_total{route=\"/api/chat\",method=\"POST\",status=\"200\"} 1",
        "hearth_http_requests_total{route=\"/v1/models/{*id}\",method=\"GET\",status=\"200\"} 1",
        "hearth_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1",
        "hearth_http_request_duration_seconds_count{route=\"/api/chat\"} 1",
        "hearth_http_request_duration_seconds_bucket{route=\"/api/chat\",le=\"+Inf\"} 1",
        "# TYPE hearth_http_request_duration_seconds histogram",
        "hearth_prompt_tokens_total 14",
        "hearth_generated_tokens_total 6",
        // 3 tokens in 3 ms: 1000 tokens/s, twice.
        "hearth_generation_tokens_per_second_bucket{le=\"500\"} 0",
        "hearth_generation_tokens_per_second_bucket{le=\"1000\"} 2",
        "hearth_generation_tokens_per_second_count 2",
        "hearth_queue_depth 0",
        "hearth_loaded_models 1",
        "# TYPE hearth_loaded_models gauge",
        "# TYPE hearth_generated_tokens_total counter",
    ] {
        assert!(
            reply.body.lines().any(|l| l == expect),
            "missing {expect:?} in\n{}",
            reply.body
        );
    }
}

// ---------- embeddings ----------

fn last_embed(server: &http::Server) -> hearth_llm::EmbedRequest {
    server.models.last_embed.lock().unwrap().take().unwrap()
}

fn embedding_data(vectors: &[Value]) -> Value {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v}))
        .collect();
    json!(data)
}

/// The shape of OpenAI's documented answer; base64 is little-endian f32 bytes (expected values
/// from Python's `base64.b64encode(struct.pack('<3f', i, 0.5, -0.25))`).
#[tokio::test]
async fn openai_embeddings_float_and_base64() {
    let server = serve().await;
    for (format, vectors) in [
        (None, [json!([0.0, 0.5, -0.25]), json!([1.0, 0.5, -0.25])]),
        (
            Some("float"),
            [json!([0.0, 0.5, -0.25]), json!([1.0, 0.5, -0.25])],
        ),
        (
            Some("base64"),
            [json!("AAAAAAAAAD8AAIC+"), json!("AACAPwAAAD8AAIC+")],
        ),
    ] {
        let mut body = json!({"model": EMBED, "input": ["a", "b"]});
        if let Some(f) = format {
            body["encoding_format"] = json!(f);
        }
        check_on(
            &server,
            post("/v1/embeddings", body).json(json!({
                "object": "list", "data": embedding_data(&vectors), "model": EMBED,
                "usage": {"prompt_tokens": 10, "total_tokens": 10}
            })),
        )
        .await;
    }
    let got = last_embed(&server);
    assert_eq!(
        got.inputs,
        hearth_llm::EmbedInput::Texts(vec!["a".into(), "b".into()])
    );
    assert!(!got.truncate, "OpenAI refuses over-long input");
    assert_eq!((got.dimensions, got.keep_alive), (None, None));
}

#[tokio::test]
async fn openai_embedding_inputs_map_to_embed_inputs() {
    use hearth_llm::EmbedInput::{Texts, Tokens};
    let server = serve().await;
    for (input, expect) in [
        (json!("one"), Texts(vec!["one".into()])),
        (json!([101, 7592, 102]), Tokens(vec![vec![101, 7592, 102]])),
        (
            json!([[101], [7592, 2088]]),
            Tokens(vec![vec![101], vec![7592, 2088]]),
        ),
    ] {
        let reply = run(
            &server,
            &post(
                "/v1/embeddings",
                json!({"model": EMBED, "input": input, "dimensions": 2, "user": "ann"}),
            ),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let got = last_embed(&server);
        assert_eq!(got.inputs, expect);
        assert_eq!(got.dimensions, Some(2));
        assert_eq!(got.user, "ann");
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["data"][0]["embedding"], json!([0.0, 0.5]));
    }
}

#[tokio::test]
async fn embedding_errors_use_the_one_mapping() {
    let server = serve().await;
    let invalid = |message: &str, param: Value| {
        openai_error(message, "invalid_request_error", param, Value::Null)
    };
    for (body, status, expect) in [
        (
            json!({"model": EMBED, "input": "x", "encoding_format": "hex"}),
            400,
            invalid(
                "encoding_format: \"hex\" is not supported*",
                json!("encoding_format"),
            ),
        ),
        (
            json!({"model": EMBED, "input": "x", "dimensions": 0}),
            400,
            invalid(
                "dimensions: must be at least 1 (got 0)",
                json!("dimensions"),
            ),
        ),
        (
            json!({"model": EMBED, "input": []}),
            400,
            invalid("input is empty", Value::Null),
        ),
        (
            json!({"model": SMOL, "input": "x"}),
            400,
            invalid("`smollm2:135m` is not an embedding model", Value::Null),
        ),
        (
            json!({"model": EMBED, "input": [-1]}),
            400,
            invalid(
                "invalid JSON body: input: data did not match*",
                json!("input"),
            ),
        ),
        (
            json!({"model": EMBED}),
            400,
            invalid("invalid JSON body: missing field `input`*", Value::Null),
        ),
        (
            json!({"model": "nope", "input": "x"}),
            404,
            openai_error(
                &LlmError::ModelNotFound("nope".into()).to_string(),
                "invalid_request_error",
                json!("model"),
                json!("model_not_found"),
            ),
        ),
    ] {
        check_on(
            &server,
            post("/v1/embeddings", body).status(status).json(expect),
        )
        .await;
    }
    check_on(
        &server,
        post("/api/embed", json!({"model": SMOL, "input": "x"}))
            .status(400)
            .json(json!({"error": "`smollm2:135m` is not an embedding model"})),
    )
    .await;
    check_on(
        &server,
        post("/api/embed", json!({"model": "busy", "input": "x"}))
            .status(503)
            .headers(&[("retry-after", "1")])
            .json(json!({"error": "busy: 2 requests are queued"})),
    )
    .await;
}

#[tokio::test]
async fn ollama_embed_truncates_by_default_and_reports_metrics() {
    let server = serve().await;
    check_on(
        &server,
        post("/api/embed", json!({"model": EMBED, "input": ["a", "b"], "keep_alive": "1m"})).json(
            json!({"model": EMBED, "embeddings": [[0.0, 0.5, -0.25], [1.0, 0.5, -0.25]],
                   "total_duration": 10_000_000, "load_duration": 1_000_000, "prompt_eval_count": 10}),
        ),
    )
    .await;
    let got = last_embed(&server);
    assert!(got.truncate);
    assert_eq!(got.keep_alive, Some(Duration::from_secs(60)));
    check_on(
        &server,
        post(
            "/api/embed",
            json!({"model": EMBED, "input": "a", "truncate": false, "dimensions": 1}),
        )
        .json(
            json!({"model": EMBED, "embeddings": [[0.0]], "total_duration": 10_000_000,
                     "load_duration": 1_000_000, "prompt_eval_count": 5}),
        ),
    )
    .await;
    let got = last_embed(&server);
    assert_eq!(got.inputs, hearth_llm::EmbedInput::Texts(vec!["a".into()]));
    assert!(!got.truncate);
    assert_eq!(got.dimensions, Some(1));
}

/// As in Ollama: an empty input only loads the model; the legacy route answers one embedding.
#[tokio::test]
async fn ollama_empty_embed_loads_and_the_legacy_route_answers_one_vector() {
    let server = serve().await;
    for input in [json!(""), json!([])] {
        let reply = run(
            &server,
            &post("/api/embed", json!({"model": EMBED, "input": input})),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["embeddings"], json!([]), "{body}");
        assert_eq!(body["prompt_eval_count"], 0, "{body}");
    }
    assert!(
        server.models.last_embed.lock().unwrap().is_none(),
        "nothing embedded"
    );
    check_on(
        &server,
        post(
            "/api/embeddings",
            json!({"model": EMBED, "prompt": "Here is an article about llamas..."}),
        )
        .json(json!({"embedding": [0.0, 0.5, -0.25]})),
    )
    .await;
    assert!(last_embed(&server).truncate);
    check_on(
        &server,
        post("/api/embeddings", json!({"model": EMBED, "prompt": ""}))
            .json(json!({"embedding": []})),
    )
    .await;
    check_on(
        &server,
        post("/api/embed", json!({"model": "nope", "input": ""}))
            .status(404)
            .json(json!({"error": "model `nope` not found*"})),
    )
    .await;
}
