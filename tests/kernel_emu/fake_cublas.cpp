// An emulated cuBLAS (libcublas.so.1, tests only; see fake_cuda.cpp): handles and
// cublasGemmEx for what rill calls (bf16 A and B, bf16 or f32 C, f32 compute, op N or T,
// column-major as cuBLAS documents), enqueued on the handle's stream through the
// emulated driver so that a graph capture records it.

#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <thread>
#include <vector>

typedef int cublasStatus_t;
typedef int CUresult;

enum : int {
    OK = 0,
    NOT_INITIALIZED = 1,
    NOT_SUPPORTED = 15,
    INVALID_VALUE = 7,
    EXECUTION_FAILED = 13,
    INTERNAL_ERROR = 14
};
enum : int { R_32F = 0, R_16BF = 14 };
enum : int { OP_N = 0, OP_T = 1 };

#include <dlfcn.h>

typedef CUresult (*Enqueue)(void* s, CUresult (*fn)(const void*), const void* ctx,
                            size_t ctx_bytes);

// The emulated driver's rill_fake_enqueue (it is loaded first, under its soname).
static Enqueue driver_enqueue() {
    static Enqueue f = [] {
        void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
        return lib ? reinterpret_cast<Enqueue>(dlsym(lib, "rill_fake_enqueue")) : nullptr;
    }();
    return f;
}

