//! The KV cache manager (vLLM v1's `KVCacheManager`): per-request block tables over a
//! shared [`BlockPool`], with automatic prefix caching.
//!
//! Full blocks are identified by a hash chained from the parent block's hash and the
//! block's token ids (`hash::block_hash`); the pool verifies a hit against the stored
//! token ids and the parent block's identity, so a hash collision is a miss, never wrong
//! tokens. A new request reuses the longest cached run of full blocks of its prompt (at
//! most `len - 1` tokens, so the last prompt token is always computed and yields logits).
//!
//! The scheduler talks to this module with plain values: `find_prefix` (a lookup, takes
//! nothing), `allocate` (returns `None` when the blocks are not there: "cannot allocate
//! now" is not an error), `commit` (registers blocks that became full), `free`.

pub mod block_pool;
pub mod hash;

use std::collections::HashMap;

pub use block_pool::{BlockContent, BlockId, BlockPool};

/// A cached prefix found for a prompt: its blocks and how many tokens they cover.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CachedPrefix {
    pub blocks: Vec<BlockId>,
    pub hashes: Vec<u64>,
    pub num_tokens: usize,
}

#[derive(Default)]
struct ReqBlocks {
    block_table: Vec<BlockId>,
    /// Hashes of the leading full blocks already registered (or found) in the cache.
    hashes: Vec<u64>,
}

/// Block tables of the running requests.
pub struct KvCacheManager {
    pool: BlockPool,
    block_size: usize,
    prefix_caching: bool,
    reqs: HashMap<u64, ReqBlocks>,
}

