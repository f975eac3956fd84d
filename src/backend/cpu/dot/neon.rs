//! NEON kernels for aarch64 with the dotprod extension: a tile is 4 weight rows, one
//! lane each, against up to 4 activation rows. Per 32-element block the integer dots use
//! `sdot` (i8 × i8, summed by fours into i32; Q4_1 nibbles 0..15 are valid i8;
//! through `asm!`, as `vdotq_s32` is not stable Rust), pairwise
//! adds give one exact i32 per row, and the f32 update follows the canonical sequence of
//! the portable kernels lane by lane (no FMA), so results are bit-identical to them.
//! Also: the f16 attention dot/axpy and the Q8 activation quantizer, bit-identical to
//! the portable ones too. f16 → f32 uses `fcvtl` through `asm!` (the f16 vector types
//! are not stable Rust).

use std::arch::aarch64::*;
use std::arch::asm;

use super::super::quant::{round_f16, Q8Block, QK};
use super::{lane_rows, QType, Tiles};

/// The NEON tile kernels.
pub struct Neon;

impl Tiles for Neon {
    const LANES: usize = 4;
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
        // SAFETY: `Isa::Neon` (the only user) exists only after detecting dotprod;
        // pointers per the trait contract.
        unsafe {
            match ty {
                QType::Q4_1 => q4_1::<T>(w, rb, n, a, nb, out),
                QType::Q8_0 => q8_0::<T>(w, rb, n, a, nb, out),
            }
        }
    }
}

/// Four f16 (bits) to f32.
#[inline]
#[target_feature(enable = "neon")]
fn f16x4(bits: uint16x4_t) -> float32x4_t {
    let r: float32x4_t;
    // SAFETY: a register-only conversion (FCVTL is base ARMv8 FP).
    unsafe {
        asm!("fcvtl {0:v}.4s, {1:v}.4h", out(vreg) r, in(vreg) bits,
             options(pure, nomem, nostack, preserves_flags));
    }
    r
}

/// `acc + ` the dot of each 4-byte group of `a` and `b` (i8): the SDOT instruction
/// (`vdotq_s32` is not stable Rust yet).
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut r = acc;
    // SAFETY: a register-only instruction of the dotprod extension this function enables.
    unsafe {
        asm!("sdot {0:v}.4s, {1:v}.16b, {2:v}.16b", inout(vreg) r, in(vreg) a, in(vreg) b,
             options(pure, nomem, nostack, preserves_flags));
    }
    r
}

/// Per-lane row pointers; lanes past `n` repeat the last row (never stored).
#[inline]
unsafe fn lanes(w: *const u8, rb: usize, n: usize) -> [*const u8; 4] {
    // SAFETY: the caller passes n >= 1 rows of rb bytes.
    unsafe { lane_rows::<4>(w, rb, n) }.1
}

/// The 32 bits at `off` of four rows.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn gather32(rows: [*const u8; 4], off: usize) -> uint32x4_t {
    let mut v = [0u32; 4];
    for (x, r) in v.iter_mut().zip(rows) {
        // SAFETY: the caller passes rows with 4 readable bytes at `off`.
        *x = unsafe { std::ptr::read_unaligned(r.add(off) as *const u32) };
    }
    // SAFETY: reads the 16 bytes of `v`.
    unsafe { vld1q_u32(v.as_ptr()) }
}

/// Element `r` of the result: the sum of `p[r]`.
#[inline]
#[target_feature(enable = "neon")]
fn hsum4(p: [int32x4_t; 4]) -> int32x4_t {
    vpaddq_s32(vpaddq_s32(p[0], p[1]), vpaddq_s32(p[2], p[3]))
}

/// Stores the first `n` lanes of `v`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn store(out: *mut f32, n: usize, v: float32x4_t) {
    let mut tmp = [0f32; 4];
    // SAFETY: `tmp` holds 4 floats; the caller owns `n` floats at `out`.
    unsafe {
        vst1q_f32(tmp.as_mut_ptr(), v);
        std::ptr::copy_nonoverlapping(tmp.as_ptr(), out, n);
    }
}

