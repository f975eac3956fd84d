//! The 32-element block formats of GGUF ("legacy" quants): Q4_0, Q4_1, Q5_0, Q5_1 and
//! Q8_0. Ports of ggml's reference code (`ggml-quants.c` `dequantize_row_*`, block
//! layouts from `ggml-common.h`) and of its scalar dot products with Q8 activations
//! (`ggml-cpu/quants.c` `ggml_vec_dot_*_generic`) for the formats that have no SIMD
//! kernel here (Q4_1 · Q8_1 and Q8_0 · Q8_0 live in `dot`, which tiles them per ISA).
//! Public operations: `dequantize_*` (one row of whole blocks into f32) and `dot_q4_0`,
//! `dot_q5_0` (activations in Q8_0), `dot_q5_1` (activations in Q8_1).
//!
//! Every function walks `chunks_exact` of the row, so it never reads past its slice;
//! a trailing partial block is ignored (callers pass whole rows, checked at load).

use super::{read_f16, Q8Block, QK};

/// Bytes of one block of each format.
pub(crate) const Q4_0_BYTES: usize = 18;
pub(crate) const Q4_1_BYTES: usize = 20;
pub(crate) const Q5_0_BYTES: usize = 22;
pub(crate) const Q5_1_BYTES: usize = 24;
pub(crate) const Q8_0_BYTES: usize = 34;

