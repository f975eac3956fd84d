//! A step's inputs in one transfer: the staged index arrays and sampling rows
//! ([`Staging`]) packed into one pinned host buffer at the offsets of an [`InputLayout`],
//! copied to one device buffer with a single `cuMemcpyHtoDAsync`, and read by the kernels
//! through [`InputViews`] into that buffer.
//!
//! Before, each of the 13 arrays was its own copy from pageable memory: a driver call
//! and a staging copy each, every step. Now a decode step costs one call, and the copy
//! from page-locked memory is a DMA the host does not wait for.
//!
//! The layout depends only on (tokens, sequences, block-table stride), so every replay
//! of a CUDA graph (a fixed padded batch and stride) finds its inputs at the addresses
//! the capture recorded. The block tables come last: they are the one large array, and
//! only the part a step uses is copied.
//!
//! The host buffer is written only after the previous copy from it has run (an event
//! recorded after each copy is waited for first): a copy from page-locked memory reads
//! it when the stream gets there, not when the call returns. Should page-locked memory
//! be refused (a container's limit), the buffer is ordinary memory: the same single
//! copy, which the driver then stages itself.

use cudarc::driver::{CudaEvent, CudaSlice, PinnedHostSlice};

use super::device::{device_error, Gpu};
use super::ops::Dev;
use super::staging::Staging;
use crate::error::{Error, Result};

/// Every region starts at a multiple of this many bytes (any element type's alignment,
/// and 16-byte vector loads).
const ALIGN: usize = 16;

/// `len` elements from byte `offset` of the packed buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Region {
    pub offset: usize,
    pub len: usize,
}

/// Where each input array lies in the packed buffer, for a step of `num_tokens` tokens
/// in `num_seqs` sequences with block tables `table_stride` entries wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputLayout {
    // Per token.
    pub slots: Region,
    pub ids: Region,
    pub positions: Region,
    // Per sequence (the logits rows and their sampling settings: at most one per sequence).
    pub uniforms: Region,
    pub seq_lens: Region,
    pub cu_seqlens_q: Region,
    pub rows: Region,
    pub temperatures: Region,
    pub top_k: Region,
    pub top_p: Region,
    pub min_p: Region,
    pub num_top: Region,
    /// Last: `num_seqs * table_stride` entries.
    pub block_tables: Region,
    /// The bytes up to the end of the block tables: what one step copies.
    pub bytes: usize,
}

impl InputLayout {
    pub fn new(num_tokens: usize, num_seqs: usize, table_stride: usize) -> InputLayout {
        let mut end = 0usize;
        let mut next = |len: usize, elem: usize| {
            let offset = end.next_multiple_of(ALIGN);
            end = offset + len * elem;
            Region { offset, len }
        };
        // 8-byte elements first, then 4-byte ones.
        let slots = next(num_tokens, 8);
        let uniforms = next(num_seqs, 8);
        let ids = next(num_tokens, 4);
        let positions = next(num_tokens, 4);
        let seq_lens = next(num_seqs, 4);
        let cu_seqlens_q = next(num_seqs + 1, 4);
        let rows = next(num_seqs, 4);
        let temperatures = next(num_seqs, 4);
        let top_k = next(num_seqs, 4);
        let top_p = next(num_seqs, 4);
        let min_p = next(num_seqs, 4);
        let num_top = next(num_seqs, 4);
        let block_tables = next(num_seqs * table_stride, 4);
        InputLayout {
            slots,
            ids,
            positions,
            uniforms,
            seq_lens,
            cu_seqlens_q,
            rows,
            temperatures,
            top_k,
            top_p,
            min_p,
            num_top,
            block_tables,
            bytes: end,
        }
    }

    /// Packs the staged arrays into `dst` (at least [`InputLayout::bytes`] long). An
    /// array longer than its region is an [`Error::Internal`] naming it; a shorter one
    /// (no sampling rows, no gathered rows in a decode step) leaves the rest as it was:
    /// the kernels of that step do not read it.
    pub fn pack(&self, h: &Staging, dst: &mut [u8]) -> Result<()> {
        if dst.len() < self.bytes {
            return Err(Error::Internal(format!(
                "step inputs of {} bytes for a buffer of {}",
                self.bytes,
                dst.len()
            )));
        }
        put(dst, self.slots, &h.slots, "the slot mapping")?;
        put(dst, self.uniforms, &h.uniforms, "uniforms")?;
        put(dst, self.ids, &h.ids, "token ids")?;
        put(dst, self.positions, &h.positions, "positions")?;
        put(dst, self.seq_lens, &h.seq_lens, "sequence lengths")?;
        put(dst, self.cu_seqlens_q, &h.cu_seqlens_q, "query offsets")?;
        put(dst, self.rows, &h.rows, "logits rows")?;
        put(dst, self.temperatures, &h.temperatures, "temperatures")?;
        put(dst, self.top_k, &h.top_k, "top_k")?;
        put(dst, self.top_p, &h.top_p, "top_p")?;
        put(dst, self.min_p, &h.min_p, "min_p")?;
        put(dst, self.num_top, &h.num_top, "logprobs counts")?;
        put(dst, self.block_tables, &h.block_tables, "block tables")
    }
}

