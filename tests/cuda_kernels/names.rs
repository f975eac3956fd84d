//! The kernel parity tests that need no GPU-only part (cuBLAS, the PTX cache, launch
//! attributes), listed once: `emulable_tests!(m, extra...)` expands to
//! `m! { extra..., <these> }`. tests/cuda_kernels.rs adds the GPU-only ones; tests/kernel_emu.rs
//! runs these on the CPU kernel emulator.

macro_rules! emulable_tests {
    ($m:ident $(, $extra:ident)* $(,)?) => {
        $m! {
            $($extra,)*
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
        }
    };
}
