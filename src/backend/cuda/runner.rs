//! The CUDA model runner: one engine step on the GPU. It owns the device weights, the paged
//! KV cache, and every buffer a step uses, allocated once at create for the engine's
//! limits (`max_num_batched_tokens` tokens, `max_num_seqs` sequences), so a step
//! allocates nothing. A step copies the batch's index arrays up in one packed copy from
//! page-locked memory (`inputs`: token ids, positions, slot mapping, block tables,
//! sequence lengths, sampling settings), runs the decoder, samples on the device,
//! and copies back only the token ids (and the logprobs or logits rows that were asked
//! for): that read is the step's one host synchronisation.
//!
//! The forward pass (same math as `model::decoder`, bf16 activations, f32 accumulation):
//!
//! ```text
//! x = embed(ids)
//! per layer: xn = rmsnorm(x += proj)            (fused; layer 0: xn = rmsnorm(x))
//!            qkv = xn W_qkv (+ bias)
//!            q, k per-head rmsnorm (Qwen3), rope(q, k), cache[slot] = k, v   (one kernel)
//!            attn = attention(q, cache)   (decode, or varlen prefill on tensor cores)
//!            proj = attn W_o ; xn = rmsnorm(x += proj) ; proj = silu(xn W_gate) * (xn W_up) W_down
//! xn = rmsnorm(x += proj) ; logits = xn[rows] W_out   (f32)
//! ```
//!
//! A batch of decode tokens only (one new token per sequence) uses the partitioned decode
//! kernel; any batch with a prefill chunk uses the varlen prefill kernel for all its
//! sequences (both read the paged cache, so prefix-cache hits and chunked prefill work).
//! Decode batches replay CUDA graphs (see `graphs`).

use std::sync::Arc;

use cudarc::driver::CudaSlice;
use half::{bf16, f16};

use super::device::Gpu;
use super::graphs::{self, DecodeGraphs};
use super::inputs::StepInputs;
use super::matmul::{Matmul, Mode, Shape};
use super::ops::attention::MAX_HEAD_DIM;
use super::ops::{self, AttnScratch, AttnShape, Dev, PrefillKernel, QkNorm, QkvShape};
use super::staging::{self, fill_tables, Staging, StepShape};
use super::weights::DeviceWeights;
use crate::backend::cpu::ops::Rope;
use crate::backend::{add_elapsed, StepCounters};
use crate::error::{Error, Result};
use crate::model::{Decoder, ModelConfig, StepBatch};
use crate::sampling::{DevicePick, Sampled, Sampler, TokenLogprobs};

/// The most top logprobs a request may ask for (the Responses API's `top_logprobs` limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// The engine's limits the buffers are sized for.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
    pub max_model_len: usize,
    pub block_size: usize,
}

/// The paged KV cache: per layer, K and V `[num_blocks, block_size, n_kv_heads, head_dim]`
/// f16 (the CPU's layout and precision).
pub struct DeviceKv {
    pub layers: Vec<(CudaSlice<f16>, CudaSlice<f16>)>,
    pub num_blocks: usize,
}

/// The step's device-side inputs and activations.
pub(super) struct Buffers {
    /// The index arrays and sampling rows, packed (one copy per step).
    pub inputs: StepInputs,
    pub x: CudaSlice<bf16>,
    pub xn: CudaSlice<bf16>,
    pub qkv: CudaSlice<bf16>,
    pub attn: CudaSlice<bf16>,
    pub proj: CudaSlice<bf16>,
    pub gate_up: CudaSlice<bf16>,
    pub act: CudaSlice<bf16>,
    pub gathered: CudaSlice<bf16>,
    pub logits: CudaSlice<f32>,
    pub scratch: AttnScratch,
    // Sampling results, one entry per logits row.
    pub out_ids: CudaSlice<i32>,
    pub out_logprob: CudaSlice<f32>,
    pub top_ids: CudaSlice<i32>,
    pub top_logprobs: CudaSlice<f32>,
}

