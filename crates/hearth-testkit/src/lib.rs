//! Test support shared by the crates' integration tests: the test model (`HEARTH_TEST_MODEL`,
//! set by `scripts/test.sh` after a real `hearth pull`) and the golden reference data in
//! `../shared/golden/` beside the repository. Used only as a dev-dependency.
#![forbid(unsafe_code)]
#![expect(
    clippy::panic,
    reason = "test support fails loudly with the path it could not read"
)]

use std::path::PathBuf;

use serde_json::Value;

/// The test model's path, or `None` after printing that the calling test is skipped.
pub fn test_model() -> Option<PathBuf> {
    match std::env::var_os("HEARTH_TEST_MODEL") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!("HEARTH_TEST_MODEL is not set: skipping a test that needs the model");
            None
        }
    }
}

/// `../shared/golden` beside the repository.
pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden")
}

/// The rows of a golden JSON-lines file, e.g. `golden_rows("smollm2-135m/greedy.jsonl")`.
pub fn golden_rows(name: &str) -> Vec<Value> {
    let path = golden_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read golden data {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// A JSON array of token ids.
pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array of ids, found {v}"))
        .iter()
        .map(|x| {
            x.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or_else(|| panic!("bad token id {x}"))
        })
        .collect()
}
