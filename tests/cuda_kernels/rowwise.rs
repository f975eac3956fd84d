//! Parity of the row kernels: embedding, RMSNorm (hidden rows, Qwen3's per-head rows in a
//! fused buffer, in place), the fused residual add + RMSNorm, RoPE (NeoX and normal,
//! partial rotation, Llama 3 frequency factors), SiLU-and-mul, the bias add and
//! `reshape_and_cache`, against the CPU backend's functions.

use half::{bf16, f16};
use rill::backend::cpu::ops::{self as cpu, Rope};
use rill::backend::cuda::ops;

use super::util::{dev, f32s, gpu, rows, up, Ctx, Out, Rng, Tol, BF16, EXACT};

const EPS: f32 = 1e-6;

pub fn embedding() -> Result<(), String> {
    let g = gpu()?;
    let mut rng = Rng::new(1);
    // (tokens, vocab, dim, out offset): dim 64 at an aligned row takes the 16-byte path,
    // at offset 1 (misaligned) and dim 13 the element path.
    for (tokens, vocab, dim, offset) in [
        (1, 10, 8, 0),
        (37, 1000, 64, 0),
        (37, 1000, 64, 1),
        (5, 50, 13, 0),
        (3, 7, 2048, 0),
    ] {
        let table = rng.bf16s(vocab * dim, 3.0);
        let mut ids: Vec<i32> = (0..tokens).map(|_| rng.below(vocab) as i32).collect();
        if tokens > 3 {
            // Out of range ids give zeros (embedding.cu).
            ids[1] = -1;
            ids[2] = vocab as i32;
        }
        let out = Out::<bf16>::poisoned(offset + tokens * dim + 3)?;
        let ids_d = up(&ids)?;
        let table_d = up(&table)?;
        let what = format!("embedding tokens {tokens} vocab {vocab} dim {dim} offset {offset}");
        ops::embedding(
            g,
            out.dev().at(offset).ctx(&what)?,
            dev(&ids_d),
            dev(&table_d),
            tokens,
            vocab,
            dim,
        )
        .ctx(&what)?;
        let want: Vec<f64> = ids
            .iter()
            .flat_map(|&id| {
                let row = (0..vocab as i32)
                    .contains(&id)
                    .then(|| &table[id as usize * dim..][..dim]);
                (0..dim).map(move |j| row.map_or(0.0, |r| r[j].to_f64()))
            })
            .collect();
        out.check(&what, &rows(offset, tokens, dim, dim), &want, EXACT)?;
    }
    Ok(())
}

pub fn rms_norm() -> Result<(), String> {
    let mut rng = Rng::new(2);
    // (tokens, dim, extra x stride, in place): hidden rows, sizes off the block size, a
    // 4096 row (1024 threads, 4 elements each), strided rows.
    for (tokens, dim, pad, in_place) in [
        (1, 896, 0, false),
        (7, 4096, 0, false),
        (33, 1000, 24, false),
        (5, 17, 3, true),
        (3, 2048, 0, true),
    ] {
        norm_case(&mut rng, tokens, 1, dim, dim + pad, in_place)?;
    }
    Ok(())
}

/// Qwen3's q/k norm: rows of head_dim inside a fused [q | k | v] buffer, in place or out.
pub fn rms_norm_heads() -> Result<(), String> {
    let mut rng = Rng::new(3);
    for (tokens, heads, hd, kv, in_place) in [
        (9, 16, 128, 8, true),
        (9, 8, 128, 8, false),
        (4, 14, 64, 2, true),
        (1, 32, 256, 8, false),
    ] {
        norm_case(&mut rng, tokens, heads, hd, (heads + 2 * kv) * hd, in_place)?;
    }
    Ok(())
}

