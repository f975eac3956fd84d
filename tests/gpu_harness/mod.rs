//! The runner of the GPU test binaries (`harness = false` in Cargo.toml): on a machine
//! without a CUDA device (or a build without the `cuda` feature) it prints that the tests
//! did NOT run, with the reason and their names, and exits 0 without counting them as
//! passed; with a device it runs each test (a panic is a failure), prints `ok` / `FAILED`
//! per test and a summary, and exits 1 when any failed.
//!
//! `cargo test --features cuda --test cuda_kernels -- NAME` runs the tests whose name
//! contains NAME. `RILL_GPU_TESTS=required` turns "no device" into a failure (the GPU
//! machine's script sets it, so a broken probe cannot pass silently).

#![allow(dead_code)]

mod child;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::Instant;

/// A test's body: it returns `Err(message)` or panics to fail.
pub type Body = fn() -> Result<(), String>;

/// One test: its name and body.
pub type Test = (&'static str, Body);

/// The emulated libraries a process loads by default: the driver and cuBLAS.
const EMULATED: &[&str] = &["libcuda.so.1", "libcublas.so.1"];

/// A test that runs in a child process of its own ([`child`]), and the emulated libraries
/// the child loads when the run is emulated.
#[derive(Clone, Copy)]
pub struct Child {
    pub name: &'static str,
    pub body: Body,
    pub libraries: &'static [&'static str],
}

impl Child {
    /// A child with the emulated driver and cuBLAS.
    pub fn new(name: &'static str, body: Body) -> Child {
        Child {
            name,
            body,
            libraries: EMULATED,
        }
    }

    /// A child with the emulated driver alone: a machine with a driver and no CUDA
    /// libraries.
    pub fn without_cublas(name: &'static str, body: Body) -> Child {
        Child {
            name,
            body,
            libraries: &["libcuda.so.1"],
        }
    }
}

/// Why GPU tests cannot run here, or `None` when a CUDA device is present.
pub fn unavailable() -> Option<String> {
    #[cfg(not(feature = "cuda"))]
    {
        Some("this build lacks the `cuda` feature".into())
    }
    #[cfg(feature = "cuda")]
    {
        match rill::backend::cuda::probe::probe() {
            Err(e) => Some(e.to_string()),
            Ok(d) if d.devices.is_empty() => Some(format!(
                "CUDA driver {} found but no CUDA device",
                d.version_string()
            )),
            Ok(_) => None,
        }
    }
}

/// Runs `tests` of the binary `suite` (see the module doc).
pub fn main(suite: &str, tests: &[Test]) -> ExitCode {
    main_with_children(suite, tests, &[])
}

