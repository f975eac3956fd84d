// entry: prefill_attention_mma64_kernel prefill_attention_mma128_kernel
//
// Tensor-core causal varlen prefill attention over the paged f16 KV cache: the same
// contract, arguments and results as prefill_attention_kernel (prefill_attention.cu,
// which stays the path for head sizes other than 64 and 128), computed FlashAttention-2
// style with `mma.sync.m16n8k16` (f16 inputs, f32 accumulators) instead of CUDA cores.
//
//   out[t, h, :] = sum_{j <= p} softmax_j(q[t, h] . K[j] * scale) * V[j]
//
// for query t of sequence s at position p = seq_lens[s] - q_len + i, keys read through
// the block table. Matches: `Decoder::attention` in src/model/decoder.rs. Q is rounded to
// f16 (as there), Q.K and P.V accumulate in f32, the softmax is online in f32, and the
// unnormalized probabilities are rounded to f16 for the P.V product (the CPU rounds the
// normalized ones), so results agree to f16 rounding, not bit for bit.
//
// Layouts: exactly prefill_attention.cu's (q/out bf16 rows at q_stride/out_stride,
// cu_seqlens_q int32 [num_seqs + 1], seq_lens int32 [num_seqs], key_cache/value_cache f16
// [num_blocks, block_size, num_kv_heads, head_dim], block_tables int32 [num_seqs,
// max_blocks_per_seq]; a table entry outside [0, num_blocks) masks its keys). The caches
// must be 16-byte aligned (K/V rows are read in 16-byte pieces). head_dim must equal the
// entry point's (64 or 128): another value writes nothing (the host never launches it).
//
// Launch: grid = (ceil(max_q_len / 64), num_heads, num_seqs), block = (128) exactly
// (other sizes trap). A block takes 64 query rows of one head, 16 per warp: the warp
// keeps its Q rows as mma A fragments in registers and its output rows as f32 mma
// accumulators. The block walks the keys 0 .. (its last row's position) in tiles of 32:
// slots are looked up once per tile, K and V are copied into shared memory in 16-byte
// pieces (rows padded by 16 bytes: conflict-free fragment loads), then each warp computes
// S = Q K^T (16 x 32) with mma, masks it (causal, past the context, bad slots), updates
// its rows' running max and sum (rows live in lane quads: two shuffles reduce a row), and
// adds P V with P taken straight from the S accumulators as the A operand and V's
// B fragments loaded with ldmatrix.trans. Warps whose rows all precede a tile skip it.
// Shared memory: 35 KB (head_dim 128), 19 KB (64).
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16", f16): lane = 4 * g + t.
//   A (16 x 16, row-major): a0 = (g, 2t..2t+1), a1 = (g + 8, 2t..), a2 = (g, 2t + 8..),
//                           a3 = (g + 8, 2t + 8..)
//   B (16 x 8, "col"):      b0 = (k 2t..2t+1, n g), b1 = (k 2t + 8.., n g)
//   C (16 x 8, f32):        c0, c1 = (g, 2t..2t+1), c2, c3 = (g + 8, 2t..2t+1)
// The lower-indexed element of a pair is in the low 16 bits.
//
// Known edge: a key after a row's position inside the same 32-key tile contributes
// 0 * V; a V that overflowed f16 to inf would make that 0 * inf = NaN (the CUDA-core
// kernel skips zero probabilities). V rows come from a working model's projections and
// stay far inside f16's range.

#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include "common.cuh"
#include "paged.cuh"

#define THREADS 128
#define WARPS (THREADS / 32)
#define BLOCK_M 64                  // query rows per block (16 per warp)
#define BLOCK_N 32                  // keys per tile
#define PAD 8                       // f16 padding per shared row (16 bytes)
#define LOG2E 1.4426950408889634f

