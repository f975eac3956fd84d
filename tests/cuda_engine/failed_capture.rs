//! (h) A CUDA graph capture that fails (emulated only, in a child process): the step that
//! tried it keeps its eagerly computed results, graphs are off for the engine with the
//! reason in its stats, later decode steps run eagerly, and the greedy parity with the
//! CPU holds. Two failures, two paths through `Gpu::capture`: a launch refused inside
//! the capture (the error comes from the recorded work) and `cuGraphInstantiate` out of
//! memory (the error comes from ending the capture).

#![cfg(feature = "kernel-emu")]

use serde_json::json;

use super::{gpu_harness, greedy_equals_cpu_with, TestResult, GREEDY_PROMPTS};

pub fn greedy_after_a_failed_capture_equals_cpu() -> TestResult {
    // SAFETY: `void rill_fake_cuda_fail_capture(int)`.
    let fail_capture = unsafe { gpu_harness::fake_control::<i32>("rill_fake_cuda_fail_capture") }?;
    for (how, what, error) in [
        (
            1,
            "a launch refused in the capture",
            "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
        ),
        (
            2,
            "cuGraphInstantiate out of memory",
            "CUDA_ERROR_OUT_OF_MEMORY",
        ),
    ] {
        println!("  {what}:");
        fail_capture(how);
        let stats = greedy_equals_cpu_with("qwen3-tiny", "cuda", &GREEDY_PROMPTS, json!({}))?;
        let b = &stats["backend"];
        let off = b["cuda_graphs"].as_str().unwrap_or_default();
        if !off.starts_with("off after a failed capture") || !off.contains(error) {
            return Err(format!("{what}: graphs should be off naming {error}: {b}"));
        }
        let eager = b["eager_steps"].as_u64().unwrap_or(0);
        if b["graph_steps"] != 0 || b["graphs_captured"] != 0 || eager < 31 {
            return Err(format!(
                "{what}: every decode step should have run eagerly (31 or more): {b}"
            ));
        }
        println!("    cuda_graphs: {off}; {eager} eager steps");
    }
    Ok(())
}
