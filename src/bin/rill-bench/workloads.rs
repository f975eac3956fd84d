//! The serving workloads rill-bench runs, the same for every backend: single-stream
//! prefill (TTFT of a ~512-token prompt, 1 output token) and decode (128 tokens,
//! `ignore_eos`), aggregate throughput at several concurrency levels (distinct short
//! prompts, all submitted at once), and a prefix-cache workload (a shared ~1,000-token
//! system prompt, requests one after another). Modelled on vLLM's `benchmark_serving`
//! metrics (TTFT, ITL percentiles, output throughput) and llama.cpp's `llama-bench`
//! pp/tg tests. The concurrency levels can also use long prompts (`long_prompt`, e.g. the
//! GPU benchmark's 1,000-token prompts with 200-token outputs). Public operations: the
//! [`Backend`] trait, [`Req`], [`warm_up`], [`prefill`], [`decode`], [`concurrency`],
//! [`prefix_cache`], [`long_prompt`] and their result types.

use serde_json::{json, Value};

use crate::stats::{median, Latency, Stream};

/// One request of a workload, backend-neutral (a Responses request for rill, a chat
/// completion with a system and a user message for llama-server).
#[derive(Debug, Clone)]
pub struct Req {
    /// The system prompt (`instructions` / a system message).
    pub instructions: Option<String>,
    /// The user message.
    pub input: String,
    pub max_tokens: usize,
}

/// Marks a backend error that waited out the backend's timeout (no event, or no byte of a
/// response, for that long): after one the backend is taken to be stuck and the run
/// stops (`Failures::attempt` in main.rs). Backends put it in their timeout errors.
pub const TIMED_OUT: &str = "[timed out]";

/// An engine under test.
pub trait Backend {
    /// The column name in the report.
    fn name(&self) -> &'static str;
    /// Gets ready to serve `streams` concurrent requests (llama-server restarts with that
    /// many slots; rill's engine was created for the largest level and does nothing).
    fn prepare(&mut self, streams: usize) -> Result<(), String>;
    /// Submits every request at once (greedy, `ignore_eos`) and waits until all have
    /// ended; the streams come back in the order of `reqs`. An error from waiting out the
    /// timeout contains [`TIMED_OUT`].
    fn run(&mut self, reqs: &[Req]) -> Result<Vec<Stream>, String>;
    /// Peak resident memory of the process that runs the model, KiB.
    fn peak_rss_kib(&mut self) -> Option<u64>;
    /// Details for the report header (engine stats, server command lines).
    fn info(&self) -> Value;
    /// The engine's counters now (rill's stats), for per-step time breakdowns; `None`
    /// where the backend has none.
    fn counters(&self) -> Option<Value> {
        None
    }
}

const WORDS: [&str; 16] = [
    "apple", "river", "stone", "cloud", "music", "garden", "window", "silver", "forest", "candle",
    "bridge", "winter", "paper", "ocean", "market", "lantern",
];

