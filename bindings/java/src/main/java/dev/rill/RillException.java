package dev.rill;

/**
 * A rill call failed. {@link #status()} is the status it returned and {@link #getMessage()}
 * is rill's message for it ({@code rill_last_error()}, read on the failing thread), which
 * names the offending field, config key or path.
 */
public class RillException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final RillStatus status;
    private final int code;

    public RillException(RillStatus status, String message) {
        this(status, status.code(), message);
    }

    RillException(RillStatus status, int code, String message) {
        super(message);
        this.status = status;
        this.code = code;
    }

    /** The status rill returned. */
    public RillStatus status() {
        return status;
    }

    /** The raw status code rill returned (equal to {@code status().code()} for every known code). */
    public int code() {
        return code;
    }

    @Override
    public String toString() {
        return "RillException[" + status + "]: " + getMessage();
    }
}
