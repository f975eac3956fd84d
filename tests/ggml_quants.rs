//! Every GGUF tensor type rill computes with, against ggml itself (llama-cpp-python
//! 0.3.36). The reference is `tests/fixtures/ggml_quants.{json,bin}`, written by
//! `scripts/models/ggml_quant_reference.py`: ggml-quantized weight rows, ggml's
//! dequantization of them, one activation row in each weight type's `vec_dot_type` as
//! llama.cpp's CPU backend converts it, and the CPU backend's `vec_dot` of each row.
//!
//! Checked here: dequantization is bit-exact; our activation conversion (Q8_0, Q8_1,
//! Q8_K, f16, bf16) is bit-exact; and the matmul (every kernel set this CPU runs, one
//! activation row and the same row inside a batch) gives ggml's dot within a relative
//! tolerance of 1e-5 of `sum |w_i * x_i|`. The dot cannot be bit-exact: ggml's SIMD
//! `vec_dot` sums the same exact integer block products in another order (and with
//! FMA), so the float results differ by a few ulps of the partial sums; 1e-5 is about
//! 100 f32 roundings of the largest partial sum, far below what any indexing, scale or
//! sign error produces (those change the dot by whole percents).

use rill::backend::cpu::dot::Isa;
use rill::backend::cpu::matmul::{matmul_many, Activations, Linear, WeightBytes};
use rill::backend::cpu::pool::ThreadPool;
use rill::backend::cpu::quant::q8k::{quantize_q8_k, Q8KBlock};
use rill::backend::cpu::quant::{
    dequantize_row, float, quantize_q8_portable, vec_dot_type, ActFormat, Q8Block,
};
use rill::model::ggml::GgmlType;
use serde_json::Value;

const RERUN: &str = "run `python3 scripts/models/ggml_quant_reference.py` (needs \
                     llama-cpp-python 0.3.36, see tests/requirements-models.txt)";

struct Fixture {
    json: Value,
    bin: Vec<u8>,
}

impl Fixture {
    fn load() -> Fixture {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
        let json = std::fs::read_to_string(format!("{dir}ggml_quants.json"))
            .unwrap_or_else(|e| panic!("tests/fixtures/ggml_quants.json: {e}; {RERUN}"));
        let bin = std::fs::read(format!("{dir}ggml_quants.bin"))
            .unwrap_or_else(|e| panic!("tests/fixtures/ggml_quants.bin: {e}; {RERUN}"));
        let json: Value = serde_json::from_str(&json).unwrap();
        Fixture { json, bin }
    }

    fn blob(&self, v: &Value) -> &[u8] {
        let (off, len) = (v["offset"].as_u64().unwrap(), v["len"].as_u64().unwrap());
        &self.bin[off as usize..(off + len) as usize]
    }

    fn dims(&self) -> (usize, usize) {
        let n = |k: &str| self.json[k].as_u64().unwrap() as usize;
        (n("rows"), n("cols"))
    }

    fn activation(&self) -> Vec<f32> {
        floats(self.blob(&self.json["activation_f32"]))
    }
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Every type of the issue with its name in the fixture.
const TYPES: [(&str, GgmlType); 13] = [
    ("F32", GgmlType::F32),
    ("F16", GgmlType::F16),
    ("BF16", GgmlType::BF16),
    ("Q4_0", GgmlType::Q4_0),
    ("Q4_1", GgmlType::Q4_1),
    ("Q5_0", GgmlType::Q5_0),
    ("Q5_1", GgmlType::Q5_1),
    ("Q8_0", GgmlType::Q8_0),
    ("Q2_K", GgmlType::Q2K),
    ("Q3_K", GgmlType::Q3K),
    ("Q4_K", GgmlType::Q4K),
    ("Q5_K", GgmlType::Q5K),
    ("Q6_K", GgmlType::Q6K),
];

#[test]
fn the_fixture_covers_every_type_and_every_type_is_supported() {
    let f = Fixture::load();
    let types = f.json["types"].as_object().unwrap();
    assert_eq!(types.len(), TYPES.len());
    for (name, ty) in TYPES {
        let t = &types[name];
        assert_eq!(
            GgmlType::from_u32(t["ggml_type"].as_u64().unwrap() as u32),
            Some(ty)
        );
        assert!(ty.is_supported(), "{name}");
        let (_, cols) = f.dims();
        assert_eq!(
            ty.row_bytes(cols) as u64,
            t["row_bytes"].as_u64().unwrap(),
            "{name}"
        );
    }
}

#[test]
fn dequantization_is_bit_exact_with_ggml_for_every_type() {
    let f = Fixture::load();
    let (rows, cols) = f.dims();
    for (name, ty) in TYPES {
        let t = &f.json["types"][name];
        let (w, want) = (f.blob(&t["weights"]), floats(f.blob(&t["dequantized_f32"])));
        let rb = ty.row_bytes(cols);
        for r in 0..rows {
            let mut got = vec![f32::NAN; cols];
            dequantize_row(ty, &w[r * rb..(r + 1) * rb], &mut got);
            for (i, (g, e)) in got.iter().zip(&want[r * cols..(r + 1) * cols]).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    e.to_bits(),
                    "{name} row {r} element {i}: {g} vs {e}"
                );
            }
        }
    }
}