__device__ __forceinline__ void mma_16816(float (&d)[4], const unsigned (&a)[4], unsigned b0,
                                          unsigned b1) {
#ifdef RILL_KERNEL_EMU  // the CPU kernel emulator (tests/kernel_emu/), never NVRTC
    rill_emu::mma_m16n8k16(d, a, b0, b1);
#else
    // Not volatile: a pure register operation the compiler may schedule freely.
    asm(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// Four 8x8 f16 matrices from shared memory, transposed: lanes 8i..8i+7 give the row
// addresses of matrix i; r[i] receives matrix i's B fragment register. Volatile (it has
// no memory clobber): keeps it after the tile's __syncthreads and inside the key loop.
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const __half* row) {
#ifdef RILL_KERNEL_EMU
    rill_emu::ldmatrix_x4_trans(r, row);
#else
    const unsigned addr = (unsigned)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
#endif
}

__device__ __forceinline__ unsigned pack_half2(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi);  // .x (low half) = lo
    return *reinterpret_cast<const unsigned*>(&h);
}

__device__ __forceinline__ unsigned shared_u32(const __half* p) {
    return *reinterpret_cast<const unsigned*>(p);
}

template <int HD>
__device__ __forceinline__ void prefill_mma(
    __nv_bfloat16* __restrict__ out, long long out_stride, const __nv_bfloat16* __restrict__ q,
    long long q_stride, const __half* __restrict__ key_cache,
    const __half* __restrict__ value_cache, const int* __restrict__ block_tables,
    const int* __restrict__ cu_seqlens_q, const int* __restrict__ seq_lens, int num_seqs,
    int num_heads, int num_kv_heads, int head_dim, int block_size, int max_blocks_per_seq,
    int num_blocks, float scale) {
    constexpr int ROW = HD + PAD;        // shared row stride (f16)
    constexpr int KC = HD / 16;          // k-steps of Q K^T
    constexpr int ND = HD / 8;           // n-blocks of the output
    constexpr int NN = BLOCK_N / 8;      // n-blocks of S
    constexpr int CHUNKS = HD / 8;       // 16-byte pieces of a K/V row
    __shared__ __align__(16) __half q_s[BLOCK_M * ROW];
    __shared__ __align__(16) __half k_s[BLOCK_N * ROW];
    __shared__ __align__(16) __half v_s[BLOCK_N * ROW];
    __shared__ long long slot_s[BLOCK_N];

    if (blockDim.x != THREADS) __trap();
    const int h = blockIdx.y, s = blockIdx.z;
    if (h >= num_heads || s >= num_seqs || head_dim != HD) return;
    const int q_start = cu_seqlens_q[s];
    const int q_len = cu_seqlens_q[s + 1] - q_start;
    const int row0 = blockIdx.x * BLOCK_M;
    if (row0 >= q_len) return;
    const int seq_len = seq_lens[s];
    const int ctx = seq_len - q_len;  // position of query 0
    const int kvh = h / (num_heads / num_kv_heads);
    const long long kv_dim = (long long)num_kv_heads * HD;
    const int rows = min(BLOCK_M, q_len - row0);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int wrow = warp * 16;       // the warp's first row in the tile
    const bool warp_rows = wrow < rows;
    const int warp_last = ctx + row0 + min(wrow + 15, rows - 1);  // its last row's position

    // Q rows of the block, rounded to f16; zeros past q_len.
    for (int i = threadIdx.x; i < BLOCK_M * (HD / 2); i += THREADS) {
        const int r = i / (HD / 2), p = i % (HD / 2);
        float2 v = make_float2(0.0f, 0.0f);
        if (r < rows) {
            const __nv_bfloat16* src =
                q + (long long)(q_start + row0 + r) * q_stride + (long long)h * HD + 2 * p;
            v = make_float2(__bfloat162float(src[0]), __bfloat162float(src[1]));
        }
        *reinterpret_cast<__half2*>(&q_s[r * ROW + 2 * p]) = __floats2half2_rn(v.x, v.y);
    }
    __syncthreads();
    unsigned qa[KC][4];
#pragma unroll
    for (int kc = 0; kc < KC; ++kc) {
        const __half* base = &q_s[(wrow + g) * ROW + kc * 16 + 2 * t];
        qa[kc][0] = shared_u32(base);
        qa[kc][1] = shared_u32(base + 8 * ROW);
        qa[kc][2] = shared_u32(base + 8);
        qa[kc][3] = shared_u32(base + 8 * ROW + 8);
    }

    // Row i of the lane's pair of rows: i = 0 -> row g, i = 1 -> row g + 8 of the warp.
    float o[ND][4];
#pragma unroll
    for (int nd = 0; nd < ND; ++nd) o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.0f;
    float m[2] = {NEG_INF, NEG_INF}, l[2] = {0.0f, 0.0f};
    int qpos[2];
    qpos[0] = ctx + row0 + wrow + g;
    qpos[1] = qpos[0] + 8;
    const float scale_log2 = scale * LOG2E;

    const int n_keys = min(seq_len, ctx + row0 + rows);  // keys 0 .. the block's last position
    const int* table = block_tables + (long long)s * max_blocks_per_seq;
    for (int k0 = 0; k0 < n_keys; k0 += BLOCK_N) {
        __syncthreads();  // the previous tile is consumed
        tile_slots(slot_s, BLOCK_N, table, k0, n_keys, block_size, max_blocks_per_seq, num_blocks);
        __syncthreads();
        for (int i = threadIdx.x; i < BLOCK_N * CHUNKS; i += THREADS) {
            const int j = i / CHUNKS, c = i % CHUNKS;
            const long long slot = slot_s[j];
            uint4 kw = make_uint4(0u, 0u, 0u, 0u), vw = kw;
            if (slot >= 0) {
                const long long off = slot * kv_dim + (long long)kvh * HD;
                kw = reinterpret_cast<const uint4*>(key_cache + off)[c];
                vw = reinterpret_cast<const uint4*>(value_cache + off)[c];
            }
            *reinterpret_cast<uint4*>(&k_s[j * ROW + 8 * c]) = kw;
            *reinterpret_cast<uint4*>(&v_s[j * ROW + 8 * c]) = vw;
        }
        __syncthreads();
        if (!warp_rows || k0 > warp_last) continue;  // warp-uniform: nothing visible

        // S = Q K^T for the warp's 16 rows and the tile's 32 keys.
        float sc[NN][4];
#pragma unroll
        for (int nn = 0; nn < NN; ++nn) {
            sc[nn][0] = sc[nn][1] = sc[nn][2] = sc[nn][3] = 0.0f;
            const __half* krow = &k_s[(nn * 8 + g) * ROW + 2 * t];
#pragma unroll
            for (int kc = 0; kc < KC; ++kc)
                mma_16816(sc[nn], qa[kc], shared_u32(krow + kc * 16), shared_u32(krow + kc * 16 + 8));
        }

        // Mask, then the online softmax of each of the lane's two rows (a row's 32 scores
        // are spread over the 4 lanes of a quad: 8 each).
        float tile_max[2] = {NEG_INF, NEG_INF};
#pragma unroll
        for (int nn = 0; nn < NN; ++nn) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int key = nn * 8 + 2 * t + (e & 1);
                const bool ok = slot_s[key] >= 0 && k0 + key <= qpos[e >> 1];
                sc[nn][e] = ok ? sc[nn][e] * scale_log2 : NEG_INF;
                tile_max[e >> 1] = fmaxf(tile_max[e >> 1], sc[nn][e]);
            }
        }
        float alpha[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            float v = tile_max[i];
            v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
            v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
            const float m_new = fmaxf(m[i], v);
            // Nothing accumulated yet (m == -inf): the old sum and output are 0.
            alpha[i] = m[i] == NEG_INF ? 0.0f : exp2f(m[i] - m_new);
            m[i] = m_new;
        }
        float part[2] = {0.0f, 0.0f};
