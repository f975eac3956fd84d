//! Block formats of the CPU backend: activation quantization (Q8 blocks of 32, as
//! llama.cpp's `quantize_row_q8_0` / `quantize_row_q8_1`: scale rounded through f16,
//! values rounded to nearest-even like its AVX2 path) and dequantization of weight rows
//! (used for the embedding lookup and tests). Public operations: `quantize_q8` (vector
//! code of the best ISA, bit-identical to `quantize_q8_portable`), `dequantize_row`,
//! `f16_to_f32`, `read_f16`.

use std::sync::OnceLock;

use half::f16;

use crate::model::ggml::GgmlType;

/// Elements per quantized block.
pub(crate) const QK: usize = 32;

/// One block of 32 activations quantized to i8. `d` is the scale and `s = d * sum(qs)`
/// (the Q8_1 extra term), both already rounded through f16 as ggml stores them; `sum` is
/// the exact `sum(qs)` (the AVX-512 Q8_0 kernel offsets weights by 128 and subtracts
/// `128 * sum`).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(32))]
pub struct Q8Block {
    pub qs: [i8; QK],
    pub d: f32,
    pub s: f32,
    pub sum: i32,
}

impl Default for Q8Block {
    fn default() -> Self {
        Q8Block {
            qs: [0; QK],
            d: 0.0,
            s: 0.0,
            sum: 0,
        }
    }
}

/// f16 bits -> f32 through a table (the portable path; ggml does the same).
pub fn f16_to_f32(bits: u16) -> f32 {
    static TABLE: OnceLock<Vec<f32>> = OnceLock::new();
    let t = TABLE.get_or_init(|| (0..=u16::MAX).map(|b| f16::from_bits(b).to_f32()).collect());
    t[bits as usize]
}

/// Reads a little-endian f16 at `b[0..2]` as f32.
#[inline]
pub fn read_f16(b: &[u8]) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[0], b[1]]))
}

pub(crate) fn round_f16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// Quantizes `x` (length a multiple of 32) into `out` with the best kernel set; the bits
/// are those of [`quantize_q8_portable`] on every ISA.
pub fn quantize_q8(x: &[f32], out: &mut [Q8Block]) {
    super::dot::quantize_q8(super::dot::Isa::detect(), x, out);
}

/// The reference quantizer (length a multiple of 32).
pub fn quantize_q8_portable(x: &[f32], out: &mut [Q8Block]) {
    for (chunk, blk) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in blk.qs.iter_mut().zip(chunk) {
            let r = (v * id).round_ties_even() as i32;
            *q = r.clamp(-127, 127) as i8;
            sum += *q as i32;
        }
        blk.d = round_f16(d);
        blk.s = round_f16(d * sum as f32);
        blk.sum = sum;
    }
}

/// Dequantizes one row of `n` elements of type `ty` from `src` into `out`.
pub fn dequantize_row(ty: GgmlType, src: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F32 => {
            for (o, b) in out.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, b) in out.iter_mut().zip(src.chunks_exact(2)) {
                *o = read_f16(b);
            }
        }
        GgmlType::Q8_0 => {
            for (o, b) in out.chunks_exact_mut(QK).zip(src.chunks_exact(34)) {
                let d = read_f16(b);
                for (v, &q) in o.iter_mut().zip(&b[2..]) {
                    *v = d * (q as i8) as f32;
                }
            }
        }
        GgmlType::Q4_1 => {
            for (o, b) in out.chunks_exact_mut(QK).zip(src.chunks_exact(20)) {
                let (d, m) = (read_f16(b), read_f16(&b[2..]));
                for j in 0..QK / 2 {
                    o[j] = d * (b[4 + j] & 0x0f) as f32 + m;
                    o[j + QK / 2] = d * (b[4 + j] >> 4) as f32 + m;
                }
            }
        }
        other => {
            unreachable!("dequantize_row called with unsupported type {other:?} (checked at load)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_roundtrip_is_close() {
        let x: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.13)
            .collect();
        let mut q = vec![Q8Block::default(); 2];
        quantize_q8(&x, &mut q);
        for (i, v) in x.iter().enumerate() {
            let b = &q[i / QK];
            assert!(
                (b.d * b.qs[i % QK] as f32 - v).abs() <= b.d * 0.51 + 1e-3,
                "{i}"
            );
        }
        let sum: i32 = q[0].qs.iter().map(|&v| v as i32).sum();
        assert!((q[0].s - q[0].d * sum as f32).abs() < 1e-2);
    }

    #[test]
    fn q4_1_dequant_follows_the_nibble_layout() {
        // d = 1.0, m = -8.0, element j = low nibble of byte j, element j+16 = high nibble.
        let mut b = vec![0u8; 20];
        b[0..2].copy_from_slice(&f16::from_f32(1.0).to_bits().to_le_bytes());
        b[2..4].copy_from_slice(&f16::from_f32(-8.0).to_bits().to_le_bytes());
        for j in 0..16 {
            b[4 + j] = (j as u8) | ((15 - j as u8) << 4);
        }
        let mut out = [0f32; 32];
        dequantize_row(GgmlType::Q4_1, &b, &mut out);
        for j in 0..16 {
            assert_eq!(out[j], j as f32 - 8.0);
            assert_eq!(out[j + 16], (15 - j) as f32 - 8.0);
        }
    }
}
