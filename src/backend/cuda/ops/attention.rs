//! The attention wrappers: decode ([`paged_attention`], flash-decoding over 512-token
//! partitions with its scratch [`AttnScratch`] and the reduce kernel) and varlen causal
//! prefill ([`prefill_attention`], on tensor cores for head sizes 64 and 128, see
//! [`PrefillKernel`]), both over the paged f16 KV cache of one layer, with the grid
//! arithmetic as pure functions ([`partitions`], [`group_chunks`], [`prefill_grid`]).

use cudarc::driver::CudaSlice;
use half::{bf16, f16};

use super::dev::Dev;
use super::launch::{ceil_div, check_len, Arg, Check, Launch, Launcher, MAX_GRID_YZ};
use crate::backend::cuda::device::Gpu;
use crate::error::{Error, Result};

/// Tokens per partition of the decode kernel (`PARTITION_SIZE`).
pub const PARTITION_SIZE: usize = 512;
/// Query heads one decode block serves (`MAX_GROUP`).
pub const MAX_GROUP: usize = 8;
/// The largest head both attention kernels handle (`MAX_HEAD_DIM`).
pub const MAX_HEAD_DIM: usize = 256;
/// Threads of a decode block and of a reduce block.
pub const DECODE_THREADS: usize = 128;
/// Threads of a prefill block: exactly this (`THREADS`; other sizes trap).
pub const PREFILL_THREADS: usize = 128;
/// Query rows per block of the CUDA-core prefill kernel (`BLOCK_M`).
pub const PREFILL_ROWS: usize = 16;
/// Query rows per block of the tensor-core prefill kernels (prefill_attention_mma.cu's
/// `BLOCK_M`).
pub const PREFILL_MMA_ROWS: usize = 64;

/// The prefill attention kernel for a head size: the tensor-core (`mma.sync`) kernels for
/// head sizes 64 and 128 (every supported model family's common sizes), the CUDA-core
/// kernel for any other even size up to [`MAX_HEAD_DIM`]. Both compute the same thing
/// (the parity tests run each against one reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefillKernel {
    /// `prefill_attention_kernel` (prefill_attention.cu): any even head_dim <= 256.
    CudaCores,
    /// `prefill_attention_mma{64,128}_kernel` (prefill_attention_mma.cu).
    TensorCores,
}

impl PrefillKernel {
    /// The fastest kernel that handles `head_dim`.
    pub fn for_head_dim(head_dim: usize) -> PrefillKernel {
        if matches!(head_dim, 64 | 128) {
            PrefillKernel::TensorCores
        } else {
            PrefillKernel::CudaCores
        }
    }

    /// The entry point for `head_dim`, or `None` when this kernel does not handle it.
    pub fn entry(self, head_dim: usize) -> Option<&'static str> {
        match (self, head_dim) {
            (PrefillKernel::CudaCores, _) => Some("prefill_attention_kernel"),
            (PrefillKernel::TensorCores, 64) => Some("prefill_attention_mma64_kernel"),
            (PrefillKernel::TensorCores, 128) => Some("prefill_attention_mma128_kernel"),
            (PrefillKernel::TensorCores, _) => None,
        }
    }

    /// Query rows per block.
    pub fn rows(self) -> usize {
        match self {
            PrefillKernel::CudaCores => PREFILL_ROWS,
            PrefillKernel::TensorCores => PREFILL_MMA_ROWS,
        }
    }
}

/// The attention geometry of one layer and its KV cache.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub block_size: usize,
    pub max_blocks_per_seq: usize,
    pub num_blocks: usize,
    pub scale: f32,
}

/// Scratch of the partitioned decode path: f32 `[max_seqs, num_heads, max_partitions,
/// head_dim]` and two f32 `[max_seqs, num_heads, max_partitions]`.
pub struct AttnScratch {
    /// The device buffers ([`AttnScratch::new`]); empty for [`AttnScratch::from_devs`].
    _owned: Vec<CudaSlice<f32>>,
    tmp_out: Dev<f32>,
    exp_sums: Dev<f32>,
    max_logits: Dev<f32>,
    pub max_seqs: usize,
    pub max_partitions: usize,
}