/// A model on one GPU, ready to run steps.
///
/// Fields drop in order: the graphs and every device buffer before `gpu` (its cuBLAS
/// handle and the loaded modules the graphs' kernels live in), after [`Drop`] has waited
/// for the stream.
pub struct CudaRunner {
    pub(super) config: ModelConfig,
    pub(super) rope: Rope,
    pub(super) weights: DeviceWeights,
    pub(super) kv: Option<DeviceKv>,
    pub(super) bufs: Buffers,
    pub(super) host: Staging,
    pub(super) limits: Limits,
    pub(super) max_blocks_per_seq: usize,
    pub(super) graphs: DecodeGraphs,
    /// cuBLAS or GEMV per weight shape (cuBLAS until [`CudaRunner::tune_matmul`], which
    /// create calls once the KV cache is allocated).
    pub(super) matmul: Matmul,
    /// Last: dropped after everything that uses its context, modules and cuBLAS.
    pub(super) gpu: Gpu,
}

impl Drop for CudaRunner {
    fn drop(&mut self) {
        // Nothing queued may still use a buffer, graph or module about to be freed.
        // cudarc returns an error an earlier drop recorded instead of waiting: clear it
        // first. (An error from the wait itself means the context is gone, and the work.)
        let _ = self.gpu.ctx.check_err();
        let _ = self.gpu.stream.synchronize();
        self.graphs.clear();
    }
}

impl CudaRunner {
    /// Uploads `model`'s weights to `gpu` and allocates the step buffers for `limits`; the
    /// KV cache comes next ([`CudaRunner::allocate_kv`]), sized from the memory left, and
    /// then the matmul choice ([`CudaRunner::tune_matmul`]; until then every product runs
    /// on cuBLAS). Tuning last makes a KV cache that does not fit fail before the slowest
    /// part of create, and its transient buffers come out of the reserve the cache leaves.
    pub fn load(gpu: Gpu, model: &Decoder, limits: Limits) -> Result<CudaRunner> {
        let c = model.config.clone();
        check_model(&c)?;
        let weights = DeviceWeights::upload(&gpu, model)?;
        let bufs = Buffers::new(&gpu, &c, &limits)?;
        let graphs = DecodeGraphs::new(limits.max_num_seqs.min(limits.max_num_batched_tokens));
        let matmul = Matmul::cublas_only();
        Ok(CudaRunner {
            max_blocks_per_seq: limits.max_model_len.div_ceil(limits.block_size),
            rope: model.rope().clone(),
            gpu,
            config: c,
            weights,
            kv: None,
            bufs,
            host: Staging::default(),
            limits,
            graphs,
            matmul,
        })
    }

    /// Loads `model` and allocates a KV cache of `num_blocks` blocks (tests and tools;
    /// the engine sizes the cache from the free memory).
    pub fn new(
        gpu: Gpu,
        model: &Decoder,
        block_size: usize,
        num_blocks: usize,
        max_num_seqs: usize,
        max_num_batched_tokens: usize,
        max_model_len: usize,
    ) -> Result<CudaRunner> {
        let limits = Limits {
            max_num_seqs,
            max_num_batched_tokens,
            max_model_len,
            block_size,
        };
        let mut r = CudaRunner::load(gpu, model, limits)?;
        r.allocate_kv(num_blocks)?;
        r.tune_matmul()?;
        Ok(r)
    }

    /// Chooses cuBLAS or GEMV per weight shape (`RILL_CUDA_GEMV`; by default by timing
    /// both on this device).
    pub fn tune_matmul(&mut self) -> Result<()> {
        // Captured decode graphs hold the old choices.
        self.graphs.clear();
        let groups = matmul_groups(&self.config, &self.weights);
        self.matmul = Matmul::tune(&self.gpu, &groups, Mode::from_env()?, self.graphs.enabled())?;
        Ok(())
    }

    /// The GPU.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The matmul choices and timings (stats `gpu.matmul`).
    pub fn matmul_json(&self) -> serde_json::Value {
        self.matmul.to_json()
    }

    /// Whether the step inputs are staged in page-locked memory (else ordinary memory:
    /// the driver stages the copy; stats `gpu.pinned_inputs`).
    pub fn pinned_inputs(&self) -> bool {
        self.bufs.inputs.pinned()
    }

    /// Bytes of matrices one decoded token reads.
    pub fn matrix_bytes_per_token(&self) -> usize {
        self.weights.matrix_bytes_per_token
    }

    /// Bytes of device memory the weights take.
    pub fn weight_bytes(&self) -> usize {
        self.weights.total_bytes
    }

