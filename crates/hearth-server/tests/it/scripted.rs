//! `ScriptedModels`: a [`ModelService`] that plays fixed scripts.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearth_llm::{
    BoxFuture, Capability, ChatRequest, Completion, CompletionRequest, EmbedRequest, Embeddings,
    FinishReason, GenerationStream, LlmError, ModelDetails, ModelInfo, ModelService, RunningModel,
    StreamEvent, TokenLogprob, ToolCall,
};
use tokio::sync::{Notify, mpsc};

/// The text every scripted generation produces, as deltas (the empty one is a token that
/// completed no text).
pub const DELTAS: &[&str] = &["Hel", "lo", "", " world"];

/// With log-probabilities asked for, the tokens behind [`DELTAS`] (the empty delta's token is
/// the first byte of a character), then one more token whose text a stop string swallowed.
/// Token `i` has log-probability `-(i + 1) / 4`; see [`scripted_logprob`].
pub const TOKENS: &[&[u8]] = &[b"Hel", b"lo", b"\xe2", b" world", b"!"];

/// Scripted token `i` with `k` alternatives: the token itself, then `alt1`, `alt2`, … at
/// log-probabilities -2, -3, …
pub fn scripted_logprob(i: usize, k: u32) -> TokenLogprob {
    let bytes = TOKENS[i].to_vec();
    let token = String::from_utf8_lossy(&bytes).into_owned();
    let logprob = -((i + 1) as f32) / 4.0;
    let mut top = vec![(token.clone(), bytes.clone(), logprob)];
    for j in 1..k {
        let alt = format!("alt{j}");
        top.push((alt.clone(), alt.into_bytes(), -1.0 - j as f32));
    }
    top.truncate(k as usize);
    TokenLogprob {
        token,
        bytes,
        logprob,
        top,
    }
}

pub const SMOL: &str = "smollm2:135m";
/// Answers every chat with [`tool_calls`].
pub const TOOLY: &str = "tooly";

/// What [`TOOLY`] calls.
pub fn tool_calls() -> Vec<ToolCall> {
    vec![
        ToolCall {
            id: "call_a".to_owned(),
            name: "get_weather".to_owned(),
            arguments: serde_json::json!({"city": "Oslo", "days": 2}),
        },
        ToolCall {
            id: "call_b".to_owned(),
            name: "get_time".to_owned(),
            arguments: serde_json::json!({}),
        },
    ]
}
/// A name with `/` and `:` in it, as Hugging Face references are.
pub const HF: &str = "hf.co/org/repo:Q4_1";
/// The embedding model: input `i` embeds as [`embedding`]`(i)`, each input counts
/// [`TOKENS_PER_INPUT`] tokens.
pub const EMBED: &str = "all-minilm:l6-v2";
pub const TOKENS_PER_INPUT: u32 = 5;

/// The scripted embedding of input `i` (before `dimensions` keeps a prefix of it).
pub fn embedding(i: usize) -> Vec<f32> {
    vec![i as f32, 0.5, -0.25]
}

/// Stands in for the embedded engine so that the wire-format tests run without model weights;
/// the real engine's end-to-end tests live elsewhere and are written against the real thing.
///
/// Scripts by model name: [`SMOL`] and [`HF`] answer [`DELTAS`] then a fixed [`completion`]
/// (with `top_logprobs` set, each delta after its tokens' [`StreamEvent::Logprobs`]);
/// `busy` is refused with [`LlmError::Busy`]; `broken` fails with an internal error carrying a
/// secret detail; `midway` fails after one delta; `endless` produces deltas until its receiver is
/// dropped, then notifies [`ScriptedModels::cancelled`]; [`EMBED`] embeds (the chat models refuse
/// to, as the real service does); any other name is not found.
#[derive(Debug, Default)]
pub struct ScriptedModels {
    pub last_chat: Mutex<Option<ChatRequest>>,
    /// Every chat request, in arrival order.
    pub chats: Mutex<Vec<ChatRequest>>,
    pub last_completion: Mutex<Option<CompletionRequest>>,
    pub last_embed: Mutex<Option<EmbedRequest>>,
    /// Notified when an `endless` generation starts.
    pub started: Arc<Notify>,
    /// Notified when an `endless` generation's sender sees the channel closed.
    pub cancelled: Arc<Notify>,
}

pub fn completion() -> Completion {
    Completion {
        finish_reason: FinishReason::Stop,
        prompt_tokens: 7,
        cached_prompt_tokens: 0,
        completion_tokens: 3,
        load_duration: Duration::from_millis(1),
        prompt_eval_duration: Duration::from_millis(2),
        eval_duration: Duration::from_millis(3),
        total_duration: Duration::from_millis(10),
    }
}

pub fn modified_at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn info(name: &str) -> ModelInfo {
    ModelInfo {
        name: name.to_owned(),
        size_bytes: 100_000,
        digest: "ab".repeat(32),
        modified_at: modified_at(),
        format: "gguf".to_owned(),
        family: "llama".to_owned(),
        parameter_size: "135M".to_owned(),
        quantization_level: "Q4_1".to_owned(),
    }
}

