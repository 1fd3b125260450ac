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
