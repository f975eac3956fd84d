//! Serving-engine tests on the default model: batch invariance (a greedy request gives the
//! same tokens alone and beside 15 others), prefix caching (reported in usage, and the
//! cached KV gives the same output as computed KV), preemption under a tiny KV cache
//! (identical output after recompute), cancellation during a long prefill, and 64
//! concurrent requests with random lengths, random cancels and a shared prefix, each
//! checked against the stream invariants and, when not cancelled, against itself alone.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{collect, engine, submit, text_of};
use rill::responses::check::check_stream;
use rill::sampling::rng::Rng;
use serde_json::{json, Value};

fn greedy(input: &str, instructions: Option<&str>, max: usize) -> String {
    let mut b =
        json!({"input": input, "temperature": 0, "max_output_tokens": max, "ignore_eos": true});
    if let Some(i) = instructions {
        b["instructions"] = json!(i);
    }
    b.to_string()
}

fn last(evs: &[Value]) -> &Value {
    evs.last().expect("events")
}

/// Runs every body at once and returns each stream's events, in order.
fn run_together(e: &rill::Engine, bodies: &[String]) -> Vec<Vec<Value>> {
    let rxs: Vec<_> = bodies
        .iter()
        .map(|b| submit(e, b).expect("submit").1)
        .collect();
    rxs.iter().map(collect).collect()
}

fn run_alone(e: &rill::Engine, body: &str) -> Vec<Value> {
    collect(&submit(e, body).expect("submit").1)
}

/// A user message of roughly `words` words, different per `seed`.
fn words(seed: u64, words: usize) -> String {
    const W: &[&str] = &[
        "river", "stone", "quiet", "market", "seven", "orange", "lantern", "north", "copper",
        "violin", "garden", "thunder", "paper", "silver", "window", "meadow",
    ];
    let mut r = Rng::new(seed);
    let mut s = String::from("Continue this list of words:");
    for _ in 0..words {
        s.push(' ');
        s.push_str(W[(r.next_u64() % W.len() as u64) as usize]);
    }
    s
}

#[test]
fn greedy_output_is_the_same_alone_and_batched_with_15_others() {
    let e = engine(json!({"enable_prefix_caching": false}));
    let bodies: Vec<String> = (0..16)
        .map(|i| greedy(&words(i, 3 + 11 * i as usize), None, 16))
        .collect();
    let alone: Vec<String> = bodies.iter().map(|b| text_of(&run_alone(&e, b))).collect();
    let together = run_together(&e, &bodies);
    for (i, evs) in together.iter().enumerate() {
        check_stream(evs).unwrap();
        assert_eq!(text_of(evs), alone[i], "request {i} differs when batched");
    }
}

#[test]
fn a_seeded_request_samples_the_same_tokens_alone_and_batched() {
    let e = engine(json!({}));
    let seeded = |i: u64| {
        json!({"input": words(i, 10), "temperature": 1.0, "top_p": 0.9, "seed": 77 + i,
               "max_output_tokens": 16, "ignore_eos": true, "frequency_penalty": 0.5})
        .to_string()
    };
    let bodies: Vec<String> = (0..8).map(seeded).collect();
    let alone: Vec<String> = bodies.iter().map(|b| text_of(&run_alone(&e, b))).collect();
    for (i, evs) in run_together(&e, &bodies).iter().enumerate() {
        check_stream(evs).unwrap();
        assert_eq!(
            text_of(evs),
            alone[i],
            "seeded request {i} differs when batched"
        );
    }
}

#[test]
fn a_shared_prefix_is_served_from_the_cache_with_identical_output() {
    let system = words(99, 700);
    let e = engine(json!({}));
    let first = run_alone(&e, &greedy("Name a colour.", Some(&system), 8));
    let u = &last(&first)["response"]["usage"];
    assert_eq!(u["input_tokens_details"]["cached_tokens"], 0);
    let input_tokens = u["input_tokens"].as_u64().unwrap();
    assert!(input_tokens > 600, "{input_tokens}");
    let second_body = greedy("Name an animal.", Some(&system), 8);
    let second = run_alone(&e, &second_body);
    check_stream(&second).unwrap();
    let cached = last(&second)["response"]["usage"]["input_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        cached >= input_tokens - 32 && cached < input_tokens,
        "cached {cached} of {input_tokens}"
    );
    assert!(e.stats()["tokens"]["cached_prompt"].as_u64().unwrap() >= cached);
    // The cached KV is the same as computed KV: same output as an engine without caching.
    let cold = engine(json!({"enable_prefix_caching": false}));
    let fresh = run_alone(&cold, &second_body);
    assert_eq!(
        last(&fresh)["response"]["usage"]["input_tokens_details"]["cached_tokens"],
        0
    );
    assert_eq!(text_of(&fresh), text_of(&second));
}

