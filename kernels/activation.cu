// entry: silu_and_mul_kernel add_bias_kernel
//
// silu_and_mul_kernel: SwiGLU activation over a fused [gate | up] row:
// out[t, i] = silu(gate[t, i]) * up[t, i] with silu(g) = g / (1 + exp(-g)), computed in
// f32 from bf16 inputs and rounded once to bf16 on the store.
//
// Matches: `silu_mul` in src/backend/cpu/ops.rs (`g / (1 + e^-g) * u`), the activation of
// the CPU path's `matmul_swiglu`. The CUDA backend runs the gate and up projections as one
// GEMM into a [gate | up] buffer (vLLM's `silu_and_mul` layout).
//
// Arguments:
//   out   bf16 [num_tokens, d], contiguous.
//   input bf16 [num_tokens, 2 * d]: row t holds gate in columns [0, d) and up in [d, 2d).
//         May not alias `out` (out row t would overwrite input row t/2).
//
// Launch: grid = (num_tokens, y) with any y >= 1 (e.g. ceil(d / 256)), block = (256).
// Threads stride over the row; consecutive threads touch consecutive elements (coalesced).
//
// add_bias_kernel: x[t, i] = bf16(f32(x[t, i]) + bias[i]) for i < n, in place (Qwen2's
// Q/K/V projection biases).
//
// Matches: the `add_assign(row, b)` of the biases in `Decoder::forward_rows`. The CPU adds
// the f32 bias to the f32 matmul output; here the GEMM output is already rounded to bf16,
// so the result is rounded twice (within one bf16 rounding of the CPU's).
//
// Arguments:
//   x    bf16: token t's n values at x + t * x_stride (stride in elements, so a view into
//        a fused [q | k | v] buffer works; one launch covers all three biases when they
//        are stored as one [q_dim + 2 * kv_dim] vector).
//   bias f32 [n].
//
// Launch: grid = (num_tokens, y) with any y >= 1 (e.g. ceil(n / 256)), block = (256).

#include <cuda_bf16.h>

extern "C" __global__ void silu_and_mul_kernel(__nv_bfloat16* __restrict__ out,
                                               const __nv_bfloat16* __restrict__ input,
                                               int num_tokens, int d) {
    const int t = blockIdx.x;
    if (t >= num_tokens) return;
    const __nv_bfloat16* gate = input + (long long)t * 2 * d;
    const __nv_bfloat16* up = gate + d;
    __nv_bfloat16* dst = out + (long long)t * d;
    const int stride = blockDim.x * gridDim.y;
    for (int i = blockIdx.y * blockDim.x + threadIdx.x; i < d; i += stride) {
        const float g = __bfloat162float(gate[i]);
        const float u = __bfloat162float(up[i]);
        dst[i] = __float2bfloat16(g / (1.0f + expf(-g)) * u);
    }
}

extern "C" __global__ void add_bias_kernel(__nv_bfloat16* __restrict__ x, long long x_stride,
                                           const float* __restrict__ bias, int num_tokens,
                                           int n) {
    const int t = blockIdx.x;
    if (t >= num_tokens) return;
    __nv_bfloat16* row = x + t * x_stride;
    const int stride = blockDim.x * gridDim.y;
    for (int i = blockIdx.y * blockDim.x + threadIdx.x; i < n; i += stride) {
        row[i] = __float2bfloat16(__bfloat162float(row[i]) + bias[i]);
    }
}