/// Q4_0: f16 `d`, 16 bytes of nibbles; `x = d * (q - 8)`; element `j` is the low
/// nibble of byte `j`, element `j + 16` its high nibble.
pub fn dequantize_q4_0(src: &[u8], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(QK).zip(src.chunks_exact(Q4_0_BYTES)) {
        let d = read_f16(b);
        for j in 0..QK / 2 {
            o[j] = ((b[2 + j] & 0x0f) as i32 - 8) as f32 * d;
            o[j + QK / 2] = ((b[2 + j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// Q4_1: f16 `d`, f16 `m`, 16 bytes of nibbles; `x = d * q + m`.
pub fn dequantize_q4_1(src: &[u8], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(QK).zip(src.chunks_exact(Q4_1_BYTES)) {
        let (d, m) = (read_f16(b), read_f16(&b[2..]));
        for j in 0..QK / 2 {
            o[j] = (b[4 + j] & 0x0f) as f32 * d + m;
            o[j + QK / 2] = (b[4 + j] >> 4) as f32 * d + m;
        }
    }
}

/// The fifth bits of a Q5 block: `qh` little-endian, bit `j` for element `j`.
#[inline]
fn qh(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The two 5-bit values `(j, j + 16)` of a Q5 block whose nibbles start at `qs`.
#[inline]
fn q5_pair(qs: &[u8], h: u32, j: usize) -> (i32, i32) {
    let xh_0 = (((h >> j) << 4) & 0x10) as u8;
    let xh_1 = ((h >> (j + 12)) & 0x10) as u8;
    (((qs[j] & 0x0f) | xh_0) as i32, ((qs[j] >> 4) | xh_1) as i32)
}

/// Q5_0: f16 `d`, 4 bytes of high bits, 16 bytes of nibbles; `x = d * (q - 16)`.
pub fn dequantize_q5_0(src: &[u8], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(QK).zip(src.chunks_exact(Q5_0_BYTES)) {
        let (d, h) = (read_f16(b), qh(&b[2..]));
        for j in 0..QK / 2 {
            let (x0, x1) = q5_pair(&b[6..], h, j);
            o[j] = (x0 - 16) as f32 * d;
            o[j + QK / 2] = (x1 - 16) as f32 * d;
        }
    }
}

/// Q5_1: f16 `d`, f16 `m`, 4 bytes of high bits, 16 bytes of nibbles; `x = d * q + m`.
pub fn dequantize_q5_1(src: &[u8], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(QK).zip(src.chunks_exact(Q5_1_BYTES)) {
        let (d, m, h) = (read_f16(b), read_f16(&b[2..]), qh(&b[4..]));
        for j in 0..QK / 2 {
            let (x0, x1) = q5_pair(&b[8..], h, j);
            o[j] = x0 as f32 * d + m;
            o[j + QK / 2] = x1 as f32 * d + m;
        }
    }
}

/// Q8_0: f16 `d`, 32 signed bytes; `x = q * d`.
pub fn dequantize_q8_0(src: &[u8], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(QK).zip(src.chunks_exact(Q8_0_BYTES)) {
        let d = read_f16(b);
        for (v, &q) in o.iter_mut().zip(&b[2..]) {
            *v = (q as i8) as f32 * d;
        }
    }
}

/// The exact integer dot of 32 unpacked weights with 32 activations (a plain loop the
/// compiler vectorizes; integer sums do not depend on the order).
#[inline]
fn idot(w: &[i8; QK], q: &[i8; QK]) -> i32 {
    w.iter().zip(q).map(|(&a, &b)| a as i32 * b as i32).sum()
}

/// The 32 values of a Q4_0 block (nibbles at `qs`) minus `offset`, in element order.
#[inline]
fn unpack4(qs: &[u8], offset: i8) -> [i8; QK] {
    let mut v = [0i8; QK];
    for j in 0..QK / 2 {
        v[j] = (qs[j] & 0x0f) as i8 - offset;
        v[j + QK / 2] = (qs[j] >> 4) as i8 - offset;
    }
    v
}

/// The 32 values of a Q5 block (nibbles at `qs`, high bits `h`) minus `offset`.
#[inline]
fn unpack5(qs: &[u8], h: u32, offset: i8) -> [i8; QK] {
    let mut v = [0i8; QK];
    for j in 0..QK / 2 {
        let (x0, x1) = q5_pair(qs, h, j);
        v[j] = x0 as i8 - offset;
        v[j + QK / 2] = x1 as i8 - offset;
    }
    v
}

/// Q4_0 row · Q8_0 activations (`ggml_vec_dot_q4_0_q8_0_generic`: `sumi * d_x * d_y`).
pub fn dot_q4_0(w: &[u8], a: &[Q8Block]) -> f32 {
    let mut sumf = 0f32;
    for (b, y) in w.chunks_exact(Q4_0_BYTES).zip(a) {
        let sumi = idot(&unpack4(&b[2..], 8), &y.qs);
        sumf += sumi as f32 * read_f16(b) * y.d;
    }
    sumf
}

/// Q5_0 row · Q8_0 activations (`ggml_vec_dot_q5_0_q8_0_generic`: `(d_x * d_y) * sumi`).
pub fn dot_q5_0(w: &[u8], a: &[Q8Block]) -> f32 {
    let mut sumf = 0f32;
    for (b, y) in w.chunks_exact(Q5_0_BYTES).zip(a) {
        let sumi = idot(&unpack5(&b[6..], qh(&b[2..]), 16), &y.qs);
        sumf += (read_f16(b) * y.d) * sumi as f32;
    }
    sumf
}

/// Q5_1 row · Q8_1 activations (`ggml_vec_dot_q5_1_q8_1_generic`:
/// `(d_x * d_y) * sumi + m_x * s_y`).
pub fn dot_q5_1(w: &[u8], a: &[Q8Block]) -> f32 {
    let mut sumf = 0f32;
    for (b, y) in w.chunks_exact(Q5_1_BYTES).zip(a) {
        let sumi = idot(&unpack5(&b[8..], qh(&b[4..]), 0), &y.qs);
        sumf += (read_f16(b) * y.d) * sumi as f32 + read_f16(&b[2..]) * y.s;
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    fn f16_bytes(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_bits().to_le_bytes()
    }

    #[test]
    fn q5_0_takes_the_fifth_bit_of_element_j_from_bit_j_of_qh() {
        // d = 1; nibbles all 0; qh sets the high bit of elements 0, 17 and 31 only.
        let mut b = vec![0u8; Q5_0_BYTES];
        b[..2].copy_from_slice(&f16_bytes(1.0));
        let h: u32 = 1 | (1 << 17) | (1 << 31);
        b[2..6].copy_from_slice(&h.to_le_bytes());
        let mut out = [0f32; QK];
        dequantize_q5_0(&b, &mut out);
        for (j, &v) in out.iter().enumerate() {
            let want = if [0, 17, 31].contains(&j) { 0.0 } else { -16.0 };
            assert_eq!(v, want, "element {j}");
        }
    }

    #[test]
    fn a_partial_trailing_block_is_not_read() {
        let b = vec![0x11u8; Q4_0_BYTES + 5];
        let mut out = [7f32; QK * 2];
        dequantize_q4_0(&b, &mut out);
        assert!(out[QK..].iter().all(|&v| v == 7.0));
    }
}
