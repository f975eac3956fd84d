//! Splits a model's generated text into reasoning, answer text and tool calls, token by
//! token, while it streams (vLLM's reasoning parsers and its Hermes tool parser, redone
//! as one state machine). Markers (`<think>` … `</think>`, `<tool_call>` … `</tool_call>`)
//! are recognised by token id where they are single tokens (Qwen3: 151667/151668,
//! 151657/151658), otherwise by text, holding back any trailing text that could still
//! become a marker. Marker text never reaches the output, and neither do their tokens'
//! logprobs.
//!
//! The starting state comes from the tail of the rendered prompt: a prompt that ends
//! inside an open `<think>` (DeepSeek-R1 style templates) starts in reasoning; one that
//! ends inside `<tool_call>` (rill's forced tool calls) starts in a call body.
//!
//! Whitespace next to markers is layout, not content: it is dropped (the `\n` after
//! `<think>`, the `\n\n` after `</think>`, the newlines between calls). Whitespace-only
//! answer text is held until non-whitespace follows, so a newline before a `<tool_call>`
//! opens no message.
//!
//! A tool-call body (`{"name": …, "arguments": {…}}`) is checked by [`JsonScanner`] as it
//! arrives: once the name is known and the arguments object starts, the call opens and
//! its arguments stream as they are generated. A body that is not such an object ends as
//! answer text (markers removed) if no call was opened for it; a call that breaks after
//! opening, or is cut by the token limit, ends `complete: false`.
//!
//! Public operations: [`OutputParser::new`], [`OutputParser::push`],
//! [`OutputParser::finish`], [`OutputParser::reasoning_tokens`].

use serde_json::Value;

use super::json_scan::{JsonScanner, Mark};

/// A marker: its text, and its token id where it is one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub text: String,
    pub id: Option<u32>,
}

/// Which markers a model uses (none: everything is answer text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParserConfig {
    /// Start and end of a reasoning block.
    pub reasoning: Option<(Marker, Marker)>,
    /// Start and end of a Hermes tool call.
    pub tool_calls: Option<(Marker, Marker)>,
    /// Whether calls become `function_call`s (the request has tools and `tool_choice`
    /// is not `none`); otherwise a call block's body is answer text, markers removed.
    pub calls_enabled: bool,
}

/// A piece of parsed output, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece<T> {
    /// Answer text with its token's tag (logprobs).
    Text { tag: T, text: String },
    /// Reasoning text.
    Reasoning(String),
    /// A reasoning block ended (the next reasoning text is a new item).
    ReasoningEnd,
    /// A function call opens.
    CallStart { name: String },
    /// More of its arguments.
    CallArgs(String),
    /// It ends; `arguments` equals the concatenated `CallArgs`. `complete: false` when
    /// it broke off (token limit, or text that stopped being JSON).
    CallEnd { arguments: String, complete: bool },
}

/// Tagged text segments, one per token.
type Segments<T> = Vec<(T, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Content,
    Reasoning,
    Call,
}

/// The tool-call body being read.
#[derive(Debug, Default)]
struct Body {
    text: String,
    scan: JsonScanner,
    key: Option<String>,
    name_start: Option<usize>,
    name: Option<String>,
    args_start: Option<usize>,
    args_end: Option<usize>,
    /// Body offset up to which arguments were streamed; `Some` once the call opened.
    streamed: Option<usize>,
}

/// Parser state for one response; `T` is the per-token tag (e.g. its logprobs).
#[derive(Debug)]
pub struct OutputParser<T> {
    config: ParserConfig,
    state: State,
    /// Text of the current state not yet classified (could still start a text marker).
    pending: Vec<(T, String)>,
    /// Drop leading whitespace (just after a marker).
    trim_lead: bool,
    /// Whitespace-only text held back (answer: with tags; reasoning: tags dropped).
    held: Vec<(T, String)>,
    body: Body,
    reasoning_tokens: usize,
}