impl ScriptedModels {
    fn play(&self, model: &str, top_logprobs: Option<u32>) -> Result<GenerationStream, LlmError> {
        let (tx, rx) = mpsc::unbounded_channel();
        match model {
            SMOL | HF => {
                tokio::spawn(async move {
                    for (i, d) in DELTAS.iter().enumerate() {
                        if let Some(k) = top_logprobs {
                            let _ = tx.send(StreamEvent::Logprobs(vec![scripted_logprob(i, k)]));
                        }
                        let _ = tx.send(StreamEvent::Delta((*d).to_owned()));
                        tokio::task::yield_now().await;
                    }
                    if let Some(k) = top_logprobs {
                        let last = scripted_logprob(DELTAS.len(), k);
                        let _ = tx.send(StreamEvent::Logprobs(vec![last]));
                    }
                    let _ = tx.send(StreamEvent::Done(completion()));
                });
            }
            TOOLY => {
                tokio::spawn(async move {
                    let _ = tx.send(StreamEvent::ToolCalls(tool_calls()));
                    let _ = tx.send(StreamEvent::Done(Completion {
                        finish_reason: FinishReason::ToolCalls,
                        ..completion()
                    }));
                });
            }
            "busy" => return Err(LlmError::Busy("2 requests are queued".to_owned())),
            "broken" => return Err(LlmError::Internal("secret detail 0xdeadbeef".to_owned())),
            "midway" => {
                tokio::spawn(async move {
                    let _ = tx.send(StreamEvent::Delta("Hel".to_owned()));
                    tokio::task::yield_now().await;
                    let err = LlmError::Internal("secret detail 0xdeadbeef".to_owned());
                    let _ = tx.send(StreamEvent::Error(err));
                });
            }
            "endless" => {
                let cancelled = Arc::clone(&self.cancelled);
                self.started.notify_one();
                tokio::spawn(async move {
                    while tx.send(StreamEvent::Delta("tick".to_owned())).is_ok() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    cancelled.notify_one();
                });
            }
            other => return Err(LlmError::ModelNotFound(other.to_owned())),
        }
        Ok(rx)
    }
}

impl ModelService for ScriptedModels {
    fn chat(&self, req: ChatRequest) -> BoxFuture<'_, Result<GenerationStream, LlmError>> {
        Box::pin(async move {
            let (model, k) = (req.model.clone(), req.options.top_logprobs);
            self.chats
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(req.clone());
            *self
                .last_chat
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(req);
            self.play(&model, k)
        })
    }

    fn complete(
        &self,
        req: CompletionRequest,
    ) -> BoxFuture<'_, Result<GenerationStream, LlmError>> {
        Box::pin(async move {
            let (model, k) = (req.model.clone(), req.options.top_logprobs);
            *self
                .last_completion
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(req);
            self.play(&model, k)
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ModelInfo>, LlmError>> {
        Box::pin(async { Ok(vec![info(SMOL), info(HF)]) })
    }

    fn show(&self, model: &str) -> BoxFuture<'_, Result<ModelDetails, LlmError>> {
        let model = model.to_owned();
        Box::pin(async move {
            if model != SMOL && model != HF {
                return Err(LlmError::ModelNotFound(model));
            }
            Ok(ModelDetails {
                info: info(&model),
                capabilities: vec![Capability::Completion],
                context_length: 8192,
                chat_template: Some(
                    "{% for m in messages %}{{ m.content }}{% endfor %}".to_owned(),
                ),
                metadata: vec![
                    ("general.architecture".to_owned(), "llama".to_owned()),
                    ("general.name".to_owned(), "SmolLM2 135M".to_owned()),
                    ("llama.context_length".to_owned(), "8192".to_owned()),
                    ("llama.rope.freq_base".to_owned(), "100000.5".to_owned()),
                ],
                license: Some("apache-2.0".to_owned()),
                system: None,
                parameters: Vec::new(),
            })
        })
    }

    fn load(
        &self,
        model: &str,
        _keep_alive: Option<Duration>,
    ) -> BoxFuture<'_, Result<Duration, LlmError>> {
        let known = matches!(model, SMOL | HF | EMBED);
        let model = model.to_owned();
        Box::pin(async move {
            if known {
                Ok(Duration::ZERO)
            } else {
                Err(LlmError::ModelNotFound(model))
            }
        })
    }

    fn embed(&self, req: EmbedRequest) -> BoxFuture<'_, Result<Embeddings, LlmError>> {
        Box::pin(async move {
            *self
                .last_embed
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(req.clone());
            match req.model.as_str() {
                EMBED => {}
                SMOL | HF => {
                    return Err(LlmError::BadRequest(format!(
                        "`{}` is not an embedding model",
                        req.model
                    )));
                }
                "busy" => return Err(LlmError::Busy("2 requests are queued".to_owned())),
                other => return Err(LlmError::ModelNotFound(other.to_owned())),
            }
            if req.inputs.is_empty() {
                return Err(LlmError::BadRequest("input is empty".to_owned()));
            }
            let n = req.inputs.len();
            let vectors = (0..n)
                .map(|i| {
                    let mut v = embedding(i);
                    v.truncate(req.dimensions.unwrap_or(v.len()));
                    v
                })
                .collect();
            Ok(Embeddings {
                vectors,
                prompt_tokens: TOKENS_PER_INPUT * n as u32,
                load_duration: Duration::from_millis(1),
                total_duration: Duration::from_millis(10),
            })
        })
    }

    fn running(&self) -> BoxFuture<'_, Vec<RunningModel>> {
        Box::pin(async {
            vec![RunningModel {
                info: info(SMOL),
                size_in_memory: 120_000_000,
                expires_at: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
                context_length: 8192,
            }]
        })
    }
}
