package dev.rill;

import java.time.Duration;
import java.util.ArrayDeque;
import java.util.Iterator;
import java.util.NoSuchElementException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The events of one request, in order, from {@code response.created} to exactly one
 * terminal event ({@link Event#last()}). Backed by {@code rill_engine_poll_request}, called
 * with a short timeout in a loop, so that {@link Engine#close()} is never held up by a
 * blocked poll.
 *
 * <p>{@link #hasNext()} and {@link #next()} block until the next event arrives; after the
 * terminal event {@code hasNext()} is false. {@link #cancel()} may be called from any
 * thread; the stream still ends with its terminal event ({@code response.incomplete} with
 * response status {@code cancelled}). {@link #close()} cancels a request that has not
 * finished and waits for its terminal event. When the engine is closed while the request
 * runs, the engine cancels it and collects its remaining events, terminal event included,
 * so this stream still yields them after the engine is gone.
 *
 * <p>A stream is meant for one consumer at a time, but every method is safe to call from
 * any thread.
 */
public final class Stream implements Iterator<Event>, AutoCloseable {
    /** The longest single poll, so that close() and other pollers wait at most this long. */
    static final int SLICE_MS = 50;
    /** How long close() waits for the terminal event after cancelling. */
    static final long CLOSE_DRAIN_NANOS = TimeUnit.SECONDS.toNanos(60);

    private final Engine engine;
    private final long id;
    /** Held while polling rill for this request and while touching {@link #pending}. */
    private final ReentrantLock lock = new ReentrantLock();
    private final ArrayDeque<Event> pending = new ArrayDeque<>();
    private volatile Event terminal;
    /** The engine was destroyed before this stream's terminal event was polled. */
    private volatile boolean gone;
    private volatile boolean closed;

    Stream(Engine engine, long id) {
        this.engine = engine;
        this.id = id;
    }

    /** rill's id of this request. */
    public long id() {
        return id;
    }

    /** Blocks until the next event arrives or the stream has ended. */
    @Override
    public boolean hasNext() {
        while (true) {
            lock.lock();
            try {
                if (!pending.isEmpty()) {
                    return true;
                }
                if (finished()) {
                    return false;
                }
                fetch(SLICE_MS);
            } finally {
                lock.unlock();
            }
        }
    }

    /** Blocks until the next event arrives and returns it; throws when the stream has ended. */
    @Override
    public Event next() {
        while (true) {
            lock.lock();
            try {
                Event e = pending.pollFirst();
                if (e != null) {
                    return e;
                }
                if (finished()) {
                    throw new NoSuchElementException("stream " + id + " has ended");
                }
                fetch(SLICE_MS);
            } finally {
                lock.unlock();
            }
        }
    }

    /**
     * The next event, waiting at most {@code timeout} for it; null when none arrived in time
     * or the stream has ended ({@link #isDone()} tells which).
     */
    public Event poll(Duration timeout) {
        long deadline = System.nanoTime() + Math.min(timeout.toNanos(), TimeUnit.DAYS.toNanos(365));
        while (true) {
            lock.lock();
            try {
                Event e = pending.pollFirst();
                if (e != null) {
                    return e;
                }
                if (finished()) {
                    return null;
                }
                long left = deadline - System.nanoTime();
                int ms = (int) Math.max(0, Math.min(SLICE_MS, TimeUnit.NANOSECONDS.toMillis(left + 999_999)));
                fetch(ms);
                e = pending.pollFirst();
                if (e != null) {
                    return e;
                }
                if (left <= 0) {
                    return null;
                }
            } finally {
                lock.unlock();
            }
        }
    }

    /** True when every event has been taken and no more will come. */
    public boolean isDone() {
        lock.lock();
        try {
            return pending.isEmpty() && finished();
        } finally {
            lock.unlock();
        }
    }

    /** The terminal event once it has been received from rill (taken or not), else null. */
    public Event terminalEvent() {
        return terminal;
    }

    /**
     * Asks rill to stop this request ({@code rill_engine_cancel}); any thread. The stream then
     * ends with a {@code response.incomplete} event whose response status is {@code cancelled}
     * (or with whatever terminal event was already on its way). A no-op once it has ended.
     */
    public void cancel() {
        if (!finished()) {
            engine.cancelRequest(id);
        }
    }

    /**
     * Cancels the request if it is still running and waits for its terminal event, which stays
     * available to {@link #next()} and {@link #terminalEvent()}. Idempotent.
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        if (!finished()) {
            cancel();
            drain(System.nanoTime() + CLOSE_DRAIN_NANOS);
        }
    }

    /** Polls until the terminal event (or engine destruction), keeping the events. */
    void drain(long deadlineNanos) {
        while (!finished() && System.nanoTime() - deadlineNanos < 0) {
            lock.lock();
            try {
                fetch(SLICE_MS);
            } finally {
                lock.unlock();
            }
        }
    }

    /** Whether the request needs no more polling (terminal event received, or engine gone). */
    boolean finished() {
        return terminal != null || gone;
    }

    /** One poll of rill, at most {@code timeoutMs}; the caller holds {@link #lock}. */
    private void fetch(int timeoutMs) {
        if (finished()) {
            return;
        }
        Event e = engine.pollRequest(id, timeoutMs);
        if (e == Engine.DESTROYED) {
            gone = true;
            engine.unregister(this);
        } else if (e != null) {
            pending.addLast(e);
            if (e.last()) {
                terminal = e;
                engine.unregister(this);
            }
        }
    }

    @Override
    public String toString() {
        return "Stream[id=" + id + (terminal != null ? ", ended " + terminal.type() : gone ? ", engine closed" : "")
                + "]";
    }
}
