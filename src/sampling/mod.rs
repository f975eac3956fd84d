//! Token sampling from logits: greedy (temperature 0), temperature, top-k, top-p, min-p,
//! with a per-request seeded generator, following vLLM's order (temperature, then the
//! top-k / top-p / min-p filters, then a draw from the renormalized distribution).

pub mod rng;

use rng::Rng;

/// Sampling settings of one request.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_p: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 0 disables.
    pub min_p: f32,
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: None,
        }
    }
}

/// A request's sampler: its settings and its random stream.
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    probs: Vec<(u32, f32)>,
}

impl Sampler {
    /// `fallback_seed` is used when the request gave none.
    pub fn new(params: SamplingParams, fallback_seed: u64) -> Self {
        let rng = Rng::new(params.seed.unwrap_or(fallback_seed));
        Sampler {
            params,
            rng,
            probs: Vec::new(),
        }
    }

    /// Picks the next token from `logits`.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let p = &self.params;
        if p.temperature <= 0.0 || p.top_k == 1 {
            return argmax(logits);
        }
        let inv_t = 1.0 / p.temperature;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        self.probs.clear();
        self.probs.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as u32, ((l - max) * inv_t).exp())),
        );
        let probs = &mut self.probs;
        if p.top_k > 0 && p.top_k < probs.len() {
            probs.select_nth_unstable_by(p.top_k - 1, |a, b| b.1.total_cmp(&a.1));
            probs.truncate(p.top_k);
        }
        if p.top_p < 1.0 {
            probs.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let total: f32 = probs.iter().map(|x| x.1).sum();
            let mut cum = 0.0;
            let mut keep = probs.len();
            for (i, x) in probs.iter().enumerate() {
                cum += x.1 / total;
                if cum >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep.max(1));
        }
        if p.min_p > 0.0 {
            // The largest unnormalized prob is exp(0) = 1 when it survived the filters.
            let top = probs.iter().map(|x| x.1).fold(0.0, f32::max);
            probs.retain(|x| x.1 >= p.min_p * top);
        }
        let total: f64 = probs.iter().map(|x| x.1 as f64).sum();
        let mut u = self.rng.next_f64() * total;
        for &(id, pr) in probs.iter() {
            u -= pr as f64;
            if u < 0.0 {
                return id;
            }
        }
        probs.last().map(|x| x.0).unwrap_or_else(|| argmax(logits))
    }
}

/// Index of the largest logit (the first on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_p: f32, top_k: usize, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature,
            top_p,
            top_k,
            min_p: 0.0,
            seed: Some(seed),
        }
    }

    #[test]
    fn greedy_takes_the_first_max() {
        let mut s = Sampler::new(params(0.0, 1.0, 0, 1), 0);
        assert_eq!(s.sample(&[0.1, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn seeded_sampling_repeats_and_follows_the_distribution() {
        let logits = [0.0f32, (3f32).ln(), f32::NEG_INFINITY];
        let draw = |seed| {
            let mut s = Sampler::new(params(1.0, 1.0, 0, seed), 0);
            (0..4000).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        let a = draw(5);
        assert_eq!(a, draw(5));
        let ones = a.iter().filter(|&&t| t == 1).count() as f64 / a.len() as f64;
        assert!((ones - 0.75).abs() < 0.03, "{ones}");
        assert!(!a.contains(&2));
    }

    #[test]
    fn top_k_and_top_p_cut_the_tail() {
        let logits = [5.0f32, 4.0, 0.0, -1.0];
        let mut s = Sampler::new(params(1.0, 1.0, 2, 3), 0);
        assert!((0..500).all(|_| s.sample(&logits) < 2));
        let mut s = Sampler::new(params(1.0, 0.5, 0, 3), 0);
        assert!((0..500).all(|_| s.sample(&logits) == 0));
        let mut s = Sampler::new(
            SamplingParams {
                min_p: 0.5,
                ..params(1.0, 1.0, 0, 3)
            },
            0,
        );
        assert!((0..500).all(|_| s.sample(&logits) == 0));
    }
}
