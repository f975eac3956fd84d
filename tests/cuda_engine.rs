//! The CUDA backend end to end, on a GPU (harness = false: `tests/gpu_harness` prints NOT
//! RUN without a device and never counts that as a pass; `RILL_GPU_TESTS=required` makes
//! "no device" a failure). Models come from `$RILL_GPU_MODELS` (the directory
//! `scripts/gpu/make_models.py` wrote: `qwen3-tiny`, `llama-tiny`), transformers'
//! reference from `$RILL_HF_REFERENCE` (`scripts/gpu/hf_reference.py`'s directory); on a
//! machine with a GPU a missing variable or directory is a failure. `scripts/gpu/run_all.sh
//! check` sets both.
//!
//! - `greedy_*_cuda_equals_cpu`: the Engine on `"cuda"` and on `"cpu"`, same requests
//!   (greedy, `ignore_eos`, 32 tokens, logprobs with 5 alternatives, parsers off so every
//!   token is answer text): every stream passes the stream checker, stats say
//!   `"device": "cuda…"`, and the 32 tokens are equal, except that a stream may part at a
//!   near-tie (both engines' top-2 margins under the tolerance, each one's token among the
//!   other's alternatives), after which the two continuations are not compared.
//! - `greedy_chunked_qwen3_tiny_cuda_equals_cpu`: the same with prompts prefilled 16
//!   tokens a step (`max_num_batched_tokens: 16`) on both engines: chunked prefill over
//!   the paged cache, steps mixing prefill chunks with decodes, runs of steps that read
//!   nothing back (so nothing waits for the device between them), and a shared first
//!   paragraph that later prompts find in the prefix cache.
//! - `logits_*_match_transformers`: rill's logits along transformers' greedy tokens (the
//!   prompt as one prefill, then one decode step per token, KV in the paged cache), on the
//!   GPU through `CudaRunner` and on the CPU through `Decoder`, against transformers' f32
//!   logits: relative error per step (||rill - f32|| / ||f32||) within bf16 tolerance
//!   (the larger of 3e-2 and 3x transformers' own bf16-vs-f32 error), and rill's argmax
//!   equal to transformers' greedy token at every step except near-ties (the two tokens'
//!   f32 logits closer than 4x the errors seen on those two logits).
//! - `concurrent_256_with_cancels`: 256 requests at once on qwen3-tiny (greedy and seeded
//!   sampling, some with logprobs), every 7th cancelled after its second text delta: every
//!   stream passes the checker, cancelled ones end `cancelled` (or ran to their limit
//!   first), the others `incomplete` at `max_output_tokens`; no stream waits more than 60 s
//!   for an event; afterwards the stats show no running or waiting request and every KV
//!   block free.
//! - `out_of_range_device_is_invalid_config`: `"cuda:7"` on a one-GPU machine fails
//!   create with InvalidConfig naming `device`.
//! - create-time failures (`cuda_engine/create_errors.rs`): a KV cache larger than the
//!   free memory, weights larger than the device and a too-old driver (the last two on
//!   the emulated driver, which can be made small or old) are clear errors that leave no
//!   device memory held; with a driver but no cuBLAS, `"auto"` runs on the CPU and says
//!   why, and `"cuda"` fails naming the library (emulated).
//! - `a_device_fault_fails_every_stream_and_poisons_the_engine` (`cuda_engine/device_fault.rs`,
//!   emulated): a kernel fault mid-decode fails every stream cleanly and poisons the engine,
//!   whose drop then returns without a panic.
//! - `greedy_chunked_with_pageable_inputs_equals_cpu` (`cuda_engine/pageable_inputs.rs`,
//!   emulated): the chunked greedy parity with the step inputs in pageable memory.
//! - `greedy_after_a_failed_capture_equals_cpu` (`cuda_engine/failed_capture.rs`,
//!   emulated): graph captures that fail two ways; graphs go off, the parity holds.
//! - `greedy_with_preemption_equals_cpu` (`cuda_engine/preemption.rs`, emulated): the
//!   parity with a 10-block KV cache, so requests are preempted and recomputed.
//! - `greedy_on_two_engines_at_once_equals_cpu` (`cuda_engine/two_engines.rs`, emulated):
//!   Qwen3 and Llama engines on one GPU at once, both at parity.
//!
//! `cuda_engine --cpu-reference-check` (no GPU needed) runs only the CPU half of the
//! transformers comparison: it checks the reference files and rill's CPU backend against
//! them, so a GPU failure can be told from a bad reference.

mod gpu_harness;

#[path = "cuda_engine/create_errors.rs"]
mod create_errors;
#[path = "cuda_engine/device_fault.rs"]
mod device_fault;
#[path = "cuda_engine/failed_capture.rs"]
mod failed_capture;
#[path = "cuda_engine/pageable_inputs.rs"]
mod pageable_inputs;
#[path = "cuda_engine/preemption.rs"]
mod preemption;
#[path = "cuda_engine/two_engines.rs"]
mod two_engines;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, RecvTimeoutError};
use rill::backend::cpu::kv::PagedKv;
use rill::backend::cpu::pool::ThreadPool;
use rill::ffi::status::RillStatus;
use rill::model::{self, StepBatch};
use rill::responses::check::check_stream;
use rill::{Engine, EngineConfig, Error, Sink};
use serde_json::{json, Value};

