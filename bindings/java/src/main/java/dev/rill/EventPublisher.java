package dev.rill;

import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.Executor;
import java.util.concurrent.Flow;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/** A one-subscriber publisher of one request's events, polled by a task on an executor. */
final class EventPublisher implements Flow.Publisher<Event> {
    private static final Duration SLICE = Duration.ofMillis(Stream.SLICE_MS);
    private static final Flow.Subscription NOOP = new Flow.Subscription() {
        @Override
        public void request(long n) {}

        @Override
        public void cancel() {}
    };

    private final Stream stream;
    private final Executor executor;
    private final AtomicBoolean subscribed = new AtomicBoolean();

    EventPublisher(Stream stream, Executor executor) {
        this.stream = stream;
        this.executor = executor;
    }

    @Override
    public void subscribe(Flow.Subscriber<? super Event> subscriber) {
        Objects.requireNonNull(subscriber, "subscriber");
        if (!subscribed.compareAndSet(false, true)) {
            subscriber.onSubscribe(NOOP);
            subscriber.onError(new IllegalStateException(
                    "this publisher already has a subscriber: request " + stream.id() + "'s events are delivered once"));
            return;
        }
        Delivery delivery = new Delivery(subscriber);
        try {
            executor.execute(delivery);
        } catch (RejectedExecutionException e) {
            stream.close();
            subscriber.onSubscribe(NOOP);
            subscriber.onError(e);
        }
    }

    private final class Delivery implements Runnable, Flow.Subscription {
        private final Flow.Subscriber<? super Event> subscriber;
        private final ReentrantLock lock = new ReentrantLock();
        private final Condition changed = lock.newCondition();
        private long demand;
        private boolean cancelled;
        private Throwable badRequest;

        Delivery(Flow.Subscriber<? super Event> subscriber) {
            this.subscriber = subscriber;
        }

        @Override
        public void request(long n) {
            lock.lock();
            try {
                if (n <= 0) {
                    if (badRequest == null) {
                        badRequest = new IllegalArgumentException("request(" + n + "): demand must be positive (rule 3.9)");
                    }
                } else {
                    demand = demand + n < 0 ? Long.MAX_VALUE : demand + n;
                }
                changed.signalAll();
            } finally {
                lock.unlock();
            }
        }

        @Override
        public void cancel() {
            lock.lock();
            try {
                cancelled = true;
                changed.signalAll();
            } finally {
                lock.unlock();
            }
        }

        @Override
        public void run() {
            try {
                subscriber.onSubscribe(this);
                while (true) {
                    Throwable error;
                    lock.lock();
                    try {
                        while (demand == 0 && !cancelled && badRequest == null) {
                            changed.await();
                        }
                        if (cancelled) {
                            return;
                        }
                        error = badRequest;
                    } finally {
                        lock.unlock();
                    }
                    if (error != null) {
                        subscriber.onError(error);
                        return;
                    }
                    Event event;
                    try {
                        event = stream.poll(SLICE);
                        if (event == null && stream.isDone()) {
                            throw new IllegalStateException(
                                    "the engine was closed before request " + stream.id() + " ended");
                        }
                    } catch (RuntimeException e) {
                        subscriber.onError(e);
                        return;
                    }
                    if (event == null) {
                        continue;
                    }
                    lock.lock();
                    try {
                        demand--;
                    } finally {
                        lock.unlock();
                    }
                    subscriber.onNext(event);
                    if (event.last()) {
                        subscriber.onComplete();
                        return;
                    }
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                subscriber.onError(e);
            } finally {
                stream.close(); // cancels the request unless it has ended
            }
        }
    }
}
