//! The wrappers of the kernels that work token by token (one block per row): embedding,
//! RMSNorm (plain and fused with the residual add), RoPE, SiLU-and-mul, the bias add and
//! `reshape_and_cache`. Each `plan_*` checks the arguments against the kernel file's
//! documented layout and returns the launch; the public function runs it.

use half::{bf16, f16};

use super::dev::Dev;
use super::launch::{row_grid, Arg, Check, Launch, Launcher};
use crate::backend::cpu::ops::Rope;
use crate::error::Result;

/// Threads of the row kernels that stride over a row with any block size.
pub const ROW_THREADS: usize = 256;
/// Threads of `rope_kernel`.
pub const ROPE_THREADS: usize = 128;
/// The largest head RoPE handles (`ROPE_MAX_HALF` pairs in rope.cu).
pub const ROPE_MAX_HEAD_DIM: usize = 256;

/// Threads of an RMSNorm block over rows of `dim`: one per element up to 1024, a multiple
/// of 32 (rmsnorm.cu takes any multiple of 32 up to 1024).
pub fn norm_threads(dim: usize) -> usize {
    dim.div_ceil(32).clamp(1, 32) * 32
}

/// `out[t, :] = table[ids[t], :]` (embedding.cu; an id outside `[0, vocab)` gives zeros).
pub fn embedding(
    gpu: &dyn Launcher,
    out: Dev<bf16>,
    ids: Dev<i32>,
    table: Dev<bf16>,
    num_tokens: usize,
    vocab: usize,
    dim: usize,
) -> Result<()> {
    gpu.launch(&plan_embedding(out, ids, table, num_tokens, vocab, dim)?)
}

pub(super) fn plan_embedding(
    out: Dev<bf16>,
    ids: Dev<i32>,
    table: Dev<bf16>,
    num_tokens: usize,
    vocab: usize,
    dim: usize,
) -> Result<Vec<Launch>> {
    const K: &str = "embedding_kernel";
    if num_tokens == 0 || dim == 0 {
        return Ok(vec![]);
    }
    let c = Check(K);
    // The runner also uses it as a row gather (table = activations): out must be apart.
    let (n_out, n_table) = (
        c.product("out", &[num_tokens, dim])?,
        c.product("table", &[vocab, dim])?,
    );
    c.disjoint(("out", out, n_out), ("table", table, n_table))?;
    let args = vec![
        c.buf("out", out, c.product("out", &[num_tokens, dim])?)?,
        c.buf("ids", ids, num_tokens)?,
        c.buf("table", table, c.product("table", &[vocab, dim])?)?,
        c.int("num_tokens", num_tokens)?,
        c.int("vocab", vocab)?,
        c.int("dim", dim)?,
    ];
    Ok(vec![Launch::new(K, (num_tokens, 1, 1), ROW_THREADS, args)?])
}

