//! `Engine::generate` (non-streaming) on the default model: the Response equals the
//! terminal event's of the same request streamed, refusals are errors that queue nothing,
//! a response that ends incomplete or cancelled is still Ok, a timeout cancels, and a call
//! from inside an event callback is refused instead of deadlocking.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{collect, engine, submit};
use rill::{Error, Sink};
use serde_json::{json, Value};

/// A Response without the values that differ between two runs of one request.
fn without_ids(mut r: Value) -> Value {
    r["id"] = json!("");
    r["created_at"] = json!(0);
    for item in r["output"].as_array_mut().into_iter().flatten() {
        item["id"] = json!("");
    }
    r
}

#[test]
fn generate_returns_the_streamed_terminal_response() {
    let e = engine(json!({}));
    let body = json!({"input": "What is the capital of Italy? Answer in one sentence.",
                      "temperature": 0, "max_output_tokens": 48})
    .to_string();
    // Warm the prefix cache so both runs below report the same cached tokens.
    e.generate(&body, None).unwrap();
    let (_, rx) = submit(&e, &body).unwrap();
    let streamed = collect(&rx).pop().unwrap()["response"].take();
    let text = e.generate(&body, None).unwrap();
    let generated: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(generated["status"], "completed");
    assert_eq!(without_ids(generated), without_ids(streamed));
}

#[test]
fn refusals_limits_and_timeouts() {
    let e = engine(json!({}));
    let err = e.generate(r#"{"input":""}"#, None).unwrap_err();
    assert!(matches!(err, Error::InvalidRequest { .. }), "{err}");
    assert!(
        e.poll(Some(Duration::ZERO)).is_none(),
        "a refusal queued events"
    );
    assert_eq!(e.stats()["requests"]["submitted"], 0);

    let cut = e
        .generate(r#"{"input":"Count to fifty.","max_output_tokens":3}"#, None)
        .unwrap();
    let cut: Value = serde_json::from_str(&cut).unwrap();
    assert_eq!(cut["status"], "incomplete");
    assert_eq!(cut["incomplete_details"]["reason"], "max_output_tokens");

    let t0 = Instant::now();
    let long = r#"{"input":"Tell me a very long story.","ignore_eos":true}"#;
    let timed = e.generate(long, Some(Duration::from_millis(200))).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(30));
    let timed: Value = serde_json::from_str(&timed).unwrap();
    assert_eq!(timed["status"], "cancelled");
}

#[test]
fn generate_inside_a_callback_is_wrong_thread() {
    let e = Arc::new(engine(json!({})));
    let seen = Arc::new(Mutex::new(None));
    let (tx, rx) = crossbeam_channel::unbounded();
    // Weak: the callback must not hold the last reference (dropping an engine on its
    // own delivery thread would join that thread from itself).
    let (e2, seen2) = (Arc::downgrade(&e), Arc::clone(&seen));
    let sink = Sink::Callback(Box::new(move |_, _, last| {
        let mut s = seen2.lock().unwrap();
        if s.is_none() {
            if let Some(e2) = e2.upgrade() {
                *s = Some(e2.generate(r#"{"input":"Hi."}"#, None).map(|_| ()));
            }
        }
        if last {
            let _ = tx.send(());
        }
    }));
    e.submit(r#"{"input":"Say hello.","max_output_tokens":4}"#, sink)
        .unwrap();
    rx.recv_timeout(Duration::from_secs(120)).unwrap();
    let r = seen.lock().unwrap().take().unwrap();
    assert!(matches!(r, Err(Error::WrongThread(_))), "{r:?}");
}
