//! The bodies of tests/cuda_kernels/ that need no GPU-only part (cuBLAS, the PTX cache,
//! launch attributes), for tests/kernel_emu.rs: the same files, here over the emulator's
//! `device` module (tests/cuda_kernels/on_emu.rs).

#[path = "../cuda_kernels/attention.rs"]
mod attention;
#[path = "../cuda_kernels/gemv.rs"]
mod gemv;
#[path = "../cuda_kernels/qkv.rs"]
mod qkv;
#[path = "../cuda_kernels/rowwise.rs"]
mod rowwise;
#[path = "../cuda_kernels/sampling.rs"]
mod sampling;
#[path = "../cuda_kernels/util.rs"]
pub mod util;

pub use attention::{
    paged_attention, paged_attention_gqa, paged_attention_long, prefill_attention,
    prefill_attention_long, prefill_attention_prefix,
};
pub use gemv::{gemv, gemv_f32};
pub use qkv::qk_norm_rope_cache;
pub use rowwise::{
    add_bias, embedding, fused_add_rms_norm, reshape_and_cache, rms_norm, rms_norm_heads, rope,
    silu_and_mul,
};
pub use sampling::{argmax, logprobs_topn, sample, softmax_temperature};
