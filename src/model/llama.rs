//! The Llama architecture (Llama 2/3, SmolLM2) on the CPU backend: weights borrowed from a
//! GGUF memory map, and a batched forward pass over several sequences at once (every
//! linear layer runs over all tokens of the step; attention runs per sequence and head
//! over that sequence's KV cache). Follows llama.cpp's `llm_build_llama` graph: RMSNorm,
//! Q/K/V projections, RoPE (normal layout), GQA attention with f16 K/V, output projection,
//! residual, RMSNorm, SwiGLU MLP, residual; final RMSNorm and the (tied) output matrix.

use std::cell::RefCell;

use half::f16;

use super::gguf::{GgufFile, TensorInfo};
use super::{ModelConfig, StepBatch};
use crate::backend::cpu::dot::{axpy_f16, dot_f16_f16, Isa};
use crate::backend::cpu::kv::PagedKv;
use crate::backend::cpu::matmul::{matmul_many, matmul_swiglu, Activations, Linear, WeightBytes};
use crate::backend::cpu::ops::{add_assign, rms_norm, Rope};
use crate::backend::cpu::pool::{SharedMut, ThreadPool};
use crate::backend::cpu::quant::{dequantize_row, Q8Block};
use crate::error::{Error, Result};

struct Layer {
    attn_norm: Vec<f32>,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    ffn_norm: Vec<f32>,
    w_gate: Linear,
    w_up: Linear,
    w_down: Linear,
}

/// A loaded Llama-family model.
pub struct Llama {
    pub config: ModelConfig,
    tok_embd: Linear,
    layers: Vec<Layer>,
    out_norm: Vec<f32>,
    output: Linear,
    rope: Rope,
    isa: Isa,
}

