//! Scheduler tests: budgets, chunking, admission, preemption and resumption, removal,
//! and block accounting, driven by a fake model whose next token is a hash of the tokens
//! whose K/V were "computed" (so a resumed request must have recomputed exactly its
//! context to continue the same way).

use super::*;

/// Simulated KV contents: per request, the tokens computed so far, checked against the
/// request's tokens on every step.
fn fake_next(tokens: &[u32]) -> u32 {
    let h = crate::kv_cache::hash::block_hash(None, tokens);
    (h % 1000) as u32
}

struct Run {
    generated: Vec<(u64, Vec<u32>)>,
    steps: usize,
    preemptions: usize,
    max_step_tokens: usize,
}

/// Runs requests (id, prompt length, output length) to completion.
fn run(
    reqs: &[(u64, usize, usize)],
    num_blocks: usize,
    block_size: usize,
    max_seqs: usize,
    budget: usize,
) -> Run {
    let kv = KvCacheManager::new(num_blocks, block_size, true);
    let mut s: Scheduler<usize> = Scheduler::new(max_seqs, budget, kv);
    for &(id, plen, olen) in reqs {
        let prompt = (0..plen as u32).map(|t| t * 31 + id as u32 % 3).collect();
        s.add(Request::new(id, prompt, olen));
    }
    let mut r = Run {
        generated: Vec::new(),
        steps: 0,
        preemptions: 0,
        max_step_tokens: 0,
    };
    while !s.is_idle() {
        let out = s.schedule();
        assert!(
            !out.scheduled.is_empty(),
            "a step with work must schedule something"
        );
        assert!(out.scheduled.len() <= max_seqs);
        r.max_step_tokens = r.max_step_tokens.max(out.num_tokens());
        r.preemptions += out.preempted.len();
        for sc in &out.scheduled {
            let q = s.running(sc.index);
            let need = q.num_computed_tokens + sc.num_new_tokens;
            assert!(need <= q.tokens.len());
            assert!(
                s.kv.block_table(q.id).len() * block_size >= need,
                "blocks cover the step"
            );
        }
        s.advance(&out);
        let mut done = Vec::new();
        for sc in &out.scheduled {
            let q = s.running_mut(sc.index);
            if q.num_computed_tokens == q.tokens.len() {
                let next = fake_next(&q.tokens);
                q.tokens.push(next);
                if q.num_output_tokens() == q.payload {
                    done.push(q.id);
                }
            }
        }
        for id in done {
            let q = s.finish(id).unwrap();
            r.generated
                .push((id, q.tokens[q.num_prompt_tokens..].to_vec()));
        }
        r.steps += 1;
        assert!(r.steps < 10_000, "no progress");
    }
    assert_eq!(s.kv.num_free_blocks(), num_blocks, "every block returned");
    assert_eq!(s.kv.num_requests(), 0);
    r.generated.sort();
    r
}

#[test]
fn budget_chunks_long_prompts_and_mixes_decodes() {
    let r = run(&[(1, 100, 4), (2, 10, 20)], 64, 4, 8, 32);
    assert!(r.max_step_tokens <= 32);
    // 110 prompt tokens at 32 per step need at least 4 steps before both decode.
    assert!(r.steps >= 4 + 19);
    assert_eq!(r.generated.len(), 2);
    assert_eq!(r.preemptions, 0);
}

#[test]
fn max_num_seqs_limits_a_step() {
    let reqs: Vec<_> = (1..=10).map(|i| (i, 5, 3)).collect();
    let r = run(&reqs, 64, 4, 3, 512);
    assert_eq!(r.generated.len(), 10);
}

#[test]
fn preemption_under_block_pressure_gives_identical_outputs() {
    let reqs: Vec<_> = (1..=6).map(|i| (i, 10 + i as usize * 3, 24)).collect();
    let roomy = run(&reqs, 256, 4, 8, 64);
    assert_eq!(roomy.preemptions, 0);
    // 14 blocks of 4 tokens: the longest request needs 11; several must be preempted.
    let tight = run(&reqs, 14, 4, 8, 64);
    assert!(tight.preemptions > 0, "the tight pool must preempt");
    assert_eq!(roomy.generated, tight.generated);
}

#[test]
fn newest_request_is_preempted_first() {
    let kv = KvCacheManager::new(6, 4, false);
    let mut s: Scheduler<()> = Scheduler::new(8, 64, kv);
    s.add(Request::new(1, vec![1; 8], ()));
    s.add(Request::new(2, vec![2; 8], ()));
    s.add(Request::new(3, vec![3; 7], ()));
    let out = s.schedule();
    assert_eq!(out.scheduled.len(), 3, "2 + 2 + 2 blocks fit in 6");
    s.advance(&out);
    // Request 1 grows past its blocks: request 3 (newest) makes room.
    for i in 0..3 {
        s.running_mut(i).tokens.push(9);
    }
    let out = s.schedule();
    assert_eq!(out.preempted, vec![3]);
    assert_eq!(s.num_waiting(), 1);
    assert_eq!(s.ids(), vec![1, 2, 3]);
}

#[test]
fn finish_between_chunks_frees_everything() {
    let kv = KvCacheManager::new(300, 16, true);
    let mut s: Scheduler<()> = Scheduler::new(4, 512, kv);
    s.add(Request::new(7, (0..4000).collect(), ()));
    let out = s.schedule();
    assert_eq!(out.num_tokens(), 512);
    s.advance(&out);
    assert_eq!(s.running(0).num_computed_tokens, 512);
    // A cancel arrives between steps: the next step sees nothing of it.
    assert!(s.finish(7).is_some());
    assert!(s.is_idle());
    assert!(s.schedule().scheduled.is_empty());
    assert_eq!(s.kv.num_free_blocks(), 300);
    assert!(s.finish(7).is_none());
}

#[test]
fn shared_prefix_is_reported_as_cached() {
    let kv = KvCacheManager::new(64, 4, true);
    let mut s: Scheduler<()> = Scheduler::new(4, 512, kv);
    let prefix: Vec<u32> = (100..120).collect();
    let mut a = prefix.clone();
    a.extend([1, 2, 3]);
    let mut b = prefix.clone();
    b.extend([4, 5]);
    s.add(Request::new(1, a, ()));
    let out = s.schedule();
    s.advance(&out);
    assert_eq!(s.running(0).num_cached_tokens, Some(0));
    s.add(Request::new(2, b, ()));
    let out = s.schedule();
    // Request 1 decodes nothing yet (no token appended), request 2 starts at 20.
    assert_eq!(out.scheduled.len(), 1);
    assert_eq!(s.running(1).num_cached_tokens, Some(20));
    assert_eq!(out.scheduled[0].num_new_tokens, 2);
}

#[test]
fn running_many_mut_keeps_the_order_and_refuses_repeats() {
    let kv = KvCacheManager::new(16, 4, true);
    let mut s: Scheduler<usize> = Scheduler::new(4, 64, kv);
    for id in 0..3 {
        s.add(Request::new(id, vec![1, 2, 3], id as usize));
    }
    let out = s.schedule();
    assert_eq!(out.scheduled.len(), 3);
    let ids: Vec<u64> = s
        .running_many_mut(&[2, 0])
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, [s.running(2).id, s.running(0).id]);
    for r in s.running_many_mut(&[1]).unwrap() {
        r.payload = 7;
    }
    assert_eq!(s.running(1).payload, 7);
    assert!(s.running_many_mut(&[1, 1]).is_none());
    assert!(s.running_many_mut(&[3]).is_none());
}
