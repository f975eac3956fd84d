//! The parity tests' device when they run on the CPU kernel emulator
//! (tests/kernel_emu.rs, `rill::backend::cuda::emu`): buffers are host memory that the
//! emulated kernels address directly, each ending at an unmapped page.

use rill::backend::cuda::emu::{Emu, GuardedAlloc};
use rill::backend::cuda::ops::{AttnScratch, Dev};

use super::parity::util::{Ctx, Val};

/// A buffer the emulated kernels read and write through raw pointers (never through a
/// Rust reference while a launch runs: launches are synchronous and take `Dev`s). It
/// ends within 16 bytes of an unmapped page, so a kernel that reads or writes past its
/// end stops the test with the kernel, block and thread named.
pub struct Buf<T> {
    mem: GuardedAlloc,
    len: usize,
    _t: std::marker::PhantomData<T>,
}

impl<T> Buf<T> {
    /// A copy of `host`.
    fn from_slice(host: &[T]) -> Result<Buf<T>, String>
    where
        T: Copy,
    {
        let bytes = std::mem::size_of_val(host);
        let mem = GuardedAlloc::new(bytes, 16).ctx("test buffer")?;
        // SAFETY: `mem` holds `bytes` bytes, 16-byte aligned (at least T's alignment), and
        // is fresh, so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(host.as_ptr(), mem.ptr() as *mut T, host.len()) };
        Ok(Buf {
            mem,
            len: host.len(),
            _t: std::marker::PhantomData,
        })
    }

    fn ptr(&self) -> *mut T {
        self.mem.ptr() as *mut T
    }
}

/// The emulator (nothing to open).
pub fn gpu() -> Result<&'static Emu, String> {
    static EMU: Emu = Emu;
    Ok(&EMU)
}

/// A host copy of `host` the kernels address.
pub fn up<T: Copy>(host: &[T]) -> Result<Buf<T>, String> {
    Buf::from_slice(host)
}

/// The contents of `s`.
pub fn down<T: Val>(s: &Buf<T>) -> Result<Vec<T>, String> {
    let mut v = vec![T::POISON; s.len];
    // SAFETY: `s` holds `s.len` initialized elements; no launch is running (they are
    // synchronous), so nothing writes them meanwhile.
    unsafe { std::ptr::copy_nonoverlapping(s.ptr(), v.as_mut_ptr(), s.len) };
    Ok(v)
}

/// The whole of `s` as a kernel argument.
pub fn dev<T>(s: &Buf<T>) -> Dev<T> {
    // SAFETY: `s` is 16-byte aligned (enough for T) and holds `s.len` elements until it
    // is dropped, after the launches that use it (they run synchronously).
    unsafe { Dev::from_raw(s.ptr() as u64, s.len) }
}

/// Decode attention scratch in host buffers ([`AttnScratch::from_devs`]); the second
/// value keeps them alive.
pub fn attn_scratch(
    seqs: usize,
    heads: usize,
    head_dim: usize,
    context: usize,
) -> Result<(AttnScratch, Vec<Buf<f32>>), String> {
    let (sums, out) = AttnScratch::sizes(seqs, heads, head_dim, context).ctx("AttnScratch")?;
    let bufs = vec![
        up(&vec![0f32; out])?,
        up(&vec![0f32; sums])?,
        up(&vec![0f32; sums])?,
    ];
    let devs = (dev(&bufs[0]), dev(&bufs[1]), dev(&bufs[2]));
    let s = AttnScratch::from_devs(devs, seqs, heads, head_dim, context).ctx("AttnScratch")?;
    Ok((s, bufs))
}
