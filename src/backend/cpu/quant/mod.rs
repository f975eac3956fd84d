//! Block formats of the CPU backend. Weight rows: every GGUF type rill computes with,
//! dequantized exactly as ggml's reference code does (`legacy`: Q4_0..Q8_0, `kquants`:
//! Q2_K..Q6_K, `float`: F32/F16/BF16). Activation rows: the format each weight type
//! multiplies with (ggml's `vec_dot_type`): Q8 blocks of 32 (as llama.cpp's
//! `quantize_row_q8_0` / `quantize_row_q8_1`: scale rounded through f16, values rounded
//! to nearest-even like its AVX2 path), Q8_K blocks of 256 (`q8k`), f16 or bf16.
//! Public operations: `quantize_q8` (vector code of the best ISA, bit-identical to
//! `quantize_q8_portable`), `dequantize_row`, `vec_dot_type`, `f16_to_f32`, `read_f16`.

pub mod float;
pub mod kquants;
pub mod legacy;
pub mod q8k;

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

/// The activation format a weight type multiplies with (ggml's `vec_dot_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActFormat {
    /// The f32 rows as they are (F32 weights).
    F32,
    /// f16 bits (F16 weights).
    F16,
    /// bf16 bits (BF16 weights).
    BF16,
    /// [`Q8Block`]s of 32: Q8_0 (`d`) for Q4_0/Q5_0/Q8_0, Q8_1 (`d`, `s`) for Q4_1/Q5_1.
    Q8,
    /// [`q8k::Q8KBlock`]s of 256 (every K-quant).
    Q8K,
}

/// The activation format of weight type `ty`, `None` for types the backend does not
/// compute with.
pub fn vec_dot_type(ty: GgmlType) -> Option<ActFormat> {
    use GgmlType as G;
    Some(match ty {
        G::F32 => ActFormat::F32,
        G::F16 => ActFormat::F16,
        G::BF16 => ActFormat::BF16,
        G::Q4_0 | G::Q4_1 | G::Q5_0 | G::Q5_1 | G::Q8_0 => ActFormat::Q8,
        G::Q2K | G::Q3K | G::Q4K | G::Q5K | G::Q6K => ActFormat::Q8K,
        G::Q8_1 | G::Q8K => return None,
    })
}

/// Dequantizes one row of type `ty` from `src` (whole blocks) into `out`, exactly as
/// ggml's `to_float` does. Reads at most `src.len()` bytes and writes at most
/// `out.len()` floats; the caller passes matching whole rows. Types the backend does not
/// compute with (refused at load) leave `out` untouched.
pub fn dequantize_row(ty: GgmlType, src: &[u8], out: &mut [f32]) {
    use GgmlType as G;
    match ty {
        G::F32 => float::dequantize_f32(src, out),
        G::F16 => float::dequantize_f16(src, out),
        G::BF16 => float::dequantize_bf16(src, out),
        G::Q4_0 => legacy::dequantize_q4_0(src, out),
        G::Q4_1 => legacy::dequantize_q4_1(src, out),
        G::Q5_0 => legacy::dequantize_q5_0(src, out),
        G::Q5_1 => legacy::dequantize_q5_1(src, out),
        G::Q8_0 => legacy::dequantize_q8_0(src, out),
        G::Q2K => kquants::dequantize_q2_k(src, out),
        G::Q3K => kquants::dequantize_q3_k(src, out),
        G::Q4K => kquants::dequantize_q4_k(src, out),
        G::Q5K => kquants::dequantize_q5_k(src, out),
        G::Q6K => kquants::dequantize_q6_k(src, out),
        G::Q8_1 | G::Q8K => {}
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
