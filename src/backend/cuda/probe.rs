//! The driver probe: is there a CUDA driver, which version, which devices.
//!
//! Order: `dlopen` each library name cudarc would try (so a missing `libcuda.so.1` is an
//! `Err` here, before cudarc, which panics on a missing library, is touched), then
//! `cuDriverGetVersion` (refusing drivers older than the bindings), `cuInit`, the device
//! count and each device's name, compute capability and memory. The cudarc calls run
//! under `catch_unwind`, because cudarc panics when the library lacks a symbol. The result
//! is computed once per process and cached.

use std::ffi::{CStr, CString};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use cudarc::driver::{result, sys};

/// The oldest driver the bindings (cudarc's `cuda-13000`) are made for, as
/// `cuDriverGetVersion` writes it (1000 * major + 10 * minor).
const MIN_DRIVER_VERSION: i32 = 13000;

/// The oldest GPUs the kernels and cuBLAS calls run on: Ampere (8.0) and newer, for bf16
/// GEMMs and the f16 `mma.sync.m16n8k16` of the prefill attention kernels.
pub const MIN_COMPUTE_CAPABILITY: (u32, u32) = (8, 0);

/// One CUDA device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    /// Compute capability (major, minor): (9, 0) for an H100.
    pub compute_capability: (u32, u32),
    pub total_memory: u64,
}

impl DeviceInfo {
    /// The NVRTC virtual architecture for this device, e.g. `compute_90`.
    pub fn arch(&self) -> String {
        let (major, minor) = self.compute_capability;
        format!("compute_{major}{minor}")
    }

    /// `Err` naming the device and what it lacks when rill's CUDA backend cannot run on it.
    pub fn check_supported(&self) -> Result<(), String> {
        let (major, minor) = MIN_COMPUTE_CAPABILITY;
        if self.compute_capability >= MIN_COMPUTE_CAPABILITY {
            return Ok(());
        }
        Err(format!(
            "{self}: the CUDA backend needs compute capability {major}.{minor} or newer \
             (bf16 GEMMs and tensor-core attention)"
        ))
    }
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor) = self.compute_capability;
        write!(
            f,
            "{}, compute capability {major}.{minor}, {:.1} GiB",
            self.name,
            self.total_memory as f64 / (1u64 << 30) as f64
        )
    }
}

/// What the driver reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverInfo {
    /// The library that was opened (`libcuda.so.1`).
    pub library: String,
    /// `cuDriverGetVersion`: 1000 * major + 10 * minor (13000 is CUDA 13.0).
    pub version: i32,
    pub devices: Vec<DeviceInfo>,
}

impl DriverInfo {
    /// `"13.0"`.
    pub fn version_string(&self) -> String {
        version_string(self.version)
    }
}

fn version_string(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// Why there is no usable CUDA driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    /// No library name cudarc tries could be opened; `dlerror` is the loader's message for
    /// `library` (the soname that matters: `libcuda.so.1`); `what` is "CUDA driver".
    NoLibrary {
        what: &'static str,
        library: String,
        dlerror: String,
    },
    /// The driver is older than the bindings.
    DriverTooOld { found: i32 },
    /// A driver or NVRTC call failed (`cuInit` on a machine whose driver has no usable
    /// device, a stub library, a kernel that does not compile, ...).
    Call { call: &'static str, error: String },
    /// cudarc panicked (a missing symbol); the panic's message.
    Panicked(String),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::NoLibrary {
                what,
                library,
                dlerror,
            } => {
                write!(f, "no {what} ({library} not found: {dlerror})")
            }
            ProbeError::DriverTooOld { found } => write!(
                f,
                "the CUDA driver is too old (CUDA {}, this build needs {} or newer)",
                version_string(*found),
                version_string(MIN_DRIVER_VERSION)
            ),
            ProbeError::Call { call, error } => {
                write!(f, "CUDA call {call} failed: {error}")
            }
            ProbeError::Panicked(m) => write!(f, "the CUDA bindings (cudarc) panicked: {m}"),
        }
    }
}

impl std::error::Error for ProbeError {}

/// The driver and its devices, probed once per process.
pub fn probe() -> Result<DriverInfo, ProbeError> {
    static PROBE: OnceLock<Result<DriverInfo, ProbeError>> = OnceLock::new();
    PROBE.get_or_init(probe_uncached).clone()
}

