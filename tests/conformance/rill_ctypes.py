"""A minimal ctypes wrapper of rill's C API (include/rill.h) for the conformance suite.

The library is found in `RILL_LIB_DIR` (default: `$CARGO_TARGET_DIR/release`, else
`target/release` of this repository). Status codes are read from the header itself
(`RILL_INCLUDE`, default `include/`), so the tests use the numbers the header documents.
`rill_engine_generate` is wrapped when the library exports it (`Library.has_generate`)."""
import ctypes
import json
import os
import pathlib
import re
import threading

ROOT = pathlib.Path(__file__).resolve().parents[2]

EVENT_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p,
                                  ctypes.c_size_t, ctypes.c_bool)


def header_path():
    """include/rill.h, or the one in `RILL_INCLUDE`."""
    return pathlib.Path(os.environ.get("RILL_INCLUDE", ROOT / "include")) / "rill.h"


def read_status_codes(path=None):
    """`{"OK": 0, "NO_EVENT": 1, ...}` from the `RillStatus` enum of the header."""
    text = pathlib.Path(path or header_path()).read_text(encoding="utf-8")
    return {m[1]: int(m[2]) for m in re.finditer(r"RILL_STATUS_(\w+) = (\d+)", text)}


STATUS = read_status_codes()


def library_path():
    """librill.so in `RILL_LIB_DIR`, else the release build of this checkout."""
    if "RILL_LIB_DIR" in os.environ:
        return pathlib.Path(os.environ["RILL_LIB_DIR"]) / "librill.so"
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "release" / "librill.so"


class RillError(Exception):
    """A call returned a status other than OK; `status` is its name, `message` rill_last_error."""

    def __init__(self, func, code, message):
        self.func, self.code, self.message = func, code, message
        self.status = next((k for k, v in STATUS.items() if v == code), str(code))
        super().__init__(f"{func}: RILL_STATUS_{self.status} ({code}): {message}")


class Library:
    """The loaded librill.so with every function's signature declared."""

    def __init__(self, path=None):
        self.path = pathlib.Path(path or library_path())
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path} (build with `cargo build --release`, "
                                    "or set RILL_LIB_DIR)")
        self.dll = ctypes.CDLL(str(self.path))
        self._declare()

    def _declare(self):
        d, p, u64, i32 = self.dll, ctypes.POINTER, ctypes.c_uint64, ctypes.c_int32
        cp, vp = ctypes.c_char_p, ctypes.c_void_p
        sigs = {
            "rill_engine_create": ([cp, p(vp)], i32),
            "rill_engine_destroy": ([vp], i32),
            "rill_engine_submit": ([vp, cp, EVENT_CALLBACK, vp, p(u64)], i32),
            "rill_engine_poll_event": ([vp, i32, p(u64), p(vp), p(ctypes.c_bool)], i32),
            "rill_engine_poll_request": ([vp, u64, i32, p(vp), p(ctypes.c_bool)], i32),
            "rill_engine_cancel": ([vp, u64], i32),
            "rill_engine_stats": ([vp, p(vp)], i32),
            "rill_string_free": ([vp], None),
            "rill_status_str": ([i32], cp),
            "rill_last_error": ([], cp),
            "rill_version": ([], cp),
            "rill_abi_version": ([], ctypes.c_uint32),
        }
        self.has_generate = hasattr(d, "rill_engine_generate")
        if self.has_generate:
            sigs["rill_engine_generate"] = ([vp, cp, i32, p(vp)], i32)
        for name, (args, res) in sigs.items():
            f = getattr(d, name)
            f.argtypes, f.restype = args, res

    def last_error(self):
        """rill_last_error() of this thread, decoded."""
        return self.dll.rill_last_error().decode("utf-8")

    def status_str(self, code):
        """rill_status_str(code), decoded."""
        return self.dll.rill_status_str(code).decode("utf-8")

    def check(self, func, code):
        """Raises RillError (with this thread's rill_last_error) unless `code` is OK."""
        if code != STATUS["OK"]:
            raise RillError(func, code, self.last_error())

    def take_string(self, ptr):
        """Copies a string rill returned and frees it with rill_string_free."""
        try:
            return ctypes.string_at(ptr).decode("utf-8")
        finally:
            self.dll.rill_string_free(ptr)


