//! `rill-bench`: measures the engine through the same API hosts use. This version
//! measures one stream: prefill tokens/s (a ~512-token prompt, time to first token) and
//! decode tokens/s (time from the first to the last output token), median of `--runs`.
//!
//! ```text
//! rill-bench --model PATH [--threads N] [--prompt-tokens 512] [--gen-tokens 128] [--runs 3]
//! ```

use std::process::ExitCode;
use std::time::Instant;

use crossbeam_channel::unbounded;
use rill::{Engine, EngineConfig, Sink};
use serde_json::{json, Value};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .ok_or(format!("{name} needs a value"))?
            .parse()
            .map_err(|_| format!("{name}: not a valid value")),
    }
}

/// Runs one request; returns (input tokens, output tokens, seconds to first token,
/// seconds from first to last token).
fn run_once(engine: &Engine, body: &str) -> Result<(u64, u64, f64, f64), String> {
    let (tx, rx) = unbounded::<(String, Instant)>();
    let t0 = Instant::now();
    engine
        .submit(
            body,
            Sink::Callback(Box::new(move |_, ev, _| {
                drop(tx.send((ev.to_owned(), Instant::now())))
            })),
        )
        .map_err(|e| e.to_string())?;
    let (mut first, mut last) = (None, t0);
    for (ev, at) in rx.iter() {
        let v: Value = serde_json::from_str(&ev).map_err(|e| e.to_string())?;
        match v["type"].as_str() {
            Some("response.output_text.delta") => {
                first.get_or_insert(at);
                last = at;
            }
            Some("response.completed" | "response.incomplete") => {
                let u = &v["response"]["usage"];
                let first = first.ok_or("no output")?;
                return Ok((
                    u["input_tokens"].as_u64().unwrap_or(0),
                    u["output_tokens"].as_u64().unwrap_or(0),
                    (first - t0).as_secs_f64(),
                    (last - first).as_secs_f64(),
                ));
            }
            Some("response.failed") => {
                return Err(format!("request failed: {}", v["response"]["error"]))
            }
            _ => {}
        }
    }
    Err("stream ended without a terminal event".into())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model: String = arg(&args, "--model", String::new())?;
    if model.is_empty() {
        return Err("usage: rill-bench --model PATH [--threads N] [--prompt-tokens N] [--gen-tokens N] [--runs N]".into());
    }
    let threads: usize = arg(&args, "--threads", 2)?;
    let prompt_tokens: usize = arg(&args, "--prompt-tokens", 512)?;
    let gen_tokens: usize = arg(&args, "--gen-tokens", 128)?;
    let runs: usize = arg(&args, "--runs", 3)?.max(1);
    let cfg = json!({"model": model, "num_threads": threads, "max_num_seqs": 1});
    let engine = Engine::new(EngineConfig::from_json(&cfg.to_string()).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    // ~1 token per word; the chat template adds ~30 tokens.
    const WORDS: [&str; 8] = [
        "apple", "river", "stone", "cloud", "music", "garden", "window", "silver",
    ];
    let words: Vec<&str> = (0..prompt_tokens.saturating_sub(30))
        .map(|i| WORDS[i % WORDS.len()])
        .collect();
    let long =
        json!({"input": words.join(" "), "max_output_tokens": 1, "temperature": 0}).to_string();
    let decode = json!({"input": "Tell me a long story.", "max_output_tokens": gen_tokens, "ignore_eos": true,
                        "temperature": 0})
    .to_string();
    run_once(&engine, &decode)?; // warm-up: page in the weights
    let (mut pf, mut dec) = (Vec::new(), Vec::new());
    let mut n_prompt = 0;
    for _ in 0..runs {
        let (inp, _, ttft, _) = run_once(&engine, &long)?;
        n_prompt = inp;
        pf.push(inp as f64 / ttft);
        let (_, out, _, span) = run_once(&engine, &decode)?;
        dec.push((out - 1) as f64 / span);
    }
    let stats = engine.stats();
    println!(
        "rill-bench: {} ({}), {} threads, kernels {}",
        stats["model"], stats["device"], threads, stats["kernels"]
    );
    println!("| test | tokens | tokens/s (median of {runs}) |");
    println!("|---|---|---|");
    println!(
        "| prefill (time to first token) | {n_prompt} | {:.1} |",
        median(pf)
    );
    println!(
        "| decode, single stream | {gen_tokens} | {:.1} |",
        median(dec)
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rill-bench: {e}");
            ExitCode::from(2)
        }
    }
}
