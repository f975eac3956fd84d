//! Parity of the fused `qk_norm_rope_cache` kernel with the CPU chain it replaces: per-head
//! RMSNorm (`cpu::rms_norm`, Qwen3's q/k norm), rounded to bf16, then `Rope::apply`,
//! rounded to bf16; q in place, k and v into the f16 cache at the slot mapping's slots.
//! The k and v activations must stay untouched, as must every cache slot not mapped.

use half::{bf16, f16};
use rill::backend::cpu::ops::{self as cpu, Rope};
use rill::backend::cuda::ops::{self, QkNorm, QkvShape};

use super::util::{dev, f32s, gpu, up, Ctx, Out, Rng, Tol, BF16, EXACT};

const EPS: f32 = 1e-6;
/// RoPE after a norm whose f32 scale may differ from the CPU's (f64 sum) by rounding: a
/// bf16 ulp of the input, as `rope`'s own tolerance.
const QKV: Tol = Tol { atol: 1e-5, ..BF16 };

struct Case {
    tokens: usize,
    heads: usize,
    kv: usize,
    hd: usize,
    n_rot: usize,
    neox: bool,
    norm: bool,
    factors: bool,
}

/// CPU reference of one head: optional norm, bf16, RoPE at `pos`, bf16.
fn reference(x: &[bf16], w: Option<&[f32]>, rope: &Rope, hd: usize, pos: usize) -> Vec<f32> {
    let mut v = f32s(x);
    if let Some(w) = w {
        let mut o = vec![0f32; hd];
        cpu::rms_norm(&v, w, EPS, &mut o);
        v = o.iter().map(|&f| bf16::from_f32(f).to_f32()).collect();
    }
    let mut none: [f32; 0] = [];
    rope.apply([&mut v[..], &mut none[..]], hd, pos);
    v.iter().map(|&f| bf16::from_f32(f).to_f32()).collect()
}

fn run_case(rng: &mut Rng, c: &Case) -> Result<(), String> {
    let g = gpu()?;
    let (q_dim, kv_dim) = (c.heads * c.hd, c.kv * c.hd);
    let stride = q_dim + 2 * kv_dim + 8; // a fused [q | k | v] row with room to spare
    let num_slots = 3 * 16;
    let host = rng.bf16s(c.tokens * stride, 2.0);
    let positions: Vec<i32> = (0..c.tokens)
        .map(|t| if t == 0 { 0 } else { rng.below(40_000) as i32 })
        .collect();
    let mut free: Vec<i64> = (0..num_slots as i64).collect();
    rng.shuffle(&mut free);
    let mut slots: Vec<i64> = free[..c.tokens].to_vec();
    if c.tokens > 3 {
        slots[1] = -1; // a padded token: q still processed, nothing cached
        slots[3] = num_slots as i64; // out of range (a host bug): never written
    }
    let rope = Rope {
        n_rot: c.n_rot,
        freq_base: 1e6,
        freq_scale: 1.0,
        freq_factors: c.factors.then(|| rng.f32s(c.n_rot / 2, 1.0, 8.0)),
        neox: c.neox,
    };
    let (qw, kw) = (rng.bf16s(c.hd, 1.5), rng.bf16s(c.hd, 1.5));
    let (qw_d, kw_d) = (up(&qw)?, up(&kw)?);
    let qkv = Out::with(host.clone())?;
    // One spare slot past num_slots: the out-of-range token must not reach it.
    let k_cache = Out::<f16>::poisoned((num_slots + 1) * kv_dim)?;
    let v_cache = Out::<f16>::poisoned((num_slots + 1) * kv_dim)?;
    let (pos_d, slots_d) = (up(&positions)?, up(&slots)?);
    let ff = rope.freq_factors.as_deref().map(up).transpose()?;
    let what = format!(
        "qk_norm_rope_cache tokens {} heads {}/{} head_dim {} n_rot {} neox {} norm {} factors {}",
        c.tokens, c.heads, c.kv, c.hd, c.n_rot, c.neox, c.norm, c.factors
    );
    ops::qk_norm_rope_cache(
        g,
        (qkv.dev(), stride),
        (k_cache.dev(), v_cache.dev()),
        dev(&slots_d),
        dev(&pos_d),
        ff.as_ref().map(dev),
        &QkNorm {
            q: c.norm.then(|| dev(&qw_d)),
            k: c.norm.then(|| dev(&kw_d)),
            eps: EPS,
        },
        &QkvShape {
            num_tokens: c.tokens,
            num_heads: c.heads,
            num_kv_heads: c.kv,
            head_dim: c.hd,
            num_slots,
        },
        &rope,
    )
    .ctx(&what)?;
    let (qwf, kwf) = (f32s(&qw), f32s(&kw));
    let (qn, kn) = if c.norm {
        (Some(&qwf[..]), Some(&kwf[..]))
    } else {
        (None, None)
    };
    let mut q_idx = Vec::new();
    let mut q_want = Vec::new();
    let (mut k_idx, mut k_want, mut v_idx, mut v_want) = (vec![], vec![], vec![], vec![]);
    for (t, (&p, &s)) in positions.iter().zip(&slots).enumerate() {
        let row = &host[t * stride..];
        for h in 0..c.heads {
            let r = reference(&row[h * c.hd..][..c.hd], qn, &rope, c.hd, p as usize);
            q_idx.extend((0..c.hd).map(|j| t * stride + h * c.hd + j));
            q_want.extend(r.iter().map(|&v| v as f64));
        }
        if !(0..num_slots as i64).contains(&s) {
            continue;
        }
        let s = s as usize;
        for h in 0..c.kv {
            let r = reference(
                &row[q_dim + h * c.hd..][..c.hd],
                kn,
                &rope,
                c.hd,
                p as usize,
            );
            k_idx.extend((0..c.hd).map(|j| s * kv_dim + h * c.hd + j));
            k_want.extend(r.iter().map(|&v| f16::from_f32(v).to_f64()));
        }
        for j in 0..kv_dim {
            v_idx.push(s * kv_dim + j);
            v_want.push(f16::from_f32(row[q_dim + kv_dim + j].to_f32()).to_f64());
        }
    }
    qkv.check(&format!("{what} (q; k, v untouched)"), &q_idx, &q_want, QKV)?;
    k_cache.check(&format!("{what} (K cache)"), &k_idx, &k_want, QKV)?;
    v_cache.check(&format!("{what} (V cache)"), &v_idx, &v_want, EXACT)
}

/// Qwen3 (norms, NeoX), Llama 3 (adjacent pairs of GGUF, frequency factors, no norm),
/// Qwen2-0.5B's 14/2 heads of 64, partial rotation after a norm, head_dim 256.
pub fn qk_norm_rope_cache() -> Result<(), String> {
    let mut rng = Rng::new(9);
    let case = |tokens, heads, kv, hd, n_rot, neox, norm, factors| Case {
        tokens,
        heads,
        kv,
        hd,
        n_rot,
        neox,
        norm,
        factors,
    };
    for c in [
        case(7, 16, 8, 128, 128, true, true, false),
        case(5, 32, 8, 128, 128, false, false, true),
        case(4, 14, 2, 64, 64, true, false, false),
        case(6, 4, 2, 64, 32, true, true, false),
        case(2, 2, 1, 256, 256, true, true, false),
        case(1, 8, 8, 96, 96, false, true, false),
    ] {
        run_case(&mut rng, &c)?;
    }
    Ok(())
}
