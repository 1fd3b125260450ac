//! Shapes checked against request and response examples of the OpenAI and Ollama API docs.

use serde_json::{Value, json};

use crate::{ollama, openai};

fn check_parse<T: serde::de::DeserializeOwned + std::fmt::Debug + PartialEq>(
    input: Value,
    expect: T,
) {
    let got: T = serde_json::from_value(input).expect("parses");
    assert_eq!(got, expect);
}

fn check_ser<T: serde::Serialize>(value: T, expect: Value) {
    assert_eq!(serde_json::to_value(value).expect("serializes"), expect);
}

#[test]
fn openai_chat_request_ignores_unknown_fields_and_takes_both_stop_forms() {
    let base = openai::ChatCompletionRequest {
        model: "m".into(),
        messages: vec![openai::ChatMessage {
            role: "user".into(),
            content: Some(openai::MessageContent::Text("hi".into())),
            tool_calls: None,
            tool_call_id: None,
            name: None,
        }],
        max_tokens: None,
        max_completion_tokens: None,
        temperature: None,
        top_p: None,
        seed: None,
        stop: None,
        presence_penalty: None,
        frequency_penalty: None,
        n: None,
        stream: None,
        stream_options: None,
        response_format: None,
        user: None,
        logprobs: None,
        top_logprobs: None,
        tools: None,
        tool_choice: None,
        parallel_tool_calls: None,
        logit_bias: None,
        truncate_prompt_tokens: None,
    };
    check_parse(
        json!({"model":"m","messages":[{"role":"user","content":"hi","audio":"x"}],"metadata":{}}),
        base.clone(),
    );
    check_parse(
        json!({"model":"m","messages":[{"role":"user","content":"hi"}],"logit_bias":{"50256":-100,"7":2.5},"truncate_prompt_tokens":64}),
        openai::ChatCompletionRequest {
            logit_bias: Some(
                [("50256".to_owned(), -100.0), ("7".to_owned(), 2.5)]
                    .into_iter()
                    .collect(),
            ),
            truncate_prompt_tokens: Some(64),
            ..base.clone()
        },
    );
    check_parse(
        json!({"model":"m","messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":3}),
        openai::ChatCompletionRequest {
            logprobs: Some(true),
            top_logprobs: Some(3),
            ..base.clone()
        },
    );
    check_parse(
        json!({"model":"m","messages":[{"role":"user","content":"hi"}],"user":"u"}),
        openai::ChatCompletionRequest {
            user: Some("u".into()),
            ..base.clone()
        },
    );
    check_parse(
        json!({"model":"m","messages":[{"role":"user","content":"hi"}],"stop":"\n"}),
        openai::ChatCompletionRequest {
            stop: Some(openai::Stop::One("\n".into())),
            ..base.clone()
        },
    );
    check_parse(
        json!({"model":"m","messages":[{"role":"user","content":"hi"}],"stop":["a","b"],
               "stream":true,"stream_options":{"include_usage":true}}),
        openai::ChatCompletionRequest {
            stop: Some(openai::Stop::Many(vec!["a".into(), "b".into()])),
            stream: Some(true),
            stream_options: Some(openai::StreamOptions {
                include_usage: true,
            }),
            ..base.clone()
        },
    );
    check_parse(
        json!({"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}),
        openai::ChatCompletionRequest {
            messages: vec![openai::ChatMessage {
                role: "user".into(),
                content: Some(openai::MessageContent::Parts(vec![openai::ContentPart {
                    kind: "text".into(),
                    text: Some("hi".into()),
                }])),
                tool_calls: None,
                tool_call_id: None,
                name: None,
            }],
            ..base
        },
    );
}

#[test]
fn openai_error_body_has_null_param_and_code() {
    check_ser(
        openai::ErrorBody {
            error: openai::ErrorDetail {
                message: "m".into(),
                kind: "invalid_request_error".into(),
                param: None,
                code: None,
            },
        },
        json!({"error":{"message":"m","type":"invalid_request_error","param":null,"code":null}}),
    );
}

#[test]
fn openai_chunk_usage_is_absent_null_or_present() {
    let chunk = |usage| openai::ChatCompletionChunk {
        id: "c".into(),
        object: "chat.completion.chunk".into(),
        created: 1,
        model: "m".into(),
        system_fingerprint: None,
        choices: vec![],
        usage,
    };
    let base =
        json!({"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[]});
    check_ser(chunk(None), base.clone());
    let mut with_null = base.clone();
    with_null["usage"] = Value::Null;
    check_ser(chunk(Some(None)), with_null);
    let mut with_usage = base;
    with_usage["usage"] = json!({"prompt_tokens":1,"completion_tokens":2,"total_tokens":3});
    check_ser(
        chunk(Some(Some(openai::Usage {
            prompt_tokens: 1,
            completion_tokens: 2,
            total_tokens: 3,
            prompt_tokens_details: None,
        }))),
        with_usage,
    );
}

#[test]
fn ollama_requests_take_both_keep_alive_forms_and_ignore_unknown_options() {
    check_parse(
        json!({"model":"m","prompt":"p","keep_alive":"5m","options":{"num_ctx":4096,"mirostat":0,"seed":42,"stop":["x"]},"format":"","images":[]}),
        ollama::GenerateRequest {
            model: "m".into(),
            prompt: Some("p".into()),
            system: None,
            raw: None,
            stream: None,
            keep_alive: Some(ollama::KeepAlive::Text("5m".into())),
            format: Some(serde_json::Value::String(String::new())),
            logprobs: None,
            top_logprobs: None,
            truncate: None,
            options: Some(ollama::Options {
                num_ctx: Some(4096),
                seed: Some(42),
                stop: Some(vec!["x".into()]),
                ..Default::default()
            }),
        },
    );
    check_parse(
        json!({"model":"m","messages":[{"role":"user","content":"hi","images":null}],"keep_alive":300,"stream":false,"truncate":true}),
        ollama::ChatRequest {
            model: "m".into(),
            messages: vec![ollama::Message {
                role: "user".into(),
                content: "hi".into(),
                ..ollama::Message::default()
            }],
            stream: Some(false),
            keep_alive: Some(ollama::KeepAlive::Seconds(300.0)),
            options: None,
            format: None,
            logprobs: None,
            top_logprobs: None,
            tools: None,
            truncate: Some(true),
        },
    );
}

#[test]
fn ollama_final_chat_object_matches_the_docs_shape() {
    // Field names and nesting from the final object of a streamed `/api/chat` in Ollama's docs/api.md.
    check_ser(
        ollama::ChatResponse {
            model: "llama3.2".into(),
            created_at: "2023-08-04T19:22:45.499127Z".into(),
            message: ollama::Message {
                role: "assistant".into(),
                content: String::new(),
                ..ollama::Message::default()
            },
            done: true,
            done_reason: Some("stop".into()),
            logprobs: Vec::new(),
            metrics: ollama::Metrics {
                total_duration: Some(4883583458),
                load_duration: Some(1334875),
                prompt_eval_count: Some(26),
                prompt_eval_duration: Some(342546000),
                eval_count: Some(282),
                eval_duration: Some(4535599000),
            },
        },
        json!({
            "model": "llama3.2",
            "created_at": "2023-08-04T19:22:45.499127Z",
            "message": {"role": "assistant", "content": ""},
            "done": true,
            "done_reason": "stop",
            "total_duration": 4883583458u64,
            "load_duration": 1334875,
            "prompt_eval_count": 26,
            "prompt_eval_duration": 342546000,
            "eval_count": 282,
            "eval_duration": 4535599000u64
        }),
    );
    // A streamed line carries no metrics and no done_reason.
    check_ser(
        ollama::GenerateResponse {
            model: "llama3.2".into(),
            created_at: "2023-08-04T08:52:19.385406455-07:00".into(),
            response: "The".into(),
            done: false,
            done_reason: None,
            logprobs: Vec::new(),
            metrics: ollama::Metrics::default(),
        },
        json!({"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","response":"The","done":false}),
    );
}

#[test]
fn openai_embedding_input_takes_every_documented_form() {
    let req = |input: openai::EmbeddingInput| openai::EmbeddingRequest {
        model: "text-embedding-3-small".into(),
        input,
        encoding_format: None,
        dimensions: None,
        user: None,
    };
    let m = "text-embedding-3-small";
    check_parse(
        json!({"model": m, "input": "The food was delicious"}),
        req(openai::EmbeddingInput::Text(
            "The food was delicious".into(),
        )),
    );
    check_parse(
        json!({"model": m, "input": ["a", "b"]}),
        req(openai::EmbeddingInput::Texts(vec!["a".into(), "b".into()])),
    );
    check_parse(
        json!({"model": m, "input": [1, 2, 3]}),
        req(openai::EmbeddingInput::Tokens(vec![1, 2, 3])),
    );
    check_parse(
        json!({"model": m, "input": [[1, 2], [3]]}),
        req(openai::EmbeddingInput::TokenLists(vec![
            vec![1, 2],
            vec![3],
        ])),
    );
    check_parse(
        json!({"model": m, "input": "x", "encoding_format": "base64", "dimensions": 8, "user": "u"}),
        openai::EmbeddingRequest {
            encoding_format: Some("base64".into()),
            dimensions: Some(8),
            user: Some("u".into()),
            ..req(openai::EmbeddingInput::Text("x".into()))
        },
    );
}

#[test]
fn openai_embedding_response_matches_the_docs_example() {
    check_ser(
        openai::EmbeddingResponse {
            object: "list".into(),
            data: vec![openai::Embedding {
                object: "embedding".into(),
                index: 0,
                embedding: openai::EmbeddingVector::Float(vec![0.5, -0.25]),
            }],
            model: "text-embedding-ada-002".into(),
            usage: openai::EmbeddingUsage {
                prompt_tokens: 8,
                total_tokens: 8,
            },
        },
        json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}],
               "model": "text-embedding-ada-002", "usage": {"prompt_tokens": 8, "total_tokens": 8}}),
    );
}

