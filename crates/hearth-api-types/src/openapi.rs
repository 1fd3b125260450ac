//! The OpenAPI 3.1 document of Hearth's HTTP API, generated from the wire types in this crate.
//!
//! [`routes`] is the table of every route: method, path, and the wire types of its request and
//! answers. [`document`] turns it into the document, with the schemas derived (by `schemars`)
//! from the same serde shapes the server parses and writes, so the two cannot drift apart.
//! `openapi.json` beside this crate's manifest is the committed copy; a test fails when it
//! differs from what this code generates (refresh it with `HEARTH_BLESS=1 cargo test -p
//! hearth-api-types`).

use std::collections::BTreeMap;

use schemars::generate::{Contract, SchemaSettings};
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::{ollama, openai};

/// The OpenAPI version the document follows.
pub const OPENAPI_VERSION: &str = "3.1.0";
/// The version of the API the document describes.
pub const API_VERSION: &str = "0.1.0";

const SCHEMAS: &str = "#/components/schemas/";

/// A schema of one wire type, from a generator.
pub type SchemaFn = fn(&mut SchemaGenerator) -> schemars::Schema;

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

/// What a request or answer carries.
#[derive(Debug, Clone, Copy)]
pub enum Content {
    None,
    Json(SchemaFn),
    /// One JSON object with `"stream": false`; otherwise (Ollama's default) NDJSON lines of the
    /// same shape.
    JsonOrNdjson(SchemaFn),
    /// One JSON object; with `"stream": true` server-sent events, each `data:` a chunk of the
    /// second shape, ending with `data: [DONE]`.
    JsonOrSse(SchemaFn, SchemaFn),
    /// `text/plain`.
    Text,
    /// Raw bytes.
    Binary,
}

/// Which error body a route answers failures with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errors {
    OpenAi,
    Ollama,
    /// The route does not fail.
    None,
}

/// One route of the API.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// Lower-case HTTP method (`get`, `post`, `delete`, `head`).
    pub method: &'static str,
    /// OpenAPI path template (`/api/blobs/{digest}`).
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub request: Content,
    /// Status and body of success.
    pub ok: (u16, &'static str, Content),
    /// Other statuses the route answers by design (not errors), with their description.
    pub also: &'static [(u16, &'static str)],
    pub errors: Errors,
}

