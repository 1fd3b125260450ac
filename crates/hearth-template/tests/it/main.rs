//! Integration tests: renders compared with jinja2 (HF-style) renders, the real SmolLM2 GGUF template,
//! and hostile templates.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail loudly by design"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use hearth_template::{ChatTemplate, TemplateError};
use serde_json::{Value, json};

/// `strftime_now` instant the reference generator pinned (tests/data/generate.py FIXED_NOW).
const FIXED_NOW: i64 = 1_721_952_000 + 3 * 3600 + 4 * 60 + 5;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden")
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// What a reference row expects.
enum Expect<'a> {
    Prompt(&'a str),
    /// `raise_exception(msg)` with this message.
    Raised(&'a str),
    /// jinja2 failed another way (e.g. a TypeError); we must fail too.
    Fails,
}

/// Renders `conversation` (`messages`, optional `tools`) with the row's `add_generation_prompt`.
fn check(template: &ChatTemplate, conversation: &Value, row: &Value, label: &str) {
    let expect = expectation(row);
    let messages = conversation["messages"].as_array().unwrap();
    let agp = row["add_generation_prompt"].as_bool().unwrap();
    let tools = conversation.get("tools").filter(|t| !t.is_null());
    let got = template.render(messages, agp, tools);
    match (expect, got) {
        (Expect::Prompt(want), Ok(got)) => {
            assert_eq!(got, want, "{label}: prompt differs from jinja2's")
        }
        (Expect::Raised(want), Err(TemplateError::Raised(msg))) => {
            assert_eq!(msg, want, "{label}: raise_exception message")
        }
        (Expect::Fails, Err(_)) => {}
        (_, got) => panic!("{label}: unexpected result {got:?}"),
    }
}

fn expectation(row: &Value) -> Expect<'_> {
    if let Some(p) = row.get("prompt").and_then(Value::as_str) {
        Expect::Prompt(p)
    } else if let Some(e) = row.get("error").and_then(Value::as_str) {
        Expect::Raised(e)
    } else {
        Expect::Fails
    }
}

#[test]
fn reference_templates_match_jinja2() {
    let rows = read_jsonl(&data_dir().join("golden.jsonl"));
    let conversations: std::collections::HashMap<&str, &Value> = rows
        .iter()
        .filter_map(|r| Some((r.get("conversation")?.as_str()?, r)))
        .collect();
    let mut checked = 0;
    for row in rows.iter().filter(|r| r.get("template").is_some()) {
        let name = row["template"].as_str().unwrap();
        let file = data_dir().join(format!("templates/{name}.jinja"));
        let source = std::fs::read_to_string(&file).unwrap();
        let template = ChatTemplate::new(
            &source,
            row["bos_token"].as_str().unwrap(),
            row["eos_token"].as_str().unwrap(),
        )
        .unwrap()
        .with_fixed_time(FIXED_NOW);
        let label = format!(
            "{name}/{} agp={}",
            row["case"].as_str().unwrap(),
            row["add_generation_prompt"]
        );
        let conversation = conversations[row["case"].as_str().unwrap()];
        check(&template, conversation, row, &label);
        checked += 1;
    }
    assert!(checked >= 150, "only {checked} reference rows");
}

#[test]
fn strftime_matches_python() {
    let rows = read_jsonl(&data_dir().join("golden.jsonl"));
    let mut checked = 0;
    for row in rows.iter().filter(|r| r.get("strftime").is_some()) {
        let fmt = row["strftime"].as_str().unwrap();
        let unix = row["unix"].as_i64().unwrap();
        let source = format!(
            "{{{{ strftime_now({}) }}}}",
            serde_json::to_string(fmt).unwrap()
        );
        let template = ChatTemplate::new(&source, "", "")
            .unwrap()
            .with_fixed_time(unix);
        let got = template.render(&[], false, None).unwrap();
        assert_eq!(
            got,
            row["expect"].as_str().unwrap(),
            "strftime({fmt:?}) at {unix}"
        );
        checked += 1;
    }
    assert!(checked >= 50, "only {checked} strftime rows");
}

/// The SmolLM2 GGUF's own template against jinja2's renders of it (shared golden data).
#[test]
fn smollm2_gguf_template_matches_jinja2() {
    let Ok(model) = std::env::var("HEARTH_TEST_MODEL") else {
        println!("skipped: HEARTH_TEST_MODEL is not set");
        return;
    };
    let gguf = hearth_gguf::GgufFile::open(Path::new(&model)).unwrap();
    let source = gguf.str("tokenizer.chat_template").unwrap();
    let tokens = gguf
        .array("tokenizer.ggml.tokens")
        .unwrap()
        .as_strings()
        .unwrap();
    let token = |key: &str| -> String {
        let id = usize::try_from(gguf.u64(key).unwrap()).unwrap();
        tokens[id].to_string()
    };
    let template = ChatTemplate::new(
        source,
        &token("tokenizer.ggml.bos_token_id"),
        &token("tokenizer.ggml.eos_token_id"),
    )
    .unwrap();
    let rows = read_jsonl(&golden_dir().join("smollm2-135m/chat-template.jsonl"));
    assert!(!rows.is_empty());
    for (i, row) in rows.iter().enumerate() {
        check(&template, row, row, &format!("smollm2 row {i}"));
    }
}

