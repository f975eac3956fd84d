// An emulated CUDA driver (libcuda.so.1, tests only): the subset of the driver API that
// cudarc and rill's CUDA backend call, over the kernel emulator, so the unchanged GPU
// code path (cudarc, Gpu::open, NVRTC's PTX, launches, copies, events, CUDA graphs)
// runs on the CPU. Loaded by tests/gpu_harness when RILL_GPU_TESTS=emulated.
//
// One device ("rill kernel emulator", compute capability 9.0, 8 GiB); device memory is
// host memory (a CUdeviceptr is a host address), each allocation its own mapping between
// two inaccessible guard pages, ending less than 256 bytes before the trailing one, and
// unmapped when freed: a kernel, copy or GEMM that runs past a buffer's end, or uses a
// buffer after its free (a graph replayed over freed buffers, say), faults at once.
// Streams defer their work until the host waits for it, events and graphs follow the
// driver's rules (fake_streams.h). A module's
// PTX is not read: its functions are looked up by name among the emulated kernels.
// Events hold the wall-clock time at which their record ran. cuBLAS (fake_cublas.cpp)
// queues its GEMMs through rill_fake_enqueue, so they are deferred and captured too.

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "fake_streams.h"

typedef int CUdevice;
typedef unsigned long long CUdeviceptr;

extern "C" int rill_emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz,
                               unsigned block, void** params, const size_t* sizes,
                               size_t nparams, char* err, size_t err_len);
extern "C" int rill_emu_param_sizes(const char* name, const size_t** sizes, size_t* n);

namespace {

using namespace fake;

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
const size_t DEFAULT_TOTAL = 8ull << 30;
size_t total = DEFAULT_TOTAL;  // rill_fake_cuda_set_memory
int driver_version = 13000;    // rill_fake_cuda_set_driver_version
bool fail_next_launch = false; // rill_fake_cuda_fail_next_launch
bool refuse_page_locked = false; // rill_fake_cuda_refuse_page_locked
int fail_capture = 0;            // rill_fake_cuda_fail_capture
size_t in_use = 0;
// A device allocation: its bytes, and the mapping that holds it with its guard pages.
struct Mapping {
    size_t bytes;
    void* base;
    size_t total;
};
std::map<uintptr_t, Mapping> device_allocs;  // address -> allocation
std::set<uintptr_t> freeing;                // queued by cuMemFreeAsync
std::map<uintptr_t, size_t> pinned;         // page-locked host ranges: start -> bytes
std::string last_launch_error;
thread_local std::vector<void*> ctx_stack;  // cuCtxPushCurrent's saved contexts

// The calls that act on the current context fail without one, as on a GPU.
#define NEED_CONTEXT \
    if (!current_ctx()) return INVALID_CONTEXT

// Whether [p, p + n) lies in one page-locked range (cuMemHostAlloc, cuMemHostRegister):
// copies from and to such memory are asynchronous; others are staged or waited for.
bool is_pinned(const void* p, size_t n) {
    const uintptr_t a = (uintptr_t)p;
    auto it = pinned.upper_bound(a);
    if (it == pinned.begin()) return false;
    --it;
    return a >= it->first && a + n <= it->first + it->second;
}

// Device memory (host memory, 256-byte aligned like cudaMalloc), counted against `total`:
// a mapping of its own with a guard page on each side, the buffer placed to end as near
// the trailing guard as the alignment allows.
CUresult device_alloc(CUdeviceptr* p, size_t bytes) {
    if (in_use > total || bytes > total - in_use) return OUT_OF_MEMORY;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t data = (bytes + 256 + page - 1) / page * page;
    const size_t map_bytes = data + 2 * page;
    void* base = mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return OUT_OF_MEMORY;
    char* first = (char*)base;
    char* end = first + page + data;  // the trailing guard page
    if (mprotect(first, page, PROT_NONE) != 0 || mprotect(end, page, PROT_NONE) != 0) {
        munmap(base, map_bytes);
        return OUT_OF_MEMORY;
    }
    const uintptr_t at = ((uintptr_t)end - (bytes ? bytes : 1)) & ~(uintptr_t)255;
    in_use += bytes;
    device_allocs[at] = Mapping{bytes, base, map_bytes};
    *p = (CUdeviceptr)at;
    return SUCCESS;
}

// Whether `p` is an allocation not already queued for freeing.
bool freeable(CUdeviceptr p) {
    return device_allocs.count((uintptr_t)p) && !freeing.count((uintptr_t)p);
}

// Frees an allocation `device_allocs` holds.
void device_release(uintptr_t p) {
    auto it = device_allocs.find(p);
    const Mapping m = it->second;
    in_use -= m.bytes;
    device_allocs.erase(it);
    freeing.erase(p);
    munmap(m.base, m.total);
}

}  // namespace

