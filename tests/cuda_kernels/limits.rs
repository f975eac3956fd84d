//! The block sizes the wrappers launch fit every kernel as the driver built it for this
//! GPU (registers cap a block's threads: 1024 threads need <= 64 registers each), and
//! every loaded entry point has a wrapper. Prints each kernel's registers and static
//! shared memory.

use cudarc::driver::sys::CUfunction_attribute_enum as Attr;
use rill::backend::cuda::ops::attention::{DECODE_THREADS, PREFILL_THREADS};
use rill::backend::cuda::ops::gemv::GEMV_THREADS;
use rill::backend::cuda::ops::qkv::QKV_THREADS;
use rill::backend::cuda::ops::rowwise::{norm_threads, ROPE_THREADS, ROW_THREADS};
use rill::backend::cuda::ops::sampling::SAMPLING_THREADS;

use super::util::{gpu, Ctx};

pub fn launch_limits() -> Result<(), String> {
    let g = gpu()?;
    let widest_norm = norm_threads(usize::MAX / 2);
    let launched = [
        ("embedding_kernel", ROW_THREADS),
        ("rms_norm_kernel", widest_norm),
        ("fused_add_rms_norm_kernel", widest_norm),
        ("rope_kernel", ROPE_THREADS),
        ("silu_and_mul_kernel", ROW_THREADS),
        ("add_bias_kernel", ROW_THREADS),
        ("reshape_and_cache_kernel", ROW_THREADS),
        ("qk_norm_rope_cache_kernel", QKV_THREADS),
        ("gemv_kernel", GEMV_THREADS),
        ("gemv_f32_kernel", GEMV_THREADS),
        ("paged_attention_kernel", DECODE_THREADS),
        ("paged_attention_reduce_kernel", DECODE_THREADS),
        ("prefill_attention_kernel", PREFILL_THREADS),
        ("prefill_attention_mma64_kernel", PREFILL_THREADS),
        ("prefill_attention_mma128_kernel", PREFILL_THREADS),
        ("argmax_kernel", SAMPLING_THREADS),
        ("softmax_temperature_kernel", SAMPLING_THREADS),
        ("logprobs_topn_kernel", SAMPLING_THREADS),
        ("sample_kernel", SAMPLING_THREADS),
    ];
    let mut problems = Vec::new();
    for (name, threads) in launched {
        let f = g.function(name).ctx(name)?;
        let attr = |a| {
            f.get_attribute(a)
                .map_err(|e| format!("{name}: cuFuncGetAttribute: {e:?}"))
        };
        let max = attr(Attr::CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK)?;
        let regs = attr(Attr::CU_FUNC_ATTRIBUTE_NUM_REGS)?;
        let smem = attr(Attr::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES)?;
        let spill = attr(Attr::CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES)?;
        println!("    {name}: {regs} registers, {smem} B shared, {spill} B local; launched with {threads} threads (max {max})");
        if (max as usize) < threads {
            problems.push(format!(
                "{name} is launched with {threads} threads but takes at most {max}"
            ));
        }
    }
    let mut wrapped: Vec<&str> = launched.iter().map(|l| l.0).collect();
    wrapped.sort_unstable();
    if wrapped != g.function_names() {
        problems.push(format!(
            "wrapped kernels {wrapped:?} differ from the loaded entry points {:?}",
            g.function_names()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Every embedded kernel file compiles with NVRTC for this GPU, and a second build comes
/// from the PTX cache (the engine's second start).
pub fn ptx_cache() -> Result<(), String> {
    use rill::backend::cuda::{kernels, probe};
    let driver = probe::probe().map_err(|e| e.to_string())?;
    let dev = driver.devices.first().ok_or("no CUDA device")?;
    let cache = std::env::temp_dir().join(format!("rill-ptx-test-{}", std::process::id()));
    let arch = dev.arch();
    let first = kernels::compile_all(&arch, Some(&cache)).map_err(|e| e.to_string())?;
    let second = kernels::compile_all(&arch, Some(&cache)).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&cache);
    if first.len() != kernels::kernel_files().count() {
        return Err(format!(
            "{} of {} files compiled",
            first.len(),
            kernels::kernel_files().count()
        ));
    }
    for (a, b) in first.iter().zip(&second) {
        if a.from_cache || !b.from_cache || a.ptx != b.ptx {
            return Err(format!(
                "{}: first from cache {}, second from cache {}, same PTX {}",
                a.name,
                a.from_cache,
                b.from_cache,
                a.ptx == b.ptx
            ));
        }
    }
    println!(
        "    {} kernel files compiled for {arch} ({dev}); the second build came from the cache",
        first.len()
    );
    Ok(())
}
