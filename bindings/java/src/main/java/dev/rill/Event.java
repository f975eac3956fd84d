package dev.rill;

import java.util.Objects;

/**
 * One streaming event of a response, as rill produced it.
 *
 * @param type the event's {@code type}, e.g. {@code response.output_text.delta}
 * @param json the whole event, a JSON object that starts with
 *             {@code {"type":"...","sequence_number":N}
 * @param last true exactly once per stream, on the terminal event ({@code response.completed},
 *             {@code response.incomplete} or {@code response.failed})
 */
public record Event(String type, String json, boolean last) {
    private static final String PREFIX = "{\"type\":\"";

    public Event {
        Objects.requireNonNull(type, "type");
        Objects.requireNonNull(json, "json");
    }

    /** Builds an event from rill's JSON, taking the type from its leading {@code "type"} member. */
    static Event of(String json, boolean last) {
        return new Event(typeOf(json), json, last);
    }

    /** The {@code type} of an event: events start with {@code {"type":"...",}. */
    static String typeOf(String json) {
        if (json.startsWith(PREFIX)) {
            int end = json.indexOf('"', PREFIX.length());
            if (end > 0) {
                return json.substring(PREFIX.length(), end);
            }
        }
        String member = Json.member(json, "type");
        return member == null ? "" : Json.string(member);
    }

    /** The event's {@code sequence_number} (0 for the first event of a stream). */
    public long sequenceNumber() {
        String n = Json.member(json, "sequence_number");
        if (n == null) {
            throw new IllegalStateException("event has no sequence_number: " + json);
        }
        return Long.parseLong(n);
    }

    /** Whether this is a {@code response.output_text.delta} event. */
    public boolean isTextDelta() {
        return type.equals("response.output_text.delta");
    }

    /** The text of a {@code response.output_text.delta} event; null for any other event. */
    public String delta() {
        if (!isTextDelta()) {
            return null;
        }
        String d = Json.member(json, "delta");
        return d == null ? null : Json.string(d);
    }

    /**
     * The raw JSON of the event's {@code response} object (the Response as of this event),
     * or null for events without one (deltas, item and part events).
     */
    public String response() {
        return Json.member(json, "response");
    }
}
