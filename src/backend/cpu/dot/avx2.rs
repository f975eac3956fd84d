//! AVX2 kernels (with FMA and F16C): a tile is 8 weight rows, one ymm lane each, against
//! up to 4 activation rows. Per 32-element block the integer dots use `vpmaddubsw` and
//! `vpmaddwd` (the llama.cpp AVX2 idiom; no i16 saturation is possible with these
//! operands), a transpose-sum gives one exact i32 per row, and the f32 update follows
//! the canonical sequence of the portable kernels lane by lane (no FMA), so results are
//! bit-identical to them. Also: the f16 attention dot/axpy and the Q8
//! activation quantizer, bit-identical to the portable ones too.

use std::arch::x86_64::*;

use super::super::quant::{Q8Block, QK};
use super::{lane_rows, QType, Tiles};

/// The AVX2 tile kernels.
pub struct Avx2;

impl Tiles for Avx2 {
    const LANES: usize = 8;
    const MAX_T: usize = 4;

    unsafe fn tile<const T: usize>(
        ty: QType,
        w: *const u8,
        rb: usize,
        n: usize,
        a: [*const Q8Block; T],
        nb: usize,
        out: [*mut f32; T],
    ) {
        // SAFETY: `Isa::Avx2` (the only user) exists only after detecting these
        // features; pointers per the trait contract.
        unsafe {
            match ty {
                QType::Q4_1 => q4_1::<T>(w, rb, n, a, nb, out),
                QType::Q8_0 => q8_0::<T>(w, rb, n, a, nb, out),
            }
        }
    }
}

/// `lane_rows` for 8 lanes, with the offsets in a vector for gathers.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn lanes(w: *const u8, rb: usize, n: usize) -> (__m256i, [*const u8; 8]) {
    // SAFETY: the caller passes n >= 1 rows of rb bytes.
    let (off, rows) = unsafe { lane_rows::<8>(w, rb, n) };
    // SAFETY: reads the 32 bytes of `off`.
    (
        unsafe { _mm256_loadu_si256(off.as_ptr() as *const __m256i) },
        rows,
    )
}

/// The two f16 at the start of each lane's 32 bits (`d` low, `m` high) as f32 vectors.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn split_f16_pairs(dm: __m256i) -> (__m256, __m256) {
    let d = _mm256_and_si256(dm, _mm256_set1_epi32(0xffff));
    let m = _mm256_srli_epi32::<16>(dm);
    // Per 128-bit lane [d d d d m m m m]; then qwords reordered to [d(8) | m(8)].
    let pk = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(d, m));
    (
        _mm256_cvtph_ps(_mm256_castsi256_si128(pk)),
        _mm256_cvtph_ps(_mm256_extracti128_si256::<1>(pk)),
    )
}

/// Sums each 128-bit lane of four vectors: element `4j + g` of the result is the sum of
/// the four i32 in lane `j` of `p[g]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tsum(p: [__m256i; 4]) -> __m256i {
    let s01 = _mm256_add_epi32(
        _mm256_unpacklo_epi32(p[0], p[1]),
        _mm256_unpackhi_epi32(p[0], p[1]),
    );
    let s23 = _mm256_add_epi32(
        _mm256_unpacklo_epi32(p[2], p[3]),
        _mm256_unpackhi_epi32(p[2], p[3]),
    );
    _mm256_add_epi32(
        _mm256_unpacklo_epi64(s01, s23),
        _mm256_unpackhi_epi64(s01, s23),
    )
}

/// Sums each of eight vectors: element `r` of the result is the sum of `p[r]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum8(p: [__m256i; 8]) -> __m256i {
    let h01 = _mm256_hadd_epi32(p[0], p[1]);
    let h23 = _mm256_hadd_epi32(p[2], p[3]);
    let h45 = _mm256_hadd_epi32(p[4], p[5]);
    let h67 = _mm256_hadd_epi32(p[6], p[7]);
    // [sum of lane 0 of p0..p3 | sum of lane 1 of p0..p3], likewise for p4..p7.
    let h0123 = _mm256_hadd_epi32(h01, h23);
    let h4567 = _mm256_hadd_epi32(h45, h67);
    _mm256_add_epi32(
        _mm256_permute2x128_si256::<0x20>(h0123, h4567),
        _mm256_permute2x128_si256::<0x31>(h0123, h4567),
    )
}

/// Prefetches the `bytes` bytes at `p` into L1. Decode streams each weight byte from
/// DRAM once, and a tile reads 8 rows side by side, a pattern the hardware
/// prefetchers follow poorly; so each block step of a tile fetches its share of the next
/// tile (the following `8 * row` bytes, contiguous). Prefetches never fault, so
/// the address may run past the matrix (hence `wrapping_add`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn prefetch(p: *const u8, bytes: usize) {
    for off in (0..bytes).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off) as *const i8);
    }
}

