// entry: prefill_attention_kernel
//
// Causal varlen attention for the prefill (and chunked-prefill) tokens of a batch of
// sequences, reading K and V from the paged f16 KV cache through block tables, so cached
// prefixes (prefix-cache hits, earlier chunks) are attended to exactly like the tokens
// of this step. The query i of sequence s (i in [0, q_len)) is at position
// p = seq_lens[s] - q_len + i and attends to cache positions 0..=p of its sequence:
//
//   out[t, h, :] = sum_{j <= p} softmax_j(q[t, h] . K[j] * scale) * V[j]
//
// Matches: `Decoder::attention` in src/model/decoder.rs (every token of a step against
// its sequence's cache, after reshape_and_cache wrote this step's K/V): Q rounded to f16
// before Q.K, f32 dot products, f32 softmax. As in paged_attention.cu the softmax is
// online (tile by tile) and the probabilities are not rounded to f16 before P.V, so the
// results agree to rounding, not bit for bit. A decode token is a query of length 1, so
// mixed steps (chunked prefill next to decodes) can run entirely through this kernel.
//
// Layouts (element strides):
//   q            bf16: flat token t (of the whole step), head h at q + t * q_stride + h * head_dim.
//   out          bf16: token t, head h at out + t * out_stride + h * head_dim.
//   cu_seqlens_q int32 [num_seqs + 1]: sequence s's query tokens are flat tokens
//                [cu_seqlens_q[s], cu_seqlens_q[s + 1]) (flash-attn's varlen convention).
//   seq_lens     int32 [num_seqs]: context length after this step (num_computed_tokens +
//                q_len); must be >= q_len (a row with a negative position gets zeros).
//   key_cache, value_cache f16 [num_blocks, block_size, num_kv_heads, head_dim] (one
//                layer; see cache.cu), block_tables int32 [num_seqs, max_blocks_per_seq];
//                an entry outside [0, num_blocks) is a host bug: those keys are masked,
//                never read out of bounds.
//   head_dim even, <= 256; num_heads a multiple of num_kv_heads (GQA: head h reads KV
//   head h / (num_heads / num_kv_heads)).
//
// Launch: grid = (ceil(max_q_len / 16), num_heads, num_seqs), block = (128) exactly
// (other block sizes trap). A block takes 16 query rows of one head (4 per warp) and
// walks the keys 0 .. (its last row's position) in tiles of 32: the tile's slots are
// looked up once, K and V are loaded into shared memory with coalesced 4-byte loads
// (rows padded by one word: conflict-free column reads), then each warp scores its rows
// (lane j <-> key j of the tile), updates the running max / sum / output of each row
// (online softmax) and accumulates P.V with lanes splitting head_dim. Shared memory:
// ~41 KB static. Blocks whose 16 rows start past the sequence's q_len exit at once.

#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include "common.cuh"
#include "paged.cuh"

#define THREADS 128
#define WARPS (THREADS / 32)
#define BLOCK_M 16                  // query rows per block
#define ROWS_PER_WARP (BLOCK_M / WARPS)
#define BLOCK_N 32                  // keys per tile (one per lane)
#define MAX_HEAD_DIM 256
#define MAX_PAIRS_ALL (MAX_HEAD_DIM / 2)
#define MAX_PAIRS 4                 // f16 pairs per lane in the P.V accumulators

