//! The scheduler (vLLM v1's `Scheduler`): continuous batching over a token budget.
//!
//! One step is one forward pass over at most `max_num_batched_tokens` tokens and
//! `max_num_seqs` sequences. Running requests are scheduled first, in admission order,
//! each with all its uncomputed tokens or what is left of the budget (so a long prompt is
//! prefilled in chunks, and prefill chunks share steps with decodes); then waiting requests
//! are admitted while budget, sequence slots and KV blocks last, starting after their
//! longest cached prefix. When a running request cannot get blocks, the newest running
//! request is preempted: its blocks are freed and it goes back to the front of the waiting
//! queue, keeping its tokens, to be recomputed (mostly from the prefix cache) later.
//!
//! The scheduler knows token ids, counts and block tables only; per-request engine state
//! rides along as the payload `P`. Public operations: `add`, `schedule`, `advance`,
//! `finish`, `request`/`request_mut`, and counts.

use std::collections::VecDeque;

use crate::kv_cache::{CachedPrefix, KvCacheManager};

/// A request as the scheduler tracks it.
pub struct Request<P> {
    pub id: u64,
    /// Prompt followed by the tokens generated so far.
    pub tokens: Vec<u32>,
    pub num_prompt_tokens: usize,
    /// Tokens whose K/V are in the cache.
    pub num_computed_tokens: usize,
    /// Prompt tokens served from the prefix cache when first scheduled.
    pub num_cached_tokens: Option<usize>,
    pub payload: P,
}

impl<P> Request<P> {
    pub fn new(id: u64, prompt: Vec<u32>, payload: P) -> Self {
        Request {
            id,
            num_prompt_tokens: prompt.len(),
            tokens: prompt,
            num_computed_tokens: 0,
            num_cached_tokens: None,
            payload,
        }
    }

    pub fn num_output_tokens(&self) -> usize {
        self.tokens.len() - self.num_prompt_tokens
    }
}

/// One scheduled sequence: `num_new_tokens` tokens of the running request at `index`,
/// starting at its `num_computed_tokens`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scheduled {
    pub index: usize,
    pub num_new_tokens: usize,
}

/// What one `schedule` call decided.
#[derive(Debug, Default)]
pub struct SchedulerOutput {
    pub scheduled: Vec<Scheduled>,
    /// Ids preempted during this call.
    pub preempted: Vec<u64>,
}

impl SchedulerOutput {
    pub fn num_tokens(&self) -> usize {
        self.scheduled.iter().map(|s| s.num_new_tokens).sum()
    }
}

pub struct Scheduler<P> {
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
    pub kv: KvCacheManager,
    waiting: VecDeque<Request<P>>,
    running: Vec<Request<P>>,
}

impl<P> Scheduler<P> {
    pub fn new(max_num_seqs: usize, max_num_batched_tokens: usize, kv: KvCacheManager) -> Self {
        Scheduler {
            max_num_seqs: max_num_seqs.max(1),
            max_num_batched_tokens: max_num_batched_tokens.max(1),
            kv,
            waiting: VecDeque::new(),
            running: Vec::new(),
        }
    }

    pub fn add(&mut self, req: Request<P>) {
        self.waiting.push_back(req);
    }

    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
    }

    /// The running request at `index` (as in `Scheduled::index`).
    pub fn running(&self, index: usize) -> &Request<P> {
        &self.running[index]
    }

    pub fn running_mut(&mut self, index: usize) -> &mut Request<P> {
        &mut self.running[index]
    }

    /// Mutable references to the running requests at `indices` (distinct), in that
    /// order; `None` if an index repeats or is out of range.
    pub fn running_many_mut(&mut self, indices: &[usize]) -> Option<Vec<&mut Request<P>>> {
        let mut slots: Vec<Option<&mut Request<P>>> = self.running.iter_mut().map(Some).collect();
        indices
            .iter()
            .map(|&i| slots.get_mut(i).and_then(Option::take))
            .collect()
    }

    /// Ids of every request, running then waiting.
    pub fn ids(&self) -> Vec<u64> {
        let r = self.running.iter().map(|r| r.id);
        r.chain(self.waiting.iter().map(|r| r.id)).collect()
    }

    /// Decides the next step. Requests preempted here are back in the waiting queue.
    pub fn schedule(&mut self) -> SchedulerOutput {
        let mut out = SchedulerOutput::default();
        let mut budget = self.max_num_batched_tokens;
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let r = &self.running[i];
            let num_new = (r.tokens.len() - r.num_computed_tokens).min(budget);
            if num_new == 0 {
                i += 1;
                continue;
            }
            let total = r.num_computed_tokens + num_new;
            let id = r.id;
            let mut scheduled = true;
            while self
                .kv
                .allocate(id, total, &CachedPrefix::default())
                .is_none()
            {
                // Preempt the newest running request; it may be this one.
                let Some(victim) = self.running.pop() else {
                    scheduled = false;
                    break;
                };
                out.preempted.push(victim.id);
                self.preempt(victim);
                if self.running.len() == i {
                    scheduled = false;
                    break;
                }
            }
            if !scheduled {
                break;
            }
            budget -= num_new;
            out.scheduled.push(Scheduled {
                index: i,
                num_new_tokens: num_new,
            });
            i += 1;
        }
        // Admit waiting requests only in a step that preempted nothing.
        while out.preempted.is_empty()
            && budget > 0
            && self.running.len() < self.max_num_seqs
            && !self.waiting.is_empty()
        {
            let Some(r) = self.waiting.front() else { break };
            let prefix = self.kv.find_prefix(&r.tokens);
            let num_new = (r.tokens.len() - prefix.num_tokens).min(budget);
            if self
                .kv
                .allocate(r.id, prefix.num_tokens + num_new, &prefix)
                .is_none()
            {
                break;
            }
            let Some(mut r) = self.waiting.pop_front() else {
                break;
            };
            r.num_computed_tokens = prefix.num_tokens;
            if r.num_cached_tokens.is_none() {
                r.num_cached_tokens = Some(prefix.num_tokens.min(r.num_prompt_tokens));
            }
            budget -= num_new;
            out.scheduled.push(Scheduled {
                index: self.running.len(),
                num_new_tokens: num_new,
            });
            self.running.push(r);
        }
        out
    }

    fn preempt(&mut self, mut r: Request<P>) {
        self.kv.free(r.id);
        r.num_computed_tokens = 0;
        self.waiting.push_front(r);
    }

    /// Records that the step ran: each scheduled request's tokens are computed, and the
    /// blocks they filled join the prefix cache.
    pub fn advance(&mut self, out: &SchedulerOutput) {
        for s in &out.scheduled {
            let r = &mut self.running[s.index];
            r.num_computed_tokens += s.num_new_tokens;
            self.kv.commit(r.id, &r.tokens, r.num_computed_tokens);
        }
    }

    /// Takes every request out without touching their blocks and starts over with the
    /// fresh `kv` (after a failure left the block tables in an unknown state).
    pub fn drain(&mut self, kv: KvCacheManager) -> Vec<Request<P>> {
        self.kv = kv;
        let mut all: Vec<Request<P>> = self.running.drain(..).collect();
        all.extend(self.waiting.drain(..));
        all
    }

    /// Removes request `id` (running or waiting) and frees its blocks.
    pub fn finish(&mut self, id: u64) -> Option<Request<P>> {
        self.kv.free(id);
        if let Some(pos) = self.running.iter().position(|r| r.id == id) {
            return Some(self.running.remove(pos));
        }
        let pos = self.waiting.iter().position(|r| r.id == id)?;
        self.waiting.remove(pos)
    }
}

#[cfg(test)]
mod tests;
