//! Linear layers on the CPU: a weight matrix in its GGUF block format (borrowed from the
//! memory map, or owned for tests) multiplied with a batch of activation rows. Several
//! matrices that read the same input (Q/K/V, gate/up) run as one parallel operation (one
//! pool dispatch) over the union of their rows, with the input quantized once. The work
//! is split by weight-row chunks (and, for long prompts, activation chunks); inside a
//! chunk the ISA kernels tile rows × activations (see `dot`), like llama.cpp's
//! `ggml_compute_forward_mul_mat` blocking. Every output is computed as llama.cpp's CPU
//! backend computes it: the activation row in the weight type's `vec_dot_type` (Q8_0 /
//! Q8_1 blocks, Q8_K, f16, bf16 or f32, see `quant::vec_dot_type`), then that type's dot
//! (Q4_1 and Q8_0 through the per-ISA tile kernels of `dot`; the other types through
//! the portable ports in `quant`, the same code on every ISA). Public operations:
//! `Linear`, `Activations` (`quantize`), `matmul_many`, `matmul_swiglu` (gate/up
//! products and the SwiGLU activation in one dispatch).

use std::sync::{Arc, OnceLock};

use memmap2::Mmap;

use super::dot::{gemm, Isa, QRows, QType};
use super::ops::silu_mul;
use super::pool::{SharedMut, ThreadPool};
use super::quant::q8k::{quantize_q8_k, Q8KBlock, QK_K};
use super::quant::{float, kquants, legacy};
use super::quant::{quantize_q8, vec_dot_type, ActFormat, Q8Block, QK};
use crate::model::ggml::GgmlType;

/// Bytes of a weight tensor.
pub enum WeightBytes {
    Mapped {
        map: Arc<Mmap>,
        start: usize,
        len: usize,
    },
    Owned(Vec<u8>),
}

impl WeightBytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            WeightBytes::Mapped { map, start, len } => &map[*start..*start + *len],
            WeightBytes::Owned(v) => v,
        }
    }
}

/// A `rows x cols` weight matrix, row-major in ggml blocks (`y = W x`).
pub struct Linear {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub bytes: WeightBytes,
}

impl Linear {
    /// One row's raw blocks.
    pub fn row(&self, r: usize) -> &[u8] {
        let rb = self.ty.row_bytes(self.cols);
        &self.bytes.as_slice()[r * rb..(r + 1) * rb]
    }

    /// Bytes read per full pass over the matrix.
    pub fn n_bytes(&self) -> usize {
        self.bytes.as_slice().len()
    }
}

/// The input of a matmul: f32 rows, their Q8 blocks (made by `quantize`, for the Q8_0 /
/// Q8_1 weight types), and the other activation formats, each made once on first use by
/// a weight type that needs it (`prepare`, called by the matmuls before they dispatch).
pub struct Activations<'a> {
    pub x: &'a [f32],
    pub q: &'a [Q8Block],
    pub cols: usize,
    q8k: OnceLock<Vec<Q8KBlock>>,
    f16: OnceLock<Vec<u16>>,
    bf16: OnceLock<Vec<u16>>,
}

impl<'a> Activations<'a> {
    /// Quantizes `x` (rows of `cols`) into `scratch` and wraps both.
    pub fn quantize(
        pool: &ThreadPool,
        x: &'a [f32],
        cols: usize,
        scratch: &'a mut Vec<Q8Block>,
    ) -> Self {
        let n_rows = x.len() / cols;
        let bpr = cols / QK;
        scratch.resize(n_rows * bpr, Q8Block::default());
        let out = SharedMut(scratch.as_mut_ptr());
        pool.run(n_rows, &|r| {
            // SAFETY: task r writes only blocks r*bpr..(r+1)*bpr of `scratch`.
            let dst = unsafe { std::slice::from_raw_parts_mut(out.ptr().add(r * bpr), bpr) };
            quantize_q8(&x[r * cols..(r + 1) * cols], dst);
        });
        Activations {
            x,
            q: scratch,
            cols,
            q8k: OnceLock::new(),
            f16: OnceLock::new(),
            bf16: OnceLock::new(),
        }
    }

    fn n_rows(&self) -> usize {
        self.x.len() / self.cols
    }

    /// Makes the activation format weight type `ty` multiplies with, if not made yet.
    fn prepare(&self, pool: &ThreadPool, ty: GgmlType) {
        let (n, cols) = (self.n_rows(), self.cols);
        match vec_dot_type(ty) {
            Some(ActFormat::Q8K) => {
                self.q8k.get_or_init(|| {
                    let bpr = cols / QK_K;
                    let mut v = vec![Q8KBlock::default(); n * bpr];
                    let out = SharedMut(v.as_mut_ptr());
                    pool.run(n, &|r| {
                        // SAFETY: task r writes only blocks r*bpr..(r+1)*bpr of `v`.
                        let dst =
                            unsafe { std::slice::from_raw_parts_mut(out.ptr().add(r * bpr), bpr) };
                        quantize_q8_k(&self.x[r * cols..(r + 1) * cols], dst);
                    });
                    v
                });
            }
            Some(ActFormat::F16) => {
                self.f16.get_or_init(|| {
                    let mut v = vec![0u16; self.x.len()];
                    float::to_f16_row(self.x, &mut v);
                    v
                });
            }
            Some(ActFormat::BF16) => {
                self.bf16.get_or_init(|| {
                    let mut v = vec![0u16; self.x.len()];
                    float::to_bf16_row(self.x, &mut v);
                    v
                });
            }
            Some(ActFormat::F32 | ActFormat::Q8) | None => {}
        }
    }