/// # Safety
/// As `Tiles::tile`, on a CPU with dotprod.
#[target_feature(enable = "neon,dotprod")]
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
        let rows = lanes(w, rb, n);
        let mask = vdupq_n_u8(0x0f);
        let zero = vdupq_n_s32(0);
        let mut acc = [vdupq_n_f32(0.0); T];
        for b in 0..nb {
            let off = b * 20;
            let dm = gather32(rows, off);
            let dw = f16x4(vmovn_u32(dm));
            let mw = f16x4(vshrn_n_u32::<16>(dm));
            let mut lo = [vdupq_n_s8(0); 4];
            let mut hi = [vdupq_n_s8(0); 4];
            for r in 0..4 {
                let q = vld1q_u8(rows[r].add(off + 4));
                lo[r] = vreinterpretq_s8_u8(vandq_u8(q, mask));
                hi[r] = vreinterpretq_s8_u8(vshrq_n_u8::<4>(q));
            }
            for t in 0..T {
                let y = &*a[t].add(b);
                let ylo = vld1q_s8(y.qs.as_ptr());
                let yhi = vld1q_s8(y.qs.as_ptr().add(16));
                let mut p = [zero; 4];
                for r in 0..4 {
                    p[r] = sdot(sdot(zero, lo[r], ylo), hi[r], yhi);
                }
                let isum = vcvtq_f32_s32(hsum4(p));
                let term = vaddq_f32(
                    vmulq_f32(vmulq_f32(dw, vdupq_n_f32(y.d)), isum),
                    vmulq_f32(mw, vdupq_n_f32(y.s)),
                );
                acc[t] = vaddq_f32(acc[t], term);
            }
        }
        for t in 0..T {
            store(out[t], n, acc[t]);
        }
    }
}

/// # Safety
/// As `Tiles::tile`, on a CPU with dotprod.
#[target_feature(enable = "neon,dotprod")]
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
        let rows = lanes(w, rb, n);
        let zero = vdupq_n_s32(0);
        let mut acc = [vdupq_n_f32(0.0); T];
        for b in 0..nb {
            let off = b * 34;
            let dw = f16x4(vmovn_u32(gather32(rows, off)));
            let mut lo = [vdupq_n_s8(0); 4];
            let mut hi = [vdupq_n_s8(0); 4];
            for r in 0..4 {
                lo[r] = vld1q_s8(rows[r].add(off + 2) as *const i8);
                hi[r] = vld1q_s8(rows[r].add(off + 18) as *const i8);
            }
            for t in 0..T {
                let y = &*a[t].add(b);
                let ylo = vld1q_s8(y.qs.as_ptr());
                let yhi = vld1q_s8(y.qs.as_ptr().add(16));
                let mut p = [zero; 4];
                for r in 0..4 {
                    p[r] = sdot(sdot(zero, lo[r], ylo), hi[r], yhi);
                }
                let isum = vcvtq_f32_s32(hsum4(p));
                let term = vmulq_f32(vmulq_f32(dw, vdupq_n_f32(y.d)), isum);
                acc[t] = vaddq_f32(acc[t], term);
            }
        }
        for t in 0..T {
            store(out[t], n, acc[t]);
        }
    }
}

/// Eight f16 (bits) at `p` as two f32 vectors.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn load_f16x8(p: *const u16) -> (float32x4_t, float32x4_t) {
    // SAFETY: the caller passes 8 readable u16.
    let v = unsafe { vld1q_u16(p) };
    (f16x4(vget_low_u16(v)), f16x4(vget_high_u16(v)))
}

