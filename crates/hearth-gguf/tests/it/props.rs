//! Property tests of the reader: random valid files round-trip exactly; truncated, corrupted and
//! inflated files are refused without panicking or allocating more than the input's size.

use hearth_gguf::quants::dequantize;
use hearth_gguf::{Array, GgmlType, Gguf, GgufFile, Value};
use proptest::prelude::*;

use crate::alloc::largest_allocation_during;
use crate::writer::{Field, Spec, data_size};

/// Values compared bit for bit (NaN payloads included), types included.
fn canon(v: &Value) -> String {
    match v {
        Value::F32(x) => format!("f32:{:#x}", x.to_bits()),
        Value::F64(x) => format!("f64:{:#x}", x.to_bits()),
        Value::Array(a) => canon_array(a),
        other => format!("{other:?}"),
    }
}

fn canon_array(a: &Array) -> String {
    match a {
        Array::F32(v) => format!(
            "f32s:{:x?}",
            v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        ),
        Array::F64(v) => format!(
            "f64s:{:x?}",
            v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        ),
        Array::Array(v) => format!(
            "[{}]",
            v.iter().map(canon_array).collect::<Vec<_>>().join(",")
        ),
        other => format!("{other:?}"),
    }
}

fn arb_array(depth: u32) -> BoxedStrategy<Array> {
    use proptest::collection::vec;
    let n = 0..5usize;
    let leaf = prop_oneof![
        vec(any::<u8>(), n.clone()).prop_map(Array::U8),
        vec(any::<i8>(), n.clone()).prop_map(Array::I8),
        vec(any::<u16>(), n.clone()).prop_map(Array::U16),
        vec(any::<i16>(), n.clone()).prop_map(Array::I16),
        vec(any::<u32>(), n.clone()).prop_map(Array::U32),
        vec(any::<i32>(), n.clone()).prop_map(Array::I32),
        vec(any::<u64>(), n.clone()).prop_map(Array::U64),
        vec(any::<i64>(), n.clone()).prop_map(Array::I64),
        vec(any::<u32>().prop_map(f32::from_bits), n.clone()).prop_map(Array::F32),
        vec(any::<u64>().prop_map(f64::from_bits), n.clone()).prop_map(Array::F64),
        vec(any::<bool>(), n.clone()).prop_map(Array::Bool),
        vec(".{0,6}", n.clone()).prop_map(Array::String),
    ];
    if depth == 0 {
        leaf.boxed()
    } else {
        prop_oneof![4 => leaf, 1 => vec(arb_array(depth - 1), n).prop_map(Array::Array)].boxed()
    }
}

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u8>().prop_map(Value::U8),
        any::<i8>().prop_map(Value::I8),
        any::<u16>().prop_map(Value::U16),
        any::<i16>().prop_map(Value::I16),
        any::<u32>().prop_map(Value::U32),
        any::<i32>().prop_map(Value::I32),
        any::<u64>().prop_map(Value::U64),
        any::<i64>().prop_map(Value::I64),
        any::<u32>().prop_map(|b| Value::F32(f32::from_bits(b))),
        any::<u64>().prop_map(|b| Value::F64(f64::from_bits(b))),
        any::<bool>().prop_map(Value::Bool),
        ".{0,12}".prop_map(Value::String),
        // top-level arrays nest two more levels: the deepest the reader accepts
        arb_array(2).prop_map(Value::Array),
    ]
}

fn all_types() -> Vec<GgmlType> {
    (0..64).filter_map(GgmlType::from_id).collect()
}

fn arb_tensor() -> impl Strategy<Value = (Vec<u64>, GgmlType, u8)> {
    (
        proptest::sample::select(all_types()),
        1..=2u64,
        proptest::collection::vec(1..=3u64, 0..=3),
        any::<u8>(),
    )
        .prop_map(|(ty, blocks, rest, fill)| {
            let mut dims = vec![blocks * ty.block_size()];
            dims.extend(rest);
            (dims, ty, fill)
        })
}

fn arb_spec() -> impl Strategy<Value = Spec> {
    (
        prop_oneof![Just(2u32), Just(3u32)],
        proptest::option::of(proptest::sample::select(vec![1u32, 8, 16, 32, 64, 256])),
        proptest::collection::btree_map("[a-z]{1,8}(\\.[a-z_]{1,8}){0,2}", arb_value(), 0..8),
        proptest::collection::vec(arb_tensor(), 0..5),
    )
        .prop_map(|(version, alignment, metadata, tensors)| Spec {
            version,
            alignment,
            metadata: metadata.into_iter().collect(),
            tensors: tensors
                .into_iter()
                .enumerate()
                .map(|(i, (dims, ty, fill))| (format!("blk.{i}.weight"), dims, ty, fill))
                .collect(),
            offsets: None,
        })
}

