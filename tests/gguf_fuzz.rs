//! A deterministic mutation fuzz of the GGUF reader: a small valid GGUF (every metadata
//! value type, arrays, four tensor types, an explicit alignment) is built in memory, then
//! cut at every offset and put through tens of thousands of seeded mutations (random
//! bytes, length/count/offset/type fields set to boundary and huge values, inserted and
//! deleted bytes); the gguf-py-written `tests/fixtures/gguf/reference.gguf` gets the same
//! cuts and random byte mutations. Each image is opened with `GgufFile::from_bytes` under `catch_unwind`:
//! no mutation may panic, an accepted file must only expose tensor ranges inside it, and
//! every error must name the key, tensor or byte offset at fault. About 5 s in the dev
//! profile.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use rill::model::gguf::GgufFile;

/// Where a field the reader trusts lies in the image, and its width in bytes.
#[derive(Clone, Copy)]
struct Field {
    at: usize,
    width: usize,
}

/// A GGUF writer that remembers where every length, count, type and offset field went.
#[derive(Default)]
struct Writer {
    b: Vec<u8>,
    fields: Vec<Field>,
}

impl Writer {
    fn field(&mut self, v: u64, width: usize) {
        self.fields.push(Field {
            at: self.b.len(),
            width,
        });
        self.b.extend_from_slice(&v.to_le_bytes()[..width]);
    }
    fn string(&mut self, s: &str) {
        self.field(s.len() as u64, 8);
        self.b.extend_from_slice(s.as_bytes());
    }
    fn kv(&mut self, key: &str, ty: u32, value: &[u8]) {
        self.string(key);
        self.field(ty as u64, 4);
        self.b.extend_from_slice(value);
    }
    fn str_value(s: &str) -> Vec<u8> {
        let mut v = (s.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    }
    fn array(&mut self, key: &str, elem_ty: u32, items: &[Vec<u8>]) {
        self.string(key);
        self.field(9, 4);
        self.field(elem_ty as u64, 4);
        self.field(items.len() as u64, 8);
        for item in items {
            if elem_ty == 8 {
                // String elements: their lengths are fields too.
                self.field(item.len() as u64 - 8, 8);
                self.b.extend_from_slice(&item[8..]);
            } else {
                self.b.extend_from_slice(item);
            }
        }
    }
}

/// (name, dims, ggml type, data bytes)
const TENSORS: [(&str, &[u64], u32, usize); 4] = [
    ("token_embd.weight", &[32, 2], 8, 68),  // Q8_0
    ("blk.0.attn_norm.weight", &[8], 0, 32), // F32
    ("blk.0.ffn_up.weight", &[64], 3, 40),   // Q4_1
    ("output_norm.weight", &[4, 2], 1, 16),  // F16
];

/// A valid file and the fields the reader trusts.
fn valid_file() -> (Vec<u8>, Vec<Field>) {
    let mut w = Writer::default();
    w.b.extend_from_slice(b"GGUF");
    w.field(3, 4);
    w.field(TENSORS.len() as u64, 8);
    w.field(17, 8);
    w.kv("general.architecture", 8, &Writer::str_value("llama"));
    w.kv("general.alignment", 4, &32u32.to_le_bytes());
    w.kv("t.u8", 0, &[200]);
    w.kv("t.i8", 1, &[0xfe]);
    w.kv("t.u16", 2, &60000u16.to_le_bytes());
    w.kv("t.i16", 3, &(-2i16).to_le_bytes());
    w.kv("t.u32", 4, &7u32.to_le_bytes());
    w.kv("t.i32", 5, &(-7i32).to_le_bytes());
    w.kv("t.f32", 6, &1.5f32.to_le_bytes());
    w.kv("t.bool", 7, &[1]);
    w.kv("t.u64", 10, &u64::MAX.to_le_bytes());
    w.kv("t.i64", 11, &i64::MIN.to_le_bytes());
    w.kv("t.f64", 12, &0.25f64.to_le_bytes());
    let tokens: Vec<Vec<u8>> = ["<s>", "</s>", "héllo", ""]
        .iter()
        .map(|s| Writer::str_value(s))
        .collect();
    w.array("tokenizer.ggml.tokens", 8, &tokens);
    let ints: Vec<Vec<u8>> = (0..5u32).map(|i| i.to_le_bytes().to_vec()).collect();
    w.array("t.ints", 4, &ints);
    w.array("t.empty", 6, &[]);
    let flags: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i]).collect();
    w.array("t.flags", 7, &flags);
    let mut offset = 0u64;
    for (name, dims, ty, len) in TENSORS {
        w.string(name);
        w.field(dims.len() as u64, 4);
        for &d in dims {
            w.field(d, 8);
        }
        w.field(ty as u64, 4);
        w.field(offset, 8);
        offset += (len as u64).div_ceil(32) * 32;
    }
    w.b.resize(w.b.len().div_ceil(32) * 32, 0);
    for (i, (_, _, _, len)) in TENSORS.iter().enumerate() {
        // Padding between tensors; the file ends where the last tensor does, so that
        // every cut loses data.
        w.b.resize(w.b.len().div_ceil(32) * 32, 0);
        w.b.extend((0..*len).map(|j| (i * 31 + j) as u8));
    }
    (w.b, w.fields)
}