    /// Allocates the paged KV cache (`num_blocks` blocks of `block_size` tokens).
    pub fn allocate_kv(&mut self, num_blocks: usize) -> Result<()> {
        self.kv = None;
        self.graphs.clear();
        let n = num_blocks * self.limits.block_size * self.config.kv_dim();
        let mut layers = Vec::with_capacity(self.config.n_layers);
        for l in 0..self.config.n_layers {
            let k = self
                .gpu
                .zeros::<f16>(n, &format!("the KV cache (layer {l} K)"))?;
            let v = self
                .gpu
                .zeros::<f16>(n, &format!("the KV cache (layer {l} V)"))?;
            layers.push((k, v));
        }
        self.kv = Some(DeviceKv { layers, num_blocks });
        Ok(())
    }

    /// The step counters (graphs), shared with the engine's stats.
    pub fn counters(&self) -> Arc<StepCounters> {
        Arc::clone(&self.graphs.counters)
    }

    /// Runs `batch` and returns the logits (`vocab_size` f32 each) of the last token of
    /// every sequence that wants them, in batch order (the contract of `Decoder::forward`;
    /// for tests and tools: the engine samples on the device with [`CudaRunner::step`]).
    pub fn forward(&mut self, batch: &StepBatch) -> Result<Vec<Vec<f32>>> {
        let shape = self.stage(batch, None)?;
        self.upload_inputs(&shape)?;
        self.run_forward(&shape)?;
        let vocab = self.config.vocab_size;
        let mut all = vec![0f32; shape.num_rows * vocab];
        if !all.is_empty() {
            self.gpu.read(&self.bufs.logits, &mut all, "logits")?;
        }
        Ok(all.chunks_exact(vocab).map(<[f32]>::to_vec).collect())
    }

    /// Runs `batch` and samples the next token of every sequence that wants logits, with
    /// `samplers[i]` for the i-th such sequence: on the device when the sampler allows it
    /// ([`Sampler::device_pick`]), else on the host from that row's logits.
    pub fn step(
        &mut self,
        batch: &StepBatch,
        samplers: &mut [&mut Sampler],
    ) -> Result<Vec<Sampled>> {
        let counters = self.graphs.counters.clone();
        let start = std::time::Instant::now();
        let picks: Vec<Option<DevicePick>> = samplers.iter_mut().map(|s| s.device_pick()).collect();
        let shape = self.stage(batch, Some(&picks))?;
        let rows = shape.num_rows;
        if rows != samplers.len() {
            return Err(Error::Internal(format!(
                "CUDA step: {rows} sequences want logits but {} samplers were given",
                samplers.len()
            )));
        }
        let key = self
            .graphs
            .key_for(&shape, self.bufs.scratch.max_partitions);
        match key {
            Some(key) => {
                let stride =
                    graphs::table_stride(key, self.limits.block_size, self.max_blocks_per_seq);
                fill_tables(&mut self.host, batch, stride);
                let padded = staging::pad(&mut self.host, shape, key, stride);
                self.upload_inputs(&padded)?;
                let t = add_elapsed(&counters.upload_ns, start);
                self.replay_or_capture(key, &padded)?;
                add_elapsed(&counters.enqueue_ns, t);
            }
            None => {
                self.upload_inputs(&shape)?;
                let t = add_elapsed(&counters.upload_ns, start);
                self.run_forward(&shape)?;
                let any_sampled = picks.iter().any(|p| p.is_some_and(|p| !p.greedy));
                self.run_sampling(&shape, any_sampled)?;
                StepCounters::bump(&self.graphs.counters.eager_steps);
                add_elapsed(&counters.enqueue_ns, t);
            }
        }
        let t = std::time::Instant::now();
        let sampled = self.finish_sampling(rows, &picks, samplers);
        add_elapsed(&counters.wait_ns, t);
        sampled
    }
}

impl CudaRunner {
    /// Stages `batch` into the host arrays (see `staging::stage`).
    fn stage(
        &mut self,
        batch: &StepBatch,
        picks: Option<&[Option<DevicePick>]>,
    ) -> Result<StepShape> {
        let num_blocks = self.kv.as_ref().map_or(0, |k| k.num_blocks);
        let vocab = self.config.vocab_size;
        staging::stage(
            &mut self.host,
            batch,
            &self.limits,
            vocab,
            num_blocks,
            picks,
        )
    }
}

