// entry: paged_attention_kernel paged_attention_reduce_kernel
//
// Decode attention (one query token per sequence) over the paged f16 KV cache, read
// through each sequence's block table; flash-decoding: the context is split into
// partitions of PARTITION_SIZE (512) tokens, each block computes its partition's softmax
// statistics and output, and a second kernel combines the partitions.
//
//   out[s, h, :] = sum_j softmax_j(q[s, h] . K[j] * scale) * V[j],  j in [0, seq_lens[s])
//
// Matches: `Decoder::attention` in src/model/decoder.rs for a token at position
// seq_len - 1 (causal attention over positions 0..=pos of its sequence): Q is rounded to
// f16 before the Q.K products (as there), dot products and softmax in f32. Differences
// from the CPU: the softmax is online (per-warp running max and sum, merged across warps
// and partitions), and the probabilities are not rounded to f16 before the P.V product
// (the CPU rounds the normalized probability; here it is not known until the end), so
// results agree to f32/f16 rounding, not bit for bit.
//
// Layouts (element strides; vLLM's names):
//   q            bf16: sequence s, head h at q + s * q_stride + h * head_dim.
//   out          bf16: sequence s, head h at out + s * out_stride + h * head_dim.
//   key_cache, value_cache  f16 [num_blocks, block_size, num_kv_heads, head_dim] (one
//                layer; cache.cu, src/backend/cpu/kv.rs): position pos of sequence s is
//                slot block_tables[s][pos / block_size] * block_size + pos % block_size.
//   block_tables int32 [num_seqs, max_blocks_per_seq]; an entry outside [0, num_blocks)
//                (or a position past max_blocks_per_seq) is a host bug: that token is
//                skipped, never read out of bounds.
//   seq_lens     int32 [num_seqs]: context length including the new token (its K/V
//                already written by reshape_and_cache). A length <= 0 (a padded row of
//                a CUDA graph batch) gives an output of zeros.
//   tmp_out      f32 [num_seqs, num_heads, max_num_partitions, head_dim]; exp_sums and
//   max_logits   f32 [num_seqs, num_heads, max_num_partitions]: per-partition output
//                (normalized by its own sum), sum of exp(score - max) and max score.
//   head_dim even, <= 256; num_heads a multiple of num_kv_heads.
//
// Launch (paged_attention_kernel):
//   grid  = (num_kv_heads * group_chunks, num_seqs, max_num_partitions),
//           group_chunks = ceil((num_heads / num_kv_heads) / MAX_GROUP) (1 for every
//           group of <= 8 query heads per KV head),
//   block = (128) (the logic takes any multiple of 32 up to 1024, but at ~125 registers a
//           block of more than 512 threads does not launch; the host uses 128).
//   GQA: a block serves the (up to 8) query heads of one KV head, so each K and V row is
//   loaded once for the whole group. Warps take the partition's tokens round-robin;
//   within a warp, lanes split head_dim in f16 pairs (coalesced 4-byte loads), reduce the
//   dot products with shuffles and keep a running (max, sum, output) per head; warps
//   merge in a fixed order (deterministic). With max_num_partitions == 1 (gridDim.z == 1)
//   the block covers the whole context and writes `out` directly (tmp_out, exp_sums and
//   max_logits are not touched and may be null); otherwise partition p covers tokens
//   [p * 512, (p + 1) * 512) (the last one also anything beyond, should the host have
//   sized the grid too small) and writes its tmp_out/exp_sums/max_logits slot, and
//   paged_attention_reduce_kernel must run next.
//
// Launch (paged_attention_reduce_kernel):
//   grid = (num_heads, num_seqs), block = (128); threads stride over head_dim. Combines
//   the ceil(seq_len / 512) (capped at max_num_partitions) partitions of each sequence:
//   M = max_p max_logits, w_p = exp_sums_p * exp(max_logits_p - M),
//   out = sum_p w_p * tmp_out_p / sum_p w_p.

#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include "common.cuh"

#define PARTITION_SIZE 512
#define MAX_GROUP 8       // query heads per block
#define MAX_HEAD_DIM 256
#define MAX_PAIRS 4       // MAX_HEAD_DIM / 2 / 32 f16 pairs per lane
#define MAX_WARPS 32

