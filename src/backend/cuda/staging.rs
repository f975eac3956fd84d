//! The host side of a CUDA step, with no GPU in it (so it is tested anywhere): the flat
//! batch checked against the runner's limits and turned into the index arrays the kernels
//! read (int32 ids, positions, block tables at a chosen stride, sequence lengths, query
//! offsets, logits rows; int64 slots), the sampling settings per logits row, and the
//! padding of a decode step to a CUDA graph's batch size.

use super::graphs::GraphKey;
use super::ops;
use super::runner::{Limits, MAX_TOP_LOGPROBS};
use crate::error::{Error, Result};
use crate::model::StepBatch;
use crate::sampling::DevicePick;

/// Host copies of the step's index arrays (reused: no allocation per step).
#[derive(Default)]
pub struct Staging {
    pub ids: Vec<i32>,
    pub positions: Vec<i32>,
    pub slots: Vec<i64>,
    pub block_tables: Vec<i32>,
    pub seq_lens: Vec<i32>,
    pub cu_seqlens_q: Vec<i32>,
    pub rows: Vec<i32>,
    pub temperatures: Vec<f32>,
    pub top_k: Vec<i32>,
    pub top_p: Vec<f32>,
    pub min_p: Vec<f32>,
    pub uniforms: Vec<f64>,
    pub num_top: Vec<i32>,
}

/// What one step runs: the sizes the kernels are launched with.
#[derive(Clone, Copy, Debug)]
pub(super) struct StepShape {
    /// Tokens in the step (a graph's padded batch size for a replayed decode).
    pub num_tokens: usize,
    pub num_seqs: usize,
    /// Rows of logits (sequences that want them).
    pub num_rows: usize,
    /// Every sequence has exactly one new token and wants its logits: the decode kernel,
    /// no row gather.
    pub decode: bool,
    pub max_q_len: usize,
    /// The decode kernel's partition count (grid z).
    pub max_partitions: usize,
    /// Entries per sequence in the uploaded block tables (the kernels' `max_blocks_per_seq`):
    /// the longest sequence's blocks for an eager step, the partition bucket's for a graph.
    pub table_stride: usize,
}

/// Fills the host staging arrays from `batch` (and the sampling rows from `picks`),
/// checking it against the limits.
pub(super) fn stage(
    h: &mut Staging,
    batch: &StepBatch,
    l: &Limits,
    vocab: usize,
    num_blocks: usize,
    picks: Option<&[Option<DevicePick>]>,
) -> Result<StepShape> {
    let n = batch.token_ids.len();
    let seqs = batch.seqs.len();
    if n == 0 || n > l.max_num_batched_tokens || seqs > l.max_num_seqs {
        return Err(Error::Internal(format!(
            "CUDA step of {n} tokens in {seqs} sequences exceeds the limits \
             ({} tokens, {} sequences) or is empty",
            l.max_num_batched_tokens, l.max_num_seqs
        )));
    }
    if batch.block_size != l.block_size {
        return Err(Error::Internal(format!(
            "CUDA step with block size {} on a cache of block size {}",
            batch.block_size, l.block_size
        )));
    }
    h.ids.clear();
    h.positions.clear();
    h.slots.clear();
    for t in 0..n {
        let id = batch.token_ids[t];
        if id as usize >= vocab {
            return Err(Error::Internal(format!(
                "token id {id} out of the vocabulary ({vocab})"
            )));
        }
        h.ids.push(id as i32);
        h.positions.push(batch.positions[t] as i32);
        let slot = batch.slot_mapping[t];
        if slot >= num_blocks * l.block_size {
            return Err(Error::Internal(format!(
                "KV slot {slot} past the cache ({num_blocks} blocks)"
            )));
        }
        h.slots.push(slot as i64);
    }
    let mb = l.max_model_len.div_ceil(l.block_size);
    h.seq_lens.clear();
    h.cu_seqlens_q.clear();
    h.cu_seqlens_q.push(0);
    h.rows.clear();
    let mut decode = true;
    let (mut max_q_len, mut max_len) = (0usize, 0usize);
    for (s, sq) in batch.seqs.iter().enumerate() {
        let len = if sq.num_tokens == 0 {
            0
        } else {
            batch.positions[sq.token_start + sq.num_tokens - 1] + 1
        };
        let blocks = len.div_ceil(l.block_size);
        if blocks > mb || blocks > batch.block_table(s).len() {
            return Err(Error::Internal(format!(
                "a sequence of {len} tokens with a block table of {} blocks (at most {mb})",
                batch.block_table(s).len()
            )));
        }
        if h.cu_seqlens_q.last().map(|&e| e as usize) != Some(sq.token_start) {
            return Err(Error::Internal(
                "CUDA step: the sequences' tokens are not back to back in batch order".into(),
            ));
        }
        h.seq_lens.push(len as i32);
        h.cu_seqlens_q.push((sq.token_start + sq.num_tokens) as i32);
        max_q_len = max_q_len.max(sq.num_tokens);
        max_len = max_len.max(len);
        decode &= sq.num_tokens == 1 && sq.want_logits;
        if sq.want_logits && sq.num_tokens > 0 {
            h.rows.push((sq.token_start + sq.num_tokens - 1) as i32);
        }
    }
    decode &= n == seqs;
    let rows = h.rows.len();
    h.temperatures.clear();
    h.top_k.clear();
    h.top_p.clear();
    h.min_p.clear();
    h.uniforms.clear();
    h.num_top.clear();
    if let Some(picks) = picks {
        for p in picks {
            // Host-sampled rows (penalties) run greedy on the device; the result is
            // not used.
            let p = p.unwrap_or(DevicePick {
                greedy: true,
                temperature: 0.0,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                uniform: 0.0,
                logprobs: None,
            });
            h.temperatures
                .push(if p.greedy { 0.0 } else { p.temperature });
            h.top_k.push(p.top_k.min(i32::MAX as usize) as i32);
            h.top_p.push(p.top_p);
            h.min_p.push(p.min_p);
            h.uniforms.push(p.uniform);
            h.num_top
                .push(p.logprobs.map_or(0, |n| n.min(MAX_TOP_LOGPROBS)) as i32);
        }
    }
    let table_stride = max_len.div_ceil(l.block_size).max(1);
    fill_tables(h, batch, table_stride);
    Ok(StepShape {
        num_tokens: n,
        num_seqs: seqs,
        num_rows: rows,
        decode,
        max_q_len,
        max_partitions: ops::partitions(max_len),
        table_stride,
    })
}

