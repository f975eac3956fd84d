package dev.rill;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Flow;
import java.util.concurrent.TimeUnit;

import static dev.rill.TestSupport.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@link Engine#publish}: a Flow.Publisher of one request's events. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@Timeout(value = 120, threadMode = Timeout.ThreadMode.SEPARATE_THREAD)
class PublisherTest {
    private Engine engine;

    @BeforeAll
    void createEngine() {
        engine = Engine.create(config(""));
    }

    @AfterAll
    void closeEngine() {
        if (engine != null) {
            engine.close();
        }
    }

    /** Records every signal; requests {@code batch} events at a time; cancels after {@code cancelAfter}. */
    static final class Recorder implements Flow.Subscriber<Event> {
        final List<Event> events = new CopyOnWriteArrayList<>();
        final CountDownLatch done = new CountDownLatch(1);
        final int batch;
        final int cancelAfter;
        volatile Flow.Subscription subscription;
        volatile Throwable error;
        volatile boolean completed;
        volatile Thread thread;
        volatile int signalsAfterEnd;

        Recorder(int batch, int cancelAfter) {
            this.batch = batch;
            this.cancelAfter = cancelAfter;
        }

        @Override
        public void onSubscribe(Flow.Subscription s) {
            subscription = s;
            thread = Thread.currentThread();
            s.request(batch);
        }

        @Override
        public void onNext(Event e) {
            if (done.getCount() == 0) {
                signalsAfterEnd++;
            }
            events.add(e);
            if (events.size() == cancelAfter) {
                subscription.cancel();
                done.countDown();
            } else if (events.size() % batch == 0) {
                subscription.request(batch);
            }
        }

        @Override
        public void onError(Throwable t) {
            if (done.getCount() == 0 && cancelAfter == 0) {
                signalsAfterEnd++;
            }
            error = t;
            done.countDown();
        }

        @Override
        public void onComplete() {
            if (done.getCount() == 0) {
                signalsAfterEnd++;
            }
            completed = true;
            done.countDown();
        }

        void await() throws InterruptedException {
            assertTrue(done.await(90, TimeUnit.SECONDS), "publisher never finished");
        }
    }

    @Test
    void publishesEveryEventThenCompletes() throws Exception {
        Recorder r = new Recorder(1, 0);
        engine.publish(FRANCE).subscribe(r);
        r.await();
        assertNull(r.error);
        assertTrue(r.completed);
        assertNotSame(Thread.currentThread(), r.thread);
        Checked c = check(r.events);
        assertTrue(c.text().contains("Paris"), c.text());
        assertEquals(0, r.signalsAfterEnd);
    }

    @Test
    void runsOnAGivenExecutor() throws Exception {
        try (ExecutorService executor = Executors.newVirtualThreadPerTaskExecutor()) {
            Recorder r = new Recorder(4, 0);
            engine.publish(request("Name three colors.", 12), executor).subscribe(r);
            r.await();
            assertNull(r.error);
            assertTrue(r.completed);
            assertTrue(r.thread.isVirtual());
            check(r.events);
        }
    }

    @Test
    void cancellingTheSubscriptionCancelsTheRequest() throws Exception {
        long cancelledBefore = counters(engine).getLong("cancelled");
        Recorder r = new Recorder(2, 8);
        engine.publish(ENDLESS).subscribe(r);
        r.await();
        assertEquals(8, r.events.size());
        await(() -> counters(engine).getLong("cancelled") == cancelledBefore + 1, Duration.ofSeconds(30),
                "the request to be cancelled");
        assertIdle(engine);
        assertEquals(8, r.events.size(), "events after cancel");
        assertTrue(!r.completed && r.error == null);
    }

    @Test
    void nonPositiveDemandIsAnError() throws Exception {
        long cancelledBefore = counters(engine).getLong("cancelled");
        Recorder r = new Recorder(0, 0);
        engine.publish(ENDLESS).subscribe(r);
        r.await();
        assertInstanceOf(IllegalArgumentException.class, r.error);
        assertTrue(r.events.isEmpty());
        await(() -> counters(engine).getLong("cancelled") == cancelledBefore + 1, Duration.ofSeconds(30),
                "the request to be cancelled");
        assertIdle(engine);
    }

    @Test
    void servesOneSubscriber() throws Exception {
        Flow.Publisher<Event> p = engine.publish(request("Say hello.", 4));
        Recorder first = new Recorder(100, 0);
        Recorder second = new Recorder(100, 0);
        p.subscribe(first);
        p.subscribe(second);
        second.await();
        assertInstanceOf(IllegalStateException.class, second.error);
        first.await();
        assertTrue(first.completed);
        check(first.events);
    }
}
