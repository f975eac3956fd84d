//! One GPU opened for work: its context and stream, every embedded kernel compiled for its
//! architecture (through the PTX cache) and loaded, and a cuBLAS handle on the stream.
//!
//! [`Gpu::open`] is the one way in: it probes first (so a machine without a driver gets an
//! error naming the reason, never a cudarc panic), and every cudarc call that can fail is
//! turned into [`Error::Device`] naming the operation. The stream is the one every launch,
//! copy and cuBLAS call of the backend goes to, in order, so nothing inside a step needs a
//! host synchronisation; cudarc's per-slice event tracking is switched off for the same
//! reason (it is only needed across streams, and it cannot be recorded into a CUDA graph).

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::sys::{
    CUgraphInstantiate_flags_enum, CUstreamCaptureMode, CUstreamCaptureStatus,
};
use cudarc::driver::{
    result, CudaContext, CudaFunction, CudaGraph, CudaModule, CudaSlice, CudaStream, DeviceRepr,
    ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;

use super::blas::Blas;
use super::kernels;
use super::probe::{self, guarded, DeviceInfo, ProbeError};
use crate::error::{Error, Result};

/// A device error for operation `op` (`"cuMemAlloc of the KV cache"`).
pub fn device_error(op: impl Into<String>, e: impl std::fmt::Debug) -> Error {
    Error::Device {
        op: op.into(),
        message: format!("{e:?}"),
    }
}

/// An open GPU: context, stream, loaded kernels, cuBLAS.
pub struct Gpu {
    pub info: DeviceInfo,
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub blas: Blas,
    functions: HashMap<String, CudaFunction>,
    /// The modules stay loaded while their functions are in use.
    _modules: Vec<Arc<CudaModule>>,
    /// How many kernel files came from the PTX cache (the rest were compiled).
    pub ptx_from_cache: usize,
}

impl Gpu {
    /// Opens device `ordinal`: probes the driver, creates the primary context and a
    /// stream, compiles (or reads from the PTX cache) and loads every kernel file, and
    /// creates the cuBLAS handle.
    pub fn open(ordinal: usize) -> Result<Gpu> {
        let driver = probe::probe().map_err(|e| {
            Error::config(
                "device",
                format!("\"cuda:{ordinal}\" is not available: {e}"),
            )
        })?;
        let info = driver.devices.get(ordinal).cloned().ok_or_else(|| {
            Error::config(
                "device",
                format!(
                    "\"cuda:{ordinal}\" is not available: no CUDA device {ordinal} (the driver \
                     reports {} device(s))",
                    driver.devices.len()
                ),
            )
        })?;
        info.check_supported().map_err(|why| {
            Error::config(
                "device",
                format!("\"cuda:{ordinal}\" cannot be used: {why}"),
            )
        })?;
        let ctx = guarded_device("cuCtx (primary context)", || CudaContext::new(ordinal))?;
        // SAFETY: no slice exists yet on this context; with one stream, event tracking
        // only adds records that a graph capture cannot hold.
        unsafe { ctx.disable_event_tracking() };
        let stream = guarded_device("cuStreamCreate", || ctx.new_stream())?;
        let cache = kernels::default_cache_dir();
        let arch = info.arch();
        let mut functions = HashMap::new();
        let mut modules = Vec::new();
        let mut ptx_from_cache = 0;
        for compiled in kernels::compile_all(&arch, cache.as_deref())? {
            ptx_from_cache += compiled.from_cache as usize;
            let entries = kernels::entry_points(&compiled.ptx);
            let module = guarded_device(format!("cuModuleLoadData({})", compiled.name), || {
                ctx.load_module(Ptx::from_src(compiled.ptx.clone()))
            })?;
            for entry in entries {
                let f = guarded_device(format!("cuModuleGetFunction({entry})"), || {
                    module.load_function(&entry)
                })?;
                functions.insert(entry, f);
            }
            modules.push(module);
        }
        let blas = Blas::new(&stream)?;
        Ok(Gpu {
            info,
            ctx,
            stream,
            blas,
            functions,
            _modules: modules,
            ptx_from_cache,
        })
    }

    /// The kernel entry point `name` (`"rms_norm_kernel"`).
    pub fn function(&self, name: &str) -> Result<&CudaFunction> {
        self.functions
            .get(name)
            .ok_or_else(|| Error::Internal(format!("no CUDA kernel entry point {name:?} loaded")))
    }

    /// Names of every loaded entry point, sorted.
    pub fn function_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.functions.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// A zeroed device buffer of `n` elements; `what` names it in an out-of-memory error.
    pub fn zeros<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        n: usize,
        what: &str,
    ) -> Result<CudaSlice<T>> {
        self.stream
            .alloc_zeros::<T>(n.max(1))
            .map_err(|e| self.alloc_error(what, n * std::mem::size_of::<T>(), e))
    }

    /// A device copy of `host`; `what` names it in an error.
    pub fn upload<T: DeviceRepr>(&self, host: &[T], what: &str) -> Result<CudaSlice<T>> {
        if host.is_empty() {
            return Err(Error::Internal(format!("upload of an empty {what}")));
        }
        self.stream
            .clone_htod(host)
            .map_err(|e| self.alloc_error(what, std::mem::size_of_val(host), e))
    }

    /// Copies the first `dst.len()` elements of `src` to the host; this waits for the
    /// stream.
    pub fn read<T: DeviceRepr>(&self, src: &CudaSlice<T>, dst: &mut [T], what: &str) -> Result<()> {
        self.read_at(src, 0, dst, what)
    }

    /// Copies `dst.len()` elements of `src` from element `offset` to the host; this waits
    /// for the stream.
    pub fn read_at<T: DeviceRepr>(
        &self,
        src: &CudaSlice<T>,
        offset: usize,
        dst: &mut [T],
        what: &str,
    ) -> Result<()> {
        let view = src
            .try_slice(offset..offset + dst.len())
            .ok_or_else(|| Error::Internal(format!("{what}: read past the end of its buffer")))?;
        self.stream
            .memcpy_dtoh(&view, dst)
            .map_err(|e| device_error(format!("copy of {what} to the host"), e))
    }

    /// Captures the work `f` queues on the stream into an instantiated graph (`what` names
    /// it in errors). The capture is always ended, whatever `f` or the driver did: the
    /// stream never stays in capture mode, where every later launch would be recorded
    /// instead of run.
    pub fn capture(&self, what: &str, f: impl FnOnce() -> Result<()>) -> Result<CudaGraph> {
        let s = &self.stream;
        s.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(|e| device_error(format!("cuStreamBeginCapture ({what})"), e))?;
        let queued = f();
        let ended = s.end_capture(CUgraphInstantiate_flags_enum(0));
        if ended.is_err() {
            self.abandon_capture();
        }
        queued?;
        ended
            .map_err(|e| device_error(format!("cuStreamEndCapture ({what})"), e))?
            .ok_or_else(|| Error::Internal(format!("the capture of {what} produced no graph")))
    }

    /// Ends a capture that is still open after a failed `end_capture` (cudarc returns an
    /// error recorded earlier, by a drop, before it calls `cuStreamEndCapture`), and
    /// destroys whatever graph it held.
    fn abandon_capture(&self) {
        let capturing = matches!(
            self.stream.capture_status(),
            Ok(CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_ACTIVE
                | CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_INVALIDATED)
        );
        if !capturing {
            return;
        }
        // SAFETY: the stream is this GPU's and is capturing; the graph the driver returns
        // is owned by nobody else and destroyed here, once.
        unsafe {
            if let Ok(graph) = result::stream::end_capture(self.stream.cu_stream()) {
                if !graph.is_null() {
                    let _ = result::graph::destroy(graph);
                }
            }
        }
    }

    /// (free, total) device memory in bytes.
    pub fn memory(&self) -> Result<(usize, usize)> {
        self.ctx
            .mem_get_info()
            .map_err(|e| device_error("cuMemGetInfo", e))
    }

    fn alloc_error(&self, what: &str, bytes: usize, e: impl std::fmt::Debug) -> Error {
        let free = self
            .memory()
            .map(|(free, total)| format!("; {} free of {}", size(free), size(total)))
            .unwrap_or_default();
        Error::Device {
            op: format!("allocating {what} ({})", size(bytes)),
            message: format!("{e:?}{free}"),
        }
    }
}

/// `bytes` for a message: "1.50 GiB", "12.0 MiB", "512 bytes".
fn size(bytes: usize) -> String {
    let b = bytes as f64;
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{bytes} bytes")
    }
}

/// Runs a cudarc call under `catch_unwind` (cudarc panics on a missing symbol), turning
/// both its error and a panic into [`Error::Device`] naming `op`.
pub(super) fn guarded_device<T, E: std::fmt::Debug>(
    op: impl Into<String>,
    f: impl FnOnce() -> std::result::Result<T, E>,
) -> Result<T> {
    let op = op.into();
    guarded(|| {
        f().map_err(|e| ProbeError::Call {
            call: "cuda",
            error: format!("{e:?}"),
        })
    })
    .map_err(|e| Error::Device {
        op,
        message: match e {
            ProbeError::Call { error, .. } => error,
            other => other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn sizes_in_messages_keep_small_allocations_readable() {
        assert_eq!(size(512), "512 bytes");
        assert_eq!(size(12 << 20), "12.0 MiB");
        assert_eq!(size(3 << 29), "1.50 GiB");
    }
}
