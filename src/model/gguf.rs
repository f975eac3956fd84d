//! A memory-mapped GGUF reader (the file format of llama.cpp, versions 2 and 3): header,
//! metadata key/values and tensor infos are parsed with checked reads, so a truncated or
//! corrupt file is an `Error::Model` naming the file and the problem, never a crash or an
//! out-of-bounds read. Tensor data stays in the mapping and is borrowed as byte slices.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::model::ggml::GgmlType;

/// One metadata value.
#[derive(Debug, Clone)]
pub enum MetaValue {
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::UInt(v) => Some(v),
            MetaValue::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::Float(v) => Some(v),
            MetaValue::UInt(v) => Some(v as f64),
            MetaValue::Int(v) => Some(v as f64),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where one tensor lives in the file.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the contiguous (row) length.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Absolute byte range in the file.
    pub start: usize,
    pub len: usize,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// An open GGUF file.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: HashMap<String, MetaValue>,
    pub tensors: HashMap<String, TensorInfo>,
    map: Arc<Mmap>,
}

impl GgufFile {
    /// Maps and parses `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::Io {
            path: path.to_owned(),
            source: e,
        })?;
        // SAFETY: the mapping is read-only and rill never writes the file; a host that
        // truncates a model file while an engine uses it is outside the contract (the
        // same as for llama.cpp and every mmap-based loader).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::Io {
            path: path.to_owned(),
            source: e,
        })?;
        Self::parse(path, Arc::new(map))
    }

    fn parse(path: &Path, map: Arc<Mmap>) -> Result<Self> {
        let mut r = Reader {
            buf: &map[..],
            pos: 0,
            path,
        };
        let magic = r.bytes(4)?;
        if magic != b"GGUF" {
            return Err(Error::model(path, "not a GGUF file (bad magic)"));
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(Error::model(
                path,
                format!("unsupported GGUF version {version} (2 and 3 are)"),
            ));
        }
        let n_tensors = r.u64()?;
        let n_kv = r.u64()?;
        let mut metadata = HashMap::new();
        for _ in 0..n_kv {
            let key = r.string()?;
            let ty = r.u32()?;
            let value = r.value(ty, 0)?;
            metadata.insert(key, value);
        }
        let mut infos = Vec::new();
        for _ in 0..n_tensors {
            let name = r.string()?;
            let n_dims = r.u32()?;
            if n_dims == 0 || n_dims > 4 {
                return Err(Error::model(
                    path,
                    format!("tensor {name}: {n_dims} dimensions (1..=4 allowed)"),
                ));
            }
            let dims = (0..n_dims).map(|_| r.u64()).collect::<Result<Vec<_>>>()?;
            let raw_ty = r.u32()?;
            let ty = GgmlType::from_u32(raw_ty).ok_or_else(|| {
                Error::model(
                    path,
                    format!("tensor {name}: unsupported tensor type {raw_ty}"),
                )
            })?;
            let offset = r.u64()?;
            infos.push((name, dims, ty, offset));
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => match v.as_u64() {
                Some(a) if a.is_power_of_two() && a <= 1 << 20 => a as usize,
                _ => {
                    return Err(Error::model(
                        path,
                        "general.alignment is not a power of two",
                    ))
                }
            },
        };
        let data_start = r.pos.div_ceil(alignment) * alignment;
        let mut tensors = HashMap::new();
        for (name, dims, ty, offset) in infos {
            let n: u64 = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| Error::model(path, format!("tensor {name}: dimensions overflow")))?;
            if dims[0] % ty.block_size() as u64 != 0 {
                return Err(Error::model(
                    path,
                    format!(
                        "tensor {name}: row length {} is not a multiple of the {:?} block size",
                        dims[0], ty
                    ),
                ));
            }
            let len = (n / ty.block_size() as u64)
                .checked_mul(ty.block_bytes() as u64)
                .ok_or_else(|| Error::model(path, format!("tensor {name}: size overflows")))?;
            let start = (data_start as u64).checked_add(offset);
            let end = start.and_then(|s| s.checked_add(len));
            match (start, end) {
                (Some(s), Some(e)) if e <= map.len() as u64 => {
                    let info = TensorInfo {
                        name: name.clone(),
                        dims,
                        ty,
                        start: s as usize,
                        len: len as usize,
                    };
                    tensors.insert(name, info);
                }
                _ => {
                    return Err(Error::model(
                        path,
                        format!(
                            "tensor {name}: data lies past the end of the file (truncated file?)"
                        ),
                    ))
                }
            }
        }
        Ok(GgufFile {
            path: path.to_owned(),
            version,
            metadata,
            tensors,
            map,
        })
    }

    /// The raw bytes of a tensor.
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        &self.map[info.start..info.start + info.len]
    }

    /// The shared mapping, so weights can borrow it for the engine's lifetime.
    pub fn mapping(&self) -> Arc<Mmap> {
        Arc::clone(&self.map)
    }

    /// A tensor by name, or an error naming it.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::model(&self.path, format!("missing tensor {name}")))
    }

    /// A metadata value by key, or `None`.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    /// A required unsigned metadata value.
    pub fn req_u64(&self, key: &str) -> Result<u64> {
        self.get(key).and_then(MetaValue::as_u64).ok_or_else(|| {
            Error::model(&self.path, format!("missing or non-integer metadata {key}"))
        })
    }

    /// A required string metadata value.
    pub fn req_str(&self, key: &str) -> Result<&str> {
        self.get(key).and_then(MetaValue::as_str).ok_or_else(|| {
            Error::model(&self.path, format!("missing or non-string metadata {key}"))
        })
    }

    /// A string-array metadata value.
    pub fn str_array(&self, key: &str) -> Result<Vec<&str>> {
        let arr = self.get(key).and_then(MetaValue::as_array).ok_or_else(|| {
            Error::model(&self.path, format!("missing or non-array metadata {key}"))
        })?;
        arr.iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| Error::model(&self.path, format!("{key}: non-string element")))
            })
            .collect()
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn truncated(&self) -> Error {
        Error::model(
            self.path,
            format!("truncated GGUF header at byte {}", self.pos),
        )
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.truncated())?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let b = self.bytes(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String> {
        let len = self.u64()?;
        let len = usize::try_from(len).map_err(|_| self.truncated())?;
        let b = self.bytes(len)?;
        // Some converters wrote vocabularies with invalid UTF-8; keep them readable.
        Ok(String::from_utf8_lossy(b).into_owned())
    }

    fn value(&mut self, ty: u32, depth: u32) -> Result<MetaValue> {
        Ok(match ty {
            0 => MetaValue::UInt(self.array::<1>()?[0] as u64),
            1 => MetaValue::Int(self.array::<1>()?[0] as i8 as i64),
            2 => MetaValue::UInt(u16::from_le_bytes(self.array()?) as u64),
            3 => MetaValue::Int(i16::from_le_bytes(self.array()?) as i64),
            4 => MetaValue::UInt(self.u32()? as u64),
            5 => MetaValue::Int(i32::from_le_bytes(self.array()?) as i64),
            6 => MetaValue::Float(f32::from_le_bytes(self.array()?) as f64),
            7 => MetaValue::Bool(self.array::<1>()?[0] != 0),
            8 => MetaValue::Str(self.string()?),
            9 if depth == 0 => {
                let elem_ty = self.u32()?;
                let n = self.u64()?;
                // Every element takes at least one byte: refuse counts the file cannot hold
                // before allocating for them.
                if n > (self.buf.len() - self.pos) as u64 {
                    return Err(self.truncated());
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem_ty, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::UInt(self.u64()?),
            11 => MetaValue::Int(i64::from_le_bytes(self.array()?)),
            12 => MetaValue::Float(f64::from_le_bytes(self.array()?)),
            other => {
                return Err(Error::model(
                    self.path,
                    format!("unknown metadata value type {other} at byte {}", self.pos),
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    /// A minimal valid file: one F32 tensor of 8 elements.
    fn tiny_file() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        write_string(&mut b, "general.architecture");
        b.extend_from_slice(&8u32.to_le_bytes());
        write_string(&mut b, "llama");
        write_string(&mut b, "w");
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&8u64.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        while b.len() % 32 != 0 {
            b.push(0);
        }
        for i in 0..8 {
            b.extend_from_slice(&(i as f32).to_le_bytes());
        }
        b
    }

    fn parse(bytes: &[u8]) -> Result<GgufFile> {
        let dir = std::env::temp_dir().join(format!(
            "rill-gguf-test-{}-{}",
            std::process::id(),
            bytes.len()
        ));
        std::fs::write(&dir, bytes).unwrap();
        let r = GgufFile::open(&dir);
        std::fs::remove_file(&dir).ok();
        r
    }

    #[test]
    fn reads_a_valid_file() {
        let f = parse(&tiny_file()).unwrap();
        assert_eq!(f.req_str("general.architecture").unwrap(), "llama");
        let t = f.tensor("w").unwrap();
        assert_eq!(t.len, 32);
        assert_eq!(&f.tensor_bytes(t)[4..8], &1f32.to_le_bytes());
    }

    #[test]
    fn every_truncation_is_a_clean_error() {
        let full = tiny_file();
        for cut in 0..full.len() {
            let err = parse(&full[..cut])
                .err()
                .unwrap_or_else(|| panic!("cut at {cut} accepted"));
            assert!(err.to_string().contains("model"), "{err}");
        }
    }

    #[test]
    fn rows_that_are_not_whole_blocks_are_refused_naming_the_tensor() {
        // The tensor type id of `tiny_file` (after header, one key/value, name, dims).
        const TYPE_AT: usize = 24 + (8 + 20) + 4 + (8 + 5) + (8 + 1) + 4 + 8;
        let mut b = tiny_file();
        assert_eq!(b[TYPE_AT..TYPE_AT + 4], 0u32.to_le_bytes());
        // Q4_K (256-element blocks) and Q4_0 (32) with 8-element rows.
        for ty in [12u32, 2] {
            b[TYPE_AT..TYPE_AT + 4].copy_from_slice(&ty.to_le_bytes());
            let err = parse(&b).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                err.contains("tensor w") && err.contains("block size"),
                "type {ty}: {err}"
            );
        }
    }

    #[test]
    fn absurd_counts_are_refused() {
        let mut b = tiny_file();
        b[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // tensor count
        assert!(parse(&b).is_err());
        let mut b = tiny_file();
        b[4] = 9; // version
        assert!(parse(&b)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("version 9"));
    }
}
