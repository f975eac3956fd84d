//! AVX2 dots of the K-quants that make up Q4_K_M files (Q4_K and Q6_K rows · Q8_K
//! activations), bit-identical to the portable ports of ggml's
//! `ggml_vec_dot_q4_K_q8_K_generic` / `_q6_K_` (`quant::kquants`). Those keep 8 i32
//! lanes per row, lane `l` summing elements `16 j + l` and `16 j + 8 + l` of every
//! 16-element group, then 8 f32 lane sums `sums[l] += d * aux[l]`. Here one ymm holds
//! those 8 lanes: bytes are shuffled within each 16-group so that `vpmaddubsw` pairs
//! element `l` with element `l + 8` (integer sums, exact), and the f32 update is the
//! same multiply then add per lane (no FMA); the lane sums are folded in index order as
//! the portable code does. Used on AVX2 and AVX-512 machines.
//! Public operations: `dot_q4_k`, `dot_q6_k` (one row · one activation row).

use std::arch::x86_64::*;

use super::super::quant::kquants::{scale_min_k4, Q4_K_BYTES, Q6_K_BYTES};
use super::super::quant::q8k::{Q8KBlock, QK_K};
use super::super::quant::read_f16;

/// Within each 16 bytes: element `l` then element `l + 8`, for l = 0..8.
#[inline]
#[target_feature(enable = "avx2")]
fn pair_shuffle() -> __m256i {
    _mm256_setr_epi8(
        0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15, 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5,
        13, 6, 14, 7, 15,
    )
}

/// For 32 unsigned weights `a` (< 64) and 32 activations `q`: the 16 i16 sums
/// `a[e] * q[e] + a[e + 8] * q[e + 8]`, group 0 lanes 0..8 in the low half, group 1 in
/// the high half. |sum| <= 2 * 63 * 127, so `vpmaddubsw` never saturates.
#[inline]
#[target_feature(enable = "avx2")]
fn pair_products(a: __m256i, q: __m256i) -> __m256i {
    let s = pair_shuffle();
    _mm256_maddubs_epi16(_mm256_shuffle_epi8(a, s), _mm256_shuffle_epi8(q, s))
}

/// Adds `sc0 * lanes(group 0) + sc1 * lanes(group 1)` of `p` to `aux`.
#[inline]
#[target_feature(enable = "avx2")]
fn add_scaled(aux: __m256i, p: __m256i, sc0: i32, sc1: i32) -> __m256i {
    let g0 = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(p));
    let g1 = _mm256_cvtepi16_epi32(_mm256_extracti128_si256::<1>(p));
    let t = _mm256_add_epi32(
        _mm256_mullo_epi32(g0, _mm256_set1_epi32(sc0)),
        _mm256_mullo_epi32(g1, _mm256_set1_epi32(sc1)),
    );
    _mm256_add_epi32(aux, t)
}

/// `sums + d * aux` lane by lane (multiply, then add).
#[inline]
#[target_feature(enable = "avx2")]
fn update(sums: __m256, d: f32, aux: __m256i) -> __m256 {
    _mm256_add_ps(
        sums,
        _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(aux)),
    )
}

/// `start + sums[0] + ... + sums[7]`, in that order.
#[inline]
#[target_feature(enable = "avx2")]
fn fold(start: f32, sums: __m256) -> f32 {
    let mut s = [0f32; 8];
    // SAFETY: `s` holds 8 floats.
    unsafe { _mm256_storeu_ps(s.as_mut_ptr(), sums) };
    s.iter().fold(start, |acc, &v| acc + v)
}