fn norm_case(
    rng: &mut Rng,
    tokens: usize,
    heads: usize,
    dim: usize,
    x_stride: usize,
    in_place: bool,
) -> Result<(), String> {
    let g = gpu()?;
    let width = heads * dim;
    let x_host = rng.bf16s((tokens - 1) * x_stride + width + 5, 2.0);
    let w_host = rng.bf16s(dim, 1.5);
    let w = up(&w_host)?;
    let out_stride = if in_place { x_stride } else { width + 7 };
    let out = if in_place {
        Out::with(x_host.clone())?
    } else {
        Out::poisoned((tokens - 1) * out_stride + width + 2)?
    };
    let x = up(&x_host)?;
    let x_dev = if in_place { out.dev() } else { dev(&x) };
    let what = format!(
        "rms_norm tokens {tokens} heads {heads} dim {dim} x_stride {x_stride} in place {in_place}"
    );
    ops::rms_norm(
        g,
        out.dev(),
        out_stride,
        x_dev,
        x_stride,
        dev(&w),
        EPS,
        tokens,
        heads,
        dim,
    )
    .ctx(&what)?;
    let wf = f32s(&w_host);
    let mut want = Vec::new();
    for t in 0..tokens {
        for h in 0..heads {
            let xs = f32s(&x_host[t * x_stride + h * dim..][..dim]);
            let mut o = vec![0f32; dim];
            cpu::rms_norm(&xs, &wf, EPS, &mut o);
            want.extend(o.iter().map(|&v| v as f64));
        }
    }
    out.check(&what, &rows(0, tokens, out_stride, width), &want, BF16)
}

pub fn fused_add_rms_norm() -> Result<(), String> {
    let g = gpu()?;
    let mut rng = Rng::new(4);
    for (tokens, dim, out_is_x) in [
        (1, 896, false),
        (9, 4096, false),
        (3, 100, true),
        (17, 1536, true),
    ] {
        let n = tokens * dim;
        let res_host = rng.bf16s(n, 4.0);
        let x_host = rng.bf16s(n, 4.0);
        let w_host = rng.bf16s(dim, 1.5);
        let residual = Out::with(res_host.clone())?;
        let x = Out::with(x_host.clone())?;
        let separate = Out::<bf16>::poisoned(n)?;
        let out = if out_is_x { &x } else { &separate };
        let w = up(&w_host)?;
        let what = format!("fused_add_rms_norm tokens {tokens} dim {dim} out = x {out_is_x}");
        ops::fused_add_rms_norm(
            g,
            out.dev(),
            residual.dev(),
            x.dev(),
            dev(&w),
            EPS,
            tokens,
            dim,
        )
        .ctx(&what)?;
        // The residual is the bf16 rounding of the f32 sum, exactly.
        let stored: Vec<bf16> = res_host
            .iter()
            .zip(&x_host)
            .map(|(a, b)| bf16::from_f32(a.to_f32() + b.to_f32()))
            .collect();
        let all = rows(0, 1, 0, n);
        residual.check(
            &format!("{what} (residual)"),
            &all,
            &f32s(&stored).iter().map(|&v| v as f64).collect::<Vec<_>>(),
            EXACT,
        )?;
        let wf = f32s(&w_host);
        let mut want = Vec::with_capacity(n);
        for row in stored.chunks_exact(dim) {
            let mut o = vec![0f32; dim];
            cpu::rms_norm(&f32s(row), &wf, EPS, &mut o);
            want.extend(o.iter().map(|&v| v as f64));
        }
        out.check(&format!("{what} (out)"), &all, &want, BF16)?;
    }
    Ok(())
}

/// RoPE rotations: cos/sin of the same f32 angles differ from the CPU's by a couple of ulp
/// and a*cos - b*sin may be fused; then one bf16 rounding.
const ROPE: Tol = Tol { atol: 1e-5, ..BF16 };