/// splitmix64: a small seeded generator, so every run mutates the same way.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One random mutation of `b`.
fn mutate(rng: &mut Rng, b: &mut Vec<u8>, fields: &[Field]) {
    match rng.below(8) {
        // A field the reader trusts gets a boundary, huge or nearby value.
        0..=3 if !fields.is_empty() => {
            let f = fields[rng.below(fields.len())];
            if f.at + f.width > b.len() {
                return;
            }
            let mut old = [0u8; 8];
            old[..f.width].copy_from_slice(&b[f.at..f.at + f.width]);
            let old = u64::from_le_bytes(old);
            let specials = [
                0,
                1,
                2,
                3,
                4,
                5,
                8,
                9,
                12,
                13,
                30,
                31,
                33,
                64,
                1 << 20,
                1 << 31,
                u32::MAX as u64,
                1 << 32,
                1 << 40,
                1 << 62,
                i64::MAX as u64,
                1 << 63,
                u64::MAX,
                u64::MAX - 1,
                b.len() as u64,
                b.len() as u64 + 1,
                old.wrapping_add(1),
                old.wrapping_sub(1),
                old.wrapping_mul(2),
                old.wrapping_add(32),
                rng.next(),
            ];
            let v = specials[rng.below(specials.len())];
            b[f.at..f.at + f.width].copy_from_slice(&v.to_le_bytes()[..f.width]);
        }
        // Random bytes anywhere.
        0..=5 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
        }
        // Bytes inserted or removed, shifting everything after them.
        6 => {
            let i = rng.below(b.len() + 1);
            let n = 1 + rng.below(9);
            for _ in 0..n {
                b.insert(i, rng.next() as u8);
            }
        }
        _ => {
            let i = rng.below(b.len());
            let n = (1 + rng.below(9)).min(b.len() - i);
            b.drain(i..i + n);
        }
    }
}

/// Opens `b`; panics (failing the test) with `label` if the reader panicked, accepted a
/// tensor range outside the image, or gave an error that names no key, tensor or offset.
/// Returns the error text, if any.
fn check(b: &[u8], label: &str) -> Option<String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let f = GgufFile::from_bytes(Path::new("fuzz.gguf"), b)?;
        for info in f.tensors.values() {
            assert!(
                info.start + info.len <= b.len(),
                "{label}: {} out of file",
                info.name
            );
            assert_eq!(f.tensor_bytes(info), &b[info.start..info.start + info.len]);
            let _ = info.n_elements();
        }
        for (k, v) in &f.metadata {
            let _ = (k.len(), v.as_u64(), v.as_f64(), v.as_str(), v.as_array());
        }
        Ok::<_, rill::Error>(())
    }));
    match outcome {
        Err(_) => panic!("{label}: the reader panicked"),
        Ok(Ok(())) => None,
        Ok(Err(e)) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with("model fuzz.gguf: ")
                    && (msg.contains("byte ") || msg.contains("tensor `") || msg.contains("key `")),
                "{label}: error names no key, tensor or offset: {msg}"
            );
            Some(msg)
        }
    }
}

