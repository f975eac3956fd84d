//! AVX-512 kernels (F, BW, VL and VNNI): a tile is 16 weight rows, one zmm lane each,
//! against up to 4 activation rows. Per 32-element block the integer dots use
//! `vpdpbusd` (u8 × i8, summed by fours into i32), a transpose-sum gives one exact i32
//! per row, and the f32 update follows the canonical sequence of `dot_q4_1_portable` /
//! `dot_q8_0_portable` lane by lane (separate multiply and add, no FMA), so results are
//! bit-identical to the portable kernels. Also: the f16 attention dot/axpy and the Q8
//! activation quantizer, bit-identical to the portable ones too.

use std::arch::x86_64::*;

use super::super::quant::{Q8Block, QK};
use super::{lane_rows, QType, Tiles};

/// The AVX-512 tile kernels.
pub struct Avx512;

impl Tiles for Avx512 {
    const LANES: usize = 16;
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
        // SAFETY: `Isa::Avx512` (the only user) exists only after detecting these
        // features; pointers per the trait contract.
        unsafe {
            match ty {
                QType::Q4_1 => q4_1::<T>(w, rb, n, a, nb, out),
                QType::Q8_0 => q8_0::<T>(w, rb, n, a, nb, out),
            }
        }
    }
}

/// `lane_rows` for 16 lanes, with the offsets in a vector for gathers.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn lanes(w: *const u8, rb: usize, n: usize) -> (__m512i, [*const u8; 16]) {
    // SAFETY: the caller passes n >= 1 rows of rb bytes.
    let (off, rows) = unsafe { lane_rows::<16>(w, rb, n) };
    // SAFETY: reads the 64 bytes of `off`.
    (
        unsafe { _mm512_loadu_si512(off.as_ptr() as *const _) },
        rows,
    )
}

/// Sums each 128-bit lane of four vectors: element `4j + g` of the result is the sum of
/// the four i32 in lane `j` of `p[g]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tsum(p: [__m512i; 4]) -> __m512i {
    let s01 = _mm512_add_epi32(
        _mm512_unpacklo_epi32(p[0], p[1]),
        _mm512_unpackhi_epi32(p[0], p[1]),
    );
    let s23 = _mm512_add_epi32(
        _mm512_unpacklo_epi32(p[2], p[3]),
        _mm512_unpackhi_epi32(p[2], p[3]),
    );
    _mm512_add_epi32(
        _mm512_unpacklo_epi64(s01, s23),
        _mm512_unpackhi_epi64(s01, s23),
    )
}

/// The 16 bytes at `off` of four rows, in 128-bit lanes 0..3.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn load4x16(r: [*const u8; 4], off: usize) -> __m512i {
    // SAFETY: the caller passes rows with 16 readable bytes at `off`.
    unsafe {
        let z = _mm512_castsi128_si512(_mm_loadu_si128(r[0].add(off) as *const __m128i));
        let z = _mm512_inserti32x4::<1>(z, _mm_loadu_si128(r[1].add(off) as *const __m128i));
        let z = _mm512_inserti32x4::<2>(z, _mm_loadu_si128(r[2].add(off) as *const __m128i));
        _mm512_inserti32x4::<3>(z, _mm_loadu_si128(r[3].add(off) as *const __m128i))
    }
}

/// The 32 bytes at `off` of two rows, in 256-bit halves, plus 128 (as u8): `vpdpbusd`
/// (u8 × i8) then applies to signed weights, corrected by `128 * sum(y)`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn load2x32_biased(p: *const u8, q: *const u8, off: usize) -> __m512i {
    // SAFETY: the caller passes rows with 32 readable bytes at `off`.
    unsafe {
        let lo = _mm512_castsi256_si512(_mm256_loadu_si256(p.add(off) as *const __m256i));
        let z = _mm512_inserti64x4::<1>(lo, _mm256_loadu_si256(q.add(off) as *const __m256i));
        _mm512_xor_si512(z, _mm512_set1_epi8(-128))
    }
}

