//! The delivery thread (vLLM's output processor): turns the engine thread's token ids into
//! UTF-8-safe text deltas and Responses events, and hands each event to the request's
//! callback or to the poll queue. Host callbacks run here, never on the compute thread.
//!
//! Text goes token bytes -> `Utf8Stream` (whole characters) -> `OutputParser` (reasoning,
//! answer text and tool calls, by marker token id) -> answer text through `StopFilter`
//! (stop strings, vLLM's `check_stop_strings`, matched on the answer text) ->
//! `text_delta`, one segment per token so each delta carries the logprob entries of
//! exactly the tokens whose text it holds; reasoning and call pieces go straight to the
//! stream (pending answer text is flushed before them: a stop string cannot span a
//! marker). When a stop string matches, or the first call ends with
//! `parallel_tool_calls: false`, `Command::Stop` tells the engine thread to free the
//! request; later tokens are dropped, and the engine's finish (which carries the
//! prefix-cache usage) closes the response as completed, counting the output tokens up
//! to that point. Each request gets exactly one terminal event.

use std::cell::Cell;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::core::{panic_message, Command};
use super::{Output, Shared, Sink};
use crate::responses::output_parser::{OutputParser, Piece};
use crate::responses::stream::{Finish, LogprobEntry, ResponseStream, TopLogprob, Usage};
use crate::sampling::stop::{Released, StopFilter};
use crate::sampling::TokenLogprobs;
use crate::tokenizer::detok::Utf8Stream;
use crate::tokenizer::Tokenizer;

