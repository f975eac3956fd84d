//! Per-token log probabilities as vLLM returns them by default (`logprobs_mode` =
//! `raw_logprobs`): the log-softmax of the RAW model logits, before penalties and
//! temperature. [`compute`] gives the chosen token's logprob and the `n` most likely
//! tokens, sorted by logprob descending, ties by lower token id. It runs in O(vocab): one
//! pass for the normalizer and a partial selection (`select_nth_unstable_by`) for the top
//! `n`, sorting only those `n`.

use std::cmp::Ordering;

/// The logprobs of one sampled token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    /// The chosen token's logprob.
    pub logprob: f32,
    /// The most likely tokens (id, logprob), best first; as many as requested.
    pub top: Vec<(u32, f32)>,
}

/// Rank order: higher logit first, then lower id.
fn rank(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// `log(sum(exp(logits)))`, computed stably in f64.
pub fn log_normalizer(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max as f64;
    }
    let m = max as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - m).exp()).sum();
    m + sum.ln()
}

/// The logprobs of `chosen` and the top `n` tokens of `logits`. `scratch` is reused
/// between calls to avoid an allocation per token.
pub fn compute(
    logits: &[f32],
    chosen: u32,
    n: usize,
    scratch: &mut Vec<(u32, f32)>,
) -> TokenLogprobs {
    let lse = log_normalizer(logits);
    let lp = |l: f32| (l as f64 - lse) as f32;
    let logprob = logits
        .get(chosen as usize)
        .map_or(f32::NEG_INFINITY, |&l| lp(l));
    let n = n.min(logits.len());
    let mut top = Vec::with_capacity(n);
    if n > 0 {
        scratch.clear();
        scratch.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        if n < scratch.len() {
            scratch.select_nth_unstable_by(n - 1, rank);
            scratch.truncate(n);
        }
        scratch.sort_unstable_by(rank);
        top.extend(scratch.iter().map(|&(id, l)| (id, lp(l))));
    }
    TokenLogprobs { logprob, top }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::rng::Rng;

    fn random_logits(n: usize, seed: u64) -> Vec<f32> {
        let mut r = Rng::new(seed);
        (0..n)
            .map(|_| (r.next_f64() * 20.0 - 10.0) as f32)
            .collect()
    }

    #[test]
    fn probabilities_over_the_vocab_sum_to_one() {
        let logits = random_logits(1000, 7);
        let all = compute(&logits, 3, logits.len(), &mut Vec::new());
        assert_eq!(all.top.len(), 1000);
        let total: f64 = all.top.iter().map(|&(_, l)| (l as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        // Every id appears once.
        let mut ids: Vec<u32> = all.top.iter().map(|t| t.0).collect();
        ids.sort_unstable();
        assert!(ids.iter().enumerate().all(|(i, &id)| id == i as u32));
    }

    #[test]
    fn the_top_list_is_sorted_and_matches_a_full_sort() {
        let logits = random_logits(5000, 11);
        let mut scratch = Vec::new();
        let full = compute(&logits, 0, logits.len(), &mut scratch);
        assert!(full.top.windows(2).all(|w| w[0].1 >= w[1].1));
        for n in [0, 1, 5, 20] {
            let part = compute(&logits, 0, n, &mut scratch);
            assert_eq!(part.top, full.top[..n].to_vec(), "n = {n}");
        }
    }

    #[test]
    fn the_chosen_logprob_is_its_log_softmax() {
        let logits = [1.0f32, 2.0, 3.0, f32::NEG_INFINITY];
        let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        let r = compute(&logits, 1, 2, &mut Vec::new());
        assert!((r.logprob as f64 - (2.0 - z.ln())).abs() < 1e-6);
        assert_eq!(r.top[0].0, 2);
        assert_eq!(r.top[1], (1, r.logprob));
        let r = compute(&logits, 3, 0, &mut Vec::new());
        assert_eq!(r.logprob, f32::NEG_INFINITY);
        assert!(r.top.is_empty());
    }

    #[test]
    fn ties_rank_the_lower_id_first() {
        let logits = [0.5f32, 2.0, 1.0, 2.0, 2.0];
        let r = compute(&logits, 0, 3, &mut Vec::new());
        let ids: Vec<u32> = r.top.iter().map(|t| t.0).collect();
        assert_eq!(ids, [1, 3, 4]);
        let r = compute(&logits, 0, 2, &mut Vec::new());
        let ids: Vec<u32> = r.top.iter().map(|t| t.0).collect();
        assert_eq!(ids, [1, 3]);
    }
}
