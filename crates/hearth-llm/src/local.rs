//! The local provider: models from the catalog, run by the embedded engine.
//!
//! Models load on first use (concurrent first requests share one load), stay loaded for their
//! keep-alive after the last request, and the least recently used one is unloaded when more
//! than `max_loaded` would be resident.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hearth_catalog::{Catalog, CatalogError, ModelEntry, ModelFormat};
use hearth_engine::{
    EngineConfig, EngineError, EngineHandle, Event, EventSink, GenerateRequest, SamplingParams,
};
use hearth_gguf::{Gguf, GgufFile, Value};
use hearth_template::ChatTemplate;
use tokio::sync::{OnceCell, mpsc};

use crate::{
    BoxFuture, ChatRequest, Completion, CompletionRequest, FinishReason, GenerationOptions,
    GenerationStream, LlmError, Message, ModelDetails, ModelInfo, ModelService, RunningModel,
    StreamEvent,
};

/// Longest keep-alive tracked; anything longer is treated as this (about a century).
const FOREVER: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Settings of the local provider.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub engine: EngineConfig,
    /// Default keep-alive; `None` keeps models loaded forever.
    pub keep_alive: Option<Duration>,
    pub max_loaded: usize,
    /// Longest a request may run (`None`: no limit).
    pub request_timeout: Option<Duration>,
}

/// A model in memory with what requests need besides the engine.
struct Loaded {
    handle: EngineHandle,
    template: ChatTemplate,
    details: ModelDetails,
    load_duration: Duration,
}

struct Slot {
    cell: Arc<OnceCell<Arc<Loaded>>>,
    last_used: Instant,
    keep_alive: Option<Duration>,
}

/// Serves catalog models with the embedded engine.
pub struct LocalModels {
    catalog: Catalog,
    config: LocalConfig,
    slots: Mutex<HashMap<String, Slot>>,
    /// GGUF summaries by file, so listing does not re-read headers.
    summaries: Mutex<HashMap<PathBuf, (SystemTime, Arc<ModelDetails>)>>,
}

fn internal(e: impl std::fmt::Display) -> LlmError {
    LlmError::Internal(e.to_string())
}

fn catalog_error(e: CatalogError) -> LlmError {
    match e {
        CatalogError::NotFound { name, .. } => LlmError::ModelNotFound(name),
        CatalogError::InvalidName { .. } => LlmError::BadRequest(e.to_string()),
        other => internal(other),
    }
}

fn engine_error(e: EngineError) -> LlmError {
    match e {
        EngineError::PromptTooLong { .. } | EngineError::EmptyPrompt => {
            LlmError::BadRequest(e.to_string())
        }
        EngineError::QueueFull { .. } => LlmError::Busy(e.to_string()),
        other => internal(other),
    }
}

/// ggml's `general.file_type` names.
fn file_type_name(ft: u64) -> &'static str {
    match ft {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        _ => "unknown",
    }
}

/// "135M", "1.2B" from a parameter count.
fn size_label(params: u64) -> String {
    let p = params as f64;
    if p >= 1e9 {
        format!("{:.1}B", p / 1e9)
    } else if p >= 1e6 {
        format!("{:.0}M", p / 1e6)
    } else {
        format!("{:.0}K", p / 1e3)
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) if s.len() > 200 => {
            format!("{}… ({} chars)", &s[..s.floor_char_boundary(200)], s.len())
        }
        Value::String(s) => s.clone(),
        Value::Array(a) if a.len() > 16 => {
            format!("[{} {} values]", a.len(), a.element_type_name())
        }
        Value::Array(a) => format!("{a:?}"),
        other => format!("{other:?}")
            .split_once('(')
            .map_or_else(String::new, |(_, rest)| {
                rest.trim_end_matches(')').to_owned()
            }),
    }
}

fn summarize(entry: &ModelEntry, g: &Gguf) -> ModelDetails {
    let arch = g.architecture().unwrap_or("unknown").to_owned();
    let params: u64 = g.tensors().iter().map(|t| t.elements()).sum();
    let parameter_size = g
        .opt("general.size_label", Gguf::str)
        .ok()
        .flatten()
        .map_or_else(|| size_label(params), str::to_owned);
    let quantization_level = g
        .opt("general.file_type", Gguf::u64)
        .ok()
        .flatten()
        .map_or("unknown", file_type_name)
        .to_owned();
    let context_length = g.u64(&format!("{arch}.context_length")).unwrap_or(0);
    ModelDetails {
        info: ModelInfo {
            name: entry.name.clone(),
            size_bytes: entry.size,
            digest: entry
                .digest
                .as_deref()
                .map_or_else(String::new, |d| d.trim_start_matches("sha256:").to_owned()),
            modified_at: entry.modified,
            format: "gguf".into(),
            family: arch,
            parameter_size,
            quantization_level,
        },
        context_length,
        chat_template: g
            .opt("tokenizer.chat_template", Gguf::str)
            .ok()
            .flatten()
            .map(str::to_owned),
        metadata: g
            .metadata()
            .iter()
            .map(|(k, v)| (k.clone(), value_text(v)))
            .collect(),
        license: g
            .opt("general.license", Gguf::str)
            .ok()
            .flatten()
            .map(str::to_owned),
    }
}