fn msgs(pairs: &[(&str, &str)]) -> Vec<Value> {
    pairs
        .iter()
        .map(|(r, c)| json!({"role": r, "content": c}))
        .collect()
}

/// Single template behaviours (printing, pycompat methods, filters, tests, loop controls, whitespace
/// control, tojson) over a small conversation, against jinja2's renders (tests/data/generate.py).
#[test]
fn snippets_match_jinja2() {
    let rows = read_jsonl(&data_dir().join("golden.jsonl"));
    let messages = vec![
        json!({"role": "user", "content": " Hi there "}),
        json!({"role": "assistant", "content": "Yo", "name": "bot"}),
    ];
    let mut checked = 0;
    let mut failures = Vec::new();
    for row in rows.iter().filter(|r| r.get("snippet").is_some()) {
        let source = row["snippet"].as_str().unwrap();
        let template = ChatTemplate::new(source, "<s>", "</s>")
            .unwrap()
            .with_fixed_time(FIXED_NOW);
        let got = template.render(&messages, true, None);
        match (expectation(row), got) {
            (Expect::Prompt(want), Ok(got)) if got == want => {}
            (Expect::Raised(want), Err(TemplateError::Raised(msg))) if msg == want => {}
            (Expect::Fails, Err(_)) => {}
            (want, got) => failures.push(format!(
                "snippet {source:?}\n  jinja2: {}\n  ours:   {got:?}",
                match want {
                    Expect::Prompt(p) => format!("{p:?}"),
                    Expect::Raised(m) => format!("raise_exception({m:?})"),
                    Expect::Fails => "an error".to_owned(),
                }
            )),
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 20, "only {checked} snippet rows");
}

#[test]
fn tools_and_extra_keys_pass_through() {
    let template = ChatTemplate::new(
        "{% for m in messages %}{{ m.role }}:{{ m.tool_calls[0].function.arguments | tojson }}:{{ m.custom }}{% endfor %}|{{ tools[0].function.name }}|{{ enable_thinking }}",
        "",
        "",
    )
    .unwrap();
    let messages = vec![json!({
        "role": "assistant",
        "content": null,
        "custom": "kept",
        "tool_calls": [{"id": "x", "type": "function", "function": {"name": "f", "arguments": {"z": 1, "a": "b"}}}],
    })];
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let mut vars = serde_json::Map::new();
    vars.insert("enable_thinking".into(), json!(false));
    let got = template
        .render_with_vars(&messages, false, Some(&tools), &vars)
        .unwrap();
    assert_eq!(got, "assistant:{\"z\": 1, \"a\": \"b\"}:kept|f|False");

    let mut bad = serde_json::Map::new();
    bad.insert("messages".into(), json!([]));
    assert!(matches!(
        template.render_with_vars(&messages, false, None, &bad),
        Err(TemplateError::BadInput(_))
    ));
    assert!(matches!(
        template.render(&[json!("not an object")], false, None),
        Err(TemplateError::BadInput(_))
    ));
}

#[test]
fn chatml_fallback() {
    let template = ChatTemplate::chatml();
    let got = template
        .render_simple(&[("system", "You are helpful."), ("user", "Hi")])
        .unwrap();
    assert_eq!(
        got,
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let got = template
        .render(
            &msgs(&[("user", "Hi"), ("assistant", "Hello")]),
            false,
            None,
        )
        .unwrap();
    assert_eq!(
        got,
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
    );
}

/// A hostile or broken template must fail with this error class, promptly.
fn check_fails(source: &str, is_expected: fn(&TemplateError) -> bool) {
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = source.to_owned();
    std::thread::spawn(move || {
        let result = ChatTemplate::new(&owned, "", "")
            .and_then(|t| t.render(&msgs(&[("user", "hi")]), true, None));
        let _ = tx.send(result);
    });
    // Generous bound: a hang would never finish; a budget stop takes well under a second.
    let result = rx
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("template did not stop: {source}"));
    match result {
        Err(e) if is_expected(&e) => {
            println!("{source:?} -> {e}");
            assert!(!e.to_string().is_empty());
        }
        other => panic!("{source}: unexpected {other:?}"),
    }
}

#[test]
fn hostile_templates_error_out() {
    let budget = |e: &TemplateError| matches!(e, TemplateError::Budget(_));
    // Nested loops: 10^10 iterations.
    check_fails(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        budget,
    );
    // Huge output.
    check_fails(
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' }}{% endfor %}{% endfor %}",
        budget,
    );
    // Unbounded recursion.
    check_fails(
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        budget,
    );
    // Broken syntax, runtime errors, raise_exception.
    check_fails("{% for m in messages %}", |e| {
        matches!(e, TemplateError::Syntax(_))
    });
    check_fails("{{ messages[0].nope.deeper }}", |e| {
        matches!(e, TemplateError::Render(_))
    });
    check_fails(
        "{{ raise_exception('no system role') }}",
        |e| matches!(e, TemplateError::Raised(m) if m == "no system role"),
    );
}
