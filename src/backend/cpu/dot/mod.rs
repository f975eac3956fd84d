//! The inner kernels of the CPU backend: quantized weight rows (GGUF Q4_1 / Q8_0 blocks)
//! times Q8 activation rows, and the f16 dot/axpy of attention. One kernel set per
//! instruction set (`Isa`), chosen at run time: AVX-512 (VNNI), AVX2, NEON (dotprod) and
//! the portable Rust reference.
//!
//! Every quantized kernel computes each (weight row, activation row) output with the
//! same arithmetic, the one llama.cpp's scalar `ggml_vec_dot_q4_1_q8_1` /
//! `ggml_vec_dot_q8_0_q8_0` use: the integer dot of each 32-element block (exact), then,
//! block after block, `sum += d_w * d_x * isum + m_w * s_x` in f32 (no FMA). The SIMD
//! kernels vectorize across weight rows (one lane per row), so they give bit-identical
//! results to the portable code and to each other, whatever the tile shape: an output
//! does not depend on how many rows or activations the call had (batch invariance).
//!
//! Public operations: [`Isa`] (detection, `RILL_ISA`), [`gemm`] (a block of weight rows
//! times a block of activation rows), [`dot`] (one pair), [`dot_f16_f16`], [`axpy_f16`],
//! and the canonical Q4_1 / Q8_0 pair dots (`dot_q4_1_portable`, `dot_q8_0_portable`).
//! The other weight types have portable dots (`quant`), run the same on every ISA, except
//! Q4_K, Q6_K and Q5_0 (the Q4_K_M mix), which have AVX2 row dots giving the portable
//! bits ([`dot_q4_k`], [`dot_q6_k`], [`dot_q5_0`]).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod kquants_avx2;
#[cfg(target_arch = "x86_64")]
mod legacy_avx2;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(test)]
mod tests;

use super::quant::q8k::Q8KBlock;
use super::quant::{f16_to_f32, read_f16, Q8Block, QK};
use crate::error::{Error, Result};

/// A kernel set. Each variant other than `Portable` is only constructed after its CPU
/// features were detected (`Isa::supported`), which the `unsafe` calls below rely on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Portable,
    /// avx2, fma, f16c.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX2 plus avx512f/bw/vl and avx512vnni (`vpdpbusd`).
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// NEON with the dotprod extension (`sdot`).
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl Isa {
    /// Every kernel set compiled into this build, best first.
    const ALL: &'static [Isa] = &[
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon,
        Isa::Portable,
    ];

    /// Whether this CPU can run the kernel set.
    pub fn supported(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.supported()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("dotprod"),
        }
    }

    /// The kernel sets this CPU can run, best first (tests run each against `Portable`).
    pub fn available() -> Vec<Isa> {
        Isa::ALL.iter().copied().filter(|i| i.supported()).collect()
    }

    /// The best kernel set this CPU supports (detected once).
    pub fn detect() -> Isa {
        static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| Isa::available()[0])
    }

    /// The kernel set named by the environment variable `RILL_ISA` (`portable`, `avx2`,
    /// `avx512`, `neon`), or the detected best one when it is unset or empty.
    pub fn from_env() -> Result<Isa> {
        match std::env::var("RILL_ISA") {
            Ok(name) if !name.is_empty() => Isa::from_name(&name),
            _ => Ok(Isa::detect()),
        }
    }

    /// The kernel set called `name`, if this CPU supports it.
    pub fn from_name(name: &str) -> Result<Isa> {
        let known: Vec<&str> = Isa::ALL.iter().map(|i| i.name()).collect();
        let isa = Isa::ALL.iter().find(|i| i.name() == name).ok_or_else(|| {
            let msg = format!("unknown kernel set {name:?} (this build has {known:?})");
            Error::config("RILL_ISA", msg)
        })?;
        if !isa.supported() {
            let msg = format!("this CPU cannot run the {name:?} kernels");
            return Err(Error::config("RILL_ISA", msg));
        }
        Ok(*isa)
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512",
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => "neon",
        }
    }
}

/// The quantized weight formats the kernels multiply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QType {
    /// 20-byte blocks: f16 scale `d`, f16 minimum `m`, 16 bytes of 4-bit values.
    Q4_1,
    /// 34-byte blocks: f16 scale `d`, 32 signed bytes.
    Q8_0,
}

