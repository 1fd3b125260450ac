#![cfg(test)]
//! Integration tests: golden ids from llama.cpp (SmolLM2), a SentencePiece fixture, streaming,
//! hostile metadata.

mod bpe;
mod gguf_builder;
mod golden;
mod hostile;
mod spm;
mod stream;
mod wordpiece;

use std::path::PathBuf;
use std::sync::OnceLock;

use hearth_gguf::GgufFile;
use hearth_tokenizer::Tokenizer;

/// The model under `HEARTH_TEST_MODEL` (loaded once), or `None` (the caller prints that it is
/// skipped).
pub fn test_model() -> Option<&'static Tokenizer> {
    static MODEL: OnceLock<Option<Tokenizer>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = std::env::var_os("HEARTH_TEST_MODEL")?;
            let file = match GgufFile::open(&PathBuf::from(&path)) {
                Ok(f) => f,
                Err(e) => panic!("HEARTH_TEST_MODEL={path:?}: {e}"),
            };
            match Tokenizer::from_gguf(&file) {
                Ok(t) => Some(t),
                Err(e) => panic!("tokenizer of {path:?}: {e}"),
            }
        })
        .as_ref()
}

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden")
}

/// The SentencePiece fixture tokenizer (committed under tests/data), loaded once.
pub fn spm_fixture() -> &'static Tokenizer {
    static SPM: OnceLock<Tokenizer> = OnceLock::new();
    SPM.get_or_init(|| {
        let bytes = std::fs::read(data_dir().join("spm-bpe.gguf")).unwrap();
        let file = GgufFile::from_bytes(bytes).unwrap();
        Tokenizer::from_gguf(&file).unwrap()
    })
}

pub fn read_jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| u32::try_from(x.as_u64().unwrap()).unwrap())
        .collect()
}
