//! The local provider: models from the catalog, run by the embedded engine.
//!
//! Models load on first use (concurrent first requests share one load), stay loaded for their
//! keep-alive after the last request, and the least recently used one is unloaded when more
//! than `max_loaded` would be resident.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use hearth_catalog::{
    CL100K, Catalog, CatalogError, CreateFrom, ModelEntry, ModelExtras, ModelFormat,
};
use hearth_engine::{
    EngineConfig, EngineError, EngineHandle, Event, EventSink, GenerateRequest, SamplingParams,
    TokenLogprobs,
};
use hearth_gguf::{Gguf, GgufFile, Value};
use hearth_grammar::{Grammar, Matcher, Vocab};
use hearth_models::{Bert, ThreadPool};
use hearth_template::ChatTemplate;
use hearth_tokenizer::{CL100K_SPECIALS, MAX_RANK_FILE_BYTES, TiktokenVocab, Tokenizer, WordPiece};
use tokio::sync::{OnceCell, mpsc};

use crate::tools::{Mode, Outcome, ToolOutput};
use crate::{
    BlobChunks, BoxFuture, Capability, ChatRequest, Completion, CompletionRequest, CreateRequest,
    CreateSource, Created, EmbedInput, EmbedRequest, Embeddings, FinishReason, GenerationOptions,
    GenerationStream, LlmError, ModelDetails, ModelInfo, ModelService, OutputFormat, PullEvent,
    PullStream, RunningModel, StreamEvent, TokenLogprob, Truncation,
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
    /// Most bytes loaded models may hold (`None`: no limit). Loading one more unloads idle
    /// models, least recently used first, until it fits.
    pub memory_budget: Option<u64>,
}

/// Most inputs one embedding request may carry (OpenAI's limit).
pub const MAX_EMBED_INPUTS: usize = 2048;

/// Inputs embedded in one call of the encoder.
const EMBED_BATCH: usize = 32;

/// A model in memory: what every kind has, and the kind.
struct Loaded {
    details: ModelDetails,
    load_duration: Duration,
    kind: Kind,
}

/// What a loaded model is for.
enum Kind {
    /// A GGUF language model on its engine thread.
    Chat {
        handle: EngineHandle,
        template: Box<ChatTemplate>,
        /// The vocabulary as bytes for constrained output, built on the first request that
        /// needs it.
        vocab: OnceLock<Arc<Vocab>>,
    },
    /// A sentence-embedding model folder.
    Embed(Arc<Embedder>),
}

/// A BERT sentence encoder with its tokenizer and its own worker threads.
struct Embedder {
    bert: Bert,
    tokenizer: WordPiece,
    pool: ThreadPool,
    /// Bytes of the model folder (what it holds in memory, near enough).
    size: u64,
    /// Requests embedding right now (a busy model is not unloaded).
    active: AtomicUsize,
}

impl Loaded {
    /// The constraint for a required output format or tool calls (`None`: free text).
    fn constraint(
        &self,
        format: Option<&OutputFormat>,
        tools: Option<&ToolCalls>,
        max_tokens: Option<u32>,
    ) -> Result<Option<Box<Matcher>>, LlmError> {
        let bad = |e: hearth_grammar::GrammarError| LlmError::BadRequest(e.to_string());
        let (grammar, lazy) = match (tools, format) {
            (None, None) => return Ok(None),
            (Some(t), _) if t.mode == Mode::Required => (
                Grammar::tool_calls(&t.callable, 1, t.max_calls).map_err(bad)?,
                false,
            ),
            (Some(_), Some(_)) => {
                return Err(LlmError::BadRequest(
                    "a response format cannot be combined with tools the model may or may not call; \
                     set tool_choice to `required` or a function, or leave the format out"
                        .to_owned(),
                ));
            }
            (Some(t), None) => (
                Grammar::tool_calls(&t.callable, 1, t.max_calls).map_err(bad)?,
                true,
            ),
            (None, Some(OutputFormat::JsonObject)) => (Grammar::json_object(), false),
            (None, Some(OutputFormat::JsonSchema(schema))) => {
                (Grammar::json_schema(schema).map_err(bad)?, false)
            }
        };
        let Kind::Chat { handle, vocab, .. } = &self.kind else {
            return Err(not_chat(&self.details.info.name));
        };
        let vocab = vocab.get_or_init(|| Arc::new(Vocab::from_tokenizer(handle.tokenizer())));
        if lazy {
            return Ok(Some(Box::new(Matcher::lazy(
                Arc::new(grammar),
                vocab.clone(),
                crate::tools::OPEN,
            ))));
        }
        let shortest = grammar.min_len_bytes();
        if let Some(m) = max_tokens
            && (m as usize) < shortest
        {
            return Err(LlmError::BadRequest(format!(
                "max_tokens is {m}, but the shortest answer in the required format takes {shortest} tokens; raise max_tokens"
            )));
        }
        Ok(Some(Box::new(Matcher::new(
            Arc::new(grammar),
            vocab.clone(),
        ))))
    }

    fn chat(&self) -> Result<(&EngineHandle, &ChatTemplate), LlmError> {
        match &self.kind {
            Kind::Chat {
                handle, template, ..
            } => Ok((handle, &**template)),
            Kind::Embed(_) => Err(not_chat(&self.details.info.name)),
        }
    }

    /// Requests queued or running.
    fn busy(&self) -> usize {
        match &self.kind {
            Kind::Chat { handle, .. } => handle.load(),
            Kind::Embed(e) => e.active.load(Ordering::Relaxed),
        }
    }

