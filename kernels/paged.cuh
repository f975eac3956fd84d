// The paged f16 KV cache's addressing and element type, shared by the kernels that read or
// write it (no entry points): the slot of a position through a block table, the slots of
// a tile of keys (prefill_attention.cu, prefill_attention_mma.cu), and the bf16 -> f16
// conversion of values stored into it (cache.cu, qk_norm_rope_cache.cu).
// paged_attention.cu spells the same lookup out: paged_slot there (a -1 test on the 64-bit
// slot in place of its early `continue`) changed its PTX.
//
// Layout (cache.cu, src/backend/cpu/kv.rs): [num_blocks, block_size, num_kv_heads,
// head_dim] per layer; position pos of a sequence is slot
// table[pos / block_size] * block_size + pos % block_size, table = the sequence's row of
// block_tables (int32 [num_seqs, max_blocks_per_seq]).

#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

// The slot of position pos (>= 0) through the block-table row `table`, or -1 when its
// block is past max_blocks_per_seq or the table entry is outside [0, num_blocks) (a host
// bug: the callers skip or mask such keys, never read out of bounds).
__device__ __forceinline__ long long paged_slot(const int* table, int pos, int block_size,
                                                int max_blocks_per_seq, int num_blocks) {
    const int b = pos / block_size;
    const int phys = b < max_blocks_per_seq ? table[b] : -1;
    long long slot = -1;
    if (phys >= 0 && phys < num_blocks) slot = (long long)phys * block_size + pos % block_size;
    return slot;
}

// Threads j < n of the block write slots[j]: the slot of key position k0 + j, or -1 from
// n_keys on and where paged_slot finds none. The caller syncs before reading them.
__device__ __forceinline__ void tile_slots(long long* slots, int n, const int* table, int k0,
                                           int n_keys, int block_size, int max_blocks_per_seq,
                                           int num_blocks) {
    if (threadIdx.x < n) {
        const int pos = k0 + threadIdx.x;
        long long slot = -1;
        if (pos < n_keys) slot = paged_slot(table, pos, block_size, max_blocks_per_seq, num_blocks);
        slots[threadIdx.x] = slot;
    }
}

// A bf16 value as the cache stores it: f16, converted through f32 (round to nearest).
__device__ __forceinline__ __half to_cache_f16(__nv_bfloat16 x) {
    return __float2half(__bfloat162float(x));
}
