//! `rill-bench`: the serving benchmark. Drives rill through its C API (the host path) and,
//! optionally, llama.cpp's `llama-server` through its OpenAI-compatible HTTP API, with the
//! same workloads (see `workloads.rs`): single-stream prefill and decode, aggregate output
//! throughput with TTFT/ITL percentiles at several concurrency levels, a prefix-cache
//! workload, and peak RSS. Prints the command line, the machine and a side-by-side table;
//! `--json PATH` writes every number. Metric definitions follow vLLM's `benchmark_serving`
//! (TTFT, ITL, output throughput). Public operations: the command line below.
//!
//! ```text
//! rill-bench --model PATH [--threads 2] [--backend rill|llama-server|both]
//!            [--llama-server-bin PATH] [--prompt-tokens 512] [--gen-tokens 128] [--runs 3]
//!            [--levels 1,4,16,64|none] [--level-prompt-tokens 0] [--prefix-requests 8]
//!            [--prefix-tokens 1000] [--prefix-gen-tokens 16] [--ctx-per-slot 2048]
//!            [--timeout-s 600] [--json PATH] [--device cpu] [--engine-config JSON]
//!            [--bandwidth-mib 1024] [--baseline-json PATH]
//! ```
//!
//! On a GPU (`--device cuda[:N]`, a build with the `cuda` feature) it first measures the
//! device's copy bandwidth (`gpu.rs`), then reports the single-stream decode against the
//! roofline bandwidth / weight bytes per token. `--engine-config` merges extra engine
//! config keys (`max_num_seqs`, `kv_cache_bytes`, `max_num_batched_tokens`, ...) over the
//! ones rill-bench sets; `--level-prompt-tokens N` gives the concurrency levels prompts of
//! about N tokens instead of the short ones; `--baseline-json` adds the transformers
//! baseline (`scripts/gpu/hf_baseline.py`) as a column. With `--json`, the file is
//! rewritten after every workload (with the failures so far), so a run cut short still
//! leaves what it measured. A workload that fails (a prompt that does not fit, say) is
//! reported, in `errors` and in its level's `error`, and the next one runs; one that
//! times out (its requests are cancelled) stops the run, the rest reported as not run;
//! the exit status is then 1.

mod gpu;
mod http;
mod llama_server;
mod rill_capi;
mod stats;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Map, Value};

use llama_server::{LlamaServer, ServerConfig};
use rill_capi::RillCapi;
use workloads::{Backend, Report};

/// Command-line options.
#[derive(Debug, Clone)]
struct Opts {
    model: String,
    threads: usize,
    rill: bool,
    llama: bool,
    llama_bin: PathBuf,
    prompt_tokens: usize,
    gen_tokens: usize,
    runs: usize,
    levels: Vec<usize>,
    prefix_requests: usize,
    prefix_tokens: usize,
    prefix_gen_tokens: usize,
    ctx_per_slot: usize,
    timeout: Duration,
    json: Option<PathBuf>,
    /// The engine config's `device`.
    device: String,
    /// Extra engine config keys, merged over rill-bench's.
    engine_config: Map<String, Value>,
    /// Prompt length of the concurrency levels (0: the short prompts).
    level_prompt_tokens: usize,
    /// Buffer size of the copy-bandwidth measurement (0: skip it).
    bandwidth_mib: usize,
    baseline_json: Option<PathBuf>,
}

const USAGE: &str = "usage: rill-bench --model PATH [--threads N] [--backend rill|llama-server|both] \
[--llama-server-bin PATH] [--prompt-tokens N] [--gen-tokens N] [--runs N] [--levels 1,4,16,64|none] \
[--level-prompt-tokens N] [--prefix-requests K] [--prefix-tokens N] [--prefix-gen-tokens N] [--ctx-per-slot N] \
[--timeout-s S] [--json PATH] [--device cpu|cuda|cuda:N|auto] [--engine-config JSON] [--bandwidth-mib N] \
[--baseline-json PATH]";

