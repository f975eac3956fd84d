//! (g) The step inputs in ordinary (pageable) memory, the backend's fallback where
//! page-locked memory is refused (a low `RLIMIT_MEMLOCK`, a container): emulated only
//! (the emulated driver refuses `cuMemHostAlloc`), in a child process. Create succeeds
//! and says `gpu.pinned_inputs: false`, and the chunked greedy parity with the CPU holds:
//! its runs of steps with nothing read back rewrite the host buffer while earlier copies
//! may still be queued, which is safe only because a copy from pageable memory is staged
//! at the call.

#![cfg(feature = "kernel-emu")]

use serde_json::json;

use super::{engine, gpu_harness, greedy_chunked_equals_cpu, model_dir, TestResult};

pub fn greedy_chunked_with_pageable_inputs_equals_cpu() -> TestResult {
    // SAFETY: `void rill_fake_cuda_refuse_page_locked(int)`.
    let refuse = unsafe { gpu_harness::fake_control::<i32>("rill_fake_cuda_refuse_page_locked") }?;
    refuse(1);
    let stats = engine(&model_dir("qwen3-tiny")?, "cuda", json!({}))?.stats();
    if stats["gpu"]["pinned_inputs"] != false {
        return Err(format!(
            "page-locked memory was refused, yet stats say {stats}"
        ));
    }
    greedy_chunked_equals_cpu("qwen3-tiny", "cuda")
}
