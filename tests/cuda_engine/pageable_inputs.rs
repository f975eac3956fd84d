//! (g) The step inputs in ordinary (pageable) memory, the backend's fallback where
//! page-locked memory is refused (a low `RLIMIT_MEMLOCK`, a container): emulated only
//! (the emulated driver refuses `cuMemHostAlloc`), in a child process. Create succeeds
//! and says `gpu.pinned_inputs: false`, and the chunked greedy parity with the CPU holds:
//! its runs of steps with nothing read back rewrite the host buffer while earlier copies
//! may still be queued, which is safe only because a copy from pageable memory is staged
//! at the call.

#![cfg(feature = "kernel-emu")]

use std::time::Duration;

use serde_json::json;

use super::{child, engine, gpu_harness, greedy_chunked_equals_cpu, model_dir, TestResult};

/// The argument that makes the test binary run [`pageable_inputs_child`].
pub const PAGEABLE_INPUTS_CHILD: &str = "--pageable-inputs-child";

pub fn greedy_chunked_with_pageable_inputs_equals_cpu() -> TestResult {
    // cuBLAS for every product: the GEMV timing at create takes minutes on the emulator.
    child::run(
        PAGEABLE_INPUTS_CHILD,
        &[("RILL_CUDA_GEMV", "off")],
        Duration::from_secs(500),
    )
}

pub fn pageable_inputs_child() -> TestResult {
    gpu_harness::load_emulated_driver()?;
    let f = gpu_harness::fake_driver_fn("rill_fake_cuda_refuse_page_locked")?;
    // SAFETY: the export is `void rill_fake_cuda_refuse_page_locked(int)`
    // (tests/kernel_emu/fake_cuda.cpp).
    let refuse = unsafe { std::mem::transmute::<*mut libc::c_void, extern "C" fn(i32)>(f) };
    refuse(1);
    let stats = engine(&model_dir("qwen3-tiny")?, "cuda", json!({}))?.stats();
    if stats["gpu"]["pinned_inputs"] != false {
        return Err(format!(
            "page-locked memory was refused, yet stats say {stats}"
        ));
    }
    greedy_chunked_equals_cpu("qwen3-tiny", "cuda")
}
