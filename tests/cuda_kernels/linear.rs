//! Parity of the cuBLAS linear layers (`linear`: bf16 out, `linear_f32`: f32 logits) with
//! the f64 reference of [`check`] (gemv.rs).

use half::bf16;
use rill::backend::cuda::linear;

use super::gemv::{check, BF16_OUT, F32_OUT};
use super::util::gpu;

/// (tokens, n_in, n_out): decode and prefill rows, Qwen3-0.6B's q projection, odd sizes.
const SHAPES: [(usize, usize, usize); 5] = [
    (1, 1024, 2048),
    (7, 1000, 333),
    (33, 128, 4096),
    (3, 17, 5),
    (64, 896, 1152),
];

/// bf16 out: the accumulation error plus one bf16 rounding.
pub fn linear() -> Result<(), String> {
    let g = gpu()?;
    check::<bf16>("linear", &SHAPES, BF16_OUT, |out, x, w, (t, i, o)| {
        linear::linear(g, out, x, w, t, i, o)
    })
}

/// f32 out: the accumulation error only.
pub fn linear_f32() -> Result<(), String> {
    let g = gpu()?;
    check::<f32>("linear_f32", &SHAPES, F32_OUT, |out, x, w, (t, i, o)| {
        linear::linear_f32(g, out, x, w, t, i, o)
    })
}