    /// Activation row `t` · weight row `row` of type `ty`: the portable code of `quant`,
    /// or the ISA's row dot for Q4_K / Q6_K / Q5_0 (same bits). `prepare(ty)` must have run.
    fn dot_row(&self, isa: Isa, ty: GgmlType, row: &[u8], t: usize) -> f32 {
        let cols = self.cols;
        let q8 = || &self.q[t * cols / QK..(t + 1) * cols / QK];
        let q8k = || match self.q8k.get() {
            Some(v) => &v[t * cols / QK_K..(t + 1) * cols / QK_K],
            None => unreachable!("Q8_K activations not prepared"),
        };
        fn half(l: &OnceLock<Vec<u16>>, t: usize, cols: usize) -> &[u16] {
            match l.get() {
                Some(v) => &v[t * cols..(t + 1) * cols],
                None => unreachable!("f16/bf16 activations not prepared"),
            }
        }
        use GgmlType as G;
        match ty {
            G::F32 => float::dot_f32(row, &self.x[t * cols..(t + 1) * cols]),
            G::F16 => float::dot_f16(row, half(&self.f16, t, cols)),
            G::BF16 => float::dot_bf16(row, half(&self.bf16, t, cols)),
            G::Q4_0 => legacy::dot_q4_0(row, q8()),
            G::Q4_1 => super::dot::dot_q4_1_portable(row, q8()),
            G::Q5_0 => super::dot::dot_q5_0(isa, row, q8()),
            G::Q5_1 => legacy::dot_q5_1(row, q8()),
            G::Q8_0 => super::dot::dot_q8_0_portable(row, q8()),
            G::Q2K => kquants::dot_q2_k(row, q8k()),
            G::Q3K => kquants::dot_q3_k(row, q8k()),
            G::Q4K => super::dot::dot_q4_k(isa, row, q8k()),
            G::Q5K => kquants::dot_q5_k(row, q8k()),
            G::Q6K => super::dot::dot_q6_k(isa, row, q8k()),
            G::Q8_1 | G::Q8K => {
                unreachable!("matmul with unsupported type {ty:?} (refused at load)")
            }
        }
    }
}

/// Weight bytes a prefill task keeps hot in L1 while every activation tile passes.
const TASK_WEIGHT_BYTES: usize = 16 << 10;
/// Activation bytes of one task (L2-resident while its weight rows stream past).
const TASK_ACT_BYTES: usize = 512 << 10;
/// Row granularity of tasks: a multiple of every ISA's tile width.
const ROW_STEP: usize = 16;

/// One unit of parallel work: output rows `rows` of job `job` for activation rows `toks`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Task {
    job: usize,
    rows: (usize, usize),
    toks: (usize, usize),
}

/// Splits `n_tok` activation rows times every job's weight rows (`(rows, row_bytes)`)
/// into tasks. Decode (a few activation rows) splits rows evenly over the threads;
/// prefill gives each task ~16 KiB of weight rows, loaded once for all its activations.
fn plan(
    n_threads: usize,
    n_tok: usize,
    act_row_bytes: usize,
    jobs: &[(usize, usize)],
) -> Vec<Task> {
    let total_rows: usize = jobs.iter().map(|j| j.0).sum();
    let tok_chunk = (TASK_ACT_BYTES / act_row_bytes.max(1)).max(4) / 4 * 4;
    let round = |r: usize| r.div_ceil(ROW_STEP).max(1) * ROW_STEP;
    let mut tasks = Vec::new();
    for t0 in (0..n_tok).step_by(tok_chunk) {
        let toks = (t0, (t0 + tok_chunk).min(n_tok));
        for (job, &(rows, row_bytes)) in jobs.iter().enumerate() {
            let step = if n_tok <= 4 {
                round(total_rows / (n_threads * 8)).min(1024)
            } else {
                let balanced = round(total_rows / (n_threads * 4));
                round(TASK_WEIGHT_BYTES / row_bytes.max(1)).min(balanced)
            };
            for r0 in (0..rows).step_by(step) {
                tasks.push(Task {
                    job,
                    rows: (r0, (r0 + step).min(rows)),
                    toks,
                });
            }
        }
    }
    tasks
}

