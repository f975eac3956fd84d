//! [`Dev`]: a typed device address with the number of elements available from it. The
//! kernels take raw pointers, and a fused buffer (`[q | k | v]`, `[gate | up]`) is
//! addressed at offsets, so the wrappers take `Dev`s and check every length a launch will
//! touch against them before launching.
//!
//! A `Dev` does not borrow its buffer: the caller keeps the `CudaSlice` alive until the
//! work queued on the stream that uses it has run (the backend's buffers live as long as
//! the model; a `CudaSlice` dropped early is freed in stream order, after queued work).

use std::marker::PhantomData;

use cudarc::driver::{CudaSlice, DevicePtr};

use crate::error::{Error, Result};

/// `len` elements of `T` from device address `ptr` (see the module doc).
pub struct Dev<T> {
    ptr: u64,
    len: usize,
    _t: PhantomData<fn() -> T>,
}

// Manual impls: a derive would require `T: Clone/Copy/Debug`.
impl<T> Clone for Dev<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Dev<T> {}

impl<T> std::fmt::Debug for Dev<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Dev<{}>({:#x}, {} elements)",
            std::any::type_name::<T>(),
            self.ptr,
            self.len
        )
    }
}

impl<T> Dev<T> {
    /// The whole buffer `s`.
    pub fn of(s: &CudaSlice<T>) -> Dev<T> {
        // Gpu::open disables event tracking, so the returned SyncOnDrop records nothing;
        // with tracking on it would record a read event, which is harmless.
        let (ptr, _sync) = s.device_ptr(s.stream());
        Dev {
            ptr,
            len: s.len(),
            _t: PhantomData,
        }
    }

    /// `len` elements at device address `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` must be aligned for `T`, and `len` elements from it must stay allocated (in
    /// the context the kernels run in) while any work launched with this `Dev` runs: the
    /// wrappers trust `len` for their bounds checks.
    pub unsafe fn from_raw(ptr: u64, len: usize) -> Dev<T> {
        Dev {
            ptr,
            len,
            _t: PhantomData,
        }
    }

    /// No buffer (address 0, no elements): an absent optional kernel argument.
    pub fn null() -> Dev<T> {
        Dev {
            ptr: 0,
            len: 0,
            _t: PhantomData,
        }
    }

    /// The elements from `offset` on; `offset == len` gives an empty view at the end, and
    /// anything past the end is an [`Error::Internal`].
    pub fn at(self, offset: usize) -> Result<Dev<T>> {
        if offset > self.len {
            return Err(Error::Internal(format!(
                "device view at element {offset} of a buffer of {} elements",
                self.len
            )));
        }
        let bytes = (offset as u64).saturating_mul(std::mem::size_of::<T>() as u64);
        Ok(Dev {
            ptr: self.ptr.wrapping_add(bytes),
            len: self.len - offset,
            _t: PhantomData,
        })
    }

    /// Elements available from [`Dev::ptr`].
    pub fn len(self) -> usize {
        self.len
    }

    pub fn is_empty(self) -> bool {
        self.len == 0
    }

    /// The device address (`CUdeviceptr`).
    pub fn ptr(self) -> u64 {
        self.ptr
    }

    /// The bytes `[ptr, ptr + n * size_of::<T>())` of the first `n` elements, for overlap
    /// checks (saturating: a range that would wrap is as large as it can be).
    pub(super) fn byte_range(self, n: usize) -> (u64, u64) {
        let bytes = (n as u64).saturating_mul(std::mem::size_of::<T>() as u64);
        (self.ptr, self.ptr.saturating_add(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_move_the_address_by_whole_elements_and_stop_at_the_end() {
        // SAFETY: never launched; only the arithmetic is tested.
        let d = unsafe { Dev::<u32>::from_raw(0x1000, 10) };
        let v = d.at(3).unwrap();
        assert_eq!((v.ptr(), v.len()), (0x100c, 7));
        let end = d.at(10).unwrap();
        assert!(end.is_empty());
        assert_eq!(end.ptr(), 0x1028);
        let m = d.at(11).unwrap_err().to_string();
        assert!(m.contains("element 11 of a buffer of 10"), "{m}");
        let n = Dev::<f32>::null();
        assert_eq!((n.ptr(), n.len()), (0, 0));
        assert_eq!(v.byte_range(2), (0x100c, 0x1014));
        assert!(format!("{v:?}").contains("7 elements"));
    }
}
