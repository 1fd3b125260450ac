//! The reader on hand-made files: what it refuses and why, and its type table against gguf-py's.

use hearth_gguf::{Array, GgmlType, Gguf, Value};

use crate::read_jsonl;
use crate::writer::Spec;

fn spec() -> Spec {
    Spec {
        version: 3,
        alignment: None,
        metadata: vec![("general.architecture".into(), Value::String("llama".into()))],
        tensors: vec![
            ("a".into(), vec![32, 2], GgmlType::Q8_0, 1),
            ("b".into(), vec![4], GgmlType::F32, 2),
        ],
        offsets: None,
    }
}

/// `Gguf::parse` refuses the file `change` makes of [`spec`], with an error mentioning `expect`.
fn check_refused(change: impl FnOnce(&mut Spec), expect: &str) {
    let mut s = spec();
    change(&mut s);
    let (bytes, _) = s.write();
    let err = Gguf::parse(&bytes).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains(expect), "expected `{expect}` in: {err}");
}

#[test]
fn the_baseline_file_parses() {
    let (bytes, _) = spec().write();
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(g.tensors().len(), 2);
    assert_eq!(g.alignment, 32);
}

#[test]
fn refusals_name_the_problem() {
    check_refused(|s| s.version = 1, "version 1");
    check_refused(|s| s.version = 4, "version 4");
    check_refused(|s| s.alignment = Some(0), "power-of-two");
    check_refused(|s| s.alignment = Some(48), "power-of-two");
    check_refused(
        |s| {
            s.metadata
                .push(("general.alignment".into(), Value::U64(32)))
        },
        "power-of-two u32",
    );
    check_refused(|s| s.metadata.push(("".into(), Value::U8(1))), "empty key");
    check_refused(
        |s| {
            s.metadata
                .push(("general.architecture".into(), Value::U8(1)))
        },
        "appears twice",
    );
    check_refused(|s| s.tensors[1].0 = "a".into(), "appears twice");
    check_refused(|s| s.tensors[1].0 = String::new(), "empty name");
    check_refused(|s| s.tensors[1].1 = vec![], "0 dimensions");
    check_refused(|s| s.tensors[1].1 = vec![1; 5], "5 dimensions");
    check_refused(|s| s.tensors[0].1 = vec![16, 2], "block size");
    check_refused(|s| s.offsets = Some(vec![0, 4]), "not aligned");
    check_refused(|s| s.offsets = Some(vec![0, 32]), "overlaps tensor `a`");
    check_refused(|s| s.offsets = Some(vec![96, 0]), "outside the file");
    check_refused(|s| s.tensors[1].1 = vec![1 << 32, 1 << 32], "overflow");
    // Arrays nest at most three deep.
    let deep = Array::Array(vec![Array::Array(vec![Array::Array(vec![Array::Array(
        vec![],
    )])])]);
    check_refused(
        |s| s.metadata.push(("deep".into(), Value::Array(deep))),
        "nesting depth",
    );
}

#[test]
fn three_levels_of_arrays_and_any_nonzero_bool_are_read() {
    let nested = Array::Array(vec![Array::Array(vec![Array::U8(vec![1, 2])])]);
    let mut s = spec();
    s.metadata
        .push(("nested".into(), Value::Array(nested.clone())));
    s.metadata.push(("flag".into(), Value::Bool(true)));
    s.tensors.clear();
    let (mut bytes, _) = s.write();
    // Without tensors the file ends with the bool; llama.cpp reads any non-zero byte as true.
    *bytes.last_mut().unwrap() = 2;
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(g.get("nested"), Some(&Value::Array(nested)));
    assert_eq!(g.get("flag"), Some(&Value::Bool(true)));
}

/// Block geometry of every ggml type against gguf-py's `GGML_QUANT_SIZES`
/// (`tests/data/ggml_types.jsonl`, made by `make_quant_fixtures.py`).
///
/// One known disagreement: gguf-py 0.19 still gives Q8_1 the old 40-byte block (f32 `d` and `s`),
/// while ggml's `ggml-common.h` defines it as two f16 and 32 quants, 36 bytes, which is what
/// llama.cpp's `gguf.cpp` uses to validate files (through `ggml_type_size`). Hearth follows ggml.
/// Q8_1 is an activation format that model files do not use.
#[test]
fn type_table_matches_gguf_py() {
    const FOLLOWS_GGML_NOT_GGUF_PY: [(&str, u64); 1] = [("Q8_1", 36)];
    let rows = read_jsonl("ggml_types.jsonl");
    for r in &rows {
        let id = u32::try_from(r["id"].as_u64().unwrap()).unwrap();
        let ty = GgmlType::from_id(id).unwrap_or_else(|| panic!("{r}: unknown to Hearth"));
        assert_eq!(ty.to_string(), r["name"].as_str().unwrap(), "{r}");
        assert_eq!(ty.id(), id);
        assert_eq!(ty.block_size(), r["block_size"].as_u64().unwrap(), "{r}");
        let type_size = FOLLOWS_GGML_NOT_GGUF_PY
            .iter()
            .find(|(name, _)| ty.to_string() == *name)
            .map_or_else(|| r["type_size"].as_u64().unwrap(), |&(_, size)| size);
        assert_eq!(ty.type_size(), type_size, "{r}");
    }
    let known = (0..256).filter_map(GgmlType::from_id).count();
    assert_eq!(known, rows.len(), "Hearth knows types gguf-py does not");
}

/// A file written by gguf-py's `GGUFWriter` (an independent writer; `fuzz/make_seeds.py`).
#[test]
fn reads_a_file_gguf_py_wrote() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/every-value.gguf");
    let file = hearth_gguf::GgufFile::open(&path).unwrap();
    let expect = [
        ("t.u8", Value::U8(7)),
        ("t.i8", Value::I8(-7)),
        ("t.u16", Value::U16(700)),
        ("t.i16", Value::I16(-700)),
        ("t.u32", Value::U32(70000)),
        ("t.i32", Value::I32(-70000)),
        ("t.u64", Value::U64(1 << 40)),
        ("t.i64", Value::I64(-(1 << 40))),
        ("t.f32", Value::F32(1.5)),
        ("t.f64", Value::F64(-2.25)),
        ("t.bool", Value::Bool(true)),
        ("t.str", Value::String("héllo".into())),
        ("general.architecture", Value::String("llama".into())),
    ];
    for (key, value) in expect {
        assert_eq!(file.get(key), Some(&value), "{key}");
    }
    let strs = file.array("t.strs").unwrap().as_strings().unwrap();
    assert_eq!(strs, ["a", "bc", ""]);
    assert_eq!(file.array("t.ints").unwrap().to_i64s().unwrap(), [1, 2, 3]);
    assert_eq!(
        file.array("t.floats").unwrap().to_f32s().unwrap(),
        [0.5, 1.5]
    );
    let (info, data) = file.tensor_by_name("f32").unwrap();
    assert_eq!(info.dims, [8]);
    let values = hearth_gguf::quants::dequantize_to_vec(info.ggml_type, data).unwrap();
    assert_eq!(values, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
}
