//! The CUDA backend (feature `cuda`): the decoder on one NVIDIA GPU, with our kernels
//! (`kernels/*.cu`, compiled by NVRTC at create) and cuBLAS. Modules, bottom up:
//!
//! - [`probe`]: loads the driver at run time and lists the devices. A machine without a
//!   driver gets an `Err` naming the reason (no `libcuda.so.1`, driver too old, `cuInit`
//!   failed), never a panic: the library is looked for with `dlopen` before cudarc is
//!   asked for anything (cudarc 0.19 panics when its library is missing), and the calls
//!   into cudarc run under `catch_unwind` (cudarc also panics on a missing symbol).
//! - [`kernels`]: the CUDA C sources of `kernels/` embedded at build time, compiled with
//!   NVRTC for a device's compute capability, the PTX cached on disk; [`nvrtc_program`]
//!   is the NVRTC call itself, with our headers in memory.
//! - [`device`]: an open GPU (context, the one stream, every kernel loaded, cuBLAS).
//! - [`blas`]: its cuBLAS handle (workspace, f32 reductions; a drop that cannot panic).
//! - `ops` / `linear`: bounds-checked launches of each kernel and the cuBLAS matmuls.
//! - [`matmul`]: per weight shape, cuBLAS or our decode GEMV, chosen by timing at load.
//! - [`weights`]: the model's weights uploaded as bf16 (fused Q/K/V and gate/up).
//! - [`staging`]: a step's batch turned into the kernels' index arrays (host only).
//! - [`inputs`]: those arrays packed into page-locked memory, one copy to the device.
//! - [`runner`]: one engine step (forward pass, sampling) over the paged KV cache.
//! - [`graphs`]: decode steps captured as CUDA graphs and replayed.
//! - `emu` (feature `kernel-emu`, tests only): the kernels run on the CPU by an emulator,
//!   so their parity tests run without a GPU.
//!
//! NOT YET RUN ON A GPU. The parity tests (`tests/cuda_kernels.rs`,
//! `tests/cuda_engine.rs`) are written to run on a GPU machine (`scripts/gpu/`); CI runs
//! them on the CPU against an emulated CUDA driver (`RILL_GPU_TESTS=emulated`,
//! tests/kernel_emu/), which checks this code's logic end to end but not the device.
//!
//! cudarc is used with CUDA 13.0's bindings (`cuda-13000`, the GPU machine's driver 580)
//! and `dynamic-loading`: nothing CUDA is needed to build, and the driver, NVRTC and
//! cuBLAS are opened when first used. A driver older than 13.0 is refused by the probe:
//! the bindings may name entry points it lacks.

pub mod bandwidth;
pub mod blas;
pub mod device;
#[cfg(feature = "kernel-emu")]
pub mod emu;
pub mod graphs;
pub mod inputs;
pub mod kernels;
pub mod linear;
pub mod matmul;
pub mod nvrtc_program;
pub mod ops;
pub mod probe;
pub mod runner;
pub mod staging;
pub mod weights;
