use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hearth_gguf::GgufFile;
use hearth_models::{BatchEntry, KvCache, Llama, ModelError, ThreadPool};
use hearth_tokenizer::{StreamDecoder, Tokenizer};

use crate::logprobs::{TokenLogprobs, token_logprobs};
use crate::prefix::PrefixCache;
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
    /// Finished requests whose KV caches are kept so a later prompt with the same beginning
    /// (a system prompt, a character card, the conversation so far) skips computing it.
    pub prefix_cache_entries: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            threads: 0,
            context_length: 0,
            prefill_chunk: 256,
            max_queue: 512,
            max_active: 8,
            prefix_cache_entries: 8,
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
    /// The request's output constraint allows no token or refused the sampled one.
    #[error("constrained generation failed: {0}")]
    Constraint(String),
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
    /// Prompt tokens whose keys and values came from the prefix cache instead of being computed.
    pub cached_tokens: usize,
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
        /// The token's log-probability and the most likely alternatives, when the request
        /// asked for them ([`GenerateRequest::top_logprobs`]).
        logprobs: Option<TokenLogprobs>,
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

/// Restricts which tokens may come next (structured outputs, tool calls).
pub trait TokenConstraint: Send {
    /// Clear `allowed[id]` for every token that may not come next. `remaining` = how many more
    /// tokens this sequence may generate (max_tokens / context left), so the constraint can steer
    /// to a complete output in time. End-of-generation ids are ordinary entries: allowed only
    /// where the output is complete.
    fn restrict(&mut self, allowed: &mut [bool], remaining: usize);
    /// The token that was sampled. Err → the engine ends the request with an error event.
    fn accept(&mut self, token: u32) -> Result<(), String>;
    /// The output is complete and nothing may follow: the engine finishes with
    /// [`FinishReason::Stop`].
    fn is_finished(&self) -> bool;
}

/// A generation request in tokens.
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
    /// Report each generated token's log-probability under the raw model distribution (before
    /// temperature, penalties or truncation) with this many most likely alternatives
    /// (clamped to [`crate::MAX_TOP_LOGPROBS`]). `None`: no log-probabilities.
    pub top_logprobs: Option<usize>,
    /// Restricts the output (a JSON schema, tool calls); `None`: any text.
    pub constraint: Option<Box<dyn TokenConstraint>>,
}

