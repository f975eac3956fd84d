package dev.rill;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The downcalls into {@code librill}, one per function of {@code include/rill.h}.
 *
 * <p>The library is found, in this order: the system property {@code rill.lib} (the path of
 * {@code librill.so} or of its directory), the environment variable {@code RILL_LIB} (the
 * file), {@code RILL_LIB_DIR} (its directory), and last the dynamic loader's own search
 * ({@code LD_LIBRARY_PATH}, the system directories).
 */
final class Native {
    /** {@code RILL_ABI_VERSION} of the header this binding was written against. */
    static final int ABI_VERSION = 1;

    private static final MethodHandle CREATE;
    private static final MethodHandle DESTROY;
    private static final MethodHandle SUBMIT;
    private static final MethodHandle POLL_REQUEST;
    private static final MethodHandle CANCEL;
    private static final MethodHandle STATS;
    private static final MethodHandle STRING_FREE;
    private static final MethodHandle STATUS_STR;
    private static final MethodHandle LAST_ERROR;
    private static final MethodHandle VERSION;
    private static final MethodHandle ABI;

    static {
        SymbolLookup lib = load();
        Linker linker = Linker.nativeLinker();
        CREATE = handle(linker, lib, "rill_engine_create", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        DESTROY = handle(linker, lib, "rill_engine_destroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        SUBMIT = handle(linker, lib, "rill_engine_submit",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS));
        POLL_REQUEST = handle(linker, lib, "rill_engine_poll_request",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT, ADDRESS, ADDRESS));
        CANCEL = handle(linker, lib, "rill_engine_cancel", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
        STATS = handle(linker, lib, "rill_engine_stats", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        STRING_FREE = handle(linker, lib, "rill_string_free", FunctionDescriptor.ofVoid(ADDRESS));
        STATUS_STR = handle(linker, lib, "rill_status_str", FunctionDescriptor.of(ADDRESS, JAVA_INT));
        LAST_ERROR = handle(linker, lib, "rill_last_error", FunctionDescriptor.of(ADDRESS));
        VERSION = handle(linker, lib, "rill_version", FunctionDescriptor.of(ADDRESS));
        ABI = handle(linker, lib, "rill_abi_version", FunctionDescriptor.of(JAVA_INT));
        int abi = abiVersion();
        if (abi != ABI_VERSION) {
            throw new UnsatisfiedLinkError("librill has ABI version " + abi + ", this binding needs " + ABI_VERSION);
        }
    }

    private Native() {}

    private static SymbolLookup load() {
        String prop = System.getProperty("rill.lib");
        if (prop != null && !prop.isBlank()) {
            return open(resolve(Path.of(prop)), "system property rill.lib");
        }
        String file = System.getenv("RILL_LIB");
        if (file != null && !file.isBlank()) {
            return open(resolve(Path.of(file)), "RILL_LIB");
        }
        String dir = System.getenv("RILL_LIB_DIR");
        if (dir != null && !dir.isBlank()) {
            return open(resolve(Path.of(dir)), "RILL_LIB_DIR");
        }
        String name = System.mapLibraryName("rill");
        try {
            return SymbolLookup.libraryLookup(name, Arena.global());
        } catch (IllegalArgumentException e) {
            throw new UnsatisfiedLinkError("cannot load " + name + " from the loader's search path (" + e.getMessage()
                    + "); set -Drill.lib=PATH (librill.so or its directory), RILL_LIB or RILL_LIB_DIR");
        }
    }

    private static Path resolve(Path p) {
        return Files.isDirectory(p) ? p.resolve(System.mapLibraryName("rill")) : p;
    }

    private static SymbolLookup open(Path path, String from) {
        if (!Files.isRegularFile(path)) {
            throw new UnsatisfiedLinkError("cannot load librill: " + path + " (from " + from + ") is not a file");
        }
        try {
            return SymbolLookup.libraryLookup(path, Arena.global());
        } catch (IllegalArgumentException e) {
            throw new UnsatisfiedLinkError("cannot load librill from " + path + " (from " + from + "): " + e.getMessage());
        }
    }

    private static MethodHandle handle(Linker linker, SymbolLookup lib, String name, FunctionDescriptor fd) {
        MemorySegment sym = lib.find(name)
                .orElseThrow(() -> new UnsatisfiedLinkError("librill has no symbol " + name));
        return linker.downcallHandle(sym, fd);
    }

    /** Reads a NUL-terminated UTF-8 string that rill owns (static or borrowed). */
    static String cString(MemorySegment p) {
        if (p.equals(MemorySegment.NULL)) {
            return "";
        }
        return p.reinterpret(Long.MAX_VALUE).getString(0);
    }

    /** Reads a string that rill handed over and frees it with {@code rill_string_free}. */
    static String takeString(MemorySegment p) {
        try {
            return cString(p);
        } finally {
            stringFree(p);
        }
    }

    static int create(MemorySegment config, MemorySegment outEngine) {
        try {
            return (int) CREATE.invokeExact(config, outEngine);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int destroy(MemorySegment engine) {
        try {
            return (int) DESTROY.invokeExact(engine);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int submit(MemorySegment engine, MemorySegment request, MemorySegment outId) {
        try {
            return (int) SUBMIT.invokeExact(engine, request, MemorySegment.NULL, MemorySegment.NULL, outId);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int pollRequest(MemorySegment engine, long id, int timeoutMs, MemorySegment outJson, MemorySegment outLast) {
        try {
            return (int) POLL_REQUEST.invokeExact(engine, id, timeoutMs, outJson, outLast);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int cancel(MemorySegment engine, long id) {
        try {
            return (int) CANCEL.invokeExact(engine, id);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int stats(MemorySegment engine, MemorySegment outJson) {
        try {
            return (int) STATS.invokeExact(engine, outJson);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static void stringFree(MemorySegment s) {
        try {
            STRING_FREE.invokeExact(s);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static String statusStr(int status) {
        try {
            return cString((MemorySegment) STATUS_STR.invokeExact(status));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** {@code rill_last_error()}: thread-local, so call it on the thread of the failed call, right after it. */
    static String lastError() {
        try {
            return cString((MemorySegment) LAST_ERROR.invokeExact());
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static String version() {
        try {
            return cString((MemorySegment) VERSION.invokeExact());
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int abiVersion() {
        try {
            return (int) ABI.invokeExact();
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * Turns a failed status into a {@link RillException}, reading {@code rill_last_error} now,
     * on this thread. Call it immediately after the rill call, with nothing in between that
     * could block (a virtual thread only changes carrier at a blocking point).
     */
    static RillException failure(int status) {
        String message = lastError();
        if (message.isEmpty()) {
            message = statusStr(status);
        }
        return new RillException(RillStatus.fromCode(status), status, message);
    }

    private static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException r) {
            throw r;
        }
        if (t instanceof Error e) {
            throw e;
        }
        throw new IllegalStateException(t);
    }
}