fn probe_uncached() -> Result<DriverInfo, ProbeError> {
    let library = find_library("CUDA driver", "cuda", "libcuda.so.1")?;
    guarded(|| {
        let mut version = 0;
        // SAFETY: cuDriverGetVersion writes one int through a valid pointer; it may be
        // called before cuInit.
        unsafe { sys::cuDriverGetVersion(&mut version) }
            .result()
            .map_err(|e| call_error("cuDriverGetVersion", e))?;
        if version < MIN_DRIVER_VERSION {
            return Err(ProbeError::DriverTooOld { found: version });
        }
        result::init().map_err(|e| call_error("cuInit", e))?;
        let count = result::device::get_count().map_err(|e| call_error("cuDeviceGetCount", e))?;
        let mut devices = Vec::new();
        for ordinal in 0..count.max(0) {
            let dev = result::device::get(ordinal).map_err(|e| call_error("cuDeviceGet", e))?;
            let name =
                result::device::get_name(dev).map_err(|e| call_error("cuDeviceGetName", e))?;
            let attr = |a| {
                // SAFETY: `dev` came from cuDeviceGet after a successful cuInit.
                unsafe { result::device::get_attribute(dev, a) }
                    .map_err(|e| call_error("cuDeviceGetAttribute", e))
            };
            let major =
                attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
            let minor =
                attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
            // SAFETY: as above.
            let total = unsafe { result::device::total_mem(dev) }
                .map_err(|e| call_error("cuDeviceTotalMem", e))?;
            devices.push(DeviceInfo {
                ordinal: ordinal as usize,
                name,
                compute_capability: (major.max(0) as u32, minor.max(0) as u32),
                total_memory: total as u64,
            });
        }
        Ok(DriverInfo {
            library: library.clone(),
            version,
            devices,
        })
    })
}

/// A CUDA library the GPU backend opens at run time besides the driver.
pub struct CudaLibrary {
    /// What it is, for messages ("cuBLAS library").
    pub what: &'static str,
    /// cudarc's name stem ([`cudarc::get_lib_name_candidates`]).
    pub stem: &'static str,
    /// The soname that matters (CUDA 13's), whose loader message an error carries.
    pub soname: &'static str,
}

/// NVRTC: the kernels are compiled at create.
pub const NVRTC: CudaLibrary = CudaLibrary {
    what: "NVRTC library",
    stem: "nvrtc",
    soname: "libnvrtc.so.13",
};

/// cuBLAS: the linear layers.
pub const CUBLAS: CudaLibrary = CudaLibrary {
    what: "cuBLAS library",
    stem: "cublas",
    soname: "libcublas.so.13",
};

impl CudaLibrary {
    /// Whether it opens ([`find_library`]); the name that did.
    pub fn find(&self) -> Result<String, ProbeError> {
        open_library(self.what, self.stem, self.soname, false)
    }

    /// [`CudaLibrary::find`], leaving the library loaded for the process's life: cudarc is
    /// about to open it, and the second open only counts a reference (its initializers do
    /// not run twice).
    pub fn load(&self) -> Result<String, ProbeError> {
        open_library(self.what, self.stem, self.soname, true)
    }
}

/// Whether the CUDA libraries a GPU engine needs besides the driver ([`NVRTC`], [`CUBLAS`])
/// can be opened; the error names the first that cannot (a machine with a driver but no
/// CUDA libraries: `"auto"` then runs on the CPU, `"cuda"` fails at create). Each one
/// found stays loaded ([`CudaLibrary::load`]).
pub fn runtime_libraries() -> Result<(), ProbeError> {
    for lib in [&NVRTC, &CUBLAS] {
        lib.load()?;
    }
    Ok(())
}

fn call_error(call: &'static str, e: result::DriverError) -> ProbeError {
    ProbeError::Call {
        call,
        error: format!("{e:?}"),
    }
}

/// Runs `f`, turning a panic inside cudarc into [`ProbeError::Panicked`]. (The panic hook
/// still prints the panic's message to stderr.)
pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T, ProbeError>) -> Result<T, ProbeError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let m = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into());
        Err(ProbeError::Panicked(m))
    })
}

/// Opens the first of the names cudarc tries for library `stem` (`cuda` tries `libcuda.so`,
/// ..., `libcuda.so.1`) with `dlopen`, closes it again, and returns that name. When none
/// opens, the error names `what` and carries the loader's message for `main` (the soname
/// that matters).
pub(crate) fn find_library(
    what: &'static str,
    stem: &str,
    main: &str,
) -> Result<String, ProbeError> {
    open_library(what, stem, main, false)
}

fn open_library(
    what: &'static str,
    stem: &str,
    main: &str,
    keep: bool,
) -> Result<String, ProbeError> {
    let mut main_error = None;
    for name in cudarc::get_lib_name_candidates(stem) {
        match try_dlopen(&name, keep) {
            Ok(()) => return Ok(name),
            Err(e) if name == main => main_error = Some(e),
            Err(_) => {}
        }
    }
    let dlerror = match main_error {
        Some(e) => e,
        // `main` is not among cudarc's names: ask the loader about it anyway.
        None => match try_dlopen(main, false) {
            Ok(()) => format!("{main} opens but is not among the names cudarc loads"),
            Err(e) => e,
        },
    };
    Err(ProbeError::NoLibrary {
        what,
        library: main.to_owned(),
        dlerror,
    })
}