namespace {

struct Handle {
    void* stream = nullptr;
};

struct Gemm {
    int transa, transb, m, n, k, lda, ldb, ldc, ctype;
    float alpha, beta;
    const uint16_t* a;
    const uint16_t* b;
    void* c;
};

float bf16(uint16_t v) {
    const uint32_t x = (uint32_t)v << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

uint16_t to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

float op_a(const Gemm& g, int i, int l) {
    return bf16(g.transa == OP_N ? g.a[i + (size_t)l * g.lda] : g.a[l + (size_t)i * g.lda]);
}

float op_b(const Gemm& g, int l, int j) {
    return bf16(g.transb == OP_N ? g.b[l + (size_t)j * g.ldb] : g.b[j + (size_t)l * g.ldb]);
}

// C = alpha op(A) op(B) + beta C, f32 accumulation: op(B)'s columns are converted once,
// op(A)'s rows one at a time, rows split over threads; each dot product sums 8 interleaved
// partial sums in a fixed order (the same result on every run).
CUresult run_gemm(const void* ctx) {
    Gemm g;
    memcpy(&g, ctx, sizeof g);
    std::vector<float> bcols((size_t)g.n * g.k);
    for (int j = 0; j < g.n; ++j) {
        for (int l = 0; l < g.k; ++l) bcols[(size_t)j * g.k + l] = op_b(g, l, j);
    }
    auto rows = [&](int lo, int hi) {
        std::vector<float> arow(g.k);
        for (int i = lo; i < hi; ++i) {
            for (int l = 0; l < g.k; ++l) arow[l] = op_a(g, i, l);
            for (int j = 0; j < g.n; ++j) {
                const float* b = &bcols[(size_t)j * g.k];
                float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                int l = 0;
                for (; l + 8 <= g.k; l += 8) {
                    for (int u = 0; u < 8; ++u) part[u] += arow[l + u] * b[l + u];
                }
                float acc = 0.0f;
                for (; l < g.k; ++l) acc += arow[l] * b[l];
                for (int u = 0; u < 8; ++u) acc += part[u];
                const size_t at = i + (size_t)j * g.ldc;
                if (g.ctype == R_32F) {
                    float* c = static_cast<float*>(g.c);
                    c[at] = g.alpha * acc + (g.beta != 0.0f ? g.beta * c[at] : 0.0f);
                } else {
                    uint16_t* c = static_cast<uint16_t*>(g.c);
                    c[at] = to_bf16(g.alpha * acc +
                                    (g.beta != 0.0f ? g.beta * bf16(c[at]) : 0.0f));
                }
            }
        }
    };
    unsigned workers = std::thread::hardware_concurrency();
    if (workers == 0) workers = 1;
    if ((size_t)g.m * g.n * g.k < (1u << 20)) workers = 1;
    std::vector<std::thread> threads;
    const int per = (g.m + (int)workers - 1) / (int)workers;
    for (unsigned w = 1; w < workers; ++w) {
        const int lo = (int)w * per, hi = std::min(g.m, lo + per);
        if (lo < hi) threads.emplace_back(rows, lo, hi);
    }
    rows(0, std::min(g.m, per));
    for (auto& t : threads) t.join();
    return 0;
}

}  // namespace

extern "C" {

// Needs a current context, as cuBLAS does (it binds the handle to the current device).
cublasStatus_t cublasCreate_v2(void** h) {
    typedef CUresult (*GetCurrent)(void**);
    static GetCurrent get = [] {
        void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
        return lib ? reinterpret_cast<GetCurrent>(dlsym(lib, "cuCtxGetCurrent")) : nullptr;
    }();
    void* ctx = nullptr;
    if (!get || get(&ctx) != 0 || !ctx) return NOT_INITIALIZED;
    *h = new Handle();
    return OK;
}
// cublasDestroy synchronizes the device (cuBLAS's documentation), so after a kernel fault
// (sticky: the context is unusable) it fails; the handle is gone either way.
cublasStatus_t cublasDestroy_v2(void* h) {
    typedef int (*Sticky)();
    static Sticky sticky = [] {
        void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
        return lib ? reinterpret_cast<Sticky>(dlsym(lib, "rill_fake_cuda_sticky")) : nullptr;
    }();
    delete static_cast<Handle*>(h);
    return sticky && sticky() != 0 ? INTERNAL_ERROR : OK;
}
cublasStatus_t cublasSetStream_v2(void* h, void* s) {
    static_cast<Handle*>(h)->stream = s;
    return OK;
}
cublasStatus_t cublasGetStream_v2(void* h, void** s) {
    *s = static_cast<Handle*>(h)->stream;
    return OK;
}
cublasStatus_t cublasSetWorkspace_v2(void*, void*, size_t) { return OK; }
cublasStatus_t cublasSetMathMode(void*, int) { return OK; }
cublasStatus_t cublasSetPointerMode_v2(void*, int mode) { return mode == 0 ? OK : NOT_SUPPORTED; }

cublasStatus_t cublasGemmEx(void* h, int transa, int transb, int m, int n, int k,
                            const void* alpha, const void* a, int atype, int lda, const void* b,
                            int btype, int ldb, const void* beta, void* c, int ctype, int ldc,
                            int compute, int) {
    if (atype != R_16BF || btype != R_16BF || (ctype != R_16BF && ctype != R_32F)) {
        return NOT_SUPPORTED;
    }
    if (compute != 68 /* CUBLAS_COMPUTE_32F */) return NOT_SUPPORTED;
    if ((transa != OP_N && transa != OP_T) || (transb != OP_N && transb != OP_T)) {
        return INVALID_VALUE;
    }
    // cuBLAS's documented requirements on the leading dimensions.
    if (m < 0 || n < 0 || k < 0 || ldc < (m > 1 ? m : 1) ||
        lda < ((transa == OP_N ? m : k) > 1 ? (transa == OP_N ? m : k) : 1) ||
        ldb < ((transb == OP_N ? k : n) > 1 ? (transb == OP_N ? k : n) : 1)) {
        return INVALID_VALUE;
    }
    Gemm g{transa, transb, m, n, k, lda, ldb, ldc, ctype,
           *static_cast<const float*>(alpha), *static_cast<const float*>(beta),
           static_cast<const uint16_t*>(a), static_cast<const uint16_t*>(b), c};
    Enqueue enqueue = driver_enqueue();
    if (!enqueue) return EXECUTION_FAILED;
    return enqueue(static_cast<Handle*>(h)->stream, run_gemm, &g, sizeof g) == 0
               ? OK
               : EXECUTION_FAILED;
}

}  // extern "C"