impl<T: Default> OutputParser<T> {
    /// A parser whose starting state is where `prompt_tail` (the end of the rendered
    /// prompt, e.g. its generation prompt) leaves off; also returns the pieces that tail
    /// already implies (a forced `<tool_call>{"name": "f", "arguments": ` opens nothing
    /// until the arguments start, but its body text counts).
    pub fn new(config: ParserConfig, prompt_tail: &str) -> (Self, Vec<Piece<T>>) {
        let mut p = OutputParser {
            config,
            state: State::Content,
            pending: Vec::new(),
            trim_lead: false,
            held: Vec::new(),
            body: Body::default(),
            reasoning_tokens: 0,
        };
        let mut out = Vec::new();
        // The last marker in the tail decides.
        let last = |m: &Option<(Marker, Marker)>| {
            m.as_ref().map(|(s, e)| {
                (
                    prompt_tail.rfind(&s.text).map(|i| (i, s.text.len())),
                    prompt_tail.rfind(&e.text),
                )
            })
        };
        if let Some((Some((s, _)), end)) = last(&p.config.reasoning) {
            if end.is_none_or(|e| e < s) {
                p.state = State::Reasoning;
                p.trim_lead = true;
            }
        }
        if let Some((Some((s, len)), end)) = last(&p.config.tool_calls) {
            if end.is_none_or(|e| e < s) {
                p.state = State::Call;
                let rest = &prompt_tail[s + len..];
                p.feed_body(rest, &mut out);
            }
        }
        (p, out)
    }

    /// Reads answer text that belongs to no token (the lossy end of an incomplete
    /// character when generation stops). Counts no token.
    pub fn push_text(&mut self, text: String) -> Vec<Piece<T>> {
        let mut out = Vec::new();
        if self.is_passthrough() {
            out.push(Piece::Text {
                tag: T::default(),
                text,
            });
        } else {
            self.pending.push((T::default(), text));
            self.scan_pending(&mut out);
        }
        out
    }

    /// Generated tokens that were reasoning (its markers included).
    pub fn reasoning_tokens(&self) -> usize {
        self.reasoning_tokens
    }

    /// Whether any marker is configured (otherwise everything is answer text).
    pub fn is_passthrough(&self) -> bool {
        self.config.reasoning.is_none() && self.config.tool_calls.is_none()
    }

    /// One generated token: its id, its (UTF-8 complete) text and its tag.
    pub fn push(&mut self, id: u32, text: String, tag: T) -> Vec<Piece<T>> {
        let mut out = Vec::new();
        if self.is_passthrough() {
            // Empty text too: a token that is the first part of a character keeps its tag.
            out.push(Piece::Text { tag, text });
            return out;
        }
        let before = self.state;
        if let Some((to, is_end)) = self.marker_by_id(id) {
            self.flush_pending(&mut out);
            self.transition(to, is_end, &mut out);
            if before == State::Reasoning || self.state == State::Reasoning {
                self.reasoning_tokens += 1;
            }
            return out;
        }
        if self.state == State::Reasoning {
            self.reasoning_tokens += 1;
        }
        self.pending.push((tag, text));
        self.scan_pending(&mut out);
        out
    }

    /// The end of generation: whatever is pending is classified, an open call ends.
    pub fn finish(&mut self) -> Vec<Piece<T>> {
        let mut out = Vec::new();
        self.flush_pending(&mut out);
        match self.state {
            State::Content => {
                let held = std::mem::take(&mut self.held);
                if !self.trim_lead {
                    for (tag, text) in held {
                        out.push(Piece::Text { tag, text });
                    }
                }
            }
            // The stream closes the reasoning item with the response's own status
            // (`incomplete` when the token limit cut it).
            State::Reasoning => self.held.clear(),
            State::Call => self.end_call(false, &mut out),
        }
        out
    }

