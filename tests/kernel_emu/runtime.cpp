// The kernel emulator's runtime (see emu.h): fibers for CUDA threads, the block
// scheduler, warp collectives, and rill_emu_launch, which src/backend/cuda/emu.rs calls.
//
// A launch splits its blocks over worker OS threads (RILL_EMU_THREADS, default: the
// hardware's). A worker runs one block at a time: every thread of the block is a fiber on
// its own stack (with a guard page; stacks are pooled across launches); the scheduler runs
// each runnable fiber until it parks (barrier, warp collective) or exits, then completes
// what can complete (warp collectives whose named lanes have all arrived, then
// __syncthreads once every live thread waits there), and reports anything else as a
// deadlock. A __trap, a deadlock or a malformed collective ends the launch with an error
// naming the kernel, block and thread.
//
// Fibers switch with a few instructions on x86-64 (switch_stack below: callee-saved
// registers, MXCSR and the x87 control word) and with ucontext elsewhere (which makes a
// signal-mask system call per switch, several times slower).
//
// Faults: a kernel touching unmapped memory (the tests' buffers end at an unmapped page,
// src/backend/cuda/emu.rs `GuardedAlloc`; fiber stacks have guard pages) gets a line on
// stderr naming the kernel, block, thread and address before the process dies of the
// SIGSEGV; faults outside a kernel go to the handler that was installed before.
//
// Order: each round runs the runnable fibers in thread order or in reverse, alternating
// with the round and the block, so a read of shared memory that another thread writes
// without a barrier between them sees the stale value in some block (a race on the GPU,
// a wrong result here) instead of always the fresh one.

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "emu.h"

#if defined(__x86_64__)
// Saves the callee-saved state on the current stack, stores the stack pointer in *save,
// and resumes the context whose stack pointer is `to`.
extern "C" void rill_emu_switch_stack(void** save, void* to);
asm(R"(
    .text
    .globl rill_emu_switch_stack
    .type rill_emu_switch_stack, @function
rill_emu_switch_stack:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size rill_emu_switch_stack, .-rill_emu_switch_stack
    .section .note.GNU-stack,"",@progbits
    .text
)");
#endif