#pragma unroll
        for (int nn = 0; nn < NN; ++nn) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const float mi = m[e >> 1];
                const float p = sc[nn][e] == NEG_INF ? 0.0f : exp2f(sc[nn][e] - mi);
                sc[nn][e] = p;
                part[e >> 1] += p;
            }
        }
#pragma unroll
        for (int i = 0; i < 2; ++i) l[i] = l[i] * alpha[i] + part[i];
#pragma unroll
        for (int nd = 0; nd < ND; ++nd) {
            o[nd][0] *= alpha[0];
            o[nd][1] *= alpha[0];
            o[nd][2] *= alpha[1];
            o[nd][3] *= alpha[1];
        }

        // O += P V: P (16 x 32) from the S accumulators, two k-steps of 16 keys.
#pragma unroll
        for (int kk = 0; kk < BLOCK_N / 16; ++kk) {
            unsigned pa[4];
            pa[0] = pack_half2(sc[2 * kk][0], sc[2 * kk][1]);
            pa[1] = pack_half2(sc[2 * kk][2], sc[2 * kk][3]);
            pa[2] = pack_half2(sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
            pa[3] = pack_half2(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
            // Lanes 0-15 address keys kk*16 + 0..15 at dims nd*8 (matrices 0, 1: b0, b1 of
            // n-block nd), lanes 16-31 the same keys at dims nd*8 + 8 (n-block nd + 1).
            const __half* vrow = &v_s[(kk * 16 + (lane & 15)) * ROW + (lane >> 4) * 8];
#pragma unroll
            for (int nd = 0; nd < ND; nd += 2) {
                unsigned b[4];
                ldmatrix_x4_trans(b, vrow + nd * 8);
                mma_16816(o[nd], pa, b[0], b[1]);
                mma_16816(o[nd + 1], pa, b[2], b[3]);
            }
        }
    }

    // Rows of the tile: a row's sum is spread over its quad. Rows with no visible key
    // (l == 0) are written as zeros.
    if (!warp_rows) return;
    float inv[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        float v = l[i];
        v += __shfl_xor_sync(0xffffffffu, v, 1);
        v += __shfl_xor_sync(0xffffffffu, v, 2);
        inv[i] = v > 0.0f ? 1.0f / v : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int r = wrow + g + 8 * i;
        if (r >= rows) continue;
        __nv_bfloat16* dst = out + (long long)(q_start + row0 + r) * out_stride + (long long)h * HD;
#pragma unroll
        for (int nd = 0; nd < ND; ++nd) {
            dst[nd * 8 + 2 * t] = __float2bfloat16(o[nd][2 * i] * inv[i]);
            dst[nd * 8 + 2 * t + 1] = __float2bfloat16(o[nd][2 * i + 1] * inv[i]);
        }
    }
}