impl AttnScratch {
    /// Scratch for up to `max_seqs` sequences of up to `max_context` tokens
    /// (`max_partitions = ceil(max_context / 512)`).
    pub fn new(
        gpu: &Gpu,
        max_seqs: usize,
        num_heads: usize,
        head_dim: usize,
        max_context: usize,
    ) -> Result<Self> {
        let (sums, out) = Self::sizes(max_seqs, num_heads, head_dim, max_context)?;
        let owned = vec![
            gpu.zeros(out, "attention scratch (partial outputs)")?,
            gpu.zeros(sums, "attention scratch (exp sums)")?,
            gpu.zeros(sums, "attention scratch (max logits)")?,
        ];
        let devs = (Dev::of(&owned[0]), Dev::of(&owned[1]), Dev::of(&owned[2]));
        let mut scratch = Self::from_devs(devs, max_seqs, num_heads, head_dim, max_context)?;
        scratch._owned = owned;
        Ok(scratch)
    }

    /// The scratch in buffers the caller keeps alive (the kernel emulator's host memory),
    /// refusing buffers shorter than [`AttnScratch::new`] would allocate.
    pub fn from_devs(
        (tmp_out, exp_sums, max_logits): (Dev<f32>, Dev<f32>, Dev<f32>),
        max_seqs: usize,
        num_heads: usize,
        head_dim: usize,
        max_context: usize,
    ) -> Result<Self> {
        let (sums, out) = Self::sizes(max_seqs, num_heads, head_dim, max_context)?;
        let k = "AttnScratch";
        check_len(k, "tmp_out", tmp_out.len(), out)?;
        check_len(k, "exp_sums", exp_sums.len(), sums)?;
        check_len(k, "max_logits", max_logits.len(), sums)?;
        Ok(AttnScratch {
            _owned: Vec::new(),
            tmp_out,
            exp_sums,
            max_logits,
            max_seqs,
            max_partitions: partitions(max_context),
        })
    }

    /// Elements of (exp_sums and max_logits each, tmp_out).
    pub fn sizes(
        max_seqs: usize,
        num_heads: usize,
        head_dim: usize,
        max_context: usize,
    ) -> Result<(usize, usize)> {
        let c = Check("AttnScratch");
        let sums = c.product("exp_sums", &[max_seqs, num_heads, partitions(max_context)])?;
        Ok((sums, c.product("tmp_out", &[sums, head_dim])?))
    }

    fn devs(&self) -> (Dev<f32>, Dev<f32>, Dev<f32>) {
        (self.tmp_out, self.exp_sums, self.max_logits)
    }
}

/// Partitions of a context of `tokens` (at least 1).
pub fn partitions(tokens: usize) -> usize {
    ceil_div(tokens, PARTITION_SIZE).max(1)
}

/// Decode blocks per KV head: `ceil(group / MAX_GROUP)`, group = query heads per KV head.
pub fn group_chunks(num_heads: usize, num_kv_heads: usize) -> usize {
    ceil_div(num_heads / num_kv_heads.max(1), MAX_GROUP).max(1)
}

/// The prefill grid: `(ceil(max_q_len / rows), num_heads, num_seqs)`, `rows` the kernel's
/// query rows per block ([`PrefillKernel::rows`]).
pub fn prefill_grid(
    kernel: PrefillKernel,
    max_q_len: usize,
    num_heads: usize,
    num_seqs: usize,
) -> (usize, usize, usize) {
    (ceil_div(max_q_len, kernel.rows()), num_heads, num_seqs)
}

