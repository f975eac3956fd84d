//! Block hashes for prefix caching (vLLM's `hash_block_tokens`): a 64-bit hash of the
//! parent block's hash chained with the block's token ids. It only finds candidates; the
//! block pool verifies every hit against the stored tokens and parent, so collisions cost
//! a miss, never correctness. Deterministic across runs (no random keys).

/// The hash of a full block holding `tokens` after a block hashed `parent` (`None` for the
/// first block of a sequence).
pub fn block_hash(parent: Option<u64>, tokens: &[u32]) -> u64 {
    let mut h = match parent {
        Some(p) => mix(p ^ 0x9e37_79b9_7f4a_7c15),
        None => 0x243f_6a88_85a3_08d3,
    };
    for &t in tokens {
        h = mix(h ^ u64::from(t)).wrapping_add(0x1000_0000_01b3);
    }
    mix(h ^ tokens.len() as u64)
}

/// splitmix64's finalizer: a bijective 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn depends_on_parent_order_and_content() {
        let a = block_hash(None, &[1, 2, 3, 4]);
        assert_eq!(a, block_hash(None, &[1, 2, 3, 4]), "deterministic");
        assert_ne!(a, block_hash(None, &[2, 1, 3, 4]));
        assert_ne!(a, block_hash(Some(0), &[1, 2, 3, 4]));
        assert_ne!(block_hash(Some(a), &[5]), block_hash(Some(a ^ 1), &[5]));
    }

    #[test]
    fn no_collisions_on_a_dense_sweep() {
        let mut seen = HashSet::new();
        for p in 0..64u64 {
            for t in 0..4096u32 {
                assert!(seen.insert(block_hash(Some(p), &[t, t + 1])));
            }
        }
    }
}