fn default_llama_bin() -> PathBuf {
    let cache = std::env::var_os("RILL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/rill")
        });
    cache.join("llama.cpp-build/bin/llama-server")
}

/// Parses `--levels`: a comma-separated list of positive integers, or `none`.
fn parse_levels(s: &str) -> Result<Vec<usize>, String> {
    if s == "none" || s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|x| match x.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("--levels: {x:?} is not a positive integer")),
        })
        .collect()
}

fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        model: String::new(),
        threads: 2,
        rill: true,
        llama: false,
        llama_bin: default_llama_bin(),
        prompt_tokens: 512,
        gen_tokens: 128,
        runs: 3,
        levels: vec![1, 4, 16, 64],
        prefix_requests: 8,
        prefix_tokens: 1000,
        prefix_gen_tokens: 16,
        ctx_per_slot: 2048,
        timeout: Duration::from_secs(600),
        json: None,
        device: "cpu".into(),
        engine_config: Map::new(),
        level_prompt_tokens: 0,
        bandwidth_mib: 1024,
        baseline_json: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: &String| -> Result<usize, String> {
            v.parse()
                .map_err(|_| format!("{flag}: {v:?} is not a non-negative integer"))
        };
        // A value below what the workload can use is refused, not quietly raised.
        let at_least = |v: &String, min: usize| -> Result<usize, String> {
            let n = num(v)?;
            if n < min {
                return Err(format!("{flag}: {n} is below the least it takes, {min}"));
            }
            Ok(n)
        };
        match flag.as_str() {
            "--model" => o.model = val()?.clone(),
            "--threads" => o.threads = at_least(val()?, 1)?,
            "--backend" => {
                (o.rill, o.llama) = match val()?.as_str() {
                    "rill" => (true, false),
                    "llama-server" => (false, true),
                    "both" => (true, true),
                    v => {
                        return Err(format!(
                            "--backend: {v:?} is not rill, llama-server or both"
                        ))
                    }
                }
            }
            "--llama-server-bin" => o.llama_bin = PathBuf::from(val()?),
            "--prompt-tokens" => o.prompt_tokens = num(val()?)?,
            "--gen-tokens" => o.gen_tokens = at_least(val()?, 2)?,
            "--runs" => o.runs = at_least(val()?, 1)?,
            "--levels" => o.levels = parse_levels(val()?)?,
            "--prefix-requests" => o.prefix_requests = num(val()?)?,
            "--prefix-tokens" => o.prefix_tokens = num(val()?)?,
            "--prefix-gen-tokens" => o.prefix_gen_tokens = at_least(val()?, 1)?,
            "--ctx-per-slot" => o.ctx_per_slot = at_least(val()?, 64)?,
            "--timeout-s" => o.timeout = Duration::from_secs(at_least(val()?, 1)? as u64),
            "--json" => o.json = Some(PathBuf::from(val()?)),
            "--device" => o.device = val()?.clone(),
            "--engine-config" => {
                let v = val()?;
                match serde_json::from_str::<Value>(v) {
                    Ok(Value::Object(m)) => o.engine_config.extend(m),
                    _ => return Err(format!("--engine-config: {v:?} is not a JSON object")),
                }
            }
            "--level-prompt-tokens" => o.level_prompt_tokens = num(val()?)?,
            "--bandwidth-mib" => o.bandwidth_mib = num(val()?)?,
            "--baseline-json" => o.baseline_json = Some(PathBuf::from(val()?)),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    if o.model.is_empty() {
        return Err(format!("--model is required\n{USAGE}"));
    }
    Ok(o)
}

/// `VmHWM` (peak resident set) in KiB from a `/proc/<pid>/status` text.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// `VmHWM` of a process, KiB, from its status file.
pub fn vm_hwm_kib(status_path: &str) -> Option<u64> {
    parse_vm_hwm(&std::fs::read_to_string(status_path).ok()?)
}

