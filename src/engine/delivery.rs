//! The delivery thread (vLLM's output processor): turns the engine thread's token ids into
//! UTF-8-safe text deltas and Responses events, and hands each event to the request's
//! callback or to the poll queue. Host callbacks run here, never on the compute thread.

use std::cell::Cell;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::Receiver;

use super::core::panic_message;
use super::{Output, Shared, Sink};
use crate::responses::stream::{Finish, ResponseStream, Usage};
use crate::tokenizer::detok::Utf8Stream;

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
    sink: Sink,
}

/// Runs until every sender of `rx` is gone; requests still open then end as failed.
pub fn run(shared: Arc<Shared>, rx: Receiver<Output>) {
    ON_DELIVERY_THREAD.with(|f| f.set(true));
    let mut active: HashMap<u64, Active> = HashMap::new();
    for msg in rx.iter() {
        let id = msg.id();
        let r = catch_unwind(AssertUnwindSafe(|| handle(&shared, &mut active, msg)));
        if let Err(p) = r {
            let m = format!("internal error in event delivery: {}", panic_message(&*p));
            *shared.poisoned.lock() = Some(m.clone());
            if let Some(mut a) = active.remove(&id) {
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
    for (id, mut a) in active.drain() {
        let evs = a.stream.finish(&lost, Usage::default());
        emit(&shared, id, &mut a.sink, evs);
    }
}

fn handle(shared: &Shared, active: &mut HashMap<u64, Active>, msg: Output) {
    match msg {
        Output::Start {
            id,
            mut stream,
            mut sink,
        } => {
            let evs = stream.start();
            emit(shared, id, &mut sink, evs);
            active.insert(
                id,
                Active {
                    stream,
                    utf8: Utf8Stream::default(),
                    sink,
                },
            );
        }
        Output::Tokens { id, tokens } => {
            let Some(a) = active.get_mut(&id) else { return };
            let mut text = String::new();
            for t in tokens {
                text.push_str(&a.utf8.push(shared.tokenizer.token_bytes(t)));
            }
            let evs = a.stream.text_delta(&text);
            emit(shared, id, &mut a.sink, evs);
        }
        Output::Finish { id, finish, usage } => {
            let Some(mut a) = active.remove(&id) else {
                return;
            };
            let tail = a.utf8.finish();
            let mut evs = a.stream.text_delta(&tail);
            evs.extend(a.stream.finish(&finish, usage));
            let st = &shared.stats;
            match finish {
                Finish::Completed => &st.completed,
                Finish::MaxOutputTokens => &st.incomplete,
                Finish::Cancelled => &st.cancelled,
                Finish::Failed { .. } => &st.failed,
            }
            .fetch_add(1, Ordering::Relaxed);
            emit(shared, id, &mut a.sink, evs);
        }
    }
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
