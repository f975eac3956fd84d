//! The CPU backend's KV cache for this stage of rill: one slot per running sequence, each
//! holding every layer's K and V rows (f16, as llama.cpp stores them) for the positions
//! computed so far, grown as the sequence grows and freed when it ends. (The paged block
//! pool with prefix caching replaces this store in the serving-engine work.)

/// K and V rows of one sequence, per layer: `[pos][n_kv_heads * head_dim]` as f16 bits.
#[derive(Default)]
pub struct SeqKv {
    pub k: Vec<Vec<u16>>,
    pub v: Vec<Vec<u16>>,
    /// Positions written.
    pub len: usize,
}

/// Slots of sequence caches, reused after free.
pub struct KvStore {
    n_layers: usize,
    kv_dim: usize,
    slots: Vec<Option<SeqKv>>,
}

impl KvStore {
    pub fn new(n_layers: usize, kv_dim: usize) -> Self {
        KvStore {
            n_layers,
            kv_dim,
            slots: Vec::new(),
        }
    }

    /// A new empty sequence cache; returns its slot id.
    pub fn alloc(&mut self) -> usize {
        let kv = SeqKv {
            k: vec![Vec::new(); self.n_layers],
            v: vec![Vec::new(); self.n_layers],
            len: 0,
        };
        match self.slots.iter().position(Option::is_none) {
            Some(i) => {
                self.slots[i] = Some(kv);
                i
            }
            None => {
                self.slots.push(Some(kv));
                self.slots.len() - 1
            }
        }
    }

    /// Frees a slot and its memory.
    pub fn free(&mut self, slot: usize) {
        if let Some(s) = self.slots.get_mut(slot) {
            *s = None;
        }
    }

    pub fn get(&self, slot: usize) -> &SeqKv {
        self.slots[slot].as_ref().expect("KV slot in use")
    }

    pub fn get_mut(&mut self, slot: usize) -> &mut SeqKv {
        self.slots[slot].as_mut().expect("KV slot in use")
    }

    pub fn kv_dim(&self) -> usize {
        self.kv_dim
    }

    /// Bytes held by all sequences.
    pub fn bytes(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .map(|s| {
                s.k.iter()
                    .chain(&s.v)
                    .map(|l| l.capacity() * 2)
                    .sum::<usize>()
            })
            .sum()
    }
}
