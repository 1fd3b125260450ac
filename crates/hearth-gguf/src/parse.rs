use std::collections::HashMap;

use crate::error::GgufError;
use crate::types::{Array, GgmlType, Value, ValueType};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays nest at most this deep; deeper input is refused rather than recursed into.
const MAX_ARRAY_DEPTH: u32 = 3;
/// The fewest bytes one metadata pair takes: key length, a one-byte key, value type, a one-byte value.
const MIN_KV_SIZE: u64 = 8 + 1 + 4 + 1;
/// The fewest bytes one tensor entry takes: name length, a one-byte name, n_dims, one dim, type, offset.
const MIN_TENSOR_INFO_SIZE: u64 = 8 + 1 + 4 + 8 + 4 + 8;

/// One entry of the tensor index.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the innermost (row length).
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Size of the data in bytes.
    pub size: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF header: version, metadata and the tensor index, with the position of tensor data.
#[derive(Debug, Clone)]
pub struct Gguf {
    pub version: u32,
    metadata: Vec<(String, Value)>,
    by_key: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    /// Offset of the data section from the start of the file.
    pub data_offset: u64,
    pub alignment: u64,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], GgufError> {
        let truncated = || GgufError::Truncated {
            what,
            offset: self.pos,
            needed: n,
            len: self.buf.len(),
        };
        let n = usize::try_from(n).map_err(|_| truncated())?;
        let end = self.pos.checked_add(n).ok_or_else(truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufError> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, GgufError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, GgufError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &'static str) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::BadUtf8(what))
    }

    /// A count of items that each take at least `min_size` bytes, refused when the rest of the
    /// input cannot hold that many (so no count read from the file drives a large allocation).
    fn count(&mut self, what: &'static str, min_size: u64) -> Result<usize, GgufError> {
        let n = self.u64(what)?;
        let fits = n
            .checked_mul(min_size)
            .is_some_and(|bytes| bytes <= self.remaining());
        if !fits {
            return Err(GgufError::TooLarge { what, value: n });
        }
        usize::try_from(n).map_err(|_| GgufError::TooLarge { what, value: n })
    }
}

fn read_vec<T>(
    c: &mut Cursor<'_>,
    n: usize,
    mut one: impl FnMut(&mut Cursor<'_>) -> Result<T, GgufError>,
) -> Result<Vec<T>, GgufError> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(one(c)?);
    }
    Ok(out)
}

fn read_value(c: &mut Cursor<'_>, ty: ValueType, depth: u32) -> Result<Value, GgufError> {
    const W: &str = "metadata value";
    Ok(match ty {
        ValueType::U8 => Value::U8(c.u8(W)?),
        ValueType::I8 => Value::I8(c.u8(W)? as i8),
        ValueType::U16 => Value::U16(c.u16(W)?),
        ValueType::I16 => Value::I16(c.u16(W)? as i16),
        ValueType::U32 => Value::U32(c.u32(W)?),
        ValueType::I32 => Value::I32(c.u32(W)? as i32),
        ValueType::U64 => Value::U64(c.u64(W)?),
        ValueType::I64 => Value::I64(c.u64(W)? as i64),
        ValueType::F32 => Value::F32(f32::from_bits(c.u32(W)?)),
        ValueType::F64 => Value::F64(f64::from_bits(c.u64(W)?)),
        ValueType::Bool => Value::Bool(read_bool(c)?),
        ValueType::String => Value::String(c.string("metadata string")?),
        ValueType::Array => Value::Array(read_array(c, depth)?),
    })
}

/// Any non-zero byte is true, as llama.cpp reads it.
fn read_bool(c: &mut Cursor<'_>) -> Result<bool, GgufError> {
    Ok(c.u8("metadata bool")? != 0)
}