type TestResult = Result<(), String>;

const BLOCK: usize = 16;
/// Longest wait for any event of a stream.
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------ inputs

/// `$name`, which must be set on a machine with a GPU.
fn env_dir(name: &str, what: &str) -> Result<PathBuf, String> {
    let d = std::env::var_os(name).map(PathBuf::from).ok_or_else(|| {
        format!("${name} is not set: it must name {what} (scripts/gpu/run_all.sh sets it)")
    })?;
    if !d.is_dir() {
        return Err(format!("${name}={} is not a directory", d.display()));
    }
    Ok(d)
}

/// The model directory `name` under `$RILL_GPU_MODELS`.
fn model_dir(name: &str) -> Result<PathBuf, String> {
    let d = env_dir(
        "RILL_GPU_MODELS",
        "scripts/gpu/make_models.py's output directory",
    )?
    .join(name);
    if !d.join("rill_model.json").is_file() {
        return Err(format!(
            "{} has no rill_model.json: generate it with scripts/gpu/make_models.py",
            d.display()
        ));
    }
    Ok(d)
}

fn engine(model: &Path, device: &str, extra: Value) -> Result<Engine, String> {
    let mut c = json!({"model": model, "device": device, "seed": 7,
                       "reasoning_parser": "none", "tool_call_parser": "none"});
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let config = EngineConfig::from_json(&c.to_string()).map_err(|e| format!("config: {e}"))?;
    Engine::new(config).map_err(|e| format!("creating the engine on {device}: {e}"))
}

// ------------------------------------------------------------------ streams

/// Submits every body at once (callback sinks) and collects every stream to its terminal
/// event. `cancel_after(i)`: cancel request `i` once that many text deltas arrived. Fails
/// when a stream waits longer than [`EVENT_TIMEOUT`] for its next event.
fn run_streams(
    e: &Engine,
    bodies: &[String],
    cancel_after: impl Fn(usize) -> Option<usize>,
) -> Result<Vec<Vec<Value>>, String> {
    let mut cancelled = vec![false; bodies.len()];
    run_streams_with(e, bodies, |i, deltas, id| {
        if !cancelled[i] && cancel_after(i).is_some_and(|n| deltas >= n) {
            cancelled[i] = true;
            e.cancel(id).map_err(|err| format!("cancel {i}: {err}"))?;
        }
        Ok(())
    })
}

/// [`run_streams`] with `on_delta(i, deltas, id)` called at each text delta of request
/// `i` (id `id`, `deltas` of them so far).
fn run_streams_with(
    e: &Engine,
    bodies: &[String],
    mut on_delta: impl FnMut(usize, usize, u64) -> Result<(), String>,
) -> Result<Vec<Vec<Value>>, String> {
    let (tx, rx) = unbounded::<(usize, Value)>();
    let mut ids = Vec::with_capacity(bodies.len());
    for (i, b) in bodies.iter().enumerate() {
        let tx = tx.clone();
        let id = e
            .submit(
                b,
                Sink::Callback(Box::new(move |_, ev, _| {
                    let v = serde_json::from_str(ev).unwrap_or_else(|_| json!({"unparsable": ev}));
                    let _ = tx.send((i, v));
                })),
            )
            .map_err(|err| format!("submit {i}: {err}"))?;
        ids.push(id);
    }
    drop(tx);
    let mut streams: Vec<Vec<Value>> = vec![Vec::new(); bodies.len()];
    let mut deltas = vec![0usize; bodies.len()];
    let mut open = bodies.len();
    while open > 0 {
        let (i, ev) = match rx.recv_timeout(EVENT_TIMEOUT) {
            Ok(x) => x,
            Err(RecvTimeoutError::Timeout) => {
                let waiting: Vec<usize> = (0..bodies.len())
                    .filter(|&i| !is_terminal(streams[i].last()))
                    .take(10)
                    .collect();
                return Err(format!(
                    "no event for {EVENT_TIMEOUT:?} with {open} streams open (first: {waiting:?})"
                ));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(format!("the engine dropped {open} streams"))
            }
        };
        if ev["type"] == "response.output_text.delta" {
            deltas[i] += 1;
            on_delta(i, deltas[i], ids[i])?;
        }
        let terminal = is_terminal(Some(&ev));
        streams[i].push(ev);
        if terminal {
            open -= 1;
        }
    }
    Ok(streams)
}

fn is_terminal(ev: Option<&Value>) -> bool {
    ev.and_then(|e| e["type"].as_str()).is_some_and(|t| {
        matches!(
            t,
            "response.completed" | "response.incomplete" | "response.failed"
        )
    })
}

fn response(events: &[Value]) -> &Value {
    &events[events.len() - 1]["response"]
}

/// The logprob entries of a stream's `output_text.done`.
fn logprob_entries(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .find(|e| e["type"] == "response.output_text.done")
        .and_then(|e| e["logprobs"].as_array().cloned())
        .unwrap_or_default()
}