/// Decode attention of one query token per sequence (paged_attention.cu): `max_partitions`
/// is the grid's z (at least `ceil(longest seq_len / 512)` of this batch, or the
/// scratch's maximum in a CUDA graph); above 1 the partitions go to `scratch` and the
/// reduce kernel writes `out`.
#[allow(clippy::too_many_arguments)]
pub fn paged_attention(
    gpu: &dyn Launcher,
    out: Dev<bf16>,
    out_stride: usize,
    q: Dev<bf16>,
    q_stride: usize,
    key_cache: Dev<f16>,
    value_cache: Dev<f16>,
    block_tables: Dev<i32>,
    seq_lens: Dev<i32>,
    num_seqs: usize,
    max_partitions: usize,
    shape: &AttnShape,
    scratch: &AttnScratch,
) -> Result<()> {
    let plan = plan_paged_attention(
        (out, out_stride),
        (q, q_stride),
        (key_cache, value_cache),
        (block_tables, seq_lens),
        (num_seqs, max_partitions),
        shape,
        (scratch.devs(), scratch.max_seqs, scratch.max_partitions),
    )?;
    gpu.launch(&plan)
}

/// The scratch buffers (tmp_out, exp_sums, max_logits), max_seqs, max_partitions.
type ScratchDevs = ((Dev<f32>, Dev<f32>, Dev<f32>), usize, usize);

pub(super) fn plan_paged_attention(
    (out, out_stride): (Dev<bf16>, usize),
    (q, q_stride): (Dev<bf16>, usize),
    caches: (Dev<f16>, Dev<f16>),
    (block_tables, seq_lens): (Dev<i32>, Dev<i32>),
    (num_seqs, max_partitions): (usize, usize),
    shape: &AttnShape,
    ((tmp_out, exp_sums, max_logits), scratch_seqs, scratch_parts): ScratchDevs,
) -> Result<Vec<Launch>> {
    const K: &str = "paged_attention_kernel";
    const R: &str = "paged_attention_reduce_kernel";
    if num_seqs == 0 {
        return Ok(vec![]);
    }
    let c = Check(K);
    let s = shape;
    let common = common_args(c, shape, num_seqs, caches, (block_tables, seq_lens))?;
    c.require((1..=MAX_GRID_YZ).contains(&max_partitions), || {
        format!("max_partitions {max_partitions} is outside 1..={MAX_GRID_YZ}")
    })?;
    let (q_arg, out_arg) = q_out_args(c, (q, q_stride), (out, out_stride), num_seqs, s)?;
    let partitioned = max_partitions > 1;
    let (tmp, sums, maxes) = if partitioned {
        c.require(
            num_seqs <= scratch_seqs && max_partitions <= scratch_parts,
            || {
                format!(
                    "{num_seqs} sequences x {max_partitions} partitions do not fit the scratch \
                 ({scratch_seqs} x {scratch_parts})"
                )
            },
        )?;
        let n = c.product("exp_sums", &[num_seqs, s.num_heads, max_partitions])?;
        (
            c.buf("tmp_out", tmp_out, c.product("tmp_out", &[n, s.head_dim])?)?,
            c.buf("exp_sums", exp_sums, n)?,
            c.buf("max_logits", max_logits, n)?,
        )
    } else {
        // Not touched with one partition (paged_attention.cu).
        (Arg::Ptr(0), Arg::Ptr(0), Arg::Ptr(0))
    };
    let chunks = group_chunks(s.num_heads, s.num_kv_heads);
    let grid_x = c.product("gridDim.x", &[s.num_kv_heads, chunks])?;
    let mut args = vec![
        out_arg,
        c.long("out_stride", out_stride)?,
        tmp,
        sums,
        maxes,
        q_arg,
        c.long("q_stride", q_stride)?,
    ];
    args.extend_from_slice(&common);
    let mut launches = vec![Launch::new(
        K,
        (grid_x, num_seqs, max_partitions),
        DECODE_THREADS,
        args,
    )?];
    if partitioned {
        let args = vec![
            out_arg,
            c.long("out_stride", out_stride)?,
            tmp,
            sums,
            maxes,
            common[3], // seq_lens
            common[4], // num_seqs
            common[5], // num_heads
            common[7], // head_dim
            c.int("max_num_partitions", max_partitions)?,
        ];
        launches.push(Launch::new(
            R,
            (s.num_heads, num_seqs, 1),
            DECODE_THREADS,
            args,
        )?);
    }
    Ok(launches)
}

