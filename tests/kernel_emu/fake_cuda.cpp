// An emulated CUDA driver (libcuda.so.1, tests only): the subset of the driver API that
// cudarc and rill's CUDA backend call, over the kernel emulator, so the unchanged GPU
// code path (cudarc, Gpu::open, NVRTC's PTX, launches, copies, events, CUDA graphs)
// runs on the CPU. Loaded by tests/gpu_harness when RILL_GPU_TESTS=emulated.
//
// One device ("rill kernel emulator", compute capability 9.0, 8 GiB); device memory is
// host memory (a CUdeviceptr is a host address). Streams are synchronous: work runs when
// it is enqueued, unless the stream is capturing, in which case it is recorded (launch
// arguments copied) and runs at each cuGraphLaunch. A module's PTX is not read: its
// functions are looked up by name among the emulated kernels. Events hold the wall-clock
// time of their record. cuBLAS (fake_cublas.cpp) enqueues its GEMMs through
// rill_fake_enqueue, so they are captured too.

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;

enum : int {
    SUCCESS = 0,
    INVALID_VALUE = 1,
    OUT_OF_MEMORY = 2,
    NOT_FOUND = 500,
    LAUNCH_FAILED = 719,
    NOT_SUPPORTED = 801,
    STREAM_CAPTURE_INVALIDATED = 901,
};

extern "C" int rill_emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz,
                               unsigned block, void** params, const size_t* sizes,
                               size_t nparams, char* err, size_t err_len);
extern "C" int rill_emu_param_sizes(const char* name, const size_t** sizes, size_t* n);

namespace {

using Op = std::function<CUresult()>;

struct Stream {
    bool capturing = false;
    std::vector<Op> recorded;
};

struct Graph {
    std::vector<Op> ops;
};

struct Event {
    double ms = 0;
};

struct Module {
    int unused = 0;
};

struct Function {
    std::string name;
    std::vector<size_t> sizes;
};

struct Context {
    int unused = 0;
};

Context primary;
Stream default_stream;
std::mutex lock;  // the emulated device runs one thing at a time
const size_t TOTAL = 8ull << 30;
size_t in_use = 0;
std::string last_launch_error;

double now_ms() {
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

Stream* stream_of(void* s) { return s ? static_cast<Stream*>(s) : &default_stream; }

CUresult enqueue(void* s, Op op) {
    Stream* st = stream_of(s);
    if (st->capturing) {
        st->recorded.push_back(std::move(op));
        return SUCCESS;
    }
    return op();
}

}  // namespace

extern "C" {

// For fake_cublas.cpp: runs `fn(ctx)` on stream `s` now, or records it when capturing
// (ctx is copied: `ctx_bytes`).
CUresult rill_fake_enqueue(void* s, CUresult (*fn)(const void*), const void* ctx,
                           size_t ctx_bytes) {
    std::vector<char> copy((const char*)ctx, (const char*)ctx + ctx_bytes);
    return enqueue(s, [fn, copy]() { return fn(copy.data()); });
}

CUresult cuInit(unsigned) { return SUCCESS; }
// NVRTC opens libcuda.so.1 and asks for this private table (it crashes when the symbol is
// missing); refusing it makes NVRTC compile without the driver, as on a machine with none.
CUresult cuGetExportTable(const void** table, const void*) {
    *table = nullptr;
    return NOT_SUPPORTED;
}
CUresult cuDriverGetVersion(int* v) {
    *v = 13000;
    return SUCCESS;
}
CUresult cuDeviceGetCount(int* n) {
    *n = 1;
    return SUCCESS;
}
CUresult cuDeviceGet(CUdevice* d, int ordinal) {
    if (ordinal != 0) return INVALID_VALUE;
    *d = 0;
    return SUCCESS;
}
CUresult cuDeviceGetName(char* name, int len, CUdevice) {
    snprintf(name, (size_t)len, "%s", "rill kernel emulator");
    return SUCCESS;
}
CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice) {
    *bytes = TOTAL;
    return SUCCESS;
}
CUresult cuDeviceGetAttribute(int* v, int attrib, CUdevice) {
    switch (attrib) {
        case 1: *v = 1024; break;           // max threads per block
        case 2: case 3: *v = 1024; break;   // block dims x, y
        case 4: *v = 64; break;             // block dim z
        case 5: *v = 2147483647; break;     // grid x
        case 6: case 7: *v = 65535; break;  // grid y, z
        case 8: *v = 48 * 1024; break;      // shared memory per block
        case 10: *v = 32; break;            // warp size
        case 16: *v = 4; break;             // multiprocessors
        case 75: *v = 9; break;             // compute capability major
        case 76: *v = 0; break;             // minor
        case 97: *v = 227 * 1024; break;    // shared memory per block (opt-in)
        default: *v = 0; break;             // memory pools (115) and everything else: no
    }
    return SUCCESS;
}
CUresult cuDeviceGetUuid_v2(void* uuid, CUdevice) {
    memset(uuid, 0x5a, 16);
    return SUCCESS;
}
CUresult cuDevicePrimaryCtxRetain(void** ctx, CUdevice) {
    *ctx = &primary;
    return SUCCESS;
}
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice) { return SUCCESS; }
CUresult cuCtxSetCurrent(void*) { return SUCCESS; }
CUresult cuCtxGetCurrent(void** ctx) {
    *ctx = &primary;
    return SUCCESS;
}
CUresult cuCtxPushCurrent_v2(void*) { return SUCCESS; }
CUresult cuCtxPopCurrent_v2(void** ctx) {
    if (ctx) *ctx = &primary;
    return SUCCESS;
}
CUresult cuCtxSynchronize() { return SUCCESS; }
CUresult cuCtxGetDevice(CUdevice* d) {
    *d = 0;
    return SUCCESS;
}
CUresult cuCtxSetFlags(unsigned) { return SUCCESS; }