impl QType {
    pub fn block_bytes(self) -> usize {
        match self {
            QType::Q4_1 => 20,
            QType::Q8_0 => 34,
        }
    }
}

/// Consecutive weight rows of one quantized matrix.
#[derive(Clone, Copy)]
pub struct QRows<'a> {
    pub ty: QType,
    /// `n_rows * row_bytes` bytes.
    pub bytes: &'a [u8],
    pub row_bytes: usize,
}

/// The tile kernels of one instruction set: `LANES` weight rows (one SIMD lane each)
/// against `T <= MAX_T <= 4` activation rows, every output with the canonical arithmetic.
trait Tiles {
    const LANES: usize;
    const MAX_T: usize;

    /// Writes `out[t][r]` = row `r` (of `n`, `1 <= n <= LANES`) · activation row `t`.
    ///
    /// # Safety
    /// The CPU runs this ISA; `w` points at `n` rows of `rb` bytes, each `nb` blocks of
    /// `ty`; `a[t]` points at `nb` blocks; `out[t]` is valid for `n` writes nobody else
    /// makes during the call.
    unsafe fn tile<const T: usize>(
        ty: QType,
        w: *const u8,
        rb: usize,
        n: usize,
        a: [*const Q8Block; T],
        nb: usize,
        out: [*mut f32; T],
    );
}

/// Computes every output `(t, r)` = weight row `r` · activation row `t` and writes it to
/// `out[t * stride + r]`. `a` holds the activation rows, `bpr` blocks each.
///
/// # Safety
/// `out` must be valid for writes at `t * stride + r` for every activation row `t` and
/// weight row `r`, and no other thread may access those elements during the call.
pub unsafe fn gemm(isa: Isa, w: QRows, a: &[Q8Block], bpr: usize, out: *mut f32, stride: usize) {
    assert!(
        bpr > 0 && w.row_bytes == bpr * w.ty.block_bytes(),
        "gemm: row size"
    );
    assert!(
        w.bytes.len().is_multiple_of(w.row_bytes) && a.len().is_multiple_of(bpr),
        "gemm: shapes"
    );
    let n_rows = w.bytes.len() / w.row_bytes;
    assert!(
        n_rows <= stride || a.len() == bpr,
        "gemm: output rows overlap"
    );
    // The x86 kernels gather scales at i32 byte offsets of up to 16 rows.
    assert!(w.row_bytes <= i32::MAX as usize / 16, "gemm: rows too long");
    // SAFETY: shapes checked above; `isa` was detected; the caller vouches for `out`.
    unsafe {
        match isa {
            Isa::Portable => drive::<Portable>(w, n_rows, a, bpr, out, stride),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => drive::<avx2::Avx2>(w, n_rows, a, bpr, out, stride),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => drive::<avx512::Avx512>(w, n_rows, a, bpr, out, stride),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => drive::<neon::Neon>(w, n_rows, a, bpr, out, stride),
        }
    }
}

/// One weight row · one activation row (`row.len() / block_bytes == a.len()` blocks).
pub fn dot(isa: Isa, ty: QType, row: &[u8], a: &[Q8Block]) -> f32 {
    let mut out = 0f32;
    let w = QRows {
        ty,
        bytes: row,
        row_bytes: row.len(),
    };
    // SAFETY: one output, `out`, owned here.
    unsafe { gemm(isa, w, a, a.len(), &mut out, 1) };
    out
}

/// Tiles the rows and activations: activation tiles outer, so the weight rows of a call
/// stay in L1 while every tile of activations passes over them.
///
/// # Safety
/// As [`gemm`], with the shapes checked.
unsafe fn drive<K: Tiles>(
    w: QRows,
    n_rows: usize,
    a: &[Q8Block],
    bpr: usize,
    out: *mut f32,
    stride: usize,
) {
    let n_tok = a.len() / bpr;
    let rb = w.row_bytes;
    let mut t = 0;
    while t < n_tok {
        let tt = (n_tok - t).min(K::MAX_T);
        let mut r = 0;
        while r < n_rows {
            let n = (n_rows - r).min(K::LANES);
            // SAFETY: rows r..r+n < n_rows, activation rows t..t+tt < n_tok, outputs
            // within the caller's range.
            unsafe {
                let wp = w.bytes.as_ptr().add(r * rb);
                let ap = a.as_ptr().add(t * bpr);
                let op = out.add(t * stride + r);
                let args = (w.ty, wp, rb, n, ap, bpr, op, stride);
                match tt {
                    1 => tile_n::<K, 1>(args),
                    2 => tile_n::<K, 2>(args),
                    3 => tile_n::<K, 3>(args),
                    _ => tile_n::<K, 4>(args),
                }
            }
            r += n;
        }
        t += tt;
    }
}

