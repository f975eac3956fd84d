package dev.rill;

/** Library-wide information. */
public final class Rill {
    private Rill() {}

    /** The version of the loaded library ({@code rill_version()}), e.g. {@code "0.1.0"}. */
    public static String version() {
        return Native.version();
    }

    /** The ABI version of the loaded library; this binding refuses to load any other than {@link #BINDING_ABI_VERSION}. */
    public static int abiVersion() {
        return Native.abiVersion();
    }

    /** {@code RILL_ABI_VERSION} of the header this binding was written against. */
    public static final int BINDING_ABI_VERSION = Native.ABI_VERSION;
}