def to_json(value):
    """A request or config: a str is passed as is (so tests can send broken JSON)."""
    return (value if isinstance(value, str) else json.dumps(value)).encode("utf-8")


class Engine:
    """One rill engine. Events are returned as parsed dicts, in order."""

    def __init__(self, lib, config):
        self.lib = lib
        handle = ctypes.c_void_p()
        lib.check("rill_engine_create", lib.dll.rill_engine_create(to_json(config), ctypes.byref(handle)))
        self.handle = handle
        self._callbacks = {}  # request id -> the CFUNCTYPE object, alive until is_last
        self._lock = threading.Lock()

    def close(self):
        """rill_engine_destroy; idempotent."""
        if self.handle:
            handle, self.handle = self.handle, None
            self.lib.check("rill_engine_destroy", self.lib.dll.rill_engine_destroy(handle))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def submit(self, request, on_event=None):
        """rill_engine_submit; returns the request id. With `on_event(request_id, event, is_last)`
        the events go to it on rill's delivery thread; without, they wait for polling."""
        rid = ctypes.c_uint64()
        cb = EVENT_CALLBACK() if on_event is None else self._wrap(on_event)
        with self._lock:  # the callback may fire before submit returns
            code = self.lib.dll.rill_engine_submit(self.handle, to_json(request), cb, None,
                                                   ctypes.byref(rid))
            self.lib.check("rill_engine_submit", code)
            if on_event is not None:
                self._callbacks[rid.value] = cb
        return rid.value

    def _wrap(self, on_event):
        def trampoline(_user_data, request_id, ptr, length, is_last):
            event = json.loads(ctypes.string_at(ptr, length).decode("utf-8"))
            on_event(request_id, event, bool(is_last))
            if is_last:
                with self._lock:
                    self._callbacks.pop(request_id, None)
        return EVENT_CALLBACK(trampoline)

    def poll_request(self, request_id, timeout_ms=-1):
        """The next event of a polled request as (event, is_last), or None on a timeout."""
        out, last = ctypes.c_void_p(), ctypes.c_bool()
        code = self.lib.dll.rill_engine_poll_request(self.handle, request_id, timeout_ms,
                                                     ctypes.byref(out), ctypes.byref(last))
        if code == STATUS["NO_EVENT"]:
            return None
        self.lib.check("rill_engine_poll_request", code)
        return json.loads(self.lib.take_string(out)), last.value

    def poll_event(self, timeout_ms=0):
        """The next event of any polled request as (request_id, event, is_last), or None."""
        rid, out, last = ctypes.c_uint64(), ctypes.c_void_p(), ctypes.c_bool()
        code = self.lib.dll.rill_engine_poll_event(self.handle, timeout_ms, ctypes.byref(rid),
                                                   ctypes.byref(out), ctypes.byref(last))
        if code == STATUS["NO_EVENT"]:
            return None
        self.lib.check("rill_engine_poll_event", code)
        return rid.value, json.loads(self.lib.take_string(out)), last.value

    def events(self, request_id, timeout_ms=120_000):
        """Polls one request to its terminal event; yields each event."""
        while True:
            got = self.poll_request(request_id, timeout_ms)
            if got is None:
                raise TimeoutError(f"no event of request {request_id} within {timeout_ms} ms")
            yield got[0]
            if got[1]:
                return

    def stream(self, request):
        """Submits a polled request and returns all its events."""
        return list(self.events(self.submit(request)))

    def cancel(self, request_id):
        """rill_engine_cancel."""
        self.lib.check("rill_engine_cancel", self.lib.dll.rill_engine_cancel(self.handle, request_id))

    def stats(self):
        """rill_engine_stats, parsed."""
        out = ctypes.c_void_p()
        self.lib.check("rill_engine_stats", self.lib.dll.rill_engine_stats(self.handle, ctypes.byref(out)))
        return json.loads(self.lib.take_string(out))

    def generate(self, request, timeout_ms=-1):
        """rill_engine_generate (when exported): the final Response object, parsed."""
        if not self.lib.has_generate:
            raise AttributeError("this librill.so has no rill_engine_generate")
        out = ctypes.c_void_p()
        code = self.lib.dll.rill_engine_generate(self.handle, to_json(request), timeout_ms,
                                                 ctypes.byref(out))
        self.lib.check("rill_engine_generate", code)
        return json.loads(self.lib.take_string(out))
