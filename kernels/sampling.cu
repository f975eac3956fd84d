// entry: argmax_kernel softmax_temperature_kernel logprobs_topn_kernel sample_kernel
//
// Sampling over f32 logits (the lm_head GEMM writes f32), one block per row. Matches
// src/sampling (vLLM's sampler order): logprobs come from the RAW logits; greedy rows
// (temperature <= 0 or top_k == 1) take the argmax of the logits; other rows draw from
//   e_i = exp((l_i - max) / T)          (unnormalized, max e = 1; `Sampler::pick`)
// filtered in this order: top-k (the k largest e, ties at the boundary to the lower id),
// then top-p over the survivors (the shortest prefix, in order e desc / id asc, whose
// mass reaches top_p of the survivors' mass; at least one), then min-p (keep
// e >= min_p * max surviving e), then the draw: with the host's uniform u in [0, 1)
// (`Rng::next_f64`, the request's seeded stream), the first item whose inclusive running
// mass exceeds u * (surviving mass), walking in order e desc / id asc when top_p < 1 (the
// CPU sorts then) and in id order otherwise (the CPU's order, top-k survivors included).
// Penalties are applied to the logits before these kernels (not here). Sums run in f64
// as on the CPU (in a fixed tree order here: deterministic, independent of the batch; the
// same token for the same uniform except where a running sum lands within rounding of a
// cutoff).
//
// Every kept set is a prefix of the order (e desc, id asc), so the filters are cutoffs in
// that order, found without sorting by binary search on the f32 bits of e (31 passes)
// then on the id among ties (~18 passes), each pass a block reduction over the row.
// Correct first: a top-k or top-p row costs ~50 passes over the vocabulary per filter.
//
// Arguments (rows = batch rows; row r's logits at logits + r * row_stride, `vocab` f32):
//   argmax_kernel(out_ids int32 [rows], logits, row_stride, vocab, rows)
//     the first index of the largest logit (ties -> lowest id; NaN counts as -inf).
//     Matches `sampling::argmax`.
//   softmax_temperature_kernel(probs f32 [rows, vocab], logits, row_stride, temperatures
//     f32 [rows], vocab, rows): probs = e / sum(e); temperature <= 0 gives the one-hot
//     of the argmax.
//   logprobs_topn_kernel(out_logprob f32 [rows], top_ids int32 [rows, max_top],
//     top_logprobs f32 [rows, max_top], logits, row_stride, chosen int32 [rows],
//     num_top int32 [rows], max_top, vocab, rows): log-softmax of the raw logits
//     (normalizer max + log(sum exp(l - max)) in f64), the chosen token's logprob (-inf
//     when its id is out of range) and the min(num_top, max_top, vocab) best, ranked by
//     logit desc (Rust's total_cmp order) then id asc; unused slots get id -1, -inf.
//     Matches `sampling::logprobs::compute`.
//   sample_kernel(out_ids int32 [rows], logits, row_stride, temperatures f32, top_k int32
//     (0 = off), top_p f32 (1 = off), min_p f32 (0 = off), uniforms f64 [rows], vocab,
//     rows): the filter and draw above. Matches `Sampler::pick`.
//
// Launch (all four): grid = (rows), block = (1024) (any multiple of 32 up to 1024).

#define NEG_INF (-__int_as_float(0x7f800000))

// ---- block reductions (every thread gets the result; `sh` is per-kernel shared scratch)

struct Best {
    int key;  // larger is better
    int id;   // ties: smaller is better
};

__device__ __forceinline__ bool better(Best a, Best b) {
    return a.key > b.key || (a.key == b.key && a.id < b.id);
}

__device__ Best block_best(Best v, Best* sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        Best w = {__shfl_xor_sync(0xffffffffu, v.key, o), __shfl_xor_sync(0xffffffffu, v.id, o)};
        if (better(w, v)) v = w;
    }
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    Best r = sh[0];
    for (int w = 1; w < nwarps; ++w) if (better(sh[w], r)) r = sh[w];
    return r;
}

