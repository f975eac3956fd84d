package dev.rill;

import org.json.JSONObject;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static dev.rill.TestSupport.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The engine on the default model: streaming, generate, concurrency, cancel, bad input. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@Timeout(value = 180, threadMode = Timeout.ThreadMode.SEPARATE_THREAD)
class EngineTest {
    private Engine engine;

    @BeforeAll
    void createEngine() {
        engine = Engine.create(config("\"max_model_len\":2048"));
    }

    @AfterAll
    void closeEngine() {
        if (engine != null) {
            engine.close();
        }
    }

    @Test
    void createsEngineOnDefaultModel() {
        assertEquals(Rill.BINDING_ABI_VERSION, Rill.abiVersion());
        assertTrue(Rill.version().matches("\\d+\\.\\d+\\.\\d+.*"), Rill.version());
        JSONObject stats = new JSONObject(engine.stats());
        assertEquals("SmolLM2-135M-Instruct.Q4_1", stats.getString("model"));
        assertEquals(2, stats.getInt("num_threads"));
        assertEquals(2048, stats.getInt("max_model_len"));
        assertTrue(stats.getLong("weight_bytes") > 50_000_000L, "weight_bytes " + stats.get("weight_bytes"));
        assertFalse(engine.isClosed());
    }

    @Test
    void streamsTextAndOneTerminalEvent() {
        Checked c;
        try (Stream stream = engine.stream(FRANCE)) {
            assertNotEquals(0, stream.id());
            c = drain(stream);
            assertFalse(stream.hasNext());
            assertTrue(stream.isDone());
            assertThrows(java.util.NoSuchElementException.class, stream::next);
            assertSame(c.events().get(c.events().size() - 1), stream.terminalEvent());
        }
        assertTrue(c.text().contains("Paris"), "answer: " + c.text());
        assertTrue(c.deltas() >= 2, "deltas: " + c.deltas());
        assertTrue(c.terminal().getString("type").equals("response.completed")
                || c.status().equals("incomplete"), c.terminal().toString());
        assertEquals("assistant", c.response().getJSONArray("output").getJSONObject(0).getString("role"));
    }

    @Test
    void hitsTheTokenLimit() {
        try (Stream stream = engine.stream(request("Write a short thank-you note to a teacher.", 5))) {
            Checked c = drain(stream);
            assertEquals("response.incomplete", c.terminal().getString("type"));
            assertEquals("incomplete", c.status());
            assertEquals("max_output_tokens", c.response().getJSONObject("incomplete_details").getString("reason"));
            assertTrue(c.deltas() >= 1 && c.deltas() <= 5, "deltas: " + c.deltas());
        }
    }

    @Test
    void pollsWithATimeout() {
        try (Stream stream = engine.stream(request("Say hello.", 8))) {
            long t0 = System.nanoTime();
            Event first = stream.poll(Duration.ofSeconds(30));
            assertNotNull(first, "no event within 30 s");
            assertEquals("response.created", first.type());
            List<Event> events = new ArrayList<>(List.of(first));
            while (true) {
                Event e = stream.poll(Duration.ofMillis(5));
                if (e != null) {
                    events.add(e);
                } else if (stream.isDone()) {
                    break;
                }
                assertTrue(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(60), "stream did not end");
            }
            check(events);
            assertNull(stream.poll(Duration.ZERO));
            assertNull(stream.poll(Duration.ofMillis(100)));
        }
    }

    @Test
    void generateReturnsTheFinalResponse() {
        JSONObject response = new JSONObject(engine.generate(FRANCE));
        assertEquals("response", response.getString("object"));
        assertTrue(response.getString("id").startsWith("resp_"), response.getString("id"));
        String status = response.getString("status");
        assertTrue(status.equals("completed") || status.equals("incomplete"), status);
        String text = response.getJSONArray("output").getJSONObject(0).getJSONArray("content").getJSONObject(0)
                .getString("text");
        assertTrue(text.contains("Paris"), text);
    }

    /** A Response without what differs between two runs of one request. */
    private static JSONObject withoutIds(JSONObject r) {
        r.put("id", "").put("created_at", 0);
        for (Object item : r.getJSONArray("output")) {
            ((JSONObject) item).put("id", "");
        }
        return r;
    }