    /// The state a token id switches to (and whether it is an end marker), if it is a
    /// marker that means something in the current state. Other marker ids are dropped.
    fn marker_by_id(&self, id: u32) -> Option<(State, bool)> {
        let mut hit = None;
        for (pair, inner) in [
            (&self.config.reasoning, State::Reasoning),
            (&self.config.tool_calls, State::Call),
        ] {
            if let Some((s, e)) = pair {
                if s.id == Some(id) {
                    hit = Some((inner, false));
                } else if e.id == Some(id) {
                    hit = Some((inner, true));
                }
            }
        }
        hit
    }

    /// Applies a marker: `inner` is the block it starts or ends.
    fn transition(&mut self, inner: State, is_end: bool, out: &mut Vec<Piece<T>>) {
        match (self.state, inner, is_end) {
            // A block opens from answer text.
            (State::Content, State::Reasoning | State::Call, false) => {
                self.held.clear();
                self.state = inner;
                self.trim_lead = true;
                if inner == State::Call {
                    self.body = Body::default();
                }
            }
            (State::Reasoning, State::Reasoning, true) => {
                self.held.clear();
                out.push(Piece::ReasoningEnd);
                self.state = State::Content;
                self.trim_lead = true;
            }
            (State::Call, State::Call, true) => {
                self.end_call(true, out);
                self.state = State::Content;
                self.trim_lead = true;
            }
            // A marker out of place (`</think>` in an answer, `<think>` in a call): dropped.
            _ => {}
        }
    }

    /// Text markers to look for in the current state.
    fn text_markers(&self) -> Vec<(String, State, bool)> {
        let mut v = Vec::new();
        let mut add = |m: &Marker, inner, end| {
            if m.id.is_none() {
                v.push((m.text.clone(), inner, end));
            }
        };
        match self.state {
            // Every marker: those out of place are dropped (as by id).
            State::Content | State::Reasoning => {
                if let Some((s, e)) = &self.config.reasoning {
                    add(s, State::Reasoning, false);
                    add(e, State::Reasoning, true);
                }
                if let Some((s, e)) = &self.config.tool_calls {
                    add(s, State::Call, false);
                    add(e, State::Call, true);
                }
            }
            // A call body ends only at its end marker (its JSON may hold anything).
            State::Call => {
                if let Some((_, e)) = &self.config.tool_calls {
                    add(e, State::Call, true);
                }
            }
        }
        v
    }

    /// Classifies pending text: up to a text marker (then switches state and goes on
    /// with the rest), else everything that can no longer start one.
    fn scan_pending(&mut self, out: &mut Vec<Piece<T>>) {
        loop {
            let markers = self.text_markers();
            if markers.is_empty() {
                self.flush_pending(out);
                return;
            }
            let text: String = self.pending.iter().map(|(_, t)| t.as_str()).collect();
            let found = markers
                .iter()
                .filter_map(|(m, inner, end)| {
                    text.find(m.as_str()).map(|at| (at, m.len(), *inner, *end))
                })
                .min_by_key(|&(at, ..)| at);
            if let Some((at, len, inner, end)) = found {
                let (before, after) = self.split_pending(at, len);
                for (tag, t) in before {
                    self.classify(tag, t, out);
                }
                self.transition(inner, end, out);
                self.pending = after;
                continue;
            }
            // The earliest suffix that is a proper prefix of a marker stays pending.
            let longest = markers.iter().map(|(m, ..)| m.len()).max().unwrap_or(0);
            let lo = text.len().saturating_sub(longest.saturating_sub(1));
            let safe = (lo..text.len())
                .filter(|&i| text.is_char_boundary(i))
                .find(|&i| markers.iter().any(|(m, ..)| m.starts_with(&text[i..])))
                .unwrap_or(text.len());
            // Whole segments before `safe` go out.
            let mut end = 0;
            let mut n = 0;
            for (_, t) in &self.pending {
                if end + t.len() > safe {
                    break;
                }
                end += t.len();
                n += 1;
            }
            for (tag, t) in self.pending.drain(..n).collect::<Vec<_>>() {
                self.classify(tag, t, out);
            }
            return;
        }
    }