/// The element types of the input arrays: plain numbers, every bit pattern valid, no
/// padding, so their bytes can be copied as they are.
pub trait Plain: Copy {}
impl Plain for i32 {}
impl Plain for i64 {}
impl Plain for f32 {}
impl Plain for f64 {}

fn put<T: Plain>(dst: &mut [u8], r: Region, src: &[T], what: &str) -> Result<()> {
    if src.len() > r.len {
        return Err(Error::Internal(format!(
            "{what}: {} entries for a region of {}",
            src.len(),
            r.len
        )));
    }
    let n = std::mem::size_of_val(src);
    let out = dst
        .get_mut(r.offset..r.offset + n)
        .ok_or_else(|| Error::Internal(format!("{what}: region past the inputs buffer")))?;
    // SAFETY: `T: Plain` has no padding bytes, so its `n` bytes are initialized; `out` is
    // exactly `n` bytes long and a distinct (mutable) borrow, so the ranges do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr().cast::<u8>(), out.as_mut_ptr(), n);
    }
    Ok(())
}

/// The device addresses of one layout's arrays (in the packed device buffer).
#[derive(Clone, Copy, Debug)]
pub struct InputViews {
    pub ids: Dev<i32>,
    pub positions: Dev<i32>,
    pub slots: Dev<i64>,
    pub block_tables: Dev<i32>,
    pub seq_lens: Dev<i32>,
    pub cu_seqlens_q: Dev<i32>,
    pub rows: Dev<i32>,
    pub temperatures: Dev<f32>,
    pub top_k: Dev<i32>,
    pub top_p: Dev<f32>,
    pub min_p: Dev<f32>,
    pub uniforms: Dev<f64>,
    pub num_top: Dev<i32>,
}

impl InputViews {
    /// The views of `layout` in `buf`; every region must lie inside it.
    fn of(buf: &CudaSlice<u8>, layout: &InputLayout) -> Result<InputViews> {
        if layout.bytes > buf.len() {
            return Err(Error::Internal(format!(
                "step inputs of {} bytes past the device buffer of {}",
                layout.bytes,
                buf.len()
            )));
        }
        let base = Dev::of(buf).ptr();
        fn view<T>(base: u64, r: Region) -> Dev<T> {
            // SAFETY: the region lies inside the inputs buffer (checked above: every region
            // ends by `layout.bytes`), which lives as long as the runner; its offset is a
            // multiple of ALIGN, and device allocations are aligned for any type.
            unsafe { Dev::from_raw(base + r.offset as u64, r.len) }
        }
        Ok(InputViews {
            ids: view(base, layout.ids),
            positions: view(base, layout.positions),
            slots: view(base, layout.slots),
            block_tables: view(base, layout.block_tables),
            seq_lens: view(base, layout.seq_lens),
            cu_seqlens_q: view(base, layout.cu_seqlens_q),
            rows: view(base, layout.rows),
            temperatures: view(base, layout.temperatures),
            top_k: view(base, layout.top_k),
            top_p: view(base, layout.top_p),
            min_p: view(base, layout.min_p),
            uniforms: view(base, layout.uniforms),
            num_top: view(base, layout.num_top),
        })
    }
}

/// The host side of the packed inputs.
enum HostBuf {
    Pinned(PinnedHostSlice<u8>),
    /// Page-locked memory was refused: ordinary memory (see the module doc).
    Pageable(Vec<u8>),
}

/// The packed inputs: host buffer, device buffer, the event after the last copy, and the
/// views of the last step uploaded.
pub struct StepInputs {
    host: HostBuf,
    dev: CudaSlice<u8>,
    copied: CudaEvent,
    views: Option<InputViews>,
}