/// `(type, weight rows, row bytes, rows, first activation row, blocks per row, first
/// output, output stride)` of one tile.
type TileArgs = (
    QType,
    *const u8,
    usize,
    usize,
    *const Q8Block,
    usize,
    *mut f32,
    usize,
);

/// Calls `K::tile::<T>` on `T` consecutive activation rows and their outputs.
///
/// # Safety
/// As `Tiles::tile`, for `T` activation rows of `bpr` blocks from `a` and `T` output
/// rows `stride` apart from `o`.
unsafe fn tile_n<K: Tiles, const T: usize>(args: TileArgs) {
    let (ty, w, rb, n, a, bpr, o, stride) = args;
    let aa: [*const Q8Block; T] = std::array::from_fn(|i| a.wrapping_add(i * bpr));
    let oo: [*mut f32; T] = std::array::from_fn(|i| o.wrapping_add(i * stride));
    // SAFETY: per this function's contract.
    unsafe { K::tile::<T>(ty, w, rb, n, aa, bpr, oo) }
}

/// Per-lane row pointers of an `L`-row tile and their byte offsets (for gathers); lanes
/// past `n` repeat the last row, so every load stays inside the matrix (their results
/// are never stored). `gemm` checks that the offsets of a tile fit an i32.
///
/// # Safety
/// `w` points at `n >= 1` rows of `rb` bytes.
#[inline]
pub(super) unsafe fn lane_rows<const L: usize>(
    w: *const u8,
    rb: usize,
    n: usize,
) -> ([i32; L], [*const u8; L]) {
    let mut off = [0i32; L];
    let mut rows = [w; L];
    for k in 0..L {
        let r = k.min(n - 1);
        off[k] = (r * rb) as i32;
        // SAFETY: r < n rows of rb bytes.
        rows[k] = unsafe { w.add(r * rb) };
    }
    (off, rows)
}

/// The reference kernels: one pair at a time.
struct Portable;

impl Tiles for Portable {
    const LANES: usize = 1;
    const MAX_T: usize = 1;

    unsafe fn tile<const T: usize>(
        ty: QType,
        w: *const u8,
        rb: usize,
        n: usize,
        a: [*const Q8Block; T],
        nb: usize,
        out: [*mut f32; T],
    ) {
        for t in 0..T {
            for r in 0..n {
                // SAFETY: per the trait contract.
                unsafe {
                    let row = std::slice::from_raw_parts(w.add(r * rb), rb);
                    let act = std::slice::from_raw_parts(a[t], nb);
                    *out[t].add(r) = match ty {
                        QType::Q4_1 => dot_q4_1_portable(row, act),
                        QType::Q8_0 => dot_q8_0_portable(row, act),
                    };
                }
            }
        }
    }
}

/// Q4_1 row · Q8_1 activations: the canonical arithmetic every ISA reproduces.
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

/// Q8_0 row · Q8_0 activations: the canonical arithmetic every ISA reproduces.
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

/// Q4_K row · Q8_K activations with the kernel set's code (AVX2 on AVX2 and AVX-512
/// machines); the bits of the portable `quant::kquants::dot_q4_k` on every ISA.
pub fn dot_q4_k(isa: Isa, w: &[u8], a: &[Q8KBlock]) -> f32 {
    match isa {
        // SAFETY: the variants exist only where AVX2 was detected.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 => unsafe { kquants_avx2::dot_q4_k(w, a) },
        _ => super::quant::kquants::dot_q4_k(w, a),
    }
}

