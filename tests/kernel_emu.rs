//! The kernel parity tests of tests/cuda_kernels/ run on the CPU kernel emulator
//! (`rill::backend::cuda::emu`, tests/kernel_emu/): the real `kernels/*.cu` sources and
//! the real launch plans of `rill::backend::cuda::ops`, against the CPU backend, on any
//! machine. Everything but the GPU-only tests (PTX cache, launch limits, cuBLAS) runs.
//!
//! Built only with the `kernel-emu` feature (`cargo test --features kernel-emu --test
//! kernel_emu`; the README's test command does). What the emulator cannot show is in
//! src/backend/cuda/emu.rs; tests/cuda_kernels.rs runs the same bodies on a GPU.

#![cfg(feature = "kernel-emu")]

#[path = "kernel_emu/parity.rs"]
mod parity;

#[path = "cuda_kernels/on_emu.rs"]
mod device;

macro_rules! emulated {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                if let Err(e) = parity::$name() {
                    panic!("{e}");
                }
            }
        )*
    };
}

emulated![
    embedding,
    rms_norm,
    rms_norm_heads,
    fused_add_rms_norm,
    rope,
    silu_and_mul,
    add_bias,
    reshape_and_cache,
    qk_norm_rope_cache,
    paged_attention,
    paged_attention_gqa,
    paged_attention_long,
    prefill_attention,
    prefill_attention_prefix,
    prefill_attention_long,
    argmax,
    softmax_temperature,
    logprobs_topn,
    sample,
    gemv,
    gemv_f32,
];