/// What can be said of a model folder (a sentence-embedding model) without loading it.
fn folder_details(entry: &ModelEntry) -> ModelDetails {
    ModelDetails {
        info: ModelInfo {
            name: entry.name.clone(),
            size_bytes: entry.size,
            digest: entry
                .digest
                .as_deref()
                .map_or_else(String::new, |d| d.trim_start_matches("sha256:").to_owned()),
            modified_at: entry.modified,
            format: "safetensors".into(),
            family: "bert".into(),
            parameter_size: String::new(),
            quantization_level: "F32".into(),
        },
        context_length: 0,
        chat_template: None,
        metadata: Vec::new(),
        license: None,
    }
}

fn token_text(handle: &EngineHandle, id: Option<u32>) -> String {
    id.and_then(|i| handle.tokenizer().token_text(i))
        .unwrap_or_default()
        .to_owned()
}

impl LocalModels {
    pub fn new(catalog: Catalog, config: LocalConfig) -> Self {
        Self {
            catalog,
            config,
            slots: Mutex::new(HashMap::new()),
            summaries: Mutex::new(HashMap::new()),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    fn details_of(&self, entry: &ModelEntry) -> Result<Arc<ModelDetails>, LlmError> {
        if entry.format != ModelFormat::Gguf {
            return Ok(Arc::new(folder_details(entry)));
        }
        if let Ok(cache) = self.summaries.lock()
            && let Some((mtime, d)) = cache.get(&entry.path)
            && *mtime == entry.modified
        {
            return Ok(d.clone());
        }
        let file = GgufFile::open(&entry.path).map_err(internal)?;
        let details = Arc::new(summarize(entry, &file));
        if let Ok(mut cache) = self.summaries.lock() {
            cache.insert(entry.path.clone(), (entry.modified, details.clone()));
        }
        Ok(details)
    }

    /// The loaded model for `name`, loading it if needed. Marks it used now.
    async fn acquire(
        &self,
        name: &str,
        keep_alive: Option<Duration>,
    ) -> Result<Arc<Loaded>, LlmError> {
        let entry = self.catalog.get(name).map_err(catalog_error)?;
        if entry.format != ModelFormat::Gguf {
            return Err(LlmError::BadRequest(format!(
                "`{}` is an embedding model; it cannot generate text",
                entry.name
            )));
        }
        let key = entry.name.clone();
        // A keep-alive beyond a century means "forever".
        let keep_alive = keep_alive.map(|k| k.min(FOREVER));
        let cell = {
            let mut slots = self.slots.lock().map_err(internal)?;
            let slot = slots.entry(key.clone()).or_insert_with(|| Slot {
                cell: Arc::new(OnceCell::new()),
                last_used: Instant::now(),
                keep_alive: self.config.keep_alive,
            });
            slot.last_used = Instant::now();
            if keep_alive.is_some() {
                slot.keep_alive = keep_alive;
            }
            slot.cell.clone()
        };
        let engine = self.config.engine.clone();
        let loaded = cell
            .get_or_try_init(|| async move {
                let started = Instant::now();
                let path = entry.path.clone();
                let (handle, details) = tokio::task::spawn_blocking(move || {
                    let file = GgufFile::open(&path).map_err(internal)?;
                    let details = summarize(&entry, &file);
                    let handle = EngineHandle::start(&file, engine).map_err(engine_error)?;
                    Ok::<_, LlmError>((handle, details))
                })
                .await
                .map_err(internal)??;
                let bos = token_text(&handle, handle.tokenizer().bos());
                let eos = token_text(&handle, handle.tokenizer().eos());
                let template = match &details.chat_template {
                    Some(src) => ChatTemplate::new(src, &bos, &eos).map_err(|e| {
                        LlmError::Internal(format!("the model's chat template does not compile: {e}"))
                    })?,
                    None => ChatTemplate::chatml(),
                };
                let load_duration = started.elapsed();
                tracing::info!(model = %details.info.name, ms = load_duration.as_millis() as u64, "model loaded");
                Ok::<_, LlmError>(Arc::new(Loaded {
                    handle,
                    template,
                    details,
                    load_duration,
                }))
            })
            .await;
        let loaded = match loaded {
            Ok(l) => l.clone(),
            Err(e) => {
                // Let the next request try again.
                if let Ok(mut slots) = self.slots.lock() {
                    slots.remove(&key);
                }
                return Err(e);
            }
        };
        self.enforce_max_loaded(&key);
        Ok(loaded)
    }

    /// Unload least recently used models beyond `max_loaded` (never `keep`).
    fn enforce_max_loaded(&self, keep: &str) {
        let Ok(mut slots) = self.slots.lock() else {
            return;
        };
        while slots.values().filter(|s| s.cell.initialized()).count() > self.config.max_loaded {
            let victim = slots
                .iter()
                .filter(|(k, s)| k.as_str() != keep && s.cell.initialized())
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone());
            match victim {
                Some(v) => {
                    tracing::info!(model = %v, "unloading to stay within max_loaded");
                    slots.remove(&v);
                }
                None => break,
            }
        }
    }

    /// Unload models idle past their keep-alive. Called periodically by the app.
    pub fn unload_idle(&self) {
        let Ok(mut slots) = self.slots.lock() else {
            return;
        };
        let now = Instant::now();
        slots.retain(|name, s| {
            let busy = s.cell.get().is_some_and(|l| l.handle.load() > 0);
            if busy {
                // Keep-alive counts from the end of the last request.
                s.last_used = now;
            }
            let expired = s
                .keep_alive
                .is_some_and(|k| now.duration_since(s.last_used) >= k);
            if expired && !busy {
                tracing::info!(model = %name, "unloading idle model");
            }
            busy || !expired
        });
    }

    fn start(
        &self,
        loaded: Arc<Loaded>,
        prompt: Vec<u32>,
        options: &GenerationOptions,
        user: &str,
        first_use: bool,
    ) -> Result<GenerationStream, LlmError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let defaults = SamplingParams::default();
        let o = options;
        let sampling = SamplingParams {
            temperature: o.temperature.unwrap_or(defaults.temperature),
            top_k: o.top_k.map_or(defaults.top_k, |k| k as usize),
            top_p: o.top_p.unwrap_or(defaults.top_p),
            min_p: o.min_p.unwrap_or(defaults.min_p),
            repeat_penalty: o.repeat_penalty.unwrap_or(defaults.repeat_penalty),
            repeat_last_n: o
                .repeat_last_n
                .map_or(defaults.repeat_last_n, |n| n as usize),
            presence_penalty: o.presence_penalty.unwrap_or(defaults.presence_penalty),
            frequency_penalty: o.frequency_penalty.unwrap_or(defaults.frequency_penalty),
            seed: o.seed,
        };
        let req = GenerateRequest {
            prompt,
            sampling,
            max_tokens: o.max_tokens.map(|m| m as usize),
            stop: o.stop.clone(),
            user: user.to_owned(),
            deadline: self
                .config
                .request_timeout
                .and_then(|t| Instant::now().checked_add(t)),
        };
        let sink = Sink {
            tx,
            started: Instant::now(),
            load_duration: if first_use {
                loaded.load_duration
            } else {
                Duration::ZERO
            },
        };
        loaded
            .handle
            .generate(req, Box::new(sink))
            .map_err(engine_error)?;
        Ok(rx)
    }

