package dev.rill;

import org.json.JSONArray;
import org.json.JSONObject;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.function.BooleanSupplier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/** Shared helpers: the model, request bodies, and checks of a whole event stream. */
final class TestSupport {
    static final String FRANCE = "{\"input\": \"Name the capital of France.\", \"temperature\": 0, \"max_output_tokens\": 32}";
    /** Runs until cancelled. */
    static final String ENDLESS = "{\"input\": \"Tell me a very long story.\", \"temperature\": 0, \"ignore_eos\": true}";
    static final Set<String> TERMINAL = Set.of("response.completed", "response.incomplete", "response.failed");

    private TestSupport() {}

    /** The model file: -Drill.model (test.sh and the pom pass it), else RILL_MODEL. Missing is a failure. */
    static String modelPath() {
        String p = System.getProperty("rill.model");
        if (p == null || p.isBlank()) {
            p = System.getenv("RILL_MODEL");
        }
        assertNotNull(p, "set -Drill.model=PATH or RILL_MODEL");
        Path path = Path.of(p).toAbsolutePath().normalize();
        assertTrue(Files.isRegularFile(path), "model file not found: " + path);
        return path.toString();
    }

    /** {"model": PATH, "num_threads": 2} plus {@code extra} members (JSON text without braces, or ""). */
    static String config(String extra) {
        JSONObject c = new JSONObject();
        c.put("model", modelPath());
        c.put("num_threads", 2);
        String base = c.toString();
        return extra.isEmpty() ? base : base.substring(0, base.length() - 1) + "," + extra + "}";
    }

    /** The request {"input": prompt, "temperature": 0, "max_output_tokens": n}. */
    static String request(String prompt, int maxOutputTokens) {
        return new JSONObject().put("input", prompt).put("temperature", 0).put("max_output_tokens", maxOutputTokens)
                .toString();
    }

    /** A checked stream: its events, its terminal event parsed, and the text of its deltas. */
    record Checked(List<Event> events, JSONObject terminal, String text) {
        JSONObject response() {
            return terminal.getJSONObject("response");
        }

        String status() {
            return response().getString("status");
        }

        /** response.output[0].content[0].text of the terminal event ("" when there is no output). */
        String finalText() {
            JSONArray output = response().getJSONArray("output");
            if (output.isEmpty()) {
                return "";
            }
            return output.getJSONObject(0).getJSONArray("content").getJSONObject(0).getString("text");
        }

        long deltas() {
            return events.stream().filter(Event::isTextDelta).count();
        }
    }

    /** Reads the stream to its end and checks it (see {@link #check}). */
    static Checked drain(Stream stream) {
        List<Event> events = new ArrayList<>();
        while (stream.hasNext()) {
            events.add(stream.next());
        }
        return check(events);
    }

    /**
     * Checks a whole stream with a real JSON parser: every event parses, its {@code type} and
     * {@code sequence_number} agree with the binding's, sequence numbers are 0..n-1, it starts
     * with response.created and response.in_progress, exactly one event is terminal and it is
     * the last one, {@code last} is true on it alone, and the deltas add up to the final text.
     */
    static Checked check(List<Event> events) {
        assertTrue(events.size() >= 3, "only " + events.size() + " events");
        StringBuilder text = new StringBuilder();
        int terminals = 0;
        for (int i = 0; i < events.size(); i++) {
            Event e = events.get(i);
            JSONObject o = new JSONObject(e.json());
            assertEquals(o.getString("type"), e.type(), "type of event " + i);
            assertEquals(i, o.getLong("sequence_number"), "sequence_number of event " + i + ": " + e.json());
            assertEquals(i, e.sequenceNumber());
            boolean terminal = TERMINAL.contains(e.type());
            assertEquals(terminal, e.last(), "last flag of " + e.type());
            if (terminal) {
                terminals++;
            }
            if (e.isTextDelta()) {
                assertEquals(o.getString("delta"), e.delta(), "delta of event " + i);
                text.append(o.getString("delta"));
            } else {
                assertEquals(null, e.delta());
            }
        }
        assertEquals("response.created", events.get(0).type());
        assertEquals("response.in_progress", events.get(1).type());
        assertEquals(1, terminals, "terminal events");
        Event last = events.get(events.size() - 1);
        assertTrue(last.last(), "the stream does not end with its terminal event: " + last.type());
        JSONObject terminal = new JSONObject(last.json());
        JSONObject response = terminal.getJSONObject("response");
        assertEquals(response.toString(), new JSONObject(last.response()).toString(), "Event.response()");
        String status = response.getString("status");
        switch (last.type()) {
            case "response.completed" -> assertEquals("completed", status);
            case "response.incomplete" -> assertTrue(status.equals("incomplete") || status.equals("cancelled"), status);
            case "response.failed" -> assertEquals("failed", status);
            default -> fail("not terminal: " + last.type());
        }
        Checked c = new Checked(List.copyOf(events), terminal, text.toString());
        assertEquals(c.finalText(), c.text(), "the deltas do not add up to the final text");
        return c;
    }

    /** Asserts a stream that was cancelled (by cancel() or by closing the engine). */
    static void assertCancelled(Checked c) {
        assertEquals("response.incomplete", c.terminal().getString("type"));
        assertEquals("cancelled", c.status());
        assertTrue(c.response().isNull("incomplete_details"), "incomplete_details: " + c.response());
    }

    /** rill's request counters. */
    static JSONObject counters(Engine engine) {
        return new JSONObject(engine.stats()).getJSONObject("requests");
    }

    /** Tokens generated so far by the engine. */
    static long generated(Engine engine) {
        return new JSONObject(engine.stats()).getJSONObject("tokens").getLong("generated");
    }

    /**
     * Asserts that the engine generates nothing more: no request is left running. (The
     * {@code running} gauge of rill's stats is not used: it is not refreshed when the last
     * running request is cancelled.)
     */
    static void assertIdle(Engine engine) throws InterruptedException {
        long before = generated(engine);
        Thread.sleep(400);
        assertEquals(before, generated(engine), "the engine still generates tokens");
    }

    /** Waits (up to {@code timeout}) for the condition. */
    static void await(BooleanSupplier condition, Duration timeout, String what) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() - deadline > 0) {
                fail("timed out after " + timeout + " waiting for " + what);
            }
            Thread.sleep(10);
        }
    }

    /** Runs {@code task} on a new platform thread and returns its result or rethrows its failure. */
    static <T> Task<T> start(String name, Callable<T> task) {
        Task<T> t = new Task<>(task);
        t.thread = Thread.ofPlatform().name(name).start(t::run);
        return t;
    }

    static final class Task<T> {
        private final Callable<T> body;
        private volatile T result;
        private volatile Throwable failure;
        Thread thread;

        Task(Callable<T> body) {
            this.body = body;
        }

        void run() {
            try {
                result = body.call();
            } catch (Throwable t) {
                failure = t;
            }
        }

        Throwable failure() {
            return failure;
        }

        /** The result, waiting at most {@code timeout}; fails the test on timeout or failure. */
        T join(Duration timeout) throws Exception {
            if (!thread.join(timeout)) {
                fail(thread.getName() + " still running after " + timeout);
            }
            if (failure instanceof Exception e) {
                throw e;
            }
            if (failure instanceof Error e) {
                throw e;
            }
            return result;
        }
    }
}