/// Causal varlen attention of a step's query tokens over the paged cache
/// (prefill_attention.cu): sequence s's queries are flat tokens `[cu_seqlens_q[s],
/// cu_seqlens_q[s + 1])` at positions `seq_lens[s] - q_len ..`; `max_q_len` is the
/// longest `q_len`. The caller promises `cu_seqlens_q[num_seqs]` rows of `q` and `out`
/// (not checkable here: the offsets are on the device); at least `max_q_len` rows are
/// checked. `kernel` is normally [`PrefillKernel::for_head_dim`]; a kernel that does not
/// handle the head size is refused.
#[allow(clippy::too_many_arguments)]
pub fn prefill_attention(
    gpu: &dyn Launcher,
    kernel: PrefillKernel,
    out: Dev<bf16>,
    out_stride: usize,
    q: Dev<bf16>,
    q_stride: usize,
    key_cache: Dev<f16>,
    value_cache: Dev<f16>,
    block_tables: Dev<i32>,
    cu_seqlens_q: Dev<i32>,
    seq_lens: Dev<i32>,
    num_seqs: usize,
    max_q_len: usize,
    shape: &AttnShape,
) -> Result<()> {
    let plan = plan_prefill_attention(
        kernel,
        (out, out_stride),
        (q, q_stride),
        (key_cache, value_cache),
        (block_tables, cu_seqlens_q, seq_lens),
        (num_seqs, max_q_len),
        shape,
    )?;
    gpu.launch(&plan)
}

pub(super) fn plan_prefill_attention(
    kernel: PrefillKernel,
    (out, out_stride): (Dev<bf16>, usize),
    (q, q_stride): (Dev<bf16>, usize),
    caches: (Dev<f16>, Dev<f16>),
    (block_tables, cu_seqlens_q, seq_lens): (Dev<i32>, Dev<i32>, Dev<i32>),
    (num_seqs, max_q_len): (usize, usize),
    shape: &AttnShape,
) -> Result<Vec<Launch>> {
    let k = kernel.entry(shape.head_dim).ok_or_else(|| {
        Error::Internal(format!(
            "prefill attention: the tensor-core kernels take head_dim 64 or 128, not {}",
            shape.head_dim
        ))
    })?;
    if num_seqs == 0 || max_q_len == 0 {
        return Ok(vec![]);
    }
    let c = Check(k);
    let common = common_args(c, shape, num_seqs, caches, (block_tables, seq_lens))?;
    if kernel == PrefillKernel::TensorCores {
        // K and V rows are read in 16-byte pieces.
        c.aligned("key_cache", caches.0, 16)?;
        c.aligned("value_cache", caches.1, 16)?;
    }
    c.fit_int("max_q_len", max_q_len)?;
    let (q_arg, out_arg) = q_out_args(c, (q, q_stride), (out, out_stride), max_q_len, shape)?;
    let mut args = vec![
        out_arg,
        c.long("out_stride", out_stride)?,
        q_arg,
        c.long("q_stride", q_stride)?,
    ];
    args.extend_from_slice(&common[..3]); // key_cache, value_cache, block_tables
    args.push(c.buf("cu_seqlens_q", cu_seqlens_q, num_seqs + 1)?);
    args.extend_from_slice(&common[3..]); // seq_lens, num_seqs .. scale
    let grid = prefill_grid(kernel, max_q_len, shape.num_heads, num_seqs);
    Ok(vec![Launch::new(k, grid, PREFILL_THREADS, args)?])
}

