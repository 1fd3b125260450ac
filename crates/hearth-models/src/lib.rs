//! Model architectures. A model is `config → load(weights) → forward(tokens, cache)` and nothing
//! else: no sampling, no scheduling, no async. Kernels (the only `unsafe` code of Hearth besides
//! the GGUF memory map) live in [`kernels`].

mod bert;
mod error;
pub mod kernels;
mod llama;
pub mod safetensors;

pub use bert::{Activation, Bert, BertConfig, Pooling};
pub use error::ModelError;
pub use kernels::{QMatrix, ThreadPool};
pub use llama::{BatchEntry, KvCache, Llama, LlamaConfig};
pub use safetensors::SafeTensors;

#[cfg(test)]
mod tests;
