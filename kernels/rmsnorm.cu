// entry: rms_norm_kernel fused_add_rms_norm_kernel
//
// RMSNorm: out = x / sqrt(mean(x^2) + eps) * weight, per row of `dim` values; squares
// and their sum in f32 (the CPU sums in f64: results differ by f32 rounding only), the
// product rounded once to bf16.
//
// Matches: `rms_norm` in src/backend/cpu/ops.rs, used by `norm_rows` (attention/FFN/final
// norms, one row per token) and `norm_heads` (Qwen3's per-head q/k norm, one row per head)
// in src/model/decoder.rs.
//
// rms_norm_kernel(out, out_stride, x, x_stride, weight, eps, num_tokens, num_heads, dim)
//   Plain RMSNorm over rows of `dim` values. Row r = (token t = r / num_heads,
//   head h = r % num_heads) lives at x + t * x_stride + h * dim and is written to
//   out + t * out_stride + h * dim (strides in elements).
//   - hidden-state norm: num_heads = 1, dim = hidden size, strides = hidden size.
//   - Qwen3 q/k norm: num_heads = heads, dim = head_dim, strides = the token stride of the
//     q (or k) buffer (e.g. that of a fused [q | k | v] projection output).
//   x, out bf16; weight bf16 [dim]. out may equal x (in place): every element is read and
//   written by the same thread.
//   Launch: grid = (num_tokens * num_heads), block = (any multiple of 32, <= 1024;
//   e.g. 128 for head rows, 256..1024 for hidden rows).
//
// fused_add_rms_norm_kernel(out, residual, x, weight, eps, num_tokens, dim)
//   residual[t] += x[t] (f32 sum, stored as bf16), then out[t] = rmsnorm(residual[t]) * w
//   computed from the stored (bf16-rounded) residual. This is the CPU path's
//   `add_assign(x, proj); norm_rows(x, ...)` with the residual stream kept in bf16.
//   residual, x, out bf16 [num_tokens, dim] contiguous; weight bf16 [dim]. out may equal x
//   (vLLM writes the normed value back into the input buffer); out must not equal residual.
//   Launch: grid = (num_tokens), block = (any multiple of 32, <= 1024; 256..1024).

#include <cuda_bf16.h>

#include "common.cuh"

// Sum of `v` over the block; every thread gets the result. `red` holds 32 floats.
__device__ __forceinline__ float block_sum(float v, float* red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nwarps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();  // `red` may still be read by a previous call
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float s = lane < nwarps ? red[lane] : 0.0f;
    return warp_sum(s);
}

extern "C" __global__ void __launch_bounds__(1024) rms_norm_kernel(__nv_bfloat16* out, long long out_stride,
                                           const __nv_bfloat16* x, long long x_stride,
                                           const __nv_bfloat16* __restrict__ weight, float eps,
                                           int num_tokens, int num_heads, int dim) {
    __shared__ float red[32];
    const int r = blockIdx.x;
    if (r >= num_tokens * num_heads) return;
    const int t = r / num_heads, h = r % num_heads;
    const __nv_bfloat16* src = x + t * x_stride + (long long)h * dim;
    __nv_bfloat16* dst = out + t * out_stride + (long long)h * dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        const float v = __bfloat162float(src[i]);
        ss += v * v;
    }
    const float mean = block_sum(ss, red) / (float)dim;
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        const float v = __bfloat162float(src[i]);
        dst[i] = __float2bfloat16(v * scale * __bfloat162float(weight[i]));
    }
}

extern "C" __global__ void __launch_bounds__(1024) fused_add_rms_norm_kernel(__nv_bfloat16* out,
                                                     __nv_bfloat16* residual,
                                                     const __nv_bfloat16* x,
                                                     const __nv_bfloat16* __restrict__ weight,
                                                     float eps, int num_tokens, int dim) {
    __shared__ float red[32];
    const int t = blockIdx.x;
    if (t >= num_tokens) return;
    const long long base = (long long)t * dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        const float sum = __bfloat162float(residual[base + i]) + __bfloat162float(x[base + i]);
        const __nv_bfloat16 stored = __float2bfloat16(sum);
        residual[base + i] = stored;
        const float v = __bfloat162float(stored);
        ss += v * v;
    }
    const float mean = block_sum(ss, red) / (float)dim;
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        const float v = __bfloat162float(residual[base + i]);
        out[base + i] = __float2bfloat16(v * scale * __bfloat162float(weight[i]));
    }
}