/// The shape checks both kernels share, and their common trailing arguments in order:
/// key_cache, value_cache, block_tables, seq_lens, num_seqs, num_heads, num_kv_heads,
/// head_dim, block_size, max_blocks_per_seq, num_blocks, scale (prefill inserts
/// cu_seqlens_q before seq_lens).
fn common_args(
    c: Check,
    s: &AttnShape,
    num_seqs: usize,
    (key_cache, value_cache): (Dev<f16>, Dev<f16>),
    (block_tables, seq_lens): (Dev<i32>, Dev<i32>),
) -> Result<[Arg; 12]> {
    c.require(
        s.num_kv_heads > 0 && s.num_heads.is_multiple_of(s.num_kv_heads),
        || {
            format!(
                "num_heads {} is not a multiple of num_kv_heads {}",
                s.num_heads, s.num_kv_heads
            )
        },
    )?;
    c.require(s.num_heads > 0, || "num_heads is 0".into())?;
    c.require(
        s.head_dim > 0 && s.head_dim.is_multiple_of(2) && s.head_dim <= MAX_HEAD_DIM,
        || {
            format!(
                "head_dim {} must be even, in 2..={MAX_HEAD_DIM}",
                s.head_dim
            )
        },
    )?;
    c.require(s.block_size > 0, || "block_size is 0".into())?;
    c.require(
        num_seqs <= MAX_GRID_YZ && s.num_heads <= MAX_GRID_YZ,
        || {
            format!(
                "{num_seqs} sequences or {} heads exceed the grid limit {MAX_GRID_YZ}",
                s.num_heads
            )
        },
    )?;
    let cache = c.product(
        "a layer's cache",
        &[s.num_blocks, s.block_size, s.num_kv_heads, s.head_dim],
    )?;
    c.disjoint(
        ("key_cache", key_cache, cache),
        ("value_cache", value_cache, cache),
    )?;
    c.aligned("key_cache", key_cache, 4)?;
    c.aligned("value_cache", value_cache, 4)?;
    let tables = c.product("block_tables", &[num_seqs, s.max_blocks_per_seq])?;
    Ok([
        c.buf("key_cache", key_cache, cache)?,
        c.buf("value_cache", value_cache, cache)?,
        c.buf("block_tables", block_tables, tables)?,
        c.buf("seq_lens", seq_lens, num_seqs)?,
        c.int("num_seqs", num_seqs)?,
        c.int("num_heads", s.num_heads)?,
        c.int("num_kv_heads", s.num_kv_heads)?,
        c.int("head_dim", s.head_dim)?,
        c.int("block_size", s.block_size)?,
        c.int("max_blocks_per_seq", s.max_blocks_per_seq)?,
        c.int("num_blocks", s.num_blocks)?,
        Arg::Float(s.scale),
    ])
}

/// The checked q and out pointers for `rows` rows of `num_heads * head_dim`; out may not
/// overlap q (`__restrict__`).
fn q_out_args(
    c: Check,
    (q, q_stride): (Dev<bf16>, usize),
    (out, out_stride): (Dev<bf16>, usize),
    rows: usize,
    s: &AttnShape,
) -> Result<(Arg, Arg)> {
    let width = c.product("a token's heads", &[s.num_heads, s.head_dim])?;
    let nq = c.rows("q", rows, q_stride, width)?;
    let nout = c.rows("out", rows, out_stride, width)?;
    c.disjoint(("out", out, nout), ("q", q, nq))?;
    Ok((c.buf("q", q, nq)?, c.buf("out", out, nout)?))
}

