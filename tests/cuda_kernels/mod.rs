//! The bodies of tests/cuda_kernels.rs (built with the `cuda` feature only), one module
//! per kind of kernel, over the helpers of `util` and the crate root's `device` (the GPU
//! here; tests/kernel_emu.rs runs most of these bodies on the CPU kernel emulator).

mod attention;
mod gemv;
mod limits;
mod linear;
mod qkv;
mod rowwise;
mod sampling;
pub mod util;

pub use attention::{
    paged_attention, paged_attention_gqa, paged_attention_long, prefill_attention,
    prefill_attention_long, prefill_attention_prefix,
};
pub use gemv::{gemv, gemv_f32};
pub use limits::{launch_limits, ptx_cache};
pub use linear::{linear, linear_f32};
pub use qkv::qk_norm_rope_cache;
pub use rowwise::{
    add_bias, embedding, fused_add_rms_norm, reshape_and_cache, rms_norm, rms_norm_heads, rope,
    silu_and_mul,
};
pub use sampling::{argmax, logprobs_topn, sample, softmax_temperature};