namespace rill_emu {

using Kernel = void (*)(void* fn, void** params);

struct Entry {
    Kernel call;
    void* fn;
    std::vector<size_t> sizes;  // of each parameter
};

std::map<std::string, Entry>& registry() {
    static std::map<std::string, Entry> r;
    return r;
}

void add_kernel(const char* name, Kernel call, void* fn, const size_t* sizes, size_t arity) {
    registry()[name] = Entry{call, fn, std::vector<size_t>(sizes, sizes + arity)};
}

namespace {

enum class State { Runnable, Barrier, Warp, Done };
enum class Op { Shuffle, SyncWarp, Mma, LdMatrix };

struct MmaArgs {
    float* d;
    const unsigned* a;
    unsigned b0, b1;
};

// A suspended execution context: a saved stack pointer (x86-64) or a ucontext.
struct Context {
#if defined(__x86_64__)
    void* sp = nullptr;
#else
    ucontext_t uc;
#endif
};

void switch_context(Context& save, Context& to) {
#if defined(__x86_64__)
    rill_emu_switch_stack(&save.sp, to.sp);
#else
    swapcontext(&save.uc, &to.uc);
#endif
}

struct Fiber {
    Context ctx;
    State state = State::Done;
    uint3 tid{0, 0, 0};
    // The pending warp collective.
    Op op = Op::SyncWarp;
    unsigned mask = 0;
    int arg = 0, width = 32;
    bool xor_mode = false;
    uint64_t in = 0, out = 0;
    MmaArgs mma{};
    const void* site = nullptr;  // mma/ldmatrix: the call's return address
    const void* row = nullptr;
    unsigned* regs = nullptr;
};

constexpr size_t STACK = 256 * 1024;  // reserved per fiber; pages are touched on use
constexpr unsigned MAX_THREADS = 1024;

// Stacks for MAX_THREADS fibers (one worker's), kept for later launches. An arena is
// about 2 * MAX_THREADS memory mappings (a guard page per stack) against Linux's default
// 65530 per process, so at most MAX_ARENAS exist: a worker waits for a free one, which
// also caps the workers of concurrent launches (parallel tests) process-wide.
constexpr unsigned MAX_ARENAS = 16;
std::mutex arenas_lock;
std::condition_variable arena_freed;
std::vector<char*> free_arenas;
unsigned arenas_made = 0;

char* make_arena() {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void* m = mmap(nullptr, STACK * MAX_THREADS, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    char* a = static_cast<char*>(m);
    for (unsigned i = 0; i < MAX_THREADS; ++i) {
        if (mprotect(a + i * STACK, page, PROT_NONE) != 0) {
            munmap(m, STACK * MAX_THREADS);
            return nullptr;
        }
    }
    return a;
}

// An arena, waiting while MAX_ARENAS are in use; null if one cannot be mapped.
char* take_arena() {
    std::unique_lock<std::mutex> g(arenas_lock);
    arena_freed.wait(g, [] { return !free_arenas.empty() || arenas_made < MAX_ARENAS; });
    if (!free_arenas.empty()) {
        char* a = free_arenas.back();
        free_arenas.pop_back();
        return a;
    }
    ++arenas_made;
    g.unlock();
    char* a = make_arena();
    if (!a) {
        std::lock_guard<std::mutex> again(arenas_lock);
        --arenas_made;
        arena_freed.notify_one();
    }
    return a;
}

void give_arena(char* a) {
    {
        std::lock_guard<std::mutex> g(arenas_lock);
        free_arenas.push_back(a);
    }
    arena_freed.notify_one();
}

// Launches so far: it flips the first round's thread order from launch to launch.
std::atomic<unsigned> launches{0};

struct Block {
    const char* kernel = nullptr;
    Entry entry{};
    void** params = nullptr;
    Geometry geo{};
    std::vector<Fiber> fibers;
    Context sched;
    char* stacks = nullptr;
    std::string error;

    ~Block() {
        if (stacks) give_arena(stacks);
    }
};

thread_local Block* cur_block = nullptr;
thread_local Fiber* cur_fiber = nullptr;
// Blocks this OS thread has started, and the block in which each __shared__ variable of
// this thread was last filled (first_touch).
thread_local uint64_t blocks_started = 0;
thread_local std::vector<std::pair<void*, uint64_t>> shared_filled;

std::string where(const Block& b, const Fiber* f) {
    char buf[160];
    snprintf(buf, sizeof buf, "%s block (%u,%u,%u) thread %u", b.kernel, b.geo.block_idx.x,
             b.geo.block_idx.y, b.geo.block_idx.z, f ? f->tid.x : 0u);
    return buf;
}

void park(State s) {
    Fiber* f = cur_fiber;
    f->state = s;
    switch_context(f->ctx, cur_block->sched);
}

// A fiber's first frame: runs the kernel, then hands control back for good.
void fiber_main() {
    Block* b = cur_block;
    b->entry.call(b->entry.fn, b->params);
    cur_fiber->state = State::Done;
    switch_context(cur_fiber->ctx, b->sched);
    abort();  // a finished fiber is never resumed
}

// Fiber `f`'s context at the start of fiber_main on the stack at `stack`.
void start_context(Fiber& f, char* stack) {
#if defined(__x86_64__)
    // What rill_emu_switch_stack pops: MXCSR and the x87 control word, r15..rbp, then the
    // return address (fiber_main, entered with rsp = 8 mod 16 as after a call).
    uintptr_t top = ((uintptr_t)stack + STACK) & ~(uintptr_t)15;
    uint64_t* sp = reinterpret_cast<uint64_t*>(top - 72);
    sp[0] = 0x1F80u | (uint64_t)0x037Fu << 32;
    for (int i = 1; i <= 6; ++i) sp[i] = 0;
    sp[7] = (uint64_t)(uintptr_t)&fiber_main;
    sp[8] = 0;
    f.ctx.sp = sp;
#else
    getcontext(&f.ctx.uc);
    f.ctx.uc.uc_stack.ss_sp = stack;
    f.ctx.uc.uc_stack.ss_size = STACK;
    f.ctx.uc.uc_link = nullptr;
    makecontext(&f.ctx.uc, fiber_main, 0);
#endif
}

Fiber* lane_fiber(Block& b, unsigned warp, unsigned lane) {
    const size_t i = (size_t)warp * 32 + lane;
    return i < b.fibers.size() ? &b.fibers[i] : nullptr;
}

void run_mma(Block& b, unsigned warp) {
    // Gather A (16x16, row), B (16x8, col) and C (16x8) from the lanes' fragments.
    float A[16][16], B[16][8], C[16][8];
    auto lo = [](unsigned r) { return half_bits_to_float((unsigned short)(r & 0xffffu)); };
    auto hi = [](unsigned r) { return half_bits_to_float((unsigned short)(r >> 16)); };
    for (unsigned lane = 0; lane < 32; ++lane) {
        const Fiber* f = lane_fiber(b, warp, lane);
        const unsigned g = lane >> 2, t = lane & 3;
        const unsigned* a = f->mma.a;
        for (int r = 0; r < 4; ++r) {
            const unsigned row = g + ((r & 1) ? 8 : 0), col = 2 * t + ((r & 2) ? 8 : 0);
            A[row][col] = lo(a[r]);
            A[row][col + 1] = hi(a[r]);
        }
        B[2 * t][g] = lo(f->mma.b0);
        B[2 * t + 1][g] = hi(f->mma.b0);
        B[2 * t + 8][g] = lo(f->mma.b1);
        B[2 * t + 9][g] = hi(f->mma.b1);
        for (int i = 0; i < 4; ++i) C[g + (i >= 2 ? 8 : 0)][2 * t + (i & 1)] = f->mma.d[i];
    }
    for (unsigned lane = 0; lane < 32; ++lane) {
        Fiber* f = lane_fiber(b, warp, lane);
        const unsigned g = lane >> 2, t = lane & 3;
        for (int i = 0; i < 4; ++i) {
            const unsigned row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
            float acc = C[row][col];
            for (int k = 0; k < 16; ++k) acc = fmaf(A[row][k], B[k][col], acc);
            f->mma.d[i] = acc;
        }
    }
}

bool run_ldmatrix(Block& b, unsigned warp) {
    // Matrix m's row r (8 b16) is at the address lane 8m + r gave; with .trans, lane L
    // receives (row 2(L%4), col L/4) in the low half and (row 2(L%4)+1, col L/4) in the
    // high half of register m.
    unsigned short M[4][8][8];
    for (unsigned lane = 0; lane < 32; ++lane) {
        const Fiber* f = lane_fiber(b, warp, lane);
        if ((uintptr_t)f->row % 16 != 0) {
            b.error = where(b, f) + ": ldmatrix row address is not 16-byte aligned";
            return false;
        }
        memcpy(M[lane / 8][lane % 8], f->row, 16);
    }
    for (unsigned lane = 0; lane < 32; ++lane) {
        Fiber* f = lane_fiber(b, warp, lane);
        const unsigned r = 2 * (lane % 4), c = lane / 4;
        for (int m = 0; m < 4; ++m) f->regs[m] = (unsigned)M[m][r][c] | ((unsigned)M[m][r + 1][c] << 16);
    }
    return true;
}

// Completes the warp collectives whose lanes have all arrived; false on an error.
bool complete_warp_ops(Block& b, bool& progressed) {
    const unsigned warps = (unsigned)(b.fibers.size() + 31) / 32;
    for (unsigned w = 0; w < warps; ++w) {
        for (unsigned lane = 0; lane < 32; ++lane) {
            Fiber* first = lane_fiber(b, w, lane);
            if (!first || first->state != State::Warp) continue;
            const unsigned mask = first->mask;
            bool ready = true;
            for (unsigned l = 0; l < 32; ++l) {
                if (!(mask >> l & 1u)) continue;
                Fiber* f = lane_fiber(b, w, l);
                if (!f || f->state == State::Done) {
                    b.error = where(b, first) + ": warp collective names lane " +
                              std::to_string(l) + ", which has exited";
                    return false;
                }
                if (f->state != State::Warp) {
                    ready = false;
                    break;
                }
                if (f->op != first->op || f->mask != mask || f->site != first->site) {
                    b.error = where(b, f) + ": lanes of one warp reached different collectives";
                    return false;
                }
            }
            if (!ready) continue;
            if (first->op == Op::Mma || first->op == Op::LdMatrix) {
                if (mask != 0xffffffffu) {
                    b.error = where(b, first) + ": mma/ldmatrix needs all 32 lanes";
                    return false;
                }
                if (first->op == Op::Mma) {
                    run_mma(b, w);
                } else if (!run_ldmatrix(b, w)) {
                    return false;
                }
            } else if (first->op == Op::Shuffle) {
                for (unsigned l = 0; l < 32; ++l) {
                    if (!(mask >> l & 1u)) continue;
                    Fiber* f = lane_fiber(b, w, l);
                    const int width = f->width;
                    if (width <= 0 || width > 32 || (width & (width - 1))) {
                        b.error = where(b, f) + ": shuffle width is not a power of two <= 32";
                        return false;
                    }
                    const unsigned seg = l / (unsigned)width * (unsigned)width;
                    unsigned src = f->xor_mode ? (l ^ ((unsigned)f->arg & 31u))
                                               : seg + ((unsigned)f->arg & (unsigned)(width - 1));
                    if (f->xor_mode && src / (unsigned)width > l / (unsigned)width) src = l;
                    if (src >= 32 || !(mask >> src & 1u)) {
                        b.error = where(b, f) + ": shuffle reads lane " + std::to_string(src) +
                                  ", outside the mask";
                        return false;
                    }
                    f->out = lane_fiber(b, w, src)->in;
                }
            }
            for (unsigned l = 0; l < 32; ++l) {
                if (mask >> l & 1u) lane_fiber(b, w, l)->state = State::Runnable;
            }
            progressed = true;
        }
    }
    return true;
}

// Runs block `idx` of the launch; false (with b.error) on a trap or a deadlock.
bool run_block(Block& b, uint3 idx, unsigned launch) {
    b.geo.block_idx = idx;
    const unsigned n = b.geo.block_dim.x;
    for (unsigned i = 0; i < n; ++i) {
        Fiber& f = b.fibers[i];
        f = Fiber{};
        f.tid = uint3{i, 0, 0};
        start_context(f, b.stacks + (size_t)i * STACK);
        f.state = State::Runnable;
    }
    cur_block = &b;
    ++blocks_started;
    const size_t linear = idx.x + (size_t)b.geo.grid_dim.x * (idx.y + (size_t)b.geo.grid_dim.y * idx.z);
    for (unsigned round = 0;; ++round) {
        const bool reverse = ((round + linear + launch) & 1) != 0;
        for (unsigned k = 0; k < n; ++k) {
            Fiber& f = b.fibers[reverse ? n - 1 - k : k];
            if (f.state != State::Runnable) continue;
            cur_fiber = &f;
            switch_context(b.sched, f.ctx);
            cur_fiber = nullptr;
            if (!b.error.empty()) return false;
        }
        bool progressed = false;
        if (!complete_warp_ops(b, progressed)) return false;
        if (progressed) continue;
        bool all_done = true, all_barrier = true;
        const Fiber* stuck = nullptr;
        for (const Fiber& f : b.fibers) {
            if (f.state == State::Done) continue;
            all_done = false;
            if (f.state != State::Barrier) {
                all_barrier = false;
                if (!stuck) stuck = &f;
            }
        }
        if (all_done) return true;
        if (all_barrier) {
            for (Fiber& f : b.fibers) {
                if (f.state == State::Barrier) f.state = State::Runnable;
            }
            continue;
        }
        b.error = where(b, stuck) +
                  ": deadlock (a warp collective waits for lanes that wait at "
                  "__syncthreads or are elsewhere)";
        return false;
    }
}

struct sigaction previous_segv;

void on_segv(int sig, siginfo_t* info, void* ctx) {
    const Block* b = cur_block;
    const Fiber* f = cur_fiber;
    if (b && f) {
        char buf[400];
        const int n = snprintf(buf, sizeof buf,
                               "rill kernel emulator: %s block (%u,%u,%u) thread %u touched "
                               "unmapped address %p (past the end of a buffer, or a fiber "
                               "stack overflow)\n",
                               b->kernel, b->geo.block_idx.x, b->geo.block_idx.y,
                               b->geo.block_idx.z, f->tid.x, info->si_addr);
        if (n > 0) (void)!write(2, buf, (size_t)n);
        signal(sig, SIG_DFL);  // the access faults again and ends the process
        return;
    }
    // Not in a kernel: whatever handled it before (Rust's stack-overflow report).
    sigaction(sig, &previous_segv, nullptr);
    (void)ctx;
}

void install_segv_handler() {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_segv);
}

// The handler must run off the fiber stacks (a stack overflow leaves none): an alternate
// signal stack per OS thread that runs blocks, unless it has one (Rust's threads do),
// removed and freed when the thread ends.
struct SignalStack {
    void* mem = nullptr;
    ~SignalStack() {
        if (!mem) return;
        stack_t off;
        memset(&off, 0, sizeof off);
        off.ss_flags = SS_DISABLE;
        sigaltstack(&off, nullptr);
        free(mem);
    }
};

void ensure_signal_stack() {
    static thread_local SignalStack mine;
    static thread_local bool done = false;
    if (done) return;
    done = true;
    stack_t old;
    if (sigaltstack(nullptr, &old) == 0 && !(old.ss_flags & SS_DISABLE)) return;
    const size_t size = 64 * 1024;
    stack_t ss;
    memset(&ss, 0, sizeof ss);
    ss.ss_sp = malloc(size);
    if (!ss.ss_sp) return;
    ss.ss_size = size;
    if (sigaltstack(&ss, nullptr) == 0) {
        mine.mem = ss.ss_sp;
    } else {
        free(ss.ss_sp);
    }
}

}  // namespace

const uint3& thread_idx() { return cur_fiber->tid; }
const Geometry& geometry() { return cur_block->geo; }

void trap(const char* what) {
    cur_block->error = where(*cur_block, cur_fiber) + ": " + what;
    cur_fiber->state = State::Done;
    switch_context(cur_fiber->ctx, cur_block->sched);
    abort();  // never resumed
}

void sync_block() { park(State::Barrier); }

void first_touch(void* p, size_t n) {
    for (auto& [addr, block] : shared_filled) {
        if (addr != p) continue;
        if (block != blocks_started) {
            memset(p, 0xFF, n);
            block = blocks_started;
        }
        return;
    }
    memset(p, 0xFF, n);
    shared_filled.emplace_back(p, blocks_started);
}

// CUDA requires a warp collective's mask to include the calling lane.
void check_own_lane(unsigned mask, const char* what) {
    if (!(mask >> (cur_fiber->tid.x & 31u) & 1u)) trap(what);
}

void sync_warp(unsigned mask) {
    check_own_lane(mask, "__syncwarp mask leaves out the calling lane");
    Fiber* f = cur_fiber;
    f->op = Op::SyncWarp;
    f->mask = mask;
    park(State::Warp);
}

uint64_t shuffle(unsigned mask, uint64_t bits, int arg, int width, bool xor_mode) {
    check_own_lane(mask, "shuffle mask leaves out the calling lane");
    Fiber* f = cur_fiber;
    f->op = Op::Shuffle;
    f->mask = mask;
    f->in = bits;
    f->arg = arg;
    f->width = width;
    f->xor_mode = xor_mode;
    park(State::Warp);
    return f->out;
}

void mma_m16n8k16(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    Fiber* f = cur_fiber;
    f->op = Op::Mma;
    f->mask = 0xffffffffu;
    f->site = __builtin_return_address(0);
    f->mma = MmaArgs{d, a, b0, b1};
    park(State::Warp);
}

void ldmatrix_x4_trans(unsigned (&r)[4], const void* row) {
    Fiber* f = cur_fiber;
    f->op = Op::LdMatrix;
    f->mask = 0xffffffffu;
    f->site = __builtin_return_address(0);
    f->row = row;
    f->regs = r;
    park(State::Warp);
}

}  // namespace rill_emu

