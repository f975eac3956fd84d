//! The K-quant super-block formats of GGUF: Q2_K, Q3_K, Q4_K, Q5_K and Q6_K, 256
//! elements per block. Ports of ggml's `dequantize_row_q*_K` (`ggml-quants.c`, block
//! layouts from `ggml-common.h`) and of the scalar dot products with Q8_K activations
//! (`ggml-cpu/quants.c` `ggml_vec_dot_q*_K_q8_K_generic`), float operations in the same
//! order. Public operations: `dequantize_q{2..6}_k` (one row of whole blocks into f32)
//! and `dot_q{2..6}_k` (one row · Q8_K activations).
//!
//! Every function walks `chunks_exact` of the row, so it never reads past its slice;
//! a trailing partial block is ignored (callers pass whole rows, checked at load).

use super::q8k::{Q8KBlock, QK_K};
use super::read_f16;

pub(crate) const Q2_K_BYTES: usize = 84;
pub(crate) const Q3_K_BYTES: usize = 110;
pub(crate) const Q4_K_BYTES: usize = 144;
pub(crate) const Q5_K_BYTES: usize = 176;
pub(crate) const Q6_K_BYTES: usize = 210;

/// Scale and minimum `j` (0..8) of a Q4_K/Q5_K block: ggml's `get_scale_min_k4` over
/// the 12 packed 6-bit values.
#[inline]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The 16 signed 6-bit scales of a Q3_K block (already minus 32), unpacked from its 12
/// bytes as ggml does with `kmask1` / `kmask2`.
#[inline]
fn q3_k_scales(s: &[u8]) -> [i32; 16] {
    let w = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (k1, k2) = (0x0303_0303u32, 0x0f0f_0f0fu32);
    let (a0, a1, tmp) = (w(0), w(1), w(2));
    let aux = [
        (a0 & k2) | ((tmp & k1) << 4),
        (a1 & k2) | (((tmp >> 2) & k1) << 4),
        ((a0 >> 4) & k2) | (((tmp >> 4) & k1) << 4),
        ((a1 >> 4) & k2) | (((tmp >> 6) & k1) << 4),
    ];
    let mut out = [0i32; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (aux[i / 4] >> (8 * (i % 4))) as u8 as i8 as i32 - 32;
    }
    out
}

/// Q2_K: scales[16] (4-bit scale | 4-bit min), qs[64] (2-bit), f16 d, f16 dmin.
pub fn dequantize_q2_k(src: &[u8], out: &mut [f32]) {
    for (y, b) in out.chunks_exact_mut(QK_K).zip(src.chunks_exact(Q2_K_BYTES)) {
        let (sc, qs) = (&b[..16], &b[16..80]);
        let (d, min) = (read_f16(&b[80..]), read_f16(&b[82..]));
        let mut k = 0;
        for (half, q) in qs.chunks_exact(32).enumerate() {
            for shift in [0, 2, 4, 6] {
                for part in 0..2 {
                    let s = sc[half * 8 + shift + part];
                    let (dl, ml) = (d * (s & 0x0f) as f32, min * (s >> 4) as f32);
                    for &ql in &q[part * 16..part * 16 + 16] {
                        y[k] = dl * ((ql >> shift) & 3) as f32 - ml;
                        k += 1;
                    }
                }
            }
        }
    }
}

/// The 256 values of a Q3_K block as i8 in -4..=3 (low 2 bits, minus 4 where the
/// hmask bit is clear), in element order.
#[inline]
fn q3_k_values(b: &[u8]) -> [i8; QK_K] {
    let (hm, qs) = (&b[..32], &b[32..96]);
    let mut a = [0i8; QK_K];
    let mut m = 1u8;
    let mut k = 0;
    for q in qs.chunks_exact(32) {
        for shift in [0, 2, 4, 6] {
            for l in 0..32 {
                let hi = if hm[l] & m != 0 { 0 } else { 4 };
                a[k] = ((q[l] >> shift) & 3) as i8 - hi;
                k += 1;
            }
            m = m.wrapping_shl(1);
        }
    }
    a
}

/// Q3_K: hmask[32], qs[64] (2-bit), scales[12] (6-bit), f16 d.
pub fn dequantize_q3_k(src: &[u8], out: &mut [f32]) {
    for (y, b) in out.chunks_exact_mut(QK_K).zip(src.chunks_exact(Q3_K_BYTES)) {
        let d_all = read_f16(&b[108..]);
        let scales = q3_k_scales(&b[96..108]);
        let a = q3_k_values(b);
        for (j, (yy, aa)) in y.chunks_exact_mut(16).zip(a.chunks_exact(16)).enumerate() {
            let dl = d_all * scales[j] as f32;
            for (o, &v) in yy.iter_mut().zip(aa) {
                *o = dl * v as f32;
            }
        }
    }
}

