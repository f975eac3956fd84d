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
//!            [--levels 1,4,16,64|none] [--prefix-requests 8] [--prefix-tokens 1000]
//!            [--prefix-gen-tokens 16] [--ctx-per-slot 2048] [--timeout-s 600] [--json PATH]
//! ```

mod http;
mod llama_server;
mod rill_capi;
mod stats;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;

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
}

const USAGE: &str = "usage: rill-bench --model PATH [--threads N] [--backend rill|llama-server|both] \
[--llama-server-bin PATH] [--prompt-tokens N] [--gen-tokens N] [--runs N] [--levels 1,4,16,64|none] \
[--prefix-requests K] [--prefix-tokens N] [--prefix-gen-tokens N] [--ctx-per-slot N] [--timeout-s S] [--json PATH]";

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
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: &String| -> Result<usize, String> {
            v.parse()
                .map_err(|_| format!("{flag}: {v:?} is not a non-negative integer"))
        };
        match flag.as_str() {
            "--model" => o.model = val()?.clone(),
            "--threads" => o.threads = num(val()?)?.max(1),
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
            "--gen-tokens" => o.gen_tokens = num(val()?)?.max(2),
            "--runs" => o.runs = num(val()?)?.max(1),
            "--levels" => o.levels = parse_levels(val()?)?,
            "--prefix-requests" => o.prefix_requests = num(val()?)?,
            "--prefix-tokens" => o.prefix_tokens = num(val()?)?,
            "--prefix-gen-tokens" => o.prefix_gen_tokens = num(val()?)?.max(1),
            "--ctx-per-slot" => o.ctx_per_slot = num(val()?)?.max(64),
            "--timeout-s" => o.timeout = Duration::from_secs(num(val()?)?.max(1) as u64),
            "--json" => o.json = Some(PathBuf::from(val()?)),
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

/// Runs every workload on one backend.
fn bench(b: &mut dyn Backend, o: &Opts, report: &mut Report) -> Result<(), String> {
    let name = b.name();
    let step = |what: &str| eprintln!("rill-bench: {name}: {what}");
    step("starting");
    b.prepare(1)?;
    workloads::warm_up(b)?;
    step("prefill");
    report.prefill = Some(workloads::prefill(b, o.prompt_tokens, o.runs)?);
    step("decode");
    report.decode = Some(workloads::decode(b, o.gen_tokens, o.runs)?);
    if o.prefix_requests > 0 {
        step("prefix cache");
        report.prefix = Some(workloads::prefix_cache(
            b,
            o.prefix_requests,
            o.prefix_tokens,
            o.prefix_gen_tokens,
        )?);
    }
    for &n in &o.levels {
        step(&format!("concurrency {n}"));
        b.prepare(n)?;
        workloads::warm_up(b)?;
        report
            .levels
            .push(workloads::concurrency(b, n, o.gen_tokens)?);
    }
    Ok(())
}

/// Runs one backend; a failure is recorded in the report and returned.
fn run_backend(
    make: impl FnOnce() -> Result<Box<dyn Backend>, String>,
    o: &Opts,
) -> (Report, Option<String>) {
    let mut report = Report::default();
    let mut b = match make() {
        Ok(b) => b,
        Err(e) => return (report, Some(e)),
    };
    let res = bench(b.as_mut(), o, &mut report);
    report.peak_rss_kib = b.peak_rss_kib();
    report.info = b.info();
    (report, res.err())
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
    for (i, &n) in o.levels.iter().enumerate() {
        let level = move |r: &Report| r.levels.get(i).filter(|l| l.streams == n).cloned();
        row(format!("aggregate @{n} streams, output tok/s"), &|r| {
            level(r).map_or("-".into(), |l| {
                format!(
                    "{:.1} ({} tok in {:.2} s)",
                    l.tokens_per_s, l.output_tokens, l.wall_s
                )
            })
        });
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

    let mut reports: Vec<(&str, Report)> = Vec::new();
    let mut errors = Vec::new();
    if o.rill {
        let max_seqs = o.levels.iter().copied().max().unwrap_or(1);
        let (r, err) = run_backend(
            || {
                RillCapi::new(&o.model, o.threads, max_seqs, o.ctx_per_slot, o.timeout)
                    .map(|b| Box::new(b) as Box<dyn Backend>)
            },
            &o,
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
        );
        errors.extend(err.map(|e| format!("llama-server: {e}")));
        reports.push(("llama-server", r));
    }
    for (name, r) in &reports {
        println!("{name}: {}", r.info);
    }
    println!();
    print_table(&o, &reports);
    if let Some(path) = &o.json {
        let doc = json!({
            "command": args, "machine": {"cpu": cpu, "logical_cpus": cpus},
            "threads": o.threads, "model": o.model,
            "settings": {"prompt_tokens": o.prompt_tokens, "gen_tokens": o.gen_tokens,
                         "runs": o.runs, "levels": o.levels, "prefix_requests": o.prefix_requests,
                         "prefix_tokens": o.prefix_tokens, "prefix_gen_tokens": o.prefix_gen_tokens,
                         "ctx_per_slot": o.ctx_per_slot},
            "backends": reports.iter().map(|(n, r)| (n.to_string(), r.to_json())).collect::<serde_json::Map<_, _>>(),
            "errors": errors,
        });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
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
        assert!(parse_args(&args("--model m --frobnicate 1")).is_err());
    }
}
