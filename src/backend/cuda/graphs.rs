//! CUDA graphs for decode steps (vLLM's `CUDAGraphRunner`): a decode step's launches
//! (forward pass and sampling: some 15 kernels and cuBLAS calls per layer) are captured
//! once per padded batch size and partition bucket, then replayed with one launch, so a
//! small model is not bound by launch and host time.
//!
//! Every captured kernel reads its per-step inputs (ids, positions, slots, block tables,
//! lengths, sampling settings) from the runner's fixed device buffers, which the step
//! fills before the replay; the launch sizes are the graph's key. A batch of `n` decode
//! sequences runs in the graph of the smallest captured size `>= n`; the padding rows get
//! token 0 at position 0, slot -1 (no cache write), length 0 (attention writes zeros) and
//! greedy sampling, and their results are not read. The decode kernel's partition count
//! (grid z) is a power-of-two bucket of the longest context, capped at what the scratch
//! holds; partitions past a sequence's length exit at once.
//!
//! The first step of a key runs eagerly (so cuBLAS picks and loads its kernels outside a
//! capture) and is then recorded. A capture that fails (a driver without graph support
//! for some call, say) switches graphs off for the runner, with the reason kept for the
//! stats: a graph is an optimisation, never a reason to fail a request.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::CudaGraph;

use super::device::device_error;
use super::ops::attention::PARTITION_SIZE;
use super::runner::CudaRunner;
use super::staging::StepShape;
use crate::backend::StepCounters;
use crate::error::Result;

/// A captured graph's launch sizes: (padded batch size, partition count).
pub(super) type GraphKey = (usize, usize);

/// A graph owned by the runner's thread.
struct OwnedGraph(CudaGraph);

// SAFETY: CUDA graph objects are not bound to a thread; the driver only requires that
// calls on one graph are not concurrent. The runner that owns it is used by one thread at
// a time (the engine thread; `&mut self` on every step).
unsafe impl Send for OwnedGraph {}

/// The runner's captured decode graphs.
pub(super) struct DecodeGraphs {
    /// Batch sizes captured on first use (vLLM's list: 1, 2, 4, then multiples of 8).
    sizes: Vec<usize>,
    graphs: HashMap<GraphKey, OwnedGraph>,
    /// Why graphs are off (`RILL_CUDA_GRAPHS=0`, or a failed capture).
    disabled: Option<String>,
    /// Shared with the engine's stats.
    pub counters: Arc<StepCounters>,
}

impl DecodeGraphs {
    /// Graphs for decode batches of up to `max_batch` sequences: `max_num_seqs`, but never
    /// more than `max_num_batched_tokens` (a padded batch must fit the token buffers).
    pub fn new(max_batch: usize) -> DecodeGraphs {
        let mut sizes: Vec<usize> = [1, 2, 4].into_iter().filter(|&s| s <= max_batch).collect();
        sizes.extend((8..=max_batch.min(512)).step_by(8));
        if max_batch <= 512 && sizes.last() != Some(&max_batch) {
            sizes.push(max_batch);
        }
        let mut graphs = DecodeGraphs {
            sizes,
            graphs: HashMap::new(),
            disabled: None,
            counters: Arc::default(),
        };
        if std::env::var("RILL_CUDA_GRAPHS").is_ok_and(|v| v == "0") {
            graphs.turn_off("off: RILL_CUDA_GRAPHS=0".to_owned());
        }
        graphs
    }

    /// Turns graphs off for good, saying why (in the stats too).
    fn turn_off(&mut self, why: String) {
        *self.counters.graphs_off.lock() = Some(why.clone());
        self.disabled = Some(why);
        self.graphs.clear();
    }

    pub fn enabled(&self) -> bool {
        self.disabled.is_none()
    }

    /// Drops every graph (their buffers are about to change).
    pub fn clear(&mut self) {
        self.graphs.clear();
    }