/// Every linear layer's weight shape with the matrices of that shape (for
/// [`Matmul::tune`]): per layer q/k/v, o, gate/up and down, and the output matrix.
fn matmul_groups(c: &ModelConfig, w: &DeviceWeights) -> Vec<(Shape, Vec<Dev<bf16>>)> {
    let (dim, q_dim, kv_dim, ffn) = (c.dim, c.q_dim(), c.kv_dim(), c.ffn_dim);
    let shape = |n_out, n_in, f32_out| Shape {
        n_out,
        n_in,
        f32_out,
    };
    let mut groups: Vec<(Shape, Vec<Dev<bf16>>)> = Vec::new();
    let mut add = |s: Shape, m: Dev<bf16>| match groups.iter_mut().find(|g| g.0 == s) {
        Some(g) => g.1.push(m),
        None => groups.push((s, vec![m])),
    };
    for l in &w.layers {
        add(shape(q_dim + 2 * kv_dim, dim, false), Dev::of(&l.qkv));
        add(shape(dim, q_dim, false), Dev::of(&l.o));
        add(shape(2 * ffn, dim, false), Dev::of(&l.gate_up));
        add(shape(dim, ffn, false), Dev::of(&l.down));
    }
    add(shape(c.vocab_size, dim, true), Dev::of(w.lm_head()));
    groups
}

/// Shapes the kernels cannot run are refused at load, naming the limit.
fn check_model(c: &ModelConfig) -> Result<()> {
    let bad = |m: String| {
        Err(Error::config(
            "device",
            format!("the CUDA backend cannot run this model: {m}"),
        ))
    };
    if c.head_dim > MAX_HEAD_DIM || !c.head_dim.is_multiple_of(2) {
        return bad(format!(
            "head_dim {} (the kernels take even head_dim <= {MAX_HEAD_DIM})",
            c.head_dim
        ));
    }
    if c.n_rot > c.head_dim || !c.n_rot.is_multiple_of(2) {
        return bad(format!(
            "rotary width {} of head_dim {}",
            c.n_rot, c.head_dim
        ));
    }
    if c.n_kv_heads == 0 || !c.n_heads.is_multiple_of(c.n_kv_heads) {
        return bad(format!(
            "{} heads over {} KV heads",
            c.n_heads, c.n_kv_heads
        ));
    }
    Ok(())
}

impl Buffers {
    fn new(gpu: &Gpu, c: &ModelConfig, l: &Limits) -> Result<Buffers> {
        let t = l.max_num_batched_tokens.max(1);
        let s = l.max_num_seqs.max(1);
        let mb = l.max_model_len.div_ceil(l.block_size);
        let qkv_dim = c.q_dim() + 2 * c.kv_dim();
        Ok(Buffers {
            inputs: StepInputs::new(gpu, t, s, mb)?,
            x: gpu.zeros(t * c.dim, "the residual stream")?,
            xn: gpu.zeros(t * c.dim, "normed activations")?,
            qkv: gpu.zeros(t * qkv_dim, "q/k/v activations")?,
            attn: gpu.zeros(t * c.q_dim(), "attention output")?,
            proj: gpu.zeros(t * c.dim, "projection output")?,
            gate_up: gpu.zeros(t * 2 * c.ffn_dim, "gate/up activations")?,
            act: gpu.zeros(t * c.ffn_dim, "MLP activations")?,
            gathered: gpu.zeros(s * c.dim, "logits rows' activations")?,
            logits: gpu.zeros(s * c.vocab_size, "logits")?,
            scratch: AttnScratch::new(gpu, s, c.n_heads, c.head_dim, l.max_model_len)?,
            out_ids: gpu.zeros(s, "sampled ids")?,
            out_logprob: gpu.zeros(s, "logprobs")?,
            top_ids: gpu.zeros(s * MAX_TOP_LOGPROBS, "top logprob ids")?,
            top_logprobs: gpu.zeros(s * MAX_TOP_LOGPROBS, "top logprobs")?,
        })
    }
}

impl CudaRunner {
    /// Copies the staged index arrays and sampling rows to the device (one packed copy,
    /// see `inputs`); the next launches read them through `bufs.inputs.views()`.
    pub(super) fn upload_inputs(&mut self, shape: &StepShape) -> Result<()> {
        self.bufs.inputs.upload(
            &self.gpu,
            &self.host,
            shape.num_tokens,
            shape.num_seqs,
            shape.table_stride,
        )?;
        Ok(())
    }

