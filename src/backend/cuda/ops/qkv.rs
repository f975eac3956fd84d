//! The wrapper of `qk_norm_rope_cache_kernel` (qk_norm_rope_cache.cu): the per-token
//! work between the QKV projection and attention in one launch. Qwen3's per-head q/k
//! RMSNorm (when the model has it), RoPE on q (in place) and k, and k and v written into
//! their paged-cache slot as f16. It does what `rms_norm` (q heads, k heads), `rope` and
//! `reshape_and_cache` do one after another, with the same roundings.

use half::{bf16, f16};

use super::dev::Dev;
use super::launch::{Arg, Check, Launch, Launcher};
use super::rowwise::freq_factors_arg;
use crate::backend::cpu::ops::Rope;
use crate::error::Result;

/// Threads of a block: exactly this (`THREADS`; other sizes trap).
pub const QKV_THREADS: usize = 128;
/// The largest head the kernel takes (`MAX_HEAD_DIM`).
pub const QKV_MAX_HEAD_DIM: usize = 256;

/// The shape of one layer's fused `[q | k | v]` rows and its cache.
#[derive(Clone, Copy, Debug)]
pub struct QkvShape {
    pub num_tokens: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Slots of the cache (`num_blocks * block_size`).
    pub num_slots: usize,
}

/// The per-head RMSNorm weights (`[head_dim]` bf16 each) and epsilon; `None` weights skip
/// that norm (models without Qwen3's q/k norm).
#[derive(Clone, Copy, Debug)]
pub struct QkNorm {
    pub q: Option<Dev<bf16>>,
    pub k: Option<Dev<bf16>>,
    pub eps: f32,
}

/// Token t's row is `qkv + t * qkv_stride`: q heads, k heads, v heads. q is normed and
/// rotated in place; k (normed, rotated) and v go into slot `slot_mapping[t]` of the
/// caches (-1 skips the writes). `freq_factors` is the device copy of `rope.freq_factors`.
#[allow(clippy::too_many_arguments)]
pub fn qk_norm_rope_cache(
    gpu: &dyn Launcher,
    (qkv, qkv_stride): (Dev<bf16>, usize),
    caches: (Dev<f16>, Dev<f16>),
    slot_mapping: Dev<i64>,
    positions: Dev<i32>,
    freq_factors: Option<Dev<f32>>,
    norm: &QkNorm,
    shape: &QkvShape,
    rope: &Rope,
) -> Result<()> {
    let plan = plan_qk_norm_rope_cache(
        (qkv, qkv_stride),
        caches,
        (slot_mapping, positions),
        freq_factors,
        norm,
        shape,
        rope,
    )?;
    gpu.launch(&plan)
}

pub(super) fn plan_qk_norm_rope_cache(
    (qkv, qkv_stride): (Dev<bf16>, usize),
    (key_cache, value_cache): (Dev<f16>, Dev<f16>),
    (slot_mapping, positions): (Dev<i64>, Dev<i32>),
    freq_factors: Option<Dev<f32>>,
    norm: &QkNorm,
    s: &QkvShape,
    rope: &Rope,
) -> Result<Vec<Launch>> {
    const K: &str = "qk_norm_rope_cache_kernel";
    if s.num_tokens == 0 {
        return Ok(vec![]);
    }
    let c = Check(K);
    let (hd, n_rot) = (s.head_dim, rope.n_rot);
    c.require((1..=QKV_MAX_HEAD_DIM).contains(&hd), || {
        format!("head_dim {hd} is outside 1..={QKV_MAX_HEAD_DIM}")
    })?;
    c.require(n_rot.is_multiple_of(2) && n_rot <= hd, || {
        format!("n_rot {n_rot} must be even and at most head_dim {hd}")
    })?;
    let kv_dim = c.product("a token's k heads", &[s.num_kv_heads, hd])?;
    let width = c.product(
        "a token's q, k and v heads",
        &[s.num_heads + 2 * s.num_kv_heads, hd],
    )?;
    let rows = c.rows("qkv", s.num_tokens, qkv_stride, width)?;
    let cache = c.product("a cache", &[s.num_slots, kv_dim])?;
    c.disjoint(
        ("key_cache", key_cache, cache),
        ("value_cache", value_cache, cache),
    )?;
    c.disjoint(("qkv", qkv, rows), ("key_cache", key_cache, cache))?;
    c.disjoint(("qkv", qkv, rows), ("value_cache", value_cache, cache))?;
    let weight = |name, w: Option<Dev<bf16>>| match w {
        Some(d) => c.buf(name, d, hd),
        None => Ok(Arg::Ptr(0)),
    };
    let args = vec![
        c.buf("qkv", qkv, rows)?,
        c.long("qkv_stride", qkv_stride)?,
        c.buf("key_cache", key_cache, cache)?,
        c.buf("value_cache", value_cache, cache)?,
        c.buf("slot_mapping", slot_mapping, s.num_tokens)?,
        c.buf("positions", positions, s.num_tokens)?,
        freq_factors_arg(c, freq_factors, rope)?,
        weight("q_norm", norm.q)?,
        weight("k_norm", norm.k)?,
        c.int("num_tokens", s.num_tokens)?,
        c.int("num_heads", s.num_heads)?,
        c.int("num_kv_heads", s.num_kv_heads)?,
        c.int("head_dim", hd)?,
        c.int("n_rot", n_rot)?,
        Arg::Float(rope.freq_base.powf(-2.0 / n_rot as f32)),
        Arg::Float(rope.freq_scale),
        Arg::Int(rope.neox as i32),
        Arg::Float(norm.eps),
        c.long("num_slots", s.num_slots)?,
    ];
    Ok(vec![Launch::new(
        K,
        (s.num_tokens, 1, 1),
        QKV_THREADS,
        args,
    )?])
}