/// [`main`] with `children` too: tests that each run in a child process of their own
/// (see [`child`]), listed and filtered with the others.
pub fn main_with_children(suite: &str, tests: &[Test], children: &[Child]) -> ExitCode {
    if let Some(code) = child::run_if_child(children) {
        return code;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    // cargo passes harness flags (--nocapture, --test-threads=N, ...); a bare word filters.
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    // Each test with its body, or `None` for a child.
    let all: Vec<(&'static str, Option<Body>)> = tests
        .iter()
        .map(|&(name, body)| (name, Some(body)))
        .chain(children.iter().map(|c| (c.name, None)))
        .collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in &all {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let chosen: Vec<_> = all
        .into_iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    // A filter that matches nothing (a renamed test) must not pass having run nothing.
    if chosen.is_empty() {
        println!("{suite}: no test matches {filters:?}");
        return ExitCode::FAILURE;
    }
    let required = match std::env::var("RILL_GPU_TESTS").ok().as_deref() {
        None | Some("") => false,
        Some("required") => true,
        Some("emulated") => {
            if let Err(e) = load_emulated_driver() {
                println!("RILL_GPU_TESTS=emulated: {e}");
                return ExitCode::FAILURE;
            }
            println!("\n{suite}: on the EMULATED driver (tests/kernel_emu/fake_cuda.cpp): the CPU, not a GPU");
            true
        }
        Some(other) => {
            println!("RILL_GPU_TESTS={other:?}: the values are \"required\" and \"emulated\"");
            return ExitCode::FAILURE;
        }
    };
    if let Some(reason) = unavailable() {
        println!("\n{suite}: NOT RUN ({} GPU tests): {reason}", chosen.len());
        for (name, _) in &chosen {
            println!("  not run: {name}");
        }
        println!(
            "{suite}: 0 passed; 0 failed; {} not run (no CUDA device)\n",
            chosen.len()
        );
        return if required {
            println!("RILL_GPU_TESTS=required: a GPU test run without a device is a failure");
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    println!("\nrunning {} GPU tests ({suite})", chosen.len());
    let mut failed = Vec::new();
    for (name, body) in &chosen {
        let t0 = Instant::now();
        let outcome = match body {
            Some(body) => run_caught(*body),
            None => child::run(name),
        };
        let secs = t0.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => println!("test {name} ... ok ({secs:.2} s)"),
            Err(m) => {
                println!("test {name} ... FAILED ({secs:.2} s)\n    {m}");
                failed.push(*name);
            }
        }
    }
    println!(
        "\n{suite}: {} passed; {} failed; 0 not run",
        chosen.len() - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("failed: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}

/// Runs `body`, a panic counting as a failure with its message.
fn run_caught(body: Body) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|p| {
        Err(p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into()))
    })
}

/// `RILL_GPU_TESTS=emulated`: loads the emulated CUDA driver and cuBLAS (built with the
/// `kernel-emu` feature) under the sonames cudarc opens (`libcuda.so.1`,
/// `libcublas.so.1`), so the GPU tests run unchanged on the CPU kernel emulator. They stay
/// loaded for the process's life.
pub fn load_emulated_driver() -> Result<(), String> {
    load_emulated(EMULATED)
}

/// Loads the emulated libraries `libs` (of `libcuda.so.1` and `libcublas.so.1`) from the
/// build's `RILL_FAKE_CUDA_DIR` ([`Child::without_cublas`] loads the driver alone).
fn load_emulated(libs: &[&str]) -> Result<(), String> {
    #[cfg(not(feature = "kernel-emu"))]
    {
        let _ = libs;
        Err("this build lacks the `kernel-emu` feature".into())
    }
    #[cfg(feature = "kernel-emu")]
    {
        for &lib in libs {
            let path = format!("{}/{lib}", env!("RILL_FAKE_CUDA_DIR"));
            let c = std::ffi::CString::new(path.clone()).map_err(|e| e.to_string())?;
            // SAFETY: dlopen of a library built by this crate's build script, whose
            // initializers only register the emulated kernels; the handle is never
            // closed.
            let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            if handle.is_null() {
                // SAFETY: dlerror returns null or a NUL-terminated message.
                let why = unsafe { libc::dlerror() };
                let why = if why.is_null() {
                    "unknown error".to_string()
                } else {
                    // SAFETY: non-null, NUL-terminated (above).
                    unsafe { std::ffi::CStr::from_ptr(why) }
                        .to_string_lossy()
                        .into_owned()
                };
                return Err(format!("dlopen {path}: {why}"));
            }
        }
        Ok(())
    }
}

/// Whether this run is on the emulated driver (`RILL_GPU_TESTS=emulated`).
pub fn emulated() -> bool {
    std::env::var("RILL_GPU_TESTS").as_deref() == Ok("emulated")
}

/// The emulated driver's test control `name` (tests/kernel_emu/fake_cuda.cpp), once
/// [`load_emulated_driver`] has loaded it.
///
/// # Safety
/// `T` must be the control's C parameter type (`size_t`: `usize`, `int`: `i32`).
#[cfg(feature = "kernel-emu")]
pub unsafe fn fake_control<T>(name: &str) -> Result<extern "C" fn(T), String> {
    let path = format!("{}/libcuda.so.1", env!("RILL_FAKE_CUDA_DIR"));
    let (c_path, c_name) = match (
        std::ffi::CString::new(path.clone()),
        std::ffi::CString::new(name),
    ) {
        (Ok(p), Ok(n)) => (p, n),
        _ => return Err(format!("a NUL in {path:?} or {name:?}")),
    };
    // SAFETY: RTLD_NOLOAD only returns a handle to a library already loaded (by
    // load_emulated_driver), taking a reference that is never dropped.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
    if handle.is_null() {
        return Err(format!("the emulated driver {path} is not loaded"));
    }
    // SAFETY: a valid handle and a NUL-terminated name.
    let f = unsafe { libc::dlsym(handle, c_name.as_ptr()) };
    if f.is_null() {
        return Err(format!("the emulated driver has no {name}"));
    }
    // SAFETY: a non-null export whose parameter type is `T` (the caller's contract).
    Ok(unsafe { std::mem::transmute::<*mut libc::c_void, extern "C" fn(T)>(f) })
}