/// RMSNorm of `num_tokens * num_heads` rows of `dim` (rmsnorm.cu's `rms_norm_kernel`:
/// row (t, h) at `x + t * x_stride + h * dim`, written at `out + t * out_stride + h * dim`;
/// `out` may be `x` itself with the same stride).
#[allow(clippy::too_many_arguments)]
pub fn rms_norm(
    gpu: &dyn Launcher,
    out: Dev<bf16>,
    out_stride: usize,
    x: Dev<bf16>,
    x_stride: usize,
    weight: Dev<bf16>,
    eps: f32,
    num_tokens: usize,
    num_heads: usize,
    dim: usize,
) -> Result<()> {
    let plan = plan_rms_norm(
        out, out_stride, x, x_stride, weight, eps, num_tokens, num_heads, dim,
    )?;
    gpu.launch(&plan)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn plan_rms_norm(
    out: Dev<bf16>,
    out_stride: usize,
    x: Dev<bf16>,
    x_stride: usize,
    weight: Dev<bf16>,
    eps: f32,
    num_tokens: usize,
    num_heads: usize,
    dim: usize,
) -> Result<Vec<Launch>> {
    const K: &str = "rms_norm_kernel";
    if num_tokens == 0 || num_heads == 0 || dim == 0 {
        return Ok(vec![]);
    }
    let c = Check(K);
    // The kernel computes `num_tokens * num_heads` as an int.
    let rows = c.product("the rows", &[num_tokens, num_heads])?;
    c.fit_int("num_tokens * num_heads", rows)?;
    let width = c.product("a token's heads", &[num_heads, dim])?;
    c.same_or_disjoint(
        ("out", out, out_stride),
        ("x", x, x_stride),
        (num_tokens, width),
    )?;
    let args = vec![
        c.strided("out", out, num_tokens, out_stride, width)?,
        c.long("out_stride", out_stride)?,
        c.strided("x", x, num_tokens, x_stride, width)?,
        c.long("x_stride", x_stride)?,
        c.buf("weight", weight, dim)?,
        Arg::Float(eps),
        c.int("num_tokens", num_tokens)?,
        c.int("num_heads", num_heads)?,
        c.int("dim", dim)?,
    ];
    Ok(vec![Launch::new(K, (rows, 1, 1), norm_threads(dim), args)?])
}

/// `residual += x; out = rmsnorm(residual) * weight`, all `[num_tokens, dim]` contiguous
/// (`out` may be `x`, never `residual`).
#[allow(clippy::too_many_arguments)]
pub fn fused_add_rms_norm(
    gpu: &dyn Launcher,
    out: Dev<bf16>,
    residual: Dev<bf16>,
    x: Dev<bf16>,
    weight: Dev<bf16>,
    eps: f32,
    num_tokens: usize,
    dim: usize,
) -> Result<()> {
    let plan = plan_fused_add_rms_norm(out, residual, x, weight, eps, num_tokens, dim)?;
    gpu.launch(&plan)
}

pub(super) fn plan_fused_add_rms_norm(
    out: Dev<bf16>,
    residual: Dev<bf16>,
    x: Dev<bf16>,
    weight: Dev<bf16>,
    eps: f32,
    num_tokens: usize,
    dim: usize,
) -> Result<Vec<Launch>> {
    const K: &str = "fused_add_rms_norm_kernel";
    if num_tokens == 0 || dim == 0 {
        return Ok(vec![]);
    }
    let c = Check(K);
    let n = c.product("a [num_tokens, dim] buffer", &[num_tokens, dim])?;
    c.disjoint(("out", out, n), ("residual", residual, n))?;
    c.same_or_disjoint(("out", out, dim), ("x", x, dim), (num_tokens, dim))?;
    let args = vec![
        c.buf("out", out, n)?,
        c.buf("residual", residual, n)?,
        c.buf("x", x, n)?,
        c.buf("weight", weight, dim)?,
        Arg::Float(eps),
        c.int("num_tokens", num_tokens)?,
        c.int("dim", dim)?,
    ];
    Ok(vec![Launch::new(
        K,
        (num_tokens, 1, 1),
        norm_threads(dim),
        args,
    )?])
}

/// RoPE in place on the q and k heads of every token (rope.cu). `freq_factors` is the
/// device copy of `rope.freq_factors` (both present or both absent); the angle step is
/// computed here exactly as `Rope::apply` computes it.
#[allow(clippy::too_many_arguments)]
pub fn rope(
    gpu: &dyn Launcher,
    q: Dev<bf16>,
    q_stride: usize,
    k: Dev<bf16>,
    k_stride: usize,
    positions: Dev<i32>,
    freq_factors: Option<Dev<f32>>,
    num_tokens: usize,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    rope: &Rope,
) -> Result<()> {
    let plan = plan_rope(
        q,
        q_stride,
        k,
        k_stride,
        positions,
        freq_factors,
        (num_tokens, num_heads, num_kv_heads, head_dim),
        rope,
    )?;
    gpu.launch(&plan)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn plan_rope(
    q: Dev<bf16>,
    q_stride: usize,
    k: Dev<bf16>,
    k_stride: usize,
    positions: Dev<i32>,
    freq_factors: Option<Dev<f32>>,
    (num_tokens, num_heads, num_kv_heads, head_dim): (usize, usize, usize, usize),
    rope: &Rope,
) -> Result<Vec<Launch>> {
    const K: &str = "rope_kernel";
    if num_tokens == 0 {
        return Ok(vec![]);
    }
    let c = Check(K);
    let n_rot = rope.n_rot;
    c.require(head_dim <= ROPE_MAX_HEAD_DIM, || {
        format!("head_dim {head_dim} is over {ROPE_MAX_HEAD_DIM}")
    })?;
    c.require(n_rot.is_multiple_of(2) && n_rot <= head_dim, || {
        format!("n_rot {n_rot} must be even and at most head_dim {head_dim}")
    })?;
    let ff = freq_factors_arg(c, freq_factors, rope)?;
    let q_width = c.product("a token's q heads", &[num_heads, head_dim])?;
    let k_width = c.product("a token's k heads", &[num_kv_heads, head_dim])?;
    c.fit_int("(num_heads + num_kv_heads) * n_rot / 2", q_width + k_width)?;
    let theta_scale = rope.freq_base.powf(-2.0 / n_rot as f32);
    let args = vec![
        c.strided("q", q, num_tokens, q_stride, q_width)?,
        c.long("q_stride", q_stride)?,
        c.strided("k", k, num_tokens, k_stride, k_width)?,
        c.long("k_stride", k_stride)?,
        c.buf("positions", positions, num_tokens)?,
        ff,
        c.int("num_tokens", num_tokens)?,
        c.int("num_heads", num_heads)?,
        c.int("num_kv_heads", num_kv_heads)?,
        c.int("head_dim", head_dim)?,
        c.int("n_rot", n_rot)?,
        Arg::Float(theta_scale),
        Arg::Float(rope.freq_scale),
        Arg::Int(rope.neox as i32),
    ];
    Ok(vec![Launch::new(
        K,
        (num_tokens, 1, 1),
        ROPE_THREADS,
        args,
    )?])
}

/// The `freq_factors` argument of a RoPE kernel: the device copy of `rope.freq_factors`
/// (`n_rot / 2` values), or null when the model has none; one without the other is refused.
pub(super) fn freq_factors_arg(
    c: Check,
    freq_factors: Option<Dev<f32>>,
    rope: &Rope,
) -> Result<Arg> {
    match (freq_factors, &rope.freq_factors) {
        (Some(d), Some(_)) => c.buf("freq_factors", d, rope.n_rot / 2),
        (None, None) => Ok(Arg::Ptr(0)),
        (d, _) => Err(c.error(format!(
            "freq_factors {} on the device but {} in the model's Rope",
            if d.is_some() { "given" } else { "missing" },
            if rope.freq_factors.is_some() {
                "present"
            } else {
                "absent"
            },
        ))),
    }
}

/// `out[t, i] = silu(input[t, i]) * input[t, d + i]` (activation.cu; `input` is
/// `[num_tokens, 2 * d]` `[gate | up]`, `out` `[num_tokens, d]`, not overlapping).
pub fn silu_and_mul(
    gpu: &dyn Launcher,
    out: Dev<bf16>,
    input: Dev<bf16>,
    num_tokens: usize,
    d: usize,
) -> Result<()> {
    gpu.launch(&plan_silu_and_mul(out, input, num_tokens, d)?)
}

pub(super) fn plan_silu_and_mul(
    out: Dev<bf16>,
    input: Dev<bf16>,
    num_tokens: usize,
    d: usize,
) -> Result<Vec<Launch>> {
    const K: &str = "silu_and_mul_kernel";
    if num_tokens == 0 || d == 0 {
        return Ok(vec![]);
    }
    let c = Check(K);
    let n_out = c.product("out", &[num_tokens, d])?;
    let n_in = c.product("input", &[num_tokens, 2, d])?;
    // The kernel walks a row with `int` indices up to d + blockDim.x * gridDim.y.
    c.fit_int("2 * d", 2 * d)?;
    c.disjoint(("out", out, n_out), ("input", input, n_in))?;
    let args = vec![
        c.buf("out", out, n_out)?,
        c.buf("input", input, n_in)?,
        c.int("num_tokens", num_tokens)?,
        c.int("d", d)?,
    ];
    let grid = row_grid(num_tokens, d, ROW_THREADS);
    Ok(vec![Launch::new(K, grid, ROW_THREADS, args)?])
}

/// `x[t * x_stride + i] += bias[i]` for `i < n` (bf16 rows, f32 bias; activation.cu).
pub fn add_bias(
    gpu: &dyn Launcher,
    x: Dev<bf16>,
    x_stride: usize,
    bias: Dev<f32>,
    num_tokens: usize,
    n: usize,
) -> Result<()> {
    gpu.launch(&plan_add_bias(x, x_stride, bias, num_tokens, n)?)
}

pub(super) fn plan_add_bias(
    x: Dev<bf16>,
    x_stride: usize,
    bias: Dev<f32>,
    num_tokens: usize,
    n: usize,
) -> Result<Vec<Launch>> {
    const K: &str = "add_bias_kernel";
    if num_tokens == 0 || n == 0 {
        return Ok(vec![]);
    }
    let c = Check(K);
    let args = vec![
        c.strided("x", x, num_tokens, x_stride, n)?,
        c.long("x_stride", x_stride)?,
        c.buf("bias", bias, n)?,
        c.int("num_tokens", num_tokens)?,
        c.int("n", n)?,
    ];
    let grid = row_grid(num_tokens, n, ROW_THREADS);
    Ok(vec![Launch::new(K, grid, ROW_THREADS, args)?])
}

/// Writes token t's K and V rows (bf16, `kv_dim` values at `key + t * key_stride`) into
/// slot `slot_mapping[t]` of the f16 caches (`num_slots` slots of `kv_dim`; slot -1 is
/// skipped; cache.cu).
#[allow(clippy::too_many_arguments)]
pub fn reshape_and_cache(
    gpu: &dyn Launcher,
    key: Dev<bf16>,
    key_stride: usize,
    value: Dev<bf16>,
    value_stride: usize,
    key_cache: Dev<f16>,
    value_cache: Dev<f16>,
    slot_mapping: Dev<i64>,
    num_tokens: usize,
    kv_dim: usize,
    num_slots: usize,
) -> Result<()> {
    let plan = plan_reshape_and_cache(
        (key, key_stride),
        (value, value_stride),
        (key_cache, value_cache),
        slot_mapping,
        num_tokens,
        kv_dim,
        num_slots,
    )?;
    gpu.launch(&plan)
}

pub(super) fn plan_reshape_and_cache(
    (key, key_stride): (Dev<bf16>, usize),
    (value, value_stride): (Dev<bf16>, usize),
    (key_cache, value_cache): (Dev<f16>, Dev<f16>),
    slot_mapping: Dev<i64>,
    num_tokens: usize,
    kv_dim: usize,
    num_slots: usize,
) -> Result<Vec<Launch>> {
    const K: &str = "reshape_and_cache_kernel";
    if num_tokens == 0 || kv_dim == 0 {
        return Ok(vec![]);
    }
    let c = Check(K);
    let cache = c.product("a cache", &[num_slots, kv_dim])?;
    c.disjoint(
        ("key_cache", key_cache, cache),
        ("value_cache", value_cache, cache),
    )?;
    let args = vec![
        c.strided("key", key, num_tokens, key_stride, kv_dim)?,
        c.long("key_stride", key_stride)?,
        c.strided("value", value, num_tokens, value_stride, kv_dim)?,
        c.long("value_stride", value_stride)?,
        c.buf("key_cache", key_cache, cache)?,
        c.buf("value_cache", value_cache, cache)?,
        c.buf("slot_mapping", slot_mapping, num_tokens)?,
        c.int("num_tokens", num_tokens)?,
        c.int("kv_dim", kv_dim)?,
        c.long("num_slots", num_slots)?,
    ];
    Ok(vec![Launch::new(K, (num_tokens, 1, 1), ROW_THREADS, args)?])
}

#[cfg(test)]
mod tests {
    use super::super::launch::tests::{assert_signature, define, fake};
    use super::*;

    fn rope_model(n_rot: usize, factors: bool) -> Rope {
        Rope {
            n_rot,
            freq_base: 1e6,
            freq_scale: 1.0,
            freq_factors: factors.then(|| vec![1.0; n_rot / 2]),
            neox: true,
        }
    }

    #[test]
    fn plans_follow_the_kernel_signatures_and_launch_shapes() {
        let b = |len| fake::<bf16>(0x10000, len);
        let qkv = fake::<bf16>(0x100000, 3 * 4096);
        let plans = [
            plan_embedding(b(3 * 64), fake(0x200, 3), fake(0x40000, 10 * 64), 3, 10, 64).unwrap(),
            plan_rms_norm(b(96), 32, b(96), 32, b(32), 1e-6, 3, 1, 32).unwrap(),
            plan_fused_add_rms_norm(b(96), fake(0x90000, 96), b(96), b(32), 1e-6, 3, 32).unwrap(),
            plan_rope(
                qkv,
                4096,
                qkv.at(2048).unwrap(),
                4096,
                fake(0x200, 3),
                None,
                (3, 16, 8, 128),
                &rope_model(128, false),
            )
            .unwrap(),
            plan_silu_and_mul(b(3 * 100), fake(0x90000, 600), 3, 100).unwrap(),
            plan_add_bias(qkv, 4096, fake(0x200, 4096), 3, 4096).unwrap(),
            plan_reshape_and_cache(
                (qkv, 4096),
                (qkv.at(1024).unwrap(), 4096),
                (fake(0x1000000, 16 * 1024), fake(0x2000000, 16 * 1024)),
                fake(0x300, 3),
                3,
                1024,
                16,
            )
            .unwrap(),
        ];
        for p in &plans {
            assert_eq!(p.len(), 1);
            assert_signature(p);
            assert_eq!(p[0].grid.0, 3, "{}", p[0].kernel);
        }
        assert_eq!(plans[1][0].block, 32);
        assert_eq!(plans[3][0].block, ROPE_THREADS as u32);
        assert_eq!(plans[4][0].grid, (3, 1, 1));
        assert_eq!(plans[5][0].grid, (3, 16, 1));
        assert_eq!(define("rope.cu", "ROPE_MAX_HALF") * 2, ROPE_MAX_HEAD_DIM);
        // rope's theta_scale is the CPU's, bit for bit.
        let r = rope_model(128, false);
        assert_eq!(
            plans[3][0].args[11],
            Arg::Float(r.freq_base.powf(-2.0 / 128.0))
        );
    }

    #[test]
    fn zero_sized_work_launches_nothing() {
        let b = Dev::<bf16>::null();
        assert!(plan_embedding(b, Dev::null(), b, 0, 10, 64)
            .unwrap()
            .is_empty());
        assert!(plan_rms_norm(b, 0, b, 0, b, 1e-6, 0, 1, 64)
            .unwrap()
            .is_empty());
        assert!(plan_fused_add_rms_norm(b, b, b, b, 1e-6, 0, 64)
            .unwrap()
            .is_empty());
        let r = rope_model(64, false);
        assert!(plan_rope(b, 0, b, 0, Dev::null(), None, (0, 8, 8, 64), &r)
            .unwrap()
            .is_empty());
        assert!(plan_silu_and_mul(b, b, 0, 64).unwrap().is_empty());
        assert!(plan_add_bias(b, 0, Dev::null(), 0, 64).unwrap().is_empty());
        let h = Dev::<f16>::null();
        assert!(
            plan_reshape_and_cache((b, 0), (b, 0), (h, h), Dev::null(), 0, 64, 0)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn short_buffers_and_bad_shapes_are_refused() {
        let b = |len| fake::<bf16>(0x10000, len);
        let err = |r: Result<Vec<Launch>>| r.unwrap_err().to_string();
        let table = fake::<bf16>(0x40000, 640);
        let m = err(plan_embedding(b(191), fake(0x200, 3), table, 3, 10, 64));
        assert!(m.contains("embedding_kernel: argument `out`"), "{m}");
        let m = err(plan_embedding(b(192), fake(0x200, 3), b(640), 3, 10, 64));
        assert!(m.contains("out and table overlap"), "{m}");
        let m = err(plan_embedding(b(192), fake(0x200, 2), table, 3, 10, 64));
        assert!(
            m.contains("`ids` holds 2 elements, the launch touches 3"),
            "{m}"
        );
        // Strided rows: the last row ends at 2 * 48 + 32.
        let m = err(plan_rms_norm(b(200), 48, b(127), 48, b(32), 1e-6, 3, 1, 32));
        assert!(m.contains("rms_norm_kernel: argument `x` holds 127"), "{m}");
        // In place is fine, a shifted overlap is not.
        assert!(plan_rms_norm(b(128), 48, b(128), 48, b(32), 1e-6, 3, 1, 32).is_ok());
        let shifted = fake::<bf16>(0x10002, 200);
        let m = err(plan_rms_norm(
            shifted,
            48,
            b(200),
            48,
            b(32),
            1e-6,
            3,
            1,
            32,
        ));
        assert!(m.contains("out and x overlap"), "{m}");
        let m = err(plan_fused_add_rms_norm(
            b(96),
            b(96),
            fake(0x90000, 96),
            b(32),
            0.0,
            3,
            32,
        ));
        assert!(m.contains("out and residual overlap"), "{m}");
        let m = err(plan_silu_and_mul(b(300), b(600), 3, 100));
        assert!(
            m.contains("silu_and_mul_kernel: out and input overlap"),
            "{m}"
        );
        let r = rope_model(96, false);
        let q = b(4096);
        let pos = fake::<i32>(0x200, 1);
        let m = err(plan_rope(q, 0, q, 0, pos, None, (1, 2, 1, 300), &r));
        assert!(m.contains("rope_kernel: head_dim 300 is over 256"), "{m}");
        let m = err(plan_rope(q, 0, q, 0, pos, None, (1, 2, 1, 64), &r));
        assert!(
            m.contains("n_rot 96 must be even and at most head_dim 64"),
            "{m}"
        );
        let m = err(plan_rope(
            q,
            0,
            q,
            0,
            pos,
            None,
            (1, 2, 1, 128),
            &rope_model(128, true),
        ));
        assert!(m.contains("freq_factors missing on the device"), "{m}");
        let ff = Some(fake::<f32>(0x400, 63));
        let m = err(plan_rope(
            q,
            0,
            q,
            0,
            pos,
            ff,
            (1, 2, 1, 128),
            &rope_model(128, true),
        ));
        assert!(
            m.contains("`freq_factors` holds 63 elements, the launch touches 64"),
            "{m}"
        );
        let m = err(plan_add_bias(b(100), 64, fake(0x400, 40), 2, 40));
        assert!(
            m.contains("add_bias_kernel: argument `x` holds 100 elements, the launch touches 104"),
            "{m}"
        );
        let h = |p| fake::<f16>(p, 16 * 8);
        let m = err(plan_reshape_and_cache(
            (b(64), 8),
            (b(64), 8),
            (h(0x1000), h(0x1000 + 64)),
            fake(0x300, 8),
            8,
            8,
            16,
        ));
        assert!(m.contains("key_cache and value_cache overlap"), "{m}");
        let m = err(plan_reshape_and_cache(
            (b(64), 8),
            (b(64), 8),
            (h(0x1000), h(0x9000)),
            fake(0x300, 8),
            8,
            8,
            17,
        ));
        assert!(
            m.contains("argument `key_cache` holds 128 elements, the launch touches 136"),
            "{m}"
        );
    }

    #[test]
    fn norm_blocks_cover_the_row_up_to_1024_threads() {
        assert_eq!(norm_threads(1), 32);
        assert_eq!(norm_threads(128), 128);
        assert_eq!(norm_threads(130), 160);
        assert_eq!(norm_threads(896), 896);
        assert_eq!(norm_threads(4096), 1024);
    }
}
