package dev.rill;

/**
 * The little JSON this binding needs, without a dependency: the raw text of a top-level
 * member of an object, the value of a JSON string, and quoting a Java string.
 */
public final class Json {
    private Json() {}

    /**
     * The raw JSON text of the value of the top-level member {@code key} of the object
     * {@code json}, or null when the object has no such member (or is not an object).
     */
    public static String member(String json, String key) {
        int i = skipWs(json, 0);
        if (i >= json.length() || json.charAt(i) != '{') {
            return null;
        }
        i = skipWs(json, i + 1);
        if (i < json.length() && json.charAt(i) == '}') {
            return null;
        }
        while (i < json.length()) {
            int keyEnd = skipValue(json, i);
            String k = string(json.substring(i, keyEnd));
            i = skipWs(json, keyEnd);
            expect(json, i, ':');
            int start = skipWs(json, i + 1);
            int end = skipValue(json, start);
            if (k.equals(key)) {
                return json.substring(start, end);
            }
            i = skipWs(json, end);
            if (i < json.length() && json.charAt(i) == ',') {
                i = skipWs(json, i + 1);
            } else {
                expect(json, i, '}');
                return null;
            }
        }
        return null;
    }

    /** The value of a JSON string literal (with its quotes), escapes decoded. */
    public static String string(String literal) {
        String s = literal.strip();
        if (s.length() < 2 || s.charAt(0) != '"' || s.charAt(s.length() - 1) != '"') {
            throw new IllegalArgumentException("not a JSON string: " + abbreviate(s));
        }
        StringBuilder out = new StringBuilder(s.length());
        for (int i = 1; i < s.length() - 1; i++) {
            char c = s.charAt(i);
            if (c != '\\') {
                out.append(c);
                continue;
            }
            char e = s.charAt(++i);
            switch (e) {
                case '"', '\\', '/' -> out.append(e);
                case 'b' -> out.append('\b');
                case 'f' -> out.append('\f');
                case 'n' -> out.append('\n');
                case 'r' -> out.append('\r');
                case 't' -> out.append('\t');
                case 'u' -> {
                    out.append((char) Integer.parseInt(s.substring(i + 1, i + 5), 16));
                    i += 4;
                }
                default -> throw new IllegalArgumentException("bad escape \\" + e + " in " + abbreviate(s));
            }
        }
        return out.toString();
    }

    /** {@code s} as a JSON string literal, quotes included. */
    public static String quote(String s) {
        StringBuilder out = new StringBuilder(s.length() + 2).append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                default -> {
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        return out.append('"').toString();
    }

    private static int skipWs(String s, int i) {
        while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
            i++;
        }
        return i;
    }

    private static void expect(String s, int i, char c) {
        if (i >= s.length() || s.charAt(i) != c) {
            throw new IllegalArgumentException("malformed JSON at offset " + i + ": expected '" + c + "' in "
                    + abbreviate(s));
        }
    }

    /** The index just past the JSON value that starts at {@code i}. */
    private static int skipValue(String s, int i) {
        if (i >= s.length()) {
            throw new IllegalArgumentException("malformed JSON: value expected at end of " + abbreviate(s));
        }
        char c = s.charAt(i);
        if (c == '"') {
            for (int j = i + 1; j < s.length(); j++) {
                char d = s.charAt(j);
                if (d == '\\') {
                    j++;
                } else if (d == '"') {
                    return j + 1;
                }
            }
            throw new IllegalArgumentException("malformed JSON: unterminated string in " + abbreviate(s));
        }
        if (c == '{' || c == '[') {
            int depth = 0;
            for (int j = i; j < s.length(); j++) {
                char d = s.charAt(j);
                if (d == '"') {
                    j = skipValue(s, j) - 1;
                } else if (d == '{' || d == '[') {
                    depth++;
                } else if (d == '}' || d == ']') {
                    if (--depth == 0) {
                        return j + 1;
                    }
                }
            }
            throw new IllegalArgumentException("malformed JSON: unbalanced brackets in " + abbreviate(s));
        }
        int j = i;
        while (j < s.length() && ",}] \t\r\n".indexOf(s.charAt(j)) < 0) {
            j++;
        }
        if (j == i) {
            throw new IllegalArgumentException("malformed JSON at offset " + i + " in " + abbreviate(s));
        }
        return j;
    }

    private static String abbreviate(String s) {
        return s.length() <= 80 ? s : s.substring(0, 80) + "...";
    }
}