__device__ double block_sum_d(double v, double* sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    double r = 0.0;
    for (int w = 0; w < nwarps; ++w) r += sh[w];
    return r;
}

__device__ float block_max_f(float v, float* sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    float r = NEG_INF;
    for (int w = 0; w < nwarps; ++w) r = fmaxf(r, sh[w]);
    return r;
}

// The largest logit of a row (every thread gets it).
__device__ float row_max(const float* row, int vocab, float* sh) {
    float mx = NEG_INF;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) mx = fmaxf(mx, row[i]);
    return block_max_f(mx, sh);
}

// Rust's f32::total_cmp order as a signed integer key.
__device__ __forceinline__ int total_key(float x) {
    int b = __float_as_int(x);
    return b ^ (int)(((unsigned)(b >> 31)) >> 1);
}

// A key for `>` comparisons that treats NaN as -inf (argmax).
__device__ __forceinline__ int argmax_key(float x) {
    return total_key(x != x ? NEG_INF : (x == 0.0f ? 0.0f : x));
}

__device__ int row_argmax(const float* row, int vocab, Best* sh) {
    Best b = {(int)0x80000000, 0x7fffffff};
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        Best c = {argmax_key(row[i]), i};
        if (better(c, b)) b = c;
    }
    const Best r = block_best(b, sh);
    return r.id < vocab ? r.id : 0;
}

extern "C" __global__ void __launch_bounds__(1024) argmax_kernel(int* __restrict__ out_ids, const float* __restrict__ logits,
                                         long long row_stride, int vocab, int rows) {
    __shared__ Best sh[32];
    const int r = blockIdx.x;
    if (r >= rows) return;
    const int id = row_argmax(logits + r * row_stride, vocab, sh);
    if (threadIdx.x == 0) out_ids[r] = id;
}

extern "C" __global__ void __launch_bounds__(1024) softmax_temperature_kernel(float* __restrict__ probs,
                                                      const float* __restrict__ logits,
                                                      long long row_stride,
                                                      const float* __restrict__ temperatures,
                                                      int vocab, int rows) {
    __shared__ Best shb[32];
    __shared__ float shf[32];
    __shared__ double shd[32];
    const int r = blockIdx.x;
    if (r >= rows) return;
    const float* row = logits + r * row_stride;
    float* dst = probs + (long long)r * vocab;
    const float t = temperatures[r];
    if (!(t > 0.0f)) {
        const int id = row_argmax(row, vocab, shb);
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) dst[i] = i == id ? 1.0f : 0.0f;
        return;
    }
    const float inv_t = 1.0f / t;
    const float mx = row_max(row, vocab, shf);
    double sum = 0.0;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        const float e = expf((row[i] - mx) * inv_t);
        sum += e == e ? (double)e : 0.0;
    }
    sum = block_sum_d(sum, shd);
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        const float e = expf((row[i] - mx) * inv_t);
        dst[i] = (sum > 0.0 && e == e) ? (float)((double)e / sum) : 0.0f;
    }
}

extern "C" __global__ void __launch_bounds__(1024) logprobs_topn_kernel(float* __restrict__ out_logprob,
                                                int* __restrict__ top_ids,
                                                float* __restrict__ top_logprobs,
                                                const float* __restrict__ logits,
                                                long long row_stride,
                                                const int* __restrict__ chosen,
                                                const int* __restrict__ num_top, int max_top,
                                                int vocab, int rows) {
    __shared__ Best shb[32];
    __shared__ float shf[32];
    __shared__ double shd[32];
    const int r = blockIdx.x;
    if (r >= rows) return;
    const float* row = logits + r * row_stride;
    const float mx = row_max(row, vocab, shf);
    double lse;
    if (!isfinite(mx)) {
        lse = (double)mx;  // all -inf (or +inf/NaN present): as log_normalizer
    } else {
        double sum = 0.0;
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) sum += exp((double)row[i] - (double)mx);
        lse = (double)mx + log(block_sum_d(sum, shd));
    }
    if (threadIdx.x == 0) {
        const int c = chosen[r];
        out_logprob[r] = (c >= 0 && c < vocab) ? (float)((double)row[c] - lse) : NEG_INF;
    }
    const int n = min(min(num_top[r], max_top), vocab);
    Best prev = {0x7fffffff, -1};  // nothing picked yet: every item ranks after it
    for (int j = 0; j < max_top; ++j) {
        int id = -1;
        float lp = NEG_INF;
        if (j < n) {  // block-uniform
            Best b = {(int)0x80000000, 0x7fffffff};
            bool any = false;
            for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
                const Best c = {total_key(row[i]), i};
                const bool after = j == 0 || c.key < prev.key || (c.key == prev.key && c.id > prev.id);
                if (after && (!any || better(c, b))) { b = c; any = true; }
            }
            prev = block_best(b, shb);
            id = prev.id;
            lp = (float)((double)row[id] - lse);
        }
        if (threadIdx.x == 0) {
            top_ids[(long long)r * max_top + j] = id;
            top_logprobs[(long long)r * max_top + j] = lp;
        }
    }
}

