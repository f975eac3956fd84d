//! Parity of the sampling kernels with src/sampling: `argmax` (ties, NaN, -0.0),
//! `softmax_temperature` (f64 reference), `logprobs_topn` (`logprobs::compute`) and
//! `sample` (`Sampler::sample` with the same seeded uniform). Logits are made distinct
//! where a tie would let the CPU's unspecified order decide (`distinct_logits`).

use rill::backend::cuda::ops;
use rill::sampling::rng::Rng as CpuRng;
use rill::sampling::{self, logprobs, Sampler, SamplingParams};

use super::util::{dev, down, gpu, rows, up, Ctx, Out, Rng, Tol, EXACT};

/// Qwen's vocabulary (151936) and small ones.
const VOCABS: [usize; 3] = [1, 1000, 151_936];

/// `n` distinct logits: a shuffled ladder `0, -step, -2 step, ..` (the step far above
/// f32 resolution over the whole range), so no two items tie.
fn distinct_logits(rng: &mut Rng, n: usize, step: f64) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n).map(|i| (-step * i as f64) as f32).collect();
    rng.shuffle(&mut v);
    v
}

/// `rows` rows of `vocab` logits, `stride` apart (the gap filled with huge values a
/// kernel must not read as logits).
fn logit_rows(rows_: &[Vec<f32>], stride: usize) -> Vec<f32> {
    let vocab = rows_[0].len();
    let mut all = vec![1e30f32; rows_.len() * stride];
    for (r, row) in rows_.iter().enumerate() {
        all[r * stride..r * stride + vocab].copy_from_slice(row);
    }
    all
}

pub fn argmax() -> Result<(), String> {
    let g = gpu()?;
    let mut rng = Rng::new(30);
    for vocab in VOCABS {
        let mut rows_: Vec<Vec<f32>> = (0..5).map(|_| rng.f32s(vocab, -20.0, 20.0)).collect();
        if vocab > 3 {
            // A tie for the maximum: the lower id wins on both backends.
            let (a, b) = (vocab / 3, 2 * vocab / 3);
            rows_[1][a] = 50.0;
            rows_[1][b] = 50.0;
            // NaN (not at index 0, where the CPU would keep it) counts as -inf; -inf entries.
            rows_[2][0] = f32::NEG_INFINITY;
            rows_[2][vocab - 1] = f32::NAN;
            rows_[2][vocab / 2] = f32::NAN;
            // All zeros with -0.0 first: index 0.
            rows_[3].iter_mut().for_each(|x| *x = 0.0);
            rows_[3][0] = -0.0;
        }
        let stride = vocab + 3;
        let logits = up(&logit_rows(&rows_, stride))?;
        let out = Out::<i32>::poisoned(rows_.len() + 2)?;
        let what = format!("argmax vocab {vocab}");
        ops::argmax(g, out.dev(), dev(&logits), stride, vocab, rows_.len()).ctx(&what)?;
        let want: Vec<f64> = rows_.iter().map(|r| sampling::argmax(r) as f64).collect();
        out.check(&what, &rows(0, 1, 0, rows_.len()), &want, EXACT)?;
    }
    Ok(())
}

/// The reference takes the kernel's f32 exponent `(l - max) * (1 / T)` (the same IEEE
/// operations) and exponentiates it in f64: what is left is expf's error (<= 2 ulp), the
/// f64 sum's order and the f32 store (2e-6 relative); f32 subnormal probabilities (below
/// ~1e-38) may flush differently (atol 1e-30).
const PROBS: Tol = Tol {
    rtol: 2e-6,
    atol: 1e-30,
    norm: 2e-6,
};

pub fn softmax_temperature() -> Result<(), String> {
    let g = gpu()?;
    let mut rng = Rng::new(31);
    let temps = [0.7f32, 1.0, 1.5, 0.0, 0.3];
    for vocab in VOCABS {
        let rows_: Vec<Vec<f32>> = (0..temps.len())
            .map(|_| rng.f32s(vocab, -15.0, 15.0))
            .collect();
        let logits = up(&logit_rows(&rows_, vocab))?;
        let t = up(&temps)?;
        let out = Out::<f32>::poisoned(temps.len() * vocab + 1)?;
        let what = format!("softmax_temperature vocab {vocab}");
        ops::softmax_temperature(
            g,
            out.dev(),
            dev(&logits),
            vocab,
            dev(&t),
            vocab,
            temps.len(),
        )
        .ctx(&what)?;
        let mut want = Vec::new();
        for (row, &temp) in rows_.iter().zip(&temps) {
            if temp <= 0.0 {
                let id = sampling::argmax(row) as usize;
                want.extend((0..vocab).map(|i| (i == id) as u8 as f64));
                continue;
            }
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let inv_t = 1.0f32 / temp;
            let e: Vec<f64> = row
                .iter()
                .map(|&l| (((l - max) * inv_t) as f64).exp())
                .collect();
            let sum: f64 = e.iter().sum();
            want.extend(e.iter().map(|x| x / sum));
        }
        out.check(&what, &rows(0, 1, 0, temps.len() * vocab), &want, PROBS)?;
    }
    Ok(())
}

