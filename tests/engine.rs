//! End-to-end tests of the engine on the default model through the Rust API (the C API
//! wraps it one to one; `tests/c/` drives the same paths from C): streams that satisfy
//! the Responses invariants, limits, cancellation, concurrency, bad input, shutdown.

mod common;

use std::time::Duration;

use common::{collect, engine, submit, text_of};
use rill::responses::check::check_stream;
use rill::{Error, Sink};
use serde_json::json;

#[test]
fn a_greedy_answer_is_coherent_english_and_the_stream_is_valid() {
    let e = engine(json!({}));
    // llama.cpp's greedy answer begins "The CPU stands for Central Processing Unit" with
    // every step decisive (top-2 margin >= 0.5, tests/fixtures/llamacpp_reference.json).
    // (Its answer to "What is the capital of France?" starts with a 0.09 near-tie, so
    // which way that goes depends on float rounding.)
    let body =
        json!({"input": "What does CPU stand for?", "temperature": 0, "max_output_tokens": 100});
    let (_, rx) = submit(&e, &body.to_string()).unwrap();
    let evs = collect(&rx);
    check_stream(&evs).unwrap();
    let text = text_of(&evs);
    assert!(text.contains("Central Processing Unit"), "{text}");
    let last = evs.last().unwrap();
    assert_eq!(last["type"], "response.completed");
    let usage = &last["response"]["usage"];
    assert!(usage["input_tokens"].as_u64().unwrap() > 10);
    assert_eq!(last["response"]["output"][0]["content"][0]["text"], text);
    // Greedy is deterministic.
    let (_, rx) = submit(&e, &body.to_string()).unwrap();
    assert_eq!(text_of(&collect(&rx)), text);
}

