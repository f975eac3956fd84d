//! Parity of decode (`paged_attention`, one pass and partitioned) and prefill
//! (`prefill_attention`) attention with an f64 reference that mirrors
//! `Decoder::attention`: causal over the sequence's cached positions, GQA (head h reads
//! KV head h / group), K and V from the f16 cache through shuffled block tables, Q
//! rounded to f16, scale 1/sqrt(head_dim). The reference does not round the
//! probabilities to f16 before P.V: the decode and CUDA-core prefill kernels do not, the
//! tensor-core prefill kernel rounds the unnormalized ones (an f16 rounding, well inside
//! `ATTN`; a numpy emulation of its fragments on these inputs stayed under half the bound).
//! Prompts longer than one block of rows (16 / 64) check every block's key range.

use half::{bf16, f16};
use rill::backend::cuda::ops::{self, AttnShape, PrefillKernel};

use super::util::{attn_scratch, dev, gpu, rows, up, Buf, Ctx, Out, Rng, Tol};

const BLOCK: usize = 16;

/// Online softmax and P.V in f32 over up to a few thousand keys (relative error well
/// under 1e-4 of the largest |V| = 1), then one bf16 rounding (2^-8 relative).
const ATTN: Tol = Tol {
    rtol: 1.0 / 256.0 + 1e-4,
    atol: 2e-4,
    norm: 5e-3,
};

/// A paged cache of one layer holding `lens[s]` positions of each sequence in shuffled
/// blocks, every slot (used or not) filled with random f16 values.
struct Cache {
    shape: AttnShape,
    k: Vec<f16>,
    v: Vec<f16>,
    tables: Vec<i32>,
    lens: Vec<usize>,
}

impl Cache {
    fn new(rng: &mut Rng, heads: usize, kv: usize, hd: usize, lens: &[usize]) -> Cache {
        let need: Vec<usize> = lens.iter().map(|l| l.div_ceil(BLOCK)).collect();
        let max_blocks = need.iter().copied().max().unwrap_or(0) + 2;
        let num_blocks = need.iter().sum::<usize>() + 5; // spare blocks nobody owns
        let mut free: Vec<i32> = (0..num_blocks as i32).collect();
        rng.shuffle(&mut free);
        let mut tables = Vec::with_capacity(lens.len() * max_blocks);
        let mut next = free.into_iter();
        for &n in &need {
            let row: Vec<i32> = next.by_ref().take(n).collect();
            tables.extend(&row);
            // Entries past the sequence's blocks: garbage the kernels must not follow.
            tables.extend((n..max_blocks).map(|_| rng.below(num_blocks) as i32));
        }
        let size = num_blocks * BLOCK * kv * hd;
        Cache {
            shape: AttnShape {
                num_heads: heads,
                num_kv_heads: kv,
                head_dim: hd,
                block_size: BLOCK,
                max_blocks_per_seq: max_blocks,
                num_blocks,
                scale: 1.0 / (hd as f32).sqrt(),
            },
            k: rng.f16s(size, 1.0),
            v: rng.f16s(size, 1.0),
            tables,
            lens: lens.to_vec(),
        }
    }

    fn slot(&self, s: usize, pos: usize) -> usize {
        let b = self.tables[s * self.shape.max_blocks_per_seq + pos / BLOCK] as usize;
        b * BLOCK + pos % BLOCK
    }

    /// The reference output of query `q` (one head's bf16 values) of sequence `s`, head `h`,
    /// attending to positions 0..=pos.
    fn attend(&self, s: usize, h: usize, pos: usize, q: &[bf16]) -> Vec<f64> {
        let AttnShape {
            num_heads,
            num_kv_heads,
            head_dim: hd,
            scale,
            ..
        } = self.shape;
        let kvh = h / (num_heads / num_kv_heads);
        let kv_dim = num_kv_heads * hd;
        let q16: Vec<f64> = q
            .iter()
            .map(|x| f16::from_f32(x.to_f32()).to_f64())
            .collect();
        let row = |j: usize| self.slot(s, j) * kv_dim + kvh * hd;
        let scores: Vec<f64> = (0..=pos)
            .map(|j| {
                self.k[row(j)..][..hd]
                    .iter()
                    .zip(&q16)
                    .map(|(k, q)| k.to_f64() * q)
                    .sum::<f64>()
                    * scale as f64
            })
            .collect();
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        let mut out = vec![0f64; hd];
        for (j, p) in e.iter().enumerate() {
            for (o, v) in out.iter_mut().zip(&self.v[row(j)..][..hd]) {
                *o += p / sum * v.to_f64();
            }
        }
        out
    }

    fn upload(&self) -> Result<DevCache, String> {
        Ok(DevCache {
            k: up(&self.k)?,
            v: up(&self.v)?,
            tables: up(&self.tables)?,
            lens: up(&self.lens.iter().map(|&l| l as i32).collect::<Vec<_>>())?,
        })
    }
}

