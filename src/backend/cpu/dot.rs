//! Dot products between one weight row (raw GGUF blocks) and one activation row, the
//! inner loop of every linear layer. Quantized rows are multiplied in integers against
//! Q8 activations exactly as llama.cpp's `ggml_vec_dot_q4_1_q8_1` / `ggml_vec_dot_q8_0_q8_0`
//! do; AVX2 is chosen at run time, and the portable code is the reference the tests compare
//! it with. F32/F16 rows take f32 activations.

use super::quant::{read_f16, Q8Block, QK};

/// Which implementation the dot products use, detected once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Isa {
    /// The best implementation this CPU supports.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
            {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
        }
    }
}

/// Q4_1 row (20-byte blocks) · Q8_1 activations.
pub fn dot_q4_1(isa: Isa, w: &[u8], a: &[Q8Block]) -> f32 {
    debug_assert_eq!(w.len(), a.len() * 20);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2` is only constructed after detecting avx2, fma and f16c.
        Isa::Avx2 => unsafe { avx2::dot_q4_1(w, a) },
        Isa::Portable => dot_q4_1_portable(w, a),
    }
}

/// Q8_0 row (34-byte blocks) · Q8_0 activations.
pub fn dot_q8_0(isa: Isa, w: &[u8], a: &[Q8Block]) -> f32 {
    debug_assert_eq!(w.len(), a.len() * 34);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2` is only constructed after detecting avx2, fma and f16c.
        Isa::Avx2 => unsafe { avx2::dot_q8_0(w, a) },
        Isa::Portable => dot_q8_0_portable(w, a),
    }
}

pub fn dot_q4_1_portable(w: &[u8], a: &[Q8Block]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in w.chunks_exact(20).zip(a) {
        let (d, m) = (read_f16(b), read_f16(&b[2..]));
        let mut isum = 0i32;
        for j in 0..QK / 2 {
            isum += (b[4 + j] & 0x0f) as i32 * y.qs[j] as i32;
            isum += (b[4 + j] >> 4) as i32 * y.qs[j + QK / 2] as i32;
        }
        sum += d * y.d * isum as f32 + m * y.s;
    }
    sum
}

pub fn dot_q8_0_portable(w: &[u8], a: &[Q8Block]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in w.chunks_exact(34).zip(a) {
        let d = read_f16(b);
        let isum: i32 = b[2..]
            .iter()
            .zip(&y.qs)
            .map(|(&q, &v)| (q as i8) as i32 * v as i32)
            .sum();
        sum += d * y.d * isum as f32;
    }
    sum
}

/// F32 row · f32 activations.
pub fn dot_f32(w: &[u8], x: &[f32]) -> f32 {
    w.chunks_exact(4)
        .zip(x)
        .map(|(b, v)| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * v)
        .sum()
}

/// F16 row · f32 activations.
pub fn dot_f16(w: &[u8], x: &[f32]) -> f32 {
    w.chunks_exact(2).zip(x).map(|(b, v)| read_f16(b) * v).sum()
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::super::quant::Q8Block;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Two f16 at `p` (unaligned) as f32 lanes 0 and 1.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn two_f16(p: *const u8) -> __m128 {
        _mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(p as *const i32)))
    }

    /// # Safety
    /// Needs avx2, fma and f16c; `w.len() == a.len() * 20`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q4_1(w: &[u8], a: &[Q8Block]) -> f32 {
        let mask = _mm_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        let mut summs = 0f32;
        for (i, y) in a.iter().enumerate() {
            let p = w.as_ptr().add(i * 20);
            let dm = two_f16(p);
            let d = _mm_cvtss_f32(dm);
            let m = _mm_cvtss_f32(_mm_shuffle_ps(dm, dm, 1));
            summs += m * y.s;
            let q = _mm_loadu_si128(p.add(4) as *const __m128i);
            let lo = _mm_and_si128(q, mask);
            let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
            let qx = _mm256_set_m128i(hi, lo);
            let qy = _mm256_load_si256(y.qs.as_ptr() as *const __m256i);
            let prod = _mm256_madd_epi16(_mm256_maddubs_epi16(qx, qy), ones);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * y.d), _mm256_cvtepi32_ps(prod), acc);
        }
        hsum(acc) + summs
    }

    /// # Safety
    /// Needs avx2, fma and f16c; `w.len() == a.len() * 34`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q8_0(w: &[u8], a: &[Q8Block]) -> f32 {
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        for (i, y) in a.iter().enumerate() {
            let p = w.as_ptr().add(i * 34);
            let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(
                p as *const u16,
            ) as i32)));
            let qx = _mm256_loadu_si256(p.add(2) as *const __m256i);
            let qy = _mm256_load_si256(y.qs.as_ptr() as *const __m256i);
            let ax = _mm256_sign_epi8(qx, qx);
            let sy = _mm256_sign_epi8(qy, qx);
            let prod = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), ones);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * y.d), _mm256_cvtepi32_ps(prod), acc);
        }
        hsum(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::super::quant::quantize_q8;
    use super::*;

    fn lcg(seed: &mut u64) -> u8 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 33) as u8
    }

    fn blocks(n: usize, bytes: usize, seed: &mut u64) -> Vec<u8> {
        let mut w: Vec<u8> = (0..n * bytes).map(|_| lcg(seed)).collect();
        for b in w.chunks_exact_mut(bytes) {
            // Keep the f16 scales finite and modest.
            b[0] = lcg(seed);
            b[1] = 0x20 | (lcg(seed) & 0x0f);
            if bytes == 20 {
                b[3] = 0xa0 | (lcg(seed) & 0x0f);
            }
        }
        w
    }

    #[test]
    fn dispatched_kernels_match_the_portable_reference() {
        let isa = Isa::detect();
        let mut seed = 42;
        for n_blocks in [1usize, 3, 18, 48] {
            let x: Vec<f32> = (0..n_blocks * QK)
                .map(|_| lcg(&mut seed) as f32 / 40.0 - 3.0)
                .collect();
            let mut q = vec![Q8Block::default(); n_blocks];
            quantize_q8(&x, &mut q);
            let w41 = blocks(n_blocks, 20, &mut seed);
            let w80 = blocks(n_blocks, 34, &mut seed);
            let (a, b) = (dot_q4_1(isa, &w41, &q), dot_q4_1_portable(&w41, &q));
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "q4_1 {a} vs {b}");
            let (a, b) = (dot_q8_0(isa, &w80, &q), dot_q8_0_portable(&w80, &q));
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "q8_0 {a} vs {b}");
        }
    }
}

