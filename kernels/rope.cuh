// Rotary position embedding pieces shared by rope.cu and qk_norm_rope_cache.cu (no entry
// points): the per-token (cos, sin) table in shared memory and the rotation of one pair.
// The angles follow `Rope::apply` in src/backend/cpu/ops.rs (see rope.cu's header):
//   theta_0 = pos; theta_{i+1} = theta_i * theta_scale   (f32, sequential),
//   angle_i = freq_scale * (theta_i / freq_factors[i]),
//   a' = a cos - b sin, b' = a sin + b cos   (f32, rounded once to bf16).

#pragma once

#include <cuda_bf16.h>

// cos_s[i], sin_s[i] of angle freq_scale * (theta_s[i] / freq_factors[i]) (factor 1 when
// freq_factors is null).
__device__ __forceinline__ void rope_angle(int i, const float* theta_s, float* cos_s,
                                           float* sin_s, float freq_scale,
                                           const float* freq_factors) {
    const float ff = freq_factors ? freq_factors[i] : 1.0f;
    const float a = freq_scale * (theta_s[i] / ff);
    cos_s[i] = cosf(a);
    sin_s[i] = sinf(a);
}

// Fills cos_s[i], sin_s[i] for i < half (shared arrays of at least `half` floats, with
// theta_s as scratch) for position positions[t]: thread 0 runs the theta recurrence, then
// the block's threads take the cosines and sines, striding by block_threads, the block size
// when the kernel fixes it, or by blockDim.x when block_threads is 0. Every thread of the
// block calls it; it syncs before and after the sincos pass, so the table is ready on return.
template <int block_threads>
__device__ __forceinline__ void rope_table(float* theta_s, float* cos_s, float* sin_s, int half,
                                           const int* positions, int t, float theta_scale,
                                           float freq_scale, const float* freq_factors) {
    if (threadIdx.x == 0) {
        float theta = (float)positions[t];
        for (int i = 0; i < half; ++i) {
            theta_s[i] = theta;
            theta *= theta_scale;
        }
    }
    __syncthreads();
    // Two loops rather than a stride argument: passing blockDim.x as one moved its read and
    // changed rope.cu's PTX; each loop here is the one its kernel had.
    if constexpr (block_threads > 0) {
        for (int i = threadIdx.x; i < half; i += block_threads)
            rope_angle(i, theta_s, cos_s, sin_s, freq_scale, freq_factors);
    } else {
        for (int i = threadIdx.x; i < half; i += blockDim.x)
            rope_angle(i, theta_s, cos_s, sin_s, freq_scale, freq_factors);
    }
    __syncthreads();
}

// Rotates pair i (< half) of the head at x in place by (cos_s[i], sin_s[i]): the pair is
// (x[i], x[i + half]) for NeoX (neox != 0), (x[2i], x[2i + 1]) otherwise.
__device__ __forceinline__ void rope_rotate(__nv_bfloat16* x, int i, int half, int neox,
                                            const float* cos_s, const float* sin_s) {
    const int ia = neox ? i : 2 * i;
    const int ib = neox ? i + half : 2 * i + 1;
    const float a = __bfloat162float(x[ia]), b = __bfloat162float(x[ib]);
    const float c = cos_s[i], s = sin_s[i];
    x[ia] = __float2bfloat16(a * c - b * s);
    x[ib] = __float2bfloat16(a * s + b * c);
}