struct DevCache {
    k: Buf<f16>,
    v: Buf<f16>,
    tables: Buf<i32>,
    lens: Buf<i32>,
}

/// Decode of one query per sequence (at position len - 1) with `parts` partitions
/// (`None`: as many as the longest sequence needs); q inside a fused [q | k | v] buffer,
/// out with a gap between rows.
fn decode_case(
    rng: &mut Rng,
    heads: usize,
    kv: usize,
    hd: usize,
    lens: &[usize],
    parts: Option<usize>,
) -> Result<(), String> {
    let g = gpu()?;
    let cache = Cache::new(rng, heads, kv, hd, lens);
    let d = cache.upload()?;
    let s = &cache.shape;
    let q_dim = heads * hd;
    let q_stride = q_dim + 2 * kv * hd;
    let q_host = rng.bf16s(lens.len() * q_stride, 3.0);
    let q = up(&q_host)?;
    let out_stride = q_dim + 5;
    let out = Out::<bf16>::poisoned(lens.len() * out_stride)?;
    let max_len = lens.iter().copied().max().unwrap_or(0);
    let (scratch, _keep) = attn_scratch(lens.len(), heads, hd, max_len.max(8 * 512))?;
    let parts = match parts {
        Some(p) => p,
        None => ops::partitions_for(max_len, &scratch).ctx("partitions")?,
    };
    let what = format!(
        "paged_attention heads {heads}/{kv} head_dim {hd} lens {lens:?} partitions {parts}"
    );
    ops::paged_attention(
        g,
        out.dev(),
        out_stride,
        dev(&q),
        q_stride,
        dev(&d.k),
        dev(&d.v),
        dev(&d.tables),
        dev(&d.lens),
        lens.len(),
        parts,
        s,
        &scratch,
    )
    .ctx(&what)?;
    let mut want = Vec::new();
    for (si, &len) in lens.iter().enumerate() {
        for h in 0..heads {
            if len == 0 {
                want.extend(std::iter::repeat_n(0.0, hd)); // a padded row: zeros
            } else {
                want.extend(cache.attend(si, h, len - 1, &q_host[si * q_stride + h * hd..][..hd]));
            }
        }
    }
    out.check(&what, &rows(0, lens.len(), out_stride, q_dim), &want, ATTN)
}

/// Single-pass decode (every context within one partition), GQA groups 1 and 2, odd
/// lengths, a padded row (seq_len 0), head sizes 64 to 256.
pub fn paged_attention() -> Result<(), String> {
    let mut rng = Rng::new(20);
    decode_case(&mut rng, 16, 8, 128, &[1, 17, 300, 512], None)?;
    decode_case(&mut rng, 8, 8, 128, &[5, 0, 33], None)?;
    decode_case(&mut rng, 4, 2, 64, &[100], None)?;
    decode_case(&mut rng, 6, 3, 96, &[1, 2, 3, 250], None)?;
    decode_case(&mut rng, 4, 4, 256, &[77, 16], None)?;
    decode_case(&mut rng, 2, 1, 80, &[49], None)
}

/// Every GQA group the kernel's block layout distinguishes: 4, 8 (one full chunk), 5 and
/// 12 (a partial chunk), 16 (two chunks), 32.
pub fn paged_attention_gqa() -> Result<(), String> {
    let mut rng = Rng::new(21);
    for (heads, kv) in [(32, 8), (16, 2), (40, 8), (24, 2), (32, 2), (32, 1)] {
        decode_case(&mut rng, heads, kv, 128, &[3, 200, 45], None)?;
    }
    Ok(())
}

/// Long contexts through the partitioned path (+ reduce): lengths on and around the
/// 512-token partition edges, partitions as needed, the scratch's maximum (a CUDA graph's
/// fixed grid: empty partitions), one partition covering everything, and too few
/// partitions (the last one covers the rest).
pub fn paged_attention_long() -> Result<(), String> {
    let mut rng = Rng::new(22);
    let lens = [1, 511, 512, 513, 1500, 2100, 0];
    decode_case(&mut rng, 16, 8, 128, &lens, None)?;
    decode_case(&mut rng, 16, 8, 128, &lens, Some(8))?;
    decode_case(&mut rng, 16, 8, 128, &[1025, 3000], Some(1))?;
    // Fewer partitions than the context needs: the last one takes the rest.
    decode_case(&mut rng, 16, 8, 128, &[3000, 600], Some(2))?;
    decode_case(&mut rng, 32, 2, 64, &[4097, 700], None)?;
    decode_case(&mut rng, 24, 2, 128, &[1030, 20], Some(3))
}