/// `sum(k[i] * q[i])` over f16 vectors (bits), accumulated in f32: the attention score.
pub fn dot_f16_f16(isa: Isa, k: &[u16], q: &[u16]) -> f32 {
    debug_assert_eq!(k.len(), q.len());
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2` is only constructed after detecting avx2, fma and f16c.
        Isa::Avx2 if k.len() % 8 == 0 => unsafe { avx2_f16::dot(k, q) },
        _ => k
            .iter()
            .zip(q)
            .map(|(&a, &b)| super::quant::f16_to_f32(a) * super::quant::f16_to_f32(b))
            .sum(),
    }
}

/// `out[i] += w * v[i]` with `v` in f16 (bits): the attention value accumulation.
pub fn axpy_f16(isa: Isa, out: &mut [f32], w: f32, v: &[u16]) {
    debug_assert_eq!(out.len(), v.len());
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2` is only constructed after detecting avx2, fma and f16c.
        Isa::Avx2 if v.len() % 8 == 0 => unsafe { avx2_f16::axpy(out, w, v) },
        _ => {
            for (o, &b) in out.iter_mut().zip(v) {
                *o += w * super::quant::f16_to_f32(b);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2_f16 {
    use std::arch::x86_64::*;

    /// # Safety
    /// Needs avx2, fma, f16c; equal lengths, a multiple of 8.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot(k: &[u16], q: &[u16]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for i in (0..k.len()).step_by(8) {
            let a = _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(i) as *const __m128i));
            let b = _mm256_cvtph_ps(_mm_loadu_si128(q.as_ptr().add(i) as *const __m128i));
            acc = _mm256_fmadd_ps(a, b, acc);
        }
        let lo = _mm256_castps256_ps128(acc);
        let hi = _mm256_extractf128_ps(acc, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// # Safety
    /// Needs avx2, fma, f16c; equal lengths, a multiple of 8.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn axpy(out: &mut [f32], w: f32, v: &[u16]) {
        let wv = _mm256_set1_ps(w);
        for i in (0..v.len()).step_by(8) {
            let x = _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(i) as *const __m128i));
            let o = _mm256_loadu_ps(out.as_ptr().add(i));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_fmadd_ps(wv, x, o));
        }
    }
}

#[cfg(test)]
mod f16_tests {
    use super::*;
    use half::f16;

    #[test]
    fn f16_attention_kernels_match_portable() {
        let isa = Isa::detect();
        for n in [8usize, 64, 128] {
            let k: Vec<u16> = (0..n)
                .map(|i| f16::from_f32((i as f32 * 0.37).sin()).to_bits())
                .collect();
            let q: Vec<u16> = (0..n)
                .map(|i| f16::from_f32((i as f32 * 0.11).cos()).to_bits())
                .collect();
            let a = dot_f16_f16(isa, &k, &q);
            let b = dot_f16_f16(Isa::Portable, &k, &q);
            assert!(
                (a - b).abs() < 1e-4 * b.abs().max(1.0),
                "dot n={n}: {a} vs {b}"
            );
            let mut o1 = vec![0.5f32; n];
            let mut o2 = o1.clone();
            axpy_f16(isa, &mut o1, 0.3, &k);
            axpy_f16(Isa::Portable, &mut o2, 0.3, &k);
            for (x, y) in o1.iter().zip(&o2) {
                assert!((x - y).abs() < 1e-6, "axpy n={n}");
            }
        }
    }
}
