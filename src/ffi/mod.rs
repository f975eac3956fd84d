//! The C API: every `extern "C"` function of `include/rill.h`. Only this module touches raw
//! pointers and status codes. Every export runs inside `guard`, which catches panics (a
//! panic never crosses the ABI; it becomes `RILL_STATUS_INTERNAL`), records the failure
//! message for `rill_last_error`, and writes out-parameters only on success.

mod generating;
pub mod status;

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use crate::config::EngineConfig;
use crate::engine::core::panic_message;
use crate::engine::delivery::on_delivery_thread;
use crate::engine::{Engine, Sink};
use crate::error::{Error, Result};
use generating::GenerateCalls;
use status::RillStatus;

/// ABI version of `include/rill.h`. Raised on any incompatible change; a host compares
/// it with `rill_abi_version()` at startup.
pub const RILL_ABI_VERSION: u32 = 1;

/// An engine: a loaded model and its threads. Opaque; create with `rill_engine_create`,
/// free with `rill_engine_destroy`.
pub struct RillEngine {
    engine: Engine,
    /// The `rill_engine_generate` calls in progress (destroy waits for them).
    generating: Arc<GenerateCalls>,
}

/// Receives the events of one request, on rill's delivery thread (never the thread that
/// runs the model, never the submitting thread), one call per event, in order.
/// `event_json` is a NUL-terminated UTF-8 JSON object of `event_len` bytes, borrowed for
/// the duration of the call (copy it to keep it). `is_last` is true exactly once, on the
/// terminal event (`response.completed`, `response.incomplete` or `response.failed`);
/// `user_data` may be released then. The callback must return promptly (events of other
/// callback requests wait behind it), may call `rill_engine_submit`, `rill_engine_cancel`
/// and the poll functions, and must not call `rill_engine_destroy`.
pub type RillEventCallback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        request_id: u64,
        event_json: *const c_char,
        event_len: usize,
        is_last: bool,
    ),
>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    // try_with: during thread teardown the slot may be gone; never panic for a message.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = c);
}

/// Runs an export body: catches panics, records errors, maps to a status.
fn guard(engine: Option<&RillEngine>, f: impl FnOnce() -> Result<RillStatus>) -> RillStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            set_last_error(&e.to_string());
            e.status()
        }
        Err(p) => {
            let msg = format!("internal error (panic): {}", panic_message(&*p));
            if let Some(h) = engine {
                h.engine.poison(&msg);
            }
            set_last_error(&msg);
            RillStatus::Internal
        }
    }
}

/// Borrows a C string argument as UTF-8.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid for `'a`.
unsafe fn c_str<'a>(p: *const c_char, what: &'static str) -> Result<&'a str> {
    if p.is_null() {
        return Err(Error::NullArgument(what));
    }
    // SAFETY: non-NULL and NUL-terminated per this function's contract.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| Error::InvalidUtf8(what))
}

/// Borrows the engine behind a handle.
///
/// # Safety
/// `p` is NULL or a live handle from `rill_engine_create`.
unsafe fn engine_ref<'a>(p: *const RillEngine) -> Result<&'a RillEngine> {
    // SAFETY: per the contract a non-NULL handle is live.
    unsafe { p.as_ref() }.ok_or(Error::NullArgument("engine"))
}

fn timeout(ms: i32) -> Option<Duration> {
    (ms >= 0).then(|| Duration::from_millis(ms as u64))
}

fn into_c_string(s: String) -> *mut c_char {
    CString::new(s).unwrap_or_default().into_raw()
}

/// Writes a polled event to the caller's out-parameters.
///
/// # Safety
/// `out_event_json` is non-NULL and writable; `out_is_last` is NULL or writable.
unsafe fn write_event(
    out_event_json: *mut *mut c_char,
    out_is_last: *mut bool,
    event: String,
    last: bool,
) {
    // SAFETY: per this function's contract.
    unsafe {
        *out_event_json = into_c_string(event);
        if !out_is_last.is_null() {
            *out_is_last = last;
        }
    }
}