/// Prefill of `seqs` = (cached prefix, new queries) each; q in a fused [q | k | v] buffer,
/// out contiguous. Runs every kernel that handles `hd` (the CUDA-core kernel always, the
/// tensor-core one for 64 and 128) on the same inputs.
fn prefill_case(
    rng: &mut Rng,
    heads: usize,
    kv: usize,
    hd: usize,
    seqs: &[(usize, usize)],
) -> Result<(), String> {
    let mut kernels = vec![PrefillKernel::CudaCores];
    if PrefillKernel::TensorCores.entry(hd).is_some() {
        kernels.push(PrefillKernel::TensorCores);
    }
    for k in kernels {
        prefill_kernel_case(rng, k, heads, kv, hd, seqs)?;
    }
    Ok(())
}

fn prefill_kernel_case(
    rng: &mut Rng,
    kernel: PrefillKernel,
    heads: usize,
    kv: usize,
    hd: usize,
    seqs: &[(usize, usize)],
) -> Result<(), String> {
    let g = gpu()?;
    let lens: Vec<usize> = seqs.iter().map(|&(ctx, n)| ctx + n).collect();
    let cache = Cache::new(rng, heads, kv, hd, &lens);
    let d = cache.upload()?;
    let q_dim = heads * hd;
    let q_stride = q_dim + 2 * kv * hd;
    let tokens: usize = seqs.iter().map(|s| s.1).sum();
    let mut cu = vec![0i32];
    for &(_, n) in seqs {
        cu.push(cu[cu.len() - 1] + n as i32);
    }
    let max_q = seqs.iter().map(|s| s.1).max().unwrap_or(0);
    let q_host = rng.bf16s(tokens * q_stride, 3.0);
    let q = up(&q_host)?;
    let cu_d = up(&cu)?;
    let out = Out::<bf16>::poisoned(tokens * q_dim + 3)?;
    let what = format!(
        "prefill_attention ({kernel:?}) heads {heads}/{kv} head_dim {hd} (prefix, queries) {seqs:?}"
    );
    ops::prefill_attention(
        g,
        kernel,
        out.dev(),
        q_dim,
        dev(&q),
        q_stride,
        dev(&d.k),
        dev(&d.v),
        dev(&d.tables),
        dev(&cu_d),
        dev(&d.lens),
        seqs.len(),
        max_q,
        &cache.shape,
    )
    .ctx(&what)?;
    let mut want = Vec::new();
    for (si, &(ctx, n)) in seqs.iter().enumerate() {
        for i in 0..n {
            let t = cu[si] as usize + i;
            for h in 0..heads {
                want.extend(cache.attend(si, h, ctx + i, &q_host[t * q_stride + h * hd..][..hd]));
            }
        }
    }
    out.check(&what, &rows(0, tokens, q_dim, q_dim), &want, ATTN)
}

/// Fresh prompts (no cached prefix): one, several of different lengths (not multiples of
/// the 16-row and 32-key tiles), GQA groups 1 to 16, head sizes 64 to 256.
pub fn prefill_attention() -> Result<(), String> {
    let mut rng = Rng::new(23);
    prefill_case(&mut rng, 16, 8, 128, &[(0, 37)])?;
    prefill_case(&mut rng, 16, 8, 128, &[(0, 1), (0, 16), (0, 33), (0, 70)])?;
    prefill_case(&mut rng, 8, 8, 64, &[(0, 5), (0, 48)])?;
    prefill_case(&mut rng, 32, 8, 128, &[(0, 20)])?;
    prefill_case(&mut rng, 16, 2, 128, &[(0, 31), (0, 2)])?;
    prefill_case(&mut rng, 32, 2, 96, &[(0, 19)])?;
    prefill_case(&mut rng, 4, 2, 256, &[(0, 40)])
}

/// Chunked prefill and prefix-cache hits: queries at positions start..start + n attend to
/// every earlier cached position; decode tokens (n = 1) in the same batch.
pub fn prefill_attention_prefix() -> Result<(), String> {
    let mut rng = Rng::new(24);
    prefill_case(
        &mut rng,
        16,
        8,
        128,
        &[(100, 5), (600, 1), (33, 70), (1000, 17), (16, 16)],
    )?;
    prefill_case(&mut rng, 32, 4, 128, &[(2048, 40), (7, 1)])?;
    prefill_case(&mut rng, 14, 2, 64, &[(511, 2), (1, 100)])
}

/// Prompts over several 64-row blocks of the tensor-core kernel (and the CUDA-core one):
/// lengths on and around the 64-row and 32-key tile edges, a long prompt after a long
/// cached prefix, Llama-3-8B's and Qwen3-0.6B's head layouts (32/8 and 16/8 at 128) and
/// Qwen2-0.5B's (14/2 at 64).
pub fn prefill_attention_long() -> Result<(), String> {
    let mut rng = Rng::new(25);
    prefill_case(
        &mut rng,
        32,
        8,
        128,
        &[(0, 64), (0, 65), (0, 127), (0, 300)],
    )?;
    prefill_case(&mut rng, 16, 8, 128, &[(1000, 200), (31, 33), (0, 1)])?;
    prefill_case(&mut rng, 14, 2, 64, &[(0, 257), (64, 64), (95, 1)])
}