// ------------------------------------------------------------------ (a) engine: cuda vs cpu

const GREEDY_PROMPTS: [&str; 5] = [
    "Hello!",
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "List three prime numbers and explain why each is prime.",
    "def add(a, b):\n    return a + b\n\n# Explain this function, then rewrite it in Rust.",
    "Translate to French: the cat sleeps on the warm windowsill while the rain falls.",
];

fn greedy_body(prompt: &str) -> String {
    json!({"input": prompt, "temperature": 0, "max_output_tokens": 32, "ignore_eos": true,
           "include": ["message.output_text.logprobs"], "top_logprobs": 5})
    .to_string()
}

/// The identity of a logprob entry's token: its text and bytes (tokens without text, such
/// as control tokens, differ in neither; their logprob tells them apart well enough).
fn token_key(x: &Value) -> (String, String) {
    (
        x["token"].as_str().unwrap_or("").to_owned(),
        x["bytes"].to_string(),
    )
}

/// A's logprob of the token `key` among A's entry's alternatives.
fn alt_logprob(entry: &Value, key: &(String, String)) -> Option<f64> {
    entry["top_logprobs"]
        .as_array()?
        .iter()
        .find(|t| &token_key(t) == key)
        .and_then(|t| t["logprob"].as_f64())
}

/// How two greedy streams' logprob entries compare.
#[derive(Debug)]
struct GreedyComparison {
    /// Largest |logprob difference| of the chosen token over those steps.
    max_logprob_diff: f64,
    /// Where they part: (step, cpu margin, cuda margin) (margins in logits: each engine's
    /// top-1 logprob minus its logprob of the other's token).
    parted: Option<(usize, f64, f64)>,
}

/// Compares the entries step by step; `Err` when they part where neither engine saw a
/// near-tie (margin above `near_tie` or the other's token outside its top 5).
fn compare_greedy(
    cpu: &[Value],
    cuda: &[Value],
    near_tie: f64,
) -> Result<GreedyComparison, String> {
    let mut max_diff: f64 = 0.0;
    for (i, (a, b)) in cpu.iter().zip(cuda).enumerate() {
        let (ka, kb) = (token_key(a), token_key(b));
        let (la, lb) = (
            a["logprob"].as_f64().unwrap_or(f64::NAN),
            b["logprob"].as_f64().unwrap_or(f64::NAN),
        );
        let same_token = ka == kb && (!ka.0.is_empty() || (la - lb).abs() < 1.0);
        if same_token {
            max_diff = max_diff.max((la - lb).abs());
            if !max_diff.is_finite() {
                return Err(format!(
                    "step {i}: logprob not finite (cpu {la}, cuda {lb})"
                ));
            }
            continue;
        }
        let margin_cpu = alt_logprob(a, &kb).map(|x| la - x);
        let margin_cuda = alt_logprob(b, &ka).map(|x| lb - x);
        return match (margin_cpu, margin_cuda) {
            (Some(mc), Some(mg)) if mc <= near_tie && mg <= near_tie => Ok(GreedyComparison {
                max_logprob_diff: max_diff,
                parted: Some((i, mc, mg)),
            }),
            _ => Err(format!(
                "step {i}: cpu chose {:?} ({la:.4}), cuda chose {:?} ({lb:.4}); margins cpu \
                 {margin_cpu:?}, cuda {margin_cuda:?} (near-tie tolerance {near_tie}; None: the \
                 other's token is not in the top 5)",
                ka.0, kb.0
            )),
        };
    }
    Ok(GreedyComparison {
        max_logprob_diff: max_diff,
        parted: None,
    })
}

/// Near-tie tolerance and the largest allowed logprob difference of a chosen token, in
/// logits. bf16 engines differ by ~1e-2 relative in their logits (transformers' bf16 vs
/// f32: 1.1e-2..1.4e-2 on these models); qwen3-tiny's logits are ~25 at the top, so a few
/// tenths; llama-tiny's chosen tokens have probability ~1 (margins of 6-120 logits).
const NEAR_TIE: f64 = 1.0;
const MAX_CHOSEN_LOGPROB_DIFF: f64 = 0.5;

/// The greedy parity check of `device` against the CPU (`device` "cpu" checks the test
/// itself: `--cpu-reference-check`).
fn greedy_equals_cpu(name: &str, device: &str) -> TestResult {
    let stats = greedy_equals_cpu_with(name, device, &GREEDY_PROMPTS, json!({}))?;
    graphs_used_on_cuda(device, &stats)
}

/// On a GPU, decode steps must have replayed CUDA graphs: a failed capture turns them off
/// (the engine keeps running eagerly, and would pass the parity without them). The CPU
/// (`--cpu-reference-check`) has no graphs.
fn graphs_used_on_cuda(device: &str, stats: &Value) -> TestResult {
    let b = &stats["backend"];
    let used = b["cuda_graphs"] == "on" && b["graph_steps"].as_u64() > Some(0);
    if device.starts_with("cuda") && !used {
        return Err(format!("CUDA graphs were not used: backend stats {b}"));
    }
    Ok(())
}

