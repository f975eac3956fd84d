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
// as on the CPU; top-p's total on both sides is `exact_total` (order-independent: the
// same bits from a tree sum here and a rank-order sum there). The token for a given
// uniform is the CPU's except at rounding ties: (a) e values within an ulp or two of each
// other (CUDA's expf and glibc's differ by up to 2 ulp, which can swap their rank), (b) on
// the bisection path only, a running sum (tree order here, rank or id order on the CPU)
// within f64 rounding of the top-p cutoff or the draw's target.
//
// Every kept set is a prefix of the order (e desc, id asc). Rows with top-k (k <= 1024),
// and top-p rows whose kept prefix lies within the 1024 best items (nearly all: a model's
// top 1024 tokens rarely hold less than top_p of the mass), take the small-set path below
// (~8 passes over the vocabulary: radix select, gather, a shared-memory sort, then one
// thread filters and draws exactly as the CPU does). Other rows (top-k > 1024, top-p over
// a flat distribution) find the cutoffs without sorting, by binary search on the f32
// bits of e (31 passes) then on the id among ties (~18 passes), each pass a block
// reduction over the row: ~50 passes per filter, ~100 for top-p's cutoff and draw.
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

#include "common.cuh"

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
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    double r = 0.0;
    for (int w = 0; w < nwarps; ++w) r += sh[w];
    return r;
}

// The warp step is spelled out rather than common.cuh's warp_max: calling it here changes
// the PTX NVRTC emits for softmax_temperature_kernel (a re-read of %tid.x, another
// instruction order), where every other use of the shared helpers leaves it byte-identical.
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

// ---- sample_kernel's small-set path: top-k (k <= SMALL_SET), or top-p whose kept set lies
// within the SMALL_SET best items. The candidates are found by a radix select on the bits
// of e (4 passes of 256-bin histograms: e >= 0, so its bits order like its value), then
// gathered into shared memory, sorted there (bitonic) and filtered and drawn from by one
// thread walking them as `Sampler::pick` walks its vector: the same order, the same f64
// sums in the same order (top-p's total from `exact_total` on both sides), the same
// comparisons. About 8 passes over the vocabulary instead of ~150 for top-k + top-p by
// bisection.

#define SMALL_SET 1024

__device__ __forceinline__ bool ranks_before(float ea, int ia, float eb, int ib) {
    return ea > eb || (ea == eb && ia < ib);
}

// Bitonic sort of the n items (se, sid) in shared memory (n <= SMALL_SET), padded to a
// power of two with sentinels that sort last: by id ascending, or in rank order.
__device__ void block_sort(float* se, int* sid, int n, bool by_id) {
    int p = 1;
    while (p < n) p <<= 1;
    for (int i = n + threadIdx.x; i < p; i += blockDim.x) {
        se[i] = -1.0f;  // below every e (e >= 0)
        sid[i] = 0x7fffffff;
    }
    __syncthreads();
    for (int size = 2; size <= p; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = threadIdx.x; i < p; i += blockDim.x) {
                const int j = i ^ stride;
                if (j <= i) continue;
                const bool i_first = by_id ? sid[i] < sid[j] : ranks_before(se[i], sid[i], se[j], sid[j]);
                const bool j_first = by_id ? sid[j] < sid[i] : ranks_before(se[j], sid[j], se[i], sid[i]);
                const bool ascending = (i & size) == 0;  // this pair's run: best first
                if (ascending ? j_first : i_first) {
                    const float te = se[i];
                    se[i] = se[j];
                    se[j] = te;
                    const int ti = sid[i];
                    sid[i] = sid[j];
                    sid[j] = ti;
                }
            }
            __syncthreads();
        }
    }
}

// The bits B of the cand-th largest e (1-based, cand <= vocab) and how many items with
// bits exactly B rank among the first cand (those with the lowest ids).
__device__ void radix_select(const Row& w, int cand, int* hist, int* sel, unsigned* out_bits,
                             int* out_ties) {
    unsigned prefix = 0u, mask = 0u;
    int remaining = cand;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
        __syncthreads();
        for (int i = threadIdx.x; i < w.vocab; i += blockDim.x) {
            const unsigned b = __float_as_uint(row_e(w, i));
            if ((b & mask) == prefix) atomicAdd(&hist[(b >> shift) & 255u], 1);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            int acc = 0, bin = 255;
            for (; bin > 0; --bin) {
                if (acc + hist[bin] >= remaining) break;
                acc += hist[bin];
            }
            sel[0] = bin;
            sel[1] = remaining - acc;
        }
        __syncthreads();
        prefix |= (unsigned)sel[0] << shift;
        mask |= 255u << shift;
        remaining = sel[1];
        __syncthreads();  // sel and hist are rewritten next round
    }
    *out_bits = prefix;
    *out_ties = remaining;
}