/// f32 results of `logit - lse` with lse in f64 on both sides (summed in different
/// orders): equal to an ulp.
const LOGPROB: Tol = Tol {
    rtol: 1e-6,
    atol: 1e-6,
    norm: 1e-6,
};

pub fn logprobs_topn() -> Result<(), String> {
    let g = gpu()?;
    let mut rng = Rng::new(32);
    let max_top = 8;
    for vocab in VOCABS {
        // (num_top, chosen): 0, 1, 5 and more than max_top alternatives; chosen ids in and
        // out of range.
        let asks: [(i32, i32); 5] = [
            (0, 0),
            (1, (vocab / 2) as i32),
            (5, (vocab - 1) as i32),
            (20, -1),
            (8, vocab as i32),
        ];
        let mut rows_: Vec<Vec<f32>> = (0..asks.len())
            .map(|_| rng.f32s(vocab, -10.0, 10.0))
            .collect();
        if vocab > 10 {
            // Ties rank the lower id first on both backends.
            for j in [3, 7, 9] {
                rows_[2][j] = 30.0;
            }
        }
        let stride = vocab + 1;
        let logits = up(&logit_rows(&rows_, stride))?;
        let chosen = up(&asks.iter().map(|a| a.1).collect::<Vec<_>>())?;
        let num_top = up(&asks.iter().map(|a| a.0).collect::<Vec<_>>())?;
        let lp = Out::<f32>::poisoned(asks.len())?;
        let ids = Out::<i32>::poisoned(asks.len() * max_top)?;
        let tops = Out::<f32>::poisoned(asks.len() * max_top)?;
        let what = format!("logprobs_topn vocab {vocab}");
        ops::logprobs_topn(
            g,
            lp.dev(),
            ids.dev(),
            tops.dev(),
            dev(&logits),
            stride,
            dev(&chosen),
            dev(&num_top),
            max_top,
            vocab,
            asks.len(),
        )
        .ctx(&what)?;
        let (mut want_lp, mut want_ids, mut want_tops) = (Vec::new(), Vec::new(), Vec::new());
        for (row, &(n, c)) in rows_.iter().zip(&asks) {
            let n = (n.max(0) as usize).min(max_top);
            // An id the CPU cannot take (negative) is out of range there too.
            let r = logprobs::compute(
                row,
                u32::try_from(c).unwrap_or(u32::MAX),
                n,
                &mut Vec::new(),
            );
            want_lp.push(r.logprob as f64);
            for j in 0..max_top {
                let (id, l) = r
                    .top
                    .get(j)
                    .map_or((-1.0, f64::NEG_INFINITY), |&(id, l)| (id as f64, l as f64));
                want_ids.push(id);
                want_tops.push(l);
            }
        }
        let all = |n| rows(0, 1, 0, n);
        lp.check(
            &format!("{what} (chosen logprob)"),
            &all(asks.len()),
            &want_lp,
            LOGPROB,
        )?;
        ids.check(
            &format!("{what} (top ids)"),
            &all(asks.len() * max_top),
            &want_ids,
            EXACT,
        )?;
        tops.check(
            &format!("{what} (top logprobs)"),
            &all(asks.len() * max_top),
            &want_tops,
            LOGPROB,
        )?;
    }
    Ok(())
}

/// One row's settings: temperature, top_k, top_p, min_p.
type Params = (f32, usize, f32, f32);