    fn encode(loaded: &Loaded, text: &str) -> Vec<u32> {
        let tok = loaded.handle.tokenizer();
        let mut ids = tok.encode(text, false, true);
        if tok.add_bos()
            && let Some(bos) = tok.bos()
            && ids.first() != Some(&bos)
        {
            ids.insert(0, bos);
        }
        ids
    }

    /// Render `messages` with the model's chat template.
    pub async fn render_chat(&self, model: &str, messages: &[Message]) -> Result<String, LlmError> {
        let loaded = self.acquire(model, None).await?;
        render(&loaded, messages)
    }

    async fn generate_text(
        &self,
        model: &str,
        keep_alive: Option<Duration>,
        options: &GenerationOptions,
        user: &str,
        make_prompt: impl FnOnce(&Loaded) -> Result<String, LlmError>,
    ) -> Result<GenerationStream, LlmError> {
        let was_loaded = self.is_loaded(model);
        let loaded = self.acquire(model, keep_alive).await?;
        let text = make_prompt(&loaded)?;
        let prompt = Self::encode(&loaded, &text);
        self.start(loaded, prompt, options, user, !was_loaded)
    }

    fn is_loaded(&self, model: &str) -> bool {
        let Ok(entry) = self.catalog.get(model) else {
            return false;
        };
        self.slots
            .lock()
            .ok()
            .and_then(|s| s.get(&entry.name).map(|s| s.cell.initialized()))
            .unwrap_or(false)
    }
}

