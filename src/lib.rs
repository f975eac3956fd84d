//! rill: an embeddable LLM inference engine. A host creates an [`Engine`] from a JSON
//! config, submits OpenAI Responses API requests as JSON, and receives the Responses
//! streaming events as JSON through a callback or by polling. The C API in [`ffi`]
//! (header `include/rill.h`) wraps exactly this Rust API.
//!
//! Layout (see `README.md` and `shared/DESIGN.md`): `config` and `error`; `engine` (the
//! engine and delivery threads); `scheduler` (continuous batching, chunked prefill,
//! preemption); `kv_cache` (block pool, prefix caching); `runner` (the flat step batch);
//! `model` (GGUF/safetensors readers, llama/qwen2/qwen3 decoder); `backend::cpu` (kernels, thread pool, paged KV memory);
//! `tokenizer`; `chat_template`; `sampling`; `responses` (request parsing, events,
//! invariant checker); `ffi`.

pub mod backend;
pub mod chat_template;
pub mod config;
pub mod engine;
pub mod error;
pub mod ffi;
pub mod kv_cache;
pub mod model;
pub mod responses;
pub mod runner;
pub mod sampling;
pub mod scheduler;
pub mod tokenizer;

pub use config::EngineConfig;
pub use engine::{Engine, Sink};
pub use error::{Error, Result};
