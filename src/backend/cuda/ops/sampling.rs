//! The wrappers of sampling.cu: one block of [`SAMPLING_THREADS`] per row of f32 logits
//! (`row_stride` apart, `vocab` each): [`argmax`], [`softmax_temperature`],
//! [`logprobs_topn`] and [`sample`].

use super::dev::Dev;
use super::launch::{Arg, Check, Launch, Launcher};
use crate::error::Result;

/// Threads of every sampling block (sampling.cu takes any multiple of 32 up to 1024).
pub const SAMPLING_THREADS: usize = 1024;

/// The shared checks: `rows` rows of `vocab` logits (vocab >= 1), `rows` blocks; returns
/// (logits pointer, row_stride, vocab, rows) arguments.
fn rows_args(
    c: Check,
    logits: Dev<f32>,
    row_stride: usize,
    vocab: usize,
    rows: usize,
) -> Result<[Arg; 4]> {
    c.require(vocab > 0, || "vocab is 0".into())?;
    Ok([
        c.strided("logits", logits, rows, row_stride, vocab)?,
        c.long("row_stride", row_stride)?,
        c.int("vocab", vocab)?,
        c.int("rows", rows)?,
    ])
}

fn launch(kernel: &'static str, rows: usize, args: Vec<Arg>) -> Result<Vec<Launch>> {
    Ok(vec![Launch::new(
        kernel,
        (rows, 1, 1),
        SAMPLING_THREADS,
        args,
    )?])
}

/// `out_ids[r]` = the first index of row r's largest logit (NaN counts as -inf).
pub fn argmax(
    gpu: &dyn Launcher,
    out_ids: Dev<i32>,
    logits: Dev<f32>,
    row_stride: usize,
    vocab: usize,
    rows: usize,
) -> Result<()> {
    gpu.launch(&plan_argmax(out_ids, logits, row_stride, vocab, rows)?)
}

pub(super) fn plan_argmax(
    out_ids: Dev<i32>,
    logits: Dev<f32>,
    row_stride: usize,
    vocab: usize,
    rows: usize,
) -> Result<Vec<Launch>> {
    const K: &str = "argmax_kernel";
    if rows == 0 {
        return Ok(vec![]);
    }
    let c = Check(K);
    let [l, stride, v, r] = rows_args(c, logits, row_stride, vocab, rows)?;
    launch(
        K,
        rows,
        vec![c.buf("out_ids", out_ids, rows)?, l, stride, v, r],
    )
}

/// `probs[r, :]` (contiguous `[rows, vocab]`) = softmax(logits / T_r); T <= 0 gives the
/// one-hot of the argmax.
pub fn softmax_temperature(
    gpu: &dyn Launcher,
    probs: Dev<f32>,
    logits: Dev<f32>,
    row_stride: usize,
    temperatures: Dev<f32>,
    vocab: usize,
    rows: usize,
) -> Result<()> {
    let plan = plan_softmax_temperature(probs, logits, row_stride, temperatures, vocab, rows)?;
    gpu.launch(&plan)
}

pub(super) fn plan_softmax_temperature(
    probs: Dev<f32>,
    logits: Dev<f32>,
    row_stride: usize,
    temperatures: Dev<f32>,
    vocab: usize,
    rows: usize,
) -> Result<Vec<Launch>> {
    const K: &str = "softmax_temperature_kernel";
    if rows == 0 {
        return Ok(vec![]);
    }
    let c = Check(K);
    let [l, stride, v, r] = rows_args(c, logits, row_stride, vocab, rows)?;
    let n = c.product("probs", &[rows, vocab])?;
    let span = c.rows("logits", rows, row_stride, vocab)?;
    c.disjoint(("probs", probs, n), ("logits", logits, span))?;
    let args = vec![
        c.buf("probs", probs, n)?,
        l,
        stride,
        c.buf("temperatures", temperatures, rows)?,
        v,
        r,
    ];
    launch(K, rows, args)
}

/// The chosen token's logprob and the `min(num_top[r], max_top, vocab)` best
/// (id, logprob) of each row (`top_ids`/`top_logprobs` `[rows, max_top]`; unused slots
/// get -1 / -inf), from the raw logits.
#[allow(clippy::too_many_arguments)]
pub fn logprobs_topn(
    gpu: &dyn Launcher,
    out_logprob: Dev<f32>,
    top_ids: Dev<i32>,
    top_logprobs: Dev<f32>,
    logits: Dev<f32>,
    row_stride: usize,
    chosen: Dev<i32>,
    num_top: Dev<i32>,
    max_top: usize,
    vocab: usize,
    rows: usize,
) -> Result<()> {
    let plan = plan_logprobs_topn(
        (out_logprob, top_ids, top_logprobs),
        (logits, row_stride),
        (chosen, num_top),
        max_top,
        vocab,
        rows,
    )?;
    gpu.launch(&plan)
}

pub(super) fn plan_logprobs_topn(
    (out_logprob, top_ids, top_logprobs): (Dev<f32>, Dev<i32>, Dev<f32>),
    (logits, row_stride): (Dev<f32>, usize),
    (chosen, num_top): (Dev<i32>, Dev<i32>),
    max_top: usize,
    vocab: usize,
    rows: usize,
) -> Result<Vec<Launch>> {
    const K: &str = "logprobs_topn_kernel";
    if rows == 0 {
        return Ok(vec![]);
    }
    let c = Check(K);
    let [l, stride, v, r] = rows_args(c, logits, row_stride, vocab, rows)?;
    let top = c.product("top_ids", &[rows, max_top])?;
    let span = c.rows("logits", rows, row_stride, vocab)?;
    c.disjoint(("out_logprob", out_logprob, rows), ("logits", logits, span))?;
    c.disjoint(("top_ids", top_ids, top), ("logits", logits, span))?;
    c.disjoint(
        ("top_logprobs", top_logprobs, top),
        ("logits", logits, span),
    )?;
    let args = vec![
        c.buf("out_logprob", out_logprob, rows)?,
        c.buf("top_ids", top_ids, top)?,
        c.buf("top_logprobs", top_logprobs, top)?,
        l,
        stride,
        c.buf("chosen", chosen, rows)?,
        c.buf("num_top", num_top, rows)?,
        c.int("max_top", max_top)?,
        v,
        r,
    ];
    launch(K, rows, args)
}

