use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hearth_gguf::GgufFile;
use hearth_models::{KvCache, Llama, ModelError, ThreadPool};
use hearth_tokenizer::{StreamDecoder, Tokenizer};

use crate::sampling::{Sampler, SamplingParams};
use crate::stop::{StopMatcher, StopResult};

/// How the engine runs a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Worker threads for the forward pass (0: one per core).
    pub threads: usize,
    /// Context window per sequence (0: the model's own).
    pub context_length: usize,
    /// Most prompt tokens run in one forward step, so long prompts don't stall other streams.
    pub prefill_chunk: usize,
    /// Most requests waiting or running; more are refused with [`EngineError::QueueFull`].
    pub max_queue: usize,
    /// Most requests holding a KV cache at once; the rest wait. A user with nothing running is
    /// always let in, so one user's flood cannot lock others out.
    pub max_active: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            threads: 0,
            context_length: 0,
            prefill_chunk: 256,
            max_queue: 512,
            max_active: 8,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("the prompt has {prompt} tokens; the context window holds {limit}")]
    PromptTooLong { prompt: usize, limit: usize },
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the engine has stopped")]
    Stopped,
    #[error("the request ran past its time limit")]
    TimedOut,
    #[error("{limit} requests are already waiting or running; try again shortly")]
    QueueFull { limit: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
}

/// Counts and timings of a finished request.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub reason: FinishReason,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub prompt_eval: Duration,
    pub eval: Duration,
}

/// What a request's sink receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A generated token and the text it completes (never half a UTF-8 character; may be empty).
    Token {
        id: u32,
        text: String,
    },
    /// Text held back (a possible stop-string start, an unfinished character) released at the end.
    Text(String),
    Done(Finished),
    Error(String),
}

/// Receives a request's events.
pub trait EventSink: Send {
    /// Deliver an event; `false` means nobody listens any more and the request is cancelled.
    fn send(&mut self, event: Event) -> bool;
    /// Whether the receiver is gone (checked between prefill chunks).
    fn is_closed(&self) -> bool;
}

/// A generation request in tokens.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: Vec<u32>,
    pub sampling: SamplingParams,
    /// `None`: until end of generation or the context is full.
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    /// Who asked (an API key's owner, OpenAI's `user`); requests are scheduled fairly across
    /// users. Empty: anonymous, one shared user.
    pub user: String,
    /// Give up (with an error event) if not finished by then.
    pub deadline: Option<Instant>,
}

/// Facts about the loaded model.
#[derive(Debug, Clone)]
pub struct ModelSummary {
    pub architecture: String,
    pub context_length: usize,
    pub weights_bytes: usize,
    pub main_type: String,
    pub parameters: u64,
}

enum Command {
    Generate(Box<GenerateRequest>, Box<dyn EventSink>),
}

