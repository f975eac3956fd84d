//! The unquantized GGUF formats: F32, F16 and BF16 rows, their conversion to f32, the
//! conversion of f32 activations to F16 / BF16 (ggml's `vec_dot_type` of those weights),
//! and their dot products. Ports of ggml's `ggml_fp16_to_fp32` / `ggml_bf16_to_fp32`,
//! `ggml_compute_fp32_to_bf16` (round to nearest even, NaN kept quiet) and the scalar
//! `ggml_vec_dot_f32` / `_f16` / `_bf16` (products summed in f64, ggml's `ggml_float`).
//! Public operations: `dequantize_f32`, `dequantize_f16`, `dequantize_bf16`,
//! `f32_to_bf16`, `to_f16_row`, `to_bf16_row`, `dot_f32`, `dot_f16`, `dot_bf16`.

use half::f16;

use super::f16_to_f32;

/// Little-endian f32 bytes -> f32.
pub fn dequantize_f32(src: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(src.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// Little-endian f16 bytes -> f32.
pub fn dequantize_f16(src: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(src.chunks_exact(2)) {
        *o = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    }
}

/// bf16 bits -> f32 (the upper half of the f32 bits).
#[inline]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// Little-endian bf16 bytes -> f32.
pub fn dequantize_bf16(src: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(src.chunks_exact(2)) {
        *o = bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    }
}

/// f32 -> bf16 bits as ggml rounds: nearest, ties to even; NaN stays a quiet NaN.
#[inline]
pub fn f32_to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
}

/// Activations as f16 bits (round to nearest even, as F16C's `vcvtps2ph` does).
pub fn to_f16_row(x: &[f32], out: &mut [u16]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f16::from_f32(v).to_bits();
    }
}

/// Activations as bf16 bits.
pub fn to_bf16_row(x: &[f32], out: &mut [u16]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f32_to_bf16(v);
    }
}

/// F32 row · f32 activations: products in f32, summed in f64.
pub fn dot_f32(w: &[u8], x: &[f32]) -> f32 {
    let s: f64 = w
        .chunks_exact(4)
        .zip(x)
        .map(|(b, &v)| (f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * v) as f64)
        .sum();
    s as f32
}

/// F16 row · f16 activations (bits): products (exact in f32) summed in f64.
pub fn dot_f16(w: &[u8], x: &[u16]) -> f32 {
    dot_half(w, x, f16_to_f32)
}

/// BF16 row · bf16 activations (bits): products (exact in f32) summed in f64.
pub fn dot_bf16(w: &[u8], x: &[u16]) -> f32 {
    dot_half(w, x, bf16_to_f32)
}

/// A row of 16-bit floats · activations in the same format, widened by `to_f32`.
fn dot_half(w: &[u8], x: &[u16], to_f32: impl Fn(u16) -> f32) -> f32 {
    let s: f64 = w
        .chunks_exact(2)
        .zip(x)
        .map(|(b, &v)| (to_f32(u16::from_le_bytes([b[0], b[1]])) * to_f32(v)) as f64)
        .sum();
    s as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even_and_keeps_nan() {
        // 1 + 2^-8 is halfway between bf16 1.0 and 1 + 2^-7: ties to even (1.0).
        assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up.
        assert_eq!(f32_to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(f32_to_bf16(-2.0), 0xc000);
        let nan = f32_to_bf16(f32::from_bits(0x7f80_0001));
        assert!(bf16_to_f32(nan).is_nan());
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
    }
}