    /// Splits the pending segments around the marker at byte `at` (length `len`): the
    /// text before it (the cut segment keeps its tag), and the text after it (one
    /// segment, its tag dropped: its token was part of the marker).
    fn split_pending(&mut self, at: usize, len: usize) -> (Segments<T>, Segments<T>) {
        let mut before = Vec::new();
        let mut after_text = String::new();
        let mut pos = 0;
        for (tag, t) in std::mem::take(&mut self.pending) {
            let (s, e) = (pos, pos + t.len());
            pos = e;
            if e <= at {
                before.push((tag, t));
            } else if s < at {
                before.push((tag, t[..at - s].to_owned()));
                if e > at + len {
                    after_text.push_str(&t[at + len - s..]);
                }
            } else if e > at + len {
                after_text.push_str(&t[(at + len).max(s) - s..]);
            }
        }
        let after = if after_text.is_empty() {
            Vec::new()
        } else {
            vec![(T::default(), after_text)]
        };
        (before, after)
    }

    fn flush_pending(&mut self, out: &mut Vec<Piece<T>>) {
        for (tag, t) in std::mem::take(&mut self.pending) {
            self.classify(tag, t, out);
        }
    }

    /// Text that belongs to the current state.
    fn classify(&mut self, tag: T, text: String, out: &mut Vec<Piece<T>>) {
        if text.is_empty() {
            // The first part of a character: answer text keeps its tag (the next token
            // completes the character), with held whitespace if there is some.
            if self.state == State::Content {
                if self.held.is_empty() && !self.trim_lead {
                    out.push(Piece::Text { tag, text });
                } else {
                    self.held.push((tag, text));
                }
            }
            return;
        }
        match self.state {
            State::Call => self.feed_body(&text, out),
            State::Content | State::Reasoning => {
                let text = if self.trim_lead {
                    let t = text.trim_start();
                    if t.is_empty() {
                        // Layout whitespace after a marker; tags held with it go too.
                        self.held.clear();
                        return;
                    }
                    self.trim_lead = false;
                    t.to_owned()
                } else {
                    text
                };
                if text.trim().is_empty() {
                    self.held.push((tag, text));
                    return;
                }
                for (htag, h) in std::mem::take(&mut self.held) {
                    self.emit(htag, h, out);
                }
                // Reasoning carries no logprobs, so its trailing whitespace can wait
                // apart from its token (it is dropped if `</think>` follows).
                let core = text.trim_end();
                if self.state == State::Reasoning && core.len() < text.len() {
                    self.held
                        .push((T::default(), text[core.len()..].to_owned()));
                    self.emit(tag, core.to_owned(), out);
                } else {
                    self.emit(tag, text, out);
                }
            }
        }
    }

    fn emit(&self, tag: T, text: String, out: &mut Vec<Piece<T>>) {
        match self.state {
            State::Reasoning => out.push(Piece::Reasoning(text)),
            _ => out.push(Piece::Text { tag, text }),
        }
    }