/// The first `model name` of a `/proc/cpuinfo` text.
fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

/// The failures of a backend's run so far, and the workload that timed out, if one did.
#[derive(Default)]
struct Failures {
    errors: Vec<String>,
    timed_out: Option<String>,
}

impl Failures {
    /// Runs workload `what` of backend `name`; a failure is recorded, naming the workload,
    /// and returned. After a workload that timed out (its error contains
    /// [`workloads::TIMED_OUT`]) the backend is taken to be stuck: later workloads are not
    /// run (each would wait out the timeout again) and are recorded as such.
    fn attempt<T>(
        &mut self,
        name: &str,
        what: &str,
        f: impl FnOnce() -> Result<T, String>,
    ) -> Result<T, String> {
        let result = match &self.timed_out {
            Some(first) => Err(format!("not run ({first} timed out)")),
            None => {
                eprintln!("rill-bench: {name}: {what}");
                f()
            }
        };
        if let Err(e) = &result {
            eprintln!("rill-bench: {name}: {what}: {e}");
            if e.contains(workloads::TIMED_OUT) {
                self.timed_out = Some(what.to_owned());
            }
            self.errors.push(format!("{what}: {e}"));
        }
        result
    }
}

/// Runs every workload on one backend; `progress` sees the report and the failures so far
/// after each workload. A workload that fails is recorded (a level also in its row) and
/// the next one runs, so one failure (a prefix run that does not fit, say) does not cost
/// the others' numbers; a backend that cannot start, or that timed out, stops the run
/// ([`Failures::attempt`]). Returns the failures, each naming its workload.
fn bench(
    b: &mut dyn Backend,
    o: &Opts,
    report: &mut Report,
    progress: &mut dyn FnMut(&Report, &[String]),
) -> Vec<String> {
    let name = b.name();
    let mut f = Failures::default();
    report.info = b.info();
    let warm = f.attempt(name, "warm-up", || {
        b.prepare(1)?;
        workloads::warm_up(b)
    });
    if warm.is_err() {
        return f.errors;
    }
    report.prefill = f
        .attempt(name, "prefill", || {
            workloads::prefill(b, o.prompt_tokens, o.runs)
        })
        .ok();
    progress(report, &f.errors);
    report.decode = f
        .attempt(name, "decode", || {
            workloads::decode(b, o.gen_tokens, o.runs)
        })
        .ok();
    progress(report, &f.errors);
    if o.prefix_requests > 0 {
        report.prefix = f
            .attempt(name, "prefix cache", || {
                let (n, tokens, gen) = (o.prefix_requests, o.prefix_tokens, o.prefix_gen_tokens);
                workloads::prefix_cache(b, n, tokens, gen)
            })
            .ok();
        progress(report, &f.errors);
    }
    for &n in &o.levels {
        let level = f.attempt(name, &format!("concurrency {n}"), || {
            b.prepare(n)?;
            workloads::warm_up(b)?;
            workloads::concurrency(b, n, o.gen_tokens, o.level_prompt_tokens)
        });
        report
            .levels
            .push(level.unwrap_or_else(|e| workloads::failed_level(n, e)));
        progress(report, &f.errors);
    }
    f.errors
}

/// Runs one backend; a failure is recorded in the report and returned.
fn run_backend(
    make: impl FnOnce() -> Result<Box<dyn Backend>, String>,
    o: &Opts,
    progress: &mut dyn FnMut(&Report, &[String]),
) -> (Report, Option<String>) {
    let mut report = Report::default();
    let mut b = match make() {
        Ok(b) => b,
        Err(e) => return (report, Some(e)),
    };
    let errors = bench(b.as_mut(), o, &mut report, progress);
    report.peak_rss_kib = b.peak_rss_kib();
    report.info = b.info();
    (report, (!errors.is_empty()).then(|| errors.join("; ")))
}