/// [`greedy_equals_cpu`] with prompts prefilled 16 tokens a step: a prompt spans several
/// steps, the first ones without a logits row (nothing to read back, so no host
/// synchronisation between them), mixed with the other requests' decode steps; each chunk
/// attends to the earlier ones through the paged cache.
/// Every prompt starts with [`SHARED_CONTEXT`], so after the first one the others also
/// begin with prefix-cache hits.
fn greedy_chunked_equals_cpu(name: &str, device: &str) -> TestResult {
    let prompts: Vec<String> = GREEDY_PROMPTS
        .iter()
        .map(|p| format!("{SHARED_CONTEXT}\n\n{p}"))
        .collect();
    let stats = greedy_equals_cpu_with(
        name,
        device,
        &prompts,
        json!({"max_num_batched_tokens": CHUNK}),
    )?;
    graphs_used_on_cuda(device, &stats)
}

const CHUNK: usize = 16;

const SHARED_CONTEXT: &str = "You are a careful assistant in a small harbour town. The \
    lighthouse stands on the northern cliff, the bakery opens at six, the ferry leaves at \
    nine and returns at four, and the library keeps old maps of the coast. Answer the \
    question below in plain words, and keep the answer short.";

/// The greedy parity of `device` with the CPU on `prompts` (engine config `extra`);
/// returns the stats of the engine on `device` afterwards.
fn greedy_equals_cpu_with(
    name: &str,
    device: &str,
    prompts: &[impl AsRef<str>],
    extra: Value,
) -> Result<Value, String> {
    let dir = model_dir(name)?;
    let cpu = engine(&dir, "cpu", extra.clone())?;
    let cuda = engine(&dir, device, extra.clone())?;
    let stats = cuda.stats();
    let reported = stats["device"].as_str().unwrap_or("");
    if !reported.starts_with(device) {
        return Err(format!(
            "the engine on {device:?} reports device {reported:?}: {stats}"
        ));
    }
    let bodies: Vec<String> = prompts.iter().map(|p| greedy_body(p.as_ref())).collect();
    let on_cpu = run_streams(&cpu, &bodies, |_| None)?;
    let on_cuda = run_streams(&cuda, &bodies, |_| None)?;
    if let Some(chunk) = extra["max_num_batched_tokens"].as_u64() {
        let longest = on_cpu
            .iter()
            .filter_map(|evs| response(evs)["usage"]["input_tokens"].as_u64())
            .max()
            .unwrap_or(0);
        if longest < 3 * chunk {
            return Err(format!(
                "the longest prompt has {longest} tokens: too few to prefill in 3 chunks of {chunk}"
            ));
        }
    }
    let mut parted = 0;
    for (i, (a, b)) in on_cpu.iter().zip(&on_cuda).enumerate() {
        check_stream(a).map_err(|e| format!("prompt {i} on cpu: {e}"))?;
        check_stream(b).map_err(|e| format!("prompt {i} on cuda: {e}"))?;
        for (what, evs) in [("cpu", a), ("cuda", b)] {
            let r = response(evs);
            if r["status"] != "incomplete" || r["usage"]["output_tokens"] != 32 {
                return Err(format!(
                    "prompt {i} on {what}: status {} with {} output tokens, expected incomplete \
                     with 32 (ignore_eos)",
                    r["status"], r["usage"]["output_tokens"]
                ));
            }
        }
        if response(a)["usage"]["input_tokens"] != response(b)["usage"]["input_tokens"] {
            return Err(format!("prompt {i}: different input token counts"));
        }
        let (la, lb) = (logprob_entries(a), logprob_entries(b));
        if la.len() != 32 || lb.len() != 32 {
            return Err(format!(
                "prompt {i}: {} / {} logprob entries (cpu / cuda), expected 32",
                la.len(),
                lb.len()
            ));
        }
        let c = compare_greedy(&la, &lb, NEAR_TIE).map_err(|e| format!("prompt {i}: {e}"))?;
        if c.max_logprob_diff > MAX_CHOSEN_LOGPROB_DIFF {
            return Err(format!(
                "prompt {i}: chosen tokens' logprobs differ by up to {:.4} (> {MAX_CHOSEN_LOGPROB_DIFF})",
                c.max_logprob_diff
            ));
        }
        match c.parted {
            None => println!(
                "  {name} prompt {i}: 32/32 tokens equal, chosen logprobs within {:.2e}",
                c.max_logprob_diff
            ),
            Some((step, mc, mg)) => {
                parted += 1;
                println!(
                    "  {name} prompt {i}: equal for {step} tokens, then parted at a near-tie \
                     (margins cpu {mc:.4}, cuda {mg:.4}); chosen logprobs within {:.2e}",
                    c.max_logprob_diff
                );
            }
        }
    }
    if name == "llama-tiny" && parted > 0 {
        // Its margins are 6..120 logits: a near-tie there is not rounding.
        return Err(format!(
            "llama-tiny: {parted} prompts parted; this model has no near-ties"
        ));
    }
    Ok(cuda.stats())
}