void rill_emu_register_all();

static void ensure_registered() {
    static std::once_flag once;
    std::call_once(once, rill_emu_register_all);
}

// Runs kernel `name` over grid (gx, gy, gz) of `block` threads with the `nparams`
// parameters `params` (pointers to each argument, as cuLaunchKernel takes them; `sizes`
// their byte sizes, checked against the kernel's parameter list). 0 on success; otherwise
// the message is in `err` (NUL-terminated, truncated to err_len). Nothing is thrown out.
extern "C" int rill_emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz,
                               unsigned block, void** params, const size_t* sizes,
                               size_t nparams, char* err, size_t err_len) {
    using namespace rill_emu;
    auto fail = [&](const std::string& m) {
        if (err_len) snprintf(err, err_len, "%s", m.c_str());
        return 1;
    };
    try {
        static std::once_flag once;
        std::call_once(once, install_segv_handler);
        ensure_registered();
        auto it = registry().find(name);
        if (it == registry().end()) return fail(std::string("no emulated kernel named ") + name);
        const std::vector<size_t>& want = it->second.sizes;
        if (nparams != want.size()) {
            return fail(std::string(name) + ": " + std::to_string(nparams) +
                        " arguments for " + std::to_string(want.size()) + " parameters");
        }
        for (size_t i = 0; i < nparams; ++i) {
            if (sizes[i] != want[i]) {
                return fail(std::string(name) + ": argument " + std::to_string(i) + " has " +
                            std::to_string(sizes[i]) + " bytes, the parameter " +
                            std::to_string(want[i]));
            }
        }
        if (block == 0 || block > MAX_THREADS || gx == 0 || gy == 0 || gz == 0) {
            return fail(std::string(name) + ": empty grid or block over 1024 threads");
        }
        const size_t blocks = (size_t)gx * gy * gz;
        unsigned workers = std::thread::hardware_concurrency();
        if (const char* v = getenv("RILL_EMU_THREADS")) workers = (unsigned)atoi(v);
        if (workers == 0) workers = 1;
        if (workers > MAX_ARENAS) workers = MAX_ARENAS;
        if (workers > blocks) workers = (unsigned)blocks;
        const unsigned launch = launches.fetch_add(1);
        std::atomic<size_t> next{0};
        std::mutex m;
        std::string first_error;
        auto record = [&](const std::string& e) {
            std::lock_guard<std::mutex> g(m);
            if (first_error.empty()) first_error = e;
            next = blocks;
        };
        auto work = [&]() {
            ensure_signal_stack();
            Block b;
            b.kernel = name;
            b.entry = it->second;
            b.params = params;
            b.geo.block_dim = dim3{block, 1, 1};
            b.geo.grid_dim = dim3{gx, gy, gz};
            b.fibers.resize(block);
            for (;;) {
                const size_t i = next.fetch_add(1);
                if (i >= blocks) break;
                if (!b.stacks && !(b.stacks = take_arena())) {
                    record("mmap of the fiber stacks failed");
                    break;
                }
                const uint3 idx{(unsigned)(i % gx), (unsigned)(i / gx % gy),
                                (unsigned)(i / gx / gy)};
                if (!run_block(b, idx, launch)) {
                    record(b.error);
                    break;
                }
            }
        };
        std::vector<std::thread> threads;
        try {
            for (unsigned w = 1; w < workers; ++w) threads.emplace_back(work);
        } catch (...) {
            // No more threads: the ones started and this one do the work.
        }
        work();
        for (auto& t : threads) t.join();
        if (!first_error.empty()) return fail(first_error);
        return 0;
    } catch (const std::exception& e) {
        return fail(std::string(name) + ": the emulator failed: " + e.what());
    } catch (...) {
        return fail(std::string(name) + ": the emulator failed");
    }
}

// The byte sizes of kernel `name`'s parameters (for copying a launch's arguments, as the
// emulated driver does when it records a launch into a graph). 0 if there is no such
// kernel.
extern "C" int rill_emu_param_sizes(const char* name, const size_t** sizes, size_t* n) {
    using namespace rill_emu;
    ensure_registered();
    auto it = registry().find(name);
    if (it == registry().end()) return 0;
    *sizes = it->second.sizes.data();
    *n = it->second.sizes.size();
    return 1;
}