/// [`paged_attention`]'s `max_partitions` for a batch whose longest sequence has
/// `max_seq_len` tokens, refusing more than the scratch holds.
pub fn partitions_for(max_seq_len: usize, scratch: &AttnScratch) -> Result<usize> {
    let n = partitions(max_seq_len);
    if n > scratch.max_partitions {
        return Err(Error::Internal(format!(
            "paged_attention_kernel: a context of {max_seq_len} tokens needs {n} partitions, \
             the scratch holds {}",
            scratch.max_partitions
        )));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::super::launch::tests::{assert_signature, define, fake};
    use super::*;

    fn shape(num_heads: usize, num_kv_heads: usize, head_dim: usize) -> AttnShape {
        AttnShape {
            num_heads,
            num_kv_heads,
            head_dim,
            block_size: 16,
            max_blocks_per_seq: 8,
            num_blocks: 20,
            scale: 0.125,
        }
    }

    /// Buffers exactly as large as a launch of `num_seqs` needs under `s`.
    struct Bufs {
        out: Dev<bf16>,
        q: Dev<bf16>,
        caches: (Dev<f16>, Dev<f16>),
        tables: Dev<i32>,
        lens: Dev<i32>,
        cu: Dev<i32>,
    }

    fn bufs(s: &AttnShape, num_seqs: usize) -> Bufs {
        let width = s.num_heads * s.head_dim;
        let cache = s.num_blocks * s.block_size * s.num_kv_heads * s.head_dim;
        Bufs {
            out: fake(0x1_0000_0000, num_seqs * width),
            q: fake(0x2_0000_0000, num_seqs * width),
            caches: (fake(0x3_0000_0000, cache), fake(0x4_0000_0000, cache)),
            tables: fake(0x5_0000_0000, num_seqs * s.max_blocks_per_seq),
            lens: fake(0x6_0000_0000, num_seqs),
            cu: fake(0x7_0000_0000, num_seqs + 1),
        }
    }

    fn scratch(seqs: usize, s: &AttnShape, parts: usize) -> ScratchDevs {
        let n = seqs * s.num_heads * parts;
        (
            (
                fake(0x8_0000_0000, n * s.head_dim),
                fake(0x9_0000_0000, n),
                fake(0xa_0000_0000, n),
            ),
            seqs,
            parts,
        )
    }

    fn decode(b: &Bufs, s: &AttnShape, seqs: usize, parts: usize) -> Result<Vec<Launch>> {
        let w = s.num_heads * s.head_dim;
        plan_paged_attention(
            (b.out, w),
            (b.q, w),
            b.caches,
            (b.tables, b.lens),
            (seqs, parts),
            s,
            scratch(seqs, s, parts.max(2)),
        )
    }

    fn prefill(b: &Bufs, s: &AttnShape, seqs: usize, max_q: usize) -> Result<Vec<Launch>> {
        prefill_with(PrefillKernel::CudaCores, b, s, seqs, max_q)
    }

    fn prefill_with(
        k: PrefillKernel,
        b: &Bufs,
        s: &AttnShape,
        seqs: usize,
        max_q: usize,
    ) -> Result<Vec<Launch>> {
        let w = s.num_heads * s.head_dim;
        plan_prefill_attention(
            k,
            (b.out, w),
            (b.q, w),
            b.caches,
            (b.tables, b.cu, b.lens),
            (seqs, max_q),
            s,
        )
    }

    #[test]
    fn grid_arithmetic() {
        assert_eq!(partitions(0), 1);
        assert_eq!(partitions(1), 1);
        assert_eq!(partitions(512), 1);
        assert_eq!(partitions(513), 2);
        assert_eq!(partitions(40_960), 80);
        assert_eq!(group_chunks(16, 8), 1);
        assert_eq!(group_chunks(32, 4), 1);
        assert_eq!(group_chunks(64, 4), 2);
        assert_eq!(group_chunks(40, 2), 3);
        let (cc, tc) = (PrefillKernel::CudaCores, PrefillKernel::TensorCores);
        assert_eq!(prefill_grid(cc, 1, 16, 3), (1, 16, 3));
        assert_eq!(prefill_grid(cc, 16, 16, 3), (1, 16, 3));
        assert_eq!(prefill_grid(cc, 17, 16, 3), (2, 16, 3));
        assert_eq!(prefill_grid(tc, 64, 16, 3), (1, 16, 3));
        assert_eq!(prefill_grid(tc, 65, 16, 3), (2, 16, 3));
        // The constants are the kernels' #defines.
        assert_eq!(
            define("paged_attention.cu", "PARTITION_SIZE"),
            PARTITION_SIZE
        );
        assert_eq!(define("paged_attention.cu", "MAX_GROUP"), MAX_GROUP);
        assert_eq!(define("paged_attention.cu", "MAX_HEAD_DIM"), MAX_HEAD_DIM);
        assert_eq!(define("prefill_attention.cu", "MAX_HEAD_DIM"), MAX_HEAD_DIM);
        assert_eq!(define("prefill_attention.cu", "THREADS"), PREFILL_THREADS);
        assert_eq!(define("prefill_attention.cu", "BLOCK_M"), PREFILL_ROWS);
        assert_eq!(
            define("prefill_attention_mma.cu", "THREADS"),
            PREFILL_THREADS
        );
        assert_eq!(
            define("prefill_attention_mma.cu", "BLOCK_M"),
            PREFILL_MMA_ROWS
        );
    }

    #[test]
    fn prefill_kernel_choice() {
        use PrefillKernel::*;
        for (hd, want) in [(64, TensorCores), (128, TensorCores), (96, CudaCores)] {
            assert_eq!(PrefillKernel::for_head_dim(hd), want);
        }
        for hd in [2, 64, 80, 128, 256] {
            assert_eq!(CudaCores.entry(hd), Some("prefill_attention_kernel"));
            assert!(PrefillKernel::for_head_dim(hd).entry(hd).is_some());
        }
        assert_eq!(
            TensorCores.entry(64),
            Some("prefill_attention_mma64_kernel")
        );
        assert_eq!(
            TensorCores.entry(128),
            Some("prefill_attention_mma128_kernel")
        );
        assert_eq!(TensorCores.entry(96), None);
    }

    #[test]
    fn tensor_core_prefill_plans_and_refusals() {
        let tc = PrefillKernel::TensorCores;
        for hd in [64, 128] {
            let s = shape(16, 4, hd);
            let b = bufs(&s, 130);
            let p = prefill_with(tc, &b, &s, 3, 130).unwrap();
            assert_signature(&p);
            assert_eq!(p[0].kernel, tc.entry(hd).unwrap());
            assert_eq!((p[0].grid, p[0].block), ((3, 16, 3), 128));
            // The same arguments as the CUDA-core kernel.
            let cc = prefill(&b, &s, 3, 130).unwrap();
            assert_eq!(p[0].args, cc[0].args);
        }
        let s = shape(16, 4, 96);
        let m = prefill_with(tc, &bufs(&s, 4), &s, 3, 1)
            .unwrap_err()
            .to_string();
        assert!(m.contains("take head_dim 64 or 128, not 96"), "{m}");
        // The 16-byte K/V reads need 16-byte aligned caches (the CUDA-core kernel, 4).
        let s = shape(8, 2, 64);
        let b = bufs(&s, 2);
        let cache = s.num_blocks * s.block_size * s.num_kv_heads * s.head_dim;
        let w = s.num_heads * s.head_dim;
        let odd = (b.caches.0, fake::<f16>(0x4_0000_0008, cache));
        let plan = |k| {
            plan_prefill_attention(
                k,
                (b.out, w),
                (b.q, w),
                odd,
                (b.tables, b.cu, b.lens),
                (2, 1),
                &s,
            )
        };
        assert!(plan(PrefillKernel::CudaCores).is_ok());
        let m = plan(tc).unwrap_err().to_string();
        assert!(
            m.contains("value_cache at 0x400000008 is not 16-byte aligned"),
            "{m}"
        );
    }

    #[test]
    fn decode_plans_one_pass_or_partitions_and_reduce() {
        let s = shape(32, 2, 128); // group 16: two blocks per KV head
        let b = bufs(&s, 3);
        let one = decode(&b, &s, 3, 1).unwrap();
        assert_signature(&one);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].grid, (4, 3, 1));
        assert_eq!(one[0].block, 128);
        assert_eq!(one[0].args[2], Arg::Ptr(0)); // no scratch with one partition
        let parts = decode(&b, &s, 3, 5).unwrap();
        assert_signature(&parts);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].grid, (4, 3, 5));
        assert_eq!(parts[1].kernel, "paged_attention_reduce_kernel");
        assert_eq!(parts[1].grid, (32, 3, 1));
        assert_eq!(parts[0].args[2], parts[1].args[2]); // the same tmp_out
                                                        // seq_lens where each kernel takes it.
        let lens = Arg::Ptr(b.lens.ptr());
        assert_eq!((parts[0].args[10], parts[1].args[5]), (lens, lens));
        assert_eq!(
            parts[1].args[6..],
            [Arg::Int(3), Arg::Int(32), Arg::Int(128), Arg::Int(5)]
        );
        assert!(decode(&b, &s, 0, 1).unwrap().is_empty());
    }

    #[test]
    fn decode_refuses_bad_shapes_and_short_buffers() {
        let err = |r: Result<Vec<Launch>>| r.unwrap_err().to_string();
        let s = shape(12, 8, 128);
        let m = err(decode(&bufs(&s, 2), &s, 2, 1));
        assert!(
            m.contains("num_heads 12 is not a multiple of num_kv_heads 8"),
            "{m}"
        );
        for hd in [0, 130 - 1, 258] {
            let s = shape(8, 8, hd);
            let m = err(decode(&bufs(&s, 2), &s, 2, 1));
            assert!(m.contains("must be even, in 2..=256"), "{m}");
        }
        let s = shape(8, 2, 64);
        let b = bufs(&s, 2);
        // Three sequences read a third row of q and of the block tables.
        let m = err(decode(&b, &s, 3, 1));
        assert!(m.contains("paged_attention_kernel: argument `"), "{m}");
        let m = err(decode(&b, &s, 2, 0));
        assert!(m.contains("max_partitions 0 is outside 1..=65535"), "{m}");
        // More partitions than the scratch holds.
        let w = s.num_heads * s.head_dim;
        let m = err(plan_paged_attention(
            (b.out, w),
            (b.q, w),
            b.caches,
            (b.tables, b.lens),
            (2, 5),
            &s,
            scratch(2, &s, 4),
        ));
        assert!(
            m.contains("2 sequences x 5 partitions do not fit the scratch (2 x 4)"),
            "{m}"
        );
        // out over q, a misaligned cache.
        let m = err(plan_paged_attention(
            (b.q, w),
            (b.q, w),
            b.caches,
            (b.tables, b.lens),
            (2, 1),
            &s,
            scratch(2, &s, 2),
        ));
        assert!(m.contains("out and q overlap"), "{m}");
        let cache = s.num_blocks * s.block_size * s.num_kv_heads * s.head_dim;
        let odd = (fake::<f16>(0x3_0000_0002, cache), b.caches.1);
        let m = err(plan_paged_attention(
            (b.out, w),
            (b.q, w),
            odd,
            (b.tables, b.lens),
            (2, 1),
            &s,
            scratch(2, &s, 2),
        ));
        assert!(
            m.contains("key_cache at 0x300000002 is not 4-byte aligned"),
            "{m}"
        );
    }

    #[test]
    fn prefill_plans_and_refusals() {
        let s = shape(16, 4, 128);
        let b = bufs(&s, 40);
        let p = prefill(&b, &s, 3, 37).unwrap();
        assert_signature(&p);
        assert_eq!(p[0].grid, (3, 16, 3));
        assert_eq!(
            p[0].args[7..9],
            [Arg::Ptr(b.cu.ptr()), Arg::Ptr(b.lens.ptr())]
        );
        assert_eq!(p[0].block, 128);
        assert!(prefill(&b, &s, 3, 0).unwrap().is_empty());
        assert!(prefill(&b, &s, 0, 5).unwrap().is_empty());
        let m = prefill(&b, &s, 3, 41).unwrap_err().to_string();
        assert!(
            m.contains("prefill_attention_kernel: argument `q` holds"),
            "{m}"
        );
        let m = prefill(&bufs(&s, 2), &s, 3, 1).unwrap_err().to_string();
        assert!(m.contains("prefill_attention_kernel: argument `"), "{m}");
        let s = shape(16, 4, 300);
        let m = prefill(&bufs(&s, 4), &s, 3, 1).unwrap_err().to_string();
        assert!(m.contains("head_dim 300 must be even"), "{m}");
    }
}
