//! Token sampling from logits, following vLLM's sampler (`vllm/v1/sample/sampler.py`):
//! logprobs of the raw logits first ([`logprobs`]), then the penalties ([`penalties`]),
//! then greedy (temperature 0) or temperature, the top-k / top-p / min-p filters and a
//! draw from the renormalized distribution with a per-request seeded generator ([`rng`]).
//! Stop strings are matched on the detokenized text, not here ([`stop`]).
//!
//! Public operations: [`Sampler::new`] (per request, with its prompt for the repetition
//! penalty), [`Sampler::sample`] (one token and, when asked, its logprobs), [`argmax`].

pub mod logprobs;
pub mod penalties;
pub mod rng;
pub mod stop;

pub use logprobs::TokenLogprobs;
use penalties::Penalties;
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
    /// > 0; 1 disables. On tokens of the prompt or the output.
    pub repetition_penalty: f32,
    /// -2..2; 0 disables. Times the token's count in the output.
    pub frequency_penalty: f32,
    /// -2..2; 0 disables. Once if the token is in the output.
    pub presence_penalty: f32,
    /// `Some(n)`: return each token's logprob and the `n` most likely alternatives.
    pub logprobs: Option<usize>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: None,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            logprobs: None,
        }
    }
}

impl SamplingParams {
    /// Whether the pick is the argmax (temperature 0, or top-k 1).
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == 1
    }
}

/// One sampled token.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub token: u32,
    /// Present when the request asked for logprobs.
    pub logprobs: Option<TokenLogprobs>,
}

/// A request's sampling settings for one step on a device backend ([`Sampler::device_pick`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DevicePick {
    /// Argmax (temperature 0 or top-k 1): the other fields are not used.
    pub greedy: bool,
    pub temperature: f32,
    /// 0 disables.
    pub top_k: usize,
    pub top_p: f32,
    /// 0 disables.
    pub min_p: f32,
    /// The uniform in [0, 1) of this draw (0 when greedy).
    pub uniform: f64,
    /// `Some(n)`: the token's logprob and the top `n`.
    pub logprobs: Option<usize>,
}

/// A request's sampler: its settings, its random stream and its penalty statistics.
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    penalties: Penalties,
    probs: Vec<(u32, f32)>,
    /// The penalized copy of the logits (only used when a penalty is on).
    work: Vec<f32>,
}

impl Sampler {
    /// A sampler for a request with `prompt`; `fallback_seed` is used when the request
    /// gave no seed.
    pub fn new(params: SamplingParams, prompt: &[u32], fallback_seed: u64) -> Self {
        let rng = Rng::new(params.seed.unwrap_or(fallback_seed));
        let penalties = Penalties::new(
            params.repetition_penalty,
            params.frequency_penalty,
            params.presence_penalty,
            prompt,
        );
        Sampler {
            params,
            rng,
            penalties,
            probs: Vec::new(),
            work: Vec::new(),
        }
    }

    /// Picks the next token from the model's raw `logits` (left unchanged) and records it
    /// for the penalties of later steps.
    pub fn sample(&mut self, logits: &[f32]) -> Sampled {
        let token = if self.penalties.is_active() {
            let mut work = std::mem::take(&mut self.work);
            work.clear();
            work.extend_from_slice(logits);
            self.penalties.apply(&mut work);
            let t = self.pick(&work);
            self.work = work;
            t
        } else {
            self.pick(logits)
        };
        self.penalties.record(token);
        let logprobs = self
            .params
            .logprobs
            .map(|n| logprobs::compute(logits, token, n, &mut self.probs));
        Sampled { token, logprobs }
    }

    /// What a device backend needs to sample this request's next token itself, or `None`
    /// when the request must be sampled on the host with [`Sampler::sample`] (a penalty
    /// is on: those need the request's token counts). Draws the uniform the host path
    /// would draw (only for a non-greedy pick), so a seeded request gives the same
    /// random stream on either backend; the caller must then call
    /// [`Sampler::record_device`] with the token the device chose.
    pub fn device_pick(&mut self) -> Option<DevicePick> {
        if self.penalties.is_active() {
            return None;
        }
        let p = &self.params;
        let greedy = p.is_greedy();
        Some(DevicePick {
            greedy,
            temperature: if greedy { 0.0 } else { p.temperature },
            top_k: p.top_k,
            top_p: p.top_p,
            min_p: p.min_p,
            uniform: if greedy { 0.0 } else { self.rng.next_f64() },
            logprobs: p.logprobs,
        })
    }