/// Creates an engine from a JSON config (`model`, `device`, `num_threads`, `max_num_seqs`,
/// `max_model_len`, `max_num_batched_tokens`, `seed`; see the README) and loads its model.
///
/// Thread safety: may be called from any thread; engines are independent.
/// Ownership: `config_json` is borrowed for the call. On success `*out_engine` receives a
/// new handle that the caller owns and must pass to `rill_engine_destroy`; on failure it
/// is not written.
/// Returns: OK; NULL_ARGUMENT; INVALID_UTF8; INVALID_JSON; INVALID_CONFIG (the message
/// names the key, and the path for a missing file); IO; MODEL; INTERNAL.
///
/// # Safety
/// `config_json` is NULL or a NUL-terminated string; `out_engine` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rill_engine_create(
    config_json: *const c_char,
    out_engine: *mut *mut RillEngine,
) -> RillStatus {
    guard(None, || {
        // SAFETY: per this function's contract.
        let text = unsafe { c_str(config_json, "config_json") }?;
        if out_engine.is_null() {
            return Err(Error::NullArgument("out_engine"));
        }
        let engine = Engine::new(EngineConfig::from_json(text)?)?;
        let handle = Box::into_raw(Box::new(RillEngine {
            engine,
            generating: Arc::default(),
        }));
        // SAFETY: checked non-NULL above; the caller provides writable storage.
        unsafe { *out_engine = handle };
        Ok(RillStatus::Ok)
    })
}

/// Destroys an engine: cancels every request in flight, delivers their terminal events
/// (callbacks run before this returns; polled requests' events are discarded), joins all
/// rill threads and frees all memory. Passing NULL is a no-op returning OK.
///
/// Thread safety: call once, after every other call on this engine has returned and with
/// no other thread using the handle, with one exception: threads blocked in
/// `rill_engine_generate` may still be waiting. Destroy then cancels their requests and
/// waits until each of those calls has returned OK with its Response (status
/// `cancelled`) before it frees anything; a generate call that starts while destroy runs
/// returns INTERNAL. (The host must still know that such a call has started before
/// destroy returns: a call made after that uses a freed handle.) Never call destroy from
/// inside an event callback (that returns WRONG_THREAD and destroys nothing).
/// Ownership: takes ownership of `engine`; the handle is invalid afterwards.
/// Returns: OK; WRONG_THREAD; INTERNAL.
///
/// # Safety
/// `engine` is NULL or a live handle not used by any other thread during or after the call.
#[no_mangle]
pub unsafe extern "C" fn rill_engine_destroy(engine: *mut RillEngine) -> RillStatus {
    guard(None, || {
        if engine.is_null() {
            return Ok(RillStatus::Ok);
        }
        if on_delivery_thread() {
            return Err(Error::WrongThread(
                "rill_engine_destroy must not be called from an event callback",
            ));
        }
        // SAFETY: a live handle from rill_engine_create; until the Box is taken back below,
        // other threads may only be inside rill_engine_generate, which shares it read-only.
        let h = unsafe { &*engine };
        h.generating.close(|id| {
            let _ = h.engine.cancel(id);
        });
        // SAFETY: a live handle from rill_engine_create, owned by the caller; every
        // generate call has returned (close above), and no other call uses it (contract).
        let boxed = unsafe { Box::from_raw(engine) };
        drop(boxed);
        Ok(RillStatus::Ok)
    })
}

