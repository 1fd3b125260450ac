use std::fs::File;
use std::ops::Deref;
use std::path::Path;

use crate::error::GgufError;
use crate::parse::{Gguf, TensorInfo};

enum Backing {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

/// A GGUF file held in memory (memory-mapped when opened from disk) with its parsed header.
/// Dereferences to [`Gguf`] for metadata and the tensor index.
pub struct GgufFile {
    backing: Backing,
    header: Gguf,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.header.version)
            .field("tensors", &self.header.tensors().len())
            .finish_non_exhaustive()
    }
}

impl GgufFile {
    /// Memory-map `path` and validate it completely (header, metadata and tensor bounds).
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let io = |source| GgufError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let map = map_read_only(&file).map_err(io)?;
        let header = Gguf::parse(&map)?;
        Ok(Self {
            backing: Backing::Mapped(map),
            header,
        })
    }

    /// Validate and hold a GGUF image already in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GgufError> {
        let header = Gguf::parse(&bytes)?;
        Ok(Self {
            backing: Backing::Owned(bytes),
            header,
        })
    }

    fn bytes(&self) -> &[u8] {
        match &self.backing {
            Backing::Mapped(m) => m,
            Backing::Owned(v) => v,
        }
    }

    /// The raw data of a tensor from the index. Bounds were checked when the file was parsed.
    pub fn tensor_data(&self, info: &TensorInfo) -> Result<&[u8], GgufError> {
        let out_of_file = || GgufError::BadTensor {
            name: info.name.clone(),
            problem: "data lies outside the file".into(),
        };
        let start = self
            .header
            .data_offset
            .checked_add(info.offset)
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(out_of_file)?;
        let len = usize::try_from(info.size).map_err(|_| out_of_file())?;
        start
            .checked_add(len)
            .and_then(|end| self.bytes().get(start..end))
            .ok_or_else(out_of_file)
    }

    /// A tensor by name with its data.
    pub fn tensor_by_name(&self, name: &str) -> Result<(&TensorInfo, &[u8]), GgufError> {
        let info = self
            .header
            .tensor(name)
            .ok_or_else(|| GgufError::MissingTensor(name.to_owned()))?;
        Ok((info, self.tensor_data(info)?))
    }

    /// Size of the whole file in bytes.
    pub fn file_size(&self) -> u64 {
        self.bytes().len() as u64
    }
}

impl Deref for GgufFile {
    type Target = Gguf;
    fn deref(&self) -> &Gguf {
        &self.header
    }
}

#[expect(
    unsafe_code,
    reason = "memory-mapping a file is the one unsafe call of this crate"
)]
fn map_read_only(file: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the map is read-only and Hearth never writes model files in place: the catalog
    // writes a new file and renames it over the old, so mapped pages never change under us.
    // A file changed by another program while mapped could show inconsistent bytes, which the
    // parser and kernels treat like any other hostile input (bounds are checked, never trusted).
    unsafe { memmap2::Mmap::map(file) }
}
