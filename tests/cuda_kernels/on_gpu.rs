//! The parity tests' device when they run on a GPU (tests/cuda_kernels.rs): buffers are
//! `CudaSlice`s of the one open [`Gpu`].

use std::cell::OnceCell;

use cudarc::driver::{CudaSlice, DeviceRepr};
use rill::backend::cuda::device::Gpu;
use rill::backend::cuda::ops::{AttnScratch, Dev};

use super::parity::util::{Ctx, Val};

/// A device buffer.
pub type Buf<T> = CudaSlice<T>;

/// The GPU, opened once per test binary (the harness runs the tests on one thread).
pub fn gpu() -> Result<&'static Gpu, String> {
    thread_local! {
        static GPU: OnceCell<Result<&'static Gpu, String>> = const { OnceCell::new() };
    }
    GPU.with(|cell| {
        cell.get_or_init(|| {
            Gpu::open(0)
                .map(|g| &*Box::leak(Box::new(g)))
                .map_err(|e| format!("Gpu::open(0): {e}"))
        })
        .clone()
    })
}

/// A device copy of `host` (not empty).
pub fn up<T: DeviceRepr>(host: &[T]) -> Result<Buf<T>, String> {
    gpu()?.upload(host, "test input").ctx("upload")
}

/// The whole of `s`, copied to the host (waits for the stream: a kernel fault shows here).
pub fn down<T: Val>(s: &Buf<T>) -> Result<Vec<T>, String> {
    let mut v = vec![T::POISON; s.len()];
    gpu()?.read(s, &mut v, "test output").ctx("download")?;
    Ok(v)
}

/// The whole of `s` as a kernel argument.
pub fn dev<T>(s: &Buf<T>) -> Dev<T> {
    Dev::of(s)
}

/// Decode attention scratch ([`AttnScratch::new`]); it owns its buffers.
pub fn attn_scratch(
    seqs: usize,
    heads: usize,
    head_dim: usize,
    context: usize,
) -> Result<(AttnScratch, ()), String> {
    let s = AttnScratch::new(gpu()?, seqs, heads, head_dim, context).ctx("AttnScratch")?;
    Ok((s, ()))
}
