// entry: rope_kernel
//
// Rotary position embedding, in place on the q and k heads of every token, for the
// "normal" layout (adjacent pairs (x[2i], x[2i+1]), GGUF llama's permuted Q/K) and the
// NeoX layout (pairs (x[i], x[i + n_rot/2]), transformers' rotate_half: Qwen2/3 and
// safetensors llama). Only the first n_rot values of each head rotate (n_rot <= head_dim
// <= 256); the rest are left as they are.
//
// Matches: `Rope::apply` in src/backend/cpu/ops.rs, including its angle recurrence:
//   theta_0 = pos; theta_{i+1} = theta_i * theta_scale   (f32, sequential, as ggml's
//   rope_cache_init), angle_i = freq_scale * (theta_i / freq_factors[i]),
//   a' = a cos - b sin, b' = a sin + b cos   (f32; q and k are bf16 in memory).
// The host passes theta_scale = freq_base^(-2 / n_rot) computed on the CPU exactly as
// `Rope::apply` does (`freq_base.powf(-2.0 / n_rot as f32)`), so the angles are the CPU's
// bit for bit; cosf/sinf (no fast math) differ from the CPU's by at most a couple of ulp.
//
// Arguments:
//   q bf16: token t's head h at q + t * q_stride + h * head_dim (num_heads heads).
//   k bf16: token t's head h at k + t * k_stride + h * head_dim (num_kv_heads heads).
//     (Strides in elements, so q and k may be views into a fused [q | k | v] buffer.)
//   positions int32 [num_tokens]: each token's position in its sequence.
//   freq_factors f32 [n_rot / 2] or null (Llama 3 rope scaling, ggml's rope_freqs).
//   neox: 0 = normal (adjacent pairs), 1 = NeoX (halves).
//
// Launch: grid = (num_tokens), block = (128) (any multiple of 32 with blockDim >= 1).
// The block computes the token's n_rot/2 (cos, sin) pairs once into shared memory
// (theta recurrence by one thread, then sincos in parallel), then threads stride over
// the (head, pair) items of q and k.

#include <cuda_bf16.h>

#include "rope.cuh"

#define ROPE_MAX_HALF 128  // head_dim <= 256

extern "C" __global__ void rope_kernel(__nv_bfloat16* q, long long q_stride,
                                       __nv_bfloat16* k, long long k_stride,
                                       const int* __restrict__ positions,
                                       const float* __restrict__ freq_factors,
                                       int num_tokens, int num_heads, int num_kv_heads,
                                       int head_dim, int n_rot, float theta_scale,
                                       float freq_scale, int neox) {
    __shared__ float theta_s[ROPE_MAX_HALF];
    __shared__ float cos_s[ROPE_MAX_HALF];
    __shared__ float sin_s[ROPE_MAX_HALF];
    const int t = blockIdx.x;
    if (t >= num_tokens) return;
    // n_rot is even and fits the head and the table; anything else rotates nothing.
    const int half = (n_rot > 0 && n_rot <= head_dim && n_rot % 2 == 0 &&
                      n_rot / 2 <= ROPE_MAX_HALF) ? n_rot / 2 : 0;
    rope_table<0>(theta_s, cos_s, sin_s, half, positions, t, theta_scale, freq_scale,
                  freq_factors);  // any block size
    const int items = (num_heads + num_kv_heads) * half;
    for (int it = threadIdx.x; it < items; it += blockDim.x) {
        const int head = it / half, i = it % half;
        __nv_bfloat16* x = head < num_heads
            ? q + t * q_stride + (long long)head * head_dim
            : k + t * k_stride + (long long)(head - num_heads) * head_dim;
        rope_rotate(x, i, half, neox, cos_s, sin_s);
    }
}
