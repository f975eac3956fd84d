package dev.rill;

import org.json.JSONObject;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The binding's small JSON reader, against org.json. */
class JsonTest {
    @Test
    void findsTopLevelMembersOnly() {
        String json = "{\"type\":\"response.output_text.delta\",\"sequence_number\":12,"
                + "\"item\":{\"delta\":\"nested\",\"a\":[1,{\"b\":\"}]\"}]},"
                + "\"tricky\":\"a \\\"quoted\\\" , } ] string\",\"delta\":\" caf\\u00e9\\n\\\\\",\"n\":null}";
        JSONObject o = new JSONObject(json);
        assertEquals("12", Json.member(json, "sequence_number"));
        assertEquals(o.getJSONObject("item").toString(), new JSONObject(Json.member(json, "item")).toString());
        assertEquals(o.getString("tricky"), Json.string(Json.member(json, "tricky")));
        assertEquals(o.getString("delta"), Json.string(Json.member(json, "delta")));
        assertEquals("null", Json.member(json, "n"));
        assertNull(Json.member(json, "missing"));
        assertNull(Json.member("[1,2]", "a"));
        assertNull(Json.member("{}", "a"));
        Event e = Event.of(json, false);
        assertEquals("response.output_text.delta", e.type());
        assertEquals(12, e.sequenceNumber());
        assertEquals(" café\n\\", e.delta());
        assertTrue(e.isTextDelta());
        assertNull(e.response());
    }

    @Test
    void quotesWhatOrgJsonReadsBack() {
        String s = "path/with \"quotes\" \\ back\tslash\n\u0001 é";
        assertEquals(s, new JSONObject("{\"k\":" + Json.quote(s) + "}").getString("k"));
        assertEquals(s, Json.string(Json.quote(s)));
    }

    @Test
    void rejectsMalformedJson() {
        assertThrows(IllegalArgumentException.class, () -> Json.member("{\"a\":\"unterminated}", "b"));
        assertThrows(IllegalArgumentException.class, () -> Json.member("{\"a\" 1}", "b"));
        assertThrows(IllegalArgumentException.class, () -> Json.string("not a string"));
        Event odd = Event.of("{\"sequence_number\":3,\"type\":\"x.y\"}", false);
        assertEquals("x.y", odd.type());
        assertFalse(odd.last());
    }
}
