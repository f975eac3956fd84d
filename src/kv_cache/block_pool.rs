//! The block pool (vLLM v1's `BlockPool`): a fixed set of KV blocks, each with a reference
//! count, an eviction-ordered free queue and, for full blocks, a prefix-cache identity.
//!
//! A block with `ref_cnt == 0` sits in the free queue. If it still holds a cached identity
//! it can be revived by a prefix hit (`touch`) until `allocate` evicts it. The queue's
//! head is evicted first: blocks without cached content are pushed at the head (nothing is
//! lost by reusing them), cached blocks at the tail, so cached blocks leave least recently
//! used first; a request frees its blocks tail of the chain first, so a chain loses its
//! last block before its first. Operations are O(1) except `allocate(n)` (O(n)).
//!
//! Public operations: `new`, `allocate`, `touch`, `free`, `lookup`, `register`,
//! `num_free`, `ref_cnt`.

use std::collections::HashMap;

pub type BlockId = u32;

const NIL: u32 = u32::MAX;

/// The content a full block holds, so that a hash match can be verified exactly: the block
/// follows `parent` (a block id and the generation it had when this block was filled) and
/// holds `tokens`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockContent {
    pub parent: Option<(BlockId, u64)>,
    pub tokens: Vec<u32>,
}

#[derive(Debug)]
struct Block {
    ref_cnt: u32,
    /// Bumped every time the block is given new content; a child that names an older
    /// generation of its parent no longer matches.
    generation: u64,
    cached: Option<(u64, BlockContent)>,
    prev: u32,
    next: u32,
    in_free: bool,
}

/// A fixed pool of KV blocks.
pub struct BlockPool {
    blocks: Vec<Block>,
    head: u32,
    tail: u32,
    num_free: usize,
    /// Full-block hash -> block holding that content.
    cache: HashMap<u64, BlockId>,
}

impl BlockPool {
    /// A pool of `num_blocks` free blocks (ids `0..num_blocks`).
    pub fn new(num_blocks: usize) -> Self {
        let mut pool = BlockPool {
            blocks: (0..num_blocks)
                .map(|_| Block {
                    ref_cnt: 0,
                    generation: 0,
                    cached: None,
                    prev: NIL,
                    next: NIL,
                    in_free: false,
                })
                .collect(),
            head: NIL,
            tail: NIL,
            num_free: 0,
            cache: HashMap::new(),
        };
        for b in 0..num_blocks as u32 {
            pool.push_back(b);
        }
        pool
    }

    /// Blocks not referenced by any request (including cached ones that can be evicted).
    pub fn num_free(&self) -> usize {
        self.num_free
    }

    /// Blocks that hold cached content.
    pub fn num_cached(&self) -> usize {
        self.cache.len()
    }

    pub fn ref_cnt(&self, b: BlockId) -> u32 {
        self.blocks[b as usize].ref_cnt
    }

    pub fn generation(&self, b: BlockId) -> u64 {
        self.blocks[b as usize].generation
    }

    /// Takes `n` blocks from the head of the free queue (evicting their cached content),
    /// each with one reference; `None` (and nothing taken) when fewer than `n` are free.
    pub fn allocate(&mut self, n: usize) -> Option<Vec<BlockId>> {
        if n > self.num_free {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let b = self.head;
            self.unlink(b);
            let blk = &mut self.blocks[b as usize];
            if let Some((hash, _)) = blk.cached.take() {
                if self.cache.get(&hash) == Some(&b) {
                    self.cache.remove(&hash);
                }
            }
            blk.generation += 1;
            blk.ref_cnt = 1;
            out.push(b);
        }
        Some(out)
    }

    /// Adds a reference to a cached block found by `lookup` (reviving it from the free
    /// queue when nobody held it).
    pub fn touch(&mut self, b: BlockId) {
        if self.blocks[b as usize].ref_cnt == 0 {
            self.unlink(b);
        }
        self.blocks[b as usize].ref_cnt += 1;
    }

    /// Drops one reference from each block, in the order given (callers pass a block table
    /// reversed, so the tail of a chain is evicted first). A block whose count reaches zero
    /// joins the free queue: at the tail when it holds cached content, else at the head.
    pub fn free(&mut self, blocks: impl IntoIterator<Item = BlockId>) {
        for b in blocks {
            let blk = &mut self.blocks[b as usize];
            debug_assert!(blk.ref_cnt > 0, "block {b} freed more often than taken");
            if blk.ref_cnt == 0 {
                continue;
            }
            blk.ref_cnt -= 1;
            if blk.ref_cnt == 0 {
                if blk.cached.is_some() {
                    self.push_back(b);
                } else {
                    self.push_front(b);
                }
            }
        }
    }

    /// The block holding exactly `content` under `hash`, if cached.
    pub fn lookup(&self, hash: u64, content: &BlockContent) -> Option<BlockId> {
        let &b = self.cache.get(&hash)?;
        match &self.blocks[b as usize].cached {
            Some((h, c)) if *h == hash && c == content => Some(b),
            _ => None,
        }
    }