    fn size_in_memory(&self) -> u64 {
        match &self.kind {
            Kind::Chat { handle, .. } => handle.summary().weights_bytes as u64,
            Kind::Embed(e) => e.size,
        }
    }

    fn context_length(&self) -> u64 {
        match &self.kind {
            Kind::Chat { handle, .. } => handle.summary().context_length as u64,
            Kind::Embed(e) => e.bert.max_tokens() as u64,
        }
    }
}

fn not_chat(name: &str) -> LlmError {
    LlmError::BadRequest(format!(
        "`{name}` is an embedding model; it cannot generate text"
    ))
}

fn not_embedding(name: &str) -> LlmError {
    LlmError::BadRequest(format!(
        "`{name}` is not an embedding model; embed with one such as `all-minilm:l6-v2` (`hearth pull all-minilm:l6-v2`)"
    ))
}

fn not_a_model(name: &str) -> LlmError {
    LlmError::BadRequest(format!(
        "`{name}` is a data file Hearth uses (a tokenizer's vocabulary), not a model"
    ))
}

/// Which kind of model a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Chat,
    Embed,
    Any,
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
    /// Canonical directories whose GGUF files `create` may copy from.
    import_dirs: Vec<PathBuf>,
    /// Largest blob an upload may store.
    max_blob_bytes: u64,
    /// tiktoken's cl100k_base, read on the first token-array embedding input.
    cl100k: OnceCell<Arc<TiktokenVocab>>,
}

/// Largest uploaded blob by default (64 GiB).
pub const DEFAULT_MAX_BLOB_BYTES: u64 = 64 << 30;

/// The file of the `tiktoken:cl100k_base` folder.
const CL100K_FILE: &str = "cl100k_base.tiktoken";

fn internal(e: impl std::fmt::Display) -> LlmError {
    LlmError::Internal(e.to_string())
}

fn catalog_error(e: CatalogError) -> LlmError {
    match e {
        CatalogError::NotFound { name, .. } => LlmError::ModelNotFound(name),
        CatalogError::InvalidName { .. }
        | CatalogError::Invalid { .. }
        | CatalogError::Checksum { .. }
        | CatalogError::Changed { .. } => LlmError::BadRequest(e.to_string()),
        CatalogError::Busy(_) => LlmError::Busy(e.to_string()),
        CatalogError::Source(_) => LlmError::Unavailable(e.to_string()),
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
        capabilities: vec![Capability::Completion],
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
        system: None,
        parameters: Vec::new(),
    }
}

/// A created model's template, system prompt, license and parameters over its file's own.
fn with_extras(d: &mut ModelDetails, x: &ModelExtras) {
    if let Some(t) = &x.template {
        d.chat_template = Some(t.clone());
    }
    if let Some(l) = &x.license {
        d.license = Some(l.clone());
    }
    d.system.clone_from(&x.system);
    d.parameters = x
        .parameters
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
}

/// Sends a pull's progress as [`PullEvent`]s; remembers what was sent so an already installed
/// model still reports every step.
struct PullReporter {
    tx: mpsc::UnboundedSender<PullEvent>,
    digest: Option<String>,
    state: Mutex<(bool, bool)>,
}

impl PullReporter {
    fn send(&self, e: PullEvent) {
        // A client that went away stops listening; the pull itself goes on to the end.
        let _ = self.tx.send(e);
    }

    fn progress(&self, p: hearth_catalog::PullProgress) {
        use hearth_catalog::PullPhase;
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match p.phase {
            PullPhase::Waiting | PullPhase::Done => {}
            PullPhase::Downloading | PullPhase::Extracting => {
                state.0 = true;
                self.send(PullEvent::Downloading {
                    digest: self.digest.clone(),
                    completed: p.done,
                    total: p.total,
                });
            }
            PullPhase::Verifying => {
                if !state.1 {
                    state.1 = true;
                    self.send(PullEvent::Verifying);
                }
            }
        }
    }

    fn finish(&self, result: Result<ModelEntry, CatalogError>) {
        let entry = match result {
            Ok(e) => e,
            // Not found when pulling: not in the registry or on the hub (the catalog says).
            Err(e @ CatalogError::NotFound { .. }) => {
                return self.send(PullEvent::Error(LlmError::NotFound(e.to_string())));
            }
            Err(e) => return self.send(PullEvent::Error(catalog_error(e))),
        };
        let digest = entry.digest.clone().unwrap_or_default();
        let (downloaded, verified) = self.state.lock().map(|s| *s).unwrap_or((true, true));
        if !downloaded {
            self.send(PullEvent::Downloading {
                digest: entry.digest.clone(),
                completed: entry.size,
                total: Some(entry.size),
            });
        }
        if !verified {
            self.send(PullEvent::Verifying);
        }
        self.send(PullEvent::Writing);
        self.send(PullEvent::Done { digest });
    }
}

/// The sha256 the registry lists for a single-file model, when the name is one of its own.
fn registry_digest(catalog: &Catalog, name: &hearth_catalog::ModelName) -> Option<String> {
    let hearth_catalog::ModelName::Local { family, tag } = name else {
        return None;
    };
    let entry = catalog.registry().find(family, tag)?;
    let hearth_catalog::RegistrySource::Pip { members, .. } = &entry.source;
    match members.as_slice() {
        [one] => Some(format!("sha256:{}", one.sha256.to_ascii_lowercase())),
        _ => None,
    }
}