    @Test
    void generateReturnsTheStreamedTerminalResponse() {
        String body = request("What is the capital of Italy? Answer in one sentence.", 48);
        engine.generate(body); // warms the prefix cache: both runs below report the same usage
        Checked streamed;
        try (Stream stream = engine.stream(body)) {
            streamed = drain(stream);
        }
        JSONObject generated = new JSONObject(engine.generate(body));
        assertEquals("completed", generated.getString("status"));
        JSONObject want = withoutIds(streamed.response());
        JSONObject got = withoutIds(generated);
        assertTrue(got.similar(want), () -> "generate: " + got + "\nstreamed: " + want);
    }

    @Test
    void generateRefusesABadRequest() {
        long before = counters(engine).getLong("submitted");
        RillException e = assertThrows(RillException.class,
                () -> engine.generate("{\"input\":\"x\",\"temperature\":\"hot\"}"));
        assertEquals(RillStatus.INVALID_REQUEST, e.status());
        assertTrue(e.getMessage().contains("temperature"), e.getMessage());
        assertEquals(before, counters(engine).getLong("submitted"), "a refused request was queued");
    }

    @Test
    void runsRequestsConcurrentlyFromSeveralThreads() throws Exception {
        String[] prompts = {"Name the capital of France.", "Name three colors.", "What is two plus two?",
                "Write a haiku about the sea.", "What is the largest planet?"};
        int n = prompts.length;
        long submittedBefore = counters(engine).getLong("submitted");
        CyclicBarrier allSubmitted = new CyclicBarrier(n);
        List<Task<Checked>> tasks = new ArrayList<>();
        Set<Long> ids = java.util.concurrent.ConcurrentHashMap.newKeySet();
        AtomicInteger maxRunning = new AtomicInteger();
        for (int i = 0; i < n; i++) {
            String req = request(prompts[i], 24);
            tasks.add(start("consumer-" + i, () -> {
                try (Stream s = engine.stream(req)) {
                    ids.add(s.id());
                    allSubmitted.await(60, TimeUnit.SECONDS); // every request is in rill before any is read
                    List<Event> events = new ArrayList<>();
                    while (s.hasNext()) {
                        events.add(s.next());
                        if (events.size() == 5) {
                            maxRunning.accumulateAndGet(counters(engine).getInt("running"), Math::max);
                        }
                    }
                    return check(events);
                }
            }));
        }
        Set<String> texts = new HashSet<>();
        for (Task<Checked> t : tasks) {
            Checked c = t.join(Duration.ofSeconds(120));
            assertTrue(c.deltas() >= 1, "no text");
            texts.add(c.text());
        }
        assertEquals(n, ids.size(), "request ids are not distinct: " + ids);
        assertTrue(texts.size() >= 2, "five prompts gave one text: " + texts);
        assertTrue(maxRunning.get() >= 2, "never saw two requests running at once: " + maxRunning.get());
        assertEquals(submittedBefore + n, counters(engine).getLong("submitted"));
    }

    @Test
    void cancelsAStreamFromAnotherThread() throws Exception {
        long cancelledBefore = counters(engine).getLong("cancelled");
        Stream stream = engine.stream(ENDLESS);
        CountDownLatch threeDeltas = new CountDownLatch(3);
        Task<Checked> consumer = start("consumer", () -> {
            List<Event> events = new ArrayList<>();
            while (stream.hasNext()) {
                Event e = stream.next();
                events.add(e);
                if (e.isTextDelta()) {
                    threeDeltas.countDown();
                }
            }
            return check(events);
        });
        assertTrue(threeDeltas.await(60, TimeUnit.SECONDS), "no deltas");
        stream.cancel();
        Checked c = consumer.join(Duration.ofSeconds(30));
        assertCancelled(c);
        assertTrue(c.deltas() >= 3, "deltas: " + c.deltas());
        assertTrue(c.finalText().length() > 0);
        stream.cancel(); // a no-op after the end
        stream.close();
        assertEquals(cancelledBefore + 1, counters(engine).getLong("cancelled"));
        assertIdle(engine);
    }

    @Test
    void closingAStreamCancelsItsRequest() throws Exception {
        long cancelledBefore = counters(engine).getLong("cancelled");
        Stream stream = engine.stream(ENDLESS);
        List<Event> events = new ArrayList<>();
        while (events.stream().filter(Event::isTextDelta).count() < 2) {
            events.add(stream.next());
        }
        stream.close();
        assertNotNull(stream.terminalEvent(), "close() returned before the terminal event");
        while (stream.hasNext()) { // the rest stays readable after close
            events.add(stream.next());
        }
        assertCancelled(check(events));
        stream.close();
        assertEquals(cancelledBefore + 1, counters(engine).getLong("cancelled"));
        assertIdle(engine);
    }

