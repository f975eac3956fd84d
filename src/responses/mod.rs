//! The OpenAI Responses API surface: request parsing and validation (`request`, its
//! sampling fields in `sampling_fields`, tools and input items in `tools`), the parser
//! that splits generated text into reasoning, answer text and tool calls
//! (`output_parser`, with `json_scan` for call bodies), the streaming event state
//! machine (`stream`), ids, and the stream invariant checker used by tests and hosts
//! (`check`). Only this module knows Responses JSON.

pub mod check;
pub mod ids;
pub mod json_scan;
pub mod output_parser;
pub mod request;
pub mod sampling_fields;
pub mod stream;
pub mod tools;