/// The way to reach a model's engine thread. Cloning shares the thread; the thread stops when
/// the last handle is dropped, after finishing nothing further (active requests get an error).
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
    tokenizer: Arc<Tokenizer>,
    summary: Arc<ModelSummary>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
    max_queue: usize,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle")
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl EngineHandle {
    /// Load the model in `file` and start its engine thread.
    pub fn start(file: &GgufFile, config: EngineConfig) -> Result<Self, EngineError> {
        let tokenizer = Arc::new(
            Tokenizer::from_gguf(file).map_err(|e| EngineError::Tokenizer(e.to_string()))?,
        );
        let model = Llama::load(file)?;
        let context_length = match config.context_length {
            0 => model.config.context_length,
            n => n.min(model.config.context_length),
        };
        let params: u64 = file.tensors().iter().map(|t| t.elements()).sum();
        let summary = Arc::new(ModelSummary {
            architecture: "llama".into(),
            context_length,
            weights_bytes: model.size_bytes(),
            main_type: model.main_type().to_string(),
            parameters: params,
        });
        let pool = ThreadPool::new(config.threads)?;
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let worker = Worker {
            model,
            pool,
            tokenizer: tokenizer.clone(),
            context_length,
            prefill_chunk: config.prefill_chunk.max(1),
            max_active: config.max_active.max(1),
            active: VecDeque::new(),
            waiting: VecDeque::new(),
            turns: VecDeque::new(),
            queued: queued.clone(),
        };
        std::thread::Builder::new()
            .name("hearth-engine".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| ModelError::Threads(e.to_string()))?;
        Ok(Self {
            tx,
            tokenizer,
            summary,
            queued,
            max_queue: config.max_queue.max(1),
        })
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    pub fn summary(&self) -> &ModelSummary {
        &self.summary
    }

    /// Requests waiting or running.
    pub fn load(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Queue a request; its events go to `sink`. Errors that can be known now are returned.
    pub fn generate(
        &self,
        req: GenerateRequest,
        sink: Box<dyn EventSink>,
    ) -> Result<(), EngineError> {
        if req.prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if req.prompt.len() >= self.summary.context_length {
            return Err(EngineError::PromptTooLong {
                prompt: req.prompt.len(),
                limit: self.summary.context_length,
            });
        }
        let limit = self.max_queue;
        self.queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .map_err(|_| EngineError::QueueFull { limit })?;
        self.tx
            .send(Command::Generate(Box::new(req), sink))
            .map_err(|_| {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                EngineError::Stopped
            })
    }
}

struct Sequence {
    req: Box<GenerateRequest>,
    sink: Box<dyn EventSink>,
    cache: KvCache,
    /// Prompt tokens already run.
    prefilled: usize,
    generated: Vec<u32>,
    history: Vec<u32>,
    sampler: Sampler,
    decoder: StreamDecoder,
    stops: StopMatcher,
    next_logits: Option<Vec<f32>>,
    started: Instant,
    prompt_eval: Duration,
    decode_started: Option<Instant>,
}

/// A request not started yet.
type Pending = (Box<GenerateRequest>, Box<dyn EventSink>);

struct Worker {
    model: Llama,
    pool: ThreadPool,
    tokenizer: Arc<Tokenizer>,
    context_length: usize,
    prefill_chunk: usize,
    max_active: usize,
    /// Requests holding a KV cache, in the order they are next stepped (per user).
    active: VecDeque<Sequence>,
    /// Requests not started yet, per user, users in arrival order.
    waiting: VecDeque<(String, VecDeque<Pending>)>,
    /// Users with active requests, in the order they get their next step.
    turns: VecDeque<String>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
}

enum StepOutcome {
    Continue,
    Finished,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Command>) {
        loop {
            // Block only when idle; otherwise take whatever has arrived and keep stepping.
            if self.active.is_empty() && self.waiting.is_empty() {
                match rx.recv() {
                    Ok(cmd) => self.accept(cmd),
                    Err(_) => return,
                }
            }
            while let Ok(cmd) = rx.try_recv() {
                self.accept(cmd);
            }
            self.admit();
            let Some(mut seq) = self.next_turn() else {
                continue;
            };
            let outcome = if seq.req.deadline.is_some_and(|d| Instant::now() >= d) {
                Err(EngineError::TimedOut)
            } else {
                self.step(&mut seq)
            };
            match outcome {
                Ok(StepOutcome::Continue) => self.active.push_back(seq),
                Ok(StepOutcome::Finished) => self.release(),
                Err(e) => {
                    tracing::warn!(error = %e, "generation failed");
                    seq.sink.send(Event::Error(e.to_string()));
                    self.release();
                }
            }
        }
    }

    fn release(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }

    fn accept(&mut self, cmd: Command) {
        let Command::Generate(req, sink) = cmd;
        let user = req.user.clone();
        match self.waiting.iter_mut().find(|(u, _)| *u == user) {
            Some((_, q)) => q.push_back((req, sink)),
            None => self
                .waiting
                .push_back((user, VecDeque::from([(req, sink)]))),
        }
    }

    /// Start waiting requests: users take turns; a user with nothing active is always let in.
    fn admit(&mut self) {
        let mut i = 0;
        while i < self.waiting.len() {
            let user_idle = !self.turns.contains(&self.waiting[i].0);
            if self.active.len() >= self.max_active && !user_idle {
                i += 1;
                continue;
            }
            let Some((user, mut queue)) = self.waiting.remove(i) else {
                break;
            };
            if let Some((req, sink)) = queue.pop_front() {
                self.start(req, sink);
            }
            if !queue.is_empty() {
                // This user's next request waits behind everyone else's.
                self.waiting.push_back((user, queue));
            }
        }
    }

    /// The next sequence to step: users in turn, each user's sequences in turn.
    fn next_turn(&mut self) -> Option<Sequence> {
        while let Some(user) = self.turns.pop_front() {
            let Some(pos) = self.active.iter().position(|s| s.req.user == user) else {
                continue;
            };
            let seq = self.active.remove(pos)?;
            // Users without active sequences are dropped from the turns when next reached.
            self.turns.push_back(user);
            return Some(seq);
        }
        None
    }

    fn start(&mut self, req: Box<GenerateRequest>, sink: Box<dyn EventSink>) {
        let sampler = Sampler::new(req.sampling.clone());
        let stops = StopMatcher::new(req.stop.clone());
        if !self.turns.contains(&req.user) {
            self.turns.push_back(req.user.clone());
        }
        self.active.push_back(Sequence {
            history: req.prompt.clone(),
            req,
            sink,
            cache: KvCache::new(&self.model.config),
            prefilled: 0,
            generated: Vec::new(),
            sampler,
            decoder: StreamDecoder::new(),
            stops,
            next_logits: None,
            started: Instant::now(),
            prompt_eval: Duration::ZERO,
            decode_started: None,
        });
    }

    fn finish(&self, seq: &mut Sequence, reason: FinishReason) -> StepOutcome {
        let tail = seq.decoder.finish();
        let mut text = match seq.stops.push(&tail) {
            StopResult::Continue(t) | StopResult::Stop(t) => t,
        };
        text.push_str(&seq.stops.finish());
        if !text.is_empty() {
            seq.sink.send(Event::Text(text));
        }
        let eval = seq.decode_started.map_or(Duration::ZERO, |t| t.elapsed());
        seq.sink.send(Event::Done(Finished {
            reason,
            prompt_tokens: seq.req.prompt.len(),
            completion_tokens: seq.generated.len(),
            prompt_eval: seq.prompt_eval,
            eval,
        }));
        StepOutcome::Finished
    }

    fn step(&mut self, seq: &mut Sequence) -> Result<StepOutcome, EngineError> {
        let prompt_len = seq.req.prompt.len();
        if seq.prefilled < prompt_len {
            let end = (seq.prefilled + self.prefill_chunk).min(prompt_len);
            let chunk = &seq.req.prompt[seq.prefilled..end];
            let logits = self
                .model
                .forward(&self.pool, chunk, &mut seq.cache, false)?;
            seq.prefilled = end;
            if end == prompt_len {
                seq.prompt_eval = seq.started.elapsed();
                seq.decode_started = Some(Instant::now());
                seq.next_logits = Some(logits);
            }
            // A cancelled client is noticed between chunks too.
            return Ok(if seq.sink.is_closed() {
                StepOutcome::Finished
            } else {
                StepOutcome::Continue
            });
        }
        if seq.req.max_tokens == Some(0) {
            return Ok(self.finish(seq, FinishReason::Length));
        }
        let mut logits = match seq.next_logits.take() {
            Some(l) => l,
            None => {
                let last = *seq.history.last().ok_or(EngineError::EmptyPrompt)?;
                self.model
                    .forward(&self.pool, &[last], &mut seq.cache, false)?
            }
        };
        let token = seq.sampler.sample(&mut logits, &seq.history);
        if self.tokenizer.is_eog(token) {
            return Ok(self.finish(seq, FinishReason::Stop));
        }
        seq.generated.push(token);
        seq.history.push(token);
        let piece = seq.decoder.push(&self.tokenizer, token);
        let (text, stopped) = match seq.stops.push(&piece) {
            StopResult::Continue(t) => (t, false),
            StopResult::Stop(t) => (t, true),
        };
        if !seq.sink.send(Event::Token { id: token, text }) {
            return Ok(StepOutcome::Finished);
        }
        if stopped {
            return Ok(self.finish(seq, FinishReason::Stop));
        }
        let at_limit = seq.req.max_tokens.is_some_and(|m| seq.generated.len() >= m)
            || seq.cache.len() + 1 >= self.context_length;
        if at_limit {
            return Ok(self.finish(seq, FinishReason::Length));
        }
        Ok(StepOutcome::Continue)
    }
}
