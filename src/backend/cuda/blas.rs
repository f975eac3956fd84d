//! The cuBLAS handle of a [`Gpu`](super::device::Gpu): created on the GPU's stream with
//! its own workspace (so that no cuBLAS call allocates: a CUDA graph capture cannot hold
//! an allocation) and f32 split-K reductions (the linear layers' f32 accumulation).
//!
//! Our own wrapper rather than cudarc's `CudaBlas`, whose drop unwraps `cublasDestroy`:
//! that call synchronizes the device, so after a kernel fault (a sticky error: the
//! context is unusable) it fails, and the panic would come out of the engine's teardown.
//! Here a failed destroy is ignored; the faulted context is released with everything else.

use std::sync::Arc;

use cudarc::cublas::result as blas_result;
use cudarc::cublas::sys::{cublasHandle_t, cublasMath_t, cublasStatus_t};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};

use super::device::{device_error, guarded_device};
use super::probe;
use crate::error::{Error, Result};

/// cuBLAS workspace bytes (NVIDIA's recommendation for Hopper is 32 MiB).
const WORKSPACE: usize = 32 << 20;

/// A cuBLAS handle bound to one stream, with its workspace.
pub struct Blas {
    handle: cublasHandle_t,
    /// Kept alive while the handle may use it (dropped after the handle is destroyed).
    workspace: Option<CudaSlice<u8>>,
    stream: Arc<CudaStream>,
}

// SAFETY: a cuBLAS handle may be used from any thread, one call at a time (it is not
// `Sync`: calls change its state); the stream and workspace it holds are `Send`.
unsafe impl Send for Blas {}

impl Blas {
    /// A handle on `stream` with its workspace and math mode set.
    pub fn new(stream: &Arc<CudaStream>) -> Result<Blas> {
        stream
            .context()
            .bind_to_thread()
            .map_err(|e| device_error("binding the CUDA context for cuBLAS", e))?;
        // cudarc panics when libcublas cannot be loaded: look for it first (an error that
        // names the library), and guard the call anyway.
        probe::CUBLAS.load().map_err(|e| Error::Device {
            op: "cublasCreate".into(),
            message: e.to_string(),
        })?;
        let handle = guarded_device("cublasCreate", blas_result::create_handle)?;
        let mut blas = Blas {
            handle,
            workspace: None,
            stream: stream.clone(),
        };
        // SAFETY: the handle is live and the stream is the GPU's, alive as long as `blas`.
        unsafe { blas_result::set_stream(handle, stream.cu_stream() as _) }
            .map_err(|e| device_error("cublasSetStream", e))?;
        let workspace = stream
            .alloc_zeros::<u8>(WORKSPACE)
            .map_err(|e| device_error("allocating the cuBLAS workspace (32 MiB)", e))?;
        {
            let (ptr, _guard) = workspace.device_ptr(stream);
            // SAFETY: the handle is live; the workspace is a device allocation of
            // WORKSPACE bytes that `blas` keeps until after the handle is destroyed.
            let status = unsafe {
                cudarc::cublas::sys::cublasSetWorkspace_v2(
                    handle,
                    ptr as *mut std::ffi::c_void,
                    WORKSPACE,
                )
            };
            check(status, "cublasSetWorkspace")?;
        }
        blas.workspace = Some(workspace);
        // SAFETY: the handle is live; the mode is a valid cublasMath_t.
        let status = unsafe {
            cudarc::cublas::sys::cublasSetMathMode(
                handle,
                cublasMath_t::CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION,
            )
        };
        check(status, "cublasSetMathMode")?;
        Ok(blas)
    }

    /// The raw handle, for cuBLAS calls on the GPU's stream.
    pub fn handle(&self) -> cublasHandle_t {
        self.handle
    }
}

fn check(status: cublasStatus_t, op: &str) -> Result<()> {
    if status == cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(device_error(op, status))
    }
}

impl Drop for Blas {
    fn drop(&mut self) {
        // Bind the context for cuBLAS's own calls; a failure (a faulted context) changes
        // nothing below.
        let _ = self.stream.context().bind_to_thread();
        // SAFETY: the handle was created in `new`, is destroyed once, here, and is not
        // used afterwards. Its error is ignored (see the module doc).
        let _ = unsafe { blas_result::destroy_handle(self.handle) };
        // The workspace goes after the handle that used it.
        self.workspace = None;
    }
}
