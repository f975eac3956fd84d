// entry: embedding_kernel
//
// Token embedding lookup: out[t, :] = table[ids[t], :].
//
// Matches: the embedding loop at the top of `Decoder::forward_rows`
// (src/model/decoder.rs: `dequantize_row(tok_embd.row(id))` per token). The CUDA backend
// keeps the table in bf16, so the copy is exact.
//
// Arguments:
//   out   bf16 [num_tokens, dim], row-major, contiguous.
//   ids   int32 [num_tokens]: token ids (the host checks them against vocab_size, as the
//         CPU path does; an id outside [0, vocab_size) here writes a row of zeros instead
//         of reading out of bounds).
//   table bf16 [vocab_size, dim], row-major, contiguous.
//
// Launch: grid = (num_tokens), block = (256) (any size works; threads stride over dim).
// Each block copies one row with 16-byte loads when dim is a multiple of 8 and both
// pointers are 16-byte aligned, element by element otherwise.

#include <cuda_bf16.h>

extern "C" __global__ void embedding_kernel(__nv_bfloat16* __restrict__ out,
                                            const int* __restrict__ ids,
                                            const __nv_bfloat16* __restrict__ table,
                                            int num_tokens, int vocab_size, int dim) {
    const int t = blockIdx.x;
    if (t >= num_tokens) return;
    const int id = ids[t];
    __nv_bfloat16* dst = out + (long long)t * dim;
    const bool valid = id >= 0 && id < vocab_size;
    const __nv_bfloat16* src = table + (valid ? (long long)id * dim : 0);
    const bool vec = (dim % 8 == 0) && (((unsigned long long)dst | (unsigned long long)src) % 16 == 0);
    if (vec) {
        const int n = dim / 8;
        uint4* d4 = reinterpret_cast<uint4*>(dst);
        const uint4* s4 = reinterpret_cast<const uint4*>(src);
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            d4[i] = valid ? s4[i] : make_uint4(0u, 0u, 0u, 0u);
        }
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) {
            dst[i] = valid ? src[i] : __float2bfloat16(0.0f);
        }
    }
}