fn read_array(c: &mut Cursor<'_>, depth: u32) -> Result<Array, GgufError> {
    if depth >= MAX_ARRAY_DEPTH {
        return Err(GgufError::TooLarge {
            what: "array nesting depth",
            value: depth.into(),
        });
    }
    let type_id = c.u32("array element type")?;
    let ty = ValueType::from_id(type_id).ok_or(GgufError::TooLarge {
        what: "array element type",
        value: type_id.into(),
    })?;
    let n = c.count("array length", ty.min_size())?;
    const W: &str = "array element";
    Ok(match ty {
        ValueType::U8 => Array::U8(c.take(n as u64, W)?.to_vec()),
        ValueType::I8 => Array::I8(c.take(n as u64, W)?.iter().map(|&b| b as i8).collect()),
        ValueType::U16 => Array::U16(read_vec(c, n, |c| c.u16(W))?),
        ValueType::I16 => Array::I16(read_vec(c, n, |c| Ok(c.u16(W)? as i16))?),
        ValueType::U32 => Array::U32(read_vec(c, n, |c| c.u32(W))?),
        ValueType::I32 => Array::I32(read_vec(c, n, |c| Ok(c.u32(W)? as i32))?),
        ValueType::U64 => Array::U64(read_vec(c, n, |c| c.u64(W))?),
        ValueType::I64 => Array::I64(read_vec(c, n, |c| Ok(c.u64(W)? as i64))?),
        ValueType::F32 => Array::F32(read_vec(c, n, |c| Ok(f32::from_bits(c.u32(W)?)))?),
        ValueType::F64 => Array::F64(read_vec(c, n, |c| Ok(f64::from_bits(c.u64(W)?)))?),
        ValueType::Bool => Array::Bool(read_vec(c, n, read_bool)?),
        ValueType::String => Array::String(read_vec(c, n, |c| c.string("array string"))?),
        ValueType::Array => Array::Array(read_vec(c, n, |c| read_array(c, depth + 1))?),
    })
}

fn bad_tensor(name: &str, problem: impl Into<String>) -> GgufError {
    GgufError::BadTensor {
        name: name.to_owned(),
        problem: problem.into(),
    }
}

fn read_tensor_info(c: &mut Cursor<'_>) -> Result<TensorInfo, GgufError> {
    let name = c.string("tensor name")?;
    if name.is_empty() {
        return Err(bad_tensor("", "empty name"));
    }
    let n_dims = c.u32("tensor dimension count")?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(bad_tensor(
            &name,
            format!("{n_dims} dimensions (1 to {MAX_DIMS} allowed)"),
        ));
    }
    let dims = read_vec(c, n_dims as usize, |c| c.u64("tensor dimension"))?;
    let type_id = c.u32("tensor type")?;
    let ggml_type = GgmlType::from_id(type_id)
        .ok_or_else(|| bad_tensor(&name, format!("unknown type id {type_id}")))?;
    let offset = c.u64("tensor offset")?;
    let elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| i64::try_from(n).is_ok())
        .ok_or_else(|| bad_tensor(&name, format!("dimensions {dims:?} overflow")))?;
    if dims[0] % ggml_type.block_size() != 0 {
        return Err(bad_tensor(
            &name,
            format!(
                "row length {} is not a multiple of the {ggml_type} block size {}",
                dims[0],
                ggml_type.block_size()
            ),
        ));
    }
    let size = ggml_type
        .bytes_for(elements)
        .ok_or_else(|| bad_tensor(&name, "size overflows"))?;
    Ok(TensorInfo {
        name,
        dims,
        ggml_type,
        offset,
        size,
    })
}

fn align_up(x: u64, alignment: u64) -> Option<u64> {
    x.checked_add(alignment - 1)
        .map(|v| v / alignment * alignment)
}

