//! Wire types of Hearth's HTTP API: what OpenAI- and Ollama-compatible clients send and receive.
//!
//! These are serde shapes only, with no HTTP framework and no domain logic in them. Requests
//! ignore fields they do not know (clients send many), and every field a client may leave out is
//! optional. Conversion to and from the model service's domain types is written out by hand in
//! `hearth-server`.
#![forbid(unsafe_code)]

pub mod ollama;
pub mod openai;
pub mod openapi;

#[cfg(test)]
mod tests;