/// 32 bytes at `p`.
///
/// # Safety
/// `p..p + 32` is readable.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load(p: *const u8) -> __m256i {
    // SAFETY: per the caller.
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// Q4_K row · Q8_K activations, the bits of `quant::kquants::dot_q4_k`.
///
/// # Safety
/// The CPU supports AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn dot_q4_k(w: &[u8], act: &[Q8KBlock]) -> f32 {
    let m4 = _mm256_set1_epi8(0x0f);
    let mut sums = _mm256_setzero_ps();
    let mut sumf = 0f32;
    for (b, y) in w.chunks_exact(Q4_K_BYTES).zip(act) {
        let sm: [(u8, u8); 8] = std::array::from_fn(|j| scale_min_k4(j, &b[4..16]));
        let sumi: i32 = (0..QK_K / 16)
            .map(|j| y.bsums[j] as i32 * sm[j / 2].1 as i32)
            .sum();
        let mut aux = _mm256_setzero_si256();
        for g in 0..4 {
            // SAFETY: byte 16 + 32 g + 32 <= 144 of the block; 64 g + 64 <= 256 qs.
            let (qs, q_lo, q_hi) = unsafe {
                (
                    load(b.as_ptr().add(16 + 32 * g)),
                    load(y.qs.as_ptr().add(64 * g) as *const u8),
                    load(y.qs.as_ptr().add(64 * g + 32) as *const u8),
                )
            };
            let lo = _mm256_and_si256(qs, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(qs), m4);
            let (s_lo, s_hi) = (sm[2 * g].0 as i32, sm[2 * g + 1].0 as i32);
            aux = add_scaled(aux, pair_products(lo, q_lo), s_lo, s_lo);
            aux = add_scaled(aux, pair_products(hi, q_hi), s_hi, s_hi);
        }
        sums = update(sums, read_f16(b) * y.d, aux);
        let dmin = read_f16(&b[2..]) * y.d;
        sumf -= dmin * sumi as f32;
    }
    fold(sumf, sums)
}

/// Q6_K row · Q8_K activations, the bits of `quant::kquants::dot_q6_k`. The 6-bit
/// values are signed (-32..31): `vpmaddubsw` takes |a| and the activations with a's sign.
///
/// # Safety
/// The CPU supports AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn dot_q6_k(w: &[u8], act: &[Q8KBlock]) -> f32 {
    let (m4, m2, k32) = (
        _mm256_set1_epi8(0x0f),
        _mm256_set1_epi8(0x03),
        _mm256_set1_epi8(32),
    );
    let mut sums = _mm256_setzero_ps();
    for (b, y) in w.chunks_exact(Q6_K_BYTES).zip(act) {
        let sc = |j: usize| (b[192 + j] as i8) as i32;
        let mut aux = _mm256_setzero_si256();
        for n in 0..2 {
            // SAFETY: ql bytes 64 n .. 64 n + 64 and qh bytes 128 + 32 n .. + 32 lie in
            // the 210-byte block.
            let (ql0, ql1, h) = unsafe {
                (
                    load(b.as_ptr().add(64 * n)),
                    load(b.as_ptr().add(64 * n + 32)),
                    load(b.as_ptr().add(128 + 32 * n)),
                )
            };
            let hbits = |shift: i32| {
                let v = match shift {
                    0 => h,
                    2 => _mm256_srli_epi16::<2>(h),
                    4 => _mm256_srli_epi16::<4>(h),
                    _ => _mm256_srli_epi16::<6>(h),
                };
                _mm256_slli_epi16::<4>(_mm256_and_si256(v, m2))
            };
            let vals = [
                _mm256_or_si256(_mm256_and_si256(ql0, m4), hbits(0)),
                _mm256_or_si256(_mm256_and_si256(ql1, m4), hbits(2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4), hbits(4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4), hbits(6)),
            ];
            for (k, v) in vals.into_iter().enumerate() {
                let a = _mm256_sub_epi8(v, k32);
                let e = 128 * n + 32 * k;
                // SAFETY: e + 32 <= 256 activation values.
                let q = unsafe { load(y.qs.as_ptr().add(e) as *const u8) };
                let p = pair_products(_mm256_sign_epi8(a, a), _mm256_sign_epi8(q, a));
                aux = add_scaled(aux, p, sc(e / 16), sc(e / 16 + 1));
            }
        }
        sums = update(sums, read_f16(&b[208..]) * y.d, aux);
    }
    fold(0.0, sums)
}
