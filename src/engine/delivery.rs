//! The delivery thread (vLLM's output processor): turns the engine thread's token ids into
//! UTF-8-safe text deltas and Responses events, and hands each event to the request's
//! callback or to the poll queue. Host callbacks run here, never on the compute thread.
//!
//! Text goes token bytes -> `Utf8Stream` (whole characters) -> `StopFilter` (stop strings,
//! vLLM's `check_stop_strings`) -> `text_delta`, one segment per token so each delta
//! carries the logprob entries of exactly the tokens whose text it holds. When a stop
//! string matches, `Command::Stop` tells the engine thread to free the request; later
//! tokens are dropped, and the engine's finish (which carries the prefix-cache usage)
//! closes the response as completed, counting the output tokens up to the match. Each
//! request gets exactly one terminal event.

use std::cell::Cell;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::core::{panic_message, Command};
use super::{Output, Shared, Sink};
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
    /// Output text not emitted yet, one segment per token, tagged with its logprobs.
    text: StopFilter<Option<TokenLogprobs>>,
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
            mut stream,
            mut sink,
            stop,
        } => {
            let evs = stream.start();
            emit(shared, id, &mut sink, evs);
            st.active.insert(
                id,
                Active {
                    stream,
                    utf8: Utf8Stream::default(),
                    text: StopFilter::new(stop),
                    sink,
                    output_tokens: 0,
                    stopped_at: None,
                },
            );
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
            a.text.push(logprobs, &piece);
            // A token whose last character is incomplete keeps its segment open.
            let released = a.text.release(a.utf8.has_pending());
            let stopped = released.stopped;
            let evs = delta(&shared.tokenizer, &mut a.stream, released);
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
                if !tail.is_empty() && !a.text.append_to_last(&tail) {
                    a.text.push(None, &tail);
                }
                let released = a.text.finish();
                evs = delta(&shared.tokenizer, &mut a.stream, released);
            }
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
