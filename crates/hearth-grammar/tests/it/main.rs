//! Constrained generation through the real engine and the default model (`HEARTH_TEST_MODEL`):
//! under a schema, tool definitions and "any JSON object", greedily and sampled with several
//! seeds, with room to spare and with barely enough tokens, every output parses and validates.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_engine::{
    EngineConfig, EngineHandle, Event, EventSink, FinishReason, Finished, GenerateRequest,
    SamplingParams, TokenConstraint,
};
use hearth_gguf::GgufFile;
use hearth_grammar::{Grammar, Matcher, Vocab};
use hearth_testkit::test_model;
use serde_json::{Value, json};

/// What a finished request reports: its text, its token count, how it ended.
type Reply = (String, usize, Result<Finished, String>);

struct Collect {
    text: String,
    tokens: usize,
    done: Option<mpsc::Sender<Reply>>,
}

impl EventSink for Collect {
    fn send(&mut self, event: Event) -> bool {
        let end = match event {
            Event::Token { text, .. } => {
                self.text.push_str(&text);
                self.tokens += 1;
                None
            }
            Event::Text(t) => {
                self.text.push_str(&t);
                None
            }
            Event::Done(f) => Some(Ok(f)),
            Event::Error(e) => Some(Err(e)),
        };
        if let Some(r) = end
            && let Some(tx) = self.done.take()
        {
            let _ = tx.send((std::mem::take(&mut self.text), self.tokens, r));
        }
        true
    }
    fn is_closed(&self) -> bool {
        self.done.is_none()
    }
}

/// Times a constraint's `restrict` calls.
struct Timed {
    inner: Matcher,
    spent: Arc<Mutex<(Duration, usize)>>,
}

impl TokenConstraint for Timed {
    fn restrict(&mut self, allowed: &mut [bool], remaining: usize) {
        let t = Instant::now();
        self.inner.restrict(allowed, remaining);
        let mut s = self.spent.lock().unwrap();
        s.0 += t.elapsed();
        s.1 += 1;
    }
    fn accept(&mut self, token: u32) -> Result<(), String> {
        self.inner.accept(token)
    }
    fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }
}

struct Setup {
    engine: EngineHandle,
    vocab: Arc<Vocab>,
}

fn setup() -> Option<Setup> {
    let file = GgufFile::open(&test_model()?).unwrap();
    let engine = EngineHandle::start(&file, EngineConfig::default()).unwrap();
    let vocab = Arc::new(Vocab::from_tokenizer(engine.tokenizer()));
    Some(Setup { engine, vocab })
}

fn prompt(e: &EngineHandle, system: &str, user: &str) -> Vec<u32> {
    e.tokenizer().encode(
        &format!(
            "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
        ),
        false,
        true,
    )
}

struct Outcome {
    text: String,
    tokens: usize,
    result: Result<Finished, String>,
}

fn generate(
    e: &EngineHandle,
    prompt: Vec<u32>,
    sampling: SamplingParams,
    max_tokens: usize,
    constraint: Option<Box<dyn TokenConstraint>>,
) -> mpsc::Receiver<Reply> {
    let (tx, rx) = mpsc::channel();
    let req = GenerateRequest {
        prompt,
        sampling,
        max_tokens: Some(max_tokens),
        stop: Vec::new(),
        user: String::new(),
        deadline: None,
        top_logprobs: None,
        constraint,
    };
    e.generate(
        req,
        Box::new(Collect {
            text: String::new(),
            tokens: 0,
            done: Some(tx),
        }),
    )
    .unwrap();
    rx
}

fn wait(rx: &mpsc::Receiver<Reply>) -> Outcome {
    let (text, tokens, result) = rx.recv_timeout(Duration::from_secs(600)).unwrap();
    Outcome {
        text,
        tokens,
        result,
    }
}

fn samplings() -> Vec<SamplingParams> {
    let mut out = vec![SamplingParams::greedy()];
    for seed in [1, 2, 3] {
        out.push(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: Some(seed),
            ..SamplingParams::default()
        });
    }
    out
}

