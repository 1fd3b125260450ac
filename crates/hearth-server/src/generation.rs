//! From a [`GenerationStream`] to an answer: collected into one value, or encoded event by event
//! into a streaming body. The streaming body owns the stream's receiver, so when the client goes
//! away and the response is dropped, the receiver is dropped and the model service sees its
//! channel closed.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use hearth_llm::{Completion, GenerationStream, StreamEvent, TokenLogprob, ToolCall};

use crate::error::ApiError;
use crate::metrics::{InFlight, Metrics};

/// A started generation whose first event has been seen.
#[derive(Debug)]
pub struct Generation {
    rx: GenerationStream,
    pending: Option<StreamEvent>,
    metrics: Arc<Metrics>,
    _in_flight: InFlight,
}

impl Generation {
    /// Waits for the first event, so a generation that fails before producing anything is
    /// answered with an HTTP error status rather than an error inside a 200 stream.
    pub async fn start(
        mut rx: GenerationStream,
        metrics: Arc<Metrics>,
        in_flight: InFlight,
    ) -> Result<Self, ApiError> {
        let first = match rx.recv().await {
            Some(StreamEvent::Error(e)) => return Err(e.into()),
            Some(event) => event,
            None => return Err(closed_early()),
        };
        if let StreamEvent::Done(c) = &first {
            metrics.record_generation(c);
        }
        Ok(Generation {
            rx,
            pending: Some(first),
            metrics,
            _in_flight: in_flight,
        })
    }

    async fn next(&mut self) -> Option<StreamEvent> {
        if let Some(event) = self.pending.take() {
            return Some(event);
        }
        let event = self.rx.recv().await?;
        if let StreamEvent::Done(c) = &event {
            self.metrics.record_generation(c);
        }
        Some(event)
    }

    /// The whole answer.
    pub async fn collect(mut self) -> Result<Collected, ApiError> {
        let mut text = String::new();
        let mut logprobs = Vec::new();
        let mut tool_calls = Vec::new();
        loop {
            match self.next().await {
                Some(StreamEvent::Logprobs(l)) => logprobs.extend(l),
                Some(StreamEvent::Delta(d)) => text.push_str(&d),
                Some(StreamEvent::ToolCalls(c)) => tool_calls.extend(c),
                Some(StreamEvent::Done(completion)) => {
                    return Ok(Collected {
                        text,
                        completion,
                        logprobs,
                        tool_calls,
                    });
                }
                Some(StreamEvent::Error(e)) => return Err(e.into()),
                None => return Err(closed_early()),
            }
        }
    }
}

/// A whole generation's answer.
#[derive(Debug)]
pub struct Collected {
    pub text: String,
    pub completion: Completion,
    /// The tokens' log-probabilities (empty unless the request asked for them).
    pub logprobs: Vec<TokenLogprob>,
    /// The tools the model called (empty unless the request offered tools).
    pub tool_calls: Vec<ToolCall>,
}

fn closed_early() -> ApiError {
    ApiError::Service("generation stream closed without a final event".to_owned())
}

/// Writes one API family's streaming framing.
pub trait Encoder: Send + 'static {
    /// Bytes sent before the first delta.
    fn start(&mut self, _out: &mut String) {}
    /// New text, with the log-probabilities of the tokens it came from when the request asked
    /// for them (empty otherwise). Before `done`, tokens that produced no text come with `""`.
    fn delta(&mut self, text: &str, logprobs: &[TokenLogprob], out: &mut String);
    /// The tools the model called (once, just before `done`; only chat requests offer tools).
    fn tool_calls(&mut self, _calls: &[ToolCall], _out: &mut String) {}
    /// The last bytes of a successful stream.
    fn done(&mut self, completion: &Completion, out: &mut String);
    /// The last bytes of a stream that failed after it started.
    fn error(&mut self, error: &ApiError, out: &mut String);
}

struct Streaming<E> {
    generation: Generation,
    encoder: E,
    started: bool,
    /// Log-probabilities waiting for the text they belong to.
    logprobs: Vec<TokenLogprob>,
}

