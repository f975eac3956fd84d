//! The OpenAI Responses API surface: request parsing and validation (`request`), the
//! streaming event state machine (`stream`), ids, and the stream invariant checker used
//! by tests and hosts (`check`). Only this module knows Responses JSON.

pub mod check;
pub mod ids;
pub mod request;
pub mod stream;