/// Submits a Responses API request (JSON body). The request is validated, rendered with
/// the model's chat template and tokenized before this returns; a refused request queues
/// nothing and produces no events. With a `callback`, every event of the request is passed
/// to it (see `RillEventCallback`) with `user_data`; with NULL, the events wait for
/// `rill_engine_poll_event` / `rill_engine_poll_request`.
///
/// Thread safety: any thread, concurrently with every call but destroy.
/// Ownership: `request_json` is borrowed for the call; `user_data` is passed through
/// untouched and must stay valid until the callback's `is_last` call. On success
/// `*out_request_id` (nonzero) is written; on failure it is not.
/// Returns: OK; NULL_ARGUMENT; INVALID_UTF8; INVALID_JSON; INVALID_REQUEST (the message
/// names the field); CONTEXT_LENGTH_EXCEEDED; MODEL (template or tokenizer failure);
/// ENGINE_POISONED; INTERNAL.
///
/// # Safety
/// `engine` is a live handle; `request_json` a NUL-terminated string; `out_request_id` writable.
#[no_mangle]
pub unsafe extern "C" fn rill_engine_submit(
    engine: *mut RillEngine,
    request_json: *const c_char,
    callback: RillEventCallback,
    user_data: *mut c_void,
    out_request_id: *mut u64,
) -> RillStatus {
    // SAFETY: per this function's contract.
    let handle = unsafe { engine_ref(engine) };
    guard(handle.as_ref().ok().copied(), || {
        let h = handle?;
        // SAFETY: per this function's contract.
        let text = unsafe { c_str(request_json, "request_json") }?;
        if out_request_id.is_null() {
            return Err(Error::NullArgument("out_request_id"));
        }
        let sink = match callback {
            None => Sink::Poll,
            Some(cb) => {
                let ud = UserData(user_data);
                Sink::Callback(Box::new(move |id, json, last| {
                    let ud = &ud;
                    // JSON from serde never contains NUL, so the conversion cannot fail.
                    let c = CString::new(json).unwrap_or_default();
                    // SAFETY: the host registered `cb` for exactly this use; `c` outlives the call.
                    unsafe { cb(ud.0, id, c.as_ptr(), json.len(), last) };
                }))
            }
        };
        let id = h.engine.submit(text, sink)?;
        // SAFETY: checked non-NULL above.
        unsafe { *out_request_id = id };
        Ok(RillStatus::Ok)
    })
}

/// Runs a request to its end and returns its final Response object as JSON: the
/// `response` member of the request's terminal event (`response.completed`,
/// `response.incomplete` or `response.failed`), exactly as a streamed request would end.
/// This is what an OpenAI server answers for `stream: false`. The request is validated
/// like `rill_engine_submit`: a refused request queues nothing and writes nothing. A
/// request that runs but ends `incomplete`, `cancelled` or `failed` is not an error: this
/// returns OK and the Response's `status` (and `incomplete_details` / `error`) tells.
/// With `timeout_ms` > 0, a request still running after that many milliseconds is
/// cancelled; the call still waits for its terminal event (within about one engine step)
/// and returns that Response, whose status is then `cancelled` (or whatever it reached
/// meanwhile). `timeout_ms` 0 (or negative) waits for the end, however long.
///
/// Thread safety: any thread, concurrently with every call; `rill_engine_destroy` may run
/// while this waits (see there): the request is cancelled and this returns OK with its
/// Response. Not from inside an event callback: that returns WRONG_THREAD (the callback
/// runs on the thread that produces the events this would wait for). The request has no
/// id the host can see, so `rill_engine_cancel` cannot reach it: use `timeout_ms`, or
/// `rill_engine_submit` for a request that must be cancellable.
/// Ownership: `request_json` is borrowed for the call. On OK, `*out_response_json`
/// receives a new NUL-terminated string the caller frees with `rill_string_free`; on
/// failure it is not written.
/// Returns: OK; NULL_ARGUMENT; INVALID_UTF8; INVALID_JSON; INVALID_REQUEST (the message
/// names the field); CONTEXT_LENGTH_EXCEEDED; MODEL (template or tokenizer failure);
/// ENGINE_POISONED; WRONG_THREAD; INTERNAL (also: the engine is being destroyed).
///
/// # Safety
/// `engine` is a live handle; `request_json` a NUL-terminated string; `out_response_json`
/// writable.
#[no_mangle]
pub unsafe extern "C" fn rill_engine_generate(
    engine: *mut RillEngine,
    request_json: *const c_char,
    timeout_ms: i32,
    out_response_json: *mut *mut c_char,
) -> RillStatus {
    // No handle for `guard`: a panic is caught (and poisons the engine) inside, while this
    // call is still counted, because the handle may be freed by destroy once it is not.
    guard(None, || {
        // SAFETY: per this function's contract.
        let h = unsafe { engine_ref(engine) }?;
        // SAFETY: per this function's contract.
        let text = unsafe { c_str(request_json, "request_json") }?;
        if out_response_json.is_null() {
            return Err(Error::NullArgument("out_response_json"));
        }
        if on_delivery_thread() {
            return Err(Error::WrongThread(
                "rill_engine_generate must not be called from an event callback",
            ));
        }
        let wait = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms as u64));
        let mut call = h.generating.enter()?;
        let run = catch_unwind(AssertUnwindSafe(|| {
            let pending = h.engine.submit_generate(text)?;
            let id = pending.id();
            if call.submitted(id) {
                let _ = h.engine.cancel(id);
            }
            pending.wait(wait, |id| {
                let _ = h.engine.cancel(id);
            })
        }));
        let response = match run {
            Ok(r) => r,
            Err(p) => {
                let msg = format!("panic: {}", panic_message(&*p));
                h.engine.poison(&format!("internal error ({msg})"));
                Err(Error::Internal(msg))
            }
        };
        // Uncounted from here on: `h` must not be used any more (destroy may free it).
        drop(call);
        let response = response?;
        // SAFETY: checked non-NULL above; the caller provides writable storage.
        unsafe { *out_response_json = into_c_string(response) };
        Ok(RillStatus::Ok)
    })
}

