//! (i) Preemption on the GPU (emulated only, in a child process): a KV cache of 10 blocks
//! for five 32-token greedy requests, so requests are preempted (their blocks freed and
//! handed to others) and recomputed later, prompt and generated tokens prefilled again
//! into reused blocks, while graphs replay decode steps with changed block tables. The
//! greedy parity with the CPU (same cache size, same preemptions) holds, and the stats
//! count preemptions on the GPU.

#![cfg(feature = "kernel-emu")]

use std::time::Duration;

use serde_json::{json, Value};

use super::{child, gpu_harness, greedy_equals_cpu_with, model_dir, TestResult, BLOCK};
use super::{graphs_used_on_cuda, GREEDY_PROMPTS};

/// The argument that makes the test binary run [`preemption_child`].
pub const PREEMPTION_CHILD: &str = "--preemption-child";

/// KV blocks: fewer than the requests need together, enough for the longest alone.
const BLOCKS: u64 = 10;

pub fn greedy_with_preemption_equals_cpu() -> TestResult {
    // cuBLAS for every product: the GEMV timing at create takes minutes on the emulator.
    child::run(
        PREEMPTION_CHILD,
        &[("RILL_CUDA_GEMV", "off")],
        Duration::from_secs(500),
    )
}

pub fn preemption_child() -> TestResult {
    gpu_harness::load_emulated_driver()?;
    let dir = model_dir("qwen3-tiny")?;
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let c: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let field = |k: &str| {
        c[k].as_u64()
            .ok_or_else(|| format!("{}: no {k}", path.display()))
    };
    // K and V, f16, per layer and KV head.
    let per_token =
        2 * field("num_hidden_layers")? * field("num_key_value_heads")? * field("head_dim")? * 2;
    let extra = json!({
        "kv_cache_bytes": BLOCKS * BLOCK as u64 * per_token,
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