impl KvCacheManager {
    pub fn new(num_blocks: usize, block_size: usize, prefix_caching: bool) -> Self {
        KvCacheManager {
            pool: BlockPool::new(num_blocks),
            block_size,
            prefix_caching,
            reqs: HashMap::new(),
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn num_free_blocks(&self) -> usize {
        self.pool.num_free()
    }

    pub fn num_cached_blocks(&self) -> usize {
        self.pool.num_cached()
    }

    /// The block table of request `id` (empty when it holds none).
    pub fn block_table(&self, id: u64) -> &[BlockId] {
        self.reqs
            .get(&id)
            .map(|r| r.block_table.as_slice())
            .unwrap_or(&[])
    }

    /// The longest cached run of full blocks at the start of `tokens`, leaving at least the
    /// last token uncovered. Takes no references.
    pub fn find_prefix(&self, tokens: &[u32]) -> CachedPrefix {
        let mut found = CachedPrefix::default();
        if !self.prefix_caching || tokens.is_empty() {
            return found;
        }
        let bs = self.block_size;
        let mut parent: Option<(BlockId, u64)> = None;
        let mut parent_hash: Option<u64> = None;
        for chunk in tokens[..tokens.len() - 1].chunks_exact(bs) {
            let h = hash::block_hash(parent_hash, chunk);
            let content = BlockContent {
                parent,
                tokens: chunk.to_vec(),
            };
            let Some(b) = self.pool.lookup(h, &content) else {
                break;
            };
            found.blocks.push(b);
            found.hashes.push(h);
            found.num_tokens += bs;
            parent = Some((b, self.pool.generation(b)));
            parent_hash = Some(h);
        }
        found
    }

    /// Makes room for request `id` to hold `num_tokens` tokens in total. On a request's
    /// first allocation `prefix` (from `find_prefix`) is taken as the start of its block
    /// table. Returns `None`, changing nothing, when the pool lacks the blocks.
    pub fn allocate(&mut self, id: u64, num_tokens: usize, prefix: &CachedPrefix) -> Option<()> {
        let have = self.reqs.get(&id).map_or(0, |r| r.block_table.len());
        let fresh = have == 0;
        let from_prefix = if fresh { prefix.blocks.len() } else { 0 };
        let need = num_tokens
            .div_ceil(self.block_size)
            .saturating_sub(have + from_prefix);
        // Prefix blocks nobody holds sit in the free queue; reviving them uses it up.
        let revived = if fresh {
            prefix
                .blocks
                .iter()
                .filter(|&&b| self.pool.ref_cnt(b) == 0)
                .count()
        } else {
            0
        };
        if need + revived > self.pool.num_free() {
            return None;
        }
        let r = self.reqs.entry(id).or_default();
        if fresh {
            for &b in &prefix.blocks {
                self.pool.touch(b);
            }
            r.block_table.extend_from_slice(&prefix.blocks);
            r.hashes.extend_from_slice(&prefix.hashes);
        }
        let new = self.pool.allocate(need)?;
        r.block_table.extend(new);
        Some(())
    }

    /// Registers in the prefix cache the blocks of `id` that `tokens[..num_computed]` has
    /// filled since the last call.
    pub fn commit(&mut self, id: u64, tokens: &[u32], num_computed: usize) {
        if !self.prefix_caching {
            return;
        }
        let bs = self.block_size;
        let Some(r) = self.reqs.get_mut(&id) else {
            return;
        };
        let full = (num_computed / bs).min(r.block_table.len());
        while r.hashes.len() < full {
            let i = r.hashes.len();
            let chunk = &tokens[i * bs..(i + 1) * bs];
            let parent_hash = r.hashes.last().copied();
            let h = hash::block_hash(parent_hash, chunk);
            let parent = (i > 0).then(|| {
                let p = r.block_table[i - 1];
                (p, self.pool.generation(p))
            });
            let b = r.block_table[i];
            if !self.pool.is_cached(b) {
                let content = BlockContent {
                    parent,
                    tokens: chunk.to_vec(),
                };
                self.pool.register(b, h, content);
            }
            r.hashes.push(h);
        }
    }

    /// Releases every block of `id`, tail first.
    pub fn free(&mut self, id: u64) {
        if let Some(r) = self.reqs.remove(&id) {
            self.pool.free(r.block_table.into_iter().rev());
        }
    }

    /// Requests holding blocks (tests and leak checks).
    pub fn num_requests(&self) -> usize {
        self.reqs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(n: usize, seed: u32) -> Vec<u32> {
        (0..n as u32).map(|i| i * 7 + seed).collect()
    }

    #[test]
    fn shared_prefix_is_reused_and_counted() {
        let mut m = KvCacheManager::new(16, 4, true);
        let a = toks(10, 1);
        let p = m.find_prefix(&a);
        assert_eq!(p.num_tokens, 0);
        m.allocate(1, a.len(), &p).unwrap();
        assert_eq!(m.block_table(1).len(), 3);
        m.commit(1, &a, a.len());
        // Same first 9 tokens, different tail: two full blocks (8 tokens) are shared.
        let mut b = a[..9].to_vec();
        b.push(999);
        let p = m.find_prefix(&b);
        assert_eq!(p.num_tokens, 8);
        assert_eq!(p.blocks, m.block_table(1)[..2].to_vec());
        m.allocate(2, b.len(), &p).unwrap();
        assert_eq!(m.block_table(2)[..2], m.block_table(1)[..2]);
        assert_ne!(m.block_table(2)[2], m.block_table(1)[2]);
        assert_eq!(m.num_free_blocks(), 16 - 4);
        m.free(1);
        m.free(2);
        assert_eq!(m.num_free_blocks(), 16);
        assert_eq!(m.num_requests(), 0);
    }

    #[test]
    fn last_token_is_never_cached() {
        let mut m = KvCacheManager::new(8, 4, true);
        let a = toks(8, 3);
        m.allocate(1, 8, &CachedPrefix::default()).unwrap();
        m.commit(1, &a, 8);
        m.free(1);
        // The whole prompt is cached, but only the first block may be used.
        assert_eq!(m.find_prefix(&a).num_tokens, 4);
    }

    #[test]
    fn freed_blocks_stay_cached_until_needed() {
        let mut m = KvCacheManager::new(4, 4, true);
        let a = toks(9, 5);
        m.allocate(1, 9, &CachedPrefix::default()).unwrap();
        m.commit(1, &a, 9);
        m.free(1);
        assert_eq!(m.find_prefix(&a).num_tokens, 8, "cached after free");
        // A request that needs every block evicts the cache.
        let other = toks(16, 100);
        m.allocate(2, 16, &m.find_prefix(&other)).unwrap();
        assert_eq!(m.find_prefix(&a).num_tokens, 0);
        m.free(2);
        assert_eq!(m.num_free_blocks(), 4);
    }

    #[test]
    fn allocate_fails_cleanly_and_counts_revived_blocks() {
        let mut m = KvCacheManager::new(3, 4, true);
        let a = toks(9, 0);
        m.allocate(1, 9, &CachedPrefix::default()).unwrap();
        m.commit(1, &a, 9);
        m.free(1);
        // 3 free blocks, 2 of them the cached prefix: a 13-token request needs 4.
        let mut b = a[..8].to_vec();
        b.extend([1, 2, 3, 4, 5]);
        let p = m.find_prefix(&b);
        assert_eq!(p.blocks.len(), 2);
        assert!(m.allocate(2, 13, &p).is_none());
        assert_eq!(m.num_free_blocks(), 3, "nothing taken on failure");
        assert!(m.allocate(2, 12, &p).is_some());
        assert_eq!(m.num_free_blocks(), 0);
        m.free(2);
        assert_eq!(m.num_free_blocks(), 3);
    }

    #[test]
    fn a_refilled_parent_invalidates_its_children() {
        // A child block names its parent by id and generation. Simulate the dangerous case
        // (the parent evicted and refilled with other tokens whose hash chain collides)
        // directly on the pool: the child, looked up under the parent's new generation,
        // must miss even though the hash matches.
        let mut p = BlockPool::new(2);
        let b = p.allocate(2).unwrap();
        let parent_gen = p.generation(b[0]);
        let child = BlockContent {
            parent: Some((b[0], parent_gen)),
            tokens: vec![5, 6],
        };
        p.register(b[1], 42, child.clone());
        p.free([b[1]]);
        p.free([b[0]]); // uncached: evicted first
        let again = p.allocate(1).unwrap();
        assert_eq!(again, vec![b[0]]);
        assert_eq!(p.lookup(42, &child), Some(b[1]), "same generation: hit");
        let stale = BlockContent {
            parent: Some((b[0], p.generation(b[0]))),
            tokens: vec![5, 6],
        };
        assert_eq!(p.lookup(42, &stale), None, "new generation: miss");
    }

    #[test]
    fn disabled_prefix_caching_never_hits() {
        let mut m = KvCacheManager::new(4, 2, false);
        let a = toks(5, 1);
        m.allocate(1, 5, &CachedPrefix::default()).unwrap();
        m.commit(1, &a, 5);
        m.free(1);
        assert_eq!(m.find_prefix(&a).num_tokens, 0);
    }
}