/// Stores the first `n` lanes of `v`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn store(out: *mut f32, n: usize, v: __m256) {
    // SAFETY: the caller owns `n` floats at `out`.
    unsafe {
        if n == 8 {
            _mm256_storeu_ps(out, v);
        } else {
            let mut tmp = [0f32; 8];
            _mm256_storeu_ps(tmp.as_mut_ptr(), v);
            std::ptr::copy_nonoverlapping(tmp.as_ptr(), out, n);
        }
    }
}

/// # Safety
/// As `Tiles::tile`, with the CPU features of this module.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_1<const T: usize>(
    w: *const u8,
    rb: usize,
    n: usize,
    a: [*const Q8Block; T],
    nb: usize,
    out: [*mut f32; T],
) {
    // SAFETY: every access is inside the `n` rows of `nb` blocks, the `T` activation
    // rows of `nb` blocks, and the `T` outputs of `n` floats the caller passed.
    unsafe {
        let (idx, rows) = lanes(w, rb, n);
        let mask = _mm256_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        let zero = _mm256_setzero_si256();
        let mut acc = [_mm256_setzero_ps(); T];
        let next = w.wrapping_add(n * rb);
        for b in 0..nb {
            let off = b * 20;
            prefetch(next.wrapping_add(8 * off), 8 * 20);
            let dm = _mm256_i32gather_epi32::<1>(w.add(off) as *const i32, idx);
            let (dw, mw) = split_f16_pairs(dm);
            // Group g holds rows g and 4 + g, so `tsum` yields rows in order.
            let mut lo = [zero; 4];
            let mut hi = [zero; 4];
            for g in 0..4 {
                let z = _mm256_loadu2_m128i(
                    rows[4 + g].add(off + 4) as *const __m128i,
                    rows[g].add(off + 4) as *const __m128i,
                );
                lo[g] = _mm256_and_si256(z, mask);
                hi[g] = _mm256_and_si256(_mm256_srli_epi16::<4>(z), mask);
            }
            for t in 0..T {
                let y = &*a[t].add(b);
                let qs = y.qs.as_ptr() as *const __m128i;
                let ylo = _mm256_broadcastsi128_si256(_mm_load_si128(qs));
                let yhi = _mm256_broadcastsi128_si256(_mm_load_si128(qs.add(1)));
                let mut p = [zero; 4];
                for g in 0..4 {
                    let s = _mm256_add_epi16(
                        _mm256_maddubs_epi16(lo[g], ylo),
                        _mm256_maddubs_epi16(hi[g], yhi),
                    );
                    p[g] = _mm256_madd_epi16(s, ones);
                }
                let isum = _mm256_cvtepi32_ps(tsum(p));
                let term = _mm256_add_ps(
                    _mm256_mul_ps(_mm256_mul_ps(dw, _mm256_set1_ps(y.d)), isum),
                    _mm256_mul_ps(mw, _mm256_set1_ps(y.s)),
                );
                acc[t] = _mm256_add_ps(acc[t], term);
            }
        }
        for t in 0..T {
            store(out[t], n, acc[t]);
        }
    }
}

/// # Safety
/// As `Tiles::tile`, with the CPU features of this module.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0<const T: usize>(
    w: *const u8,
    rb: usize,
    n: usize,
    a: [*const Q8Block; T],
    nb: usize,
    out: [*mut f32; T],
) {
    // SAFETY: as in `q4_1`.
    unsafe {
        let (idx, rows) = lanes(w, rb, n);
        let ones = _mm256_set1_epi16(1);
        let zero = _mm256_setzero_si256();
        let mut acc = [_mm256_setzero_ps(); T];
        let next = w.wrapping_add(n * rb);
        for b in 0..nb {
            let off = b * 34;
            prefetch(next.wrapping_add(8 * off), 8 * 34);
            let dm = _mm256_i32gather_epi32::<1>(w.add(off) as *const i32, idx);
            let (dw, _) = split_f16_pairs(dm);
            let mut x = [zero; 8];
            for r in 0..8 {
                x[r] = _mm256_loadu_si256(rows[r].add(off + 2) as *const __m256i);
            }
            for t in 0..T {
                let y = &*a[t].add(b);
                let yv = _mm256_load_si256(y.qs.as_ptr() as *const __m256i);
                let mut p = [zero; 8];
                for r in 0..8 {
                    // |w| · (y with w's sign): u8 × i8 as vpmaddubsw needs.
                    let prod = _mm256_maddubs_epi16(
                        _mm256_sign_epi8(x[r], x[r]),
                        _mm256_sign_epi8(yv, x[r]),
                    );
                    p[r] = _mm256_madd_epi16(prod, ones);
                }
                let isum = _mm256_cvtepi32_ps(hsum8(p));
                let term = _mm256_mul_ps(_mm256_mul_ps(dw, _mm256_set1_ps(y.d)), isum);
                acc[t] = _mm256_add_ps(acc[t], term);
            }
        }
        for t in 0..T {
            store(out[t], n, acc[t]);
        }
    }
}

