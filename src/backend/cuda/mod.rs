//! The CUDA backend (feature `cuda`), being written. What exists:
//!
//! - [`probe`]: loads the driver at run time and lists the devices. A machine without a
//!   driver gets an `Err` naming the reason (no `libcuda.so.1`, driver too old, `cuInit`
//!   failed), never a panic: the library is looked for with `dlopen` before cudarc is
//!   asked for anything (cudarc 0.19 panics when its library is missing), and the calls
//!   into cudarc run under `catch_unwind` (cudarc also panics on a missing symbol).
//! - [`kernels`]: the CUDA C sources of `kernels/` embedded at build time, compiled with
//!   NVRTC for a device's compute capability, the PTX cached on disk.
//!
//! The forward pass is not written yet; `backend::select` refuses a CUDA device.
//!
//! cudarc is used with CUDA 13.0's bindings (`cuda-13000`, the GPU machine's driver 580)
//! and `dynamic-loading`: nothing CUDA is needed to build, and the driver, NVRTC and
//! cuBLAS are opened when first used. A driver older than 13.0 is refused by the probe:
//! the bindings may name entry points it lacks.

pub mod bandwidth;
pub mod device;
pub mod kernels;
pub mod probe;