fn render(loaded: &Loaded, messages: &[Message]) -> Result<String, LlmError> {
    let msgs: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| serde_json::json!({"role": m.role, "content": m.content}))
        .collect();
    loaded
        .template
        .render(&msgs, true, None)
        .map_err(|e| LlmError::BadRequest(format!("chat template: {e}")))
}

/// Forwards engine events into a request's stream.
struct Sink {
    tx: mpsc::UnboundedSender<StreamEvent>,
    started: Instant,
    load_duration: Duration,
}

impl EventSink for Sink {
    fn send(&mut self, event: Event) -> bool {
        let ev = match event {
            Event::Token { text, .. } | Event::Text(text) => {
                if text.is_empty() {
                    return !self.tx.is_closed();
                }
                StreamEvent::Delta(text)
            }
            Event::Done(f) => StreamEvent::Done(Completion {
                finish_reason: match f.reason {
                    hearth_engine::FinishReason::Stop => FinishReason::Stop,
                    hearth_engine::FinishReason::Length => FinishReason::Length,
                },
                prompt_tokens: f.prompt_tokens as u32,
                completion_tokens: f.completion_tokens as u32,
                load_duration: self.load_duration,
                prompt_eval_duration: f.prompt_eval,
                eval_duration: f.eval,
                total_duration: self.started.elapsed() + self.load_duration,
            }),
            Event::Error(e) => StreamEvent::Error(LlmError::Internal(e)),
        };
        self.tx.send(ev).is_ok()
    }

    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl ModelService for LocalModels {
    fn chat(&self, req: ChatRequest) -> BoxFuture<'_, Result<GenerationStream, LlmError>> {
        Box::pin(async move {
            self.generate_text(&req.model, req.keep_alive, &req.options, &req.user, |l| {
                render(l, &req.messages)
            })
            .await
        })
    }

    fn complete(
        &self,
        req: CompletionRequest,
    ) -> BoxFuture<'_, Result<GenerationStream, LlmError>> {
        Box::pin(async move {
            let prompt = req.prompt.clone();
            self.generate_text(
                &req.model,
                req.keep_alive,
                &req.options,
                &req.user,
                move |_| Ok(prompt),
            )
            .await
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ModelInfo>, LlmError>> {
        Box::pin(async move {
            let entries = self.catalog.list().map_err(catalog_error)?;
            let mut out = Vec::with_capacity(entries.len());
            for e in entries {
                match self.details_of(&e) {
                    Ok(d) => out.push(d.info.clone()),
                    Err(err) => tracing::warn!(model = %e.name, error = %err, "cannot read model"),
                }
            }
            Ok(out)
        })
    }

    fn show(&self, model: &str) -> BoxFuture<'_, Result<ModelDetails, LlmError>> {
        let model = model.to_owned();
        Box::pin(async move {
            let entry = self.catalog.get(&model).map_err(catalog_error)?;
            Ok((*self.details_of(&entry)?).clone())
        })
    }

    fn load(
        &self,
        model: &str,
        keep_alive: Option<Duration>,
    ) -> BoxFuture<'_, Result<Duration, LlmError>> {
        let model = model.to_owned();
        Box::pin(async move {
            let was_loaded = self.is_loaded(&model);
            let loaded = self.acquire(&model, keep_alive).await?;
            Ok(if was_loaded {
                Duration::ZERO
            } else {
                loaded.load_duration
            })
        })
    }

    fn running(&self) -> BoxFuture<'_, Vec<RunningModel>> {
        Box::pin(async move {
            let Ok(slots) = self.slots.lock() else {
                return Vec::new();
            };
            let now_sys = SystemTime::now();
            let now = Instant::now();
            slots
                .values()
                .filter_map(|s| {
                    let l = s.cell.get()?;
                    let left = s
                        .keep_alive
                        .unwrap_or(FOREVER)
                        .saturating_sub(now.duration_since(s.last_used));
                    let expires_at = now_sys.checked_add(left).unwrap_or(now_sys);
                    Some(RunningModel {
                        info: l.details.info.clone(),
                        size_in_memory: l.handle.summary().weights_bytes as u64,
                        expires_at,
                        context_length: l.handle.summary().context_length as u64,
                    })
                })
                .collect()
        })
    }
}
