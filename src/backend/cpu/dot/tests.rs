//! Every kernel set this CPU runs against the portable reference, bit for bit: the
//! quantized tiles, the quantizer and the f16 attention kernels.

use half::f16;

use super::super::quant::{quantize_q8_portable, Q8Block, QK};
use super::*;

fn lcg(seed: &mut u64) -> u8 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 33) as u8
}

/// Random rows of `ty` blocks with finite, modest f16 scales (and negative Q4_1 minima).
fn weights(ty: QType, n_blocks: usize, seed: &mut u64) -> Vec<u8> {
    let bytes = ty.block_bytes();
    let mut w: Vec<u8> = (0..n_blocks * bytes).map(|_| lcg(seed)).collect();
    for b in w.chunks_exact_mut(bytes) {
        b[1] = 0x20 | (lcg(seed) & 0x0f);
        if ty == QType::Q4_1 {
            b[3] = 0xa0 | (lcg(seed) & 0x0f);
        }
    }
    w
}

fn activations(n_tok: usize, cols: usize, seed: &mut u64) -> Vec<Q8Block> {
    let x: Vec<f32> = (0..n_tok * cols)
        .map(|_| lcg(seed) as f32 / 40.0 - 3.0)
        .collect();
    let mut q = vec![Q8Block::default(); n_tok * cols / QK];
    quantize_q8_portable(&x, &mut q);
    q
}

fn run_gemm(isa: Isa, ty: QType, w: &[u8], bpr: usize, a: &[Q8Block]) -> Vec<f32> {
    let row_bytes = bpr * ty.block_bytes();
    let (n_rows, n_tok) = (w.len() / row_bytes, a.len() / bpr);
    let mut out = vec![f32::NAN; n_rows * n_tok];
    let rows = QRows {
        ty,
        bytes: w,
        row_bytes,
    };
    // SAFETY: `out` holds every (t, r) at t * n_rows + r and is owned here.
    unsafe { gemm(isa, rows, a, bpr, out.as_mut_ptr(), n_rows) };
    out
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn every_isa_gives_the_portable_bits_for_any_tile_shape() {
    let mut seed = 42;
    let isas = Isa::available();
    assert_eq!(isas.last(), Some(&Isa::Portable));
    for ty in [QType::Q4_1, QType::Q8_0] {
        for bpr in [1usize, 3, 18] {
            // Row counts below, at and above every tile width; token counts past 4.
            for n_rows in [1usize, 5, 8, 16, 37] {
                let w = weights(ty, n_rows * bpr, &mut seed);
                let a = activations(9, bpr * QK, &mut seed);
                let want = run_gemm(Isa::Portable, ty, &w, bpr, &a);
                assert!(want.iter().all(|v| v.is_finite()));
                for &isa in &isas {
                    for n_tok in [1usize, 2, 3, 4, 5, 9] {
                        let got = run_gemm(isa, ty, &w, bpr, &a[..n_tok * bpr]);
                        assert_eq!(
                            bits(&got),
                            bits(&want[..n_tok * n_rows]),
                            "{isa:?} {ty:?} rows {n_rows} tokens {n_tok} blocks {bpr}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn single_pair_dot_matches_a_dequantized_product() {
    // Guards the reference itself: Q8_0 weights of value k at scale 1/64 against a
    // constant activation row.
    let mut row = vec![0u8; 34];
    row[..2].copy_from_slice(&f16::from_f32(1.0 / 64.0).to_bits().to_le_bytes());
    for (j, b) in row[2..].iter_mut().enumerate() {
        *b = (j as i8 - 16) as u8;
    }
    let mut a = vec![Q8Block::default()];
    quantize_q8_portable(&[0.5f32; 32], &mut a);
    let want: f32 = (0..32).map(|j| (j as f32 - 16.0) / 64.0 * 0.5).sum();
    for isa in Isa::available() {
        let got = dot(isa, QType::Q8_0, &row, &a);
        assert!((got - want).abs() < 1e-3, "{isa:?}: {got} vs {want}");
    }
}

#[test]
fn every_isa_quantizes_like_the_portable_code() {
    let mut seed = 9;
    let mut x: Vec<f32> = (0..32 * 40)
        .map(|_| (lcg(&mut seed) as f32 - 128.0) * 0.037)
        .collect();
    // An all-zero block, a tiny-valued block and exact .5 ties.
    x[..32].fill(0.0);
    x[32..64].iter_mut().for_each(|v| *v *= 1e-6);
    for (i, v) in x[64..96].iter_mut().enumerate() {
        *v = i as f32 - 15.5;
    }
    let mut want = vec![Q8Block::default(); 40];
    quantize_q8_portable(&x, &mut want);
    for isa in Isa::available() {
        let mut got = vec![Q8Block::default(); 40];
        quantize_q8(isa, &x, &mut got);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.qs, w.qs, "{isa:?} block {i}");
            assert_eq!(
                (g.d.to_bits(), g.s.to_bits(), g.sum),
                (w.d.to_bits(), w.s.to_bits(), w.sum),
                "{isa:?} block {i}"
            );
        }
    }
}

#[test]
fn every_isa_gives_the_portable_bits_for_the_f16_attention_kernels() {
    let mut seed = 5;
    // Lengths below, at and past the 16-lane chunk, with remainders.
    for n in [1usize, 7, 8, 16, 24, 64, 72, 128] {
        let mut f16s = |s: f32| -> Vec<u16> {
            (0..n)
                .map(|_| f16::from_f32((lcg(&mut seed) as f32 - 128.0) * s).to_bits())
                .collect()
        };
        let (k, q) = (f16s(0.013), f16s(0.021));
        let want_dot = dot_f16_f16(Isa::Portable, &k, &q);
        let prods: Vec<f64> = k
            .iter()
            .zip(&q)
            .map(|(&a, &b)| f16_to_f32(a) as f64 * f16_to_f32(b) as f64)
            .collect();
        let (exact, scale) = (
            prods.iter().sum::<f64>(),
            prods.iter().map(|p| p.abs()).sum::<f64>(),
        );
        assert!(
            (want_dot as f64 - exact).abs() <= 1e-6 * scale.max(1.0),
            "n={n}: {want_dot} vs {exact}"
        );
        let mut want_axpy = vec![0.25f32; n];
        axpy_f16(Isa::Portable, &mut want_axpy, 0.3, &k);
        for isa in Isa::available() {
            let got = dot_f16_f16(isa, &k, &q);
            assert_eq!(
                got.to_bits(),
                want_dot.to_bits(),
                "{isa:?} dot n={n}: {got} vs {want_dot}"
            );
            let mut got = vec![0.25f32; n];
            axpy_f16(isa, &mut got, 0.3, &k);
            assert_eq!(bits(&got), bits(&want_axpy), "{isa:?} axpy n={n}");
        }
    }
}

#[test]
fn isa_names_round_trip_and_unknown_names_are_config_errors() {
    for isa in Isa::available() {
        assert_eq!(Isa::from_name(isa.name()).ok(), Some(isa));
    }
    match Isa::from_name("sse9") {
        Err(Error::Config { key, .. }) => assert_eq!(key, "RILL_ISA"),
        other => panic!("expected a RILL_ISA config error, got {other:?}"),
    }
    assert_eq!(Isa::detect(), Isa::available()[0]);
}