impl std::fmt::Debug for GenerateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerateRequest")
            .field("prompt", &self.prompt)
            .field("sampling", &self.sampling)
            .field("max_tokens", &self.max_tokens)
            .field("stop", &self.stop)
            .field("user", &self.user)
            .field("deadline", &self.deadline)
            .field("top_logprobs", &self.top_logprobs)
            .field("constraint", &self.constraint.is_some())
            .finish()
    }
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
            prefixes: PrefixCache::new(config.prefix_cache_entries),
            last_step_was_prompt: false,
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
    /// Of those, how many came from the prefix cache.
    cached: usize,
    generated: Vec<u32>,
    history: Vec<u32>,
    sampler: Sampler,
    decoder: StreamDecoder,
    stops: StopMatcher,
    next_logits: Option<Vec<f32>>,
    /// The constraint's mask buffer (constrained sequences only).
    allowed: Vec<bool>,
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
    prefixes: PrefixCache,
    /// Whether the last step ran prompt tokens (steps alternate when both kinds of work wait).
    last_step_was_prompt: bool,
    /// Requests holding a KV cache, in the order they are next stepped (per user).
    active: VecDeque<Sequence>,
    /// Requests not started yet, per user, users in arrival order.
    waiting: VecDeque<(String, VecDeque<Pending>)>,
    /// Users with active requests, in the order they get their next step.
    turns: VecDeque<String>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
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
            self.step_all();
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

    fn start(&mut self, req: Box<GenerateRequest>, sink: Box<dyn EventSink>) {
        let sampler = Sampler::new(req.sampling.clone());
        let stops = StopMatcher::new(req.stop.clone());
        if !self.turns.contains(&req.user) {
            self.turns.push_back(req.user.clone());
        }
        let (cache, cached) = match self.shared_prefix(&req.prompt) {
            Some(c) => {
                let n = c.len();
                (c, n)
            }
            None => (KvCache::new(&self.model.config), 0),
        };
        self.active.push_back(Sequence {
            history: req.prompt.clone(),
            req,
            sink,
            cache,
            prefilled: cached,
            cached,
            generated: Vec::new(),
            sampler,
            decoder: StreamDecoder::new(),
            stops,
            next_logits: None,
            allowed: Vec::new(),
            started: Instant::now(),
            prompt_eval: Duration::ZERO,
            decode_started: None,
        });
    }

    /// A copy of the longest computed prefix of `prompt` held by a finished sequence (the
    /// prefix cache) or by a running one (so `n` choices of one prompt, or users sending the
    /// same prompt at once, compute it once), leaving at least its last token to compute.
    fn shared_prefix(&mut self, prompt: &[u32]) -> Option<KvCache> {
        let limit = prompt.len().saturating_sub(1);
        let running = self
            .active
            .iter()
            .map(|s| {
                // Prompt positions whose keys and values are in the cache (generated tokens
                // too, except the last one sampled, which is fed at the next step).
                let computed = s.cache.len().min(s.history.len());
                let common = s.history[..computed]
                    .iter()
                    .zip(prompt)
                    .take_while(|(a, b)| a == b)
                    .count();
                (s, common.min(limit))
            })
            .max_by_key(|&(_, len)| len);
        let (seq, len) = match running {
            Some((s, len)) if len >= crate::prefix::MIN_REUSE => (s, len),
            _ => return self.prefixes.lookup(prompt),
        };
        if len == limit {
            return Some(seq.cache.prefix(len));
        }
        let copy = seq.cache.prefix(len);
        match self.prefixes.lookup(prompt) {
            Some(c) if c.len() > len => Some(c),
            _ => Some(copy),
        }
    }

    fn finish(&self, seq: &mut Sequence, reason: FinishReason) {
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
            cached_tokens: seq.cached,
            completion_tokens: seq.generated.len(),
            prompt_eval: seq.prompt_eval,
            eval,
        }));
    }

    /// A sequence is done (finished or abandoned): its KV cache may serve a later prompt.
    fn retire(&mut self, seq: Sequence) {
        self.release();
        self.prefixes.insert(seq.history, seq.cache);
    }

    fn fail(&self, seq: &mut Sequence, e: &EngineError) {
        tracing::warn!(error = %e, "generation failed");
        seq.sink.send(Event::Error(e.to_string()));
        self.release();
    }

    /// Active sequences in this step's order: users in turn (the first user rotates every
    /// step), each user's sequences in arrival order.
    fn take_in_turn_order(&mut self) -> Vec<Sequence> {
        self.turns
            .retain(|u| self.active.iter().any(|s| s.req.user == *u));
        let mut ordered = Vec::with_capacity(self.active.len());
        for user in &self.turns {
            let mut i = 0;
            while i < self.active.len() {
                if self.active[i].req.user == *user {
                    if let Some(s) = self.active.remove(i) {
                        ordered.push(s);
                    }
                } else {
                    i += 1;
                }
            }
        }
        ordered.extend(self.active.drain(..));
        if let Some(first) = self.turns.pop_front() {
            self.turns.push_back(first);
        }
        ordered
    }

    /// One step for every active sequence, as one batched forward pass: each decoding sequence
    /// samples its next token and feeds it; prefilling sequences share a budget of
    /// `prefill_chunk` prompt tokens, given out in turn order, so long prompts never stall the
    /// streams already generating.
    fn step_all(&mut self) {
        let now = Instant::now();
        let mut budget = self.prefill_chunk;
        let mut planned: Vec<(Sequence, Input)> = Vec::new();
        // Prompt work and decoding alternate steps when both wait, so a newcomer's first token
        // is not held up by a full batch of decoding streams, and those streams never wait more
        // than one chunk of prompt work for their next token.
        let prefilling = self.active.iter().any(|s| s.prefilled < s.req.prompt.len());
        let decoding = self
            .active
            .iter()
            .any(|s| s.prefilled == s.req.prompt.len());
        let prompt_step = prefilling && (!decoding || !self.last_step_was_prompt);
        self.last_step_was_prompt = prompt_step;
        for mut seq in self.take_in_turn_order() {
            if seq.req.deadline.is_some_and(|d| now >= d) {
                self.fail(&mut seq, &EngineError::TimedOut);
                continue;
            }
            if seq.sink.is_closed() {
                self.retire(seq);
                continue;
            }
            let prompt_len = seq.req.prompt.len();
            if (seq.prefilled < prompt_len) != prompt_step {
                planned.push((seq, Input::Wait));
                continue;
            }
            if seq.prefilled < prompt_len {
                let take = budget.min(prompt_len - seq.prefilled);
                budget -= take;
                let input = if take == 0 {
                    Input::Wait
                } else {
                    Input::Prefill(seq.prefilled, seq.prefilled + take)
                };
                planned.push((seq, input));
                continue;
            }
            match self.sample_next(&mut seq) {
                Some(token) => planned.push((seq, Input::Decode(token))),
                None => self.retire(seq),
            }
        }

        let mut entries = Vec::with_capacity(planned.len());
        let mut which = Vec::with_capacity(planned.len());
        for (i, (seq, input)) in planned.iter_mut().enumerate() {
            let tokens: &[u32] = match input {
                Input::Decode(t) => std::slice::from_ref(t),
                Input::Prefill(a, b) => &seq.req.prompt[*a..*b],
                Input::Wait => continue,
            };
            entries.push(BatchEntry {
                tokens,
                cache: &mut seq.cache,
                all_logits: false,
            });
            which.push(i);
        }
        let result = if entries.is_empty() {
            Ok(Vec::new())
        } else {
            self.model.forward_batch(&self.pool, &mut entries)
        };
        drop(entries);
        let logits = match result {
            Ok(l) => l,
            Err(e) => {
                let e = EngineError::from(e);
                for (i, (mut seq, _)) in planned.into_iter().enumerate() {
                    if which.contains(&i) {
                        self.fail(&mut seq, &e);
                    } else {
                        // It had no part in the failed pass: it carries on.
                        self.active.push_back(seq);
                    }
                }
                return;
            }
        };
        for (i, l) in which.into_iter().zip(logits) {
            let (seq, input) = &mut planned[i];
            match *input {
                Input::Decode(_) => seq.next_logits = Some(l),
                Input::Prefill(_, end) => {
                    seq.prefilled = end;
                    if end == seq.req.prompt.len() {
                        seq.prompt_eval = seq.started.elapsed();
                        seq.decode_started = Some(Instant::now());
                        seq.next_logits = Some(l);
                    }
                }
                Input::Wait => {}
            }
        }
        self.active.extend(planned.into_iter().map(|(s, _)| s));
    }

    /// Tokens a decoding sequence may still generate (its `max_tokens`, the context left).
    fn remaining(&self, seq: &Sequence) -> usize {
        let by_context = self.context_length.saturating_sub(seq.cache.len());
        let by_limit = seq
            .req
            .max_tokens
            .map_or(usize::MAX, |m| m.saturating_sub(seq.generated.len()));
        by_context.min(by_limit)
    }

    /// Sample the next token of a sequence whose prompt is done, emit its text, and say whether
    /// it goes on (`Some(token)` to feed) or has finished (its events are sent).
    fn sample_next(&self, seq: &mut Sequence) -> Option<u32> {
        if seq.req.max_tokens == Some(0) {
            self.finish(seq, FinishReason::Length);
            return None;
        }
        let Some(mut logits) = seq.next_logits.take() else {
            // The caller retires the sequence (and releases its queue place).
            report_error(seq, &EngineError::Stopped);
            return None;
        };
        // Before the sampler transforms the logits in place: the raw distribution.
        let raw = seq.req.top_logprobs.map(|k| (k, logits.clone()));
        if seq.req.constraint.is_some() {
            let remaining = self.remaining(seq);
            if let Err(e) = mask_logits(seq, &mut logits, remaining) {
                report_error(seq, &e);
                return None;
            }
        }
        let token = seq.sampler.sample(&mut logits, &seq.history);
        if let Some(c) = seq.req.constraint.as_mut()
            && let Err(e) = c.accept(token)
        {
            report_error(seq, &EngineError::Constraint(e));
            return None;
        }
        let logprobs = raw.map(|(k, raw)| token_logprobs(&raw, token, k));
        if self.tokenizer.is_eog(token) {
            self.finish(seq, FinishReason::Stop);
            return None;
        }
        seq.generated.push(token);
        seq.history.push(token);
        let piece = seq.decoder.push(&self.tokenizer, token);
        let (text, stopped) = match seq.stops.push(&piece) {
            StopResult::Continue(t) => (t, false),
            StopResult::Stop(t) => (t, true),
        };
        if !seq.sink.send(Event::Token {
            id: token,
            text,
            logprobs,
        }) {
            return None;
        }
        if stopped || seq.req.constraint.as_ref().is_some_and(|c| c.is_finished()) {
            self.finish(seq, FinishReason::Stop);
            return None;
        }
        let at_limit = seq.req.max_tokens.is_some_and(|m| seq.generated.len() >= m)
            || seq.cache.len() + 1 >= self.context_length;
        if at_limit {
            self.finish(seq, FinishReason::Length);
            return None;
        }
        Some(token)
    }
}