// Thread 0 replaces a[0..n) by its exclusive prefix sums, in index order (a sequential sum:
// the same bits on every run); the caller syncs before and after.
template <typename T>
__device__ __forceinline__ void exclusive_scan_by_thread0(T* a, int n) {
    if (threadIdx.x == 0) {
        T c = 0;
        for (int i = 0; i < n; ++i) {
            const T o = a[i];
            a[i] = c;
            c += o;
        }
    }
}

// Gathers the cand best items into (se, sid), in no order: every item with bits > B and
// the `ties` lowest ids with bits == B (each thread owns a contiguous chunk of ids; the
// ties before it come from a prefix sum over the threads). Returns the count (= cand).
__device__ int gather(const Row& w, unsigned B, int ties, float* se, int* sid, int* tie_scan,
                      int* count) {
    const int nt = blockDim.x;
    const int chunk = (w.vocab + nt - 1) / nt;
    const int lo = min(w.vocab, (int)threadIdx.x * chunk), hi = min(w.vocab, lo + chunk);
    int own = 0;
    for (int i = lo; i < hi; ++i) own += __float_as_uint(row_e(w, i)) == B;
    tie_scan[threadIdx.x] = own;
    if (threadIdx.x == 0) *count = 0;
    __syncthreads();
    exclusive_scan_by_thread0(tie_scan, nt);
    __syncthreads();
    int before = tie_scan[threadIdx.x];
    for (int i = lo; i < hi; ++i) {
        const float e = row_e(w, i);
        const unsigned b = __float_as_uint(e);
        bool keep = b > B;
        if (b == B) keep = before++ < ties;
        if (keep) {
            const int slot = atomicAdd(count, 1);
            if (slot < SMALL_SET) {
                se[slot] = e;
                sid[slot] = i;
            }
        }
    }
    __syncthreads();
    return min(*count, SMALL_SET);
}

// The order-independent f64 sum of non-negative masses (`exact_total` in
// src/sampling/mod.rs, the CPU's top-p total): per exponent the exact integer sum of the
// 24-bit significands (u64 shared atomics: at most 2^41 per bucket), then the 256 buckets
// in ascending exponent order, each term exact. The same bits whatever the order of the
// additions, so the tree-summing GPU and the rank-order CPU get one total. Sums the kept
// items of row `w`, or (w null) the n values of `items`. Every thread calls it.
__device__ double exact_total(const Row* w, const float* items, int n,
                              unsigned long long* buckets, double* out) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) buckets[i] = 0ull;
    __syncthreads();
    const int count = w ? w->vocab : n;
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
        float e;
        if (w) {
            e = row_e(*w, i);
            if (!kept(*w, e, i)) continue;
        } else {
            e = items[i];
        }
        if (!(e > 0.0f) || isinf(e)) continue;  // zeros add nothing; no NaN or inf mass
        const unsigned b = __float_as_uint(e);
        const unsigned ex = b >> 23;
        const unsigned man = (b & 0x7fffffu) | (ex ? 0x800000u : 0u);
        atomicAdd(&buckets[ex], (unsigned long long)man);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double s = 0.0;
        for (int ex = 0; ex < 256; ++ex)
            if (buckets[ex]) s += (double)buckets[ex] * ldexp(1.0, max(ex, 1) - 150);
        *out = s;
    }
    __syncthreads();
    const double total = *out;
    __syncthreads();  // `out` may be rewritten by the next call
    return total;
}

struct SmallSet {
    float e[SMALL_SET];
    int id[SMALL_SET];
    unsigned long long buckets[256];
    double total;
    int hist[256];
    int tie_scan[1024];
    int sel[2];
    int count;
    int ok, n, pick;
};