impl Llama {
    /// Reads hyperparameters and maps weights from `gguf`.
    pub fn load(gguf: &GgufFile) -> Result<Self> {
        let path = &gguf.path;
        let arch = gguf.req_str("general.architecture")?.to_owned();
        if arch != "llama" {
            return Err(Error::model(
                path,
                format!("unsupported architecture {arch:?} (this build runs \"llama\")"),
            ));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let n_layers = gguf.req_u64(&key("block_count"))? as usize;
        let dim = gguf.req_u64(&key("embedding_length"))? as usize;
        let ffn_dim = gguf.req_u64(&key("feed_forward_length"))? as usize;
        let n_heads = gguf.req_u64(&key("attention.head_count"))? as usize;
        let n_kv_heads = gguf
            .get(&key("attention.head_count_kv"))
            .and_then(|v| v.as_u64())
            .unwrap_or(n_heads as u64) as usize;
        if n_heads == 0
            || n_kv_heads == 0
            || !n_heads.is_multiple_of(n_kv_heads)
            || !dim.is_multiple_of(n_heads)
        {
            return Err(Error::model(
                path,
                format!("bad head counts: {n_heads} heads, {n_kv_heads} KV heads, dim {dim}"),
            ));
        }
        let head_dim = gguf
            .get(&key("attention.key_length"))
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .unwrap_or(dim / n_heads);
        let n_rot = gguf
            .get(&key("rope.dimension_count"))
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .unwrap_or(head_dim);
        if !head_dim.is_multiple_of(32)
            || !n_rot.is_multiple_of(2)
            || n_rot > head_dim
            || n_rot > 512
        {
            return Err(Error::model(
                path,
                format!("unsupported head_dim {head_dim} / rope dims {n_rot}"),
            ));
        }
        let rope_freq_scale = match gguf.get(&key("rope.scaling.type")).and_then(|v| v.as_str()) {
            None | Some("none") => 1.0,
            Some("linear") => {
                let f = gguf
                    .get(&key("rope.scaling.factor"))
                    .and_then(|v| v.as_f64())
                    .unwrap_or(1.0) as f32;
                if f > 0.0 {
                    1.0 / f
                } else {
                    1.0
                }
            }
            Some(other) => {
                return Err(Error::model(
                    path,
                    format!("rope scaling {other:?} is not supported yet"),
                ));
            }
        };
        let tok_info = gguf.tensor("token_embd.weight")?;
        let vocab_size = match tok_info.dims[..] {
            [_, v] if v > 0 => v as usize,
            _ => {
                let msg = format!(
                    "token_embd.weight: shape {:?} is not [dim, vocab]",
                    tok_info.dims
                );
                return Err(Error::model(path, msg));
            }
        };
        let config = ModelConfig {
            name: gguf
                .get("general.name")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    path.file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default()
                }),
            arch: arch.clone(),
            n_layers,
            dim,
            ffn_dim,
            n_heads,
            n_kv_heads,
            head_dim,
            vocab_size,
            context_length: gguf
                .get(&key("context_length"))
                .and_then(|v| v.as_u64())
                .unwrap_or(2048) as usize,
            rms_eps: gguf
                .get(&key("attention.layer_norm_rms_epsilon"))
                .and_then(|v| v.as_f64())
                .unwrap_or(1e-5) as f32,
            rope_base: gguf
                .get(&key("rope.freq_base"))
                .and_then(|v| v.as_f64())
                .unwrap_or(10000.0) as f32,
            rope_freq_scale,
            n_rot,
        };
        let q_dim = n_heads * head_dim;
        let kv_dim = config.kv_dim();
        let linear = |name: &str, rows: usize, cols: usize| -> Result<Linear> {
            let t = gguf.tensor(name)?;
            check_shape(gguf, t, &[cols, rows])?;
            Ok(Linear {
                ty: t.ty,
                rows,
                cols,
                bytes: mapped(gguf, t),
            })
        };
        let vector = |name: &str, n: usize| -> Result<Vec<f32>> {
            let t = gguf.tensor(name)?;
            check_shape(gguf, t, &[n])?;
            let mut v = vec![0f32; n];
            dequantize_row(t.ty, gguf.tensor_bytes(t), &mut v);
            Ok(v)
        };
        let mut layers = Vec::with_capacity(n_layers);
        for i in 0..n_layers {
            let p = |s: &str| format!("blk.{i}.{s}.weight");
            layers.push(Layer {
                attn_norm: vector(&p("attn_norm"), dim)?,
                wq: linear(&p("attn_q"), q_dim, dim)?,
                wk: linear(&p("attn_k"), kv_dim, dim)?,
                wv: linear(&p("attn_v"), kv_dim, dim)?,
                wo: linear(&p("attn_output"), dim, q_dim)?,
                ffn_norm: vector(&p("ffn_norm"), dim)?,
                w_gate: linear(&p("ffn_gate"), ffn_dim, dim)?,
                w_up: linear(&p("ffn_up"), ffn_dim, dim)?,
                w_down: linear(&p("ffn_down"), dim, ffn_dim)?,
            });
        }
        let tok_embd = linear("token_embd.weight", vocab_size, dim)?;
        let output = if gguf.tensors.contains_key("output.weight") {
            linear("output.weight", vocab_size, dim)?
        } else {
            linear("token_embd.weight", vocab_size, dim)?
        };
        Ok(Llama {
            rope: Rope {
                n_rot,
                freq_base: config.rope_base,
                freq_scale: config.rope_freq_scale,
            },
            out_norm: vector("output_norm.weight", dim)?,
            config,
            tok_embd,
            layers,
            output,
            isa: Isa::from_env()?,
        })
    }

    /// The kernel set in use ("avx512", "avx2", "neon" or "portable"; `RILL_ISA` forces one).
    pub fn isa_name(&self) -> &'static str {
        self.isa.name()
    }

    /// Switches kernel sets (tests compare them; `isa` must be one of `Isa::available()`).
    pub fn set_isa(&mut self, isa: Isa) {
        assert!(isa.supported(), "set_isa: this CPU cannot run {isa:?}");
        self.isa = isa;
    }

    /// Bytes of weights read per decoded token.
    pub fn weight_bytes(&self) -> usize {
        let per_layer: usize = self
            .layers
            .iter()
            .map(|l| {
                [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]
                    .iter()
                    .map(|w| w.n_bytes())
                    .sum::<usize>()
            })
            .sum();
        per_layer + self.output.n_bytes()
    }

    /// Runs one step over `batch`, writing each token's K/V at its slot, and returns the
    /// logits (`vocab_size` each) of the last token of every sequence with `want_logits`,
    /// in batch order.
    pub fn forward(&self, pool: &ThreadPool, kv: &mut PagedKv, batch: &StepBatch) -> Vec<Vec<f32>> {
        let c = &self.config;
        let (dim, q_dim, kv_dim) = (c.dim, c.n_heads * c.head_dim, c.kv_dim());
        let n_tok = batch.token_ids.len();
        let mut x = vec![0f32; n_tok * dim];
        for (t, &id) in batch.token_ids.iter().enumerate() {
            // Ids come from the tokenizer (checked against vocab_size at create) or the
            // sampler (< vocab_size); an out-of-range id is a bug and panics inside the step
            // guard, which fails the requests instead of computing with a wrong row.
            let row = self.tok_embd.row(id as usize);
            dequantize_row(self.tok_embd.ty, row, &mut x[t * dim..(t + 1) * dim]);
        }
        let mut xn = vec![0f32; n_tok * dim];
        let mut q = vec![0f32; n_tok * q_dim];
        let mut k = vec![0f32; n_tok * kv_dim];
        let mut v = vec![0f32; n_tok * kv_dim];
        let mut attn = vec![0f32; n_tok * q_dim];
        let mut proj = vec![0f32; n_tok * dim];
        let mut gate = vec![0f32; n_tok * c.ffn_dim];
        let mut up = vec![0f32; n_tok * c.ffn_dim];
        let mut qscratch: Vec<Q8Block> = Vec::new();
        for (li, layer) in self.layers.iter().enumerate() {
            norm_rows(pool, &x, &layer.attn_norm, c.rms_eps, &mut xn, dim);
            {
                let a = Activations::quantize(pool, &xn, dim, &mut qscratch);
                matmul_many(
                    pool,
                    self.isa,
                    &a,
                    &mut [
                        (&layer.wq, &mut q),
                        (&layer.wk, &mut k),
                        (&layer.wv, &mut v),
                    ],
                );
            }
            for (t, &pos) in batch.positions.iter().enumerate() {
                let qk = [
                    &mut q[t * q_dim..(t + 1) * q_dim],
                    &mut k[t * kv_dim..(t + 1) * kv_dim],
                ];
                self.rope.apply(qk, c.head_dim, pos);
            }
            for (t, &slot) in batch.slot_mapping.iter().enumerate() {
                let (kd, vd) = kv.row_mut(li, slot);
                to_f16(&k[t * kv_dim..(t + 1) * kv_dim], kd);
                to_f16(&v[t * kv_dim..(t + 1) * kv_dim], vd);
            }
            self.attention(pool, kv, batch, li, &q, &mut attn);
            {
                let a = Activations::quantize(pool, &attn, q_dim, &mut qscratch);
                matmul_many(pool, self.isa, &a, &mut [(&layer.wo, &mut proj)]);
            }
            add_assign(&mut x, &proj);
            norm_rows(pool, &x, &layer.ffn_norm, c.rms_eps, &mut xn, dim);
            {
                let a = Activations::quantize(pool, &xn, dim, &mut qscratch);
                let (gate, up) = ((&layer.w_gate, &mut gate[..]), (&layer.w_up, &mut up[..]));
                matmul_swiglu(pool, self.isa, &a, gate, up);
            }
            {
                let a = Activations::quantize(pool, &gate, c.ffn_dim, &mut qscratch);
                matmul_many(pool, self.isa, &a, &mut [(&layer.w_down, &mut proj)]);
            }
            add_assign(&mut x, &proj);
        }
        // Final norm and logits only for the rows that need them.
        let mut last_rows = Vec::new();
        for sq in batch
            .seqs
            .iter()
            .filter(|sq| sq.want_logits && sq.num_tokens > 0)
        {
            let t = sq.token_start + sq.num_tokens - 1;
            last_rows.extend_from_slice(&x[t * dim..(t + 1) * dim]);
        }
        if last_rows.is_empty() {
            return Vec::new();
        }
        let n_out = last_rows.len() / dim;
        let mut normed = vec![0f32; n_out * dim];
        norm_rows(
            pool,
            &last_rows,
            &self.out_norm,
            c.rms_eps,
            &mut normed,
            dim,
        );
        let mut logits = vec![0f32; n_out * c.vocab_size];
        let a = Activations::quantize(pool, &normed, dim, &mut qscratch);
        matmul_many(pool, self.isa, &a, &mut [(&self.output, &mut logits)]);
        logits
            .chunks_exact(c.vocab_size)
            .map(<[f32]>::to_vec)
            .collect()
    }

    /// Causal GQA attention of every token of the step against its sequence's cache,
    /// read through the sequence's block table (vLLM's paged attention, one task per
    /// token and head; each task's arithmetic depends only on its own sequence).
    fn attention(
        &self,
        pool: &ThreadPool,
        kv: &PagedKv,
        batch: &StepBatch,
        layer: usize,
        q: &[f32],
        out: &mut [f32],
    ) {
        let c = &self.config;
        let (hd, n_heads, kv_dim) = (c.head_dim, c.n_heads, c.kv_dim());
        let group = n_heads / c.n_kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let out_ptr = SharedMut(out.as_mut_ptr());
        let isa = self.isa;
        thread_local! {
            static SCRATCH: RefCell<(Vec<f32>, Vec<u16>)> = const { RefCell::new((Vec::new(), Vec::new())) };
        }
        let bs = batch.block_size;
        let (ks, vs) = kv.layer(layer);
        pool.run(batch.token_ids.len() * n_heads, &|task| {
            let (t, h) = (task / n_heads, task % n_heads);
            let pos = batch.positions[t];
            let table = batch.block_table(batch.token_seq[t]);
            // The KV slots of positions 0..=pos, block by block (no division per key).
            let slots = || {
                table
                    .iter()
                    .flat_map(move |&b| {
                        let base = b as usize * bs;
                        base..base + bs
                    })
                    .take(pos + 1)
            };
            let kvh = h / group;
            // SAFETY: task (t, h) writes only out[t][h*hd..(h+1)*hd].
            let o = unsafe {
                std::slice::from_raw_parts_mut(out_ptr.ptr().add(t * n_heads * hd + h * hd), hd)
            };
            SCRATCH.with(|cell| {
                let (scores, qh) = &mut *cell.borrow_mut();
                // Q is rounded to f16 like llama.cpp does before the K·Q product.
                qh.clear();
                qh.extend(
                    q[t * n_heads * hd + h * hd..][..hd]
                        .iter()
                        .map(|&v| f16::from_f32(v).to_bits()),
                );
                scores.clear();
                let mut max = f32::NEG_INFINITY;
                for slot in slots() {
                    let kj = &ks[slot * kv_dim + kvh * hd..][..hd];
                    let sc = dot_f16_f16(isa, kj, qh) * scale;
                    max = max.max(sc);
                    scores.push(sc);
                }
                let mut sum = 0f32;
                for sc in scores.iter_mut() {
                    *sc = (*sc - max).exp();
                    sum += *sc;
                }
                o.fill(0.0);
                let inv = 1.0 / sum;
                for (slot, &p) in slots().zip(scores.iter()) {
                    // The probabilities meet the f16 V cache as f16, as in llama.cpp's
                    // KQ·V product.
                    let w = f16::from_f32(p * inv).to_f32();
                    axpy_f16(isa, o, w, &vs[slot * kv_dim + kvh * hd..][..hd]);
                }
            });
        });
    }
}

