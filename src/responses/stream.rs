//! The Responses event state machine for one request: turns answer text, reasoning text,
//! function calls and the finish reason into the OpenAI streaming events
//! (`response.created` ... terminal event), with `sequence_number`s, item ids and indexes
//! kept consistent, and builds the terminal `response.output` from the very item objects
//! it streamed (see `shared/spec/responses.md` invariants 1-11). Items: `message`
//! (`output_text` part), `reasoning` (`reasoning_text` part) and `function_call`
//! (`function_call_arguments.delta/done`), one open at a time; a new kind of piece closes
//! the open item. Text deltas carry the logprob entries of the tokens whose text they
//! hold; `output_text.done` and the final `output_text` part carry the whole list (the
//! part's entries with `bytes` too). Operations: `start`, `text_delta`,
//! `reasoning_delta`, `reasoning_end`, `call_start`, `call_args`, `call_end`, `finish`.

use serde_json::{json, Map, Value};

use super::ids::new_id;

/// What a request's response echoes back.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    pub model: String,
    pub instructions: Option<String>,
    pub max_output_tokens: Option<usize>,
    pub temperature: f32,
    pub top_p: f32,
    /// Echoed `top_logprobs` (alternatives per token).
    pub top_logprobs: usize,
    pub metadata: Map<String, Value>,
    pub user: Option<String>,
    pub parallel_tool_calls: bool,
    /// Echoed (see `ParsedRequest::max_tool_calls`).
    pub max_tool_calls: Option<u64>,
    pub reasoning_effort: Option<String>,
    /// The request's function tools as the response echoes them.
    pub tools: Vec<Value>,
    /// The request's `tool_choice` as echoed (`"auto"` when absent).
    pub tool_choice: Value,
}

/// Why a response ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// The model ended its turn.
    Completed,
    /// `max_output_tokens` (or the context) ran out: `response.incomplete`.
    MaxOutputTokens,
    /// Cancelled by the host (or engine shutdown): `response.incomplete` with status `cancelled`.
    Cancelled,
    /// Generation failed: `response.failed`.
    Failed { code: &'static str, message: String },
}

/// Token counts for `usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub input_tokens: usize,
    pub cached_tokens: usize,
    pub output_tokens: usize,
    pub reasoning_tokens: usize,
}

/// A likely alternative of a generated token.
#[derive(Debug, Clone, PartialEq)]
pub struct TopLogprob {
    /// The alternative's text (lossy where it is part of a UTF-8 character).
    pub token: String,
    /// Its raw bytes.
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

/// The logprob entry of one generated token, as text events carry it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogprobEntry {
    /// The text this token contributed to the delta ("" for the leading pieces of a
    /// character that later tokens complete).
    pub token: String,
    pub logprob: f32,
    pub top: Vec<TopLogprob>,
}

/// JSON cannot hold -inf: vLLM's OpenAI server clamps logprobs the same way.
fn finite(lp: f32) -> f64 {
    if lp.is_nan() {
        -9999.0
    } else {
        (lp as f64).max(-9999.0)
    }
}

fn bytes_json(b: &[u8]) -> Value {
    Value::Array(b.iter().map(|&x| x.into()).collect())
}

impl LogprobEntry {
    /// The entry as text events carry it; the final part adds `bytes` (`with_bytes`).
    fn to_json(&self, with_bytes: bool) -> Value {
        let top: Vec<Value> = self
            .top
            .iter()
            .map(|t| {
                if with_bytes {
                    json!({"token": t.token, "bytes": bytes_json(&t.bytes), "logprob": finite(t.logprob)})
                } else {
                    json!({"token": t.token, "logprob": finite(t.logprob)})
                }
            })
            .collect();
        if with_bytes {
            json!({"token": self.token, "bytes": bytes_json(self.token.as_bytes()),
                   "logprob": finite(self.logprob), "top_logprobs": top})
        } else {
            json!({"token": self.token, "logprob": finite(self.logprob), "top_logprobs": top})
        }
    }
}

fn entries_json(entries: &[LogprobEntry], with_bytes: bool) -> Value {
    Value::Array(entries.iter().map(|e| e.to_json(with_bytes)).collect())
}

/// The item being streamed.
enum Open {
    Message {
        id: String,
        index: usize,
        text: String,
        logprobs: Vec<LogprobEntry>,
    },
    Reasoning {
        id: String,
        index: usize,
        text: String,
    },
    Call {
        id: String,
        call_id: String,
        index: usize,
        name: String,
        arguments: String,
    },
}

/// Event builder for one response.
pub struct ResponseStream {
    seq: u64,
    response: Map<String, Value>,
    output: Vec<Value>,
    open: Option<Open>,
    done: bool,
}