/// Whatever `Gguf::parse` accepts, every tensor's data lies inside the input and the first block
/// of every dequantizable tensor dequantizes.
fn check_accepted(bytes: &[u8]) {
    if Gguf::parse(bytes).is_err() {
        return;
    }
    let file = GgufFile::from_bytes(bytes.to_vec()).unwrap();
    for t in file.tensors() {
        let data = file.tensor_data(t).unwrap();
        assert_eq!(data.len() as u64, t.size);
        let ts = t.ggml_type.type_size() as usize;
        if let (true, Some(block)) = (t.ggml_type.can_dequantize(), data.get(..ts)) {
            let mut out = vec![0.0; t.ggml_type.block_size() as usize];
            dequantize(t.ggml_type, block, &mut out).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn valid_files_round_trip(spec in arb_spec()) {
        let (bytes, _) = spec.write();
        let file = GgufFile::from_bytes(bytes.clone()).unwrap();
        prop_assert_eq!(file.version, spec.version);
        prop_assert_eq!(file.alignment, spec.alignment());
        let expected = spec.full_metadata();
        prop_assert_eq!(file.metadata().len(), expected.len());
        for ((k, v), (ek, ev)) in file.metadata().iter().zip(&expected) {
            prop_assert_eq!(k, ek);
            prop_assert_eq!(canon(v), canon(ev));
            prop_assert_eq!(canon(file.get(k).unwrap()), canon(ev));
        }
        prop_assert_eq!(file.tensors().len(), spec.tensors.len());
        let mut offset = 0;
        for (t, (name, dims, ty, fill)) in file.tensors().iter().zip(&spec.tensors) {
            prop_assert_eq!(&t.name, name);
            prop_assert_eq!(&t.dims, dims);
            prop_assert_eq!(t.ggml_type, *ty);
            prop_assert_eq!(t.offset, offset);
            prop_assert_eq!(t.size, data_size(dims, *ty));
            let data = file.tensor_data(t).unwrap();
            let start = (file.data_offset + t.offset) as usize;
            prop_assert_eq!(data, &bytes[start..start + t.size as usize]);
            prop_assert_eq!(data[0], fill.wrapping_add(t.offset as u8));
            prop_assert_eq!(file.tensor(name), Some(t));
            offset = (offset + t.size).next_multiple_of(spec.alignment());
        }
        check_accepted(&bytes);
    }

    #[test]
    fn every_truncation_is_an_error(spec in arb_spec()) {
        let (bytes, _) = spec.write();
        for len in 0..bytes.len() {
            prop_assert!(Gguf::parse(&bytes[..len]).is_err(), "{len} of {} bytes parsed", bytes.len());
        }
    }

    #[test]
    fn flipped_bytes_never_panic(
        spec in arb_spec(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let (mut bytes, _) = spec.write();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= byte.max(1);
        }
        check_accepted(&bytes);
    }

    /// Setting any count, length, type id, dimension or offset to a huge value is an error, and
    /// the parser allocates no more than the file's size on the way.
    #[test]
    fn huge_counts_and_lengths_are_errors(
        spec in arb_spec(),
        which in any::<prop::sample::Index>(),
        huge64 in prop_oneof![Just(u64::MAX), Just(1u64 << 63), Just(1u64 << 40), Just(u64::from(u32::MAX) + 1)],
        huge32 in prop_oneof![Just(u32::MAX), Just(1u32 << 31), Just(1000u32)],
    ) {
        let (mut bytes, fields) = spec.write();
        match fields[which.index(fields.len())] {
            Field::U32(at) => bytes[at..at + 4].copy_from_slice(&huge32.to_le_bytes()),
            Field::U64(at) => bytes[at..at + 8].copy_from_slice(&huge64.to_le_bytes()),
        }
        let (largest, result) = largest_allocation_during(|| Gguf::parse(&bytes).map(drop));
        prop_assert!(result.is_err());
        prop_assert!(largest <= bytes.len().max(4096), "allocated {largest} bytes for a {}-byte file", bytes.len());
    }
}

/// A metadata array claiming an enormous length in a 60-byte file: refused, and the parser never
/// asks for more than a few hundred bytes (it bounds every count by the bytes that remain).
#[test]
fn enormous_array_lengths_in_a_tiny_file_allocate_nothing() {
    // The instrument works.
    let (largest, v) = largest_allocation_during(|| vec![1u8; 5000]);
    assert!(largest >= 5000 && v.len() == 5000);
    for (elem_type, count) in [
        (0u32, u64::MAX),       // u8
        (0, 1 << 40),           // u8
        (10, u64::MAX / 8 + 1), // u64: count * 8 wraps to 0
        (8, 1 << 61),           // strings
        (9, 1 << 60),           // arrays of arrays
        (7, 1 << 33),           // bools
    ] {
        let mut f = b"GGUF".to_vec();
        f.extend(3u32.to_le_bytes());
        f.extend(0u64.to_le_bytes()); // tensors
        f.extend(1u64.to_le_bytes()); // metadata pairs
        f.extend(1u64.to_le_bytes());
        f.push(b'k');
        f.extend(9u32.to_le_bytes()); // array
        f.extend(elem_type.to_le_bytes());
        f.extend(count.to_le_bytes());
        f.extend([0; 16]);
        let (largest, result) = largest_allocation_during(|| Gguf::parse(&f).map(drop));
        assert!(result.is_err(), "type {elem_type} count {count}");
        assert!(
            largest < 1024,
            "type {elem_type} count {count}: allocated {largest} bytes"
        );
    }
    // The same for the tensor and metadata counts of the header.
    for at in [8, 16] {
        let mut f = b"GGUF\x03\0\0\0".to_vec();
        f.extend([0; 16]);
        f[at..at + 8].copy_from_slice(&(1u64 << 50).to_le_bytes());
        let (largest, result) = largest_allocation_during(|| Gguf::parse(&f).map(drop));
        assert!(result.is_err());
        assert!(largest < 1024, "count at {at}: allocated {largest} bytes");
    }
}
