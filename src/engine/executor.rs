//! The step executor: where the engine thread meets a backend, once per step. It takes
//! the runner's flat batch and the samplers of the sequences that want logits, and returns
//! one sampled token per sampler. The CPU runs the decoder over its paged KV memory and
//! samples on the host; CUDA runs the step on the GPU and samples there (see
//! `backend::cuda::runner`).

use std::sync::Arc;

use serde_json::json;

use super::core::KvLayout;
use super::kv_budget::{self, Memory};
use crate::backend::cpu::kv::PagedKv;
use crate::backend::cpu::pool::ThreadPool;
#[cfg(feature = "cuda")]
use crate::backend::cuda::runner::CudaRunner;
use crate::backend::{Selection, StepCounters};
use crate::config::{EngineConfig, StepLimits};
use crate::error::{Error, Result};
use crate::model::{Decoder, StepBatch};
use crate::sampling::{Sampled, Sampler};

/// A backend ready to run steps. (One per engine, made once: the variants' sizes do not
/// matter.)
#[allow(clippy::large_enum_variant)]
pub enum Executor {
    Cpu {
        model: Decoder,
        pool: ThreadPool,
        kv: PagedKv,
    },
    #[cfg(feature = "cuda")]
    Cuda(Box<CudaRunner>),
}

impl Executor {
    /// Runs `batch` and samples with `samplers` (one per sequence with `want_logits`, in
    /// batch order). An `Err` leaves the KV state unknown: the caller poisons the engine.
    pub fn step(
        &mut self,
        batch: &StepBatch,
        samplers: &mut [&mut Sampler],
    ) -> Result<Vec<Sampled>> {
        match self {
            Executor::Cpu { model, pool, kv } => {
                let logits = model.forward(pool, kv, batch);
                Ok(logits
                    .iter()
                    .zip(samplers.iter_mut())
                    .map(|(l, s)| s.sample(l))
                    .collect())
            }
            #[cfg(feature = "cuda")]
            Executor::Cuda(r) => r.step(batch, samplers),
        }
    }

    /// The backend's step counters, shared with the stats (`None` on the CPU, which
    /// keeps none).
    pub fn counters(&self) -> Option<Arc<StepCounters>> {
        match self {
            Executor::Cpu { .. } => None,
            #[cfg(feature = "cuda")]
            Executor::Cuda(r) => Some(r.counters()),
        }
    }
}

/// A backend made for an engine: the executor, the KV cache geometry it allocated, and
/// what the stats say about it.
pub struct Created {
    pub exec: Executor,
    pub layout: KvLayout,
    /// Keys merged into the engine's stats (`"kernels"`, `"gpu"`, ...).
    pub info: serde_json::Value,
}

/// Makes the executor `selection` names for `model`, with a KV cache sized by `config`.
pub fn create(
    selection: &Selection,
    model: Decoder,
    config: &EngineConfig,
    limits: StepLimits,
    max_model_len: usize,
) -> Result<Created> {
    #[cfg(feature = "cuda")]
    if let Some(ordinal) = selection.cuda_ordinal {
        return create_cuda(ordinal, model, config, limits, max_model_len);
    }
    let _ = selection;
    let mc = &model.config;
    let pool = ThreadPool::new(config.num_threads)
        .map_err(|e| Error::Internal(format!("cannot start CPU worker threads: {e}")))?;
    let layout = kv_budget::plan(
        config.kv_cache,
        mc,
        config.block_size,
        max_model_len,
        limits.max_num_seqs,
        config.enable_prefix_caching,
        Memory::host(),
    )?;
    let kv = PagedKv::new(
        mc.n_layers,
        mc.kv_dim(),
        layout.block_size,
        layout.num_blocks,
    )?;
    let info = json!({
        "kernels": model.isa_name(),
        "num_threads": config.num_threads,
    });
    Ok(Created {
        exec: Executor::Cpu { model, pool, kv },
        layout,
        info,
    })
}

/// GPU memory kept out of the KV cache for what allocates after it (CUDA graphs, cuBLAS's
/// internals, the driver).
#[cfg(feature = "cuda")]
macro_rules! gpu_reserve_mib {
    () => {
        512
    };
}
#[cfg(feature = "cuda")]
const GPU_RESERVE: u64 = gpu_reserve_mib!() << 20;

#[cfg(feature = "cuda")]
fn create_cuda(
    ordinal: usize,
    model: Decoder,
    config: &EngineConfig,
    step: StepLimits,
    max_model_len: usize,
) -> Result<Created> {
    use crate::backend::cuda::device::Gpu;
    use crate::backend::cuda::runner::Limits;

    let gpu = Gpu::open(ordinal)?;
    let limits = Limits {
        max_num_seqs: step.max_num_seqs,
        max_num_batched_tokens: step.max_num_batched_tokens,
        max_model_len,
        block_size: config.block_size,
    };
    let mut runner = CudaRunner::load(gpu, &model, limits)?;
    // The host copy (memory maps) is no longer needed.
    let mc = model.config.clone();
    drop(model);
    let (free, total) = runner.gpu().memory()?;
    let memory = Memory {
        available: Some((free as u64).saturating_sub(GPU_RESERVE)),
        auto_share: 0.9,
        what: concat!(
            "the GPU's free memory after the weights, step buffers and a ",
            gpu_reserve_mib!(),
            " MiB reserve"
        ),
        bounds_the_cache: true,
    };
    let layout = kv_budget::plan(
        config.kv_cache,
        &mc,
        config.block_size,
        max_model_len,
        step.max_num_seqs,
        config.enable_prefix_caching,
        memory,
    )?;
    runner.allocate_kv(layout.num_blocks)?;
    runner.tune_matmul()?;
    let g = runner.gpu();
    let (major, minor) = g.info.compute_capability;
    let info = json!({
        "kernels": format!("cuda (compute_{major}{minor})"),
        "gpu": {
            "name": g.info.name,
            "compute_capability": format!("{major}.{minor}"),
            "memory_bytes": total,
            "weight_bytes": runner.weight_bytes(),
            "matrix_bytes_per_token": runner.matrix_bytes_per_token(),
            "kernel_files_from_ptx_cache": g.ptx_from_cache,
            "matmul": runner.matmul_json(),
            "pinned_inputs": runner.pinned_inputs(),
        },
    });
    Ok(Created {
        exec: Executor::Cuda(Box::new(runner)),
        layout,
        info,
    })
}