extern "C" __global__ void __launch_bounds__(THREADS) prefill_attention_mma64_kernel(
    __nv_bfloat16* __restrict__ out, long long out_stride,
    const __nv_bfloat16* __restrict__ q, long long q_stride,
    const __half* __restrict__ key_cache, const __half* __restrict__ value_cache,
    const int* __restrict__ block_tables, const int* __restrict__ cu_seqlens_q,
    const int* __restrict__ seq_lens, int num_seqs, int num_heads, int num_kv_heads,
    int head_dim, int block_size, int max_blocks_per_seq, int num_blocks, float scale) {
    prefill_mma<64>(out, out_stride, q, q_stride, key_cache, value_cache, block_tables,
                    cu_seqlens_q, seq_lens, num_seqs, num_heads, num_kv_heads, head_dim,
                    block_size, max_blocks_per_seq, num_blocks, scale);
}

extern "C" __global__ void __launch_bounds__(THREADS) prefill_attention_mma128_kernel(
    __nv_bfloat16* __restrict__ out, long long out_stride,
    const __nv_bfloat16* __restrict__ q, long long q_stride,
    const __half* __restrict__ key_cache, const __half* __restrict__ value_cache,
    const int* __restrict__ block_tables, const int* __restrict__ cu_seqlens_q,
    const int* __restrict__ seq_lens, int num_seqs, int num_heads, int num_kv_heads,
    int head_dim, int block_size, int max_blocks_per_seq, int num_blocks, float scale) {
    prefill_mma<128>(out, out_stride, q, q_stride, key_cache, value_cache, block_tables,
                     cu_seqlens_q, seq_lens, num_seqs, num_heads, num_kv_heads, head_dim,
                     block_size, max_blocks_per_seq, num_blocks, scale);
}
