//! The CPU backend's paged KV cache memory: per layer, one K and one V array of
//! `num_blocks × block_size` slots, each slot `n_kv_heads × head_dim` f16 values (as
//! llama.cpp stores them). This is vLLM's layout (`[num_blocks, block_size, num_kv_heads,
//! head_size]` per layer): a token's K/V live at `slot = block_table[pos / block_size] *
//! block_size + pos % block_size`, written through the step's slot mapping and read by
//! attention through the sequence's block table. The CUDA backend uses the same layout.
//!
//! Memory is allocated zeroed at create (the OS commits pages on first touch).

use crate::error::{Error, Result};

pub struct PagedKv {
    pub n_layers: usize,
    pub kv_dim: usize,
    pub block_size: usize,
    pub num_blocks: usize,
    k: Vec<Vec<u16>>,
    v: Vec<Vec<u16>>,
}

impl PagedKv {
    /// Bytes one token's K and V take over all layers.
    pub fn bytes_per_token(n_layers: usize, kv_dim: usize) -> usize {
        2 * n_layers * kv_dim * std::mem::size_of::<u16>()
    }

    pub fn new(
        n_layers: usize,
        kv_dim: usize,
        block_size: usize,
        num_blocks: usize,
    ) -> Result<Self> {
        let per_layer = num_blocks
            .checked_mul(block_size)
            .and_then(|n| n.checked_mul(kv_dim))
            .ok_or_else(|| Error::config("kv_cache_bytes", "KV cache size overflows"))?;
        let alloc = |what: &str| -> Result<Vec<Vec<u16>>> {
            (0..n_layers)
                .map(|_| {
                    zeroed(per_layer).ok_or_else(|| {
                        Error::config(
                            "kv_cache_bytes",
                            format!(
                                "cannot allocate the KV cache ({what}: {per_layer} values per layer)"
                            ),
                        )
                    })
                })
                .collect()
        };
        Ok(PagedKv {
            n_layers,
            kv_dim,
            block_size,
            num_blocks,
            k: alloc("K")?,
            v: alloc("V")?,
        })
    }

    /// Total bytes of K and V memory.
    pub fn bytes(&self) -> usize {
        self.num_blocks * self.block_size * Self::bytes_per_token(self.n_layers, self.kv_dim)
    }

    /// K and V rows of `layer` at `slot`.
    pub fn row(&self, layer: usize, slot: usize) -> (&[u16], &[u16]) {
        let r = slot * self.kv_dim..(slot + 1) * self.kv_dim;
        (&self.k[layer][r.clone()], &self.v[layer][r])
    }

    /// Mutable K and V rows of `layer` at `slot`.
    pub fn row_mut(&mut self, layer: usize, slot: usize) -> (&mut [u16], &mut [u16]) {
        let r = slot * self.kv_dim..(slot + 1) * self.kv_dim;
        (&mut self.k[layer][r.clone()], &mut self.v[layer][r])
    }

    /// The whole K and V arrays of `layer`.
    pub fn layer(&self, layer: usize) -> (&[u16], &[u16]) {
        (&self.k[layer], &self.v[layer])
    }
}

/// A zeroed `Vec<u16>` of `n` values from the allocator's zeroed path (pages are committed
/// on first touch), or `None` when the memory is not there.
fn zeroed(n: usize) -> Option<Vec<u16>> {
    if n == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<u16>(n).ok()?;
    // SAFETY: `layout` has non-zero size (n > 0).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) } as *mut u16;
    if ptr.is_null() {
        return None;
    }
    // SAFETY: `ptr` was allocated by the global allocator with the layout of `[u16; n]`,
    // and all `n` values are initialized (zero is a valid u16).
    Some(unsafe { Vec::from_raw_parts(ptr, n, n) })
}