// The small-set pick of a row (w: every item kept, no floor). false (block-uniform): the
// top-p prefix does not lie within the candidates; the caller takes the full path.
__device__ bool small_set_pick(const Row& w, int cand, bool top_k_on, float tp, float mp,
                               double uniform, int greedy, SmallSet& m, int* pick) {
    unsigned B;
    int ties;
    radix_select(w, cand, m.hist, m.sel, &B, &ties);
    const int n0 = gather(w, B, ties, m.e, m.id, m.tie_scan, &m.count);
    // Top-p's total, as the CPU's `exact_total`: every item's mass without top-k, the
    // k survivors' with it.
    double total = 0.0;
    if (tp < 1.0f) total = top_k_on ? exact_total(nullptr, m.e, n0, m.buckets, &m.total)
                                    : exact_total(&w, nullptr, 0, m.buckets, &m.total);
    block_sort(m.e, m.id, n0, false);
    if (threadIdx.x == 0) {
        int n = n0, ok = 1;
        if (tp < 1.0f) {
            const double target = (double)tp * total;
            double cum = 0.0;
            int keep = -1;
            for (int i = 0; i < n; ++i) {
                cum += (double)m.e[i];
                if (cum >= target) {
                    keep = i + 1;
                    break;
                }
            }
            if (keep < 0) {
                if (top_k_on) keep = n; else ok = 0;  // the prefix goes past the candidates
            }
            n = max(keep, 1);
        }
        if (ok && mp > 0.0f) {
            float top = 0.0f;
            for (int i = 0; i < n; ++i) top = fmaxf(top, m.e[i]);
            const float floor = mp * top;
            int kept = 0;  // rank order: the kept ones are a prefix
            while (kept < n && m.e[kept] >= floor) ++kept;
            n = kept;
        }
        m.ok = ok;
        m.n = n;
    }
    __syncthreads();
    if (!m.ok) return false;
    const int n = m.n;
    // Without top-p the CPU walks its survivors in id order.
    if (tp >= 1.0f) block_sort(m.e, m.id, n, true);
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (int i = 0; i < n; ++i) total += (double)m.e[i];
        double u = uniform * total;
        int p = n > 0 ? m.id[n - 1] : greedy;  // the CPU's fallback: the last item
        for (int i = 0; i < n; ++i) {
            u -= (double)m.e[i];
            if (u < 0.0) {
                p = m.id[i];
                break;
            }
        }
        m.pick = p;
    }
    __syncthreads();
    *pick = m.pick;
    return true;
}

extern "C" __global__ void __launch_bounds__(1024, 1) sample_kernel(int* __restrict__ out_ids, const float* __restrict__ logits,
                                         long long row_stride, const float* __restrict__ temperatures,
                                         const int* __restrict__ top_k, const float* __restrict__ top_p,
                                         const float* __restrict__ min_p,
                                         const double* __restrict__ uniforms, int vocab, int rows) {
    __shared__ Best shb[32];
    __shared__ float shf[32];
    __shared__ double shd[32];
    __shared__ double scan[1024];
    __shared__ int pick_s;
    __shared__ SmallSet small;
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
    const float tp = top_p[r];
    const float mp = min_p[r];
    const bool top_k_on = k > 0 && k < vocab;
    const int cand = top_k_on ? k : (tp < 1.0f ? min(SMALL_SET, vocab) : 0);
    if (cand > 0 && cand <= SMALL_SET) {
        int pick;
        if (small_set_pick(w, cand, top_k_on, tp, mp, uniforms[r], greedy, small, &pick)) {
            if (threadIdx.x == 0) out_ids[r] = pick;
            return;
        }
    }
    int cb, ci;
    if (k > 0 && k < vocab && find_cutoff(w, (double)k, false, false, shd, &cb, &ci)) {
        w.lim_bits = cb;
        w.lim_id = ci;
    }
    if (tp < 1.0f) {
        const double total = exact_total(&w, nullptr, 0, small.buckets, &small.total);
        // At least the first item: top_p = 0 keeps one, as on the CPU (a target of 0 would
        // be met by the empty prefix).
        const double target = fmax((double)tp * total, 2.2250738585072014e-308);
        if (find_cutoff(w, target, true, false, shd, &cb, &ci)) {
            w.lim_bits = cb;
            w.lim_id = ci;
        }
    }
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
        exclusive_scan_by_thread0(scan, nt);
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