/// Our conversion of the activation row to `fmt`, as the bytes ggml stores.
fn our_activation_bytes(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let f16b = |v: f32| half::f16::from_f32(v).to_bits().to_le_bytes();
    match vec_dot_type(ty).unwrap() {
        ActFormat::F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ActFormat::F16 => x.iter().flat_map(|&v| f16b(v)).collect(),
        ActFormat::BF16 => {
            let mut h = vec![0u16; x.len()];
            float::to_bf16_row(x, &mut h);
            h.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        ActFormat::Q8 => {
            let mut q = vec![Q8Block::default(); x.len() / 32];
            quantize_q8_portable(x, &mut q);
            // Q4_1 / Q5_1 multiply with Q8_1 (d, s, qs); the others with Q8_0 (d, qs).
            let q8_1 = matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1);
            let mut out = Vec::new();
            for b in &q {
                out.extend(f16b(b.d));
                if q8_1 {
                    out.extend(f16b(b.s));
                }
                out.extend(b.qs.iter().map(|&v| v as u8));
            }
            out
        }
        ActFormat::Q8K => {
            let mut q = vec![Q8KBlock::default(); x.len() / 256];
            quantize_q8_k(x, &mut q);
            let mut out = Vec::new();
            for b in &q {
                out.extend(b.d.to_le_bytes());
                out.extend(b.qs.iter().map(|&v| v as u8));
                out.extend(b.bsums.iter().flat_map(|v| v.to_le_bytes()));
            }
            out
        }
    }
}

#[test]
fn activations_convert_to_each_vec_dot_type_bit_exactly_as_ggml() {
    let f = Fixture::load();
    let x = f.activation();
    for (name, ty) in TYPES {
        let t = &f.json["types"][name];
        let want = f.blob(&t["activation_vec_dot_type"]);
        let got = our_activation_bytes(ty, &x);
        assert_eq!(got.len(), want.len(), "{name}: activation size");
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        assert_eq!(
            first, None,
            "{name}: activation bytes differ from ggml's from byte {first:?}"
        );
    }
}

#[test]
fn matmul_gives_ggml_vec_dot_for_every_type_on_every_isa() {
    let f = Fixture::load();
    let (rows, cols) = f.dims();
    let x = f.activation();
    // The activation row alone, and as row 1 of a batch of 3.
    let mut batch = f.activation();
    batch.extend(x.iter().map(|v| v * 0.5));
    batch.splice(0..0, x.iter().map(|v| -v));
    let pool = ThreadPool::new(2).unwrap();
    let mut worst = Vec::new();
    for (name, ty) in TYPES {
        let t = &f.json["types"][name];
        let deq = floats(f.blob(&t["dequantized_f32"]));
        let want = floats(f.blob(&t["vec_dot_f32"]));
        let w = Linear {
            ty,
            rows,
            cols,
            bytes: WeightBytes::Owned(f.blob(&t["weights"]).to_vec()),
        };
        let mut worst_rel = 0f64;
        for isa in Isa::available() {
            for (input, t_row) in [(&x, 0usize), (&batch, 1)] {
                let mut scratch = Vec::new();
                let act = Activations::quantize(&pool, input, cols, &mut scratch);
                let mut out = vec![f32::NAN; input.len() / cols * rows];
                matmul_many(&pool, isa, &act, &mut [(&w, &mut out[..])]);
                for r in 0..rows {
                    let got = out[t_row * rows + r];
                    let scale: f64 = deq[r * cols..(r + 1) * cols]
                        .iter()
                        .zip(&x)
                        .map(|(a, b)| (*a as f64 * *b as f64).abs())
                        .sum();
                    let err = (got as f64 - want[r] as f64).abs();
                    worst_rel = worst_rel.max(err / scale);
                    assert!(
                        err <= 1e-5 * scale,
                        "{name} {isa:?} row {r} (batch row {t_row}): {got} vs ggml {} \
                         (|err| {err:e}, scale {scale:e})",
                        want[r]
                    );
                }
            }
        }
        worst.push(format!("{name} {worst_rel:.1e}"));
    }
    eprintln!("worst |ours - ggml| / sum|w x|: {}", worst.join(", "));
}
