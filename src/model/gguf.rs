//! A memory-mapped GGUF reader (the file format of llama.cpp, versions 2 and 3, checked as
//! ggml's `gguf.cpp` checks it): every length, count and offset read from the file is
//! bounds-checked before use, counts are bounded by the bytes left before anything is
//! allocated for them, dimension products and sizes are overflow-checked, tensor offsets
//! must be aligned and their data inside the file, and duplicate keys or tensor names are
//! refused. A truncated or corrupt file is an `Error::Model` naming the file, the key or
//! tensor, and the byte offset; never a crash or an out-of-bounds read
//! (`tests/gguf_fuzz.rs` mutates files to hold this). Tensor data stays in the mapping
//! and is borrowed as byte slices.
//!
//! Public operations: [`GgufFile::open`], [`GgufFile::from_bytes`], then metadata
//! (`get`, `req_u64`, `req_str`, `str_array`) and tensors (`tensor`, `tensor_bytes`,
//! `mapping`).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{Mmap, MmapMut};

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

    /// Parses a GGUF image held in memory (copied into an anonymous mapping, so weights
    /// borrow it as they borrow a file's); `name` stands in for the path in errors.
    pub fn from_bytes(name: &Path, bytes: &[u8]) -> Result<Self> {
        let io = |e| Error::Io {
            path: name.to_owned(),
            source: e,
        };
        let mut map = MmapMut::map_anon(bytes.len()).map_err(io)?;
        map.copy_from_slice(bytes);
        let map = map.make_read_only().map_err(io)?;
        Self::parse(name, Arc::new(map))
    }

    fn parse(path: &Path, map: Arc<Mmap>) -> Result<Self> {
        let mut r = Reader {
            buf: &map[..],
            pos: 0,
            path,
            what: "header".to_owned(),
        };
        let magic = r.bytes(4)?;
        if magic != b"GGUF" {
            return Err(Error::model(path, "not a GGUF file (bad magic at byte 0)"));
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            let hint = if (2..=3).contains(&version.swap_bytes()) {
                " (a big-endian file; only little-endian GGUF is supported)"
            } else {
                ""
            };
            return Err(Error::model(
                path,
                format!("unsupported GGUF version {version} at byte 4 (2 and 3 are){hint}"),
            ));
        }
        let n_tensors = r.u64()?;
        let n_kv = r.u64()?;
        // A key/value takes at least 13 bytes (key length, type, one byte of value) and a
        // tensor info 32 (name length, n_dims, one dim, type, offset): refuse counts the
        // file cannot hold before looping over them.
        let left = r.remaining() as u64;
        for (count, min, what) in [(n_kv, 13, "metadata keys"), (n_tensors, 32, "tensors")] {
            if count > left / min {
                return Err(Error::model(
                    path,
                    format!(
                        "header claims {count} {what}, more than the {left} bytes after byte {} can hold",
                        r.pos
                    ),
                ));
            }
        }
        let mut metadata = HashMap::new();
        for i in 0..n_kv {
            r.what = format!("metadata key #{i}");
            let key = r.string()?;
            r.what = format!("metadata key `{key}`");
            let ty = r.u32()?;
            let value = r.value(ty, false)?;
            if metadata.insert(key, value).is_some() {
                return Err(r.error("duplicate key"));
            }
        }
        let mut infos = Vec::new();
        for i in 0..n_tensors {
            r.what = format!("tensor info #{i}");
            let name = r.string()?;
            r.what = format!("tensor `{name}`");
            let n_dims = r.u32()?;
            if n_dims == 0 || n_dims > 4 {
                return Err(r.error(format!("{n_dims} dimensions (1..=4 allowed)")));
            }
            let dims = (0..n_dims).map(|_| r.u64()).collect::<Result<Vec<_>>>()?;
            if let Some(d) = dims.iter().find(|&&d| d > i64::MAX as u64) {
                return Err(r.error(format!("dimension {d} does not fit ggml's int64")));
            }
            let raw_ty = r.u32()?;
            let ty = GgmlType::from_u32(raw_ty)
                .ok_or_else(|| r.error(format!("unsupported tensor type {raw_ty}")))?;
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
                        format!(
                        "metadata key `general.alignment`: {v:?} is not a power of two up to 2^20"
                    ),
                    ))
                }
            },
        };
        let data_start = r.pos.div_ceil(alignment) * alignment;
        let mut tensors = HashMap::new();
        for (name, dims, ty, offset) in infos {
            let bad = |m: String| Error::model(path, format!("tensor `{name}`: {m}"));
            if offset % alignment as u64 != 0 {
                return Err(bad(format!(
                    "data offset {offset} is not a multiple of the alignment {alignment}"
                )));
            }
            let n: u64 = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n <= i64::MAX as u64)
                .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
            if dims[0] % ty.block_size() as u64 != 0 {
                return Err(bad(format!(
                    "row length {} is not a multiple of the {:?} block size",
                    dims[0], ty
                )));
            }
            let len = (n / ty.block_size() as u64)
                .checked_mul(ty.block_bytes() as u64)
                .ok_or_else(|| bad(format!("size of {dims:?} {ty:?} overflows")))?;
            let start = (data_start as u64).checked_add(offset);
            let end = start.and_then(|s| s.checked_add(len));
            let (start, len) = match (start, end) {
                (Some(s), Some(e)) if e <= map.len() as u64 => (s as usize, len as usize),
                _ => {
                    return Err(bad(format!(
                        "data at bytes {data_start}+{offset}, {len} long, lies past the end of the \
                         file ({} bytes; truncated file?)",
                        map.len()
                    )))
                }
            };
            if tensors.contains_key(&name) {
                return Err(bad("duplicate tensor name".to_owned()));
            }
            let info = TensorInfo {
                name: name.clone(),
                dims,
                ty,
                start,
                len,
            };
            tensors.insert(name, info);
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