extern "C" {

// For fake_cublas.cpp: queues `fn(ctx)` on stream `s`, or records it when capturing (ctx
// is copied: `ctx_bytes`).
CUresult rill_fake_enqueue(void* s, CUresult (*fn)(const void*), const void* ctx,
                           size_t ctx_bytes) {
    std::vector<char> copy((const char*)ctx, (const char*)ctx + ctx_bytes);
    return enqueue(s, [fn, copy]() { return fn(copy.data()); });
}

// Test controls (tests/cuda_engine.rs, through gpu_harness::fake_control): the device's
// memory (0: the default 8 GiB; a smaller device makes loads fail for want of memory), the
// version cuDriverGetVersion reports (set before the process's first probe), a fault,
// page-locked memory refused, a failed graph capture.
void rill_fake_cuda_set_memory(size_t bytes) {
    Guard g(lock());
    total = bytes ? bytes : DEFAULT_TOTAL;
}
void rill_fake_cuda_set_driver_version(int version) {
    Guard g(lock());
    driver_version = version;
}
// With 1, the next kernel to run (queued or replayed from a graph) faults, as an illegal
// address would on a GPU: LAUNCH_FAILED, sticky for the rest of the process.
void rill_fake_cuda_fail_next_launch(int fail) {
    Guard g(lock());
    fail_next_launch = fail != 0;
}
// Whether cuMemHostAlloc fails (the backend then stages its inputs in ordinary memory).
void rill_fake_cuda_refuse_page_locked(int refuse) {
    Guard g(lock());
    refuse_page_locked = refuse != 0;
}
// Makes the next CUDA graph capture fail: 1, the next launch recorded into a capture is
// refused and invalidates it (as an operation a capture cannot hold is); 2, the next
// cuGraphInstantiate runs out of memory.
void rill_fake_cuda_fail_capture(int how) {
    Guard g(lock());
    fail_capture = how;
}
// The sticky error (0: none), for fake_cublas.cpp's cublasDestroy.
int rill_fake_cuda_sticky() {
    Guard g(lock());
    return (int)reg().sticky;
}

CUresult cuInit(unsigned) { return SUCCESS; }
// NVRTC opens libcuda.so.1 and asks for this private table (it crashes when the symbol is
// missing); refusing it makes NVRTC compile without the driver, as on a machine with none.
CUresult cuGetExportTable(const void** table, const void*) {
    *table = nullptr;
    return NOT_SUPPORTED;
}
CUresult cuDriverGetVersion(int* v) {
    Guard g(lock());
    *v = driver_version;
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
    Guard g(lock());
    *bytes = total;
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
        case 115: *v = 1; break;            // memory pools: cuMemAllocAsync, as on a GPU
        default: *v = 0; break;
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
// The thread's current context (fake_streams.h's current_ctx) and its push/pop stack.
CUresult cuCtxSetCurrent(void* ctx) {
    current_ctx() = ctx;
    return SUCCESS;
}
CUresult cuCtxGetCurrent(void** ctx) {
    *ctx = current_ctx();
    return SUCCESS;
}
CUresult cuCtxPushCurrent_v2(void* ctx) {
    ctx_stack.push_back(current_ctx());
    current_ctx() = ctx;
    return SUCCESS;
}
CUresult cuCtxPopCurrent_v2(void** ctx) {
    if (!current_ctx()) return INVALID_CONTEXT;
    if (ctx) *ctx = current_ctx();
    current_ctx() = ctx_stack.empty() ? nullptr : ctx_stack.back();
    if (!ctx_stack.empty()) ctx_stack.pop_back();
    return SUCCESS;
}
CUresult cuCtxSynchronize() {
    NEED_CONTEXT;
    Guard g(lock());
    if (wait_refused(nullptr)) return CAPTURE_UNSUPPORTED;
    return flush_all();
}
CUresult cuCtxGetDevice(CUdevice* d) {
    NEED_CONTEXT;
    *d = 0;
    return SUCCESS;
}
CUresult cuCtxSetFlags(unsigned) { return SUCCESS; }

// The strings live as long as the process (callers keep them, as the driver's are static).
CUresult cuGetErrorString(CUresult e, const char** s) {
    Guard g(lock());
    static std::set<std::string>* messages = new std::set<std::string>();
    std::string msg = "emulated CUDA error " + std::to_string(e);
    if (e == LAUNCH_FAILED && !last_launch_error.empty()) msg += ": " + last_launch_error;
    if (e == CAPTURE_UNSUPPORTED) msg += ": operation not permitted when stream is capturing";
    if (e == CAPTURED_EVENT) msg += ": operation not permitted on an event last recorded in a capture";
    if (e == NOT_READY) msg += ": device not ready";
    *s = messages->insert(msg).first->c_str();
    return SUCCESS;
}
CUresult cuGetErrorName(CUresult e, const char** s) { return cuGetErrorString(e, s); }

CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total_bytes) {
    NEED_CONTEXT;
    Guard g(lock());
    *total_bytes = total;
    *free_bytes = total > in_use ? total - in_use : 0;
    return SUCCESS;
}

CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) {
    NEED_CONTEXT;
    Guard g(lock());
    if (refused_in_capture()) return CAPTURE_UNSUPPORTED;
    return device_alloc(p, bytes);
}
// Frees once everything queued has run (a kernel may still read the memory).
CUresult cuMemFree_v2(CUdeviceptr p) {
    Guard g(lock());
    if (refused_in_capture()) return CAPTURE_UNSUPPORTED;
    if (const CUresult r = flush_all()) return r;
    if (!p) return SUCCESS;
    if (!freeable(p)) return INVALID_VALUE;
    device_release((uintptr_t)p);
    return SUCCESS;
}
CUresult cuMemHostAlloc(void** p, size_t bytes, unsigned) {
    NEED_CONTEXT;
    Guard g(lock());
    if (refused_in_capture()) return CAPTURE_UNSUPPORTED;
    if (refuse_page_locked) return OUT_OF_MEMORY;  // as under a low RLIMIT_MEMLOCK
    *p = calloc(1, bytes ? bytes : 1);
    if (!*p) return OUT_OF_MEMORY;
    pinned[(uintptr_t)*p] = bytes;
    return SUCCESS;
}
CUresult cuMemAllocHost_v2(void** p, size_t bytes) { return cuMemHostAlloc(p, bytes, 0); }
CUresult cuMemFreeHost(void* p) {
    Guard g(lock());
    if (refused_in_capture()) return CAPTURE_UNSUPPORTED;
    if (const CUresult r = flush_all()) return r;
    if (pinned.erase((uintptr_t)p) == 0) return p ? INVALID_VALUE : SUCCESS;
    free(p);
    return SUCCESS;
}
CUresult cuMemHostRegister_v2(void* p, size_t bytes, unsigned) {
    Guard g(lock());
    pinned[(uintptr_t)p] = bytes;
    return SUCCESS;
}
CUresult cuMemHostUnregister(void* p) {
    Guard g(lock());
    if (const CUresult r = flush_all()) return r;
    return pinned.erase((uintptr_t)p) ? SUCCESS : INVALID_VALUE;
}