/// The bytes of an upload as a blocking reader (for the catalog, on a blocking thread).
struct ChunkReader {
    rx: BlobChunks,
    chunk: Vec<u8>,
    at: usize,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.chunk.len() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Some(Err(e)) => return Err(std::io::Error::other(e)),
            }
        }
        let rest = self.chunk.get(self.at..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf.get_mut(..n)
            .unwrap_or_default()
            .copy_from_slice(rest.get(..n).unwrap_or_default());
        self.at += n;
        Ok(n)
    }
}

/// Whether `from` is meant as a file path rather than a model name (`hf.co/…` names have
/// slashes too, but never start with one).
fn looks_like_path(from: &str) -> bool {
    from.starts_with(['/', '.', '~'])
        || from.contains('\\')
        || (from.contains('/') && !from.starts_with("hf.co/"))
}

/// Memory a model will hold once loaded, estimated before loading it: its weights as stored
/// plus a quarter for repacking and working buffers.
fn estimated_memory(entry: &ModelEntry) -> u64 {
    entry.size.saturating_add(entry.size / 4)
}

/// What can be said of a model folder (a sentence-embedding model) without loading it.
fn folder_details(entry: &ModelEntry) -> ModelDetails {
    ModelDetails {
        capabilities: vec![Capability::Embedding],
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
        system: None,
        parameters: Vec::new(),
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
            import_dirs: Vec::new(),
            max_blob_bytes: DEFAULT_MAX_BLOB_BYTES,
            cl100k: OnceCell::new(),
        }
    }

    /// Directories whose GGUF files `create` may copy from (`from` a path). Each is
    /// canonicalized now; one that does not exist is left out (with a warning).
    pub fn with_import_dirs(mut self, dirs: &[PathBuf]) -> Self {
        self.import_dirs = dirs
            .iter()
            .filter_map(|d| match std::fs::canonicalize(d) {
                Ok(c) if c.is_dir() => Some(c),
                _ => {
                    tracing::warn!(dir = %d.display(), "models.import_dirs: not a directory; ignored");
                    None
                }
            })
            .collect();
        self
    }

    /// Largest blob an upload may store.
    pub fn with_max_blob_bytes(mut self, max: u64) -> Self {
        self.max_blob_bytes = max;
        self
    }

    /// The GGUF file `from` names when it is a path inside an import directory. Any other path
    /// (missing, outside, through `..` or a symlink that leads out) gets the same error, so the
    /// answer says nothing about what exists outside those directories.
    fn import_path(&self, from: &str) -> Result<PathBuf, LlmError> {
        let refused = || {
            LlmError::BadRequest(
                "`from` must name an installed model, or a GGUF file inside a directory listed \
                 in the server's models.import_dirs setting"
                    .to_owned(),
            )
        };
        let path = Path::new(from);
        if !path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(refused());
        }
        let canonical = std::fs::canonicalize(path).map_err(|_| refused())?;
        let inside = self.import_dirs.iter().any(|d| canonical.starts_with(d));
        if !inside || !canonical.is_file() {
            return Err(refused());
        }
        Ok(canonical)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// What `list` and `show` report of an installed model: its file's summary (cached by
    /// file, which copies share) under the entry's own name, with the entry's extras.
    fn details_of(&self, entry: &ModelEntry) -> Result<Arc<ModelDetails>, LlmError> {
        let summary = self.summary_of(entry)?;
        if summary.info.name == entry.name && entry.extras.is_empty() {
            return Ok(summary);
        }
        let mut d = (*summary).clone();
        d.info.name.clone_from(&entry.name);
        d.info.modified_at = entry.modified;
        with_extras(&mut d, &entry.extras);
        Ok(Arc::new(d))
    }

    fn summary_of(&self, entry: &ModelEntry) -> Result<Arc<ModelDetails>, LlmError> {
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

    /// Unload `name` if it is loaded (requests in flight finish on their own handle).
    fn unload(&self, name: &str) {
        if let Ok(mut slots) = self.slots.lock()
            && slots.remove(name).is_some()
        {
            tracing::info!(model = %name, "unloaded");
        }
    }

    /// The loaded model for `name`, loading it if needed. Marks it used now.
    async fn acquire(
        &self,
        name: &str,
        keep_alive: Option<Duration>,
        want: Want,
    ) -> Result<Arc<Loaded>, LlmError> {
        let entry = self.catalog.get(name).map_err(catalog_error)?;
        match (entry.format, want) {
            (ModelFormat::Files, _) => return Err(not_a_model(&entry.name)),
            (ModelFormat::Gguf, Want::Embed) => return Err(not_embedding(&entry.name)),
            (ModelFormat::SafetensorsDir, Want::Chat) => return Err(not_chat(&entry.name)),
            _ => {}
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
        if !cell.initialized() {
            self.make_room(&key, estimated_memory(&entry))?;
        }
        let engine = self.config.engine.clone();
        let loaded = cell
            .get_or_try_init(|| async move {
                if entry.format == ModelFormat::SafetensorsDir {
                    return load_embedder(entry, engine.threads).await;
                }
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
                    details,
                    load_duration,
                    kind: Kind::Chat {
                        handle,
                        template: Box::new(template),
                        vocab: OnceLock::new(),
                    },
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

    /// Unload idle models, least recently used first, until `need` more bytes fit in the memory
    /// budget beside what stays loaded (never `keep`).
    fn make_room(&self, keep: &str, need: u64) -> Result<(), LlmError> {
        let Some(budget) = self.config.memory_budget else {
            return Ok(());
        };
        if need > budget {
            return Err(LlmError::BadRequest(format!(
                "`{keep}` needs about {} MB of memory, more than the whole budget of {} MB; raise \
                 models.memory_budget",
                need / 1_000_000,
                budget / 1_000_000
            )));
        }
        let mut slots = self.slots.lock().map_err(internal)?;
        loop {
            let held: u64 = slots
                .iter()
                .filter(|(k, _)| k.as_str() != keep)
                .filter_map(|(_, s)| s.cell.get().map(|l| l.size_in_memory()))
                .sum();
            if held + need <= budget {
                return Ok(());
            }
            let victim = slots
                .iter()
                .filter(|(k, s)| k.as_str() != keep && s.cell.get().is_some_and(|l| l.busy() == 0))
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone());
            match victim {
                Some(v) => {
                    tracing::info!(model = %v, "unloading to stay within the memory budget");
                    slots.remove(&v);
                }
                None => {
                    return Err(LlmError::Busy(format!(
                        "`{keep}` needs about {} MB but models in use hold {} MB of the {} MB \
                         memory budget",
                        need / 1_000_000,
                        held / 1_000_000,
                        budget / 1_000_000
                    )));
                }
            }
        }
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
            let busy = s.cell.get().is_some_and(|l| l.busy() > 0);
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
        tools: Option<ToolCalls>,
    ) -> Result<GenerationStream, LlmError> {
        let o = options;
        let constraint = loaded.constraint(o.format.as_ref(), tools.as_ref(), o.max_tokens)?;
        // A stop string would cut a constrained answer short of being valid.
        let stop =
            if constraint.is_some() && tools.as_ref().is_none_or(|t| t.mode == Mode::Required) {
                Vec::new()
            } else {
                o.stop.clone()
            };
        let vocab = loaded.chat()?.0.tokenizer().vocab_size();
        if let Some((id, _)) = options
            .logit_bias
            .iter()
            .find(|(id, _)| *id as usize >= vocab)
        {
            return Err(LlmError::BadRequest(format!(
                "logit_bias: token id {id} is not in `{}`'s vocabulary of {vocab} ids",
                loaded.details.info.name
            )));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let defaults = SamplingParams::default();
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
            logit_bias: o.logit_bias.clone(),
        };
        let req = GenerateRequest {
            prompt,
            sampling,
            max_tokens: o.max_tokens.map(|m| m as usize),
            stop,
            top_logprobs: o.top_logprobs.map(|k| k as usize),
            constraint: constraint.map(|c| c as Box<dyn hearth_engine::TokenConstraint>),
            user: user.to_owned(),
            deadline: self
                .config
                .request_timeout
                .and_then(|t| Instant::now().checked_add(t)),
        };
        let sink = Sink {
            tx,
            logprobs: o
                .top_logprobs
                .is_some()
                .then(|| loaded.chat().map(|c| c.0.tokenizer().clone()))
                .transpose()?,
            pending: Vec::new(),
            tools,
            started: Instant::now(),
            load_duration: if first_use {
                loaded.load_duration
            } else {
                Duration::ZERO
            },
        };
        loaded
            .chat()?
            .0
            .generate(req, Box::new(sink))
            .map_err(engine_error)?;
        Ok(rx)
    }

    fn encode(loaded: &Loaded, text: &str) -> Result<Vec<u32>, LlmError> {
        let tok = loaded.chat()?.0.tokenizer();
        let mut ids = tok.encode(text, false, true);
        if tok.add_bos()
            && let Some(bos) = tok.bos()
            && ids.first() != Some(&bos)
        {
            ids.insert(0, bos);
        }
        Ok(ids)
    }

    /// Loads `model`, makes the prompt (with how tool calls are read from the answer, if any)
    /// and starts generating.
    async fn generate_text(
        &self,
        model: &str,
        keep_alive: Option<Duration>,
        options: &GenerationOptions,
        user: &str,
        prompt: Prompt<'_>,
    ) -> Result<GenerationStream, LlmError> {
        let was_loaded = self.is_loaded(model);
        let loaded = self.acquire(model, keep_alive, Want::Chat).await?;
        let (ids, tools) = fit_prompt(&loaded, prompt, options)?;
        self.start(loaded, ids, options, user, !was_loaded, tools)
    }

    /// tiktoken's cl100k_base, read (and pulled when missing) on first use.
    async fn cl100k(&self) -> Result<Arc<TiktokenVocab>, LlmError> {
        self.cl100k
            .get_or_try_init(|| async {
                let catalog = self.catalog.clone();
                let vocab = tokio::task::spawn_blocking(move || load_cl100k(&catalog))
                    .await
                    .map_err(internal)??;
                Ok::<_, LlmError>(Arc::new(vocab))
            })
            .await
            .cloned()
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

/// What a generation starts from.
#[derive(Clone, Copy)]
enum Prompt<'a> {
    /// A conversation (and its tools) rendered with the model's chat template.
    Chat(&'a ChatRequest),
    /// Text tokenized as is.
    Raw(&'a str),
}

/// Whether a prompt of `n` tokens leaves room in a context window of `ctx` for `max_tokens`
/// (when given) or for at least one generated token.
fn fits(n: usize, ctx: usize, max_tokens: Option<u32>) -> bool {
    match max_tokens {
        Some(m) => n.saturating_add(m as usize) <= ctx && n < ctx,
        None => n < ctx,
    }
}

fn too_long(n: usize, ctx: usize, max_tokens: Option<u32>) -> LlmError {
    let asked = match max_tokens {
        Some(m) if n < ctx => format!(" and max_tokens asks for {m} more"),
        _ => String::new(),
    };
    LlmError::BadRequest(format!(
        "the prompt is {n} tokens long{asked}; the model's context window holds {ctx} tokens. \
         Shorten the prompt{}, or opt into truncation (`truncate_prompt_tokens` on OpenAI \
         routes, `\"truncate\": true` on Ollama's)",
        if asked.is_empty() {
            ""
        } else {
            " or lower max_tokens"
        }
    ))
}

/// The prompt's token ids, truncated as `options.truncate` allows; a prompt that does not fit
/// the context window (with room for `max_tokens` when given) is bad input.
fn fit_prompt(
    loaded: &Loaded,
    prompt: Prompt<'_>,
    options: &GenerationOptions,
) -> Result<(Vec<u32>, Option<ToolCalls>), LlmError> {
    let ctx = loaded.chat()?.0.summary().context_length;
    let max = options.max_tokens;
    let encode = |prompt: Prompt<'_>| match prompt {
        Prompt::Chat(req) => {
            let (text, tools) = render(loaded, req)?;
            Ok::<_, LlmError>((LocalModels::encode(loaded, &text)?, tools))
        }
        Prompt::Raw(text) => Ok((LocalModels::encode(loaded, text)?, None)),
    };
    let (mut ids, mut tools) = encode(prompt)?;
    match (options.truncate, prompt) {
        (Truncation::Refuse, _) => {}
        (Truncation::KeepLastTokens(n), _) => {
            let n = n as usize;
            if n > ctx {
                return Err(LlmError::BadRequest(format!(
                    "truncate_prompt_tokens: must be at most the context window of {ctx} tokens \
                     (got {n})"
                )));
            }
            ids.drain(..ids.len().saturating_sub(n));
        }
        (Truncation::Fit, Prompt::Chat(req)) if !fits(ids.len(), ctx, max) => {
            // Drop the oldest messages that are neither system messages nor the last one: the
            // fewest that make it fit (binary search; fewer messages never render longer).
            let messages = &req.messages;
            let droppable: Vec<usize> = messages
                .iter()
                .enumerate()
                .take(messages.len().saturating_sub(1))
                .filter(|(_, m)| m.role != "system")
                .map(|(i, _)| i)
                .collect();
            let without = |k: usize| -> ChatRequest {
                let gone = &droppable[..k];
                ChatRequest {
                    messages: messages
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !gone.contains(i))
                        .map(|(_, m)| m.clone())
                        .collect(),
                    ..req.clone()
                }
            };
            let (mut lo, mut hi) = (1, droppable.len());
            let mut best = None;
            while lo <= hi {
                let mid = lo + (hi - lo) / 2;
                let cut = encode(Prompt::Chat(&without(mid)))?;
                if fits(cut.0.len(), ctx, max) {
                    best = Some(cut);
                    hi = mid - 1;
                } else {
                    lo = mid + 1;
                }
            }
            if let Some(cut) = best {
                (ids, tools) = cut;
            }
        }
        (Truncation::Fit, Prompt::Raw(_)) if !fits(ids.len(), ctx, max) => {
            let room = match max {
                Some(m) => ctx.saturating_sub(m as usize).min(ctx - 1),
                None => ctx - 1,
            };
            ids.drain(..ids.len().saturating_sub(room));
        }
        (Truncation::Fit, _) => {}
    }
    if ids.is_empty() || !fits(ids.len(), ctx, max) {
        return Err(too_long(ids.len(), ctx, max));
    }
    Ok((ids, tools))
}

/// Reads and parses tiktoken's cl100k_base from the catalog, pulling it when it is not
/// installed (it comes with `all-minilm:l6-v2`; older installs may lack it).
fn load_cl100k(catalog: &Catalog) -> Result<TiktokenVocab, LlmError> {
    use std::io::Read;
    let dir = match catalog.path_of(CL100K) {
        Ok(dir) => dir,
        Err(_) => {
            tracing::info!("fetching {CL100K} to decode token-array inputs");
            match catalog.pull(CL100K, &|_| {}) {
                Ok(e) => e.path,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot fetch {CL100K}");
                    return Err(LlmError::Busy(format!(
                        "token arrays are OpenAI cl100k_base ids; decoding them needs \
                         `{CL100K}`, which is not installed and could not be fetched. Run \
                         `hearth pull {CL100K}` on the server, or send the texts as strings"
                    )));
                }
            }
        }
    };
    let path = dir.join(CL100K_FILE);
    let file = std::fs::File::open(&path)
        .map_err(|e| internal(format!("cannot open {}: {e}", path.display())))?;
    let mut text = String::new();
    file.take(MAX_RANK_FILE_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| internal(format!("cannot read {}: {e}", path.display())))?;
    TiktokenVocab::parse(&text, CL100K_SPECIALS)
        .map_err(|e| internal(format!("{}: {e}", path.display())))
}

/// Token-array inputs (cl100k_base ids) as texts; an id the encoding lacks is bad input.
fn decode_cl100k(vocab: &TiktokenVocab, seqs: &[Vec<u32>]) -> Result<Vec<String>, LlmError> {
    seqs.iter()
        .enumerate()
        .map(|(i, ids)| {
            vocab.decode(ids).map_err(|e| {
                LlmError::BadRequest(format!(
                    "input {i}: token id {} is not a cl100k_base id (token arrays are ids of \
                     OpenAI's cl100k_base encoding, 0..={})",
                    e.0,
                    vocab.len().saturating_sub(1)
                ))
            })
        })
        .collect()
}

/// When an embedding request's work should stop early.
struct Stop {
    cancelled: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

impl Stop {
    fn check(&self) -> Result<(), LlmError> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(LlmError::Internal("the request was cancelled".to_owned()));
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(LlmError::Busy(
                "embedding ran past the server's request timeout; send fewer inputs per request"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

/// Marks a request cancelled when its future is dropped (normally after the work is done).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Counts a request as running on an embedder until dropped (also when the client goes away).
struct Active(Arc<Embedder>);

impl Active {
    fn new(e: Arc<Embedder>) -> Self {
        e.active.fetch_add(1, Ordering::Relaxed);
        Self(e)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Loads a sentence-embedding model folder on a blocking thread.
async fn load_embedder(entry: ModelEntry, threads: usize) -> Result<Arc<Loaded>, LlmError> {
    let started = Instant::now();
    let details = folder_details(&entry);
    let dir = entry.path.clone();
    let size = entry.size;
    let embedder = tokio::task::spawn_blocking(move || Embedder::open(&dir, threads, size))
        .await
        .map_err(internal)??;
    let mut details = details;
    details.context_length = embedder.bert.max_tokens() as u64;
    let load_duration = started.elapsed();
    tracing::info!(model = %details.info.name, ms = load_duration.as_millis() as u64, "embedding model loaded");
    Ok(Arc::new(Loaded {
        details,
        load_duration,
        kind: Kind::Embed(Arc::new(embedder)),
    }))
}

/// Largest `tokenizer.json` read (MiniLM's is 0.5 MB).
const MAX_TOKENIZER_BYTES: u64 = 64 << 20;

fn read_wordpiece(path: &Path) -> Result<WordPiece, LlmError> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| internal(format!("cannot open {}: {e}", path.display())))?;
    let mut text = String::new();
    file.take(MAX_TOKENIZER_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| internal(format!("cannot read {}: {e}", path.display())))?;
    if text.len() as u64 > MAX_TOKENIZER_BYTES {
        return Err(internal(format!("{} is too large", path.display())));
    }
    WordPiece::from_json(&text).map_err(|e| internal(format!("{}: {e}", path.display())))
}

impl Embedder {
    /// Loads the model folder `dir` (`size` bytes) with a pool of `threads` workers.
    fn open(dir: &Path, threads: usize, size: u64) -> Result<Self, LlmError> {
        let bert = Bert::load_dir(dir).map_err(internal)?;
        let tokenizer = read_wordpiece(&dir.join("tokenizer.json"))?;
        let pool = ThreadPool::new(threads).map_err(internal)?;
        Ok(Embedder {
            bert,
            tokenizer,
            pool,
            size,
            active: AtomicUsize::new(0),
        })
    }

    /// Token ids of every text, each `[CLS] … [SEP]` and at most `max_tokens()` long.
    fn sequences(
        &self,
        model: &str,
        texts: &[String],
        truncate: bool,
    ) -> Result<Vec<Vec<u32>>, LlmError> {
        let max = self.bert.max_tokens().max(2);
        let mut out = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let ids = if truncate {
                self.tokenizer.encode(text, max)
            } else {
                self.tokenizer.encode(text, usize::MAX)
            };
            if ids.len() > max {
                return Err(LlmError::BadRequest(format!(
                    "input {i} is {} tokens long; `{model}` takes at most {max} (shorten it, or let it be truncated)",
                    ids.len()
                )));
            }
            out.push(ids);
        }
        Ok(out)
    }

    /// Embeds `inputs` in batches; returns the vectors and the tokens embedded.
    fn run(
        &self,
        model: &str,
        inputs: &[String],
        truncate: bool,
        dimensions: Option<usize>,
        stop: &Stop,
    ) -> Result<(Vec<Vec<f32>>, u32), LlmError> {
        let dim = self.bert.dim();
        if let Some(n) = dimensions
            && !(1..=dim).contains(&n)
        {
            return Err(LlmError::BadRequest(format!(
                "dimensions must be between 1 and {dim} for `{model}` (got {n})"
            )));
        }
        let seqs = self.sequences(model, inputs, truncate)?;
        let tokens: usize = seqs.iter().map(Vec::len).sum();
        let mut vectors = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(EMBED_BATCH) {
            stop.check()?;
            let out = self.bert.embed(&self.pool, chunk).map_err(internal)?;
            vectors.extend(out);
        }
        if let Some(n) = dimensions {
            for v in &mut vectors {
                shorten(v, n);
            }
        }
        Ok((vectors, u32::try_from(tokens).unwrap_or(u32::MAX)))
    }
}

/// Keeps the first `n` components and scales them back to unit length (OpenAI's `dimensions`).
pub(crate) fn shorten(v: &mut Vec<f32>, n: usize) {
    v.truncate(n);
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        for x in v.iter_mut() {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
}

/// Renders a chat request's conversation (and tools) with the model's chat template; with
/// tools in play, also says how to read calls from the answer.
fn render(loaded: &Loaded, req: &ChatRequest) -> Result<(String, Option<ToolCalls>), LlmError> {
    let template = loaded.chat()?.1;
    let plan = crate::tools::plan(req, template.source().contains("tools"))?;
    let text = template
        .render(&plan.messages, true, plan.template_tools.as_ref())
        .map_err(|e| LlmError::BadRequest(format!("chat template: {e}")))?;
    let calls = plan.mode.map(|mode| ToolCalls {
        mode,
        output: ToolOutput::new(mode),
        callable: plan.callable,
        max_calls: plan.max_calls,
    });
    Ok((text, calls))
}

/// How a request's answer turns into tool calls.
struct ToolCalls {
    mode: Mode,
    /// Most calls in one answer.
    max_calls: usize,
    output: ToolOutput,
    /// `(name, parameters schema)` of the tools the answer may call.
    callable: Vec<(String, serde_json::Value)>,
}

/// Forwards engine events into a request's stream.
struct Sink {
    tx: mpsc::UnboundedSender<StreamEvent>,
    /// The tokenizer that names tokens, when the request asked for log-probabilities.
    logprobs: Option<Arc<Tokenizer>>,
    /// Log-probabilities of tokens whose text has not been sent yet.
    pending: Vec<TokenLogprob>,
    /// Set when the answer may be tool calls: text is held back while it may be one.
    tools: Option<ToolCalls>,
    started: Instant,
    load_duration: Duration,
}

/// A token's text and bytes as a client sees them.
fn token_piece(tok: &Tokenizer, id: u32) -> (String, Vec<u8>) {
    let bytes = tok.token_bytes(id, true).to_vec();
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}

fn token_logprob(tok: &Tokenizer, id: u32, lp: &TokenLogprobs) -> TokenLogprob {
    let (token, bytes) = token_piece(tok, id);
    TokenLogprob {
        token,
        bytes,
        logprob: lp.logprob,
        top: lp
            .top
            .iter()
            .map(|&(id, l)| {
                let (t, b) = token_piece(tok, id);
                (t, b, l)
            })
            .collect(),
    }
}

impl Sink {
    /// Send the log-probabilities held back, ahead of the text (or end) they belong to.
    fn flush(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let pending = std::mem::take(&mut self.pending);
        self.tx.send(StreamEvent::Logprobs(pending)).is_ok()
    }
}

impl EventSink for Sink {
    fn send(&mut self, event: Event) -> bool {
        if let Event::Token {
            id,
            logprobs: Some(lp),
            ..
        } = &event
            && let Some(tok) = &self.logprobs
        {
            let entry = token_logprob(tok, *id, lp);
            self.pending.push(entry);
        }
        let ev = match event {
            Event::Token { text, .. } | Event::Text(text) => {
                let text = match &mut self.tools {
                    Some(t) => t.output.text(&text),
                    None => text,
                };
                if text.is_empty() {
                    return !self.tx.is_closed();
                }
                if !self.flush() {
                    return false;
                }
                StreamEvent::Delta(text)
            }
            Event::Done(f) => {
                let mut finish_reason = match f.reason {
                    hearth_engine::FinishReason::Stop => FinishReason::Stop,
                    hearth_engine::FinishReason::Length => FinishReason::Length,
                };
                if let Some(t) = self.tools.take() {
                    let ev = match t.output.finish(&t.callable) {
                        Ok(Outcome::Text(rest)) if rest.is_empty() => None,
                        Ok(Outcome::Text(rest)) => Some(StreamEvent::Delta(rest)),
                        Ok(Outcome::Calls(calls)) => {
                            finish_reason = FinishReason::ToolCalls;
                            Some(StreamEvent::ToolCalls(calls))
                        }
                        Err(e) => {
                            // The answer is over either way: the request ends with the error.
                            let _ = self.tx.send(StreamEvent::Error(e));
                            return false;
                        }
                    };
                    if let Some(ev) = ev
                        && !(self.flush() && self.tx.send(ev).is_ok())
                    {
                        return false;
                    }
                }
                if !self.flush() {
                    return false;
                }
                StreamEvent::Done(Completion {
                    finish_reason,
                    prompt_tokens: f.prompt_tokens as u32,
                    cached_prompt_tokens: f.cached_tokens as u32,
                    completion_tokens: f.completion_tokens as u32,
                    load_duration: self.load_duration,
                    prompt_eval_duration: f.prompt_eval,
                    eval_duration: f.eval,
                    total_duration: self.started.elapsed() + self.load_duration,
                })
            }
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
            self.generate_text(
                &req.model,
                req.keep_alive,
                &req.options,
                &req.user,
                Prompt::Chat(&req),
            )
            .await
        })
    }

    fn complete(
        &self,
        req: CompletionRequest,
    ) -> BoxFuture<'_, Result<GenerationStream, LlmError>> {
        Box::pin(async move {
            self.generate_text(
                &req.model,
                req.keep_alive,
                &req.options,
                &req.user,
                Prompt::Raw(&req.prompt),
            )
            .await
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ModelInfo>, LlmError>> {
        Box::pin(async move {
            let entries = self.catalog.list().map_err(catalog_error)?;
            let mut out = Vec::with_capacity(entries.len());
            for e in entries
                .into_iter()
                .filter(|e| e.format != ModelFormat::Files)
            {
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
            if entry.format == ModelFormat::Files {
                return Err(not_a_model(&entry.name));
            }
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
            let loaded = self.acquire(&model, keep_alive, Want::Any).await?;
            Ok(if was_loaded {
                Duration::ZERO
            } else {
                loaded.load_duration
            })
        })
    }

    fn embed(&self, req: EmbedRequest) -> BoxFuture<'_, Result<Embeddings, LlmError>> {
        Box::pin(async move {
            let started = Instant::now();
            if req.inputs.is_empty() {
                return Err(LlmError::BadRequest(
                    "input is empty; send at least one text to embed".to_owned(),
                ));
            }
            if req.inputs.len() > MAX_EMBED_INPUTS {
                return Err(LlmError::BadRequest(format!(
                    "{} inputs is more than the {MAX_EMBED_INPUTS} one request may carry; split them",
                    req.inputs.len()
                )));
            }
            let texts = match req.inputs {
                EmbedInput::Texts(t) => t,
                EmbedInput::Tokens(seqs) => decode_cl100k(&*self.cl100k().await?, &seqs)?,
            };
            let was_loaded = self.is_loaded(&req.model);
            let loaded = self
                .acquire(&req.model, req.keep_alive, Want::Embed)
                .await?;
            let Kind::Embed(embedder) = &loaded.kind else {
                return Err(not_embedding(&loaded.details.info.name));
            };
            let embedder = embedder.clone();
            let name = loaded.details.info.name.clone();
            let _active = Active::new(embedder.clone());
            // The work stops between batches when the client goes away (this future is
            // dropped) or the request timeout passes.
            let stop = Stop {
                cancelled: Arc::new(AtomicBool::new(false)),
                deadline: self
                    .config
                    .request_timeout
                    .and_then(|t| started.checked_add(t)),
            };
            let _cancel = CancelOnDrop(stop.cancelled.clone());
            let result = tokio::task::spawn_blocking(move || {
                embedder.run(&name, &texts, req.truncate, req.dimensions, &stop)
            })
            .await;
            let (vectors, prompt_tokens) = result.map_err(internal)??;
            let load_duration = if was_loaded {
                Duration::ZERO
            } else {
                loaded.load_duration
            };
            Ok(Embeddings {
                vectors,
                prompt_tokens,
                load_duration,
                total_duration: started.elapsed(),
            })
        })
    }

    fn pull(&self, model: &str) -> BoxFuture<'_, Result<PullStream, LlmError>> {
        let model = model.to_owned();
        Box::pin(async move {
            let name = self.catalog.resolve_name(&model).map_err(catalog_error)?;
            let (tx, rx) = mpsc::unbounded_channel();
            let reporter = PullReporter {
                tx,
                digest: registry_digest(&self.catalog, &name),
                state: Mutex::new((false, false)),
            };
            reporter.send(PullEvent::Resolving);
            let catalog = self.catalog.clone();
            tokio::task::spawn_blocking(move || {
                let result = catalog.pull(&model, &|p| reporter.progress(p));
                reporter.finish(result);
            });
            Ok(rx)
        })
    }

    fn delete(&self, model: &str) -> BoxFuture<'_, Result<(), LlmError>> {
        let model = model.to_owned();
        Box::pin(async move {
            let name = self
                .catalog
                .resolve_name(&model)
                .map_err(catalog_error)?
                .to_string();
            self.unload(&name);
            let catalog = self.catalog.clone();
            tokio::task::spawn_blocking(move || catalog.remove(&name))
                .await
                .map_err(internal)?
                .map_err(catalog_error)?;
            Ok(())
        })
    }

    fn copy(&self, source: &str, destination: &str) -> BoxFuture<'_, Result<(), LlmError>> {
        let (source, destination) = (source.to_owned(), destination.to_owned());
        let catalog = self.catalog.clone();
        Box::pin(async move {
            let name = tokio::task::spawn_blocking(move || catalog.copy(&source, &destination))
                .await
                .map_err(internal)?
                .map_err(catalog_error)?
                .name;
            // A model loaded under the replaced name must not keep serving the old weights.
            self.unload(&name);
            Ok(())
        })
    }

    fn has_blob(&self, digest: &str) -> BoxFuture<'_, Result<bool, LlmError>> {
        let result = self.catalog.has_blob(digest).map_err(catalog_error);
        Box::pin(async move { result })
    }

    fn put_blob(&self, digest: &str, data: BlobChunks) -> BoxFuture<'_, Result<u64, LlmError>> {
        let digest = digest.to_owned();
        let catalog = self.catalog.clone();
        let max = self.max_blob_bytes;
        Box::pin(async move {
            hearth_catalog::blob_hex(&digest).map_err(catalog_error)?;
            tokio::task::spawn_blocking(move || {
                let mut reader = ChunkReader {
                    rx: data,
                    chunk: Vec::new(),
                    at: 0,
                };
                catalog.put_blob(&digest, &mut reader, max)
            })
            .await
            .map_err(internal)?
            .map_err(catalog_error)
        })
    }

    fn create(&self, req: CreateRequest) -> BoxFuture<'_, Result<Created, LlmError>> {
        Box::pin(async move {
            let from = match req.source {
                CreateSource::Blob(digest) => CreateFrom::Blob(digest),
                CreateSource::From(from) if looks_like_path(&from) => {
                    CreateFrom::File(self.import_path(&from)?)
                }
                CreateSource::From(from) => CreateFrom::Model(from),
            };
            let extras = ModelExtras {
                template: req.template,
                system: req.system,
                license: req.license,
                parameters: req.parameters,
            };
            let blob = match &from {
                CreateFrom::Blob(d) => Some(d.clone()),
                _ => None,
            };
            let catalog = self.catalog.clone();
            let model = req.model;
            let entry = tokio::task::spawn_blocking(move || catalog.create(&model, from, extras))
                .await
                .map_err(internal)?
                .map_err(|e| match (e, blob) {
                    (CatalogError::NotFound { .. }, Some(d)) => LlmError::NotFound(format!(
                        "blob {d} not found; upload it first (POST /api/blobs/{d})"
                    )),
                    (e, _) => catalog_error(e),
                })?;
            self.unload(&entry.name);
            Ok(Created {
                name: entry.name,
                digest: entry.digest.unwrap_or_default(),
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
                        size_in_memory: l.size_in_memory(),
                        expires_at,
                        context_length: l.context_length(),
                    })
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests;
