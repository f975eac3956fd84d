// entry: gemv_kernel gemv_f32_kernel
//
// Matrix-vector products for decode-sized batches (1 to 8 tokens): out = x . W^T with W
// row-major [n_out, n_in] bf16 (one row per output feature, the layout cuBLAS reads in
// src/backend/cuda/linear.rs), x row-major [m, n_in] bf16, out row-major [m, n_out]
// (bf16: gemv_kernel; f32: gemv_f32_kernel, the logits). f32 products and sums; the
// result is rounded once to the output type, as cuBLAS's CUBLAS_COMPUTE_32F GEMM does
// (the sums' order differs: results agree to f32 rounding before the output rounding).
//
// Why: one decode step reads every weight once for 1..8 tokens, so these products are
// bound by the weights' bytes; a warp per output row streaming its row in 16-byte loads
// with several loads in flight reaches the memory bandwidth where cuBLAS's GEMM kernels
// for tiny m may not. The engine times both per weight shape at load and keeps the faster
// (linear.rs), so this kernel runs only where it wins.
//
// Arguments: out, x, w as above; m in 1..=8; n_in a multiple of 8 (16-byte rows); x and w
// 16-byte aligned (checked by the host wrapper).
//
// Launch: grid = (ceil(n_out / 8)), block = (256) exactly (other sizes trap): warp i of
// block b computes row n = 8 b + i for every token. Lanes take 8-element pieces of the
// row round-robin (a warp reads 512 contiguous bytes per step), two pieces per loop
// iteration, the weights with streaming loads (read once: evict first), x through the
// read-only cache (every warp reads it); the m partial sums are reduced with shuffles and
// lane 0 writes them. 4 blocks (32 warps) per SM: 56 registers, no spills (unrolling by 4
// spilled at that occupancy). Known limit: at 8 tokens each warp re-reads and converts x
// per row (sharing x over 2-4 rows per warp, or mma for m >= 4, would cut that); the load
// time tuning decides per shape whether this kernel or cuBLAS runs.

#include <cuda_bf16.h>

#include "common.cuh"

#define THREADS 256
#define WARPS (THREADS / 32)
#define MAX_M 8
#define UNROLL 2

// The dot product of 8 bf16 pairs packed in two uint4.
__device__ __forceinline__ float dot8(const uint4& a, const uint4& b) {
    const __nv_bfloat162* pa = reinterpret_cast<const __nv_bfloat162*>(&a);
    const __nv_bfloat162* pb = reinterpret_cast<const __nv_bfloat162*>(&b);
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 fa = __bfloat1622float2(pa[i]), fb = __bfloat1622float2(pb[i]);
        s = fmaf(fa.x, fb.x, s);
        s = fmaf(fa.y, fb.y, s);
    }
    return s;
}

__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }
__device__ __forceinline__ void store(float* p, float v) { *p = v; }

template <typename OutT>
__device__ __forceinline__ void gemv(OutT* __restrict__ out, const __nv_bfloat16* __restrict__ x,
                                     const __nv_bfloat16* __restrict__ w, int m, int n_out,
                                     int n_in) {
    if (blockDim.x != THREADS) __trap();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int row = blockIdx.x * WARPS + warp;
    if (row >= n_out || m < 1 || m > MAX_M || n_in % 8) return;  // warp-uniform
    const int pieces = n_in / 8;
    const uint4* wr = reinterpret_cast<const uint4*>(w + (long long)row * n_in);
    const uint4* xr = reinterpret_cast<const uint4*>(x);
    float acc[MAX_M];
#pragma unroll
    for (int t = 0; t < MAX_M; ++t) acc[t] = 0.0f;
    int p = lane;
    for (; p + 32 * (UNROLL - 1) < pieces; p += 32 * UNROLL) {
        uint4 wv[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) wv[u] = __ldcs(wr + p + 32 * u);
#pragma unroll
        for (int t = 0; t < MAX_M; ++t) {
            if (t < m) {
#pragma unroll
                for (int u = 0; u < UNROLL; ++u)
                    acc[t] += dot8(wv[u], __ldg(xr + (long long)t * pieces + p + 32 * u));
            }
        }
    }
    for (; p < pieces; p += 32) {
        const uint4 wv = __ldcs(wr + p);
#pragma unroll
        for (int t = 0; t < MAX_M; ++t)
            if (t < m) acc[t] += dot8(wv, __ldg(xr + (long long)t * pieces + p));
    }
#pragma unroll
    for (int t = 0; t < MAX_M; ++t) {
        if (t < m) {
            const float s = warp_sum(acc[t]);
            if (lane == 0) store(out + (long long)t * n_out + row, s);
        }
    }
}

extern "C" __global__ void __launch_bounds__(THREADS, 4) gemv_kernel(
    __nv_bfloat16* __restrict__ out, const __nv_bfloat16* __restrict__ x,
    const __nv_bfloat16* __restrict__ w, int m, int n_out, int n_in) {
    gemv(out, x, w, m, n_out, n_in);
}

extern "C" __global__ void __launch_bounds__(THREADS, 4) gemv_f32_kernel(
    float* __restrict__ out, const __nv_bfloat16* __restrict__ x,
    const __nv_bfloat16* __restrict__ w, int m, int n_out, int n_in) {
    gemv(out, x, w, m, n_out, n_in);
}
