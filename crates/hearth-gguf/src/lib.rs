//! GGUF reading, treating every file as hostile input.
//!
//! [`Gguf::parse`] reads the header, the metadata key/value pairs and the tensor index from a byte
//! slice. Every length, count, offset and alignment is checked with overflow-safe arithmetic against
//! the size of the input, so no input makes it panic or allocate more than the input's own size.
//! [`GgufFile::open`] memory-maps a file and parses it; tensor data is then borrowed from the map.
//!
//! [`quants`] dequantizes the ggml block formats to `f32`.

mod error;
mod file;
mod parse;
pub mod quants;
mod types;

pub use error::GgufError;
pub use file::GgufFile;
pub use parse::{Gguf, TensorInfo};
pub use types::{Array, GgmlType, Value, ValueType};

#[cfg(test)]
mod tests;