// Page-locked source: the copy reads it when it runs. Pageable: the driver stages it
// before returning (the caller may reuse it at once), which a capture cannot record.
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, void* s) {
    Guard g(lock());
    if (n == 0) return reg().sticky;  // nothing to copy, nothing to wait for
    if (is_pinned(src, n)) {
        return enqueue(s, [=]() {
            memcpy((void*)(uintptr_t)dst, src, n);
            return SUCCESS;
        });
    }
    if (stream_of(s)->capturing) {
        stream_of(s)->capture_invalid = true;
        return CAPTURE_UNSUPPORTED;
    }
    std::vector<char> staged((const char*)src, (const char*)src + n);
    return enqueue(s, [dst, staged]() {
        memcpy((void*)(uintptr_t)dst, staged.data(), staged.size());
        return SUCCESS;
    });
}
// Page-locked destination: written when the copy runs (the host waits for an event or
// the stream). Pageable: returns once the copy has run.
CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, void* s) {
    Guard g(lock());
    // Nothing to copy: returns at once, as a driver may, without waiting for the stream
    // (so a step that reads no rows back does not wait for the device here either).
    if (n == 0) return reg().sticky;
    Op copy = [=]() {
        memcpy(dst, (const void*)(uintptr_t)src, n);
        return SUCCESS;
    };
    if (is_pinned(dst, n)) return enqueue(s, copy);
    return run_now(s, copy);
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, void* s) {
    return enqueue(s, [=]() {
        memmove((void*)(uintptr_t)dst, (const void*)(uintptr_t)src, n);
        return SUCCESS;
    });
}
// The synchronous calls run on the legacy stream and return when done.
CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
    return run_now(nullptr, [=]() {
        memcpy((void*)(uintptr_t)dst, src, n);
        return SUCCESS;
    });
}
CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
    return run_now(nullptr, [=]() {
        memcpy(dst, (const void*)(uintptr_t)src, n);
        return SUCCESS;
    });
}
CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, void* s) {
    return enqueue(s, [=]() {
        memset((void*)(uintptr_t)dst, v, n);
        return SUCCESS;
    });
}
CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n) {
    return run_now(nullptr, [=]() {
        memset((void*)(uintptr_t)dst, v, n);
        return SUCCESS;
    });
}
CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned v, size_t n, void* s) {
    return enqueue(s, [=]() {
        unsigned* p = (unsigned*)(uintptr_t)dst;
        for (size_t i = 0; i < n; ++i) p[i] = v;
        return SUCCESS;
    });
}
// Stream-ordered (what cudarc uses, the device having memory pools): the allocation is
// made now (nothing queued before can use it), the free when the stream reaches it. Graph
// memory nodes are not emulated: inside a capture both are refused and invalidate it
// (stricter than CUDA, and a free recorded into a graph would be a bug in rill anyway).
CUresult cuMemAllocAsync(CUdeviceptr* p, size_t bytes, void* s) {
    Guard g(lock());
    Stream* st = stream_of(s);
    if (st->capturing) {
        st->capture_invalid = true;
        return CAPTURE_UNSUPPORTED;
    }
    return device_alloc(p, bytes);
}
CUresult cuMemFreeAsync(CUdeviceptr p, void* s) {
    Guard g(lock());
    Stream* st = stream_of(s);
    if (st->capturing) {
        st->capture_invalid = true;
        return CAPTURE_UNSUPPORTED;
    }
    if (!freeable(p)) return INVALID_VALUE;
    freeing.insert((uintptr_t)p);
    return enqueue(s, [p]() {
        device_release((uintptr_t)p);
        return (CUresult)SUCCESS;
    });
}

