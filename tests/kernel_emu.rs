//! The kernel parity tests of tests/cuda_kernels/ run on the CPU kernel emulator
//! (`rill::backend::cuda::emu`, tests/kernel_emu/): the real `kernels/*.cu` sources and
//! the real launch plans of `rill::backend::cuda::ops`, against the CPU backend, on any
//! machine. Everything but the GPU-only tests (PTX cache, launch limits, cuBLAS) runs.
//!
//! Built only with the `kernel-emu` feature (`cargo test --features kernel-emu --test
//! kernel_emu`; the README's test command does). What the emulator cannot show is in
//! src/backend/cuda/emu.rs; tests/cuda_kernels.rs runs the same bodies on a GPU.

#![cfg(feature = "kernel-emu")]

#[macro_use]
#[path = "cuda_kernels/names.rs"]
mod names;

#[path = "kernel_emu/parity.rs"]
mod parity;

#[path = "cuda_kernels/on_emu.rs"]
mod device;

macro_rules! emulated {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                if let Err(e) = parity::$name() {
                    panic!("{e}");
                }
            }
        )*
    };
}

emulable_tests!(emulated);
