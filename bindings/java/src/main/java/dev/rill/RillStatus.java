package dev.rill;

/** The status codes of {@code enum RillStatus} in {@code include/rill.h}, with the same numbers. */
public enum RillStatus {
    /** Success. */
    OK(0),
    /** A poll timed out with no event (not an error). */
    NO_EVENT(1),
    /** A required pointer argument was NULL. */
    NULL_ARGUMENT(2),
    /** A string argument was not valid UTF-8. */
    INVALID_UTF8(3),
    /** A JSON argument was not valid JSON. */
    INVALID_JSON(4),
    /** The engine config was refused (unknown key, wrong type, bad value, missing file). */
    INVALID_CONFIG(5),
    /** The request was refused (the message names the field); nothing was queued. */
    INVALID_REQUEST(6),
    /** The prompt does not fit {@code max_model_len}; nothing was queued. */
    CONTEXT_LENGTH_EXCEEDED(7),
    /** A file could not be read. */
    IO(8),
    /** The model file is malformed or unsupported. */
    MODEL(9),
    /** The request id is not known to this engine. */
    UNKNOWN_REQUEST(10),
    /** The engine hit an internal failure earlier and refuses new requests; close it. */
    ENGINE_POISONED(11),
    /** The call is not allowed on this thread. */
    WRONG_THREAD(12),
    /** An internal error (a bug); the call had no effect. */
    INTERNAL(13),
    /** The GPU failed: out of device memory at create, a driver or kernel failure. */
    DEVICE(14);

    private final int code;

    RillStatus(int code) {
        this.code = code;
    }

    /** The C value of this status. */
    public int code() {
        return code;
    }

    /** The status with this C value; a value this binding does not know maps to {@link #INTERNAL}. */
    public static RillStatus fromCode(int code) {
        for (RillStatus s : values()) {
            if (s.code == code) {
                return s;
            }
        }
        return INTERNAL;
    }

    /** rill's own description of this status ({@code rill_status_str}). */
    public String description() {
        return Native.statusStr(code);
    }
}
