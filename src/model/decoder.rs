//! The decoder-only transformer shared by every architecture rill runs (Llama 2/3,
//! SmolLM2, Qwen2/2.5, Qwen3) on the CPU backend: weights borrowed from a memory map
//! (loaded by `weights`), and a batched forward pass over several sequences at once
//! (every linear layer runs over all tokens of the step; attention runs per sequence and
//! head over that sequence's KV cache). Follows llama.cpp's graphs (`src/models/llama.cpp`,
//! `qwen2.cpp`, `qwen3.cpp`): RMSNorm, Q/K/V projections (+ bias, Qwen2), per-head Q/K
//! RMSNorm (Qwen3), RoPE (normal or NeoX layout, optional frequency factors), GQA
//! attention with f16 K/V, output projection, residual, RMSNorm, SwiGLU MLP, residual;
//! final RMSNorm and the (tied or separate) output matrix. The arithmetic of the Llama
//! path is unchanged from the single-architecture version, so the default model's logits
//! keep matching llama.cpp and stay bit-identical across ISAs (`tests/fidelity.rs`).
//! Public operations: [`Decoder`] (`load`/`from_gguf` in `weights`, `forward`,
//! `weight_bytes`, `mapped_bytes`, `isa_name`, `set_isa`).

use std::cell::RefCell;

use half::f16;

use super::arch::ModelConfig;
use super::StepBatch;
use crate::backend::cpu::dot::{axpy_f16, dot_f16_f16, Isa};
use crate::backend::cpu::kv::PagedKv;
use crate::backend::cpu::matmul::{matmul_many, matmul_swiglu, Activations, Linear};
use crate::backend::cpu::ops::{add_assign, rms_norm, Rope};
use crate::backend::cpu::pool::{SharedMut, ThreadPool};
use crate::backend::cpu::quant::{dequantize_row, Q8Block};

pub(super) struct Layer {
    pub(super) attn_norm: Vec<f32>,
    pub(super) wq: Linear,
    pub(super) wk: Linear,
    pub(super) wv: Linear,
    pub(super) bq: Option<Vec<f32>>,
    pub(super) bk: Option<Vec<f32>>,
    pub(super) bv: Option<Vec<f32>>,
    /// Per-head RMSNorm weights of Q and K (`head_dim` each).
    pub(super) q_norm: Option<Vec<f32>>,
    pub(super) k_norm: Option<Vec<f32>>,
    pub(super) wo: Linear,
    pub(super) ffn_norm: Vec<f32>,
    pub(super) w_gate: Linear,
    pub(super) w_up: Linear,
    pub(super) w_down: Linear,
}

/// A loaded decoder model of any supported architecture.
pub struct Decoder {
    pub config: ModelConfig,
    pub(super) tok_embd: Linear,
    pub(super) layers: Vec<Layer>,
    pub(super) out_norm: Vec<f32>,
    pub(super) output: Linear,
    pub(super) rope: Rope,
    pub(super) isa: Isa,
}

impl Decoder {
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

    /// Bytes of weight matrices borrowed from memory maps (the embedding counted once when
    /// the output is tied to it).
    pub fn mapped_bytes(&self) -> usize {
        let tied = self.config.tied_output;
        self.weight_bytes() + if tied { 0 } else { self.tok_embd.n_bytes() }
    }

    /// Runs one step over `batch`, writing each token's K/V at its slot, and returns the
    /// logits (`vocab_size` each) of the last token of every sequence with `want_logits`,
    /// in batch order.
    pub fn forward(&self, pool: &ThreadPool, kv: &mut PagedKv, batch: &StepBatch) -> Vec<Vec<f32>> {
        let rows: Vec<usize> = batch
            .seqs
            .iter()
            .filter(|sq| sq.want_logits && sq.num_tokens > 0)
            .map(|sq| sq.token_start + sq.num_tokens - 1)
            .collect();
        let logits = self.forward_rows(pool, kv, batch, &rows);
        logits
            .chunks_exact(self.config.vocab_size)
            .map(<[f32]>::to_vec)
            .collect()
    }

    /// Like `forward`, but returns the logits of every token of the step, row after row
    /// (`n_tokens * vocab_size`; teacher-forced evaluation in one prefill).
    pub fn forward_all(&self, pool: &ThreadPool, kv: &mut PagedKv, batch: &StepBatch) -> Vec<f32> {
        let rows: Vec<usize> = (0..batch.token_ids.len()).collect();
        self.forward_rows(pool, kv, batch, &rows)
    }

    /// The step, with logits for the flat token rows `rows`, row after row
    /// (`rows.len() * vocab_size`).
    pub fn forward_rows(
        &self,
        pool: &ThreadPool,
        kv: &mut PagedKv,
        batch: &StepBatch,
        rows: &[usize],
    ) -> Vec<f32> {
        let c = &self.config;
        let (dim, q_dim, kv_dim) = (c.dim, c.q_dim(), c.kv_dim());
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
            for (b, out) in [
                (&layer.bq, &mut q),
                (&layer.bk, &mut k),
                (&layer.bv, &mut v),
            ] {
                if let Some(b) = b {
                    out.chunks_exact_mut(b.len())
                        .for_each(|row| add_assign(row, b));
                }
            }
            for (w, out) in [(&layer.q_norm, &mut q), (&layer.k_norm, &mut k)] {
                if let Some(w) = w {
                    norm_heads(pool, out, w, c.rms_eps);
                }
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
        let mut last_rows = Vec::with_capacity(rows.len() * dim);
        for &t in rows {
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

/// RMS-normalizes every head (`w.len()` values) of `x` in place with weights `w`
/// (Qwen3's per-head Q/K norm, llama.cpp's `build_norm` over the head dimension).
fn norm_heads(pool: &ThreadPool, x: &mut [f32], w: &[f32], eps: f32) {
    let hd = w.len();
    let n = x.len() / hd;
    let p = SharedMut(x.as_mut_ptr());
    pool.run(n, &|h| {
        // SAFETY: task h reads and writes only head h of `x`.
        let head = unsafe { std::slice::from_raw_parts_mut(p.ptr().add(h * hd), hd) };
        let mut tmp = [0f32; 512];
        let tmp = &mut tmp[..hd];
        rms_norm(head, w, eps, tmp);
        head.copy_from_slice(tmp);
    });
}

fn to_f16(src: &[f32], dst: &mut [u16]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f16::from_f32(s).to_bits();
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Runs `ids` as one prefill of a fresh sequence and returns the last logits.
    pub(in crate::model) fn run_prompt(model: &Decoder, ids: &[u32]) -> Vec<f32> {
        let (block, blocks) = (16, ids.len().div_ceil(16));
        let mut kv = PagedKv::new(model.config.n_layers, model.config.kv_dim(), block, blocks)
            .expect("kv cache");
        let pool = ThreadPool::new(1).expect("pool");
        let n = ids.len();
        let batch = StepBatch::one_sequence(ids, 0, blocks, block);
        let all = model.forward_all(&pool, &mut kv, &batch);
        let last = model.forward(&pool, &mut kv, &batch).remove(0);
        // The last row of the all-rows pass is the bits of the last-row pass.
        assert_eq!(&all[(n - 1) * model.config.vocab_size..], &last[..]);
        last
    }
}