impl ResponseStream {
    pub fn new(meta: &ResponseMeta, created_at: u64) -> Self {
        let response = json!({
            "id": new_id("resp"),
            "object": "response",
            "created_at": created_at,
            "status": "in_progress",
            "background": false,
            "error": null,
            "incomplete_details": null,
            "instructions": meta.instructions,
            "max_output_tokens": meta.max_output_tokens,
            "max_tool_calls": meta.max_tool_calls,
            "model": meta.model,
            "output": [],
            "parallel_tool_calls": meta.parallel_tool_calls,
            "previous_response_id": null,
            "reasoning": {"effort": meta.reasoning_effort, "summary": null},
            "store": false,
            "temperature": meta.temperature,
            "text": {"format": {"type": "text"}},
            "tool_choice": meta.tool_choice,
            "tools": meta.tools,
            "top_logprobs": meta.top_logprobs,
            "top_p": meta.top_p,
            "truncation": "disabled",
            "usage": null,
            "user": meta.user,
            "metadata": meta.metadata,
        });
        let Value::Object(response) = response else {
            unreachable!("json! object")
        };
        ResponseStream {
            seq: 0,
            response,
            output: Vec::new(),
            open: None,
            done: false,
        }
    }

    /// The response id (`resp_...`).
    pub fn id(&self) -> &str {
        self.response["id"].as_str().unwrap_or_default()
    }