extern "C" __global__ void __launch_bounds__(THREADS) prefill_attention_kernel(
    __nv_bfloat16* __restrict__ out, long long out_stride,
    const __nv_bfloat16* __restrict__ q, long long q_stride,
    const __half* __restrict__ key_cache, const __half* __restrict__ value_cache,
    const int* __restrict__ block_tables, const int* __restrict__ cu_seqlens_q,
    const int* __restrict__ seq_lens, int num_seqs, int num_heads, int num_kv_heads,
    int head_dim, int block_size, int max_blocks_per_seq, int num_blocks, float scale) {
    __shared__ __half2 q_s[BLOCK_M][MAX_PAIRS_ALL];
    __shared__ __half2 k_s[BLOCK_N * (MAX_PAIRS_ALL + 1)];
    __shared__ __half2 v_s[BLOCK_N * (MAX_PAIRS_ALL + 1)];
    __shared__ long long slot_s[BLOCK_N];

    if (blockDim.x != THREADS) __trap();
    const int h = blockIdx.y, s = blockIdx.z;
    if (h >= num_heads || s >= num_seqs || head_dim > MAX_HEAD_DIM || head_dim % 2) return;
    const int q_start = cu_seqlens_q[s];
    const int q_len = cu_seqlens_q[s + 1] - q_start;
    const int row0 = blockIdx.x * BLOCK_M;
    if (row0 >= q_len) return;
    const int seq_len = seq_lens[s];
    const int ctx = seq_len - q_len;  // position of query 0
    const int kvh = h / (num_heads / num_kv_heads);
    const int pairs = head_dim / 2, stride = pairs + 1;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long kv_dim = (long long)num_kv_heads * head_dim;
    const int rows = min(BLOCK_M, q_len - row0);

    // Queries of the tile, rounded to f16 (as the CPU path rounds them); zeros past q_len.
    for (int i = threadIdx.x; i < BLOCK_M * pairs; i += THREADS) {
        const int r = i / pairs, p = i % pairs;
        float2 v = make_float2(0.0f, 0.0f);
        if (r < rows) {
            const __nv_bfloat16* src = q + (long long)(q_start + row0 + r) * q_stride + (long long)h * head_dim;
            v = make_float2(__bfloat162float(src[2 * p]), __bfloat162float(src[2 * p + 1]));
        }
        q_s[r][p] = __floats2half2_rn(v.x, v.y);
    }

    float m[ROWS_PER_WARP], l[ROWS_PER_WARP], acc[ROWS_PER_WARP][MAX_PAIRS][2];
#pragma unroll
    for (int rr = 0; rr < ROWS_PER_WARP; ++rr) {
        m[rr] = NEG_INF;
        l[rr] = 0.0f;
#pragma unroll
        for (int j = 0; j < MAX_PAIRS; ++j) acc[rr][j][0] = acc[rr][j][1] = 0.0f;
    }

    const int last_pos = ctx + row0 + rows - 1;  // the block's last row's position
    const int n_keys = min(seq_len, last_pos + 1);
    const int* table = block_tables + (long long)s * max_blocks_per_seq;
    for (int k0 = 0; k0 < n_keys; k0 += BLOCK_N) {
        __syncthreads();  // the previous tile is consumed (and q_s is written, first time)
        tile_slots(slot_s, BLOCK_N, table, k0, n_keys, block_size, max_blocks_per_seq, num_blocks);
        __syncthreads();
        for (int i = threadIdx.x; i < BLOCK_N * pairs; i += THREADS) {
            const int j = i / pairs, p = i % pairs;
            const long long slot = slot_s[j];
            __half2 kv = __floats2half2_rn(0.0f, 0.0f), vv = kv;
            if (slot >= 0) {
                const long long off = slot * kv_dim + (long long)kvh * head_dim;
                kv = reinterpret_cast<const __half2*>(key_cache + off)[p];
                vv = reinterpret_cast<const __half2*>(value_cache + off)[p];
            }
            k_s[j * stride + p] = kv;
            v_s[j * stride + p] = vv;
        }
        __syncthreads();

        const int key = k0 + lane;
        const bool key_ok = key < n_keys && slot_s[lane] >= 0;
#pragma unroll
        for (int rr = 0; rr < ROWS_PER_WARP; ++rr) {
            const int r = warp * ROWS_PER_WARP + rr;
            const int pos = ctx + row0 + r;
            if (r >= rows || pos < 0 || k0 > pos) continue;  // warp-uniform
            float score = NEG_INF;
            if (key_ok && key <= pos) {
                float dot = 0.0f;
                for (int p = 0; p < pairs; ++p) {
                    const float2 qf = __half22float2(q_s[r][p]);
                    const float2 kf = __half22float2(k_s[lane * stride + p]);
                    dot += qf.x * kf.x + qf.y * kf.y;
                }
                score = dot * scale;
            }
            const float m_new = fmaxf(m[rr], warp_max(score));
            if (m_new == NEG_INF) continue;  // no visible key in this tile
            const float alpha = m[rr] == NEG_INF ? 0.0f : expf(m[rr] - m_new);
            const float pr = score == NEG_INF ? 0.0f : expf(score - m_new);
            l[rr] = l[rr] * alpha + warp_sum(pr);
#pragma unroll
            for (int j = 0; j < MAX_PAIRS; ++j) {
                acc[rr][j][0] *= alpha;
                acc[rr][j][1] *= alpha;
            }
            for (int jk = 0; jk < BLOCK_N; ++jk) {
                const float pj = __shfl_sync(0xffffffffu, pr, jk);
                if (pj == 0.0f) continue;  // warp-uniform (broadcast value)
#pragma unroll
                for (int j = 0; j < MAX_PAIRS; ++j) {
                    const int p = lane + 32 * j;
                    if (p < pairs) {
                        const float2 vf = __half22float2(v_s[jk * stride + p]);
                        acc[rr][j][0] += pj * vf.x;
                        acc[rr][j][1] += pj * vf.y;
                    }
                }
            }
            m[rr] = m_new;
        }
    }

    // Every row of the tile is written (zeros where no key was visible).
#pragma unroll
    for (int rr = 0; rr < ROWS_PER_WARP; ++rr) {
        const int r = warp * ROWS_PER_WARP + rr;
        if (r >= rows) continue;
        const float inv = l[rr] > 0.0f ? 1.0f / l[rr] : 0.0f;
        __nv_bfloat16* dst = out + (long long)(q_start + row0 + r) * out_stride + (long long)h * head_dim;
#pragma unroll
        for (int j = 0; j < MAX_PAIRS; ++j) {
            const int p = lane + 32 * j;
            if (p < pairs) {
                dst[2 * p] = __float2bfloat16(acc[rr][j][0] * inv);
                dst[2 * p + 1] = __float2bfloat16(acc[rr][j][1] * inv);
            }
        }
    }
}
