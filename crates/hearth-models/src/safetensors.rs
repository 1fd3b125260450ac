//! The safetensors format as hostile input: `u64` little-endian header length, a JSON header
//! (`name → {dtype, shape, data_offsets}` plus an optional `__metadata__` of strings), then the
//! tensor bytes. Every span is checked before anything is read through it: the header fits the
//! file and a cap, each tensor's byte span lies inside the data and matches its shape × dtype,
//! and no two spans overlap.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use serde_json::Value;

use crate::ModelError;

/// Largest header accepted (the reference implementation's own limit).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Largest file read into memory.
pub const MAX_FILE_BYTES: u64 = 64 << 30;
/// Most dimensions a tensor may have.
const MAX_DIMS: usize = 8;

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    Bool,
    U8,
    I8,
    F8E4M3,
    F8E5M2,
    U16,
    I16,
    F16,
    BF16,
    U32,
    I32,
    F32,
    U64,
    I64,
    F64,
}

impl Dtype {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "BOOL" => Self::Bool,
            "U8" => Self::U8,
            "I8" => Self::I8,
            "F8_E4M3" => Self::F8E4M3,
            "F8_E5M2" => Self::F8E5M2,
            "U16" => Self::U16,
            "I16" => Self::I16,
            "F16" => Self::F16,
            "BF16" => Self::BF16,
            "U32" => Self::U32,
            "I32" => Self::I32,
            "F32" => Self::F32,
            "U64" => Self::U64,
            "I64" => Self::I64,
            "F64" => Self::F64,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::Bool | Self::U8 | Self::I8 | Self::F8E4M3 | Self::F8E5M2 => 1,
            Self::U16 | Self::I16 | Self::F16 | Self::BF16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 => 8,
        }
    }
}

/// One tensor of the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Byte span inside the data section (after the header).
    start: usize,
    end: usize,
}

impl TensorInfo {
    /// Number of elements (product of the shape; 1 for a scalar).
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A safetensors file read into memory and validated.
#[derive(Debug)]
pub struct SafeTensors {
    bytes: Vec<u8>,
    data_start: usize,
    /// Sorted by name.
    tensors: Vec<TensorInfo>,
    metadata: BTreeMap<String, String>,
}

fn invalid(what: impl std::fmt::Display) -> ModelError {
    ModelError::Invalid(format!("safetensors: {what}"))
}

impl SafeTensors {
    /// Reads and validates the file at `path`.
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        let io = |source| ModelError::Io {
            path: path.to_owned(),
            source,
        };
        let f = std::fs::File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        if len > MAX_FILE_BYTES {
            return Err(invalid(format!(
                "{} is {len} bytes, more than the {MAX_FILE_BYTES} this reader accepts",
                path.display()
            )));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        f.take(len).read_to_end(&mut bytes).map_err(io)?;
        Self::from_bytes(bytes)
    }

