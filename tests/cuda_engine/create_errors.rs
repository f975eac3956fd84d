//! (e) Create-time failures on the CUDA device: each is a clear error from
//! `Engine::new`, never a panic, and leaves no device memory held.
//!
//! - `kv_cache_beyond_free_memory_is_refused_at_create` (GPU and emulated): a
//!   `kv_cache_bytes` of the whole device fails with InvalidConfig naming the setting and
//!   the free memory, after the weights were loaded; they are freed again.
//! - `weights_beyond_device_memory_fail_at_create` (emulated only: it shrinks the
//!   emulated device): loading the weights runs out of memory; the error is a Device
//!   error naming the allocation and the free memory; every allocation made before it is
//!   freed.
//! - `too_old_driver_is_refused_at_create` (emulated only: the driver reports CUDA 12.4):
//!   in a child process (the probe runs once per process), `"cuda"` fails with
//!   InvalidConfig naming `device` and the versions; `"auto"` runs on the CPU and says why.
//! - `auto_without_cublas_runs_on_the_cpu` (emulated only: a child process that loads the
//!   emulated driver but not cuBLAS, as on a machine with a driver and no CUDA libraries):
//!   `"auto"` runs on the CPU, its note naming the device and `libcublas.so.13`; `"cuda"`
//!   fails with a Device error naming the library (not cudarc's panic).

#![cfg(feature = "cuda")]

use std::path::Path;

use rill::ffi::status::RillStatus;
use rill::{Engine, EngineConfig, Error};
use serde_json::{json, Value};

use super::{gpu_harness, model_dir, TestResult};

fn create(model: &Path, device: &str, extra: Value) -> rill::Result<Engine> {
    let mut c = json!({"model": model, "device": device});
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    Engine::new(EngineConfig::from_json(&c.to_string())?)
}

/// The error of a create that must fail, checked for `status` and message `words`.
fn refusal(r: rill::Result<Engine>, status: RillStatus, words: &[&str]) -> Result<Error, String> {
    let e = match r {
        Ok(_) => return Err("the engine was created".into()),
        Err(e) => e,
    };
    let m = e.to_string();
    if e.status() != status {
        return Err(format!("expected {status:?}, got {:?}: {m}", e.status()));
    }
    if let Some(w) = words.iter().find(|w| !m.contains(*w)) {
        return Err(format!("the message lacks {w:?}: {m}"));
    }
    println!("  refused: {m}");
    Ok(e)
}

/// (free, total) device memory after every stream has finished (freed memory returns to
/// the driver at a synchronisation).
fn device_memory() -> Result<(usize, usize), String> {
    let ctx = cudarc::driver::CudaContext::new(0).map_err(|e| format!("context: {e:?}"))?;
    ctx.synchronize()
        .map_err(|e| format!("synchronize: {e:?}"))?;
    ctx.mem_get_info()
        .map_err(|e| format!("cuMemGetInfo: {e:?}"))
}

/// Fails when less device memory is free than `before` (minus `slack`, on a GPU, for the
/// driver's own bookkeeping; none on the emulated driver, which counts every byte).
fn nothing_held(before: usize, what: &str) -> TestResult {
    let slack = if gpu_harness::emulated() { 0 } else { 64 << 20 };
    let (after, _) = device_memory()?;
    if after + slack < before {
        return Err(format!(
            "{what}: {} bytes of device memory still held ({before} free before, {after} after)",
            before - after
        ));
    }
    Ok(())
}

pub fn kv_cache_beyond_free_memory_is_refused_at_create() -> TestResult {
    let dir = model_dir("qwen3-tiny")?;
    let (before, total) = device_memory()?;
    let r = create(&dir, "cuda", json!({"kv_cache_bytes": total}));
    let e = refusal(
        r,
        RillStatus::InvalidConfig,
        &["kv_cache_bytes", "do not fit in the GPU's free memory"],
    )?;
    if !matches!(&e, Error::Config { key, .. } if key == "kv_cache_bytes") {
        return Err(format!(
            "the error does not name kv_cache_bytes as its key: {e:?}"
        ));
    }
    nothing_held(before, "after the refused create")
}