    /// The graph a decode step of `shape` runs in, or `None` (too many sequences, or
    /// graphs are off).
    pub fn key_for(&self, shape: &StepShape, scratch_partitions: usize) -> Option<GraphKey> {
        if !self.enabled() || !shape.decode {
            return None;
        }
        let size = *self.sizes.iter().find(|&&s| s >= shape.num_seqs)?;
        Some((
            size,
            partition_bucket(shape.max_partitions, scratch_partitions),
        ))
    }
}

/// The smallest power of two `>= needed`, capped at `max` (the scratch's partitions;
/// should `needed` exceed it, the kernel's last partition covers the rest).
pub(super) fn partition_bucket(needed: usize, max: usize) -> usize {
    needed.max(1).next_power_of_two().min(max.max(1))
}

/// The block-table stride of graph `key`: the blocks its partition count covers (at
/// least every sequence's blocks, since the partitions cover the longest context), at
/// most `max_blocks_per_seq`.
pub(super) fn table_stride(key: GraphKey, block_size: usize, max_blocks_per_seq: usize) -> usize {
    (key.1 * PARTITION_SIZE)
        .div_ceil(block_size)
        .min(max_blocks_per_seq)
}

impl CudaRunner {
    /// Runs the padded decode step `shape` through graph `key`; the first step of a key
    /// runs eagerly and captures the graph for the next ones (a failed capture turns
    /// graphs off; the step's results stand either way).
    pub(super) fn replay_or_capture(&mut self, key: GraphKey, shape: &StepShape) -> Result<()> {
        if let Some(g) = self.graphs.graphs.get(&key) {
            g.0.launch().map_err(|e| {
                device_error(
                    format!("CUDA graph launch (batch {}, {} partitions)", key.0, key.1),
                    e,
                )
            })?;
            StepCounters::bump(&self.graphs.counters.graph_steps);
            return Ok(());
        }
        // First time for this key: run the step eagerly (its results are this step's,
        // and cuBLAS loads its kernels for these shapes outside the capture), then
        // record the same launches into a graph. A capture executes nothing.
        self.run_forward(shape)?;
        self.run_sampling(shape, true)?;
        StepCounters::bump(&self.graphs.counters.eager_steps);
        let captured = self.gpu.capture("a decode step", || {
            self.run_forward(shape)
                .and_then(|()| self.run_sampling(shape, true))
        });
        match captured {
            Ok(graph) => {
                self.graphs.graphs.insert(key, OwnedGraph(graph));
                StepCounters::bump(&self.graphs.counters.graphs_captured);
            }
            // The step's results stand (it ran eagerly above); only graphs go.
            Err(e) => self
                .graphs
                .turn_off(format!("off after a failed capture (batch {}): {e}", key.0)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_buckets() {
        let g = DecodeGraphs::new(20);
        assert_eq!(g.sizes, [1, 2, 4, 8, 16, 20]);
        assert_eq!(DecodeGraphs::new(256).sizes.len(), 3 + 32);
        assert_eq!(DecodeGraphs::new(1).sizes, [1]);
        assert_eq!(partition_bucket(1, 80), 1);
        assert_eq!(partition_bucket(3, 80), 4);
        assert_eq!(partition_bucket(65, 80), 80);
        assert_eq!(partition_bucket(5, 4), 4);
        let shape = StepShape {
            num_tokens: 3,
            num_seqs: 3,
            num_rows: 3,
            decode: true,
            max_q_len: 1,
            max_partitions: 3,
            table_stride: 1,
        };
        if g.enabled() {
            assert_eq!(g.key_for(&shape, 8), Some((4, 4)));
            let wide = StepShape {
                num_seqs: 21,
                ..shape
            };
            assert_eq!(g.key_for(&wide, 8), None);
        }
        let prefill = StepShape {
            decode: false,
            ..shape
        };
        assert_eq!(g.key_for(&prefill, 8), None);
        assert_eq!(table_stride((4, 2), 16, 1000), 64);
        assert_eq!(table_stride((4, 80), 16, 2560), 2560);
    }
}
