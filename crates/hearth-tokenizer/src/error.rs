/// Why a tokenizer could not be built from GGUF metadata.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A required metadata key is absent (not found).
    #[error(
        "the model file has no `{0}` metadata; it cannot be tokenized (re-convert it with a current llama.cpp)"
    )]
    Missing(&'static str),
    /// Metadata is present but malformed (bad input).
    #[error("tokenizer metadata `{key}` is malformed: {problem}")]
    BadMetadata { key: String, problem: String },
    /// `tokenizer.ggml.model` names a tokenizer Hearth does not implement (unsupported).
    #[error(
        "tokenizer model `{0}` is not supported; Hearth supports `gpt2` (byte-level BPE) and `llama` (SentencePiece BPE)"
    )]
    UnsupportedModel(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer Hearth does not implement (unsupported).
    #[error("pre-tokenizer `{name}` (tokenizer.ggml.pre) is not supported; supported: {supported}")]
    UnsupportedPre { name: String, supported: String },
    /// A Hugging Face `tokenizer.json` is malformed or asks for something Hearth does not
    /// implement (bad input).
    #[error("tokenizer.json: `{field}` {problem}")]
    TokenizerJson { field: String, problem: String },
}

impl TokenizerError {
    pub(crate) fn json(field: &str, problem: impl Into<String>) -> Self {
        TokenizerError::TokenizerJson {
            field: field.to_owned(),
            problem: problem.into(),
        }
    }

    pub(crate) fn bad(key: &str, problem: impl Into<String>) -> Self {
        TokenizerError::BadMetadata {
            key: key.to_owned(),
            problem: problem.into(),
        }
    }
}
