use minijinja::Value;
use proptest::prelude::*;

use crate::ChatTemplate;

use crate::python::{JsonOptions, float_repr, json_dumps, py_str};
use crate::strftime::{Civil, strftime};

/// Python's `repr(float)` (values taken from CPython 3).
fn check_float(f: f64, expect: &str) {
    assert_eq!(float_repr(f), expect, "repr({f:?})");
}

#[test]
fn float_repr_matches_python() {
    check_float(1.0, "1.0");
    check_float(21.5, "21.5");
    check_float(-0.5, "-0.5");
    check_float(0.1, "0.1");
    check_float(1e16, "1e+16");
    check_float(1234567890123456.0, "1234567890123456.0");
    check_float(1.5e20, "1.5e+20");
    check_float(0.0001, "0.0001");
    check_float(0.00001, "1e-05");
    check_float(1.25e-7, "1.25e-07");
    check_float(123.456, "123.456");
    check_float(0.0, "0.0");
    check_float(-0.0, "-0.0");
    check_float(f64::INFINITY, "inf");
}

/// Python `str(x)` of JSON-shaped values.
fn check_str(json: &str, expect: &str) {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        py_str(&Value::from(minijinja::value::Serde(&v))).unwrap(),
        expect,
        "str({json})"
    );
}

#[test]
fn str_matches_python() {
    check_str("null", "None");
    check_str("true", "True");
    check_str("\"plain\"", "plain");
    check_str("[1, 2.5, \"a\", null]", "[1, 2.5, 'a', None]");
    check_str(r#"{"b": 1, "a": [false]}"#, "{'b': 1, 'a': [False]}");
    check_str(
        r#"["it's", "say \"hi\"", "both ' \"", "nl\n\\"]"#,
        r#"["it's", 'say "hi"', 'both \' "', 'nl\n\\']"#,
    );
}

/// Python `json.dumps(x, ensure_ascii=False, indent=indent)`.
fn check_json(json: &str, indent: Option<usize>, expect: &str) {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let opts = JsonOptions::new(false, indent.map(|n| " ".repeat(n)), None, false);
    let mut out = String::new();
    json_dumps(
        &mut out,
        &Value::from(minijinja::value::Serde(&v)),
        &opts,
        0,
    )
    .unwrap();
    assert_eq!(out, expect, "json.dumps({json}, indent={indent:?})");
}

#[test]
fn json_matches_python() {
    check_json(
        r#"{"z": 1, "a": [1, 2], "e": {}, "l": []}"#,
        None,
        r#"{"z": 1, "a": [1, 2], "e": {}, "l": []}"#,
    );
    check_json(
        r#"{"a": [1, {"b": null}], "e": []}"#,
        Some(2),
        "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ],\n  \"e\": []\n}",
    );
    check_json(
        r#"["é 日本 😀", "<b>&'", "\u0001\u001f\b\f\t", 1.0]"#,
        None,
        r#"["é 日本 😀", "<b>&'", "\u0001\u001f\b\f\t", 1.0]"#,
    );
    check_json("[]", Some(0), "[]");
    check_json("[1]", Some(0), "[\n1\n]");
}

fn check_time(unix: i64, fmt: &str, expect: &str) {
    assert_eq!(
        strftime(fmt, &Civil::from_unix(unix)),
        expect,
        "strftime({fmt:?}) at {unix}"
    );
}

#[test]
fn strftime_basics() {
    check_time(0, "%Y-%m-%d %H:%M:%S %a %j", "1970-01-01 00:00:00 Thu 001");
    check_time(951_825_600, "%d %b %Y %A", "29 Feb 2000 Tuesday");
    check_time(-1, "%F %T", "1969-12-31 23:59:59");
    check_time(0, "%Q %-Q %", "%Q %-Q %");
    check_time(i64::MAX, "%Y", "9999");
    // Far-out times clamp instead of overflowing.
    assert!(strftime("%Y %V %G", &Civil::from_unix(i64::MIN)).starts_with('-'));
}

#[test]
fn chat_template_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ChatTemplate>();
}

/// Fragments that, glued at random, reach the parser, the generation-tag rewrite, the VM and our
/// filters with mostly broken templates.
const FRAGMENTS: &[&str] = &[
    "{%",
    "%}",
    "{{",
    "}}",
    "{%-",
    "-%}",
    "{%+",
    "{#",
    "#}",
    " for m in messages ",
    " endfor ",
    " if ",
    " endif ",
    " else ",
    " generation ",
    " endgeneration ",
    " m.content ",
    " m ",
    "|tojson",
    "|tojson(indent=2)",
    "|string",
    "|trim",
    " ~ ",
    " + ",
    "(",
    ")",
    "[",
    "]",
    "[1:]",
    "[-1]",
    "'a'",
    "\"é\"",
    "none",
    "true",
    " is defined ",
    ".strip()",
    ".split(',')",
    ".items()",
    "raise_exception('x')",
    "strftime_now('%Y %-d %Q')",
    "namespace(n=1)",
    " set x = ",
    "x",
    "\n",
    "  ",
    "{% break %}",
    "loop.index",
    "messages",
    "tools",
    ",",
    "é",
    "%",
];

proptest! {
    #[test]
    fn arbitrary_templates_never_panic(picks in proptest::collection::vec(0..FRAGMENTS.len(), 0..40),
                                       content in ".{0,20}") {
        let source: String = picks.iter().map(|&i| FRAGMENTS[i]).collect();
        if let Ok(t) = ChatTemplate::new(&source, "<s>", "</s>") {
            let messages = vec![serde_json::json!({"role": "user", "content": content})];
            let tools = serde_json::json!([{"type": "function", "function": {"name": "f"}}]);
            let _ = t.render(&messages, true, Some(&tools));
            let _ = t.render(&[], false, None);
        }
    }
}
