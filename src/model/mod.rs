//! Models: hyperparameters and weights read from model files, and the forward pass of
//! each architecture. Models see the backend and their config, never the engine.

pub mod ggml;
pub mod gguf;
pub mod llama;

/// Hyperparameters of a decoder-only transformer.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub arch: String,
    pub name: String,
    pub n_layers: usize,
    pub dim: usize,
    pub ffn_dim: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
    pub rope_freq_scale: f32,
    pub n_rot: usize,
}

impl ModelConfig {
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// One sequence's part of a step: `num_tokens` flat tokens from `token_start`, K/V
/// reached through its block table, `StepBatch::block_tables[blocks]`.
#[derive(Clone, Debug, Default)]
pub struct SeqMeta {
    pub token_start: usize,
    pub num_tokens: usize,
    pub blocks: std::ops::Range<usize>,
    /// Whether the logits of the last token are needed (the last chunk of a prefill, or a
    /// decode).
    pub want_logits: bool,
}

/// The flat input of one forward pass (vLLM's model runner inputs): every token of every
/// scheduled sequence, its position and its KV slot, plus per-sequence metadata.
#[derive(Clone, Debug, Default)]
pub struct StepBatch {
    pub token_ids: Vec<u32>,
    pub positions: Vec<usize>,
    /// Where each token's K/V is written: `block * block_size + offset`.
    pub slot_mapping: Vec<usize>,
    /// The sequence (index into `seqs`) of each token.
    pub token_seq: Vec<usize>,
    pub seqs: Vec<SeqMeta>,
    /// Every sequence's block table, back to back.
    pub block_tables: Vec<u32>,
    pub block_size: usize,
}

impl StepBatch {
    /// The block table of sequence `seq`.
    pub fn block_table(&self, seq: usize) -> &[u32] {
        &self.block_tables[self.seqs[seq].blocks.clone()]
    }
}
