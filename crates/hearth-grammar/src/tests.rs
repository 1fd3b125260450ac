use std::sync::Arc;

use hearth_engine::TokenConstraint;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

/// `text` is (or is not) a complete output of `schema`.
fn check(schema: Value, cases: &[(&str, bool)]) {
    let g = Grammar::json_schema(&schema).unwrap_or_else(|e| panic!("{schema}: {e}"));
    for (text, want) in cases {
        assert_eq!(
            g.matches(text.as_bytes()),
            *want,
            "schema {schema} text {text:?}"
        );
    }
}

#[test]
fn strings() {
    check(
        json!({"type": "string"}),
        &[
            (r#""""#, true),
            (r#""héllo 日本 🎉""#, true),
            (r#""a\"b\\c\/d\b\f\n\r\t""#, true),
            (r#""\u00e9\uABCD""#, true),
            (r#""\ud800""#, false),
            (r#""\x""#, false),
            ("\"a\nb\"", false),
            ("\"\u{7f}\"", true),
            (r#""abc"#, false),
            (r#""a" "#, false),
            ("'a'", false),
        ],
    );
    check(
        json!({"type": "string", "minLength": 2, "maxLength": 3}),
        &[
            (r#""a""#, false),
            (r#""ab""#, true),
            (r#""日本""#, true),
            (r#""a\nc""#, true),
            (r#""abcd""#, false),
        ],
    );
    // Invalid UTF-8 inside a string.
    let g = Grammar::json_schema(&json!({"type": "string"})).unwrap();
    for bad in [
        &b"\"\xc3\""[..],
        b"\"\xc0\x80\"",
        b"\"\xed\xa0\x80\"",
        b"\"\xff\"",
    ] {
        assert!(!g.matches(bad), "{bad:?}");
    }
}

#[test]
fn numbers_booleans_null() {
    check(
        json!({"type": "integer"}),
        &[
            ("0", true),
            ("-12", true),
            ("-0", false),
            ("123456789012345", true),
            ("1234567890123456", false),
            ("01", false),
            ("1.5", false),
            ("-", false),
            ("+1", false),
        ],
    );
    check(
        json!({"type": "number"}),
        &[
            ("1.5", true),
            ("-0.25", true),
            ("0.", false),
            (".5", false),
            ("1e5", false),
            ("3", true),
        ],
    );
    check(
        json!({"type": ["boolean", "null"]}),
        &[
            ("true", true),
            ("false", true),
            ("null", true),
            ("nul", false),
            ("1", false),
        ],
    );
}

#[test]
fn objects_in_declared_order_with_optional_properties() {
    // Declared in sorted order: serde_json keeps declaration order only with its
    // `preserve_order` feature (on in the full build), sorted order without it.
    let schema = json!({
        "type": "object",
        "properties": {
            "age": {"type": "integer"},
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2}
        },
        "required": ["name", "tags"]
    });
    check(
        schema,
        &[
            (r#"{"name":"x","tags":[]}"#, true),
            (r#"{"age":3,"name":"x","tags":["a","b"]}"#, true),
            (r#"{"age": 3, "name": "x", "tags": ["a"]}"#, true),
            (r#"{"age":  3,"name":"x","tags":[]}"#, false),
            (r#"{ "name":"x","tags":[]}"#, false),
            (r#"{"name":"x"}"#, false),
            (r#"{"tags":[],"name":"x"}"#, false),
            (r#"{"name":"x","tags":["a","b","a"]}"#, false),
            (r#"{"name":"x","tags":["c"]}"#, false),
            (r#"{"name":"x","tags":[],"extra":1}"#, false),
            (r#"{"name":"x","tags":[]}"#, true),
        ],
    );
    check(
        json!({"type": "object"}),
        &[
            ("{}", true),
            (r#"{"a":[1,{"b":null}],"c":"d"}"#, true),
            (r#"{"a":1,}"#, false),
            ("[]", false),
        ],
    );
    check(
        json!({"type": "object", "properties": {}}),
        &[("{}", true), (r#"{"a":1}"#, false)],
    );
    check(
        json!({"type": "object", "additionalProperties": {"type": "integer"}}),
        &[(r#"{"a":1,"b":2}"#, true), (r#"{"a":"x"}"#, false)],
    );
}

#[test]
fn arrays_enums_unions_refs() {
    check(
        json!({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": false, "minItems": 1}),
        &[
            ("[1]", true),
            (r#"[1,"a"]"#, true),
            (r#"[1,"a",2]"#, false),
            ("[]", false),
        ],
    );
    check(
        json!({"enum": ["red", 1, null, {"a": [true]}]}),
        &[
            (r#""red""#, true),
            ("1", true),
            ("null", true),
            (r#"{"a":[true]}"#, true),
            ("12", false),
        ],
    );
    check(
        json!({"anyOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                          {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}]}),
        &[
            (r#"{"a":1}"#, true),
            (r#"{"a":"x"}"#, true),
            (r#"{"a":true}"#, false),
        ],
    );
    check(
        json!({"$defs": {"node": {"type": "object", "properties": {
                    "v": {"type": "integer"},
                    "w": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}},
                "required": ["v", "w"]}},
               "$ref": "#/$defs/node"}),
        &[
            (r#"{"v":1,"w":{"v":2,"w":null}}"#, true),
            (r#"{"v":1}"#, false),
        ],
    );
    check(
        json!({"type": "string", "nullable": true, "description": "x", "format": "date"}),
        &[(r#""2024""#, true), ("null", true)],
    );
    check(
        json!({"allOf": [{"const": 5}]}),
        &[("5", true), ("6", false)],
    );
}

#[test]
fn large_enums_keep_every_value() {
    let values: Vec<Value> = (0..500)
        .map(|i| Value::String(format!("v{}", i * 7)))
        .chain([json!(1), json!(12), json!(123), json!("")])
        .collect();
    let g = Grammar::json_schema(&json!({"enum": values})).unwrap();
    for v in &values {
        assert!(g.matches(v.to_string().as_bytes()), "{v}");
    }
    for bad in ["\"v1\"", "\"v\"", "2", "1234", "\"v3494\""] {
        assert!(!g.matches(bad.as_bytes()), "{bad}");
    }
    assert_eq!(g.min_len_bytes(), 1);
}

#[test]
fn unsupported_and_invalid_schemas_are_refused_with_their_path() {
    let unsupported = |schema: Value, keyword: &str, path: &str| {
        assert_eq!(
            Grammar::json_schema(&schema).unwrap_err(),
            GrammarError::Unsupported {
                keyword: keyword.into(),
                path: path.into()
            },
            "{schema}"
        );
    };
    unsupported(
        json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "x"}}}),
        "pattern",
        "/properties/a/pattern",
    );
    unsupported(
        json!({"type": "integer", "minimum": 0}),
        "minimum",
        "/minimum",
    );
    unsupported(
        json!({"type": "array", "uniqueItems": true}),
        "uniqueItems",
        "/uniqueItems",
    );
    unsupported(json!({"not": {}}), "not", "/not");
    unsupported(
        json!({"allOf": [{}, {}]}),
        "allOf with more than one schema",
        "/allOf",
    );
    unsupported(
        json!({"$ref": "https://example.com/s.json"}),
        "$ref to `https://example.com/s.json` (only references inside the schema, `#/$defs/...`)",
        "/$ref",
    );
    for bad in [
        json!({"type": "strin"}),
        json!({"type": "object", "properties": {"a": {}}, "required": ["b"]}),
        json!({"enum": []}),
        json!({"type": "string", "minLength": 3, "maxLength": 2}),
        json!({"$ref": "#/$defs/missing"}),
        json!({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}),
        json!(false),
        json!(3),
    ] {
        assert!(
            matches!(
                Grammar::json_schema(&bad),
                Err(GrammarError::Invalid { .. })
            ),
            "{bad}"
        );
    }
    // Hostile nesting is refused, not a stack overflow.
    let mut deep = json!({"type": "string"});
    for _ in 0..10_000 {
        let mut m = serde_json::Map::new();
        m.insert("type".into(), json!("array"));
        m.insert("items".into(), deep);
        deep = Value::Object(m);
    }
    assert!(matches!(
        Grammar::json_schema(&deep),
        Err(GrammarError::TooLarge { .. })
    ));
    drop_deep(deep);
}

/// Drop a deeply nested value without recursing (serde_json's drop is recursive).
fn drop_deep(mut v: Value) {
    while let Value::Object(mut m) = v {
        v = m.remove("items").unwrap_or(Value::Null);
    }
}

#[test]
fn min_len_is_the_shortest_output() {
    let cases = [
        (json!({"type": "object"}), "{}"),
        (json!({"type": "integer"}), "0"),
        (
            json!({"type": "object", "properties": {"a": {"type": "string", "minLength": 2}, "b": {}}, "required": ["a"]}),
            r#"{"a":"xx"}"#,
        ),
        (
            json!({"type": "array", "items": {"type": "boolean"}, "minItems": 2}),
            "[true,true]",
        ),
    ];
    for (schema, shortest) in cases {
        let g = Grammar::json_schema(&schema).unwrap();
        assert_eq!(g.min_len_bytes(), shortest.len(), "{schema}");
        assert!(g.matches(shortest.as_bytes()));
    }
}

#[test]
fn tool_calls() {
    let tools = vec![
        (
            "get_weather".to_string(),
            json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        ),
        (
            "noop".to_string(),
            json!({"type": "object", "properties": {}}),
        ),
    ];
    let g = Grammar::tool_calls(&tools, 1, 2).unwrap();
    let one = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    let two =
        format!("{one}\n<tool_call>\n{{\"name\": \"noop\", \"arguments\": {{}}}}\n</tool_call>");
    assert!(g.matches(one.as_bytes()));
    assert!(g.matches(two.as_bytes()));
    assert!(!g.matches(format!("{two}\n{one}").as_bytes()));
    assert!(!g.matches(b""));
    assert!(!g.matches(
        b"<tool_call>\n{\"name\": \"noop\", \"arguments\": {\"city\": \"x\"}}\n</tool_call>"
    ));
    // The call's own text is exactly the Hermes form.
    assert!(!g.matches(b"<tool_call>\n{\"name\":\"noop\",\"arguments\":{}}\n</tool_call>"));
    assert!(Grammar::tool_calls(&tools, 2, 1).is_err());
    // Many tools, names prefixing one another: every one can be called.
    let many: Vec<(String, Value)> = (0..150)
        .map(|i| {
            (
                format!("t{i}"),
                json!({"type": "object", "properties": {"v": {"const": i}}, "required": ["v"]}),
            )
        })
        .collect();
    let g = Grammar::tool_calls(&many, 1, 1).unwrap();
    for i in [0, 1, 14, 149] {
        let call = format!(
            "<tool_call>\n{{\"name\": \"t{i}\", \"arguments\": {{\"v\":{i}}}}}\n</tool_call>"
        );
        assert!(g.matches(call.as_bytes()), "{call}");
        let wrong = format!(
            "<tool_call>\n{{\"name\": \"t{i}\", \"arguments\": {{\"v\":{}}}}}\n</tool_call>",
            i + 1
        );
        assert!(!g.matches(wrong.as_bytes()), "{wrong}");
    }
    assert!(Grammar::tool_calls(&[], 1, 1).is_err());
}

/// A synthetic byte-level vocabulary: every single byte, multi-byte tokens that straddle JSON
/// structure, an end-of-generation id and a special token.
fn synthetic_vocab() -> (Arc<Vocab>, u32) {
    let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    for t in [
        "\":\"",
        "\"},{\"",
        "{\"",
        "\":",
        "\", \"",
        "\": ",
        "true",
        "null",
        "false",
        "12",
        "\"a\"",
        "abc",
        "é",
        "日本",
        "\\n",
        "\\u00",
        ", ",
        ",\"",
        "\"}",
        "]}",
        "[{",
        "0.5",
        "-1",
        "}}",
        "\"]",
        "[\"",
        "<tool_call>",
        "<tool",
        "_call>\n{\"",
        "\n</tool_call>",
        "\n",
        "  ",
        " {\"",
        "name",
        "\"name\": \"",
        "arguments",
    ] {
        tokens.push(t.as_bytes().to_vec());
    }
    tokens.push(vec![0xf0, 0x9f]); // half an emoji
    tokens.push(vec![0xe6]); // duplicate bytes of an existing token
    let eog = tokens.len() as u32;
    tokens.push(b"</s>".to_vec());
    let special = tokens.len() as u32;
    tokens.push(b"<|im_start|>".to_vec());
    (Arc::new(Vocab::new(tokens, &[special], &[eog])), eog)
}

/// A tiny deterministic generator for the walks.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// Walk: each step picks uniformly among the allowed tokens, within `budget` tokens.
fn walk(m: &mut Matcher, vocab: &Vocab, eog: u32, budget: usize, seed: u64) -> (Vec<u8>, bool) {
    let mut rng = Rng(seed);
    let mut allowed = vec![true; vocab.len()];
    for used in 0..budget {
        allowed.fill(true);
        m.restrict(&mut allowed, budget - used);
        let ids: Vec<u32> = (0..allowed.len() as u32)
            .filter(|&i| allowed[i as usize])
            .collect();
        assert!(
            !ids.is_empty(),
            "no token allowed after {:?}",
            String::from_utf8_lossy(m.output())
        );
        let t = ids[rng.below(ids.len())];
        m.accept(t).unwrap();
        if t == eog {
            return (m.output().to_vec(), true);
        }
        if m.is_finished() {
            return (m.output().to_vec(), true);
        }
    }
    (m.output().to_vec(), m.is_complete())
}

/// An independent validator for the schema subset the generator below produces.
fn valid(schema: &Value, v: &Value, root: &Value) -> bool {
    let Some(s) = schema.as_object() else {
        return schema.as_bool().unwrap_or(false);
    };
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        return valid(root.pointer(&r[1..]).unwrap(), v, root);
    }
    if let Some(alts) = s.get("anyOf").and_then(Value::as_array) {
        return alts.iter().any(|a| valid(a, v, root));
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        return e.contains(v);
    }
    if let Some(c) = s.get("const") {
        return c == v;
    }
    if let Some(t) = s.get("type") {
        let ts: Vec<&str> = match t {
            Value::String(x) => vec![x.as_str()],
            Value::Array(xs) => xs.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = ts.iter().any(|t| match *t {
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            "object" => v.is_object(),
            "array" => v.is_array(),
            _ => false,
        });
        if !ok {
            return false;
        }
    }
    if let Value::String(x) = v {
        let n = x.chars().count() as u64;
        if s.get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
            || s.get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| n > m)
        {
            return false;
        }
    }
    if let Value::Object(o) = v {
        let props = s.get("properties").and_then(Value::as_object);
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
            match props.and_then(|p| p.get(k)) {
                Some(ps) => {
                    if !valid(ps, x, root) {
                        return false;
                    }
                }
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => return false,
                    Some(a @ Value::Object(_)) if !valid(a, x, root) => return false,
                    _ => {}
                },
            }
        }
    }
    if let Value::Array(a) = v {
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
        let prefix = s.get("prefixItems").and_then(Value::as_array);
        for (i, x) in a.iter().enumerate() {
            let sub = prefix.and_then(|p| p.get(i)).or(s.get("items"));
            if let Some(sub) = sub
                && !valid(sub, x, root)
            {
                return false;
            }
        }
    }
    true
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"type": "string"})),
        (0u64..4, 0u64..4).prop_map(
            |(a, b)| json!({"type": "string", "minLength": a.min(b), "maxLength": a.max(b)})
        ),
        Just(json!({"type": "integer"})),
        Just(json!({"type": "number"})),
        Just(json!({"type": "boolean"})),
        Just(json!({"type": ["string", "null"]})),
        Just(json!({"enum": ["a", "ab", 1, 12, null, {"k": [1]}]})),
        Just(json!({"const": "fixed"})),
        Just(json!({})),
        Just(json!({"$ref": "#/$defs/tree"})),
    ]
}

fn schema_strategy() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            (
                proptest::collection::vec((inner.clone(), any::<bool>()), 0..4),
                any::<bool>()
            )
                .prop_map(|(props, strict)| {
                    let mut p = serde_json::Map::new();
                    let mut req = Vec::new();
                    for (i, (s, r)) in props.into_iter().enumerate() {
                        let name = ["x", "y\"q", "é", "zz"][i].to_string();
                        if r {
                            req.push(Value::String(name.clone()));
                        }
                        p.insert(name, s);
                    }
                    let mut o = json!({"type": "object", "properties": p, "required": req});
                    if strict {
                        o["additionalProperties"] = json!(false);
                    }
                    o
                }),
            (inner.clone(), 0u64..3, 0u64..3).prop_map(|(items, a, b)| json!({
                "type": "array", "items": items, "minItems": a.min(b), "maxItems": a.max(b) + 1
            })),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| json!({"anyOf": [a, b]})),
            (inner.clone(), inner)
                .prop_map(|(a, b)| json!({"type": "array", "prefixItems": [a, b], "items": false})),
            Just(json!({"type": "object", "additionalProperties": {"type": "integer"}})),
        ]
    })
}

/// The `$defs` every generated schema may refer to (a recursive one).
fn with_defs(mut s: Value) -> Value {
    if let Value::Object(m) = &mut s {
        m.insert(
            "$defs".into(),
            json!({"tree": {"type": "object", "properties": {
                "v": {"type": "integer"},
                "kids": {"type": "array", "items": {"$ref": "#/$defs/tree"}, "maxItems": 2}
            }, "required": ["v"]}}),
        );
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random schemas × random walks over the synthetic vocabulary, with budgets from the
    /// shortest output up: the output is always complete, parses and validates.
    #[test]
    fn random_walks_always_yield_valid_json(schema in schema_strategy(), seed in any::<u64>(), slack in 0usize..40) {
        let schema = with_defs(schema);
        let g = Arc::new(Grammar::json_schema(&schema).unwrap());
        let (vocab, eog) = synthetic_vocab();
        let budget = g.min_len_bytes() + slack;
        let mut m = Matcher::new(g.clone(), vocab.clone());
        let (out, complete) = walk(&mut m, &vocab, eog, budget, seed);
        prop_assert!(complete, "incomplete: {:?}", String::from_utf8_lossy(&out));
        let v: Value = serde_json::from_slice(&out).map_err(|e| TestCaseError::fail(format!("{e}: {:?} for {schema}", String::from_utf8_lossy(&out))))?;
        prop_assert!(valid(&schema, &v, &schema), "{v} does not validate against {schema}");
        prop_assert!(g.matches(&out));
    }

    /// Random tool parameters × random walks, eager and lazy: every call is well formed, names
    /// a tool and carries arguments that validate against that tool's parameters.
    #[test]
    fn random_walks_make_valid_tool_calls(a in schema_strategy(), b in schema_strategy(), seed in any::<u64>(), slack in 0usize..60, lazy in any::<bool>(), max in 1usize..3) {
        let wrap = |s: Value| with_defs(json!({"type": "object", "properties": {"p": s}, "required": ["p"]}));
        let tools = vec![("alpha".to_string(), wrap(a)), ("alp".to_string(), wrap(b))];
        let g = Arc::new(Grammar::tool_calls(&tools, 1, max).unwrap());
        let (vocab, eog) = synthetic_vocab();
        let mut m = if lazy {
            Matcher::lazy(g.clone(), vocab.clone(), "<tool_call>")
        } else {
            Matcher::new(g.clone(), vocab.clone())
        };
        let (out, complete) = walk(&mut m, &vocab, eog, g.min_len_bytes() + slack, seed);
        prop_assert!(complete, "incomplete: {:?}", String::from_utf8_lossy(&out));
        let text = String::from_utf8_lossy(&out).into_owned();
        let body = text.trim_start();
        if lazy && !body.starts_with("<tool_call>") {
            return Ok(());
        }
        prop_assert!(g.matches(body.as_bytes()), "{body:?}");
        let calls: Vec<&str> = body.split("<tool_call>\n").skip(1).collect();
        prop_assert!(!calls.is_empty() && calls.len() <= max);
        for call in calls {
            let json = call.trim_end_matches('\n').strip_suffix("\n</tool_call>").unwrap_or(call);
            let v: Value = serde_json::from_str(json).map_err(|e| TestCaseError::fail(format!("{e}: {json:?}")))?;
            let (_, schema) = tools.iter().find(|(n, _)| v["name"] == n.as_str()).ok_or_else(|| TestCaseError::fail(format!("unknown tool in {v}")))?;
            prop_assert!(valid(schema, &v["arguments"], schema), "{v} against {schema}");
        }
    }

    /// Any JSON object, with a small budget too.
    #[test]
    fn random_walks_make_json_objects(seed in any::<u64>(), budget in 2usize..60) {
        let g = Arc::new(Grammar::json_object());
        let (vocab, eog) = synthetic_vocab();
        let mut m = Matcher::new(g, vocab.clone());
        let (out, complete) = walk(&mut m, &vocab, eog, budget, seed);
        prop_assert!(complete);
        let v: Value = serde_json::from_slice(&out).map_err(|e| TestCaseError::fail(format!("{e}: {:?}", String::from_utf8_lossy(&out))))?;
        prop_assert!(v.is_object());
    }
}

#[test]
fn lazy_matcher_leaves_free_text_alone_and_constrains_tool_calls() {
    let tools = vec![(
        "f".to_string(),
        json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}),
    )];
    let g = Arc::new(Grammar::tool_calls(&tools, 1, 1).unwrap());
    let (vocab, eog) = synthetic_vocab();
    let id = |s: &str| {
        (0..vocab.len() as u32)
            .find(|&i| vocab.token_bytes(i) == s.as_bytes())
            .unwrap()
    };
    // Free text: everything stays allowed.
    let mut m = Matcher::lazy(g.clone(), vocab.clone(), "<tool_call>");
    m.accept(id("abc")).unwrap();
    let mut allowed = vec![true; vocab.len()];
    m.restrict(&mut allowed, 5);
    assert!(allowed.iter().all(|&a| a));
    assert!(!m.is_finished());
    // A tool call after leading whitespace: constrained from the trigger on.
    for seed in 0..20 {
        let mut m = Matcher::lazy(g.clone(), vocab.clone(), "<tool_call>");
        m.accept(id("\n")).unwrap();
        m.accept(id("<tool")).unwrap();
        let mut allowed = vec![true; vocab.len()];
        m.restrict(&mut allowed, 100);
        assert!(allowed[id("_call>\n{\"") as usize]);
        m.accept(id("_call>\n{\"")).unwrap();
        let (out, complete) = walk(&mut m, &vocab, eog, 60, seed);
        assert!(complete, "{:?}", String::from_utf8_lossy(&out));
        let text = String::from_utf8(out).unwrap();
        let body = text
            .trim_start()
            .strip_prefix("<tool_call>\n")
            .and_then(|t| t.strip_suffix("\n</tool_call>"))
            .unwrap_or_else(|| panic!("{text:?}"));
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["name"], "f");
        assert!(v["arguments"]["n"].is_i64(), "{v}");
    }
}

#[test]
fn grammars_and_vocabularies_are_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    fn sent<T: Send>() {}
    shared::<Grammar>();
    shared::<Vocab>();
    sent::<Matcher>();
}