// ---- sample_kernel: cutoffs in the order (e desc, id asc) --------------------------------

struct Row {
    const float* logits;
    int vocab;
    float mx, inv_t;
    // kept: ranked at or before (lim_bits, lim_id) and e >= floor.
    int lim_bits, lim_id;
    float floor;
};

__device__ __forceinline__ float row_e(const Row& w, int i) {
    const float e = expf((w.logits[i] - w.mx) * w.inv_t);
    return e >= 0.0f ? e : 0.0f;  // NaN -> 0
}

__device__ __forceinline__ bool ranked_le(float e, int i, int bits, int id) {
    const int b = __float_as_int(e);
    return b > bits || (b == bits && i <= id);
}

__device__ __forceinline__ bool kept(const Row& w, float e, int i) {
    return ranked_le(e, i, w.lim_bits, w.lim_id) && e >= w.floor;
}

// Sum over kept items ranked at or before (bits, id) of e (mass) or 1 (count).
__device__ double agg_le(const Row& w, int bits, int id, bool mass, double* sh) {
    double a = 0.0;
    for (int i = threadIdx.x; i < w.vocab; i += blockDim.x) {
        const float e = row_e(w, i);
        if (kept(w, e, i) && ranked_le(e, i, bits, id)) a += mass ? (double)e : 1.0;
    }
    return block_sum_d(a, sh);
}

__device__ __forceinline__ bool meets(double a, double target, bool strict) {
    return strict ? a > target : a >= target;
}

// The first kept item in order whose inclusive aggregate meets the target; false when
// even all kept items do not.
__device__ bool find_cutoff(const Row& w, double target, bool mass, bool strict, double* sh,
                            int* out_bits, int* out_id) {
    if (!meets(agg_le(w, 0, w.vocab - 1, mass, sh), target, strict)) return false;
    int lo = 0, hi = 0x7f800000;  // e in [0, +inf]
    while (lo < hi) {
        const int mid = lo + (hi - lo + 1) / 2;
        if (meets(agg_le(w, mid, w.vocab - 1, mass, sh), target, strict)) lo = mid; else hi = mid - 1;
    }
    int a = 0, b = w.vocab - 1;
    while (a < b) {
        const int mid = a + (b - a) / 2;
        if (meets(agg_le(w, lo, mid, mass, sh), target, strict)) b = mid; else a = mid + 1;
    }
    *out_bits = lo;
    *out_id = a;
    return true;
}

