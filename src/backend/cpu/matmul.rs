//! Linear layers on the CPU: a weight matrix in its GGUF block format (borrowed from the
//! memory map, or owned for tests) multiplied with a batch of activation rows. Several
//! matrices that read the same input (Q/K/V, gate/up) run as one parallel operation (one
//! pool dispatch) over the union of their rows, with the input quantized once. The work
//! is split by weight-row chunks (and, for long prompts, activation chunks); inside a
//! chunk the ISA kernels tile rows × activations (see `dot`), like llama.cpp's
//! `ggml_compute_forward_mul_mat` blocking. Public operations: `Linear`, `Activations`
//! (`quantize`), `matmul_many`, `matmul_swiglu` (gate/up products and the SwiGLU
//! activation in one dispatch).

use std::sync::Arc;

use memmap2::Mmap;

use super::dot::{dot_f16, dot_f32, gemm, Isa, QRows, QType};
use super::ops::silu_mul;
use super::pool::{SharedMut, ThreadPool};
use super::quant::{quantize_q8, Q8Block, QK};
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

/// The input of a matmul: f32 rows, and their Q8 blocks when a quantized weight needs them.
pub struct Activations<'a> {
    pub x: &'a [f32],
    pub q: &'a [Q8Block],
    pub cols: usize,
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
        }
    }

    fn n_rows(&self) -> usize {
        self.x.len() / self.cols
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
            let xr = &x.x[t * x.cols..(t + 1) * x.cols];
            let v = match w.ty {
                GgmlType::F32 => dot_f32(row, xr),
                GgmlType::F16 => dot_f16(row, xr),
                other => unreachable!("matmul with unsupported type {other:?} (checked at load)"),
            };
            // SAFETY: per this function's contract.
            unsafe { *out.add(t * w.rows + r) = v };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::quant::dequantize_row;
    use super::*;
    use half::f16;

    fn rnd(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    /// `rows x cols` random weights quantized to `ty` (Q8_0 or Q4_1), as GGUF stores them.
    fn weight(ty: GgmlType, rows: usize, cols: usize, seed: &mut u64) -> Linear {
        let mut bytes = Vec::new();
        for _ in 0..rows * cols / QK {
            let v: Vec<f32> = (0..QK).map(|_| rnd(seed)).collect();
            if ty == GgmlType::Q8_0 {
                let mut q = [Q8Block::default()];
                quantize_q8(&v, &mut q);
                bytes.extend_from_slice(&f16::from_f32(q[0].d).to_bits().to_le_bytes());
                bytes.extend(q[0].qs.iter().map(|&x| x as u8));
            } else {
                let (lo, hi) = v
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
                let d = f16::from_f32((hi - lo) / 15.0);
                let m = f16::from_f32(lo);
                bytes.extend_from_slice(&d.to_bits().to_le_bytes());
                bytes.extend_from_slice(&m.to_bits().to_le_bytes());
                let q = |x: f32| ((x - m.to_f32()) / d.to_f32()).round().clamp(0.0, 15.0) as u8;
                bytes.extend((0..QK / 2).map(|j| q(v[j]) | (q(v[j + QK / 2]) << 4)));
            }
        }
        Linear {
            ty,
            rows,
            cols,
            bytes: WeightBytes::Owned(bytes),
        }
    }

    fn run(pool: &ThreadPool, isa: Isa, x: &[f32], cols: usize, ws: &[&Linear]) -> Vec<Vec<f32>> {
        let n_tok = x.len() / cols;
        let mut outs: Vec<Vec<f32>> = ws.iter().map(|w| vec![f32::NAN; n_tok * w.rows]).collect();
        let mut scratch = Vec::new();
        let act = Activations::quantize(pool, x, cols, &mut scratch);
        let mut jobs: Vec<(&Linear, &mut [f32])> = ws
            .iter()
            .zip(outs.iter_mut())
            .map(|(w, o)| (*w, o.as_mut_slice()))
            .collect();
        matmul_many(pool, isa, &act, &mut jobs);
        outs
    }

    #[test]
    fn matmul_matches_dequantized_reference_on_every_isa() {
        let pool = ThreadPool::new(2).unwrap();
        let (rows, cols, n_tok) = (37, 64, 3);
        let mut seed = 7u64;
        let x: Vec<f32> = (0..n_tok * cols).map(|_| rnd(&mut seed)).collect();
        for ty in [GgmlType::Q8_0, GgmlType::Q4_1] {
            let w = weight(ty, rows, cols, &mut seed);
            for isa in Isa::available() {
                let out = run(&pool, isa, &x, cols, &[&w]).remove(0);
                for t in 0..n_tok {
                    for r in 0..rows {
                        let mut row = vec![0f32; cols];
                        dequantize_row(ty, w.row(r), &mut row);
                        let want: f32 = row
                            .iter()
                            .zip(&x[t * cols..(t + 1) * cols])
                            .map(|(a, b)| a * b)
                            .sum();
                        let got = out[t * rows + r];
                        assert!(
                            (got - want).abs() < 0.03,
                            "{isa:?} {ty:?} ({t},{r}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_row_alone_gives_the_bits_it_gives_inside_a_37_row_batch() {
        let pool = ThreadPool::new(2).unwrap();
        let (cols, n_tok) = (96, 37);
        let mut seed = 11u64;
        let x: Vec<f32> = (0..n_tok * cols).map(|_| rnd(&mut seed) * 4.0).collect();
        // Two matrices in one dispatch, row counts that are not tile multiples.
        let wa = weight(GgmlType::Q4_1, 53, cols, &mut seed);
        let wb = weight(GgmlType::Q8_0, 21, cols, &mut seed);
        let portable = run(&pool, Isa::Portable, &x, cols, &[&wa, &wb]);
        for isa in Isa::available() {
            let batch = run(&pool, isa, &x, cols, &[&wa, &wb]);
            for (j, w) in [&wa, &wb].iter().enumerate() {
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&batch[j]),
                    bits(&portable[j]),
                    "{isa:?} vs portable, matrix {j}"
                );
                for t in 0..n_tok {
                    let alone = run(&pool, isa, &x[t * cols..(t + 1) * cols], cols, &[&wa, &wb]);
                    assert_eq!(
                        bits(&alone[j]),
                        bits(&batch[j][t * w.rows..(t + 1) * w.rows]),
                        "{isa:?}: row {t} alone differs from row {t} of the batch, matrix {j}"
                    );
                }
            }
        }
    }

    #[test]
    fn swiglu_gives_the_bits_of_matmul_then_silu_mul() {
        let pool = ThreadPool::new(2).unwrap();
        let (cols, rows) = (64, 45);
        let mut seed = 3u64;
        let wg = weight(GgmlType::Q4_1, rows, cols, &mut seed);
        let wu = weight(GgmlType::Q8_0, rows, cols, &mut seed);
        for n_tok in [1usize, 7] {
            let x: Vec<f32> = (0..n_tok * cols).map(|_| rnd(&mut seed)).collect();
            for isa in Isa::available() {
                let mut want = run(&pool, isa, &x, cols, &[&wg, &wu]);
                let up = want.pop().unwrap();
                silu_mul(&mut want[0], &up);
                let (mut g, mut u) = (vec![0f32; n_tok * rows], vec![0f32; n_tok * rows]);
                let mut scratch = Vec::new();
                let act = Activations::quantize(&pool, &x, cols, &mut scratch);
                matmul_swiglu(&pool, isa, &act, (&wg, &mut g), (&wu, &mut u));
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&g), bits(&want[0]), "{isa:?}, {n_tok} rows");
            }
        }
    }

    #[test]
    fn the_plan_partitions_every_output_once() {
        for (threads, n_tok, act_bytes) in [(2, 1, 1152), (2, 37, 1152), (4, 700, 3072), (1, 5, 64)]
        {
            let jobs = [(576, 360), (192, 360), (49152, 612), (5, 20)];
            let tasks = plan(threads, n_tok, act_bytes, &jobs);
            let mut seen: Vec<Vec<u8>> = jobs.iter().map(|j| vec![0; j.0 * n_tok]).collect();
            for t in &tasks {
                assert!(t.rows.0 < t.rows.1 && t.toks.0 < t.toks.1, "{t:?}");
                for r in t.rows.0..t.rows.1 {
                    for k in t.toks.0..t.toks.1 {
                        seen[t.job][k * jobs[t.job].0 + r] += 1;
                    }
                }
            }
            assert!(
                seen.iter().flatten().all(|&c| c == 1),
                "{threads} threads, {n_tok} tokens"
            );
        }
    }
}
