// Streams, events and graphs of the emulated CUDA driver (included by fake_cuda.cpp only).
//
// Work is deferred, as on a GPU that is busy: an operation queued on a stream runs when
// the host waits for it (cuStreamSynchronize, cuEventSynchronize, cuCtxSynchronize, a
// copy to pageable memory, a synchronous free), when cuEventQuery/cuStreamQuery find it
// unfinished (they answer NOT_READY and let it finish), or when more than QUEUE_LIMIT
// operations wait on one stream. So host code that reads a result, or rewrites a page-locked buffer
// a queued copy still reads, without waiting first sees stale data, as it might on a GPU.
// RILL_FAKE_CUDA_STREAMS=sync runs everything at once instead (for debugging).
//
// Ordering across streams follows the driver: cuStreamWaitEvent orders a stream after
// the event's last record, and the legacy default stream (NULL, CU_STREAM_LEGACY,
// CU_STREAM_PER_THREAD all map to it) orders itself with the blocking streams. A kernel
// fault in queued work is sticky, as on a GPU: every later call that waits or queues
// returns it. A thread has no current context until it sets one.
//
// A capturing stream records instead of queueing; cuGraphLaunch queues the recorded
// operations. The calls CUDA refuses during a capture return
// CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and invalidate it: allocations and frees on the
// capturing thread (the backend's mode is thread-local) or on the capturing stream,
// waits on or queries of the capturing stream, and waits on the legacy stream or the
// context while a stream they encompass captures. An event last recorded inside a
// capture answers CUDA_ERROR_STREAM_CAPTURE_CAPTURED_EVENT.

#pragma once

#include <stdint.h>
#include <stdlib.h>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

typedef int CUresult;

enum : int {
    SUCCESS = 0,
    INVALID_VALUE = 1,
    OUT_OF_MEMORY = 2,
    INVALID_CONTEXT = 201,
    INVALID_HANDLE = 400,
    NOT_FOUND = 500,
    NOT_READY = 600,
    LAUNCH_FAILED = 719,
    NOT_SUPPORTED = 801,
    CAPTURE_UNSUPPORTED = 900,
    CAPTURE_INVALIDATED = 901,
    CAPTURED_EVENT = 907,
};

