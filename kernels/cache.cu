// entry: reshape_and_cache_kernel
//
// Writes the step's new K and V rows into the paged KV cache at the slots of the slot
// mapping (vLLM's `reshape_and_cache_flash`): for token t with slot s = slot_mapping[t]
// >= 0, key_cache[s] = key[t] and value_cache[s] = value[t], converted bf16 -> f16.
// Slot -1 (a padded token, e.g. in a CUDA graph batch) is skipped, as is any slot outside
// [0, num_slots) (a host bug; never written out of bounds).
//
// KV cache dtype: f16, as the CPU backend (src/backend/cpu/kv.rs) and llama.cpp store it,
// so both backends hold the same cache contents and f16's 10-bit mantissa (vs bf16's 7)
// keeps attention close to the CPU reference. K/V after the projections (and Qwen3's
// k-norm) stay far inside f16's range.
//
// Matches: the `to_f16(k/v, kv.row_mut(layer, slot))` loop in `Decoder::forward_rows`
// (src/model/decoder.rs).
//
// Layout (one layer, vLLM's flash layout, the CPU backend's): key_cache and value_cache
// f16 [num_blocks, block_size, num_kv_heads, head_dim], i.e. slot s = block * block_size
// + offset holds num_kv_heads * head_dim contiguous values at s * kv_dim,
// kv_dim = num_kv_heads * head_dim.
//
// Arguments:
//   key, value bf16: token t's row of kv_dim values at key + t * key_stride (value +
//     t * value_stride); strides in elements (views into a fused [q | k | v] buffer work).
//   key_cache, value_cache f16 as above.
//   slot_mapping int64 [num_tokens] (vLLM's dtype).
//   num_slots = num_blocks * block_size.
//
// Launch: grid = (num_tokens), block = (256); threads stride over kv_dim (coalesced).

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "paged.cuh"

extern "C" __global__ void reshape_and_cache_kernel(const __nv_bfloat16* __restrict__ key,
                                                    long long key_stride,
                                                    const __nv_bfloat16* __restrict__ value,
                                                    long long value_stride,
                                                    __half* __restrict__ key_cache,
                                                    __half* __restrict__ value_cache,
                                                    const long long* __restrict__ slot_mapping,
                                                    int num_tokens, int kv_dim,
                                                    long long num_slots) {
    const int t = blockIdx.x;
    if (t >= num_tokens) return;
    const long long slot = slot_mapping[t];
    if (slot < 0 || slot >= num_slots) return;
    const __nv_bfloat16* k = key + t * key_stride;
    const __nv_bfloat16* v = value + t * value_stride;
    __half* kc = key_cache + slot * kv_dim;
    __half* vc = value_cache + slot * kv_dim;
    for (int i = threadIdx.x; i < kv_dim; i += blockDim.x) {
        kc[i] = to_cache_f16(k[i]);
        vc[i] = to_cache_f16(v[i]);
    }
}