/// Computes `outs[i] = W_i · x` for every `(W_i, out_i)`, output rows `[n_tokens][W_i.rows]`.
/// All matrices must have `cols == x.cols`. Each output element is computed by the same
/// arithmetic whatever the number of activation rows (see `dot`), so a row's result does
/// not depend on the batch it is in.
pub fn matmul_many(
    pool: &ThreadPool,
    isa: Isa,
    x: &Activations,
    jobs: &mut [(&Linear, &mut [f32])],
) {
    let n_tok = x.n_rows();
    let bpr = x.cols / QK;
    for (w, _) in jobs.iter() {
        x.prepare(pool, w.ty);
    }
    let outs: Vec<(&Linear, SharedMut<f32>)> = jobs
        .iter_mut()
        .map(|(w, o)| {
            assert_eq!(w.cols, x.cols, "matmul: weight cols != activation cols");
            assert!(o.len() >= n_tok * w.rows, "matmul: output too small");
            (&**w, SharedMut(o.as_mut_ptr()))
        })
        .collect();
    let shapes: Vec<(usize, usize)> = outs
        .iter()
        .map(|(w, _)| (w.rows, w.ty.row_bytes(w.cols)))
        .collect();
    let tasks = plan(
        pool.n_threads(),
        n_tok,
        bpr * std::mem::size_of::<Q8Block>(),
        &shapes,
    );
    pool.run(tasks.len(), &|i| {
        let Task { job, rows, toks } = tasks[i];
        let (w, out) = &outs[job];
        // SAFETY: `out` holds n_tok * w.rows floats (checked); the plan gives this block
        // to this task alone.
        unsafe { compute_block(isa, x, w, out.ptr(), rows, toks) };
    });
}

/// SwiGLU: `gate = silu(W_gate · x) * (W_up · x)`, with `up` as scratch for the second
/// product. One task computes both products of a row chunk and applies the activation
/// to it, so the element-wise part runs in parallel too; the bits are those of
/// `matmul_many` followed by `silu_mul`.
pub fn matmul_swiglu(
    pool: &ThreadPool,
    isa: Isa,
    x: &Activations,
    (w_gate, gate): (&Linear, &mut [f32]),
    (w_up, up): (&Linear, &mut [f32]),
) {
    let n_tok = x.n_rows();
    let rows = w_gate.rows;
    assert!(
        w_gate.cols == x.cols && w_up.cols == x.cols,
        "swiglu: weight cols"
    );
    assert_eq!(w_up.rows, rows, "swiglu: gate and up rows");
    x.prepare(pool, w_gate.ty);
    x.prepare(pool, w_up.ty);
    assert!(
        gate.len() >= n_tok * rows && up.len() >= n_tok * rows,
        "swiglu: outputs"
    );
    let row_bytes = w_gate.ty.row_bytes(x.cols) + w_up.ty.row_bytes(x.cols);
    let act_row_bytes = x.cols / QK * std::mem::size_of::<Q8Block>();
    let tasks = plan(pool.n_threads(), n_tok, act_row_bytes, &[(rows, row_bytes)]);
    let (g, u) = (SharedMut(gate.as_mut_ptr()), SharedMut(up.as_mut_ptr()));
    pool.run(tasks.len(), &|i| {
        let Task { rows: rr, toks, .. } = tasks[i];
        // SAFETY: both outputs hold n_tok * rows floats (checked); the plan gives block
        // (rr, toks) of both to this task alone, and the slices below lie in that block.
        unsafe {
            compute_block(isa, x, w_gate, g.ptr(), rr, toks);
            compute_block(isa, x, w_up, u.ptr(), rr, toks);
            for t in toks.0..toks.1 {
                let (off, len) = (t * rows + rr.0, rr.1 - rr.0);
                let gs = std::slice::from_raw_parts_mut(g.ptr().add(off), len);
                silu_mul(gs, std::slice::from_raw_parts(u.ptr().add(off), len));
            }
        }
    });
}

/// Computes block `rows x toks` of `out = W · x`: element `(t, r)` at `t * w.rows + r`.
///
/// # Safety
/// `out` points at `n_tok * w.rows` floats, and no other thread accesses the block's
/// elements during the call.
unsafe fn compute_block(
    isa: Isa,
    x: &Activations,
    w: &Linear,
    out: *mut f32,
    rows: (usize, usize),
    toks: (usize, usize),
) {
    let bpr = x.cols / QK;
    let rb = w.ty.row_bytes(w.cols);
    let qtype = match w.ty {
        GgmlType::Q4_1 => Some(QType::Q4_1),
        GgmlType::Q8_0 => Some(QType::Q8_0),
        _ => None,
    };
    if let Some(ty) = qtype {
        let q = QRows {
            ty,
            bytes: &w.bytes.as_slice()[rows.0 * rb..rows.1 * rb],
            row_bytes: rb,
        };
        let a = &x.q[toks.0 * bpr..toks.1 * bpr];
        // SAFETY: per this function's contract.
        unsafe { gemm(isa, q, a, bpr, out.add(toks.0 * w.rows + rows.0), w.rows) };
        return;
    }
    for r in rows.0..rows.1 {
        let row = w.row(r);
        for t in toks.0..toks.1 {
            let v = x.dot_row(isa, w.ty, row, t);
            // SAFETY: per this function's contract.
            unsafe { *out.add(t * w.rows + r) = v };
        }
    }
}

#[cfg(test)]
mod tests;