pub fn sample() -> Result<(), String> {
    let mut rng = Rng::new(33);
    // Greedy two ways, plain temperature, each filter alone and together, top_p = 0 (keeps
    // the top token). These peaked rows take the small-set path (top-k <= 1024, top-p
    // within the 1024 best), vocab 1000 with every item a candidate.
    let settings: [Params; 10] = [
        (0.0, 0, 1.0, 0.0),
        (1.0, 1, 1.0, 0.0),
        (1.0, 0, 1.0, 0.0),
        (0.7, 0, 0.9, 0.0),
        (1.3, 50, 0.95, 0.0),
        (1.0, 0, 1.0, 0.1),
        (0.8, 40, 0.9, 0.05),
        (1.0, 20, 1.0, 0.0),
        (0.5, 0, 0.5, 0.2),
        (1.0, 0, 0.0, 0.0),
    ];
    for vocab in [1000usize, 151_936] {
        for seed in 0..6u64 {
            // Peaked distributions (logits 0.05 apart by rank): a few dozen tokens carry
            // the mass, each near a top-p or draw boundary holding ~1% of it, so the sums'
            // f64 rounding orders (and expf's ulps) cannot move a cutoff or the draw
            // unless a uniform lands within ~1e-6 of a boundary (odds ~1e-4 per row). A
            // flat distribution over 150k tokens would make such flips likely.
            let rows_: Vec<Vec<f32>> = settings
                .iter()
                .map(|_| distinct_logits(&mut rng, vocab, 0.05))
                .collect();
            sample_case(&rows_, &settings, seed * 1000 + vocab as u64)?;
        }
    }
    // The full-vocabulary path: flat rows (logits 1e-4 apart: top_p 0.9 keeps ~23,000
    // tokens, past the 1024-item small set) and top-k over 1024. With f64 sums on both
    // sides only the summation order differs (~1e-16 relative, against ~1e-5 of mass per
    // token at a boundary), so the tokens must still agree.
    let flat: [Params; 4] = [
        (1.0, 0, 0.9, 0.0),
        (1.0, 2000, 1.0, 0.0),
        (0.8, 2000, 0.95, 0.05),
        (1.2, 0, 0.5, 0.0),
    ];
    for seed in 0..3u64 {
        let rows_: Vec<Vec<f32>> = flat
            .iter()
            .map(|_| distinct_logits(&mut rng, 151_936, 1e-4))
            .collect();
        sample_case(&rows_, &flat, 7_000 + seed)?;
    }
    // Two exactly tied top tokens at top_p 0.5: the cutoff lies within rounding of the
    // first token's mass (the tail's ~1e-14 decides whether one or both are kept), so the
    // total must be the same bits on both sides (`exact_total`; a tree-order sum against
    // the CPU's rank-order sum kept 2 tokens against 1). A different kept set shows as a
    // different token for about half the uniforms.
    for vocab in [1000usize, 151_936] {
        let tied: Vec<f32> = (0..vocab)
            .map(|i| if i < 2 { 0.0 } else { -39.0 })
            .collect();
        let rows_ = vec![tied; 8];
        let settings = [(1.0f32, 0usize, 0.5f32, 0.0f32); 8];
        sample_case(&rows_, &settings, 9_000 + vocab as u64)?;
    }
    Ok(())
}

fn sample_case(rows_: &[Vec<f32>], settings: &[Params], seed: u64) -> Result<(), String> {
    let g = gpu()?;
    let vocab = rows_[0].len();
    let n = rows_.len();
    let seeds: Vec<u64> = (0..n as u64).map(|r| seed * 31 + r).collect();
    // The uniform the CPU sampler draws first with that seed.
    let uniforms: Vec<f64> = seeds.iter().map(|&s| CpuRng::new(s).next_f64()).collect();
    let logits = up(&logit_rows(rows_, vocab))?;
    let temps = up(&settings.iter().map(|s| s.0).collect::<Vec<_>>())?;
    let top_k = up(&settings.iter().map(|s| s.1 as i32).collect::<Vec<_>>())?;
    let top_p = up(&settings.iter().map(|s| s.2).collect::<Vec<_>>())?;
    let min_p = up(&settings.iter().map(|s| s.3).collect::<Vec<_>>())?;
    let u = up(&uniforms)?;
    let out = Out::<i32>::poisoned(n)?;
    let what = format!("sample vocab {vocab} seed {seed}");
    ops::sample(
        g,
        out.dev(),
        dev(&logits),
        vocab,
        dev(&temps),
        dev(&top_k),
        dev(&top_p),
        dev(&min_p),
        dev(&u),
        vocab,
        n,
    )
    .ctx(&what)?;
    let got = down(&out.buf)?;
    for (r, (row, &(temperature, top_k, top_p, min_p))) in rows_.iter().zip(settings).enumerate() {
        let params = SamplingParams {
            temperature,
            top_k,
            top_p,
            min_p,
            seed: Some(seeds[r]),
            ..Default::default()
        };
        let cpu = Sampler::new(params, &[], 0).sample(row).token as i32;
        let gpu_id = got[r];
        if gpu_id != cpu {
            return Err(format!(
                "{what} row {r} (T, top_k, top_p, min_p) {:?} u {}: GPU token {gpu_id}, CPU token {cpu}",
                settings[r], uniforms[r]
            ));
        }
    }
    Ok(())
}