thread_local! {
    static ON_DELIVERY_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread is an engine's delivery thread (inside a callback).
pub fn on_delivery_thread() -> bool {
    ON_DELIVERY_THREAD.with(Cell::get)
}

struct Active {
    stream: ResponseStream,
    utf8: Utf8Stream,
    /// Reasoning / answer / call splitter.
    parser: Box<OutputParser<Option<TokenLogprobs>>>,
    /// Answer text not emitted yet, one segment per token, tagged with its logprobs.
    text: StopFilter<Option<TokenLogprobs>>,
    stop_after_call: bool,
    sink: Sink,
    output_tokens: usize,
    /// Output tokens when a stop string matched; the request ends as completed with this
    /// count whatever finish the engine sends next.
    stopped_at: Option<usize>,
}

/// The delivery thread's state.
struct State {
    active: HashMap<u64, Active>,
    commands: Sender<Command>,
}

/// Runs until every sender of `rx` is gone; requests still open then end as failed.
/// `commands` reaches the engine thread (to stop requests ended by a stop string).
pub fn run(shared: Arc<Shared>, rx: Receiver<Output>, commands: Sender<Command>) {
    ON_DELIVERY_THREAD.with(|f| f.set(true));
    let mut st = State {
        active: HashMap::new(),
        commands,
    };
    for msg in rx.iter() {
        let id = msg.id();
        let r = catch_unwind(AssertUnwindSafe(|| handle(&shared, &mut st, msg)));
        if let Err(p) = r {
            let m = format!("internal error in event delivery: {}", panic_message(&*p));
            *shared.poisoned.lock() = Some(m.clone());
            if let Some(mut a) = st.active.remove(&id) {
                let f = Finish::Failed {
                    code: "server_error",
                    message: m,
                };
                let evs = a.stream.finish(&f, Usage::default());
                emit(&shared, id, &mut a.sink, evs);
            }
        }
    }
    let lost = Finish::Failed {
        code: "server_error",
        message: "the engine stopped before this request finished".into(),
    };
    for (id, mut a) in st.active.drain() {
        let evs = a.stream.finish(&lost, Usage::default());
        emit(&shared, id, &mut a.sink, evs);
    }
}

fn handle(shared: &Shared, st: &mut State, msg: Output) {
    match msg {
        Output::Start {
            id,
            stream,
            sink,
            stop,
            parser,
            initial,
            stop_after_call,
        } => {
            let mut a = Active {
                stream: *stream,
                utf8: Utf8Stream::default(),
                parser,
                text: StopFilter::new(stop),
                stop_after_call,
                sink,
                output_tokens: 0,
                stopped_at: None,
            };
            let mut evs = a.stream.start();
            let stop = route(&shared.tokenizer, &mut a, initial, &mut evs);
            emit(shared, id, &mut a.sink, evs);
            if stop {
                a.stopped_at = Some(0);
                let _ = st.commands.send(Command::Stop(id));
            }
            st.active.insert(id, a);
        }
        Output::Token {
            id,
            token,
            logprobs,
        } => {
            let Some(a) = st.active.get_mut(&id) else {
                return;
            };
            if a.stopped_at.is_some() {
                return;
            }
            a.output_tokens += 1;
            let piece = a.utf8.push(shared.tokenizer.token_bytes(token));
            let pieces = a.parser.push(token, piece, logprobs);
            let mut evs = Vec::new();
            let mut stopped = route(&shared.tokenizer, a, pieces, &mut evs);
            if !stopped {
                // A token whose last character is incomplete keeps its segment open.
                let released = a.text.release(a.utf8.has_pending());
                stopped = released.stopped;
                evs.extend(delta(&shared.tokenizer, &mut a.stream, released));
            }
            emit(shared, id, &mut a.sink, evs);
            if stopped {
                a.stopped_at = Some(a.output_tokens);
                let _ = st.commands.send(Command::Stop(id));
            }
        }
        Output::Finish {
            id,
            mut finish,
            mut usage,
        } => {
            let Some(mut a) = st.active.remove(&id) else {
                return;
            };
            let mut evs = Vec::new();
            if let Some(n) = a.stopped_at {
                // Ended by a stop string (the engine's finish may be its answer to
                // Command::Stop, or a finish that crossed it); the text is already out.
                finish = Finish::Completed;
                usage.output_tokens = n;
            } else {
                let tail = a.utf8.finish();
                let mut pieces = if tail.is_empty() {
                    Vec::new()
                } else {
                    a.parser.push_text(tail)
                };
                pieces.extend(a.parser.finish());
                let tok = &shared.tokenizer;
                if !route(tok, &mut a, pieces, &mut evs) {
                    let released = a.text.finish();
                    evs.extend(delta(tok, &mut a.stream, released));
                }
            }
            usage.reasoning_tokens = a.parser.reasoning_tokens();
            evs.extend(a.stream.finish(&finish, usage));
            let s = &shared.stats;
            match finish {
                Finish::Completed => &s.completed,
                Finish::MaxOutputTokens => &s.incomplete,
                Finish::Cancelled => &s.cancelled,
                Finish::Failed { .. } => &s.failed,
            }
            .fetch_add(1, Ordering::Relaxed);
            emit(shared, id, &mut a.sink, evs);
        }
    }
}

/// Sends parsed pieces on: answer text into the stop filter (released by the caller),
/// everything else to the stream after the pending answer text. Returns whether the
/// response must stop here (a stop string matched, or the first call ended with
/// `parallel_tool_calls: false`).
fn route(
    tok: &Tokenizer,
    a: &mut Active,
    pieces: Vec<Piece<Option<TokenLogprobs>>>,
    evs: &mut Vec<serde_json::Value>,
) -> bool {
    for p in pieces {
        let p = match p {
            Piece::Text { tag, text } => {
                // The lossy end of a character joins the token it belongs to.
                if tag.is_some() || !a.text.append_to_last(&text) {
                    a.text.push(tag, &text);
                }
                continue;
            }
            other => other,
        };
        let released = a.text.finish();
        let stopped = released.stopped;
        evs.extend(delta(tok, &mut a.stream, released));
        if stopped {
            return true;
        }
        let s = &mut a.stream;
        match p {
            Piece::Reasoning(t) => evs.extend(s.reasoning_delta(&t)),
            Piece::ReasoningEnd => evs.extend(s.reasoning_end()),
            Piece::CallStart { name } => evs.extend(s.call_start(&name)),
            Piece::CallArgs(t) => evs.extend(s.call_args(&t)),
            Piece::CallEnd { complete, .. } => {
                evs.extend(s.call_end(complete));
                if complete && a.stop_after_call {
                    return true;
                }
            }
            Piece::Text { .. } => {}
        }
    }
    false
}

/// The text delta event of released segments, each with logprobs becoming one entry.
fn delta(
    tok: &Tokenizer,
    stream: &mut ResponseStream,
    released: Released<Option<TokenLogprobs>>,
) -> Vec<serde_json::Value> {
    let text = released.text();
    let entries = released
        .segments
        .into_iter()
        .filter_map(|s| {
            let lp = s.tag?;
            let top = lp
                .top
                .into_iter()
                .map(|(id, logprob)| {
                    let bytes = tok.token_bytes(id).to_vec();
                    TopLogprob {
                        token: String::from_utf8_lossy(&bytes).into_owned(),
                        bytes,
                        logprob,
                    }
                })
                .collect();
            Some(LogprobEntry {
                token: s.text,
                logprob: lp.logprob,
                top,
            })
        })
        .collect();
    stream.text_delta(&text, entries)
}

fn emit(shared: &Shared, id: u64, sink: &mut Sink, events: Vec<serde_json::Value>) {
    for ev in events {
        let last = matches!(
            ev["type"].as_str(),
            Some("response.completed" | "response.incomplete" | "response.failed")
        );
        let text = ev.to_string();
        match sink {
            Sink::Poll => shared.poll.push(id, text, last),
            Sink::Callback(f) => {
                // A Rust closure that panics must not take the delivery thread down.
                let _ = catch_unwind(AssertUnwindSafe(|| f(id, &text, last)));
            }
        }
    }
}
