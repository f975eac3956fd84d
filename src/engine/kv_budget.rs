//! Sizing the paged KV cache at create (vLLM's `determine_available_memory`): explicit
//! `kv_cache_bytes`, a `kv_cache_memory_fraction` of the memory available now (host
//! memory for the CPU backend; the GPU's free memory after the weights and step buffers
//! for CUDA), or by default the smaller of what `max_num_seqs` full-length sequences need
//! and a share of the available memory (a quarter of the host's; 90% of the GPU's, whose
//! memory has no other use). The cache must hold at least one `max_model_len` sequence,
//! and on a GPU it must fit in the free memory (device memory cannot be overcommitted, so
//! a larger cache would fail its allocation); otherwise create fails naming the setting.

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
    /// What it is, for messages: "the available memory (/proc/meminfo)", ...
    pub what: &'static str,
    /// Whether `available` bounds the cache: true for a GPU, whose memory is allocated
    /// up front; false for the host, where untouched pages of a large cache cost nothing.
    pub bounds_the_cache: bool,
}

impl Memory {
    /// The host's memory (the CPU backend).
    pub fn host() -> Memory {
        Memory {
            available: available_memory(),
            auto_share: 0.25,
            what: "the available memory (/proc/meminfo)",
            bounds_the_cache: false,
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
            // The host's default holds one sequence even past its share; a GPU's cannot
            // exceed what is free (checked below).
            let floor = if memory.bounds_the_cache {
                0
            } else {
                per_block * blocks_per_seq
            };
            (want.min(cap).max(floor), "kv_cache_bytes")
        }
    };
    if let (true, Some(avail)) = (memory.bounds_the_cache, memory.available) {
        if bytes > avail {
            return Err(Error::config(
                key,
                format!(
                    "{bytes} bytes of KV cache do not fit in {} ({avail} bytes); lower it",
                    memory.what
                ),
            ));
        }
    }
    let num_blocks = bytes / per_block;
    if num_blocks < blocks_per_seq {
        // What to change: the default's size comes from the memory.
        let advice = match (size, memory.available) {
            (KvCacheSize::Auto, Some(avail)) => format!(
                "the default is {:.0}% of {} ({avail} bytes); lower max_model_len or leave \
                 more memory free",
                memory.auto_share * 100.0,
                memory.what
            ),
            _ => "raise it or lower max_model_len".to_owned(),
        };
        return Err(Error::config(
            key,
            format!(
                "{bytes} bytes hold {num_blocks} KV blocks of {block_size} tokens, fewer than \
                 one max_model_len ({max_model_len} tokens) sequence needs ({blocks_per_seq} \
                 blocks of {per_block} bytes); {advice}"
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::arch::Arch;

    /// 2 layers × 1 KV head × 4 dims: 32 bytes per token, 512 per 16-token block.
    fn model() -> ModelConfig {
        ModelConfig {
            arch: "qwen3".into(),
            kind: Arch::Qwen3,
            name: "t".into(),
            n_layers: 2,
            dim: 8,
            ffn_dim: 8,
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 4,
            vocab_size: 16,
            context_length: 64,
            rms_eps: 1e-6,
            rope_base: 1e4,
            rope_freq_scale: 1.0,
            n_rot: 4,
            rope_neox: true,
            rope_freq_factors: None,
            tied_output: false,
        }
    }

    fn mem(available: Option<u64>, gpu: bool) -> Memory {
        Memory {
            available,
            auto_share: if gpu { 0.9 } else { 0.25 },
            what: "test memory",
            bounds_the_cache: gpu,
        }
    }

    /// Blocks for `size` with 16-token blocks, max_model_len 64 (4 blocks), 8 sequences.
    fn blocks(size: KvCacheSize, memory: Memory) -> Result<usize> {
        plan(size, &model(), 16, 64, 8, true, memory).map(|l| l.num_blocks)
    }

    fn refusal(r: Result<usize>, key: &str, words: &str) {
        match r {
            Err(Error::Config { key: k, message }) => {
                assert_eq!(k, key, "{message}");
                assert!(message.contains(words), "{message}");
            }
            other => panic!("expected a config error on {key}, got {other:?}"),
        }
    }

    #[test]
    fn auto_takes_what_the_sequences_need_up_to_the_share() {
        // 8 sequences × 4 blocks = 32 blocks wanted.
        assert_eq!(blocks(KvCacheSize::Auto, mem(None, false)).unwrap(), 32);
        assert_eq!(
            blocks(KvCacheSize::Auto, mem(Some(1 << 30), true)).unwrap(),
            32
        );
        // 90% of 10 blocks' bytes: 9 blocks.
        assert_eq!(blocks(KvCacheSize::Auto, mem(Some(5120), true)).unwrap(), 9);
    }

    #[test]
    fn the_host_default_holds_one_sequence_past_its_share() {
        // A quarter of 4 blocks is 1 block, raised to the 4 one sequence needs.
        assert_eq!(
            blocks(KvCacheSize::Auto, mem(Some(2048), false)).unwrap(),
            4
        );
    }

    #[test]
    fn a_gpu_without_room_for_one_sequence_is_refused_not_overcommitted() {
        // 90% of 4 blocks' bytes is 3 blocks, fewer than one sequence's 4.
        let r = blocks(KvCacheSize::Auto, mem(Some(2048), true));
        refusal(r, "kv_cache_bytes", "fewer than one max_model_len");
        let r = blocks(KvCacheSize::Auto, mem(Some(2048), true));
        refusal(
            r,
            "kv_cache_bytes",
            "the default is 90% of test memory (2048 bytes)",
        );
    }

    #[test]
    fn explicit_bytes_beyond_free_gpu_memory_are_refused_naming_both() {
        let r = blocks(KvCacheSize::Bytes(1 << 20), mem(Some(4096), true));
        refusal(
            r,
            "kv_cache_bytes",
            "1048576 bytes of KV cache do not fit in test memory (4096",
        );
        // Within the free memory, or on the host (lazily committed pages), it is taken.
        assert_eq!(
            blocks(KvCacheSize::Bytes(4096), mem(Some(4096), true)).unwrap(),
            8
        );
        let host = blocks(KvCacheSize::Bytes(1 << 20), mem(Some(4096), false));
        assert_eq!(host.unwrap(), 2048);
    }

    #[test]
    fn a_fraction_of_the_memory_and_its_limits() {
        let half = KvCacheSize::MemoryFraction(0.5);
        assert_eq!(blocks(half, mem(Some(8192), true)).unwrap(), 8);
        refusal(
            blocks(half, mem(None, true)),
            "kv_cache_memory_fraction",
            "cannot read test memory",
        );
        refusal(
            blocks(half, mem(Some(2048), true)),
            "kv_cache_memory_fraction",
            "fewer than one max_model_len",
        );
    }
}