/// Draws one token per row: temperature, top-k (0 = off), top-p (1 = off), min-p (0 =
/// off), then the first token whose running mass exceeds `uniforms[r]` of the kept mass
/// (`Sampler::pick`'s filters and draw; sampling.cu).
#[allow(clippy::too_many_arguments)]
pub fn sample(
    gpu: &dyn Launcher,
    out_ids: Dev<i32>,
    logits: Dev<f32>,
    row_stride: usize,
    temperatures: Dev<f32>,
    top_k: Dev<i32>,
    top_p: Dev<f32>,
    min_p: Dev<f32>,
    uniforms: Dev<f64>,
    vocab: usize,
    rows: usize,
) -> Result<()> {
    let plan = plan_sample(
        out_ids,
        (logits, row_stride),
        (temperatures, top_k, top_p, min_p),
        uniforms,
        vocab,
        rows,
    )?;
    gpu.launch(&plan)
}

pub(super) fn plan_sample(
    out_ids: Dev<i32>,
    (logits, row_stride): (Dev<f32>, usize),
    (temperatures, top_k, top_p, min_p): (Dev<f32>, Dev<i32>, Dev<f32>, Dev<f32>),
    uniforms: Dev<f64>,
    vocab: usize,
    rows: usize,
) -> Result<Vec<Launch>> {
    const K: &str = "sample_kernel";
    if rows == 0 {
        return Ok(vec![]);
    }
    let c = Check(K);
    let [l, stride, v, r] = rows_args(c, logits, row_stride, vocab, rows)?;
    let args = vec![
        c.buf("out_ids", out_ids, rows)?,
        l,
        stride,
        c.buf("temperatures", temperatures, rows)?,
        c.buf("top_k", top_k, rows)?,
        c.buf("top_p", top_p, rows)?,
        c.buf("min_p", min_p, rows)?,
        c.buf("uniforms", uniforms, rows)?,
        v,
        r,
    ];
    launch(K, rows, args)
}

#[cfg(test)]
mod tests {
    use super::super::launch::tests::{assert_signature, fake};
    use super::*;

    #[test]
    fn plans_follow_the_kernel_signatures() {
        let logits = fake::<f32>(0x10_0000, 3 * 1000);
        let f = |p| fake::<f32>(p, 3 * 8);
        let i = |p| fake::<i32>(p, 3 * 8);
        let plans = [
            plan_argmax(i(0x100), logits, 1000, 999, 3).unwrap(),
            plan_softmax_temperature(fake(0x90_0000, 3 * 999), logits, 1000, f(0x200), 999, 3)
                .unwrap(),
            plan_logprobs_topn(
                (f(0x300), i(0x400), f(0x500)),
                (logits, 1000),
                (i(0x600), i(0x700)),
                8,
                999,
                3,
            )
            .unwrap(),
            plan_sample(
                i(0x100),
                (logits, 1000),
                (f(0x200), i(0x300), f(0x400), f(0x500)),
                fake(0x600, 3),
                1000,
                3,
            )
            .unwrap(),
        ];
        for p in &plans {
            assert_signature(p);
            assert_eq!((p[0].grid, p[0].block), ((3, 1, 1), 1024));
        }
    }

    #[test]
    fn refusals_and_empty_batches() {
        let logits = fake::<f32>(0x10_0000, 2 * 1000);
        let ids = fake::<i32>(0x100, 2);
        let err = |r: Result<Vec<Launch>>| r.unwrap_err().to_string();
        assert!(plan_argmax(ids, logits, 1000, 1000, 0).unwrap().is_empty());
        let m = err(plan_argmax(ids, logits, 1000, 1000, 3));
        assert!(
            m.contains(
                "argmax_kernel: argument `logits` holds 2000 elements, the launch touches 3000"
            ),
            "{m}"
        );
        let m = err(plan_argmax(ids, logits, 1000, 0, 2));
        assert!(m.contains("argmax_kernel: vocab is 0"), "{m}");
        let m = err(plan_argmax(ids, logits, 500, 1000, 2));
        assert!(
            m.contains("row stride 500 is less than the row width 1000"),
            "{m}"
        );
        let m = err(plan_softmax_temperature(
            logits,
            logits,
            1000,
            fake(0x200, 2),
            1000,
            2,
        ));
        assert!(m.contains("probs and logits overlap"), "{m}");
        let m = err(plan_logprobs_topn(
            (fake(0x300, 2), fake(0x400, 15), fake(0x500, 16)),
            (logits, 1000),
            (ids, ids),
            8,
            1000,
            2,
        ));
        assert!(
            m.contains("`top_ids` holds 15 elements, the launch touches 16"),
            "{m}"
        );
        let m = err(plan_sample(
            ids,
            (logits, 1000),
            (fake(0x200, 2), ids, fake(0x400, 2), fake(0x500, 2)),
            fake(0x600, 1),
            1000,
            2,
        ));
        assert!(
            m.contains("sample_kernel: argument `uniforms` holds 1"),
            "{m}"
        );
    }
}