CUresult cuGetErrorString(CUresult e, const char** s) {
    static thread_local std::string msg;
    msg = "emulated CUDA error " + std::to_string(e);
    if (e == LAUNCH_FAILED && !last_launch_error.empty()) msg += ": " + last_launch_error;
    *s = msg.c_str();
    return SUCCESS;
}
CUresult cuGetErrorName(CUresult e, const char** s) { return cuGetErrorString(e, s); }

CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    std::lock_guard<std::mutex> g(lock);
    *total = TOTAL;
    *free_bytes = TOTAL > in_use ? TOTAL - in_use : 0;
    return SUCCESS;
}

CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) {
    void* m = nullptr;
    if (posix_memalign(&m, 256, bytes ? bytes : 1) != 0) return OUT_OF_MEMORY;
    {
        std::lock_guard<std::mutex> g(lock);
        in_use += bytes;
    }
    *p = (CUdeviceptr)(uintptr_t)m;
    return SUCCESS;
}
CUresult cuMemFree_v2(CUdeviceptr p) {
    free((void*)(uintptr_t)p);
    return SUCCESS;
}
CUresult cuMemAllocAsync(CUdeviceptr* p, size_t bytes, void*) { return cuMemAlloc_v2(p, bytes); }
CUresult cuMemFreeAsync(CUdeviceptr p, void*) { return cuMemFree_v2(p); }
CUresult cuMemHostAlloc(void** p, size_t bytes, unsigned) {
    *p = calloc(1, bytes ? bytes : 1);
    return *p ? SUCCESS : OUT_OF_MEMORY;
}
CUresult cuMemAllocHost_v2(void** p, size_t bytes) { return cuMemHostAlloc(p, bytes, 0); }
CUresult cuMemFreeHost(void* p) {
    free(p);
    return SUCCESS;
}
CUresult cuMemHostRegister_v2(void*, size_t, unsigned) { return SUCCESS; }
CUresult cuMemHostUnregister(void*) { return SUCCESS; }

CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, void* s) {
    return enqueue(s, [=]() {
        memcpy((void*)(uintptr_t)dst, src, n);
        return SUCCESS;
    });
}
CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, void* s) {
    return enqueue(s, [=]() {
        memcpy(dst, (const void*)(uintptr_t)src, n);
        return SUCCESS;
    });
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, void* s) {
    return enqueue(s, [=]() {
        memmove((void*)(uintptr_t)dst, (const void*)(uintptr_t)src, n);
        return SUCCESS;
    });
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
    return cuMemcpyHtoDAsync_v2(dst, src, n, nullptr);
}
CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
    return cuMemcpyDtoHAsync_v2(dst, src, n, nullptr);
}
CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, void* s) {
    return enqueue(s, [=]() {
        memset((void*)(uintptr_t)dst, v, n);
        return SUCCESS;
    });
}
CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n) {
    return cuMemsetD8Async(dst, v, n, nullptr);
}
CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned v, size_t n, void* s) {
    return enqueue(s, [=]() {
        unsigned* p = (unsigned*)(uintptr_t)dst;
        for (size_t i = 0; i < n; ++i) p[i] = v;
        return SUCCESS;
    });
}

CUresult cuStreamCreate(void** s, unsigned) {
    *s = new Stream();
    return SUCCESS;
}
CUresult cuStreamCreateWithPriority(void** s, unsigned, int) { return cuStreamCreate(s, 0); }
CUresult cuStreamDestroy_v2(void* s) {
    delete static_cast<Stream*>(s);
    return SUCCESS;
}
CUresult cuStreamSynchronize(void*) { return SUCCESS; }
CUresult cuStreamQuery(void*) { return SUCCESS; }
CUresult cuStreamWaitEvent(void*, void*, unsigned) { return SUCCESS; }

