//! The safetensors reader against hostile input: every truncation and random corruption of a
//! valid file is refused or read without panicking, and each header rule is enforced.

use hearth_models::ModelError;
use hearth_models::safetensors::{Dtype, SafeTensors};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A file from a header object and data bytes.
fn file(header: &Value, data: &[u8]) -> Vec<u8> {
    let h = header.to_string();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A valid file: an F32 2×2, an F16 [2], a BF16 [2] and an I64 [1], plus metadata.
fn valid() -> Vec<u8> {
    let mut data = Vec::new();
    for v in [1.0f32, -2.0, 0.5, 3.25] {
        data.extend_from_slice(&v.to_le_bytes());
    }
    data.extend_from_slice(&0x3C00u16.to_le_bytes()); // f16 1.0
    data.extend_from_slice(&0xC000u16.to_le_bytes()); // f16 -2.0
    data.extend_from_slice(&0x3F80u16.to_le_bytes()); // bf16 1.0
    data.extend_from_slice(&0x4049u16.to_le_bytes()); // bf16 3.140625
    data.extend_from_slice(&7i64.to_le_bytes());
    file(
        &json!({
            "__metadata__": {"format": "pt"},
            "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
            "h": {"dtype": "F16", "shape": [2], "data_offsets": [16, 20]},
            "b": {"dtype": "BF16", "shape": [2], "data_offsets": [20, 24]},
            "i": {"dtype": "I64", "shape": [1], "data_offsets": [24, 32]},
        }),
        &data,
    )
}

#[test]
fn reads_a_valid_file() {
    let st = SafeTensors::from_bytes(valid()).unwrap();
    let names: Vec<&str> = st.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["b", "h", "i", "w"]);
    assert_eq!(st.metadata().get("format").map(String::as_str), Some("pt"));
    assert_eq!(
        st.f32("w").unwrap(),
        (vec![1.0, -2.0, 0.5, 3.25], vec![2, 2])
    );
    assert_eq!(st.f32("h").unwrap().0, [1.0, -2.0]);
    assert_eq!(st.f32("b").unwrap().0, [1.0, 3.140625]);
    let i = st.get("i").unwrap();
    assert_eq!((i.dtype, i.elements()), (Dtype::I64, 1));
    assert_eq!(st.bytes(i), 7i64.to_le_bytes());
    assert!(st.f32("i").is_err(), "integers are not weights");
    assert!(st.f32("missing").is_err());
}

/// `from_bytes` must refuse `bytes` with an `Invalid` error whose text contains `why`.
fn check_refused(bytes: Vec<u8>, why: &str) {
    let result = SafeTensors::from_bytes(bytes);
    let msg = match &result {
        Err(ModelError::Invalid(msg)) => msg.as_str(),
        _ => "",
    };
    assert!(
        msg.contains(why),
        "expected refusal ({why}), got {result:?}"
    );
}

fn one(t: Value, data_len: usize) -> Vec<u8> {
    file(&json!({ "t": t }), &vec![0u8; data_len])
}

#[test]
fn header_rules() {
    check_refused(vec![1, 2, 3], "too short");
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    check_refused(huge, "header claims");
    let mut past = 100u64.to_le_bytes().to_vec();
    past.extend_from_slice(b"{}");
    check_refused(past, "header claims");
    check_refused(file(&json!([1, 2]), &[]), "not a JSON object");
    let mut junk = 3u64.to_le_bytes().to_vec();
    junk.extend_from_slice(b"{x}");
    check_refused(junk, "not valid JSON");
    check_refused(
        file(&json!({"__metadata__": {"a": 1}}), &[]),
        "not a string",
    );
    check_refused(
        one(
            json!({"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}),
            4,
        ),
        "unknown dtype",
    );
    check_refused(
        one(json!({"shape": [1], "data_offsets": [0, 4]}), 4),
        "dtype",
    );
    check_refused(
        one(
            json!({"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}),
            8,
        ),
        "needs 8 bytes",
    );
    check_refused(
        one(
            json!({"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}),
            4,
        ),
        "not inside",
    );
    check_refused(
        one(
            json!({"dtype": "F32", "shape": [0], "data_offsets": [4, 0]}),
            4,
        ),
        "not inside",
    );
    check_refused(
        one(
            json!({"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}),
            4,
        ),
        "dimension",
    );
    check_refused(
        one(
            json!({"dtype": "F32", "shape": [1u64 << 40, 1u64 << 40], "data_offsets": [0, 4]}),
            4,
        ),
        "overflows",
    );
    check_refused(
        one(
            json!({"dtype": "U8", "shape": [1, 1, 1, 1, 1, 1, 1, 1, 1], "data_offsets": [0, 1]}),
            1,
        ),
        "dimensions",
    );
    check_refused(
        one(json!({"dtype": "U8", "shape": [1], "data_offsets": [0]}), 1),
        "data_offsets",
    );
    check_refused(
        file(
            &json!({
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
            }),
            &[0; 8],
        ),
        "overlap",
    );
    // Empty tensors and scalars are fine.
    let ok = file(
        &json!({
            "e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [0, 0]},
            "s": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]},
        }),
        &[0; 4],
    );
    let st = SafeTensors::from_bytes(ok).unwrap();
    assert_eq!(st.f32("s").unwrap(), (vec![0.0], vec![]));
    assert_eq!(st.f32("e").unwrap().0.len(), 0);
}

#[test]
fn every_truncation_is_refused() {
    let v = valid();
    for cut in 0..v.len() {
        assert!(
            SafeTensors::from_bytes(v[..cut].to_vec()).is_err(),
            "cut at {cut}"
        );
    }
}

#[test]
fn read_reports_missing_files() {
    let err =
        SafeTensors::read(std::path::Path::new("/nonexistent/model.safetensors")).unwrap_err();
    assert!(matches!(err, ModelError::Io { .. }), "{err:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    /// Random byte changes never panic; whatever is accepted reads back within bounds.
    #[test]
    fn corrupted_files_never_panic(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let mut v = valid();
        let n = v.len();
        for (at, b) in edits {
            v[at % n] = b;
        }
        if let Ok(st) = SafeTensors::from_bytes(v) {
            for t in st.tensors() {
                prop_assert_eq!(st.bytes(t).len(), t.elements() * t.dtype.size());
                let _ = st.f32(&t.name);
            }
        }
    }
}
