//! (j) Two engines on one GPU at once (emulated only, in a child process), as a host
//! serving two models does: Qwen3 and Llama engines share the device's primary context,
//! each with its own stream, cuBLAS handle, buffers and graphs. Each parity run (a CPU
//! engine, then a CUDA one) goes on its own thread, so the two GPU engines are created
//! and run side by side, their engine threads calling the driver concurrently as far as
//! the timing overlaps. Both give the greedy parity with the CPU and replay graphs.

#![cfg(feature = "kernel-emu")]

use serde_json::json;

use super::GREEDY_PROMPTS;
use super::{graphs_used_on_cuda, greedy_equals_cpu_with, TestResult};

pub fn greedy_on_two_engines_at_once_equals_cpu() -> TestResult {
    // A bounded cache each: by default the first would take 90% of the free memory.
    let extra = json!({"kv_cache_bytes": 256 << 20});
    let run = |name: &'static str| {
        let extra = extra.clone();
        std::thread::spawn(move || {
            greedy_equals_cpu_with(name, "cuda", &GREEDY_PROMPTS, extra)
                .and_then(|stats| graphs_used_on_cuda("cuda", &stats))
                .map_err(|e| format!("{name}: {e}"))
        })
    };
    let (qwen, llama) = (run("qwen3-tiny"), run("llama-tiny"));
    let joined = |h: std::thread::JoinHandle<TestResult>| {
        h.join()
            .unwrap_or_else(|_| Err("the thread panicked".to_owned()))
    };
    let (q, l) = (joined(qwen), joined(llama));
    q.and(l)
}
