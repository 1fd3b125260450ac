//! The engine: one thread per loaded model, reached only through [`EngineHandle`].
//!
//! The thread owns the weights, the worker pool and every sequence's KV cache. Requests arrive
//! over a channel; each step the scheduler advances every active sequence in turn (prefill in
//! chunks, then one token at a time), so several clients share the model fairly. Output leaves
//! through a per-request [`EventSink`]; when the sink reports its receiver gone, the sequence is
//! dropped at once.
#![forbid(unsafe_code)]

mod engine;
mod logprobs;
mod prefix;
pub mod sampling;
pub mod stop;

pub use engine::{
    EngineConfig, EngineError, EngineHandle, Event, EventSink, FinishReason, Finished,
    GenerateRequest, ModelSummary, TokenConstraint,
};
pub use logprobs::{MAX_TOP_LOGPROBS, TokenLogprobs, token_logprobs};
pub use sampling::SamplingParams;

#[cfg(test)]
mod tests;