/// Q6_K row · Q8_K activations, as [`dot_q4_k`].
pub fn dot_q6_k(isa: Isa, w: &[u8], a: &[Q8KBlock]) -> f32 {
    match isa {
        // SAFETY: the variants exist only where AVX2 was detected.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 => unsafe { kquants_avx2::dot_q6_k(w, a) },
        _ => super::quant::kquants::dot_q6_k(w, a),
    }
}

/// Q5_0 row · Q8_0 activations, as [`dot_q4_k`] (AVX2 on AVX2 and AVX-512 machines).
pub fn dot_q5_0(isa: Isa, w: &[u8], a: &[Q8Block]) -> f32 {
    match isa {
        // SAFETY: the variants exist only where AVX2 was detected.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 => unsafe { legacy_avx2::dot_q5_0(w, a) },
        _ => super::quant::legacy::dot_q5_0(w, a),
    }
}

/// Lanes of the canonical f16 dot.
const F16_LANES: usize = 16;

/// `sum(k[i] * q[i])` over f16 vectors (bits) in f32: the attention score. Canonical
/// order on every ISA: 16 lane sums (`lane[i % 16] += k[i] * q[i]`, multiply then add)
/// over the whole 16-element chunks, folded in halves (lanes `l += l + 8`, then `+ 4`,
/// `+ 2`, `+ 1`), then the remaining elements added one by one.
#[inline]
pub fn dot_f16_f16(isa: Isa, k: &[u16], q: &[u16]) -> f32 {
    assert_eq!(k.len(), q.len(), "dot_f16_f16: lengths");
    let split = k.len() / F16_LANES * F16_LANES;
    let (kb, qb) = (&k[..split], &q[..split]);
    let body = match isa {
        // SAFETY: the variant exists only where its features were detected; lengths are
        // equal multiples of 16.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::dot_f16(kb, qb) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::dot_f16(kb, qb) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { neon::dot_f16(kb, qb) },
        Isa::Portable => dot_f16_lanes_portable(kb, qb),
    };
    k[split..]
        .iter()
        .zip(&q[split..])
        .fold(body, |s, (&a, &b)| s + f16_to_f32(a) * f16_to_f32(b))
}

/// The canonical 16-lane sum of `dot_f16_f16` (lengths a multiple of 16).
fn dot_f16_lanes_portable(k: &[u16], q: &[u16]) -> f32 {
    let mut acc = [0f32; F16_LANES];
    for (kc, qc) in k.chunks_exact(F16_LANES).zip(q.chunks_exact(F16_LANES)) {
        for l in 0..F16_LANES {
            acc[l] += f16_to_f32(kc[l]) * f16_to_f32(qc[l]);
        }
    }
    for half in [8, 4, 2, 1] {
        for l in 0..half {
            acc[l] += acc[l + half];
        }
    }
    acc[0]
}

/// `out[i] += w * v[i]` with `v` in f16 (bits): the attention value accumulation.
/// Multiply then add (no FMA) on every ISA, so every ISA gives the same bits.
#[inline]
pub fn axpy_f16(isa: Isa, out: &mut [f32], w: f32, v: &[u16]) {
    assert_eq!(out.len(), v.len(), "axpy_f16: lengths");
    let split = match isa {
        // SAFETY: as in `dot_f16_f16`; the kernels take the whole multiples of 16.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::axpy_f16(out, w, v) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::axpy_f16(out, w, v) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { neon::axpy_f16(out, w, v) },
        Isa::Portable => 0,
    };
    for (o, &b) in out[split..].iter_mut().zip(&v[split..]) {
        *o += w * f16_to_f32(b);
    }
}

/// Quantizes one row with the kernel set's vector code; every ISA gives the portable
/// [`super::quant::quantize_q8_portable`] bits for finite inputs.
pub fn quantize_q8(isa: Isa, x: &[f32], out: &mut [Q8Block]) {
    assert!(
        x.len().is_multiple_of(QK) && out.len() >= x.len() / QK,
        "quantize_q8: shapes"
    );
    match isa {
        // SAFETY: the variant exists only where its features were detected; shapes checked.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::quantize_q8(x, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::quantize_q8(x, out) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { neon::quantize_q8(x, out) },
        Isa::Portable => super::quant::quantize_q8_portable(x, out),
    }
}
