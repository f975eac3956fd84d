//! Linear layers through cuBLAS: `out = x · Wᵀ` with bf16 activations and weights and f32
//! accumulation (`CUBLAS_COMPUTE_32F`), the output bf16 ([`linear`]) or f32 ([`linear_f32`],
//! the logits). Weights are row-major `[n_out, n_in]` like the CPU backend's (one row per
//! output feature), activations row-major `[tokens, n_in]`, outputs row-major
//! `[tokens, n_out]`.
//!
//! cuBLAS is column-major: a row-major `[r, c]` matrix is a column-major `[c, r]` one with
//! leading dimension `c`. So the row-major output `[tokens, n_out]` is the column-major
//! `C = op(A) · op(B)` of `n_out x tokens` (ldc = n_out) with A = the weights seen as
//! column-major `[n_in, n_out]` (lda = n_in) transposed (`transa = T`), and B = the
//! activations seen as column-major `[n_in, tokens]` (ldb = n_in) as they are
//! (`transb = N`): m = n_out, n = tokens, k = n_in.
//!
//! `Gpu::open` sets the handle's math mode to `CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_
//! REDUCTION`: split-K reductions run in f32, not in the bf16 output type, as the CPU
//! accumulates.
//!
//! CUDA graphs: the handle has a workspace of its own ([`Blas`](super::blas::Blas);
//! without one cuBLAS would allocate, an allocation under capture), so these calls can be
//! captured.

use std::ffi::c_void;

use cudarc::cublas::result::gemm_ex;
use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
use half::bf16;

use super::device::{device_error, Gpu};
use super::ops::launch::Check;
use super::ops::Dev;
use crate::error::Result;

/// `out[tokens, n_out] = x[tokens, n_in] · w[n_out, n_in]ᵀ`, bf16 out.
pub fn linear(
    gpu: &Gpu,
    out: Dev<bf16>,
    x: Dev<bf16>,
    w: Dev<bf16>,
    tokens: usize,
    n_in: usize,
    n_out: usize,
) -> Result<()> {
    let g = plan_gemm("linear", out.len(), x, w, (tokens, n_in, n_out))?;
    gemm(gpu, g, out.ptr(), cudaDataType::CUDA_R_16BF)
}

/// [`linear`] with an f32 output (the logits).
pub fn linear_f32(
    gpu: &Gpu,
    out: Dev<f32>,
    x: Dev<bf16>,
    w: Dev<bf16>,
    tokens: usize,
    n_in: usize,
    n_out: usize,
) -> Result<()> {
    let g = plan_gemm("linear_f32", out.len(), x, w, (tokens, n_in, n_out))?;
    gemm(gpu, g, out.ptr(), cudaDataType::CUDA_R_32F)
}

/// One checked GEMM: the column-major m, n, k and leading dimensions, and the pointers of
/// A (weights) and B (activations). `None`: nothing to compute.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Gemm {
    m: i32,
    n: i32,
    k: i32,
    lda: i32,
    ldb: i32,
    ldc: i32,
    a: u64,
    b: u64,
}

fn plan_gemm(
    what: &'static str,
    out_len: usize,
    x: Dev<bf16>,
    w: Dev<bf16>,
    (tokens, n_in, n_out): (usize, usize, usize),
) -> Result<Option<Gemm>> {
    if tokens == 0 || n_out == 0 {
        return Ok(None);
    }
    let c = Check(what);
    c.require(n_in > 0, || "n_in is 0".into())?;
    c.buf("x", x, c.product("x", &[tokens, n_in])?)?;
    c.buf("w", w, c.product("w", &[n_out, n_in])?)?;
    super::ops::check_len(what, "out", out_len, c.product("out", &[tokens, n_out])?)?;
    Ok(Some(Gemm {
        m: c.fit_int("n_out", n_out)?,
        n: c.fit_int("tokens", tokens)?,
        k: c.fit_int("n_in", n_in)?,
        lda: c.fit_int("n_in", n_in)?,
        ldb: c.fit_int("n_in", n_in)?,
        ldc: c.fit_int("n_out", n_out)?,
        a: w.ptr(),
        b: x.ptr(),
    }))
}

fn gemm(gpu: &Gpu, g: Option<Gemm>, out: u64, c_type: cudaDataType) -> Result<()> {
    let Some(g) = g else {
        return Ok(());
    };
    let handle = gpu.blas.handle();
    gpu.ctx
        .bind_to_thread()
        .map_err(|e| device_error("binding the CUDA context for cuBLAS", e))?;
    let (alpha, beta) = (1.0f32, 0.0f32);
    // SAFETY: plan_gemm checked that A (w) holds n_out * n_in = lda * m elements, B (x)
    // tokens * n_in = ldb * n, and C (out) tokens * n_out = ldc * n elements of the types
    // given (bf16 A and B; C bf16 or f32 as the caller's Dev type); alpha and beta are
    // host f32 scalars (the handle's default host pointer mode, CUBLAS_COMPUTE_32F's
    // scale type) that live across the call, which reads them before returning.
    unsafe {
        gemm_ex(
            handle,
            cublasOperation_t::CUBLAS_OP_T,
            cublasOperation_t::CUBLAS_OP_N,
            g.m,
            g.n,
            g.k,
            &alpha as *const f32 as *const c_void,
            g.a as *const c_void,
            cudaDataType::CUDA_R_16BF,
            g.lda,
            g.b as *const c_void,
            cudaDataType::CUDA_R_16BF,
            g.ldb,
            &beta as *const f32 as *const c_void,
            out as *mut c_void,
            c_type,
            g.ldc,
            cublasComputeType_t::CUBLAS_COMPUTE_32F,
            cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
    .map_err(|e| {
        device_error(
            format!(
                "cublasGemmEx (m {} n {} k {}, {c_type:?} out)",
                g.m, g.n, g.k
            ),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cuda::ops::launch::tests::fake;

    #[test]
    fn the_gemm_is_the_column_major_transpose() {
        let x = fake::<bf16>(0x1000, 7 * 896);
        let w = fake::<bf16>(0x2000, 1152 * 896);
        let g = plan_gemm("linear", 7 * 1152, x, w, (7, 896, 1152))
            .unwrap()
            .unwrap();
        assert_eq!(
            g,
            Gemm {
                m: 1152,
                n: 7,
                k: 896,
                lda: 896,
                ldb: 896,
                ldc: 1152,
                a: 0x2000,
                b: 0x1000,
            }
        );
        assert_eq!(plan_gemm("linear", 0, x, w, (0, 896, 1152)).unwrap(), None);
    }

    #[test]
    fn short_operands_are_refused() {
        let x = fake::<bf16>(0x1000, 7 * 896);
        let w = fake::<bf16>(0x2000, 1152 * 896);
        let err = |r: Result<Option<Gemm>>| r.unwrap_err().to_string();
        let m = err(plan_gemm("linear", 7 * 1152 - 1, x, w, (7, 896, 1152)));
        assert!(
            m.contains("linear: argument `out` holds 8063 elements, the launch touches 8064"),
            "{m}"
        );
        let m = err(plan_gemm("linear_f32", 8 * 1152, x, w, (8, 896, 1152)));
        assert!(m.contains("linear_f32: argument `x`"), "{m}");
        let m = err(plan_gemm("linear", 7 * 1153, x, w, (7, 896, 1153)));
        assert!(m.contains("argument `w`"), "{m}");
        let m = err(plan_gemm("linear", 7 * 1152, x, w, (7, 0, 1152)));
        assert!(m.contains("linear: n_in is 0"), "{m}");
    }
}