#[cfg(feature = "kernel-emu")]
pub fn weights_beyond_device_memory_fail_at_create() -> TestResult {
    let dir = model_dir("qwen3-tiny")?;
    // SAFETY: `void rill_fake_cuda_set_memory(size_t)`.
    let set_memory = unsafe { gpu_harness::fake_control::<usize>("rill_fake_cuda_set_memory") }?;
    let (before, total) = device_memory()?;
    // Room for what is allocated now and 200 MiB more: the cuBLAS workspace (32 MiB) and
    // the token embedding (0.14 GiB) fit, the layers do not, so the failure comes with
    // weights already on the device.
    set_memory(total - before + (200 << 20));
    // The default size comes back however the create ends (a panic included).
    struct Restore(extern "C" fn(usize));
    impl Drop for Restore {
        fn drop(&mut self) {
            (self.0)(0);
        }
    }
    let restore = Restore(set_memory);
    let r = create(&dir, "cuda", json!({}));
    drop(restore);
    refusal(
        r,
        RillStatus::Device,
        &["allocating layer ", "CUDA_ERROR_OUT_OF_MEMORY", " free of "],
    )?;
    // Every allocation made before the failure is freed. (The emulated driver counts
    // every byte; an engine made now would load, but its matmul tuning takes minutes on
    // the emulator, and the other tests create engines after this one.)
    nothing_held(before, "after the failed load")
}

/// A child process (the probe is cached per process): the emulated driver reports CUDA
/// 12.4 before the first probe.
#[cfg(feature = "kernel-emu")]
pub fn too_old_driver_is_refused_at_create() -> TestResult {
    // SAFETY: `void rill_fake_cuda_set_driver_version(int)`.
    unsafe { gpu_harness::fake_control::<i32>("rill_fake_cuda_set_driver_version") }?(12040);
    let dir = model_dir("qwen3-tiny")?;
    let too_old = "the CUDA driver is too old (CUDA 12.4, this build needs 13.0 or newer)";
    for device in ["cuda", "cuda:0"] {
        let e = refusal(
            create(&dir, device, json!({})),
            RillStatus::InvalidConfig,
            &[too_old],
        )?;
        if !matches!(&e, Error::Config { key, .. } if key == "device") {
            return Err(format!("{device}: the error's key is not `device`: {e:?}"));
        }
    }
    let stats = create(&dir, "auto", json!({}))
        .map_err(|e| format!("auto with a too-old driver: {e}"))?
        .stats();
    if stats["device"] != "cpu" || stats["device_note"] != format!("auto: {too_old}") {
        return Err(format!("auto with a too-old driver: stats {stats}"));
    }
    println!("  auto: {}", stats["device_note"]);
    Ok(())
}

#[cfg(feature = "kernel-emu")]
pub fn auto_without_cublas_runs_on_the_cpu() -> TestResult {
    // The point is a machine without cuBLAS: where the loader finds a real one (a CUDA
    // toolkit installed), the test cannot show it, and says so rather than pass.
    let installed = rill::backend::cuda::probe::CUBLAS.find().ok();
    if let Some(name) = installed {
        return Err(format!(
            "this machine has a cuBLAS library ({name}); the test needs one without (as CI's)"
        ));
    }
    let dir = model_dir("qwen3-tiny")?;
    let missing = "no cuBLAS library (libcublas.so.13 not found";
    let stats = create(&dir, "auto", json!({}))
        .map_err(|e| format!("auto without cuBLAS: {e}"))?
        .stats();
    let note = stats["device_note"].as_str().unwrap_or_default();
    if stats["device"] != "cpu"
        || !note.starts_with("auto: rill kernel emulator")
        || !note.contains(missing)
    {
        return Err(format!("auto without cuBLAS: stats {stats}"));
    }
    println!("  auto: {note}");
    refusal(
        create(&dir, "cuda", json!({})),
        RillStatus::Device,
        &["cublasCreate", missing],
    )?;
    Ok(())
}
