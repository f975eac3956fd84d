//! Linear layers on the CPU: a weight matrix in its GGUF block format (borrowed from the
//! memory map, or owned for tests) multiplied with a batch of activation rows. Several
//! matrices that read the same input (Q/K/V, gate/up) run as one parallel operation over
//! the union of their rows, with the input quantized once.

use std::sync::Arc;

use memmap2::Mmap;

use super::dot::{dot_f16, dot_f32, dot_q4_1, dot_q8_0, Isa};
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

/// Computes `outs[i] = W_i · x` for every `(W_i, out_i)`, output rows `[n_tokens][W_i.rows]`.
/// All matrices must have `cols == x.cols`.
pub fn matmul_many(
    pool: &ThreadPool,
    isa: Isa,
    x: &Activations,
    jobs: &mut [(&Linear, &mut [f32])],
) {
    let n_tok = x.n_rows();
    let bpr = x.cols / QK;
    let starts: Vec<usize> = jobs
        .iter()
        .scan(0, |acc, (w, _)| {
            let s = *acc;
            *acc += w.rows;
            Some(s)
        })
        .collect();
    let total_rows: usize = jobs.iter().map(|(w, _)| w.rows).sum();
    let outs: Vec<(&Linear, SharedMut<f32>)> = jobs
        .iter_mut()
        .map(|(w, o)| {
            assert_eq!(w.cols, x.cols, "matmul: weight cols != activation cols");
            assert!(o.len() >= n_tok * w.rows, "matmul: output too small");
            (&**w, SharedMut(o.as_mut_ptr()))
        })
        .collect();
    // Rows per task: enough work to amortize the dispatch, enough tasks to balance.
    let chunk = (total_rows / (pool.n_threads() * 8)).clamp(4, 256);
    let n_tasks = total_rows.div_ceil(chunk);
    pool.run(n_tasks, &|task| {
        let lo = task * chunk;
        let hi = (lo + chunk).min(total_rows);
        for g in lo..hi {
            let j = starts.partition_point(|&s| s <= g) - 1;
            let (w, out) = &outs[j];
            let r = g - starts[j];
            let row = w.row(r);
            for t in 0..n_tok {
                let v = match w.ty {
                    GgmlType::Q4_1 => dot_q4_1(isa, row, &x.q[t * bpr..(t + 1) * bpr]),
                    GgmlType::Q8_0 => dot_q8_0(isa, row, &x.q[t * bpr..(t + 1) * bpr]),
                    GgmlType::F32 => dot_f32(row, &x.x[t * x.cols..(t + 1) * x.cols]),
                    GgmlType::F16 => dot_f16(row, &x.x[t * x.cols..(t + 1) * x.cols]),
                    other => {
                        unreachable!("matmul with unsupported type {other:?} (checked at load)")
                    }
                };
                // SAFETY: element (t, r) of output j is written by exactly one task: the
                // one whose row range holds global row g.
                unsafe { *out.ptr().add(t * w.rows + r) = v };
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::super::quant::dequantize_row;
    use super::*;

    #[test]
    fn matmul_matches_dequantized_reference() {
        let pool = ThreadPool::new(2).unwrap();
        let (rows, cols, n_tok) = (37, 64, 3);
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let x: Vec<f32> = (0..n_tok * cols).map(|_| rnd()).collect();
        // Build a Q8_0 weight by quantizing random rows.
        let wf: Vec<f32> = (0..rows * cols).map(|_| rnd()).collect();
        let mut bytes = Vec::new();
        for r in 0..rows {
            let mut q = vec![Q8Block::default(); cols / QK];
            quantize_q8(&wf[r * cols..(r + 1) * cols], &mut q);
            for b in q {
                bytes.extend_from_slice(&half::f16::from_f32(b.d).to_bits().to_le_bytes());
                bytes.extend(b.qs.iter().map(|&v| v as u8));
            }
        }
        let w = Linear {
            ty: GgmlType::Q8_0,
            rows,
            cols,
            bytes: WeightBytes::Owned(bytes),
        };
        let mut scratch = Vec::new();
        let act = Activations::quantize(&pool, &x, cols, &mut scratch);
        let mut out = vec![0f32; n_tok * rows];
        matmul_many(&pool, Isa::detect(), &act, &mut [(&w, &mut out)]);
        for t in 0..n_tok {
            for r in 0..rows {
                let mut row = vec![0f32; cols];
                dequantize_row(GgmlType::Q8_0, w.row(r), &mut row);
                let want: f32 = row
                    .iter()
                    .zip(&x[t * cols..(t + 1) * cols])
                    .map(|(a, b)| a * b)
                    .sum();
                let got = out[t * rows + r];
                assert!((got - want).abs() < 0.02, "({t},{r}): {got} vs {want}");
            }
        }
    }
}