fn norm_rows(pool: &ThreadPool, x: &[f32], w: &[f32], eps: f32, out: &mut [f32], dim: usize) {
    let n = x.len() / dim;
    let o = SharedMut(out.as_mut_ptr());
    pool.run(n, &|r| {
        // SAFETY: task r writes only row r of `out`.
        let dst = unsafe { std::slice::from_raw_parts_mut(o.ptr().add(r * dim), dim) };
        rms_norm(&x[r * dim..(r + 1) * dim], w, eps, dst);
    });
}

fn to_f16(src: &[f32], dst: &mut [u16]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f16::from_f32(s).to_bits();
    }
}

fn mapped(gguf: &GgufFile, t: &TensorInfo) -> WeightBytes {
    WeightBytes::Mapped {
        map: gguf.mapping(),
        start: t.start,
        len: t.len,
    }
}

fn check_shape(gguf: &GgufFile, t: &TensorInfo, want: &[usize]) -> Result<()> {
    let got: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    if got != want {
        return Err(Error::model(
            &gguf.path,
            format!("tensor {}: shape {:?}, expected {:?}", t.name, got, want),
        ));
    }
    if !t.ty.is_supported() {
        return Err(Error::model(
            &gguf.path,
            format!(
                "tensor {}: type {:?} is not supported ({} are)",
                t.name,
                t.ty,
                crate::model::ggml::GgmlType::SUPPORTED_NAMES
            ),
        ));
    }
    Ok(())
}