    /// Whether the terminal event was produced.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn event(&mut self, ty: &str, fields: Value) -> Value {
        let mut e = Map::new();
        e.insert("type".into(), ty.into());
        e.insert("sequence_number".into(), self.seq.into());
        self.seq += 1;
        if let Value::Object(f) = fields {
            e.extend(f);
        }
        Value::Object(e)
    }

    /// `response.created` and `response.in_progress`.
    pub fn start(&mut self) -> Vec<Value> {
        let r = Value::Object(self.response.clone());
        vec![
            self.event("response.created", json!({"response": r})),
            self.event("response.in_progress", json!({"response": r})),
        ]
    }

    /// Appends answer text, opening a message item on the first delta (closing a
    /// reasoning or call item before it). `logprobs` are the entries of the tokens whose
    /// text `delta` is (empty when not asked for). An empty delta produces no event.
    pub fn text_delta(&mut self, delta: &str, logprobs: Vec<LogprobEntry>) -> Vec<Value> {
        let mut out = Vec::new();
        if delta.is_empty() || self.done {
            return out;
        }
        if !matches!(self.open, Some(Open::Message { .. })) {
            self.close("completed", &mut out);
            self.open_message(&mut out);
        }
        let lp = entries_json(&logprobs, false);
        let Some(Open::Message {
            id,
            index,
            text,
            logprobs: all,
        }) = &mut self.open
        else {
            return out;
        };
        text.push_str(delta);
        all.extend(logprobs);
        let (id, index) = (id.clone(), *index);
        out.push(self.event(
            "response.output_text.delta",
            json!({"item_id": id, "output_index": index, "content_index": 0, "delta": delta, "logprobs": lp}),
        ));
        out
    }

    /// Appends reasoning text, opening a reasoning item (with a `reasoning_text` part) on
    /// the first delta.
    pub fn reasoning_delta(&mut self, delta: &str) -> Vec<Value> {
        let mut out = Vec::new();
        if delta.is_empty() || self.done {
            return out;
        }
        if !matches!(self.open, Some(Open::Reasoning { .. })) {
            self.close("completed", &mut out);
            let id = new_id("rs");
            let item = json!({"id": id, "type": "reasoning", "summary": [], "content": [], "status": "in_progress"});
            let index = self.add_item_with_part(
                item,
                json!({"type": "reasoning_text", "text": ""}),
                &mut out,
            );
            self.open = Some(Open::Reasoning {
                id,
                index,
                text: String::new(),
            });
        }
        let Some(Open::Reasoning { id, index, text }) = &mut self.open else {
            return out;
        };
        text.push_str(delta);
        let (id, index) = (id.clone(), *index);
        out.push(self.event(
            "response.reasoning_text.delta",
            json!({"item_id": id, "output_index": index, "content_index": 0, "delta": delta}),
        ));
        out
    }

    /// Ends the open reasoning item (the next reasoning text opens a new one).
    pub fn reasoning_end(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        if matches!(self.open, Some(Open::Reasoning { .. })) {
            self.close("completed", &mut out);
        }
        out
    }

    /// Opens a `function_call` item (arguments empty, status `in_progress`).
    pub fn call_start(&mut self, name: &str) -> Vec<Value> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        self.close("completed", &mut out);
        let (id, call_id, index) = (new_id("fc"), new_id("call"), self.output.len());
        let item = json!({"id": id, "type": "function_call", "call_id": call_id, "name": name,
                          "arguments": "", "status": "in_progress"});
        out.push(self.event(
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
        ));
        self.open = Some(Open::Call {
            id,
            call_id,
            index,
            name: name.to_owned(),
            arguments: String::new(),
        });
        out
    }

    /// Streams more of the open call's arguments.
    pub fn call_args(&mut self, delta: &str) -> Vec<Value> {
        let mut out = Vec::new();
        if delta.is_empty() || self.done {
            return out;
        }
        let Some(Open::Call {
            id,
            index,
            arguments,
            ..
        }) = &mut self.open
        else {
            return out;
        };
        arguments.push_str(delta);
        let (id, index) = (id.clone(), *index);
        out.push(self.event(
            "response.function_call_arguments.delta",
            json!({"item_id": id, "output_index": index, "delta": delta}),
        ));
        out
    }

    /// Ends the open call: `completed`, or `incomplete` when it broke off.
    pub fn call_end(&mut self, complete: bool) -> Vec<Value> {
        let mut out = Vec::new();
        if matches!(self.open, Some(Open::Call { .. })) {
            self.close(if complete { "completed" } else { "incomplete" }, &mut out);
        }
        out
    }

    fn open_message(&mut self, out: &mut Vec<Value>) {
        let id = new_id("msg");
        let item = json!({"id": id, "type": "message", "role": "assistant", "status": "in_progress", "content": []});
        let part = json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []});
        let index = self.add_item_with_part(item, part, out);
        self.open = Some(Open::Message {
            id,
            index,
            text: String::new(),
            logprobs: Vec::new(),
        });
    }

    /// `output_item.added` for `item` (the next output index) and `content_part.added`
    /// for its first (empty) part; returns the index.
    fn add_item_with_part(&mut self, item: Value, part: Value, out: &mut Vec<Value>) -> usize {
        let index = self.output.len();
        let id = item["id"].clone();
        out.push(self.event(
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
        ));
        out.push(self.event(
            "response.content_part.added",
            json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
        ));
        index
    }

    /// Closes the open item (if any) with `status`: its done events, then the item.
    fn close(&mut self, status: &str, out: &mut Vec<Value>) {
        let Some(open) = self.open.take() else { return };
        let (index, item) = match open {
            Open::Message {
                id,
                index,
                text,
                logprobs,
            } => {
                let part = json!({"type": "output_text", "text": text, "annotations": [],
                                  "logprobs": entries_json(&logprobs, true)});
                out.push(self.event(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "text": text,
                           "logprobs": entries_json(&logprobs, false)}),
                ));
                out.push(self.event(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
                ));
                let item = json!({"id": id, "type": "message", "role": "assistant", "status": status, "content": [part]});
                (index, item)
            }
            Open::Reasoning { id, index, text } => {
                let part = json!({"type": "reasoning_text", "text": text});
                out.push(self.event(
                    "response.reasoning_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "text": text}),
                ));
                out.push(self.event(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
                ));
                let item = json!({"id": id, "type": "reasoning", "summary": [], "content": [part], "status": status});
                (index, item)
            }
            Open::Call {
                id,
                call_id,
                index,
                name,
                arguments,
            } => {
                out.push(self.event(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "name": name, "arguments": arguments}),
                ));
                let item = json!({"id": id, "type": "function_call", "call_id": call_id, "name": name,
                                  "arguments": arguments, "status": status});
                (index, item)
            }
        };
        out.push(self.event(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        ));
        self.output.push(item);
    }

    /// Closes open items and produces the one terminal event.
    pub fn finish(&mut self, finish: &Finish, usage: Usage) -> Vec<Value> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        match finish {
            Finish::Completed => {
                if self.open.is_none() && self.output.is_empty() {
                    // An empty answer is still a message, so `output` is never empty.
                    self.open_message(&mut out);
                }
                self.close("completed", &mut out);
            }
            _ => self.close("incomplete", &mut out),
        }
        let (ty, status) = match finish {
            Finish::Completed => ("response.completed", "completed"),
            Finish::MaxOutputTokens => ("response.incomplete", "incomplete"),
            Finish::Cancelled => ("response.incomplete", "cancelled"),
            Finish::Failed { .. } => ("response.failed", "failed"),
        };
        let r = &mut self.response;
        r.insert("status".into(), status.into());
        r.insert("output".into(), Value::Array(self.output.clone()));
        if *finish == Finish::MaxOutputTokens {
            r.insert(
                "incomplete_details".into(),
                json!({"reason": "max_output_tokens"}),
            );
        }
        if let Finish::Failed { code, message } = finish {
            r.insert("error".into(), json!({"code": code, "message": message}));
        }
        r.insert(
            "usage".into(),
            json!({
                "input_tokens": usage.input_tokens,
                "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
                "output_tokens": usage.output_tokens,
                "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
                "total_tokens": usage.input_tokens + usage.output_tokens,
            }),
        );
        let resp = Value::Object(self.response.clone());
        out.push(self.event(ty, json!({"response": resp})));
        self.done = true;
        out
    }
}