impl StepInputs {
    /// Buffers for the largest step: `max_tokens` tokens, `max_seqs` sequences, block
    /// tables `max_stride` wide.
    pub fn new(gpu: &Gpu, max_tokens: usize, max_seqs: usize, max_stride: usize) -> Result<Self> {
        let bytes = InputLayout::new(max_tokens, max_seqs, max_stride).bytes;
        // SAFETY: the memory starts uninitialized; it is zeroed below before anything
        // reads it (a step copies its whole layout, alignment gaps and regions it did not
        // fill included: those bytes are never read by a kernel, but they are defined).
        let host = match unsafe { gpu.ctx.alloc_pinned::<u8>(bytes) } {
            Ok(mut p) => {
                p.as_mut_slice()
                    .map_err(|e| device_error("pinned step inputs", e))?
                    .fill(0);
                HostBuf::Pinned(p)
            }
            Err(_) => HostBuf::Pageable(vec![0; bytes]),
        };
        let dev = gpu.zeros::<u8>(bytes, "the step inputs")?;
        let copied = gpu
            .ctx
            .new_event(None)
            .map_err(|e| device_error("cuEventCreate (step inputs)", e))?;
        Ok(StepInputs {
            host,
            dev,
            copied,
            views: None,
        })
    }

    /// Whether the host buffer is page-locked (stats).
    pub fn pinned(&self) -> bool {
        matches!(self.host, HostBuf::Pinned(_))
    }

    /// Packs `h` for a step of `num_tokens` tokens in `num_seqs` sequences with
    /// `table_stride`-wide block tables, queues the one copy, and makes these the views
    /// [`StepInputs::views`] returns.
    pub fn upload(
        &mut self,
        gpu: &Gpu,
        h: &Staging,
        num_tokens: usize,
        num_seqs: usize,
        table_stride: usize,
    ) -> Result<InputViews> {
        let layout = InputLayout::new(num_tokens, num_seqs, table_stride);
        let views = InputViews::of(&self.dev, &layout)?;
        // The previous copy from the host buffer must have run before it is rewritten.
        self.copied
            .synchronize()
            .map_err(|e| device_error("cuEventSynchronize (step inputs)", e))?;
        let host: &mut [u8] = match &mut self.host {
            HostBuf::Pinned(p) => p
                .as_mut_slice()
                .map_err(|e| device_error("pinned step inputs", e))?,
            HostBuf::Pageable(v) => v,
        };
        layout.pack(h, host)?;
        let src = &host[..layout.bytes];
        let mut dst = self.dev.slice_mut(..layout.bytes);
        // A plain slice is handed to cudarc (no event of its own, no synchronisation);
        // the driver sees page-locked memory and queues a DMA.
        gpu.stream
            .memcpy_htod(src, &mut dst)
            .map_err(|e| device_error("copy of the step inputs to the device", e))?;
        self.copied
            .record(&gpu.stream)
            .map_err(|e| device_error("cuEventRecord (step inputs)", e))?;
        self.views = Some(views);
        Ok(views)
    }

    /// The views of the last upload.
    pub fn views(&self) -> Result<InputViews> {
        self.views
            .ok_or_else(|| Error::Internal("CUDA step before its inputs were uploaded".into()))
    }
}