CUresult cuStreamCreate(void** s, unsigned flags) {
    NEED_CONTEXT;
    Guard g(lock());
    Stream* st = new Stream();
    st->id = reg().next_id++;
    st->non_blocking = (flags & 1) != 0;
    reg().streams[st->id] = st;
    *s = st;
    return SUCCESS;
}
CUresult cuStreamCreateWithPriority(void** s, unsigned flags, int) {
    return cuStreamCreate(s, flags);
}
// Queued work still runs; the handle is gone at once.
CUresult cuStreamDestroy_v2(void* s) {
    Guard g(lock());
    Stream* st = stream_of(s);
    if (st->legacy) return INVALID_HANDLE;
    flush(st, st->last_seq);
    reg().streams.erase(st->id);
    if (capturing_here() == st->id) capturing_here() = 0;
    delete st;
    return SUCCESS;
}
CUresult cuStreamSynchronize(void* s) {
    Guard g(lock());
    Stream* st = stream_of(s);
    if (wait_refused(st)) return CAPTURE_UNSUPPORTED;
    return flush(st, st->last_seq);
}
// NOT_READY while work is queued; that work then runs, so polling ends.
CUresult cuStreamQuery(void* s) {
    Guard g(lock());
    Stream* st = stream_of(s);
    if (wait_refused(st)) return CAPTURE_UNSUPPORTED;
    if (st->pending.empty()) return reg().sticky;
    const CUresult r = flush(st, st->last_seq);
    return r != SUCCESS ? r : (CUresult)NOT_READY;
}
// Orders `s` after the event's last record (as it was when this was called).
CUresult cuStreamWaitEvent(void* s, void* e, unsigned) {
    Guard g(lock());
    Stream* st = stream_of(s);
    const Event* ev = static_cast<const Event*>(e);
    if (st->capturing) {
        // A wait on an event recorded outside the capture: nothing to order inside it. One
        // recorded inside (a fork or join of captured streams) is not emulated.
        if (!ev->captured) return SUCCESS;
        st->capture_invalid = true;
        return NOT_SUPPORTED;
    }
    if (ev->done) return reg().sticky;
    const uint64_t on = ev->stream, upto = ev->seq;
    return queue(st, [on, upto]() {
        Stream* o = find_stream(on);
        return o ? flush(o, upto) : reg().sticky;
    });
}