#[test]
fn ollama_embed_shapes_match_the_docs_examples() {
    check_parse(
        json!({"model": "all-minilm", "input": ["Why is the sky blue?", "Why is the grass green?"]}),
        ollama::EmbedRequest {
            model: "all-minilm".into(),
            input: ollama::EmbedInput::Many(vec![
                "Why is the sky blue?".into(),
                "Why is the grass green?".into(),
            ]),
            truncate: None,
            dimensions: None,
            keep_alive: None,
            options: None,
        },
    );
    check_parse(
        json!({"model": "all-minilm", "input": "Why?", "truncate": false, "keep_alive": "5m"}),
        ollama::EmbedRequest {
            model: "all-minilm".into(),
            input: ollama::EmbedInput::One("Why?".into()),
            truncate: Some(false),
            dimensions: None,
            keep_alive: Some(ollama::KeepAlive::Text("5m".into())),
            options: None,
        },
    );
    check_ser(
        ollama::EmbedResponse {
            model: "all-minilm".into(),
            embeddings: vec![vec![0.5, 0.25]],
            total_duration: 14143917,
            load_duration: 1019500,
            prompt_eval_count: 8,
        },
        json!({"model": "all-minilm", "embeddings": [[0.5, 0.25]], "total_duration": 14143917,
               "load_duration": 1019500, "prompt_eval_count": 8}),
    );
    check_parse(
        json!({"model": "all-minilm", "prompt": "Here is an article about llamas..."}),
        ollama::EmbeddingsRequest {
            model: "all-minilm".into(),
            prompt: "Here is an article about llamas...".into(),
            keep_alive: None,
            options: None,
        },
    );
}