/// Prefetches the `bytes` bytes at `p` into L1. Decode streams each weight byte from
/// DRAM once, and a tile reads 16 rows side by side, a pattern the hardware
/// prefetchers follow poorly; so each block step of a tile fetches its share of the next
/// tile (the following `16 * row` bytes, contiguous). Prefetches never fault, so
/// the address may run past the matrix (hence `wrapping_add`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn prefetch(p: *const u8, bytes: usize) {
    for off in (0..bytes).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off) as *const i8);
    }
}

/// Stores the first `n` lanes of `v`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn store(out: *mut f32, n: usize, v: __m512) {
    let k = ((1u32 << n) - 1) as u16;
    // SAFETY: the caller owns `n` floats at `out`; masked-off lanes are not touched.
    unsafe { _mm512_mask_storeu_ps(out, k, v) }
}

/// # Safety
/// As `Tiles::tile`, with the CPU features of this module.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
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
        // Lane j of group g holds row 4j + g, so `tsum` yields rows in order.
        let group = |g: usize| [rows[g], rows[4 + g], rows[8 + g], rows[12 + g]];
        let groups = [group(0), group(1), group(2), group(3)];
        let mask = _mm512_set1_epi8(0x0f);
        let zero = _mm512_setzero_si512();
        let mut acc = [_mm512_setzero_ps(); T];
        let next = w.wrapping_add(n * rb);
        for b in 0..nb {
            let off = b * 20;
            prefetch(next.wrapping_add(16 * off), 16 * 20);
            let dm = _mm512_i32gather_epi32::<1>(idx, w.add(off) as *const i32);
            let dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
            let mw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(dm)));
            let mut lo = [zero; 4];
            let mut hi = [zero; 4];
            for g in 0..4 {
                let z = load4x16(groups[g], off + 4);
                lo[g] = _mm512_and_si512(z, mask);
                hi[g] = _mm512_and_si512(_mm512_srli_epi16::<4>(z), mask);
            }
            for t in 0..T {
                let y = &*a[t].add(b);
                let qs = y.qs.as_ptr() as *const __m128i;
                let ylo = _mm512_broadcast_i32x4(_mm_load_si128(qs));
                let yhi = _mm512_broadcast_i32x4(_mm_load_si128(qs.add(1)));
                let mut p = [zero; 4];
                for g in 0..4 {
                    p[g] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, lo[g], ylo), hi[g], yhi);
                }
                let isum = _mm512_cvtepi32_ps(tsum(p));
                let term = _mm512_add_ps(
                    _mm512_mul_ps(_mm512_mul_ps(dw, _mm512_set1_ps(y.d)), isum),
                    _mm512_mul_ps(mw, _mm512_set1_ps(y.s)),
                );
                acc[t] = _mm512_add_ps(acc[t], term);
            }
        }
        for t in 0..T {
            store(out[t], n, acc[t]);
        }
    }
}

/// # Safety
/// As `Tiles::tile`, with the CPU features of this module.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
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
        let zero = _mm512_setzero_si512();
        let mut acc = [_mm512_setzero_ps(); T];
        let next = w.wrapping_add(n * rb);
        for b in 0..nb {
            let off = b * 34;
            prefetch(next.wrapping_add(16 * off), 16 * 34);
            let dm = _mm512_i32gather_epi32::<1>(idx, w.add(off) as *const i32);
            let dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
            // ux[2g] holds rows g and 4+g, ux[2g+1] rows 8+g and 12+g, 256 bits each.
            let mut ux = [zero; 8];
            for g in 0..4 {
                ux[2 * g] = load2x32_biased(rows[g], rows[4 + g], off + 2);
                ux[2 * g + 1] = load2x32_biased(rows[8 + g], rows[12 + g], off + 2);
            }
            for t in 0..T {
                let y = &*a[t].add(b);
                let yv = _mm512_broadcast_i64x4(_mm256_load_si256(y.qs.as_ptr() as *const __m256i));
                let mut p = [zero; 4];
                for g in 0..4 {
                    let pa = _mm512_dpbusd_epi32(zero, ux[2 * g], yv);
                    let pb = _mm512_dpbusd_epi32(zero, ux[2 * g + 1], yv);
                    // Lane j of p[g]: half of row 4j + g's partial sums, plus the other half.
                    p[g] = _mm512_add_epi32(
                        _mm512_shuffle_i32x4::<0b10_00_10_00>(pa, pb),
                        _mm512_shuffle_i32x4::<0b11_01_11_01>(pa, pb),
                    );
                }
                let isum = _mm512_sub_epi32(tsum(p), _mm512_set1_epi32(128 * y.sum));
                let term = _mm512_mul_ps(
                    _mm512_mul_ps(dw, _mm512_set1_ps(y.d)),
                    _mm512_cvtepi32_ps(isum),
                );
                acc[t] = _mm512_add_ps(acc[t], term);
            }
        }
        for t in 0..T {
            store(out[t], n, acc[t]);
        }
    }
}