pub fn rope() -> Result<(), String> {
    let g = gpu()?;
    let mut rng = Rng::new(5);
    struct Case {
        tokens: usize,
        heads: usize,
        kv: usize,
        hd: usize,
        n_rot: usize,
        neox: bool,
        base: f32,
        scale: f32,
        factors: bool,
    }
    let cases = [
        // Qwen3-0.6B: NeoX, head_dim 128, 16 q heads over 8 kv heads, base 1e6.
        Case {
            tokens: 7,
            heads: 16,
            kv: 8,
            hd: 128,
            n_rot: 128,
            neox: true,
            base: 1e6,
            scale: 1.0,
            factors: false,
        },
        // GGUF llama: adjacent pairs.
        Case {
            tokens: 5,
            heads: 9,
            kv: 3,
            hd: 64,
            n_rot: 64,
            neox: false,
            base: 1e4,
            scale: 1.0,
            factors: false,
        },
        // Partial rotation: the last 32 values of each head stay as they are.
        Case {
            tokens: 3,
            heads: 4,
            kv: 2,
            hd: 64,
            n_rot: 32,
            neox: true,
            base: 1e4,
            scale: 0.25,
            factors: false,
        },
        // Llama 3 with frequency factors.
        Case {
            tokens: 4,
            heads: 32,
            kv: 8,
            hd: 128,
            n_rot: 128,
            neox: false,
            base: 5e5,
            scale: 1.0,
            factors: true,
        },
        Case {
            tokens: 2,
            heads: 2,
            kv: 1,
            hd: 256,
            n_rot: 256,
            neox: true,
            base: 1e6,
            scale: 1.0,
            factors: false,
        },
    ];
    for c in cases {
        let (q_dim, kv_dim) = (c.heads * c.hd, c.kv * c.hd);
        let stride = q_dim + 2 * kv_dim; // a fused [q | k | v] buffer
        let host = rng.bf16s(c.tokens * stride, 2.0);
        let positions: Vec<i32> = (0..c.tokens)
            .map(|t| if t == 0 { 0 } else { rng.below(40_000) as i32 })
            .collect();
        let model = Rope {
            n_rot: c.n_rot,
            freq_base: c.base,
            freq_scale: c.scale,
            freq_factors: c.factors.then(|| rng.f32s(c.n_rot / 2, 1.0, 8.0)),
            neox: c.neox,
        };
        let qkv = Out::with(host.clone())?;
        let pos = up(&positions)?;
        let ff = model.freq_factors.as_deref().map(up).transpose()?;
        let what = format!(
            "rope tokens {} heads {}/{} head_dim {} n_rot {} neox {} factors {}",
            c.tokens, c.heads, c.kv, c.hd, c.n_rot, c.neox, c.factors
        );
        let q = qkv.dev();
        let k = q.at(q_dim).ctx(&what)?;
        ops::rope(
            g,
            q,
            stride,
            k,
            stride,
            dev(&pos),
            ff.as_ref().map(dev),
            c.tokens,
            c.heads,
            c.kv,
            c.hd,
            &model,
        )
        .ctx(&what)?;
        let (mut written, mut want) = (Vec::new(), Vec::new());
        for (t, &p) in positions.iter().enumerate() {
            let row = &host[t * stride..];
            let (mut qf, mut kf) = (f32s(&row[..q_dim]), f32s(&row[q_dim..q_dim + kv_dim]));
            model.apply([&mut qf, &mut kf], c.hd, p as usize);
            // Only the rotated part of each head is written; the tail must stay bit-exact.
            for (base, vals) in [(t * stride, &qf), (t * stride + q_dim, &kf)] {
                for (i, &v) in vals.iter().enumerate() {
                    if i % c.hd < c.n_rot {
                        written.push(base + i);
                        want.push(v as f64);
                    }
                }
            }
        }
        qkv.check(&what, &written, &want, ROPE)?;
    }
    Ok(())
}

pub fn silu_and_mul() -> Result<(), String> {
    let g = gpu()?;
    let mut rng = Rng::new(6);
    for (tokens, d) in [(1, 3072), (7, 1000), (3, 17), (2, 9728)] {
        let input_host = rng.bf16s(tokens * 2 * d, 6.0);
        let input = up(&input_host)?;
        let out = Out::<bf16>::poisoned(tokens * d + 5)?;
        let what = format!("silu_and_mul tokens {tokens} d {d}");
        ops::silu_and_mul(g, out.dev(), dev(&input), tokens, d).ctx(&what)?;
        let mut want = Vec::new();
        for row in input_host.chunks_exact(2 * d) {
            let mut gate = f32s(&row[..d]);
            cpu::silu_mul(&mut gate, &f32s(&row[d..]));
            want.extend(gate.iter().map(|&v| v as f64));
        }
        out.check(&what, &rows(0, tokens, d, d), &want, BF16)?;
    }
    Ok(())
}