#[test]
fn preemption_under_a_small_kv_cache_gives_identical_output() {
    // 40 blocks of 16 tokens = 640 tokens for 6 requests of ~100 + 48 tokens each.
    let e = engine(json!({"kv_cache_bytes": 40 * 16 * 23040, "max_model_len": 512}));
    let kv = &e.stats()["kv_cache"];
    assert_eq!(kv["num_blocks"], 40, "{kv}");
    let bodies: Vec<String> = (0..6)
        .map(|i| greedy(&words(i + 40, 60 + 5 * i as usize), None, 48))
        .collect();
    let together = run_together(&e, &bodies);
    assert!(
        e.stats()["preemptions"].as_u64().unwrap() > 0,
        "the small cache must force preemption: {}",
        e.stats()
    );
    for (i, evs) in together.iter().enumerate() {
        check_stream(evs).unwrap();
        assert_eq!(last(evs)["response"]["usage"]["output_tokens"], 48);
        let alone = run_alone(&e, &bodies[i]);
        assert_eq!(text_of(evs), text_of(&alone), "request {i}");
    }
    assert_eq!(e.stats()["kv_cache"]["free_blocks"], 40, "no block leaked");
}

#[test]
fn a_kv_cache_too_small_for_one_sequence_is_refused_at_create() {
    let err = rill::Engine::new(
        rill::EngineConfig::from_json(&common::config_json(
            json!({"kv_cache_bytes": 100_000, "max_model_len": 2048}),
        ))
        .unwrap(),
    )
    .err()
    .expect("must fail");
    assert!(err.to_string().contains("kv_cache_bytes"), "{err}");
}

#[test]
fn cancel_during_a_long_prefill_stops_within_one_step() {
    let e = engine(json!({"max_num_batched_tokens": 256}));
    let (id, rx) = submit(&e, &greedy(&words(7, 3000), None, 4)).unwrap();
    // Wait until the prefill has run a chunk, then cancel.
    let t0 = Instant::now();
    while e.stats()["steps"].as_u64().unwrap() < 1 {
        assert!(t0.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(5));
    }
    let steps_at_cancel = e.stats()["steps"].as_u64().unwrap();
    e.cancel(id).unwrap();
    let evs = collect(&rx);
    check_stream(&evs).unwrap();
    assert_eq!(last(&evs)["response"]["status"], "cancelled");
    let steps = e.stats()["steps"].as_u64().unwrap();
    assert!(
        steps <= steps_at_cancel + 1,
        "{steps} steps after cancel at {steps_at_cancel}"
    );
    let prompt = last(&evs)["response"]["usage"]["input_tokens"]
        .as_u64()
        .unwrap();
    assert!(prompt > 3000, "{prompt}");
    assert_eq!(e.stats()["requests"]["running"], 0);
}

#[test]
fn sixty_four_concurrent_requests_with_cancels_and_a_shared_prefix() {
    let e = engine(json!({"max_num_seqs": 16, "max_num_batched_tokens": 512}));
    let system = words(5, 120);
    let mut r = Rng::new(2024);
    let bodies: Vec<String> = (0..64)
        .map(|i| {
            let shared = i % 2 == 0;
            let n = 2 + (r.next_u64() % 60) as usize;
            let max = 1 + (r.next_u64() % 12) as usize;
            greedy(&words(1000 + i, n), shared.then_some(system.as_str()), max)
        })
        .collect();
    let mut streams = Vec::new();
    for b in &bodies {
        streams.push(submit(&e, b).unwrap());
    }
    let cancelled: Vec<bool> = (0..64).map(|_| r.next_u64().is_multiple_of(4)).collect();
    for (i, (id, _)) in streams.iter().enumerate() {
        if cancelled[i] {
            e.cancel(*id).unwrap();
        }
    }
    let results: Vec<Vec<Value>> = streams.iter().map(|(_, rx)| collect(rx)).collect();
    let mut cached_total = 0;
    let mut by_status: HashMap<String, usize> = HashMap::new();
    for (i, evs) in results.iter().enumerate() {
        check_stream(evs).unwrap_or_else(|err| panic!("request {i}: {err}"));
        let resp = &last(evs)["response"];
        let status = resp["status"].as_str().unwrap().to_owned();
        *by_status.entry(status.clone()).or_default() += 1;
        cached_total += resp["usage"]["input_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap();
        if status == "cancelled" {
            assert!(cancelled[i], "request {i} cancelled unasked");
            continue;
        }
        assert_eq!(status, "incomplete", "ignore_eos runs to max_output_tokens");
        let alone = run_alone(&e, &bodies[i]);
        assert_eq!(text_of(evs), text_of(&alone), "request {i}");
    }
    assert!(
        cached_total > 0,
        "shared instructions must hit the prefix cache"
    );
    assert_eq!(by_status.values().sum::<usize>(), 64);
    let st = e.stats();
    assert_eq!(st["requests"]["running"], 0);
    assert_eq!(st["requests"]["waiting"], 0);
    assert_eq!(st["kv_cache"]["free_blocks"], st["kv_cache"]["num_blocks"]);
}
