//! The kernel emulator (feature `kernel-emu`, tests only): [`Emu`] runs the same
//! [`Launch`]es as the GPU, on the CPU, through the sources of `kernels/` compiled as C++
//! with the CUDA dialect and fiber runtime of `tests/kernel_emu/` (built by build.rs).
//! `tests/kernel_emu.rs` runs the kernel parity tests of `tests/cuda_kernels/` on it, so
//! the kernels' indexing, masking, reductions and warp collectives, and the wrappers'
//! plans (grids, argument order), are checked on every machine, not only on a GPU.
//!
//! "Device" memory is host memory here: a [`Dev`](super::ops::Dev) of the emulator is a
//! host address (`Dev::from_raw`); the tests allocate it with [`GuardedAlloc`], so an
//! access past a buffer's end faults and is reported with the kernel, block and thread. What it cannot show: timing, occupancy, register or
//! shared-memory limits, the device's math library (expf, ... come from the C library),
//! and most races between threads (fibers switch only at barriers and warp collectives;
//! tests/kernel_emu/README.md).

use std::ffi::{c_char, c_int, c_uint, c_void, CString};

use super::ops::launch::{Arg, Launch, Launcher};
use crate::error::{Error, Result};

extern "C" {
    fn rill_emu_launch(
        name: *const c_char,
        gx: c_uint,
        gy: c_uint,
        gz: c_uint,
        block: c_uint,
        params: *mut *mut c_void,
        sizes: *const usize,
        nparams: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// Host memory for the emulator's test buffers: `bytes` bytes, aligned to `align`, ending
/// less than `align` bytes before an unmapped page (and with one before them), so a kernel
/// that runs past a buffer's end faults at once (the emulator names the kernel, block and
/// thread) instead of reading or corrupting a neighbour.
pub struct GuardedAlloc {
    base: *mut libc::c_void,
    total: usize,
    ptr: *mut u8,
}

impl GuardedAlloc {
    /// `align` must be a power of two up to the page size.
    pub fn new(bytes: usize, align: usize) -> Result<GuardedAlloc> {
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        if !align.is_power_of_two() || align > page {
            return Err(Error::Internal(format!(
                "GuardedAlloc: alignment {align} is not a power of two up to {page}"
            )));
        }
        let data = bytes
            .checked_add(align)
            .map(|n| n.div_ceil(page).max(1) * page)
            .and_then(|n| n.checked_add(2 * page))
            .ok_or_else(|| Error::Internal(format!("GuardedAlloc: {bytes} bytes overflow")))?;
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                data,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(Error::Internal(format!(
                "GuardedAlloc: mmap of {data} bytes failed: {}",
                std::io::Error::last_os_error()
            )));
        }
        let first = base as usize;
        let end = first + data - page; // the trailing guard page
                                       // SAFETY: both pages lie inside the mapping just made.
        let guarded = unsafe {
            libc::mprotect(base, page, libc::PROT_NONE) == 0
                && libc::mprotect(end as *mut libc::c_void, page, libc::PROT_NONE) == 0
        };
        let alloc = GuardedAlloc {
            base,
            total: data,
            ptr: ((end - bytes) & !(align - 1)) as *mut u8,
        };
        if !guarded {
            return Err(Error::Internal(format!(
                "GuardedAlloc: mprotect failed: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(alloc)
    }

    /// The first byte (aligned as asked).
    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }
}

impl Drop for GuardedAlloc {
    fn drop(&mut self) {
        // SAFETY: `base`/`total` are the mapping made in `new`, unmapped once here.
        unsafe { libc::munmap(self.base, self.total) };
    }
}

/// The CPU kernel emulator (see the module doc).
#[derive(Debug, Default)]
pub struct Emu;

/// One argument's bytes, kept where the parameter array points.
enum Val {
    U64(u64),
    I32(i32),
    I64(i64),
    F32(f32),
}

impl Val {
    fn size(&self) -> usize {
        match self {
            Val::U64(_) | Val::I64(_) => 8,
            Val::I32(_) | Val::F32(_) => 4,
        }
    }

    fn ptr(&mut self) -> *mut c_void {
        match self {
            Val::U64(v) => v as *mut u64 as *mut c_void,
            Val::I32(v) => v as *mut i32 as *mut c_void,
            Val::I64(v) => v as *mut i64 as *mut c_void,
            Val::F32(v) => v as *mut f32 as *mut c_void,
        }
    }
}

impl Launcher for Emu {
    fn launch(&self, launches: &[Launch]) -> Result<()> {
        for l in launches {
            let mut vals: Vec<Val> = l
                .args
                .iter()
                .map(|a| match *a {
                    Arg::Ptr(v) => Val::U64(v),
                    Arg::Int(v) => Val::I32(v),
                    Arg::Long(v) => Val::I64(v),
                    Arg::Float(v) => Val::F32(v),
                })
                .collect();
            let sizes: Vec<usize> = vals.iter().map(Val::size).collect();
            let mut params: Vec<*mut c_void> = vals.iter_mut().map(Val::ptr).collect();
            let name = CString::new(l.kernel)
                .map_err(|_| Error::Internal(format!("kernel name {:?} has a NUL", l.kernel)))?;
            let mut err = vec![0u8; 1024];
            // SAFETY: `l` was built by a `plan_*` function (see `launch::run`): its
            // arguments are in the order and of the C types of the entry point's
            // parameter list (the emulator also refuses a count or size mismatch), and
            // each pointer argument is a `Dev` the caller made with `Dev::from_raw` over
            // host memory that holds every element the kernel touches and stays alive for
            // this call (the emulator runs synchronously). `params` points at `vals` and
            // `sizes` has as many entries, both alive until the call returns; `err` has
            // `err.len()` bytes.
            let rc = unsafe {
                rill_emu_launch(
                    name.as_ptr(),
                    l.grid.0,
                    l.grid.1,
                    l.grid.2,
                    l.block,
                    params.as_mut_ptr(),
                    sizes.as_ptr(),
                    sizes.len(),
                    err.as_mut_ptr() as *mut c_char,
                    err.len(),
                )
            };
            if rc != 0 {
                let end = err.iter().position(|&b| b == 0).unwrap_or(err.len());
                return Err(Error::Device {
                    op: format!("emulated launch of {}", l.kernel),
                    message: String::from_utf8_lossy(&err[..end]).into_owned(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(kernel: &'static str, grid: usize, block: usize, args: Vec<Arg>) -> Result<()> {
        Emu.launch(&[Launch::new(kernel, (grid, 1, 1), block, args)?])
    }

    fn error_of(kernel: &'static str, grid: usize, block: usize) -> String {
        match launch(kernel, grid, block, vec![]) {
            Ok(()) => panic!("{kernel} ran without an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn shuffles_and_barriers_follow_cuda() {
        let (blocks, threads) = (3, 128);
        let mut out = vec![-1i32; blocks * threads];
        let mut sums = vec![-1f32; blocks];
        let args = vec![
            Arg::Ptr(out.as_mut_ptr() as u64),
            Arg::Ptr(sums.as_mut_ptr() as u64),
        ];
        launch("emu_shuffle_kernel", blocks, threads, args).expect("emu_shuffle_kernel");
        for (i, &v) in out.iter().enumerate() {
            let lane = (i % 32) as i32;
            // Width 16, xor 16: lanes 16..32 read lane - 16 (an earlier segment may be
            // read), lanes 0..16 would read a later segment and keep their own value.
            assert_eq!(v, (lane ^ 1) + 100 * 3 + 10000 * (lane % 16), "thread {i}");
        }
        let want = (threads * (threads - 1) / 2) as f32;
        assert_eq!(sums, vec![want; blocks]);
    }

    /// Shared memory a block has not written reads as 0xFF bytes (NaN, -1), never as what
    /// an earlier block on the same worker left there (blocks outnumber the workers).
    #[test]
    fn unwritten_shared_memory_is_garbage_in_every_block() {
        let blocks = 256;
        let mut out = vec![0u32; blocks];
        let args = vec![Arg::Ptr(out.as_mut_ptr() as u64)];
        launch("emu_shared_unwritten_kernel", blocks, 64, args).expect("the kernel");
        for (b, &v) in out.iter().enumerate() {
            assert_eq!(v, u32::MAX, "block {b} read {v:#x}");
        }
    }

    #[test]
    fn a_collective_with_an_exited_lane_is_an_error() {
        let e = error_of("emu_exited_lane_kernel", 1, 32);
        assert!(e.contains("has exited"), "{e}");
    }

    #[test]
    fn a_deadlock_is_an_error_not_a_hang() {
        let e = error_of("emu_deadlock_kernel", 2, 64);
        assert!(e.contains("deadlock"), "{e}");
    }

    #[test]
    fn a_trap_names_the_block_and_thread() {
        let e = error_of("emu_trap_kernel", 4, 32);
        assert!(e.contains("block (1,0,0) thread 5: __trap()"), "{e}");
    }

    #[test]
    fn guarded_buffers_end_at_an_unmapped_page() {
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        for (bytes, align) in [(1, 1), (4096, 16), (4097, 16), (100, 256), (0, 16)] {
            let a = GuardedAlloc::new(bytes, align).expect("GuardedAlloc");
            let p = a.ptr() as usize;
            assert_eq!(p % align, 0);
            // SAFETY: the buffer's `bytes` bytes are mapped read-write.
            unsafe { std::ptr::write_bytes(a.ptr(), 0xA5, bytes) };
            let slack = page - (p + bytes) % page;
            assert!(
                slack == page || slack < align,
                "{bytes} bytes, align {align}: {slack}"
            );
        }
        assert!(GuardedAlloc::new(8, 3).is_err());
    }

    /// In a child process (the fault ends it): a write one element past a guarded
    /// buffer's end is reported with the kernel, block and thread; the last element is
    /// writable.
    #[test]
    fn an_access_past_a_buffer_end_is_reported() {
        const CHILD: &str = "RILL_EMU_FAULT_CHILD";
        let buf = GuardedAlloc::new(10 * 4, 4).expect("GuardedAlloc");
        let write_at = |i: i64| {
            let args = vec![Arg::Ptr(buf.ptr() as u64), Arg::Long(i)];
            launch("emu_write_at_kernel", 2, 32, args)
        };
        write_at(9).expect("the last element");
        if std::env::var_os(CHILD).is_some() {
            let _ = write_at(10);
            return; // not reached: the fault ends the process
        }
        let name = "backend::cuda::emu::tests::an_access_past_a_buffer_end_is_reported";
        let exe = std::env::current_exe().expect("the test binary");
        let out = std::process::Command::new(exe)
            .args(["--exact", name, "--nocapture", "--test-threads", "1"])
            .env(CHILD, "1")
            .output()
            .expect("run the child");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the child survived: {err}");
        assert!(
            err.contains("emu_write_at_kernel block (0,0,0) thread 0 touched unmapped address"),
            "{err}"
        );
    }

    #[test]
    fn arguments_must_match_the_parameter_list() {
        let e = launch("emu_write_at_kernel", 1, 32, vec![Arg::Ptr(0)]).unwrap_err();
        assert!(
            e.to_string().contains("1 arguments for 2 parameters"),
            "{e}"
        );
        let e = launch("emu_write_at_kernel", 1, 32, vec![Arg::Ptr(0), Arg::Int(0)]).unwrap_err();
        assert!(
            e.to_string()
                .contains("argument 1 has 4 bytes, the parameter 8"),
            "{e}"
        );
    }

    #[test]
    fn a_mask_without_the_calling_lane_is_an_error() {
        let e = error_of("emu_foreign_mask_kernel", 1, 32);
        assert!(
            e.contains("thread 0: __syncwarp mask leaves out the calling lane"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_kernel_is_an_error() {
        let e = error_of("no_such_kernel", 1, 32);
        assert!(e.contains("no emulated kernel named no_such_kernel"), "{e}");
    }
}