CUresult cuEventCreate(void** e, unsigned flags) {
    NEED_CONTEXT;
    Guard g(lock());
    Event* ev = new Event();
    ev->timing = (flags & 2) == 0;  // CU_EVENT_DISABLE_TIMING
    ev->id = reg().next_id++;
    reg().events[ev->id] = ev;
    *e = ev;
    return SUCCESS;
}
// A queued record of a destroyed event finds nothing and does nothing.
CUresult cuEventDestroy_v2(void* e) {
    Guard g(lock());
    Event* ev = static_cast<Event*>(e);
    reg().events.erase(ev->id);
    delete ev;
    return SUCCESS;
}
CUresult cuEventRecord(void* e, void* s) {
    Guard g(lock());
    Event* ev = static_cast<Event*>(e);
    Stream* st = stream_of(s);
    if (st->capturing) {
        ev->captured = true;
        const uint64_t id = ev->id;
        st->recorded.push_back([id](Stream* on) {
            auto it = reg().events.find(id);
            return it == reg().events.end() ? (CUresult)SUCCESS : record_event(it->second, on);
        });
        return SUCCESS;
    }
    return record_event(ev, st);
}
CUresult cuEventRecordWithFlags(void* e, void* s, unsigned) { return cuEventRecord(e, s); }
CUresult cuEventSynchronize(void* e) {
    Guard g(lock());
    Event* ev = static_cast<Event*>(e);
    if (ev->captured) return CAPTURED_EVENT;
    return finish_event(ev);
}
CUresult cuEventQuery(void* e) {
    Guard g(lock());
    Event* ev = static_cast<Event*>(e);
    if (ev->captured) return CAPTURED_EVENT;
    if (ev->done) return reg().sticky;
    const CUresult r = finish_event(ev);
    return r != SUCCESS ? r : (CUresult)NOT_READY;
}
CUresult cuEventElapsedTime_v2(float* ms, void* start, void* end) {
    Guard g(lock());
    const Event* a = static_cast<const Event*>(start);
    const Event* b = static_cast<const Event*>(end);
    if (a->captured || b->captured) return CAPTURED_EVENT;
    if (!a->recorded || !b->recorded || !a->timing || !b->timing) return INVALID_HANDLE;
    if (!a->done || !b->done) return NOT_READY;
    *ms = (float)(b->ms - a->ms);
    return SUCCESS;
}
CUresult cuEventElapsedTime(float* ms, void* start, void* end) {
    return cuEventElapsedTime_v2(ms, start, end);
}