#[test]
fn valid_file_reads_back() {
    let (b, _) = valid_file();
    let f = GgufFile::from_bytes(Path::new("fuzz.gguf"), &b).unwrap();
    assert_eq!(f.req_str("general.architecture").unwrap(), "llama");
    assert_eq!(
        f.str_array("tokenizer.ggml.tokens").unwrap(),
        ["<s>", "</s>", "héllo", ""]
    );
    assert_eq!(f.get("t.i64").unwrap().as_f64(), Some(i64::MIN as f64));
    assert_eq!(f.tensors.len(), 4);
    for (i, (name, _, _, len)) in TENSORS.iter().enumerate() {
        let t = f.tensor(name).unwrap();
        assert_eq!(t.len, *len);
        assert_eq!(f.tensor_bytes(t)[1], (i * 31 + 1) as u8);
    }
}

#[test]
fn every_truncation_is_an_error_naming_the_offset() {
    let (b, _) = valid_file();
    for cut in 0..b.len() {
        let msg = check(&b[..cut], &format!("cut at {cut}"))
            .unwrap_or_else(|| panic!("cut at {cut} of {} accepted", b.len()));
        assert!(
            msg.contains("truncated")
                || msg.contains("past the end")
                || msg.contains("bytes left")
                || msg.contains("can hold"),
            "cut at {cut}: {msg}"
        );
    }
}

#[test]
fn mutations_never_panic_and_errors_say_where() {
    let (valid, fields) = valid_file();
    let mut rng = Rng(0x5eed_6775);
    let (mut accepted, mut refused) = (0, 0);
    let mut kinds = std::collections::BTreeSet::new();
    for case in 0..40_000 {
        let mut b = valid.clone();
        let n = 1 + rng.below(3);
        for _ in 0..n {
            if b.is_empty() {
                break;
            }
            mutate(&mut rng, &mut b, &fields);
        }
        match check(&b, &format!("mutation case {case}")) {
            None => accepted += 1,
            Some(msg) => {
                refused += 1;
                for kind in [
                    "truncated",
                    "bad magic",
                    "version",
                    "unknown metadata value type",
                    "string length",
                    "does not fit",
                    "nested arrays",
                    "duplicate",
                    "dimensions",
                    "unsupported tensor type",
                    "alignment",
                    "past the end",
                    "overflow",
                    "block size",
                    "can hold",
                ] {
                    if msg.contains(kind) {
                        kinds.insert(kind);
                    }
                }
            }
        }
    }
    eprintln!("{accepted} accepted, {refused} refused; error kinds: {kinds:?}");
    // The fuzz must reach deep into the format, not stop at the magic.
    assert!(
        accepted > 1000 && refused > 10_000,
        "{accepted} accepted, {refused} refused"
    );
    assert!(kinds.len() >= 12, "error kinds reached: {kinds:?}");
}

/// The file gguf-py wrote (scripts/models/gguf_reference.py): every cut that loses data is
/// refused, and
/// random byte-level mutations never panic.
#[test]
fn reference_file_cuts_and_mutations() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf/reference.gguf");
    let valid = std::fs::read(path).unwrap();
    assert!(check(&valid, "reference.gguf").is_none());
    // gguf-py pads after the last tensor too; cutting that padding loses nothing.
    let f = GgufFile::from_bytes(Path::new("reference.gguf"), &valid).unwrap();
    let end = f.tensors.values().map(|t| t.start + t.len).max().unwrap();
    assert!(end > valid.len() - 64);
    for cut in 0..end {
        assert!(check(&valid[..cut], &format!("reference cut at {cut}")).is_some());
    }
    let mut rng = Rng(0x9e11);
    for case in 0..10_000 {
        let mut b = valid.clone();
        for _ in 0..1 + rng.below(3) {
            if !b.is_empty() {
                mutate(&mut rng, &mut b, &[]);
            }
        }
        check(&b, &format!("reference mutation case {case}"));
    }
}