    /// Records the token a device backend sampled after [`Sampler::device_pick`], with its
    /// logprobs (computed on the device when the request asked for them).
    pub fn record_device(&mut self, token: u32, logprobs: Option<TokenLogprobs>) -> Sampled {
        self.penalties.record(token);
        Sampled { token, logprobs }
    }

    /// Greedy or a seeded draw from the filtered distribution of `logits`.
    fn pick(&mut self, logits: &[f32]) -> u32 {
        let p = &self.params;
        if p.is_greedy() {
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
        // Rank order: e descending, ties to the lower id (a total order, so the kept sets
        // are exact prefixes of it, as the CUDA sampler computes them).
        let rank = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if p.top_k > 0 && p.top_k < probs.len() {
            probs.select_nth_unstable_by(p.top_k - 1, rank);
            probs.truncate(p.top_k);
            // The survivors in id order: the order the draw walks without top-p.
            probs.sort_unstable_by_key(|x| x.0);
        }
        if p.top_p < 1.0 {
            probs.sort_unstable_by(rank);
            // f64 sums (f32 ones drift by ~1e-4 over a 150k vocabulary); the total in an
            // order-independent form, so the CUDA sampler's tree sum gets the same bits.
            let total = exact_total(probs.iter().map(|x| x.1));
            let target = p.top_p as f64 * total;
            let mut cum = 0.0f64;
            let mut keep = probs.len();
            for (i, x) in probs.iter().enumerate() {
                cum += x.1 as f64;
                if cum >= target {
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

/// The sum of non-negative f32 values, independent of their order: per exponent the exact
/// integer sum of the 24-bit significands, then the 256 buckets in ascending exponent
/// order in f64 (each term exact: a bucket holds at most 2^41 for 2^17 values). The CUDA
/// sampler (`exact_total` in kernels/sampling.cu) computes the same bits with atomics.
pub fn exact_total(values: impl Iterator<Item = f32>) -> f64 {
    let mut buckets = [0u64; 256];
    for v in values {
        if !(v.is_finite() && v > 0.0) {
            continue; // zeros add nothing; NaN, infinities and negatives are no mass
        }
        let b = v.to_bits();
        let ex = (b >> 23) as usize;
        let man = (b & 0x7f_ffff) | if ex != 0 { 0x80_0000 } else { 0 };
        buckets[ex] = buckets[ex].wrapping_add(man as u64);
    }
    buckets
        .iter()
        .enumerate()
        .filter(|(_, &s)| s != 0)
        // 2^(ex - 150) built from its bits: exact (ex - 150 >= -149 > -1023).
        .map(|(ex, &s)| s as f64 * f64::from_bits(((ex.max(1) as u64) + 1023 - 150) << 52))
        .fold(0.0, |acc, t| acc + t)
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

    #[test]
    fn exact_total_is_order_independent_and_close_to_the_sum() {
        let mut rng = Rng::new(7);
        let mut v: Vec<f32> = (0..150_000)
            .map(|_| (-(rng.next_f64() * 30.0)).exp() as f32)
            .collect();
        v.extend([0.0, -0.0, f32::NAN, f32::INFINITY, -1.0, 1e-45, 3e-39]);
        let a = exact_total(v.iter().copied());
        v.reverse();
        let b = exact_total(v.iter().copied());
        v.sort_by(|x, y| y.total_cmp(x));
        let c = exact_total(v.iter().copied());
        assert_eq!((a.to_bits(), a.to_bits()), (b.to_bits(), c.to_bits()));
        let naive: f64 = v
            .iter()
            .filter(|x| x.is_finite() && **x > 0.0)
            .map(|&x| x as f64)
            .sum();
        assert!((a - naive).abs() <= 1e-12 * naive, "{a} vs {naive}");
        assert_eq!(exact_total([1.0f32, 1.0].into_iter()), 2.0);
        assert_eq!(exact_total([1e-45f32].into_iter()), 1e-45f32 as f64);
        assert_eq!(exact_total(std::iter::empty()), 0.0);
    }

    fn params(temperature: f32, top_p: f32, top_k: usize, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature,
            top_p,
            top_k,
            seed: Some(seed),
            ..Default::default()
        }
    }

    fn sampler(p: SamplingParams) -> Sampler {
        Sampler::new(p, &[], 0)
    }

    fn tokens(s: &mut Sampler, logits: &[f32], n: usize) -> Vec<u32> {
        (0..n).map(|_| s.sample(logits).token).collect()
    }

    #[test]
    fn device_pick_draws_the_hosts_uniform_and_refuses_penalties() {
        let mut dev = sampler(params(0.8, 0.9, 40, 7));
        let mut host = sampler(params(0.8, 0.9, 40, 7));
        for _ in 0..3 {
            let p = dev.device_pick().expect("no penalties");
            assert!(!p.greedy && p.top_k == 40 && p.top_p == 0.9);
            assert_eq!(p.uniform, host.rng.next_f64());
        }
        let mut greedy = sampler(params(0.0, 1.0, 0, 7));
        let p = greedy.device_pick().unwrap();
        assert!(p.greedy && p.uniform == 0.0);
        // Greedy draws nothing: the stream is where a fresh one starts.
        assert_eq!(
            greedy.rng.next_f64(),
            sampler(params(0.0, 1.0, 0, 7)).rng.next_f64()
        );
        let mut pen = Sampler::new(
            SamplingParams {
                repetition_penalty: 1.3,
                ..Default::default()
            },
            &[1, 2],
            0,
        );
        assert!(pen.device_pick().is_none());
        assert_eq!(pen.record_device(5, None).token, 5);
    }

    #[test]
    fn greedy_takes_the_first_max() {
        let mut s = sampler(params(0.0, 1.0, 0, 1));
        let r = s.sample(&[0.1, 3.0, 3.0, -1.0]);
        assert_eq!(
            r,
            Sampled {
                token: 1,
                logprobs: None
            }
        );
    }

    #[test]
    fn seeded_sampling_repeats_and_follows_the_distribution() {
        let logits = [0.0f32, (3f32).ln(), f32::NEG_INFINITY];
        let draw = |seed| tokens(&mut sampler(params(1.0, 1.0, 0, seed)), &logits, 4000);
        let a = draw(5);
        assert_eq!(a, draw(5));
        let ones = a.iter().filter(|&&t| t == 1).count() as f64 / a.len() as f64;
        assert!((ones - 0.75).abs() < 0.03, "{ones}");
        assert!(!a.contains(&2));
    }

    #[test]
    fn top_k_and_top_p_cut_the_tail() {
        let logits = [5.0f32, 4.0, 0.0, -1.0];
        let mut s = sampler(params(1.0, 1.0, 2, 3));
        assert!(tokens(&mut s, &logits, 500).iter().all(|&t| t < 2));
        let mut s = sampler(params(1.0, 0.5, 0, 3));
        assert!(tokens(&mut s, &logits, 500).iter().all(|&t| t == 0));
        let mut s = sampler(SamplingParams {
            min_p: 0.5,
            ..params(1.0, 1.0, 0, 3)
        });
        assert!(tokens(&mut s, &logits, 500).iter().all(|&t| t == 0));
    }

    #[test]
    fn greedy_applies_penalties_to_what_it_sampled() {
        // Without penalties greedy repeats token 0 forever.
        let logits = [2.0f32, 1.5, 1.0];
        let mut s = sampler(params(0.0, 1.0, 0, 1));
        assert_eq!(tokens(&mut s, &logits, 3), [0, 0, 0]);
        // frequency 0.4: 0 (2.0), 0 (1.6 > 1.5), then 1 (0 is at 1.2).
        let mut s = sampler(SamplingParams {
            frequency_penalty: 0.4,
            ..params(0.0, 1.0, 0, 1)
        });
        assert_eq!(tokens(&mut s, &logits, 3), [0, 0, 1]);
        // presence 0.6 moves to 1 after one 0, then back to 0 once both were used.
        let mut s = sampler(SamplingParams {
            presence_penalty: 0.6,
            ..params(0.0, 1.0, 0, 1)
        });
        assert_eq!(tokens(&mut s, &logits, 3), [0, 1, 0]);
        // repetition 2 on the prompt's token 0: 1.0 < 1.5 from the first step.
        let mut s = Sampler::new(
            SamplingParams {
                repetition_penalty: 2.0,
                ..params(0.0, 1.0, 0, 1)
            },
            &[0],
            0,
        );
        assert_eq!(s.sample(&logits).token, 1);
    }

    #[test]
    fn logprobs_come_from_the_raw_logits() {
        let logits = [2.0f32, 1.5, 1.0, -3.0];
        let mut s = sampler(SamplingParams {
            logprobs: Some(2),
            presence_penalty: 2.0,
            temperature: 0.0,
            ..Default::default()
        });
        let first = s.sample(&logits);
        let second = s.sample(&logits);
        assert_eq!((first.token, second.token), (0, 1));
        let (a, b) = (first.logprobs.unwrap(), second.logprobs.unwrap());
        // The penalty moved the pick, not the reported distribution.
        assert_eq!(a.top, b.top);
        assert_eq!(a.top.iter().map(|t| t.0).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(a.logprob, a.top[0].1);
        assert_eq!(b.logprob, b.top[1].1);
        let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        assert!((b.logprob as f64 - (1.5 - z.ln())).abs() < 1e-6);
    }
}
