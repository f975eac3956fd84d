//! Device memory bandwidth, measured: the ceiling a decode step is held to (at batch 1
//! every weight byte is read once per token, so tokens/s <= bandwidth / weight bytes).
//!
//! [`device_copy_bandwidth`] copies one device buffer into another (`cuMemcpyDtoDAsync`)
//! several times on its own stream, times each copy with a pair of CUDA events, and
//! reports the median, counting the bytes read plus the bytes written (2 x the buffer),
//! as GPU.md and KINDS.md state their figures (~3.0 TB/s on an H100 here). Two warm-up
//! copies run first. It opens the device's primary context itself (shared with any
//! engine in the process) and frees both buffers before it returns, so call it before an
//! engine takes the device's memory. Every cudarc call runs under `catch_unwind` (cudarc
//! panics on a missing library or symbol) after the driver probe, and every failure is an
//! [`Error::Device`] naming the operation. Public operations: [`device_copy_bandwidth`],
//! [`CopyBandwidth`], [`median`].

use cudarc::driver::{sys, CudaContext};

use super::device::guarded_device;
use super::probe;
use crate::error::{Error, Result};

/// One measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyBandwidth {
    pub ordinal: usize,
    /// The device's name as the driver reports it (`NVIDIA H100 80GB HBM3`).
    pub device_name: String,
    /// Size of the buffer copied each time (each copy reads and writes this many bytes).
    pub bytes_per_copy: usize,
    /// Event-timed duration of each copy, ms, in the order they ran.
    pub samples_ms: Vec<f64>,
    /// Median of `samples_ms`.
    pub median_ms: f64,
    /// Bytes read plus bytes written per second at the median: 2 x bytes / median.
    pub bytes_per_s: f64,
}

/// The median of `v` (the mean of the two middle values for an even count); NaN when
/// empty.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// A cudarc call as [`guarded_device`], its operation named as the measurement's.
fn device_call<T, E: std::fmt::Debug>(
    op: &str,
    f: impl FnOnce() -> std::result::Result<T, E>,
) -> Result<T> {
    guarded_device(format!("bandwidth measurement: {op}"), f)
}

/// Measures device `ordinal`'s copy bandwidth with `reps` timed copies of `bytes` bytes
/// (`bytes` is lowered to a quarter of the free memory when two buffers would not fit
/// comfortably; at least 1 MiB).
pub fn device_copy_bandwidth(ordinal: usize, bytes: usize, reps: usize) -> Result<CopyBandwidth> {
    let driver = probe::probe().map_err(|e| Error::Device {
        op: "bandwidth measurement: driver probe".into(),
        message: e.to_string(),
    })?;
    let info = driver
        .devices
        .get(ordinal)
        .cloned()
        .ok_or_else(|| Error::Device {
            op: "bandwidth measurement".into(),
            message: format!(
                "no CUDA device {ordinal} (the driver reports {})",
                driver.devices.len()
            ),
        })?;
    let ctx = device_call("cuCtx (primary context)", || CudaContext::new(ordinal))?;
    let stream = device_call("cuStreamCreate", || ctx.new_stream())?;
    let (free, _total) = device_call("cuMemGetInfo", || ctx.mem_get_info())?;
    let bytes = bytes.min(free / 4).max(1 << 20);
    let src = device_call("allocating the source buffer", || {
        stream.alloc_zeros::<u8>(bytes)
    })?;
    let mut dst = device_call("allocating the destination buffer", || {
        stream.alloc_zeros::<u8>(bytes)
    })?;
    let timing = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
    let mut samples_ms = Vec::with_capacity(reps);
    for i in 0..reps.max(1) + 2 {
        let start = device_call("cuEventRecord", || stream.record_event(timing))?;
        device_call("cuMemcpyDtoDAsync", || stream.memcpy_dtod(&src, &mut dst))?;
        let end = device_call("cuEventRecord", || stream.record_event(timing))?;
        let ms = device_call("cuEventElapsedTime", || start.elapsed_ms(&end))?;
        if i >= 2 {
            samples_ms.push(f64::from(ms));
        }
    }
    device_call("cuStreamSynchronize", || stream.synchronize())?;
    drop((src, dst));
    let median_ms = median(&samples_ms);
    Ok(CopyBandwidth {
        ordinal,
        device_name: info.name,
        bytes_per_copy: bytes,
        bytes_per_s: 2.0 * bytes as f64 / (median_ms / 1e3),
        median_ms,
        samples_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn without_a_device_it_is_a_device_error_not_a_panic() {
        match probe::probe() {
            Ok(d) if !d.devices.is_empty() => {
                let bw = device_copy_bandwidth(0, 64 << 20, 3).expect("bandwidth");
                assert_eq!(bw.samples_ms.len(), 3);
                assert!(bw.bytes_per_s > 1e9, "{bw:?}");
                println!("{}: {:.0} GB/s", bw.device_name, bw.bytes_per_s / 1e9);
            }
            _ => {
                let e = device_copy_bandwidth(0, 1 << 20, 1).expect_err("no device");
                assert!(matches!(e, Error::Device { .. }), "{e}");
                println!("NOT RUN on a GPU (no device): {e}");
            }
        }
    }
}
