//! The model runner's input builder (vLLM's `GPUModelRunner._prepare_inputs`): turns the
//! scheduler's decision into the flat [`StepBatch`] a backend executes — token ids,
//! positions, the slot mapping for K/V writes and each sequence's block table.

use crate::model::{SeqMeta, StepBatch};
use crate::scheduler::{Scheduler, SchedulerOutput};

/// Builds the batch for `out`, which `sched.schedule()` just returned.
pub fn build<P>(sched: &Scheduler<P>, out: &SchedulerOutput) -> StepBatch {
    let bs = sched.kv.block_size();
    let n = out.num_tokens();
    let mut b = StepBatch {
        token_ids: Vec::with_capacity(n),
        positions: Vec::with_capacity(n),
        slot_mapping: Vec::with_capacity(n),
        token_seq: Vec::with_capacity(n),
        seqs: Vec::with_capacity(out.scheduled.len()),
        block_tables: Vec::new(),
        block_size: bs,
    };
    for s in &out.scheduled {
        let r = sched.running(s.index);
        let start = r.num_computed_tokens;
        let end = start + s.num_new_tokens;
        let table = sched.kv.block_table(r.id);
        let seq = b.seqs.len();
        let first = b.block_tables.len();
        b.block_tables.extend_from_slice(table);
        b.seqs.push(SeqMeta {
            token_start: b.token_ids.len(),
            num_tokens: s.num_new_tokens,
            blocks: first..b.block_tables.len(),
            want_logits: end == r.tokens.len(),
        });
        for pos in start..end {
            b.token_ids.push(r.tokens[pos]);
            b.positions.push(pos);
            b.slot_mapping
                .push(table[pos / bs] as usize * bs + pos % bs);
            b.token_seq.push(seq);
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_cache::KvCacheManager;
    use crate::scheduler::Request;

    #[test]
    fn slots_follow_block_tables() {
        let kv = KvCacheManager::new(8, 4, true);
        let mut s: Scheduler<()> = Scheduler::new(4, 6, kv);
        s.add(Request::new(1, vec![5; 6], ()));
        s.add(Request::new(2, vec![6; 3], ()));
        let out = s.schedule();
        let b = build(&s, &out);
        // Request 1 takes the whole budget of 6 tokens.
        assert_eq!(b.token_ids.len(), 6);
        assert_eq!(b.seqs.len(), 1);
        let t = s.kv.block_table(1).to_vec();
        assert_eq!(b.slot_mapping[5], t[1] as usize * 4 + 1);
        assert!(b.seqs[0].want_logits);
        s.advance(&out);
        let out = s.schedule();
        let b = build(&s, &out);
        assert_eq!(b.positions, vec![0, 1, 2]);
        assert_eq!(b.block_table(0), s.kv.block_table(2));
        assert!(b.token_seq.iter().all(|&q| q == 0));
    }
}
