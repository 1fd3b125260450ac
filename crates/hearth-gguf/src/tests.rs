use super::*;

/// A tiny well-formed GGUF writer for tests.
pub(crate) struct Builder {
    kv: Vec<u8>,
    n_kv: u64,
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

impl Builder {
    pub fn new() -> Self {
        Self {
            kv: Vec::new(),
            n_kv: 0,
            tensors: Vec::new(),
        }
    }
    fn key(&mut self, k: &str, ty: u32) {
        self.kv.extend((k.len() as u64).to_le_bytes());
        self.kv.extend(k.as_bytes());
        self.kv.extend(ty.to_le_bytes());
        self.n_kv += 1;
    }
    pub fn string(mut self, k: &str, v: &str) -> Self {
        self.key(k, 8);
        self.kv.extend((v.len() as u64).to_le_bytes());
        self.kv.extend(v.as_bytes());
        self
    }
    pub fn u32(mut self, k: &str, v: u32) -> Self {
        self.key(k, 4);
        self.kv.extend(v.to_le_bytes());
        self
    }
    pub fn strings(mut self, k: &str, v: &[&str]) -> Self {
        self.key(k, 9);
        self.kv.extend(8u32.to_le_bytes());
        self.kv.extend((v.len() as u64).to_le_bytes());
        for s in v {
            self.kv.extend((s.len() as u64).to_le_bytes());
            self.kv.extend(s.as_bytes());
        }
        self
    }
    pub fn tensor(mut self, name: &str, dims: &[u64], ty: u32, data: Vec<u8>) -> Self {
        self.tensors.push((name.into(), dims.to_vec(), ty, data));
        self
    }
    pub fn build(self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(&self.kv);
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for (name, dims, ty, data) in &self.tensors {
            out.extend((name.len() as u64).to_le_bytes());
            out.extend(name.as_bytes());
            out.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(ty.to_le_bytes());
            out.extend(offset.to_le_bytes());
            offsets.push(offset);
            offset += (data.len() as u64).div_ceil(32) * 32;
        }
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
            let start = out.len();
            assert_eq!(start as u64 % 32, off % 32);
            out.extend(data);
            while !out.len().is_multiple_of(32) {
                out.push(0);
            }
        }
        out
    }
}

fn sample() -> Vec<u8> {
    let weights: Vec<u8> = [1.0f32, -2.0, 3.5, 0.25]
        .iter()
        .flat_map(|f| f.to_le_bytes())
        .collect();
    Builder::new()
        .string("general.architecture", "llama")
        .u32("llama.block_count", 2)
        .strings("tokenizer.ggml.tokens", &["a", "b", "ab"])
        .tensor("w", &[2, 2], 0, weights)
        .build()
}

#[test]
fn parses_metadata_and_tensors() {
    let file = GgufFile::from_bytes(sample()).unwrap();
    assert_eq!(file.version, 3);
    assert_eq!(file.architecture().unwrap(), "llama");
    assert_eq!(file.u64("llama.block_count").unwrap(), 2);
    let toks = file
        .array("tokenizer.ggml.tokens")
        .unwrap()
        .as_strings()
        .unwrap();
    assert_eq!(toks, ["a", "b", "ab"]);
    let (info, data) = file.tensor_by_name("w").unwrap();
    assert_eq!(info.dims, [2, 2]);
    assert_eq!(info.ggml_type, GgmlType::F32);
    let v = quants::dequantize_to_vec(info.ggml_type, data).unwrap();
    assert_eq!(v, [1.0, -2.0, 3.5, 0.25]);
}

#[test]
fn typed_getters_name_the_problem() {
    let file = GgufFile::from_bytes(sample()).unwrap();
    let err = file.u64("general.architecture").unwrap_err().to_string();
    assert!(
        err.contains("general.architecture") && err.contains("string"),
        "{err}"
    );
    let err = file.str("nope").unwrap_err().to_string();
    assert!(err.contains("missing"), "{err}");
    assert!(matches!(
        file.tensor_by_name("x"),
        Err(GgufError::MissingTensor(_))
    ));
}

#[test]
fn every_truncation_is_an_error() {
    let full = sample();
    for len in 0..full.len() - 1 {
        // The last bytes are padding after the tensor data; anything shorter than the data end fails.
        let r = Gguf::parse(&full[..len]);
        if len < full.len() - 16 {
            assert!(r.is_err(), "truncated to {len} bytes parsed");
        }
    }
}

#[test]
fn refuses_bad_magic_version_and_huge_counts() {
    let mut f = sample();
    f[0] = b'X';
    assert!(matches!(Gguf::parse(&f), Err(GgufError::BadMagic)));
    let mut f = sample();
    f[4] = 1;
    assert!(matches!(
        Gguf::parse(&f),
        Err(GgufError::UnsupportedVersion(1))
    ));
    let mut f = sample();
    f[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(Gguf::parse(&f), Err(GgufError::TooLarge { .. })));
}

#[test]
fn refuses_tensor_outside_file() {
    let f = Builder::new().tensor("w", &[64], 0, vec![0; 16]).build();
    let err = Gguf::parse(&f).unwrap_err().to_string();
    assert!(err.contains("outside"), "{err}");
}

#[test]
fn refuses_partial_blocks() {
    let f = Builder::new().tensor("w", &[16], 2, vec![0; 18]).build();
    let err = Gguf::parse(&f).unwrap_err().to_string();
    assert!(err.contains("block size"), "{err}");
}

#[test]
fn f16_round_trips() {
    for bits in 0..=u16::MAX {
        let x = quants::f16_to_f32(bits);
        if x.is_nan() {
            continue;
        }
        assert_eq!(quants::f32_to_f16(x), bits, "{bits:#x} -> {x}");
    }
    assert_eq!(quants::f16_to_f32(0x3c00), 1.0);
    assert_eq!(quants::f16_to_f32(0xc000), -2.0);
    assert_eq!(quants::f16_to_f32(0x0001), 5.960_464_5e-8);
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn corrupted_files_never_panic(pos in 0usize..400, byte in any::<u8>(), cut in 0usize..400) {
            let mut f = sample();
            let pos = pos % f.len();
            f[pos] = byte;
            let cut = cut.min(f.len());
            let _ = Gguf::parse(&f[..cut]);
            let _ = Gguf::parse(&f);
        }

        #[test]
        fn random_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut f = b"GGUF\x03\0\0\0".to_vec();
            f.extend(tail);
            let _ = Gguf::parse(&f);
        }
    }
}