const fn route(
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    request: Content,
    ok: (u16, &'static str, Content),
    errors: Errors,
) -> Route {
    Route {
        method,
        path,
        tag,
        summary,
        request,
        ok,
        also: &[],
        errors,
    }
}

/// Every route the server serves.
pub fn routes() -> Vec<Route> {
    use Content::{Binary, Json, JsonOrNdjson, JsonOrSse, Text};
    use Errors::{Ollama, OpenAi};
    let ok = |c: Content| (200, "OK", c);
    vec![
        route(
            "post",
            "/v1/chat/completions",
            "OpenAI",
            "Chat completion",
            Json(schema::<openai::ChatCompletionRequest>),
            ok(JsonOrSse(
                schema::<openai::ChatCompletion>,
                schema::<openai::ChatCompletionChunk>,
            )),
            OpenAi,
        ),
        route(
            "post",
            "/v1/completions",
            "OpenAI",
            "Text completion",
            Json(schema::<openai::CompletionRequest>),
            ok(JsonOrSse(
                schema::<openai::Completion>,
                schema::<openai::Completion>,
            )),
            OpenAi,
        ),
        route(
            "post",
            "/v1/embeddings",
            "OpenAI",
            "Embeddings",
            Json(schema::<openai::EmbeddingRequest>),
            ok(Json(schema::<openai::EmbeddingResponse>)),
            OpenAi,
        ),
        route(
            "get",
            "/v1/models",
            "OpenAI",
            "List models",
            Content::None,
            ok(Json(schema::<openai::ModelList>)),
            OpenAi,
        ),
        route(
            "get",
            "/v1/models/{model}",
            "OpenAI",
            "One model",
            Content::None,
            ok(Json(schema::<openai::Model>)),
            OpenAi,
        ),
        route(
            "post",
            "/api/chat",
            "Ollama",
            "Chat",
            Json(schema::<ollama::ChatRequest>),
            ok(JsonOrNdjson(schema::<ollama::ChatResponse>)),
            Ollama,
        ),
        route(
            "post",
            "/api/generate",
            "Ollama",
            "Generate",
            Json(schema::<ollama::GenerateRequest>),
            ok(JsonOrNdjson(schema::<ollama::GenerateResponse>)),
            Ollama,
        ),
        route(
            "post",
            "/api/embed",
            "Ollama",
            "Embeddings",
            Json(schema::<ollama::EmbedRequest>),
            ok(Json(schema::<ollama::EmbedResponse>)),
            Ollama,
        ),
        route(
            "post",
            "/api/embeddings",
            "Ollama",
            "Embedding of one text (older form)",
            Json(schema::<ollama::EmbeddingsRequest>),
            ok(Json(schema::<ollama::EmbeddingsResponse>)),
            Ollama,
        ),
        route(
            "get",
            "/api/tags",
            "Ollama",
            "List installed models",
            Content::None,
            ok(Json(schema::<ollama::ListResponse>)),
            Ollama,
        ),
        route(
            "post",
            "/api/show",
            "Ollama",
            "Show a model",
            Json(schema::<ollama::ShowRequest>),
            ok(Json(schema::<ollama::ShowResponse>)),
            Ollama,
        ),
        route(
            "get",
            "/api/ps",
            "Ollama",
            "Loaded models",
            Content::None,
            ok(Json(schema::<ollama::ProcessResponse>)),
            Ollama,
        ),
        route(
            "get",
            "/api/version",
            "Ollama",
            "Server version",
            Content::None,
            ok(Json(schema::<ollama::VersionResponse>)),
            Ollama,
        ),
        route(
            "post",
            "/api/pull",
            "Ollama",
            "Pull a model",
            Json(schema::<ollama::PullRequest>),
            ok(JsonOrNdjson(schema::<ollama::ProgressResponse>)),
            Ollama,
        ),
        route(
            "delete",
            "/api/delete",
            "Ollama",
            "Delete a model",
            Json(schema::<ollama::DeleteRequest>),
            ok(Content::None),
            Ollama,
        ),
        route(
            "post",
            "/api/copy",
            "Ollama",
            "Copy a model",
            Json(schema::<ollama::CopyRequest>),
            ok(Content::None),
            Ollama,
        ),
        route(
            "post",
            "/api/create",
            "Ollama",
            "Create a model",
            Json(schema::<ollama::CreateRequest>),
            ok(JsonOrNdjson(schema::<ollama::ProgressResponse>)),
            Ollama,
        ),
        Route {
            also: &[(404, "No blob has this digest")],
            ..route(
                "head",
                "/api/blobs/{digest}",
                "Ollama",
                "Whether a blob exists",
                Content::None,
                ok(Content::None),
                Ollama,
            )
        },
        route(
            "post",
            "/api/blobs/{digest}",
            "Ollama",
            "Upload a blob",
            Binary,
            (201, "Stored", Content::None),
            Ollama,
        ),
        route(
            "get",
            "/healthz",
            "Hearth",
            "Liveness",
            Content::None,
            ok(Text),
            Errors::None,
        ),
        route(
            "get",
            "/metrics",
            "Hearth",
            "Prometheus metrics",
            Content::None,
            ok(Text),
            Errors::None,
        ),
        route(
            "get",
            "/openapi.json",
            "Hearth",
            "This document",
            Content::None,
            ok(Json(schema::<Map<String, Value>>)),
            Errors::None,
        ),
    ]
}

fn generator(contract: Contract) -> SchemaGenerator {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    settings.contract = contract;
    SchemaGenerator::new(settings)
}

fn to_value(s: schemars::Schema) -> Value {
    s.to_value()
}

/// Rewrite `$ref`s to renamed components.
fn rename_refs(v: &mut Value, renames: &BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "$ref"
                    && let Value::String(r) = x
                    && let Some(name) = r.strip_prefix(SCHEMAS)
                    && let Some(new) = renames.get(name)
                {
                    *r = format!("{SCHEMAS}{new}");
                } else {
                    rename_refs(x, renames);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rename_refs(x, renames)),
        _ => {}
    }
}

