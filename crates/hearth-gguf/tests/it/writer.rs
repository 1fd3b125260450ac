//! A test GGUF writer: the format's layout written out independently of the parser, recording
//! where every count, length, type and offset field lies so tests can corrupt them.

use hearth_gguf::{Array, GgmlType, Value};

/// The width of a count or length field the writer wrote, to inflate it later.
#[derive(Debug, Clone, Copy)]
pub enum Field {
    U32(usize),
    U64(usize),
}

/// A whole GGUF file described as data.
#[derive(Debug, Clone)]
pub struct Spec {
    pub version: u32,
    pub alignment: Option<u32>,
    pub metadata: Vec<(String, Value)>,
    /// name, dims, type, and a byte to fill the data with
    pub tensors: Vec<(String, Vec<u64>, GgmlType, u8)>,
    /// Offsets to write instead of the packed, aligned ones.
    pub offsets: Option<Vec<u64>>,
}

/// A test GGUF writer (the format's layout, independent of the parser) that also records where
/// every count, length, type and offset field lies.
#[derive(Default)]
struct Writer {
    out: Vec<u8>,
    fields: Vec<Field>,
}

impl Writer {
    fn u32(&mut self, v: u32) {
        self.out.extend(v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.out.extend(v.to_le_bytes());
    }
    fn field32(&mut self, v: u32) {
        self.fields.push(Field::U32(self.out.len()));
        self.u32(v);
    }
    fn field64(&mut self, v: u64) {
        self.fields.push(Field::U64(self.out.len()));
        self.u64(v);
    }
    fn string(&mut self, s: &str) {
        self.field64(s.len() as u64);
        self.out.extend(s.as_bytes());
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::U8(x) => self.out.push(*x),
            Value::I8(x) => self.out.extend(x.to_le_bytes()),
            Value::U16(x) => self.out.extend(x.to_le_bytes()),
            Value::I16(x) => self.out.extend(x.to_le_bytes()),
            Value::U32(x) => self.u32(*x),
            Value::I32(x) => self.out.extend(x.to_le_bytes()),
            Value::U64(x) => self.u64(*x),
            Value::I64(x) => self.out.extend(x.to_le_bytes()),
            Value::F32(x) => self.out.extend(x.to_le_bytes()),
            Value::F64(x) => self.out.extend(x.to_le_bytes()),
            Value::Bool(x) => self.out.push(u8::from(*x)),
            Value::String(s) => self.string(s),
            Value::Array(a) => self.array(a),
        }
    }

    /// An array's element type, length and elements.
    fn array(&mut self, a: &Array) {
        macro_rules! each {
            ($id:expr, $v:expr, $put:expr) => {{
                self.field32($id);
                self.field64($v.len() as u64);
                for x in $v {
                    $put(&mut *self, x);
                }
            }};
        }
        match a {
            Array::U8(v) => each!(0, v, |w: &mut Self, x: &u8| w.out.push(*x)),
            Array::I8(v) => each!(1, v, |w: &mut Self, x: &i8| w.out.extend(x.to_le_bytes())),
            Array::U16(v) => each!(2, v, |w: &mut Self, x: &u16| w.out.extend(x.to_le_bytes())),
            Array::I16(v) => each!(3, v, |w: &mut Self, x: &i16| w.out.extend(x.to_le_bytes())),
            Array::U32(v) => each!(4, v, |w: &mut Self, x: &u32| w.u32(*x)),
            Array::I32(v) => each!(5, v, |w: &mut Self, x: &i32| w.out.extend(x.to_le_bytes())),
            Array::F32(v) => each!(6, v, |w: &mut Self, x: &f32| w.out.extend(x.to_le_bytes())),
            Array::Bool(v) => each!(7, v, |w: &mut Self, x: &bool| w.out.push(u8::from(*x))),
            Array::String(v) => each!(8, v, |w: &mut Self, x: &String| w.string(x)),
            Array::Array(v) => each!(9, v, |w: &mut Self, x: &Array| w.array(x)),
            Array::U64(v) => each!(10, v, |w: &mut Self, x: &u64| w.u64(*x)),
            Array::I64(v) => each!(11, v, |w: &mut Self, x: &i64| w.out.extend(x.to_le_bytes())),
            Array::F64(v) => each!(12, v, |w: &mut Self, x: &f64| w.out.extend(x.to_le_bytes())),
        }
    }

    fn pad_to(&mut self, alignment: u64) {
        while !(self.out.len() as u64).is_multiple_of(alignment) {
            self.out.push(0);
        }
    }
}

fn value_type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

/// Bytes of tensor data for `dims` of type `ty`; none when that overflows (an invalid file).
pub fn data_size(dims: &[u64], ty: GgmlType) -> u64 {
    dims.iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .and_then(|n| ty.bytes_for(n))
        .unwrap_or(0)
}

impl Spec {
    pub fn alignment(&self) -> u64 {
        self.alignment.map_or(32, u64::from)
    }

    /// The metadata as the file holds it: the alignment key first when there is one.
    pub fn full_metadata(&self) -> Vec<(String, Value)> {
        let mut kv = Vec::new();
        if let Some(a) = self.alignment {
            kv.push(("general.alignment".to_owned(), Value::U32(a)));
        }
        kv.extend(self.metadata.iter().cloned());
        kv
    }

    /// The file and the positions of its count, length, type and offset fields. Tensors are laid
    /// out in order, each at an aligned offset; the file ends with the last tensor's data.
    pub fn write(&self) -> (Vec<u8>, Vec<Field>) {
        let mut w = Writer::default();
        w.out.extend(b"GGUF");
        w.u32(self.version);
        w.field64(self.tensors.len() as u64);
        let kv = self.full_metadata();
        w.field64(kv.len() as u64);
        for (key, value) in &kv {
            w.string(key);
            w.field32(value_type_id(value));
            w.value(value);
        }
        // An invalid alignment of 0 is written as is; the layout then packs bytes.
        let alignment = self.alignment().max(1);
        let mut offset = 0u64;
        for (i, (name, dims, ty, _)) in self.tensors.iter().enumerate() {
            w.string(name);
            w.field32(dims.len() as u32);
            for &d in dims {
                w.field64(d);
            }
            w.field32(ty.id());
            w.field64(self.offsets.as_ref().map_or(offset, |o| o[i]));
            offset = (offset + data_size(dims, *ty)).next_multiple_of(alignment);
        }
        if !self.tensors.is_empty() {
            w.pad_to(alignment);
        }
        let data_start = w.out.len();
        for (i, (_, dims, ty, fill)) in self.tensors.iter().enumerate() {
            if i > 0 {
                w.pad_to(alignment);
            }
            let size = data_size(dims, *ty) as usize;
            let start = w.out.len() - data_start;
            w.out
                .extend((0..size).map(|j| fill.wrapping_add((j + start) as u8)));
        }
        (w.out, w.fields)
    }
}