/// Send a failed sequence's error event (the caller retires it).
fn report_error(seq: &mut Sequence, e: &EngineError) {
    tracing::warn!(error = %e, "generation failed");
    seq.sink.send(Event::Error(e.to_string()));
}

/// Set every logit the sequence's constraint does not allow to -inf (its `allowed` buffer is
/// kept between steps); an error when it allows none.
fn mask_logits(
    seq: &mut Sequence,
    logits: &mut [f32],
    remaining: usize,
) -> Result<(), EngineError> {
    let Some(c) = seq.req.constraint.as_mut() else {
        return Ok(());
    };
    let allowed = &mut seq.allowed;
    allowed.clear();
    allowed.resize(logits.len(), true);
    c.restrict(allowed, remaining);
    let mut any = false;
    for (l, &ok) in logits.iter_mut().zip(allowed.iter()) {
        if ok {
            any = true;
        } else {
            *l = f32::NEG_INFINITY;
        }
    }
    if any {
        Ok(())
    } else {
        Err(EngineError::Constraint(
            "the output constraint allows no next token".into(),
        ))
    }
}

/// What a sequence contributes to one step.
enum Input {
    /// The token it just sampled.
    Decode(u32),
    /// Prompt tokens `a..b`.
    Prefill(usize, usize),
    /// Nothing this step (the prefill budget is spent, or it is the other kind of step).
    Wait,
}