    /// More tool-call body text: scan it, open the call once its name is known and its
    /// arguments object starts, stream the arguments so far.
    fn feed_body(&mut self, text: &str, out: &mut Vec<Piece<T>>) {
        let b = &mut self.body;
        b.text.push_str(text);
        // The scanner sees the body from its first byte; offsets are body offsets.
        let marks = b.scan.feed(text);
        for m in marks {
            match m {
                Mark::Key { start, end } => {
                    b.key = serde_json::from_str::<String>(&b.text[start..end]).ok();
                }
                Mark::ValueStart(p) => match b.key.as_deref() {
                    Some("name") => b.name_start = Some(p),
                    Some("arguments" | "parameters") => b.args_start = Some(p),
                    _ => {}
                },
                Mark::ValueEnd(p) => match b.key.as_deref() {
                    Some("name") => {
                        b.name = b
                            .name_start
                            .and_then(|s| serde_json::from_str::<String>(&b.text[s..p]).ok())
                    }
                    Some("arguments" | "parameters") => b.args_end = Some(p),
                    _ => {}
                },
            }
        }
        let object_args = |b: &Body| {
            b.args_start
                .is_some_and(|s| b.text.as_bytes().get(s) == Some(&b'{'))
        };
        let enabled = self.config.calls_enabled;
        if enabled && b.streamed.is_none() && !b.scan.failed() && b.name.is_some() && object_args(b)
        {
            b.streamed = b.args_start;
            out.push(Piece::CallStart {
                name: b.name.clone().unwrap_or_default(),
            });
        }
        if let Some(from) = b.streamed {
            let to = b.args_end.unwrap_or_else(|| b.scan.position());
            if to > from && b.text.is_char_boundary(to) {
                out.push(Piece::CallArgs(b.text[from..to].to_owned()));
                b.streamed = Some(to);
            }
        }
    }

    /// The call body ended (`closed`: by its end marker, else by the end of output).
    fn end_call(&mut self, closed: bool, out: &mut Vec<Piece<T>>) {
        let b = std::mem::take(&mut self.body);
        let call = parse_call(&b.text).filter(|_| self.config.calls_enabled);
        match (b.streamed, call) {
            (Some(upto), Some(_)) if b.args_end.is_some() => {
                let (s, e) = (b.args_start.unwrap_or(0), b.args_end.unwrap_or(0));
                if upto < e {
                    out.push(Piece::CallArgs(b.text[upto..e].to_owned()));
                }
                out.push(Piece::CallEnd {
                    arguments: b.text[s..e].to_owned(),
                    complete: true,
                });
            }
            (Some(upto), _) => {
                let s = b.args_start.unwrap_or(0);
                out.push(Piece::CallEnd {
                    arguments: b.text[s..upto].to_owned(),
                    complete: false,
                });
                let rest = b.text[upto..].trim();
                if closed && !rest.is_empty() {
                    out.push(Piece::Text {
                        tag: T::default(),
                        text: rest.to_owned(),
                    });
                }
            }
            (None, Some((name, parsed))) => {
                // The model's own text where the arguments were an object.
                let arguments = match (b.args_start, b.args_end) {
                    (Some(s), Some(e)) if b.text.as_bytes().get(s) == Some(&b'{') => {
                        b.text[s..e].to_owned()
                    }
                    _ => parsed,
                };
                out.push(Piece::CallStart { name });
                out.push(Piece::CallArgs(arguments.clone()));
                out.push(Piece::CallEnd {
                    arguments,
                    complete: true,
                });
            }
            (None, None) => {
                let t = b.text.trim();
                if !t.is_empty() {
                    out.push(Piece::Text {
                        tag: T::default(),
                        text: t.to_owned(),
                    });
                }
            }
        }
    }
}

/// A complete Hermes call body: `{"name": string, "arguments": object | JSON string}`
/// (`parameters` accepted for `arguments`; absent arguments are `{}`). Returns the name
/// and the arguments as JSON text.
fn parse_call(body: &str) -> Option<(String, String)> {
    let Value::Object(o) = serde_json::from_str::<Value>(body.trim()).ok()? else {
        return None;
    };
    let name = o.get("name")?.as_str()?.to_owned();
    if name.is_empty() {
        return None;
    }
    let args = match o.get("arguments").or_else(|| o.get("parameters")) {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(Value::String(s)) => {
            // Arguments as a JSON string holding an object (some models do this).
            match serde_json::from_str::<Value>(s).ok()? {
                v @ Value::Object(_) => v.to_string(),
                _ => return None,
            }
        }
        Some(v @ Value::Object(_)) => v.to_string(),
        Some(_) => return None,
    };
    Some((name, args))
}

#[cfg(test)]
#[path = "output_parser_tests.rs"]
mod tests;
