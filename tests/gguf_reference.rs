//! rill's GGUF reader against gguf-py, llama.cpp's reference writer and reader: the files
//! `scripts/models/gguf_reference.py` wrote (every metadata value type, arrays, a custom
//! alignment, F32/F16/Q8_0/Q4_1 tensors) read back with the same keys, values, tensor
//! dims, types, offsets and bytes that gguf-py's GGUFReader recorded in
//! `reference.json`; the big-endian twin is refused by name. Runs in well under 1 s.

use std::path::PathBuf;

use rill::model::ggml::GgmlType;
use rill::model::gguf::{GgufFile, MetaValue};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf")
        .join(name)
}

/// Whether `got` is the value gguf-py read, for GGUF value type `ty`.
fn same(ty: u64, got: &MetaValue, want: &Value) -> bool {
    match (ty, got) {
        (0 | 2 | 4 | 10, MetaValue::UInt(v)) => want.as_u64() == Some(*v),
        (1 | 3 | 5 | 11, MetaValue::Int(v)) => want.as_i64() == Some(*v),
        (6 | 12, MetaValue::Float(v)) => want.as_f64() == Some(*v),
        (7, MetaValue::Bool(v)) => want.as_bool() == Some(*v),
        (8, MetaValue::Str(v)) => want.as_str() == Some(v.as_str()),
        _ => false,
    }
}

#[test]
fn reads_what_gguf_py_wrote() {
    let desc: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("reference.json")).unwrap()).unwrap();
    let f = GgufFile::open(&fixture("reference.gguf")).unwrap();
    assert_eq!(f.version, 3);
    let meta = desc["metadata"].as_object().unwrap();
    assert_eq!(f.metadata.len(), meta.len());
    for (key, m) in meta {
        let got = f.get(key).unwrap_or_else(|| panic!("missing key {key}"));
        let types: Vec<u64> = m["type"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap())
            .collect();
        if types[0] == 9 {
            let items = got
                .as_array()
                .unwrap_or_else(|| panic!("{key}: not an array"));
            let want = m["value"].as_array().unwrap();
            assert_eq!(items.len(), want.len(), "{key}");
            for (g, w) in items.iter().zip(want) {
                assert!(same(types[1], g, w), "{key}: {g:?} != {w}");
            }
        } else {
            assert!(
                same(types[0], got, &m["value"]),
                "{key}: {got:?} != {}",
                m["value"]
            );
        }
    }
    let tensors = desc["tensors"].as_array().unwrap();
    assert_eq!(f.tensors.len(), tensors.len());
    for t in tensors {
        let name = t["name"].as_str().unwrap();
        let info = f.tensor(name).unwrap();
        let dims: Vec<u64> = t["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(info.dims, dims, "{name}");
        assert_eq!(
            Some(info.ty),
            GgmlType::from_u32(t["type"].as_u64().unwrap() as u32),
            "{name}"
        );
        assert_eq!(info.start as u64, t["offset"].as_u64().unwrap(), "{name}");
        assert_eq!(info.len as u64, t["n_bytes"].as_u64().unwrap(), "{name}");
        let hex: String = f
            .tensor_bytes(info)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, t["hex"].as_str().unwrap(), "{name}");
    }
}

#[test]
fn big_endian_files_are_refused_by_name() {
    let err = GgufFile::open(&fixture("reference_be.gguf"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("reference_be.gguf") && err.contains("big-endian"),
        "{err}"
    );
}