/// Generate under `grammar` with every sampling setting and each token budget; hand each
/// output to `check`.
fn run_all(
    s: &Setup,
    grammar: &Arc<Grammar>,
    system: &str,
    user: &str,
    budgets: &[usize],
    check: &dyn Fn(&str),
) {
    let p = prompt(&s.engine, system, user);
    // All in flight at once: constrained sequences batched with each other.
    let mut pending = Vec::new();
    for &max in budgets {
        for sampling in samplings() {
            let m = Matcher::new(grammar.clone(), s.vocab.clone());
            pending.push((
                max,
                sampling.seed,
                generate(&s.engine, p.clone(), sampling, max, Some(Box::new(m))),
            ));
        }
    }
    for (max, seed, rx) in pending {
        let out = wait(&rx);
        let f = out
            .result
            .unwrap_or_else(|e| panic!("max {max} seed {seed:?}: {e} after {:?}", out.text));
        assert!(out.tokens <= max);
        if f.reason == FinishReason::Length {
            assert_eq!(out.tokens, max, "{:?}", out.text);
        }
        eprintln!("max_tokens {max}, seed {seed:?}: {}", out.text);
        assert!(
            grammar.matches(out.text.as_bytes()),
            "max {max} seed {seed:?}: {:?}",
            out.text
        );
        check(&out.text);
    }
}

/// A small validator for the schemas below (independent of the grammar code).
fn valid(schema: &Value, v: &Value) -> bool {
    let s = schema.as_object().unwrap();
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        return e.contains(v);
    }
    let ok_type = match s.get("type").and_then(Value::as_str) {
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        _ => true,
    };
    if !ok_type {
        return false;
    }
    if let (Some(o), Some(props)) = (
        v.as_object(),
        s.get("properties").and_then(Value::as_object),
    ) {
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !o.contains_key(r.as_str().unwrap()) {
                return false;
            }
        }
        for (k, x) in o {
            match props.get(k) {
                Some(p) if valid(p, x) => {}
                _ => return false,
            }
        }
    }
    if let (Some(a), Some(items)) = (v.as_array(), s.get("items")) {
        let n = a.len() as u64;
        if s.get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
            || s.get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| n > m)
        {
            return false;
        }
        if !a.iter().all(|x| valid(items, x)) {
            return false;
        }
    }
    true
}

fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "age": {"type": "integer"},
            "name": {"type": "string", "maxLength": 40},
            "nickname": {"type": "string"},
            "pets": {
                "type": "array",
                "maxItems": 3,
                "items": {
                    "type": "object",
                    "properties": {
                        "kind": {"enum": ["cat", "dog", "fish"]},
                        "legs": {"type": "integer"}
                    },
                    "required": ["kind", "legs"]
                }
            }
        },
        "required": ["age", "name", "pets"]
    })
}

#[test]
fn outputs_follow_a_schema() {
    let Some(s) = setup() else { return };
    let schema = person_schema();
    let g = Arc::new(Grammar::json_schema(&schema).unwrap());
    let min = g.min_len_bytes();
    run_all(
        &s,
        &g,
        "Answer in JSON.",
        "Describe a person called Ann, 31, who has a cat and two dogs.",
        &[200, min, min + 4],
        &|text| {
            let v: Value = serde_json::from_str(text).unwrap();
            assert!(valid(&schema, &v), "{v}");
        },
    );
}

#[test]
fn outputs_are_tool_calls() {
    let Some(s) = setup() else { return };
    let weather = json!({
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"enum": ["celsius", "fahrenheit"]}
        },
        "required": ["city", "unit"]
    });
    let time = json!({
        "type": "object",
        "properties": {"timezone": {"type": "string"}},
        "required": ["timezone"]
    });
    let tools = vec![
        ("get_weather".to_string(), weather.clone()),
        ("get_time".to_string(), time.clone()),
    ];
    let g = Arc::new(Grammar::tool_calls(&tools, 1, 2).unwrap());
    let min = g.min_len_bytes();
    run_all(
        &s,
        &g,
        "You may call tools: get_weather(city, unit), get_time(timezone). Call them as <tool_call>\n{\"name\": ..., \"arguments\": ...}\n</tool_call>.",
        "What is the weather in Paris?",
        &[160, min],
        &|text| {
            let calls: Vec<&str> = text.split("<tool_call>\n").skip(1).collect();
            assert!(!calls.is_empty() && calls.len() <= 2, "{text:?}");
            for c in calls {
                let body = c.trim_end().strip_suffix("\n</tool_call>").unwrap();
                let v: Value = serde_json::from_str(body).unwrap();
                let params = match v["name"].as_str() {
                    Some("get_weather") => &weather,
                    Some("get_time") => &time,
                    other => panic!("unknown tool {other:?}"),
                };
                assert!(valid(params, &v["arguments"]), "{v}");
            }
        },
    );
}

