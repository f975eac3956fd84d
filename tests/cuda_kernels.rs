//! GPU parity tests of every kernel wrapper in `rill::backend::cuda::ops` and both cuBLAS
//! linear layers: seeded random inputs of several shapes (odd sizes, GQA groups 1 to 16,
//! long contexts over several 512-token partitions, shuffled block tables, prefill after a
//! cached prefix), every output buffer poisoned first, results compared with the CPU
//! backend's functions (`ops::rms_norm`, `Rope::apply`, `silu_mul`, `sampling::argmax`,
//! `logprobs::compute`, `Sampler`) or an f64 reference (attention, linear, softmax) within
//! a tolerance stated per test. The bodies are in `tests/cuda_kernels/`.
//!
//! Without a CUDA device, or built without the `cuda` feature, every test is reported as
//! NOT RUN (tests/gpu_harness); `RILL_GPU_TESTS=required` makes that a failure.

mod gpu_harness;

#[macro_use]
#[path = "cuda_kernels/names.rs"]
mod names;

#[cfg(feature = "cuda")]
#[path = "cuda_kernels/mod.rs"]
mod parity;

#[cfg(feature = "cuda")]
#[path = "cuda_kernels/on_gpu.rs"]
mod device;

use std::process::ExitCode;

#[cfg(feature = "cuda")]
macro_rules! body {
    ($name:ident) => {
        parity::$name
    };
}

#[cfg(not(feature = "cuda"))]
macro_rules! body {
    ($name:ident) => {
        not_built
    };
}

/// Never run: the harness reports the tests as NOT RUN without the feature.
#[cfg(not(feature = "cuda"))]
fn not_built() -> Result<(), String> {
    Err("built without the `cuda` feature".into())
}

macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        vec![$((stringify!($name), body!($name) as fn() -> Result<(), String>)),*]
    };
}

fn main() -> ExitCode {
    let tests: Vec<gpu_harness::Test> =
        emulable_tests!(tests, ptx_cache, launch_limits, linear, linear_f32);
    gpu_harness::main("cuda_kernels", &tests)
}