extern "C" __global__ void __launch_bounds__(1024) sample_kernel(int* __restrict__ out_ids, const float* __restrict__ logits,
                                         long long row_stride, const float* __restrict__ temperatures,
                                         const int* __restrict__ top_k, const float* __restrict__ top_p,
                                         const float* __restrict__ min_p,
                                         const double* __restrict__ uniforms, int vocab, int rows) {
    __shared__ Best shb[32];
    __shared__ float shf[32];
    __shared__ double shd[32];
    __shared__ double scan[1024];
    __shared__ int pick_s;
    const int r = blockIdx.x;
    if (r >= rows) return;
    if (vocab <= 0) {
        if (threadIdx.x == 0) out_ids[r] = 0;
        return;
    }
    const float* row = logits + r * row_stride;
    const float t = temperatures[r];
    const int k = top_k[r];
    const int greedy = row_argmax(row, vocab, shb);
    if (!(t > 0.0f) || k == 1) {
        if (threadIdx.x == 0) out_ids[r] = greedy;
        return;
    }
    Row w;
    w.logits = row;
    w.vocab = vocab;
    w.inv_t = 1.0f / t;
    w.mx = row_max(row, vocab, shf);
    w.lim_bits = 0;  // everything (e >= 0) is kept
    w.lim_id = vocab - 1;
    w.floor = 0.0f;
    int cb, ci;
    if (k > 0 && k < vocab && find_cutoff(w, (double)k, false, false, shd, &cb, &ci)) {
        w.lim_bits = cb;
        w.lim_id = ci;
    }
    const float tp = top_p[r];
    if (tp < 1.0f) {
        const double total = agg_le(w, 0, vocab - 1, true, shd);
        // At least the first item: top_p = 0 keeps one, as on the CPU (a target of 0 would
        // be met by the empty prefix).
        const double target = fmax((double)tp * total, 2.2250738585072014e-308);
        if (find_cutoff(w, target, true, false, shd, &cb, &ci)) {
            w.lim_bits = cb;
            w.lim_id = ci;
        }
    }
    const float mp = min_p[r];
    if (mp > 0.0f) {
        float top = 0.0f;
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
            const float e = row_e(w, i);
            if (kept(w, e, i)) top = fmaxf(top, e);
        }
        w.floor = mp * block_max_f(top, shf);
    }
    const double total = agg_le(w, 0, vocab - 1, true, shd);
    const double target = uniforms[r] * total;
    int pick = -1;
    if (tp < 1.0f) {
        // Sorted order, as the CPU walks it after top-p; fallback: the last kept item.
        if (find_cutoff(w, target, true, true, shd, &cb, &ci)) {
            pick = ci;
        } else {
            Best b = {(int)0x80000000, 0x7fffffff};
            for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
                const float e = row_e(w, i);
                // The last in order: smallest e, then largest id.
                const Best c = {-__float_as_int(e), -i};
                if (kept(w, e, i) && better(c, b)) b = c;
            }
            b = block_best(b, shb);
            pick = b.id != 0x7fffffff ? -b.id : greedy;
        }
    } else {
        // Id order: each thread owns a contiguous chunk; prefix sums in thread order.
        const int nt = blockDim.x;
        const int chunk = (vocab + nt - 1) / nt;
        const int lo = min(vocab, (int)threadIdx.x * chunk), hi = min(vocab, lo + chunk);
        double own = 0.0;
        for (int i = lo; i < hi; ++i) {
            const float e = row_e(w, i);
            if (kept(w, e, i)) own += (double)e;
        }
        scan[threadIdx.x] = own;
        if (threadIdx.x == 0) pick_s = 0x7fffffff;
        __syncthreads();
        if (threadIdx.x == 0) {
            double c = 0.0;
            for (int i = 0; i < nt; ++i) {
                const double o = scan[i];
                scan[i] = c;
                c += o;
            }
        }
        __syncthreads();
        double cum = scan[threadIdx.x];
        int mine = 0x7fffffff, last = -1;
        for (int i = lo; i < hi; ++i) {
            const float e = row_e(w, i);
            if (!kept(w, e, i)) continue;
            last = i;
            cum += (double)e;
            if (cum > target) { mine = i; break; }
        }
        if (mine != 0x7fffffff) atomicMin(&pick_s, mine);
        __syncthreads();
        pick = pick_s;
        if (pick == 0x7fffffff) {
            // Fallback: the last kept id.
            Best b = {last, 0};
            b = block_best(b, shb);
            pick = b.key >= 0 ? b.key : greedy;
        }
    }
    if (threadIdx.x == 0) out_ids[r] = pick;
}
