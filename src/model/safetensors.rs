//! A memory-mapped safetensors reader (the format of Hugging Face checkpoints,
//! <https://github.com/huggingface/safetensors>): an 8-byte little-endian header length, a
//! JSON header `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}}`,
//! then the data, offsets relative to its start. Every entry is checked against the file
//! before use (offsets inside the data, byte count = elements x dtype size, no overflow),
//! so a header that lies is an `Error::Model` naming the tensor and the file, never an
//! out-of-bounds read. Tensor data stays in the mapping. Written here rather than taken
//! from the `safetensors` crate: the parse is ~100 lines over serde_json (already a
//! dependency), and owning it gives checked errors that name file and tensor.
//! Public operations: [`SafetensorsFile::open`], [`SafetensorsFile::tensor`], [`Dtype`].

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::ggml::GgmlType;

/// Largest JSON header accepted (the reference implementation's limit is 100 MB).
const MAX_HEADER: u64 = 100 << 20;

/// A safetensors element type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
    /// Any other dtype the format knows (name, bytes per element); refused at use.
    Other(String, usize),
}

impl Dtype {
    fn parse(s: &str) -> Option<Dtype> {
        Some(match s {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "F64" | "I64" | "U64" => Dtype::Other(s.into(), 8),
            "I32" | "U32" => Dtype::Other(s.into(), 4),
            "I16" | "U16" => Dtype::Other(s.into(), 2),
            "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => Dtype::Other(s.into(), 1),
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(&self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::Other(_, n) => *n,
        }
    }

    /// The ggml type with the same element layout, if rill computes with this dtype.
    pub fn ggml(&self) -> Option<GgmlType> {
        match self {
            Dtype::F32 => Some(GgmlType::F32),
            Dtype::F16 => Some(GgmlType::F16),
            Dtype::BF16 => Some(GgmlType::BF16),
            Dtype::Other(..) => None,
        }
    }
}

/// One tensor's entry, checked against the file.
#[derive(Debug, Clone)]
pub struct StTensor {
    pub dtype: Dtype,
    /// Outermost dimension first (PyTorch order): a linear layer is `[out, in]`.
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    pub start: usize,
    pub len: usize,
}

/// An open safetensors file.
pub struct SafetensorsFile {
    pub path: PathBuf,
    pub tensors: HashMap<String, StTensor>,
    map: Arc<Mmap>,
}

impl SafetensorsFile {
    /// Maps and parses `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |e| Error::Io {
            path: path.to_owned(),
            source: e,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the mapping is read-only and rill never writes the file; a host that
        // truncates a model file while an engine uses it is outside the contract (as for
        // GGUF files and every mmap-based loader).
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let tensors = parse(path, &map)?;
        Ok(SafetensorsFile {
            path: path.to_owned(),
            tensors,
            map: Arc::new(map),
        })
    }

    /// The mapping, shared with the weights that borrow from it.
    pub fn mapping(&self) -> Arc<Mmap> {
        Arc::clone(&self.map)
    }

    /// The entry of tensor `name`, if the file has it.
    pub fn tensor(&self, name: &str) -> Option<&StTensor> {
        self.tensors.get(name)
    }

    /// The bytes of a checked entry.
    pub fn bytes(&self, t: &StTensor) -> &[u8] {
        &self.map[t.start..t.start + t.len]
    }
}

/// Parses and checks the header of a safetensors file held in `buf`.
pub fn parse(path: &Path, buf: &[u8]) -> Result<HashMap<String, StTensor>> {
    let err = |m: String| Error::model(path, m);
    if buf.len() < 8 {
        return Err(err(
            "not a safetensors file (shorter than its 8-byte header length)".into(),
        ));
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&buf[..8]);
    let header_len = u64::from_le_bytes(n);
    if header_len > MAX_HEADER || header_len > (buf.len() - 8) as u64 {
        return Err(err(format!(
            "safetensors header length {header_len} exceeds the file ({} bytes) or the 100 MB limit",
            buf.len()
        )));
    }
    let data_start = 8 + header_len as usize;
    let header: Value = serde_json::from_slice(&buf[8..data_start])
        .map_err(|e| err(format!("safetensors header is not valid JSON: {e}")))?;
    let Value::Object(entries) = header else {
        return Err(err("safetensors header is not a JSON object".into()));
    };
    let data_len = (buf.len() - data_start) as u64;
    let mut tensors = HashMap::new();
    for (name, entry) in entries {
        if name == "__metadata__" {
            continue;
        }
        let terr = |m: &str| err(format!("tensor {name}: {m}"));
        let dtype = match entry.get("dtype").and_then(Value::as_str) {
            Some(s) => Dtype::parse(s).ok_or_else(|| terr(&format!("unknown dtype {s:?}")))?,
            None => return Err(terr("\"dtype\" is missing or not a string")),
        };
        let shape = match entry.get("shape").and_then(Value::as_array) {
            Some(a) => a
                .iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| terr("\"shape\" holds a value that is not a size"))?,
            None => return Err(terr("\"shape\" is missing or not an array")),
        };
        let offsets = entry
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|a| match a[..] {
                [ref b, ref e] => Some((b.as_u64()?, e.as_u64()?)),
                _ => None,
            })
            .ok_or_else(|| terr("\"data_offsets\" is not [begin, end]"))?;
        let (begin, end) = offsets;
        if begin > end || end > data_len {
            return Err(terr(&format!(
                "data_offsets [{begin}, {end}] lie outside the {data_len} data bytes"
            )));
        }
        let want = shape
            .iter()
            .try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64))
            .ok_or_else(|| terr("shape overflows"))?;
        if want != end - begin {
            return Err(terr(&format!(
                "{} bytes for {dtype:?} {shape:?}, which needs {want}",
                end - begin
            )));
        }
        let info = StTensor {
            dtype,
            shape,
            start: data_start + begin as usize,
            len: (end - begin) as usize,
        };
        tensors.insert(name, info);
    }
    Ok(tensors)
}