/// Bounds-checked little-endian reads; `what` names the key or tensor being read, so
/// every error says where the file went wrong.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
    what: String,
}

/// The fewest bytes one array element of value type `ty` takes, or `None` for unknown
/// types. (Nested arrays, 12 bytes at least, are refused when the first one is read.)
fn min_value_size(ty: u32) -> Option<usize> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => return None,
    })
}

impl<'a> Reader<'a> {
    fn error(&self, message: impl std::fmt::Display) -> Error {
        Error::model(
            self.path,
            format!("{}: {message} (at byte {})", self.what, self.pos),
        )
    }

    fn truncated(&self) -> Error {
        Error::model(
            self.path,
            format!(
                "{}: truncated at byte {} (the file has {} bytes)",
                self.what,
                self.pos,
                self.buf.len()
            ),
        )
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
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
        if len > self.remaining() as u64 {
            return Err(self.error(format!(
                "string length {len} exceeds the {} bytes left",
                self.remaining()
            )));
        }
        let b = self.bytes(len as usize)?;
        // Some converters wrote vocabularies with invalid UTF-8; keep them readable.
        Ok(String::from_utf8_lossy(b).into_owned())
    }

    fn value(&mut self, ty: u32, in_array: bool) -> Result<MetaValue> {
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
            9 if in_array => return Err(self.error("nested arrays are not supported")),
            9 => {
                let elem_ty = self.u32()?;
                let n = self.u64()?;
                let min = min_value_size(elem_ty).ok_or_else(|| {
                    self.error(format!("array of unsupported value type {elem_ty}"))
                })?;
                // Refuse counts the bytes left cannot hold before allocating for them, and
                // grow the vector as elements actually parse.
                if n > (self.remaining() / min) as u64 {
                    return Err(self.error(format!(
                        "array of {n} elements of type {elem_ty} does not fit in the {} bytes left",
                        self.remaining()
                    )));
                }
                let mut items = Vec::with_capacity((n as usize).min(4096));
                for _ in 0..n {
                    items.push(self.value(elem_ty, true)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::UInt(self.u64()?),
            11 => MetaValue::Int(i64::from_le_bytes(self.array()?)),
            12 => MetaValue::Float(f64::from_le_bytes(self.array()?)),
            other => return Err(self.error(format!("unknown metadata value type {other}"))),
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
        GgufFile::from_bytes(Path::new("test.gguf"), bytes)
    }

    #[test]
    fn reads_a_valid_file() {
        let f = parse(&tiny_file()).unwrap();
        assert_eq!(f.req_str("general.architecture").unwrap(), "llama");
        let t = f.tensor("w").unwrap();
        assert_eq!(t.len, 32);
        assert_eq!(&f.tensor_bytes(t)[4..8], &1f32.to_le_bytes());
        let path = std::env::temp_dir().join(format!("rill-gguf-test-{}", std::process::id()));
        std::fs::write(&path, tiny_file()).unwrap();
        let f = GgufFile::open(&path);
        std::fs::remove_file(&path).ok();
        assert_eq!(f.unwrap().tensor("w").unwrap().len, 32);
    }

    fn err(bytes: &[u8]) -> String {
        match parse(bytes) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    /// Offsets in `tiny_file`: the key/value starts at 24, the tensor info at 69.
    const KV_TYPE: usize = 24 + 8 + 20;
    const TENSOR: usize = 69;

    #[test]
    fn corrupt_fields_are_named() {
        let mut b = tiny_file();
        b[KV_TYPE..KV_TYPE + 4].copy_from_slice(&99u32.to_le_bytes());
        let e = err(&b);
        assert!(
            e.contains("`general.architecture`") && e.contains("type 99"),
            "{e}"
        );
        let mut b = tiny_file();
        b[KV_TYPE + 4..KV_TYPE + 12].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = err(&b);
        assert!(e.contains("string length") && e.contains("at byte"), "{e}");
        let mut b = tiny_file();
        b[TENSOR + 9..TENSOR + 13].copy_from_slice(&5u32.to_le_bytes()); // n_dims
        assert!(err(&b).contains("tensor `w`: 5 dimensions"));
        let mut b = tiny_file();
        b[TENSOR + 25..TENSOR + 33].copy_from_slice(&4u64.to_le_bytes()); // offset
        assert!(err(&b).contains("not a multiple of the alignment 32"));
        let mut b = tiny_file();
        b[TENSOR + 25..TENSOR + 33].copy_from_slice(&64u64.to_le_bytes());
        assert!(err(&b).contains("tensor `w`: data at bytes"));
        let mut b = tiny_file();
        b[TENSOR + 13..TENSOR + 21].copy_from_slice(&(1u64 << 62).to_le_bytes()); // dim
        assert!(err(&b).contains("tensor `w`"));
    }

    #[test]
    fn arrays_duplicates_and_counts_are_checked() {
        // Rewrite the value as an array header: type 9, then element type and count.
        let arr = |elem: u32, n: u64| {
            let mut b = tiny_file()[..KV_TYPE].to_vec();
            b.extend_from_slice(&9u32.to_le_bytes());
            b.extend_from_slice(&elem.to_le_bytes());
            b.extend_from_slice(&n.to_le_bytes());
            b.extend_from_slice(&[0; 64]);
            b
        };
        assert!(err(&arr(9, 1)).contains("nested arrays"));
        assert!(err(&arr(10, 1 << 40)).contains("does not fit"));
        assert!(err(&arr(42, 1)).contains("unsupported value type 42"));
        // The key/value twice, and the file realigned: a duplicate key.
        let t = tiny_file();
        let mut b = t[..TENSOR].to_vec();
        b[16..24].copy_from_slice(&2u64.to_le_bytes());
        b.extend_from_slice(&t[24..TENSOR]);
        b.extend_from_slice(&t[TENSOR..TENSOR + 33]);
        b.resize(b.len().div_ceil(32) * 32, 0);
        b.extend_from_slice(&t[t.len() - 32..]);
        assert!(err(&b).contains("metadata key `general.architecture`: duplicate key"));
        let mut b = tiny_file();
        b[16..24].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        assert!(err(&b).contains("metadata keys, more than"));
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
                err.contains("tensor `w`") && err.contains("block size"),
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