/// `dlopen(name)`, then `dlclose` unless `keep`; the loader's message on failure.
fn try_dlopen(name: &str, keep: bool) -> Result<(), String> {
    let c = CString::new(name).map_err(|_| format!("{name:?} contains a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated string. Opening a library runs its
    // initializers; the names are CUDA's own libraries, which cudarc opens the same way.
    let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns NULL or a NUL-terminated string valid until the next
        // dl* call on this thread; it is copied at once.
        let msg = unsafe { libc::dlerror() };
        return Err(if msg.is_null() {
            format!("dlopen({name}) failed")
        } else {
            // SAFETY: non-NULL, NUL-terminated (above).
            unsafe { CStr::from_ptr(msg) }
                .to_string_lossy()
                .into_owned()
        });
    }
    if !keep {
        // SAFETY: `handle` came from a successful dlopen and is closed once. cudarc opens
        // the library again itself, so nothing of ours refers to it after this.
        unsafe { libc::dlclose(handle) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_is_ok_or_a_clean_error() {
        match probe() {
            Ok(d) => println!(
                "CUDA driver {} ({}), devices: {:?}",
                d.version_string(),
                d.library,
                d.devices
            ),
            Err(e) => {
                let m = e.to_string();
                println!(
                    "no CUDA (this is the expected result on a machine without a driver): {m}"
                );
                assert!(!matches!(e, ProbeError::Panicked(_)), "{m}");
                if let ProbeError::NoLibrary {
                    library, dlerror, ..
                } = &e
                {
                    assert_eq!(library, "libcuda.so.1");
                    assert!(
                        m.starts_with("no CUDA driver (libcuda.so.1 not found: "),
                        "{m}"
                    );
                    assert!(!dlerror.is_empty());
                }
            }
        }
        // Cached: the same answer again.
        assert_eq!(probe(), probe());
    }

    #[test]
    fn missing_library_is_an_error_naming_it() {
        let e = find_library(
            "test library",
            "rill-no-such-library",
            "librill-no-such-library.so.1",
        )
        .unwrap_err();
        let m = e.to_string();
        assert!(
            m.starts_with("no test library (librill-no-such-library.so.1 not found: "),
            "{m}"
        );
        // A library that exists under one of the names tried (libgcc_s.so.1, which every
        // Rust program on Linux loads) is found.
        let found = find_library("gcc", "gcc_s", "libgcc_s.so.1").expect("libgcc_s");
        assert!(try_dlopen(&found, false).is_ok(), "{found}");
        // One that opens, but not under the names cudarc tries, is not found (cudarc
        // would not load it either), and the message says so.
        let m = find_library("C library", "c", "libc.so.6")
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("libc.so.6 opens but is not among the names cudarc loads"),
            "{m}"
        );
    }

    #[test]
    fn panics_become_errors() {
        let r: Result<(), _> = guarded(|| panic!("Missing symbol cuFoo"));
        assert_eq!(r, Err(ProbeError::Panicked("Missing symbol cuFoo".into())));
    }

    #[test]
    fn messages() {
        assert_eq!(
            ProbeError::DriverTooOld { found: 12040 }.to_string(),
            "the CUDA driver is too old (CUDA 12.4, this build needs 13.0 or newer)"
        );
        let d = DeviceInfo {
            ordinal: 0,
            name: "NVIDIA H100 80GB HBM3".into(),
            compute_capability: (9, 0),
            total_memory: 85_520_809_984,
        };
        assert_eq!(d.arch(), "compute_90");
        assert_eq!(
            d.to_string(),
            "NVIDIA H100 80GB HBM3, compute capability 9.0, 79.6 GiB"
        );
        assert_eq!(d.check_supported(), Ok(()));
        let ampere = DeviceInfo {
            compute_capability: (8, 6),
            ..d.clone()
        };
        assert_eq!(ampere.check_supported(), Ok(()));
        let turing = DeviceInfo {
            name: "Tesla T4".into(),
            compute_capability: (7, 5),
            total_memory: 16 << 30,
            ..d
        };
        assert_eq!(
            turing.check_supported(),
            Err(
                "Tesla T4, compute capability 7.5, 16.0 GiB: the CUDA backend needs compute \
                 capability 8.0 or newer (bf16 GEMMs and tensor-core attention)"
                    .into()
            )
        );
    }
}