/// The canonical 16-lane f16 dot (see `dot_f16_f16`): lanes 0..8 and 8..16 in two ymm.
///
/// # Safety
/// Needs avx2, fma, f16c; equal lengths, a multiple of 16.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_f16(k: &[u16], q: &[u16]) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 2];
    for i in (0..k.len()).step_by(16) {
        for (h, a) in acc.iter_mut().enumerate() {
            // SAFETY: i + 16 <= len for both slices.
            let (x, y) = unsafe {
                (
                    _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(i + 8 * h) as *const __m128i)),
                    _mm256_cvtph_ps(_mm_loadu_si128(q.as_ptr().add(i + 8 * h) as *const __m128i)),
                )
            };
            *a = _mm256_add_ps(*a, _mm256_mul_ps(x, y));
        }
    }
    let s8 = _mm256_add_ps(acc[0], acc[1]);
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)))
}

/// `out[i] += w * v[i]` (multiply, then add) over the whole multiples of 8; returns how
/// many elements it did.
///
/// # Safety
/// Needs avx2, fma, f16c; equal lengths.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn axpy_f16(out: &mut [f32], w: f32, v: &[u16]) -> usize {
    let wv = _mm256_set1_ps(w);
    let n = v.len() / 8 * 8;
    for i in (0..n).step_by(8) {
        // SAFETY: i + 8 <= n <= len for both slices.
        unsafe {
            let x = _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(i) as *const __m128i));
            let o = _mm256_loadu_ps(out.as_ptr().add(i));
            _mm256_storeu_ps(
                out.as_mut_ptr().add(i),
                _mm256_add_ps(o, _mm256_mul_ps(wv, x)),
            );
        }
    }
    n
}

/// `x` rounded to f16 and back (round to nearest even, like `half`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn round_f16(x: f32) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(
        _mm_set_ss(x),
    )))
}

/// `round_ties_even(v * id)` clamped to ±127, as i32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn round_clamp(v: __m256, id: __m256) -> __m256i {
    let r =
        _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(v, id));
    let (lo, hi) = (_mm256_set1_epi32(-127), _mm256_set1_epi32(127));
    _mm256_max_epi32(_mm256_min_epi32(_mm256_cvtps_epi32(r), hi), lo)
}

/// # Safety
/// Needs avx2, fma, f16c; `x.len()` a multiple of 32, `out` long enough.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_q8(x: &[f32], out: &mut [Q8Block]) {
    let sign = _mm256_set1_ps(-0.0);
    for (chunk, blk) in x.chunks_exact(QK).zip(out.iter_mut()) {
        // SAFETY: a chunk holds 32 floats; `qs` holds 32 bytes.
        unsafe {
            let p = chunk.as_ptr();
            let v = [
                _mm256_loadu_ps(p),
                _mm256_loadu_ps(p.add(8)),
                _mm256_loadu_ps(p.add(16)),
                _mm256_loadu_ps(p.add(24)),
            ];
            let abs = |v: __m256| _mm256_andnot_ps(sign, v);
            let m = _mm256_max_ps(
                _mm256_max_ps(abs(v[0]), abs(v[1])),
                _mm256_max_ps(abs(v[2]), abs(v[3])),
            );
            let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
            let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
            let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
            let d = amax / 127.0;
            let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
            let i = [
                round_clamp(v[0], id),
                round_clamp(v[1], id),
                round_clamp(v[2], id),
                round_clamp(v[3], id),
            ];
            let s = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
            let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
            let sum = _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s)));
            // Packing interleaves 128-bit lanes; the permute restores element order.
            let packed = _mm256_packs_epi16(
                _mm256_packs_epi32(i[0], i[1]),
                _mm256_packs_epi32(i[2], i[3]),
            );
            let perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
            let packed = _mm256_permutevar8x32_epi32(packed, perm);
            _mm256_storeu_si256(blk.qs.as_mut_ptr() as *mut __m256i, packed);
            blk.d = round_f16(d);
            blk.s = round_f16(d * sum as f32);
            blk.sum = sum;
        }
    }
}