mod openapi_doc {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use serde_json::Value;

    use crate::openapi::{OPENAPI_VERSION, document, document_text, routes};

    fn committed_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi.json")
    }

    /// The committed `openapi.json` is what the code generates. `HEARTH_BLESS=1` rewrites it.
    #[test]
    fn committed_document_is_current() {
        let generated = document_text();
        let path = committed_path();
        if std::env::var_os("HEARTH_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is out of date with the wire types; refresh it with \
             `HEARTH_BLESS=1 cargo test -p hearth-api-types openapi` and commit it",
            path.display()
        );
    }

    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("$ref", Value::String(r)) => out.push(r.clone()),
                        _ => refs(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    /// The shape OpenAPI 3.1 asks for, and every `$ref` names a schema that is there.
    #[test]
    fn document_is_openapi_3_1_shaped() {
        let doc = document();
        assert_eq!(doc["openapi"], OPENAPI_VERSION);
        assert!(OPENAPI_VERSION.starts_with("3.1."));
        assert!(doc["info"]["title"].is_string());
        assert!(doc["info"]["version"].is_string());
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        assert!(!schemas.is_empty());
        for name in schemas.keys() {
            let ok = name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c));
            assert!(ok, "component name {name:?} is not allowed by OpenAPI");
        }
        let paths = doc["paths"].as_object().unwrap();
        let methods = [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ];
        let mut ids = BTreeSet::new();
        for (path, item) in paths {
            assert!(path.starts_with('/'), "{path}");
            for (method, op) in item.as_object().unwrap() {
                assert!(methods.contains(&method.as_str()), "{path} {method}");
                assert!(ids.insert(op["operationId"].as_str().unwrap().to_owned()));
                let answers = op["responses"].as_object().unwrap();
                assert!(!answers.is_empty(), "{method} {path} has no responses");
                for a in answers.values() {
                    assert!(a["description"].is_string(), "{method} {path}");
                }
                // Every `{param}` of the path is declared.
                for seg in path.split('/') {
                    if let Some(p) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        let declared = op["parameters"].as_array().is_some_and(|ps| {
                            ps.iter().any(|x| x["name"] == p && x["in"] == "path")
                        });
                        assert!(declared, "{method} {path}: {p}");
                    }
                }
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{r} is not a component reference"));
            assert!(schemas.contains_key(name), "{r} does not resolve");
        }
    }

    /// Each route of the table is in the document once, with its method.
    #[test]
    fn every_route_is_documented() {
        let doc = document();
        let table = routes();
        let mut seen = BTreeSet::new();
        for r in &table {
            assert!(
                seen.insert((r.method, r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
            assert!(
                doc["paths"][r.path][r.method].is_object(),
                "{} {}",
                r.method,
                r.path
            );
        }
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_object().unwrap().len())
            .sum();
        assert_eq!(documented, table.len());
    }

    /// Spot checks against the wire types: a request's optional field is not required, an
    /// answer's always-present field is.
    #[test]
    fn schemas_follow_the_serde_shapes() {
        let doc = document();
        let s = &doc["components"]["schemas"];
        let required = |name: &str| -> Vec<String> {
            s[name]["required"]
                .as_array()
                .map(|a| a.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default()
        };
        assert_eq!(required("ChatCompletionRequest"), ["model", "messages"]);
        assert_eq!(required("CopyRequest"), ["source", "destination"]);
        assert!(required("ProgressResponse").contains(&"status".to_owned()));
        assert!(!required("ProgressResponse").contains(&"digest".to_owned()));
        let pull = &doc["paths"]["/api/pull"]["post"];
        assert_eq!(
            pull["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/PullRequest"
        );
        assert!(
            pull["responses"]["200"]["content"]["application/x-ndjson"].is_object(),
            "{pull}"
        );
    }
}