/// `n` words, about one token each, starting at `offset` in the word list.
fn words(n: usize, offset: usize) -> String {
    (0..n)
        .map(|i| WORDS[(i + offset) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

/// A distinct ~40-token user prompt (~70 with the chat template) for stream `i` of the
/// workload tagged `tag`; distinct from its first word, so a cache can serve at most the
/// chat template's fixed head.
pub fn short_prompt(tag: &str, i: usize) -> String {
    let w = |k: usize| WORDS[(i * 7 + k * 3) % WORDS.len()];
    format!(
        "Request {tag}-{i}: please write a long and detailed story about a {} {} who finds a \
         {} near the {} and has to carry it across the {} before {} ends, describing every step.",
        w(0),
        w(1),
        w(2),
        w(3),
        w(4),
        w(5)
    )
}

/// A distinct prompt of about `tokens` tokens (the words count about one token each) for
/// stream `i` of the workload tagged `tag`: distinct from its first word, and its word list
/// starts at a different offset per stream, so no two streams share a cacheable prefix
/// beyond the chat template's head.
pub fn long_prompt(tag: &str, i: usize, tokens: usize) -> String {
    format!(
        "Request {tag}-{i}: continue this list. {}",
        words(tokens.saturating_sub(12), i * 7 + 3)
    )
}

/// Sends one tiny request so weights are paged in and threads are up.
pub fn warm_up(b: &mut dyn Backend) -> Result<(), String> {
    b.run(&[Req {
        instructions: None,
        input: "Say hello.".into(),
        max_tokens: 4,
    }])?;
    Ok(())
}

/// Single-stream prefill: TTFT of a prompt of about `prompt_tokens` tokens with one output
/// token, median of `runs`.
#[derive(Debug, Clone)]
pub struct Prefill {
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub ttft_ms: f64,
    pub tokens_per_s: f64,
}

pub fn prefill(b: &mut dyn Backend, prompt_tokens: usize, runs: usize) -> Result<Prefill, String> {
    let (mut ttft, mut tps, mut n, mut cached) = (Vec::new(), Vec::new(), 0, 0);
    for run in 0..runs {
        // A run-specific system prompt first: no run can reuse an earlier run's prompt.
        // The template and instructions take about 20 tokens; the input is never empty
        // (the table reports the measured prompt length).
        let req = Req {
            instructions: Some(format!("Benchmark run {run}. Read the list.")),
            input: words(prompt_tokens.saturating_sub(20).max(1), run),
            max_tokens: 1,
        };
        let s = one(b.run(&[req])?)?;
        ttft.push(s.ttft());
        tps.push(s.input_tokens as f64 / s.ttft().max(1e-9));
        n = s.input_tokens;
        cached = cached.max(s.cached_tokens);
    }
    Ok(Prefill {
        prompt_tokens: n,
        cached_tokens: cached,
        ttft_ms: median(&ttft).unwrap_or(f64::NAN) * 1e3,
        tokens_per_s: median(&tps).unwrap_or(f64::NAN),
    })
}

/// Single-stream decode: output tokens after the first over the time from the first to
/// the last token, median of `runs`.
#[derive(Debug, Clone)]
pub struct Decode {
    pub output_tokens: u64,
    pub tokens_per_s: f64,
    /// Where a step's time went in the last run, µs per engine step (rill only; see
    /// [`step_breakdown`]).
    pub step_us: Option<Value>,
}

pub fn decode(b: &mut dyn Backend, gen_tokens: usize, runs: usize) -> Result<Decode, String> {
    let (mut tps, mut n, mut step_us) = (Vec::new(), 0, None);
    for run in 0..runs {
        let req = Req {
            instructions: None,
            input: format!("Decode run {run}. Tell me a long story."),
            max_tokens: gen_tokens,
        };
        let before = b.counters();
        let s = one(b.run(&[req])?)?;
        step_us = before
            .zip(b.counters())
            .and_then(|(a, z)| step_breakdown(&a, &z));
        n = s.output_tokens;
        tps.push(
            s.decode_tps()
                .ok_or("decode run produced fewer than 2 tokens")?,
        );
    }
    Ok(Decode {
        output_tokens: n,
        tokens_per_s: median(&tps).unwrap_or(f64::NAN),
        step_us,
    })
}

/// The engine's time per step between two stats snapshots, µs: the engine thread's
/// `schedule`, `backend` and `update` (`step_time_ms`) and, on a GPU, the backend's
/// `upload`, `enqueue` and `wait` (`backend.time_ms`); `None` without steps between them.
pub fn step_breakdown(before: &Value, after: &Value) -> Option<Value> {
    let steps = after["steps"]
        .as_u64()?
        .checked_sub(before["steps"].as_u64()?)?;
    if steps == 0 {
        return None;
    }
    let per_step = |path: &[&str]| -> Option<f64> {
        let get = |v: &Value| path.iter().try_fold(v, |v, k| v.get(k))?.as_f64();
        Some((get(after)? - get(before)?) * 1000.0 / steps as f64)
    };
    let mut out = json!({"steps": steps});
    for k in ["schedule", "backend", "update"] {
        out[k] = json!(per_step(&["step_time_ms", k]));
    }
    for k in ["upload", "enqueue", "wait"] {
        if let Some(v) = per_step(&["backend", "time_ms", k]) {
            out[format!("backend_{k}")] = json!(v);
        }
    }
    Some(out)
}

/// [`step_breakdown`] as one line: `schedule 3.1, backend 950.2 (upload 20.0, enqueue
/// 5.1, wait 920.3), update 4.0 µs/step over 127 steps`.
pub fn step_breakdown_line(v: &Value) -> String {
    let f = |k: &str| v[k].as_f64().map_or("-".into(), |x| format!("{x:.1}"));
    let gpu = if v.get("backend_wait").is_some() {
        format!(
            " (upload {}, enqueue {}, wait {})",
            f("backend_upload"),
            f("backend_enqueue"),
            f("backend_wait")
        )
    } else {
        String::new()
    };
    format!(
        "schedule {}, backend {}{gpu}, update {} µs/step over {} steps",
        f("schedule"),
        f("backend"),
        f("update"),
        v["steps"]
    )
}

fn one(mut v: Vec<Stream>) -> Result<Stream, String> {
    v.pop()
        .ok_or_else(|| "backend returned no stream".to_string())
}

/// One concurrency level.
#[derive(Debug, Clone)]
pub struct Level {
    pub streams: usize,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub wall_s: f64,
    pub tokens_per_s: f64,
    pub ttft: Option<Latency>,
    pub itl: Option<Latency>,
    /// Median over the streams of each one's decode rate (output tokens after the first
    /// over the time from its first to its last token).
    pub decode_tps: f64,
    /// Why the level has no numbers (a baseline that ran out of memory), if so.
    pub error: Option<String>,
    /// Where an engine step's time went over the level (rill only; [`step_breakdown`]):
    /// the host's share of a batched step.
    pub step_us: Option<Value>,
}

/// `streams` distinct prompts with `gen_tokens` output tokens each, submitted at once;
/// aggregate = all output tokens / (last stream end - first submit). The prompts are the
/// short ones (`prompt_tokens` 0) or [`long_prompt`]s of about `prompt_tokens` tokens.
pub fn concurrency(
    b: &mut dyn Backend,
    streams: usize,
    gen_tokens: usize,
    prompt_tokens: usize,
) -> Result<Level, String> {
    let tag = format!("c{streams}");
    let reqs: Vec<Req> = (0..streams)
        .map(|i| Req {
            instructions: None,
            input: if prompt_tokens == 0 {
                short_prompt(&tag, i)
            } else {
                long_prompt(&tag, i, prompt_tokens)
            },
            max_tokens: gen_tokens,
        })
        .collect();
    let before = b.counters();
    let out = b.run(&reqs)?;
    let mut level = summarize(streams, &out);
    level.step_us = before
        .zip(b.counters())
        .and_then(|(a, z)| step_breakdown(&a, &z));
    Ok(level)
}

/// A level that produced no numbers, with the reason.
pub fn failed_level(streams: usize, error: String) -> Level {
    Level {
        error: Some(error),
        ..summarize(streams, &[])
    }
}

/// The level's numbers from its streams (pure; tested).
pub fn summarize(streams: usize, out: &[Stream]) -> Level {
    let start = out.iter().map(|s| s.submitted).min();
    let end = out.iter().map(|s| s.ended).max();
    let wall_s = match (start, end) {
        (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let output_tokens: u64 = out.iter().map(|s| s.output_tokens).sum();
    let ttft: Vec<f64> = out.iter().map(Stream::ttft).collect();
    let itl: Vec<f64> = out.iter().flat_map(Stream::itl).collect();
    let decode: Vec<f64> = out.iter().filter_map(Stream::decode_tps).collect();
    Level {
        streams,
        input_tokens: out.iter().map(|s| s.input_tokens).sum(),
        output_tokens,
        wall_s,
        tokens_per_s: if wall_s > 0.0 {
            output_tokens as f64 / wall_s
        } else {
            f64::NAN
        },
        ttft: Latency::of_secs(&ttft),
        itl: Latency::of_secs(&itl),
        decode_tps: median(&decode).unwrap_or(f64::NAN),
        error: None,
        step_us: None,
    }
}

/// The prefix-cache workload.
#[derive(Debug, Clone)]
pub struct PrefixCache {
    pub requests: usize,
    pub input_tokens: u64,
    pub cached_tokens: u64,
    pub hit_rate: f64,
    pub ttft_first_ms: f64,
    pub ttft_later_median_ms: f64,
    /// First TTFT / median later TTFT (> 1 when the cache helps).
    pub ttft_ratio: f64,
}

/// `requests` requests sharing a system prompt of about `prefix_tokens` tokens, each with
/// a distinct short user input and `gen_tokens` output tokens, sent one after another.
pub fn prefix_cache(
    b: &mut dyn Backend,
    requests: usize,
    prefix_tokens: usize,
    gen_tokens: usize,
) -> Result<PrefixCache, String> {
    let system = format!(
        "You are the archivist of a large library. The catalogue follows. {}",
        words(prefix_tokens.saturating_sub(16), 5)
    );
    let mut out = Vec::new();
    for i in 0..requests {
        let req = Req {
            instructions: Some(system.clone()),
            input: format!(
                "Question {i}: which word comes after {}?",
                WORDS[i % WORDS.len()]
            ),
            max_tokens: gen_tokens,
        };
        out.push(one(b.run(&[req])?)?);
    }
    Ok(summarize_prefix(&out))
}

/// The prefix workload's numbers from its streams, in submission order (pure; tested).
pub fn summarize_prefix(out: &[Stream]) -> PrefixCache {
    let input_tokens: u64 = out.iter().map(|s| s.input_tokens).sum();
    let cached_tokens: u64 = out.iter().map(|s| s.cached_tokens).sum();
    let first = out.first().map(Stream::ttft).unwrap_or(f64::NAN);
    let later: Vec<f64> = out.iter().skip(1).map(Stream::ttft).collect();
    let later = median(&later).unwrap_or(f64::NAN);
    PrefixCache {
        requests: out.len(),
        input_tokens,
        cached_tokens,
        hit_rate: if input_tokens > 0 {
            cached_tokens as f64 / input_tokens as f64
        } else {
            f64::NAN
        },
        ttft_first_ms: first * 1e3,
        ttft_later_median_ms: later * 1e3,
        ttft_ratio: first / later,
    }
}

/// Everything measured for one backend.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub prefill: Option<Prefill>,
    pub decode: Option<Decode>,
    pub levels: Vec<Level>,
    pub prefix: Option<PrefixCache>,
    pub peak_rss_kib: Option<u64>,
    /// Backend details for the header (engine stats, server command line).
    pub info: Value,
}

/// JSON numbers: non-finite values become null.
fn num(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

fn latency_json(l: Option<Latency>) -> Value {
    l.map_or(
        Value::Null,
        |l| json!({"p50_ms": num(l.p50_ms), "p99_ms": num(l.p99_ms)}),
    )
}

impl Report {
    pub fn to_json(&self) -> Value {
        json!({
            "info": self.info,
            "prefill": self.prefill.as_ref().map(|p| json!({
                "prompt_tokens": p.prompt_tokens, "cached_tokens": p.cached_tokens,
                "ttft_ms": num(p.ttft_ms), "tokens_per_s": num(p.tokens_per_s)})),
            "decode": self.decode.as_ref().map(|d| json!({
                "output_tokens": d.output_tokens, "tokens_per_s": num(d.tokens_per_s),
                "step_us": d.step_us})),
            "concurrency": self.levels.iter().map(|l| json!({
                "streams": l.streams, "input_tokens": l.input_tokens,
                "output_tokens": l.output_tokens, "wall_s": num(l.wall_s),
                "aggregate_tokens_per_s": num(l.tokens_per_s),
                "decode_tokens_per_s_median": num(l.decode_tps),
                "ttft": latency_json(l.ttft), "itl": latency_json(l.itl),
                "step_us": l.step_us, "error": l.error})).collect::<Vec<_>>(),
            "prefix_cache": self.prefix.as_ref().map(|p| json!({
                "requests": p.requests, "input_tokens": p.input_tokens,
                "cached_tokens": p.cached_tokens, "hit_rate": num(p.hit_rate),
                "ttft_first_ms": num(p.ttft_first_ms),
                "ttft_later_median_ms": num(p.ttft_later_median_ms),
                "ttft_first_over_later": num(p.ttft_ratio)})),
            "peak_rss_kib": self.peak_rss_kib,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn stream(t0: Instant, submit: u64, deltas: &[u64], end: u64, inp: u64, cached: u64) -> Stream {
        let ms = |n| t0 + Duration::from_millis(n);
        Stream {
            submitted: ms(submit),
            deltas: deltas.iter().map(|&d| ms(d)).collect(),
            ended: ms(end),
            input_tokens: inp,
            cached_tokens: cached,
            output_tokens: deltas.len() as u64,
        }
    }

    #[test]
    fn level_aggregates_over_first_submit_to_last_end() {
        let t0 = Instant::now();
        let out = [
            stream(t0, 0, &[100, 110, 120], 125, 50, 0),
            stream(t0, 5, &[200, 240], 500, 60, 0),
        ];
        let l = summarize(2, &out);
        assert_eq!((l.output_tokens, l.input_tokens), (5, 110));
        assert!((l.wall_s - 0.5).abs() < 1e-9);
        assert!((l.tokens_per_s - 10.0).abs() < 1e-6);
        // TTFTs 100 and 195 ms; gaps 10, 10, 40 ms.
        let ttft = l.ttft.map_or(0.0, |t| t.p50_ms);
        assert!((ttft - 147.5).abs() < 1e-6, "{ttft}");
        let itl = l.itl.map_or(0.0, |t| t.p50_ms);
        assert!((itl - 10.0).abs() < 1e-6, "{itl}");
        // Per-stream decode rates 2 / 20 ms = 100 and 1 / 40 ms = 25 tok/s.
        assert!((l.decode_tps - 62.5).abs() < 1e-6, "{}", l.decode_tps);
    }

    #[test]
    fn prefix_hit_rate_and_ttft_ratio() {
        let t0 = Instant::now();
        let out = [
            stream(t0, 0, &[400], 410, 1000, 0),
            stream(t0, 500, &[600], 610, 1000, 960),
            stream(t0, 700, &[750], 760, 1000, 960),
            stream(t0, 800, &[900], 910, 1000, 960),
        ];
        let p = summarize_prefix(&out);
        assert_eq!(
            (p.requests, p.input_tokens, p.cached_tokens),
            (4, 4000, 2880)
        );
        assert!((p.hit_rate - 0.72).abs() < 1e-9);
        assert!((p.ttft_first_ms - 400.0).abs() < 1e-6);
        assert!((p.ttft_later_median_ms - 100.0).abs() < 1e-6);
        assert!((p.ttft_ratio - 4.0).abs() < 1e-9);
    }

    #[test]
    fn long_prompts_are_distinct_and_about_the_asked_length() {
        let a = long_prompt("c16", 0, 1000);
        let b = long_prompt("c16", 1, 1000);
        assert_ne!(a, b);
        let n = a.split_whitespace().count();
        assert!((985..=1000).contains(&n), "{n} words");
        // Different streams' word lists start at different words.
        let body = |s: &str| s.split(". ").nth(1).map(str::to_owned).unwrap_or_default();
        assert_ne!(body(&a).split(' ').next(), body(&b).split(' ').next());
    }

    #[test]
    fn prompts_are_distinct_and_short() {
        let a = short_prompt("c4", 0);
        let b = short_prompt("c4", 1);
        assert_ne!(a, b);
        assert_ne!(short_prompt("c16", 0), a);
        let n = a.split_whitespace().count();
        assert!((25..=50).contains(&n), "{n} words");
        assert_eq!(words(3, 1), "river stone cloud");
    }

    #[test]
    fn json_turns_nan_into_null() {
        let r = Report {
            decode: Some(Decode {
                output_tokens: 1,
                tokens_per_s: f64::NAN,
                step_us: None,
            }),
            ..Report::default()
        };
        assert_eq!(r.to_json()["decode"]["tokens_per_s"], Value::Null);
        assert_eq!(r.to_json()["prefill"], Value::Null);
    }

    #[test]
    fn step_breakdown_divides_the_counters_by_the_steps_between_snapshots() {
        let before = json!({"steps": 10, "step_time_ms": {"schedule": 1.0, "backend": 50.0, "update": 0.5},
                            "backend": {"time_ms": {"upload": 0.2, "enqueue": 0.3, "wait": 40.0}}});
        let after = json!({"steps": 110, "step_time_ms": {"schedule": 3.0, "backend": 150.0, "update": 1.5},
                           "backend": {"time_ms": {"upload": 1.2, "enqueue": 2.3, "wait": 130.0}}});
        let v = step_breakdown(&before, &after).unwrap();
        let close = |k: &str, want: f64| {
            let got = v[k].as_f64().unwrap();
            assert!((got - want).abs() < 1e-9, "{k}: {got} vs {want}");
        };
        close("schedule", 20.0);
        close("backend", 1000.0);
        close("update", 10.0);
        close("backend_upload", 10.0);
        close("backend_enqueue", 20.0);
        close("backend_wait", 900.0);
        assert_eq!(v["steps"], 100);
        assert_eq!(
            step_breakdown_line(&v),
            "schedule 20.0, backend 1000.0 (upload 10.0, enqueue 20.0, wait 900.0), update 10.0 \
             µs/step over 100 steps"
        );
        // The CPU has no backend timers; no steps in between gives nothing.
        let cpu = |steps, ms| json!({"steps": steps, "step_time_ms": {"schedule": ms, "backend": ms, "update": ms}});
        let v = step_breakdown(&cpu(1, 1.0), &cpu(3, 2.0)).unwrap();
        assert!(v.get("backend_wait").is_none());
        assert_eq!(
            step_breakdown_line(&v),
            "schedule 500.0, backend 500.0, update 500.0 µs/step over 2 steps"
        );
        assert!(step_breakdown(&cpu(3, 1.0), &cpu(3, 1.0)).is_none());
    }
}