/// The canonical 16-lane f16 dot (see `dot_f16_f16`): one zmm of lane sums.
///
/// # Safety
/// Needs this module's CPU features; equal lengths, a multiple of 16.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn dot_f16(k: &[u16], q: &[u16]) -> f32 {
    let mut acc = _mm512_setzero_ps();
    for i in (0..k.len()).step_by(16) {
        // SAFETY: i + 16 <= len for both slices.
        let (a, b) = unsafe {
            (
                _mm256_loadu_si256(k.as_ptr().add(i) as *const __m256i),
                _mm256_loadu_si256(q.as_ptr().add(i) as *const __m256i),
            )
        };
        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_cvtph_ps(a), _mm512_cvtph_ps(b)));
    }
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc)));
    let s8 = _mm256_add_ps(_mm512_castps512_ps256(acc), hi);
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)))
}

/// `out[i] += w * v[i]` (multiply, then add) over the whole multiples of 16; returns how
/// many elements it did.
///
/// # Safety
/// Needs this module's CPU features; equal lengths.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn axpy_f16(out: &mut [f32], w: f32, v: &[u16]) -> usize {
    let wv = _mm512_set1_ps(w);
    let n = v.len() / 16 * 16;
    for i in (0..n).step_by(16) {
        // SAFETY: i + 16 <= n <= len for both slices.
        unsafe {
            let x = _mm512_cvtph_ps(_mm256_loadu_si256(v.as_ptr().add(i) as *const __m256i));
            let o = _mm512_loadu_ps(out.as_ptr().add(i));
            _mm512_storeu_ps(
                out.as_mut_ptr().add(i),
                _mm512_add_ps(o, _mm512_mul_ps(wv, x)),
            );
        }
    }
    n
}

/// `x` rounded to f16 and back (round to nearest even, like `half`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn round_f16(x: f32) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(
        _mm_set_ss(x),
    )))
}

/// `round_ties_even(v * id)` clamped to ±127, as i32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn round_clamp(v: __m512, id: __m512) -> __m512i {
    let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(v, id),
    );
    let (lo, hi) = (_mm512_set1_epi32(-127), _mm512_set1_epi32(127));
    _mm512_max_epi32(_mm512_min_epi32(_mm512_cvtps_epi32(r), hi), lo)
}

/// # Safety
/// Needs this module's CPU features; `x.len()` a multiple of 32, `out` long enough.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn quantize_q8(x: &[f32], out: &mut [Q8Block]) {
    for (chunk, blk) in x.chunks_exact(QK).zip(out.iter_mut()) {
        // SAFETY: a chunk holds 32 floats; `qs` holds 32 bytes.
        unsafe {
            let v0 = _mm512_loadu_ps(chunk.as_ptr());
            let v1 = _mm512_loadu_ps(chunk.as_ptr().add(16));
            let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            let d = amax / 127.0;
            let id = _mm512_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
            let (i0, i1) = (round_clamp(v0, id), round_clamp(v1, id));
            let qs = blk.qs.as_mut_ptr() as *mut __m128i;
            _mm_storeu_si128(qs, _mm512_cvtsepi32_epi8(i0));
            _mm_storeu_si128(qs.add(1), _mm512_cvtsepi32_epi8(i1));
            let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
            blk.d = round_f16(d);
            blk.s = round_f16(d * sum as f32);
            blk.sum = sum;
        }
    }
}