/// The canonical 16-lane f16 dot (see `dot_f16_f16`): lanes in four q registers.
///
/// # Safety
/// Needs NEON; equal lengths, a multiple of 16.
#[target_feature(enable = "neon")]
pub unsafe fn dot_f16(k: &[u16], q: &[u16]) -> f32 {
    let mut acc = [vdupq_n_f32(0.0); 4];
    for i in (0..k.len()).step_by(16) {
        for h in 0..2 {
            // SAFETY: i + 16 <= len for both slices.
            let ((k0, k1), (q0, q1)) = unsafe {
                (
                    load_f16x8(k.as_ptr().add(i + 8 * h)),
                    load_f16x8(q.as_ptr().add(i + 8 * h)),
                )
            };
            acc[2 * h] = vaddq_f32(acc[2 * h], vmulq_f32(k0, q0));
            acc[2 * h + 1] = vaddq_f32(acc[2 * h + 1], vmulq_f32(k1, q1));
        }
    }
    let s8 = [vaddq_f32(acc[0], acc[2]), vaddq_f32(acc[1], acc[3])];
    let s4 = vaddq_f32(s8[0], s8[1]);
    let s2 = vadd_f32(vget_low_f32(s4), vget_high_f32(s4));
    vget_lane_f32::<0>(s2) + vget_lane_f32::<1>(s2)
}

/// `out[i] += w * v[i]` (multiply, then add) over the whole multiples of 8; returns how
/// many elements it did.
///
/// # Safety
/// Needs NEON; equal lengths.
#[target_feature(enable = "neon")]
pub unsafe fn axpy_f16(out: &mut [f32], w: f32, v: &[u16]) -> usize {
    let wv = vdupq_n_f32(w);
    let n = v.len() / 8 * 8;
    for i in (0..n).step_by(8) {
        // SAFETY: i + 8 <= n <= len for both slices.
        unsafe {
            let (x0, x1) = load_f16x8(v.as_ptr().add(i));
            let o = out.as_mut_ptr().add(i);
            vst1q_f32(o, vaddq_f32(vld1q_f32(o), vmulq_f32(wv, x0)));
            vst1q_f32(o.add(4), vaddq_f32(vld1q_f32(o.add(4)), vmulq_f32(wv, x1)));
        }
    }
    n
}

/// # Safety
/// Needs NEON; `x.len()` a multiple of 32, `out` long enough.
#[target_feature(enable = "neon")]
pub unsafe fn quantize_q8(x: &[f32], out: &mut [Q8Block]) {
    let (lo, hi) = (vdupq_n_s32(-127), vdupq_n_s32(127));
    for (chunk, blk) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let mut v = [vdupq_n_f32(0.0); 8];
        let mut m = vdupq_n_f32(0.0);
        for (j, vj) in v.iter_mut().enumerate() {
            // SAFETY: a chunk holds 32 floats.
            *vj = unsafe { vld1q_f32(chunk.as_ptr().add(4 * j)) };
            m = vmaxq_f32(m, vabsq_f32(*vj));
        }
        let amax = vmaxvq_f32(m);
        let d = amax / 127.0;
        let id = vdupq_n_f32(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        let mut sum = vdupq_n_s32(0);
        let mut q = [0i8; QK];
        for (j, vj) in v.iter().enumerate() {
            let i = vcvtq_s32_f32(vrndnq_f32(vmulq_f32(*vj, id)));
            let i = vmaxq_s32(vminq_s32(i, hi), lo);
            sum = vaddq_s32(sum, i);
            let n16 = vqmovn_s32(i);
            let n8 = vqmovn_s16(vcombine_s16(n16, n16));
            // SAFETY: writes 4 bytes at 4 * j < 32 via an 8-byte staging store.
            unsafe {
                let mut tmp = [0i8; 8];
                vst1_s8(tmp.as_mut_ptr(), n8);
                q[4 * j..4 * j + 4].copy_from_slice(&tmp[..4]);
            }
        }
        let sum = vaddvq_s32(sum);
        blk.qs = q;
        blk.d = round_f16(d);
        blk.s = round_f16(d * sum as f32);
        blk.sum = sum;
    }
}