fn fmt(x: Option<f64>, prec: usize) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.prec$}"),
        _ => "-".into(),
    }
}

/// The side-by-side table rows: a label and one cell per backend.
fn table(o: &Opts, reports: &[(&str, Report)]) -> Vec<(String, Vec<String>)> {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |label: String, f: &dyn Fn(&Report) -> String| {
        rows.push((label, reports.iter().map(|(_, r)| f(r)).collect()));
    };
    row(
        format!(
            "prefill ~{}-token prompt, tok/s (median of {})",
            o.prompt_tokens, o.runs
        ),
        &|r| {
            r.prefill.as_ref().map_or("-".into(), |p| {
                format!(
                    "{:.1} ({} tok, TTFT {:.0} ms)",
                    p.tokens_per_s, p.prompt_tokens, p.ttft_ms
                )
            })
        },
    );
    row(
        format!("decode 1 stream, {} tokens, tok/s", o.gen_tokens),
        &|r| fmt(r.decode.as_ref().map(|d| d.tokens_per_s), 1),
    );
    let prompt = match o.level_prompt_tokens {
        0 => String::new(),
        n => format!(", ~{n}-token prompts"),
    };
    for &n in &o.levels {
        let level = move |r: &Report| r.levels.iter().find(|l| l.streams == n).cloned();
        row(
            format!(
                "aggregate @{n} streams ({} tokens each{prompt}), output tok/s",
                o.gen_tokens
            ),
            &|r| {
                level(r).map_or("-".into(), |l| match &l.error {
                    Some(e) => e.chars().take(60).collect(),
                    None => format!(
                        "{:.1} ({} tok in {:.2} s)",
                        l.tokens_per_s, l.output_tokens, l.wall_s
                    ),
                })
            },
        );
        row(format!("  TTFT p50 / p99 @{n}, ms"), &|r| {
            let t = level(r).and_then(|l| l.ttft);
            format!(
                "{} / {}",
                fmt(t.map(|t| t.p50_ms), 1),
                fmt(t.map(|t| t.p99_ms), 1)
            )
        });
        row(format!("  ITL p50 / p99 @{n}, ms"), &|r| {
            let t = level(r).and_then(|l| l.itl);
            format!(
                "{} / {}",
                fmt(t.map(|t| t.p50_ms), 2),
                fmt(t.map(|t| t.p99_ms), 2)
            )
        });
        row(format!("  decode tok/s per stream (median) @{n}"), &|r| {
            fmt(level(r).map(|l| l.decode_tps), 1)
        });
    }
    if o.prefix_requests > 0 {
        row(
            format!(
                "prefix cache hit rate ({} req, ~{}-token system prompt)",
                o.prefix_requests, o.prefix_tokens
            ),
            &|r| {
                r.prefix.as_ref().map_or("-".into(), |p| {
                    format!(
                        "{} ({} / {} tok)",
                        fmt(Some(p.hit_rate), 3),
                        p.cached_tokens,
                        p.input_tokens
                    )
                })
            },
        );
        row("  TTFT first / later median, ms (ratio)".into(), &|r| {
            r.prefix.as_ref().map_or("-".into(), |p| {
                format!(
                    "{} / {} ({}x)",
                    fmt(Some(p.ttft_first_ms), 1),
                    fmt(Some(p.ttft_later_median_ms), 1),
                    fmt(Some(p.ttft_ratio), 2)
                )
            })
        });
    }
    row("peak RSS (VmHWM), MiB".into(), &|r| {
        fmt(r.peak_rss_kib.map(|k| k as f64 / 1024.0), 1)
    });
    rows
}

fn print_table(o: &Opts, reports: &[(&str, Report)]) {
    let rows = table(o, reports);
    let head: Vec<&str> = reports.iter().map(|(n, _)| *n).collect();
    println!("| metric | {} |", head.join(" | "));
    println!("|---|{}", "---|".repeat(head.len()));
    for (label, cells) in rows {
        println!("| {label} | {} |", cells.join(" | "));
    }
}