pub fn add_bias() -> Result<(), String> {
    let g = gpu()?;
    let mut rng = Rng::new(7);
    // Qwen2-0.5B's fused q|k|v bias (896 + 2 * 128) inside rows with room to spare; odd sizes.
    for (tokens, n, stride) in [
        (5, 1152, 1152 + 64),
        (1, 1152, 1152),
        (3, 300, 301),
        (40, 17, 17),
    ] {
        let host = rng.bf16s((tokens - 1) * stride + n + 3, 4.0);
        let bias = rng.f32s(n, -1.0, 1.0);
        let x = Out::with(host.clone())?;
        let b = up(&bias)?;
        let what = format!("add_bias tokens {tokens} n {n} stride {stride}");
        ops::add_bias(g, x.dev(), stride, dev(&b), tokens, n).ctx(&what)?;
        let idx = rows(0, tokens, stride, n);
        // bf16(f32 + f32): exactly what half's round-to-nearest-even gives.
        let want: Vec<f64> = idx
            .iter()
            .map(|&i| bf16::from_f32(host[i].to_f32() + bias[i % stride]).to_f64())
            .collect();
        x.check(&what, &idx, &want, EXACT)?;
    }
    Ok(())
}

pub fn reshape_and_cache() -> Result<(), String> {
    let g = gpu()?;
    let mut rng = Rng::new(8);
    // (tokens, kv heads, head_dim, q heads, blocks): K/V inside a fused [q | k | v] buffer.
    for (tokens, kv, hd, heads, blocks) in
        [(37, 8, 128, 16, 10), (1, 2, 64, 14, 3), (5, 1, 256, 8, 2)]
    {
        let kv_dim = kv * hd;
        let stride = heads * hd + 2 * kv_dim;
        let num_slots = blocks * 16;
        let host = rng.bf16s(tokens * stride, 30.0);
        let qkv = up(&host)?;
        let mut free: Vec<i64> = (0..num_slots as i64).collect();
        rng.shuffle(&mut free);
        let mut slots: Vec<i64> = free[..tokens].to_vec();
        if tokens > 3 {
            slots[1] = -1; // a padded token: skipped
            slots[3] = num_slots as i64; // out of range (a host bug): skipped, never written
        }
        // One spare slot past num_slots: the out-of-range token must not reach it.
        let k_cache = Out::<f16>::poisoned((num_slots + 1) * kv_dim)?;
        let v_cache = Out::<f16>::poisoned((num_slots + 1) * kv_dim)?;
        let map = up(&slots)?;
        let what = format!("reshape_and_cache tokens {tokens} kv_dim {kv_dim} slots {num_slots}");
        let (k, v) = (
            dev(&qkv).at(heads * hd).ctx(&what)?,
            dev(&qkv).at(heads * hd + kv_dim).ctx(&what)?,
        );
        ops::reshape_and_cache(
            g,
            k,
            stride,
            v,
            stride,
            k_cache.dev(),
            v_cache.dev(),
            dev(&map),
            tokens,
            kv_dim,
            num_slots,
        )
        .ctx(&what)?;
        for (cache, off, name) in [
            (&k_cache, heads * hd, "K"),
            (&v_cache, heads * hd + kv_dim, "V"),
        ] {
            let (mut written, mut want) = (Vec::new(), Vec::new());
            for (t, &s) in slots.iter().enumerate() {
                if (0..num_slots as i64).contains(&s) {
                    for j in 0..kv_dim {
                        written.push(s as usize * kv_dim + j);
                        // bf16 -> f16 rounds to nearest even, like half's conversion.
                        want.push(f16::from_f32(host[t * stride + off + j].to_f32()).to_f64());
                    }
                }
            }
            cache.check(&format!("{what} ({name})"), &written, &want, EXACT)?;
        }
    }
    Ok(())
}