    @Test
    void badInputThrowsRillExceptionWithRillsStatusAndMessage() {
        RillException e = assertThrows(RillException.class, () -> engine.stream("{\"input\":\"\"}"));
        assertEquals(RillStatus.INVALID_REQUEST, e.status());
        assertEquals(6, e.code());
        assertTrue(e.getMessage().contains("input"), e.getMessage());
        assertTrue(e.toString().contains("INVALID_REQUEST"), e.toString());

        e = assertThrows(RillException.class, () -> engine.stream("this is not JSON"));
        assertEquals(RillStatus.INVALID_JSON, e.status());
        assertFalse(e.getMessage().isBlank());

        e = assertThrows(RillException.class,
                () -> engine.generate("{\"input\":\"x\",\"max_output_tokens\":\"ten\"}"));
        assertEquals(RillStatus.INVALID_REQUEST, e.status());
        assertTrue(e.getMessage().contains("max_output_tokens"), e.getMessage());

        e = assertThrows(RillException.class, () -> engine.publish("{\"input\":\"x\",\"colour\":1}"));
        assertEquals(RillStatus.INVALID_REQUEST, e.status());
        assertTrue(e.getMessage().contains("colour"), e.getMessage());

        String longPrompt = "word ".repeat(8000);
        e = assertThrows(RillException.class, () -> engine.stream(request(longPrompt, 4)));
        assertEquals(RillStatus.CONTEXT_LENGTH_EXCEEDED, e.status());
        assertTrue(e.getMessage().contains("max_model_len"), e.getMessage());

        e = assertThrows(RillException.class, () -> Engine.create("{not json"));
        assertEquals(RillStatus.INVALID_JSON, e.status());
        e = assertThrows(RillException.class, () -> Engine.create(config("\"colour\":1")));
        assertEquals(RillStatus.INVALID_CONFIG, e.status());
        assertTrue(e.getMessage().contains("colour"), e.getMessage());
        e = assertThrows(RillException.class,
                () -> Engine.create("{\"model\":\"" + modelPath() + "\",\"num_threads\":\"two\"}"));
        assertEquals(RillStatus.INVALID_CONFIG, e.status());
        assertTrue(e.getMessage().contains("num_threads"), e.getMessage());
        e = assertThrows(RillException.class, () -> Engine.create("{\"model\":\"/nonexistent/m.gguf\"}"));
        assertEquals(RillStatus.INVALID_CONFIG, e.status());
        assertTrue(e.getMessage().contains("/nonexistent/m.gguf"), e.getMessage());

        assertEquals("invalid request", RillStatus.INVALID_REQUEST.description());
        assertEquals(RillStatus.ENGINE_POISONED, RillStatus.fromCode(11));

        // Refusals queue nothing, and the engine still serves.
        assertEquals(0, counters(engine).getInt("waiting"));
        assertTrue(engine.generate(request("Say hello.", 4)).contains("\"object\":\"response\""));
    }

    /** rill_last_error is thread-local: each thread must get the message of its own failure. */
    @Test
    void errorMessagesBelongToTheFailingThread() throws Exception {
        String[][] cases = {
                {"{\"input\":\"\"}", "input", "max_output_tokens"},
                {"{\"input\":\"x\",\"max_output_tokens\":\"ten\"}", "max_output_tokens", "temperature"},
                {"{\"input\":\"x\",\"temperature\":\"hot\"}", "temperature", "max_output_tokens"},
        };
        List<Task<Integer>> tasks = new ArrayList<>();
        for (int t = 0; t < 6; t++) {
            String[] c = cases[t % cases.length];
            java.util.concurrent.Callable<Integer> body = () -> {
                for (int i = 0; i < 300; i++) {
                    RillException e = assertThrows(RillException.class, () -> engine.stream(c[0]));
                    assertEquals(RillStatus.INVALID_REQUEST, e.status());
                    assertTrue(e.getMessage().contains(c[1]) && !e.getMessage().contains(c[2]),
                            "thread got another thread's message? " + e.getMessage());
                }
                return 300;
            };
            if (t % 2 == 0) {
                tasks.add(start("bad-input-" + t, body));
            } else { // virtual threads read the message before they can change carrier
                Task<Integer> task = new Task<>(body);
                task.thread = Thread.ofVirtual().name("bad-input-v" + t).start(task::run);
                tasks.add(task);
            }
        }
        for (Task<Integer> t : tasks) {
            assertEquals(300, t.join(Duration.ofSeconds(60)));
        }
    }
}
