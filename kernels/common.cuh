// Helpers shared by the kernel files (no entry points): NEG_INF and the warp-wide
// reductions over all 32 lanes (butterfly shuffles, every lane gets the result; the sums
// add in the same fixed order on every lane, so all lanes hold the same bits).
//
// Included by: gemv.cu, paged_attention.cu, prefill_attention.cu,
// prefill_attention_mma.cu, qk_norm_rope_cache.cu, rmsnorm.cu, sampling.cu. Needs no CUDA
// header (__shfl_xor_sync, fmaxf and __int_as_float are built in).

#pragma once

#define NEG_INF (-__int_as_float(0x7f800000))

// Sum of `v` over the warp (float or double); every lane gets it.
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Maximum of `v` over the warp (fmaxf: a NaN lane loses to a number); every lane gets it.
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