extern "C" __global__ void paged_attention_kernel(
    __nv_bfloat16* __restrict__ out, long long out_stride,
    float* __restrict__ tmp_out, float* __restrict__ exp_sums,
    float* __restrict__ max_logits,
    const __nv_bfloat16* __restrict__ q, long long q_stride,
    const __half* __restrict__ key_cache, const __half* __restrict__ value_cache,
    const int* __restrict__ block_tables, const int* __restrict__ seq_lens,
    int num_seqs, int num_heads, int num_kv_heads, int head_dim, int block_size,
    int max_blocks_per_seq, int num_blocks, float scale) {
    __shared__ float q_s[MAX_GROUP][MAX_HEAD_DIM];
    __shared__ float acc_s[MAX_GROUP][MAX_HEAD_DIM];
    __shared__ float m_s[MAX_WARPS][MAX_GROUP];
    __shared__ float l_s[MAX_WARPS][MAX_GROUP];

    const int group = num_heads / num_kv_heads;
    const int chunks = (group + MAX_GROUP - 1) / MAX_GROUP;
    const int kvh = blockIdx.x / chunks, chunk = blockIdx.x % chunks;
    const int s = blockIdx.y, part = blockIdx.z, nparts = gridDim.z;
    if (kvh >= num_kv_heads || s >= num_seqs || head_dim > MAX_HEAD_DIM || head_dim % 2) return;
    const int h0 = kvh * group + chunk * MAX_GROUP;
    const int ng = min(MAX_GROUP, group - chunk * MAX_GROUP);
    if (ng <= 0) return;
    const int seq_len = seq_lens[s];
    const int start = part * PARTITION_SIZE;
    const int end = (nparts == 1 || part == nparts - 1) ? seq_len : min(start + PARTITION_SIZE, seq_len);
    if (start >= seq_len) {
        // Nothing to attend to. Only a single-pass launch owns `out` here; with partitions
        // the reduce kernel writes zeros for seq_len <= 0 and skips unused partitions.
        if (nparts == 1) {
            for (int i = threadIdx.x; i < ng * head_dim; i += blockDim.x) {
                out[s * out_stride + (long long)(h0 + i / head_dim) * head_dim + i % head_dim] =
                    __float2bfloat16(0.0f);
            }
        }
        return;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nwarps = blockDim.x >> 5;
    const int pairs = head_dim / 2;
    const long long kv_dim = (long long)num_kv_heads * head_dim;

    // The group's queries, rounded to f16 as the CPU path rounds them.
    for (int i = threadIdx.x; i < ng * head_dim; i += blockDim.x) {
        const int g = i / head_dim, d = i % head_dim;
        const float v = __bfloat162float(q[s * q_stride + (long long)(h0 + g) * head_dim + d]);
        q_s[g][d] = __half2float(__float2half(v));
    }
    __syncthreads();

    float m[MAX_GROUP], l[MAX_GROUP], acc[MAX_GROUP][MAX_PAIRS][2];
#pragma unroll
    for (int g = 0; g < MAX_GROUP; ++g) {
        m[g] = NEG_INF;
        l[g] = 0.0f;
#pragma unroll
        for (int j = 0; j < MAX_PAIRS; ++j) acc[g][j][0] = acc[g][j][1] = 0.0f;
    }

    const int* table = block_tables + (long long)s * max_blocks_per_seq;
    for (int pos = start + warp; pos < end; pos += nwarps) {
        // paged.cuh's paged_slot, spelled out (calling it changes this kernel's PTX).
        const int b = pos / block_size;
        const int phys = b < max_blocks_per_seq ? table[b] : -1;
        if (phys < 0 || phys >= num_blocks) continue;  // warp-uniform
        const long long slot = (long long)phys * block_size + pos % block_size;
        const __half2* k2 = reinterpret_cast<const __half2*>(key_cache + slot * kv_dim + (long long)kvh * head_dim);
        const __half2* v2 = reinterpret_cast<const __half2*>(value_cache + slot * kv_dim + (long long)kvh * head_dim);
        float2 kf[MAX_PAIRS], vf[MAX_PAIRS];
#pragma unroll
        for (int j = 0; j < MAX_PAIRS; ++j) {
            const int p = lane + 32 * j;
            kf[j] = p < pairs ? __half22float2(k2[p]) : make_float2(0.0f, 0.0f);
            vf[j] = p < pairs ? __half22float2(v2[p]) : make_float2(0.0f, 0.0f);
        }
#pragma unroll
        for (int g = 0; g < MAX_GROUP; ++g) {
            if (g >= ng) break;
            float dot = 0.0f;
#pragma unroll
            for (int j = 0; j < MAX_PAIRS; ++j) {
                const int p = lane + 32 * j;
                if (p < pairs) dot += kf[j].x * q_s[g][2 * p] + kf[j].y * q_s[g][2 * p + 1];
            }
            const float score = warp_sum(dot) * scale;
            const float m_new = fmaxf(m[g], score);
            const float alpha = m[g] == NEG_INF ? 0.0f : expf(m[g] - m_new);
            const float pr = score == NEG_INF ? 0.0f : expf(score - m_new);
            l[g] = l[g] * alpha + pr;
#pragma unroll
            for (int j = 0; j < MAX_PAIRS; ++j) {
                acc[g][j][0] = acc[g][j][0] * alpha + pr * vf[j].x;
                acc[g][j][1] = acc[g][j][1] * alpha + pr * vf[j].y;
            }
            m[g] = m_new;
        }
    }

    // Merge the warps: block max per head, each warp's share rescaled, summed in warp order.
    if (lane == 0) {
#pragma unroll
        for (int g = 0; g < MAX_GROUP; ++g) {
            m_s[warp][g] = m[g];
            l_s[warp][g] = l[g];
        }
    }
    __syncthreads();
    float mb[MAX_GROUP], lb[MAX_GROUP], f[MAX_GROUP];
#pragma unroll
    for (int g = 0; g < MAX_GROUP; ++g) {
        mb[g] = NEG_INF;
        for (int w = 0; w < nwarps; ++w) mb[g] = fmaxf(mb[g], m_s[w][g]);
        lb[g] = 0.0f;
        for (int w = 0; w < nwarps; ++w) {
            if (m_s[w][g] != NEG_INF) lb[g] += l_s[w][g] * expf(m_s[w][g] - mb[g]);
        }
        f[g] = m[g] == NEG_INF ? 0.0f : expf(m[g] - mb[g]);
    }
    for (int w = 0; w < nwarps; ++w) {
        if (warp == w) {
#pragma unroll
            for (int g = 0; g < MAX_GROUP; ++g) {
                if (g >= ng) break;
#pragma unroll
                for (int j = 0; j < MAX_PAIRS; ++j) {
                    const int p = lane + 32 * j;
                    if (p < pairs) {
                        const float a = acc[g][j][0] * f[g], b = acc[g][j][1] * f[g];
                        acc_s[g][2 * p] = (w == 0 ? 0.0f : acc_s[g][2 * p]) + a;
                        acc_s[g][2 * p + 1] = (w == 0 ? 0.0f : acc_s[g][2 * p + 1]) + b;
                    }
                }
            }
        }
        __syncthreads();
    }

    for (int i = threadIdx.x; i < ng * head_dim; i += blockDim.x) {
        const int g = i / head_dim, d = i % head_dim;
        float lsum = 0.0f, mmax = NEG_INF;
#pragma unroll
        for (int gg = 0; gg < MAX_GROUP; ++gg) {
            if (gg == g) { lsum = lb[gg]; mmax = mb[gg]; }
        }
        const float val = lsum > 0.0f ? acc_s[g][d] / lsum : 0.0f;
        const int h = h0 + g;
        if (nparts == 1) {
            out[s * out_stride + (long long)h * head_dim + d] = __float2bfloat16(val);
        } else {
            const long long sp = ((long long)s * num_heads + h) * nparts + part;
            tmp_out[sp * head_dim + d] = val;
            if (d == 0) {
                exp_sums[sp] = lsum;
                max_logits[sp] = mmax;
            }
        }
    }
}

extern "C" __global__ void paged_attention_reduce_kernel(
    __nv_bfloat16* __restrict__ out, long long out_stride,
    const float* __restrict__ tmp_out, const float* __restrict__ exp_sums,
    const float* __restrict__ max_logits, const int* __restrict__ seq_lens,
    int num_seqs, int num_heads, int head_dim, int max_num_partitions) {
    const int h = blockIdx.x, s = blockIdx.y;
    if (h >= num_heads || s >= num_seqs) return;
    const int seq_len = seq_lens[s];
    const int n = seq_len <= 0 ? 0 : min((seq_len + PARTITION_SIZE - 1) / PARTITION_SIZE, max_num_partitions);
    const long long base = ((long long)s * num_heads + h) * max_num_partitions;
    float mmax = NEG_INF;
    for (int p = 0; p < n; ++p) mmax = fmaxf(mmax, max_logits[base + p]);
    float wsum = 0.0f;
    for (int p = 0; p < n; ++p) {
        if (max_logits[base + p] != NEG_INF) wsum += exp_sums[base + p] * expf(max_logits[base + p] - mmax);
    }
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float acc = 0.0f;
        for (int p = 0; p < n; ++p) {
            const float mp = max_logits[base + p];
            if (mp == NEG_INF) continue;
            acc += exp_sums[base + p] * expf(mp - mmax) * tmp_out[(base + p) * head_dim + d];
        }
        out[s * out_stride + (long long)h * head_dim + d] = __float2bfloat16(wsum > 0.0f ? acc / wsum : 0.0f);
    }
}