#[cfg(test)]
mod tests {
    use super::super::launch::tests::{assert_signature, define, fake};
    use super::*;

    fn rope(n_rot: usize, factors: bool) -> Rope {
        Rope {
            n_rot,
            freq_base: 1e6,
            freq_scale: 1.0,
            freq_factors: factors.then(|| vec![1.0; n_rot / 2]),
            neox: true,
        }
    }

    fn shape(tokens: usize, hd: usize) -> QkvShape {
        QkvShape {
            num_tokens: tokens,
            num_heads: 16,
            num_kv_heads: 8,
            head_dim: hd,
            num_slots: 64,
        }
    }

    struct Bufs {
        qkv: Dev<bf16>,
        caches: (Dev<f16>, Dev<f16>),
        slots: Dev<i64>,
        positions: Dev<i32>,
        norm: QkNorm,
    }

    fn bufs(s: &QkvShape) -> Bufs {
        let width = (s.num_heads + 2 * s.num_kv_heads) * s.head_dim;
        let cache = s.num_slots * s.num_kv_heads * s.head_dim;
        Bufs {
            qkv: fake(0x1_0000_0000, s.num_tokens * width),
            caches: (fake(0x2_0000_0000, cache), fake(0x3_0000_0000, cache)),
            slots: fake(0x4_0000_0000, s.num_tokens),
            positions: fake(0x5_0000_0000, s.num_tokens),
            norm: QkNorm {
                q: Some(fake(0x6_0000_0000, s.head_dim)),
                k: Some(fake(0x7_0000_0000, s.head_dim)),
                eps: 1e-6,
            },
        }
    }

    fn plan(b: &Bufs, s: &QkvShape, ff: Option<Dev<f32>>, r: &Rope) -> Result<Vec<Launch>> {
        let stride = (s.num_heads + 2 * s.num_kv_heads) * s.head_dim;
        plan_qk_norm_rope_cache(
            (b.qkv, stride),
            b.caches,
            (b.slots, b.positions),
            ff,
            &b.norm,
            s,
            r,
        )
    }

    #[test]
    fn plans_follow_the_kernel_signature() {
        assert_eq!(define("qk_norm_rope_cache.cu", "THREADS"), QKV_THREADS);
        assert_eq!(
            define("qk_norm_rope_cache.cu", "MAX_HEAD_DIM"),
            QKV_MAX_HEAD_DIM
        );
        let s = shape(5, 128);
        let b = bufs(&s);
        let p = plan(&b, &s, None, &rope(128, false)).unwrap();
        assert_signature(&p);
        assert_eq!((p[0].grid, p[0].block), ((5, 1, 1), 128));
        // Norm weights are pointers, null without them; freq factors likewise.
        assert_eq!(p[0].args[6], Arg::Ptr(0));
        assert_eq!(p[0].args[7], Arg::Ptr(0x6_0000_0000));
        let mut b2 = bufs(&s);
        b2.norm.q = None;
        b2.norm.k = None;
        let ff = fake(0x8_0000_0000, 64);
        let p = plan(&b2, &s, Some(ff), &rope(128, true)).unwrap();
        assert_signature(&p);
        assert_eq!(
            p[0].args[6..9],
            [Arg::Ptr(0x8_0000_0000), Arg::Ptr(0), Arg::Ptr(0)]
        );
        assert!(plan(&b, &shape(0, 128), None, &rope(128, false))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn bad_shapes_and_short_buffers_are_refused() {
        let err = |r: Result<Vec<Launch>>| r.unwrap_err().to_string();
        let s = shape(4, 128);
        let b = bufs(&s);
        let m = err(plan(&b, &s, None, &rope(130, false)));
        assert!(
            m.contains("n_rot 130 must be even and at most head_dim 128"),
            "{m}"
        );
        let m = err(plan(&b, &s, None, &rope(128, true)));
        assert!(
            m.contains("freq_factors missing on the device but present"),
            "{m}"
        );
        let big = shape(4, 320);
        let m = err(plan(&bufs(&big), &big, None, &rope(128, false)));
        assert!(m.contains("head_dim 320 is outside 1..=256"), "{m}");
        // A fifth token reads past qkv, the slot mapping and the positions.
        let m = err(plan(&b, &shape(5, 128), None, &rope(128, false)));
        assert!(
            m.contains("qk_norm_rope_cache_kernel: argument `qkv`"),
            "{m}"
        );
        // A short norm weight.
        let mut b2 = bufs(&s);
        b2.norm.k = Some(fake(0x7_0000_0000, 127));
        let m = err(plan(&b2, &s, None, &rope(128, false)));
        assert!(m.contains("argument `k_norm`"), "{m}");
        // The caches may not overlap each other or the activations.
        let mut b3 = bufs(&s);
        b3.caches.1 = b3.caches.0;
        let m = err(plan(&b3, &s, None, &rope(128, false)));
        assert!(m.contains("key_cache and value_cache overlap"), "{m}");
    }
}
