//! Parity of the decode GEMV kernels (`gemv`, `gemv_f32`: 1 to 8 tokens) with an f64
//! reference `out[t][o] = sum_i x[t][i] * w[o][i]` over the same bf16 values (the CPU
//! backend's matmul quantizes activations to Q8, so it is no reference for bf16), and the
//! [`check`] the cuBLAS linear layers' tests (linear.rs) share.

use half::bf16;
use rill::backend::cuda::ops::{gemv, Dev};

use super::util::{dev, gpu, rows, up, Ctx, Out, Rng, Tol, Val};

/// Products of bf16 values are exact in f32; the f32 accumulation of k of them errs by a
/// small multiple of 2^-24 * sum|x w| (atol 1e-5 * sum|x w|, scaled per element).
const ACC: f64 = 1e-5;

/// GEMV shapes (1..=8 tokens, n_in a multiple of 8): Qwen3-0.6B's q/k/v, o and down
/// projections and its logits, 8 tokens, odd n_out, a short row (one partial 32-lane pass).
const GEMV_SHAPES: [(usize, usize, usize); 6] = [
    (1, 1024, 4096),
    (2, 2048, 1024),
    (8, 3072, 1025),
    (5, 1000, 333),
    (3, 24, 7),
    (1, 1024, 151_936),
];

/// Runs `f(out, x, w)` for every shape and checks the `tokens x n_out` result.
pub fn check<T: Val>(
    name: &str,
    shapes: &[(usize, usize, usize)],
    tol: Tol,
    f: impl Fn(Dev<T>, Dev<bf16>, Dev<bf16>, (usize, usize, usize)) -> rill::Result<()>,
) -> Result<(), String> {
    let mut rng = Rng::new(40);
    for &(tokens, n_in, n_out) in shapes {
        let x_host = rng.bf16s(tokens * n_in, 2.0);
        let w_host = rng.bf16s(n_out * n_in, 0.1);
        let (x, w) = (up(&x_host)?, up(&w_host)?);
        let out = Out::<T>::poisoned(tokens * n_out + 4)?;
        let what = format!("{name} tokens {tokens} n_in {n_in} n_out {n_out}");
        f(out.dev(), dev(&x), dev(&w), (tokens, n_in, n_out)).ctx(&what)?;
        let (mut want, mut scale) = (Vec::new(), Vec::new());
        for t in 0..tokens {
            let xr = &x_host[t * n_in..][..n_in];
            for o in 0..n_out {
                let wr = &w_host[o * n_in..][..n_in];
                let (s, a) = xr.iter().zip(wr).fold((0f64, 0f64), |(s, a), (x, w)| {
                    let p = x.to_f64() * w.to_f64();
                    (s + p, a + p.abs())
                });
                want.push(s);
                scale.push(a);
            }
        }
        out.check_scaled(
            &what,
            &rows(0, 1, 0, tokens * n_out),
            &want,
            Some(&scale),
            tol,
        )?;
    }
    Ok(())
}

/// The decode GEMV kernel, bf16 out: as [`linear`].
pub fn gemv() -> Result<(), String> {
    let g = gpu()?;
    check::<bf16>("gemv", &GEMV_SHAPES, BF16_OUT, |out, x, w, (t, i, o)| {
        gemv::gemv(g, out, x, w, t, i, o)
    })
}

/// The decode GEMV kernel, f32 out: as [`linear_f32`].
pub fn gemv_f32() -> Result<(), String> {
    let g = gpu()?;
    check::<f32>("gemv_f32", &GEMV_SHAPES, F32_OUT, |out, x, w, (t, i, o)| {
        gemv::gemv(g, out, x, w, t, i, o)
    })
}

/// bf16 out: the accumulation error plus one bf16 rounding.
pub const BF16_OUT: Tol = Tol {
    rtol: 1.0 / 256.0,
    atol: ACC,
    norm: 1.0 / 256.0 + 1e-5,
};
/// f32 out: the accumulation error only.
pub const F32_OUT: Tol = Tol {
    rtol: 1e-6,
    atol: ACC,
    norm: 1e-5,
};
