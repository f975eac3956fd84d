// The CUDA dialect of kernels/*.cu, for running those sources unchanged on the CPU (the
// kernel emulator, feature `kernel-emu`; runtime in runtime.cpp, design in README.md).
//
// Each kernel file is compiled as C++ with this header first and with include/ (whose
// cuda_fp16.h and cuda_bf16.h are empty) ahead of any CUDA headers. A CUDA thread is a
// fiber; a block's fibers run on one OS thread, switching only at __syncthreads, warp
// collectives (__shfl*_sync, __syncwarp, mma, ldmatrix) and exit, so:
//   - __shared__ variables are `static thread_local`: one copy per OS thread, i.e. per
//     block being run (blocks run one after another on each worker thread); build.rs
//     follows each declaration with first_touch, which fills the variable with 0xFF
//     bytes (NaN, -1) once per block, so what a block reads before writing is garbage,
//     as on the GPU, and never the previous block's values;
//   - threadIdx, blockIdx, blockDim and gridDim read the running fiber's block;
//   - a warp collective completes when every lane its mask names has reached one, and it
//     is an error (reported by the launch, never a hang) when a named lane exited or
//     waits at __syncthreads instead; __syncthreads releases when every live thread of
//     the block waits there.
// Numbers: __half and __nv_bfloat16 convert with round-to-nearest-even like the device
// (a NaN becomes the canonical 0x7fff); expf, sqrtf, ... are the C library's, and a*b+c
// is not contracted into an FMA as NVRTC does (each a few ulp from the device, inside the
// parity tests' tolerances).

#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cfloat>
#include <climits>
#include <cmath>
#include <cstddef>

// ---- keywords -------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __align__(n) __attribute__((aligned(n)))
#define warpSize 32
#define RILL_KERNEL_EMU 1

// ---- vector types -----------------------------------------------------------------------
struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
};
struct __align__(8) float2 {
    float x, y;
};
struct __align__(16) float4 {
    float x, y, z, w;
};
struct __align__(8) uint2 {
    unsigned x, y;
};
struct __align__(16) uint4 {
    unsigned x, y, z, w;
};
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) {
    return uint4{x, y, z, w};
}

// ---- the runtime (runtime.cpp) ----------------------------------------------------------
namespace rill_emu {

struct Geometry {
    uint3 block_idx;
    dim3 block_dim, grid_dim;
};

const uint3& thread_idx();
const Geometry& geometry();
[[noreturn]] void trap(const char* what);
// Fills the __shared__ variable at p (n bytes) with 0xFF the first time a thread of the
// running block reaches its declaration (build.rs appends the call to each one).
void first_touch(void* p, size_t n);
void sync_block();
void sync_warp(unsigned mask);
// Lane `lane`'s value of the shuffle: `bits` is this lane's value, the result is the
// source lane's (xor: lane ^ arg, idx: arg) within segments of `width` lanes.
uint64_t shuffle(unsigned mask, uint64_t bits, int arg, int width, bool xor_mode);
// mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32, d = a * b + d (fragments as PTX).
void mma_m16n8k16(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1);
// ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 with this lane's row address.
void ldmatrix_x4_trans(unsigned (&r)[4], const void* row);

template <typename T>
inline T shuffle_as(unsigned mask, T v, int arg, int width, bool xor_mode) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof(T));
    bits = shuffle(mask, bits, arg, width, xor_mode);
    T out;
    memcpy(&out, &bits, sizeof(T));
    return out;
}

}  // namespace rill_emu

#define threadIdx (::rill_emu::thread_idx())
#define blockIdx (::rill_emu::geometry().block_idx)
#define blockDim (::rill_emu::geometry().block_dim)
#define gridDim (::rill_emu::geometry().grid_dim)

inline void __syncthreads() { rill_emu::sync_block(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { rill_emu::sync_warp(mask); }
[[noreturn]] inline void __trap() { rill_emu::trap("__trap()"); }

template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return rill_emu::shuffle_as(mask, v, lane_mask, width, true);
}
template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
    return rill_emu::shuffle_as(mask, v, src_lane, width, false);
}