/// The `--json` document.
struct Doc<'a> {
    o: &'a Opts,
    args: &'a [String],
    cpu: &'a str,
    cpus: usize,
    gpu: Value,
    baseline: Option<&'a Value>,
}

impl Doc<'_> {
    fn to_json(&self, reports: &[(&str, Report)], errors: &[String], partial: bool) -> Value {
        let o = self.o;
        json!({
            "command": self.args, "machine": {"cpu": self.cpu, "logical_cpus": self.cpus},
            "threads": o.threads, "model": o.model, "device": o.device,
            "engine_config_extra": o.engine_config,
            "settings": {"prompt_tokens": o.prompt_tokens, "gen_tokens": o.gen_tokens,
                         "runs": o.runs, "levels": o.levels,
                         "level_prompt_tokens": o.level_prompt_tokens,
                         "prefix_requests": o.prefix_requests,
                         "prefix_tokens": o.prefix_tokens, "prefix_gen_tokens": o.prefix_gen_tokens,
                         "ctx_per_slot": o.ctx_per_slot},
            "gpu": self.gpu,
            "backends": reports.iter().map(|(n, r)| (n.to_string(), r.to_json())).collect::<Map<_, _>>(),
            "baseline": self.baseline,
            "errors": errors,
            "partial": partial,
        })
    }

    fn write(
        &self,
        reports: &[(&str, Report)],
        errors: &[String],
        partial: bool,
    ) -> Result<(), String> {
        let Some(path) = &self.o.json else {
            return Ok(());
        };
        let text = serde_json::to_string_pretty(&self.to_json(reports, errors, partial))
            .map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))
    }
}

/// Weight bytes per decoded token: the GPU's own count (`gpu.matrix_bytes_per_token`: bf16
/// bytes, whatever the file's types), else the engine's `weight_bytes` (the file's bytes),
/// else the count from the checkpoint's config.json; with where it came from, and the
/// config.json count for comparison.
fn weight_bytes(info: &Value, model: &str) -> Option<(u64, &'static str, Option<u64>)> {
    let from_config = std::fs::read_to_string(std::path::Path::new(model).join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|c| gpu::hf_weight_bytes(&c));
    if let Some(w) = info["gpu_matrix_bytes_per_token"].as_u64() {
        return Some((w, "engine stats gpu.matrix_bytes_per_token", from_config));
    }
    match info["stats_weight_bytes"].as_u64() {
        Some(w) => Some((w, "engine stats weight_bytes", from_config)),
        None => from_config.map(|w| (w, "config.json", from_config)),
    }
}

