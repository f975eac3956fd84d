//! The matmuls against a dequantized f64 reference, and the bits every output must keep
//! whatever the kernel set, the batch and the other matrices of the dispatch, for every
//! weight type.

use super::super::quant::dequantize_row;
use super::*;
use half::f16;

fn rnd(seed: &mut u64) -> f32 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
}

/// `rows x cols` random weights quantized to `ty` (Q8_0 or Q4_1), as GGUF stores them.
fn weight(ty: GgmlType, rows: usize, cols: usize, seed: &mut u64) -> Linear {
    let mut bytes = Vec::new();
    for _ in 0..rows * cols / QK {
        let v: Vec<f32> = (0..QK).map(|_| rnd(seed)).collect();
        if ty == GgmlType::Q8_0 {
            let mut q = [Q8Block::default()];
            quantize_q8(&v, &mut q);
            bytes.extend_from_slice(&f16::from_f32(q[0].d).to_bits().to_le_bytes());
            bytes.extend(q[0].qs.iter().map(|&x| x as u8));
        } else {
            let (lo, hi) = v
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            let d = f16::from_f32((hi - lo) / 15.0);
            let m = f16::from_f32(lo);
            bytes.extend_from_slice(&d.to_bits().to_le_bytes());
            bytes.extend_from_slice(&m.to_bits().to_le_bytes());
            let q = |x: f32| ((x - m.to_f32()) / d.to_f32()).round().clamp(0.0, 15.0) as u8;
            bytes.extend((0..QK / 2).map(|j| q(v[j]) | (q(v[j + QK / 2]) << 4)));
        }
    }
    Linear {
        ty,
        rows,
        cols,
        bytes: WeightBytes::Owned(bytes),
    }
}

/// Every weight type the backend computes with.
const ALL_TYPES: [GgmlType; 13] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
];

/// Byte offsets of the f16 scale fields inside one block of `ty`.
fn f16_fields(ty: GgmlType) -> &'static [usize] {
    use GgmlType as G;
    match ty {
        G::Q4_0 | G::Q5_0 | G::Q8_0 => &[0],
        G::Q4_1 | G::Q5_1 | G::Q4K | G::Q5K => &[0, 2],
        G::Q2K => &[80, 82],
        G::Q3K => &[108],
        G::Q6K => &[208],
        _ => &[],
    }
}

/// `rows x cols` weights of any type: random bits in the quant fields, modest random
/// scales (f16 in [2^-9, 2^-6) of either sign), floats in [-0.5, 0.5).
fn any_weight(ty: GgmlType, rows: usize, cols: usize, seed: &mut u64) -> Linear {
    let n = rows * cols;
    let bytes: Vec<u8> = match ty {
        GgmlType::F32 => (0..n).flat_map(|_| rnd(seed).to_le_bytes()).collect(),
        GgmlType::F16 => (0..n)
            .flat_map(|_| f16::from_f32(rnd(seed)).to_bits().to_le_bytes())
            .collect(),
        GgmlType::BF16 => (0..n)
            .flat_map(|_| ((rnd(seed).to_bits() >> 16) as u16).to_le_bytes())
            .collect(),
        _ => {
            let mut b: Vec<u8> = (0..ty.row_bytes(cols) * rows)
                .map(|_| (rnd(seed).to_bits() >> 3) as u8)
                .collect();
            for blk in b.chunks_exact_mut(ty.block_bytes()) {
                for &o in f16_fields(ty) {
                    let v = (1.0 + rnd(seed)) * (1 << (seed.wrapping_shr(50) % 4)) as f32 / 512.0;
                    let v = if rnd(seed) < 0.0 { -v } else { v };
                    blk[o..o + 2].copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
                }
            }
            b
        }
    };
    Linear {
        ty,
        rows,
        cols,
        bytes: WeightBytes::Owned(bytes),
    }
}