#[test]
fn outputs_are_json_objects() {
    let Some(s) = setup() else { return };
    let g = Arc::new(Grammar::json_object());
    run_all(
        &s,
        &g,
        "You answer in JSON.",
        "List three colours and their hex codes.",
        &[120, 12, 2],
        &|text| {
            let v: Value = serde_json::from_str(text).unwrap();
            assert!(v.is_object(), "{v}");
        },
    );
}

/// Figures, printed (no thresholds): mask time per token for the model's vocabulary, and
/// decode speed constrained against unconstrained in the same run. Run with `--nocapture`.
#[test]
fn mask_time_and_decode_speed() {
    let Some(s) = setup() else { return };
    let p = prompt(
        &s.engine,
        "You answer in JSON.",
        "Describe three famous painters with their birth years and best-known works.",
    );
    let t = Instant::now();
    let built = Vocab::from_tokenizer(s.engine.tokenizer());
    let build_ms = t.elapsed().as_secs_f64() * 1000.0;
    let n = 128;
    let speed = |o: &Outcome| {
        let f = o.result.as_ref().unwrap();
        f.completion_tokens as f64 / f.eval.as_secs_f64()
    };
    let free = wait(&generate(
        &s.engine,
        p.clone(),
        SamplingParams::greedy(),
        n,
        None,
    ));
    let mut report = vec![
        format!("vocab of {} tokens built in {build_ms:.1} ms", built.len()),
        format!("unconstrained: {:.1} tok/s", speed(&free)),
    ];
    let schema = person_schema();
    for (name, g) in [
        ("json_object", Grammar::json_object()),
        ("schema", Grammar::json_schema(&schema).unwrap()),
    ] {
        let spent = Arc::new(Mutex::new((Duration::ZERO, 0)));
        let m = Timed {
            inner: Matcher::new(Arc::new(g), s.vocab.clone()),
            spent: spent.clone(),
        };
        let out = wait(&generate(
            &s.engine,
            p.clone(),
            SamplingParams::greedy(),
            n,
            Some(Box::new(m)),
        ));
        let (t, calls) = *spent.lock().unwrap();
        report.push(format!(
            "{name}: {:.1} tok/s, mask {:.3} ms/token over {calls} tokens ({} tokens out)",
            speed(&out),
            t.as_secs_f64() * 1000.0 / calls.max(1) as f64,
            out.tokens
        ));
    }
    // The worst case: a fresh state every token (no cache), inside a string and at a value.
    let g = Arc::new(Grammar::json_object());
    for (label, prefix) in [
        ("string content", "{\"a\": \"xy"),
        ("value start", "{\"a\": "),
    ] {
        let mut m = Matcher::new(g.clone(), s.vocab.clone());
        for id in s.engine.tokenizer().encode(prefix, false, false) {
            m.accept(id).unwrap();
        }
        let mut allowed = vec![true; s.vocab.len()];
        let reps = 20;
        let t = Instant::now();
        for _ in 0..reps {
            let mut fresh = Matcher::new(g.clone(), s.vocab.clone());
            for id in s.engine.tokenizer().encode(prefix, false, false) {
                fresh.accept(id).unwrap();
            }
            allowed.fill(true);
            fresh.restrict(&mut allowed, 1000);
        }
        let allowed_n = allowed.iter().filter(|a| **a).count();
        report.push(format!(
            "uncached mask at {label}: {:.3} ms ({allowed_n} of {} allowed)",
            t.elapsed().as_secs_f64() * 1000.0 / reps as f64,
            s.vocab.len()
        ));
    }
    for line in report {
        eprintln!("{line}");
    }
}
