package dev.rill;

import org.json.JSONObject;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import static dev.rill.TestSupport.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Closing an engine while requests run: every stream ends with a terminal event, nothing hangs. */
@Timeout(value = 180, threadMode = Timeout.ThreadMode.SEPARATE_THREAD)
class CloseTest {

    @Test
    void closeWhileRequestsRun() throws Exception {
        Engine engine = Engine.create(config(""));

        // 1. A stream read by another thread.
        Stream read = engine.stream(ENDLESS);
        CountDownLatch twoDeltas = new CountDownLatch(2);
        Task<Checked> reader = start("reader", () -> {
            List<Event> events = new ArrayList<>();
            while (read.hasNext()) {
                Event e = read.next();
                events.add(e);
                if (e.isTextDelta()) {
                    twoDeltas.countDown();
                }
            }
            return check(events);
        });
        // 2. A stream nobody reads until after close.
        Stream unread = engine.stream(ENDLESS);
        // 3. generate() on another thread.
        Task<String> generator = start("generator", () -> engine.generate(ENDLESS));
        // 4. A publisher.
        PublisherTest.Recorder subscriber = new PublisherTest.Recorder(1, 0);
        engine.publish(ENDLESS).subscribe(subscriber);

        assertTrue(twoDeltas.await(60, TimeUnit.SECONDS), "no deltas");
        await(() -> subscriber.events.size() >= 6, Duration.ofSeconds(60), "the publisher's first deltas");
        await(() -> counters(engine).getInt("running") == 4, Duration.ofSeconds(60), "four running requests");

        Task<Long> closer = start("closer", () -> {
            long t0 = System.nanoTime();
            engine.close();
            return System.nanoTime() - t0;
        });
        long closeNanos = closer.join(Duration.ofSeconds(60));
        assertTrue(closeNanos < TimeUnit.SECONDS.toNanos(30), "close took " + closeNanos / 1e9 + " s");
        assertTrue(engine.isClosed());

        Checked c = reader.join(Duration.ofSeconds(30));
        assertCancelled(c);
        assertTrue(c.deltas() >= 2);

        assertNotNull(unread.terminalEvent(), "the unread stream's terminal event was not collected");
        Checked u = drain(unread);
        assertCancelled(u);

        JSONObject generated = new JSONObject(generator.join(Duration.ofSeconds(30)));
        assertEquals("cancelled", generated.getString("status"));

        subscriber.await();
        assertNull(subscriber.error);
        assertTrue(subscriber.completed);
        assertCancelled(check(subscriber.events));

        // After close: refusals, no-ops, and no hang.
        assertThrows(IllegalStateException.class, () -> engine.stream(FRANCE));
        assertThrows(IllegalStateException.class, () -> engine.generate(FRANCE));
        assertThrows(IllegalStateException.class, engine::stats);
        read.cancel();
        read.close();
        unread.close();
        engine.close();
    }

    /**
     * Threads keep submitting, reading a little and closing streams while the engine closes:
     * each submission either is refused (IllegalStateException) or gets a stream that ends
     * with its terminal event; each thread's long-running background stream ends cancelled.
     */
    @Test
    void closeRacesWithSubmitters() throws Exception {
        Engine engine = Engine.create(config(""));
        List<Task<Integer>> submitters = new ArrayList<>();
        for (int t = 0; t < 3; t++) {
            submitters.add(start("submitter-" + t, () -> {
                Stream background = engine.stream(ENDLESS);
                int streams = 0;
                while (true) {
                    Stream s;
                    try {
                        s = engine.stream(request("Count to ten.", 64));
                    } catch (IllegalStateException closed) {
                        break;
                    }
                    streams++;
                    List<Event> events = new ArrayList<>();
                    for (int i = 0; i < 4 && s.hasNext(); i++) {
                        events.add(s.next());
                    }
                    s.close(); // cancels, racing with the engine's close
                    while (s.hasNext()) {
                        events.add(s.next());
                    }
                    Checked c = check(events);
                    assertTrue(c.status().equals("cancelled") || c.status().equals("completed"), c.status());
                }
                assertCancelled(drain(background));
                return streams;
            }));
        }
        await(() -> counters(engine).getLong("submitted") >= 12
                || submitters.stream().anyMatch(t -> !t.thread.isAlive()), Duration.ofSeconds(60), "twelve submissions");
        for (Task<Integer> t : submitters) {
            assertTrue(t.thread.isAlive(), () -> t.thread.getName() + " ended before close: " + t.failure());
        }
        Task<Void> closer = start("closer", () -> {
            engine.close();
            return null;
        });
        closer.join(Duration.ofSeconds(60));
        int total = 0;
        for (Task<Integer> t : submitters) {
            total += t.join(Duration.ofSeconds(60));
        }
        assertTrue(total >= 9, "streams: " + total);
    }

    @Test
    void closeWithNothingRunningIsQuickAndIdempotent() throws Exception {
        Engine engine = Engine.create(config(""));
        assertTrue(engine.generate(request("Say hello.", 4)).contains("\"status\""));
        long t0 = System.nanoTime();
        engine.close();
        engine.close();
        assertTrue(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(10));
        assertThrows(IllegalStateException.class, () -> engine.publish(FRANCE));
    }
}