CUresult cuEventCreate(void** e, unsigned) {
    *e = new Event();
    return SUCCESS;
}
CUresult cuEventDestroy_v2(void* e) {
    delete static_cast<Event*>(e);
    return SUCCESS;
}
CUresult cuEventRecord(void* e, void* s) {
    Event* ev = static_cast<Event*>(e);
    return enqueue(s, [ev]() {
        ev->ms = now_ms();
        return SUCCESS;
    });
}
CUresult cuEventRecordWithFlags(void* e, void* s, unsigned) { return cuEventRecord(e, s); }
CUresult cuEventSynchronize(void*) { return SUCCESS; }
CUresult cuEventQuery(void*) { return SUCCESS; }
CUresult cuEventElapsedTime_v2(float* ms, void* start, void* end) {
    *ms = (float)(static_cast<Event*>(end)->ms - static_cast<Event*>(start)->ms);
    return SUCCESS;
}
CUresult cuEventElapsedTime(float* ms, void* start, void* end) {
    return cuEventElapsedTime_v2(ms, start, end);
}

CUresult cuModuleLoadData(void** m, const void*) {
    *m = new Module();
    return SUCCESS;
}
CUresult cuModuleUnload(void* m) {
    delete static_cast<Module*>(m);
    return SUCCESS;
}
CUresult cuModuleGetFunction(void** f, void*, const char* name) {
    const size_t* sizes = nullptr;
    size_t n = 0;
    if (!rill_emu_param_sizes(name, &sizes, &n)) return NOT_FOUND;
    Function* fn = new Function();  // lives as long as the process (like a module's)
    fn->name = name;
    fn->sizes.assign(sizes, sizes + n);
    *f = fn;
    return SUCCESS;
}
CUresult cuFuncGetAttribute(int* v, int attrib, void*) {
    switch (attrib) {
        case 0: *v = 1024; break;  // max threads per block
        case 4: *v = 32; break;    // registers
        default: *v = 0; break;
    }
    return SUCCESS;
}
CUresult cuFuncSetAttribute(void*, int, int) { return SUCCESS; }
CUresult cuFuncSetCacheConfig(void*, int) { return SUCCESS; }

CUresult cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned shared, void* s, void** params,
                        void** extra) {
    const Function* fn = static_cast<const Function*>(f);
    if (by != 1 || bz != 1 || shared != 0 || extra) return NOT_SUPPORTED;
    // Copy the arguments now: `params` points at the caller's variables.
    std::vector<std::vector<char>> args;
    for (size_t i = 0; i < fn->sizes.size(); ++i) {
        const char* p = static_cast<const char*>(params[i]);
        args.emplace_back(p, p + fn->sizes[i]);
    }
    const std::string name = fn->name;
    const std::vector<size_t> sizes = fn->sizes;
    return enqueue(s, [=]() mutable {
        std::vector<void*> ptrs;
        for (auto& a : args) ptrs.push_back(a.data());
        char err[1024];
        if (rill_emu_launch(name.c_str(), gx, gy, gz, bx, ptrs.data(), sizes.data(), sizes.size(),
                            err, sizeof err) != 0) {
            last_launch_error = err;
            fprintf(stderr, "emulated CUDA driver: %s\n", err);
            return (CUresult)LAUNCH_FAILED;
        }
        return (CUresult)SUCCESS;
    });
}

CUresult cuStreamBeginCapture_v2(void* s, int) {
    Stream* st = stream_of(s);
    if (st->capturing) return STREAM_CAPTURE_INVALIDATED;
    st->capturing = true;
    st->recorded.clear();
    return SUCCESS;
}
CUresult cuStreamEndCapture(void* s, void** graph) {
    Stream* st = stream_of(s);
    if (!st->capturing) return INVALID_VALUE;
    st->capturing = false;
    Graph* g = new Graph();
    g->ops.swap(st->recorded);
    *graph = g;
    return SUCCESS;
}
CUresult cuStreamIsCapturing(void* s, int* status) {
    *status = stream_of(s)->capturing ? 1 : 0;
    return SUCCESS;
}
CUresult cuGraphInstantiateWithFlags(void** exec, void* graph, unsigned long long) {
    *exec = new Graph(*static_cast<Graph*>(graph));
    return SUCCESS;
}
CUresult cuGraphUpload(void*, void*) { return SUCCESS; }
CUresult cuGraphLaunch(void* exec, void* s) {
    const Graph* g = static_cast<const Graph*>(exec);
    for (const Op& op : g->ops) {
        CUresult r = enqueue(s, op);
        if (r != SUCCESS) return r;
    }
    return SUCCESS;
}
CUresult cuGraphDestroy(void* g) {
    delete static_cast<Graph*>(g);
    return SUCCESS;
}
CUresult cuGraphExecDestroy(void* g) {
    delete static_cast<Graph*>(g);
    return SUCCESS;
}

}  // extern "C"
