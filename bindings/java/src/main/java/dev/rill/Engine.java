package dev.rill;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executor;
import java.util.concurrent.Flow;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantLock;
import java.util.concurrent.locks.ReentrantReadWriteLock;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BOOLEAN;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * A rill engine: a loaded model and its threads.
 *
 * <pre>{@code
 * try (Engine engine = Engine.create("{\"model\":\"model.gguf\",\"num_threads\":2}");
 *      Stream stream = engine.stream("{\"input\":\"Hello!\",\"max_output_tokens\":32}")) {
 *     while (stream.hasNext()) {
 *         Event e = stream.next();
 *         if (e.isTextDelta()) System.out.print(e.delta());
 *     }
 * }
 * }</pre>
 *
 * <p>Every method is thread-safe. Each rill call on the engine runs under the read side of a
 * reader-writer lock, and {@code rill_engine_destroy} under the write side, so no thread is
 * inside a rill call on the engine while it is destroyed. Polls are bounded (see
 * {@link Stream}), so {@link #close()} waits at most one poll slice for them.
 */
public final class Engine implements AutoCloseable {
    /** Returned by {@link #pollRequest} once the engine is destroyed. */
    static final Event DESTROYED = new Event("", "", false);
    /** How long close() waits, in all, for the terminal events of the streams it cancels. */
    private static final long CLOSE_DRAIN_NANOS = Stream.CLOSE_DRAIN_NANOS;
    private static final AtomicLong PUBLISHER_THREADS = new AtomicLong();

    /** Read side: any rill call on the handle. Write side: destroy. */
    private final ReentrantReadWriteLock rw = new ReentrantReadWriteLock(true);
    /** Serializes close(). */
    private final ReentrantLock closeLock = new ReentrantLock();
    /** The engine; written only under the write lock, null once destroyed. */
    private MemorySegment handle;
    /** Set when close() starts: no new requests from then on. */
    private volatile boolean closing;
    /** Streams whose terminal event has not been polled yet. */
    private final Set<Stream> open = ConcurrentHashMap.newKeySet();

    private Engine(MemorySegment handle) {
        this.handle = handle;
    }

    /**
     * Creates an engine from a JSON config ({@code model}, {@code num_threads},
     * {@code max_num_seqs}, {@code max_model_len}, ... as in rill's README) and loads its model.
     *
     * @throws RillException with {@link RillStatus#INVALID_CONFIG} (the message names the key,
     *                       and the path of a missing file), {@code INVALID_JSON}, {@code IO},
     *                       {@code MODEL}, ...
     */
    public static Engine create(String configJson) {
        Objects.requireNonNull(configJson, "configJson");
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment config = arena.allocateFrom(configJson);
            MemorySegment out = arena.allocate(ADDRESS);
            int status = Native.create(config, out);
            if (status != RillStatus.OK.code()) {
                throw Native.failure(status);
            }
            return new Engine(out.get(ADDRESS, 0));
        }
    }

    /**
     * Submits a Responses API request and returns its stream of events. The request is
     * validated before this returns: a refused request throws and queues nothing.
     *
     * @throws RillException          {@code INVALID_JSON}, {@code INVALID_REQUEST} (the message
     *                                names the field), {@code CONTEXT_LENGTH_EXCEEDED}, ...
     * @throws IllegalStateException  when the engine is closed or closing
     */
    public Stream stream(String requestJson) {
        Objects.requireNonNull(requestJson, "requestJson");
        rw.readLock().lock();
        try {
            if (closing || handle == null) {
                throw new IllegalStateException("the engine is closed");
            }
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment request = arena.allocateFrom(requestJson);
                MemorySegment outId = arena.allocate(JAVA_LONG);
                int status = Native.submit(handle, request, outId);
                if (status != RillStatus.OK.code()) {
                    throw Native.failure(status);
                }
                Stream stream = new Stream(this, outId.get(JAVA_LONG, 0));
                open.add(stream); // before the read lock is released: close() sees it
                return stream;
            }
        } finally {
            rw.readLock().unlock();
        }
    }

    /**
     * Submits a request (now, so a refused one throws here) and returns a publisher of its
     * events. It serves one subscriber, which receives every event, the terminal one last,
     * then {@code onComplete}; cancelling the subscription cancels the request. Events are
     * polled on a new daemon platform thread (a poll blocks in native code for up to 50 ms,
     * which would pin a virtual thread's carrier).
     */
    public Flow.Publisher<Event> publish(String requestJson) {
        return publish(requestJson, task -> Thread.ofPlatform().daemon()
                .name("rill-publisher-" + PUBLISHER_THREADS.incrementAndGet()).start(task));
    }

    /**
     * As {@link #publish(String)}, with the polling loop run by {@code executor} (for example
     * {@code Executors.newVirtualThreadPerTaskExecutor()}); it occupies one task until the
     * stream ends.
     */
    public Flow.Publisher<Event> publish(String requestJson, Executor executor) {
        Objects.requireNonNull(executor, "executor");
        return new EventPublisher(stream(requestJson), executor);
    }

    /**
     * Runs a request to its end and returns the final Response object (the {@code response}
     * member of the terminal event) as JSON. Its {@code status} tells how it ended:
     * {@code completed}, {@code incomplete} (token limit), {@code cancelled} (the engine was
     * closed meanwhile) or {@code failed}: the same Response that rill's non-streaming
     * {@code rill_engine_generate} returns.
     *
     * <p>This reads the request's stream rather than calling {@code rill_engine_generate}: that
     * call returns no request id, so {@link #close()} could not cancel it and would wait for
     * the request to end on its own, and a native call blocked for the whole request would
     * pin a virtual thread's carrier.
     */
    public String generate(String requestJson) {
        try (Stream stream = stream(requestJson)) {
            Event terminal = null;
            while (stream.hasNext()) {
                Event e = stream.next();
                if (e.last()) {
                    terminal = e;
                }
            }
            if (terminal == null) {
                throw new IllegalStateException("the engine was closed before request " + stream.id() + " ended");
            }
            String response = terminal.response();
            if (response == null) {
                throw new IllegalStateException("terminal event without a response: " + terminal.json());
            }
            return response;
        }
    }

    /** Engine information and counters as JSON ({@code rill_engine_stats}). */
    public String stats() {
        rw.readLock().lock();
        try {
            if (handle == null) {
                throw new IllegalStateException("the engine is closed");
            }
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment out = arena.allocate(ADDRESS);
                int status = Native.stats(handle, out);
                if (status != RillStatus.OK.code()) {
                    throw Native.failure(status);
                }
                return Native.takeString(out.get(ADDRESS, 0));
            }
        } finally {
            rw.readLock().unlock();
        }
    }

    /** Whether {@link #close()} has started. */
    public boolean isClosed() {
        return closing;
    }

    /**
     * Closes the engine: refuses new requests, cancels every open stream, collects each one's
     * remaining events up to its terminal event (which its {@link Stream} then still yields),
     * and destroys the engine once no thread is inside a rill call on it. Idempotent; safe
     * from any thread.
     */
    @Override
    public void close() {
        closeLock.lock();
        try {
            if (handle == null && closing) {
                return;
            }
            closing = true;
            // Barrier: every stream() that got in before `closing` was set has registered its
            // stream once the write lock can be taken; every later one sees `closing`.
            rw.writeLock().lock();
            rw.writeLock().unlock();
            List<Stream> streams = List.copyOf(open);
            RuntimeException failure = null;
            for (Stream s : streams) {
                try {
                    cancelRequest(s.id());
                } catch (RuntimeException e) {
                    failure = failure == null ? e : failure;
                }
            }
            long deadline = System.nanoTime() + CLOSE_DRAIN_NANOS;
            for (Stream s : streams) {
                try {
                    s.drain(deadline);
                } catch (RuntimeException e) {
                    failure = failure == null ? e : failure;
                }
            }
            rw.writeLock().lock();
            try {
                int status = Native.destroy(handle);
                if (status != RillStatus.OK.code()) {
                    RillException e = Native.failure(status);
                    failure = failure == null ? e : failure;
                }
                handle = null;
            } finally {
                rw.writeLock().unlock();
            }
            open.clear();
            if (failure != null) {
                throw failure;
            }
        } finally {
            closeLock.unlock();
        }
    }

    // ---- used by Stream ------------------------------------------------------------------

    /**
     * The next event of request {@code id}, waiting at most {@code timeoutMs}; null on
     * timeout; {@link #DESTROYED} once the engine is destroyed.
     */
    Event pollRequest(long id, int timeoutMs) {
        rw.readLock().lock();
        try {
            if (handle == null) {
                return DESTROYED;
            }
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment outJson = arena.allocate(ADDRESS);
                MemorySegment outLast = arena.allocate(JAVA_BOOLEAN);
                int status = Native.pollRequest(handle, id, timeoutMs, outJson, outLast);
                if (status == RillStatus.NO_EVENT.code()) {
                    return null;
                }
                if (status != RillStatus.OK.code()) {
                    throw Native.failure(status);
                }
                String json = Native.takeString(outJson.get(ADDRESS, 0));
                return Event.of(json, outLast.get(JAVA_BOOLEAN, 0));
            }
        } finally {
            rw.readLock().unlock();
        }
    }

    /** {@code rill_engine_cancel}; a no-op once the engine is destroyed. */
    void cancelRequest(long id) {
        rw.readLock().lock();
        try {
            if (handle == null) {
                return;
            }
            int status = Native.cancel(handle, id);
            if (status != RillStatus.OK.code()) {
                throw Native.failure(status);
            }
        } finally {
            rw.readLock().unlock();
        }
    }

    void unregister(Stream stream) {
        open.remove(stream);
    }

    @Override
    public String toString() {
        return "Engine[" + (closing ? "closed" : "open") + ", " + open.size() + " open streams]";
    }
}
