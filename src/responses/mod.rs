//! The OpenAI Responses API surface: request parsing and validation (`request`, its
//! sampling fields in `sampling_fields`), the streaming event state machine (`stream`),
//! ids, and the stream invariant checker used by tests and hosts (`check`). Only this
//! module knows Responses JSON.

pub mod check;
pub mod ids;
pub mod request;
pub mod sampling_fields;
pub mod stream;
