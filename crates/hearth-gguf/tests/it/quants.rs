//! Every dequantizer against golden data from the `gguf` Python package
//! (`tests/data/make_quant_fixtures.py`).

use std::collections::BTreeSet;

use hearth_gguf::GgmlType;
use hearth_gguf::quants::{dequantize, dequantize_to_vec};

use crate::{assert_same_floats, read_jsonl, unhex, unhex_f32s};

fn type_by_name(name: &str) -> GgmlType {
    (0..64)
        .filter_map(GgmlType::from_id)
        .find(|t| t.to_string() == name)
        .unwrap_or_else(|| panic!("unknown type {name}"))
}

/// Dequantize `blocks` of type `ty` and require the reference's values.
fn check(ty: GgmlType, case: &str, blocks: &[u8], expected: &[f32]) {
    let what = format!("{ty} {case}");
    let got = dequantize_to_vec(ty, blocks).unwrap();
    assert_same_floats(&what, &got, expected);
    // The slice entry point agrees with the allocating one.
    let mut out = vec![0.0; expected.len()];
    dequantize(ty, blocks, &mut out).unwrap();
    assert_same_floats(&what, &out, expected);
}

#[test]
fn dequantizers_match_the_gguf_python_package() {
    let mut seen = BTreeSet::new();
    for fixture in read_jsonl("quant_fixtures.jsonl") {
        let ty = type_by_name(fixture["type"].as_str().unwrap());
        let case = fixture["case"].as_str().unwrap();
        let blocks = unhex(fixture["blocks"].as_str().unwrap());
        let expected = unhex_f32s(fixture["expected"].as_str().unwrap());
        check(ty, case, &blocks, &expected);
        seen.insert(ty.to_string());
    }
    // Every type Hearth can dequantize is covered.
    let all: BTreeSet<String> = (0..64)
        .filter_map(GgmlType::from_id)
        .filter(|t| t.can_dequantize())
        .map(|t| t.to_string())
        .collect();
    assert_eq!(seen, all);
}

#[test]
fn wrong_buffer_sizes_are_errors() {
    use GgmlType::*;
    for (ty, src_len, dst_len) in [
        (Q4_0, 17, 32),
        (Q4_0, 18, 31),
        (Q4_0, 36, 32),
        (Q6_K, 210, 255),
        (F32, 3, 0),
        (F16, 4, 3),
    ] {
        let mut dst = vec![0.0; dst_len];
        let r = dequantize(ty, &vec![0; src_len], &mut dst);
        assert!(r.is_err(), "{ty} {src_len} bytes into {dst_len}");
    }
}

#[test]
fn unsupported_types_are_errors() {
    let r = dequantize_to_vec(GgmlType::Q2_K, &[0; 84]);
    assert!(
        matches!(r, Err(hearth_gguf::GgufError::UnsupportedType(_))),
        "{r:?}"
    );
}