    /// Records that referenced block `b` now holds `content` (a full block). When another
    /// block already holds that hash the first one stays the cached copy.
    pub fn register(&mut self, b: BlockId, hash: u64, content: BlockContent) {
        let blk = &mut self.blocks[b as usize];
        debug_assert!(blk.ref_cnt > 0 && blk.cached.is_none());
        if self.cache.contains_key(&hash) {
            return;
        }
        blk.cached = Some((hash, content));
        self.cache.insert(hash, b);
    }

    /// Whether `b` holds cached content.
    pub fn is_cached(&self, b: BlockId) -> bool {
        self.blocks[b as usize].cached.is_some()
    }

    fn unlink(&mut self, b: BlockId) {
        let (prev, next) = {
            let blk = &mut self.blocks[b as usize];
            debug_assert!(blk.in_free);
            blk.in_free = false;
            (
                std::mem::replace(&mut blk.prev, NIL),
                std::mem::replace(&mut blk.next, NIL),
            )
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.blocks[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.blocks[next as usize].prev = prev;
        }
        self.num_free -= 1;
    }

    fn push_back(&mut self, b: BlockId) {
        let tail = self.tail;
        let blk = &mut self.blocks[b as usize];
        blk.in_free = true;
        blk.prev = tail;
        blk.next = NIL;
        if tail == NIL {
            self.head = b;
        } else {
            self.blocks[tail as usize].next = b;
        }
        self.tail = b;
        self.num_free += 1;
    }

    fn push_front(&mut self, b: BlockId) {
        let head = self.head;
        let blk = &mut self.blocks[b as usize];
        blk.in_free = true;
        blk.next = head;
        blk.prev = NIL;
        if head == NIL {
            self.tail = b;
        } else {
            self.blocks[head as usize].prev = b;
        }
        self.head = b;
        self.num_free += 1;
    }

    /// The free queue, head first (tests).
    #[cfg(test)]
    pub fn free_order(&self) -> Vec<BlockId> {
        let mut out = Vec::new();
        let mut b = self.head;
        while b != NIL {
            out.push(b);
            b = self.blocks[b as usize].next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(t: u32) -> BlockContent {
        BlockContent {
            parent: None,
            tokens: vec![t; 4],
        }
    }

    #[test]
    fn allocate_and_free_keep_counts() {
        let mut p = BlockPool::new(4);
        let a = p.allocate(3).unwrap();
        assert_eq!(a, vec![0, 1, 2]);
        assert_eq!(p.num_free(), 1);
        assert!(p.allocate(2).is_none(), "over-allocation must fail");
        assert_eq!(p.num_free(), 1, "a failed allocation takes nothing");
        p.free(a.iter().rev().copied());
        assert_eq!(p.num_free(), 4);
        assert!((0..4).all(|b| p.ref_cnt(b) == 0));
    }

    #[test]
    fn cached_blocks_survive_free_and_revive() {
        let mut p = BlockPool::new(3);
        let a = p.allocate(1).unwrap()[0];
        p.register(a, 7, content(1));
        p.free([a]);
        assert_eq!(p.lookup(7, &content(1)), Some(a));
        assert_eq!(
            p.lookup(7, &content(2)),
            None,
            "a hash collision is not a hit"
        );
        p.touch(a);
        assert_eq!(p.ref_cnt(a), 1);
        assert_eq!(p.num_free(), 2);
        p.touch(a);
        assert_eq!(p.ref_cnt(a), 2, "a shared block counts every holder");
        p.free([a]);
        assert_eq!(p.num_free(), 2, "still held once");
        p.free([a]);
        assert_eq!(p.num_free(), 3);
    }

    #[test]
    fn eviction_prefers_uncached_then_lru_then_chain_tail() {
        let mut p = BlockPool::new(6);
        // Request 1 fills a chain of 2 cached blocks, request 2 a chain of 2 cached blocks
        // plus one uncached partial block.
        let r1 = p.allocate(2).unwrap();
        let r2 = p.allocate(3).unwrap();
        for (i, &b) in r1.iter().chain(&r2[..2]).enumerate() {
            p.register(b, i as u64, content(i as u32));
        }
        p.free(r1.iter().rev().copied()); // older: freed first
        p.free(r2.iter().rev().copied());
        // Head: the uncached partial block (4), then the never-used block (5), then r1 tail
        // first (1, 0), then r2 tail first (3, 2).
        assert_eq!(p.free_order(), vec![4, 5, 1, 0, 3, 2]);
        let got = p.allocate(3).unwrap();
        assert_eq!(got, vec![4, 5, 1]);
        assert_eq!(
            p.lookup(1, &content(1)),
            None,
            "evicted block left the cache"
        );
        assert_eq!(
            p.lookup(0, &content(0)),
            Some(0),
            "the chain head is still cached"
        );
        assert!(p.generation(1) > 0);
    }

    #[test]
    fn duplicate_registration_keeps_first_copy() {
        let mut p = BlockPool::new(2);
        let b = p.allocate(2).unwrap();
        p.register(b[0], 9, content(3));
        p.register(b[1], 9, content(3));
        assert_eq!(p.lookup(9, &content(3)), Some(b[0]));
        assert!(!p.is_cached(b[1]));
        p.free(b.iter().rev().copied());
        assert_eq!(p.num_free(), 2);
        assert_eq!(p.num_cached(), 1);
    }
}
