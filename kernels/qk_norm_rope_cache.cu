// entry: qk_norm_rope_cache_kernel
//
// The attention block's per-token work between the QKV projection and attention, fused
// into one launch (vLLM fuses the same steps): per token, each q and k head gets
// Qwen3's per-head RMSNorm (when its weight is given), then RoPE; q is written back in
// place, k goes (as f16) into its slot of the paged cache, and v is copied into the
// value cache. It replaces rms_norm_kernel (q heads, k heads) + rope_kernel +
// reshape_and_cache_kernel: one launch instead of up to four per layer, and k is never
// written back to the activations.
//
// Matches, step for step and with the same roundings as those kernels:
//   norm:  `rms_norm` over each head (`norm_heads` in src/model/decoder.rs): sum of squares
//          in f32, scale = 1 / sqrtf(mean + eps), value rounded once to bf16;
//   rope:  `Rope::apply` in src/backend/cpu/ops.rs (rope.cu's angle recurrence: theta_0 =
//          pos, theta_{i+1} = theta_i * theta_scale, angle = freq_scale * theta_i /
//          freq_factors[i]; normal (adjacent pairs) or NeoX (halves) layout; only the
//          first n_rot values rotate), result rounded to bf16;
//   cache: k and v converted bf16 -> f16 into slot slot_mapping[t] (cache.cu).
// Only the sum-of-squares order differs from rms_norm_kernel's (a warp reduces a head
// here), so results agree to f32 rounding of the scale.
//
// Arguments:
//   qkv bf16: token t's fused row at qkv + t * qkv_stride: num_heads q heads, then
//     num_kv_heads k heads, then num_kv_heads v heads, head_dim values each. The q part is
//     normed and rotated in place; k and v are read only.
//   key_cache, value_cache f16 [num_slots, num_kv_heads * head_dim] (cache.cu's layout).
//   slot_mapping int64 [num_tokens]: -1 (a padded token) or outside [0, num_slots) skips
//     the cache writes (q is still processed).
//   positions int32 [num_tokens]; freq_factors f32 [n_rot / 2] or null.
//   q_norm, k_norm bf16 [head_dim] or null (no per-head norm: Llama, Qwen2).
//   head_dim <= 256; n_rot even, <= head_dim; neox 0 or 1.
//
// Launch: grid = (num_tokens), block = (128) exactly (other sizes trap). The block builds
// the token's (cos, sin) table in shared memory as rope.cu does (both use rope.cuh); then
// each warp takes whole heads (q heads, then k heads): it loads the head into registers,
// reduces its sum of squares with shuffles, stages the normed bf16 values in its shared
// row, and its lanes rotate pairs from there; finally the threads copy v. Shared memory
// 3.5 KB.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common.cuh"
#include "paged.cuh"
#include "rope.cuh"

#define THREADS 128
#define WARPS (THREADS / 32)
#define MAX_HEAD_DIM 256
#define ROPE_MAX_HALF (MAX_HEAD_DIM / 2)
#define PER_LANE (MAX_HEAD_DIM / 32)

extern "C" __global__ void __launch_bounds__(THREADS) qk_norm_rope_cache_kernel(
    __nv_bfloat16* __restrict__ qkv, long long qkv_stride, __half* __restrict__ key_cache,
    __half* __restrict__ value_cache, const long long* __restrict__ slot_mapping,
    const int* __restrict__ positions, const float* __restrict__ freq_factors,
    const __nv_bfloat16* __restrict__ q_norm, const __nv_bfloat16* __restrict__ k_norm,
    int num_tokens, int num_heads, int num_kv_heads, int head_dim, int n_rot,
    float theta_scale, float freq_scale, int neox, float eps, long long num_slots) {
    __shared__ float theta_s[ROPE_MAX_HALF];
    __shared__ float cos_s[ROPE_MAX_HALF];
    __shared__ float sin_s[ROPE_MAX_HALF];
    __shared__ __nv_bfloat16 row_s[WARPS][MAX_HEAD_DIM];

    if (blockDim.x != THREADS) __trap();
    const int t = blockIdx.x;
    if (t >= num_tokens || head_dim > MAX_HEAD_DIM || head_dim <= 0) return;
    const int half = (n_rot > 0 && n_rot <= head_dim && n_rot % 2 == 0) ? n_rot / 2 : 0;
    rope_table<THREADS>(theta_s, cos_s, sin_s, half, positions, t, theta_scale, freq_scale,
                        freq_factors);

    const long long slot = slot_mapping[t];
    const bool cached = slot >= 0 && slot < num_slots;
    const long long kv_dim = (long long)num_kv_heads * head_dim;
    __nv_bfloat16* row = qkv + t * qkv_stride;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __nv_bfloat16* mine = row_s[warp];

    for (int head = warp; head < num_heads + num_kv_heads; head += WARPS) {
        const bool is_q = head < num_heads;
        __nv_bfloat16* x = row + (long long)head * head_dim;  // k heads follow the q heads
        const __nv_bfloat16* w = is_q ? q_norm : k_norm;
        // The head in registers (lane holds values lane, lane + 32, ...).
        float v[PER_LANE];
        float ss = 0.0f;
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j) {
            const int i = lane + 32 * j;
            v[j] = i < head_dim ? __bfloat162float(x[i]) : 0.0f;
            ss += v[j] * v[j];
        }
        float scale = 1.0f;
        if (w) {
            ss = warp_sum(ss);
            scale = 1.0f / sqrtf(ss / (float)head_dim + eps);
        }
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j) {
            const int i = lane + 32 * j;
            if (i < head_dim)
                mine[i] = w ? __float2bfloat16(v[j] * scale * __bfloat162float(w[i]))
                            : __float2bfloat16(v[j]);
        }
        __syncwarp();
        // Rotate pairs in the staged row; values past n_rot stay as normed.
        for (int i = lane; i < half; i += 32) rope_rotate(mine, i, half, neox, cos_s, sin_s);
        __syncwarp();
        if (is_q) {
            for (int i = lane; i < head_dim; i += 32) x[i] = mine[i];
        } else if (cached) {
            __half* dst = key_cache + slot * kv_dim + (long long)(head - num_heads) * head_dim;
            for (int i = lane; i < head_dim; i += 32) dst[i] = to_cache_f16(mine[i]);
        }
        __syncwarp();  // the row is reused by the warp's next head
    }

    if (!cached) return;
    const __nv_bfloat16* vsrc = row + (long long)(num_heads + num_kv_heads) * head_dim;
    __half* vdst = value_cache + slot * kv_dim;
    for (long long i = threadIdx.x; i < kv_dim; i += THREADS) vdst[i] = to_cache_f16(vsrc[i]);
}
