//! (i) Preemption on the GPU (emulated only, in a child process): a KV cache of 10 blocks
//! for five 32-token greedy requests, so requests are preempted (their blocks freed and
//! handed to others) and recomputed later, prompt and generated tokens prefilled again
//! into reused blocks, while graphs replay decode steps with changed block tables. The
//! greedy parity with the CPU (given the same cache size) holds, and the stats count
//! preemptions on the GPU.

#![cfg(feature = "kernel-emu")]

use serde_json::json;

use super::{engine, greedy_equals_cpu_with, model_dir, TestResult, BLOCK};
use super::{graphs_used_on_cuda, GREEDY_PROMPTS};

/// KV blocks: fewer than the requests need together, enough for the longest alone.
const BLOCKS: u64 = 10;

pub fn greedy_with_preemption_equals_cpu() -> TestResult {
    // The bytes of one KV block, as the engine sizes them.
    let kv = engine(&model_dir("qwen3-tiny")?, "cpu", json!({}))?.stats()["kv_cache"].clone();
    let block_bytes = match (kv["bytes"].as_u64(), kv["num_blocks"].as_u64()) {
        (Some(b), Some(n)) if n > 0 => b / n,
        _ => return Err(format!("no KV cache size in the stats: {kv}")),
    };
    let extra = json!({
        "kv_cache_bytes": BLOCKS * block_bytes,
        "max_model_len": BLOCKS * BLOCK as u64,
    });
    let stats = greedy_equals_cpu_with("qwen3-tiny", "cuda", &GREEDY_PROMPTS, extra)?;
    let preemptions = stats["preemptions"].as_u64().unwrap_or(0);
    if stats["kv_cache"]["num_blocks"] != BLOCKS || preemptions == 0 {
        return Err(format!(
            "expected {BLOCKS} KV blocks and some preemptions: stats {stats}"
        ));
    }
    println!("  {preemptions} preemptions on the GPU, {BLOCKS} KV blocks");
    graphs_used_on_cuda("cuda", &stats)
}
