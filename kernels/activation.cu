// entry: silu_and_mul_kernel
//
// SwiGLU activation over a fused [gate | up] row: out[t, i] = silu(gate[t, i]) * up[t, i]
// with silu(g) = g / (1 + exp(-g)), computed in f32 from bf16 inputs and rounded once to
// bf16 on the store.
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