fn run(pool: &ThreadPool, isa: Isa, x: &[f32], cols: usize, ws: &[&Linear]) -> Vec<Vec<f32>> {
    let n_tok = x.len() / cols;
    let mut outs: Vec<Vec<f32>> = ws.iter().map(|w| vec![f32::NAN; n_tok * w.rows]).collect();
    let mut scratch = Vec::new();
    let act = Activations::quantize(pool, x, cols, &mut scratch);
    let mut jobs: Vec<(&Linear, &mut [f32])> = ws
        .iter()
        .zip(outs.iter_mut())
        .map(|(w, o)| (*w, o.as_mut_slice()))
        .collect();
    matmul_many(pool, isa, &act, &mut jobs);
    outs
}

#[test]
fn matmul_matches_dequantized_reference_on_every_isa() {
    let pool = ThreadPool::new(2).unwrap();
    let (rows, cols, n_tok) = (37, 64, 3);
    let mut seed = 7u64;
    let x: Vec<f32> = (0..n_tok * cols).map(|_| rnd(&mut seed)).collect();
    for ty in [GgmlType::Q8_0, GgmlType::Q4_1] {
        let w = weight(ty, rows, cols, &mut seed);
        for isa in Isa::available() {
            let out = run(&pool, isa, &x, cols, &[&w]).remove(0);
            for t in 0..n_tok {
                for r in 0..rows {
                    let mut row = vec![0f32; cols];
                    dequantize_row(ty, w.row(r), &mut row);
                    let want: f32 = row
                        .iter()
                        .zip(&x[t * cols..(t + 1) * cols])
                        .map(|(a, b)| a * b)
                        .sum();
                    let got = out[t * rows + r];
                    assert!(
                        (got - want).abs() < 0.03,
                        "{isa:?} {ty:?} ({t},{r}): {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn every_type_matches_a_dequantized_f64_reference_on_every_isa() {
    let pool = ThreadPool::new(2).unwrap();
    let (rows, cols, n_tok) = (19, 512, 3);
    let mut seed = 17u64;
    let x: Vec<f32> = (0..n_tok * cols).map(|_| rnd(&mut seed) * 3.0).collect();
    for ty in ALL_TYPES {
        let w = any_weight(ty, rows, cols, &mut seed);
        for isa in Isa::available() {
            let out = run(&pool, isa, &x, cols, &[&w]).remove(0);
            for t in 0..n_tok {
                let mut row = vec![0f32; cols];
                for r in 0..rows {
                    dequantize_row(ty, w.row(r), &mut row);
                    let terms = row.iter().zip(&x[t * cols..(t + 1) * cols]);
                    let (want, scale) = terms.fold((0f64, 0f64), |(s, a), (&w, &v)| {
                        (s + w as f64 * v as f64, a + (w as f64 * v as f64).abs())
                    });
                    let got = out[t * rows + r] as f64;
                    // Only the activation rounding (8 bits, or f16/bf16) separates them.
                    assert!(
                        (got - want).abs() <= 0.01 * scale + 1e-6,
                        "{isa:?} {ty:?} ({t},{r}): {got} vs {want} (scale {scale})"
                    );
                }
            }
        }
    }
}

#[test]
fn every_type_gives_the_same_bits_alone_in_a_batch_and_on_every_isa() {
    let pool = ThreadPool::new(2).unwrap();
    let (cols, n_tok) = (256, 6);
    let mut seed = 23u64;
    let x: Vec<f32> = (0..n_tok * cols).map(|_| rnd(&mut seed) * 4.0).collect();
    // All types in one dispatch, row counts that are not tile multiples.
    let ws: Vec<Linear> = ALL_TYPES
        .iter()
        .enumerate()
        .map(|(i, &ty)| any_weight(ty, 5 + 7 * i, cols, &mut seed))
        .collect();
    let refs: Vec<&Linear> = ws.iter().collect();
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    let portable = run(&pool, Isa::Portable, &x, cols, &refs);
    for isa in Isa::available() {
        let batch = run(&pool, isa, &x, cols, &refs);
        for t in 0..n_tok {
            let alone = run(&pool, isa, &x[t * cols..(t + 1) * cols], cols, &refs);
            for (j, w) in ws.iter().enumerate() {
                let ty = w.ty;
                assert_eq!(
                    bits(&batch[j]),
                    bits(&portable[j]),
                    "{isa:?} {ty:?} vs portable"
                );
                assert!(batch[j].iter().all(|v| v.is_finite()), "{ty:?}");
                assert_eq!(
                    bits(&alone[j]),
                    bits(&batch[j][t * w.rows..(t + 1) * w.rows]),
                    "{isa:?} {ty:?}: row {t} alone differs from row {t} of the batch"
                );
            }
        }
    }
}

#[test]
fn a_row_alone_gives_the_bits_it_gives_inside_a_37_row_batch() {
    let pool = ThreadPool::new(2).unwrap();
    let (cols, n_tok) = (96, 37);
    let mut seed = 11u64;
    let x: Vec<f32> = (0..n_tok * cols).map(|_| rnd(&mut seed) * 4.0).collect();
    // Two matrices in one dispatch, row counts that are not tile multiples.
    let wa = weight(GgmlType::Q4_1, 53, cols, &mut seed);
    let wb = weight(GgmlType::Q8_0, 21, cols, &mut seed);
    let portable = run(&pool, Isa::Portable, &x, cols, &[&wa, &wb]);
    for isa in Isa::available() {
        let batch = run(&pool, isa, &x, cols, &[&wa, &wb]);
        for (j, w) in [&wa, &wb].iter().enumerate() {
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&batch[j]),
                bits(&portable[j]),
                "{isa:?} vs portable, matrix {j}"
            );
            for t in 0..n_tok {
                let alone = run(&pool, isa, &x[t * cols..(t + 1) * cols], cols, &[&wa, &wb]);
                assert_eq!(
                    bits(&alone[j]),
                    bits(&batch[j][t * w.rows..(t + 1) * w.rows]),
                    "{isa:?}: row {t} alone differs from row {t} of the batch, matrix {j}"
                );
            }
        }
    }
}

#[test]
fn swiglu_gives_the_bits_of_matmul_then_silu_mul() {
    let pool = ThreadPool::new(2).unwrap();
    // (gate type, up type, cols, rows, token counts): the tiled Q4_1/Q8_0 kernels and the
    // row dots of the K-quants.
    let cases = [
        (GgmlType::Q4_1, GgmlType::Q8_0, 64, 45, &[1usize, 7][..]),
        (GgmlType::Q4K, GgmlType::Q6K, 256, 29, &[5][..]),
    ];
    let mut seed = 3u64;
    for (gty, uty, cols, rows, n_toks) in cases {
        let wg = any_weight(gty, rows, cols, &mut seed);
        let wu = any_weight(uty, rows, cols, &mut seed);
        for &n_tok in n_toks {
            let x: Vec<f32> = (0..n_tok * cols).map(|_| rnd(&mut seed)).collect();
            for isa in Isa::available() {
                let mut want = run(&pool, isa, &x, cols, &[&wg, &wu]);
                let up = want.pop().unwrap();
                silu_mul(&mut want[0], &up);
                let (mut g, mut u) = (vec![0f32; n_tok * rows], vec![0f32; n_tok * rows]);
                let mut scratch = Vec::new();
                let act = Activations::quantize(&pool, &x, cols, &mut scratch);
                matmul_swiglu(&pool, isa, &act, (&wg, &mut g), (&wu, &mut u));
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&g),
                    bits(&want[0]),
                    "{gty:?}/{uty:?} {isa:?}, {n_tok} rows"
                );
            }
        }
    }
}

#[test]
fn the_plan_partitions_every_output_once() {
    for (threads, n_tok, act_bytes) in [(2, 1, 1152), (2, 37, 1152), (4, 700, 3072), (1, 5, 64)] {
        let jobs = [(576, 360), (192, 360), (49152, 612), (5, 20)];
        let tasks = plan(threads, n_tok, act_bytes, &jobs);
        let mut seen: Vec<Vec<u8>> = jobs.iter().map(|j| vec![0; j.0 * n_tok]).collect();
        for t in &tasks {
            assert!(t.rows.0 < t.rows.1 && t.toks.0 < t.toks.1, "{t:?}");
            for r in t.rows.0..t.rows.1 {
                for k in t.toks.0..t.toks.1 {
                    seen[t.job][k * jobs[t.job].0 + r] += 1;
                }
            }
        }
        assert!(
            seen.iter().flatten().all(|&c| c == 1),
            "{threads} threads, {n_tok} tokens"
        );
    }
}