impl Drop for StepInputs {
    fn drop(&mut self) {
        // The host buffer is freed next: no copy from it may still be queued. cudarc
        // returns an error an earlier drop recorded instead of waiting: clear it first.
        // (An error from the wait itself means the context is gone, and the copy with it.)
        let _ = self.copied.context().check_err();
        let _ = self.copied.synchronize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions(l: &InputLayout) -> Vec<(&'static str, Region, usize)> {
        vec![
            ("slots", l.slots, 8),
            ("uniforms", l.uniforms, 8),
            ("ids", l.ids, 4),
            ("positions", l.positions, 4),
            ("seq_lens", l.seq_lens, 4),
            ("cu_seqlens_q", l.cu_seqlens_q, 4),
            ("rows", l.rows, 4),
            ("temperatures", l.temperatures, 4),
            ("top_k", l.top_k, 4),
            ("top_p", l.top_p, 4),
            ("min_p", l.min_p, 4),
            ("num_top", l.num_top, 4),
            ("block_tables", l.block_tables, 4),
        ]
    }

    #[test]
    fn regions_are_aligned_disjoint_sized_and_the_tables_come_last() {
        for (t, s, stride) in [
            (1, 1, 1),
            (3, 3, 7),
            (4, 2, 2),
            (8192, 256, 2048),
            (5, 1, 0),
        ] {
            let l = InputLayout::new(t, s, stride);
            let rs = regions(&l);
            let mut end = 0;
            for (name, r, elem) in &rs {
                assert_eq!(r.offset % ALIGN, 0, "{name}");
                assert!(r.offset >= end, "{name} overlaps the region before it");
                end = r.offset + r.len * elem;
            }
            assert_eq!(end, l.bytes);
            assert_eq!((l.ids.len, l.positions.len, l.slots.len), (t, t, t));
            assert_eq!(l.cu_seqlens_q.len, s + 1);
            assert_eq!(l.block_tables.len, s * stride);
            assert_eq!(l.num_top.len, s);
        }
        // Monotone in every size, so the largest step's buffer holds any smaller one.
        let big = InputLayout::new(16, 4, 16).bytes;
        for (t, s, stride) in [(16, 4, 15), (15, 4, 16), (16, 3, 16), (1, 1, 1)] {
            assert!(InputLayout::new(t, s, stride).bytes <= big);
        }
    }

    fn read<T: Plain + Default>(buf: &[u8], r: Region, n: usize) -> Vec<T> {
        let size = std::mem::size_of::<T>();
        (0..n)
            .map(|i| {
                let mut v = T::default();
                let at = r.offset + i * size;
                // SAFETY: `T: Plain` accepts any bytes; `at..at + size` is inside `buf`
                // (indexing checks it) and `v` is `size` bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        buf[at..at + size].as_ptr(),
                        (&mut v as *mut T).cast::<u8>(),
                        size,
                    )
                }
                v
            })
            .collect()
    }

    #[test]
    fn packing_puts_each_array_at_its_region() {
        let h = Staging {
            ids: vec![11, 12, 13],
            positions: vec![4, 5, 6],
            slots: vec![8, -1, 1 << 40],
            block_tables: vec![9, 2, 7, 1],
            seq_lens: vec![7, 6],
            cu_seqlens_q: vec![0, 2, 3],
            rows: vec![1, 2],
            temperatures: vec![0.7, 0.0],
            top_k: vec![5, 0],
            top_p: vec![0.9, 1.0],
            min_p: vec![0.0, 0.1],
            uniforms: vec![0.25, 0.5],
            num_top: vec![20, 0],
        };
        let l = InputLayout::new(3, 2, 2);
        let mut buf = vec![0xAAu8; l.bytes + 5];
        l.pack(&h, &mut buf).unwrap();
        assert_eq!(read::<i32>(&buf, l.ids, 3), h.ids);
        assert_eq!(read::<i32>(&buf, l.positions, 3), h.positions);
        assert_eq!(read::<i64>(&buf, l.slots, 3), h.slots);
        assert_eq!(read::<i32>(&buf, l.block_tables, 4), h.block_tables);
        assert_eq!(read::<i32>(&buf, l.seq_lens, 2), h.seq_lens);
        assert_eq!(read::<i32>(&buf, l.cu_seqlens_q, 3), h.cu_seqlens_q);
        assert_eq!(read::<i32>(&buf, l.rows, 2), h.rows);
        assert_eq!(read::<f32>(&buf, l.temperatures, 2), h.temperatures);
        assert_eq!(read::<i32>(&buf, l.top_k, 2), h.top_k);
        assert_eq!(read::<f32>(&buf, l.top_p, 2), h.top_p);
        assert_eq!(read::<f32>(&buf, l.min_p, 2), h.min_p);
        assert_eq!(read::<f64>(&buf, l.uniforms, 2), h.uniforms);
        assert_eq!(read::<i32>(&buf, l.num_top, 2), h.num_top);
        // Nothing past the layout is touched.
        assert!(buf[l.bytes..].iter().all(|&b| b == 0xAA));
    }

    #[test]
    fn arrays_that_do_not_fit_are_refused_naming_them() {
        let h = Staging {
            ids: vec![1, 2, 3],
            ..Staging::default()
        };
        let l = InputLayout::new(2, 1, 1);
        let mut buf = vec![0u8; l.bytes];
        let e = l.pack(&h, &mut buf).unwrap_err().to_string();
        assert!(e.contains("token ids: 3 entries for a region of 2"), "{e}");
        let short = InputLayout::new(3, 1, 1);
        let e = short.pack(&h, &mut buf[..4]).unwrap_err().to_string();
        assert!(e.contains("for a buffer of 4"), "{e}");
    }
}