/// Writes a safetensors file image (tests and tools): `(name, dtype, shape, bytes)`.
pub fn serialize(tensors: &[(&str, &str, &[usize], &[u8])]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut off = 0usize;
    for (name, dtype, shape, bytes) in tensors {
        let entry = serde_json::json!({
            "dtype": dtype, "shape": shape, "data_offsets": [off, off + bytes.len()],
        });
        header.insert((*name).to_owned(), entry);
        off += bytes.len();
    }
    let mut h = Value::Object(header).to_string().into_bytes();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    for (_, _, _, bytes) in tensors {
        out.extend_from_slice(bytes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(buf: &[u8]) -> String {
        match parse(Path::new("/x/model.safetensors"), buf) {
            Ok(_) => panic!("parse accepted a bad file"),
            Err(e) => e.to_string(),
        }
    }

    fn with_header(h: &str, data: usize) -> Vec<u8> {
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(h.as_bytes());
        out.extend(std::iter::repeat_n(0u8, data));
        out
    }

    #[test]
    fn parses_what_serialize_writes() {
        let a: Vec<u8> = [1f32, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let buf = serialize(&[
            ("w", "F32", &[2, 3], &a),
            ("b", "BF16", &[2], &[0, 0x3f, 0, 0x40]),
        ]);
        let t = parse(Path::new("m"), &buf).unwrap();
        let w = &t["w"];
        assert_eq!(
            (w.dtype.clone(), w.shape.clone(), w.len),
            (Dtype::F32, vec![2, 3], 24)
        );
        assert_eq!(&buf[w.start..w.start + 4], &1f32.to_le_bytes());
        assert_eq!(t["b"].dtype, Dtype::BF16);
        assert_eq!(t["b"].start, w.start + 24);
    }

    #[test]
    fn refuses_headers_that_lie() {
        assert!(err_of(&[1, 2, 3]).contains("8-byte"));
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        assert!(err_of(&huge).contains("header length"));
        assert!(err_of(&with_header("{not json", 0)).contains("not valid JSON"));
        assert!(err_of(&with_header("[1]", 0)).contains("not a JSON object"));
        let e = err_of(&with_header(
            r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            8,
        ));
        assert!(
            e.contains("tensor w") && e.contains("outside") && e.contains("/x/model.safetensors"),
            "{e}"
        );
        let e = err_of(&with_header(
            r#"{"w":{"dtype":"F16","shape":[4],"data_offsets":[0,16]}}"#,
            16,
        ));
        assert!(e.contains("tensor w") && e.contains("needs 8"), "{e}");
        let e = err_of(&with_header(
            r#"{"w":{"dtype":"Q9","shape":[1],"data_offsets":[0,1]}}"#,
            1,
        ));
        assert!(e.contains("unknown dtype"), "{e}");
        let e = err_of(&with_header(
            r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}}"#,
            4,
        ));
        assert!(e.contains("overflows"), "{e}");
        let e = err_of(&with_header(
            r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#,
            8,
        ));
        assert!(e.contains("outside"), "{e}");
        let e = err_of(&with_header(
            r#"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
            4,
        ));
        assert!(e.contains("shape"), "{e}");
        let e = err_of(&with_header(
            r#"{"w":{"shape":[1],"data_offsets":[0,4]}}"#,
            4,
        ));
        assert!(e.contains("dtype"), "{e}");
    }
}