/// Lays out each sequence's block table at `stride` entries per sequence: the blocks its
/// context uses (the kernels read no further), then zeros.
pub(super) fn fill_tables(h: &mut Staging, batch: &StepBatch, stride: usize) {
    h.block_tables.clear();
    h.block_tables.resize(batch.seqs.len() * stride, 0);
    for (s, &len) in h.seq_lens.iter().enumerate() {
        let used = (len as usize).div_ceil(batch.block_size).min(stride);
        for (dst, &b) in h.block_tables[s * stride..][..used]
            .iter_mut()
            .zip(batch.block_table(s))
        {
            *dst = b as i32;
        }
    }
}

/// Pads the staged decode step to the graph's batch size (see the module doc) and
/// returns the padded shape.
pub(super) fn pad(
    h: &mut Staging,
    shape: StepShape,
    key: GraphKey,
    table_stride: usize,
) -> StepShape {
    let (size, partitions) = key;
    let extra = size - shape.num_seqs;
    h.ids.extend(std::iter::repeat_n(0, extra));
    h.positions.extend(std::iter::repeat_n(0, extra));
    h.slots.extend(std::iter::repeat_n(-1, extra));
    h.block_tables
        .extend(std::iter::repeat_n(0, extra * table_stride));
    h.seq_lens.extend(std::iter::repeat_n(0, extra));
    let end = h.cu_seqlens_q.last().copied().unwrap_or(0);
    h.cu_seqlens_q.extend((1..=extra).map(|i| end + i as i32));
    h.rows.extend((shape.num_rows..size).map(|r| r as i32));
    h.temperatures.extend(std::iter::repeat_n(0.0, extra));
    h.top_k.extend(std::iter::repeat_n(0, extra));
    h.top_p.extend(std::iter::repeat_n(1.0, extra));
    h.min_p.extend(std::iter::repeat_n(0.0, extra));
    h.uniforms.extend(std::iter::repeat_n(0.0, extra));
    h.num_top.extend(std::iter::repeat_n(0, extra));
    StepShape {
        num_tokens: size,
        num_seqs: size,
        num_rows: size,
        decode: true,
        max_q_len: 1,
        max_partitions: partitions,
        table_stride,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SeqMeta;

    fn limits() -> Limits {
        Limits {
            max_num_seqs: 4,
            max_num_batched_tokens: 16,
            max_model_len: 64,
            block_size: 4,
        }
    }

    /// Two sequences: a 3-token prefill chunk at positions 4..7 (blocks 9, 2) and a
    /// decode at position 5 (blocks 7, 1).
    fn mixed() -> StepBatch {
        StepBatch {
            token_ids: vec![11, 12, 13, 14],
            positions: vec![4, 5, 6, 5],
            slot_mapping: vec![2 * 4, 2 * 4 + 1, 2 * 4 + 2, 4 + 1],
            token_seq: vec![0, 0, 0, 1],
            seqs: vec![
                SeqMeta {
                    token_start: 0,
                    num_tokens: 3,
                    blocks: 0..2,
                    want_logits: true,
                },
                SeqMeta {
                    token_start: 3,
                    num_tokens: 1,
                    blocks: 2..4,
                    want_logits: true,
                },
            ],
            block_tables: vec![9, 2, 7, 1],
            block_size: 4,
        }
    }

    #[test]
    fn a_mixed_step_is_staged_for_the_prefill_kernel() {
        let mut h = Staging::default();
        let s = stage(&mut h, &mixed(), &limits(), 100, 10, None).unwrap();
        assert!(!s.decode);
        assert_eq!(
            (s.num_tokens, s.num_seqs, s.num_rows, s.max_q_len),
            (4, 2, 2, 3)
        );
        assert_eq!(h.ids, [11, 12, 13, 14]);
        assert_eq!(h.slots, [8, 9, 10, 5]);
        assert_eq!(h.seq_lens, [7, 6]);
        assert_eq!(h.cu_seqlens_q, [0, 3, 4]);
        assert_eq!(h.rows, [2, 3]);
        // Stride 2: the longest context (7 tokens) needs 2 blocks of 4.
        assert_eq!(s.table_stride, 2);
        assert_eq!(h.block_tables, [9, 2, 7, 1]);
        assert!(h.temperatures.is_empty());
    }

    #[test]
    fn a_decode_step_is_padded_for_its_graph() {
        let mut b = mixed();
        b.seqs[0].num_tokens = 1;
        b.seqs[1].token_start = 1;
        b.token_ids = vec![11, 14];
        b.positions = vec![6, 5];
        b.slot_mapping = vec![10, 5];
        b.token_seq = vec![0, 1];
        let pick = DevicePick {
            greedy: false,
            temperature: 0.7,
            top_k: 5,
            top_p: 0.9,
            min_p: 0.0,
            uniform: 0.5,
            logprobs: Some(40),
        };
        let mut h = Staging::default();
        let s = stage(&mut h, &b, &limits(), 100, 10, Some(&[Some(pick), None])).unwrap();
        assert!(s.decode && s.num_rows == 2 && s.max_partitions == 1);
        // The host-sampled row runs greedy on the device; logprobs are capped at 20.
        assert_eq!(h.temperatures, [0.7, 0.0]);
        assert_eq!(h.num_top, [MAX_TOP_LOGPROBS as i32, 0]);
        fill_tables(&mut h, &b, 3);
        assert_eq!(h.block_tables, [9, 2, 0, 7, 1, 0]);
        let p = pad(&mut h, s, (4, 1), 3);
        assert_eq!(
            (p.num_tokens, p.num_seqs, p.num_rows, p.table_stride),
            (4, 4, 4, 3)
        );
        assert_eq!(h.ids, [11, 14, 0, 0]);
        assert_eq!(h.slots, [10, 5, -1, -1]);
        assert_eq!(h.seq_lens, [7, 6, 0, 0]);
        assert_eq!(h.block_tables.len(), 12);
        assert_eq!(h.cu_seqlens_q, [0, 1, 2, 3, 4]);
        assert_eq!(h.temperatures, [0.7, 0.0, 0.0, 0.0]);
        assert_eq!(h.num_top, [20, 0, 0, 0]);
    }

    #[test]
    fn bad_batches_are_refused_naming_the_problem() {
        let mut h = Staging::default();
        let err = |b: &StepBatch, l: &Limits| {
            stage(&mut Staging::default(), b, l, 100, 10, None)
                .unwrap_err()
                .to_string()
        };
        let mut b = mixed();
        b.token_ids[1] = 100;
        assert!(err(&b, &limits()).contains("token id 100"));
        let mut b = mixed();
        b.slot_mapping[0] = 40;
        assert!(err(&b, &limits()).contains("KV slot 40"));
        let l = Limits {
            max_num_batched_tokens: 3,
            ..limits()
        };
        assert!(err(&mixed(), &l).contains("exceeds the limits"));
        let mut b = mixed();
        b.seqs[1].token_start = 2;
        assert!(err(&b, &limits()).contains("back to back"));
        let mut b = mixed();
        b.seqs[0].blocks = 0..1;
        b.seqs[1].blocks = 1..4;
        b.block_tables = vec![9, 7, 1, 3];
        assert!(err(&b, &limits()).contains("block table of 1 blocks"));
        assert!(stage(&mut h, &mixed(), &limits(), 100, 10, None).is_ok());
    }
}
