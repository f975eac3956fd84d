//! Typed, bounds-checked launch wrappers for every kernel of `kernels/`, on the [`Gpu`]'s
//! one stream (or the tests' CPU kernel emulator: each wrapper takes a [`Launcher`]). Buffers are passed as [`Dev`]s (a device address and the number of
//! elements available from it); each wrapper checks every extent the kernel will touch,
//! the shape limits its `.cu` file documents (head_dim even and <= 256, GQA groups, grid
//! limits), aliasing the kernel forbids and `int` ranges, returning
//! [`Error::Internal`](crate::error::Error::Internal) naming the kernel and the argument
//! before anything is launched; launch failures are
//! [`Error::Device`](crate::error::Error::Device). Zero-size work (no tokens, no rows, no
//! sequences) returns `Ok` without a launch. Nothing here synchronizes with the host.
//!
//! | wrapper | kernel(s) | file |
//! |---|---|---|
//! | [`embedding`] | `embedding_kernel` | embedding.cu |
//! | [`rms_norm`], [`fused_add_rms_norm`] | `rms_norm_kernel`, `fused_add_rms_norm_kernel` | rmsnorm.cu |
//! | [`rope`] | `rope_kernel` | rope.cu |
//! | [`silu_and_mul`], [`add_bias`] | `silu_and_mul_kernel`, `add_bias_kernel` | activation.cu |
//! | [`reshape_and_cache`] | `reshape_and_cache_kernel` | cache.cu |
//! | [`qk_norm_rope_cache`] (the three above in one launch) | `qk_norm_rope_cache_kernel` | qk_norm_rope_cache.cu |
//! | [`paged_attention`] (+ [`AttnScratch`]) | `paged_attention_kernel`, `paged_attention_reduce_kernel` | paged_attention.cu |
//! | [`prefill_attention`] ([`PrefillKernel`]) | `prefill_attention_mma64_kernel`, `prefill_attention_mma128_kernel` (tensor cores), `prefill_attention_kernel` (other head sizes) | prefill_attention_mma.cu, prefill_attention.cu |
//! | [`argmax`], [`softmax_temperature`], [`logprobs_topn`], [`sample`] | `argmax_kernel`, `softmax_temperature_kernel`, `logprobs_topn_kernel`, `sample_kernel` | sampling.cu |
//!
//! | [`gemv::gemv`], [`gemv::gemv_f32`] (decode products, 1..=8 tokens) | `gemv_kernel`, `gemv_f32_kernel` | gemv.cu |
//!
//! The cuBLAS linear layers are in [`super::linear`]; [`super::matmul`] chooses between
//! them and the GEMV kernels per weight shape.
//!
//! Inside: [`dev`] (the `Dev` type), `launch` (checks, launch plans and the one place
//! that launches), and the wrappers by kind: [`rowwise`], [`qkv`], [`attention`],
//! [`sampling`].
//! Every wrapper is a `plan_*` function (pure: checks and the launch's grid, block and
//! arguments) and a run of that plan; the unit tests check the plans without a GPU,
//! including every plan's argument types against the kernel's parameter list in the
//! `.cu` source. `tests/cuda_kernels.rs` compares the kernels with the CPU backend on a
//! GPU.
//!
//! [`Gpu`]: super::device::Gpu

pub mod attention;
pub mod dev;
pub mod gemv;
pub(crate) mod launch;
pub mod qkv;
pub mod rowwise;
pub mod sampling;

pub use attention::{
    group_chunks, paged_attention, partitions, partitions_for, prefill_attention, prefill_grid,
    AttnScratch, AttnShape, PrefillKernel,
};
pub use dev::Dev;
pub use launch::{check_len, Launcher};
pub use qkv::{qk_norm_rope_cache, QkNorm, QkvShape};
pub use rowwise::{
    add_bias, embedding, fused_add_rms_norm, reshape_and_cache, rms_norm, rope, silu_and_mul,
};
pub use sampling::{argmax, logprobs_topn, sample, softmax_temperature};
