//! Status codes of the C API. The numbers are part of the ABI: never renumber, only add.

/// Result of every rill call that can fail. `RILL_STATUS_OK` is 0; on any other status,
/// `rill_last_error()` on the same thread describes the failure.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RillStatus {
    /// Success.
    Ok = 0,
    /// A poll timed out with no event (not an error; `rill_last_error` is not set).
    NoEvent = 1,
    /// A required pointer argument was NULL.
    NullArgument = 2,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 3,
    /// A JSON argument was not valid JSON.
    InvalidJson = 4,
    /// The engine config was refused (unknown key, wrong type, bad value, missing file).
    InvalidConfig = 5,
    /// The request was refused (the message names the field); nothing was queued.
    InvalidRequest = 6,
    /// The prompt does not fit `max_model_len`; nothing was queued.
    ContextLengthExceeded = 7,
    /// A file could not be read.
    Io = 8,
    /// The model file is malformed or unsupported (the message names file and tensor).
    Model = 9,
    /// The request id is not known to this engine (or, for polls, not a polled request in flight).
    UnknownRequest = 10,
    /// The engine hit an internal failure earlier and refuses new requests; destroy it.
    EnginePoisoned = 11,
    /// The call is not allowed on this thread (destroy from inside an event callback).
    WrongThread = 12,
    /// An internal error (a bug); the call had no effect.
    Internal = 13,
    /// The GPU failed: out of device memory at create (the message names what was being
    /// allocated and how much was free), a driver error, or a failed kernel launch.
    Device = 14,
}

impl RillStatus {
    /// A static description of a status number.
    pub fn describe(code: i32) -> &'static std::ffi::CStr {
        match code {
            0 => c"ok",
            1 => c"no event within the timeout",
            2 => c"a required pointer argument is NULL",
            3 => c"a string argument is not valid UTF-8",
            4 => c"a JSON argument is not valid JSON",
            5 => c"invalid engine config",
            6 => c"invalid request",
            7 => c"the prompt does not fit max_model_len",
            8 => c"I/O error",
            9 => c"invalid or unsupported model file",
            10 => c"unknown request id",
            11 => c"the engine is poisoned by an earlier internal failure",
            12 => c"call not allowed on this thread",
            13 => c"internal error",
            14 => c"GPU error (out of device memory, driver or kernel failure)",
            _ => c"unknown status code",
        }
    }
}