    /// Queues the decoder for `shape` (everything reads the device buffers; nothing here
    /// waits for the device, so a decode step can be captured into a graph).
    pub(super) fn run_forward(&self, shape: &StepShape) -> Result<()> {
        let c = &self.config;
        let kv = self
            .kv
            .as_ref()
            .ok_or_else(|| Error::Internal("CUDA step before the KV cache was allocated".into()))?;
        let g = &self.gpu;
        let b = &self.bufs;
        let io = b.inputs.views()?;
        let w = &self.weights;
        let mm = &self.matmul;
        let n = shape.num_tokens;
        let (dim, q_dim, kv_dim) = (c.dim, c.q_dim(), c.kv_dim());
        let qkv_dim = q_dim + 2 * kv_dim;
        let eps = c.rms_eps;
        let attn_shape = AttnShape {
            num_heads: c.n_heads,
            num_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            block_size: self.limits.block_size,
            max_blocks_per_seq: shape.table_stride,
            num_blocks: kv.num_blocks,
            scale: 1.0 / (c.head_dim as f32).sqrt(),
        };
        let qkv_shape = QkvShape {
            num_tokens: n,
            num_heads: c.n_heads,
            num_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            num_slots: kv.num_blocks * self.limits.block_size,
        };
        let (x, xn, qkv) = (Dev::of(&b.x), Dev::of(&b.xn), Dev::of(&b.qkv));
        let (attn, proj) = (Dev::of(&b.attn), Dev::of(&b.proj));
        ops::embedding(g, x, io.ids, Dev::of(&w.embedding), n, c.vocab_size, dim)?;
        for (li, (lw, (kc, vc))) in w.layers.iter().zip(&kv.layers).enumerate() {
            if li == 0 {
                ops::rms_norm(g, xn, dim, x, dim, Dev::of(&lw.attn_norm), eps, n, 1, dim)?;
            } else {
                ops::fused_add_rms_norm(g, xn, x, proj, Dev::of(&lw.attn_norm), eps, n, dim)?;
            }
            mm.linear(g, qkv, xn, Dev::of(&lw.qkv), n, dim, qkv_dim)?;
            if let Some(bias) = &lw.qkv_bias {
                ops::add_bias(g, qkv, qkv_dim, Dev::of(bias), n, qkv_dim)?;
            }
            let (kc, vc) = (Dev::of(kc), Dev::of(vc));
            ops::qk_norm_rope_cache(
                g,
                (qkv, qkv_dim),
                (kc, vc),
                io.slots,
                io.positions,
                w.freq_factors.as_ref().map(Dev::of),
                &QkNorm {
                    q: lw.q_norm.as_ref().map(Dev::of),
                    k: lw.k_norm.as_ref().map(Dev::of),
                    eps,
                },
                &qkv_shape,
                &self.rope,
            )?;
            let tables = io.block_tables;
            let lens = io.seq_lens;
            if shape.decode {
                ops::paged_attention(
                    g,
                    attn,
                    q_dim,
                    qkv,
                    qkv_dim,
                    kc,
                    vc,
                    tables,
                    lens,
                    shape.num_seqs,
                    shape.max_partitions,
                    &attn_shape,
                    &b.scratch,
                )?;
            } else {
                ops::prefill_attention(
                    g,
                    PrefillKernel::for_head_dim(c.head_dim),
                    attn,
                    q_dim,
                    qkv,
                    qkv_dim,
                    kc,
                    vc,
                    tables,
                    io.cu_seqlens_q,
                    lens,
                    shape.num_seqs,
                    shape.max_q_len,
                    &attn_shape,
                )?;
            }
            mm.linear(g, proj, attn, Dev::of(&lw.o), n, q_dim, dim)?;
            ops::fused_add_rms_norm(g, xn, x, proj, Dev::of(&lw.ffn_norm), eps, n, dim)?;
            mm.linear(
                g,
                Dev::of(&b.gate_up),
                xn,
                Dev::of(&lw.gate_up),
                n,
                dim,
                2 * c.ffn_dim,
            )?;
            ops::silu_and_mul(g, Dev::of(&b.act), Dev::of(&b.gate_up), n, c.ffn_dim)?;
            mm.linear(
                g,
                proj,
                Dev::of(&b.act),
                Dev::of(&lw.down),
                n,
                c.ffn_dim,
                dim,
            )?;
        }
        ops::fused_add_rms_norm(g, xn, x, proj, Dev::of(&w.out_norm), eps, n, dim)?;
        if shape.num_rows == 0 {
            return Ok(());
        }
        // Decode: row i is token i. Otherwise gather the rows that want logits (the
        // embedding kernel is a row gather: table = xn, ids = row indices).
        let rows_src = if shape.decode {
            xn
        } else {
            let gathered = Dev::of(&b.gathered);
            ops::embedding(g, gathered, io.rows, xn, shape.num_rows, n, dim)?;
            gathered
        };
        mm.linear(
            g,
            Dev::of(&b.logits),
            rows_src,
            Dev::of(self.weights.lm_head()),
            shape.num_rows,
            dim,
            c.vocab_size,
        )
    }