fn run() -> Result<bool, String> {
    let args: Vec<String> = std::env::args().collect();
    let o = parse_args(&args[1..])?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| parse_cpu_model(&t))
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let command = args.join(" ");
    println!("command: {command}");
    println!(
        "machine: {cpu}, {cpus} logical CPUs; threads: {}",
        o.threads
    );
    println!("model: {}", o.model);
    let baseline: Option<Value> = match &o.baseline_json {
        None => None,
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("--baseline-json {}: {e}", p.display()))?;
            Some(
                serde_json::from_str(&text)
                    .map_err(|e| format!("--baseline-json {}: {e}", p.display()))?,
            )
        }
    };
    // The copy bandwidth first, before an engine holds the device's memory.
    let bandwidth = if o.rill {
        gpu::measure_bandwidth(&o.device, o.bandwidth_mib, 10)
    } else {
        None
    };
    let mut gpu_json = json!({});
    match &bandwidth {
        Some(Ok(b)) => {
            println!(
                "copy bandwidth: {:.1} GB/s on {} (bytes read + written; {} MiB copied, median of {}: {:.3} ms)",
                b.bytes_per_s / 1e9,
                b.device_name,
                b.bytes_per_copy >> 20,
                b.copies,
                b.median_ms
            );
            gpu_json["copy_bandwidth"] = b.to_json();
            gpu_json["name"] = json!(b.device_name);
        }
        Some(Err(e)) => {
            println!("copy bandwidth: not measured: {e}");
            gpu_json["copy_bandwidth_error"] = json!(e);
        }
        None => {}
    }
    let mut doc = Doc {
        o: &o,
        args: &args,
        cpu: &cpu,
        cpus,
        gpu: gpu_json.clone(),
        baseline: baseline.as_ref(),
    };

    let mut reports: Vec<(&str, Report)> = Vec::new();
    let mut errors = Vec::new();
    if o.rill {
        let max_seqs = o.levels.iter().copied().max().unwrap_or(1);
        let mut progress = |r: &Report, errs: &[String]| {
            // A partial report after each step; the final write reports its own error.
            let errs: Vec<String> = errs.iter().map(|e| format!("rill: {e}")).collect();
            if let Err(e) = doc.write(&[("rill", r.clone())], &errs, true) {
                eprintln!("rill-bench: partial report not written: {e}");
            }
        };
        let (r, err) = run_backend(
            || {
                RillCapi::new(
                    &o.model,
                    o.threads,
                    max_seqs,
                    o.ctx_per_slot,
                    o.timeout,
                    &o.device,
                    &o.engine_config,
                )
                .map(|b| Box::new(b) as Box<dyn Backend>)
            },
            &o,
            &mut progress,
        );
        errors.extend(err.map(|e| format!("rill: {e}")));
        reports.push(("rill", r));
    }
    if o.llama {
        let cfg = ServerConfig {
            bin: o.llama_bin.clone(),
            model: o.model.clone(),
            threads: o.threads,
            ctx_per_slot: o.ctx_per_slot,
            timeout: o.timeout,
        };
        let (r, err) = run_backend(
            || LlamaServer::new(cfg).map(|b| Box::new(b) as Box<dyn Backend>),
            &o,
            &mut |_, _| {},
        );
        errors.extend(err.map(|e| format!("llama-server: {e}")));
        reports.push(("llama-server", r));
    }
    if let Some(b) = &baseline {
        match gpu::baseline_report(b) {
            Ok(r) => reports.push(("transformers", r)),
            Err(e) => errors.push(format!("--baseline-json: {e}")),
        }
    }
    for (name, r) in &reports {
        println!("{name}: {}", r.info);
        if let Some(v) = r.decode.as_ref().and_then(|d| d.step_us.as_ref()) {
            println!(
                "{name} single-stream decode step: {}",
                workloads::step_breakdown_line(v)
            );
        }
        for l in &r.levels {
            if let Some(v) = &l.step_us {
                println!(
                    "{name} step @{} streams: {}",
                    l.streams,
                    workloads::step_breakdown_line(v)
                );
            }
        }
    }
    // The single-stream roofline, on a GPU with a measured bandwidth.
    if let (Some(Ok(bw)), Some((_, rill))) =
        (&bandwidth, reports.iter().find(|(n, _)| *n == "rill"))
    {
        let device = rill.info["device"].as_str().unwrap_or("?");
        println!("device: {device} ({})", bw.device_name);
        match weight_bytes(&rill.info, &o.model) {
            Some((w, source, from_config)) => {
                let decode = rill.decode.as_ref().map_or(f64::NAN, |d| d.tokens_per_s);
                let roof = gpu::Roofline::new(bw.bytes_per_s, w, decode);
                println!(
                    "weight bytes per decoded token: {:.3} GB ({source}; config.json: {})",
                    w as f64 / 1e9,
                    from_config.map_or("-".into(), |c| format!("{:.3} GB", c as f64 / 1e9))
                );
                println!(
                    "single-stream bandwidth limit: {:.1} tok/s (copy bandwidth / weight bytes); \
                     rill decode {:.1} tok/s = {:.1}% of it",
                    roof.limit_tokens_per_s,
                    decode,
                    100.0 * roof.fraction
                );
                let mut r = roof.to_json();
                r["weight_bytes_source"] = json!(source);
                r["config_json_weight_bytes"] = json!(from_config);
                gpu_json["roofline"] = r;
            }
            None => println!("weight bytes per token unknown: no roofline"),
        }
        gpu_json["device"] = json!(device);
    }
    doc.gpu = gpu_json;
    println!();
    print_table(&o, &reports);
    if baseline.is_some() {
        println!(
            "\ntransformers column: static batches (hf_baseline.py); its TTFT is the time of a \
             max_new_tokens=1 call for the batch, its ITL the mean step time; same prompt and \
             output lengths, random prompt ids."
        );
    }
    doc.write(&reports, &errors, false)?;
    for e in &errors {
        eprintln!("rill-bench: {e}");
    }
    Ok(errors.is_empty())
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("rill-bench: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    /// A backend that answers instantly, except that requests with a long system prompt
    /// (the prefix-cache workload's) fail, and batches of `fail_streams` requests fail
    /// with `fail_with`.
    struct Scripted {
        fail_streams: usize,
        fail_with: &'static str,
    }

    impl Backend for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn prepare(&mut self, _streams: usize) -> Result<(), String> {
            Ok(())
        }
        fn run(&mut self, reqs: &[workloads::Req]) -> Result<Vec<stats::Stream>, String> {
            if reqs
                .iter()
                .any(|r| r.instructions.as_ref().is_some_and(|i| i.len() > 200))
            {
                return Err("the prompt does not fit".into());
            }
            if reqs.len() == self.fail_streams {
                return Err(self.fail_with.into());
            }
            let t = std::time::Instant::now();
            Ok(reqs
                .iter()
                .map(|r| stats::Stream {
                    submitted: t,
                    deltas: (1..=r.max_tokens as u32)
                        .map(|i| t + std::time::Duration::from_millis(i.into()))
                        .collect(),
                    ended: t + std::time::Duration::from_millis(r.max_tokens as u64 + 1),
                    input_tokens: 10,
                    cached_tokens: 0,
                    output_tokens: r.max_tokens as u64,
                })
                .collect())
        }
        fn peak_rss_kib(&mut self) -> Option<u64> {
            None
        }
        fn info(&self) -> Value {
            Value::Null
        }
    }

    /// Runs the workloads on `b` with levels 1, 4 and 16 and returns the failures and
    /// (streams, failed, output tokens) of each level.
    fn run_scripted(b: &mut Scripted) -> (Vec<String>, Vec<(usize, bool, u64)>) {
        let o = parse_args(&args(
            "--model m.gguf --levels 1,4,16 --gen-tokens 8 --prompt-tokens 16 --runs 1 \
             --prefix-requests 2 --level-prompt-tokens 16",
        ))
        .expect("options");
        let mut report = Report::default();
        let mut seen = 0;
        let errors = bench(b, &o, &mut report, &mut |_, errs| seen = errs.len());
        assert_eq!(seen, errors.len(), "progress saw the failures");
        assert!(report.prefill.is_some() && report.decode.is_some());
        assert!(report.prefix.is_none());
        let levels = report
            .levels
            .iter()
            .map(|l| (l.streams, l.error.is_some(), l.output_tokens))
            .collect();
        (errors, levels)
    }

    /// A failed workload costs only its own numbers: the prefix run and the level of 4
    /// fail at once, prefill, decode and the levels of 1 and 16 are still measured.
    #[test]
    fn a_failed_workload_does_not_stop_the_others() {
        let mut b = Scripted {
            fail_streams: 4,
            fail_with: "llama-server answered 500",
        };
        let (errors, levels) = run_scripted(&mut b);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("prefix cache: the prompt"),
            "{errors:?}"
        );
        assert_eq!(errors[1], "concurrency 4: llama-server answered 500");
        assert_eq!(levels, vec![(1, false, 8), (4, true, 0), (16, false, 128)]);
    }

    /// A workload that timed out stops the run: the level of 16 is recorded as not run.
    #[test]
    fn a_timed_out_workload_stops_the_rest() {
        let mut b = Scripted {
            fail_streams: 4,
            fail_with: "[timed out] no event for 1s; requests cancelled",
        };
        assert!(b.fail_with.starts_with(workloads::TIMED_OUT));
        let (errors, levels) = run_scripted(&mut b);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert_eq!(
            errors[2],
            "concurrency 16: not run (concurrency 4 timed out)"
        );
        assert_eq!(levels, vec![(1, false, 8), (4, true, 0), (16, true, 0)]);
    }

    #[test]
    fn parses_proc_files() {
        let status =
            "Name:\trill-bench\nVmPeak:\t  900 kB\nVmHWM:\t   123456 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(123456));
        assert_eq!(parse_vm_hwm("Name: x\n"), None);
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(parse_cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(parse_cpu_model("processor : 0\n"), None);
        // This process's own status has a VmHWM line.
        assert!(vm_hwm_kib("/proc/self/status").is_some_and(|k| k > 0));
    }

    #[test]
    fn parses_levels_and_options() {
        assert_eq!(parse_levels("1,4, 16"), Ok(vec![1, 4, 16]));
        assert_eq!(parse_levels("none"), Ok(vec![]));
        assert!(parse_levels("1,0").is_err());
        assert!(parse_levels("1,x").is_err());
        let o = parse_args(&args(
            "--model m.gguf --backend both --levels 1,4 --gen-tokens 16 --json out.json",
        ));
        let o = o.map(|o| {
            (
                o.model,
                o.rill,
                o.llama,
                o.levels,
                o.gen_tokens,
                o.json,
                o.threads,
            )
        });
        assert_eq!(
            o,
            Ok((
                "m.gguf".into(),
                true,
                true,
                vec![1, 4],
                16,
                Some(PathBuf::from("out.json")),
                2
            ))
        );
        let o = parse_args(&args("--model m --backend llama-server")).map(|o| (o.rill, o.llama));
        assert_eq!(o, Ok((false, true)));
        assert!(parse_args(&args("--threads 2")).is_err());
        assert!(parse_args(&args("--model m --backend vllm")).is_err());
        assert!(parse_args(&args("--model m --runs")).is_err());
        assert!(parse_args(&args("--model m --runs -1")).is_err());
        let e = parse_args(&args("--model m --gen-tokens 1")).unwrap_err();
        assert!(
            e.contains("--gen-tokens: 1 is below the least it takes, 2"),
            "{e}"
        );
        assert!(parse_args(&args("--model m --runs 0")).is_err());
        assert!(parse_args(&args("--model m --frobnicate 1")).is_err());
        let o = parse_args(&args(
            "--model m --device cuda:0 --engine-config {\"kv_cache_bytes\":1024,\"max_num_batched_tokens\":8192} \
             --level-prompt-tokens 1000 --bandwidth-mib 0 --baseline-json b.json",
        ))
        .map(|o| {
            (
                o.device,
                o.engine_config.len(),
                o.engine_config.get("kv_cache_bytes").cloned(),
                o.level_prompt_tokens,
                o.bandwidth_mib,
                o.baseline_json,
            )
        });
        assert_eq!(
            o,
            Ok((
                "cuda:0".into(),
                2,
                Some(json!(1024)),
                1000,
                0,
                Some(PathBuf::from("b.json"))
            ))
        );
        let d = parse_args(&args("--model m")).map(|o| (o.device, o.level_prompt_tokens));
        assert_eq!(d, Ok(("cpu".into(), 0)));
        assert!(parse_args(&args("--model m --engine-config [1]")).is_err());
        assert!(parse_args(&args("--model m --engine-config {")).is_err());
    }
}
