use std::path::PathBuf;

/// Why a GGUF file could not be read. Every variant is a problem with the input, except `Io`.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a GGUF file (the first four bytes are not `GGUF`)")]
    BadMagic,
    #[error("GGUF version {0} is not supported (versions 2 and 3 are)")]
    UnsupportedVersion(u32),
    #[error(
        "the file ends early: {what} needs {needed} bytes at offset {offset}, the file has {len}"
    )]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: u64,
        len: usize,
    },
    #[error("{what} {value} is too large for this file")]
    TooLarge { what: &'static str, value: u64 },
    #[error("metadata key `{key}`: {problem}")]
    BadMetadata { key: String, problem: String },
    #[error("tensor `{name}`: {problem}")]
    BadTensor { name: String, problem: String },
    #[error("{0} is not valid UTF-8")]
    BadUtf8(&'static str),
    #[error("missing metadata key `{0}`")]
    MissingKey(String),
    #[error("metadata key `{key}` has type {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("tensor `{0}` is not in the file")]
    MissingTensor(String),
    #[error("tensor type {0} cannot be dequantized by Hearth")]
    UnsupportedType(String),
}
