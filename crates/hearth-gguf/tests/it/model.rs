//! Real tensors of the development model against the `gguf` Python package's dequantization of
//! the same rows (`tests/data/model_rows.jsonl`, made by `make_quant_fixtures.py`).

use std::path::PathBuf;

use hearth_gguf::GgufFile;
use hearth_gguf::quants::dequantize_to_vec;

use crate::{assert_same_floats, read_jsonl, unhex_f32s};

fn test_model() -> Option<PathBuf> {
    let path = std::env::var_os("HEARTH_TEST_MODEL").map(PathBuf::from);
    if path.is_none() {
        println!("HEARTH_TEST_MODEL is not set: skipping the test against the real model");
    }
    path
}

/// Dequantize row `row` of `tensor` and require the reference's values.
fn check(file: &GgufFile, tensor: &str, ty: &str, row: usize, expected: &[f32]) {
    let (info, data) = file.tensor_by_name(tensor).unwrap();
    assert_eq!(info.ggml_type.to_string(), ty, "{tensor}");
    let row_len = usize::try_from(info.dims[0]).unwrap();
    let row_bytes = usize::try_from(info.ggml_type.bytes_for(info.dims[0]).unwrap()).unwrap();
    assert_eq!(row_len, expected.len(), "{tensor} row length");
    let bytes = &data[row * row_bytes..(row + 1) * row_bytes];
    let got = dequantize_to_vec(info.ggml_type, bytes).unwrap();
    assert_same_floats(&format!("{tensor} row {row}"), &got, expected);
}

#[test]
fn model_rows_match_the_gguf_python_package() {
    let Some(path) = test_model() else { return };
    let file = GgufFile::open(&path).unwrap();
    let rows = read_jsonl("model_rows.jsonl");
    assert!(rows.len() >= 4);
    for r in rows {
        check(
            &file,
            r["tensor"].as_str().unwrap(),
            r["type"].as_str().unwrap(),
            usize::try_from(r["row"].as_u64().unwrap()).unwrap(),
            &unhex_f32s(r["expected"].as_str().unwrap()),
        );
    }
}