    /// Validates `bytes` as a safetensors file.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, ModelError> {
        let Some(head) = bytes.first_chunk::<8>() else {
            return Err(invalid(format!(
                "the file is {} bytes, too short for the 8-byte header length",
                bytes.len()
            )));
        };
        let n = u64::from_le_bytes(*head);
        let avail = bytes.len() as u64 - 8;
        if n > avail || n > MAX_HEADER_BYTES {
            return Err(invalid(format!(
                "the header claims {n} bytes; the file has {avail} after the length (limit {MAX_HEADER_BYTES})"
            )));
        }
        // n <= bytes.len() - 8, so this fits in usize.
        let data_start = 8 + n as usize;
        let header = bytes
            .get(8..data_start)
            .ok_or_else(|| invalid("the header is outside the file"))?;
        let header: Value = serde_json::from_slice(header)
            .map_err(|e| invalid(format!("the header is not valid JSON: {e}")))?;
        let Value::Object(map) = header else {
            return Err(invalid("the header is not a JSON object"));
        };
        let data_len = bytes.len() - data_start;
        let mut tensors = Vec::with_capacity(map.len());
        let mut metadata = BTreeMap::new();
        for (name, v) in map {
            if name == "__metadata__" {
                let Value::Object(m) = v else {
                    return Err(invalid("`__metadata__` is not an object"));
                };
                for (k, v) in m {
                    let Value::String(s) = v else {
                        return Err(invalid(format!("`__metadata__.{k}` is not a string")));
                    };
                    metadata.insert(k, s);
                }
                continue;
            }
            tensors.push(parse_tensor(name, &v, data_len)?);
        }
        let mut by_start: Vec<&TensorInfo> = tensors.iter().collect();
        by_start.sort_by_key(|t| (t.start, t.end));
        for w in by_start.windows(2) {
            if let [a, b] = w
                && b.start < a.end
            {
                return Err(invalid(format!(
                    "tensors `{}` and `{}` overlap (bytes {}..{} and {}..{})",
                    a.name, b.name, a.start, a.end, b.start, b.end
                )));
            }
        }
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self {
            bytes,
            data_start,
            tensors,
            metadata,
        })
    }

    /// All tensors, sorted by name.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The `__metadata__` strings.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors
            .binary_search_by(|t| t.name.as_str().cmp(name))
            .ok()
            .and_then(|i| self.tensors.get(i))
    }

    /// The raw little-endian bytes of `t` (validated at open, so always `elements × size`).
    pub fn bytes(&self, t: &TensorInfo) -> &[u8] {
        self.bytes
            .get(self.data_start + t.start..self.data_start + t.end)
            .unwrap_or_default()
    }

    /// Tensor `name` as f32 (from F32, F16 or BF16), with its shape.
    pub fn f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), ModelError> {
        let t = self
            .get(name)
            .ok_or_else(|| invalid(format!("tensor `{name}` is missing")))?;
        let b = self.bytes(t);
        let v: Vec<f32> = match t.dtype {
            Dtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => b
                .chunks_exact(2)
                .map(|c| hearth_gguf::quants::f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            Dtype::BF16 => b
                .chunks_exact(2)
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                .collect(),
            other => {
                return Err(invalid(format!(
                    "tensor `{name}` is {other:?}; only F32, F16 and BF16 weights are supported"
                )));
            }
        };
        Ok((v, t.shape.clone()))
    }
}

fn parse_tensor(name: String, v: &Value, data_len: usize) -> Result<TensorInfo, ModelError> {
    let bad = |what: &str| invalid(format!("tensor `{name}`: {what}"));
    let dtype_s = v
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("`dtype` is missing or not a string"))?;
    let dtype = Dtype::parse(dtype_s).ok_or_else(|| bad(&format!("unknown dtype {dtype_s:?}")))?;
    let shape_v = v
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("`shape` is missing or not an array"))?;
    if shape_v.len() > MAX_DIMS {
        return Err(bad(&format!(
            "{} dimensions (at most {MAX_DIMS})",
            shape_v.len()
        )));
    }
    let mut shape = Vec::with_capacity(shape_v.len());
    let mut elements: usize = 1;
    for d in shape_v {
        let d = d
            .as_u64()
            .and_then(|d| usize::try_from(d).ok())
            .ok_or_else(|| bad("a dimension is not a non-negative integer"))?;
        elements = elements
            .checked_mul(d)
            .ok_or_else(|| bad("the shape's element count overflows"))?;
        shape.push(d);
    }
    let offs = v
        .get("data_offsets")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("`data_offsets` is missing or not an array"))?;
    let [s, e] = offs.as_slice() else {
        return Err(bad("`data_offsets` must be [begin, end]"));
    };
    let to_usize = |x: &Value| x.as_u64().and_then(|x| usize::try_from(x).ok());
    let (Some(start), Some(end)) = (to_usize(s), to_usize(e)) else {
        return Err(bad("`data_offsets` are not non-negative integers"));
    };
    if start > end || end > data_len {
        return Err(bad(&format!(
            "bytes {start}..{end} are not inside the {data_len} bytes of data"
        )));
    }
    let need = elements
        .checked_mul(dtype.size())
        .ok_or_else(|| bad("the byte size overflows"))?;
    if need != end - start {
        return Err(bad(&format!(
            "shape {shape:?} of {dtype:?} needs {need} bytes, the offsets span {}",
            end - start
        )));
    }
    Ok(TensorInfo {
        name,
        dtype,
        shape,
        start,
        end,
    })
}