/// A response body that encodes the generation as it arrives. Empty deltas send nothing.
pub fn stream_body<E: Encoder>(generation: Generation, encoder: E) -> Body {
    let state = Some(Streaming {
        generation,
        encoder,
        started: false,
        logprobs: Vec::new(),
    });
    let stream = futures_util::stream::unfold(state, |state| async move {
        let mut s = state?;
        let mut out = String::new();
        if !s.started {
            s.started = true;
            s.encoder.start(&mut out);
        }
        loop {
            match s.generation.next().await {
                Some(StreamEvent::Logprobs(l)) => s.logprobs.extend(l),
                Some(StreamEvent::Delta(d)) => {
                    if !d.is_empty() {
                        s.encoder.delta(&d, &s.logprobs, &mut out);
                        s.logprobs.clear();
                    }
                    if !out.is_empty() {
                        return Some((Ok::<_, Infallible>(Bytes::from(out)), Some(s)));
                    }
                }
                Some(StreamEvent::ToolCalls(calls)) => s.encoder.tool_calls(&calls, &mut out),
                Some(StreamEvent::Done(c)) => {
                    if !s.logprobs.is_empty() {
                        s.encoder.delta("", &s.logprobs, &mut out);
                    }
                    s.encoder.done(&c, &mut out);
                    return Some((Ok(Bytes::from(out)), None));
                }
                Some(StreamEvent::Error(e)) => {
                    s.encoder.error(&ApiError::from(e), &mut out);
                    return Some((Ok(Bytes::from(out)), None));
                }
                None => {
                    s.encoder.error(&closed_early(), &mut out);
                    return Some((Ok(Bytes::from(out)), None));
                }
            }
        }
    });
    Body::from_stream(stream)
}

/// One choice's events, tagged with its index; ends after its stream closes.
type Tagged = std::pin::Pin<Box<dyn futures_util::Stream<Item = (usize, StreamEvent)> + Send>>;

/// Writes what follows the last choice's final chunk (usage, the stream's terminator).
pub type Tail = Box<dyn FnOnce(&[Completion], &mut String) + Send>;

struct Choices<E> {
    events: futures_util::stream::SelectAll<Tagged>,
    encoders: Vec<E>,
    /// Per choice: log-probabilities waiting for their text.
    logprobs: Vec<Vec<TokenLogprob>>,
    done: Vec<Option<Completion>>,
    started: bool,
    tail: Option<Tail>,
}

/// Several generations of one request (OpenAI's `n`) as one streaming body: each choice's
/// events go through its own encoder as they arrive, interleaved; `tail` runs once every
/// choice is done. A choice that fails ends the whole stream with its error.
pub fn stream_choices<E: Encoder>(
    generations: Vec<Generation>,
    encoders: Vec<E>,
    tail: Tail,
) -> Body {
    use futures_util::StreamExt as _;
    let n = generations.len();
    let tagged = generations.into_iter().enumerate().map(|(i, g)| -> Tagged {
        Box::pin(futures_util::stream::unfold(g, move |mut g| async move {
            let event = g.next().await?;
            Some(((i, event), g))
        }))
    });
    let state = Some(Choices {
        events: futures_util::stream::select_all(tagged),
        encoders,
        logprobs: vec![Vec::new(); n],
        done: vec![None; n],
        started: false,
        tail: Some(tail),
    });
    let stream = futures_util::stream::unfold(state, |state| async move {
        let mut s = state?;
        let mut out = String::new();
        if !s.started {
            s.started = true;
            for e in &mut s.encoders {
                e.start(&mut out);
            }
        }
        loop {
            let Some((i, event)) = s.events.next().await else {
                // Every stream closed; a choice without its final event failed.
                if s.done.iter().any(Option::is_none) {
                    if let Some(e) = s.encoders.first_mut() {
                        e.error(&closed_early(), &mut out);
                    }
                } else {
                    let all: Vec<Completion> = s.done.iter().flatten().cloned().collect();
                    if let Some(tail) = s.tail.take() {
                        tail(&all, &mut out);
                    }
                }
                return Some((Ok::<_, Infallible>(Bytes::from(out)), None));
            };
            let (Some(encoder), Some(pending)) = (s.encoders.get_mut(i), s.logprobs.get_mut(i))
            else {
                continue;
            };
            match event {
                StreamEvent::Logprobs(l) => pending.extend(l),
                StreamEvent::Delta(d) => {
                    if !d.is_empty() {
                        encoder.delta(&d, pending, &mut out);
                        pending.clear();
                    }
                    if !out.is_empty() {
                        return Some((Ok(Bytes::from(out)), Some(s)));
                    }
                }
                StreamEvent::ToolCalls(calls) => {
                    encoder.tool_calls(&calls, &mut out);
                    return Some((Ok(Bytes::from(out)), Some(s)));
                }
                StreamEvent::Done(c) => {
                    if !pending.is_empty() {
                        encoder.delta("", pending, &mut out);
                        pending.clear();
                    }
                    encoder.done(&c, &mut out);
                    if let Some(slot) = s.done.get_mut(i) {
                        *slot = Some(c);
                    }
                    return Some((Ok(Bytes::from(out)), Some(s)));
                }
                StreamEvent::Error(e) => {
                    encoder.error(&ApiError::from(e), &mut out);
                    return Some((Ok(Bytes::from(out)), None));
                }
            }
        }
    });
    Body::from_stream(stream)
}

/// Every generation's text, counts and log-probabilities, in order, collected concurrently.
pub async fn collect_all(generations: Vec<Generation>) -> Result<Vec<Collected>, ApiError> {
    futures_util::future::join_all(generations.into_iter().map(Generation::collect))
        .await
        .into_iter()
        .collect()
}
