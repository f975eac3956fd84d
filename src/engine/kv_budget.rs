//! Sizing the paged KV cache at create (vLLM's `determine_available_memory`): explicit
//! `kv_cache_bytes`, a `kv_cache_memory_fraction` of the memory available now (host
//! memory for the CPU backend; the GPU's free memory after the weights and step buffers
//! for CUDA), or by default the smaller of what `max_num_seqs` full-length sequences need
//! and a share of the available memory (a quarter of the host's; 90% of the GPU's, whose
//! memory has no other use). The cache must hold at least one `max_model_len` sequence,
//! or create fails naming the setting.

use crate::backend::cpu::kv::PagedKv;
use crate::config::KvCacheSize;
use crate::engine::core::KvLayout;
use crate::error::{Error, Result};
use crate::model::ModelConfig;

/// Bytes of memory available to new allocations (`MemAvailable`), if the OS says.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The memory a KV cache is carved from.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    /// Bytes available now, if known.
    pub available: Option<u64>,
    /// The share of `available` the default (`Auto`) size may take.
    pub auto_share: f64,
    /// Where (for messages): "host memory (/proc/meminfo)", "GPU memory".
    pub what: &'static str,
}

impl Memory {
    /// The host's memory (the CPU backend).
    pub fn host() -> Memory {
        Memory {
            available: available_memory(),
            auto_share: 0.25,
            what: "the available memory (/proc/meminfo)",
        }
    }
}

/// The block count for `size`.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    size: KvCacheSize,
    mc: &ModelConfig,
    block_size: usize,
    max_model_len: usize,
    max_num_seqs: usize,
    prefix_caching: bool,
    memory: Memory,
) -> Result<KvLayout> {
    let per_block = (PagedKv::bytes_per_token(mc.n_layers, mc.kv_dim()) * block_size) as u64;
    let blocks_per_seq = max_model_len.div_ceil(block_size) as u64;
    let (bytes, key) = match size {
        KvCacheSize::Bytes(b) => (b, "kv_cache_bytes"),
        KvCacheSize::MemoryFraction(f) => {
            let avail = memory.available.ok_or_else(|| {
                Error::config(
                    "kv_cache_memory_fraction",
                    format!("cannot read {}; give kv_cache_bytes", memory.what),
                )
            })?;
            ((avail as f64 * f) as u64, "kv_cache_memory_fraction")
        }
        KvCacheSize::Auto => {
            let want = per_block * blocks_per_seq * max_num_seqs as u64;
            let cap = memory
                .available
                .map_or(want, |a| (a as f64 * memory.auto_share) as u64);
            (
                want.min(cap).max(per_block * blocks_per_seq),
                "kv_cache_bytes",
            )
        }
    };
    let num_blocks = bytes / per_block;
    if num_blocks < blocks_per_seq {
        return Err(Error::config(
            key,
            format!(
                "{bytes} bytes hold {num_blocks} KV blocks of {block_size} tokens, fewer than \
                 one max_model_len ({max_model_len} tokens) sequence needs ({blocks_per_seq} \
                 blocks of {per_block} bytes); raise it or lower max_model_len"
            ),
        ));
    }
    if num_blocks > u32::MAX as u64 - 1 {
        return Err(Error::config(key, "too many KV blocks"));
    }
    Ok(KvLayout {
        block_size,
        num_blocks: num_blocks as usize,
        prefix_caching,
    })
}
