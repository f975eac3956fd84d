//! The parity tests' device when they run on the CPU kernel emulator
//! (tests/kernel_emu.rs, `rill::backend::cuda::emu`): buffers are host memory, aligned
//! like device allocations, that the emulated kernels address directly.

use std::alloc::{alloc, dealloc, Layout};

use rill::backend::cuda::emu::Emu;
use rill::backend::cuda::ops::{AttnScratch, Dev};

use super::parity::util::{Ctx, Val};

/// `cudaMalloc`'s alignment: the kernels' 16-byte loads need at least 16.
const ALIGN: usize = 256;

/// A buffer the emulated kernels read and write through raw pointers (never through a
/// Rust reference while a launch runs: launches are synchronous and take `Dev`s).
pub struct Buf<T> {
    ptr: *mut T,
    len: usize,
}

impl<T> Buf<T> {
    fn layout(len: usize) -> Layout {
        let bytes = (len * std::mem::size_of::<T>()).max(1);
        // Test buffers are far below isize::MAX; a failure here is a test bug.
        Layout::from_size_align(bytes, ALIGN).expect("test buffer layout")
    }

    /// A copy of `host`.
    fn from_slice(host: &[T]) -> Buf<T>
    where
        T: Copy,
    {
        let layout = Self::layout(host.len());
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc(layout) } as *mut T;
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // SAFETY: `ptr` holds `host.len()` elements (the layout) and is fresh, so the
        // ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(host.as_ptr(), ptr, host.len()) };
        Buf {
            ptr,
            len: host.len(),
        }
    }
}

impl<T> Drop for Buf<T> {
    fn drop(&mut self) {
        // SAFETY: allocated in `from_slice` with this layout.
        unsafe { dealloc(self.ptr as *mut u8, Self::layout(self.len)) };
    }
}

/// The emulator (nothing to open).
pub fn gpu() -> Result<&'static Emu, String> {
    static EMU: Emu = Emu;
    Ok(&EMU)
}

/// A host copy of `host` the kernels address.
pub fn up<T: Copy>(host: &[T]) -> Result<Buf<T>, String> {
    Ok(Buf::from_slice(host))
}

/// The contents of `s`.
pub fn down<T: Val>(s: &Buf<T>) -> Result<Vec<T>, String> {
    let mut v = vec![T::POISON; s.len];
    // SAFETY: `s` holds `s.len` initialized elements; no launch is running (they are
    // synchronous), so nothing writes them meanwhile.
    unsafe { std::ptr::copy_nonoverlapping(s.ptr, v.as_mut_ptr(), s.len) };
    Ok(v)
}

/// The whole of `s` as a kernel argument.
pub fn dev<T>(s: &Buf<T>) -> Dev<T> {
    // SAFETY: `s` is aligned for T (ALIGN) and holds `s.len` elements until it is
    // dropped, after the launches that use it (they run synchronously).
    unsafe { Dev::from_raw(s.ptr as u64, s.len) }
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