namespace fake {

using Op = std::function<CUresult()>;

struct Stream;
// A recorded operation: queues itself on the stream a graph is launched on.
using Node = std::function<CUresult(Stream*)>;

struct Stream {
    uint64_t id = 0;
    bool legacy = false;        // the NULL stream
    bool non_blocking = false;  // CU_STREAM_NON_BLOCKING: not ordered with the legacy stream
    bool capturing = false;
    bool capture_invalid = false;
    std::vector<Node> recorded;
    struct Pending {
        uint64_t seq;
        Op op;
    };
    std::deque<Pending> pending;
    uint64_t last_seq = 0;  // of the last operation queued
};

struct Event {
    uint64_t id = 0;
    bool timing = false;    // created without CU_EVENT_DISABLE_TIMING
    double ms = 0;
    bool recorded = false;  // ever recorded (outside a capture)
    bool captured = false;  // last recorded inside a capture: not a point in any stream
    bool done = true;       // its last record has run
    uint64_t stream = 0;    // the stream and sequence number of its last record
    uint64_t seq = 0;
};

struct Graph {
    std::vector<Node> nodes;
};

// Beyond this many operations waiting on one stream, the oldest runs (a GPU's queue is
// finite too); far more than one step queues, so a missing wait between steps still
// shows.
const size_t QUEUE_LIMIT = 1 << 16;

inline std::recursive_mutex& lock() {
    static std::recursive_mutex m;
    return m;
}
using Guard = std::lock_guard<std::recursive_mutex>;

inline bool deferred() {
    static const bool d = [] {
        const char* v = getenv("RILL_FAKE_CUDA_STREAMS");
        return !(v && std::string(v) == "sync");
    }();
    return d;
}

inline double now_ms() {
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

// Streams and events by id: a queued operation names them by id, so it never touches one
// destroyed meanwhile (an event may be destroyed while its record is queued).
struct Registry {
    uint64_t next_id = 2;
    std::map<uint64_t, Stream*> streams;
    std::map<uint64_t, Event*> events;
    Stream legacy;
    CUresult sticky = SUCCESS;
    Registry() {
        legacy.id = 1;
        legacy.legacy = true;
        streams[1] = &legacy;
    }
};

inline Registry& reg() {
    static Registry* r = new Registry();  // never destroyed: atexit order is unknown
    return *r;
}

// The context current on this thread (cuCtxSetCurrent / Push / Pop): none at first, as
// on a GPU, so a call that needs one from a thread that never bound it fails here too.
inline void*& current_ctx() {
    static thread_local void* ctx = nullptr;
    return ctx;
}

// The id of the stream this thread is capturing on (thread-local capture mode), or 0.
inline uint64_t& capturing_here() {
    static thread_local uint64_t id = 0;
    return id;
}

inline Stream* stream_of(void* s) {
    const uintptr_t h = (uintptr_t)s;
    if (h == 0 || h == 1 || h == 2) return &reg().legacy;
    return static_cast<Stream*>(s);
}

inline Stream* find_stream(uint64_t id) {
    auto it = reg().streams.find(id);
    return it == reg().streams.end() ? nullptr : it->second;
}

// A kernel fault is sticky on a GPU: the context is unusable afterwards.
inline void set_sticky(CUresult r) {
    if (r == LAUNCH_FAILED && reg().sticky == SUCCESS) reg().sticky = r;
}

// An allocation or free, which CUDA refuses while this thread captures (thread-local
// mode): invalidates the capture.
inline bool refused_in_capture() {
    Stream* s = capturing_here() ? find_stream(capturing_here()) : nullptr;
    if (!s || !s->capturing) return false;
    s->capture_invalid = true;
    return true;
}

// A wait on a stream that captures, on the legacy stream while a blocking stream captures
// (the legacy stream is ordered with those), or on the whole context (`st` null) while
// any stream captures: CUDA refuses it and invalidates the captures involved.
inline bool wait_refused(Stream* st) {
    if (st && !st->legacy) {
        if (st->capturing) st->capture_invalid = true;
        return st->capturing;
    }
    bool any = false;
    for (auto& kv : reg().streams) {
        if (kv.second->capturing && (!st || !kv.second->non_blocking)) {
            kv.second->capture_invalid = true;
            any = true;
        }
    }
    return any;
}

// Runs `st`'s queued operations up to sequence number `upto`. An operation that fails
// drops what is queued after it on that stream, and its error is returned (and sticky if
// it is a kernel fault).
inline CUresult flush(Stream* st, uint64_t upto) {
    while (!st->pending.empty() && st->pending.front().seq <= upto) {
        Op op = std::move(st->pending.front().op);
        st->pending.pop_front();  // first: a wait inside `op` may flush this stream again
        const CUresult r = op();
        if (r != SUCCESS) {
            set_sticky(r);
            st->pending.clear();
            return r;
        }
    }
    return reg().sticky;
}

// Runs every stream's queued work; returns the first error.
inline CUresult flush_all() {
    // Copy the list: nothing is created or destroyed by running queued work, but a flush
    // may reach into other streams.
    std::vector<Stream*> all;
    for (auto& kv : reg().streams) all.push_back(kv.second);
    CUresult first = SUCCESS;
    for (Stream* s : all) {
        const CUresult r = flush(s, s->last_seq);
        if (first == SUCCESS) first = r;
    }
    return first;
}

// Queues `op` on `st` (ordered after the legacy stream or the blocking streams, as the
// driver orders them), or runs it now when streams are synchronous. Returns the sequence
// number through `seq`.
inline CUresult queue(Stream* st, Op op, uint64_t* seq = nullptr) {
    if (reg().sticky != SUCCESS) return reg().sticky;
    std::vector<std::pair<uint64_t, uint64_t>> deps;
    if (st->legacy) {
        for (auto& kv : reg().streams) {
            Stream* o = kv.second;
            if (o != st && !o->non_blocking && !o->pending.empty())
                deps.emplace_back(o->id, o->last_seq);
        }
    } else if (!st->non_blocking && !reg().legacy.pending.empty()) {
        deps.emplace_back(1, reg().legacy.last_seq);
    }
    Op run = deps.empty() ? std::move(op) : Op([deps, op]() {
        for (auto& d : deps) {
            if (Stream* o = find_stream(d.first)) {
                const CUresult r = flush(o, d.second);
                if (r != SUCCESS) return r;
            }
        }
        return op();
    });
    const uint64_t s = ++st->last_seq;
    if (seq) *seq = s;
    if (!deferred()) {
        const CUresult r = run();
        set_sticky(r);
        return r;
    }
    st->pending.push_back({s, std::move(run)});
    if (st->pending.size() > QUEUE_LIMIT) return flush(st, st->pending.front().seq);
    return SUCCESS;
}

// Queues `op` on stream handle `s`, or records it when the stream captures.
inline CUresult enqueue(void* s, Op op) {
    Guard g(lock());
    Stream* st = stream_of(s);
    if (st->legacy && !current_ctx()) return INVALID_CONTEXT;  // the current context's
    if (st->capturing) {
        st->recorded.push_back([op](Stream* on) { return queue(on, op); });
        return SUCCESS;
    }
    return queue(st, std::move(op));
}

// Queues `op` and waits for it (a copy to or from pageable memory).
inline CUresult run_now(void* s, Op op) {
    Guard g(lock());
    Stream* st = stream_of(s);
    if (st->legacy && !current_ctx()) return INVALID_CONTEXT;
    if (wait_refused(st)) return CAPTURE_UNSUPPORTED;
    uint64_t seq = 0;
    const CUresult r = queue(st, std::move(op), &seq);
    if (r != SUCCESS) return r;
    return flush(st, seq);
}

// A record marks its event done when it runs, unless the event was recorded again
// meanwhile (then the later record decides).
inline CUresult record_event(Event* ev, Stream* st) {
    const uint64_t id = ev->id, on = st->id, seq = st->last_seq + 1;  // queue's next number
    ev->recorded = true;
    ev->captured = false;
    ev->done = false;  // until the record runs (at once when streams are synchronous)
    ev->stream = on;
    ev->seq = seq;
    return queue(st, [id, on, seq]() {
        auto it = reg().events.find(id);
        if (it != reg().events.end() && it->second->stream == on && it->second->seq == seq) {
            it->second->ms = now_ms();
            it->second->done = true;
        }
        return (CUresult)SUCCESS;
    });
}

// Runs everything up to the event's last record.
inline CUresult finish_event(Event* ev) {
    Stream* st = ev->done ? nullptr : find_stream(ev->stream);
    return st ? flush(st, ev->seq) : reg().sticky;
}

}  // namespace fake