// ------------------------------------------------------------------ (b) logits vs transformers

/// One prompt of `reference.json` with its logits.
struct RefPrompt {
    name: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    bf16: Vec<f32>,
    f32: Vec<f32>,
    bf16_vs_f32: Vec<f64>,
}

struct Reference {
    vocab: usize,
    steps: usize,
    prompts: Vec<RefPrompt>,
}

fn ids(v: &Value, what: &str) -> Result<Vec<u32>, String> {
    v.as_array()
        .ok_or(format!("reference.json: {what} is not a list"))?
        .iter()
        .map(|x| {
            x.as_u64()
                .map(|n| n as u32)
                .ok_or(format!("reference.json: {what} has a non-id"))
        })
        .collect()
}

fn read_f32(path: &Path, len: usize) -> Result<Vec<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() != len * 4 {
        return Err(format!(
            "{}: {} bytes, expected {}",
            path.display(),
            bytes.len(),
            len * 4
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn read_reference(name: &str) -> Result<Reference, String> {
    let dir = env_dir(
        "RILL_HF_REFERENCE",
        "scripts/gpu/hf_reference.py's output directory",
    )?
    .join(name);
    let path = dir.join("reference.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if doc["format"] != 1 {
        return Err(format!(
            "{}: format {} is not 1",
            path.display(),
            doc["format"]
        ));
    }
    let vocab = doc["vocab_size"]
        .as_u64()
        .ok_or("reference.json: no vocab_size")? as usize;
    let steps = doc["steps"].as_u64().ok_or("reference.json: no steps")? as usize;
    let mut prompts = Vec::new();
    for p in doc["prompts"]
        .as_array()
        .ok_or("reference.json: no prompts")?
    {
        let file = |k: &str| -> Result<PathBuf, String> {
            p[k].as_str().map(|f| dir.join(f)).ok_or(format!(
                "reference.json: prompt without {k} (run hf_reference.py without --no-f32)"
            ))
        };
        prompts.push(RefPrompt {
            name: p["name"].as_str().unwrap_or("?").to_owned(),
            prompt_ids: ids(&p["prompt_ids"], "prompt_ids")?,
            greedy_ids: ids(&p["greedy_ids"], "greedy_ids")?,
            bf16: read_f32(&file("bf16_logits")?, steps * vocab)?,
            f32: read_f32(&file("f32_logits")?, steps * vocab)?,
            bf16_vs_f32: p["bf16_vs_f32_rel_err"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default(),
        });
    }
    Ok(Reference {
        vocab,
        steps,
        prompts,
    })
}

/// One forward step of a backend: the logits of the last token of each sequence.
type Forward<'a> = Box<dyn FnMut(&StepBatch) -> Result<Vec<Vec<f32>>, String> + 'a>;

/// Sizes shared by both backends' caches: the longest reference prompt plus its steps.
const MAX_MODEL_LEN: usize = 2048;
const NUM_BLOCKS: usize = MAX_MODEL_LEN / BLOCK;

/// rill's logits along `greedy` after `prompt`: one prefill, then one decode step per
/// token (the last greedy token is never fed).
fn logits_along(
    forward: &mut Forward,
    prompt: &[u32],
    greedy: &[u32],
) -> Result<Vec<Vec<f32>>, String> {
    let mut rows = Vec::with_capacity(greedy.len());
    let first = forward(&StepBatch::one_sequence(prompt, 0, NUM_BLOCKS, BLOCK))?;
    rows.push(
        first
            .into_iter()
            .next()
            .ok_or("prefill returned no logits")?,
    );
    for (i, &t) in greedy[..greedy.len() - 1].iter().enumerate() {
        let out = forward(&StepBatch::one_sequence(
            &[t],
            prompt.len() + i,
            NUM_BLOCKS,
            BLOCK,
        ))?;
        rows.push(out.into_iter().next().ok_or("decode returned no logits")?);
    }
    Ok(rows)
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let (mut d, mut n) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        d += (f64::from(x) - f64::from(y)).powi(2);
        n += f64::from(y).powi(2);
    }
    (d / n.max(1e-300)).sqrt()
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Summary of one backend against the reference.
#[derive(Default)]
struct LogitReport {
    max_rel_err: f64,
    tolerance: f64,
    argmax_equal: usize,
    near_ties: usize,
    steps: usize,
}

/// Compares `forward`'s logits with the reference of every prompt; `Err` on an error above
/// tolerance, a NaN, or an argmax difference that is not a near-tie.
fn compare_with_reference(
    label: &str,
    forward: &mut Forward,
    r: &Reference,
) -> Result<LogitReport, String> {
    let mut rep = LogitReport::default();
    for p in &r.prompts {
        if p.prompt_ids.len() + r.steps > MAX_MODEL_LEN {
            return Err(format!("{}: prompt too long for the test's cache", p.name));
        }
        let rows = logits_along(forward, &p.prompt_ids, &p.greedy_ids)?;
        let own = p.bf16_vs_f32.iter().copied().fold(0.0, f64::max);
        let tol = (3.0 * own).max(3e-2);
        rep.tolerance = rep.tolerance.max(tol);
        let mut worst = 0f64;
        for (i, row) in rows.iter().enumerate() {
            if row.len() != r.vocab {
                return Err(format!(
                    "{label} {} step {i}: {} logits, expected {}",
                    p.name,
                    row.len(),
                    r.vocab
                ));
            }
            if let Some(j) = row.iter().position(|x| !x.is_finite()) {
                return Err(format!(
                    "{label} {} step {i}: logit {j} is {}",
                    p.name, row[j]
                ));
            }
            let f32row = &p.f32[i * r.vocab..(i + 1) * r.vocab];
            let bf16row = &p.bf16[i * r.vocab..(i + 1) * r.vocab];
            let e = rel_err(row, f32row);
            worst = worst.max(e);
            if e > tol {
                return Err(format!(
                    "{label} {} step {i}: relative error {e:.3e} vs transformers f32 > {tol:.3e} \
                     (transformers bf16 at that step: {:.3e})",
                    p.name,
                    p.bf16_vs_f32.get(i).copied().unwrap_or(f64::NAN)
                ));
            }
            rep.steps += 1;
            let (mine, want) = (argmax(row), p.greedy_ids[i] as usize);
            if mine == want {
                rep.argmax_equal += 1;
                continue;
            }
            // A near-tie: the two tokens' precise logits closer than 4x the errors seen on
            // exactly those two logits (rill's and transformers' bf16).
            let err = |k: usize| {
                (row[k] - f32row[k])
                    .abs()
                    .max((bf16row[k] - f32row[k]).abs())
            };
            let gap = (f32row[mine] - f32row[want]).abs();
            let allowed = 4.0 * err(mine).max(err(want)) + 1e-3;
            if gap > allowed {
                return Err(format!(
                    "{label} {} step {i}: argmax {mine} (f32 logit {}) but transformers chose {want} \
                     (f32 logit {}): gap {gap:.4} > near-tie allowance {allowed:.4}",
                    p.name, f32row[mine], f32row[want]
                ));
            }
            rep.near_ties += 1;
        }
        rep.max_rel_err = rep.max_rel_err.max(worst);
        println!(
            "  {label} {}: {} prompt tokens, max rel err vs transformers f32 {worst:.3e} \
             (transformers bf16 {own:.3e}, tolerance {tol:.3e})",
            p.name,
            p.prompt_ids.len()
        );
    }
    if rep.near_ties * 10 > rep.steps {
        return Err(format!(
            "{label}: {} near-tie argmax differences in {} steps (at most 10% expected)",
            rep.near_ties, rep.steps
        ));
    }
    println!(
        "  {label}: max rel err {:.3e} (tolerance {:.3e}); argmax = transformers' greedy token at \
         {}/{} steps, {} near-ties",
        rep.max_rel_err, rep.tolerance, rep.argmax_equal, rep.steps, rep.near_ties
    );
    Ok(rep)
}

/// The CPU backend as a [`Forward`].
fn cpu_forward(decoder: &model::Decoder) -> Result<Forward<'_>, String> {
    let c = &decoder.config;
    let mut kv =
        PagedKv::new(c.n_layers, c.kv_dim(), BLOCK, NUM_BLOCKS).map_err(|e| e.to_string())?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(16));
    let pool = ThreadPool::new(threads).map_err(|e| e.to_string())?;
    Ok(Box::new(move |b: &StepBatch| {
        Ok(decoder.forward(&pool, &mut kv, b))
    }))
}

fn cpu_matches_transformers(name: &str) -> TestResult {
    let r = read_reference(name)?;
    let loaded = model::load(&model_dir(name)?).map_err(|e| e.to_string())?;
    let mut fwd = cpu_forward(&loaded.model)?;
    compare_with_reference(&format!("{name} cpu"), &mut fwd, &r).map(|_| ())
}

/// The GPU backend as a [`Forward`], through the runner the engine uses.
#[cfg(feature = "cuda")]
fn cuda_logits_match_transformers(name: &str) -> TestResult {
    use rill::backend::cuda::device::Gpu;
    use rill::backend::cuda::runner::CudaRunner;

    let r = read_reference(name)?;
    let loaded = model::load(&model_dir(name)?).map_err(|e| e.to_string())?;
    let gpu = Gpu::open(0).map_err(|e| e.to_string())?;
    let mut runner = CudaRunner::new(
        gpu,
        &loaded.model,
        BLOCK,
        NUM_BLOCKS,
        1,
        MAX_MODEL_LEN,
        MAX_MODEL_LEN,
    )
    .map_err(|e| format!("CudaRunner::new: {e}"))?;
    let mut fwd: Forward =
        Box::new(move |b: &StepBatch| runner.forward(b).map_err(|e| e.to_string()));
    let gpu_report = compare_with_reference(&format!("{name} cuda"), &mut fwd, &r)?;
    // The CPU backend on the same reference, for the record (a reference problem shows
    // on both).
    let mut cpu = cpu_forward(&loaded.model)?;
    let cpu_report = compare_with_reference(&format!("{name} cpu"), &mut cpu, &r)?;
    println!(
        "  {name}: cuda max rel err {:.3e}, cpu {:.3e}",
        gpu_report.max_rel_err, cpu_report.max_rel_err
    );
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn cuda_logits_match_transformers(name: &str) -> TestResult {
    Err(format!(
        "{name}: built without the `cuda` feature: the GPU logits were not compared with \
         transformers"
    ))
}

// ------------------------------------------------------------------ (c) 256 concurrent

const WORDS: [&str; 12] = [
    "amber", "basalt", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "iris", "juniper",
    "kelp", "lagoon",
];

/// `n` concurrent requests with cancels on `device` (the GPU test: 256 on "cuda").
fn concurrent_with_cancels(device: &str, n: usize) -> TestResult {
    let dir = model_dir("qwen3-tiny")?;
    let e = engine(
        &dir,
        device,
        json!({"max_num_seqs": n, "max_model_len": 1024, "max_num_batched_tokens": 4096}),
    )?;
    let is_cancelled = |i: usize| i % 7 == 3;
    let mut max_tokens = Vec::with_capacity(n);
    let bodies: Vec<String> = (0..n)
        .map(|i| {
            let words: Vec<&str> = (0..(8 + i % 57))
                .map(|k| WORDS[(i * 5 + k * 7) % WORDS.len()])
                .collect();
            let max = if is_cancelled(i) {
                200
            } else {
                16 + (i * 37) % 48
            };
            max_tokens.push(max);
            let mut b = json!({"input": format!("Request {i}: {}", words.join(" ")),
                               "max_output_tokens": max, "ignore_eos": true});
            if i % 3 == 0 {
                b["temperature"] = json!(0);
            } else {
                b["temperature"] = json!(0.8);
                b["top_p"] = json!(0.95);
                b["seed"] = json!(i);
            }
            if i % 4 == 1 {
                b["include"] = json!(["message.output_text.logprobs"]);
                b["top_logprobs"] = json!(3);
            }
            b.to_string()
        })
        .collect();
    let t0 = Instant::now();
    let streams = run_streams(&e, &bodies, |i| is_cancelled(i).then_some(2))?;
    let secs = t0.elapsed().as_secs_f64();
    let mut by_status: HashMap<String, usize> = HashMap::new();
    let mut output_tokens = 0u64;
    for (i, evs) in streams.iter().enumerate() {
        check_stream(evs).map_err(|err| format!("request {i}: {err}"))?;
        let r = response(evs);
        let status = r["status"].as_str().unwrap_or("").to_owned();
        let out = r["usage"]["output_tokens"].as_u64().unwrap_or(0);
        output_tokens += out;
        *by_status.entry(status.clone()).or_default() += 1;
        let ran_to_limit = status == "incomplete"
            && r["incomplete_details"]["reason"] == "max_output_tokens"
            && out == max_tokens[i] as u64;
        if is_cancelled(i) {
            if status != "cancelled" && !ran_to_limit {
                return Err(format!(
                    "request {i} (cancelled): status {status} with {out} tokens: {}",
                    r["incomplete_details"]
                ));
            }
        } else if !ran_to_limit {
            return Err(format!(
                "request {i}: status {status} with {out} tokens, expected incomplete at \
                 max_output_tokens {} (ignore_eos)",
                max_tokens[i]
            ));
        }
    }
    let targets = (0..n).filter(|&i| is_cancelled(i)).count();
    let cancelled = by_status.get("cancelled").copied().unwrap_or(0);
    println!(
        "  {n} streams on {device} in {secs:.1} s ({output_tokens} output tokens): {by_status:?}; {cancelled} of \
         {targets} cancel targets ended cancelled"
    );
    if cancelled * 2 < targets {
        return Err(format!(
            "only {cancelled} of {targets} requests cancelled after their second delta ended \
             cancelled: the cancel path was hardly exercised"
        ));
    }
    // Stats settle when the last terminal event is delivered; allow the engine thread a
    // moment in case it publishes them just after.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = e.stats();
        let req = &st["requests"];
        let kv = &st["kv_cache"];
        let settled = req["running"] == 0
            && req["waiting"] == 0
            && kv["free_blocks"] == kv["num_blocks"]
            && req["submitted"] == n
            && req["failed"] == 0
            && req["cancelled"] == cancelled;
        if settled {
            println!(
                "  stats after: requests {}, kv_cache free {} of {} blocks, preemptions {}, \
                 backend {}",
                req, kv["free_blocks"], kv["num_blocks"], st["preemptions"], st["backend"]
            );
            return graphs_used_on_cuda(device, &st);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "stats 5 s after the last stream ended: requests {req}, kv_cache {kv} (expected \
                 none running or waiting, every block free, {n} submitted, {cancelled} cancelled, \
                 0 failed)"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ------------------------------------------------------------------ (d) device errors

fn out_of_range_device_is_invalid_config() -> TestResult {
    let dir = model_dir("qwen3-tiny")?;
    match engine_result(&dir, "cuda:7") {
        Ok(_) => Err("an engine was created on \"cuda:7\"".into()),
        Err(e) => {
            let named = matches!(&e, Error::Config { key, .. } if key == "device");
            if e.status() != RillStatus::InvalidConfig || !named {
                return Err(format!(
                    "expected InvalidConfig naming `device`, got {:?}: {e}",
                    e.status()
                ));
            }
            let m = e.to_string();
            if !m.contains("cuda:7") && !m.contains("device 7") {
                return Err(format!("the message does not name the device: {m}"));
            }
            println!("  cuda:7: {m}");
            Ok(())
        }
    }
}

fn engine_result(model: &Path, device: &str) -> rill::Result<Engine> {
    let c = json!({"model": model, "device": device});
    Engine::new(EngineConfig::from_json(&c.to_string())?)
}

// ------------------------------------------------------------------ main

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--cpu-reference-check") {
        // The tests' own logic on the CPU alone: the reference files against the CPU
        // backend, the engine comparison of the CPU with itself, 32 concurrent requests.
        let checks: [gpu_harness::Test; 6] = [
            ("qwen3-tiny cpu vs transformers", || {
                cpu_matches_transformers("qwen3-tiny")
            }),
            ("llama-tiny cpu vs transformers", || {
                cpu_matches_transformers("llama-tiny")
            }),
            ("qwen3-tiny greedy cpu vs cpu", || {
                greedy_equals_cpu("qwen3-tiny", "cpu")
            }),
            ("llama-tiny greedy cpu vs cpu", || {
                greedy_equals_cpu("llama-tiny", "cpu")
            }),
            ("qwen3-tiny greedy chunked cpu vs cpu", || {
                greedy_chunked_equals_cpu("qwen3-tiny", "cpu")
            }),
            ("32 concurrent with cancels on cpu", || {
                concurrent_with_cancels("cpu", 32)
            }),
        ];
        let mut failed = 0;
        for (name, check) in checks {
            match check() {
                Ok(()) => println!("cpu check {name} ... ok"),
                Err(e) => {
                    failed += 1;
                    println!("cpu check {name} ... FAILED\n    {e}");
                }
            }
        }
        println!("{} passed, {failed} failed", checks.len() - failed);
        return if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    #[allow(unused_mut)] // without the `cuda` feature nothing is pushed
    let mut tests: Vec<gpu_harness::Test> = vec![
        (
            "out_of_range_device_is_invalid_config",
            out_of_range_device_is_invalid_config,
        ),
        ("greedy_qwen3_tiny_cuda_equals_cpu", || {
            greedy_equals_cpu("qwen3-tiny", "cuda")
        }),
        ("greedy_llama_tiny_cuda_equals_cpu", || {
            greedy_equals_cpu("llama-tiny", "cuda")
        }),
        ("greedy_chunked_qwen3_tiny_cuda_equals_cpu", || {
            greedy_chunked_equals_cpu("qwen3-tiny", "cuda")
        }),
        ("logits_qwen3_tiny_match_transformers", || {
            cuda_logits_match_transformers("qwen3-tiny")
        }),
        ("logits_llama_tiny_match_transformers", || {
            cuda_logits_match_transformers("llama-tiny")
        }),
        ("concurrent_256_with_cancels", || {
            concurrent_with_cancels("cuda", 256)
        }),
    ];
    #[cfg(feature = "cuda")]
    tests.push((
        "kv_cache_beyond_free_memory_is_refused_at_create",
        create_errors::kv_cache_beyond_free_memory_is_refused_at_create,
    ));
    // These need a driver the test controls; all but one run in a child process each
    // (gpu_harness/child.rs).
    #[allow(unused_mut)]
    let mut children: Vec<gpu_harness::Child> = Vec::new();
    #[cfg(feature = "kernel-emu")]
    if gpu_harness::emulated() {
        use gpu_harness::Child;
        tests.push((
            "weights_beyond_device_memory_fail_at_create",
            create_errors::weights_beyond_device_memory_fail_at_create,
        ));
        children = vec![
            Child::new(
                "too_old_driver_is_refused_at_create",
                create_errors::too_old_driver_is_refused_at_create,
            ),
            Child::without_cublas(
                "auto_without_cublas_runs_on_the_cpu",
                create_errors::auto_without_cublas_runs_on_the_cpu,
            ),
            Child::new(
                "a_device_fault_fails_every_stream_and_poisons_the_engine",
                device_fault::a_device_fault_fails_every_stream_and_poisons_the_engine,
            ),
            Child::new(
                "greedy_chunked_with_pageable_inputs_equals_cpu",
                pageable_inputs::greedy_chunked_with_pageable_inputs_equals_cpu,
            ),
            Child::new(
                "greedy_after_a_failed_capture_equals_cpu",
                failed_capture::greedy_after_a_failed_capture_equals_cpu,
            ),
            Child::new(
                "greedy_with_preemption_equals_cpu",
                preemption::greedy_with_preemption_equals_cpu,
            ),
            Child::new(
                "greedy_on_two_engines_at_once_equals_cpu",
                two_engines::greedy_on_two_engines_at_once_equals_cpu,
            ),
        ];
    }
    gpu_harness::main_with_children("cuda_engine", &tests, &children)
}