struct UserData(*mut c_void);
// SAFETY: rill never dereferences user_data; it only hands it back to the host's callback,
// which the header documents is called on rill's delivery thread.
unsafe impl Send for UserData {}

/// Waits up to `timeout_ms` (negative: forever; 0: just check) for the next event of any
/// request submitted without a callback, in the order events were produced.
///
/// Thread safety: any thread, concurrently (each event goes to exactly one caller; one
/// request's events are handed out in order, so a host polling one engine from several
/// threads orders them by `sequence_number` or uses `rill_engine_poll_request`).
/// Ownership: on OK, `*out_request_id` is written, `*out_event_json` receives a new
/// NUL-terminated string the caller frees with `rill_string_free`, and `*out_is_last`
/// (may be NULL) tells whether it is the request's terminal event. Nothing is written
/// otherwise.
/// Returns: OK; NO_EVENT (timeout); NULL_ARGUMENT; INTERNAL.
///
/// # Safety
/// `engine` is a live handle; `out_request_id`, `out_event_json` writable; `out_is_last` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rill_engine_poll_event(
    engine: *mut RillEngine,
    timeout_ms: i32,
    out_request_id: *mut u64,
    out_event_json: *mut *mut c_char,
    out_is_last: *mut bool,
) -> RillStatus {
    guard(None, || {
        // SAFETY: per this function's contract.
        let h = unsafe { engine_ref(engine) }?;
        if out_request_id.is_null() || out_event_json.is_null() {
            return Err(Error::NullArgument(if out_request_id.is_null() {
                "out_request_id"
            } else {
                "out_event_json"
            }));
        }
        let Some((id, ev, last)) = h.engine.poll(timeout(timeout_ms)) else {
            return Ok(RillStatus::NoEvent);
        };
        // SAFETY: checked non-NULL above (out_is_last is optional).
        unsafe {
            *out_request_id = id;
            write_event(out_event_json, out_is_last, ev, last);
        }
        Ok(RillStatus::Ok)
    })
}

