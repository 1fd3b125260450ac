use hearth_gguf::GgufError;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("architecture `{0}` is not supported (supported: llama)")]
    UnsupportedArchitecture(String),
    #[error("model file is inconsistent: {0}")]
    Invalid(String),
    #[error("the context window of {limit} tokens is full ({needed} needed)")]
    ContextFull { limit: usize, needed: usize },
    #[error("token id {0} is outside the vocabulary")]
    BadToken(u32),
    #[error("cannot start worker threads: {0}")]
    Threads(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("an empty token sequence has no embedding")]
    EmptyInput,
}
