//! Compute backends. The CPU backend is the embedded default and the reference that every
//! other backend is tested against. The CUDA backend (`cuda/`, feature `cuda`) runs the
//! decoder on one NVIDIA GPU with our kernels and cuBLAS. [`select`] resolves the config's
//! `device` to one of them at create.

pub mod cpu;
/// The CUDA backend; not part of the C API (its launch constants are Rust-only):
/// cbindgen:ignore
#[cfg(feature = "cuda")]
pub mod cuda;

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::config::Device;
use crate::error::{Error, Result};

/// What a backend counts about its steps, shared with the engine's stats (read from any
/// thread, written by the engine thread; no lock on the step's path). The CPU keeps none.
#[derive(Debug, Default)]
pub struct StepCounters {
    /// Time spent copying a step's inputs up, queueing its kernels (or graph), and
    /// waiting for its results (the step's one synchronisation), ns in all.
    pub upload_ns: AtomicU64,
    pub enqueue_ns: AtomicU64,
    pub wait_ns: AtomicU64,
    /// Decode steps replayed from a CUDA graph.
    pub graph_steps: AtomicU64,
    /// Steps launched one kernel at a time.
    pub eager_steps: AtomicU64,
    pub graphs_captured: AtomicU64,
    /// Why graphs are off (`None`: on). Written once, when they are turned off.
    pub graphs_off: Mutex<Option<String>>,
}

impl StepCounters {
    /// The stats' `"backend"` object.
    pub fn to_json(&self) -> serde_json::Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "cuda_graphs": self.graphs_off.lock().clone().unwrap_or_else(|| "on".into()),
            "graphs_captured": get(&self.graphs_captured),
            "graph_steps": get(&self.graph_steps),
            "eager_steps": get(&self.eager_steps),
            "time_ms": {
                "upload": ms(get(&self.upload_ns)),
                "enqueue": ms(get(&self.enqueue_ns)),
                "wait": ms(get(&self.wait_ns)),
            },
        })
    }

    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Nanoseconds as milliseconds (stats' time counters).
pub fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Adds the time since `since` to `counter` (ns) and returns now, the start of the next
/// timed phase.
pub fn add_elapsed(counter: &AtomicU64, since: std::time::Instant) -> std::time::Instant {
    let now = std::time::Instant::now();
    counter.fetch_add(
        now.duration_since(since).as_nanos() as u64,
        Ordering::Relaxed,
    );
    now
}

/// The backend an engine runs on, resolved from the config's [`Device`] at create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The name reported in stats as `"device"` (`"cpu"`, `"cuda:0"`).
    pub device: String,
    /// The CUDA device to run on; `None` for the CPU.
    pub cuda_ordinal: Option<usize>,
    /// Why `"auto"` chose what it chose (stats `"device_note"`); `None` for an explicit
    /// `"cpu"`.
    pub note: Option<String>,
}

/// Resolves the configured device: `"cpu"` is the CPU; `"auto"` is GPU 0 when this build
/// has CUDA, a driver and a supported device are present and the CUDA libraries the GPU
/// backend opens (NVRTC, cuBLAS) can be loaded, else the CPU (with a note saying why);
/// `"cuda:N"` must exist.
///
/// A CUDA device that is named but missing is refused with [`Error::Config`] on `device`
/// naming the reason; the engine never runs on the CPU in its place without saying so.
pub fn select(device: Device) -> Result<Selection> {
    match device {
        Device::Cpu => Ok(cpu(None)),
        Device::Auto => select_auto(),
        Device::Cuda(ordinal) => select_cuda(ordinal, "cuda"),
    }
}

fn cpu(note: Option<String>) -> Selection {
    Selection {
        device: "cpu".into(),
        cuda_ordinal: None,
        note,
    }
}

#[cfg(not(feature = "cuda"))]
fn select_auto() -> Result<Selection> {
    Ok(cpu(Some(
        "auto: this build has no CUDA support (built without the `cuda` feature)".into(),
    )))
}

#[cfg(not(feature = "cuda"))]
fn select_cuda(ordinal: usize, _: &str) -> Result<Selection> {
    // `Device::parse` already refuses "cuda" in these builds; a Device built in code lands here.
    Err(Error::config(
        "device",
        format!("\"cuda:{ordinal}\" needs CUDA, and this build of rill lacks the `cuda` feature"),
    ))
}

#[cfg(feature = "cuda")]
fn select_auto() -> Result<Selection> {
    match cuda::probe::probe() {
        Ok(driver) if !driver.devices.is_empty() => {
            let dev = &driver.devices[0];
            match dev.check_supported() {
                Ok(()) => match cuda::probe::runtime_libraries() {
                    Ok(()) => select_cuda(0, "auto"),
                    Err(e) => Ok(cpu(Some(format!(
                        "auto: {dev} found, but {e}: running on the CPU"
                    )))),
                },
                Err(why) => Ok(cpu(Some(format!("auto: {why}")))),
            }
        }
        Ok(driver) => Ok(cpu(Some(format!(
            "auto: CUDA driver {} found but no CUDA device",
            driver.version_string()
        )))),
        Err(e) => Ok(cpu(Some(format!("auto: {e}")))),
    }
}

#[cfg(feature = "cuda")]
fn select_cuda(ordinal: usize, asked: &str) -> Result<Selection> {
    let driver = cuda::probe::probe().map_err(|e| {
        Error::config(
            "device",
            format!("\"cuda:{ordinal}\" is not available: {e}"),
        )
    })?;
    let Some(dev) = driver.devices.get(ordinal) else {
        return Err(Error::config(
            "device",
            format!(
                "\"cuda:{ordinal}\" is not available: no CUDA device {ordinal} (the driver \
                 reports {} device(s))",
                driver.devices.len()
            ),
        ));
    };
    dev.check_supported().map_err(|why| {
        Error::config(
            "device",
            format!("\"cuda:{ordinal}\" cannot be used: {why}"),
        )
    })?;
    Ok(Selection {
        device: format!("cuda:{ordinal}"),
        cuda_ordinal: Some(ordinal),
        note: (asked == "auto").then(|| format!("auto: {dev}")),
    })
}