// ---- bit casts, loads, atomics ----------------------------------------------------------
inline unsigned __float_as_uint(float f) {
    unsigned u;
    memcpy(&u, &f, 4);
    return u;
}
inline int __float_as_int(float f) {
    int i;
    memcpy(&i, &f, 4);
    return i;
}
inline float __int_as_float(int i) {
    float f;
    memcpy(&f, &i, 4);
    return f;
}
inline float __uint_as_float(unsigned u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
template <typename T>
inline T __ldg(const T* p) {
    return *p;
}
template <typename T>
inline T __ldcs(const T* p) {
    return *p;
}
inline size_t __cvta_generic_to_shared(const void* p) { return (size_t)p; }

// Blocks of one launch run on several OS threads, so global atomics are real atomics.
template <typename T>
inline T atomicAdd(T* p, T v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
inline float atomicAdd(float* p, float v) {
    unsigned* u = reinterpret_cast<unsigned*>(p);
    unsigned old = __atomic_load_n(u, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(u, &old, __float_as_uint(__uint_as_float(old) + v), false,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return __uint_as_float(old);
}
template <typename T>
inline T atomicMin(T* p, T v) {
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (v < old &&
           !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}
template <typename T>
inline T atomicMax(T* p, T v) {
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (v > old &&
           !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}

// ---- integer min/max (CUDA's overloads) -------------------------------------------------
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }

// ---- f16 and bf16 -----------------------------------------------------------------------
namespace rill_emu {

inline unsigned short float_to_half_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t mant = x & 0x7fffffu;
    const int exp = (int)((x >> 23) & 0xffu);
    if (exp == 0xff) return mant ? 0x7fffu : (unsigned short)(sign | 0x7c00u);  // NaN: canonical
    const int e = exp - 127 + 15;
    if (e >= 31) return (unsigned short)(sign | 0x7c00u);
    if (e <= 0) {  // subnormal or zero: units of 2^-24
        const int shift = 14 - e;
        if (shift > 24) return (unsigned short)sign;
        mant |= 0x800000u;
        uint32_t h = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1u))) h++;
        return (unsigned short)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (mant >> 13);
    const uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;  // a carry may reach inf
    return (unsigned short)(sign | h);
}

inline float half_bits_to_float(unsigned short h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    uint32_t x;
    if (exp == 0x1f) {
        x = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {
        x = sign | ((exp + 112) << 23) | (mant << 13);
    } else {
        float f = (float)mant * 5.9604644775390625e-8f;  // 2^-24, exact
        return sign ? -f : f;
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

inline unsigned short float_to_bf16_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;  // NaN: canonical, as cvt.rn.bf16.f32
    return (unsigned short)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

inline float bf16_bits_to_float(unsigned short b) {
    const uint32_t x = (uint32_t)b << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

}  // namespace rill_emu

struct __align__(2) __half {
    unsigned short __x;
    __half() = default;
    __half(float f) : __x(rill_emu::float_to_half_bits(f)) {}
    operator float() const { return rill_emu::half_bits_to_float(__x); }
};
typedef __half half;
struct __align__(4) __half2 {
    __half x, y;
};
struct __align__(2) __nv_bfloat16 {
    unsigned short __x;
    __nv_bfloat16() = default;
    __nv_bfloat16(float f) : __x(rill_emu::float_to_bf16_bits(f)) {}
    operator float() const { return rill_emu::bf16_bits_to_float(__x); }
};
struct __align__(4) __nv_bfloat162 {
    __nv_bfloat16 x, y;
};

inline __half __float2half(float f) { return __half(f); }
inline __half __float2half_rn(float f) { return __half(f); }
inline float __half2float(__half h) { return (float)h; }
inline __half2 __floats2half2_rn(float lo, float hi) { return __half2{__half(lo), __half(hi)}; }
inline __half2 __float22half2_rn(float2 v) { return __floats2half2_rn(v.x, v.y); }
inline float2 __half22float2(__half2 h) { return float2{(float)h.x, (float)h.y}; }
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 b) { return (float)b; }
inline float2 __bfloat1622float2(__nv_bfloat162 b) { return float2{(float)b.x, (float)b.y}; }
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
    return __nv_bfloat162{__nv_bfloat16(lo), __nv_bfloat16(hi)};
}
