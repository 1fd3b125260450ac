//! Integration tests of hearth-gguf through its public API.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test by panicking"
)]

mod alloc;
mod model;
mod props;
mod quants;
mod reader;
mod writer;

use std::path::PathBuf;

/// A file under `tests/data/`.
fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Decode lowercase or uppercase hex.
fn unhex(s: &str) -> Vec<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("bad hex digit {c:#x}"),
    };
    assert!(s.len().is_multiple_of(2), "odd hex length");
    s.as_bytes()
        .chunks_exact(2)
        .map(|p| digit(p[0]) << 4 | digit(p[1]))
        .collect()
}

/// Little-endian f32 values from hex.
fn unhex_f32s(s: &str) -> Vec<f32> {
    unhex(s)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The JSON objects of a JSONL fixture file.
fn read_jsonl(name: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(data_path(name)).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Compare dequantized values with the reference's, bit for bit (NaN payloads and the sign of
/// zero included). The reference multiplies and adds in the same order as Hearth (`d * q + m`,
/// `(d * scale) * q`, no fused multiply-add), so exact equality is the right requirement.
fn assert_same_floats(what: &str, got: &[f32], expected: &[f32]) {
    assert_eq!(got.len(), expected.len(), "{what}: length");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        let same = g.to_bits() == e.to_bits();
        assert!(
            same,
            "{what}: element {i}: got {g:e} ({:#010x}), reference {e:e} ({:#010x})",
            g.to_bits(),
            e.to_bits()
        );
    }
}