    /// Queues the sampling kernels over the logits rows: argmax when every row is greedy,
    /// else the filtered draw (greedy rows take the argmax inside it).
    pub(super) fn run_sampling(&self, shape: &StepShape, any_sampled: bool) -> Result<()> {
        let (g, b) = (&self.gpu, &self.bufs);
        let io = b.inputs.views()?;
        let rows = shape.num_rows;
        let vocab = self.config.vocab_size;
        let logits = Dev::of(&b.logits);
        if any_sampled {
            ops::sample(
                g,
                Dev::of(&b.out_ids),
                logits,
                vocab,
                io.temperatures,
                io.top_k,
                io.top_p,
                io.min_p,
                io.uniforms,
                vocab,
                rows,
            )
        } else {
            ops::argmax(g, Dev::of(&b.out_ids), logits, vocab, vocab, rows)
        }
    }

    /// Reads the sampled ids back (the step's synchronisation), computes the logprobs
    /// asked for on the device, and samples host-only rows on the host.
    fn finish_sampling(
        &mut self,
        rows: usize,
        picks: &[Option<DevicePick>],
        samplers: &mut [&mut Sampler],
    ) -> Result<Vec<Sampled>> {
        let vocab = self.config.vocab_size;
        // Entries per row of the top-logprobs outputs (the kernel's max_top).
        let stride = self.host.num_top.iter().copied().max().unwrap_or(0).max(1) as usize;
        let want_logprobs = picks
            .iter()
            .any(|p| p.is_some_and(|p| p.logprobs.is_some()));
        if want_logprobs {
            let (g, b) = (&self.gpu, &self.bufs);
            let io = b.inputs.views()?;
            ops::logprobs_topn(
                g,
                Dev::of(&b.out_logprob),
                Dev::of(&b.top_ids),
                Dev::of(&b.top_logprobs),
                Dev::of(&b.logits),
                vocab,
                Dev::of(&b.out_ids),
                io.num_top,
                stride,
                vocab,
                rows,
            )?;
        }
        let mut ids = vec![0i32; rows];
        self.gpu.read(&self.bufs.out_ids, &mut ids, "sampled ids")?;
        let (mut lp, mut top_ids, mut top_lp) = (Vec::new(), Vec::new(), Vec::new());
        if want_logprobs {
            lp = vec![0f32; rows];
            top_ids = vec![0i32; rows * stride];
            top_lp = vec![0f32; rows * stride];
            self.gpu.read(&self.bufs.out_logprob, &mut lp, "logprobs")?;
            self.gpu
                .read(&self.bufs.top_ids, &mut top_ids, "top logprob ids")?;
            self.gpu
                .read(&self.bufs.top_logprobs, &mut top_lp, "top logprobs")?;
        }
        let mut out = Vec::with_capacity(rows);
        let mut row_logits = Vec::new();
        for (r, (pick, sampler)) in picks.iter().zip(samplers.iter_mut()).enumerate() {
            match pick {
                None => {
                    row_logits.resize(vocab, 0f32);
                    let logits = &self.bufs.logits;
                    self.gpu
                        .read_at(logits, r * vocab, &mut row_logits, "a logits row")?;
                    out.push(sampler.sample(&row_logits));
                }
                Some(p) => {
                    let token = ids[r];
                    if token < 0 || token as usize >= vocab {
                        return Err(Error::Internal(format!("the device sampled token {token}")));
                    }
                    let logprobs = p.logprobs.map(|n| {
                        let n = n.min(MAX_TOP_LOGPROBS);
                        let top = (0..n)
                            .map(|j| (top_ids[r * stride + j], top_lp[r * stride + j]))
                            .filter(|&(id, _)| id >= 0)
                            .map(|(id, l)| (id as u32, l))
                            .collect();
                        TokenLogprobs {
                            logprob: lp[r],
                            top,
                        }
                    });
                    out.push(sampler.record_device(token as u32, logprobs));
                }
            }
        }
        Ok(out)
    }
}