#[test]
fn max_output_tokens_ends_incomplete() {
    let e = engine(json!({}));
    let (_, rx) = submit(
        &e,
        r#"{"input":"Write a long story about a dragon.","max_output_tokens":5,"temperature":0}"#,
    )
    .unwrap();
    let evs = collect(&rx);
    check_stream(&evs).unwrap();
    let last = evs.last().unwrap();
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(last["response"]["status"], "incomplete");
    assert_eq!(
        last["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    assert_eq!(last["response"]["usage"]["output_tokens"], 5);
    assert_eq!(last["response"]["output"][0]["status"], "incomplete");
}

#[test]
fn seeded_sampling_repeats_and_echoes_the_request() {
    let e = engine(json!({}));
    let body = json!({"input": "Tell me a fun fact.", "temperature": 0.9, "top_p": 0.95, "top_k": 40, "seed": 1234,
                      "max_output_tokens": 24, "metadata": {"k": "v"}, "instructions": "Be brief."});
    let run = || {
        let (_, rx) = submit(&e, &body.to_string()).unwrap();
        collect(&rx)
    };
    let (a, b) = (run(), run());
    check_stream(&a).unwrap();
    assert_eq!(text_of(&a), text_of(&b));
    let r = &a.last().unwrap()["response"];
    assert_eq!(r["metadata"]["k"], "v");
    assert_eq!(r["instructions"], "Be brief.");
    assert!((r["temperature"].as_f64().unwrap() - 0.9).abs() < 1e-6);
}

#[test]
fn cancel_mid_stream_ends_with_a_terminal_event() {
    let e = engine(json!({}));
    // ignore_eos: only the cancel can end this request, however fast the machine is.
    let (id, rx) = submit(
        &e,
        r#"{"input":"Count from one to one thousand in words.","temperature":0,"ignore_eos":true}"#,
    )
    .unwrap();
    // Wait for a few deltas, then cancel.
    let mut evs = Vec::new();
    while evs
        .iter()
        .filter(|v: &&serde_json::Value| v["type"] == "response.output_text.delta")
        .count()
        < 3
    {
        evs.push(rx.recv_timeout(Duration::from_secs(60)).unwrap());
    }
    e.cancel(id).unwrap();
    evs.extend(collect(&rx));
    check_stream(&evs).unwrap();
    let last = evs.last().unwrap();
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(last["response"]["status"], "cancelled");
    // Stats already reflect the cancel when its terminal event arrives.
    let stats = e.stats();
    assert_eq!(stats["requests"]["running"], 0, "{stats}");
    assert_eq!(stats["requests"]["cancelled"], 1, "{stats}");
    // Cancelling again (finished) is a no-op; an id never issued is an error.
    e.cancel(id).unwrap();
    assert!(matches!(
        e.cancel(999_999),
        Err(Error::UnknownRequest(999_999))
    ));
    assert!(matches!(e.cancel(0), Err(Error::UnknownRequest(0))));
}

#[test]
fn concurrent_callback_and_polled_requests_all_complete() {
    let e = engine(json!({"max_num_seqs": 4}));
    let prompts = [
        "Name a color.",
        "Name an animal.",
        "Name a fruit.",
        "Name a country.",
        "Name a planet.",
    ];
    let mut cb = Vec::new();
    for p in &prompts[..3] {
        let body = json!({"input": p, "temperature": 0, "max_output_tokens": 12});
        cb.push(submit(&e, &body.to_string()).unwrap());
    }
    let mut polled = Vec::new();
    for p in &prompts[3..] {
        let body = json!({"input": p, "temperature": 0, "max_output_tokens": 12});
        polled.push(e.submit(&body.to_string(), Sink::Poll).unwrap());
    }
    for (_, rx) in &cb {
        check_stream(&collect(rx)).unwrap();
    }
    // One polled request by id, the other through the any-request poll.
    let mut first = Vec::new();
    loop {
        let (ev, last) = e
            .poll_request(polled[0], Some(Duration::from_secs(60)))
            .unwrap()
            .expect("event");
        first.push(serde_json::from_str(&ev).unwrap());
        if last {
            break;
        }
    }
    check_stream(&first).unwrap();
    let mut second = Vec::new();
    loop {
        let (id, ev, last) = e.poll(Some(Duration::from_secs(60))).expect("event");
        assert_eq!(id, polled[1]);
        second.push(serde_json::from_str(&ev).unwrap());
        if last {
            break;
        }
    }
    check_stream(&second).unwrap();
    assert!(e.poll(Some(Duration::from_millis(10))).is_none());
    assert!(
        e.poll_request(polled[0], Some(Duration::ZERO)).is_err(),
        "finished polled request is forgotten"
    );
    let stats = e.stats();
    assert_eq!(stats["requests"]["submitted"], 5);
    assert_eq!(stats["requests"]["running"], 0);
}

#[test]
fn batched_greedy_equals_alone() {
    let e = engine(json!({"max_num_seqs": 8}));
    let bodies: Vec<String> = [
        "Say hello.",
        "What is 2+2?",
        "Name three colors.",
        "Describe rain in one sentence.",
    ]
    .iter()
    .map(|p| json!({"input": p, "temperature": 0, "max_output_tokens": 16}).to_string())
    .collect();
    let alone: Vec<String> = bodies
        .iter()
        .map(|b| text_of(&collect(&submit(&e, b).unwrap().1)))
        .collect();
    let rxs: Vec<_> = bodies.iter().map(|b| submit(&e, b).unwrap().1).collect();
    let together: Vec<String> = rxs.iter().map(|rx| text_of(&collect(rx))).collect();
    assert_eq!(alone, together);
}

#[test]
fn bad_requests_are_refused_and_the_engine_keeps_serving() {
    let e = engine(json!({"max_model_len": 64}));
    let long = "word ".repeat(200);
    let cases = [
        ("not json".to_owned(), "JSON"),
        (json!({"input": ""}).to_string(), "`input`"),
        (json!({"input": 5}).to_string(), "`input`"),
        (
            json!({"input": "x", "temperature": "hot"}).to_string(),
            "`temperature`",
        ),
        (
            json!({"input": "x", "model": "gpt-4o"}).to_string(),
            "`model`",
        ),
        (json!({"input": long}).to_string(), "max_model_len 64"),
    ];
    for (body, want) in &cases {
        let err = e.submit(body, Sink::Poll).expect_err(body).to_string();
        assert!(err.contains(want), "{body}: {err}");
    }
    assert!(
        e.poll(Some(Duration::from_millis(10))).is_none(),
        "a refused request queues nothing"
    );
    let (_, rx) = submit(&e, r#"{"input":"Say hi.","max_output_tokens":8}"#).unwrap();
    check_stream(&collect(&rx)).unwrap();
    // Generation stops at max_model_len with `incomplete`.
    let (_, rx) = submit(
        &e,
        r#"{"input":"Write a very long essay about the sea.","temperature":0,"ignore_eos":true}"#,
    )
    .unwrap();
    let evs = collect(&rx);
    check_stream(&evs).unwrap();
    let u = &evs.last().unwrap()["response"]["usage"];
    assert_eq!(u["total_tokens"], 64);
}

#[test]
fn dropping_the_engine_with_requests_running_delivers_terminal_events() {
    let e = engine(json!({}));
    let rxs: Vec<_> = (0..3)
        .map(|i| {
            submit(
                &e,
                &json!({"input": format!("Tell story number {i}."), "ignore_eos": true})
                    .to_string(),
            )
            .unwrap()
            .1
        })
        .collect();
    rxs[0].recv_timeout(Duration::from_secs(60)).unwrap();
    drop(e);
    for rx in &rxs {
        let evs: Vec<_> = rx.try_iter().collect();
        let last = evs.last().expect("events");
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(last["response"]["status"], "cancelled");
    }
}

#[test]
fn bad_configs_are_refused_naming_the_key_or_path() {
    let cfg = |extra| rill::EngineConfig::from_json(&common::config_json(extra));
    assert!(cfg(json!({"max_num_seqs": "many"}))
        .unwrap_err()
        .to_string()
        .contains("`max_num_seqs`"));
    assert!(cfg(json!({"model": "/no/such/model.gguf"}))
        .unwrap_err()
        .to_string()
        .contains("/no/such/model.gguf"));
    let too_long = rill::Engine::new(cfg(json!({"max_model_len": 1_000_000})).unwrap());
    assert!(too_long
        .err()
        .unwrap()
        .to_string()
        .contains("`max_model_len`"));
    let not_gguf = std::env::temp_dir().join("rill-not-a-model.gguf");
    std::fs::write(&not_gguf, b"hello, not a model").unwrap();
    let err = rill::Engine::new(cfg(json!({"model": not_gguf})).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("rill-not-a-model.gguf") && err.contains("GGUF"),
        "{err}"
    );
}