/// The 256 values of a Q4_K (`qh = None`) or Q5_K block in element order: 64-element
/// groups take the low nibbles of 32 bytes, then their high nibbles, plus 16 where the
/// group's qh bit is set.
#[inline]
fn q45_k_values(qs: &[u8], qh: Option<&[u8]>) -> [u8; QK_K] {
    let mut a = [0u8; QK_K];
    for (g, q) in qs.chunks_exact(32).enumerate() {
        for l in 0..32 {
            let (h0, h1) = match qh {
                Some(h) => (
                    ((h[l] >> (2 * g)) & 1) << 4,
                    ((h[l] >> (2 * g + 1)) & 1) << 4,
                ),
                None => (0, 0),
            };
            a[64 * g + l] = (q[l] & 0x0f) + h0;
            a[64 * g + 32 + l] = (q[l] >> 4) + h1;
        }
    }
    a
}

/// Q4_K / Q5_K dequantization: `x = d * sc_j * q - dmin * m_j` per 32 elements.
fn dequantize_q45_k(src: &[u8], out: &mut [f32], bytes: usize, five: bool) {
    for (y, b) in out.chunks_exact_mut(QK_K).zip(src.chunks_exact(bytes)) {
        let (d, min) = (read_f16(b), read_f16(&b[2..]));
        let a = if five {
            q45_k_values(&b[48..176], Some(&b[16..48]))
        } else {
            q45_k_values(&b[16..144], None)
        };
        for (j, (yy, aa)) in y.chunks_exact_mut(32).zip(a.chunks_exact(32)).enumerate() {
            let (sc, m) = scale_min_k4(j, &b[4..16]);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            for (o, &v) in yy.iter_mut().zip(aa) {
                *o = d1 * v as f32 - m1;
            }
        }
    }
}

/// Q4_K: f16 d, f16 dmin, scales[12] (6-bit scales and mins), qs[128] (4-bit).
pub fn dequantize_q4_k(src: &[u8], out: &mut [f32]) {
    dequantize_q45_k(src, out, Q4_K_BYTES, false);
}

/// Q5_K: f16 d, f16 dmin, scales[12], qh[32] (fifth bits), qs[128] (4-bit).
pub fn dequantize_q5_k(src: &[u8], out: &mut [f32]) {
    dequantize_q45_k(src, out, Q5_K_BYTES, true);
}

