//! `rill-cli`: runs one request on a model and streams it, through the same Rust API the
//! C API wraps.
//!
//! ```text
//! rill-cli --model PATH (--prompt TEXT | --request FILE_OR_DASH) [--max-output-tokens N]
//!          [--temperature T] [--threads N] [--jsonl]
//! ```
//! With `--jsonl`, each event is printed as one JSON line on stdout, exactly as the C API
//! delivers it; otherwise the answer text streams to stdout, reasoning to stderr
//! (`[reasoning] …`) and each function call as a `[function_call NAME ARGUMENTS]` line.
//! Errors go to stderr with a non-zero exit status.
//!
//! Fields the request does not set take llama-cli's chat defaults (temperature 0.8,
//! top_k 40, top_p 0.95, min_p 0.05) and a 512-token output cap, through the engine's
//! `generation_config`; the flags and the request body override them.

use std::io::{Read, Write};
use std::process::ExitCode;

use crossbeam_channel::unbounded;
use rill::{Engine, EngineConfig, Sink};
use serde_json::{json, Value};

struct Args {
    model: String,
    prompt: Option<String>,
    request: Option<String>,
    max_output_tokens: Option<u64>,
    temperature: Option<f64>,
    threads: Option<u64>,
    jsonl: bool,
}

const USAGE: &str = "usage: rill-cli --model PATH (--prompt TEXT | --request FILE_OR_DASH) \
[--max-output-tokens N] [--temperature T] [--threads N] [--jsonl]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        model: String::new(),
        prompt: None,
        request: None,
        max_output_tokens: None,
        temperature: None,
        threads: None,
        jsonl: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--model" => a.model = val("--model")?,
            "--prompt" => a.prompt = Some(val("--prompt")?),
            "--request" => a.request = Some(val("--request")?),
            "--max-output-tokens" => {
                a.max_output_tokens = Some(
                    val("--max-output-tokens")?
                        .parse()
                        .map_err(|e| format!("--max-output-tokens: {e}"))?,
                )
            }
            "--temperature" => {
                a.temperature = Some(
                    val("--temperature")?
                        .parse()
                        .map_err(|e| format!("--temperature: {e}"))?,
                )
            }
            "--threads" => {
                a.threads = Some(
                    val("--threads")?
                        .parse()
                        .map_err(|e| format!("--threads: {e}"))?,
                )
            }
            "--jsonl" => a.jsonl = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if a.model.is_empty() {
        return Err(format!("--model is required\n{USAGE}"));
    }
    if a.prompt.is_some() == a.request.is_some() {
        return Err(format!(
            "give exactly one of --prompt and --request\n{USAGE}"
        ));
    }
    Ok(a)
}

fn request_body(a: &Args) -> Result<String, String> {
    let mut body: Value = match (&a.prompt, &a.request) {
        (Some(p), _) => json!({ "input": p }),
        (_, Some(path)) => {
            let mut text = String::new();
            if path == "-" {
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|e| format!("stdin: {e}"))?;
            } else {
                text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
            }
            serde_json::from_str(&text).map_err(|e| format!("{path}: not valid JSON: {e}"))?
        }
        _ => unreachable!("checked in parse_args"),
    };
    let obj = body
        .as_object_mut()
        .ok_or("the request must be a JSON object")?;
    if let Some(n) = a.max_output_tokens {
        obj.insert("max_output_tokens".into(), json!(n));
    }
    if let Some(t) = a.temperature {
        obj.insert("temperature".into(), json!(t));
    }
    Ok(body.to_string())
}

fn run() -> Result<bool, String> {
    let a = parse_args()?;
    let body = request_body(&a)?;
    let mut cfg = json!({
        "model": a.model,
        // One request: the KV cache needs room for one full-length sequence only.
        "max_num_seqs": 1,
        "generation_config": {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "max_output_tokens": 512},
    });
    if let Some(t) = a.threads {
        cfg["num_threads"] = json!(t);
    }
    let engine = Engine::new(EngineConfig::from_json(&cfg.to_string()).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let st = engine.stats();
    let kv = &st["kv_cache"];
    eprintln!(
        "rill: {} on {} ({} kernels, {} threads); KV cache {} blocks x {} tokens ({:.0} MiB)",
        st["model"].as_str().unwrap_or("?"),
        st["device"].as_str().unwrap_or("?"),
        st["kernels"].as_str().unwrap_or("?"),
        st["num_threads"],
        kv["num_blocks"],
        kv["block_size"],
        kv["bytes"].as_f64().unwrap_or(0.0) / (1 << 20) as f64
    );
    let (tx, rx) = unbounded::<(String, bool)>();
    engine
        .submit(
            &body,
            Sink::Callback(Box::new(move |_, ev, last| {
                drop(tx.send((ev.to_owned(), last)))
            })),
        )
        .map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let mut ok = true;
    for (ev, last) in rx.iter() {
        if a.jsonl {
            writeln!(out, "{ev}").map_err(|e| e.to_string())?;
        } else {
            let v: Value = serde_json::from_str(&ev).map_err(|e| e.to_string())?;
            match v["type"].as_str() {
                Some("response.output_text.delta") => {
                    write!(out, "{}", v["delta"].as_str().unwrap_or(""))
                        .map_err(|e| e.to_string())?;
                }
                // Reasoning goes to stderr, so stdout holds the answer only.
                Some("response.output_item.added") if v["item"]["type"] == "reasoning" => {
                    eprint!("[reasoning] ")
                }
                Some("response.reasoning_text.delta") => {
                    eprint!("{}", v["delta"].as_str().unwrap_or(""))
                }
                Some("response.output_item.done") if v["item"]["type"] == "reasoning" => {
                    eprintln!()
                }
                Some("response.function_call_arguments.done") => writeln!(
                    out,
                    "[function_call {} {}]",
                    v["name"].as_str().unwrap_or("?"),
                    v["arguments"].as_str().unwrap_or("")
                )
                .map_err(|e| e.to_string())?,
                Some("response.completed") => writeln!(out).map_err(|e| e.to_string())?,
                Some("response.incomplete") => {
                    writeln!(out, "\n[incomplete: {}]", v["response"]["status"])
                        .map_err(|e| e.to_string())?
                }
                Some("response.failed") => {
                    eprintln!("\nrill-cli: response failed: {}", v["response"]["error"]);
                    ok = false;
                }
                _ => {}
            }
        }
        out.flush().map_err(|e| e.to_string())?;
        if last {
            break;
        }
    }
    Ok(ok)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("rill-cli: {e}");
            ExitCode::from(2)
        }
    }
}
