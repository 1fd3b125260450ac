//! Any byte string: `Gguf::parse` returns, never panics; when it accepts the input, every tensor's
//! data is inside it, has the size the index claims, and its first block dequantizes.
#![no_main]

use hearth_gguf::{Gguf, GgufFile, quants};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = Gguf::parse(data) else {
        return;
    };
    // Typed getters on every key never panic, whatever the value's type.
    for (key, _) in header.metadata() {
        let _ = (header.u64(key), header.f64(key), header.str(key));
        if let Ok(a) = header.array(key) {
            let _ = (a.len(), a.as_strings(), a.to_i64s(), a.to_f32s());
        }
    }
    let file = GgufFile::from_bytes(data.to_vec()).expect("parsed once, parses again");
    for t in file.tensors() {
        let bytes = file.tensor_data(t).expect("parse checked every tensor's bounds");
        assert_eq!(bytes.len() as u64, t.size, "{}", t.name);
        assert_eq!(file.tensor(&t.name), Some(t));
        let ty = t.ggml_type;
        if !ty.can_dequantize() {
            continue;
        }
        let block = usize::try_from(ty.type_size()).expect("small");
        if let Some(first) = bytes.get(..block) {
            let mut out = vec![0.0f32; usize::try_from(ty.block_size()).expect("small")];
            quants::dequantize(ty, first, &mut out).expect("one whole block dequantizes");
        }
    }
});