CUresult cuModuleLoadData(void** m, const void*) {
    NEED_CONTEXT;
    *m = new Module();
    return SUCCESS;
}
CUresult cuModuleUnload(void* m) {
    {
        Guard g(lock());
        if (const CUresult r = flush_all()) return r;  // its functions' launches run first
    }
    delete static_cast<Module*>(m);
    return SUCCESS;
}
CUresult cuModuleGetFunction(void** f, void*, const char* name) {
    NEED_CONTEXT;
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
    NEED_CONTEXT;
    const Function* fn = static_cast<const Function*>(f);
    if (by != 1 || bz != 1 || shared != 0 || extra) return NOT_SUPPORTED;
    // Refused at launch, as the driver refuses them (not when the launch runs).
    if (bx == 0 || bx > 1024 || gx == 0 || gy == 0 || gz == 0 || gy > 65535 || gz > 65535)
        return INVALID_VALUE;
    // Copy the arguments now: `params` points at the caller's variables.
    std::vector<std::vector<char>> args;
    for (size_t i = 0; i < fn->sizes.size(); ++i) {
        const char* p = static_cast<const char*>(params[i]);
        args.emplace_back(p, p + fn->sizes[i]);
    }
    const std::string name = fn->name;
    const std::vector<size_t> sizes = fn->sizes;
    {
        Guard g(lock());
        Stream* st = stream_of(s);
        if (fail_capture == 1 && st->capturing) {
            fail_capture = 0;
            st->capture_invalid = true;
            return CAPTURE_UNSUPPORTED;
        }
    }
    return enqueue(s, [=]() mutable {
        std::vector<void*> ptrs;
        for (auto& a : args) ptrs.push_back(a.data());
        char err[1024];
        if (fail_next_launch) {
            fail_next_launch = false;
            last_launch_error = name + ": injected fault (rill_fake_cuda_fail_next_launch)";
            fprintf(stderr, "emulated CUDA driver: %s\n", last_launch_error.c_str());
            return (CUresult)LAUNCH_FAILED;
        }
        if (rill_emu_launch(name.c_str(), gx, gy, gz, bx, ptrs.data(), sizes.data(), sizes.size(),
                            err, sizeof err) != 0) {
            last_launch_error = err;  // under the lock: queued work runs with it held
            fprintf(stderr, "emulated CUDA driver: %s\n", err);
            return (CUresult)LAUNCH_FAILED;
        }
        return (CUresult)SUCCESS;
    });
}

CUresult cuStreamBeginCapture_v2(void* s, int) {
    Guard g(lock());
    Stream* st = stream_of(s);
    if (st->capturing) return CAPTURE_INVALIDATED;
    if (st->legacy) return CAPTURE_UNSUPPORTED;
    st->capturing = true;
    st->capture_invalid = false;
    st->recorded.clear();
    capturing_here() = st->id;
    return SUCCESS;
}
// Ends the capture; one that a refused call invalidated yields no graph.
CUresult cuStreamEndCapture(void* s, void** graph) {
    Guard g(lock());
    Stream* st = stream_of(s);
    if (!st->capturing) return INVALID_VALUE;
    st->capturing = false;
    if (capturing_here() == st->id) capturing_here() = 0;
    if (st->capture_invalid) {
        st->recorded.clear();
        *graph = nullptr;
        return CAPTURE_INVALIDATED;
    }
    Graph* gr = new Graph();
    gr->nodes.swap(st->recorded);
    *graph = gr;
    return SUCCESS;
}
CUresult cuStreamIsCapturing(void* s, int* status) {
    Guard g(lock());
    const Stream* st = stream_of(s);
    *status = !st->capturing ? 0 : st->capture_invalid ? 2 : 1;
    return SUCCESS;
}
CUresult cuGraphInstantiateWithFlags(void** exec, void* graph, unsigned long long) {
    Guard g(lock());
    if (refused_in_capture()) return CAPTURE_UNSUPPORTED;
    if (fail_capture == 2) {
        fail_capture = 0;
        return OUT_OF_MEMORY;
    }
    *exec = new Graph(*static_cast<Graph*>(graph));
    return SUCCESS;
}
CUresult cuGraphUpload(void*, void*) { return SUCCESS; }
CUresult cuGraphLaunch(void* exec, void* s) {
    Guard g(lock());
    Stream* st = stream_of(s);
    if (st->capturing) return NOT_SUPPORTED;  // child graphs are not emulated
    const Graph* gr = static_cast<const Graph*>(exec);
    for (const Node& node : gr->nodes) {
        const CUresult r = node(st);
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
