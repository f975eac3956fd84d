//! AVX2 row dot of Q5_0 weights · Q8_0 activations (the type llama.cpp's Q4_K_M mix
//! falls back to where rows are not whole 256-element blocks, e.g. SmolLM2's 576), the
//! bits of the portable `quant::legacy::dot_q5_0` (ggml's `_generic`): the integer dot
//! of each block is exact in any order (ggml's AVX2 idiom: nibbles and high bits to
//! signed bytes, `vpmaddubsw` on |x| and y with x's sign, `vpmaddwd`, a horizontal
//! sum), and the f32 update `sumf += (d_x * d_y) * sumi` runs block after block in
//! scalar code, as in the portable port. Public operation: `dot_q5_0`.

use std::arch::x86_64::*;

use super::super::quant::legacy::Q5_0_BYTES;
use super::super::quant::{read_f16, Q8Block};

/// The sum of the 8 i32 lanes of `v` (exact).
#[inline]
#[target_feature(enable = "avx2")]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// Q5_0 row · Q8_0 activations.
///
/// # Safety
/// The CPU supports AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn dot_q5_0(w: &[u8], a: &[Q8Block]) -> f32 {
    let m4 = _mm256_set1_epi8(0x0f);
    // Byte k of the 32 takes bit k of qh: broadcast byte k / 8, then test bit k % 8.
    let shuf = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bit = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
    let ones = _mm256_set1_epi16(1);
    let mut sumf = 0f32;
    for (b, y) in w.chunks_exact(Q5_0_BYTES).zip(a) {
        let h = i32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        // SAFETY: bytes 6..22 of the 22-byte block; the 32 activation values.
        let (qs, q) = unsafe {
            (
                _mm_loadu_si128(b.as_ptr().add(6) as *const __m128i),
                _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i),
            )
        };
        // Elements 0..16: low nibbles, 16..32: high nibbles.
        let nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16::<4>(qs), qs), m4);
        let set = _mm256_cmpeq_epi8(
            _mm256_or_si256(_mm256_shuffle_epi8(_mm256_set1_epi32(h), shuf), bit),
            _mm256_set1_epi64x(-1),
        );
        // x = nibble + 16 * bit - 16: nibble | 0xf0 (as i8) where the bit is clear.
        let x = _mm256_or_si256(
            nib,
            _mm256_andnot_si256(set, _mm256_set1_epi8(0xf0u8 as i8)),
        );
        let p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(q, x));
        let sumi = hsum_i32(_mm256_madd_epi16(p, ones));
        sumf += (read_f16(b) * y.d) * sumi as f32;
    }
    sumf
}