/// Waits up to `timeout_ms` (negative: forever) for the next event of one request that was
/// submitted without a callback. After its terminal event is taken, the id is unknown to
/// polling.
///
/// Thread safety and ownership: as `rill_engine_poll_event`.
/// Returns: OK; NO_EVENT (timeout); UNKNOWN_REQUEST (not a polled request in flight);
/// NULL_ARGUMENT; INTERNAL.
///
/// # Safety
/// `engine` is a live handle; `out_event_json` writable; `out_is_last` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rill_engine_poll_request(
    engine: *mut RillEngine,
    request_id: u64,
    timeout_ms: i32,
    out_event_json: *mut *mut c_char,
    out_is_last: *mut bool,
) -> RillStatus {
    guard(None, || {
        // SAFETY: per this function's contract.
        let h = unsafe { engine_ref(engine) }?;
        if out_event_json.is_null() {
            return Err(Error::NullArgument("out_event_json"));
        }
        let Some((ev, last)) = h.engine.poll_request(request_id, timeout(timeout_ms))? else {
            return Ok(RillStatus::NoEvent);
        };
        // SAFETY: checked non-NULL above (out_is_last is optional).
        unsafe { write_event(out_event_json, out_is_last, ev, last) };
        Ok(RillStatus::Ok)
    })
}

/// Cancels a request. It takes effect between engine steps (a long prefill stops within
/// one step) and the request's stream always ends with a terminal event:
/// `response.incomplete` whose response has status `cancelled`. Cancelling a request that
/// already finished is a no-op returning OK.
///
/// Thread safety: any thread, concurrently, including from an event callback.
/// Returns: OK; UNKNOWN_REQUEST (an id this engine never issued); NULL_ARGUMENT; INTERNAL.
///
/// # Safety
/// `engine` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn rill_engine_cancel(
    engine: *mut RillEngine,
    request_id: u64,
) -> RillStatus {
    guard(None, || {
        // SAFETY: per this function's contract.
        let h = unsafe { engine_ref(engine) }?;
        h.engine.cancel(request_id)?;
        Ok(RillStatus::Ok)
    })
}

/// Engine information and counters as a JSON object: model, device, kernels, limits,
/// request counts (submitted, completed, incomplete, cancelled, failed, running, waiting),
/// token counts, KV cache bytes.
///
/// Thread safety: any thread, concurrently.
/// Ownership: on OK `*out_json` receives a new string to free with `rill_string_free`.
/// Returns: OK; NULL_ARGUMENT; INTERNAL.
///
/// # Safety
/// `engine` is a live handle; `out_json` writable.
#[no_mangle]
pub unsafe extern "C" fn rill_engine_stats(
    engine: *mut RillEngine,
    out_json: *mut *mut c_char,
) -> RillStatus {
    guard(None, || {
        // SAFETY: per this function's contract.
        let h = unsafe { engine_ref(engine) }?;
        if out_json.is_null() {
            return Err(Error::NullArgument("out_json"));
        }
        let s = h.engine.stats().to_string();
        // SAFETY: checked non-NULL above.
        unsafe { *out_json = into_c_string(s) };
        Ok(RillStatus::Ok)
    })
}

/// Frees a string returned by rill (events, stats). NULL is a no-op.
///
/// Thread safety: any thread.
///
/// # Safety
/// `s` is NULL or a string returned by rill and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn rill_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: `s` came from CString::into_raw in this library and is freed once.
        drop(unsafe { CString::from_raw(s) });
    }
}

/// A static, NUL-terminated description of a status code (any integer is accepted).
/// Thread safety: any thread. Ownership: static; do not free.
#[no_mangle]
pub extern "C" fn rill_status_str(status: i32) -> *const c_char {
    RillStatus::describe(status).as_ptr()
}

/// The message of the last failed rill call on the calling thread ("" if none).
/// Thread safety: thread-local. Ownership: borrowed; valid until the next rill call that
/// fails on this thread; do not free.
#[no_mangle]
pub extern "C" fn rill_last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|e| e.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// The library version, e.g. "0.1.0". Static; do not free. Any thread.
#[no_mangle]
pub extern "C" fn rill_version() -> *const c_char {
    static VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}

/// The ABI version the library was built with; equals `RILL_ABI_VERSION` of a matching
/// header. Any thread.
#[no_mangle]
pub extern "C" fn rill_abi_version() -> u32 {
    RILL_ABI_VERSION
}