/// The 256 values of a Q6_K block in element order, in -32..=31.
#[inline]
fn q6_k_values(b: &[u8]) -> [i8; QK_K] {
    let mut a = [0i8; QK_K];
    for n in 0..2 {
        let (ql, qh) = (&b[64 * n..64 * n + 64], &b[128 + 32 * n..160 + 32 * n]);
        let y = &mut a[128 * n..128 * n + 128];
        for l in 0..32 {
            y[l] = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i8 - 32;
            y[l + 32] = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            y[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            y[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    a
}

/// Q6_K: ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (i8), f16 d;
/// `x = d * scale_j * q` per 16 elements.
pub fn dequantize_q6_k(src: &[u8], out: &mut [f32]) {
    for (y, b) in out.chunks_exact_mut(QK_K).zip(src.chunks_exact(Q6_K_BYTES)) {
        let d = read_f16(&b[208..]);
        let a = q6_k_values(b);
        for (j, (yy, aa)) in y.chunks_exact_mut(16).zip(a.chunks_exact(16)).enumerate() {
            let sc = (b[192 + j] as i8) as f32;
            for (o, &v) in yy.iter_mut().zip(aa) {
                *o = d * sc * v as f32;
            }
        }
    }
}

/// ggml's 8 integer lanes of the K-quant dots: lane `l` sums `scale(j) * q8 * a` over
/// the elements `16 j + l` and `16 j + 8 + l` of every 16-element group `j`.
#[inline]
fn lanes8<T: Copy + Into<i32>>(
    a: &[T; QK_K],
    q8: &[i8; QK_K],
    scale: impl Fn(usize) -> i32,
) -> [i32; 8] {
    let mut aux = [0i32; 8];
    for j in 0..QK_K / 16 {
        let s = scale(j);
        for l in 0..8 {
            aux[l] += s * (q8[16 * j + l] as i32 * a[16 * j + l].into());
            aux[l] += s * (q8[16 * j + 8 + l] as i32 * a[16 * j + 8 + l].into());
        }
    }
    aux
}

/// Q2_K row · Q8_K activations (`ggml_vec_dot_q2_K_q8_K_generic`).
pub fn dot_q2_k(w: &[u8], act: &[Q8KBlock]) -> f32 {
    let mut sumf = 0f32;
    for (b, y) in w.chunks_exact(Q2_K_BYTES).zip(act) {
        let (sc, qs) = (&b[..16], &b[16..80]);
        let summs: i32 = (0..16)
            .map(|j| y.bsums[j] as i32 * (sc[j] >> 4) as i32)
            .sum();
        let dall = y.d * read_f16(&b[80..]);
        let dmin = y.d * read_f16(&b[82..]);
        let mut isum = 0i32;
        let mut k = 0;
        for (half, q) in qs.chunks_exact(32).enumerate() {
            for shift in [0, 2, 4, 6] {
                for part in 0..2 {
                    let d = (sc[half * 8 + shift + part] & 0x0f) as i32;
                    let isuml: i32 = (0..16)
                        .map(|l| y.qs[k + l] as i32 * ((q[part * 16 + l] >> shift) & 3) as i32)
                        .sum();
                    isum += d * isuml;
                    k += 16;
                }
            }
        }
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

/// Q3_K row · Q8_K activations (`ggml_vec_dot_q3_K_q8_K_generic`).
pub fn dot_q3_k(w: &[u8], act: &[Q8KBlock]) -> f32 {
    let mut sums = [0f32; 8];
    for (b, y) in w.chunks_exact(Q3_K_BYTES).zip(act) {
        let scales = q3_k_scales(&b[96..108]);
        let aux = lanes8(&q3_k_values(b), &y.qs, |j| scales[j]);
        let d = read_f16(&b[108..]) * y.d;
        for (s, &v) in sums.iter_mut().zip(&aux) {
            *s += d * v as f32;
        }
    }
    sums.iter().fold(0f32, |acc, &s| acc + s)
}

/// Q4_K / Q5_K row · Q8_K activations (`ggml_vec_dot_q4_K_q8_K_generic` and q5_K).
fn dot_q45_k(w: &[u8], act: &[Q8KBlock], bytes: usize, five: bool) -> f32 {
    let mut sums = [0f32; 8];
    let mut sumf = 0f32;
    for (b, y) in w.chunks_exact(bytes).zip(act) {
        let a = if five {
            q45_k_values(&b[48..176], Some(&b[16..48]))
        } else {
            q45_k_values(&b[16..144], None)
        };
        let sm: [(u8, u8); 8] = std::array::from_fn(|j| scale_min_k4(j, &b[4..16]));
        let sumi: i32 = (0..QK_K / 16)
            .map(|j| y.bsums[j] as i32 * sm[j / 2].1 as i32)
            .sum();
        let aux = lanes8(&a, &y.qs, |j| sm[j / 2].0 as i32);
        let d = read_f16(b) * y.d;
        for (s, &v) in sums.iter_mut().zip(&aux) {
            *s += d * v as f32;
        }
        let dmin = read_f16(&b[2..]) * y.d;
        sumf -= dmin * sumi as f32;
    }
    sums.iter().fold(sumf, |acc, &s| acc + s)
}

/// Q4_K row · Q8_K activations.
pub fn dot_q4_k(w: &[u8], act: &[Q8KBlock]) -> f32 {
    dot_q45_k(w, act, Q4_K_BYTES, false)
}

/// Q5_K row · Q8_K activations.
pub fn dot_q5_k(w: &[u8], act: &[Q8KBlock]) -> f32 {
    dot_q45_k(w, act, Q5_K_BYTES, true)
}

/// Q6_K row · Q8_K activations (`ggml_vec_dot_q6_K_q8_K_generic`).
pub fn dot_q6_k(w: &[u8], act: &[Q8KBlock]) -> f32 {
    let mut sums = [0f32; 8];
    for (b, y) in w.chunks_exact(Q6_K_BYTES).zip(act) {
        let aux = lanes8(&q6_k_values(b), &y.qs, |j| (b[192 + j] as i8) as i32);
        let d = read_f16(&b[208..]) * y.d;
        for (s, &v) in sums.iter_mut().zip(&aux) {
            *s += d * v as f32;
        }
    }
    sums.iter().fold(0f32, |acc, &s| acc + s)
}