/// Objects with their keys sorted, so the text does not depend on map ordering features.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let b: BTreeMap<String, Value> = m.into_iter().map(|(k, x)| (k, sorted(x))).collect();
            Value::Object(b.into_iter().collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

fn error_schema(errors: Errors) -> Option<Value> {
    match errors {
        Errors::OpenAi => Some(json!({"$ref": format!("{SCHEMAS}OpenAiErrorBody")})),
        Errors::Ollama => Some(json!({"$ref": format!("{SCHEMAS}OllamaErrorBody")})),
        Errors::None => None,
    }
}

/// `{name}` parameters of a path template.
fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

fn operation_id(r: &Route) -> String {
    let mut id = r.method.to_owned();
    for part in r.path.split(['/', '.', '{', '}']).filter(|p| !p.is_empty()) {
        id.push('_');
        id.push_str(part);
    }
    id
}

/// The whole document, keys sorted.
pub fn document() -> Value {
    let mut requests = generator(Contract::Deserialize);
    let mut responses = generator(Contract::Serialize);
    // Error bodies are answers.
    responses.subschema_for::<openai::ErrorBody>();
    responses.subschema_for::<ollama::ErrorBody>();
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for r in routes() {
        let mut op = Map::new();
        op.insert("operationId".into(), operation_id(&r).into());
        op.insert("summary".into(), r.summary.into());
        op.insert("tags".into(), json!([r.tag]));
        let params: Vec<Value> = path_params(r.path)
            .into_iter()
            .map(|p| {
                let schema = if p == "digest" {
                    json!({"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"})
                } else {
                    json!({"type": "string"})
                };
                json!({"name": p, "in": "path", "required": true, "schema": schema})
            })
            .collect();
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        match r.request {
            Content::None => {}
            Content::Binary => {
                op.insert(
                    "requestBody".into(),
                    json!({"required": true, "content": {"application/octet-stream": {
                        "schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}}),
                );
            }
            Content::Text => {
                op.insert(
                    "requestBody".into(),
                    json!({"required": true, "content": {"text/plain": {"schema": {"type": "string"}}}}),
                );
            }
            Content::Json(f) | Content::JsonOrNdjson(f) | Content::JsonOrSse(f, _) => {
                let s = to_value(f(&mut requests));
                op.insert(
                    "requestBody".into(),
                    json!({"required": true, "content": {"application/json": {"schema": s}}}),
                );
            }
        }
        let (status, description, content) = r.ok;
        let mut answers = Map::new();
        let body = match content {
            Content::None => json!({"description": description}),
            Content::Text => json!({"description": description,
                "content": {"text/plain": {"schema": {"type": "string"}}}}),
            Content::Binary => json!({"description": description,
                "content": {"application/octet-stream": {"schema": {"type": "string"}}}}),
            Content::Json(f) => json!({"description": description,
                "content": {"application/json": {"schema": to_value(f(&mut responses))}}}),
            Content::JsonOrNdjson(f) => {
                let s = to_value(f(&mut responses));
                json!({"description": format!("{description}: one JSON object with `\"stream\": false`, \
                        else NDJSON, one object per line (a failure after the stream started is a \
                        last line `{{\"error\": \"…\"}}`)"),
                    "content": {"application/json": {"schema": s},
                                "application/x-ndjson": {"schema": s}}})
            }
            Content::JsonOrSse(f, chunk) => {
                let s = to_value(f(&mut responses));
                let c = to_value(chunk(&mut responses));
                json!({"description": format!("{description}: one JSON object, or with `\"stream\": true` \
                        server-sent events whose `data:` lines each hold one chunk, ending with \
                        `data: [DONE]`"),
                    "content": {"application/json": {"schema": s},
                                "text/event-stream": {"schema": c}}})
            }
        };
        answers.insert(status.to_string(), body);
        for (code, what) in r.also {
            answers.insert(code.to_string(), json!({"description": what}));
        }
        if let Some(e) = error_schema(r.errors) {
            answers.insert(
                "default".into(),
                json!({"description": "The request failed; the body says why",
                       "content": {"application/json": {"schema": e}}}),
            );
        }
        op.insert("responses".into(), Value::Object(answers));
        paths
            .entry(r.path)
            .or_default()
            .insert(r.method.to_owned(), Value::Object(op));
    }
    // One set of components: where a type reads differently as a request (defaults make
    // fields optional) and as an answer, the answer's schema is `<Name>Output`.
    let mut schemas = requests.take_definitions(true);
    let answer_defs = responses.take_definitions(true);
    let mut renames: BTreeMap<String, String> = BTreeMap::new();
    // A schema that refers to a renamed one differs too: repeat until nothing changes.
    loop {
        let before = renames.len();
        for (name, s) in &answer_defs {
            let mut s = s.clone();
            rename_refs(&mut s, &renames);
            if !renames.contains_key(name) && schemas.get(name).is_some_and(|e| *e != s) {
                renames.insert(name.clone(), format!("{name}Output"));
            }
        }
        if renames.len() == before {
            break;
        }
    }
    for (name, mut s) in answer_defs {
        rename_refs(&mut s, &renames);
        let key = renames.get(&name).cloned().unwrap_or(name);
        schemas.insert(key, s);
    }
    let mut paths_value = Map::new();
    for (path, mut ops) in paths {
        for (_, op) in ops.iter_mut() {
            if let Some(answers) = op.get_mut("responses") {
                rename_refs(answers, &renames);
            }
        }
        paths_value.insert(path.to_owned(), Value::Object(ops));
    }
    let doc = json!({
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Hearth API",
            "version": API_VERSION,
            "description": "OpenAI- and Ollama-compatible HTTP API of Hearth, a self-hosted AI \
                            platform. Generated from the wire types in `hearth-api-types`.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "paths": paths_value,
        "components": {"schemas": schemas},
    });
    sorted(doc)
}

/// The document as committed and served: pretty JSON with a final newline.
pub fn document_text() -> String {
    let mut text = serde_json::to_string_pretty(&document()).unwrap_or_default();
    text.push('\n');
    text
}