impl Gguf {
    /// Parse a whole GGUF file held in `buf`, checking that every tensor lies inside it.
    pub fn parse(buf: &[u8]) -> Result<Self, GgufError> {
        let mut c = Cursor { buf, pos: 0 };
        if c.take(4, "magic").map_err(|_| GgufError::BadMagic)? != MAGIC {
            return Err(GgufError::BadMagic);
        }
        let version = c.u32("version")?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let n_tensors = c.count("tensor count", MIN_TENSOR_INFO_SIZE)?;
        let n_kv = c.count("metadata count", MIN_KV_SIZE)?;

        let mut metadata = Vec::with_capacity(n_kv);
        let mut by_key = HashMap::with_capacity(n_kv);
        for _ in 0..n_kv {
            let key = c.string("metadata key")?;
            if key.is_empty() {
                return Err(GgufError::BadMetadata {
                    key,
                    problem: "empty key".into(),
                });
            }
            let type_id = c.u32("metadata value type")?;
            let ty = ValueType::from_id(type_id).ok_or_else(|| GgufError::BadMetadata {
                key: key.clone(),
                problem: format!("unknown value type {type_id}"),
            })?;
            let value = read_value(&mut c, ty, 0)?;
            if by_key.insert(key.clone(), metadata.len()).is_some() {
                return Err(GgufError::BadMetadata {
                    key,
                    problem: "appears twice".into(),
                });
            }
            metadata.push((key, value));
        }

        let alignment = match by_key
            .get("general.alignment")
            .and_then(|&i| metadata.get(i))
        {
            None => DEFAULT_ALIGNMENT,
            Some((_, Value::U32(a))) if a.is_power_of_two() => u64::from(*a),
            Some((key, v)) => {
                return Err(GgufError::BadMetadata {
                    key: key.clone(),
                    problem: format!("alignment must be a power-of-two u32, found {v:?}"),
                });
            }
        };

        let mut tensors = Vec::with_capacity(n_tensors);
        let mut by_name = HashMap::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let info = read_tensor_info(&mut c)?;
            if by_name.insert(info.name.clone(), tensors.len()).is_some() {
                return Err(bad_tensor(&info.name, "appears twice"));
            }
            tensors.push(info);
        }

        let data_offset = align_up(c.pos as u64, alignment).ok_or(GgufError::TooLarge {
            what: "header size",
            value: c.pos as u64,
        })?;
        let file_len = buf.len() as u64;
        if !tensors.is_empty() && data_offset > file_len {
            return Err(GgufError::Truncated {
                what: "tensor data",
                offset: c.pos,
                needed: data_offset - c.pos as u64,
                len: buf.len(),
            });
        }
        let data_len = file_len.saturating_sub(data_offset);
        let mut spans: Vec<(u64, u64, usize)> = Vec::with_capacity(tensors.len());
        for (i, t) in tensors.iter().enumerate() {
            if t.offset % alignment != 0 {
                return Err(bad_tensor(
                    &t.name,
                    format!("offset {} is not aligned to {alignment}", t.offset),
                ));
            }
            let end = t
                .offset
                .checked_add(t.size)
                .filter(|&e| e <= data_len)
                .ok_or_else(|| {
                    bad_tensor(
                        &t.name,
                        format!(
                            "data at {}..+{} lies outside the file's {data_len} data bytes",
                            t.offset, t.size
                        ),
                    )
                })?;
            spans.push((t.offset, end, i));
        }
        spans.sort_unstable();
        for pair in spans.windows(2) {
            if pair[1].0 < pair[0].1 {
                return Err(bad_tensor(
                    &tensors[pair[1].2].name,
                    format!("data overlaps tensor `{}`", tensors[pair[0].2].name),
                ));
            }
        }

        Ok(Self {
            version,
            metadata,
            by_key,
            tensors,
            by_name,
            data_offset,
            alignment,
        })
    }

    /// Metadata pairs in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.by_key.get(key).map(|&i| &self.metadata[i].1)
    }

    fn wrong_type(&self, key: &str, expected: &'static str) -> GgufError {
        match self.get(key) {
            None => GgufError::MissingKey(key.to_owned()),
            Some(v) => GgufError::WrongType {
                key: key.to_owned(),
                expected,
                found: v.value_type().name(),
            },
        }
    }

    /// A required non-negative integer.
    pub fn u64(&self, key: &str) -> Result<u64, GgufError> {
        self.get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| self.wrong_type(key, "unsigned integer"))
    }

    /// A required number.
    pub fn f64(&self, key: &str) -> Result<f64, GgufError> {
        self.get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| self.wrong_type(key, "number"))
    }

    /// A required string.
    pub fn str(&self, key: &str) -> Result<&str, GgufError> {
        self.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| self.wrong_type(key, "string"))
    }

    /// A required array.
    pub fn array(&self, key: &str) -> Result<&Array, GgufError> {
        self.get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| self.wrong_type(key, "array"))
    }

    /// An optional value that, when present, must have the right type.
    pub fn opt<'a, T>(
        &'a self,
        key: &str,
        get: impl FnOnce(&'a Self, &str) -> Result<T, GgufError>,
    ) -> Result<Option<T>, GgufError> {
        if self.get(key).is_none() {
            return Ok(None);
        }
        get(self, key).map(Some)
    }

    /// The model architecture (`general.architecture`).
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.str("general.architecture")
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }
}
