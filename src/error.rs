//! The one error type of rill, grouped by subsystem. Every variant carries the context a
//! user needs to fix the problem: the config key, the request field, the file path or the
//! tensor name. `Error::status` maps each variant to the C API's status code.

use std::fmt;
use std::path::PathBuf;

use crate::ffi::status::RillStatus;

/// Every failure rill reports, in Rust and (through [`Error::status`]) across the C ABI.
#[derive(Debug)]
pub enum Error {
    /// A NULL pointer or an invalid value passed to the C API.
    NullArgument(&'static str),
    /// A string argument that is not valid UTF-8.
    InvalidUtf8(&'static str),
    /// Text that is not valid JSON; `what` says which document.
    InvalidJson { what: &'static str, message: String },
    /// Engine config refused: `key` names the offending key.
    Config { key: String, message: String },
    /// Request refused at submit: `param` names the offending field, as OpenAI's 400s do.
    InvalidRequest { param: String, message: String },
    /// The prompt (plus nothing else) does not fit `max_model_len`.
    ContextLength {
        prompt_tokens: usize,
        max_model_len: usize,
    },
    /// A file could not be opened or read.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A model file is malformed, truncated, or of an unsupported kind.
    Model { path: PathBuf, message: String },
    /// Tokenizer construction or tokenization failed.
    Tokenizer(String),
    /// The chat template failed to parse or render.
    Template(String),
    /// `rill_engine_cancel` or a poll named a request id this engine never issued.
    UnknownRequest(u64),
    /// The engine hit an internal failure (a caught panic) and refuses new work.
    Poisoned(String),
    /// A call that is not allowed from the current thread (destroy inside a callback).
    WrongThread(&'static str),
    /// An invariant broke inside rill: a bug, reported instead of crashing.
    Internal(String),
    /// The GPU failed an operation: `op` names it (an allocation with its size, a copy, a
    /// kernel launch), `message` is the driver's or cuBLAS's error.
    Device { op: String, message: String },
}

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for a config error on `key`.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    /// Shorthand for a request error on `param`.
    pub fn request(param: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidRequest {
            param: param.into(),
            message: message.into(),
        }
    }

    /// Shorthand for a malformed-model error on `path`.
    pub fn model(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Model {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The C API status code for this error.
    pub fn status(&self) -> RillStatus {
        match self {
            Error::NullArgument(_) => RillStatus::NullArgument,
            Error::InvalidUtf8(_) => RillStatus::InvalidUtf8,
            Error::InvalidJson { .. } => RillStatus::InvalidJson,
            Error::Config { .. } => RillStatus::InvalidConfig,
            Error::InvalidRequest { .. } => RillStatus::InvalidRequest,
            Error::ContextLength { .. } => RillStatus::ContextLengthExceeded,
            Error::Io { .. } => RillStatus::Io,
            Error::Model { .. } | Error::Tokenizer(_) | Error::Template(_) => RillStatus::Model,
            Error::UnknownRequest(_) => RillStatus::UnknownRequest,
            Error::Poisoned(_) => RillStatus::EnginePoisoned,
            Error::WrongThread(_) => RillStatus::WrongThread,
            Error::Internal(_) => RillStatus::Internal,
            Error::Device { .. } => RillStatus::Device,
        }
    }

    /// The request field an OpenAI-style 400 would name (`param`), if any.
    pub fn param(&self) -> Option<&str> {
        match self {
            Error::InvalidRequest { param, .. } => Some(param),
            Error::ContextLength { .. } => Some("input"),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NullArgument(what) => write!(f, "argument `{what}` is NULL"),
            Error::InvalidUtf8(what) => write!(f, "argument `{what}` is not valid UTF-8"),
            Error::InvalidJson { what, message } => {
                write!(f, "{what} is not valid JSON: {message}")
            }
            Error::Config { key, message } => write!(f, "engine config `{key}`: {message}"),
            Error::InvalidRequest { param, message } => {
                write!(f, "request field `{param}`: {message}")
            }
            Error::ContextLength {
                prompt_tokens,
                max_model_len,
            } => write!(
                f,
                "request field `input`: the prompt is {prompt_tokens} tokens, which does not fit \
                 max_model_len {max_model_len} (at least one token must be left to generate)"
            ),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Model { path, message } => write!(f, "model {}: {message}", path.display()),
            Error::Tokenizer(m) => write!(f, "tokenizer: {m}"),
            Error::Template(m) => write!(f, "chat template: {m}"),
            Error::UnknownRequest(id) => write!(f, "unknown request id {id}"),
            Error::Poisoned(m) => write!(f, "engine is poisoned: {m}"),
            Error::WrongThread(m) => write!(f, "{m}"),
            Error::Internal(m) => write!(f, "internal error: {m}"),
            Error::Device { op, message } => write!(f, "GPU: {op} failed: {message}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
